//! One log's task: poll the head, verify it, read and check the entries, hand
//! alerts over, save progress.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::config::LogConfig;
use super::delivery::{Envelope, Seen};
use super::event::{Event, Health};
use super::tiles::TileCache;
use crate::check::{Verdict, check_log_entry, check_tile_leaf};
use crate::checkpoint::checkpoint_tree_head;
use crate::client::{Rfc6962Client, StaticCtClient};
use crate::entry::{ExtraData, MerkleTreeLeaf, SignedEntry, TILE_WIDTH, parse_data_tile};
use crate::error::Error;
use crate::merkle::{CompactRange, Hash, leaf_hash};
use crate::responses::{consistency_proof_ranges, perfect_subtrees, tile_path};
use crate::state::{LogProgress, StateStore};
use crate::sth::SignedTreeHead;
use crate::verify::{AppendError, LogMisbehaved, LogVerifier, Misbehaviour};
use crate::watch::{Authorizer, SharedWatchlist, Watchlist};

pub(super) struct Shared {
    pub(super) watchlist: SharedWatchlist,
    pub(super) authorizer: Authorizer,
    pub(super) store: Arc<dyn StateStore>,
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

pub(super) struct LogTask {
    pub(super) cfg: LogConfig,
    pub(super) source: Source,
    pub(super) verifier: Option<LogVerifier>,
    pub(super) shared: Arc<Shared>,
    pub(super) tx: mpsc::Sender<Envelope>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) saved: Option<LogProgress>,
    pub(super) healthy: Option<bool>,
}

/// One entry of a batch, owned, with what the verifier and matcher need.
struct Fetched {
    index: u64,
    leaf_hash: Hash,
    timestamp: u64,
    verdict: Verdict,
}

impl LogTask {
    fn log_id(&self) -> Hash {
        *self.cfg.key.log_id()
    }

    async fn send(&mut self, event: Event) -> Result<(), Halt> {
        let mut stop = self.stop.clone();
        or_stop(&mut stop, self.tx.send(Envelope { event, ack: None }))
            .await?
            .map_err(|_| Halt::Stop)
    }

    /// Sends an alerting event and waits until the consumer has taken it.
    async fn hand_over(&mut self, event: Event) -> Result<(), Halt> {
        let (ack, mut taken) = oneshot::channel();
        let mut stop = self.stop.clone();
        let envelope = Envelope {
            event,
            ack: Some(ack),
        };
        or_stop(&mut stop, self.tx.send(envelope))
            .await?
            .map_err(|_| Halt::Stop)?;
        // A stop that races with the consumer taking the event must not lose the
        // save: the ack is checked first, and again after the stop.
        tokio::select! {
            biased;
            r = &mut taken => r.map_err(|_| Halt::Stop),
            _ = stop.changed() => taken.try_recv().map_err(|_| Halt::Stop),
        }
    }

    async fn save(&mut self) -> Result<(), Halt> {
        let Some(progress) = self.verifier.as_ref().and_then(LogVerifier::progress) else {
            return Ok(());
        };
        if self.saved.as_ref() == Some(&progress) {
            return Ok(());
        }
        let store = self.shared.store.clone();
        let id = self.log_id();
        let p = progress.clone();
        // Not interruptible by a stop: a handed-over event's progress must land.
        tokio::task::spawn_blocking(move || store.save(&id, &p))
            .await
            .map_err(|e| Error::Config(format!("state save task: {e}")))??;
        self.saved = Some(progress);
        Ok(())
    }

    pub(super) async fn run(mut self) {
        let store = self.shared.store.clone();
        let id = self.log_id();
        let loaded = tokio::task::spawn_blocking(move || store.load(&id)).await;
        let restored = match loaded {
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(p))) => LogVerifier::restore(
                self.cfg.name.clone(),
                self.cfg.key.clone(),
                p.trusted.clone(),
                p.range.clone(),
            )
            .map(|v| {
                self.saved = Some(p);
                Some(v)
            }),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(Error::Config(format!("state load task: {e}"))),
        };
        match restored {
            Ok(v) => self.verifier = v,
            Err(e) => {
                let reason = format!("stored state unusable: {e}");
                let _ = self.health(Health::Stopped { reason }).await;
                return;
            }
        }
        loop {
            match self.step().await {
                Ok(()) => {
                    if self.healthy != Some(true) && self.health(Health::Ok).await.is_err() {
                        return;
                    }
                    self.healthy = Some(true);
                }
                Err(Halt::Stop) => return,
                Err(Halt::Finished(reason)) => {
                    let _ = self.health(Health::Stopped { reason }).await;
                    return;
                }
                Err(Halt::Misbehaved(m)) => {
                    let reason = format!("log misbehaved: {}", kind(&m.evidence));
                    if self.send(Event::LogMisbehaved(m)).await.is_ok() {
                        let _ = self.health(Health::Stopped { reason }).await;
                    }
                    return;
                }
                Err(Halt::Failed(e)) => {
                    tracing::warn!(log = %self.cfg.name, error = %e, "poll failed");
                    self.healthy = Some(false);
                    let health = Health::Failing {
                        error: e.to_string(),
                    };
                    if self.health(health).await.is_err() {
                        return;
                    }
                }
            }
            let pause = tokio::time::sleep(self.shared.poll_interval);
            if or_stop(&mut self.stop.clone(), pause).await.is_err() {
                return;
            }
        }
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
        let mut stop = self.stop.clone();
        let sth = or_stop(&mut stop, self.tree_head()).await??;
        if let Some((size, root)) = self.cfg.final_tree_head
            && (sth.tree_size > size || (sth.tree_size == size && sth.root_hash != root))
        {
            return Err(Error::Config(format!(
                "{}: head of size {} contradicts the log list's final tree head of size {size}",
                self.cfg.name, sth.tree_size
            ))
            .into());
        }
        match self
            .verifier
            .as_ref()
            .and_then(LogVerifier::trusted)
            .cloned()
        {
            None => or_stop(&mut stop, self.init(sth)).await??,
            Some(trusted) => {
                let proof = if sth.tree_size == trusted.tree_size {
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
            _ => Ok(()),
        }
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
                    return Err(Error::Config(format!(
                        "{}: last leaf reported at index {index}, not {}; cannot start at the end",
                        self.cfg.name,
                        n - 1
                    ))
                    .into());
                }
                match v.check_inclusion(n - 1, leaf, &proof) {
                    Ok(()) => {}
                    Err(AppendError::Misbehaved(m)) => return Err(m.into()),
                    Err(e) => return Err(Error::Config(format!("{e:?}")).into()),
                }
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
        self.verifier = Some(LogVerifier::restore(
            self.cfg.name.clone(),
            self.cfg.key.clone(),
            sth,
            range,
        )?);
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
            let log = self.cfg.name.clone();
            self.send(Event::Backlog {
                log,
                verified: pos,
                tree_size: size,
            })
            .await?;
            let mut stop = self.stop.clone();
            let batch = or_stop(&mut stop, self.fetch(pos, size)).await??;
            for entry in batch {
                self.process(entry).await?;
            }
            self.save().await?;
        }
    }

    async fn fetch(&mut self, pos: u64, size: u64) -> Result<Vec<Fetched>, Halt> {
        let watchlist = self.shared.watchlist.load();
        let auth = &self.shared.authorizer;
        match &mut self.source {
            Source::Rfc6962(c) => {
                let end = pos.saturating_add(self.shared.batch_size).min(size) - 1;
                let raw = c.get_entries(pos, end).await?;
                Ok(raw
                    .iter()
                    .zip(pos..)
                    .map(|(e, index)| {
                        let (timestamp, verdict) = match MerkleTreeLeaf::parse(&e.leaf_input) {
                            Err(err) => (0, malformed(&watchlist, err.to_string())),
                            Ok(leaf) => (
                                leaf.entry.timestamp,
                                match (
                                    leaf.entry.entry,
                                    ExtraData::parse(&leaf.entry, &e.extra_data),
                                ) {
                                    (_, Err(err)) => {
                                        malformed(&watchlist, format!("extra_data: {err}"))
                                    }
                                    (
                                        SignedEntry::Precert { .. },
                                        Ok(ExtraData::Precert {
                                            pre_certificate, ..
                                        }),
                                    ) => check_log_entry(
                                        &leaf.entry,
                                        Some(pre_certificate),
                                        index,
                                        &watchlist,
                                        auth,
                                    ),
                                    _ => {
                                        check_log_entry(&leaf.entry, None, index, &watchlist, auth)
                                    }
                                },
                            ),
                        };
                        Fetched {
                            index,
                            leaf_hash: leaf_hash(&e.leaf_input),
                            timestamp,
                            verdict,
                        }
                    })
                    .collect())
            }
            Source::StaticCt(c, _) => {
                let tile = pos / TILE_WIDTH as u64;
                let start = tile * TILE_WIDTH as u64;
                let width = (size - start).min(TILE_WIDTH as u64) as usize;
                let bytes = c.data_tile(tile, width).await?;
                let leaves = parse_data_tile(&bytes).map_err(|e| Error::Http {
                    log: self.cfg.name.clone(),
                    url: tile_path(None, tile, width),
                    status: Some(200),
                    reason: e.to_string(),
                })?;
                if leaves.len() < width {
                    return Err(Error::Http {
                        log: self.cfg.name.clone(),
                        url: tile_path(None, tile, width),
                        status: Some(200),
                        reason: format!("{} entries, {width} needed", leaves.len()),
                    }
                    .into());
                }
                let skip = (pos - start) as usize;
                Ok(leaves[skip..width]
                    .iter()
                    .zip(pos..)
                    .map(|(leaf, index)| Fetched {
                        index,
                        leaf_hash: leaf.leaf_hash(),
                        timestamp: leaf.entry.timestamp,
                        verdict: check_tile_leaf(leaf, index, &watchlist, auth),
                    })
                    .collect())
            }
        }
    }

    async fn process(&mut self, entry: Fetched) -> Result<(), Halt> {
        let log = self.cfg.name.clone();
        let event = match entry.verdict {
            Verdict::Unauthorized { info, matches }
                if self
                    .shared
                    .seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .first_sighting(info.tbs_hash) =>
            {
                Some(Event::Discovered {
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
        if let Err(e) = appended {
            // Fail towards alerting: the entry's event still goes out, but the
            // progress stays before it.
            if let Some(event) = event {
                self.send(event).await?;
            }
            return Err(match e {
                AppendError::Misbehaved(m) => Halt::Misbehaved(m),
                other => Halt::Failed(Error::Config(format!("{}: {other:?}", self.cfg.name))),
            });
        }
        if let Some(event) = event {
            self.hand_over(event).await?;
            self.save().await?;
        }
        Ok(())
    }
}

fn malformed(watchlist: &Watchlist, reason: String) -> Verdict {
    Verdict::Malformed {
        reason,
        matches: watchlist.match_all(),
    }
}

fn kind(m: &Misbehaviour) -> &'static str {
    match m {
        Misbehaviour::BadSignature { .. } => "bad signature",
        Misbehaviour::Fork { .. } => "fork",
        Misbehaviour::InconsistentTreeHeads { .. } => "inconsistent tree heads",
        Misbehaviour::RootMismatch { .. } => "root mismatch",
        Misbehaviour::BadInclusionProof { .. } => "bad inclusion proof",
        Misbehaviour::InconsistentWithPinned { .. } => "inconsistent with the pinned tree",
    }
}

/// Runs `fut` unless the monitor is stopping.
async fn or_stop<T>(
    stop: &mut watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Result<T, Halt> {
    if *stop.borrow() {
        return Err(Halt::Stop);
    }
    tokio::select! {
        biased;
        _ = stop.changed() => Err(Halt::Stop),
        v = fut => Ok(v),
    }
}
