//! What a successful validation returns.

use std::fmt;
use std::mem::size_of;

use palisade_core_traits::TokenIdentity;
use serde_json::{Map, Value};

use crate::mldsa::TokenAlgorithm;
use crate::weight;

/// A token whose signature, claims and revocation status were checked.
///
/// Shared (`Arc`) between the cache and every caller it is served to. `Debug` shows
/// the algorithm, key id and identity, never the other claims.
#[derive(Clone)]
pub struct ValidatedToken {
    pub(crate) algorithm: TokenAlgorithm,
    pub(crate) key_id: String,
    pub(crate) claims: Map<String, Value>,
    pub(crate) identity: TokenIdentity,
    pub(crate) expires_at: Option<u64>,
    pub(crate) not_before: Option<u64>,
    /// What [`Self::measure`] found when the token was built.
    pub(crate) heap_bytes: u64,
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
    /// The algorithm that verified the signature (compares equal to a
    /// jsonwebtoken [`Algorithm`](jsonwebtoken::Algorithm) or an [`MlDsa`](crate::MlDsa)).
    pub fn algorithm(&self) -> TokenAlgorithm {
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

    /// Heap bytes this token owns once it sits in an `Arc`: the `Arc` block, the kid,
    /// the claims as stored and the identity strings (see `weight`).
    pub(crate) fn measure(&self) -> u64 {
        let id = &self.identity;
        let strings = [Some(&id.issuer), id.subject.as_ref(), id.jti.as_ref()]
            .into_iter()
            .flatten()
            .map(|s| weight::block(s.capacity()))
            .sum::<u64>();
        weight::block(2 * size_of::<usize>() + size_of::<Self>())
            + weight::block(self.key_id.capacity())
            + weight::object(&self.claims)
            + strings
    }
}
