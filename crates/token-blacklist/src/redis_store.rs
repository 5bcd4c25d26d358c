//! The shared store on Redis / Redis Cluster, and the local replica fed by pub/sub.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use palisade_core_traits::{
    Clock, RevocationCheck, RevocationStatus, SystemClock, Timestamp, TokenIdentity, TokenRevoker,
    async_trait,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind};
use tokio::task::JoinHandle;

use crate::model::{Local, Record, Scope, bump};
use crate::wire::{decode, encode};
use crate::{Config, Error, StatsSnapshot};

const REVOKE_SCRIPT: &str = include_str!("revoke.lua");

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
}

/// Builds a [`RedisBlacklist`].
#[derive(Debug)]
pub struct RedisBlacklistBuilder {
    config: Config,
    prefix: String,
    timeout: Duration,
    heartbeat: Duration,
    resync_every: Duration,
    fresh_within: Duration,
    failure_policy: FailurePolicy,
    clock: Arc<dyn Clock>,
}

impl Default for RedisBlacklistBuilder {
    fn default() -> Self {
        RedisBlacklistBuilder {
            config: Config::default(),
            prefix: "palisade:tb".into(),
            timeout: Duration::from_secs(1),
            heartbeat: Duration::from_millis(100),
            resync_every: Duration::from_secs(60),
            fresh_within: Duration::from_secs(1),
            failure_policy: FailurePolicy::Closed,
            clock: Arc::new(SystemClock),
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
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// Per-call timeout for revocations and resync reads (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often the replica proves it is in sync (default 100 ms): it publishes a
    /// heartbeat and, when its own heartbeat comes back on the subscription, every
    /// revocation acknowledged before it was sent has been applied.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// Full resync as a backstop even without a reconnect (default 60 s).
    pub fn resync_every(mut self, every: Duration) -> Self {
        self.resync_every = every;
        self
    }

    /// The freshness [`FailurePolicy::Closed`] requires (default 1 s).
    pub fn fresh_within(mut self, bound: Duration) -> Self {
        self.fresh_within = bound;
        self
    }

    /// What [`RevocationCheck::check_local`] (the core-traits contract) answers when
    /// the replica cannot prove it is fresh (default [`FailurePolicy::Closed`]).
    /// [`RedisBlacklist::check`] takes its policy per call instead.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// The clock for lifetimes and freshness.
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
        for (name, d) in [
            ("timeout", self.timeout),
            ("heartbeat", self.heartbeat),
            ("resync_every", self.resync_every),
            ("fresh_within", self.fresh_within),
        ] {
            if d.is_zero() {
                return Err(Error::InvalidConfig(format!("{name} must be above zero")));
            }
        }
        Ok(())
    }

    /// Connects to a standalone Redis, starts the replica, and returns once its first
    /// resync is done (or the timeout passes: then checks answer by policy until it is).
    pub async fn connect(self, url: &str) -> Result<RedisBlacklist, Error> {
        self.validate()?;
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = tokio::time::timeout(
            self.timeout,
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| Error::Timeout(self.timeout))??;
        self.start(Conn::Standalone(conn), vec![url.to_owned()])
            .await
    }

    /// Connects to a Redis Cluster. `urls` must name every primary: the resync
    /// SCANs each of them; the subscription uses the first that answers (Redis
    /// Cluster forwards every PUBLISH to every node).
    pub async fn connect_cluster(self, urls: &[String]) -> Result<RedisBlacklist, Error> {
        self.validate()?;
        let client = redis::cluster::ClusterClient::builder(urls.to_vec())
            .connection_timeout(self.timeout)
            .response_timeout(self.timeout)
            .build()?;
        let conn = tokio::time::timeout(self.timeout, client.get_async_connection())
            .await
            .map_err(|_| Error::Timeout(self.timeout))??;
        self.start(Conn::Cluster(conn), urls.to_vec()).await
    }

    async fn start(self, conn: Conn, nodes: Vec<String>) -> Result<RedisBlacklist, Error> {
        let local = Local::new(self.config, self.clock.clone())?;
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            self.clock.now().as_unix_nanos(),
        );
        let inner = Arc::new(Inner {
            local,
            conn,
            nodes,
            channel: format!("{}:events", self.prefix),
            prefix: self.prefix,
            script_sha: redis::Script::new(REVOKE_SCRIPT).get_hash().to_owned(),
            timeout: self.timeout,
            heartbeat: self.heartbeat,
            resync_every: self.resync_every,
            fresh_within: self.fresh_within,
            failure_policy: self.failure_policy,
            instance: format!("{:016x}", fnv(&[&seed.to_string()])),
            last_sync: AtomicU64::new(0),
            incomplete: AtomicBool::new(false),
            synced: tokio::sync::Notify::new(),
        });
        let task = tokio::spawn(replicate(inner.clone()));
        let bl = RedisBlacklist { inner, task };
        let _ = tokio::time::timeout(self.timeout * 5, bl.inner.wait_synced()).await;
        Ok(bl)
    }
}

/// What a completed resync did.
#[derive(Debug)]
struct Synced {
    read: usize,
    repaired: usize,
    /// Every record read is held (the local store was not full).
    complete: bool,
    /// Monotonic ns when it started: every revocation acknowledged before is applied.
    started: u64,
}

#[derive(Debug)]
struct Inner {
    local: Local,
    conn: Conn,
    nodes: Vec<String>,
    prefix: String,
    channel: String,
    script_sha: String,
    timeout: Duration,
    heartbeat: Duration,
    resync_every: Duration,
    fresh_within: Duration,
    failure_policy: FailurePolicy,
    instance: String,
    /// `Clock::monotonic` ns + 1 as of which every acknowledged revocation is applied
    /// (0: never). Monotonic, so a wall-clock step cannot make an old proof look new.
    last_sync: AtomicU64,
    /// Set when a revocation could not be held locally (capacity): never fresh then.
    incomplete: AtomicBool,
    synced: tokio::sync::Notify,
}

impl Inner {
    async fn wait_synced(&self) {
        loop {
            let notified = self.synced.notified();
            if self.last_sync.load(Ordering::Acquire) != 0 {
                return;
            }
            notified.await;
        }
    }

    /// Applies a record; if the replica cannot hold it (full), it can no longer prove
    /// it is fresh until a resync holds everything: checks then answer by policy.
    fn hold(&self, r: &Record) -> bool {
        match self.local.apply(r) {
            Ok(_) => true,
            Err(e) => {
                self.incomplete.store(true, Ordering::Release);
                tracing::error!(error = %e, "replica cannot hold a revocation; not fresh until it can");
                false
            }
        }
    }

    /// The monotonic time now, in ns (the unit of `last_sync` and of heartbeats).
    fn mono_nanos(&self) -> u64 {
        u64::try_from(self.local.clock.monotonic().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Every acknowledged revocation up to monotonic `as_of` (ns) is applied.
    fn confirm_sync(&self, as_of: u64) {
        self.last_sync
            .fetch_max(as_of.saturating_add(1), Ordering::AcqRel);
        self.synced.notify_waiters();
    }

    /// Writes a record to Redis (EVALSHA, EVAL after NOSCRIPT), within the timeout.
    async fn write(&self, r: &Record) -> Result<(), Error> {
        let k = key(&self.prefix, r);
        let rec = encode(r);
        let build = |name: &str, body: &str| {
            let mut cmd = redis::cmd(name);
            cmd.arg(body).arg(1).arg(&k).arg(&self.channel).arg(&rec);
            cmd
        };
        let call = async {
            match self
                .conn
                .query::<redis::Value>(&build("EVALSHA", &self.script_sha))
                .await
            {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    self.conn
                        .query::<redis::Value>(&build("EVAL", REVOKE_SCRIPT))
                        .await
                }
                other => other,
            }
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| Error::Timeout(self.timeout))??;
        Ok(())
    }

    /// Applies one pub/sub message. Returns the send time of our own heartbeat: every
    /// message published before it has been applied. It is our own monotonic reading,
    /// never compared with another host's clock.
    fn apply_message(&self, payload: &[u8]) -> Option<u64> {
        let Ok(text) = std::str::from_utf8(payload) else {
            tracing::warn!("ignoring a non-UTF-8 message on the revocation channel");
            return None;
        };
        if let Some(rest) = text.strip_prefix("H ") {
            let (id, sent) = rest.split_once(' ')?;
            return if id == self.instance {
                sent.parse().ok()
            } else {
                None
            };
        }
        match decode(text) {
            Some(r) => {
                bump(&self.local.stats.messages);
                self.hold(&r);
            }
            None => tracing::warn!("ignoring a malformed message on the revocation channel"),
        }
        None
    }

    async fn publish_heartbeat(&self) {
        let msg = format!("H {} {}", self.instance, self.mono_nanos());
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(msg);
        let _ = tokio::time::timeout(self.timeout, self.conn.query::<i64>(&cmd)).await;
    }

    /// Once a resync is done: proven in sync as of monotonic `as_of` (ns), unless the
    /// replica could not hold every record.
    fn settle(&self, synced: &Synced, as_of: u64) {
        if synced.complete {
            self.incomplete.store(false, Ordering::Release);
            self.confirm_sync(as_of);
        }
    }

    /// Reads every record from every node, applies them, and re-writes the local
    /// records Redis no longer has (it restarted without persistence, or failed over
    /// to a replica that missed them). The caller settles the outcome.
    async fn resync(&self) -> Result<Synced, Error> {
        let started = self.mono_nanos();
        let pattern = format!("{}:*", self.prefix);
        let mut complete = true;
        let mut seen: HashSet<String> = HashSet::new();
        for url in &self.nodes {
            let client = redis::Client::open(url.as_str())?;
            let mut c =
                tokio::time::timeout(self.timeout, client.get_multiplexed_async_connection())
                    .await
                    .map_err(|_| Error::Timeout(self.timeout))??;
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = tokio::time::timeout(
                    self.timeout,
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut c),
                )
                .await
                .map_err(|_| Error::Timeout(self.timeout))??;
                let keys: Vec<String> = keys.into_iter().filter(|k| k != &self.channel).collect();
                if !keys.is_empty() {
                    let mut pipe = redis::pipe();
                    for k in &keys {
                        pipe.get(k);
                    }
                    let values: Vec<Option<String>> =
                        tokio::time::timeout(self.timeout, pipe.query_async(&mut c))
                            .await
                            .map_err(|_| Error::Timeout(self.timeout))??;
                    for (k, v) in keys.into_iter().zip(values) {
                        if let Some(r) = v.as_deref().and_then(decode) {
                            complete &= self.hold(&r);
                            seen.insert(k);
                        }
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        let now_ms = self.local.now().as_unix_nanos() / 1_000_000;
        let mut repaired = 0;
        for r in self.local.records() {
            if r.expires_ms() > now_ms && !seen.contains(&key(&self.prefix, &r)) {
                self.write(&r).await?;
                repaired += 1;
            }
        }
        if repaired > 0 {
            tracing::warn!(
                repaired,
                "redis had lost revocations this replica holds; re-written"
            );
            self.local
                .stats
                .repaired
                .fetch_add(repaired as u64, Ordering::Relaxed);
        }
        bump(&self.local.stats.resyncs);
        Ok(Synced {
            read: seen.len(),
            repaired,
            complete,
            started,
        })
    }

    async fn subscribe(&self) -> RedisResult<redis::aio::PubSub> {
        let mut last = None;
        for url in &self.nodes {
            let attempt = async {
                let mut ps = redis::Client::open(url.as_str())?
                    .get_async_pubsub()
                    .await?;
                ps.subscribe(&self.channel).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(ps)) => return Ok(ps),
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(redis::RedisError::from((
                        ErrorKind::Io,
                        "subscribe timed out",
                    )))
                }
            }
        }
        Err(last.unwrap_or_else(|| redis::RedisError::from((ErrorKind::Client, "no node URL"))))
    }
}

/// A resync running on its own task, aborted when dropped (with the session or the
/// blacklist that started it).
struct Job(JoinHandle<Result<Synced, Error>>);

impl Job {
    fn spawn(inner: &Arc<Inner>) -> Job {
        let inner = inner.clone();
        Job(tokio::spawn(async move { inner.resync().await }))
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running job's outcome, as text for the log; never ready without a job.
async fn finished(job: &mut Option<Job>) -> Result<Synced, String> {
    match job {
        Some(j) => match (&mut j.0).await {
            Ok(Ok(synced)) => Ok(synced),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("resync task ended: {e}")),
        },
        None => std::future::pending().await,
    }
}

/// The replica's task: subscribe, then apply messages and heartbeats while resyncs
/// run beside it on their own task (at once, then every `resync_every`); on any
/// failure start over. Subscribing before the catch-up resync means nothing published
/// during it is missed; running it beside the loop means a resync of a large store
/// never stops heartbeats from proving freshness. Records only ever widen (set union,
/// highest watermark, latest expiry), so a message applied before or after a resync
/// read the same key ends in the same state.
async fn replicate(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut pubsub = match inner.subscribe().await {
            Ok(ps) => ps,
            Err(e) => {
                tracing::warn!(error = %e, "revocation subscription failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let mut stream = pubsub.on_message();
        let mut job = Some(Job::spawn(&inner));
        // Our heartbeats prove freshness only once this subscription's catch-up resync
        // is done (what was published before we subscribed is found by the scan, not
        // delivered); until then the latest one waits here.
        let mut caught_up = false;
        let mut heard: u64 = 0;
        let mut heartbeat = tokio::time::interval(inner.heartbeat);
        let mut resync = tokio::time::interval(inner.resync_every);
        resync.reset();
        let mut open_seen = inner.local.stats.stale_allowed.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => match inner.apply_message(msg.get_payload_bytes()) {
                        Some(sent) if caught_up => inner.confirm_sync(sent),
                        Some(sent) => heard = heard.max(sent),
                        None => {}
                    },
                    None => {
                        tracing::warn!("revocation subscription lost; resubscribing and resyncing");
                        break;
                    }
                },
                _ = heartbeat.tick() => {
                    inner.publish_heartbeat().await;
                    let open = inner.local.stats.stale_allowed.load(Ordering::Relaxed);
                    if open > open_seen {
                        tracing::warn!(checks = open - open_seen, "checks answered from a stale replica view");
                        open_seen = open;
                    }
                    inner.local.sweep();
                }
                _ = resync.tick(), if job.is_none() => job = Some(Job::spawn(&inner)),
                outcome = finished(&mut job) => {
                    job = None;
                    resync.reset();
                    let synced = match outcome {
                        Ok(synced) => synced,
                        Err(e) => {
                            tracing::warn!(error = %e, "revocation resync failed; resubscribing");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                            break;
                        }
                    };
                    inner.settle(&synced, synced.started.max(heard));
                    if !caught_up {
                        tracing::info!("revocation replica in sync");
                        caught_up = true;
                        backoff = Duration::from_millis(50);
                    }
                }
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
        let fresh = age.is_some_and(|a| a <= self.inner.fresh_within);
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
    /// reading (`None`: never yet, or it dropped a revocation it could not hold
    /// because it is full). A wall-clock step does not change it.
    pub fn freshness(&self) -> Option<Duration> {
        if self.inner.incomplete.load(Ordering::Acquire) {
            return None;
        }
        match self.inner.last_sync.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(
                self.inner.mono_nanos().saturating_sub(ns - 1),
            )),
        }
    }

    /// Asks Redis directly, one round trip: the token's jti key and its subject's
    /// watermark key (same hash tag), combined with the replica's issuer and global
    /// watermarks. For callers that want the store's answer rather than the replica's.
    pub async fn check_remote(&self, token: &TokenIdentity) -> Result<RevocationStatus, Error> {
        let local = self.inner.local.check(token);
        if local == RevocationStatus::Revoked {
            return Ok(local);
        }
        let sub = token.subject.as_deref().unwrap_or("");
        let prefix = &self.inner.prefix;
        let mut cmd = redis::cmd("MGET");
        cmd.arg(token_key(
            prefix,
            &token.issuer,
            sub,
            token.jti.as_deref().unwrap_or(""),
        ))
        .arg(user_key(prefix, &token.issuer, sub));
        let values: Vec<Option<String>> =
            tokio::time::timeout(self.inner.timeout, self.inner.conn.query(&cmd))
                .await
                .map_err(|_| Error::Timeout(self.inner.timeout))??;
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
        self.inner.settle(&synced, synced.started);
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
        Some(self.check(token, self.inner.failure_policy))
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
