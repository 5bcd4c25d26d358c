//! Hybrid rollout: a classical and an ML-DSA key ring published side by side, each
//! audience signed for with the one it is ready for.

use std::collections::BTreeSet;
use std::time::Duration;

use palisade_core_traits::SignedJws;

use crate::{Error, Jwks, KeyRing, KeyStore};

/// Two [`KeyRing`]s behind one JWKS: a classical one (ES256, EdDSA, RS256, …) and an
/// ML-DSA one. Audiences listed as post-quantum ready get ML-DSA tokens, every other
/// audience the classical ones, so verifiers move one at a time (see the migration
/// guide in `docs/hsm-keys.md`). Rotation and overlap stay per ring: rotate each
/// with [`Self::classical`] / [`Self::post_quantum`].
pub struct HybridKeyRing<S> {
    classical: KeyRing<S>,
    post_quantum: KeyRing<S>,
    pq_audiences: BTreeSet<String>,
}

impl<S> Clone for HybridKeyRing<S> {
    fn clone(&self) -> Self {
        HybridKeyRing {
            classical: self.classical.clone(),
            post_quantum: self.post_quantum.clone(),
            pq_audiences: self.pq_audiences.clone(),
        }
    }
}

impl<S: KeyStore> std::fmt::Debug for HybridKeyRing<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HybridKeyRing")
            .field("classical", &self.classical)
            .field("post_quantum", &self.post_quantum)
            .field("pq_audiences", &self.pq_audiences)
            .finish()
    }
}

/// Builds a [`HybridKeyRing`]; [`build`](Self::build) checks the pair.
#[must_use]
pub struct HybridKeyRingBuilder<S> {
    classical: Option<KeyRing<S>>,
    post_quantum: Option<KeyRing<S>>,
    pq_audiences: BTreeSet<String>,
}

impl<S: KeyStore> HybridKeyRingBuilder<S> {
    /// The classical ring (required; its algorithm must not be ML-DSA).
    pub fn classical(mut self, ring: KeyRing<S>) -> Self {
        self.classical = Some(ring);
        self
    }

    /// The ML-DSA ring (required).
    pub fn post_quantum(mut self, ring: KeyRing<S>) -> Self {
        self.post_quantum = Some(ring);
        self
    }

    /// Audiences whose verifiers accept ML-DSA: they get ML-DSA tokens (default
    /// none: every token classical, the ML-DSA key only published).
    pub fn post_quantum_audiences(mut self, audiences: &[&str]) -> Self {
        self.pq_audiences = audiences.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// The hybrid ring. [`Error::InvalidConfig`] names `classical` or
    /// `post_quantum` when one is missing or has the wrong kind of algorithm, and
    /// `post_quantum` when both rings share a key name.
    pub fn build(self) -> Result<HybridKeyRing<S>, Error> {
        let classical = self
            .classical
            .ok_or_else(|| Error::config("classical", "a hybrid ring needs a classical ring"))?;
        let post_quantum = self
            .post_quantum
            .ok_or_else(|| Error::config("post_quantum", "a hybrid ring needs an ML-DSA ring"))?;
        if classical.config().algorithm.is_ml_dsa() {
            return Err(Error::config(
                "classical",
                format!(
                    "{} is not a classical algorithm",
                    classical.config().algorithm
                ),
            ));
        }
        if !post_quantum.config().algorithm.is_ml_dsa() {
            return Err(Error::config(
                "post_quantum",
                format!("{} is not ML-DSA", post_quantum.config().algorithm),
            ));
        }
        if classical.config().name == post_quantum.config().name {
            return Err(Error::config(
                "post_quantum",
                "both rings use the same key name; give each its own",
            ));
        }
        Ok(HybridKeyRing {
            classical,
            post_quantum,
            pq_audiences: self.pq_audiences,
        })
    }
}

impl<S: KeyStore> HybridKeyRing<S> {
    /// A builder: both rings required, no post-quantum audience.
    pub fn builder() -> HybridKeyRingBuilder<S> {
        HybridKeyRingBuilder {
            classical: None,
            post_quantum: None,
            pq_audiences: BTreeSet::new(),
        }
    }

    /// The classical ring (to rotate, retire, read its state).
    pub fn classical(&self) -> &KeyRing<S> {
        &self.classical
    }

    /// The ML-DSA ring.
    pub fn post_quantum(&self) -> &KeyRing<S> {
        &self.post_quantum
    }

    /// The ring that signs for `audience`.
    pub fn ring_for(&self, audience: &str) -> &KeyRing<S> {
        if self.pq_audiences.contains(audience) {
            &self.post_quantum
        } else {
            &self.classical
        }
    }

    /// Both rings' published keys, classical first: one JWKS for every verifier
    /// (a verifier that does not know `AKP` keys should skip them, see the guide).
    pub fn jwks(&self) -> Jwks {
        let mut jwks = self.classical.jwks();
        jwks.keys.extend(self.post_quantum.jwks().keys);
        jwks
    }

    /// Signs `payload` for `audience` with the ring [`Self::ring_for`] picks (the
    /// payload's `aud` is the caller's; see [`Self::sign_jwt`]).
    pub fn sign(
        &self,
        audience: &str,
        typ: Option<&str>,
        payload: &[u8],
    ) -> Result<SignedJws, Error> {
        self.ring_for(audience).sign(typ, payload)
    }

    /// Signs a JWT for `audience`: `claims` plus `aud` (unless given), `iat` and
    /// `exp = iat + ttl`.
    pub fn sign_jwt(
        &self,
        audience: &str,
        mut claims: serde_json::Map<String, serde_json::Value>,
        ttl: Duration,
    ) -> Result<SignedJws, Error> {
        claims
            .entry("aud")
            .or_insert_with(|| audience.to_owned().into());
        self.ring_for(audience).sign_jwt(claims, ttl)
    }
}
