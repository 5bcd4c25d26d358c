//! ML-DSA in `Pkcs11Store` on a real PKCS#11 3.2 token: kryoptic (built by
//! `scripts/test.sh setup`). Keys are generated and kept on the token, signatures are
//! checked by aws-lc-rs with nothing but the published `pub`, seeds are checked
//! against RFC 9964's examples. (SoftHSM 2.6, without ML-DSA, refuses: tests/mldsa.rs.)
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "pkcs11")]

#[path = "common/rfc9964.rs"]
mod rfc9964;

use std::time::Duration;

use aws_lc_rs::signature::{ML_DSA_44, ML_DSA_65, ML_DSA_87, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_hsm_keys::cryptoki::mechanism::MechanismType;
use palisade_hsm_keys::cryptoki::object::{
    Attribute, AttributeType, MlDsaParameterSetType, ObjectClass,
};
use palisade_hsm_keys::{
    Error, JwsAlgorithm, KeyInfo, KeyRing, KeyStore, Pin, Pkcs11Store, sign_compact,
};
use palisade_testkit::Kryoptic;
use rfc9964::{hex_decode, rfc_example};
use serde_json::Value;

/// Each parameter set with its FIPS 204 Table 2 public key and signature sizes.
const ALGS: [(JwsAlgorithm, usize, usize); 3] = [
    (JwsAlgorithm::MlDsa44, 1312, 2420),
    (JwsAlgorithm::MlDsa65, 1952, 3309),
    (JwsAlgorithm::MlDsa87, 2592, 4627),
];

fn store() -> Pkcs11Store {
    let token = Kryoptic::get();
    Pkcs11Store::builder()
        .context(token.pkcs11().clone())
        .token(token.token_label())
        .pin(Pin::new(Kryoptic::USER_PIN))
        .build()
        .unwrap()
}

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// Verifies a compact JWS with aws-lc-rs and the JWK's `pub` only; returns the
/// signature's length.
fn verify(compact: &str, info: &KeyInfo) -> usize {
    let alg = match info.jwk.alg.as_str() {
        "ML-DSA-44" => &ML_DSA_44,
        "ML-DSA-65" => &ML_DSA_65,
        "ML-DSA-87" => &ML_DSA_87,
        other => panic!("not ML-DSA: {other}"),
    };
    let header: Value = serde_json::from_slice(&b64d(compact.split('.').next().unwrap())).unwrap();
    assert_eq!(header["alg"], info.jwk.alg.as_str());
    assert_eq!(header["kid"], info.kid());
    let (input, sig) = compact.rsplit_once('.').unwrap();
    let sig = b64d(sig);
    let public = b64d(info.jwk.pub_.as_deref().unwrap());
    UnparsedPublicKey::new(alg, &public)
        .verify(input.as_bytes(), &sig)
        .unwrap();
    let mut flipped = sig.clone();
    flipped[7] ^= 1;
    assert!(
        UnparsedPublicKey::new(alg, &public)
            .verify(input.as_bytes(), &flipped)
            .is_err()
    );
    sig.len()
}

/// A PKCS#8 ML-DSA key in RFC 9881's seed-only form, assembled byte by byte:
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID id-ml-dsa-* }, OCTET STRING { [0] seed } }`.
fn pkcs8_seed_only(alg: JwsAlgorithm, seed: &[u8]) -> Vec<u8> {
    let last = match alg {
        JwsAlgorithm::MlDsa44 => 0x11,
        JwsAlgorithm::MlDsa65 => 0x12,
        _ => 0x13,
    };
    let mut der = vec![0x30, 0x34, 0x02, 0x01, 0x00, 0x30, 0x0b, 0x06, 0x09];
    der.extend([0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, last]);
    der.extend([0x04, 0x22, 0x80, 0x20]);
    der.extend_from_slice(seed);
    der
}

#[test]
fn the_token_lists_the_pkcs11_3_2_ml_dsa_mechanisms() {
    let token = Kryoptic::get();
    let mechs = token.pkcs11().get_mechanism_list(token.slot()).unwrap();
    assert!(mechs.contains(&MechanismType::ML_DSA_KEY_PAIR_GEN));
    assert!(mechs.contains(&MechanismType::ML_DSA));
    let store = store();
    for (alg, ..) in ALGS {
        assert!(store.supports(alg), "{alg}");
    }
}

#[test]
fn each_parameter_set_is_generated_on_the_token_and_its_jws_verifies() {
    let store = store();
    for (alg, pub_len, sig_len) in ALGS {
        let info = store.generate(&format!("gen-{alg}"), alg).unwrap();
        assert_eq!(info.algorithm, alg);
        assert_eq!(info.jwk.kty, "AKP");
        assert_eq!(info.jwk.alg, alg.as_str());
        assert_eq!(b64d(info.jwk.pub_.as_deref().unwrap()).len(), pub_len);
        // The kid is the RFC 7638 thumbprint of exactly {"alg","kty","pub"} (RFC
        // 9964 §6), recomputed here: the same rule as SoftStore's keys.
        let canonical = format!(
            r#"{{"alg":"{alg}","kty":"AKP","pub":"{}"}}"#,
            info.jwk.pub_.as_deref().unwrap()
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        assert_eq!(info.kid(), URL_SAFE_NO_PAD.encode(digest.as_ref()));
        let jws = sign_compact(&store, &info, Some("JWT"), br#"{"sub":"pq"}"#).unwrap();
        assert_eq!(jws.algorithm, alg);
        assert_eq!(verify(&jws.compact, &info), sig_len, "{alg}");
        // Hedged signing: a second signature of the same input differs, and verifies.
        let again = sign_compact(&store, &info, Some("JWT"), br#"{"sub":"pq"}"#).unwrap();
        assert_ne!(again.compact, jws.compact);
        verify(&again.compact, &info);
    }
}

#[test]
fn private_keys_are_token_resident_sensitive_and_not_extractable() {
    let store = store();
    store.generate("attrs-pq", JwsAlgorithm::MlDsa65).unwrap();
    let session = Kryoptic::get().user_session();
    let handle = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"attrs-pq/1/ML-DSA-65".to_vec()),
        ])
        .unwrap()[0];
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::Token,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::ParameterSet,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Token(true)));
    assert!(attrs.contains(&Attribute::Sensitive(true)));
    assert!(attrs.contains(&Attribute::Extractable(false)));
    assert!(attrs.contains(&Attribute::ParameterSet(
        MlDsaParameterSetType::ML_DSA_65.into()
    )));
    // Neither the private key nor its seed can be read out (an error or nothing).
    for t in [AttributeType::Value, AttributeType::Seed] {
        let read = session.get_attributes(handle, &[t]);
        assert!(read.is_err() || read.unwrap().is_empty(), "{t:?} readable");
    }
}

#[test]
fn a_seed_import_derives_the_rfc9964_key_and_kid_on_the_token() {
    let store = store();
    for (alg, ..) in ALGS {
        let ex = rfc_example(alg);
        let seed = hex_decode(ex["priv"].as_str().unwrap());
        let info = store.import_ml_dsa_seed("rfc-seed", alg, &seed).unwrap();
        assert_eq!(info.jwk.pub_.as_deref(), ex["jwk"]["pub"].as_str(), "{alg}");
        assert_eq!(info.kid(), ex["jwk"]["kid"].as_str().unwrap(), "{alg}");
        // The token signs with the key it derived from the seed: the RFC's public
        // key verifies its signature.
        let jws = sign_compact(&store, &info, None, b"{}").unwrap();
        verify(&jws.compact, &info);
        // The same seed as PKCS#8 (RFC 9881 seed-only form) gives the same key.
        let der = pkcs8_seed_only(alg, &seed);
        let from_pkcs8 = store.import_pkcs8("rfc-pkcs8", alg, &der).unwrap();
        assert_eq!(from_pkcs8.kid(), info.kid());
        verify(
            &sign_compact(&store, &from_pkcs8, None, b"{}")
                .unwrap()
                .compact,
            &from_pkcs8,
        );
    }
}

#[test]
fn bad_seeds_and_keys_are_refused_with_typed_errors_before_the_token() {
    let store = store();
    for len in [0, 31, 33] {
        let err = store
            .import_ml_dsa_seed("bad", JwsAlgorithm::MlDsa65, &vec![7; len])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{len}: {err}");
    }
    let seed = [7u8; 32];
    // An ML-DSA-44 PKCS#8 key imported as ML-DSA-65.
    let err = store
        .import_pkcs8(
            "bad",
            JwsAlgorithm::MlDsa65,
            &pkcs8_seed_only(JwsAlgorithm::MlDsa44, &seed),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
    assert!(!err.to_string().contains("070707"), "{err}");
    assert!(store.versions("bad").unwrap().is_empty());
}

#[test]
fn a_ring_rotates_on_the_token_and_a_new_store_reads_the_keys_back() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        KeyRing::builder(store())
            .name("pq-ring")
            .algorithm(JwsAlgorithm::MlDsa65)
            .max_token_lifetime(Duration::from_secs(600))
            .state_file(dir.path().join("state.json"))
            .build()
            .unwrap()
    };
    let ring = open();
    let first = ring.rotate().unwrap();
    let second = ring.rotate().unwrap();
    assert_ne!(first.kid(), second.kid());
    let jwks = ring.jwks();
    let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    assert!(
        kids.contains(&first.kid()) && kids.contains(&second.kid()),
        "{kids:?}"
    );
    assert!(jwks.keys.iter().all(|k| k.kty == "AKP"));
    drop(ring);

    // A store opened afresh finds the pairs by label and reads each public half.
    let listed = store().versions("pq-ring").unwrap();
    assert_eq!(listed, [first.clone(), second.clone()]);
    let ring = open();
    assert_eq!(ring.jwks(), jwks);
    let jws = ring
        .sign_jwt(serde_json::Map::new(), Duration::from_secs(60))
        .unwrap();
    assert_eq!(jws.key_id, second.kid());
    verify(&jws.compact, &second);
}
