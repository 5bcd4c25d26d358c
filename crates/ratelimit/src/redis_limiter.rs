//! The shared limiter on Redis / Redis Cluster: one Lua script, one round trip.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use palisade_core_traits::{Clock, IpBlocker, SystemClock, async_trait};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind};

use crate::{Decision, Error, KeyedLimiter, Quota};

const CHECK_SCRIPT: &str = include_str!("check.lua");
const BLOCK_SCRIPT: &str = include_str!("block.lua");
/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 512;
const MAX_POLICY_NAME_LEN: usize = 32;
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
const DEFAULT_BREAKER_THRESHOLD: u32 = 3;
const DEFAULT_DENY_CACHE_KEYS: usize = 100_000;

/// A named quota. Several policies on one limiter (say `sec` and `min`) are checked
/// together, atomically, all or nothing, in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: String,
    quota: Quota,
}

impl Policy {
    /// A policy; the name is 1–32 ASCII letters, digits, `_` or `-`.
    pub fn new(name: &str, quota: Quota) -> Result<Policy, Error> {
        let ok = !name.is_empty()
            && name.len() <= MAX_POLICY_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(Error::InvalidKey {
                what: "policy name",
                reason: format!("{name:?} must be 1-32 ASCII letters, digits, '_' or '-'"),
            });
        }
        Ok(Policy {
            name: name.to_owned(),
            quota,
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }
}

/// What a check answers when Redis cannot: an explicit choice, because each one
/// trades security against availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Deny (the default): an outage cannot become an opening for an attacker, but
    /// legitimate traffic is refused while Redis is away.
    Closed,
    /// Allow, and count it (`failed_open`): availability first; no limit holds during
    /// the outage.
    Open,
    /// Fall back to an in-memory limiter with `1/instances` of each quota (burst and
    /// rate, each at least 1), so `instances` limiters together stay within the quota.
    LocalShare {
        /// How many instances share the quota.
        instances: u32,
    },
}

/// Counters of a [`RedisLimiter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RedisStatsSnapshot {
    /// Checks Redis admitted.
    pub allowed: u64,
    /// Checks Redis denied (quota or block).
    pub denied: u64,
    /// Checks denied from the local deny cache, without a Redis call.
    pub local_denied: u64,
    /// Checks allowed because Redis failed under [`FailurePolicy::Open`].
    pub failed_open: u64,
    /// Checks denied because Redis failed under [`FailurePolicy::Closed`].
    pub failed_closed: u64,
    /// Checks answered by the local fallback under [`FailurePolicy::LocalShare`].
    pub fallback_local: u64,
    /// Redis calls that failed or timed out.
    pub redis_errors: u64,
    /// Script calls sent to Redis.
    pub redis_calls: u64,
}

#[derive(Debug, Default)]
struct Stats {
    allowed: AtomicU64,
    denied: AtomicU64,
    local_denied: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
    fallback_local: AtomicU64,
    redis_errors: AtomicU64,
    redis_calls: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A circuit breaker on the local clock: after `threshold` consecutive failures,
/// Redis is not called for `cooldown`; then one probe call decides.
#[derive(Debug)]
struct Breaker {
    /// 0 = closed; otherwise calls are skipped until this local time (ns).
    open_until: AtomicU64,
    failures: AtomicU32,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    /// Whether this caller may call Redis now. After the cooldown exactly one caller
    /// wins the probe; the others keep using the failure policy until it succeeds.
    fn try_acquire(&self, now: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        let next = now.saturating_add(self.cooldown.as_nanos() as u64);
        self.open_until
            .compare_exchange(until, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("redis is back: rate limiter circuit closed");
        }
    }

    fn failure(&self, now: u64) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.threshold {
            let next = now.saturating_add(self.cooldown.as_nanos() as u64);
            if self.open_until.swap(next, Ordering::AcqRel) == 0 {
                tracing::warn!(failures, cooldown = ?self.cooldown, "rate limiter circuit opened");
            }
        }
    }

    fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

#[derive(Clone)]
enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Standalone(_) => "Standalone",
            Conn::Cluster(_) => "Cluster",
        })
    }
}

impl Conn {
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.clone() {
            Conn::Standalone(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }
}

/// A script called by SHA, re-sent in full if Redis has forgotten it (NOSCRIPT after
/// a restart, a failover or `SCRIPT FLUSH`): one round trip normally, two after a flush.
#[derive(Debug)]
struct Script {
    source: &'static str,
    sha: String,
}

impl Script {
    fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: redis::Script::new(source).get_hash().to_owned(),
        }
    }

    async fn call<T: FromRedisValue>(
        &self,
        conn: &Conn,
        keys: &[String],
        args: &[u64],
    ) -> RedisResult<T> {
        let build = |name: &str, body: &str| {
            let mut cmd = redis::cmd(name);
            cmd.arg(body).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        match conn.query(&build("EVALSHA", &self.sha)).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                tracing::debug!("NOSCRIPT: sending the rate-limit script in full");
                conn.query(&build("EVAL", self.source)).await
            }
            other => other,
        }
    }
}

/// Builds a [`RedisLimiter`].
#[derive(Debug)]
pub struct RedisLimiterBuilder {
    policies: Vec<Policy>,
    prefix: String,
    timeout: Duration,
    failure: FailurePolicy,
    cooldown: Duration,
    breaker_threshold: u32,
    deny_cache_keys: usize,
    clock: Arc<dyn Clock>,
}

impl RedisLimiterBuilder {
    /// Key prefix (default `palisade:rl`); must not contain `{` or `}`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// Per-call timeout (default 50 ms). A check never waits longer for Redis.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to answer when Redis fails (default [`FailurePolicy::Closed`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// After `threshold` consecutive failures (default 3) Redis is left alone for
    /// `cooldown` (default 1 s), then probed by one call.
    pub fn circuit_breaker(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.cooldown = cooldown;
        self
    }

    /// Bound on keys in the local deny cache (default 100,000; 0 turns it off).
    pub fn deny_cache_keys(mut self, keys: usize) -> Self {
        self.deny_cache_keys = keys;
        self
    }

    /// The local clock for the circuit breaker, deny cache and fallback (decisions
    /// on Redis always use Redis `TIME`).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(Error::InvalidConfig(format!(
                "prefix {:?} must be non-empty and free of '{{' and '}}'",
                self.prefix
            )));
        }
        if self.timeout.is_zero() {
            return Err(Error::InvalidConfig("timeout must be above zero".into()));
        }
        if self.breaker_threshold == 0 {
            return Err(Error::InvalidConfig(
                "circuit breaker threshold must be at least 1".into(),
            ));
        }
        if let FailurePolicy::LocalShare { instances: 0 } = self.failure {
            return Err(Error::InvalidConfig(
                "LocalShare needs at least 1 instance".into(),
            ));
        }
        for (i, p) in self.policies.iter().enumerate() {
            if self.policies[..i].iter().any(|q| q.name == p.name) {
                return Err(Error::InvalidConfig(format!(
                    "policy {:?} given twice",
                    p.name
                )));
            }
        }
        Ok(())
    }

    /// Connects to a standalone Redis (`redis://host:port/db`); the connection
    /// reconnects by itself after an outage.
    pub async fn connect(self, url: &str) -> Result<RedisLimiter, Error> {
        self.validate()?;
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = tokio::time::timeout(
            self.timeout.max(Duration::from_secs(2)),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| Error::Timeout(self.timeout.max(Duration::from_secs(2))))??;
        Ok(self.build(Conn::Standalone(conn)).preloaded().await)
    }

    /// Connects to a Redis Cluster through any of its nodes' URLs.
    pub async fn connect_cluster(self, urls: &[String]) -> Result<RedisLimiter, Error> {
        self.validate()?;
        let client = redis::cluster::ClusterClient::builder(urls.to_vec())
            .connection_timeout(self.timeout.max(Duration::from_millis(200)))
            .response_timeout(self.timeout)
            .build()?;
        let conn = client.get_async_connection().await?;
        Ok(self.build(Conn::Cluster(conn)).preloaded().await)
    }

    fn build(self, conn: Conn) -> RedisLimiter {
        let fallback = match self.failure {
            FailurePolicy::LocalShare { instances } => self
                .policies
                .iter()
                .map(|p| KeyedLimiter::with_clock(p.quota.share(instances), self.clock.clone()))
                .collect(),
            _ => Vec::new(),
        };
        RedisLimiter {
            conn,
            check: Script::new(CHECK_SCRIPT),
            block: Script::new(BLOCK_SCRIPT),
            policies: self.policies,
            prefix: self.prefix,
            timeout: self.timeout,
            failure: self.failure,
            breaker: Breaker {
                open_until: AtomicU64::new(0),
                failures: AtomicU32::new(0),
                threshold: self.breaker_threshold,
                cooldown: self.cooldown,
            },
            deny_cache: DashMap::new(),
            deny_cache_keys: self.deny_cache_keys,
            fallback,
            clock: self.clock,
            stats: Stats::default(),
        }
    }
}

/// A rate limiter whose state lives in Redis, shared by every instance.
///
/// Each check is one `EVALSHA` of a Lua script that reads Redis `TIME`, applies GCRA
/// in integer microseconds to every policy of the subject (all keys share the hash
/// tag `{key}`, so this works on a Redis Cluster), writes only if all admit, and
/// returns integers. See `docs/ratelimit.md` for the failure policies and the local
/// deny cache.
#[derive(Debug)]
pub struct RedisLimiter {
    conn: Conn,
    check: Script,
    block: Script,
    policies: Vec<Policy>,
    prefix: String,
    timeout: Duration,
    failure: FailurePolicy,
    breaker: Breaker,
    /// Redis key → (local ns until which a cost-1 request is surely denied, interval ns).
    deny_cache: DashMap<String, (u64, u64)>,
    deny_cache_keys: usize,
    fallback: Vec<KeyedLimiter<String, Arc<dyn Clock>>>,
    clock: Arc<dyn Clock>,
    stats: Stats,
}

impl RedisLimiter {
    /// Starts a builder with the policies every check applies (at least one).
    pub fn builder(policies: Vec<Policy>) -> Result<RedisLimiterBuilder, Error> {
        if policies.is_empty() {
            return Err(Error::InvalidConfig("at least one policy is needed".into()));
        }
        Ok(RedisLimiterBuilder {
            policies,
            prefix: "palisade:rl".to_owned(),
            timeout: DEFAULT_TIMEOUT,
            failure: FailurePolicy::Closed,
            cooldown: DEFAULT_COOLDOWN,
            breaker_threshold: DEFAULT_BREAKER_THRESHOLD,
            deny_cache_keys: DEFAULT_DENY_CACHE_KEYS,
            clock: Arc::new(SystemClock),
        })
    }

    /// Loads both scripts (on a cluster, on every primary) so the first check is one
    /// round trip too. A failure here (say, an ACL without SCRIPT) only costs the
    /// NOSCRIPT fallback later, so it is logged, not returned.
    async fn preloaded(self) -> Self {
        for script in [&self.check, &self.block] {
            let mut cmd = redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(script.source);
            let load = self.conn.query::<String>(&cmd);
            match tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), load).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "SCRIPT LOAD failed; EVAL fallback stays")
                }
                Err(_) => tracing::debug!("SCRIPT LOAD timed out; EVAL fallback stays"),
            }
        }
        self
    }

    /// The policies, in the order given.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Whether the circuit breaker is open (Redis presumed down).
    pub fn is_circuit_open(&self) -> bool {
        self.breaker.is_open()
    }

    /// The counters.
    pub fn stats(&self) -> RedisStatsSnapshot {
        let s = &self.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RedisStatsSnapshot {
            allowed: get(&s.allowed),
            denied: get(&s.denied),
            local_denied: get(&s.local_denied),
            failed_open: get(&s.failed_open),
            failed_closed: get(&s.failed_closed),
            fallback_local: get(&s.fallback_local),
            redis_errors: get(&s.redis_errors),
            redis_calls: get(&s.redis_calls),
        }
    }

    /// The Redis keys of a subject: its block key, then one per policy. All share
    /// the hash tag `{…}`; keys with braces (or a leading `=`) are hex-encoded behind
    /// `=` so the tag stays whole and distinct keys stay distinct.
    fn redis_keys(&self, key: &str) -> Result<Vec<String>, Error> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Error::InvalidKey {
                what: "key",
                reason: format!("{} bytes; must be 1 to {MAX_KEY_LEN}", key.len()),
            });
        }
        let tag = if key.contains(['{', '}']) || key.starts_with('=') {
            let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
            format!("={hex}")
        } else {
            key.to_owned()
        };
        let mut keys = Vec::with_capacity(self.policies.len() + 1);
        // '!' cannot appear in a policy name, so the block key never collides.
        keys.push(format!("{}:{{{tag}}}:!block", self.prefix));
        keys.extend(
            self.policies
                .iter()
                .map(|p| format!("{}:{{{tag}}}:{}", self.prefix, p.name)),
        );
        Ok(keys)
    }

    fn check_costs(&self, cost: u32) -> Result<(), Error> {
        self.policies
            .iter()
            .try_for_each(|p| p.quota.check_cost(cost))
    }

    /// Checks (and, if every policy admits, consumes) `cost` units for `key`.
    ///
    /// Errors only for a bad key or a cost above a burst; a Redis failure is answered
    /// by the [`FailurePolicy`], within the per-call timeout.
    pub async fn check(&self, key: &str, cost: u32) -> Result<Decision, Error> {
        self.check_inner(key, cost, None).await
    }

    async fn check_inner(
        &self,
        key: &str,
        cost: u32,
        now_micros: Option<u64>,
    ) -> Result<Decision, Error> {
        let keys = self.redis_keys(key)?;
        self.check_costs(cost)?;
        let now = self.clock.now().as_unix_nanos();
        if cost > 0
            && let Some(d) = self.local_deny(&keys[0], cost, now)
        {
            bump(&self.stats.local_denied);
            tracing::debug!(retry_after = ?d.retry_after, "rate limit denied from the local deny cache");
            return Ok(d);
        }
        if !self.breaker.try_acquire(now) {
            return Ok(self.on_failure(key, cost));
        }
        let mut args = Vec::with_capacity(2 + 2 * self.policies.len());
        args.push(now_micros.unwrap_or(0));
        args.push(u64::from(cost));
        for p in &self.policies {
            args.push(p.quota.interval_micros());
            args.push(u64::from(p.quota.burst()));
        }
        bump(&self.stats.redis_calls);
        let reply = tokio::time::timeout(
            self.timeout,
            self.check.call::<Vec<i64>>(&self.conn, &keys, &args),
        )
        .await;
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rate limit check on redis failed");
                return Ok(self.failed(key, cost, now));
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "rate limit check on redis timed out");
                return Ok(self.failed(key, cost, now));
            }
        };
        self.breaker.success();
        let decision = self.decode(&reply)?;
        if decision.allowed {
            bump(&self.stats.allowed);
        } else {
            bump(&self.stats.denied);
            tracing::debug!(policy = reply[1], retry_after = ?decision.retry_after, "rate limit denied by redis");
            // Index 0 is a block: never cached, since an unblock may lift it early.
            if cost > 0 && reply[1] > 0 {
                self.remember_deny(&keys[0], &decision, cost, reply[1], now);
            }
        }
        Ok(decision)
    }

    fn decode(&self, reply: &[i64]) -> Result<Decision, Error> {
        let &[allowed, index, remaining, reset_us, retry_us] = reply else {
            return Err(Error::UnexpectedReply(format!("{reply:?}")));
        };
        let policy = match usize::try_from(index) {
            Ok(0) => &self.policies[0],
            Ok(i) if i <= self.policies.len() => &self.policies[i - 1],
            _ => return Err(Error::UnexpectedReply(format!("policy index {index}"))),
        };
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Decision {
            allowed: allowed == 1,
            limit: policy.quota.burst(),
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_after: micros(reset_us),
            retry_after: micros(retry_us),
        })
    }

    /// After Redis denied `cost` under policy `index` (1-based), remember until when a
    /// cost-1 request is surely denied. Measured from the local time the check was
    /// *sent*, so the local deny ends no later than Redis' own would.
    fn remember_deny(&self, block_key: &str, d: &Decision, cost: u32, index: i64, sent: u64) {
        if self.deny_cache_keys == 0 {
            return;
        }
        let Some(policy) = usize::try_from(index)
            .ok()
            .and_then(|i| self.policies.get(i - 1))
        else {
            return;
        };
        let interval = policy.quota.emission_interval().as_nanos() as u64;
        let retry = d.retry_after.as_nanos() as u64;
        let Some(cost1_retry) = retry
            .checked_sub(u64::from(cost - 1) * interval)
            .filter(|r| *r > 0)
        else {
            return;
        };
        if self.deny_cache.len() >= self.deny_cache_keys {
            self.deny_cache.retain(|_, (until, _)| *until > sent);
            if self.deny_cache.len() >= self.deny_cache_keys {
                return;
            }
        }
        self.deny_cache.insert(
            block_key.to_owned(),
            (sent.saturating_add(cost1_retry), interval),
        );
    }

    fn local_deny(&self, block_key: &str, cost: u32, now: u64) -> Option<Decision> {
        let (until, interval) = *self.deny_cache.get(block_key)?;
        let until = until.saturating_add(u64::from(cost - 1) * interval);
        if now < until {
            let limit = self.policies[0].quota.burst();
            return Some(Decision::denied(limit, Duration::from_nanos(until - now)));
        }
        if cost == 1 {
            self.deny_cache.remove_if(block_key, |_, (u, _)| *u <= now);
        }
        None
    }

    fn failed(&self, key: &str, cost: u32, now: u64) -> Decision {
        bump(&self.stats.redis_errors);
        self.breaker.failure(now);
        self.on_failure(key, cost)
    }

    /// The failure policy's answer.
    fn on_failure(&self, key: &str, cost: u32) -> Decision {
        let limit = self.policies[0].quota.burst();
        match self.failure {
            FailurePolicy::Closed => {
                bump(&self.stats.failed_closed);
                Decision::denied(limit, self.breaker.cooldown)
            }
            FailurePolicy::Open => {
                bump(&self.stats.failed_open);
                Decision {
                    allowed: true,
                    limit,
                    remaining: 0,
                    reset_after: Duration::ZERO,
                    retry_after: Duration::ZERO,
                }
            }
            FailurePolicy::LocalShare { .. } => {
                bump(&self.stats.fallback_local);
                let key = key.to_owned();
                // Each policy's local share is checked in turn; a denial after an
                // earlier admission leaves that admission spent (never more admitted).
                let mut answer: Option<Decision> = None;
                for limiter in &self.fallback {
                    // Cost fits: shares keep burst >= 1 and cost was checked against the
                    // full quota; a cost above a share's burst is simply denied.
                    let d = limiter.check(&key, cost).unwrap_or_else(|_| {
                        Decision::denied(limiter.quota_for(&key).burst(), self.breaker.cooldown)
                    });
                    if !d.allowed {
                        return d;
                    }
                    if answer.is_none_or(|a| d.remaining < a.remaining) {
                        answer = Some(d);
                    }
                }
                answer.unwrap_or_else(|| Decision::denied(limit, self.breaker.cooldown))
            }
        }
    }

    /// Blocks `key` for `duration` (Redis time); every instance's next check of the
    /// key is denied in its usual single round trip. A later existing block is kept.
    pub async fn block(&self, key: &str, duration: Duration) -> Result<(), Error> {
        let keys = self.redis_keys(key)?;
        let micros = u64::try_from(duration.as_micros())
            .unwrap_or(u64::MAX / 4)
            .max(1);
        let args = [micros];
        let call = self.block.call::<i64>(&self.conn, &keys[..1], &args);
        tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), call)
            .await
            .map_err(|_| Error::Timeout(self.timeout))??;
        Ok(())
    }

    /// Lifts a block.
    pub async fn unblock(&self, key: &str) -> Result<(), Error> {
        let keys = self.redis_keys(key)?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&keys[0]);
        tokio::time::timeout(
            self.timeout.max(Duration::from_secs(1)),
            self.conn.query::<i64>(&cmd),
        )
        .await
        .map_err(|_| Error::Timeout(self.timeout))??;
        Ok(())
    }
}

fn to_core(e: Error) -> palisade_core_traits::Error {
    match e {
        Error::Timeout(d) => palisade_core_traits::Error::Timeout(d),
        Error::InvalidKey { reason, .. } => palisade_core_traits::Error::invalid("ip", reason),
        other => palisade_core_traits::Error::Unavailable {
            backend: "redis",
            source: Box::new(other),
        },
    }
}

/// Blocks addresses through Redis, so every instance denies them.
#[async_trait]
impl IpBlocker for RedisLimiter {
    async fn block_ip(
        &self,
        ip: IpAddr,
        duration: Duration,
        reason: &str,
    ) -> Result<(), palisade_core_traits::Error> {
        tracing::info!(%ip, ?duration, reason, "blocking address on redis");
        self.block(&ip.to_string(), duration).await.map_err(to_core)
    }

    async fn unblock_ip(&self, ip: IpAddr) -> Result<(), palisade_core_traits::Error> {
        self.unblock(&ip.to_string()).await.map_err(to_core)
    }
}

#[cfg(test)]
mod tests;
