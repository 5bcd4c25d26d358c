//! Cache behaviour: lifetimes, bounds, size limit, invalidation, single flight, JWKS.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use palisade_jwt_cache::{Algorithm, Error, KeySet, Policy, PolicyBuilder, TokenCache, Validator};
use serde_json::json;

#[test]
fn every_algorithm_hits_after_one_miss_and_returns_the_claims() {
    let clock = clock();
    let v = validator(policy(), &clock, cache());
    for (i, alg) in ALGS.into_iter().enumerate() {
        let token = sign(alg, &claims("alice", &format!("j{i}"), NOW + 300));
        let a = v.validate(&token).unwrap();
        let b = v.validate(&token).unwrap();
        assert!(
            Arc::ptr_eq(&a, &b),
            "{alg:?}: the second answer is the cached one"
        );
        assert_eq!(a.algorithm(), alg);
        assert_eq!(a.key_id(), kid(alg));
        assert_eq!(a.claims()["sub"], json!("alice"));
        assert_eq!(a.identity().jti.as_deref(), Some(format!("j{i}").as_str()));
        assert_eq!(a.expires_at(), Some(NOW + 300));
    }
    let s = v.stats();
    assert_eq!((s.hits, s.misses, s.rejected_total()), (5, 5, 0));
}

#[test]
fn an_entry_lives_at_most_max_ttl() {
    let clock = clock();
    let v = validator(policy(), &clock, cache());
    let token = sign(Algorithm::HS256, &claims("alice", "j1", NOW + 3600));
    v.validate(&token).unwrap();
    clock.advance(Duration::from_secs(59));
    v.validate(&token).unwrap();
    assert_eq!((v.stats().hits, v.stats().misses), (1, 1));
    clock.advance(Duration::from_secs(1));
    v.validate(&token).unwrap();
    assert_eq!(
        (v.stats().hits, v.stats().misses),
        (1, 2),
        "re-validated at max_ttl"
    );
    v.validate(&token).unwrap();
    assert_eq!(v.stats().hits, 2);
}

#[test]
fn failures_are_never_cached_and_tokens_above_the_size_limit_are_not_cached() {
    let clock = clock();
    let cache = cache();
    let v = validator(policy(), &clock, cache.clone());
    let bad = sign(Algorithm::HS256, &claims("alice", "j1", NOW - 1));
    for _ in 0..3 {
        assert_eq!(v.validate(&bad).unwrap_err(), Error::Expired);
    }
    assert_eq!(cache.len(), 0);
    assert_eq!(v.stats().misses, 3);

    let mut c = claims("alice", "big", NOW + 300);
    c["pad"] = json!("x".repeat(17_000));
    let big = sign(Algorithm::HS256, &c);
    assert!(big.len() > palisade_jwt_cache::DEFAULT_MAX_CACHED_TOKEN_BYTES);
    v.validate(&big).unwrap();
    v.validate(&big).unwrap();
    assert_eq!(cache.len(), 0);
    let s = v.stats();
    assert_eq!((s.hits, s.misses, s.not_cached), (0, 5, 2));
}

#[test]
fn the_cache_is_bounded_in_entries_and_counts_evictions() {
    let clock = clock();
    let cache = TokenCache::builder().max_entries(nz(16)).build().unwrap();
    let v = validator(policy(), &clock, cache.clone());
    for i in 0..200 {
        let token = sign(
            Algorithm::HS256,
            &claims("alice", &format!("j{i}"), NOW + 300),
        );
        v.validate(&token).unwrap();
        assert!(cache.len() <= 16, "{} entries", cache.len());
    }
    let s = v.stats();
    assert!(s.evictions >= 200 - 16, "{s:?}");
    assert_eq!(s.misses, 200);
}

#[test]
fn the_cache_is_bounded_in_bytes() {
    let clock = clock();
    // 64 entries allowed, but only ~16 KiB: a 2 KiB token weighs several units.
    let cache = TokenCache::builder()
        .max_entries(nz(64))
        .max_bytes(std::num::NonZeroU64::new(16 * 1024).unwrap())
        .build()
        .unwrap();
    let v = validator(policy(), &clock, cache.clone());
    for i in 0..64 {
        let mut c = claims("alice", &format!("j{i}"), NOW + 300);
        c["pad"] = json!("x".repeat(1500));
        v.validate(sign(Algorithm::HS256, &c)).unwrap();
    }
    // Each entry is estimated at > 2 KiB of token + 4x payload + overhead.
    assert!(cache.len() <= 16 * 1024 / 2048, "{} entries", cache.len());
    assert!(v.stats().evictions > 0);
}

#[test]
fn invalidation_by_token_and_by_subject_forces_a_fresh_validation() {
    let clock = clock();
    let cache = cache();
    let v = validator(policy(), &clock, cache.clone());
    let a1 = sign(Algorithm::ES256, &claims("alice", "j1", NOW + 300));
    let a2 = sign(Algorithm::ES256, &claims("alice", "j2", NOW + 300));
    let b1 = sign(Algorithm::ES256, &claims("bob", "j3", NOW + 300));
    for t in [&a1, &a2, &b1] {
        v.validate(t).unwrap();
    }
    assert_eq!(cache.invalidate_token(ISS, "j1"), 1);
    assert_eq!(cache.invalidate_token("https://other.example", "j2"), 0);
    v.validate(&a1).unwrap();
    v.validate(&a2).unwrap();
    assert_eq!((v.stats().hits, v.stats().misses), (1, 4));
    assert_eq!(cache.invalidate_subject("alice"), 2);
    v.validate(&a1).unwrap();
    v.validate(&a2).unwrap();
    v.validate(&b1).unwrap();
    assert_eq!((v.stats().hits, v.stats().misses), (2, 6));
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn concurrent_validations_of_one_uncached_token_verify_it_once() {
    let clock = clock();
    let v = Arc::new(validator(policy(), &clock, cache()));
    let token = Arc::new(sign(Algorithm::RS256, &claims("alice", "j1", NOW + 300)));
    let threads = 16;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (v, token, barrier) = (v.clone(), token.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                v.validate(token.as_bytes()).unwrap().identity().clone()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().jti.as_deref(), Some("j1"));
    }
    let s = v.stats();
    assert_eq!(s.misses, 1, "{s:?}");
    assert_eq!(s.hits, threads as u64 - 1);
    assert!(s.shared <= s.hits);
}

#[test]
fn concurrent_validations_of_a_bad_token_all_fail() {
    let clock = clock();
    let cache = cache();
    let v = Arc::new(validator(policy(), &clock, cache.clone()));
    let token = sign(Algorithm::ES256, &claims("alice", "j1", NOW + 300));
    // Flip a bit inside the signature (changing the last base64 character may not
    // change any signature byte).
    let (msg, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    let bad = Arc::new(format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig)));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (v, bad) = (v.clone(), bad.clone());
            std::thread::spawn(move || v.validate(bad.as_bytes()).unwrap_err())
        })
        .collect();
    for h in handles {
        let e = h.join().unwrap();
        assert!(
            matches!(e, Error::BadSignature | Error::Malformed(_)),
            "{e:?}"
        );
    }
    assert_eq!(cache.len(), 0);
    assert_eq!(v.stats().hits, 0);
}

#[test]
fn jwks_documents_load_and_bad_ones_are_refused() {
    let ks = KeySet::from_jwks(JWKS).unwrap();
    assert_eq!(ks.len(), 3);
    let clock = clock();
    let v = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(ks.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    for (alg, kid) in [
        (Algorithm::RS256, "rsa-1"),
        (Algorithm::ES256, "ec-1"),
        (Algorithm::EdDSA, "ed-1"),
    ] {
        let t = sign(alg, &claims("alice", "j1", NOW + 300));
        assert_eq!(v.validate(&t).unwrap().key_id(), kid);
    }
    // HS256 and PS256 keys are not in the JWKS.
    let t = sign(Algorithm::HS256, &claims("alice", "j1", NOW + 300));
    assert!(matches!(v.validate(&t), Err(Error::UnknownKid { .. })));
    assert!(format!("{ks:?}").contains("rsa-1"));
    assert!(!format!("{ks:?}").contains("AQAB"));

    let doc: serde_json::Value = serde_json::from_slice(JWKS).unwrap();
    let mut no_alg = doc.clone();
    no_alg["keys"][0].as_object_mut().unwrap().remove("alg");
    let mut enc = doc.clone();
    enc["keys"][0]["use"] = json!("enc");
    let mut dup = doc.clone();
    dup["keys"][1]["kid"] = json!("rsa-1");
    let mut wrong_alg = doc.clone();
    wrong_alg["keys"][1]["alg"] = json!("ES384");
    let mut no_kid = doc.clone();
    no_kid["keys"][2].as_object_mut().unwrap().remove("kid");
    for bad in [no_alg, enc, dup, wrong_alg] {
        let e = KeySet::from_jwks(bad.to_string().as_bytes()).unwrap_err();
        assert!(matches!(e, Error::InvalidKey { .. }), "{e:?}");
    }
    assert!(matches!(
        KeySet::from_jwks(no_kid.to_string().as_bytes()),
        Err(Error::InvalidJwks(_))
    ));
    assert!(matches!(
        KeySet::from_jwks(b"{\"keys\": 7}"),
        Err(Error::InvalidJwks(_))
    ));
    assert!(matches!(
        KeySet::from_jwks(b"not json"),
        Err(Error::InvalidJwks(_))
    ));
}

#[test]
fn policies_fingerprint_their_every_field() {
    // Observable through a shared cache: validators with equal policies share entries,
    // any difference means a miss.
    let clock = clock();
    let shared = cache();
    let token = sign(Algorithm::HS256, &claims("alice", "j1", NOW + 300));
    let base = || policy();
    let variants: Vec<PolicyBuilder> = vec![
        base().leeway_secs(1),
        base().reject_expiring_in_less_than_secs(1),
        base().typ("JWT"),
        base().validate_nbf(false),
        base().required_claims(&["exp", "sub"]),
        Policy::builder()
            .algorithms(&[Algorithm::HS256])
            .issuers(&[ISS])
            .audiences(&[AUD]),
    ];
    let first = validator(base(), &clock, shared.clone());
    first.validate(&token).unwrap();
    let twin = validator(base(), &clock, shared.clone());
    // Same policy, but its own key-set epoch: still a miss (epochs are per validator).
    twin.validate(&token).unwrap();
    assert_eq!(twin.stats().misses, 1);
    for p in variants {
        let v = validator(p, &clock, shared.clone());
        v.validate(&token).unwrap();
        assert_eq!((v.stats().hits, v.stats().misses), (0, 1));
    }
    assert!(Policy::builder().build().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_callers_share_one_validation_and_the_cache_with_sync_callers() {
    let clock = clock();
    let v = Arc::new(validator(policy(), &clock, cache()));
    let token = Arc::new(sign(Algorithm::ES256, &claims("alice", "j1", NOW + 300)));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (v, token) = (v.clone(), token.clone());
            tokio::spawn(async move {
                v.validate_async(token.as_bytes())
                    .await
                    .unwrap()
                    .identity()
                    .clone()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().jti.as_deref(), Some("j1"));
    }
    let s = v.stats();
    assert_eq!((s.misses, s.hits), (1, 31), "{s:?}");
    v.validate(token.as_bytes()).unwrap();
    assert_eq!(v.stats().hits, 32);
    clock.advance(Duration::from_secs(300));
    assert_eq!(
        v.validate_async(token.as_bytes()).await.unwrap_err(),
        Error::Expired
    );
    assert_eq!(v.stats().rejected("expired"), 1);
}
