//! Property: for any sequence of validations, clock moves, key-set changes,
//! revocations and invalidations, the caching validator answers exactly as a fresh,
//! uncached validator with the same keys, clock and revocation state.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use palisade_core_traits::Clock;
use palisade_jwt_cache::{Algorithm, DecodingKey, TokenCache, Validator};
use proptest::prelude::*;
use serde_json::json;

fn tokens() -> &'static [String] {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| {
        let mut out = Vec::new();
        let mut n = 0;
        for alg in [
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ] {
            for exp in [NOW + 5, NOW + 30, NOW + 120] {
                n += 1;
                let sub = if n % 2 == 0 { "alice" } else { "bob" };
                out.push(sign(alg, &claims(sub, &format!("j{n}"), exp)));
            }
        }
        let mut c = claims("carol", "nbf", NOW + 100);
        c["nbf"] = json!(NOW + 10);
        out.push(sign(Algorithm::ES256, &c));
        let mut c = claims("carol", "aud", NOW + 100);
        c["aud"] = json!("other");
        out.push(sign(Algorithm::HS256, &c));
        let mut c = claims("carol", "noexp", NOW);
        c.as_object_mut().unwrap().remove("exp");
        out.push(sign(Algorithm::HS256, &c));
        // A corrupted signature.
        let t = &out[2];
        let (m, s) = t.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[0] ^= 0x80;
        out.push(format!("{m}.{}", URL_SAFE_NO_PAD.encode(sig)));
        out
    })
}

#[derive(Debug, Clone)]
enum Op {
    Validate(usize),
    ValidateAsync(usize),
    Advance(u64),
    StepBack(u64),
    DropKey(usize),
    SwapRsaKey,
    RestoreKeys,
    Revoke(usize),
    RevokeSubject(bool),
    Invalidate(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let n = tokens().len();
    prop_oneof![
        5 => (0..n).prop_map(Op::Validate),
        2 => (0..n).prop_map(Op::ValidateAsync),
        2 => (0u64..40).prop_map(Op::Advance),
        1 => (0u64..15).prop_map(Op::StepBack),
        1 => (0..ALGS.len()).prop_map(Op::DropKey),
        1 => Just(Op::SwapRsaKey),
        1 => Just(Op::RestoreKeys),
        1 => (1usize..13).prop_map(Op::Revoke),
        1 => any::<bool>().prop_map(Op::RevokeSubject),
        1 => (1usize..13).prop_map(Op::Invalidate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn cached_answers_equal_fresh_uncached_answers(
        ops in proptest::collection::vec(op(), 1..40),
        small_cache in any::<bool>(),
    ) {
        let clock = clock();
        let rev = Arc::new(TestRevocation::default());
        let cache = TokenCache::builder()
            .max_entries(nz(if small_cache { 3 } else { 1000 }))
            .build()
            .unwrap();
        let build = |cache: Option<Arc<TokenCache>>| {
            let b = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(keyset())
                .clock(Arc::new(clock.clone()))
                .revocation(rev.clone());
            match cache { Some(c) => b.cache(c), None => b }.build().unwrap()
        };
        let cached = build(Some(cache.clone()));
        let fresh = build(None);
        let answer = |v: &Validator, t: &str| {
            v.validate(t).map(|x| (x.identity().clone(), x.key_id().to_owned()))
        };
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for op in ops {
            match op {
                Op::ValidateAsync(i) => {
                    let t = &tokens()[i];
                    let got = rt
                        .block_on(cached.validate_async(t))
                        .map(|x| (x.identity().clone(), x.key_id().to_owned()));
                    prop_assert_eq!(&got, &answer(&fresh, t), "token {} at {} (async)", i, clock.now());
                }
                Op::Validate(i) => {
                    let t = &tokens()[i];
                    let got = answer(&cached, t);
                    prop_assert_eq!(&got, &answer(&fresh, t), "token {} at {}", i, clock.now());
                    prop_assert_eq!(&got, &cached.validate_uncached(t).map(|x| (x.identity().clone(), x.key_id().to_owned())));
                }
                Op::Advance(s) => clock.advance(Duration::from_secs(s)),
                Op::StepBack(s) => clock.set(clock.now().saturating_sub(Duration::from_secs(s))),
                Op::DropKey(k) => {
                    let mut ks = cached.keys();
                    ks.remove(kid(ALGS[k]));
                    cached.set_keys(ks.clone());
                    fresh.set_keys(ks);
                }
                Op::SwapRsaKey => {
                    let mut ks = cached.keys();
                    ks.insert("rsa-1", Algorithm::RS256, DecodingKey::from_rsa_pem(RSA2_PUBLIC).unwrap()).unwrap();
                    cached.set_keys(ks.clone());
                    fresh.set_keys(ks);
                }
                Op::RestoreKeys => {
                    cached.set_keys(keyset());
                    fresh.set_keys(keyset());
                }
                Op::Revoke(j) => rev.revoke(ISS, &format!("j{j}")),
                Op::RevokeSubject(alice) => rev.revoke_subject(ISS, if alice { "alice" } else { "bob" }),
                Op::Invalidate(j) => { cache.invalidate_token(ISS, &format!("j{j}")); }
            }
        }
    }
}
