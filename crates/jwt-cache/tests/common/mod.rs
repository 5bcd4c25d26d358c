//! Shared test helpers: keys, signing, a validator on a manual clock, and a small
//! in-memory revocation check (a test stand-in for token-blacklist's local path).
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use palisade_core_traits::{
    ManualClock, RevocationCheck, RevocationStatus, Timestamp, TokenIdentity,
};
use palisade_jwt_cache::{
    Algorithm, DecodingKey, KeySet, Policy, PolicyBuilder, TokenCache, Validator,
};
use serde_json::{Value, json};

pub const NOW: u64 = 1_800_000_000;
pub const ISS: &str = "https://issuer.example";
pub const AUD: &str = "api";
pub const HS_SECRET: &[u8] = b"test-hmac-secret-0123456789abcdef";

pub const RSA_PRIVATE: &[u8] = include_bytes!("../data/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../data/rsa_public.pem");
pub const RSA2_PRIVATE: &[u8] = include_bytes!("../data/rsa2_private.pem");
pub const RSA2_PUBLIC: &[u8] = include_bytes!("../data/rsa2_public.pem");
pub const EC_PRIVATE: &[u8] = include_bytes!("../data/ec_private.pem");
pub const EC_PUBLIC: &[u8] = include_bytes!("../data/ec_public.pem");
pub const ED_PRIVATE: &[u8] = include_bytes!("../data/ed_private.pem");
pub const ED_PUBLIC: &[u8] = include_bytes!("../data/ed_public.pem");
pub const JWKS: &[u8] = include_bytes!("../data/jwks.json");

/// The kid used for each algorithm in [`keyset`].
pub fn kid(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "hs-1",
        Algorithm::RS256 => "rsa-1",
        Algorithm::PS256 => "ps-1",
        Algorithm::ES256 => "ec-1",
        Algorithm::EdDSA => "ed-1",
        _ => panic!("no test key for {alg:?}"),
    }
}

pub const ALGS: [Algorithm; 5] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

pub fn decoding_key(alg: Algorithm) -> DecodingKey {
    match alg {
        Algorithm::HS256 => DecodingKey::from_secret(HS_SECRET).unwrap(),
        Algorithm::RS256 => DecodingKey::from_rsa_pem(RSA_PUBLIC).unwrap(),
        Algorithm::PS256 => DecodingKey::from_rsa_pem(RSA2_PUBLIC).unwrap(),
        Algorithm::ES256 => DecodingKey::from_ec_pem(EC_PUBLIC).unwrap(),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(ED_PUBLIC).unwrap(),
        _ => unreachable!(),
    }
}

pub fn encoding_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET).unwrap(),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
        Algorithm::PS256 => EncodingKey::from_rsa_pem(RSA2_PRIVATE).unwrap(),
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
        _ => unreachable!(),
    }
}

/// One key per algorithm in [`ALGS`], under [`kid`].
pub fn keyset() -> KeySet {
    let mut ks = KeySet::new();
    for alg in ALGS {
        ks.insert(kid(alg), alg, decoding_key(alg)).unwrap();
    }
    ks
}

/// Standard claims for user `sub` with token id `jti`, expiring at `exp`.
pub fn claims(sub: &str, jti: &str, exp: u64) -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "jti": jti, "iat": NOW, "exp": exp})
}

/// A token signed by jsonwebtoken with the test key of `alg`, header `{alg, kid, typ: JWT}`.
pub fn sign(alg: Algorithm, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid(alg).to_owned());
    jsonwebtoken::encode(&header, claims, &encoding_key(alg)).unwrap()
}

/// A token with a hand-written header, signed (over the exact bytes) with `key` as `alg`.
pub fn sign_raw(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), key, alg).unwrap();
    format!("{msg}.{sig}")
}

/// The test policy, to refine and build.
pub fn policy() -> PolicyBuilder {
    Policy::builder()
        .algorithms(&ALGS)
        .issuers(&[ISS])
        .audiences(&[AUD])
}

/// `n`, which must not be zero.
pub fn nz(n: usize) -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(n).unwrap()
}

pub fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_secs(NOW))
}

pub fn cache() -> Arc<TokenCache> {
    TokenCache::builder().build().unwrap()
}

/// A caching validator over [`keyset`] and `policy`, on `clock`.
pub fn validator(policy: PolicyBuilder, clock: &ManualClock, cache: Arc<TokenCache>) -> Validator {
    Validator::builder()
        .policy(policy.build().unwrap())
        .keys(keyset())
        .cache(cache)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

/// In-memory revocation by `(iss, jti)` and by `(iss, sub)`; `local` = false makes it
/// answer "needs I/O" (None) like a remote-only implementation.
#[derive(Debug, Default)]
pub struct TestRevocation {
    pub tokens: Mutex<HashSet<(String, String)>>,
    pub subjects: Mutex<HashSet<(String, String)>>,
    pub no_local_answer: std::sync::atomic::AtomicBool,
}

impl TestRevocation {
    pub fn revoke(&self, iss: &str, jti: &str) {
        self.tokens
            .lock()
            .unwrap()
            .insert((iss.to_owned(), jti.to_owned()));
    }

    pub fn revoke_subject(&self, iss: &str, sub: &str) {
        self.subjects
            .lock()
            .unwrap()
            .insert((iss.to_owned(), sub.to_owned()));
    }
}

impl RevocationCheck for TestRevocation {
    fn check_local(&self, token: &TokenIdentity) -> Option<RevocationStatus> {
        if self
            .no_local_answer
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return None;
        }
        let by_jti = token.jti.as_ref().is_some_and(|j| {
            self.tokens
                .lock()
                .unwrap()
                .contains(&(token.issuer.clone(), j.clone()))
        });
        let by_sub = token.subject.as_ref().is_some_and(|s| {
            self.subjects
                .lock()
                .unwrap()
                .contains(&(token.issuer.clone(), s.clone()))
        });
        Some(if by_jti || by_sub {
            RevocationStatus::Revoked
        } else {
            RevocationStatus::NotRevoked
        })
    }
}
