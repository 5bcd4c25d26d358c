//! The crate's one error type.

/// Why a ClientHello, a JA4 string or a fingerprint input was refused.
///
/// Messages name what was wrong and the (non-secret) offending input, shortened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before a length-prefixed field did.
    #[error("truncated ClientHello: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needed.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// The input is larger than any ClientHello we accept.
    #[error("ClientHello of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a ClientHello (wrong record or handshake type).
    #[error("not a TLS ClientHello: {what} is 0x{value:02x}")]
    NotClientHello {
        /// Which byte was checked.
        what: &'static str,
        /// Its value.
        value: u8,
    },
    /// Lengths inside the ClientHello contradict each other.
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    /// A JA4 string (e.g. from a proxy) does not have JA4's format.
    #[error("invalid JA4 string {value:?}: {reason}")]
    InvalidJa4 {
        /// The string, cut to 64 characters.
        value: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A fingerprint input (header or client-reported value) was unusable.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which input.
        what: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// The deployment secret for keyed hashes is too short.
    #[error("fingerprint key must be at least {min} bytes, got {len}")]
    WeakKey {
        /// Bytes given.
        len: usize,
        /// Minimum.
        min: usize,
    },
}

/// Cut a string for an error message.
pub(crate) fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}
