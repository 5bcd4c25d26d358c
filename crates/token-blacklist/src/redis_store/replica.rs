//! The local replica: its state, messages and heartbeats, freshness (its own and the
//! relays' from other regions), and the task that runs it (resyncs are in
//! `resync.rs`).
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::{ErrorKind, FromRedisValue, RedisResult};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::resync::{Synced, meta_key, timed};
use super::{Conn, FailurePolicy, fnv, key};
use crate::Error;
use crate::model::{Local, Record};
use crate::wire::{decode, encode};

/// The revocation script (also run by the relay, so relayed records only widen).
pub(crate) const REVOKE_LUA: &str = include_str!("../revoke.lua");

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
    /// Regions whose revocations reach this Redis through a relay (see `relay.rs`).
    pub(super) relayed_from: Vec<String>,
}

/// What this replica knows about the store's epoch.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// The epoch ids (one per node) this replica settled under; `None` before its
    /// first settled resync.
    pub(super) epochs: Option<Vec<String>>,
    /// Proven complete against `epochs`; false from a detected loss (and before the
    /// first resync) until a resync settles.
    pub(super) settled: bool,
    /// Losses detected so far: a resync settles only if none was detected since it
    /// read the epochs.
    pub(super) losses: u64,
    /// The next resync must repair, so it runs as soon as no repair lock is held;
    /// otherwise it waits for the settle markers to go too.
    pub(super) repair_first: bool,
    /// Settle markers we created: (key, id, monotonic ns at creation).
    pub(super) markers: Vec<(String, String, u64)>,
}

/// Our heartbeat as it came back: when it was sent (our monotonic ns) and the digest
/// of the epoch ids it read just before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Heard {
    pub(super) sent: u64,
    pub(super) epochs: u64,
}

/// What a pub/sub message was.
#[derive(Debug, PartialEq, Eq)]
enum Msg {
    /// A revocation record (applied), something to ignore, or a malformed message.
    Other,
    /// Our own heartbeat came back.
    Heard(Heard),
    /// A relay from `relayed_from[i]` acknowledged our heartbeat sent at this
    /// monotonic ns: every revocation made there before it is applied here.
    Region(usize, u64),
}

pub(super) struct Inner {
    pub(super) local: Local,
    pub(super) conn: Conn,
    /// One client per node (standalone: one), for the subscription and the scans.
    pub(super) nodes: Vec<redis::Client>,
    pub(super) settings: Settings,
    pub(super) channel: String,
    pub(super) revoke: redis::Script,
    pub(super) epoch: redis::Script,
    pub(super) lease: redis::Script,
    pub(super) instance: String,
    /// Per node: the epoch key and its settle marker (one hash tag the node serves).
    pub(super) epoch_keys: Vec<String>,
    pub(super) marker_keys: Vec<String>,
    pub(super) lock_key: String,
    /// `Clock::monotonic` ns + 1 as of which every acknowledged revocation is applied
    /// (0: never, or a loss since). Monotonic, so a wall-clock step cannot make an old
    /// proof look new.
    last_sync: AtomicU64,
    /// Per `relayed_from` region, like `last_sync`: as of when every revocation made
    /// there is applied here (0: never proven).
    region_proofs: Vec<AtomicU64>,
    /// Set when a revocation could not be held locally (capacity): never fresh then.
    pub(super) incomplete: AtomicBool,
    /// Revocations ever refused by the local store: a resync clears `incomplete`
    /// only if none was refused since it started (one that arrived by pub/sub while
    /// it scanned may be missing from what it read).
    pub(super) drops: AtomicU64,
    state: Mutex<SyncState>,
    synced: tokio::sync::Notify,
    pub(super) ids: AtomicU64,
}

// By hand: clients hold connection info (passwords).
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

/// A digest of epoch ids as read (a missing one is `""`; an id is never empty).
fn digest(ids: &[Option<String>]) -> u64 {
    let parts: Vec<&str> = ids.iter().map(|i| i.as_deref().unwrap_or("")).collect();
    fnv(&parts)
}

pub(super) fn as_read(ids: &[String]) -> Vec<Option<String>> {
    ids.iter().cloned().map(Some).collect()
}

impl Inner {
    pub(super) fn new(
        local: Local,
        conn: Conn,
        nodes: Vec<redis::Client>,
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
            revoke: redis::Script::new(REVOKE_LUA),
            epoch: redis::Script::new(include_str!("../epoch.lua")),
            lease: redis::Script::new(include_str!("../lease.lua")),
            instance: format!("{:016x}", fnv(&[&seed.to_string()])),
            region_proofs: settings
                .relayed_from
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
            local,
            conn,
            nodes,
            settings,
            last_sync: AtomicU64::new(0),
            incomplete: AtomicBool::new(false),
            drops: AtomicU64::new(0),
            state: Mutex::new(SyncState {
                repair_first: true,
                ..SyncState::default()
            }),
            synced: tokio::sync::Notify::new(),
            ids: AtomicU64::new(0),
        }
    }

    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, SyncState> {
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
    pub(super) fn mono_nanos(&self) -> u64 {
        u64::try_from(self.local.clock.monotonic().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Time since the replica was last proven in sync, on the monotonic clock: with
    /// its own Redis, and with every region it is relayed from (the oldest proof).
    #[inline]
    pub(super) fn freshness(&self) -> Option<Duration> {
        if self.incomplete.load(Ordering::Acquire) {
            return None;
        }
        let mut as_of = self.last_sync.load(Ordering::Acquire);
        for p in &self.region_proofs {
            as_of = as_of.min(p.load(Ordering::Acquire));
        }
        match as_of {
            0 => None,
            ns => Some(Duration::from_nanos(
                self.mono_nanos().saturating_sub(ns - 1),
            )),
        }
    }

    /// Every relay this replica depends on proved itself within `fresh_within`.
    pub(super) fn regions_fresh(&self) -> bool {
        let now = self.mono_nanos();
        let bound = u64::try_from(self.settings.fresh_within.as_nanos()).unwrap_or(u64::MAX);
        self.region_proofs
            .iter()
            .all(|p| match p.load(Ordering::Acquire) {
                0 => false,
                ns => now.saturating_sub(ns - 1) <= bound,
            })
    }

    /// The epoch ids this replica is settled under, or `None` while it is not.
    pub(super) fn settled_epochs(&self) -> Option<Vec<String>> {
        let st = self.state();
        if st.settled { st.epochs.clone() } else { None }
    }

    pub(super) fn is_settled(&self) -> bool {
        self.state().settled
    }

    /// Applies a record; if the replica cannot hold it (full), it can no longer prove
    /// it is fresh until a resync holds everything: checks then answer by policy.
    pub(super) fn hold(&self, r: &Record) -> bool {
        match self.local.apply(r) {
            Ok(_) => true,
            Err(e) => {
                self.cannot_hold(&e);
                false
            }
        }
    }

    /// A revocation this replica could not hold: not fresh until a resync holds all.
    pub(super) fn cannot_hold(&self, e: &Error) {
        // SeqCst here and in `settle`: a store then a load of the other
        // variable on each side, which only a total order keeps apart.
        self.drops.fetch_add(1, Ordering::SeqCst);
        self.incomplete.store(true, Ordering::SeqCst);
        tracing::error!(error = %e, "replica cannot hold a revocation; not fresh until it can");
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
            self.local.stats.data_loss();
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
    /// heard during it, if it held every record and no revocation was refused since
    /// it started) unless a loss was detected since it read the epochs, it left
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
        if s.complete && self.drops.load(Ordering::SeqCst) == s.drops {
            self.incomplete.store(false, Ordering::SeqCst);
            // `hold` takes no lock: a refusal between the check and the store set
            // `incomplete` that the store just cleared. Checked again after it
            // (SeqCst: if this load misses the refusal, its store comes after ours).
            if self.drops.load(Ordering::SeqCst) != s.drops {
                self.incomplete.store(true, Ordering::SeqCst);
                return true;
            }
            let digest = digest(&as_read(&s.epochs));
            let as_of = match heard {
                Some(h) if h.epochs == digest => s.started.max(h.sent),
                _ => s.started,
            };
            self.confirm_sync(as_of);
        }
        true
    }

    /// Runs a script within the timeout (EVALSHA; after NOSCRIPT, SCRIPT LOAD and
    /// EVALSHA again: redis-rs's `Script` does the fallback).
    pub(super) async fn eval<T: FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, Error> {
        let mut call = script.prepare_invoke();
        for k in keys {
            call.key(*k);
        }
        for a in args {
            call.arg(*a);
        }
        timed(self.settings.timeout, self.conn.invoke(&call)).await
    }

    /// Writes a record to Redis and publishes it (one script, atomic).
    pub(crate) async fn write(&self, r: &Record) -> Result<(), Error> {
        let k = key(&self.settings.prefix, r);
        let rec = encode(r);
        let _: redis::Value = self
            .eval(&self.revoke, &[&k], &[&self.channel, &rec])
            .await?;
        Ok(())
    }

    /// Applies one pub/sub message.
    fn apply_message(&self, payload: &[u8]) -> Msg {
        let Ok(text) = std::str::from_utf8(payload) else {
            tracing::warn!("ignoring a non-UTF-8 message on the revocation channel");
            return Msg::Other;
        };
        if let Some(rest) = text.strip_prefix("H ") {
            return self.own_heartbeat(rest).map_or(Msg::Other, Msg::Heard);
        }
        if let Some(rest) = text.strip_prefix("A ") {
            return self.region_ack(rest).unwrap_or(Msg::Other);
        }
        // A relay's probe, on its source region's channel: not for replicas.
        if text.starts_with("X ") {
            return Msg::Other;
        }
        match decode(text) {
            Some(r) => {
                self.local.stats.message();
                self.hold(&r);
            }
            None => tracing::warn!("ignoring a malformed message on the revocation channel"),
        }
        Msg::Other
    }

    /// `<instance> <sent> <digest>`: ours, or `None`.
    fn own_heartbeat(&self, rest: &str) -> Option<Heard> {
        let mut parts = rest.split(' ');
        let (id, sent, epochs) = (parts.next()?, parts.next()?, parts.next()?);
        if id != self.instance {
            return None;
        }
        Some(Heard {
            sent: sent.parse().ok()?,
            epochs: u64::from_str_radix(epochs, 16).ok()?,
        })
    }

    /// `<region> <instance>=<sent> …`: a relay's acknowledgement of the heartbeats it
    /// saw; the entry for us, if the region is one we are relayed from.
    fn region_ack(&self, rest: &str) -> Option<Msg> {
        let mut parts = rest.split(' ');
        let region = parts.next()?;
        let i = self
            .settings
            .relayed_from
            .iter()
            .position(|r| r == region)?;
        let sent = parts.find_map(|p| {
            let (id, sent) = p.split_once('=')?;
            (id == self.instance).then_some(sent)
        })?;
        Some(Msg::Region(i, sent.parse().ok()?))
    }

    /// A relay proved that every revocation made in region `i` before our heartbeat
    /// sent at `sent` has been applied here (the caller checked that this
    /// subscription has caught up).
    fn confirm_region(&self, i: usize, sent: u64) {
        if let Some(p) = self.region_proofs.get(i) {
            p.fetch_max(sent.saturating_add(1), Ordering::AcqRel);
        }
    }

    /// Reads the epoch ids, and publishes a heartbeat carrying their digest and our
    /// monotonic send time; if they are not the ids we are settled under, Redis lost
    /// data. If Redis does not answer, no heartbeat: freshness ages. Returns whether
    /// Redis took the heartbeat (so this subscription should hear it).
    async fn heartbeat(&self) -> bool {
        let sent = self.mono_nanos();
        let Ok(ids) = self.read_epochs().await else {
            return false;
        };
        if let Some(known) = self.settled_epochs()
            && as_read(&known) != ids
        {
            self.lost("a heartbeat");
            return false;
        }
        let msg = format!("H {} {sent} {:016x}", self.instance, digest(&ids));
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(msg);
        timed(self.settings.timeout, self.conn.query::<i64>(&cmd))
            .await
            .is_ok()
    }

    /// How long a subscription may stay silent after Redis took a heartbeat of ours
    /// (counted from the first such heartbeat not followed by any message) before it
    /// counts as dead: a connection whose peer vanished without a reset (a failover
    /// that moved the address, a lost conntrack entry) stays open and silent, since a
    /// subscriber never writes. Doubles with each silent restart in a row (up to 32
    /// times), so a node that never hears us is not resynced every few seconds.
    fn silence_bound(&self, silent_restarts: u32) -> Duration {
        silence_bound(self.settings.heartbeat, self.settings.timeout)
            * (1 << silent_restarts.min(5))
    }

    pub(super) async fn subscribe(&self) -> RedisResult<redis::aio::PubSub> {
        let mut last = None;
        for client in &self.nodes {
            let attempt = async {
                let mut ps = client.get_async_pubsub().await?;
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
        Job(tokio::spawn(async move { inner.resync_traced().await }))
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
/// How long a subscription may deliver nothing after Redis took a message of ours sent
/// every `every` (a replica's heartbeat, a relay's probe) before it counts as dead:
/// ten of them, and at least three call timeouts.
pub(crate) fn silence_bound(every: Duration, timeout: Duration) -> Duration {
    (every * 10).max(timeout * 3)
}

pub(super) async fn replicate(inner: Arc<Inner>) {
    let mut backoff = Duration::from_millis(50);
    let mut silent_restarts = 0;
    loop {
        let subscribed = inner
            .subscribe()
            .instrument(tracing::debug_span!(
                "token_blacklist.subscribe",
                nodes = inner.nodes.len()
            ))
            .await;
        let mut pubsub = match subscribed {
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
        // Since when Redis has taken a heartbeat of ours and nothing came back.
        let mut unheard_since: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        unheard_since = None;
                        match inner.apply_message(msg.get_payload_bytes()) {
                            Msg::Heard(h) if caught_up => {
                                silent_restarts = 0;
                                inner.confirm_heartbeat(h);
                            }
                            Msg::Heard(h) => {
                                silent_restarts = 0;
                                heard = heard.max(Some(h));
                            }
                            // Before the catch-up, a relayed record published before we
                            // subscribed may not be applied yet: the next ack will do.
                            Msg::Region(i, sent) if caught_up => inner.confirm_region(i, sent),
                            Msg::Region(..) | Msg::Other => {}
                        }
                    }
                    None => {
                        tracing::warn!("revocation subscription lost; resubscribing and resyncing");
                        break;
                    }
                },
                _ = heartbeat.tick() => {
                    let published = inner
                        .heartbeat()
                        .instrument(tracing::trace_span!("token_blacklist.heartbeat"))
                        .await;
                    if published {
                        let since = *unheard_since.get_or_insert_with(tokio::time::Instant::now);
                        if since.elapsed() > inner.silence_bound(silent_restarts) {
                            tracing::warn!(
                                "revocation subscription silent though Redis took our heartbeats; resubscribing and resyncing"
                            );
                            silent_restarts += 1;
                            break;
                        }
                    }
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
                    inner.local.stats.freshness(inner.freshness());
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
