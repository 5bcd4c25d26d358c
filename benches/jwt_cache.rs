//! palisade-jwt-cache vs plain `jsonwebtoken::decode` (the anchor), same keys, same
//! policy, same run. docs/jwt-cache.md reports the ratios.
//!
//! cargo bench -p palisade-benches --bench jwt_cache
//! - hit/<alg>: a cache hit vs a full decode of the same token;
//! - hit_threads/<n>t: wall time per validation, each of n threads hitting (RS256);
//! - miss/<alg>: a miss (header pre-check, full validation, insert) vs a plain
//!   decode of the same tokens (the cache is cleared outside the timed part);
//! - single_flight_64: 64 threads validating one uncached RS256 token at once, per
//!   round, vs 64 threads each decoding it.
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use palisade_core_traits::SystemClock;
use palisade_jwt_cache::{KeySet, Policy, TokenCache, TokenCacheBuilder, Validator};
use serde_json::json;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/jwt-cache/tests/data/"
);
const ISS: &str = "https://issuer.example";
const AUD: &str = "api";
const ALGS: [Algorithm; 5] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

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
        Algorithm::EdDSA => (
            EncodingKey::from_ed_pem(&pem("ed_private.pem")).unwrap(),
            DecodingKey::from_ed_pem(&pem("ed_public.pem")).unwrap(),
        ),
        _ => unreachable!(),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A typical access token (~300-600 bytes depending on the signature).
fn token(alg: Algorithm, jti: u64) -> String {
    let mut h = Header::new(alg);
    h.kid = Some("k".into());
    let claims = json!({
        "iss": ISS, "aud": AUD, "sub": "user-1234567890", "jti": format!("jti-{jti}"),
        "iat": now(), "exp": now() + 3600, "scope": "read write", "tenant": "acme",
    });
    jsonwebtoken::encode(&h, &claims, &keys(alg).0).unwrap()
}

fn anchor(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.set_audience(&[AUD]);
    v.set_issuer(&[ISS]);
    v
}

fn validator(alg: Algorithm, cache: TokenCacheBuilder) -> Validator {
    let mut ks = KeySet::new();
    ks.insert("k", alg, keys(alg).1).unwrap();
    Validator::builder()
        .policy(
            Policy::builder()
                .algorithms(&[alg])
                .issuers(&[ISS])
                .audiences(&[AUD])
                .build()
                .unwrap(),
        )
        .keys(ks)
        .cache(cache.build().unwrap())
        .clock(Arc::new(SystemClock))
        .build()
        .unwrap()
}

fn threaded(threads: usize, iters: u64, f: impl Fn(u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let f = &f;
            s.spawn(move || f(iters));
        }
    });
    start.elapsed()
}

fn hit(c: &mut Criterion) {
    let mut g = c.benchmark_group("jwt_cache/hit");
    for alg in ALGS {
        let t = token(alg, 1);
        let key = keys(alg).1;
        let val = anchor(alg);
        g.bench_function(
            BenchmarkId::new("jsonwebtoken_decode", format!("{alg:?}")),
            |b| {
                b.iter(|| {
                    black_box(
                        jsonwebtoken::decode::<serde_json::Value>(black_box(&t), &key, &val)
                            .unwrap(),
                    )
                })
            },
        );
        let v = validator(alg, TokenCache::builder());
        v.validate(&t).unwrap();
        g.bench_function(BenchmarkId::new("palisade_hit", format!("{alg:?}")), |b| {
            b.iter(|| black_box(v.validate(black_box(&t)).unwrap()))
        });
        assert_eq!(v.stats().misses, 1);
    }
    g.finish();
}

fn hit_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("jwt_cache/hit_threads");
    let alg = Algorithm::RS256;
    let v = validator(alg, TokenCache::builder());
    // Distinct tokens per thread and a shared one: both are hits.
    let tokens: Vec<String> = (0..8).map(|i| token(alg, i)).collect();
    for t in &tokens {
        v.validate(t).unwrap();
    }
    for threads in [1usize, 2, 8] {
        g.bench_function(
            BenchmarkId::new("palisade_hit_same_token", format!("{threads}t")),
            |b| {
                b.iter_custom(|iters| {
                    threaded(threads, iters, |n| {
                        for _ in 0..n {
                            black_box(v.validate(&tokens[0]).unwrap());
                        }
                    }) / threads as u32
                })
            },
        );
    }
    let key = keys(alg).1;
    let val = anchor(alg);
    for threads in [1usize, 2] {
        g.bench_function(
            BenchmarkId::new("jsonwebtoken_decode", format!("{threads}t")),
            |b| {
                b.iter_custom(|iters| {
                    threaded(threads, iters, |n| {
                        for _ in 0..n {
                            black_box(
                                jsonwebtoken::decode::<serde_json::Value>(&tokens[0], &key, &val)
                                    .unwrap(),
                            );
                        }
                    }) / threads as u32
                })
            },
        );
    }
    g.finish();
}

fn miss(c: &mut Criterion) {
    let mut g = c.benchmark_group("jwt_cache/miss");
    for alg in ALGS {
        let tokens: Vec<String> = (0..64).map(|i| token(alg, i)).collect();
        let key = keys(alg).1;
        let val = anchor(alg);
        let small = TokenCache::builder().max_entries(std::num::NonZeroUsize::new(16).unwrap());
        let v = validator(alg, small);
        let cache = v.cache().unwrap().clone();
        // Both sides are timed per call (same Instant overhead); our side clears the
        // cache outside the timed part, so every timed call is a miss that verifies
        // and inserts.
        let per_call = |iters: u64, before: &dyn Fn(), f: &dyn Fn(&str)| {
            let mut total = Duration::ZERO;
            for n in 0..iters {
                before();
                let t = &tokens[n as usize % tokens.len()];
                let start = Instant::now();
                f(t);
                total += start.elapsed();
            }
            total
        };
        g.bench_function(
            BenchmarkId::new("jsonwebtoken_decode", format!("{alg:?}")),
            |b| {
                b.iter_custom(|iters| {
                    per_call(iters, &|| {}, &|t| {
                        drop(black_box(
                            jsonwebtoken::decode::<serde_json::Value>(t, &key, &val).unwrap(),
                        ))
                    })
                })
            },
        );
        g.bench_function(BenchmarkId::new("palisade_miss", format!("{alg:?}")), |b| {
            b.iter_custom(|iters| {
                per_call(iters, &|| cache.clear(), &|t| {
                    drop(black_box(v.validate(t).unwrap()))
                })
            })
        });
        assert_eq!(v.stats().hits, 0);
    }
    g.finish();
}

fn single_flight(c: &mut Criterion) {
    const THREADS: usize = 64;
    let mut g = c.benchmark_group("jwt_cache/single_flight_64");
    g.sample_size(10);
    let alg = Algorithm::RS256;
    let t = token(alg, 1);
    let v = validator(alg, TokenCache::builder());
    let cache = v.cache().unwrap().clone();
    // One round = clear the cache, then 64 threads validate the token at once.
    let cache = &cache;
    let rounds = |iters: u64, work: &(dyn Fn() + Sync)| {
        let barrier = Barrier::new(THREADS);
        let start = Instant::now();
        std::thread::scope(|s| {
            for id in 0..THREADS {
                let barrier = &barrier;
                s.spawn(move || {
                    for _ in 0..iters {
                        if id == 0 {
                            cache.clear();
                        }
                        barrier.wait();
                        work();
                        barrier.wait();
                    }
                });
            }
        });
        start.elapsed()
    };
    let before = v.stats().misses;
    let mut total_rounds = 0;
    g.bench_function("palisade_validate", |b| {
        b.iter_custom(|iters| {
            total_rounds += iters;
            rounds(iters, &|| drop(black_box(v.validate(&t).unwrap())))
        })
    });
    let key = keys(alg).1;
    let val = anchor(alg);
    g.bench_function("jsonwebtoken_decode", |b| {
        b.iter_custom(|iters| {
            rounds(iters, &|| {
                drop(black_box(
                    jsonwebtoken::decode::<serde_json::Value>(&t, &key, &val).unwrap(),
                ))
            })
        })
    });
    g.finish();
    println!(
        "single_flight_64: {} signature checks in {} rounds of {THREADS} concurrent validations",
        v.stats().misses - before,
        total_rounds
    );
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! { name = benches; config = config(); targets = hit, hit_threads, miss, single_flight }
criterion_main!(benches);
