//! The crate's error type.

use std::time::Duration;

/// What went wrong building a limiter or reaching its backend.
///
/// A request the limiter refuses is never an error: it is a denied
/// [`Decision`](crate::Decision) with its [`Denial`](crate::Denial) (a cost above the
/// burst included), so a handler that propagates errors answers 429, not 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A quota was refused at construction.
    #[error("invalid quota: {0}")]
    InvalidQuota(String),
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
    /// Redis may evict the limiter's keys: its `maxmemory-policy` is not
    /// `noeviction` (or could not be read). An evicted key is a spent quota silently
    /// refilled. Refused at connect unless
    /// [`RedisLimiterBuilder::allow_key_eviction`](crate::RedisLimiterBuilder::allow_key_eviction).
    #[cfg(feature = "redis")]
    #[error(
        "redis maxmemory-policy is {policy}: it may evict rate-limit keys, which refills their quota; \
         set maxmemory-policy noeviction, or accept the risk with allow_key_eviction(true)"
    )]
    UnsafeEvictionPolicy {
        /// The policy Redis reported (on a cluster, the first unsafe one), or why it
        /// could not be read.
        policy: String,
    },
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
