//! ML-DSA beside the classical JWS algorithms, same run: sign (hsm-keys `SoftStore`)
//! and fresh verify (jwt-cache `validate_uncached`) per token for ES256, EdDSA, RS256
//! and ML-DSA-44/65/87, the token size of each, and jwt-cache's hit against a fresh
//! verify for ES256 and ML-DSA-65. Results and their reading: docs/hsm-keys.md and
//! docs/jwt-cache.md ("What ML-DSA costs").
//!
//! cargo bench -p palisade-benches --bench jwt_mldsa
#![allow(clippy::unwrap_used)] // a benchmark that unwraps fails loudly, which is the point
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_hsm_keys::{Jwks, JwsAlgorithm, KeyStore, SoftStore, sign_compact};
use palisade_jwt_cache::{Algorithm, KeySet, MlDsa, Policy, TokenCache, Validator};

const RSA_PKCS8: &[u8] = include_bytes!("../crates/hsm-keys/tests/data/rsa2048.pk8.der");
const ALGS: [JwsAlgorithm; 6] = [
    JwsAlgorithm::ES256,
    JwsAlgorithm::EdDSA,
    JwsAlgorithm::RS256,
    JwsAlgorithm::MlDsa44,
    JwsAlgorithm::MlDsa65,
    JwsAlgorithm::MlDsa87,
];

/// Typical access-token claims (about 200 bytes of JSON).
fn payload() -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    serde_json::to_vec(&serde_json::json!({
        "iss": "https://issuer.example", "aud": "api", "sub": "user-1234567890",
        "jti": "0f8fad5b-d9cb-469f-a165-70867728950e", "scope": "read write",
        "iat": now, "exp": now + 3600,
    }))
    .unwrap()
}

fn validator(jwks: &Jwks, cache: Option<Arc<TokenCache>>) -> Validator {
    let keys = KeySet::from_jwks(&serde_json::to_vec(jwks).unwrap()).unwrap();
    let policy = Policy::builder()
        .algorithms(&[Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256])
        .ml_dsa(&MlDsa::ALL)
        .issuers(&["https://issuer.example"])
        .audiences(&["api"])
        .build()
        .unwrap();
    let b = Validator::builder().policy(policy).keys(keys);
    match cache {
        Some(c) => b.cache(c),
        None => b,
    }
    .build()
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let store = SoftStore::new();
    let keys: Vec<_> = ALGS
        .iter()
        .map(|&alg| match alg {
            JwsAlgorithm::RS256 => store.import_pkcs8("bench", alg, RSA_PKCS8).unwrap(),
            _ => store.generate(&format!("bench-{alg}"), alg).unwrap(),
        })
        .collect();
    let jwks = Jwks {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    };
    let payload = payload();
    let fresh = validator(&jwks, None);
    for (alg, info) in ALGS.iter().zip(&keys) {
        let token = sign_compact(&store, info, Some("JWT"), &payload).unwrap();
        // Criterion prints timings; the sizes go to stderr for the docs.
        eprintln!(
            "size {alg}: token {} bytes, public key (JWK) {} bytes",
            token.compact.len(),
            serde_json::to_vec(&info.jwk).unwrap().len()
        );
        let mut g = c.benchmark_group(format!("jwt_mldsa/{alg}"));
        g.bench_function("sign", |b| {
            b.iter(|| sign_compact(&store, info, Some("JWT"), &payload).unwrap())
        });
        g.bench_function("verify_fresh", |b| {
            b.iter(|| fresh.validate_uncached(&token.compact).unwrap())
        });
        if matches!(alg, JwsAlgorithm::ES256 | JwsAlgorithm::MlDsa65) {
            let cached = validator(&jwks, Some(TokenCache::builder().build().unwrap()));
            cached.validate(&token.compact).unwrap();
            g.bench_function("cache_hit", |b| {
                b.iter(|| cached.validate(&token.compact).unwrap())
            });
        }
        g.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = bench }
criterion_main!(benches);
