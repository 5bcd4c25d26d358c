//! The entry point of the `jwt_cache_validate` fuzz target (and its corpus replay).
//!
//! Not part of the API contract: it exists so the fuzz target is a one-line call.

use std::num::NonZeroUsize;
use std::sync::{Arc, OnceLock};

use jsonwebtoken::{Algorithm, DecodingKey};
use palisade_core_traits::{ManualClock, Timestamp};

use crate::{KeySet, Policy, TokenCache, Validator};

/// The HMAC secret of the fuzz validator's key `"fuzz"` (public test material).
pub const FUZZ_SECRET: &[u8] = b"palisade-jwt-cache-fuzz-secret-0123456789";
/// The fuzz validator's clock: 2026-01-01T00:00:00Z.
pub const FUZZ_NOW_SECS: u64 = 1_767_225_600;

fn validator() -> Option<&'static Validator> {
    static V: OnceLock<Option<Validator>> = OnceLock::new();
    V.get_or_init(|| {
        let mut keys = KeySet::new();
        keys.insert(
            "fuzz",
            Algorithm::HS256,
            DecodingKey::from_secret(FUZZ_SECRET).ok()?,
        )
        .ok()?;
        let policy = Policy::builder()
            .algorithms(&[Algorithm::HS256, Algorithm::ES256])
            .issuers(&["fuzz-issuer"])
            .leeway_secs(5)
            .build()
            .ok()?;
        let cache = TokenCache::builder()
            .max_entries(NonZeroUsize::new(64)?)
            .build()
            .ok()?;
        Validator::builder()
            .policy(policy)
            .keys(keys)
            .cache(cache)
            .clock(Arc::new(ManualClock::new(Timestamp::from_unix_secs(
                FUZZ_NOW_SECS,
            ))))
            .build()
            .ok()
    })
    .as_ref()
}

/// The `jwt_cache_validate` target: validates `data` twice (miss, then hit or miss)
/// and once uncached; the three answers must agree. Panics only on disagreement,
/// which is a bug. Returns whether the token was accepted.
pub fn jwt_cache_validate(data: &[u8]) -> bool {
    let Some(v) = validator() else {
        return false;
    };
    let first = v.validate(data).map(|t| t.identity().clone());
    let second = v.validate(data).map(|t| t.identity().clone());
    let fresh = v.validate_uncached(data).map(|t| t.identity().clone());
    assert_eq!(first, second, "cached answer differs from the first answer");
    assert_eq!(
        first, fresh,
        "cached answer differs from a fresh validation"
    );
    first.is_ok()
}

/// `jwt_cache_akp_jwk`: a JWKS document with AKP (RFC 9964) keys, loaded as
/// `KeySet::from_jwks` loads it; how many keys were accepted (`None` if refused).
pub fn jwt_cache_akp_jwk(data: &[u8]) -> Option<usize> {
    KeySet::from_jwks(data).ok().map(|k| k.len())
}
