//! The one error type of this crate.

use std::time::Duration;

/// What went wrong when revoking (checks never fail: they answer a status).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Per-token revocation needs `jti` (the key) and `exp` (the entry's lifetime).
    /// A token without them can still be caught by a per-user watermark.
    #[error(
        "token has no {claim} claim: per-token revocation needs jti and exp; use a per-user watermark"
    )]
    MissingClaim {
        /// `"jti"` or `"exp"`.
        claim: &'static str,
    },
    /// An identifier (`iss`, `sub`, `jti`) is empty or longer than [`crate::MAX_ID_LEN`].
    #[error("invalid {field}: {reason}")]
    InvalidIdentifier {
        /// Which claim.
        field: &'static str,
        /// Why (the length, never the value).
        reason: String,
    },
    /// The local store holds `capacity` live revocations. We refuse rather than evict
    /// a live one (an eviction would bring a revoked token back to life).
    #[error("revocation store full ({capacity} live entries); raise Config::capacity")]
    Full {
        /// The configured bound.
        capacity: usize,
    },
    /// A configuration value was out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// Redis failed; whether the revocation was written is unknown.
    #[cfg(feature = "redis")]
    #[error("redis failed")]
    Redis(#[from] redis::RedisError),
    /// Redis may evict revocation keys: its `maxmemory-policy` is not `noeviction`
    /// (or could not be read). Every revocation key has a TTL, so every `volatile-*`
    /// and `allkeys-*` policy can evict one and un-revoke a token.
    #[cfg(feature = "redis")]
    #[error(
        "redis maxmemory-policy is {policy}: it may evict revocation keys (un-revoking tokens); set maxmemory-policy noeviction, or accept the risk with RedisBlacklistBuilder::allow_eviction_policy"
    )]
    UnsafeEvictionPolicy {
        /// The policy the server reported (or why it could not be read).
        policy: String,
    },
    /// Redis did not answer in time; whether the revocation was written is unknown.
    #[error("timed out after {0:?}; the outcome is unknown")]
    Timeout(Duration),
}

impl From<Error> for palisade_core_traits::Error {
    fn from(e: Error) -> Self {
        use palisade_core_traits::Error as E;
        match e {
            Error::MissingClaim { claim } => E::invalid(claim, e.to_string()),
            Error::InvalidIdentifier { field, reason } => E::invalid(field, reason),
            Error::Full { .. } | Error::InvalidConfig(_) => E::Refused(e.to_string()),
            #[cfg(feature = "redis")]
            Error::UnsafeEvictionPolicy { .. } => E::Refused(e.to_string()),
            #[cfg(feature = "redis")]
            Error::Redis(source) => E::Unavailable {
                backend: "redis",
                source: Box::new(source),
            },
            Error::Timeout(d) => E::Timeout(d),
        }
    }
}
