//! The SoftHSM fixture, tested with a real P-256 key: the token signs, ring verifies.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType};
use palisade_testkit::SoftHsm;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7), the CKA_EC_PARAMS for P-256.
const P256_OID_DER: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Generates a P-256 key pair on the token, signs `msg` with CKM_ECDSA over a
/// SHA-256 digest computed here, and returns (raw r‖s signature, uncompressed point).
fn sign_on_token(label: &str, msg: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let hsm = SoftHsm::get();
    let session = hsm.user_session();
    let public_template = [
        Attribute::Token(false),
        Attribute::Verify(true),
        Attribute::EcParams(P256_OID_DER.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let private_template = [
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let (public, private) = session
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &public_template,
            &private_template,
        )
        .unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, msg);
    let signature = session
        .sign(&Mechanism::Ecdsa, private, digest.as_ref())
        .unwrap();
    let attrs = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .unwrap();
    let Some(Attribute::EcPoint(der)) = attrs.into_iter().next() else {
        panic!("no CKA_EC_POINT on the public key")
    };
    // CKA_EC_POINT is a DER OCTET STRING (04 41) around the 65-byte uncompressed point.
    assert_eq!(
        &der[..2],
        &[0x04, 0x41],
        "unexpected EC point encoding {der:02x?}"
    );
    (signature, der[2..].to_vec())
}

#[test]
fn token_is_found_by_label_and_has_a_working_user_pin() {
    let hsm = SoftHsm::get();
    let info = hsm.pkcs11().get_token_info(hsm.slot()).unwrap();
    assert_eq!(info.label().trim_end(), hsm.token_label());
    assert_eq!(
        hsm.token_label(),
        format!("palisade-{}", std::process::id())
    );
    assert!(info.user_pin_initialized());
    assert!(hsm.module_path().is_file());
}

#[test]
fn token_signs_with_p256_and_ring_verifies() {
    let msg = b"palisade testkit: a P-256 signature from SoftHSM";
    let (sig, point) = sign_on_token("p256-one", msg);
    assert_eq!(sig.len(), 64, "CKM_ECDSA gives raw r||s");
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
    key.verify(msg, &sig).unwrap();
    assert!(
        key.verify(b"another message", &sig).is_err(),
        "verification must be able to fail"
    );
}

#[test]
fn threads_share_one_context_and_sign_in_parallel() {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let msg = format!("thread {i}");
                let (sig, point) = sign_on_token(&format!("thread-{i}"), msg.as_bytes());
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                    .verify(msg.as_bytes(), &sig)
                    .unwrap();
                SoftHsm::get().slot()
            })
        })
        .collect();
    let slots: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(slots.iter().all(|s| *s == SoftHsm::get().slot()));
}
