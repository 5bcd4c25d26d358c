//! ML-DSA (RFC 9964) in `SoftStore`: RFC 9964's own examples byte for byte, AKP
//! JWKs and thumbprints, signatures checked by aws-lc-rs's verifier directly, the
//! hybrid ring, and the typed refusal of a real SoftHSM token without ML-DSA.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

#[path = "common/rfc9964.rs"]
mod rfc9964;

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::{ML_DSA_44, ML_DSA_65, ML_DSA_87, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_core_traits::ManualClock;
use palisade_hsm_keys::{
    Error, HybridKeyRing, JwsAlgorithm, KeyRing, KeyStore, ML_DSA_SEED_LEN, SoftStore, sign_compact,
};
use rfc9964::{hex_decode, rfc_example};
use serde_json::Value;

const ALGS: [JwsAlgorithm; 3] = [
    JwsAlgorithm::MlDsa44,
    JwsAlgorithm::MlDsa65,
    JwsAlgorithm::MlDsa87,
];

fn verify_raw(alg: JwsAlgorithm, public: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let v = match alg {
        JwsAlgorithm::MlDsa44 => &ML_DSA_44,
        JwsAlgorithm::MlDsa65 => &ML_DSA_65,
        _ => &ML_DSA_87,
    };
    UnparsedPublicKey::new(v, public).verify(msg, sig).is_ok()
}

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

#[test]
fn rfc9964_private_jwk_gives_its_pub_and_kid_and_its_jws_verifies() {
    for alg in ALGS {
        let ex = rfc_example(alg);
        let jwk = &ex["jwk"];
        let store = SoftStore::new();
        let info = store
            .import_akp_jwk("rfc", jwk.to_string().as_bytes())
            .unwrap();
        assert_eq!(info.algorithm, alg);
        // Deterministic key generation from the RFC's seed gives the RFC's `pub`,
        // and our RFC 7638 thumbprint over alg, kty, pub gives the RFC's `kid`.
        assert_eq!(info.jwk.pub_.as_deref(), jwk["pub"].as_str(), "{alg}");
        assert_eq!(info.kid(), jwk["kid"].as_str().unwrap(), "{alg}");
        assert_eq!(info.jwk.kty, "AKP");
        assert_eq!(info.jwk.alg, alg.as_str());
        assert_eq!(
            hex(&b64d(info.jwk.pub_.as_deref().unwrap())),
            ex["raw_public_key"].as_str().unwrap()
        );
        // The same key from the bare seed.
        let seed = hex_decode(ex["priv"].as_str().unwrap());
        let again = store.import_ml_dsa_seed("rfc", alg, &seed).unwrap();
        assert_eq!(again.kid(), info.kid());
        // The RFC's JWS verifies with its public key (signing is randomised, so its
        // bytes are checked, not reproduced), and its parts are the hex ones.
        let jws = ex["jws"].as_str().unwrap();
        let (input, sig) = jws.rsplit_once('.').unwrap();
        assert_eq!(
            hex(input.as_bytes()),
            ex["raw_to_be_signed"].as_str().unwrap()
        );
        assert_eq!(hex(&b64d(sig)), ex["raw_signature"].as_str().unwrap());
        let public = b64d(jwk["pub"].as_str().unwrap());
        assert!(verify_raw(alg, &public, input.as_bytes(), &b64d(sig)));
        // And one flipped bit does not.
        let mut bad = b64d(sig);
        bad[10] ^= 1;
        assert!(!verify_raw(alg, &public, input.as_bytes(), &bad));
    }
}

#[test]
fn generated_keys_sign_compact_jws_of_the_fips_204_sizes() {
    let store = SoftStore::new();
    for (alg, pub_len, sig_len) in [
        (JwsAlgorithm::MlDsa44, 1312, 2420),
        (JwsAlgorithm::MlDsa65, 1952, 3309),
        (JwsAlgorithm::MlDsa87, 2592, 4627),
    ] {
        let info = store.generate("pq", alg).unwrap();
        let public = b64d(info.jwk.pub_.as_deref().unwrap());
        assert_eq!(public.len(), pub_len);
        assert!(info.jwk.x.is_none() && info.jwk.crv.is_none());
        let jws = sign_compact(&store, &info, Some("JWT"), br#"{"sub":"a"}"#).unwrap();
        assert_eq!(jws.algorithm, alg);
        let mut parts = jws.compact.split('.');
        let header: Value = serde_json::from_slice(&b64d(parts.next().unwrap())).unwrap();
        assert_eq!(header["alg"], alg.as_str());
        assert_eq!(header["kid"], info.kid());
        let (input, sig) = jws.compact.rsplit_once('.').unwrap();
        let sig = b64d(sig);
        assert_eq!(sig.len(), sig_len);
        assert!(verify_raw(alg, &public, input.as_bytes(), &sig));
        // A key of another parameter set never verifies it.
        let other = if alg == JwsAlgorithm::MlDsa44 {
            JwsAlgorithm::MlDsa65
        } else {
            JwsAlgorithm::MlDsa44
        };
        assert!(!verify_raw(other, &public, input.as_bytes(), &sig));
        // The JWK serialises with `pub`, and the kid is the thumbprint of exactly
        // {"alg","kty","pub"} (RFC 9964 §6): recomputed here independently.
        let json = serde_json::to_value(&info.jwk).unwrap();
        assert_eq!(json["kty"], "AKP");
        assert_eq!(json["pub"], info.jwk.pub_.clone().unwrap());
        let canonical = format!(
            r#"{{"alg":"{}","kty":"AKP","pub":"{}"}}"#,
            alg.as_str(),
            json["pub"].as_str().unwrap()
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        assert_eq!(info.kid(), URL_SAFE_NO_PAD.encode(digest.as_ref()));
    }
}

#[test]
fn seeds_and_private_jwks_are_checked_with_typed_errors() {
    let store = SoftStore::new();
    for len in [0, 31, 33, 64] {
        let err = store
            .import_ml_dsa_seed("pq", JwsAlgorithm::MlDsa65, &vec![7; len])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{len}: {err}");
    }
    let err = store
        .import_ml_dsa_seed("pq", JwsAlgorithm::ES256, &[7; ML_DSA_SEED_LEN])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err}");

    let ex = rfc_example(JwsAlgorithm::MlDsa44);
    let good = ex["jwk"].clone();
    let member = |edit: &dyn Fn(&mut Value)| {
        let mut jwk = good.clone();
        edit(&mut jwk);
        match store.import_akp_jwk("pq", jwk.to_string().as_bytes()) {
            Err(Error::InvalidJwk { member, .. }) => member,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        member(&|j| drop(j.as_object_mut().unwrap().remove("alg"))),
        "alg"
    );
    assert_eq!(member(&|j| j["alg"] = "ES256".into()), "alg");
    assert_eq!(member(&|j| j["kty"] = "OKP".into()), "kty");
    assert_eq!(
        member(&|j| drop(j.as_object_mut().unwrap().remove("priv"))),
        "priv"
    );
    assert_eq!(member(&|j| j["priv"] = "AAAA".into()), "priv");
    assert_eq!(
        member(&|j| drop(j.as_object_mut().unwrap().remove("pub"))),
        "pub"
    );
    // The ML-DSA-44 seed declared as ML-DSA-65: its `pub` cannot match.
    assert_eq!(member(&|j| j["alg"] = "ML-DSA-65".into()), "pub");
    let other_pub = rfc_example(JwsAlgorithm::MlDsa65)["jwk"]["pub"].clone();
    assert_eq!(member(&|j| j["pub"] = other_pub.clone()), "pub");
    // Unknown members are ignored; `kid` is recomputed, never trusted.
    let mut extra = good.clone();
    extra["kid"] = "whatever".into();
    extra["x-note"] = 1.into();
    let info = store
        .import_akp_jwk("pq", extra.to_string().as_bytes())
        .unwrap();
    assert_eq!(info.kid(), good["kid"].as_str().unwrap());
    // No error message carries the seed.
    let err = store
        .import_akp_jwk(
            "pq",
            br#"{"kty":"AKP","alg":"ML-DSA-44","priv":"c2VjcmV0","pub":"x"}"#,
        )
        .unwrap_err();
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
}

#[test]
fn a_ring_rotates_ml_dsa_keys_with_overlap_like_any_other() {
    let clock = Arc::new(ManualClock::new(
        palisade_core_traits::Timestamp::from_unix_secs(1_800_000_000),
    ));
    let ring = KeyRing::builder(SoftStore::new())
        .name("pq")
        .algorithm(JwsAlgorithm::MlDsa65)
        .max_token_lifetime(Duration::from_secs(300))
        .clock(clock.clone())
        .build()
        .unwrap();
    let first = ring.rotate().unwrap();
    let second = ring.rotate().unwrap();
    assert_ne!(first.kid(), second.kid());
    // The old key stays published (retiring) until the overlap has passed.
    let kids: Vec<String> = ring.jwks().keys.into_iter().map(|k| k.kid).collect();
    assert!(kids.contains(&first.kid().to_owned()) && kids.contains(&second.kid().to_owned()));
    assert!(matches!(
        ring.retire(1),
        Err(Error::OverlapTooShort { .. }) | Err(Error::InvalidTransition { .. })
    ));
    let jws = ring
        .sign_jwt(serde_json::Map::new(), Duration::from_secs(60))
        .unwrap();
    assert_eq!(jws.algorithm, JwsAlgorithm::MlDsa65);
    assert_eq!(jws.key_id, second.kid());
}

fn ring(name: &str, alg: JwsAlgorithm) -> KeyRing<Arc<SoftStore>> {
    let ring = KeyRing::builder(Arc::new(SoftStore::new()))
        .name(name)
        .algorithm(alg)
        .max_token_lifetime(Duration::from_secs(300))
        .build()
        .unwrap();
    ring.rotate().unwrap();
    ring
}

#[test]
fn the_hybrid_ring_publishes_both_and_signs_per_audience() {
    let hybrid = HybridKeyRing::builder()
        .classical(ring("jwt", JwsAlgorithm::ES256))
        .post_quantum(ring("jwt-pq", JwsAlgorithm::MlDsa65))
        .post_quantum_audiences(&["api-v2"])
        .build()
        .unwrap();
    let jwks = hybrid.jwks();
    let ktys: Vec<&str> = jwks.keys.iter().map(|k| k.kty.as_str()).collect();
    assert_eq!(ktys, ["EC", "AKP"]);
    let old = hybrid
        .sign_jwt("api-v1", serde_json::Map::new(), Duration::from_secs(60))
        .unwrap();
    let new = hybrid
        .sign_jwt("api-v2", serde_json::Map::new(), Duration::from_secs(60))
        .unwrap();
    assert_eq!(old.algorithm, JwsAlgorithm::ES256);
    assert_eq!(new.algorithm, JwsAlgorithm::MlDsa65);
    let payload: Value =
        serde_json::from_slice(&b64d(new.compact.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(payload["aud"], "api-v2");
    assert_eq!(jwks.keys[1].kid, new.key_id);

    let field = |r: Result<HybridKeyRing<Arc<SoftStore>>, Error>| match r {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(
            HybridKeyRing::builder()
                .classical(ring("a", JwsAlgorithm::MlDsa44))
                .post_quantum(ring("b", JwsAlgorithm::MlDsa65))
                .build()
        ),
        "classical"
    );
    assert_eq!(
        field(
            HybridKeyRing::builder()
                .classical(ring("a", JwsAlgorithm::ES256))
                .post_quantum(ring("b", JwsAlgorithm::EdDSA))
                .build()
        ),
        "post_quantum"
    );
    assert_eq!(
        field(
            HybridKeyRing::builder()
                .classical(ring("a", JwsAlgorithm::ES256))
                .build()
        ),
        "post_quantum"
    );
    assert_eq!(
        field(
            HybridKeyRing::builder()
                .classical(ring("a", JwsAlgorithm::ES256))
                .post_quantum(ring("a", JwsAlgorithm::MlDsa65))
                .build()
        ),
        "post_quantum"
    );
}

/// SoftHSM 2.6 has no PKCS#11 3.2 ML-DSA mechanism: key creation is refused with
/// the typed error naming the missing mechanism, before anything touches the token.
/// (A token that has them: tests/pkcs11_mldsa.rs, on kryoptic.)
#[cfg(feature = "pkcs11")]
#[test]
fn a_real_softhsm_token_without_ml_dsa_refuses_with_a_typed_error() {
    use palisade_hsm_keys::{Pin, Pkcs11Store};
    use palisade_testkit::SoftHsm;
    let hsm = SoftHsm::get();
    let store = Pkcs11Store::builder()
        .context(hsm.pkcs11().clone())
        .token(hsm.token_label())
        .pin(Pin::new(SoftHsm::USER_PIN))
        .build()
        .unwrap();
    for alg in ALGS {
        match store.generate("pq", alg) {
            Err(Error::UnsupportedAlgorithm {
                backend: "pkcs11",
                operation: "generate",
                algorithm,
                reason,
            }) => {
                assert_eq!(algorithm, alg);
                assert!(reason.contains("not supported by this token"), "{reason}");
                assert!(reason.contains("CKM_ML_DSA"), "{reason}");
            }
            other => panic!("{alg}: {other:?}"),
        }
        assert!(matches!(
            store.import_pkcs8("pq", alg, &[0x30, 0x00]),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            store.import_ml_dsa_seed("pq", alg, &[7; ML_DSA_SEED_LEN]),
            Err(Error::UnsupportedAlgorithm { .. })
        ));
    }
    assert!(store.versions("pq").unwrap().is_empty());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
