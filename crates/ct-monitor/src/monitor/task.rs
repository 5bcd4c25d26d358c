//! One log's task: poll the head, verify it, read and check the entries, hand
//! alerts over, save progress.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core_traits::{Clock, Timestamp};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::config::LogConfig;
use super::delivery::{Envelope, Outbox, Seen, Stopped, or_stop};
use super::event::{Event, Health};
use super::tiles::TileCache;
use crate::check::{Verdict, check_log_entry, check_tile_leaf};
use crate::checkpoint::checkpoint_tree_head;
use crate::client::{Rfc6962Client, StaticCtClient};
use crate::entry::{ExtraData, MerkleTreeLeaf, SignedEntry, TILE_WIDTH, parse_data_tile};
use crate::error::{Error, ProofFailure};
use crate::merkle::{CompactRange, Hash, leaf_hash};
use crate::responses::{RawEntry, consistency_proof_ranges, perfect_subtrees, tile_path};
use crate::state::{State, StateStore};
use crate::sth::SignedTreeHead;
use crate::telemetry::{self, Counters};
use crate::verify::{AppendError, LogMisbehaved, LogVerifier, Misbehaviour, rolls_back};
use crate::watch::{Authorizer, SharedWatchlist, Watchlist};

/// How far ahead of our clock a head may be stamped before it is refused: room
/// for the log's and our clocks to disagree, not for a head from the future.
const MAX_TREE_HEAD_SKEW: Duration = Duration::from_secs(5 * 60);

/// A tree head's timestamp (milliseconds) as a wall-clock instant.
fn head_time(millis: u64) -> Timestamp {
    Timestamp::from_unix_micros(millis.saturating_mul(1_000))
}

/// What every log's task shares.
pub(super) struct Shared {
    pub(super) watchlist: SharedWatchlist,
    pub(super) authorizer: Authorizer,
    pub(super) store: Arc<dyn StateStore>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) counters: Arc<Counters>,
    pub(super) poll_interval: Duration,
    pub(super) batch_size: u64,
    pub(super) start_at_end: bool,
    pub(super) seen: Mutex<Seen>,
}

pub(super) enum Source {
    Rfc6962(Rfc6962Client),
    StaticCt(StaticCtClient, String),
}

/// Why a step did not complete.
enum Halt {
    Stop,
    /// Nothing more to read (a read-only log at its final head).
    Finished(String),
    Misbehaved(Box<LogMisbehaved>),
    Failed(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

impl From<Box<LogMisbehaved>> for Halt {
    fn from(m: Box<LogMisbehaved>) -> Self {
        Self::Misbehaved(m)
    }
}

impl From<Stopped> for Halt {
    fn from(_: Stopped) -> Self {
        Self::Stop
    }
}

/// A verifier that refused leaves or a proof for a reason that is not the log's
/// misbehaviour: the engine asked for something its state does not allow.
fn append_error(log: &str, e: AppendError) -> Halt {
    match e {
        AppendError::Misbehaved(m) => Halt::Misbehaved(m),
        other => Halt::Failed(Error::BadState {
            path: None,
            reason: format!("{log}: verifier refused: {other:?}"),
        }),
    }
}

pub(super) struct LogTask {
    cfg: LogConfig,
    source: Source,
    verifier: Option<LogVerifier>,
    shared: Arc<Shared>,
    outbox: Outbox,
    saved: Option<State>,
    healthy: Option<bool>,
    /// When the task started and when its last poll succeeded (`clock.monotonic()`).
    started: Duration,
    last_good: Option<Duration>,
    /// The trusted head's timestamp and when, on `clock.monotonic()`, it becomes
    /// stale: a wall-clock step back must not make a stale head look fresh.
    fresh_until: Option<(u64, Duration)>,
    /// A smaller `get-entries` batch and the position up to which it holds: the
    /// end of a range whose reply was over the body limit at the full batch.
    narrowed: Option<(u64, u64)>,
}

/// One entry of a batch, owned, with what the verifier and matcher need.
struct Fetched {
    index: u64,
    leaf_hash: Hash,
    timestamp: u64,
    verdict: Verdict,
}

impl LogTask {
    pub(super) fn new(
        cfg: LogConfig,
        source: Source,
        shared: Arc<Shared>,
        tx: mpsc::Sender<Envelope>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        let started = shared.clock.monotonic();
        Self {
            cfg,
            source,
            verifier: None,
            shared,
            outbox: Outbox::new(tx, stop),
            saved: None,
            healthy: None,
            started,
            last_good: None,
            fresh_until: None,
            narrowed: None,
        }
    }

    fn log_id(&self) -> Hash {
        *self.cfg.key.log_id()
    }

    async fn send(&self, event: Event) -> Result<(), Halt> {
        Ok(self.outbox.send(event).await?)
    }

    async fn save(&mut self) -> Result<(), Halt> {
        let Some(state) = self.verifier.as_ref().and_then(LogVerifier::state) else {
            return Ok(());
        };
        if self.saved.as_ref() == Some(&state) {
            return Ok(());
        }
        let store = self.shared.store.clone();
        let id = self.log_id();
        let s = state.clone();
        // Not interruptible by a stop: a handed-over event's progress must land.
        tokio::task::spawn_blocking(move || store.save(&id, &s))
            .await
            .map_err(|e| Error::BadState {
                path: None,
                reason: format!("state save task: {e}"),
            })??;
        self.shared.counters.saved();
        self.saved = Some(state);
        Ok(())
    }

    /// The verifier from the stored state, if there is one.
    async fn restore(&mut self) -> Result<Option<LogVerifier>, Error> {
        let store = self.shared.store.clone();
        let id = self.log_id();
        let loaded = tokio::task::spawn_blocking(move || store.load(&id))
            .await
            .map_err(|e| Error::BadState {
                path: None,
                reason: format!("state load task: {e}"),
            })??;
        let Some(state) = loaded else {
            return Ok(None);
        };
        let v = LogVerifier::builder(self.cfg.name.clone(), self.cfg.key.clone())
            .state(state.clone())
            .build()?;
        self.saved = Some(state);
        Ok(Some(v))
    }

    pub(super) async fn run(mut self) {
        let span = tracing::info_span!("ct_log", log = %self.cfg.name);
        async move {
            match self.restore().await {
                Ok(v) => self.verifier = v,
                Err(e) => {
                    let reason = format!("stored state unusable: {e}");
                    tracing::warn!(%reason, "log stopped");
                    let _ = self.health(Health::Stopped { reason }).await;
                    return;
                }
            }
            let mut stop = self.outbox.stop();
            loop {
                let poll_started = self.shared.clock.monotonic();
                let step = self
                    .step()
                    .instrument(tracing::debug_span!("ct_poll"))
                    .await;
                match step {
                    Ok(()) => {
                        self.polled(true);
                        if self.healthy != Some(true) && self.health(Health::Ok).await.is_err() {
                            return;
                        }
                        self.healthy = Some(true);
                    }
                    Err(Halt::Stop) => return,
                    Err(Halt::Finished(reason)) => {
                        self.polled(true);
                        tracing::info!(%reason, "log stopped");
                        let _ = self.health(Health::Stopped { reason }).await;
                        return;
                    }
                    Err(Halt::Misbehaved(m)) => {
                        let kind = m.evidence.kind();
                        self.shared.counters.misbehaviour(&self.cfg.name, kind);
                        let reason = format!("log misbehaved: {kind}");
                        if self.send(Event::LogMisbehaved(m)).await.is_ok() {
                            let _ = self.health(Health::Stopped { reason }).await;
                        }
                        return;
                    }
                    Err(Halt::Failed(e)) => {
                        self.polled(false);
                        tracing::warn!(error = %e, "poll failed");
                        self.healthy = Some(false);
                        let health = Health::Failing {
                            error: e.to_string(),
                        };
                        if self.health(health).await.is_err() {
                            return;
                        }
                    }
                }
                // The interval runs from the start of the poll, on the monotonic clock.
                let next = poll_started.saturating_add(self.shared.poll_interval);
                let pause = tokio::time::sleep(next.saturating_sub(self.shared.clock.monotonic()));
                if or_stop(&mut stop, pause).await.is_err() {
                    return;
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// Counts a finished poll and reports where the log stands.
    fn polled(&mut self, ok: bool) {
        let now = self.shared.clock.monotonic();
        if ok {
            self.last_good = Some(now);
        }
        self.shared.counters.poll(&self.cfg.name, ok);
        let since = now.saturating_sub(self.last_good.unwrap_or(self.started));
        self.gauges(Some(since.as_secs_f64()));
    }

    fn gauges(&self, since_good_poll: Option<f64>) {
        let (verified, size) = self.verifier.as_ref().map_or((0, 0), |v| {
            (v.range().size(), v.trusted().map_or(0, |t| t.tree_size))
        });
        telemetry::progress(
            &self.cfg.name,
            verified,
            size.saturating_sub(verified),
            since_good_poll,
        );
    }

    async fn health(&mut self, health: Health) -> Result<(), Halt> {
        let log = self.cfg.name.clone();
        self.send(Event::Health { log, health }).await
    }

    async fn tree_head(&mut self) -> Result<SignedTreeHead, Halt> {
        let key = self.cfg.key.clone();
        let witnesses = self.cfg.witnesses.clone();
        let fut = async {
            match &mut self.source {
                Source::Rfc6962(c) => c.get_sth().await,
                Source::StaticCt(c, origin) => {
                    let note = c.checkpoint().await?;
                    if let Some(policy) = &witnesses {
                        policy.verify(&note, origin)?;
                    }
                    checkpoint_tree_head(&note, origin, &key)
                }
            }
        };
        Ok(fut.await?)
    }

    /// One poll: fetch the head, verify it against the trusted one, process entries.
    async fn step(&mut self) -> Result<(), Halt> {
        // A head trusted before the log was frozen (restored from the state) that the
        // final head contradicts: the log showed us a tree its final head disowns.
        if let Some((size, root)) = self.cfg.final_tree_head
            && let Some(trusted) = self.verifier.as_ref().and_then(LogVerifier::trusted)
            && past_final(trusted, size, root)
        {
            return Err(self.contradicts_final(trusted.clone(), size, root).into());
        }
        let mut stop = self.outbox.stop();
        let sth = or_stop(&mut stop, self.tree_head()).await??;
        let now = self.shared.clock.now();
        if let Some(ahead) = head_time(sth.timestamp).checked_duration_since(now)
            && ahead > MAX_TREE_HEAD_SKEW
        {
            return Err(Error::FutureTreeHead {
                log: self.cfg.name.clone(),
                timestamp: sth.timestamp,
                ahead,
                max_skew: MAX_TREE_HEAD_SKEW,
            }
            .into());
        }
        if let Some((size, root)) = self.cfg.final_tree_head
            && past_final(&sth, size, root)
        {
            return Err(self.contradicts_final(sth, size, root).into());
        }
        match self
            .verifier
            .as_ref()
            .and_then(LogVerifier::trusted)
            .cloned()
        {
            None => or_stop(&mut stop, self.init(sth)).await??,
            Some(trusted) => {
                // A rollback needs no proof (the two signed heads are the evidence):
                // a log that can no longer prove its larger tree is still reported.
                let earliest = self.verifier.as_ref().and_then(LogVerifier::earliest);
                let proof = if sth.tree_size == trusted.tree_size
                    || earliest.is_some_and(|e| rolls_back(e, &sth))
                {
                    Vec::new()
                } else {
                    let (m, n) = if sth.tree_size < trusted.tree_size {
                        (sth.tree_size, trusted.tree_size)
                    } else {
                        (trusted.tree_size, sth.tree_size)
                    };
                    if m == 0 {
                        Vec::new()
                    } else {
                        or_stop(&mut stop, self.consistency(m, n)).await??
                    }
                };
                if let Some(v) = self.verifier.as_mut() {
                    v.update_tree_head(sth, &proof)?;
                }
            }
        }
        self.save().await?;
        self.catch_up().await?;
        let verified = self.verifier.as_ref().map_or(0, |v| v.range().size());
        match self.cfg.final_tree_head {
            Some((size, _)) if verified == size => Err(Halt::Finished(format!(
                "read-only log read to its final tree head ({size} entries)"
            ))),
            // A read-only log's head is frozen by design.
            Some(_) => Ok(()),
            // After the catch-up: a stale log's entries are still read and alerted on.
            None => self.stale().map_or(Ok(()), |e| Err(e.into())),
        }
    }

    /// A head that contradicts a read-only log's final tree head (larger, or of its
    /// size with another root). Its signature is checked first: a signed one is the
    /// log's own word against its frozen tree, misbehaviour like a contradicted pin
    /// (the task then stops, so it is raised once); an unsigned one is evidence of
    /// a bad signature, as anywhere else.
    fn contradicts_final(&self, sth: SignedTreeHead, size: u64, root: Hash) -> Box<LogMisbehaved> {
        let evidence = if sth.verify(&self.cfg.key).is_err() {
            Misbehaviour::BadSignature { sth }
        } else {
            let failure = if sth.tree_size > size {
                // No head may be larger than the final one: the head's size first.
                ProofFailure::SizesReversed {
                    size1: sth.tree_size,
                    size2: size,
                }
            } else {
                ProofFailure::RootMismatch
            };
            Misbehaviour::InconsistentWithPinned {
                pinned_size: size,
                pinned_root: root,
                sth,
                proof: Vec::new(),
                failure,
            }
        };
        tracing::warn!(log = %self.cfg.name, kind = evidence.kind(), "log misbehaved");
        Box::new(LogMisbehaved {
            log: self.cfg.name.clone(),
            log_id: self.log_id(),
            evidence,
        })
    }

    /// The error to report when the trusted head is older than the MMD plus the
    /// poll interval, by the wall clock or by the monotonic deadline set when
    /// this head was first trusted.
    fn stale(&mut self) -> Option<Error> {
        let timestamp = self.verifier.as_ref()?.trusted()?.timestamp;
        let limit = self.cfg.mmd.saturating_add(self.shared.poll_interval);
        let wall_age = self
            .shared
            .clock
            .now()
            .saturating_duration_since(head_time(timestamp));
        let mono = self.shared.clock.monotonic();
        let deadline = match self.fresh_until {
            Some((ts, deadline)) if ts == timestamp => deadline,
            _ => {
                let deadline = mono.saturating_add(limit.saturating_sub(wall_age));
                self.fresh_until = Some((timestamp, deadline));
                deadline
            }
        };
        let mono_age = limit.saturating_add(mono.saturating_sub(deadline));
        (wall_age > limit || mono > deadline).then(|| Error::StaleTreeHead {
            log: self.cfg.name.clone(),
            timestamp,
            age: wall_age.max(mono_age),
            limit,
        })
    }

    async fn consistency(&mut self, m: u64, n: u64) -> Result<Vec<Hash>, Halt> {
        match &mut self.source {
            Source::Rfc6962(c) => Ok(c.get_sth_consistency(m, n).await?),
            Source::StaticCt(c, _) => {
                let mut tiles = TileCache::default();
                let mut proof = Vec::new();
                for (a, b) in consistency_proof_ranges(m, n) {
                    proof.push(tiles.range_root(c, a, b, n).await?);
                }
                Ok(proof)
            }
        }
    }

    /// First head of a log with no stored progress.
    async fn init(&mut self, sth: SignedTreeHead) -> Result<(), Halt> {
        let mut v = LogVerifier::new(self.cfg.name.clone(), self.cfg.key.clone());
        v.update_tree_head(sth.clone(), &[])?;
        let n = sth.tree_size;
        if !self.shared.start_at_end || n == 0 {
            self.verifier = Some(v);
            return Ok(());
        }
        let range = match &mut self.source {
            Source::Rfc6962(c) => {
                // The audit path of the last leaf is the compact range before it.
                let last = c.get_entries(n - 1, n - 1).await?;
                let leaf = leaf_hash(&last[0].leaf_input);
                let (index, proof) = c.get_proof_by_hash(&leaf, n).await?;
                if index != n - 1 {
                    return Err(Error::BadTreeHead {
                        what: "get-proof-by-hash",
                        reason: format!(
                            "{}: last leaf reported at index {index}, not {}; cannot start at the end",
                            self.cfg.name,
                            n - 1
                        ),
                    }
                    .into());
                }
                v.check_inclusion(n - 1, leaf, &proof)
                    .map_err(|e| append_error(&self.cfg.name, e))?;
                let mut range = CompactRange::from_parts(n - 1, proof.into_iter().rev().collect())?;
                range.append(leaf);
                range
            }
            Source::StaticCt(c, _) => {
                let mut tiles = TileCache::default();
                let mut hashes = Vec::new();
                for (level, index) in perfect_subtrees(0, n) {
                    hashes.push(tiles.node(c, level, index, n).await?);
                }
                CompactRange::from_parts(n, hashes)?
            }
        };
        if range.root() != sth.root_hash {
            return Err(Box::new(LogMisbehaved {
                log: self.cfg.name.clone(),
                log_id: self.log_id(),
                evidence: Misbehaviour::RootMismatch {
                    sth,
                    computed: range.root(),
                },
            })
            .into());
        }
        let state = State {
            earliest: sth.clone(),
            trusted: sth,
            confirmed: range.clone(),
            range,
        };
        self.verifier = Some(
            LogVerifier::builder(self.cfg.name.clone(), self.cfg.key.clone())
                .state(state)
                .build()?,
        );
        Ok(())
    }

    /// Processes entries up to the trusted tree size.
    async fn catch_up(&mut self) -> Result<(), Halt> {
        loop {
            let Some(v) = self.verifier.as_ref() else {
                return Ok(());
            };
            let pos = v.range().size();
            let size = v.trusted().map_or(0, |t| t.tree_size);
            if pos >= size {
                return Ok(());
            }
            self.gauges(None);
            let log = self.cfg.name.clone();
            self.send(Event::Backlog {
                log,
                verified: pos,
                tree_size: size,
            })
            .await?;
            let mut stop = self.outbox.stop();
            let batch = or_stop(&mut stop, self.fetch(pos, size)).await??;
            let (n, mut matches) = (batch.len() as u64, 0);
            for entry in batch {
                matches += u64::from(matches_an_item(&entry.verdict));
                if !self.process(entry).await? {
                    break;
                }
            }
            self.shared.counters.entries(&self.cfg.name, n, matches);
            self.save().await?;
        }
    }

    async fn fetch(&mut self, pos: u64, size: u64) -> Result<Vec<Fetched>, Halt> {
        let watchlist = self.shared.watchlist.load();
        let auth = &self.shared.authorizer;
        match &mut self.source {
            Source::Rfc6962(c) => {
                let mut batch = match self.narrowed {
                    Some((until, batch)) if pos < until => batch,
                    _ => {
                        self.narrowed = None;
                        self.shared.batch_size
                    }
                };
                let raw = loop {
                    let end = pos.saturating_add(batch).min(size) - 1;
                    match c.get_entries(pos, end).await {
                        // Asking again for the same range gets the same body: ask
                        // for half. One entry alone over the limit fails the poll
                        // (naming it): skipping it could hide the misissued cert.
                        Err(Error::BodyTooLarge { .. }) if end > pos => {
                            let asked = end - pos + 1;
                            batch = asked / 2;
                            let until = self.narrowed.map_or(end + 1, |(u, _)| u.max(end + 1));
                            self.narrowed = Some((until, batch));
                            tracing::debug!(
                                start = pos,
                                end,
                                batch,
                                "get-entries over the body limit, asking for fewer"
                            );
                        }
                        r => break r?,
                    }
                };
                let mut out = Vec::with_capacity(raw.len());
                for (e, index) in raw.iter().zip(pos..) {
                    out.push(check_raw(e, index, &watchlist, auth));
                    between_entries().await;
                }
                Ok(out)
            }
            Source::StaticCt(c, _) => {
                let tile = pos / TILE_WIDTH as u64;
                let start = tile * TILE_WIDTH as u64;
                let width = (size - start).min(TILE_WIDTH as u64) as usize;
                let bytes = c.data_tile(tile, width).await?;
                let path = tile_path(None, tile, width);
                let leaves =
                    parse_data_tile(&bytes).map_err(|e| c.tile_error(&path, e.to_string()))?;
                if leaves.len() < width {
                    return Err(c
                        .tile_error(&path, format!("{} entries, {width} needed", leaves.len()))
                        .into());
                }
                let skip = (pos - start) as usize;
                let mut out = Vec::with_capacity(width - skip);
                for (leaf, index) in leaves[skip..width].iter().zip(pos..) {
                    out.push(Fetched {
                        index,
                        leaf_hash: leaf.leaf_hash(),
                        timestamp: leaf.entry.timestamp,
                        verdict: check_tile_leaf(leaf, index, &watchlist, auth),
                    });
                    between_entries().await;
                }
                Ok(out)
            }
        }
    }

    /// Checks, hands over and appends one entry; `false` when the verifier went
    /// back to its confirmed range and the rest of the batch must be read again.
    async fn process(&mut self, entry: Fetched) -> Result<bool, Halt> {
        let log = self.cfg.name.clone();
        // The certificate this entry sighted first, if it did.
        let mut sighted = None;
        let event = match entry.verdict {
            Verdict::Unauthorized { info, matches } => {
                let first = self
                    .shared
                    .seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .first_sighting(info.tbs_hash);
                if first {
                    sighted = Some(info.tbs_hash);
                } else {
                    self.shared.counters.duplicate();
                }
                first.then_some(Event::Discovered {
                    log,
                    index: entry.index,
                    timestamp: entry.timestamp,
                    info,
                    matches,
                })
            }
            Verdict::Malformed { reason, matches } if !matches.is_empty() => {
                Some(Event::Malformed {
                    log,
                    index: entry.index,
                    reason,
                    matches,
                })
            }
            _ => None,
        };
        let appended = match self.verifier.as_mut() {
            Some(v) => v.append_leaves([entry.leaf_hash]),
            None => Err(AppendError::NoTrustedTreeHead),
        };
        if let Err(AppendError::ReadAgain { .. }) = appended {
            // Leaves from before a restart failed the root check: the entries from
            // the confirmed range on (this one too) are read and alerted on again.
            // This entry's event was not handed over: its certificate is not seen
            // yet, or reading it again would take it for a duplicate.
            if let Some(tbs_hash) = sighted {
                (self.shared.seen.lock())
                    .unwrap_or_else(|p| p.into_inner())
                    .forget(tbs_hash);
            }
            self.save().await?;
            return Ok(false);
        }
        if let Err(e) = appended {
            // Fail towards alerting: the entry's event still goes out, but the
            // progress stays before it.
            if let Some(event) = event {
                let kind = alert_kind(&event);
                self.send(event).await?;
                self.alerted(entry.index, kind);
            }
            return Err(append_error(&self.cfg.name, e));
        }
        if let Some(event) = event {
            let kind = alert_kind(&event);
            self.outbox.hand_over(event).await?;
            self.alerted(entry.index, kind);
            self.save().await?;
        }
        Ok(true)
    }

    fn alerted(&self, index: u64, kind: &'static str) {
        tracing::info!(index, kind, "alert emitted");
        self.shared.counters.alert(&self.cfg.name, kind);
    }
}

/// Whether `head` contradicts a read-only log's final tree head `(size, root)`:
/// larger, or of its size with another root.
fn past_final(head: &SignedTreeHead, size: u64, root: Hash) -> bool {
    head.tree_size > size || (head.tree_size == size && head.root_hash != root)
}

/// Lets a stop, a drop, or another log's task in between two entries of a batch:
/// checking a batch (up to 64 MiB of tile) would otherwise hold the worker
/// thread from its fetch to its end.
async fn between_entries() {
    tokio::task::yield_now().await;
}

/// Parses and checks one `get-entries` entry.
fn check_raw(e: &RawEntry, index: u64, watchlist: &Watchlist, auth: &Authorizer) -> Fetched {
    let (timestamp, verdict) = match MerkleTreeLeaf::parse(&e.leaf_input) {
        Err(err) => (0, malformed(watchlist, err.to_string())),
        Ok(leaf) => (
            leaf.entry.timestamp,
            match (
                leaf.entry.entry,
                ExtraData::parse(&leaf.entry, &e.extra_data),
            ) {
                (_, Err(err)) => malformed(watchlist, format!("extra_data: {err}")),
                (
                    SignedEntry::Precert { .. },
                    Ok(ExtraData::Precert {
                        pre_certificate, ..
                    }),
                ) => check_log_entry(&leaf.entry, Some(pre_certificate), index, watchlist, auth),
                _ => check_log_entry(&leaf.entry, None, index, watchlist, auth),
            },
        ),
    };
    Fetched {
        index,
        leaf_hash: leaf_hash(&e.leaf_input),
        timestamp,
        verdict,
    }
}

fn malformed(watchlist: &Watchlist, reason: String) -> Verdict {
    Verdict::Malformed {
        reason,
        matches: watchlist.match_all(),
    }
}

/// Whether a verdict matched a watch item (authorized or not).
fn matches_an_item(v: &Verdict) -> bool {
    match v {
        Verdict::Authorized { .. } | Verdict::Unauthorized { .. } => true,
        Verdict::Malformed { matches, .. } => !matches.is_empty(),
        _ => false,
    }
}

fn alert_kind(e: &Event) -> &'static str {
    match e {
        Event::Malformed { .. } => "malformed",
        _ => "discovered",
    }
}
