//! ML-DSA keys on kryoptic's file-backed (sqlite) token outlive the module: after
//! `C_Finalize` and a fresh `C_Initialize`, which re-reads the token from its file,
//! a new store lists the same keys and signs with them. Its own test binary,
//! because finalising the module would pull it from under any test running beside.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "pkcs11")]

use aws_lc_rs::signature::{ML_DSA_87, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_hsm_keys::cryptoki::context::Pkcs11;
use palisade_hsm_keys::{JwsAlgorithm, KeyStore, Pin, Pkcs11Store, sign_compact};
use palisade_testkit::Kryoptic;

#[test]
fn ml_dsa_keys_survive_finalize_and_a_new_initialize_of_the_module() {
    let token = Kryoptic::get();
    let open = |pkcs11: Pkcs11| {
        Pkcs11Store::builder()
            .context(pkcs11)
            .token(token.token_label())
            .pin(Pin::new(Kryoptic::USER_PIN))
            .build()
            .unwrap()
    };
    let store = open(token.pkcs11().clone());
    let info = store.generate("restart-pq", JwsAlgorithm::MlDsa87).unwrap();
    drop(store);
    token.pkcs11().clone().finalize().unwrap();

    let store = open(Pkcs11::new(token.module_path()).unwrap());
    assert_eq!(
        store.versions("restart-pq").unwrap(),
        std::slice::from_ref(&info)
    );
    let jws = sign_compact(&store, &info, None, b"{}").unwrap();
    let (input, sig) = jws.compact.rsplit_once('.').unwrap();
    let public = URL_SAFE_NO_PAD.decode(info.jwk.pub_.unwrap()).unwrap();
    UnparsedPublicKey::new(&ML_DSA_87, &public)
        .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
        .unwrap();
}
