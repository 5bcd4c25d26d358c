//! Fractional and out-of-range time claims: rounded towards refusal, never to nearest.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use palisade_core_traits::{RevocationCheck, RevocationStatus, TokenIdentity};
use palisade_jwt_cache::{Algorithm, Error, Validator};
use serde_json::json;

/// A per-user revocation as token-blacklist keeps it: every token of `(iss, sub)`
/// issued at or before the watermark (whole seconds) is revoked.
#[derive(Debug, Default)]
struct Watermarks(Mutex<HashMap<(String, String), u64>>);

impl Watermarks {
    fn revoke_user(&self, iss: &str, sub: &str, issued_before: u64) {
        self.0
            .lock()
            .unwrap()
            .insert((iss.to_owned(), sub.to_owned()), issued_before);
    }
}

impl RevocationCheck for Watermarks {
    fn check_local(&self, token: &TokenIdentity) -> Option<RevocationStatus> {
        let Some(sub) = &token.subject else {
            return Some(RevocationStatus::NotRevoked);
        };
        let marks = self.0.lock().unwrap();
        Some(
            match (
                marks.get(&(token.issuer.clone(), sub.clone())),
                token.issued_at,
            ) {
                (Some(&mark), Some(iat)) if iat <= mark => RevocationStatus::Revoked,
                // A watermark and no iat: the token cannot prove it is newer.
                (Some(_), None) => RevocationStatus::Revoked,
                _ => RevocationStatus::NotRevoked,
            },
        )
    }
}

fn hs256(claims: &serde_json::Value) -> String {
    sign(Algorithm::HS256, claims)
}

/// A token whose payload is exactly `payload` (for numbers serde_json cannot build).
fn hs256_raw(payload: &str) -> String {
    let header = json!({"alg": "HS256", "kid": kid(Algorithm::HS256)});
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(
        msg.as_bytes(),
        &encoding_key(Algorithm::HS256),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{msg}.{sig}")
}

#[test]
fn a_fractional_iat_before_a_user_watermark_is_revoked() {
    let clock = clock();
    let marks = Arc::new(Watermarks::default());
    let v = Validator::builder()
        .policy(policy().build().unwrap())
        .keys(keyset())
        .cache(cache())
        .clock(Arc::new(clock.clone()))
        .revocation(marks.clone())
        .build()
        .unwrap();
    // Minted at 1 800 000 000.6; the user is revoked at 1 800 000 000.9, which the
    // blacklist records as the watermark floor(T) = 1 800 000 000.
    let token = hs256(&json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "jti": "t1",
        "iat": 1_800_000_000.6, "exp": NOW + 300,
    }));
    let ok = v.validate(&token).unwrap();
    assert_eq!(
        ok.identity().issued_at,
        Some(1_800_000_000),
        "iat rounds down"
    );
    marks.revoke_user(ISS, "alice", 1_800_000_000);
    assert_eq!(v.validate(&token).unwrap_err(), Error::Revoked, "on a hit");
    assert_eq!(
        v.validate_uncached(&token).unwrap_err(),
        Error::Revoked,
        "on a miss"
    );
    // A token minted in the next second is newer than the watermark.
    let newer = hs256(&json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "jti": "t2",
        "iat": 1_800_000_001.0, "exp": NOW + 300,
    }));
    clock.advance(Duration::from_secs(1));
    assert!(v.validate(&newer).is_ok());
}

#[test]
fn a_token_issued_in_the_future_cannot_escape_a_user_watermark() {
    let clock = clock();
    let marks = Arc::new(Watermarks::default());
    let v = Validator::builder()
        .policy(policy().leeway_secs(30).build().unwrap())
        .keys(keyset())
        .cache(cache())
        .clock(Arc::new(clock.clone()))
        .revocation(marks.clone())
        .build()
        .unwrap();
    marks.revoke_user(ISS, "alice", NOW);
    // Minted to look newer than the revocation: an hour ahead of the clock.
    let ahead = |jti: &str, iat: u64| {
        hs256(&json!({
            "iss": ISS, "aud": AUD, "sub": "alice", "jti": jti,
            "iat": iat, "exp": NOW + 7200,
        }))
    };
    let far = ahead("f1", NOW + 3600);
    assert_eq!(v.validate(&far).unwrap_err(), Error::IssuedInFuture);
    assert_eq!(v.stats().rejected("issued_in_future"), 1);
    // The leeway covers clocks that differ: 30 s ahead is accepted, 31 s is not.
    assert!(v.validate(ahead("f2", NOW + 30)).is_ok());
    assert_eq!(
        v.validate(ahead("f3", NOW + 31)).unwrap_err(),
        Error::IssuedInFuture
    );
    // Nothing refused was cached: once the clock reaches it, the token is valid.
    clock.advance(Duration::from_secs(3600));
    assert!(v.validate(&far).is_ok());
}

#[test]
fn a_fractional_exp_is_never_extended() {
    let clock = clock();
    let v = validator(policy(), &clock, cache());
    let mut c = claims("alice", "e1", 0);
    c["exp"] = json!((NOW + 10) as f64 + 0.6);
    let token = hs256(&c);
    clock.advance(Duration::from_secs(9));
    assert_eq!(v.validate(&token).unwrap().expires_at(), Some(NOW + 10));
    clock.advance(Duration::from_secs(1));
    // At NOW + 10 the token has at most 0.6 s left; rounding to NOW + 11 would
    // accept it for a further second. Refused, on the hit and on a miss.
    assert_eq!(v.validate(&token).unwrap_err(), Error::Expired);
    assert_eq!(v.validate_uncached(&token).unwrap_err(), Error::Expired);
}

#[test]
fn a_fractional_nbf_is_never_moved_earlier() {
    let clock = clock();
    let v = validator(policy(), &clock, cache());
    let mut c = claims("alice", "n1", NOW + 300);
    c["nbf"] = json!((NOW + 10) as f64 + 0.4);
    let token = hs256(&c);
    clock.advance(Duration::from_secs(10));
    // NOW + 10 is before NOW + 10.4: rounding to nearest would accept it.
    assert_eq!(v.validate(&token).unwrap_err(), Error::NotYetValid);
    clock.advance(Duration::from_secs(1));
    assert_eq!(v.validate(&token).unwrap().not_before(), Some(NOW + 11));
}

#[test]
fn negative_non_finite_and_too_large_times_are_refused_with_a_typed_error() {
    let clock = clock();
    let v = validator(policy(), &clock, cache());
    for name in ["exp", "nbf", "iat"] {
        for bad in [
            json!(-1),
            json!(-0.5),
            json!(-1e300),
            json!(18_446_744_073_709_551_616.0_f64), // 2^64
            json!(1e300),
        ] {
            let mut c = claims("alice", "r1", NOW + 300);
            c[name] = bad.clone();
            assert_eq!(
                v.validate(hs256(&c)).unwrap_err(),
                Error::ClaimOutOfRange(name.to_owned()),
                "{name} = {bad}"
            );
        }
        // Not a number at all.
        let mut c = claims("alice", "r2", NOW + 300);
        c[name] = json!("1800000000");
        assert_eq!(
            v.validate(hs256(&c)).unwrap_err(),
            Error::MalformedClaim(name.to_owned())
        );
        // JSON has no NaN or infinity; a number beyond f64 is refused by the parser.
        let raw = format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","exp":{},"{name}":1e400}}"#,
            NOW + 300
        );
        assert!(matches!(
            v.validate(hs256_raw(&raw)).unwrap_err(),
            Error::Malformed(_) | Error::ClaimOutOfRange(_)
        ));
    }
    // The largest integer is a NumericDate (far future): read as one, and the token
    // is refused for being issued in the future, not for a malformed claim.
    let mut c = claims("alice", "r3", NOW + 300);
    c["iat"] = json!(u64::MAX);
    assert_eq!(v.validate(hs256(&c)).unwrap_err(), Error::IssuedInFuture);
    c["iat"] = json!(NOW);
    c["nbf"] = json!(u64::MAX);
    assert_eq!(v.validate(hs256(&c)).unwrap_err(), Error::NotYetValid);
    assert_eq!(v.stats().rejected("claim_out_of_range"), 15);
}
