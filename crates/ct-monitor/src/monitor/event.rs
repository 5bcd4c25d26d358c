//! What a monitor reports.

use palisade_core_traits::{SecurityEvent, Timestamp};

use crate::check::{CertificateInfo, Verdict};
use crate::error::Error;
use crate::verify::LogMisbehaved;
use crate::watch::WatchMatch;

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
        /// Entries read and checked (their leaves are confirmed by a signed root
        /// only when they reach `tree_size`).
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
                v.to_security_event(log, *index, time)
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
                v.to_security_event(log, *index, time)
            }
            Self::LogMisbehaved(m) => m.to_security_event(time).map(Some),
            _ => Ok(None),
        }
    }
}
