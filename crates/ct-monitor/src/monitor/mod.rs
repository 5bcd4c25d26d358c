//! The monitor engine (feature `http`): one task per log that fetches tree heads
//! and entries, verifies them with a `LogVerifier`, matches them against a shared
//! watchlist and an authorizer, and delivers events on an async stream. The
//! delivery guarantee is documented on [`Monitor`].

mod config;
mod delivery;
mod event;
mod task;
mod tiles;

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core_traits::{Clock, SecurityEvent, SystemClock};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::{LogConfig, LogSource};
use delivery::{Envelope, Seen};
pub use event::{Event, Health};
use task::{LogTask, Shared, Source};

use crate::client::{ClientConfig, Rfc6962Client, StaticCtClient};
use crate::error::Error;
use crate::loglist::{LogList, LogState};
use crate::state::{MemoryStateStore, StateStore};
use crate::telemetry::{Counters, Stats};
use crate::watch::{Authorizer, SharedWatchlist, Watchlist};

/// Configures and starts a [`Monitor`]: every setter is infallible, and
/// [`MonitorBuilder::spawn`] checks the whole configuration once.
pub struct MonitorBuilder {
    logs: Vec<LogConfig>,
    watchlist: Watchlist,
    authorizer: Authorizer,
    store: Arc<dyn StateStore>,
    clock: Arc<dyn Clock>,
    poll_interval: Duration,
    batch_size: NonZeroU64,
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

    /// Where progress is kept (default: in memory, lost on exit). A
    /// [`crate::FileStateStore`] keeps each log's [`crate::State`] in a file.
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = store;
        self
    }

    /// The clock (default: the system clock): `now()` stamps security events and
    /// dates `Retry-After` HTTP-dates; `monotonic()` paces requests and polls and
    /// measures the time since a log's last good poll.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Time between the starts of two polls of a log (default 60 s; not zero).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Entries asked per `get-entries` request (default 256). Static-ct logs are
    /// read a data tile (up to 256 entries) at a time.
    pub fn batch_size(mut self, n: NonZeroU64) -> Self {
        self.batch_size = n;
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

    /// Checks the configuration and starts one task per log on the current Tokio
    /// runtime. [`Error::InvalidConfig`] names what cannot work: no log, a zero
    /// `poll_interval`, `client_config.timeout` or `client_config.max_body`, a log's URL, origin or witness
    /// policy (`logs.*`), two logs with one key (they would share one state), or no
    /// Tokio runtime.
    pub fn spawn(self) -> Result<Monitor, Error> {
        if self.logs.is_empty() {
            return Err(Error::invalid_config("logs", "no logs to follow"));
        }
        if self.poll_interval.is_zero() {
            return Err(Error::invalid_config("poll_interval", "zero"));
        }
        if self.client.timeout.is_zero() {
            return Err(Error::invalid_config("client_config.timeout", "zero"));
        }
        if self.client.max_body == 0 {
            return Err(Error::invalid_config("client_config.max_body", "zero"));
        }
        let mut ids = HashSet::new();
        for cfg in &self.logs {
            cfg.check()?;
            if !ids.insert(*cfg.key.log_id()) {
                return Err(Error::invalid_config(
                    "logs",
                    format!("{}: a second log with the same key (log id)", cfg.name),
                ));
            }
        }
        let counters = Arc::new(Counters::default());
        let mut sources = Vec::with_capacity(self.logs.len());
        for cfg in &self.logs {
            let url_error = |e: Error| match e {
                Error::InvalidConfig { reason, .. } => {
                    Error::invalid_config("logs.url", format!("{}: {reason}", cfg.name))
                }
                other => other,
            };
            let source = match &cfg.source {
                LogSource::Rfc6962 { url } => Source::Rfc6962(
                    Rfc6962Client::new(&cfg.name, url, self.client.clone())
                        .map_err(url_error)?
                        .clock(self.clock.clone())
                        .counters(counters.clone()),
                ),
                LogSource::StaticCt {
                    monitoring_url,
                    origin,
                } => Source::StaticCt(
                    StaticCtClient::new(&cfg.name, monitoring_url, self.client.clone())
                        .map_err(url_error)?
                        .clock(self.clock.clone())
                        .counters(counters.clone()),
                    origin.clone(),
                ),
            };
            sources.push(source);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::invalid_config("runtime", "spawn must be called inside a Tokio runtime")
        })?;
        let (tx, rx) = mpsc::channel(self.capacity);
        let (stop_tx, stop_rx) = watch::channel(false);
        let watchlist = SharedWatchlist::new(self.watchlist);
        let shared = Arc::new(Shared {
            watchlist: watchlist.clone(),
            authorizer: self.authorizer,
            store: self.store,
            clock: self.clock.clone(),
            counters: counters.clone(),
            poll_interval: self.poll_interval,
            batch_size: self.batch_size.get(),
            start_at_end: self.start_at_end,
            seen: Mutex::new(Seen::new(self.dedupe)),
        });
        let tasks = self
            .logs
            .into_iter()
            .zip(sources)
            .map(|(cfg, source)| {
                let task = LogTask::new(cfg, source, shared.clone(), tx.clone(), stop_rx.clone());
                runtime.spawn(task.run())
            })
            .collect();
        Ok(Monitor {
            rx,
            watchlist,
            clock: self.clock,
            counters,
            stop: stop_tx,
            tasks,
        })
    }
}

/// A running monitor: an async stream of [`Event`]s. Dropping it stops every task.
///
/// # Delivery and restart guarantee
///
/// An alerting event ([`Event::Discovered`], [`Event::Malformed`]) counts as handed
/// over when [`Monitor::next_event`] (or the `Stream`) returns it. Only then does
/// the log's task save the progress up to and including that entry in the
/// [`StateStore`], before it looks at the next entry. Hence:
///
/// - after [`Monitor::shutdown`], every event that was returned is covered by the
///   saved progress and no event that was not returned is: a new monitor on the
///   same store continues with neither loss nor repetition (exactly once);
/// - after a crash, or a drop without `shutdown`, at most the last returned event
///   of each log can be delivered again (its save may not have happened): at least
///   once, never lost;
/// - progress never moves past an entry whose event was not returned, nor past a
///   misbehaviour: after [`Event::LogMisbehaved`] the log's task stops, and the
///   stored state still holds the last trusted tree head. The stored leaves short
///   of that head's size are unconfirmed (no signed root covers them yet): a
///   wrong entry among them is reported again after a restart, even once the log
///   serves the right one (see docs/ct-monitor.md).
///
/// [`Event::Health`] and [`Event::Backlog`] are informational and not tracked.
/// A certificate whose TBS hash was already discovered in this run (its
/// precertificate, or the same certificate in another log) gives no second
/// `Discovered` ([`MonitorBuilder::dedupe_capacity`]); that memory is not persisted.
pub struct Monitor {
    rx: mpsc::Receiver<Envelope>,
    watchlist: SharedWatchlist,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
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
            batch_size: NonZeroU64::new(256).unwrap_or(NonZeroU64::MIN),
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

    /// The counters since [`MonitorBuilder::spawn`], over all logs.
    pub fn stats(&self) -> Stats {
        self.counters.stats()
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
