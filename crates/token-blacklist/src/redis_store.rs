//! The shared store on Redis / Redis Cluster, and the local replica fed by pub/sub.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use palisade_core_traits::{
    RevocationCheck, RevocationStatus, Timestamp, TokenIdentity, TokenRevoker, async_trait,
};
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, RedisResult, ScriptInvocation};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::model::{Record, Scope};
use crate::wire::decode;
use crate::{Error, Stats};

mod builder;
mod replica;
mod resync;
pub use builder::RedisBlacklistBuilder;
pub(crate) use builder::{check_durations, check_prefix, check_region, ensure_crypto_provider};
use replica::Inner;
pub(crate) use replica::{REVOKE_LUA, silence_bound};
pub(crate) use resync::{REPAIR_BATCH, Scan, node, timed, write_records};

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

impl FailurePolicy {
    /// For logs and metric labels.
    fn name(self) -> &'static str {
        match self {
            FailurePolicy::Closed => "closed",
            FailurePolicy::Open => "open",
            FailurePolicy::Stale { .. } => "stale",
        }
    }
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
pub(crate) fn key(prefix: &str, r: &Record) -> String {
    match r {
        Record::Token {
            issuer,
            subject,
            jti,
            ..
        } => token_key(prefix, issuer, subject, jti),
        Record::Mark { scope, .. } => mark_key(prefix, scope),
    }
}

fn mark_key(prefix: &str, scope: &Scope) -> String {
    match scope {
        Scope::User { issuer, subject } => user_key(prefix, issuer, subject),
        Scope::Issuer { issuer } => issuer_key(prefix, issuer),
        Scope::Global => global_key(prefix),
    }
}

fn issuer_key(prefix: &str, issuer: &str) -> String {
    format!("{prefix}:{{{:016x}}}:i:{issuer}", fnv(&[issuer, ""]))
}

fn global_key(prefix: &str) -> String {
    format!("{prefix}:{{g}}:g")
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
pub(crate) enum Conn {
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
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        match self.clone() {
            Conn::Standalone(mut c) => cmd.query_async(&mut c).await,
            Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
        }
    }

    /// Runs a script: `EVALSHA`, and after `NOSCRIPT` `SCRIPT LOAD` and `EVALSHA`
    /// again (redis-rs's `Script`, which routes the load to every primary on a cluster).
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        script: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self.clone() {
            Conn::Standalone(mut c) => script.invoke_async(&mut c).await,
            Conn::Cluster(mut c) => script.invoke_async(&mut c).await,
        }
    }

    /// Runs `cmds`, replies in order. Standalone: one pipeline (one round trip,
    /// executed in order). Cluster: each on its key's node (a cluster pipeline must
    /// stay in one slot), one after the other if `ordered`, else up to 64 at a time.
    pub(crate) async fn many(
        &self,
        cmds: Vec<Cmd>,
        ordered: bool,
    ) -> RedisResult<Vec<redis::Value>> {
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
            self.revoke_record(&r, "token").await?;
        }
        Ok(())
    }

    async fn revoke_record(&self, r: &Record, scope: &'static str) -> Result<(), Error> {
        let local = &self.inner.local;
        // A full replica still shares the revocation through Redis (every other
        // replica holds it), stops calling itself fresh, and answers `Full`.
        let full = match local.apply(r) {
            Ok(_) => None,
            Err(e @ Error::Full { .. }) => {
                self.inner.cannot_hold(&e);
                Some(e)
            }
            Err(e) => return Err(e),
        };
        local.stats.revocation(scope);
        self.inner
            .write(r)
            .instrument(tracing::debug_span!("token_blacklist.revoke", scope))
            .await?;
        full.map_or(Ok(()), Err)
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
        let name = scope.name();
        let r = self
            .inner
            .local
            .config
            .mark_record(scope, t, self.inner.local.now())?;
        self.revoke_record(&r, name).await
    }

    /// The answer from the local replica, under `policy`. No I/O.
    pub fn check(&self, token: &TokenIdentity, policy: FailurePolicy) -> RevocationStatus {
        let local = &self.inner.local;
        let status = local.lookup(token);
        let answer = if status == RevocationStatus::Revoked {
            status
        } else {
            self.by_freshness(status, policy)
        };
        local.stats.check(answer);
        answer
    }

    /// A miss answered by how fresh the replica is, under `policy`.
    #[inline]
    fn by_freshness(&self, status: RevocationStatus, policy: FailurePolicy) -> RevocationStatus {
        let age = self.freshness();
        if age.is_some_and(|a| a <= self.inner.settings.fresh_within) {
            return status;
        }
        let allowed = match policy {
            FailurePolicy::Closed => false,
            FailurePolicy::Open => true,
            FailurePolicy::Stale { max_age } => age.is_some_and(|a| a <= max_age),
        };
        self.inner.local.stats.stale(policy.name(), allowed);
        tracing::debug!(
            policy = policy.name(),
            allowed,
            age_ms = age.map(|a| a.as_millis() as u64),
            "replica not proven fresh: answering by policy"
        );
        if allowed {
            status
        } else {
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
    /// hash tag, one `MGET`), then its issuer's and the global watermark (a stale
    /// replica may miss them: this is the answer a caller asks when the replica
    /// cannot give one), each combined with the replica's. For callers that want the
    /// store's answer rather than the replica's.
    /// The epoch keys are read after the `MGET` (standalone: in the same round trip;
    /// cluster: one `GET` per node after it): `Unknown` (counted `stale_unknown`) if
    /// Redis lost data since this replica settled, or while it has not settled, or
    /// (with `relayed_from`) while a relay into this Redis is not proven within
    /// `fresh_within`.
    pub async fn check_remote(&self, token: &TokenIdentity) -> Result<RevocationStatus, Error> {
        self.remote(token)
            .instrument(tracing::debug_span!("token_blacklist.check_remote"))
            .await
    }

    async fn remote(&self, token: &TokenIdentity) -> Result<RevocationStatus, Error> {
        let inner = &self.inner;
        let local = inner.local.lookup(token);
        if local == RevocationStatus::Revoked {
            return Ok(local);
        }
        let unknown = || {
            inner.local.stats.stale("check_remote", false);
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
        // Other hash tags (a cluster keeps them elsewhere): one `GET` each.
        for key in [issuer_key(prefix, &token.issuer), global_key(prefix)] {
            let mut get = redis::cmd("GET");
            get.arg(key);
            cmds.push(get);
        }
        // After the MGET: an epoch still there means nothing was lost before it ran.
        for k in &inner.epoch_keys {
            let mut get = redis::cmd("GET");
            get.arg(k);
            cmds.push(get);
        }
        let timeout = inner.settings.timeout;
        let (values, marks, epochs): (Vec<Option<String>>, Vec<Option<String>>, Vec<_>) = {
            let replies = tokio::time::timeout(timeout, inner.conn.many(cmds, true))
                .await
                .map_err(|_| Error::Timeout(timeout))??;
            let mut replies = replies.into_iter();
            let first = replies.next().unwrap_or(redis::Value::Nil);
            let values = redis::from_redis_value(first).map_err(redis::RedisError::from)?;
            let mut rest = replies
                .map(redis::from_redis_value::<Option<String>>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(redis::RedisError::from)?;
            let epochs = rest.split_off(rest.len().min(2));
            (values, rest, epochs)
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
        // The subject's watermark (only a token that names its subject is under one),
        // its issuer's, the global one.
        let user_mark = values.get(1).filter(|_| token.subject.is_some());
        for mark in user_mark.into_iter().chain(&marks).flatten() {
            if let Some(Record::Mark { secs, .. }) = decode(mark)
                && token.issued_at.is_none_or(|iat| iat <= secs)
            {
                return Ok(RevocationStatus::Revoked);
            }
        }
        // This Redis holds other regions' revocations only as far as their relays
        // have proven themselves: not at all during a partition.
        if !inner.regions_fresh() {
            return unknown();
        }
        Ok(RevocationStatus::NotRevoked)
    }

    /// Forces a full resync now; returns (records read, records re-written to Redis).
    pub async fn resync(&self) -> Result<(usize, usize), Error> {
        let synced = self.inner.resync_traced().await?;
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
    pub fn stats(&self) -> Stats {
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
