//! `max_bytes` bounds what the cache really allocates, measured with a counting global
//! allocator, for tokens whose claims decode to far more memory than their text.
//!
//! One test in this binary: the allocator counts the whole process, so nothing else
//! may allocate while it measures.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::alloc::System;
use std::sync::Arc;

use cap::Cap;
use common::*;
use palisade_jwt_cache::{Algorithm, TokenCache, Validator};
use serde_json::{Value, json};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const MAX_BYTES: u64 = 4 * 1024 * 1024;
/// The stated bound (docs/jwt-cache.md): entries and the ghost list are inside
/// `max_bytes`; the slab slots quick_cache keeps after the entry count falls from a
/// peak (at most two ~104-byte slots per KiB of `max_bytes`) are outside it.
const FACTOR: f64 = 1.25;

/// Claims of a few KB of JSON whose decoded form is far larger (except kind 3).
fn heavy(kind: usize, i: usize) -> Value {
    let mut c = claims("alice", &format!("j{kind}-{i}"), NOW + 3600);
    match kind {
        // Many tiny objects: ~7 bytes of JSON, a whole B-tree node (~650 bytes) each.
        0 => c["objs"] = Value::Array((0..300).map(|_| json!({"a": 0})).collect()),
        // Many small numbers: 2 bytes of JSON, a 32-byte Value each (and Vec slack).
        1 => c["nums"] = Value::Array((0..2500).map(|n| json!(n % 10)).collect()),
        // Many short claims at the top level.
        2 => {
            for k in 0..400 {
                c[format!("c{k}")] = json!(k);
            }
        }
        // One large string (cheap per byte: the old estimate was right here).
        _ => c["pad"] = json!("x".repeat(5000)),
    }
    c
}

#[test]
fn allocation_stays_within_the_stated_factor_of_max_bytes() {
    let clock = clock();
    let keys = keyset();
    let policy = policy();
    let before = ALLOCATOR.allocated();
    let cache = TokenCache::builder()
        .max_bytes(std::num::NonZeroU64::new(MAX_BYTES).unwrap())
        .build()
        .unwrap();
    let v = Validator::builder()
        .policy(policy.build().unwrap())
        .keys(keys)
        .cache(cache.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let mut peak = 0usize;
    // First many small entries (the peak entry count: slab slots quick_cache keeps),
    // then heavy ones far past the bound, then small ones again.
    let small = |i: usize| {
        sign(
            Algorithm::HS256,
            &claims("bob", &format!("s{i}"), NOW + 3600),
        )
    };
    let mut rounds: Vec<Box<dyn Fn(usize) -> String>> = vec![Box::new(small)];
    for kind in 0..4 {
        rounds.push(Box::new(move |i| sign(Algorithm::HS256, &heavy(kind, i))));
    }
    rounds.push(Box::new(move |i| small(i + 1_000_000)));
    for (r, make) in rounds.iter().enumerate() {
        let n = if r == 0 || r == rounds.len() - 1 {
            8000
        } else {
            400
        };
        for i in 0..n {
            let token = make(i);
            assert!(token.len() <= palisade_jwt_cache::DEFAULT_MAX_CACHED_TOKEN_BYTES);
            v.validate(&token).unwrap();
            v.validate(&token).unwrap();
            peak = peak.max(ALLOCATOR.allocated() - before);
        }
        let used = ALLOCATOR.allocated() - before;
        println!(
            "round {r}: {} entries, {used} bytes = {:.3} x max_bytes (peak so far {:.3})",
            cache.len(),
            used as f64 / MAX_BYTES as f64,
            peak as f64 / MAX_BYTES as f64
        );
    }
    assert!(v.stats().hits > 10_000, "entries were cached and served");
    assert!(
        v.stats().evictions > 1000,
        "the cache was filled far past its bound"
    );
    let used = ALLOCATOR.allocated() - before;
    // Peak includes a token and its validation in flight (a few tens of KB).
    assert!(
        (peak as f64) <= FACTOR * MAX_BYTES as f64,
        "peak {peak} bytes for max_bytes {MAX_BYTES}"
    );
    // And the bound is not met by caching nothing: small tokens fill it.
    assert!(
        used as f64 >= 0.5 * MAX_BYTES as f64,
        "only {used} bytes used: the cache holds too little"
    );
    drop(v);
    drop(cache);
}
