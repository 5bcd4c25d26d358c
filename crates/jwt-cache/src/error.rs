//! The one error type of this crate: every rejection has its own variant.

use jsonwebtoken::Algorithm;

/// Why a token was refused, or why a key set or policy could not be built.
///
/// Messages name what was wrong and, where useful, a short non-secret input (a
/// `kid`, an algorithm name, a claim name). They never contain the token, its
/// signature, claim values or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is longer than the validator accepts at all.
    #[error("token of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The token's length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The token is not a compact JWS with a JSON header and payload.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header says `alg: none` (an unsigned token).
    #[error("unsigned token (alg \"none\") refused")]
    AlgNone,
    /// The header's `alg` is unknown or not allowed by the policy.
    #[error("algorithm {alg} not allowed by the policy")]
    AlgorithmNotAllowed {
        /// The header's `alg`, truncated and escaped.
        alg: String,
    },
    /// The header names a `kid` whose key is bound to another algorithm
    /// (algorithm confusion).
    #[error("key {kid} is bound to {key_alg:?}, token claims {token_alg:?}")]
    KeyAlgorithmMismatch {
        /// The key id, truncated and escaped.
        kid: String,
        /// The algorithm the key was loaded for.
        key_alg: Algorithm,
        /// The algorithm the token's header names.
        token_alg: Algorithm,
    },
    /// The header has a `crit` parameter: this validator understands no extension.
    #[error("critical header extension (crit) not understood")]
    UnsupportedCrit,
    /// The header's `typ` differs from the policy's.
    #[error("token type (typ) does not match the policy")]
    WrongType,
    /// The header has no `kid`; keys are resolved by `kid` only.
    #[error("token header has no kid")]
    MissingKid,
    /// No key with this `kid` is in the current key set.
    #[error("unknown key id {kid}")]
    UnknownKid {
        /// The key id, truncated and escaped.
        kid: String,
    },
    /// The signature does not verify with the key named by `kid`.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (with leeway and `reject_tokens_expiring_in_less_than`).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (with leeway).
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    /// `aud` does not name one of the policy's audiences (or is present when the
    /// policy names none).
    #[error("wrong audience")]
    WrongAudience,
    /// `iss` is not one of the policy's issuers.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `sub` differs from the policy's subject.
    #[error("wrong subject")]
    WrongSubject,
    /// A claim the policy requires is absent.
    #[error("required claim {0} missing")]
    MissingClaim(String),
    /// A registered claim has the wrong JSON type.
    #[error("claim {0} has an invalid format")]
    MalformedClaim(String),
    /// A time claim (`exp`, `nbf`, `iat`) is a number, but negative, not finite, or
    /// not below 2^64 seconds.
    #[error("claim {0} is out of range (a NumericDate is a non-negative number below 2^64)")]
    ClaimOutOfRange(String),
    /// The revocation check says the token is revoked.
    #[error("token revoked")]
    Revoked,
    /// The revocation check could not answer locally or answered `Unknown`; refused
    /// because the validator fails closed.
    #[error("revocation status unknown; refused (fail closed)")]
    RevocationUnknown,
    /// The key engine refused the key while verifying (e.g. a malformed RSA key).
    #[error("key {kid} rejected by the crypto backend")]
    KeyRejected {
        /// The key id, truncated and escaped.
        kid: String,
    },
    /// A key could not be added to a key set.
    #[error("invalid key {kid}: {reason}")]
    InvalidKey {
        /// The key id, truncated and escaped.
        kid: String,
        /// Why.
        reason: &'static str,
    },
    /// A JWKS document could not be parsed.
    #[error("invalid JWKS document: {0}")]
    InvalidJwks(String),
    /// A policy or configuration value is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}

/// Every rejection kind, in the order of [`crate::Stats::rejections`].
pub(crate) const KINDS: [&str; 23] = [
    "too_large",
    "malformed",
    "alg_none",
    "algorithm_not_allowed",
    "key_algorithm_mismatch",
    "unsupported_crit",
    "wrong_type",
    "missing_kid",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_audience",
    "wrong_issuer",
    "wrong_subject",
    "missing_claim",
    "malformed_claim",
    "revoked",
    "revocation_unknown",
    "key_rejected",
    "invalid_key",
    "config",
    "claim_out_of_range",
];

impl Error {
    /// A stable snake_case label for counters and logs (`"bad_signature"`, …).
    pub fn kind(&self) -> &'static str {
        KINDS[self.kind_index()]
    }

    pub(crate) fn kind_index(&self) -> usize {
        match self {
            Error::TooLarge { .. } => 0,
            Error::Malformed(_) => 1,
            Error::AlgNone => 2,
            Error::AlgorithmNotAllowed { .. } => 3,
            Error::KeyAlgorithmMismatch { .. } => 4,
            Error::UnsupportedCrit => 5,
            Error::WrongType => 6,
            Error::MissingKid => 7,
            Error::UnknownKid { .. } => 8,
            Error::BadSignature => 9,
            Error::Expired => 10,
            Error::NotYetValid => 11,
            Error::WrongAudience => 12,
            Error::WrongIssuer => 13,
            Error::WrongSubject => 14,
            Error::MissingClaim(_) => 15,
            Error::MalformedClaim(_) => 16,
            Error::Revoked => 17,
            Error::RevocationUnknown => 18,
            Error::KeyRejected { .. } => 19,
            Error::InvalidKey { .. } => 20,
            Error::InvalidJwks(_) | Error::InvalidConfig(_) => 21,
            Error::ClaimOutOfRange(_) => 22,
        }
    }
}

/// A short, escaped rendering of an attacker-chosen label (kid, alg) for messages.
pub(crate) fn label(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    let mut out = format!("{short:?}");
    if short.len() < s.len() {
        out.push('…');
    }
    out
}
