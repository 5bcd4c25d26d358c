//! The local replica's machinery: messages and heartbeats, resyncs, and the epoch
//! that tells a replica Redis lost data.
//!
//! **Epochs.** Every node holds an epoch key (no TTL) with a random id. A replica
//! remembers the ids it settled under; at every heartbeat (and resync, and
//! `check_remote`) it reads them again. A missing or changed id means Redis lost data
//! (`FLUSHALL`, a restart without persistence, eviction): the replica fails closed
//! until the data is repaired. Whoever finds an epoch missing creates a new one with a
//! settle marker; the creator holds the marker for the repair window (measured on its
//! monotonic clock, so live replicas can notice the change and restore what they
//! hold), and no replica settles while a marker or the repair lock exists.
//!
//! **Repair once.** A replica that holds records Redis lacks takes the repair lock
//! (`SET NX PX`, renewed per batch; a replica that noticed a loss takes it before it
//! scans, so nobody settles while it restores); under it, it re-checks which keys are
//! still missing and writes only those. A replica that finds the lock taken waits for
//! it to be released and resyncs again, so after a loss the records are re-written
//! about once, not once per replica.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, FromRedisValue, RedisResult, ServerErrorKind};
use tokio::task::JoinHandle;

use super::{Conn, FailurePolicy, fnv, key};
use crate::Error;
use crate::model::{Local, Record, bump};
use crate::wire::{decode, encode};

/// A Lua script and its SHA1 (for EVALSHA).
#[derive(Debug)]
pub(super) struct Lua {
    body: &'static str,
    sha: String,
}

impl Lua {
    fn new(body: &'static str) -> Lua {
        Lua {
            body,
            sha: redis::Script::new(body).get_hash().to_owned(),
        }
    }
}

/// Records re-written per pipeline (and per renewal of the repair lock).
const REPAIR_BATCH: usize = 1000;
/// A settle marker's TTL, in repair windows.
const MARKER_BACKSTOP: u32 = 10;
/// Hash tags tried per node to find one the node serves (cluster).
const PROBE_LIMIT: u32 = 1 << 17;

/// Settings of the replica that the builder validated.
#[derive(Debug)]
pub(super) struct Settings {
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) heartbeat: Duration,
    pub(super) resync_every: Duration,
    pub(super) fresh_within: Duration,
    pub(super) repair_window: Duration,
    pub(super) failure_policy: FailurePolicy,
    pub(super) allow_eviction_policy: bool,
}

/// What this replica knows about the store's epoch.
#[derive(Debug, Default)]
struct SyncState {
    /// The epoch ids (one per node) this replica settled under; `None` before its
    /// first settled resync.
    epochs: Option<Vec<String>>,
    /// Proven complete against `epochs`; false from a detected loss (and before the
    /// first resync) until a resync settles.
    settled: bool,
    /// Losses detected so far: a resync settles only if none was detected since it
    /// read the epochs.
    losses: u64,
    /// The next resync must repair, so it runs as soon as no repair lock is held;
    /// otherwise it waits for the settle markers to go too.
    repair_first: bool,
    /// Settle markers we created: (key, id, monotonic ns at creation).
    markers: Vec<(String, String, u64)>,
}

/// Our heartbeat as it came back: when it was sent (our monotonic ns) and the digest
/// of the epoch ids it read just before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Heard {
    sent: u64,
    epochs: u64,
}

/// What a completed resync found.
#[derive(Debug)]
pub(super) struct Synced {
    pub(super) read: usize,
    pub(super) repaired: usize,
    /// Every record read is held (the local store was not full).
    complete: bool,
    /// Monotonic ns when it started: every revocation acknowledged before is applied.
    started: u64,
    /// `SyncState::losses` after it read the epochs.
    losses: u64,
    epochs: Vec<String>,
    /// It found records Redis lacks and could not write them (the lock was taken).
    unrepaired: bool,
    /// At its end a settle marker or the repair lock existed.
    unsettled_store: bool,
}

pub(super) struct Inner {
    pub(super) local: Local,
    pub(super) conn: Conn,
    nodes: Vec<String>,
    pub(super) settings: Settings,
    pub(super) channel: String,
    revoke: Lua,
    epoch: Lua,
    lease: Lua,
    instance: String,
    /// Per node: the epoch key and its settle marker (one hash tag the node serves).
    pub(super) epoch_keys: Vec<String>,
    marker_keys: Vec<String>,
    lock_key: String,
    /// `Clock::monotonic` ns + 1 as of which every acknowledged revocation is applied
    /// (0: never, or a loss since). Monotonic, so a wall-clock step cannot make an old
    /// proof look new.
    last_sync: AtomicU64,
    /// Set when a revocation could not be held locally (capacity): never fresh then.
    pub(super) incomplete: AtomicBool,
    state: Mutex<SyncState>,
    synced: tokio::sync::Notify,
    ids: AtomicU64,
}

// By hand: node URLs may carry a password.
impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("conn", &self.conn)
            .field("nodes", &self.nodes.len())
            .field("settings", &self.settings)
            .field("freshness", &self.freshness())
            .field("state", &*self.state())
            .finish_non_exhaustive()
    }
}

/// A connection to one node (resync scans and probes run per node).
pub(super) async fn node(url: &str, timeout: Duration) -> Result<MultiplexedConnection, Error> {
    let client = redis::Client::open(url)?;
    tokio::time::timeout(timeout, client.get_multiplexed_async_connection())
        .await
        .map_err(|_| Error::Timeout(timeout))?
        .map_err(Error::from)
}

async fn timed<T>(timeout: Duration, f: impl Future<Output = RedisResult<T>>) -> Result<T, Error> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| Error::Timeout(timeout))?
        .map_err(Error::from)
}

/// The node's `maxmemory-policy`: `CONFIG GET`, or `INFO memory` where an ACL denies
/// CONFIG (or it is renamed).
async fn eviction_policy(
    c: &mut MultiplexedConnection,
    timeout: Duration,
) -> Result<String, Error> {
    let mut config = redis::cmd("CONFIG");
    config.arg("GET").arg("maxmemory-policy");
    if let Ok(Ok(pair)) = tokio::time::timeout(timeout, config.query_async::<Vec<String>>(c)).await
        && let Some(policy) = pair.into_iter().nth(1)
    {
        return Ok(policy);
    }
    let mut info = redis::cmd("INFO");
    info.arg("memory");
    let text: String = timed(timeout, info.query_async(c)).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(|p| p.trim().to_owned())
        .ok_or_else(|| Error::UnsafeEvictionPolicy {
            policy: "not reported by CONFIG GET or INFO memory".into(),
        })
}

/// Refuses a node whose policy can evict revocation keys, unless allowed (counted).
/// Every revocation key has a TTL, so every `volatile-*` and `allkeys-*` policy may
/// evict one; only `noeviction` keeps them until they expire.
pub(super) async fn check_eviction_policy(
    c: &mut MultiplexedConnection,
    settings: &Settings,
    local: &Local,
) -> Result<(), Error> {
    let policy = match eviction_policy(c, settings.timeout).await {
        Ok(policy) if policy == "noeviction" => return Ok(()),
        Ok(policy) => policy,
        Err(e) if !settings.allow_eviction_policy => return Err(e),
        Err(_) => "unreadable".to_owned(),
    };
    if !settings.allow_eviction_policy {
        return Err(Error::UnsafeEvictionPolicy { policy });
    }
    bump(&local.stats.eviction_policy_allowed);
    tracing::warn!(
        %policy,
        "redis may evict revocation keys (maxmemory-policy is not noeviction); allowed by the builder"
    );
    Ok(())
}

/// The first meta-key hash tag `{e<i>}` that the node behind `c` serves: a cluster
/// node answers MOVED for the others; a standalone server takes `{e0}`.
pub(super) async fn probe_tag(
    c: &mut MultiplexedConnection,
    prefix: &str,
    timeout: Duration,
) -> Result<u32, Error> {
    for i in 0..PROBE_LIMIT {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(meta_key(prefix, i, "epoch"));
        match timed(timeout, cmd.query_async::<i64>(c)).await {
            Ok(_) => return Ok(i),
            Err(Error::Redis(e))
                if matches!(
                    e.kind(),
                    ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Error::InvalidConfig(format!(
        "a cluster node serves none of {PROBE_LIMIT} hash tags: is every URL a primary with slots?"
    )))
}

/// `prefix:{e<i>}:<what>`: the epoch, settle marker and repair lock keys.
pub(super) fn meta_key(prefix: &str, tag: u32, what: &str) -> String {
    format!("{prefix}:{{e{tag}}}:{what}")
}

/// A digest of epoch ids as read (a missing one is `""`; an id is never empty).
fn digest(ids: &[Option<String>]) -> u64 {
    let parts: Vec<&str> = ids.iter().map(|i| i.as_deref().unwrap_or("")).collect();
    fnv(&parts)
}

fn as_read(ids: &[String]) -> Vec<Option<String>> {
    ids.iter().cloned().map(Some).collect()
}

impl Inner {
    pub(super) fn new(
        local: Local,
        conn: Conn,
        nodes: Vec<String>,
        settings: Settings,
        tags: &[u32],
    ) -> Inner {
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            local.now().as_unix_nanos(),
        );
        let prefix = &settings.prefix;
        let keys = |what| tags.iter().map(|&t| meta_key(prefix, t, what)).collect();
        Inner {
            channel: format!("{prefix}:events"),
            epoch_keys: keys("epoch"),
            marker_keys: keys("settling"),
            lock_key: meta_key(prefix, tags.first().copied().unwrap_or(0), "repair"),
            revoke: Lua::new(include_str!("../revoke.lua")),
            epoch: Lua::new(include_str!("../epoch.lua")),
            lease: Lua::new(include_str!("../lease.lua")),
            instance: format!("{:016x}", fnv(&[&seed.to_string()])),
            local,
            conn,
            nodes,
            settings,
            last_sync: AtomicU64::new(0),
            incomplete: AtomicBool::new(false),
            state: Mutex::new(SyncState {
                repair_first: true,
                ..SyncState::default()
            }),
            synced: tokio::sync::Notify::new(),
            ids: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) async fn wait_synced(&self) {
        loop {
            let notified = self.synced.notified();
            if self.last_sync.load(Ordering::Acquire) != 0 {
                return;
            }
            notified.await;
        }
    }

    /// The monotonic time now, in ns (the unit of `last_sync` and of heartbeats).
    fn mono_nanos(&self) -> u64 {
        u64::try_from(self.local.clock.monotonic().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Time since the replica was last proven in sync, on the monotonic clock.
    pub(super) fn freshness(&self) -> Option<Duration> {
        if self.incomplete.load(Ordering::Acquire) {
            return None;
        }
        match self.last_sync.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(
                self.mono_nanos().saturating_sub(ns - 1),
            )),
        }
    }

    /// The epoch ids this replica is settled under, or `None` while it is not.
    pub(super) fn settled_epochs(&self) -> Option<Vec<String>> {
        let st = self.state();
        if st.settled { st.epochs.clone() } else { None }
    }

    fn is_settled(&self) -> bool {
        self.state().settled
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

    /// Redis lost data (an epoch id is gone or changed): not fresh, whatever the
    /// policy's age bound, until a resync settles after the repair.
    pub(super) fn lost(&self, during: &'static str) {
        let mut st = self.state();
        st.losses += 1;
        st.repair_first = true;
        self.last_sync.store(0, Ordering::Release);
        if st.settled {
            st.settled = false;
            bump(&self.local.stats.data_losses);
            tracing::warn!(
                during,
                "redis lost revocation data (an epoch key is gone or changed); answering Unknown until replicas have restored it"
            );
        }
    }

    /// Our heartbeat came back: every message published before it is applied, and
    /// the epoch ids it read just before were intact, so this replica is in sync as
    /// of its send time, if those are the ids it is settled under.
    fn confirm_heartbeat(&self, heard: Heard) {
        let st = self.state();
        if st.settled
            && let Some(epochs) = &st.epochs
            && digest(&as_read(epochs)) == heard.epochs
        {
            self.confirm_sync(heard.sent);
        }
    }

    /// Every acknowledged revocation up to monotonic `as_of` (ns) is applied. Called
    /// with the state locked, so a loss detected concurrently cannot be overwritten.
    fn confirm_sync(&self, as_of: u64) {
        self.last_sync
            .fetch_max(as_of.saturating_add(1), Ordering::AcqRel);
        self.synced.notify_waiters();
    }

    /// Once a resync is done: settled (and in sync as of its start, or of a heartbeat
    /// heard during it) unless a loss was detected since it read the epochs, it left
    /// records unrepaired, or, for a replica not yet settled, the store is still
    /// settling. Returns whether the replica is settled now.
    pub(super) fn settle(&self, s: &Synced, heard: Option<Heard>) -> bool {
        let mut st = self.state();
        if s.losses != st.losses {
            return false;
        }
        if !st.settled {
            if s.unrepaired || s.unsettled_store {
                st.repair_first = s.unrepaired;
                return false;
            }
            st.settled = true;
            st.epochs = Some(s.epochs.clone());
        }
        if s.complete {
            self.incomplete.store(false, Ordering::Release);
            let digest = digest(&as_read(&s.epochs));
            let as_of = match heard {
                Some(h) if h.epochs == digest => s.started.max(h.sent),
                _ => s.started,
            };
            self.confirm_sync(as_of);
        }
        true
    }

    /// Runs a Lua script (EVALSHA, EVAL after NOSCRIPT) within the timeout.
    async fn eval<T: FromRedisValue>(
        &self,
        lua: &Lua,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, Error> {
        let build = |name: &str, first: &str| {
            let mut cmd = redis::cmd(name);
            cmd.arg(first).arg(keys.len()).arg(keys).arg(args);
            cmd
        };
        let call = async {
            match self.conn.query(&build("EVALSHA", &lua.sha)).await {
                Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                    self.conn.query(&build("EVAL", lua.body)).await
                }
                other => other,
            }
        };
        timed(self.settings.timeout, call).await
    }

    /// Writes a record to Redis and publishes it (one script, atomic).
    pub(super) async fn write(&self, r: &Record) -> Result<(), Error> {
        let k = key(&self.settings.prefix, r);
        let rec = encode(r);
        let _: redis::Value = self
            .eval(&self.revoke, &[&k], &[&self.channel, &rec])
            .await?;
        Ok(())
    }

    /// Applies one pub/sub message. Returns our own heartbeat, if that is what it was.
    fn apply_message(&self, payload: &[u8]) -> Option<Heard> {
        let Ok(text) = std::str::from_utf8(payload) else {
            tracing::warn!("ignoring a non-UTF-8 message on the revocation channel");
            return None;
        };
        if let Some(rest) = text.strip_prefix("H ") {
            let mut parts = rest.split(' ');
            let (id, sent, epochs) = (parts.next()?, parts.next()?, parts.next()?);
            if id != self.instance {
                return None;
            }
            return Some(Heard {
                sent: sent.parse().ok()?,
                epochs: u64::from_str_radix(epochs, 16).ok()?,
            });
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

    async fn read_epochs(&self) -> Result<Vec<Option<String>>, Error> {
        let mut ids = Vec::with_capacity(self.epoch_keys.len());
        for k in &self.epoch_keys {
            let mut get = redis::cmd("GET");
            get.arg(k);
            ids.push(timed(self.settings.timeout, self.conn.query(&get)).await?);
        }
        Ok(ids)
    }

    /// Reads the epoch ids, creating (with a settle marker) any that is missing.
    async fn ensure_epochs(&self) -> Result<Vec<String>, Error> {
        // The creator deletes its marker when the window has passed on its monotonic
        // clock; the TTL (on Redis's clock) only frees the others if the creator dies.
        let marker_ms = (self.settings.repair_window * MARKER_BACKSTOP)
            .as_millis()
            .max(1)
            .to_string();
        let mut ids = Vec::with_capacity(self.epoch_keys.len());
        for (ek, mk) in self.epoch_keys.iter().zip(&self.marker_keys) {
            let n = self.ids.fetch_add(1, Ordering::Relaxed);
            let proposal = format!(
                "{}-{:016x}",
                self.instance,
                std::hash::BuildHasher::hash_one(
                    &std::collections::hash_map::RandomState::new(),
                    (n, self.mono_nanos()),
                )
            );
            let id: String = self
                .eval(&self.epoch, &[ek, mk], &[&proposal, &marker_ms])
                .await?;
            if id == proposal {
                tracing::warn!(
                    window = ?self.settings.repair_window,
                    "no revocation epoch in redis (a new deployment, or redis lost its data): no replica is fresh until the repair window has passed"
                );
                self.state()
                    .markers
                    .push((mk.clone(), id.clone(), self.mono_nanos()));
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// Releases the settle markers we created whose repair window has passed (on our
    /// monotonic clock; the marker's own TTL is only a backstop if we die).
    async fn release_markers(&self) {
        let window = u64::try_from(self.settings.repair_window.as_nanos()).unwrap_or(u64::MAX);
        let now = self.mono_nanos();
        let due: Vec<(String, String)> = self
            .state()
            .markers
            .iter()
            .filter(|(_, _, at)| now.saturating_sub(*at) >= window)
            .map(|(k, id, _)| (k.clone(), id.clone()))
            .collect();
        for (k, id) in due {
            if self
                .eval::<i64>(&self.lease, &[&k], &[&id, "0"])
                .await
                .is_ok()
            {
                self.state().markers.retain(|(mk, _, _)| *mk != k);
            }
        }
    }

    /// Whether a resync could settle now: no repair lock held, and (unless the next
    /// resync must repair first) no settle marker.
    async fn quiet(&self) -> bool {
        let repair_first = self.state().repair_first;
        let mut keys = vec![&self.lock_key];
        if !repair_first {
            keys.extend(&self.marker_keys);
        }
        self.count_existing(&keys).await.is_ok_and(|n| n == 0)
    }

    async fn count_existing(&self, keys: &[&String]) -> Result<usize, Error> {
        let mut n = 0;
        for k in keys {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(*k);
            let found: i64 = timed(self.settings.timeout, self.conn.query(&exists)).await?;
            n += usize::from(found > 0);
        }
        Ok(n)
    }

    /// Reads the epoch ids, and publishes a heartbeat carrying their digest and our
    /// monotonic send time; if they are not the ids we are settled under, Redis lost
    /// data. If Redis does not answer, no heartbeat: freshness ages.
    async fn heartbeat(&self) {
        let sent = self.mono_nanos();
        let Ok(ids) = self.read_epochs().await else {
            return;
        };
        if let Some(known) = self.settled_epochs()
            && as_read(&known) != ids
        {
            self.lost("a heartbeat");
            return;
        }
        let msg = format!("H {} {sent} {:016x}", self.instance, digest(&ids));
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(msg);
        let _ = timed(self.settings.timeout, self.conn.query::<i64>(&cmd)).await;
    }

    /// Reads every record from every node and applies them; re-writes (once, under
    /// the repair lock) the live local records Redis no longer has; checks the epochs
    /// before and after. The caller settles the outcome.
    pub(super) async fn resync(&self) -> Result<Synced, Error> {
        let started = self.mono_nanos();
        let before = self.ensure_epochs().await?;
        let known = self.state().epochs.clone();
        if known.is_some_and(|k| k != before) {
            self.lost("a resync");
        }
        let (losses, held_data) = {
            let st = self.state();
            (st.losses, st.epochs.is_some() && !st.settled)
        };
        // A replica that held data when Redis lost it takes the lock before it scans:
        // no replica settles while it restores what it holds.
        let mut locked = held_data && self.try_lock().await?;
        let scanned = self.scan_and_repair(&mut locked).await;
        if locked {
            // If the release fails, the lease runs out.
            let _ = self
                .eval::<i64>(&self.lease, &[&self.lock_key], &[&self.instance, "0"])
                .await;
        }
        let (read, complete, repaired, unrepaired) = scanned?;
        if self.read_epochs().await? != as_read(&before) {
            self.lost("a resync");
        }
        let mut store_keys = vec![&self.lock_key];
        store_keys.extend(&self.marker_keys);
        let unsettled_store = self.count_existing(&store_keys).await? > 0;
        bump(&self.local.stats.resyncs);
        Ok(Synced {
            read,
            repaired,
            complete,
            started,
            losses,
            epochs: before,
            unrepaired,
            unsettled_store,
        })
    }

    /// The scan and the repair: (records read, all held, re-written, left unrepaired
    /// because another replica holds the lock). Takes the lock if it must write and
    /// does not hold it yet; renews it while it holds it.
    async fn scan_and_repair(
        &self,
        locked: &mut bool,
    ) -> Result<(usize, bool, usize, bool), Error> {
        let timeout = self.settings.timeout;
        let prefix = &self.settings.prefix;
        let (pattern, meta) = (format!("{prefix}:*"), format!("{prefix}:{{e"));
        let mut complete = true;
        let mut seen: HashSet<String> = HashSet::new();
        for url in &self.nodes {
            let mut c = node(url, timeout).await?;
            check_eviction_policy(&mut c, &self.settings, &self.local).await?;
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<String>) =
                    timed(timeout, scan.query_async(&mut c)).await?;
                let keys: Vec<String> = keys
                    .into_iter()
                    .filter(|k| !k.starts_with(&meta) && *k != self.channel)
                    .collect();
                if !keys.is_empty() {
                    let mut pipe = redis::pipe();
                    for k in &keys {
                        pipe.get(k);
                    }
                    let values: Vec<Option<String>> =
                        timed(timeout, pipe.query_async(&mut c)).await?;
                    for (k, v) in keys.into_iter().zip(values) {
                        if let Some(r) = v.as_deref().and_then(decode) {
                            complete &= self.hold(&r);
                            seen.insert(k);
                        }
                    }
                }
                if *locked {
                    self.renew().await?;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        let now_ms = self.local.now().as_unix_nanos() / 1_000_000;
        let missing: Vec<(String, Record)> = self
            .local
            .records()
            .into_iter()
            .filter(|r| r.expires_ms() > now_ms)
            .map(|r| (key(prefix, &r), r))
            .filter(|(k, _)| !seen.contains(k))
            .collect();
        if missing.is_empty() {
            return Ok((seen.len(), complete, 0, false));
        }
        if !*locked {
            *locked = self.try_lock().await?;
        }
        if !*locked {
            return Ok((seen.len(), complete, 0, true));
        }
        let written = self.repair_locked(&missing).await?;
        if written > 0 {
            tracing::warn!(
                repaired = written,
                "redis had lost revocations this replica holds; re-written"
            );
            self.local
                .stats
                .repaired
                .fetch_add(written as u64, Ordering::Relaxed);
        }
        Ok((seen.len(), complete, written, false))
    }

    /// The repair lock's lease (renewed while it is held).
    fn lease_ms(&self) -> String {
        (self.settings.timeout * 10).as_millis().to_string()
    }

    /// Takes the repair lock if no one holds it.
    async fn try_lock(&self) -> Result<bool, Error> {
        let mut lock = redis::cmd("SET");
        lock.arg(&self.lock_key)
            .arg(&self.instance)
            .arg("NX")
            .arg("PX")
            .arg(self.lease_ms());
        let taken: Option<String> = timed(self.settings.timeout, self.conn.query(&lock)).await?;
        Ok(taken.is_some())
    }

    /// Renews our lease on the repair lock; an error if it ran out (another replica
    /// may be repairing now).
    async fn renew(&self) -> Result<(), Error> {
        let lease = self.lease_ms();
        let held: i64 = self
            .eval(&self.lease, &[&self.lock_key], &[&self.instance, &lease])
            .await?;
        if held == 0 {
            return Err(Error::Timeout(self.settings.timeout * 10));
        }
        Ok(())
    }

    /// Under the lock: writes the records whose keys are still missing (a previous
    /// holder may have written them since our scan), in pipelined batches.
    async fn repair_locked(&self, missing: &[(String, Record)]) -> Result<usize, Error> {
        let timeout = self.settings.timeout;
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(self.revoke.body);
        let _: redis::Value = timed(timeout, self.conn.query(&load)).await?;
        let mut written = 0;
        for batch in missing.chunks(REPAIR_BATCH) {
            let exists = batch.iter().map(|(k, _)| {
                let mut c = redis::cmd("EXISTS");
                c.arg(k);
                c
            });
            let replies = timed(timeout, self.conn.many(exists.collect(), false)).await?;
            let mut writes = Vec::new();
            for ((k, r), present) in batch.iter().zip(replies) {
                if redis::from_redis_value::<bool>(present).map_err(redis::RedisError::from)? {
                    continue;
                }
                let mut eval = redis::cmd("EVALSHA");
                eval.arg(&self.revoke.sha)
                    .arg(1)
                    .arg(k)
                    .arg(&self.channel)
                    .arg(encode(r));
                writes.push(eval);
            }
            let n = writes.len();
            if n > 0 {
                timed(timeout, self.conn.many(writes, false)).await?;
            }
            written += n;
            self.renew().await?;
        }
        Ok(written)
    }

    pub(super) async fn subscribe(&self) -> RedisResult<redis::aio::PubSub> {
        let mut last = None;
        for url in &self.nodes {
            let attempt = async {
                let mut ps = redis::Client::open(url.as_str())?
                    .get_async_pubsub()
                    .await?;
                ps.subscribe(&self.channel).await?;
                Ok::<_, redis::RedisError>(ps)
            };
            match tokio::time::timeout(self.settings.timeout, attempt).await {
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

/// The running job's outcome, errors as text for the log; never ready without a job.
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
/// run beside it on their own task (at once, then every `resync_every`, and again
/// after a loss until one settles); on any failure start over. Subscribing before
/// the catch-up resync means nothing published during it is missed; running it
/// beside the loop means a resync of a large store never stops heartbeats from
/// proving freshness. Records only ever widen (set union, highest watermark, latest
/// expiry), so a message applied before or after a resync read the same key ends in
/// the same state.
pub(super) async fn replicate(inner: Arc<Inner>) {
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
        let mut heard: Option<Heard> = None;
        let mut heartbeat = tokio::time::interval(inner.settings.heartbeat);
        let mut resync = tokio::time::interval(inner.settings.resync_every);
        resync.reset();
        let mut open_seen = inner.local.stats.stale_allowed.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => match inner.apply_message(msg.get_payload_bytes()) {
                        Some(h) if caught_up => inner.confirm_heartbeat(h),
                        Some(h) => heard = heard.max(Some(h)),
                        None => {}
                    },
                    None => {
                        tracing::warn!("revocation subscription lost; resubscribing and resyncing");
                        break;
                    }
                },
                _ = heartbeat.tick() => {
                    inner.heartbeat().await;
                    inner.release_markers().await;
                    if job.is_none() && !inner.is_settled() && inner.quiet().await {
                        job = Some(Job::spawn(&inner));
                    }
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
                    backoff = Duration::from_millis(50);
                    caught_up = true;
                    let was_settled = inner.is_settled();
                    if inner.settle(&synced, heard.take()) && !was_settled {
                        tracing::info!("revocation replica in sync");
                    }
                }
            }
        }
    }
}
