//! The crate's error type.

use std::time::Duration;

/// What went wrong building a quota or checking a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A quota was refused at construction.
    #[error("invalid quota: {0}")]
    InvalidQuota(String),
    /// A request's cost is larger than the burst: it could never be admitted.
    #[error("cost {cost} exceeds the burst of {burst}: such a request can never be admitted")]
    CostExceedsBurst {
        /// The cost asked for.
        cost: u32,
        /// The quota's burst.
        burst: u32,
    },
    /// A key or policy name is empty, too long, or has forbidden characters.
    #[error("invalid {what}: {reason}")]
    InvalidKey {
        /// `"key"` or `"policy name"`.
        what: &'static str,
        /// Why, with the offending value.
        reason: String,
    },
    /// A configuration value was refused.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Redis failed and the failure policy says to report it.
    #[cfg(feature = "redis")]
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// A Redis call did not answer within the per-call timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The script returned a reply of an unexpected shape (a bug or a foreign script).
    #[error("unexpected reply from the rate-limit script: {0}")]
    UnexpectedReply(String),
}
