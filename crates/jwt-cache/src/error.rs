//! The one error type of this crate: every rejection has its own variant.

use crate::mldsa::TokenAlgorithm;

/// Why a request or token was refused, or why a key set, policy or cache could not
/// be built. [`Error::class`] sorts them into whose problem it is.
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
    #[error("key {kid} is bound to {key_alg}, token claims {token_alg}")]
    KeyAlgorithmMismatch {
        /// The key id, truncated and escaped.
        kid: String,
        /// The algorithm the key was loaded for.
        key_alg: TokenAlgorithm,
        /// The algorithm the token's header names.
        token_alg: TokenAlgorithm,
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
    /// The validator has no key at all (an empty [`crate::KeySet`]): it cannot
    /// accept any token, so this is a configuration problem, not the token's.
    #[error("the validator has no keys")]
    NoKeys,
    /// The signature does not verify with the key named by `kid`.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (with leeway and `reject_tokens_expiring_in_less_than`).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (with leeway).
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    /// `iat` is in the future (with leeway): the issuer's clock is wrong, or the
    /// token was minted to look newer than a per-user revocation it should fall under.
    #[error("token issued in the future (iat)")]
    IssuedInFuture,
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
    /// A builder was given an unusable value, or something the validator needs is
    /// missing (e.g. no `JwtAuth` on an axum route that extracts `Claims<T>`).
    #[error("invalid configuration: {field}: {reason}")]
    InvalidConfig {
        /// The setter or field that was wrong.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The request carried no bearer token (RFC 6750 §3.1: the challenge then has
    /// no `error` attribute).
    #[error("no bearer token in the request")]
    MissingToken,
    /// The request is malformed in how it carries a token (RFC 6750
    /// `invalid_request`): a bad `Authorization` header, several tokens, or several
    /// methods at once.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The token is valid but lacks a scope the route requires (RFC 6750
    /// `insufficient_scope`).
    #[error("insufficient scope: requires {required}")]
    InsufficientScope {
        /// The scopes the route requires, space-separated (configuration, not a
        /// token value).
        required: String,
    },
    /// The token is valid but its claims do not deserialize into the type the
    /// application asked for (`Claims<T>`). The serde message is not kept: it may
    /// quote a claim value.
    #[error("the token's claims do not fit the expected type")]
    ClaimsType,
}

/// Whose problem an [`Error`] is, so a caller can answer (and log) by class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The request or its token was refused: the client's problem (HTTP 400, 401 or
    /// 403). Includes an unknown `kid`: a valid-looking token naming a key we do
    /// not have is a token problem.
    Rejected,
    /// The validator or its keys cannot work as configured (no keys at all, a key
    /// the crypto backend refuses, a bad setting): the operator's problem (HTTP
    /// 500, logged), never blamed on the client.
    Configuration,
    /// A dependency could not answer (the revocation check had no answer): the
    /// token is refused (fail closed) but may be fine (HTTP 503).
    Backend,
}

/// Every rejection kind, in the order of [`crate::Stats::rejections`].
pub(crate) const KINDS: [&str; 29] = [
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
    "missing_token",
    "invalid_request",
    "insufficient_scope",
    "claims_type",
    "no_keys",
    "issued_in_future",
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
            Error::InvalidJwks(_) | Error::InvalidConfig { .. } => 21,
            Error::ClaimOutOfRange(_) => 22,
            Error::MissingToken => 23,
            Error::InvalidRequest(_) => 24,
            Error::InsufficientScope { .. } => 25,
            Error::ClaimsType => 26,
            Error::NoKeys => 27,
            Error::IssuedInFuture => 28,
        }
    }

    /// Whose problem this is: [`ErrorClass::Rejected`] for every refusal of a
    /// request or token, [`ErrorClass::Configuration`] for keys, JWKS documents and
    /// settings that cannot work, [`ErrorClass::Backend`] for a revocation check
    /// without an answer.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::KeyRejected { .. }
            | Error::NoKeys
            | Error::InvalidKey { .. }
            | Error::InvalidJwks(_)
            | Error::InvalidConfig { .. } => ErrorClass::Configuration,
            Error::RevocationUnknown => ErrorClass::Backend,
            _ => ErrorClass::Rejected,
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
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
