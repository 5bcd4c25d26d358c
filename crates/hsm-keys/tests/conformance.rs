//! One conformance suite, run against `SoftStore` and `Pkcs11Store` (SoftHSM2):
//! every operation and algorithm, with jsonwebtoken (aws-lc-rs) as the independent judge.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

#[cfg(feature = "pkcs11")]
mod common;

use palisade_hsm_keys::{
    Error, Jwk, JwsAlgorithm, KeyInfo, KeyRef, KeyStore, SignedJws, sign_compact,
};

const ALL: [JwsAlgorithm; 5] = [
    JwsAlgorithm::ES256,
    JwsAlgorithm::ES384,
    JwsAlgorithm::RS256,
    JwsAlgorithm::PS256,
    JwsAlgorithm::EdDSA,
];

fn pkcs8(alg: JwsAlgorithm) -> &'static [u8] {
    match alg {
        JwsAlgorithm::ES256 => include_bytes!("data/p256.pk8.der"),
        JwsAlgorithm::ES384 => include_bytes!("data/p384.pk8.der"),
        JwsAlgorithm::EdDSA => include_bytes!("data/ed25519.pk8.der"),
        _ => include_bytes!("data/rsa2048.pk8.der"),
    }
}

fn jwt_alg(alg: JwsAlgorithm) -> jsonwebtoken::Algorithm {
    match alg {
        JwsAlgorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        JwsAlgorithm::ES384 => jsonwebtoken::Algorithm::ES384,
        JwsAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
        JwsAlgorithm::PS256 => jsonwebtoken::Algorithm::PS256,
        _ => jsonwebtoken::Algorithm::EdDSA,
    }
}

/// jsonwebtoken verifies `jws` with nothing but the exported public JWK.
fn judge(jws: &SignedJws, jwk: &Jwk) -> Result<serde_json::Value, jsonwebtoken::errors::Error> {
    let their_jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(serde_json::to_value(jwk).unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&their_jwk)?;
    let header = jsonwebtoken::decode_header(&jws.compact)?;
    assert_eq!(header.kid.as_deref(), Some(jwk.kid.as_str()));
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let alg = header.alg;
    let mut v = jsonwebtoken::Validation::new(alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    jsonwebtoken::decode::<serde_json::Value>(&jws.compact, &key, &v).map(|d| d.claims)
}

fn sign_and_judge(store: &dyn KeyStore, info: &KeyInfo) {
    let payload = br#"{"sub":"alice","n":1}"#;
    let jws = sign_compact(store, info, Some("JWT"), payload).unwrap();
    assert_eq!(jws.algorithm, info.algorithm);
    assert_eq!(jws.key_id, info.jwk.kid);
    let claims = judge(&jws, &info.jwk)
        .unwrap_or_else(|e| panic!("{} {}: {e}", store.backend(), info.algorithm));
    assert_eq!(claims["sub"], "alice");
    assert_eq!(
        jsonwebtoken::decode_header(&jws.compact).unwrap().alg,
        jwt_alg(info.algorithm)
    );

    // A changed payload must fail verification.
    let mut parts: Vec<&str> = jws.compact.split('.').collect();
    let forged = base64_url(br#"{"sub":"mallory","n":1}"#);
    parts[1] = &forged;
    let forged = SignedJws::new(parts.join("."), jws.key_id.clone(), jws.algorithm);
    assert!(
        judge(&forged, &info.jwk).is_err(),
        "{}: forged payload verified",
        info.algorithm
    );

    // ECDSA signatures are raw r||s of the curve's size (RFC 7518 §3.4).
    let sig_len = base64_decode(jws.compact.rsplit('.').next().unwrap()).len();
    match info.algorithm {
        JwsAlgorithm::ES256 | JwsAlgorithm::EdDSA => assert_eq!(sig_len, 64),
        JwsAlgorithm::ES384 => assert_eq!(sig_len, 96),
        _ => assert_eq!(sig_len, 256),
    }
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Generates every algorithm the backend can generate; the rest must be a typed
/// `UnsupportedAlgorithm` error for exactly the algorithms we expect.
fn generate_sign_verify(store: &dyn KeyStore, prefix: &str, cannot_generate: &[JwsAlgorithm]) {
    for alg in ALL {
        let name = format!("{prefix}-gen-{alg}");
        match store.generate(&name, alg) {
            Ok(info) => {
                assert!(
                    !cannot_generate.contains(&alg),
                    "{alg} generated unexpectedly"
                );
                assert_eq!(info.key, KeyRef::new(&name, 1));
                assert_eq!(info.algorithm, alg);
                assert_eq!(info.jwk.alg, alg.as_str());
                assert_eq!(info.jwk.use_, "sig");
                sign_and_judge(store, &info);
            }
            Err(Error::UnsupportedAlgorithm { algorithm, .. }) => {
                assert_eq!(algorithm, alg);
                assert!(
                    cannot_generate.contains(&alg),
                    "{} cannot generate {alg}",
                    store.backend()
                );
            }
            Err(e) => panic!("{} generate {alg}: {e:?}", store.backend()),
        }
    }
}

/// Imports the same PKCS#8 keys: the kid is the RFC 7638 thumbprint of the key, so
/// it must not depend on the backend.
fn import_sign_verify(
    store: &dyn KeyStore,
    prefix: &str,
    cannot_sign: &[JwsAlgorithm],
) -> Vec<(JwsAlgorithm, String)> {
    let mut kids = Vec::new();
    for alg in ALL {
        let name = format!("{prefix}-imp-{alg}");
        match store.import_pkcs8(&name, alg, pkcs8(alg)) {
            Ok(info) => {
                assert!(!cannot_sign.contains(&alg));
                sign_and_judge(store, &info);
                kids.push((alg, info.jwk.kid.clone()));
            }
            Err(Error::UnsupportedAlgorithm { algorithm, .. }) => {
                assert_eq!(algorithm, alg);
                assert!(
                    cannot_sign.contains(&alg),
                    "{} cannot import {alg}",
                    store.backend()
                );
            }
            Err(e) => panic!("{} import {alg}: {e}", store.backend()),
        }
    }
    kids
}

fn rejects_bad_imports(store: &dyn KeyStore, prefix: &str) {
    let name = format!("{prefix}-bad");
    let p256 = pkcs8(JwsAlgorithm::ES256);
    let trailing = [p256, &[0]].concat();
    let truncated = &p256[..p256.len() - 1];
    let cases: [(JwsAlgorithm, &[u8]); 8] = [
        (JwsAlgorithm::RS256, include_bytes!("data/rsa1024.pk8.der")),
        (JwsAlgorithm::ES384, p256),
        (JwsAlgorithm::ES256, pkcs8(JwsAlgorithm::EdDSA)),
        (JwsAlgorithm::EdDSA, pkcs8(JwsAlgorithm::RS256)),
        (JwsAlgorithm::ES256, b"\x30\x03\x02\x01\x00"),
        (JwsAlgorithm::ES256, &trailing),
        (JwsAlgorithm::ES256, truncated),
        (JwsAlgorithm::ES256, &non_minimal_length(p256)),
    ];
    for (alg, der) in cases {
        let err = store.import_pkcs8(&name, alg, der).unwrap_err();
        assert!(
            matches!(err, Error::InvalidKey { algorithm, .. } if algorithm == alg),
            "{alg}: {err}"
        );
    }
    assert!(store.versions(&name).unwrap().is_empty());
}

/// `der` (a SEQUENCE with a one-byte long-form length) with its length in two bytes:
/// valid BER, invalid DER.
fn non_minimal_length(der: &[u8]) -> Vec<u8> {
    assert_eq!(&der[..2], &[0x30, 0x81], "a key of 128 to 255 bytes");
    [&[0x30, 0x82, 0x00][..], &der[2..]].concat()
}

fn lifecycle_ops(store: &dyn KeyStore, prefix: &str, alg: JwsAlgorithm) {
    let name = format!("{prefix}-ops");
    let v1 = store.generate(&name, alg).unwrap();
    let v2 = store.rotate(&name).unwrap();
    assert_eq!(v2.key, KeyRef::new(&name, 2));
    assert_eq!(v2.algorithm, alg);
    assert_ne!(v1.jwk.kid, v2.jwk.kid);
    let versions: Vec<u32> = store
        .versions(&name)
        .unwrap()
        .iter()
        .map(|k| k.key.version)
        .collect();
    assert_eq!(versions, [1, 2]);
    assert_eq!(store.info(&v1.key).unwrap(), v1);
    assert!(store.list().unwrap().contains(&v2));

    store.destroy(&v1.key).unwrap();
    assert!(matches!(
        store.sign(&v1.key, b"x"),
        Err(Error::KeyNotFound { .. })
    ));
    assert!(matches!(
        store.info(&v1.key),
        Err(Error::KeyNotFound { .. })
    ));
    assert!(matches!(
        store.destroy(&v1.key),
        Err(Error::KeyNotFound { .. })
    ));
    assert!(!store.list().unwrap().iter().any(|k| k.key == v1.key));
    // The next version never reuses a destroyed number while a later one exists.
    assert_eq!(store.rotate(&name).unwrap().key.version, 3);
    sign_and_judge(store, &store.info(&v2.key).unwrap());

    assert!(matches!(
        store.rotate(&format!("{prefix}-none")),
        Err(Error::KeyNotFound { .. })
    ));
    assert!(matches!(
        store.sign(&KeyRef::new(format!("{prefix}-none"), 1), b"x"),
        Err(Error::KeyNotFound { .. })
    ));
}

fn rejects_bad_names(store: &dyn KeyStore) {
    let long = "a".repeat(65);
    for bad in ["", "a/b", "a b", "ключ", long.as_str(), "x\0"] {
        let err = store.generate(bad, JwsAlgorithm::ES256).unwrap_err();
        assert!(
            matches!(err, Error::InvalidKeyName { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(store.generate(&"b".repeat(64), JwsAlgorithm::ES256).is_ok());
}

mod soft {
    use super::*;
    use palisade_hsm_keys::SoftStore;

    const RSA: [JwsAlgorithm; 2] = [JwsAlgorithm::RS256, JwsAlgorithm::PS256];

    #[test]
    fn generate_sign_verify_every_algorithm() {
        generate_sign_verify(&SoftStore::new(), "soft", &RSA);
    }

    #[test]
    fn import_sign_verify_every_algorithm() {
        let kids = import_sign_verify(&SoftStore::new(), "soft", &[]);
        assert_eq!(kids.len(), 5);
    }

    #[test]
    fn bad_imports_are_rejected() {
        rejects_bad_imports(&SoftStore::new(), "soft");
    }

    #[test]
    fn list_rotate_destroy() {
        lifecycle_ops(&SoftStore::new(), "soft", JwsAlgorithm::ES256);
    }

    #[test]
    fn bad_names_are_rejected() {
        rejects_bad_names(&SoftStore::new());
    }
}

#[cfg(feature = "pkcs11")]
mod pkcs11 {
    use super::*;
    use palisade_hsm_keys::SoftStore;
    use palisade_hsm_keys::cryptoki::mechanism::MechanismType;
    use palisade_testkit::SoftHsm;

    use super::common::store;

    /// Read from the token, not from the code under test.
    fn token_lacks_eddsa() -> Vec<JwsAlgorithm> {
        let hsm = SoftHsm::get();
        let list = hsm.pkcs11().get_mechanism_list(hsm.slot()).unwrap();
        if list.contains(&MechanismType::EDDSA)
            && list.contains(&MechanismType::ECC_EDWARDS_KEY_PAIR_GEN)
        {
            vec![]
        } else {
            vec![JwsAlgorithm::EdDSA]
        }
    }

    #[test]
    fn generate_sign_verify_every_algorithm() {
        generate_sign_verify(&store(), "p11", &token_lacks_eddsa());
    }

    #[test]
    fn import_sign_verify_every_algorithm_with_the_same_kids_as_soft() {
        let lacking = token_lacks_eddsa();
        let ours = import_sign_verify(&store(), "p11", &lacking);
        let soft = import_sign_verify(&SoftStore::new(), "soft", &[]);
        assert_eq!(ours.len(), 5 - lacking.len());
        for (alg, kid) in ours {
            assert!(
                soft.contains(&(alg, kid)),
                "{alg}: kid differs between backends"
            );
        }
    }

    #[test]
    fn bad_imports_are_rejected() {
        rejects_bad_imports(&store(), "p11");
    }

    #[test]
    fn list_rotate_destroy() {
        lifecycle_ops(&store(), "p11", JwsAlgorithm::ES256);
    }

    #[test]
    fn bad_names_are_rejected() {
        rejects_bad_names(&store());
    }
}
