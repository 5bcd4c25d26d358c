//! [`Policy`], [`FailurePolicy`] and [`RedisLimiterBuilder`]: what a limiter checks,
//! how it connects, and what it checks at connect.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use palisade_core_traits::Clock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult};

use super::conn::{Breaker, Conn, Epochs, epoch_id, slot_tags};
use super::stats::Counters;
use super::{BLOCK_SCRIPT, CHECK_SCRIPT, RedisLimiter};
use crate::{Error, KeyedLimiter, Quota};

const MAX_POLICY_NAME_LEN: usize = 32;

/// With `tls`: redis-rs builds its rustls config with the process's default
/// `CryptoProvider`, and rustls cannot pick one when a build enables both ring and
/// aws-lc-rs. If the process has chosen none, install ring's (the workspace's
/// crypto); install your own before connecting to choose another.
fn ensure_crypto_provider() {
    #[cfg(feature = "tls")]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A named quota. Several policies on one limiter (say `sec` and `min`) are checked
/// together, atomically, all or nothing, in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(super) name: String,
    pub(super) quota: Quota,
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
///
/// It answers while Redis is unreachable, and also while Redis has lost a key's
/// state: for one burst window of each policy after Redis lost its data (see
/// `docs/ratelimit.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Deny (the default): an outage cannot become an opening for an attacker, but
    /// legitimate traffic is refused while Redis is away.
    Closed,
    /// Allow, and count it (`failed_open`): availability first; no limit holds during
    /// the outage.
    Open,
    /// Fall back to an in-memory limiter with [`Quota::share`]`(instances)` of each
    /// quota, so `instances` limiters together stay within the quota. A quota whose
    /// burst is smaller than `instances` has no share: that policy denies every check
    /// until Redis answers for it again.
    LocalShare {
        /// How many instances share the quota.
        instances: NonZeroU32,
    },
}

/// Builds a [`RedisLimiter`]: infallible setters; every check happens in the
/// `connect*` method, which names the field that was wrong
/// ([`Error::InvalidConfig`]).
#[derive(Debug)]
pub struct RedisLimiterBuilder {
    pub(super) policies: Vec<Policy>,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) failure: FailurePolicy,
    pub(super) cooldown: Duration,
    pub(super) breaker_threshold: NonZeroU32,
    pub(super) deny_cache_keys: usize,
    pub(super) allow_key_eviction: bool,
    pub(super) clock: Arc<dyn Clock>,
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

    /// What to answer when Redis fails or has lost a key's state (default
    /// [`FailurePolicy::Closed`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// After `threshold` consecutive failures (default 3) Redis is left alone for
    /// `cooldown` (default 1 s, on the clock's monotonic reading), then probed by one
    /// call.
    pub fn circuit_breaker(mut self, threshold: NonZeroU32, cooldown: Duration) -> Self {
        self.breaker_threshold = threshold;
        self.cooldown = cooldown;
        self
    }

    /// Bound on keys in the local deny cache (default 100,000; 0 turns it off).
    pub fn deny_cache_keys(mut self, keys: usize) -> Self {
        self.deny_cache_keys = keys;
        self
    }

    /// Connect even if Redis' `maxmemory-policy` may evict the limiter's keys
    /// (default false: connecting fails with [`Error::UnsafeEvictionPolicy`]).
    ///
    /// Every limiter key carries a TTL, so every policy but `noeviction` (the
    /// `volatile-*` ones included) may evict a spent key under memory pressure, and
    /// an evicted key is a full quota again: a silent allow that no epoch can see.
    /// Under `noeviction` a full Redis refuses writes, and the failure policy
    /// answers. With this set, a policy that may evict is logged at `warn`.
    pub fn allow_key_eviction(mut self, allow: bool) -> Self {
        self.allow_key_eviction = allow;
        self
    }

    /// The local clock: its monotonic reading times the circuit breaker, the deny
    /// cache and the `LocalShare` fallback's decisions (a wall-clock step, NTP or a
    /// resumed VM, refills no share). Decisions on Redis always use Redis `TIME`.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if self.policies.is_empty() {
            return Err(Error::config("policies", "at least one policy is needed"));
        }
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(Error::config(
                "prefix",
                format!(
                    "{:?} must be non-empty and free of '{{' and '}}'",
                    self.prefix
                ),
            ));
        }
        if self.timeout.is_zero() {
            return Err(Error::config("timeout", "must be above zero"));
        }
        for (i, p) in self.policies.iter().enumerate() {
            if self.policies[..i].iter().any(|q| q.name == p.name) {
                return Err(Error::config(
                    "policies",
                    format!("policy {:?} given twice", p.name),
                ));
            }
        }
        Ok(())
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200))
    }

    /// Connects to a standalone Redis by URL (`rediss://` needs feature `tls`; the
    /// system's roots then verify the server). See [`connect_client`](Self::connect_client).
    pub async fn connect(self, url: &str) -> Result<RedisLimiter, Error> {
        self.validate()?;
        let client = redis::Client::open(url)?;
        self.connect_client(client).await
    }

    /// Connects to a standalone Redis through your `Client` (built with
    /// `redis::Client::build_with_tls` for your own CA, with credentials, …) with a
    /// `ConnectionManager` that reconnects by itself after an outage.
    ///
    /// Refuses a Redis whose `maxmemory-policy` may evict keys (see
    /// [`allow_key_eviction`](Self::allow_key_eviction)), and creates the epoch key
    /// (`<prefix>:!epoch`, if it is missing) by which the limiter sees that Redis
    /// lost its data.
    pub async fn connect_client(self, client: redis::Client) -> Result<RedisLimiter, Error> {
        self.validate()?;
        ensure_crypto_provider();
        let patience = self.timeout.max(Duration::from_secs(2));
        let config = self.manager_config();
        let conn = patiently(patience, || {
            client.get_connection_manager_with_config(config.clone())
        })
        .await?;
        self.connect_manager(conn).await
    }

    /// Uses your `ConnectionManager` (its own timeouts and retries apply; the
    /// per-call timeout still bounds each check). Same checks as
    /// [`connect_client`](Self::connect_client).
    pub async fn connect_manager(self, conn: ConnectionManager) -> Result<RedisLimiter, Error> {
        self.validate()?;
        let limiter = self.build(Conn::Standalone(conn));
        limiter.check_eviction_policy().await?;
        limiter.learn_epoch().await?;
        Ok(limiter.preloaded().await)
    }

    /// Connects to a Redis Cluster through any of its nodes' URLs.
    ///
    /// Refuses a cluster any of whose primaries may evict keys (see
    /// [`allow_key_eviction`](Self::allow_key_eviction)). Each hash slot has its own
    /// epoch key, which the limiter learns (or creates) at its first check in that
    /// slot.
    pub async fn connect_cluster(self, urls: &[String]) -> Result<RedisLimiter, Error> {
        self.validate()?;
        ensure_crypto_provider();
        let client = redis::cluster::ClusterClient::builder(urls.to_vec())
            .connection_timeout(self.timeout.max(Duration::from_millis(200)))
            .response_timeout(self.timeout)
            .build()?;
        let conn = client.get_async_connection().await?;
        self.connect_cluster_connection(conn).await
    }

    /// Uses your cluster connection (`ClusterClient::get_async_connection`, with your
    /// TLS settings and credentials). Same checks as
    /// [`connect_cluster`](Self::connect_cluster).
    pub async fn connect_cluster_connection(
        self,
        conn: ClusterConnection,
    ) -> Result<RedisLimiter, Error> {
        self.validate()?;
        slot_tags(); // computed once per process (a few ms), not in a first check
        let limiter = self.build(Conn::Cluster(conn));
        limiter.check_eviction_policy().await?;
        Ok(limiter.preloaded().await)
    }

    fn build(self, conn: Conn) -> RedisLimiter {
        let elapsed: Arc<dyn Clock> = Arc::new(Elapsed(self.clock.clone()));
        let fallback = match self.failure {
            FailurePolicy::LocalShare { instances } => self
                .policies
                .iter()
                .map(|p| {
                    let share = p.quota.share(instances);
                    if share.is_none() {
                        tracing::warn!(
                            policy = p.name,
                            burst = p.quota.burst(),
                            instances,
                            "LocalShare: the burst has no share for this many instances; \
                             the policy denies every check Redis cannot answer"
                        );
                    }
                    share.map(|q| KeyedLimiter::with_clock(q, elapsed.clone()))
                })
                .collect(),
            _ => Vec::new(),
        };
        RedisLimiter {
            epochs: Epochs::new(conn.is_cluster()),
            conn,
            check: redis::Script::new(CHECK_SCRIPT),
            block: redis::Script::new(BLOCK_SCRIPT),
            policies: self.policies,
            prefix: self.prefix,
            timeout: self.timeout,
            failure: self.failure,
            breaker: Breaker {
                open_until: AtomicU64::new(0),
                failures: AtomicU32::new(0),
                threshold: self.breaker_threshold.get(),
                cooldown: self.cooldown,
            },
            deny_cache: DashMap::new(),
            deny_cache_keys: self.deny_cache_keys,
            deny_sweep_after: AtomicU64::new(0),
            allow_key_eviction: self.allow_key_eviction,
            fallback,
            clock: self.clock,
            counters: Counters::new(self.failure),
        }
    }
}

/// Connect-time checks and set-up.
impl RedisLimiter {
    /// Loads both scripts (on a cluster, on every primary) so the first check is one
    /// round trip too. A failure here is logged, not returned: a check that meets
    /// NOSCRIPT loads the script itself (redis-rs's `Script`: `SCRIPT LOAD`, then
    /// `EVALSHA` again), so an ACL must allow `SCRIPT LOAD` (`+@scripting` does).
    async fn preloaded(self) -> Self {
        for source in [CHECK_SCRIPT, BLOCK_SCRIPT] {
            let mut cmd = redis::cmd("SCRIPT");
            cmd.arg("LOAD").arg(source);
            let load = self.conn.query_each(&cmd);
            match tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), load).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "SCRIPT LOAD failed; checks load it on NOSCRIPT")
                }
                Err(_) => tracing::debug!("SCRIPT LOAD timed out; checks load it on NOSCRIPT"),
            }
        }
        self
    }

    /// Refuses a Redis whose `maxmemory-policy` may evict the limiter's keys, unless
    /// the builder allowed it.
    async fn check_eviction_policy(&self) -> Result<(), Error> {
        let policy = match self.eviction_policies().await {
            Ok(policies) => match policies.into_iter().find(|p| p != "noeviction") {
                Some(policy) => policy,
                None => return Ok(()),
            },
            Err(why) => format!("unknown ({why})"),
        };
        if self.allow_key_eviction {
            tracing::warn!(
                policy,
                "redis may evict rate-limit keys, which refills their quota (allowed by the builder)"
            );
            return Ok(());
        }
        Err(Error::UnsafeEvictionPolicy { policy })
    }

    /// The `maxmemory-policy` of the server, or of every primary of a cluster: from
    /// `CONFIG GET`, or from `INFO memory` where an ACL forbids `CONFIG`.
    async fn eviction_policies(&self) -> Result<Vec<String>, String> {
        let patience = self.timeout.max(Duration::from_secs(1));
        let ask = |cmd: Cmd| async move {
            // Redis's own words, not our "redis failed": they go into the refusal.
            (patiently(patience, || self.conn.query_each(&cmd)).await).map_err(|e| match e {
                Error::Redis(redis) => redis.to_string(),
                other => other.to_string(),
            })
        };
        let mut config = redis::cmd("CONFIG");
        config.arg("GET").arg("maxmemory-policy");
        let config_failed = match ask(config).await {
            Ok(replies) => {
                return replies
                    .into_iter()
                    .map(|reply| {
                        HashMap::<String, String>::from_redis_value(reply)
                            .ok()
                            .and_then(|mut m| m.remove("maxmemory-policy"))
                            .ok_or_else(|| "CONFIG GET maxmemory-policy gave no value".to_owned())
                    })
                    .collect();
            }
            Err(e) => e,
        };
        let mut info = redis::cmd("INFO");
        info.arg("memory");
        let replies = ask(info).await.map_err(|e| {
            format!("CONFIG GET maxmemory-policy: {config_failed}; INFO memory: {e}")
        })?;
        replies
            .into_iter()
            .map(|reply| {
                String::from_redis_value(reply)
                    .ok()
                    .and_then(|text| {
                        text.lines()
                            .find_map(|l| l.strip_prefix("maxmemory_policy:"))
                            .map(|p| p.trim().to_owned())
                    })
                    .ok_or_else(|| "INFO memory shows no maxmemory_policy".to_owned())
            })
            .collect()
    }

    /// Creates the epoch key if it is missing, and learns its id (standalone).
    pub(super) async fn learn_epoch(&self) -> Result<(), Error> {
        let key = self.epoch_key(0);
        let mut create = redis::cmd("SET");
        create
            .arg(&key)
            .arg(format!("{} 0", self.epochs.fresh_id()))
            .arg("NX");
        let mut read = redis::cmd("GET");
        read.arg(&key);
        let patience = self.timeout.max(Duration::from_secs(1));
        patiently(patience, || self.conn.query::<Option<String>>(&create)).await?;
        let value = patiently(patience, || self.conn.query::<Option<String>>(&read)).await?;
        // A foreign value stays unknown (0); the first check replaces it.
        let id = value.as_deref().and_then(epoch_id).unwrap_or(0);
        self.epochs.known[0].store(id, Ordering::Release);
        Ok(())
    }

    /// The epoch key of a slot (standalone: the only one).
    pub(super) fn epoch_key(&self, slot: usize) -> String {
        if self.conn.is_cluster() {
            format!("{}:{{{}}}:!epoch", self.prefix, slot_tags()[slot])
        } else {
            format!("{}:!epoch", self.prefix)
        }
    }
}

/// A clock whose "now" is another clock's monotonic reading: the `LocalShare`
/// fallback's limiters decide on elapsed time, which a wall-clock step does not move.
#[derive(Debug)]
struct Elapsed(Arc<dyn Clock>);

impl Clock for Elapsed {
    fn now(&self) -> palisade_core_traits::Timestamp {
        let nanos = u64::try_from(self.0.monotonic().as_nanos()).unwrap_or(u64::MAX);
        palisade_core_traits::Timestamp::from_unix_nanos(nanos)
    }

    fn monotonic(&self) -> Duration {
        self.0.monotonic()
    }
}

/// Runs a connect-time query until it answers or `patience` has passed. The
/// connection's per-call timeout is sized for checks (tens of milliseconds); one slow
/// answer at connect (a Redis starting up or briefly busy) must not fail the start, so
/// a query that timed out is sent again (every set-up query is idempotent). Any other
/// error is returned at once.
async fn patiently<T, Fut>(patience: Duration, mut query: impl FnMut() -> Fut) -> Result<T, Error>
where
    Fut: std::future::Future<Output = RedisResult<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match tokio::time::timeout_at(deadline, query()).await {
            Err(_) => return Err(Error::Timeout(patience)),
            Ok(Err(e)) if e.is_timeout() && tokio::time::Instant::now() < deadline => {
                tracing::debug!(error = %e, "redis slow to answer at connect; asking again");
            }
            Ok(answer) => return Ok(answer?),
        }
    }
}
