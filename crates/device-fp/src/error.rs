//! The crate's one error type.

use std::time::Duration;

/// Why a ClientHello, a JA4 string, a configuration or a TLS connection was refused.
///
/// Messages name what was wrong and the (non-secret) offending input, shortened; no
/// key material, header value or ClientHello byte appears in them.
#[derive(Debug, thiserror::Error)]
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
        /// Input length (for records: the least number of bytes they would need,
        /// as far as their headers announced it).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The ClientHello was split over more TLS records than we read
    /// ([`MAX_CLIENT_HELLO_RECORDS`](crate::MAX_CLIENT_HELLO_RECORDS)).
    #[error("ClientHello split over more than {max} TLS records")]
    TooManyRecords {
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
    /// A configuration value (a builder setting, the fingerprint key) is unusable.
    #[error("invalid configuration {field}: {reason}")]
    InvalidConfig {
        /// The setting, e.g. `max_devices_per_user` or `policy.half_life`.
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A live connection did not deliver in time.
    #[error("{what} not received within {after:?}")]
    Timeout {
        /// What was awaited (`ClientHello`, `TLS handshake`).
        what: &'static str,
        /// The configured timeout.
        after: Duration,
    },
    /// The connection failed (reading the ClientHello, or the TLS handshake itself).
    #[error("{during} failed: {source}")]
    Io {
        /// What was going on (`reading the ClientHello`, `TLS handshake`).
        during: &'static str,
        /// The I/O error (for a refused handshake: rustls' error inside it).
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A short, stable snake_case name of the variant, for metric labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::Oversized { .. } => "oversized",
            Error::TooManyRecords { .. } => "too_many_records",
            Error::NotClientHello { .. } => "not_client_hello",
            Error::Malformed(_) => "malformed",
            Error::InvalidJa4 { .. } => "invalid_ja4",
            Error::InvalidInput { .. } => "invalid_input",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::Timeout { .. } => "timeout",
            Error::Io { .. } => "io",
        }
    }
}

/// Cut a string for an error message.
pub(crate) fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}
