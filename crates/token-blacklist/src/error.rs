//! The one error type of this crate.

use std::time::Duration;

/// What went wrong when building, connecting or revoking (checks never fail: they
/// answer a status).
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
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The builder setter (or `Config` field) that was wrong.
        field: &'static str,
        /// Why, with the value where it is not a secret.
        reason: String,
    },
    /// Redis failed; whether the revocation was written is unknown.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[error("redis failed")]
    Redis(#[source] redis::RedisError),
    /// The TLS handshake with Redis failed: the server's certificate is not trusted by
    /// the configured roots (wrong CA, wrong host name, expired), or the server does
    /// not speak TLS. Nothing was sent in plain text.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[error("TLS handshake with redis failed (is the CA right?)")]
    Tls(#[source] redis::RedisError),
    /// Redis may evict revocation keys: its `maxmemory-policy` is not `noeviction`
    /// (or could not be read). Every revocation key has a TTL, so every `volatile-*`
    /// and `allkeys-*` policy can evict one and un-revoke a token.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
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

impl Error {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Error {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}

/// A Redis error is [`Error::Tls`] when a TLS error is anywhere in its chain (what
/// rustls refused), else [`Error::Redis`].
#[cfg(feature = "redis")]
impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        if is_tls(&e) {
            Error::Tls(e)
        } else {
            Error::Redis(e)
        }
    }
}

#[cfg(feature = "redis")]
fn is_tls(e: &redis::RedisError) -> bool {
    #[cfg(feature = "tls")]
    {
        type Shared = std::sync::Arc<dyn std::error::Error + Send + Sync>;
        // What rustls refused reaches us as an `io::Error` wrapping a `rustls::Error`,
        // which redis-rs keeps in an `Arc`; `io::Error::source` skips the error it
        // wraps, so look inside both by hand.
        let io_wraps_tls = |io: &std::io::Error| {
            io.get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        };
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = next {
            let tls = err.is::<rustls::Error>()
                || err
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(io_wraps_tls)
                || err.downcast_ref::<Shared>().is_some_and(|shared| {
                    let shared: &(dyn std::error::Error + Send + Sync) = &**shared;
                    shared.is::<rustls::Error>()
                        || shared
                            .downcast_ref::<std::io::Error>()
                            .is_some_and(io_wraps_tls)
                });
            if tls {
                return true;
            }
            next = err.source();
        }
    }
    // Without the `tls` feature a rediss:// URL is refused by redis-rs itself.
    #[cfg(not(feature = "tls"))]
    let _ = e;
    false
}

impl From<Error> for palisade_core_traits::Error {
    fn from(e: Error) -> Self {
        use palisade_core_traits::Error as E;
        match e {
            Error::MissingClaim { claim } => E::invalid(claim, e.to_string()),
            Error::InvalidIdentifier { field, reason } => E::invalid(field, reason),
            Error::Full { .. } | Error::InvalidConfig { .. } => E::Refused(e.to_string()),
            #[cfg(feature = "redis")]
            Error::UnsafeEvictionPolicy { .. } => E::Refused(e.to_string()),
            #[cfg(feature = "redis")]
            Error::Redis(source) | Error::Tls(source) => E::Unavailable {
                backend: "redis",
                source: Box::new(source),
            },
            Error::Timeout(d) => E::Timeout(d),
        }
    }
}
