//! The crate's one error type.

use std::fmt;

/// Why a Merkle proof was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofFailure {
    /// The leaf index is not inside the tree (`index >= size`).
    IndexOutOfRange {
        /// Leaf index asked for.
        index: u64,
        /// Tree size of the proof.
        size: u64,
    },
    /// A consistency proof from the empty tree (policy: always refused, see docs).
    FromEmptyTree,
    /// The old tree is larger than the new one.
    SizesReversed {
        /// Old size.
        size1: u64,
        /// New size.
        size2: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    WrongLength {
        /// Hashes the algorithm needs.
        expected: usize,
        /// Hashes received.
        got: usize,
    },
    /// The recomputed root (or old root) differs from the one claimed.
    RootMismatch,
}

impl fmt::Display for ProofFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IndexOutOfRange { index, size } => {
                write!(f, "leaf index {index} is not below tree size {size}")
            }
            Self::FromEmptyTree => {
                f.write_str("consistency proofs from the empty tree are refused")
            }
            Self::SizesReversed { size1, size2 } => {
                write!(f, "old size {size1} is larger than new size {size2}")
            }
            Self::WrongLength { expected, got } => {
                write!(f, "proof has {got} hashes, these sizes need {expected}")
            }
            Self::RootMismatch => f.write_str("recomputed root differs from the claimed root"),
        }
    }
}

/// Everything that can go wrong in this crate.
///
/// Messages name the structure and the offset or value that was wrong; none of
/// the inputs is secret (logs, certificates and tree heads are public).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An inclusion proof did not verify.
    #[error("inclusion proof rejected: {0}")]
    InclusionProof(ProofFailure),
    /// A consistency proof did not verify.
    #[error("consistency proof rejected: {0}")]
    ConsistencyProof(ProofFailure),
    /// A binary (TLS presentation language) structure was malformed.
    #[error("malformed {structure} at byte {offset}: {reason}")]
    Malformed {
        /// Which structure, e.g. `"TimestampedEntry"`.
        structure: &'static str,
        /// Byte offset into the input where parsing stopped.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// A log public key could not be used.
    #[error("unusable log key: {0}")]
    BadKey(String),
    /// A tree head or checkpoint was syntactically wrong.
    #[error("malformed {what}: {reason}")]
    BadTreeHead {
        /// `"get-sth JSON"`, `"signed note"` or `"checkpoint"`.
        what: &'static str,
        /// What was wrong, with the offending value where it is short.
        reason: String,
    },
    /// A signature over a tree head or checkpoint did not verify.
    #[error("signature of {what} does not verify with the log key")]
    BadSignature {
        /// `"STH"` or `"checkpoint"`.
        what: &'static str,
    },
    /// A checkpoint carries no signature line from the expected key.
    #[error(
        "checkpoint has no signature from key {name:?} (id {})",
        hex::encode(key_id)
    )]
    NoSignatureFromKey {
        /// Expected key name (the log origin).
        name: String,
        /// Expected 4-byte key id.
        key_id: [u8; 4],
    },
    /// A precertificate does not match the TBS the log recorded for it.
    #[error("precertificate does not match the logged TBSCertificate: {reason}")]
    PrecertMismatch {
        /// Which part differs.
        reason: &'static str,
    },
    /// A shared-vocabulary event could not be built.
    #[error("security event: {0}")]
    Event(#[from] palisade_core_traits::Error),
    /// A log list is not a v3 log list document.
    #[error("invalid log list: {0}")]
    BadLogList(String),
    /// Stored progress could not be written or read back.
    #[error("state {}: {reason}", path.as_ref().map_or_else(|| "(in memory)".to_string(), |p| p.display().to_string()))]
    BadState {
        /// The file, for the file store.
        path: Option<std::path::PathBuf>,
        /// What went wrong.
        reason: String,
    },
    /// A watch item could not be parsed.
    #[error("invalid watch item {item:?}: {reason}")]
    BadWatchItem {
        /// The item as given.
        item: String,
        /// Why it was refused.
        reason: String,
    },
    /// A log could not be read over HTTP (after the retries that made sense).
    #[error("log {log}: GET {url}: {reason}")]
    Http {
        /// The log's name as configured.
        log: String,
        /// The URL that failed.
        url: String,
        /// The HTTP status, if a response arrived.
        status: Option<u16>,
        /// What went wrong.
        reason: String,
    },
    /// A response body was larger than the client's `max_body`. It is not retried:
    /// the same request gets the same body. For `get-entries` it names the entries
    /// asked for (the monitor then asks for fewer, down to one entry); for a
    /// static-ct tile, which cannot be asked for in parts, the tile.
    #[error("log {log}: GET {url}: body over the {limit}-byte limit{}", too_large_subject(*entries, tile.as_deref()))]
    BodyTooLarge {
        /// The log's name as configured.
        log: String,
        /// The URL that was asked.
        url: String,
        /// The limit, in bytes.
        limit: usize,
        /// The first and last entry asked for, for `get-entries`.
        entries: Option<(u64, u64)>,
        /// The tile's path below the log's prefix (e.g. `tile/data/000`), for a tile.
        tile: Option<String>,
    },
    /// A witness key could not be used.
    #[error("unusable witness key: {0}")]
    BadWitnessKey(String),
    /// Fewer of the required witnesses cosigned a checkpoint than the policy asks.
    #[error("checkpoint of {origin:?} has {} of the {required} required witness cosignatures (verified: {verified:?}; failed to verify: {failed:?})", verified.len())]
    WitnessQuorum {
        /// The log's origin.
        origin: String,
        /// The policy's threshold.
        required: usize,
        /// Witnesses whose cosignature verified.
        verified: Vec<String>,
        /// Configured witnesses with a line that did not verify.
        failed: Vec<String>,
    },
    /// A validly signed tree head is stamped further in the future than the
    /// allowed clock skew: it is not trusted (RFC 6962 timestamps are the log's
    /// signing time).
    #[error(
        "log {log}: tree head stamped {timestamp} ms since the epoch, {ahead:?} ahead of our clock (more than the {max_skew:?} skew allowed)"
    )]
    FutureTreeHead {
        /// The log's name as configured.
        log: String,
        /// The head's timestamp, milliseconds since the epoch.
        timestamp: u64,
        /// How far it is ahead of the monitor's clock.
        ahead: std::time::Duration,
        /// The skew tolerated.
        max_skew: std::time::Duration,
    },
    /// The log's newest trusted tree head is older than its MMD plus the poll
    /// interval: the log serves no fresh head (RFC 6962 §3.5), so it may be
    /// hiding entries behind a frozen view.
    #[error(
        "log {log}: newest tree head (stamped {timestamp} ms since the epoch) is {age:?} old, more than the {limit:?} allowed (MMD plus poll interval)"
    )]
    StaleTreeHead {
        /// The log's name as configured.
        log: String,
        /// The trusted head's timestamp, milliseconds since the epoch.
        timestamp: u64,
        /// Its age.
        age: std::time::Duration,
        /// MMD plus the poll interval.
        limit: std::time::Duration,
    },
    /// A certificate carries more identifiers (names, addresses and anomalies,
    /// after de-duplication) than one entry may cost to match. The monitor
    /// treats the entry as malformed: it matches every watch item.
    #[error("certificate has more than {limit} names and addresses")]
    TooManyIdentifiers {
        /// The limit.
        limit: usize,
    },
    /// A configuration that cannot work, named by its field (a builder's setter or a
    /// config struct's field, e.g. `"poll_interval"` or `"logs.witnesses"`).
    #[error("invalid configuration of {field}: {reason}")]
    InvalidConfig {
        /// The setting that was wrong.
        field: &'static str,
        /// What was wrong with it, with the value where it is not secret.
        reason: String,
    },
}

/// What an over-large body was the answer to, for [`Error::BodyTooLarge`].
fn too_large_subject(entries: Option<(u64, u64)>, tile: Option<&str>) -> String {
    match (entries, tile) {
        (Some((first, last)), _) if first == last => format!(" (entry {first} alone)"),
        (Some((first, last)), _) => format!(" (entries {first} to {last})"),
        (None, Some(tile)) => format!(" (tile {tile})"),
        (None, None) => String::new(),
    }
}

impl Error {
    pub(crate) fn malformed(
        structure: &'static str,
        offset: usize,
        reason: impl Into<String>,
    ) -> Self {
        Self::Malformed {
            structure,
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid_config(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}
