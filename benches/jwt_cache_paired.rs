//! A palisade-jwt-cache miss vs a plain `jsonwebtoken::decode` of the same tokens,
//! measured in alternating pairs (prints a Markdown table).
//!
//! cargo bench -p palisade-benches --bench jwt_cache_paired
//!
//! Criterion times one function, then the next: on the shared 2-core VM, the machine's
//! speed drifts between the two by more than the few percent being measured (single
//! `miss` cells of `--bench jwt_cache` moved ±30 % between runs at load 6). Here each
//! round times 64 distinct tokens decoded and the same 64 validated as misses (the
//! cache is cleared outside the timed part), back to back, which one goes first
//! alternating, so both see the same machine; the table gives the median of the
//! rounds' ratios and its interquartile range.
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use palisade_core_traits::SystemClock;
use palisade_jwt_cache::{KeySet, Policy, TokenCache, Validator};
use serde_json::json;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/jwt-cache/tests/data/"
);
const ISS: &str = "https://issuer.example";
const AUD: &str = "api";
const ROUNDS: usize = 41;
const TOKENS: u64 = 64;

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}{name}")).unwrap()
}

fn keys(alg: Algorithm) -> (EncodingKey, DecodingKey) {
    match alg {
        Algorithm::HS256 => (
            EncodingKey::from_secret(b"bench-secret-0123456789abcdef0123").unwrap(),
            DecodingKey::from_secret(b"bench-secret-0123456789abcdef0123").unwrap(),
        ),
        Algorithm::RS256 | Algorithm::PS256 => (
            EncodingKey::from_rsa_pem(&pem("rsa_private.pem")).unwrap(),
            DecodingKey::from_rsa_pem(&pem("rsa_public.pem")).unwrap(),
        ),
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(&pem("ec_private.pem")).unwrap(),
            DecodingKey::from_ec_pem(&pem("ec_public.pem")).unwrap(),
        ),
        _ => (
            EncodingKey::from_ed_pem(&pem("ed_private.pem")).unwrap(),
            DecodingKey::from_ed_pem(&pem("ed_public.pem")).unwrap(),
        ),
    }
}

/// The same typical access token as `--bench jwt_cache`.
fn token(alg: Algorithm, jti: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut h = Header::new(alg);
    h.kid = Some("k".into());
    let claims = json!({
        "iss": ISS, "aud": AUD, "sub": "user-1234567890", "jti": format!("jti-{jti}"),
        "iat": now, "exp": now + 3600, "scope": "read write", "tenant": "acme",
    });
    jsonwebtoken::encode(&h, &claims, &keys(alg).0).unwrap()
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.25), at(0.5), at(0.75))
}

fn main() {
    println!(
        "| alg | decode (median per token) | miss (median per token) | miss / decode: median [IQR] |"
    );
    println!("|---|---:|---:|---:|");
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let tokens: Vec<String> = (0..TOKENS).map(|i| token(alg, i)).collect();
        let key = keys(alg).1;
        let mut anchor = Validation::new(alg);
        anchor.set_audience(&[AUD]);
        anchor.set_issuer(&[ISS]);
        let mut ks = KeySet::new();
        ks.insert("k", alg, keys(alg).1).unwrap();
        let cache = TokenCache::builder()
            .max_entries(NonZeroUsize::new(1024).unwrap())
            .build()
            .unwrap();
        let v = Validator::builder()
            .policy(
                Policy::builder()
                    .algorithms(&[alg])
                    .issuers(&[ISS])
                    .audiences(&[AUD])
                    .build()
                    .unwrap(),
            )
            .keys(ks)
            .cache(cache.clone())
            .clock(Arc::new(SystemClock))
            .build()
            .unwrap();
        let decode = || {
            let start = Instant::now();
            for t in &tokens {
                drop(black_box(
                    jsonwebtoken::decode::<serde_json::Value>(t, &key, &anchor).unwrap(),
                ));
            }
            start.elapsed()
        };
        let miss = || {
            cache.clear();
            let start = Instant::now();
            for t in &tokens {
                drop(black_box(v.validate(t).unwrap()));
            }
            start.elapsed()
        };
        // Warm up both.
        let _ = (decode(), miss());
        let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (d, m): (Duration, Duration) = if round % 2 == 0 {
                let d = decode();
                (d, miss())
            } else {
                let m = miss();
                (decode(), m)
            };
            theirs.push(d.as_secs_f64() / TOKENS as f64);
            ours.push(m.as_secs_f64() / TOKENS as f64);
            ratios.push(m.as_secs_f64() / d.as_secs_f64());
        }
        let s = v.stats();
        assert_eq!((s.hits, s.misses), (0, (ROUNDS as u64 + 1) * TOKENS));
        let (_, d, _) = quartiles(theirs);
        let (_, m, _) = quartiles(ours);
        let (q1, med, q3) = quartiles(ratios);
        println!(
            "| {alg:?} | {:.2} µs | {:.2} µs | {med:.3} [{q1:.3}, {q3:.3}] |",
            d * 1e6,
            m * 1e6
        );
    }
}
