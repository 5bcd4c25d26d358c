//! Feature `metrics`: what the validator and cache report through the `metrics`
//! facade, read back with metrics-util's `DebuggingRecorder` installed for this thread
//! only (`metrics::with_local_recorder`).
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "metrics")]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_jwt_cache::{Algorithm, TokenCache, Validator};

/// Every metric as `name{label=value,…}` → value (gauges as whole numbers).
fn read(recorder: &DebuggingRecorder) -> std::collections::BTreeMap<String, u64> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let value = match value {
                DebugValue::Counter(n) => n,
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                DebugValue::Gauge(g) => g.into_inner() as u64,
                DebugValue::Histogram(h) => h.len() as u64,
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

#[test]
fn validations_hits_misses_revocations_and_cache_size_are_reported() {
    let recorder = DebuggingRecorder::new();
    let clock = clock();
    let revocation = Arc::new(TestRevocation::default());
    let cache = TokenCache::builder().name("api").build().unwrap();
    let v = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(keyset())
        .cache(cache.clone())
        .clock(Arc::new(clock.clone()))
        .revocation(revocation.clone())
        .build()
        .unwrap();
    let token = sign(Algorithm::ES256, &claims("alice", "j1", NOW + 300));
    let other = sign(Algorithm::EdDSA, &claims("bob", "j2", NOW + 300));
    // token's header and payload with another token's signature.
    let third = sign(Algorithm::ES256, &claims("carol", "j3", NOW + 300));
    let bad = format!(
        "{}.{}",
        token.rsplit_once('.').unwrap().0,
        third.rsplit_once('.').unwrap().1
    );
    metrics::with_local_recorder(&recorder, || {
        v.validate(&token).unwrap(); // miss
        v.validate(&token).unwrap(); // hit
        v.validate(&other).unwrap(); // miss
        v.validate(&bad).unwrap_err(); // bad signature (a miss, never cached)
        revocation.revoke(ISS, "j1");
        v.validate(&token).unwrap_err(); // hit, revoked
        revocation.no_local_answer.store(true, Ordering::SeqCst);
        v.validate(&other).unwrap_err(); // hit, no local answer
    });
    let m = read(&recorder);
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("{k} missing from {m:#?}"))
    };
    assert_eq!(
        get("palisade_jwt_cache_validations_total{kind=none,outcome=accepted}"),
        3
    );
    for kind in ["bad_signature", "revoked", "revocation_unknown"] {
        let k = format!("palisade_jwt_cache_validations_total{{kind={kind},outcome=rejected}}");
        assert_eq!(get(&k), 1, "{kind}");
    }
    assert_eq!(get("palisade_jwt_cache_hits_total{}"), 1);
    assert_eq!(get("palisade_jwt_cache_misses_total{}"), 3);
    for (answer, n) in [("not_revoked", 3), ("revoked", 1), ("no_local_answer", 1)] {
        let k = format!("palisade_jwt_cache_revocation_answers_total{{answer={answer}}}");
        assert_eq!(get(&k), n, "{answer}");
    }
    assert_eq!(get("palisade_jwt_cache_entries{cache=api}"), 2);
    let bytes = get("palisade_jwt_cache_bytes{cache=api}");
    assert_eq!(bytes, cache.weighed_bytes());
    assert!(bytes >= 2 * 1024, "{bytes}");
    // The stats agree with what was reported.
    let s = v.stats();
    assert_eq!((s.hits, s.misses), (1, 3));
    // No label or name carries a token, claim value or key id.
    let all = format!("{m:?}");
    for secret in ["alice", "bob", "j1", "ec-1", "ed-1", &token[..20]] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }

    // Invalidation and eviction move the gauges and the eviction counter.
    let small = TokenCache::builder()
        .name("small")
        .max_entries(nz(1))
        .build()
        .unwrap();
    let w = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(keyset())
        .cache(small.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        w.validate(&token).unwrap();
        w.validate(&other).unwrap();
        small.clear();
    });
    let m = read(&recorder);
    assert!(m["palisade_jwt_cache_evictions_total{}"] >= 1, "{m:#?}");
    assert_eq!(m["palisade_jwt_cache_entries{cache=small}"], 0);
    assert_eq!(m["palisade_jwt_cache_bytes{cache=small}"], 0);
}
