//! What a successful validation returns.

use std::fmt;

use jsonwebtoken::Algorithm;
use palisade_core_traits::TokenIdentity;
use serde_json::{Map, Value};

/// A token whose signature, claims and revocation status were checked.
///
/// Shared (`Arc`) between the cache and every caller it is served to. `Debug` shows
/// the algorithm, key id and identity, never the other claims.
#[derive(Clone)]
pub struct ValidatedToken {
    pub(crate) algorithm: Algorithm,
    pub(crate) key_id: String,
    pub(crate) claims: Map<String, Value>,
    pub(crate) identity: TokenIdentity,
    pub(crate) expires_at: Option<u64>,
    pub(crate) not_before: Option<u64>,
    pub(crate) payload_len: usize,
}

impl fmt::Debug for ValidatedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedToken")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ValidatedToken {
    /// The algorithm that verified the signature.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The `kid` of the key that verified it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// All claims of the payload.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// `iss`, `sub`, `jti`, `iat`, `exp`: what revocation keys on. `issuer` is empty
    /// when the token has no string `iss`.
    pub fn identity(&self) -> &TokenIdentity {
        &self.identity
    }

    /// `exp`, seconds since the epoch.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// `nbf`, seconds since the epoch.
    pub fn not_before(&self) -> Option<u64> {
        self.not_before
    }

    /// A rough heap size for the cache's byte bound: decoded JSON maps take a few
    /// times their encoded size.
    pub(crate) fn heap_estimate(&self) -> u64 {
        (self.payload_len as u64).saturating_mul(4) + self.key_id.len() as u64
    }
}
