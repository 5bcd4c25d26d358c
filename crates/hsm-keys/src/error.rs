//! The one error type of this crate.

use std::time::Duration;

use palisade_core_traits::JwsAlgorithm;

/// A boxed error kept as the `source()` of a backend failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in a key store, a signature, or the key lifecycle.
///
/// Messages name the key, algorithm or file involved; they never contain key
/// material or PINs. Cryptographic failures are deliberately opaque
/// ([`Error::Crypto`]): the operation is named and the backend cause, if any, is
/// kept as `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key name is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid key name {name:?}: {reason}")]
    InvalidKeyName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// No key with this name and version exists in the store.
    #[error("key {key} not found")]
    KeyNotFound {
        /// `name/version`.
        key: String,
    },
    /// The backend (or the token behind it) cannot do this with this algorithm.
    #[error("{backend} cannot {operation} {algorithm} keys: {reason}")]
    UnsupportedAlgorithm {
        /// `"soft"` or `"pkcs11"`.
        backend: &'static str,
        /// What was asked, e.g. `"generate"` or `"sign with"`.
        operation: &'static str,
        /// The algorithm.
        algorithm: JwsAlgorithm,
        /// Why not (e.g. the token's mechanism list lacks `CKM_EDDSA`).
        reason: String,
    },
    /// An imported key was malformed, of another algorithm, or too weak.
    #[error("rejected {algorithm} key: {reason}")]
    InvalidKey {
        /// The algorithm the key was imported for.
        algorithm: JwsAlgorithm,
        /// Why it was rejected (never the key bytes).
        reason: String,
    },
    /// A JWK given to import (a private AKP key, RFC 9964) was malformed.
    #[error("invalid JWK: {member}: {reason}")]
    InvalidJwk {
        /// The member that was wrong (`kty`, `alg`, `pub`, `priv`) or `(document)`.
        member: &'static str,
        /// Why (never the member's value).
        reason: &'static str,
    },
    /// A cryptographic operation failed. Opaque on purpose; `source()` carries
    /// the HSM or I/O cause when there is one.
    #[error("cryptographic operation failed: {operation}")]
    Crypto {
        /// What was being done, e.g. `"C_Sign"`.
        operation: &'static str,
        /// The backend cause, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A builder was given an unusable or missing value, or the configuration does
    /// not fit what it names: no token with this label, a bad `pkcs11:` URI, a
    /// missing PIN variable, a state for another key ring.
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The setter or field that was wrong.
        field: &'static str,
        /// What is wrong with it (never a PIN, a URI or key material).
        reason: String,
    },
    /// A lifecycle transition that the state machine does not allow.
    #[error("key {key} is {from}; cannot make it {to}")]
    InvalidTransition {
        /// `name/version`.
        key: String,
        /// Its current state.
        from: &'static str,
        /// The requested state.
        to: &'static str,
    },
    /// Retiring now would orphan tokens still valid: the key must stay published
    /// at least the longest token lifetime after it stopped signing.
    #[error("key {key} signed tokens that may be valid for {remaining:?} more; retire it later")]
    OverlapTooShort {
        /// `name/version`.
        key: String,
        /// How long until it may be retired.
        remaining: Duration,
    },
    /// No key of this key ring is active, so nothing can sign.
    #[error("key ring {name:?} has no active key")]
    NoActiveKey {
        /// The key ring name.
        name: String,
    },
    /// A token would outlive the overlap the key ring guarantees, or has no `exp`.
    #[error("token lifetime rejected: {reason}")]
    TokenLifetime {
        /// Why (the requested and maximum lifetimes).
        reason: String,
    },
    /// The token refused the PIN (`CKR_PIN_INCORRECT`, `…_LOCKED`, `…_EXPIRED`,
    /// `…_INVALID`, `…_LEN_RANGE`). The store does not offer it again: a token locks
    /// its PIN after a few wrong tries, and a store retrying on every signature would
    /// lock it. Build the store again with the right PIN.
    #[error(
        "token {token:?} refused the PIN ({reason}); not offered again: rebuild the store with the right PIN"
    )]
    PinRefused {
        /// The token's label.
        token: String,
        /// The PKCS#11 return value.
        reason: String,
    },
    /// Reading or writing the lifecycle state file failed.
    #[error("lifecycle state file {path}: {source}")]
    StateFile {
        /// The file.
        path: String,
        /// The I/O or JSON cause.
        #[source]
        source: BoxError,
    },
}

impl Error {
    pub(crate) fn crypto(operation: &'static str) -> Self {
        Error::Crypto {
            operation,
            source: None,
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn not_found(key: &crate::KeyRef) -> Self {
        Error::KeyNotFound {
            key: key.to_string(),
        }
    }
}

impl From<Error> for palisade_core_traits::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Crypto { .. } | Error::StateFile { .. } => {
                palisade_core_traits::Error::Unavailable {
                    backend: "hsm-keys",
                    source: Box::new(e),
                }
            }
            Error::TokenLifetime { .. } => {
                palisade_core_traits::Error::invalid("payload", e.to_string())
            }
            other => palisade_core_traits::Error::Refused(other.to_string()),
        }
    }
}
