//! Bytes per cached entry of palisade-jwt-cache, measured with a counting global
//! allocator (the `cap` crate), against the cache's own per-entry estimate. Prints a table.
//!
//! cargo bench -p palisade-benches --bench jwt_cache_memory
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::alloc::System;
use std::sync::Arc;

use cap::Cap;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use palisade_core_traits::{ManualClock, Timestamp};
use palisade_jwt_cache::{KeySet, Policy, TokenCache, Validator};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const NOW: u64 = 1_800_000_000;

fn main() {
    let secret = b"bench-secret-0123456789abcdef0123";
    let mut ks = KeySet::new();
    ks.insert(
        "k",
        Algorithm::HS256,
        DecodingKey::from_secret(secret).unwrap(),
    )
    .unwrap();
    println!("| entries | token bytes | measured B/entry | of which token bytes |");
    println!("|---:|---:|---:|---:|");
    for (n, pad) in [(10_000u64, 0usize), (100_000, 0), (10_000, 1000)] {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k".into());
        let key = EncodingKey::from_secret(secret).unwrap();
        let tokens: Vec<String> = (0..n)
            .map(|i| {
                let c = json!({"iss": "https://issuer.example", "aud": "api", "sub": format!("user-{i}"),
                    "jti": format!("jti-{i}"), "iat": NOW, "exp": NOW + 3600, "scope": "read write",
                    "pad": "x".repeat(pad)});
                jsonwebtoken::encode(&h, &c, &key).unwrap()
            })
            .collect();
        let token_len = tokens[0].len();
        let before = ALLOCATOR.allocated();
        let cache = TokenCache::builder()
            .max_entries(std::num::NonZeroUsize::new(n as usize).unwrap())
            .max_bytes(std::num::NonZeroU64::new(u64::MAX / 2).unwrap())
            .build()
            .unwrap();
        let v = Validator::builder()
            .policy(
                Policy::builder()
                    .algorithms(&[Algorithm::HS256])
                    .issuers(&["https://issuer.example"])
                    .audiences(&["api"])
                    .build()
                    .unwrap(),
            )
            .keys(ks.clone())
            .cache(cache.clone())
            .clock(Arc::new(ManualClock::new(Timestamp::from_unix_secs(NOW))))
            .build()
            .unwrap();
        let mut kept = Vec::with_capacity(tokens.len());
        for t in &tokens {
            kept.push(v.validate(t).unwrap());
        }
        drop(kept); // entries own their ValidatedToken through Arc; drop the callers' copies
        let used = ALLOCATOR.allocated() - before;
        println!(
            "| {} | {token_len} | {:.0} | {token_len} |",
            cache.len(),
            used as f64 / cache.len() as f64
        );
        drop(v);
        drop(cache);
    }
}
