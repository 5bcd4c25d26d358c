//! Shared by the SoftHSM test binaries: the store on the testkit's token, and
//! jsonwebtoken (the independent judge) verifying with nothing but the exported JWK.
#![allow(dead_code, unreachable_pub)]

use palisade_hsm_keys::{Jwk, Pin, Pkcs11Store};
use palisade_testkit::SoftHsm;

/// A `Pkcs11Store` on the test token, logged in with the test user PIN.
pub fn store() -> Pkcs11Store {
    let hsm = SoftHsm::get();
    Pkcs11Store::builder()
        .context(hsm.pkcs11().clone())
        .token(hsm.token_label())
        .pin(Pin::new(SoftHsm::USER_PIN))
        .build()
        .unwrap()
}

/// The claims of `compact`, verified by jsonwebtoken with the public `jwk` only.
pub fn verify(compact: &str, jwk: &Jwk) -> serde_json::Value {
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(serde_json::to_value(jwk).unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let header = jsonwebtoken::decode_header(compact).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    jsonwebtoken::decode::<serde_json::Value>(compact, &key, &v)
        .unwrap()
        .claims
}
