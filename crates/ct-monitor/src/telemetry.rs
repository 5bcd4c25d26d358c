//! What the engine counts: plain atomics behind [`crate::Monitor::stats`] and, with
//! feature `metrics`, the same through the `metrics` facade as
//! `palisade_ct_monitor_<what>_total` counters and `palisade_ct_monitor_<what>` gauges.
//!
//! Labels carry the configured log name (by default its URL without credentials) and
//! fixed words (a status class, an alert or misbehaviour kind), never a URL's
//! credentials or query.

use std::sync::atomic::{AtomicU64, Ordering};

/// The engine's counters since the monitor was spawned, over all its logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// HTTP requests sent to logs (every attempt, retries included).
    pub requests: u64,
    /// Requests answered with a status other than 2xx (404s of vanished partial
    /// tiles included) or not answered at all.
    pub failed_requests: u64,
    /// `429 Too Many Requests` answers.
    pub rate_limited: u64,
    /// Requests sent again after a 429, a 5xx, a timeout or a connection error.
    pub retries: u64,
    /// Polls (fetch the head, verify it, read the new entries) that succeeded.
    pub polls: u64,
    /// Polls that failed (after the client's retries); each is a `Health::Failing`.
    pub failed_polls: u64,
    /// Entries checked against the watchlist.
    pub entries: u64,
    /// Entries that matched a watch item (authorized, unauthorized or malformed).
    pub matches: u64,
    /// `Discovered` events handed to the consumer.
    pub discovered: u64,
    /// `Malformed` events handed to the consumer.
    pub malformed: u64,
    /// Unauthorized matches not reported again: the issuance was already discovered
    /// in this run (its precertificate, or the same certificate in another log).
    pub duplicates: u64,
    /// `LogMisbehaved` events (each stops its log's task).
    pub misbehaviour: u64,
    /// Progress saves to the state store.
    pub state_saves: u64,
}

/// The atomics behind [`Stats`], shared by a monitor's tasks and clients.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    failed_requests: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
    polls: AtomicU64,
    failed_polls: AtomicU64,
    entries: AtomicU64,
    matches: AtomicU64,
    discovered: AtomicU64,
    malformed: AtomicU64,
    duplicates: AtomicU64,
    misbehaviour: AtomicU64,
    state_saves: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// `2xx`, `3xx`, `4xx`, `5xx`, or `error` when no answer arrived.
#[cfg(feature = "metrics")]
fn status_class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        Some(_) | None => "error",
    }
}

impl Counters {
    pub(crate) fn stats(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            requests: get(&self.requests),
            failed_requests: get(&self.failed_requests),
            rate_limited: get(&self.rate_limited),
            retries: get(&self.retries),
            polls: get(&self.polls),
            failed_polls: get(&self.failed_polls),
            entries: get(&self.entries),
            matches: get(&self.matches),
            discovered: get(&self.discovered),
            malformed: get(&self.malformed),
            duplicates: get(&self.duplicates),
            misbehaviour: get(&self.misbehaviour),
            state_saves: get(&self.state_saves),
        }
    }

    /// A request to `log` was answered with `status` (`None`: no answer).
    pub(crate) fn request(&self, log: &str, status: Option<u16>) {
        add(&self.requests, 1);
        if !status.is_some_and(|s| (200..300).contains(&s)) {
            add(&self.failed_requests, 1);
        }
        if status == Some(429) {
            add(&self.rate_limited, 1);
        }
        #[cfg(feature = "metrics")]
        {
            metrics::counter!(
                "palisade_ct_monitor_requests_total",
                "log" => log.to_owned(),
                "status" => status_class(status)
            )
            .increment(1);
            if status == Some(429) {
                metrics::counter!("palisade_ct_monitor_rate_limited_total", "log" => log.to_owned())
                    .increment(1);
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = log;
    }

    /// A request to `log` is sent again.
    pub(crate) fn retry(&self, log: &str) {
        add(&self.retries, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!("palisade_ct_monitor_retries_total", "log" => log.to_owned())
            .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = log;
    }

    /// A poll of `log` ended.
    pub(crate) fn poll(&self, log: &str, ok: bool) {
        add(if ok { &self.polls } else { &self.failed_polls }, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "palisade_ct_monitor_polls_total",
            "log" => log.to_owned(),
            "outcome" => if ok { "ok" } else { "failed" }
        )
        .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = log;
    }

    /// `n` entries of `log` were checked, `matches` of them matched a watch item.
    pub(crate) fn entries(&self, log: &str, n: u64, matches: u64) {
        add(&self.entries, n);
        add(&self.matches, matches);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("palisade_ct_monitor_entries_total", "log" => log.to_owned())
                .increment(n);
            metrics::counter!("palisade_ct_monitor_matches_total", "log" => log.to_owned())
                .increment(matches);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = log;
    }

    /// An alert (`discovered` or `malformed`) about `log` was handed over.
    pub(crate) fn alert(&self, log: &str, kind: &'static str) {
        add(
            if kind == "malformed" {
                &self.malformed
            } else {
                &self.discovered
            },
            1,
        );
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "palisade_ct_monitor_alerts_total",
            "log" => log.to_owned(),
            "kind" => kind
        )
        .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = log;
    }

    /// An unauthorized match whose issuance was already discovered.
    pub(crate) fn duplicate(&self) {
        add(&self.duplicates, 1);
    }

    /// `log` misbehaved (`kind` as [`crate::Misbehaviour::kind`]).
    pub(crate) fn misbehaviour(&self, log: &str, kind: &'static str) {
        add(&self.misbehaviour, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "palisade_ct_monitor_misbehaviour_total",
            "log" => log.to_owned(),
            "kind" => kind
        )
        .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = (log, kind);
    }

    /// A log's progress was saved.
    pub(crate) fn saved(&self) {
        add(&self.state_saves, 1);
    }
}

/// Where `log` stands: entries verified, entries behind the latest trusted head,
/// and seconds since its last successful poll (monotonic clock).
pub(crate) fn progress(log: &str, verified: u64, lag: u64, since_good_poll: Option<f64>) {
    #[cfg(feature = "metrics")]
    {
        metrics::gauge!("palisade_ct_monitor_tree_size_verified", "log" => log.to_owned())
            .set(verified as f64);
        metrics::gauge!("palisade_ct_monitor_lag_entries", "log" => log.to_owned()).set(lag as f64);
        if let Some(secs) = since_good_poll {
            metrics::gauge!(
                "palisade_ct_monitor_seconds_since_good_poll",
                "log" => log.to_owned()
            )
            .set(secs);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (log, verified, lag, since_good_poll);
}
