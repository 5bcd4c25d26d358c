//! The one error type of this crate, shared by the cross-crate traits.

use std::time::Duration;

/// A boxed error kept as the `source()` of a backend failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong when parsing a shared value or running a cross-crate action.
///
/// Messages name the field or input that was wrong. They never contain secrets:
/// implementations must not put tokens, keys or PINs into `reason` strings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A JSON document could not be parsed into the expected type.
    #[error("invalid {what} JSON: {source}")]
    InvalidJson {
        /// The type that was being parsed, e.g. `"SecurityEvent"`.
        what: &'static str,
        /// serde_json's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A value was syntactically fine but not acceptable.
    #[error("invalid {field}: {reason}")]
    InvalidValue {
        /// Which field or argument was wrong.
        field: &'static str,
        /// Why, including the offending (non-secret) value.
        reason: String,
    },
    /// The backend behind an action could not be reached or failed.
    #[error("{backend} unavailable")]
    Unavailable {
        /// Which backend, e.g. `"redis"` or `"pkcs11"`.
        backend: &'static str,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// The action did not finish in time; whether it took effect is unknown.
    #[error("timed out after {0:?}; the outcome is unknown")]
    Timeout(Duration),
    /// The implementation refused the action by policy (e.g. an allowlisted target).
    #[error("refused: {0}")]
    Refused(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidValue`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidValue {
            field,
            reason: reason.into(),
        }
    }
}
