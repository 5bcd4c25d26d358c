//! ML-DSA (RFC 9964) tokens: RFC 9964's own JWS, tokens signed by an independent
//! implementation (@noble/post-quantum, committed vectors), and the attacks: alg
//! substitution between parameter sets and with classical algorithms, truncated and
//! padded signatures, bad AKP keys. Every refusal is typed and never cached.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::sync::Arc;

use aws_lc_rs::signature::{
    KeyPair as _, ML_DSA_44_SIGNING, ML_DSA_65_SIGNING, ML_DSA_87_SIGNING, PqdsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use palisade_jwt_cache::{
    Algorithm, Error, KeySet, MlDsa, Policy, TokenAlgorithm, TokenCache, Validator,
};
use serde_json::{Value, json};

fn keypair(m: MlDsa, seed_byte: u8) -> PqdsaKeyPair {
    let alg = match m {
        MlDsa::MlDsa44 => &ML_DSA_44_SIGNING,
        MlDsa::MlDsa65 => &ML_DSA_65_SIGNING,
        MlDsa::MlDsa87 => &ML_DSA_87_SIGNING,
    };
    PqdsaKeyPair::from_seed(alg, &[seed_byte; 32]).unwrap()
}

fn kid_of(m: MlDsa) -> String {
    format!("pq-{m}")
}

/// A token with header `header`, signed over the exact bytes by `kp`.
fn sign_pq(header: &Value, claims: &Value, kp: &PqdsaKeyPair) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    );
    let mut sig = vec![0; kp.algorithm().signature_len()];
    kp.sign(msg.as_bytes(), &mut sig).unwrap();
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn pq_token(m: MlDsa, claims: &Value) -> String {
    sign_pq(
        &json!({"alg": m.as_str(), "kid": kid_of(m), "typ": "JWT"}),
        claims,
        &keypair(m, 7),
    )
}

/// The classical test keys plus one ML-DSA key per parameter set.
fn pq_keyset() -> KeySet {
    let mut ks = keyset();
    for m in MlDsa::ALL {
        ks.insert_ml_dsa(kid_of(m), m, keypair(m, 7).public_key().as_ref())
            .unwrap();
    }
    ks
}

fn pq_validator(cache: Arc<TokenCache>) -> Validator {
    Validator::builder()
        .policy(policy().ml_dsa(&MlDsa::ALL).build().unwrap())
        .keys(pq_keyset())
        .cache(cache)
        .clock(Arc::new(clock()))
        .build()
        .unwrap()
}

#[test]
fn ml_dsa_tokens_validate_and_are_served_from_the_cache() {
    let cache = cache();
    let v = pq_validator(cache.clone());
    for (i, m) in MlDsa::ALL.into_iter().enumerate() {
        let token = pq_token(m, &claims("alice", &format!("j{i}"), NOW + 300));
        let miss = v.validate(&token).unwrap();
        assert_eq!(miss.algorithm(), TokenAlgorithm::MlDsa(m));
        assert_eq!(miss.algorithm(), m);
        assert_eq!(miss.key_id(), kid_of(m));
        assert_eq!(miss.identity().subject.as_deref(), Some("alice"));
        let hit = v.validate(&token).unwrap();
        assert!(
            Arc::ptr_eq(&miss, &hit),
            "{m}: the second answer is the cached one"
        );
        // The same answer without the cache.
        assert_eq!(v.validate_uncached(&token).unwrap().claims(), miss.claims());
    }
    let s = v.stats();
    assert_eq!((s.hits, s.misses), (3, 6));
    assert_eq!(
        cache.len(),
        3,
        "ML-DSA-87 tokens fit the default cacheable size"
    );
}

#[test]
fn rfc9964_jws_signatures_verify_byte_for_byte() {
    // RFC 9964's examples sign RFC 7520's text, not JWT claims: a good signature
    // gets as far as the payload (refused there), one flipped bit is a bad signature.
    for (m, text) in [
        (
            MlDsa::MlDsa44,
            include_str!("data/rfc9964/ML_DSA_44.jose.json"),
        ),
        (
            MlDsa::MlDsa65,
            include_str!("data/rfc9964/ML_DSA_65.jose.json"),
        ),
        (
            MlDsa::MlDsa87,
            include_str!("data/rfc9964/ML_DSA_87.jose.json"),
        ),
    ] {
        let ex: Value = serde_json::from_str(text).unwrap();
        let mut jwk = ex["jwk"].clone();
        jwk.as_object_mut().unwrap().remove("priv");
        let keys = KeySet::from_jwks(json!({ "keys": [jwk] }).to_string().as_bytes()).unwrap();
        let v = Validator::builder()
            .policy(Policy::builder().ml_dsa(&[m]).build().unwrap())
            .keys(keys)
            .clock(Arc::new(clock()))
            .build()
            .unwrap();
        let jws = ex["jws"].as_str().unwrap();
        assert_eq!(
            v.validate(jws).unwrap_err(),
            Error::Malformed("payload is not a JSON object with unique claim names"),
            "{m}: the RFC's signature verifies"
        );
        let (input, sig) = jws.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        sig[100] ^= 0x40;
        let tampered = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(
            v.validate(&tampered).unwrap_err(),
            Error::BadSignature,
            "{m}"
        );
    }
}

#[test]
fn tokens_signed_by_noble_post_quantum_validate() {
    let doc: Value = serde_json::from_str(include_str!("data/noble-ml-dsa.json")).unwrap();
    assert!(
        doc["generator"]
            .as_str()
            .unwrap()
            .starts_with("@noble/post-quantum")
    );
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 3);
    let jwks: Vec<Value> = vectors.iter().map(|v| v["jwk"].clone()).collect();
    let keys = KeySet::from_jwks(json!({ "keys": jwks }).to_string().as_bytes()).unwrap();
    let v = Validator::builder()
        .policy(
            Policy::builder()
                .ml_dsa(&MlDsa::ALL)
                .audiences(&["api"])
                .build()
                .unwrap(),
        )
        .keys(keys)
        .clock(Arc::new(clock()))
        .build()
        .unwrap();
    for vector in vectors {
        let m = MlDsa::from_name(vector["alg"].as_str().unwrap()).unwrap();
        // aws-lc-rs derives the same key from the same seed.
        let seed: Vec<u8> = (0..32)
            .map(|i| {
                u8::from_str_radix(&vector["seed"].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap()
            })
            .collect();
        let signing = match m {
            MlDsa::MlDsa44 => &ML_DSA_44_SIGNING,
            MlDsa::MlDsa65 => &ML_DSA_65_SIGNING,
            MlDsa::MlDsa87 => &ML_DSA_87_SIGNING,
        };
        let ours = PqdsaKeyPair::from_seed(signing, &seed).unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(ours.public_key().as_ref()),
            vector["jwk"]["pub"].as_str().unwrap()
        );
        let t = v.validate(vector["jws"].as_str().unwrap()).unwrap();
        assert_eq!(t.algorithm(), m);
        assert_eq!(t.identity().subject.as_deref(), Some("noble"));
    }
}

#[test]
fn alg_substitution_is_refused_typed_and_never_cached() {
    let cache = cache();
    let v = pq_validator(cache.clone());
    let c = claims("mallory", "x", NOW + 300);
    let kp65 = keypair(MlDsa::MlDsa65, 7);
    let kp44 = keypair(MlDsa::MlDsa44, 7);
    let cases = [
        // An ML-DSA-44 token naming the ML-DSA-65 key.
        (
            sign_pq(
                &json!({"alg": "ML-DSA-44", "kid": kid_of(MlDsa::MlDsa65)}),
                &c,
                &kp44,
            ),
            TokenAlgorithm::MlDsa(MlDsa::MlDsa65),
            TokenAlgorithm::MlDsa(MlDsa::MlDsa44),
        ),
        // An ML-DSA-65 signature relabelled ML-DSA-87 for the 65 key.
        (
            sign_pq(
                &json!({"alg": "ML-DSA-87", "kid": kid_of(MlDsa::MlDsa65)}),
                &c,
                &kp65,
            ),
            TokenAlgorithm::MlDsa(MlDsa::MlDsa65),
            TokenAlgorithm::MlDsa(MlDsa::MlDsa87),
        ),
        // A classical alg naming an ML-DSA key.
        (
            sign_raw(
                &json!({"alg": "ES256", "kid": kid_of(MlDsa::MlDsa65)}),
                &c,
                &encoding_key(Algorithm::ES256),
                Algorithm::ES256,
            ),
            TokenAlgorithm::MlDsa(MlDsa::MlDsa65),
            TokenAlgorithm::Jose(Algorithm::ES256),
        ),
        // An ML-DSA token naming a classical key (the HMAC one, or the EC one).
        (
            sign_pq(&json!({"alg": "ML-DSA-65", "kid": "hs-1"}), &c, &kp65),
            TokenAlgorithm::Jose(Algorithm::HS256),
            TokenAlgorithm::MlDsa(MlDsa::MlDsa65),
        ),
        (
            sign_pq(&json!({"alg": "ML-DSA-65", "kid": "ec-1"}), &c, &kp65),
            TokenAlgorithm::Jose(Algorithm::ES256),
            TokenAlgorithm::MlDsa(MlDsa::MlDsa65),
        ),
    ];
    for (token, key_alg, token_alg) in &cases {
        for _ in 0..2 {
            match v.validate(token).unwrap_err() {
                Error::KeyAlgorithmMismatch {
                    key_alg: k,
                    token_alg: t,
                    ..
                } => assert_eq!((k, t), (*key_alg, *token_alg)),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(cache.len(), 0);
    assert_eq!(v.stats().hits, 0);

    // A policy without ML-DSA never considers the name; a classical-only policy
    // with the ML-DSA keys loaded refuses before the key lookup.
    let classical = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(pq_keyset())
        .cache(cache.clone())
        .clock(Arc::new(clock()))
        .build()
        .unwrap();
    let good = pq_token(MlDsa::MlDsa65, &c);
    assert!(matches!(
        classical.validate(&good).unwrap_err(),
        Error::AlgorithmNotAllowed { .. }
    ));
    // A case-folded name is not ML-DSA.
    let folded = sign_pq(
        &json!({"alg": "ml-dsa-65", "kid": kid_of(MlDsa::MlDsa65)}),
        &c,
        &kp65,
    );
    assert!(matches!(
        v.validate(&folded).unwrap_err(),
        Error::AlgorithmNotAllowed { .. }
    ));
    assert_eq!(cache.len(), 0);
}

#[test]
fn truncated_padded_and_foreign_signatures_are_bad_signatures_never_cached() {
    let cache = cache();
    let v = pq_validator(cache.clone());
    let token = pq_token(MlDsa::MlDsa65, &claims("mallory", "y", NOW + 300));
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let with = |s: &[u8]| format!("{input}.{}", URL_SAFE_NO_PAD.encode(s));
    let mut padded = sig.clone();
    padded.push(0);
    let mut zero_padded = sig.clone();
    zero_padded.extend([0; 3]);
    let other_key = {
        let kp = keypair(MlDsa::MlDsa65, 8);
        let mut s = vec![0; 3309];
        kp.sign(input.as_bytes(), &mut s).unwrap();
        s
    };
    for bad in [
        with(&sig[..sig.len() - 1]),
        with(&sig[..2420]),
        with(&padded),
        with(&zero_padded),
        with(&[]),
        with(&other_key),
        format!("{input}.{}", &token.rsplit_once('.').unwrap().1[..100]),
    ] {
        assert_eq!(v.validate(&bad).unwrap_err(), Error::BadSignature);
    }
    // Not base64url at all (padding, a `+`) is malformed, not a signature check.
    for bad in [
        format!("{token}="),
        format!("{input}.+{}", &token.rsplit_once('.').unwrap().1[1..]),
    ] {
        assert!(
            matches!(v.validate(&bad).unwrap_err(), Error::Malformed(_)),
            "{bad:.40}"
        );
    }
    assert_eq!(cache.len(), 0);
    assert_eq!(v.stats().hits, 0);
    // The good token is still accepted (and only it is cached).
    v.validate(&token).unwrap();
    assert_eq!(cache.len(), 1);
}

#[test]
fn akp_keys_are_loaded_strictly() {
    let kp = keypair(MlDsa::MlDsa65, 7);
    let public = kp.public_key().as_ref().to_vec();
    let pub_b64 = URL_SAFE_NO_PAD.encode(&public);
    let reason =
        |jwk: Value| match KeySet::from_jwks(json!({ "keys": [jwk] }).to_string().as_bytes()) {
            Err(Error::InvalidKey { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
    assert_eq!(
        reason(json!({"kty": "AKP", "kid": "k", "pub": pub_b64})),
        "alg is required for AKP keys"
    );
    assert_eq!(
        reason(json!({"kty": "AKP", "kid": "k", "alg": "ES256", "pub": pub_b64})),
        "alg is not ML-DSA-44, ML-DSA-65 or ML-DSA-87"
    );
    for wrong in [&public[..1951], &[&public[..], &[0]].concat()[..]] {
        assert_eq!(
            reason(
                json!({"kty": "AKP", "kid": "k", "alg": "ML-DSA-65", "pub": URL_SAFE_NO_PAD.encode(wrong)})
            ),
            "pub has the wrong length for its ML-DSA parameter set"
        );
    }
    // The right bytes under the wrong parameter set are the wrong length too.
    assert_eq!(
        reason(json!({"kty": "AKP", "kid": "k", "alg": "ML-DSA-44", "pub": pub_b64})),
        "pub has the wrong length for its ML-DSA parameter set"
    );
    // A DER SubjectPublicKeyInfo (which aws-lc-rs would parse) is not a raw key.
    let spki = aws_lc_rs::encoding::AsDer::as_der(kp.public_key()).unwrap();
    assert_eq!(
        reason(
            json!({"kty": "AKP", "kid": "k", "alg": "ML-DSA-65", "pub": URL_SAFE_NO_PAD.encode(spki.as_ref())})
        ),
        "pub has the wrong length for its ML-DSA parameter set"
    );
    // Unknown members are ignored; `use: sig` is fine.
    let ks = KeySet::from_jwks(
        json!({"keys": [{"kty": "AKP", "kid": "k", "alg": "ML-DSA-65", "use": "sig", "pub": pub_b64, "x-extra": [1]}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert!(ks.contains("k"));
    // insert_ml_dsa checks the same.
    let mut ks = KeySet::new();
    assert!(matches!(
        ks.insert_ml_dsa("k", MlDsa::MlDsa87, &public),
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        ks.insert_ml_dsa("", MlDsa::MlDsa65, &public),
        Err(Error::InvalidKey { .. })
    ));
}

#[test]
fn a_policy_of_ml_dsa_only_is_valid_and_one_of_nothing_is_not() {
    assert!(Policy::builder().ml_dsa(&[MlDsa::MlDsa65]).build().is_ok());
    assert!(matches!(
        Policy::builder().ml_dsa(&[]).build(),
        Err(Error::InvalidConfig {
            field: "algorithms",
            ..
        })
    ));
}
