//! An ES256 signature `(r, s)` has a second valid form `(r, n − s)`: a denylist keyed on
//! the token's bytes or hash misses it; one keyed on `(iss, jti)` does not.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use palisade_core_traits::{ManualClock, RevocationStatus, Timestamp, TokenIdentity};
use palisade_token_blacklist::{Config, MemoryBlacklist};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};

/// The order of the P-256 group (SEC 2, section 2.4.2), big-endian.
const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Claims {
    iss: String,
    sub: String,
    jti: String,
    iat: u64,
    exp: u64,
}

/// `a − b` for 32-byte big-endian integers with `a > b`.
fn sub_be(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    assert_eq!(borrow, 0, "s must be below n");
    out
}

/// The same token with its signature `(r, s)` replaced by `(r, n − s)`.
fn malleate(jwt: &str) -> String {
    let (signed, sig) = jwt.rsplit_once('.').unwrap();
    let sig = B64.decode(sig).unwrap();
    assert_eq!(sig.len(), 64, "ES256 signatures are r‖s, 32 bytes each");
    let mut other = sig[..32].to_vec();
    other.extend_from_slice(&sub_be(&P256_N, &sig[32..]));
    assert_ne!(other, sig);
    format!("{signed}.{}", B64.encode(other))
}

#[test]
fn the_high_s_twin_of_a_revoked_es256_token_is_still_revoked() {
    let now = jsonwebtoken::get_current_timestamp();
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
    let decoding = DecodingKey::from_ec_der(pair.public_key().as_ref());
    let claims = Claims {
        iss: "https://idp.example".into(),
        sub: "alice".into(),
        jti: "01J9Z6W3".into(),
        iat: now,
        exp: now + 600,
    };
    let jwt = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &encoding).unwrap();
    let twin = malleate(&jwt);
    assert_ne!(twin, jwt);

    // jsonwebtoken (aws-lc-rs) accepts both forms: ECDSA does not enforce low-s.
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&["https://idp.example"]);
    let decoded = jsonwebtoken::decode::<Claims>(&jwt, &decoding, &validation).unwrap();
    let decoded_twin = jsonwebtoken::decode::<Claims>(&twin, &decoding, &validation).unwrap();
    assert_eq!(decoded.claims, claims);
    assert_eq!(decoded_twin.claims, claims);

    // A denylist keyed on token bytes would miss the twin.
    let byte_keyed: std::collections::HashSet<&str> = [jwt.as_str()].into();
    assert!(!byte_keyed.contains(twin.as_str()));

    // Ours, keyed on (iss, jti), refuses both.
    let clock = ManualClock::new(Timestamp::from_unix_secs(now));
    let bl = MemoryBlacklist::builder()
        .config(Config::default())
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let identity = |c: &Claims| {
        TokenIdentity::new(c.iss.clone())
            .with_subject(c.sub.clone())
            .with_jti(c.jti.clone())
            .with_issued_at(c.iat)
            .with_expires_at(c.exp)
    };
    bl.revoke_token(&identity(&decoded.claims)).unwrap();
    assert_eq!(
        bl.check(&identity(&decoded.claims)),
        RevocationStatus::Revoked
    );
    assert_eq!(
        bl.check(&identity(&decoded_twin.claims)),
        RevocationStatus::Revoked
    );
}
