//! The monitor engine (feature `http`): one task per log that fetches tree heads
//! and entries, verifies them with [`LogVerifier`], matches them against a
//! [`SharedWatchlist`] and an [`Authorizer`], and delivers [`Event`]s on an async
//! stream ([`Monitor`]).
//!
//! # Delivery and restart guarantee
//!
//! An alerting event ([`Event::Discovered`], [`Event::Malformed`]) counts as handed
//! over when [`Monitor::next_event`] (or the `Stream`) returns it. Only then does
//! the log's task save the progress up to and including that entry in the
//! [`StateStore`], before it looks at the next entry. Hence:
//!
//! - after [`Monitor::shutdown`], every event that was returned is covered by the
//!   saved progress and no event that was not returned is: a new monitor on the
//!   same store continues with neither loss nor repetition (exactly once);
//! - after a crash, or a drop without `shutdown`, at most the last returned event
//!   of each log can be delivered again (its save may not have happened): at least
//!   once, never lost;
//! - progress never moves past an entry whose event was not returned, nor past a
//!   misbehaviour: after [`Event::LogMisbehaved`] the log's task stops, and the
//!   stored state still holds the last verified tree head.
//!
//! [`Event::Health`] and [`Event::Backlog`] are informational and not tracked.
//! A certificate whose TBS hash was already discovered in this run (its
//! precertificate, or the same certificate in another log) gives no second
//! `Discovered` ([`MonitorBuilder::dedupe_capacity`]); that memory is not persisted.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core_traits::{Clock, SecurityEvent, SystemClock, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::check::{CertificateInfo, Verdict, check_log_entry, check_tile_leaf};
use crate::checkpoint::checkpoint_tree_head;
use crate::client::{ClientConfig, Rfc6962Client, StaticCtClient};
use crate::entry::{ExtraData, MerkleTreeLeaf, SignedEntry, TILE_WIDTH, parse_data_tile};
use crate::error::Error;
use crate::loglist::{LogInfo, LogList, LogProtocol, LogState};
use crate::merkle::{CompactRange, Hash, leaf_hash, node_hash};
use crate::responses::{consistency_proof_ranges, perfect_subtrees};
use crate::state::{LogProgress, MemoryStateStore, StateStore};
use crate::sth::{LogKey, SignedTreeHead};
use crate::verify::{
    AppendError, LogMisbehaved, LogVerifier, Misbehaviour, verdict_security_event,
};
use crate::watch::{Authorizer, SharedWatchlist, WatchMatch, Watchlist};

/// Where a log is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogSource {
    /// An RFC 6962 log at this base URL.
    Rfc6962 {
        /// Base URL (before `/ct/v1/`).
        url: String,
    },
    /// A static-ct-api log.
    StaticCt {
        /// Monitoring prefix (checkpoint, tiles).
        monitoring_url: String,
        /// Checkpoint origin line (and note key name).
        origin: String,
    },
}

/// One log to follow.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Name used in events and errors (the URL by default).
    pub name: String,
    /// The log's public key.
    pub key: LogKey,
    /// Protocol and URLs.
    pub source: LogSource,
    /// A read-only log's final tree head (size, root) from the log list: the log
    /// is read up to it and then left alone; a head that contradicts it is an error.
    pub final_tree_head: Option<(u64, Hash)>,
    /// Witnesses that must have cosigned a static-ct checkpoint before the monitor
    /// advances to it (`None`: the log's own signature is enough). A checkpoint
    /// without the quorum is a poll failure ([`Health::Failing`]); the state stays
    /// where it was. Refused for an RFC 6962 log, whose tree heads carry no cosignatures.
    pub witnesses: Option<crate::witness::WitnessPolicy>,
}

impl LogConfig {
    /// An RFC 6962 log.
    pub fn rfc6962(url: &str, key: LogKey) -> Self {
        Self {
            name: url.to_string(),
            key,
            source: LogSource::Rfc6962 {
                url: url.to_string(),
            },
            final_tree_head: None,
            witnesses: None,
        }
    }

    /// A static-ct-api log with its checkpoint origin.
    pub fn static_ct(monitoring_url: &str, origin: &str, key: LogKey) -> Self {
        Self {
            name: monitoring_url.to_string(),
            key,
            source: LogSource::StaticCt {
                monitoring_url: monitoring_url.to_string(),
                origin: origin.to_string(),
            },
            final_tree_head: None,
            witnesses: None,
        }
    }

    /// From a log-list entry. A tiled log's origin is its submission URL without
    /// the scheme and trailing slash (static-ct-api); a read-only log keeps its
    /// final tree head.
    pub fn from_log_info(info: &LogInfo) -> Self {
        let mut config = match &info.protocol {
            LogProtocol::Rfc6962 { url } => Self::rfc6962(url, info.key.clone()),
            LogProtocol::StaticCt {
                submission_url,
                monitoring_url,
            } => {
                let origin = submission_url
                    .split_once("://")
                    .map_or(submission_url.as_str(), |(_, rest)| rest)
                    .trim_end_matches('/');
                Self::static_ct(monitoring_url, origin, info.key.clone())
            }
        };
        if let LogState::ReadOnly {
            tree_size,
            root_hash,
        } = &info.state
        {
            config.final_tree_head = Some((*tree_size, *root_hash));
        }
        config
    }
}

/// How a log's task is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// The last poll succeeded (sent when a log starts working or recovers).
    Ok,
    /// The last poll failed (after the client's retries); the task tries again.
    Failing {
        /// The error, naming the URL.
        error: String,
    },
    /// The task stopped for good (misbehaviour, unreadable state).
    Stopped {
        /// Why.
        reason: String,
    },
}

/// What a monitor reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A certificate or precertificate matching the watchlist that the authorizer
    /// does not know.
    Discovered {
        /// Log name.
        log: String,
        /// Entry index.
        index: u64,
        /// Entry timestamp (ms since the epoch, as logged).
        timestamp: u64,
        /// The certificate.
        info: CertificateInfo,
        /// Which watch items matched which identifiers.
        matches: Vec<WatchMatch>,
    },
    /// An entry that could not be parsed or checked; it matches every watch item.
    Malformed {
        /// Log name.
        log: String,
        /// Entry index.
        index: u64,
        /// Why.
        reason: String,
        /// Every watch item.
        matches: Vec<WatchMatch>,
    },
    /// The log contradicted itself; the evidence is inside. Its task stops.
    LogMisbehaved(Box<LogMisbehaved>),
    /// A log's task changed health.
    Health {
        /// Log name.
        log: String,
        /// New health.
        health: Health,
    },
    /// A log has entries left to process.
    Backlog {
        /// Log name.
        log: String,
        /// Entries verified and processed.
        verified: u64,
        /// Size of the trusted tree head.
        tree_size: u64,
    },
}

impl Event {
    /// The log the event is about.
    pub fn log(&self) -> &str {
        match self {
            Self::Discovered { log, .. }
            | Self::Malformed { log, .. }
            | Self::Health { log, .. }
            | Self::Backlog { log, .. } => log,
            Self::LogMisbehaved(m) => &m.log,
        }
    }

    /// The core-traits event for an unauthorized or malformed certificate or a
    /// misbehaving log; `None` for health and backlog.
    pub fn to_security_event(&self, time: Timestamp) -> Result<Option<SecurityEvent>, Error> {
        match self {
            Self::Discovered {
                log,
                index,
                info,
                matches,
                ..
            } => {
                let v = Verdict::Unauthorized {
                    info: info.clone(),
                    matches: matches.clone(),
                };
                verdict_security_event(&v, log, *index, time)
            }
            Self::Malformed {
                log,
                index,
                reason,
                matches,
            } => {
                let v = Verdict::Malformed {
                    reason: reason.clone(),
                    matches: matches.clone(),
                };
                verdict_security_event(&v, log, *index, time)
            }
            Self::LogMisbehaved(m) => m.to_security_event(time).map(Some),
            _ => Ok(None),
        }
    }
}

/// Configures and starts a [`Monitor`].
pub struct MonitorBuilder {
    logs: Vec<LogConfig>,
    watchlist: Watchlist,
    authorizer: Authorizer,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
    batch_size: u64,
    start_at_end: bool,
    client: ClientConfig,
    capacity: usize,
    dedupe: usize,
}

impl std::fmt::Debug for MonitorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorBuilder")
            .field("logs", &self.logs.len())
            .field("poll_interval", &self.poll_interval)
            .field("batch_size", &self.batch_size)
            .field("start_at_end", &self.start_at_end)
            .finish_non_exhaustive()
    }
}

impl MonitorBuilder {
    /// Follows one log.
    pub fn log(mut self, log: LogConfig) -> Self {
        self.logs.push(log);
        self
    }

    /// Follows the logs of a v3 list that are pending, qualified, usable or
    /// read-only (retired and rejected logs are left out).
    pub fn log_list(mut self, list: &LogList) -> Self {
        for info in &list.logs {
            if matches!(
                info.state,
                LogState::Pending
                    | LogState::Qualified
                    | LogState::Usable
                    | LogState::ReadOnly { .. }
            ) {
                self.logs.push(LogConfig::from_log_info(info));
            }
        }
        self
    }

    /// The watchlist (replace it later with [`Monitor::replace_watchlist`]).
    pub fn watchlist(mut self, list: Watchlist) -> Self {
        self.watchlist = list;
        self
    }

    /// Certificates that must not alert.
    pub fn authorizer(mut self, authorizer: Authorizer) -> Self {
        self.authorizer = authorizer;
        self
    }

    /// Where progress is kept (default: in memory, lost on exit).
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = store;
        self
    }

    /// The clock for security-event timestamps (default: system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Time between polls of a log's tree head (default 60 s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Entries asked per `get-entries` request (default 256). Static-ct logs are
    /// read a data tile (up to 256 entries) at a time.
    pub fn batch_size(mut self, n: u64) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// For a log with no stored progress, start at its current tree head instead of
    /// entry 0 (the compact range comes from an inclusion proof of the last entry,
    /// or from the Merkle tiles). Default: from entry 0.
    pub fn start_at_end(mut self, yes: bool) -> Self {
        self.start_at_end = yes;
        self
    }

    /// How many issuances (TBS hashes) to remember so that a precertificate and
    /// its certificate, or one certificate in several logs, give one `Discovered`
    /// event (default 100,000; 0 turns it off). In memory only: after a restart the
    /// first sighting alerts again. Oldest hashes are forgotten first.
    pub fn dedupe_capacity(mut self, n: usize) -> Self {
        self.dedupe = n;
        self
    }

    /// HTTP pacing, retries and timeouts.
    pub fn client_config(mut self, config: ClientConfig) -> Self {
        self.client = config;
        self
    }

    /// Starts one task per log on the current Tokio runtime.
    pub fn spawn(self) -> Result<Monitor, Error> {
        if self.logs.is_empty() {
            return Err(Error::Config("no logs to follow".into()));
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("spawn must be called inside a Tokio runtime".into()))?;
        let (tx, rx) = mpsc::channel(self.capacity);
        let (stop_tx, stop_rx) = watch::channel(false);
        let watchlist = SharedWatchlist::new(self.watchlist);
        let shared = Arc::new(Shared {
            watchlist: watchlist.clone(),
            authorizer: self.authorizer,
            store: self.store,
            poll_interval: self.poll_interval,
            batch_size: self.batch_size,
            start_at_end: self.start_at_end,
            seen: Mutex::new(Seen::new(self.dedupe)),
        });
        if let Some(cfg) = self
            .logs
            .iter()
            .find(|c| c.witnesses.is_some() && matches!(c.source, LogSource::Rfc6962 { .. }))
        {
            return Err(Error::Config(format!(
                "{}: a witness policy needs a static-ct log (RFC 6962 heads carry no cosignatures)",
                cfg.name
            )));
        }
        let mut tasks = Vec::new();
        for cfg in self.logs {
            let source = match &cfg.source {
                LogSource::Rfc6962 { url } => {
                    Source::Rfc6962(Rfc6962Client::new(&cfg.name, url, self.client.clone())?)
                }
                LogSource::StaticCt {
                    monitoring_url,
                    origin,
                } => Source::StaticCt(
                    StaticCtClient::new(&cfg.name, monitoring_url, self.client.clone())?,
                    origin.clone(),
                ),
            };
            let task = LogTask {
                cfg,
                source,
                verifier: None,
                shared: shared.clone(),
                tx: tx.clone(),
                stop: stop_rx.clone(),
                saved: None,
                healthy: None,
            };
            tasks.push(runtime.spawn(task.run()));
        }
        Ok(Monitor {
            rx,
            watchlist,
            clock: self.clock,
            stop: stop_tx,
            tasks,
        })
    }
}

/// A running monitor: an async stream of [`Event`]s (see the module docs for the
/// delivery guarantee). Dropping it stops every task.
pub struct Monitor {
    rx: mpsc::Receiver<Envelope>,
    watchlist: SharedWatchlist,
    clock: Arc<dyn Clock>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("logs", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl Monitor {
    /// A builder with nothing to follow yet.
    pub fn builder() -> MonitorBuilder {
        MonitorBuilder {
            logs: Vec::new(),
            watchlist: Watchlist::default(),
            authorizer: Authorizer::new(),
            store: Arc::new(MemoryStateStore::default()),
            clock: Arc::new(SystemClock),
            poll_interval: Duration::from_secs(60),
            batch_size: 256,
            start_at_end: false,
            client: ClientConfig::default(),
            capacity: 64,
            dedupe: 100_000,
        }
    }

    /// The next event; `None` once every log's task has ended.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.rx.recv().await.map(Envelope::hand_over)
    }

    /// Replaces the watchlist; each log uses the new one from its next batch.
    pub fn replace_watchlist(&self, list: Watchlist) {
        self.watchlist.replace(list);
    }

    /// The shared watchlist handle (to replace it from elsewhere).
    pub fn watchlist(&self) -> SharedWatchlist {
        self.watchlist.clone()
    }

    /// [`Event::to_security_event`] stamped with the monitor's clock.
    pub fn security_event(&self, event: &Event) -> Result<Option<SecurityEvent>, Error> {
        event.to_security_event(self.clock.now())
    }

    /// Stops every task after it has saved the progress of what was handed over,
    /// and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl futures_util::Stream for Monitor {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx).map(|e| e.map(Envelope::hand_over))
    }
}

struct Envelope {
    event: Event,
    ack: Option<oneshot::Sender<()>>,
}

impl Envelope {
    fn hand_over(self) -> Event {
        if let Some(ack) = self.ack {
            let _ = ack.send(());
        }
        self.event
    }
}

struct Shared {
    watchlist: SharedWatchlist,
    authorizer: Authorizer,
    store: Arc<dyn StateStore>,
    poll_interval: Duration,
    batch_size: u64,
    start_at_end: bool,
    seen: Mutex<Seen>,
}

/// Recently discovered issuances, oldest first out.
struct Seen {
    capacity: usize,
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
}

impl Seen {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `tbs_hash`; `false` if it was already there.
    fn first_sighting(&mut self, tbs_hash: Hash) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if !self.set.insert(tbs_hash) {
            return false;
        }
        self.order.push_back(tbs_hash);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

enum Source {
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

struct LogTask {
    cfg: LogConfig,
    source: Source,
    verifier: Option<LogVerifier>,
    shared: Arc<Shared>,
    tx: mpsc::Sender<Envelope>,
    stop: watch::Receiver<bool>,
    saved: Option<LogProgress>,
    healthy: Option<bool>,
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

    async fn run(mut self) {
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
                    url: crate::responses::tile_path(None, tile, width),
                    status: Some(200),
                    reason: e.to_string(),
                })?;
                if leaves.len() < width {
                    return Err(Error::Http {
                        log: self.cfg.name.clone(),
                        url: crate::responses::tile_path(None, tile, width),
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

/// Merkle tiles fetched while building one proof or compact range.
#[derive(Default)]
struct TileCache(std::collections::HashMap<(u8, u64), Vec<Hash>>);

impl TileCache {
    /// The hash of the perfect subtree at `level`, `index` in a tree of `tree_size`.
    async fn node(
        &mut self,
        c: &mut StaticCtClient,
        level: u8,
        index: u64,
        tree_size: u64,
    ) -> Result<Hash, Error> {
        let (tile_level, sub) = (level / 8, level % 8);
        let first = index << sub;
        let count = 1usize << sub;
        let tile = first / TILE_WIDTH as u64;
        let offset = (first % TILE_WIDTH as u64) as usize;
        let available = (tree_size >> (8 * u32::from(tile_level))) - tile * TILE_WIDTH as u64;
        let width = available.min(TILE_WIDTH as u64) as usize;
        let hashes = match self.0.entry((tile_level, tile)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(c.hash_tile(tile_level, tile, width).await?)
            }
        };
        let Some(nodes) = hashes.get(offset..offset + count) else {
            return Err(Error::Config(format!(
                "tile {tile_level}/{tile} has no nodes {offset}..{}",
                offset + count
            )));
        };
        let mut nodes = nodes.to_vec();
        while nodes.len() > 1 {
            nodes = nodes
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
        }
        Ok(nodes[0])
    }

    /// The Merkle root of leaves `[start, end)`.
    async fn range_root(
        &mut self,
        c: &mut StaticCtClient,
        start: u64,
        end: u64,
        tree_size: u64,
    ) -> Result<Hash, Error> {
        let mut roots = Vec::new();
        for (level, index) in perfect_subtrees(start, end) {
            roots.push(self.node(c, level, index, tree_size).await?);
        }
        let mut it = roots.into_iter().rev();
        let last = it.next().unwrap_or(crate::merkle::EMPTY_ROOT);
        Ok(it.fold(last, |acc, h| node_hash(&h, &acc)))
    }
}
