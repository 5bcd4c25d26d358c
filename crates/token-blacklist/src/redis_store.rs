//! The shared store on Redis / Redis Cluster, and the local replica fed by pub/sub.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use palisade_core_traits::{
    Clock, RevocationCheck, RevocationStatus, SystemClock, Timestamp, TokenIdentity, TokenRevoker,
    async_trait,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult};
use tokio::task::JoinHandle;

use crate::model::{Local, Record, Scope, bump};
use crate::wire::decode;
use crate::{Config, Error, StatsSnapshot};

mod replica;
use replica::{Inner, Settings};

/// What a check answers when the replica cannot prove it is fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// `Unknown` (refuse) unless the replica was confirmed in sync within the
    /// builder's `fresh_within` (default 1 s). The default.
    #[default]
    Closed,
    /// The local answer, however old; each such answer is counted (`stale_allowed`)
    /// and the count is logged at `warn` once per heartbeat interval.
    Open,
    /// The local answer if the replica was confirmed in sync within `max_age`,
    /// else `Unknown`.
    Stale {
        /// The oldest view a caller accepts.
        max_age: Duration,
    },
}

/// FNV-1a 64: a stable hash (the same in every process) for the hash tag.
fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0xff; // separator: not a byte of any UTF-8 string
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        for b in p.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The Redis key of a record. A token's key and its subject's watermark key share the
/// hash tag of `(iss, sub)`, so both are read in one round trip, on a cluster too.
fn key(prefix: &str, r: &Record) -> String {
    match r {
        Record::Token {
            issuer,
            subject,
            jti,
            ..
        } => token_key(prefix, issuer, subject, jti),
        Record::Mark { scope, .. } => match scope {
            Scope::User { issuer, subject } => user_key(prefix, issuer, subject),
            Scope::Issuer { issuer } => {
                format!("{prefix}:{{{:016x}}}:i:{issuer}", fnv(&[issuer, ""]))
            }
            Scope::Global => format!("{prefix}:{{g}}:g"),
        },
    }
}

fn token_key(prefix: &str, issuer: &str, subject: &str, jti: &str) -> String {
    let tag = fnv(&[issuer, subject]);
    format!("{prefix}:{{{tag:016x}}}:j:{}:{issuer}{jti}", issuer.len())
}

fn user_key(prefix: &str, issuer: &str, subject: &str) -> String {
    let tag = fnv(&[issuer, subject]);
    format!(
        "{prefix}:{{{tag:016x}}}:u:{}:{issuer}{subject}",
        issuer.len()
    )
}

// ---- connections -------------------------------------------------------------------

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

    /// Runs `cmds`, replies in order. Standalone: one pipeline (one round trip,
    /// executed in order). Cluster: each on its key's node (a cluster pipeline must
    /// stay in one slot), one after the other if `ordered`, else up to 64 at a time.
    async fn many(&self, cmds: Vec<Cmd>, ordered: bool) -> RedisResult<Vec<redis::Value>> {
        match self.clone() {
            Conn::Standalone(mut c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async(&mut c).await
            }
            Conn::Cluster(c) => {
                let width = if ordered { 1 } else { 64 };
                futures_util::stream::iter(cmds)
                    .map(|cmd| {
                        let mut c = c.clone();
                        async move { cmd.query_async(&mut c).await }
                    })
                    .buffered(width)
                    .try_collect()
                    .await
            }
        }
    }
}

/// Builds a [`RedisBlacklist`].
#[derive(Debug)]
pub struct RedisBlacklistBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

impl Default for RedisBlacklistBuilder {
    fn default() -> Self {
        RedisBlacklistBuilder {
            config: Config::default(),
            clock: Arc::new(SystemClock),
            settings: Settings {
                prefix: "palisade:tb".into(),
                timeout: Duration::from_secs(1),
                heartbeat: Duration::from_millis(100),
                resync_every: Duration::from_secs(60),
                fresh_within: Duration::from_secs(1),
                repair_window: Duration::from_secs(5),
                failure_policy: FailurePolicy::Closed,
                allow_eviction_policy: false,
            },
        }
    }
}

impl RedisBlacklistBuilder {
    /// The revocation model (lifetimes, local capacity).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Key prefix and pub/sub channel name (default `palisade:tb`); no `{` or `}`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.settings.prefix);
        self
    }

    /// Per-call timeout for revocations and resync reads (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// How often the replica proves it is in sync (default 100 ms): it checks that
    /// Redis still holds the epoch it synced under and publishes a heartbeat; when its
    /// own heartbeat comes back on the subscription, every revocation acknowledged
    /// before it was sent has been applied.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.settings.heartbeat = every;
        self
    }

    /// Full resync as a backstop even without a reconnect (default 60 s).
    pub fn resync_every(mut self, every: Duration) -> Self {
        self.settings.resync_every = every;
        self
    }

    /// The freshness [`FailurePolicy::Closed`] requires (default 1 s).
    pub fn fresh_within(mut self, bound: Duration) -> Self {
        self.settings.fresh_within = bound;
        self
    }

    /// How long a replica that finds no epoch in Redis (a new deployment, or Redis
    /// lost its data) keeps every replica from calling itself fresh, so that live
    /// replicas can notice and restore the revocations they hold (default 5 s,
    /// measured on the clock's monotonic reading). It must exceed the time a live
    /// replica needs to notice: a heartbeat, or after a Redis restart its reconnect
    /// (backoff up to 2 s) plus `timeout`.
    pub fn repair_window(mut self, window: Duration) -> Self {
        self.settings.repair_window = window;
        self
    }

    /// What [`RevocationCheck::check_local`] (the core-traits contract) answers when
    /// the replica cannot prove it is fresh (default [`FailurePolicy::Closed`]).
    /// [`RedisBlacklist::check`] takes its policy per call instead.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.settings.failure_policy = policy;
        self
    }

    /// Accept a Redis whose `maxmemory-policy` is not `noeviction` (default: refuse,
    /// [`Error::UnsafeEvictionPolicy`]). Every revocation key has a TTL, so every
    /// `volatile-*` and `allkeys-*` policy can evict one: a replica started later, and
    /// `check_remote`, would not see it until a live replica re-writes it at its next
    /// resync. Each check that goes on anyway is counted (`eviction_policy_allowed`)
    /// and logged at `warn`.
    pub fn allow_eviction_policy(mut self, allow: bool) -> Self {
        self.settings.allow_eviction_policy = allow;
        self
    }

    /// The clock for lifetimes (wall time) and for freshness and the repair window
    /// (its monotonic reading).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        let s = &self.settings;
        if s.prefix.is_empty() || s.prefix.contains(['{', '}']) {
            return Err(Error::InvalidConfig(format!(
                "prefix {:?} must be non-empty and free of '{{' and '}}'",
                s.prefix
            )));
        }
        for (name, d) in [
            ("timeout", s.timeout),
            ("heartbeat", s.heartbeat),
            ("resync_every", s.resync_every),
            ("fresh_within", s.fresh_within),
            ("repair_window", s.repair_window),
        ] {
            if d.is_zero() {
                return Err(Error::InvalidConfig(format!("{name} must be above zero")));
            }
        }
        Ok(())
    }

    /// Connects to a standalone Redis, checks its `maxmemory-policy`, starts the
    /// replica, and returns once its first resync has settled (or the wait passes:
    /// then checks answer by policy until it does).
    pub async fn connect(self, url: &str) -> Result<RedisBlacklist, Error> {
        self.validate()?;
        let timeout = self.settings.timeout;
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = tokio::time::timeout(timeout, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        self.start(Conn::Standalone(conn), vec![url.to_owned()])
            .await
    }

    /// Connects to a Redis Cluster. `urls` must name every primary: the resync
    /// SCANs each of them, and each holds an epoch key; the subscription uses the
    /// first that answers (Redis Cluster forwards every PUBLISH to every node).
    pub async fn connect_cluster(self, urls: &[String]) -> Result<RedisBlacklist, Error> {
        self.validate()?;
        let timeout = self.settings.timeout;
        let client = redis::cluster::ClusterClient::builder(urls.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .build()?;
        let conn = tokio::time::timeout(timeout, client.get_async_connection())
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        self.start(Conn::Cluster(conn), urls.to_vec()).await
    }

    async fn start(self, conn: Conn, nodes: Vec<String>) -> Result<RedisBlacklist, Error> {
        let local = Local::new(self.config, self.clock.clone())?;
        let s = &self.settings;
        let mut tags = Vec::with_capacity(nodes.len());
        for url in &nodes {
            let mut c = replica::node(url, s.timeout).await?;
            replica::check_eviction_policy(&mut c, s, &local).await?;
            tags.push(replica::probe_tag(&mut c, &s.prefix, s.timeout).await?);
        }
        let wait = s.timeout * 5 + s.repair_window;
        let inner = Arc::new(Inner::new(local, conn, nodes, self.settings, &tags));
        let task = tokio::spawn(replica::replicate(inner.clone()));
        let bl = RedisBlacklist { inner, task };
        let _ = tokio::time::timeout(wait, bl.inner.wait_synced()).await;
        Ok(bl)
    }
}

/// Revocations shared through Redis, checked from a local replica.
///
/// `revoke_*` writes to Redis (one Lua script: `SET … PXAT` and `PUBLISH`, atomic)
/// and returns once Redis acknowledged it. Every instance's replica applies the
/// message; a full resync at start, after every reconnect and every `resync_every`
/// bounds how long a lost message can hide a revocation. `check` reads only local
/// memory and answers by [`FailurePolicy`] when freshness cannot be proven.
#[derive(Debug)]
pub struct RedisBlacklist {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for RedisBlacklist {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RedisBlacklist {
    /// A builder with the defaults.
    pub fn builder() -> RedisBlacklistBuilder {
        RedisBlacklistBuilder::default()
    }

    /// Revokes one token by `(iss, jti)`; returns once Redis acknowledged the write.
    /// Applied locally first, so this instance refuses it even if Redis then fails.
    pub async fn revoke_token(&self, token: &TokenIdentity) -> Result<(), Error> {
        let now = self.inner.local.now();
        if let Some(r) = self.inner.local.config.token_record(token, now)? {
            self.inner.local.apply(&r)?;
            self.inner.write(&r).await?;
        }
        Ok(())
    }

    /// Revokes every token of `(issuer, subject)` with `iat <= issued_before`.
    pub async fn revoke_user(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: Timestamp,
    ) -> Result<(), Error> {
        let scope = Scope::User {
            issuer: issuer.into(),
            subject: subject.into(),
        };
        self.revoke_scope(scope, issued_before).await
    }

    /// Revokes every token of `issuer` with `iat <= issued_before`.
    pub async fn revoke_issuer(&self, issuer: &str, issued_before: Timestamp) -> Result<(), Error> {
        let scope = Scope::Issuer {
            issuer: issuer.into(),
        };
        self.revoke_scope(scope, issued_before).await
    }

    /// Revokes every token with `iat <= issued_before`.
    pub async fn revoke_all(&self, issued_before: Timestamp) -> Result<(), Error> {
        self.revoke_scope(Scope::Global, issued_before).await
    }

    async fn revoke_scope(&self, scope: Scope, t: Timestamp) -> Result<(), Error> {
        let r = self
            .inner
            .local
            .config
            .mark_record(scope, t, self.inner.local.now())?;
        self.inner.local.apply(&r)?;
        self.inner.write(&r).await
    }

    /// The answer from the local replica, under `policy`. No I/O.
    pub fn check(&self, token: &TokenIdentity, policy: FailurePolicy) -> RevocationStatus {
        let local = &self.inner.local;
        let status = local.check(token);
        if status == RevocationStatus::Revoked {
            return status;
        }
        let age = self.freshness();
        let fresh = age.is_some_and(|a| a <= self.inner.settings.fresh_within);
        if fresh {
            return status;
        }
        let allowed = match policy {
            FailurePolicy::Closed => false,
            FailurePolicy::Open => true,
            FailurePolicy::Stale { max_age } => age.is_some_and(|a| a <= max_age),
        };
        if allowed {
            bump(&local.stats.stale_allowed);
            tracing::debug!(?age, "answering from a stale replica view");
            status
        } else {
            bump(&local.stats.stale_unknown);
            RevocationStatus::Unknown
        }
    }

    /// Time since the replica was last proven in sync, on the clock's monotonic
    /// reading (`None`: never yet, since Redis was found to have lost data, or it
    /// dropped a revocation it could not hold because it is full). A wall-clock step
    /// does not change it.
    pub fn freshness(&self) -> Option<Duration> {
        self.inner.freshness()
    }

    /// Asks Redis directly: the token's jti key and its subject's watermark key (same
    /// hash tag, one `MGET`), combined with the replica's issuer and global
    /// watermarks. For callers that want the store's answer rather than the replica's.
    /// The epoch keys are read after the `MGET` (standalone: in the same round trip;
    /// cluster: one `GET` per node after it): `Unknown` (counted `stale_unknown`) if
    /// Redis lost data since this replica settled, or while it has not settled.
    pub async fn check_remote(&self, token: &TokenIdentity) -> Result<RevocationStatus, Error> {
        let inner = &self.inner;
        let local = inner.local.check(token);
        if local == RevocationStatus::Revoked {
            return Ok(local);
        }
        let unknown = || {
            bump(&inner.local.stats.stale_unknown);
            Ok(RevocationStatus::Unknown)
        };
        let Some(known) = inner.settled_epochs() else {
            return unknown();
        };
        let sub = token.subject.as_deref().unwrap_or("");
        let prefix = &inner.settings.prefix;
        let mut mget = redis::cmd("MGET");
        mget.arg(token_key(
            prefix,
            &token.issuer,
            sub,
            token.jti.as_deref().unwrap_or(""),
        ))
        .arg(user_key(prefix, &token.issuer, sub));
        let mut cmds = vec![mget];
        // After the MGET: an epoch still there means nothing was lost before it ran.
        for k in &inner.epoch_keys {
            let mut get = redis::cmd("GET");
            get.arg(k);
            cmds.push(get);
        }
        let timeout = inner.settings.timeout;
        let (values, epochs): (Vec<Option<String>>, Vec<Option<String>>) = {
            let mut replies = tokio::time::timeout(timeout, inner.conn.many(cmds, true))
                .await
                .map_err(|_| Error::Timeout(timeout))??;
            let first = if replies.is_empty() {
                redis::Value::Nil
            } else {
                replies.remove(0)
            };
            let values = redis::from_redis_value(first).map_err(redis::RedisError::from)?;
            let epochs = replies
                .into_iter()
                .map(redis::from_redis_value)
                .collect::<Result<_, _>>()
                .map_err(redis::RedisError::from)?;
            (values, epochs)
        };
        if epochs.len() != known.len()
            || epochs
                .iter()
                .zip(&known)
                .any(|(e, k)| e.as_ref() != Some(k))
        {
            inner.lost("check_remote");
            return unknown();
        }
        if token.jti.is_some() && values.first().is_some_and(Option::is_some) {
            return Ok(RevocationStatus::Revoked);
        }
        if let Some(Some(Record::Mark { secs, .. })) =
            values.get(1).map(|v| v.as_deref().and_then(decode))
            && token.issued_at.is_none_or(|iat| iat <= secs)
            && token.subject.is_some()
        {
            return Ok(RevocationStatus::Revoked);
        }
        Ok(RevocationStatus::NotRevoked)
    }

    /// Forces a full resync now; returns (records read, records re-written to Redis).
    pub async fn resync(&self) -> Result<(usize, usize), Error> {
        let synced = self.inner.resync().await?;
        self.inner.settle(&synced, None);
        Ok((synced.read, synced.repaired))
    }

    /// Entries in the local replica.
    pub fn len(&self) -> usize {
        self.inner.local.len()
    }

    /// Whether the local replica is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.local.stats.snapshot()
    }
}

/// The local answer under the builder's [`FailurePolicy`] (default `Closed`).
impl RevocationCheck for RedisBlacklist {
    fn check_local(&self, token: &TokenIdentity) -> Option<RevocationStatus> {
        Some(self.check(token, self.inner.settings.failure_policy))
    }
}

#[async_trait]
impl TokenRevoker for RedisBlacklist {
    async fn revoke_token(&self, token: &TokenIdentity) -> Result<(), palisade_core_traits::Error> {
        Ok(RedisBlacklist::revoke_token(self, token).await?)
    }

    async fn revoke_user(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: Timestamp,
    ) -> Result<(), palisade_core_traits::Error> {
        Ok(RedisBlacklist::revoke_user(self, issuer, subject, issued_before).await?)
    }
}

#[cfg(test)]
mod tests;
