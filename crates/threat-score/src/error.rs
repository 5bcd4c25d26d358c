//! The crate's one error type.

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of its range; `reason` names the value found.
    #[error("invalid threat-score config {field}: {reason}")]
    InvalidConfig {
        /// The field, e.g. `thresholds` or `user_scale.window`.
        field: &'static str,
        /// What is wrong with it, with the value found.
        reason: String,
    },
    /// [`ThreatScorer::record`](crate::ThreatScorer::record) was given a context without
    /// a login outcome (`RequestContext::login`), so there is nothing to learn.
    #[error("the request context has no login outcome to record")]
    NoLoginOutcome,
    /// A MaxMind database could not be read.
    #[cfg(feature = "maxmind")]
    #[cfg_attr(docsrs, doc(cfg(feature = "maxmind")))]
    #[error("invalid MaxMind {what} database")]
    GeoDatabase {
        /// Which database (city or asn).
        what: &'static str,
        /// The reader's error.
        source: maxminddb::MaxMindDbError,
    },
    /// A database file could not be read.
    #[cfg(feature = "maxmind")]
    #[cfg_attr(docsrs, doc(cfg(feature = "maxmind")))]
    #[error("cannot read the {what} database {path}")]
    GeoFile {
        /// Which database (city or asn).
        what: &'static str,
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A row of a login data set (RBA CSV) could not be read.
    #[cfg(feature = "eval")]
    #[cfg_attr(docsrs, doc(cfg(feature = "eval")))]
    #[error("RBA data set line {line}: {reason}")]
    Dataset {
        /// The 1-based line number.
        line: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The login data set could not be read.
    #[cfg(feature = "eval")]
    #[cfg_attr(docsrs, doc(cfg(feature = "eval")))]
    #[error("cannot read the RBA data set")]
    DatasetIo {
        /// The I/O error.
        source: std::io::Error,
    },
    /// A saved [`State`](crate::State) whose contents are inconsistent.
    #[error("invalid threat-score state: {reason}")]
    InvalidState {
        /// What is wrong.
        reason: &'static str,
    },
    /// A saved [`State`](crate::State) from an unknown format version.
    #[error("threat-score state version {found} is not supported (expected {expected})")]
    StateVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
}
