//! What several gateway instances share when `--redis` is given, and the one API the
//! request path uses whether they share it or not.
//!
//! - Limits: each limit is either ratelimit's in-memory `KeyedLimiter` or its
//!   `RedisLimiter` (one Lua script, one round trip); both canonicalise addresses, both
//!   block (playbooks' `IpBlocker`), and their decisions are the same GCRA.
//! - Revocations: token-blacklist's Redis store, checked from its local replica.
//! - Verification keys (`Fleet`): every instance signs with its own keys and publishes
//!   their public JWKS in one Redis hash; each instance verifies with the union, so a
//!   token issued by one is accepted by all. An entry outlives its instance by the
//!   longest token lifetime (plus a minute), so tokens of an instance that stopped stay
//!   valid until they expire, and no longer.
//! - `Idempotency-Key` records and step-ups: through [`RedisConn`] (one key per record,
//!   so a cluster routes each), in `idempotency.rs` and `service.rs`.

use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::Clock;
use palisade_ratelimit::{Decision, HttpKey, KeyedLimiter, Limiter, RedisLimiter};
use palisade_token_blacklist::redis::{self, AsyncCommands};
use serde_json::Value;

/// A limit over keys of type `K`, in memory or on Redis.
pub enum Limit<K: palisade_ratelimit::Key> {
    /// This instance only.
    Memory(Arc<KeyedLimiter<K, Arc<dyn Clock>>>),
    /// Shared by every instance on the same Redis.
    Redis(Arc<RedisLimiter>),
}

impl<K: palisade_ratelimit::Key> Clone for Limit<K> {
    fn clone(&self) -> Self {
        match self {
            Limit::Memory(l) => Limit::Memory(l.clone()),
            Limit::Redis(l) => Limit::Redis(l.clone()),
        }
    }
}

impl<K: palisade_ratelimit::Key> std::fmt::Debug for Limit<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Memory(_) => "Limit::Memory",
            Limit::Redis(_) => "Limit::Redis",
        })
    }
}

/// The per-account limit (the login handler checks it; the layers check the others).
impl Limit<String> {
    /// Checks one unit for `key`. Only a malformed key can make the Redis limiter
    /// fail (an outage is answered by its failure policy): the gateway's keys are
    /// bounded and well-formed, so such an error is refused, never allowed.
    pub async fn check(&self, key: &String) -> Decision {
        let result = match self {
            Limit::Memory(l) => l.check(key, 1),
            Limit::Redis(l) => l.check(key, 1).await,
        };
        result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "rate-limit key refused; denying");
            Decision {
                allowed: false,
                limit: 0,
                remaining: 0,
                reset_after: Duration::from_secs(1),
                retry_after: Duration::from_secs(1),
                denial: None,
                failed_open: false,
                local_share: false,
            }
        })
    }
}

impl<K: palisade_ratelimit::Key + 'static> Limit<K> {
    /// What playbooks block through.
    pub fn blocker(&self) -> Arc<dyn palisade_core_traits::IpBlocker>
    where
        KeyedLimiter<K, Arc<dyn Clock>>: palisade_core_traits::IpBlocker,
    {
        match self {
            Limit::Memory(l) => l.clone(),
            Limit::Redis(l) => l.clone(),
        }
    }
}

/// What ratelimit's `RateLimitLayer` checks: the same decisions as `Limit::check`,
/// errors included (the layer answers them `503`).
impl Limiter<HttpKey> for Limit<HttpKey> {
    fn answers_at_once(&self) -> bool {
        matches!(self, Limit::Memory(_))
    }

    fn check_now(
        &self,
        key: &HttpKey,
        cost: u32,
    ) -> Option<Result<Decision, palisade_ratelimit::Error>> {
        match self {
            Limit::Memory(l) => Some(l.check(key, cost)),
            Limit::Redis(_) => None,
        }
    }

    async fn check(&self, key: &HttpKey, cost: u32) -> Result<Decision, palisade_ratelimit::Error> {
        match self {
            Limit::Memory(l) => l.check(key, cost),
            Limit::Redis(l) => Limiter::check(&**l, key, cost).await,
        }
    }
}

/// How the gateway reaches Redis: the URLs of `--redis` (one server, or a cluster's
/// nodes) and the CA of `--redis-ca`.
#[derive(Clone)]
pub struct RedisAccess {
    /// One URL: a server; several: the nodes of a cluster.
    pub urls: Vec<String>,
    /// PEM roots that verify `rediss://` servers instead of the system's.
    ca: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for RedisAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry passwords.
        f.debug_struct("RedisAccess")
            .field("urls", &self.urls.len())
            .field("private_ca", &self.ca.is_some())
            .finish()
    }
}

impl RedisAccess {
    /// `urls` with `ca` (PEM) as the only roots for TLS. With a CA every URL must be
    /// `rediss://` (a CA with a plaintext URL would verify nothing); `peers` are the
    /// other regions' URLs, which the CA verifies too.
    pub fn new(
        urls: Vec<String>,
        ca: Option<Vec<u8>>,
        peers: &[&str],
    ) -> Result<RedisAccess, String> {
        if ca.is_some() {
            let plain = urls.iter().map(String::as_str).chain(peers.iter().copied());
            if plain.clone().any(|u| !u.starts_with("rediss://")) {
                return Err("with --redis-ca every Redis URL must be rediss://".into());
            }
        }
        Ok(RedisAccess {
            urls,
            ca: ca.map(Arc::from),
        })
    }

    fn certificates(ca: &[u8]) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.to_vec()),
        }
    }

    /// A client for the server at `url` (this region's or a peer's).
    pub fn client(&self, url: &str) -> Result<redis::Client, redis::RedisError> {
        match &self.ca {
            None => redis::Client::open(url),
            Some(ca) => redis::Client::build_with_tls(url, Self::certificates(ca)),
        }
    }

    /// A connection to the cluster whose nodes `urls` names, verified by the CA if one
    /// is set. `timeout` bounds each command; connecting waits at most `timeout` but
    /// not under 2 s (a first TLS handshake with every node takes its time).
    pub async fn cluster(
        &self,
        timeout: Duration,
    ) -> Result<redis::cluster_async::ClusterConnection, redis::RedisError> {
        ensure_crypto_provider();
        let mut builder = redis::cluster::ClusterClient::builder(self.urls.clone())
            .connection_timeout(timeout.max(Duration::from_millis(200)))
            .response_timeout(timeout);
        if let Some(ca) = &self.ca {
            builder = builder.certs(Self::certificates(ca));
        }
        let client = builder.build()?;
        let patience = timeout.max(Duration::from_secs(2));
        tokio::time::timeout(patience, client.get_async_connection())
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }
}

/// redis-rs builds its TLS configuration with the process's default rustls provider;
/// the crates install ring's when they connect, but a cluster connection is built here
/// before they run.
fn ensure_crypto_provider() {
    use palisade_device_fp::rustls::crypto::{CryptoProvider, ring};
    if CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed.
        let _ = ring::default_provider().install_default();
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis did not answer in time",
    ))
}

/// A Redis connection to one server or to a cluster.
#[derive(Clone)]
pub enum RedisConn {
    /// A standalone server.
    Single(redis::aio::ConnectionManager),
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl RedisConn {
    /// One URL: a server; several: the nodes of a cluster.
    pub async fn connect(access: &RedisAccess) -> Result<RedisConn, redis::RedisError> {
        match access.urls.as_slice() {
            [one] => Ok(RedisConn::Single(
                access.client(one)?.get_connection_manager().await?,
            )),
            _ => Ok(RedisConn::Cluster(access.cluster(REDIS_TIMEOUT).await?)),
        }
    }
}

/// Every Redis call of the idempotency and step-up stores is bounded by this: a server
/// that does not answer is an outage, answered as one (never waited for).
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisConn {
    /// Runs one command (in a cluster, on the node that owns its key), within
    /// [`REDIS_TIMEOUT`].
    pub async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, redis::RedisError> {
        let run = async {
            match self.clone() {
                RedisConn::Single(mut c) => cmd.query_async(&mut c).await,
                RedisConn::Cluster(mut c) => cmd.query_async(&mut c).await,
            }
        };
        bounded(run).await
    }

    /// Runs a script over one key (so a cluster routes it), within [`REDIS_TIMEOUT`].
    pub async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::ScriptInvocation<'_>,
    ) -> Result<T, redis::RedisError> {
        let run = async {
            match self.clone() {
                RedisConn::Single(mut c) => script.invoke_async(&mut c).await,
                RedisConn::Cluster(mut c) => script.invoke_async(&mut c).await,
            }
        };
        bounded(run).await
    }
}

/// The Redis key under `prefix` for `text` that clients chose (user names, targets):
/// its SHA-256, so keys have a fixed length.
pub(crate) fn hashed_key(prefix: &str, text: &str) -> String {
    let h = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    format!("{prefix}:{}", hex::encode(h))
}

/// A duration as Redis `PX` milliseconds (at least 1: `PX 0` is an error).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

async fn bounded<T>(
    run: impl std::future::Future<Output = Result<T, redis::RedisError>>,
) -> Result<T, redis::RedisError> {
    tokio::time::timeout(REDIS_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

/// The fleet's verification keys in one Redis hash: field = instance, value =
/// `{"until": unix seconds, "keys": [JWK…]}`.
pub struct Fleet {
    conn: RedisConn,
    hash: String,
    instance: String,
    /// How long an entry stays usable after it was last written.
    keep: Duration,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("hash", &self.hash)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// This instance's name in the fleet (`<region>-<random>`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The fleet registry under `hash`, as `instance`; entries are kept `keep` after
    /// their last write.
    pub fn new(conn: RedisConn, hash: &str, instance: &str, keep: Duration) -> Fleet {
        Fleet {
            conn,
            hash: hash.to_owned(),
            instance: instance.to_owned(),
            keep,
        }
    }

    /// Writes this instance's published keys.
    pub async fn publish(&self, keys: &[Value], now_secs: u64) -> Result<(), redis::RedisError> {
        let entry = serde_json::json!({
            "until": now_secs + self.keep.as_secs(),
            "keys": keys,
        })
        .to_string();
        match self.conn.clone() {
            RedisConn::Single(mut c) => c.hset(&self.hash, &self.instance, entry).await,
            RedisConn::Cluster(mut c) => c.hset(&self.hash, &self.instance, entry).await,
        }
    }

    /// Every instance's keys still in use (an unreadable entry is skipped and logged;
    /// entries past their time are removed).
    pub async fn read(&self, now_secs: u64) -> Result<Vec<Value>, redis::RedisError> {
        let all: Vec<(String, String)> = match self.conn.clone() {
            RedisConn::Single(mut c) => c.hgetall(&self.hash).await?,
            RedisConn::Cluster(mut c) => c.hgetall(&self.hash).await?,
        };
        let mut keys = Vec::new();
        let mut gone = Vec::new();
        for (instance, entry) in all {
            match fleet_entry(&entry) {
                Some((until, _)) if until < now_secs => gone.push(instance),
                Some((_, k)) => keys.extend(k),
                None => tracing::warn!(%instance, "unreadable fleet key entry skipped"),
            }
        }
        if !gone.is_empty() {
            let removed: Result<(), _> = match self.conn.clone() {
                RedisConn::Single(mut c) => c.hdel(&self.hash, gone).await,
                RedisConn::Cluster(mut c) => c.hdel(&self.hash, gone).await,
            };
            removed?;
        }
        Ok(keys)
    }
}

/// A fleet hash entry: `(until, keys)`, or `None` if it does not parse.
pub(crate) fn fleet_entry(entry: &str) -> Option<(u64, Vec<Value>)> {
    let v = serde_json::from_str::<Value>(entry).ok()?;
    Some((v["until"].as_u64()?, v["keys"].as_array()?.clone()))
}

/// The union of key lists by `kid` (the first occurrence wins).
pub fn union_by_kid(lists: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    lists
        .into_iter()
        .filter(|k| match k["kid"].as_str() {
            Some(kid) => seen.insert(kid.to_owned()),
            None => false,
        })
        .collect()
}
