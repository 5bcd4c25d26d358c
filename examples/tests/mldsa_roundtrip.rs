//! ML-DSA end to end where the crates meet: hsm-keys signs and publishes (SoftStore →
//! KeyRing → JWKS JSON), jwt-cache loads that JWKS and validates, for ML-DSA-44, -65
//! and -87; the hybrid rollout seen by an old and a new verifier; and an independent
//! implementation (@noble/post-quantum, run by node) verifying what hsm-keys signed.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use palisade_hsm_keys::{HybridKeyRing, JwsAlgorithm, KeyRing, SoftStore};
use palisade_jwt_cache::{Algorithm, Error, KeySet, MlDsa, Policy, TokenCache, Validator};
use serde_json::{Map, Value, json};

const PAIRS: [(JwsAlgorithm, MlDsa); 3] = [
    (JwsAlgorithm::MlDsa44, MlDsa::MlDsa44),
    (JwsAlgorithm::MlDsa65, MlDsa::MlDsa65),
    (JwsAlgorithm::MlDsa87, MlDsa::MlDsa87),
];

fn ring(name: &str, alg: JwsAlgorithm) -> KeyRing<Arc<SoftStore>> {
    let ring = KeyRing::builder(Arc::new(SoftStore::new()))
        .name(name)
        .algorithm(alg)
        .max_token_lifetime(Duration::from_secs(600))
        .build()
        .unwrap();
    ring.rotate().unwrap();
    ring
}

fn claims() -> Map<String, Value> {
    let Value::Object(m) = json!({"iss": "https://issuer.example", "aud": "api", "sub": "alice"})
    else {
        unreachable!()
    };
    m
}

fn validator(jwks: &[u8], policy: Policy) -> Validator {
    Validator::builder()
        .policy(policy)
        .keys(KeySet::from_jwks(jwks).unwrap())
        .cache(TokenCache::builder().build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn soft_store_to_jwks_to_jwt_cache_for_every_parameter_set() {
    for (alg, m) in PAIRS {
        let ring = ring("pq", alg);
        let jwks = serde_json::to_vec(&ring.jwks()).unwrap();
        let v = validator(
            &jwks,
            Policy::builder()
                .ml_dsa(&[m])
                .issuers(&["https://issuer.example"])
                .audiences(&["api"])
                .build()
                .unwrap(),
        );
        let jws = ring.sign_jwt(claims(), Duration::from_secs(300)).unwrap();
        let t = v.validate(&jws.compact).unwrap();
        assert_eq!(t.algorithm(), m);
        assert_eq!(t.key_id(), jws.key_id);
        assert_eq!(t.identity().subject.as_deref(), Some("alice"));
        assert!(
            Arc::ptr_eq(&t, &v.validate(&jws.compact).unwrap()),
            "{m}: a hit"
        );
        // After a rotation the old key is still published and its token still valid.
        ring.rotate().unwrap();
        let v2 = validator(
            &serde_json::to_vec(&ring.jwks()).unwrap(),
            Policy::builder()
                .ml_dsa(&[m])
                .audiences(&["api"])
                .build()
                .unwrap(),
        );
        assert!(v2.validate(&jws.compact).is_ok(), "{m}: overlap");
        let newer = ring.sign_jwt(claims(), Duration::from_secs(300)).unwrap();
        assert_ne!(newer.key_id, jws.key_id);
        assert!(v2.validate(&newer.compact).is_ok());
    }
}

#[test]
fn hybrid_rollout_old_verifiers_keep_working_new_ones_take_both() {
    let hybrid = HybridKeyRing::builder()
        .classical(ring("jwt", JwsAlgorithm::ES256))
        .post_quantum(ring("jwt-pq", JwsAlgorithm::MlDsa65))
        .post_quantum_audiences(&["api-v2"])
        .build()
        .unwrap();
    let jwks = serde_json::to_vec(&hybrid.jwks()).unwrap();
    let classic = hybrid
        .sign_jwt("api-v1", claims_without_aud(), Duration::from_secs(60))
        .unwrap();
    let pq = hybrid
        .sign_jwt("api-v2", claims_without_aud(), Duration::from_secs(60))
        .unwrap();
    // An old verifier (ES256 only) loads the hybrid JWKS and keeps accepting ES256.
    let old = validator(
        &jwks,
        Policy::builder()
            .algorithms(&[Algorithm::ES256])
            .audiences(&["api-v1", "api-v2"])
            .build()
            .unwrap(),
    );
    assert!(old.validate(&classic.compact).is_ok());
    assert!(matches!(
        old.validate(&pq.compact).unwrap_err(),
        Error::AlgorithmNotAllowed { .. }
    ));
    // A migrated verifier takes both, each only with its own key.
    let new = validator(
        &jwks,
        Policy::builder()
            .algorithms(&[Algorithm::ES256])
            .ml_dsa(&[MlDsa::MlDsa65])
            .audiences(&["api-v1", "api-v2"])
            .build()
            .unwrap(),
    );
    assert_eq!(
        new.validate(&classic.compact).unwrap().algorithm(),
        Algorithm::ES256
    );
    assert_eq!(
        new.validate(&pq.compact).unwrap().algorithm(),
        MlDsa::MlDsa65
    );
}

fn claims_without_aud() -> Map<String, Value> {
    let mut c = claims();
    c.remove("aud");
    c
}

/// The committed @noble/post-quantum vectors' seeds give the same `pub` and the same
/// RFC 9964 thumbprint `kid` in hsm-keys as in noble.
#[test]
fn seeds_give_the_same_keys_and_kids_as_noble() {
    let doc: Value = serde_json::from_str(include_str!(
        "../../crates/jwt-cache/tests/data/noble-ml-dsa.json"
    ))
    .unwrap();
    let store = SoftStore::new();
    for (vector, (alg, _)) in doc["vectors"].as_array().unwrap().iter().zip(PAIRS) {
        assert_eq!(vector["alg"], alg.as_str());
        let seed = hex::decode(vector["seed"].as_str().unwrap()).unwrap();
        let info = store.import_ml_dsa_seed("noble", alg, &seed).unwrap();
        assert_eq!(info.jwk.pub_.as_deref(), vector["jwk"]["pub"].as_str());
        assert_eq!(info.kid(), vector["jwk"]["kid"].as_str().unwrap());
    }
}

/// hsm-keys signs, @noble/post-quantum verifies (scripts/mldsa-vectors/verify.mjs;
/// `scripts/test.sh setup` installs it). A tampered token must come back false, so
/// the check can fail.
#[test]
fn noble_post_quantum_verifies_what_hsm_keys_signed() {
    let mut items = Vec::new();
    for (alg, _) in PAIRS {
        let ring = ring("pq", alg);
        let jwk = ring.jwks().keys.remove(0);
        let jws = ring.sign_jwt(claims(), Duration::from_secs(60)).unwrap();
        let mut tampered = jws.compact.clone().into_bytes();
        let i = tampered.iter().position(|&b| b == b'.').unwrap() + 3;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        for compact in [jws.compact, String::from_utf8(tampered).unwrap()] {
            items.push(json!({"alg": alg.as_str(), "pub": jwk.pub_, "jws": compact}));
        }
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/mldsa-vectors");
    let mut child = Command::new("node")
        .arg("verify.mjs")
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (scripts/test.sh setup installs @noble/post-quantum)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(&items).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "verify.mjs failed; run `cd scripts/mldsa-vectors && npm ci`"
    );
    let results: Vec<bool> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results, [true, false, true, false, true, false]);
}
