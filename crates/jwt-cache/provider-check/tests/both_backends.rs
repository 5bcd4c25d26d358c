//! With both jsonwebtoken backends enabled there is no default crypto provider:
//! jsonwebtoken's own `crypto::verify` panics, and the cache must not.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::{CryptoProvider, rust_crypto};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use palisade_core_traits::{ManualClock, Timestamp};
use palisade_jwt_cache::{Error, KeySet, Policy, TokenCache, Validator};

const NOW: u64 = 1_800_000_000;
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/");

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}{name}")).unwrap()
}

fn keys(alg: Algorithm) -> (EncodingKey, DecodingKey) {
    match alg {
        Algorithm::HS256 => (
            EncodingKey::from_secret(b"provider-check-secret-0123456789").unwrap(),
            DecodingKey::from_secret(b"provider-check-secret-0123456789").unwrap(),
        ),
        Algorithm::RS256 | Algorithm::PS256 => (
            EncodingKey::from_rsa_pem(&pem("rsa_private.pem")).unwrap(),
            DecodingKey::from_rsa_pem(&pem("rsa_public.pem")).unwrap(),
        ),
        Algorithm::ES256 => (
            EncodingKey::from_ec_pem(&pem("ec_private.pem")).unwrap(),
            DecodingKey::from_ec_pem(&pem("ec_public.pem")).unwrap(),
        ),
        Algorithm::EdDSA => (
            EncodingKey::from_ed_pem(&pem("ed_private.pem")).unwrap(),
            DecodingKey::from_ed_pem(&pem("ed_public.pem")).unwrap(),
        ),
        _ => unreachable!(),
    }
}

/// Signs with the rust_crypto provider, named explicitly (there is no default).
fn sign(alg: Algorithm, key: &EncodingKey, kid: &str) -> String {
    let header = serde_json::json!({"alg": format!("{alg:?}"), "kid": kid});
    let claims = serde_json::json!({"iss": "iss", "sub": "alice", "jti": kid, "exp": NOW + 60});
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let signer = (rust_crypto::DEFAULT_PROVIDER.signer_factory)(&alg, key).unwrap();
    let sig = signer.try_sign(msg.as_bytes()).unwrap();
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig))
}

#[test]
fn this_build_has_no_default_provider_so_jsonwebtoken_alone_panics() {
    // The condition the cache must survive: both backends on, nothing installed.
    assert!(CryptoProvider::try_get_default().is_none());
    let (enc, dec) = keys(Algorithm::HS256);
    let token = sign(Algorithm::HS256, &enc, "k");
    let (message, signature) = token.rsplit_once('.').unwrap();
    let outcome = std::panic::catch_unwind(|| {
        jsonwebtoken::crypto::verify(signature, message.as_bytes(), &dec, Algorithm::HS256)
    });
    assert!(outcome.is_err(), "jsonwebtoken::crypto::verify panics here");
}

#[test]
fn the_cache_validates_every_algorithm_with_both_backends_enabled() {
    let algs = [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ];
    let mut key_set = KeySet::new();
    let mut tokens = Vec::new();
    for alg in algs {
        let kid = format!("{alg:?}");
        let (enc, dec) = keys(alg);
        key_set.insert(kid.clone(), alg, dec).unwrap();
        tokens.push(sign(alg, &enc, &kid));
    }
    let clock = ManualClock::new(Timestamp::from_unix_secs(NOW));
    let policy = Policy::builder()
        .algorithms(&algs)
        .issuers(&["iss"])
        .build()
        .unwrap();
    let v = Validator::builder()
        .policy(policy)
        .keys(key_set)
        .cache(TokenCache::builder().build().unwrap())
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    for (alg, token) in algs.into_iter().zip(&tokens) {
        let miss = v.validate(token).unwrap();
        assert_eq!(miss.algorithm(), alg);
        let hit = v.validate(token).unwrap();
        assert!(
            Arc::ptr_eq(&miss, &hit),
            "{alg:?}: second answer from the cache"
        );
        v.validate_uncached(token).unwrap();
        // A wrong signature is still refused (the verifier ran).
        let (message, _) = token.rsplit_once('.').unwrap();
        let other = &tokens[(tokens.iter().position(|t| t == token).unwrap() + 1) % tokens.len()];
        let forged = format!("{message}.{}", other.rsplit_once('.').unwrap().1);
        assert!(
            matches!(
                v.validate(&forged).unwrap_err(),
                Error::BadSignature | Error::Malformed(_)
            ),
            "{alg:?}"
        );
    }
    assert_eq!(v.stats().hits, 5);
}
