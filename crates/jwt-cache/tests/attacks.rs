//! Security tests: each one is an attack on a validation cache, and each must fail.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::EncodingKey;
use palisade_core_traits::Timestamp;
use palisade_jwt_cache::{
    Algorithm, DecodingKey, Error, KeySet, Policy, TokenAlgorithm, Validator,
};
use serde_json::json;

/// Every error's Display and Debug must not contain the token or any of its parts.
fn assert_no_leak(err: &Error, token: &str) {
    for text in [err.to_string(), format!("{err:?}")] {
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !text.contains(part),
                "error text leaks a token part: {text}"
            );
        }
        assert!(!text.contains(std::str::from_utf8(HS_SECRET).unwrap()));
        assert!(
            !text.contains("BEGIN"),
            "error text leaks key material: {text}"
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_rejected_and_never_cached() {
    let clock = clock();
    let cache = cache();
    // A policy that (unwisely) allows both families: the key binding must still hold.
    let v = validator(policy(), &clock, cache.clone());
    let forged = sign_raw(
        &json!({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}),
        &claims("mallory", "x", NOW + 300),
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
        Algorithm::HS256,
    );
    for _ in 0..3 {
        let err = v.validate(&forged).unwrap_err();
        assert!(
            matches!(
                err,
                Error::KeyAlgorithmMismatch {
                    key_alg: TokenAlgorithm::Jose(Algorithm::RS256),
                    token_alg: TokenAlgorithm::Jose(Algorithm::HS256),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_no_leak(&err, &forged);
    }
    assert_eq!(cache.len(), 0);
    let s = v.stats();
    assert_eq!((s.hits, s.misses), (0, 3));
    assert_eq!(s.rejected("key_algorithm_mismatch"), 3);

    // With an RS256-only policy the forged alg is not even considered.
    let strict = validator(
        Policy::builder().algorithms(&[Algorithm::RS256]),
        &clock,
        cache.clone(),
    );
    assert!(matches!(
        strict.validate(&forged),
        Err(Error::AlgorithmNotAllowed { .. })
    ));
    assert_eq!(cache.len(), 0);
}

#[test]
fn an_entry_cached_under_a_looser_policy_is_not_served_to_a_stricter_validator() {
    let clock = clock();
    let shared = cache();
    let loose = validator(
        Policy::builder()
            .algorithms(&common::ALGS)
            .issuers(&[ISS, "https://other.example"])
            .audiences(&[AUD, "admin"]),
        &clock,
        shared.clone(),
    );
    let stricter_aud = validator(
        Policy::builder()
            .algorithms(&common::ALGS)
            .issuers(&[ISS, "https://other.example"])
            .audiences(&[AUD]),
        &clock,
        shared.clone(),
    );
    let stricter_iss = validator(
        Policy::builder()
            .algorithms(&common::ALGS)
            .issuers(&[ISS])
            .audiences(&[AUD, "admin"]),
        &clock,
        shared.clone(),
    );
    let mut c = claims("alice", "j1", NOW + 300);
    c["aud"] = json!("admin");
    let admin_token = sign(Algorithm::ES256, &c);
    let mut c = claims("alice", "j2", NOW + 300);
    c["iss"] = json!("https://other.example");
    let other_iss_token = sign(Algorithm::ES256, &c);

    for t in [&admin_token, &other_iss_token] {
        loose.validate(t).unwrap();
        loose.validate(t).unwrap();
    }
    assert_eq!(loose.stats().hits, 2);
    assert_eq!(shared.len(), 2);

    assert_eq!(
        stricter_aud.validate(&admin_token).unwrap_err(),
        Error::WrongAudience
    );
    assert_eq!(
        stricter_iss.validate(&other_iss_token).unwrap_err(),
        Error::WrongIssuer
    );
    assert_eq!(stricter_aud.stats().hits, 0);
    assert_eq!(stricter_iss.stats().hits, 0);
    assert_eq!(stricter_aud.stats().misses, 1);
    // And the loose validator's entries are still served to it.
    loose.validate(&admin_token).unwrap();
    assert_eq!(loose.stats().hits, 3);
}

#[test]
fn a_token_expiring_while_cached_is_refused_at_exp() {
    let clock = clock();
    let v = validator(policy(), &clock, cache());
    let token = sign(Algorithm::RS256, &claims("alice", "j1", NOW + 30));
    v.validate(&token).unwrap();
    clock.set(Timestamp::from_unix_nanos(
        (NOW + 29) * 1_000_000_000 + 999_999_999,
    ));
    v.validate(&token).unwrap();
    assert_eq!(v.stats().hits, 1, "served from the cache just before exp");
    clock.set(Timestamp::from_unix_secs(NOW + 30));
    assert_eq!(v.validate(&token).unwrap_err(), Error::Expired);
    clock.advance(Duration::from_secs(3600));
    assert_eq!(v.validate(&token).unwrap_err(), Error::Expired);

    // reject_expiring_in_less_than and leeway move the edge, on hits too.
    let clock = common::clock();
    let v = validator(
        policy()
            .reject_expiring_in_less_than_secs(10)
            .leeway_secs(2),
        &clock,
        cache(),
    );
    v.validate(&token).unwrap();
    clock.set(Timestamp::from_unix_secs(NOW + 21));
    v.validate(&token).unwrap();
    assert_eq!(v.stats().hits, 1);
    clock.set(Timestamp::from_unix_secs(NOW + 22)); // 30 - 10 <= 22 - 2
    assert_eq!(v.validate(&token).unwrap_err(), Error::Expired);
}

#[test]
fn after_a_key_is_removed_or_replaced_its_tokens_are_refused() {
    let clock = clock();
    let cache = cache();
    let v = validator(policy(), &clock, cache.clone());
    let token = sign(Algorithm::RS256, &claims("alice", "j1", NOW + 300));
    v.validate(&token).unwrap();
    v.validate(&token).unwrap();
    assert_eq!(v.stats().hits, 1);
    let epoch = v.epoch();

    let mut keys = v.keys();
    assert!(keys.remove("rsa-1"));
    v.set_keys(keys);
    assert_ne!(v.epoch(), epoch);
    assert!(matches!(v.validate(&token), Err(Error::UnknownKid { .. })));

    // Same kid, different key material: the old entry must not be served either.
    let mut keys = v.keys();
    keys.insert(
        "rsa-1",
        Algorithm::RS256,
        DecodingKey::from_rsa_pem(RSA2_PUBLIC).unwrap(),
    )
    .unwrap();
    v.set_keys(keys);
    assert_eq!(v.validate(&token).unwrap_err(), Error::BadSignature);
    assert_eq!(v.stats().hits, 1);

    // Put the right key back: valid again, through a fresh miss.
    v.set_keys(keyset());
    v.validate(&token).unwrap();
    assert_eq!(v.stats().hits, 1);
}

#[test]
fn a_revoked_token_is_refused_on_the_next_hit() {
    let clock = clock();
    let rev = Arc::new(TestRevocation::default());
    let v = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(keyset())
        .cache(cache())
        .clock(Arc::new(clock.clone()))
        .revocation(rev.clone())
        .build()
        .unwrap();
    let token = sign(Algorithm::ES256, &claims("alice", "j1", NOW + 300));
    let other = sign(Algorithm::ES256, &claims("alice", "j2", NOW + 300));
    v.validate(&token).unwrap();
    v.validate(&token).unwrap();
    v.validate(&other).unwrap();
    assert_eq!(v.stats().hits, 1);

    rev.revoke(ISS, "j1");
    assert_eq!(v.validate(&token).unwrap_err(), Error::Revoked);
    v.validate(&other).unwrap();

    rev.revoke_subject(ISS, "alice");
    assert_eq!(v.validate(&other).unwrap_err(), Error::Revoked);
    assert_eq!(v.stats().rejected("revoked"), 2);

    // No local answer: fail closed by default...
    let bob = sign(Algorithm::ES256, &claims("bob", "j3", NOW + 300));
    v.validate(&bob).unwrap();
    rev.no_local_answer
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(v.validate(&bob).unwrap_err(), Error::RevocationUnknown);
    // ...and open only when asked to.
    let open = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(keyset())
        .clock(Arc::new(clock.clone()))
        .revocation(rev.clone())
        .allow_unknown_revocation(true)
        .build()
        .unwrap();
    open.validate(&bob).unwrap();
}

/// n of P-256.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

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
    assert_eq!(borrow, 0);
    out
}

#[test]
fn a_malleated_es256_signature_is_a_miss_then_validated_normally() {
    let clock = clock();
    let rev = Arc::new(TestRevocation::default());
    let cache = cache();
    let v = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(keyset())
        .cache(cache.clone())
        .clock(Arc::new(clock.clone()))
        .revocation(rev.clone())
        .build()
        .unwrap();
    let token = sign(Algorithm::ES256, &claims("alice", "j1", NOW + 300));
    let (msg, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let mut malleated = sig[..32].to_vec();
    malleated.extend_from_slice(&sub_be(&P256_N, &sig[32..]));
    let malleated = format!("{msg}.{}", URL_SAFE_NO_PAD.encode(&malleated));
    assert_ne!(malleated, token);

    v.validate(&token).unwrap();
    let direct =
        jsonwebtoken::decode::<serde_json::Value>(&malleated, &decoding_key(Algorithm::ES256), &{
            let mut val = jsonwebtoken::Validation::new(Algorithm::ES256);
            val.set_audience(&[AUD]);
            val
        });
    let ours = v.validate(&malleated);
    assert_eq!(
        ours.is_ok(),
        direct.is_ok(),
        "same answer as a plain decode"
    );
    let s = v.stats();
    assert_eq!((s.hits, s.misses), (0, 2), "the malleated form is a miss");
    match ours {
        Ok(_) => {
            // Revocation keys on (iss, jti), so both forms are refused together.
            rev.revoke(ISS, "j1");
            assert_eq!(v.validate(&token).unwrap_err(), Error::Revoked);
            assert_eq!(v.validate(&malleated).unwrap_err(), Error::Revoked);
        }
        Err(e) => assert_eq!(e, Error::BadSignature),
    }
    eprintln!(
        "malleated ES256 accepted by the backend: {}",
        direct.is_ok()
    );
}

#[test]
fn alg_none_and_unknown_crit_are_refused() {
    let clock = clock();
    let cache = cache();
    let v = validator(policy(), &clock, cache.clone());
    let payload = URL_SAFE_NO_PAD.encode(claims("mallory", "x", NOW + 300).to_string());
    for alg in ["none", "None", "NONE"] {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "hs-1"}).to_string());
        for sig in ["", "AAAA"] {
            let token = format!("{header}.{payload}.{sig}");
            let err = v.validate(&token).unwrap_err();
            assert_eq!(err, Error::AlgNone);
            assert_no_leak(&err, &token);
        }
    }
    // Properly signed tokens with crit: an unknown extension, and b64 (which
    // jsonwebtoken itself would accept).
    for header in [
        json!({"alg": "HS256", "kid": "hs-1", "crit": ["exp"], "exp": 1}),
        json!({"alg": "HS256", "kid": "hs-1", "crit": ["b64"], "b64": true}),
        json!({"alg": "HS256", "kid": "hs-1", "crit": []}),
        // Present but null is still present (RFC 7515 §4.1.11), not "absent".
        json!({"alg": "HS256", "kid": "hs-1", "crit": null}),
    ] {
        let token = sign_raw(
            &header,
            &claims("mallory", "x", NOW + 300),
            &encoding_key(Algorithm::HS256),
            Algorithm::HS256,
        );
        assert_eq!(v.validate(&token).unwrap_err(), Error::UnsupportedCrit);
    }
    assert_eq!(cache.len(), 0);
    assert_eq!(v.stats().rejected("alg_none"), 6);
    assert_eq!(v.stats().rejected("unsupported_crit"), 4);
}

#[test]
fn keys_named_by_the_token_itself_are_never_used() {
    let clock = clock();
    let v = validator(policy(), &clock, cache());
    // The attacker signs with their own EC key and points at it every way a header can.
    let attacker = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let jwks: serde_json::Value = serde_json::from_slice(JWKS).unwrap();
    let attacker_jwk = jwks["keys"][1].clone();
    let c = claims("mallory", "x", NOW + 300);
    let unknown = sign_raw(
        &json!({"alg": "ES256", "kid": "attacker", "jku": "https://evil.example/jwks",
                "x5u": "https://evil.example/cert", "jwk": attacker_jwk}),
        &c,
        &attacker,
        Algorithm::ES256,
    );
    assert!(matches!(
        v.validate(&unknown),
        Err(Error::UnknownKid { .. })
    ));
    let no_kid = sign_raw(
        &json!({"alg": "ES256", "jwk": attacker_jwk}),
        &c,
        &attacker,
        Algorithm::ES256,
    );
    assert_eq!(v.validate(&no_kid).unwrap_err(), Error::MissingKid);

    // A trusted kid with a different key embedded: verified against the trusted key.
    let mut ks = KeySet::new();
    ks.insert(
        "ec-1",
        Algorithm::ES256,
        DecodingKey::from_ed_pem(ED_PUBLIC).unwrap(),
    )
    .unwrap_err();
    let v2 = Validator::builder()
        .policy(policy().build().unwrap())
        .keys({
            let mut k = KeySet::new();
            k.insert(
                "ec-1",
                Algorithm::ES256,
                DecodingKey::from_ec_pem(EC_PUBLIC).unwrap(),
            )
            .unwrap();
            k
        })
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let other = sign_raw(
        &json!({"alg": "ES256", "kid": "ec-1", "jwk": attacker_jwk}),
        &c,
        &attacker,
        Algorithm::ES256,
    );
    // (The attacker key here is the trusted one, so it verifies: the embedded jwk
    // is simply ignored. Any other signer fails, whatever the header embeds.)
    v2.validate(&other).unwrap();
    let wrong_signer = {
        let t = sign_raw(
            &json!({"alg": "ES256", "kid": "ec-1"}),
            &c,
            &attacker,
            Algorithm::ES256,
        );
        let (m, s) = t.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[5] ^= 1;
        format!("{m}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    assert_eq!(v2.validate(&wrong_signer).unwrap_err(), Error::BadSignature);
}

#[test]
fn wrong_typ_missing_claims_and_bad_claim_formats_are_typed() {
    let clock = clock();
    let v = validator(policy().typ("at+jwt"), &clock, cache());
    let jwt_typed = sign(Algorithm::HS256, &claims("alice", "j1", NOW + 300));
    assert_eq!(v.validate(&jwt_typed).unwrap_err(), Error::WrongType);
    let at = sign_raw(
        &json!({"alg": "HS256", "kid": "hs-1", "typ": "AT+JWT"}),
        &claims("alice", "j1", NOW + 300),
        &encoding_key(Algorithm::HS256),
        Algorithm::HS256,
    );
    v.validate(&at).unwrap();

    let v = validator(policy(), &clock, cache());
    let mut c = claims("alice", "j1", NOW + 300);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        v.validate(sign(Algorithm::HS256, &c)).unwrap_err(),
        Error::MissingClaim("\"exp\"".into())
    );
    let mut c = claims("alice", "j1", NOW + 300);
    c["exp"] = json!("tomorrow"); // named as malformed, not as missing
    assert_eq!(
        v.validate(sign(Algorithm::HS256, &c)).unwrap_err(),
        Error::MalformedClaim("exp".into())
    );
    let mut c = claims("alice", "j1", NOW + 300);
    c["nbf"] = json!("soon");
    assert_eq!(
        v.validate(sign(Algorithm::HS256, &c)).unwrap_err(),
        Error::MalformedClaim("nbf".into())
    );
    let mut c = claims("alice", "j1", NOW + 300);
    c["nbf"] = json!(NOW + 10);
    let later = sign(Algorithm::HS256, &c);
    assert_eq!(v.validate(&later).unwrap_err(), Error::NotYetValid);
    clock.advance(Duration::from_secs(10));
    v.validate(&later).unwrap();
    let v = validator(policy().subject("bob"), &clock, cache());
    assert_eq!(v.validate(&jwt_typed).unwrap_err(), Error::WrongSubject);
    for junk in ["", "a", "a.b", "a.b.c.d", "....", "\u{0}.\u{1}.\u{2}"] {
        assert!(
            matches!(v.validate(junk), Err(Error::Malformed(_))),
            "{junk:?}"
        );
    }
    let big = "a".repeat(palisade_jwt_cache::DEFAULT_MAX_TOKEN_BYTES.get() + 1);
    assert!(matches!(v.validate(&big), Err(Error::TooLarge { .. })));
}

/// RFC 9068 §4: a resource server accepts `at+jwt` and `application/at+jwt` alike
/// (RFC 7515 §4.1.9 implies the prefix when no other `/` follows), whichever
/// spelling the policy and the token use; a value with another `/` keeps its prefix.
#[test]
fn typ_matches_with_or_without_the_application_prefix() {
    let clock = clock();
    let key = encoding_key(Algorithm::HS256);
    let token = |typ: &str| {
        sign_raw(
            &json!({"alg": "HS256", "kid": "hs-1", "typ": typ}),
            &claims("alice", "j1", NOW + 300),
            &key,
            Algorithm::HS256,
        )
    };
    for want in ["at+jwt", "application/at+jwt", "Application/AT+JWT"] {
        let v = validator(policy().typ(want), &clock, cache());
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "APPLICATION/at+JWT",
        ] {
            v.validate(token(typ))
                .unwrap_or_else(|e| panic!("policy {want:?}, token {typ:?}: {e:?}"));
        }
        for typ in [
            "jwt",
            "application/jwt",
            "application/application/at+jwt",
            "text/at+jwt",
            "application/",
            "",
        ] {
            assert_eq!(
                v.validate(token(typ)).unwrap_err(),
                Error::WrongType,
                "policy {want:?}, token {typ:?}"
            );
        }
    }
    // With another '/', the prefix is part of the value and is not removed.
    let v = validator(policy().typ("application/x/y"), &clock, cache());
    v.validate(token("application/x/y")).unwrap();
    assert_eq!(v.validate(token("x/y")).unwrap_err(), Error::WrongType);
}

/// Revocation keys on `iss`, `sub` and `jti` as strings: a token whose `iss` is an
/// array (which jsonwebtoken accepts when one element matches) or whose `sub`/`jti` is
/// a number would never match a revocation record, so it is refused, as are repeated
/// claim names (the "lexically last" value would differ from a first-wins parser) and
/// an unencoded payload (`b64: false`).
#[test]
fn claims_that_could_dodge_revocation_are_refused() {
    let clock = clock();
    let cache = cache();
    let v = validator(policy(), &clock, cache.clone());
    let key = encoding_key(Algorithm::HS256);
    let header = json!({"alg": "HS256", "kid": "hs-1"});
    let cases = [
        ("iss", json!([ISS])),
        ("sub", json!(7)),
        ("jti", json!(["j1"])),
    ];
    for (name, value) in cases {
        let mut c = claims("alice", "j1", NOW + 300);
        c[name] = value;
        let token = sign_raw(&header, &c, &key, Algorithm::HS256);
        assert_eq!(
            v.validate(&token).unwrap_err(),
            Error::MalformedClaim(name.into()),
            "{name}"
        );
    }
    // jsonwebtoken itself accepts the array issuer: the difference is on purpose.
    let mut c = claims("alice", "j1", NOW + 300);
    c["iss"] = json!([ISS]);
    let token = sign_raw(&header, &c, &key, Algorithm::HS256);
    let mut jwt_policy = jsonwebtoken::Validation::new(Algorithm::HS256);
    jwt_policy.set_issuer(&[ISS]);
    jwt_policy.set_audience(&[AUD]);
    jwt_policy.validate_exp = false;
    jsonwebtoken::decode::<serde_json::Value>(&token, &decoding_key(Algorithm::HS256), &jwt_policy)
        .unwrap();

    // A repeated claim name, written by hand (serde_json cannot produce one).
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"hs-1"}"#),
        URL_SAFE_NO_PAD.encode(
            format!(
                r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alice","jti":"j1","exp":{},"jti":"j2"}}"#,
                NOW + 300
            )
            .as_bytes()
        )
    );
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key, Algorithm::HS256).unwrap();
    assert!(matches!(
        v.validate(format!("{msg}.{sig}")),
        Err(Error::Malformed(_))
    ));

    let unencoded = sign_raw(
        &json!({"alg": "HS256", "kid": "hs-1", "b64": false, "crit": ["b64"]}),
        &claims("alice", "j1", NOW + 300),
        &key,
        Algorithm::HS256,
    );
    assert!(v.validate(&unencoded).is_err());
    let unencoded = sign_raw(
        &json!({"alg": "HS256", "kid": "hs-1", "b64": false}),
        &claims("alice", "j1", NOW + 300),
        &key,
        Algorithm::HS256,
    );
    assert!(matches!(v.validate(&unencoded), Err(Error::Malformed(_))));
    // `b64: null` is not the default `true`: refused like `false`, not read as absent.
    let null_b64 = sign_raw(
        &json!({"alg": "HS256", "kid": "hs-1", "b64": null}),
        &claims("alice", "j1", NOW + 300),
        &key,
        Algorithm::HS256,
    );
    assert_eq!(
        v.validate(&null_b64).unwrap_err(),
        Error::Malformed("unencoded payload (b64) is not supported")
    );
    assert_eq!(cache.len(), 0);
}
