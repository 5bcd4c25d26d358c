//! Which logs a monitor follows, and where they are read from.

use crate::loglist::{LogInfo, LogProtocol, LogState};
use crate::merkle::Hash;
use crate::sth::LogKey;

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
