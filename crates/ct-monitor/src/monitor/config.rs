//! Which logs a monitor follows, and where they are read from.

use std::fmt;
use std::time::Duration;

use crate::error::Error;
use crate::loglist::{LogInfo, LogProtocol, LogState};
use crate::merkle::Hash;
use crate::sth::LogKey;
use crate::witness::WitnessPolicy;

/// A URL without credentials, as shown in names, `Debug` and errors.
pub(super) fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            // Both setters only fail for URLs that cannot have credentials at all.
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

/// Where a log is read from.
#[derive(Clone, PartialEq, Eq)]
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

impl fmt::Debug for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rfc6962 { url } => f
                .debug_struct("Rfc6962")
                .field("url", &redacted(url))
                .finish(),
            Self::StaticCt {
                monitoring_url,
                origin,
            } => f
                .debug_struct("StaticCt")
                .field("monitoring_url", &redacted(monitoring_url))
                .field("origin", origin)
                .finish(),
        }
    }
}

/// One log to follow: made by [`LogConfig::rfc6962`], [`LogConfig::static_ct`] or
/// [`LogConfig::from_log_info`], then adjusted through its fields; the monitor's
/// [`crate::MonitorBuilder::spawn`] checks it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogConfig {
    /// Name used in events, errors, traces and metric labels (by default the URL
    /// without credentials).
    pub name: String,
    /// The log's public key.
    pub key: LogKey,
    /// Protocol and URLs.
    pub source: LogSource,
    /// A read-only log's final tree head (size, root) from the log list: the log
    /// is read up to it and then left alone; a validly signed head that contradicts
    /// it (larger, or of its size with another root) is misbehaviour
    /// ([`crate::Misbehaviour::InconsistentWithPinned`]).
    pub final_tree_head: Option<(u64, Hash)>,
    /// Witnesses that must have cosigned a static-ct checkpoint before the monitor
    /// advances to it (`None`: the log's own signature is enough). A checkpoint
    /// without the quorum is a poll failure ([`crate::Health::Failing`]); the state stays
    /// where it was. Refused for an RFC 6962 log, whose tree heads carry no cosignatures.
    pub witnesses: Option<WitnessPolicy>,
    /// The log's maximum merge delay (the list's `mmd`; [`LogConfig::DEFAULT_MMD`]
    /// when it gives none). A log must serve a head no older than this (RFC 6962
    /// §3.5): once the trusted head is older than `mmd` plus the poll interval,
    /// every poll reports [`crate::Health::Failing`] until a fresher head arrives.
    /// Not zero. Read-only logs are exempt (their head is final).
    pub mmd: Duration,
}

impl LogConfig {
    /// The MMD assumed when none is known: 24 hours, what every log in Chrome's
    /// and Apple's lists declares.
    pub const DEFAULT_MMD: Duration = Duration::from_secs(24 * 60 * 60);

    /// An RFC 6962 log.
    pub fn rfc6962(url: &str, key: LogKey) -> Self {
        Self {
            name: redacted(url),
            key,
            source: LogSource::Rfc6962 {
                url: url.to_string(),
            },
            final_tree_head: None,
            witnesses: None,
            mmd: Self::DEFAULT_MMD,
        }
    }

    /// A static-ct-api log with its checkpoint origin.
    pub fn static_ct(monitoring_url: &str, origin: &str, key: LogKey) -> Self {
        Self {
            name: redacted(monitoring_url),
            key,
            source: LogSource::StaticCt {
                monitoring_url: monitoring_url.to_string(),
                origin: origin.to_string(),
            },
            final_tree_head: None,
            witnesses: None,
            mmd: Self::DEFAULT_MMD,
        }
    }

    /// From a log-list entry. A tiled log's origin is its submission URL without
    /// the scheme and trailing slash (static-ct-api); a read-only log keeps its
    /// final tree head; the list's `mmd` is kept (an `mmd` of 0 means none given:
    /// [`LogConfig::DEFAULT_MMD`]).
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
        if info.mmd > 0 {
            config.mmd = Duration::from_secs(info.mmd);
        }
        config
    }

    /// What cannot work, found before anything starts: a witness policy on an RFC
    /// 6962 log or one with a witness named like the log, an empty name or origin,
    /// a zero MMD.
    /// (URLs are checked when the log's client is made.)
    pub(super) fn check(&self) -> Result<(), Error> {
        if self.name.is_empty() {
            return Err(Error::invalid_config("logs.name", "empty log name"));
        }
        if self.mmd.is_zero() {
            return Err(Error::invalid_config(
                "logs.mmd",
                format!("{}: zero (every head would be stale at once)", self.name),
            ));
        }
        match (&self.source, &self.witnesses) {
            (LogSource::Rfc6962 { .. }, Some(_)) => Err(Error::invalid_config(
                "logs.witnesses",
                format!(
                    "{}: a witness policy needs a static-ct log (RFC 6962 heads carry no cosignatures)",
                    self.name
                ),
            )),
            (LogSource::StaticCt { origin, .. }, _) if origin.is_empty() => Err(
                Error::invalid_config("logs.origin", format!("{}: empty origin", self.name)),
            ),
            (LogSource::StaticCt { origin, .. }, Some(policy))
                if policy.witnesses().iter().any(|w| w.name() == origin) =>
            {
                Err(Error::invalid_config(
                    "logs.witnesses",
                    format!("{}: witness {origin:?} has the log's own name", self.name),
                ))
            }
            _ => Ok(()),
        }
    }
}
