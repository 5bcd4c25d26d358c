//! The shared limiter on Redis / Redis Cluster: one Lua script, one round trip.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use palisade_core_traits::{Clock, IpBlocker, SystemClock, async_trait, canonical_ip};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind, Value};

use crate::{Decision, Denial, Error, KeyedLimiter, MAX_BLOCK, Quota};

const CHECK_SCRIPT: &str = include_str!("check.lua");
const BLOCK_SCRIPT: &str = include_str!("block.lua");
/// Longest accepted key, in bytes.
pub const MAX_KEY_LEN: usize = 512;
const MAX_POLICY_NAME_LEN: usize = 32;
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
const DEFAULT_BREAKER_THRESHOLD: u32 = 3;
const DEFAULT_DENY_CACHE_KEYS: usize = 100_000;
/// Redis Cluster's hash slots.
const SLOTS: usize = 16_384;
/// Epoch ids stay below 2^53, exact in the script's numbers.
const EPOCH_ID_MASK: u64 = (1 << 53) - 1;

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
    /// Checks allowed under [`FailurePolicy::Open`] because Redis failed, or had lost
    /// the key's state less than a burst window ago.
    pub failed_open: u64,
    /// Checks denied under [`FailurePolicy::Closed`] because Redis failed, or had lost
    /// the key's state less than a burst window ago.
    pub failed_closed: u64,
    /// Checks answered (in part) by the local shares under
    /// [`FailurePolicy::LocalShare`], for either reason.
    pub fallback_local: u64,
    /// Requests denied because their cost is above a burst.
    pub cost_exceeds_burst: u64,
    /// Times this limiter saw that Redis had lost its data (a missing or replaced
    /// epoch key). Alert on it.
    pub data_losses: u64,
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
    cost_exceeds_burst: AtomicU64,
    data_losses: AtomicU64,
    redis_errors: AtomicU64,
    redis_calls: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A circuit breaker on the clock's monotonic reading (a wall-clock step must not
/// hold it open): after `threshold` consecutive failures, Redis is not called for
/// `cooldown`; then one probe call decides.
#[derive(Debug)]
struct Breaker {
    /// 0 = closed; otherwise calls are skipped until this monotonic time (ns).
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
        self.open_until
            .compare_exchange(until, self.reopen(now), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Until when an opening circuit stays open: never 0, which means closed.
    fn reopen(&self, now: u64) -> u64 {
        let cooldown = u64::try_from(self.cooldown.as_nanos()).unwrap_or(u64::MAX);
        now.saturating_add(cooldown).max(1)
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.open_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("redis is back: rate limiter circuit closed");
        }
    }

    fn failure(&self, now: u64) {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.threshold
            && self.open_until.swap(self.reopen(now), Ordering::AcqRel) == 0
        {
            tracing::warn!(failures, cooldown = ?self.cooldown, "rate limiter circuit opened");
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

    /// Runs a command without keys on the server, or on every primary of a cluster:
    /// one reply per server.
    async fn query_each(&self, cmd: &Cmd) -> RedisResult<Vec<Value>> {
        match self.clone() {
            Conn::Standalone(mut c) => Ok(vec![cmd.query_async(&mut c).await?]),
            Conn::Cluster(mut c) => {
                let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                match c.route_command(cmd.clone(), all).await? {
                    Value::Map(per_node) => per_node
                        .into_iter()
                        .map(|(_, reply)| match reply {
                            Value::ServerError(e) => Err(e.into()),
                            reply => Ok(reply),
                        })
                        .collect(),
                    reply => Ok(vec![reply]),
                }
            }
        }
    }

    fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
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

/// CRC16-XMODEM, Redis Cluster's key hash (cluster specification, appendix A).
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc
}

/// The hash slot of a key whose hash tag is `tag`.
fn slot_of(tag: &str) -> usize {
    usize::from(crc16(tag.as_bytes())) % SLOTS
}

/// For each hash slot, the smallest number whose decimal form hashes to it: the hash
/// tag of that slot's epoch key (a script may only touch keys of one slot).
fn slot_tags() -> &'static [u32] {
    static TAGS: OnceLock<Box<[u32]>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![u32::MAX; SLOTS];
        let mut missing = SLOTS;
        // About 170,000 numbers cover every slot (a test checks the table).
        let mut n = 0u32;
        while missing > 0 {
            let slot = slot_of(&n.to_string());
            if tags[slot] == u32::MAX {
                tags[slot] = n;
                missing -= 1;
            }
            n += 1;
        }
        tags.into_boxed_slice()
    })
}

/// What this limiter knows of Redis' epoch keys: one on a standalone server, one per
/// hash slot on a cluster, each holding `"<id> <lost_at µs>"`. An epoch is re-created,
/// with a new id, only after Redis lost it: a missing or changed epoch means Redis lost
/// data.
struct Epochs {
    /// The id last seen, per slot (one entry when standalone); 0 = none yet.
    known: Box<[AtomicU64]>,
    /// Ids for epochs this limiter creates: from a random start, one per call.
    next_id: AtomicU64,
}

impl std::fmt::Debug for Epochs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the 16,384 ids of a cluster.
        f.debug_struct("Epochs")
            .field("slots", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl Epochs {
    fn new(cluster: bool) -> Epochs {
        let slots = if cluster { SLOTS } else { 1 };
        Epochs {
            known: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            next_id: AtomicU64::new(RandomState::new().hash_one(std::process::id())),
        }
    }

    /// A fresh non-zero id below 2^53.
    fn fresh_id(&self) -> u64 {
        (self.next_id.fetch_add(1, Ordering::Relaxed) & EPOCH_ID_MASK).max(1)
    }

    fn slot(&self, tag: &str) -> usize {
        if self.known.len() == 1 {
            0
        } else {
            slot_of(tag)
        }
    }

    /// Records the epoch a call saw. True if it replaced a known one the call sent:
    /// Redis lost data (true once per replacement, however many calls see it).
    fn observe(&self, slot: usize, sent: u64, seen: u64) -> bool {
        sent != seen
            && self.known[slot]
                .compare_exchange(sent, seen, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            && sent != 0
    }
}

/// The id of an epoch value `"<id> <lost_at>"`.
fn epoch_id(value: &str) -> Option<u64> {
    let (id, lost) = value.split_once(' ')?;
    lost.parse::<u64>().ok()?;
    id.parse().ok()
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
    allow_key_eviction: bool,
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

    /// What to answer when Redis fails or has lost a key's state (default
    /// [`FailurePolicy::Closed`]).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// After `threshold` consecutive failures (default 3) Redis is left alone for
    /// `cooldown` (default 1 s, on the clock's monotonic reading), then probed by one
    /// call.
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

    /// The local clock: its monotonic reading times the circuit breaker and the deny
    /// cache; its wall time drives the `LocalShare` fallback's decisions. Decisions on
    /// Redis always use Redis `TIME`.
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
    ///
    /// Refuses a Redis whose `maxmemory-policy` may evict keys (see
    /// [`allow_key_eviction`](Self::allow_key_eviction)), and creates the epoch key
    /// (`<prefix>:!epoch`, if it is missing) by which the limiter sees that Redis
    /// lost its data.
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
        let client = redis::cluster::ClusterClient::builder(urls.to_vec())
            .connection_timeout(self.timeout.max(Duration::from_millis(200)))
            .response_timeout(self.timeout)
            .build()?;
        let conn = client.get_async_connection().await?;
        slot_tags(); // computed once per process (a few ms), not in a first check
        let limiter = self.build(Conn::Cluster(conn));
        limiter.check_eviction_policy().await?;
        Ok(limiter.preloaded().await)
    }

    fn build(self, conn: Conn) -> RedisLimiter {
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
                    share.map(|q| KeyedLimiter::with_clock(q, self.clock.clone()))
                })
                .collect(),
            _ => Vec::new(),
        };
        RedisLimiter {
            epochs: Epochs::new(conn.is_cluster()),
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
            allow_key_eviction: self.allow_key_eviction,
            fallback,
            clock: self.clock,
            stats: Stats::default(),
        }
    }
}

/// A subject's Redis keys: its block key, its slot's epoch key, then one per policy.
#[derive(Debug)]
struct Subject {
    keys: Vec<String>,
    /// The slot's index in [`Epochs::known`].
    slot: usize,
    /// The key in canonical form (the local fallback's key).
    name: String,
}

/// Who answered a check (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Redis,
    LocalDeny,
    /// The failure policy: Redis failed, or lost the state less than a burst window ago.
    FailurePolicy,
}

/// The check script's reply.
#[derive(Debug)]
struct Reply {
    allowed: bool,
    /// 1-based policy index; 0 = blocked; -1 = no policy was decided on Redis.
    index: i64,
    remaining: i64,
    reset_us: i64,
    retry_us: i64,
    epoch: u64,
    /// 0-based indexes of the policies whose state is uncertain after a data loss.
    uncertain: Vec<usize>,
}

/// A rate limiter whose state lives in Redis, shared by every instance.
///
/// Each check is one `EVALSHA` of a Lua script that reads Redis `TIME`, checks the
/// epoch key that reveals lost data, applies GCRA in integer microseconds to every
/// policy of the subject (all keys share one hash slot, so this works on a Redis
/// Cluster), writes only if all admit, and returns integers. See `docs/ratelimit.md`
/// for the failure policies, data-loss detection and the local deny cache.
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
    /// Redis key → (monotonic ns until which a cost-1 request is surely denied,
    /// interval ns).
    deny_cache: DashMap<String, (u64, u64)>,
    deny_cache_keys: usize,
    allow_key_eviction: bool,
    epochs: Epochs,
    /// Per policy, its local share under `LocalShare` (`None`: the share is zero).
    fallback: Vec<Option<KeyedLimiter<String, Arc<dyn Clock>>>>,
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
            allow_key_eviction: false,
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
            match tokio::time::timeout(patience, self.conn.query_each(&cmd)).await {
                Ok(Ok(replies)) => Ok(replies),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {patience:?}")),
            }
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
    async fn learn_epoch(&self) -> Result<(), Error> {
        let key = self.epoch_key(0);
        let mut create = redis::cmd("SET");
        create
            .arg(&key)
            .arg(format!("{} 0", self.epochs.fresh_id()))
            .arg("NX");
        let mut read = redis::cmd("GET");
        read.arg(&key);
        let patience = self.timeout.max(Duration::from_secs(1));
        let learn = async {
            self.conn.query::<Option<String>>(&create).await?;
            self.conn.query::<Option<String>>(&read).await
        };
        let value = tokio::time::timeout(patience, learn)
            .await
            .map_err(|_| Error::Timeout(patience))??;
        // A foreign value stays unknown (0); the first check replaces it.
        let id = value.as_deref().and_then(epoch_id).unwrap_or(0);
        self.epochs.known[0].store(id, Ordering::Release);
        Ok(())
    }

    /// The epoch key of a slot (standalone: the only one).
    fn epoch_key(&self, slot: usize) -> String {
        if self.conn.is_cluster() {
            format!("{}:{{{}}}:!epoch", self.prefix, slot_tags()[slot])
        } else {
            format!("{}:!epoch", self.prefix)
        }
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
            cost_exceeds_burst: get(&s.cost_exceeds_burst),
            data_losses: get(&s.data_losses),
            redis_errors: get(&s.redis_errors),
            redis_calls: get(&s.redis_calls),
        }
    }

    /// A subject's Redis keys: its block key, its slot's epoch key, then one per
    /// policy, all in one hash slot. The subject's keys share the hash tag `{…}`; keys
    /// with braces (or a leading `=`) are hex-encoded behind `=` so the tag stays whole
    /// and distinct keys stay distinct. An address is keyed in canonical form
    /// (IPv4-mapped IPv6 is IPv4, one spelling per IPv6 address), so every spelling
    /// of one address is one subject.
    fn subject(&self, key: &str) -> Result<Subject, Error> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Error::InvalidKey {
                what: "key",
                reason: format!("{} bytes; must be 1 to {MAX_KEY_LEN}", key.len()),
            });
        }
        let name = match key.parse::<IpAddr>() {
            Ok(ip) => canonical_ip(ip).to_string(),
            Err(_) => key.to_owned(),
        };
        let tag = if name.contains(['{', '}']) || name.starts_with('=') {
            let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
            format!("={hex}")
        } else {
            name.clone()
        };
        let slot = self.epochs.slot(&tag);
        let mut keys = Vec::with_capacity(self.policies.len() + 2);
        // '!' cannot appear in a policy name, so these never collide with policy keys.
        keys.push(format!("{}:{{{tag}}}:!block", self.prefix));
        keys.push(self.epoch_key(slot));
        keys.extend(
            self.policies
                .iter()
                .map(|p| format!("{}:{{{tag}}}:{}", self.prefix, p.name)),
        );
        Ok(Subject { keys, slot, name })
    }

    /// The clock's monotonic reading in nanoseconds (breaker and deny cache).
    fn monotonic_nanos(&self) -> u64 {
        u64::try_from(self.clock.monotonic().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Checks (and, if every policy admits, consumes) `cost` units for `key`.
    ///
    /// Errors only for a bad key. A cost above a burst is denied
    /// ([`Denial::CostExceedsBurst`]). When Redis fails, or lost the key's state less
    /// than a burst window ago, the [`FailurePolicy`] answers, within the per-call
    /// timeout.
    pub async fn check(&self, key: &str, cost: u32) -> Result<Decision, Error> {
        self.check_inner(key, cost, None).await
    }

    async fn check_inner(
        &self,
        key: &str,
        cost: u32,
        now_micros: Option<u64>,
    ) -> Result<Decision, Error> {
        let subject = self.subject(key)?;
        if let Some(p) = self.policies.iter().find(|p| cost > p.quota.burst()) {
            // It can never pass: answered with the state a peek sees, changing nothing.
            bump(&self.stats.cost_exceeds_burst);
            tracing::debug!(
                cost,
                burst = p.quota.burst(),
                "rate limit denied: the cost exceeds the burst"
            );
            let (peek, _) = self.decide(&subject, 0, now_micros).await?;
            return Ok(peek.cost_exceeds_burst(p.quota.burst()));
        }
        let (decision, answer) = self.decide(&subject, cost, now_micros).await?;
        bump(match answer {
            Answer::Redis if decision.allowed => &self.stats.allowed,
            Answer::Redis => &self.stats.denied,
            Answer::LocalDeny => &self.stats.local_denied,
            Answer::FailurePolicy => match self.failure {
                FailurePolicy::Closed => &self.stats.failed_closed,
                FailurePolicy::Open => &self.stats.failed_open,
                FailurePolicy::LocalShare { .. } => &self.stats.fallback_local,
            },
        });
        Ok(decision)
    }

    /// The decision for a cost that fits every burst, and who gave it.
    async fn decide(
        &self,
        subject: &Subject,
        cost: u32,
        now_micros: Option<u64>,
    ) -> Result<(Decision, Answer), Error> {
        let keys = &subject.keys;
        let now = self.monotonic_nanos();
        if cost > 0
            && let Some(d) = self.local_deny(&keys[0], cost, now)
        {
            tracing::debug!(retry_after = ?d.retry_after, "rate limit denied from the local deny cache");
            return Ok((d, Answer::LocalDeny));
        }
        if !self.breaker.try_acquire(now) {
            return Ok((self.on_failure(subject, cost), Answer::FailurePolicy));
        }
        let known = self.epochs.known[subject.slot].load(Ordering::Acquire);
        let mut args = Vec::with_capacity(5 + 2 * self.policies.len());
        args.extend([
            now_micros.unwrap_or(0),
            u64::from(cost),
            known,
            self.epochs.fresh_id(),
            u64::from(self.failure == FailurePolicy::Closed),
        ]);
        for p in &self.policies {
            args.push(p.quota.interval_micros());
            args.push(u64::from(p.quota.burst()));
        }
        bump(&self.stats.redis_calls);
        let reply = tokio::time::timeout(
            self.timeout,
            self.check.call::<Vec<i64>>(&self.conn, keys, &args),
        )
        .await;
        let reply = match reply {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rate limit check on redis failed");
                return Ok((self.failed(subject, cost, now), Answer::FailurePolicy));
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "rate limit check on redis timed out");
                return Ok((self.failed(subject, cost, now), Answer::FailurePolicy));
            }
        };
        self.breaker.success();
        let reply = self.decode(&reply)?;
        if self.epochs.observe(subject.slot, known, reply.epoch) {
            bump(&self.stats.data_losses);
            tracing::error!(
                prefix = self.prefix,
                "redis lost rate-limit data (its epoch key was replaced); for one burst \
                 window of each policy the failure policy answers"
            );
        }
        // Redis decided: nothing was uncertain, or a block or a known policy denied.
        if reply.uncertain.is_empty() || (!reply.allowed && reply.index >= 0) {
            let decision = self.decision(&reply);
            if !decision.allowed {
                tracing::debug!(policy = reply.index, retry_after = ?decision.retry_after, "rate limit denied by redis");
                // Index 0 is a block: never cached, since an unblock may lift it early.
                if cost > 0 && reply.index > 0 {
                    self.remember_deny(&keys[0], &decision, cost, reply.index, now);
                }
            }
            return Ok((decision, Answer::Redis));
        }
        // Redis lost these policies' state less than a burst window ago: the failure
        // policy decides them (the script decided, and wrote, the others).
        let first = self.policies[reply.uncertain[0]].quota.burst();
        let decision = match self.failure {
            // The script denied, writing nothing; the retry is when the last window ends.
            FailurePolicy::Closed => {
                Decision::denied(first, micros(reply.retry_us), Denial::Unavailable)
            }
            FailurePolicy::Open if reply.index >= 1 => self.decision(&reply),
            FailurePolicy::Open => open_decision(first),
            FailurePolicy::LocalShare { .. } => {
                let local =
                    self.local_share(&subject.name, cost, &reply.uncertain, self.breaker.cooldown);
                let on_redis = (reply.index >= 1).then(|| self.decision(&reply));
                match on_redis {
                    Some(d) if local.allowed && d.remaining < local.remaining => d,
                    _ => local,
                }
            }
        };
        Ok((decision, Answer::FailurePolicy))
    }

    fn decode(&self, reply: &[i64]) -> Result<Reply, Error> {
        let bad = || Error::UnexpectedReply(format!("{reply:?}"));
        let &[
            allowed,
            index,
            remaining,
            reset_us,
            retry_us,
            epoch,
            ref uncertain @ ..,
        ] = reply
        else {
            return Err(bad());
        };
        let n = self.policies.len();
        if !(-1..=n as i64).contains(&index) {
            return Err(Error::UnexpectedReply(format!("policy index {index}")));
        }
        let uncertain = uncertain
            .iter()
            .map(|&i| match usize::try_from(i) {
                Ok(i) if (1..=n).contains(&i) => Ok(i - 1),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Only a policy left uncertain leaves a reply without a deciding policy.
        if index == -1 && uncertain.is_empty() {
            return Err(bad());
        }
        Ok(Reply {
            allowed: allowed == 1,
            index,
            remaining,
            reset_us,
            retry_us,
            epoch: u64::try_from(epoch).map_err(|_| bad())?,
            uncertain,
        })
    }

    /// The decision Redis took: on a block (index 0) or a policy (index >= 1).
    fn decision(&self, reply: &Reply) -> Decision {
        let policy = usize::try_from(reply.index - 1).unwrap_or(0);
        let denial = match (reply.allowed, reply.index) {
            (true, _) => None,
            (false, 0) => Some(Denial::Blocked),
            (false, _) => Some(Denial::Limited),
        };
        Decision {
            allowed: reply.allowed,
            limit: self.policies[policy].quota.burst(),
            remaining: u32::try_from(reply.remaining).unwrap_or(0),
            reset_after: micros(reply.reset_us),
            retry_after: micros(reply.retry_us),
            denial,
        }
    }

    /// After Redis denied `cost` under policy `index` (1-based), remember until when a
    /// cost-1 request is surely denied. Measured on the monotonic clock from when the
    /// check was *sent*, so the local deny ends no later than Redis' own would, and a
    /// wall-clock step cannot stretch it.
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
            let retry = Duration::from_nanos(until - now);
            return Some(Decision::denied(limit, retry, Denial::Limited));
        }
        if cost == 1 {
            self.deny_cache.remove_if(block_key, |_, (u, _)| *u <= now);
        }
        None
    }

    fn failed(&self, subject: &Subject, cost: u32, now: u64) -> Decision {
        bump(&self.stats.redis_errors);
        self.breaker.failure(now);
        self.on_failure(subject, cost)
    }

    /// The failure policy's answer while Redis is unreachable.
    fn on_failure(&self, subject: &Subject, cost: u32) -> Decision {
        let limit = self.policies[0].quota.burst();
        let cooldown = self.breaker.cooldown;
        match self.failure {
            FailurePolicy::Closed => Decision::denied(limit, cooldown, Denial::Unavailable),
            FailurePolicy::Open => open_decision(limit),
            FailurePolicy::LocalShare { .. } => {
                let all: Vec<usize> = (0..self.policies.len()).collect();
                self.local_share(&subject.name, cost, &all, cooldown)
            }
        }
    }

    /// The local shares of the given policies (0-based), checked in turn: a denial
    /// after an earlier admission leaves that admission spent (never more admitted).
    /// A policy without a share, or a cost that fits the quota but not its share, is
    /// denied as [`Denial::Unavailable`], to retry after `retry`.
    fn local_share(&self, name: &str, cost: u32, policies: &[usize], retry: Duration) -> Decision {
        let key = name.to_owned();
        let mut answer: Option<Decision> = None;
        for &i in policies {
            let unavailable =
                Decision::denied(self.policies[i].quota.burst(), retry, Denial::Unavailable);
            let Some(limiter) = &self.fallback[i] else {
                return unavailable;
            };
            let d = limiter.check(&key, cost).unwrap_or(unavailable);
            if d.denial == Some(Denial::CostExceedsBurst) {
                return unavailable;
            }
            if !d.allowed {
                return d;
            }
            if answer.is_none_or(|a| d.remaining < a.remaining) {
                answer = Some(d);
            }
        }
        answer.unwrap_or_else(|| open_decision(self.policies[0].quota.burst()))
    }

    /// Blocks `key` for `duration` (Redis time; at most [`MAX_BLOCK`]); every
    /// instance's next check of the key is denied in its usual single round trip. A
    /// later existing block is kept; a zero duration does nothing.
    pub async fn block(&self, key: &str, duration: Duration) -> Result<(), Error> {
        self.block_inner(key, duration, None).await
    }

    async fn block_inner(
        &self,
        key: &str,
        duration: Duration,
        now_micros: Option<u64>,
    ) -> Result<(), Error> {
        let subject = self.subject(key)?;
        if duration.is_zero() {
            return Ok(());
        }
        // MAX_BLOCK in µs fits a u64 (and keeps Redis times below 2^53 µs).
        let micros = (duration.min(MAX_BLOCK).as_micros() as u64).max(1);
        let args = [micros, now_micros.unwrap_or(0)];
        let call = self
            .block
            .call::<i64>(&self.conn, &subject.keys[..1], &args);
        tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), call)
            .await
            .map_err(|_| Error::Timeout(self.timeout))??;
        Ok(())
    }

    /// Lifts a block.
    pub async fn unblock(&self, key: &str) -> Result<(), Error> {
        let subject = self.subject(key)?;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&subject.keys[0]);
        tokio::time::timeout(
            self.timeout.max(Duration::from_secs(1)),
            self.conn.query::<i64>(&cmd),
        )
        .await
        .map_err(|_| Error::Timeout(self.timeout))??;
        Ok(())
    }
}

fn micros(v: i64) -> Duration {
    Duration::from_micros(u64::try_from(v).unwrap_or(0))
}

/// Admitted by the `Open` failure policy: no limit holds, so nothing is known to remain.
fn open_decision(limit: u32) -> Decision {
    Decision {
        allowed: true,
        limit,
        remaining: 0,
        reset_after: Duration::ZERO,
        retry_after: Duration::ZERO,
        denial: None,
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

/// Blocks addresses through Redis, so every instance denies them. The address is
/// keyed in canonical form ([`canonical_ip`]).
#[async_trait]
impl IpBlocker for RedisLimiter {
    async fn block_ip(
        &self,
        ip: IpAddr,
        duration: Duration,
        reason: &str,
    ) -> Result<(), palisade_core_traits::Error> {
        let ip = canonical_ip(ip);
        tracing::info!(%ip, ?duration, reason, "blocking address on redis");
        self.block(&ip.to_string(), duration).await.map_err(to_core)
    }

    async fn unblock_ip(&self, ip: IpAddr) -> Result<(), palisade_core_traits::Error> {
        self.unblock(&canonical_ip(ip).to_string())
            .await
            .map_err(to_core)
    }
}

#[cfg(test)]
mod tests;
