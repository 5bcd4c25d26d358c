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
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The builder setter (or argument) that was wrong.
        field: &'static str,
        /// Why, with the value.
        reason: String,
    },
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
    /// Redis failed at connect (checks answer by the failure policy instead).
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
    /// A Redis call did not answer within the per-call timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The script returned a reply of an unexpected shape (a bug or a foreign script).
    #[error("unexpected reply from the rate-limit script: {0}")]
    UnexpectedReply(String),
}

#[cfg(any(feature = "redis", feature = "tower"))]
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
