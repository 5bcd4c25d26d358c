//! The payload of a verified token: parsed once, checked against the policy.
//!
//! `jsonwebtoken::decode` parses the payload twice (once for its checks, once for the
//! caller) and the header once more than we need; a miss here parses each part once
//! and lets jsonwebtoken do only the signature (its aws-lc-rs verifier).
//! [`check`] keeps jsonwebtoken 12's claim rules (`validation::validate`, with its
//! time checks off: we check time against our `Clock`), and a differential property
//! test below holds the two to the same answers. Our rules are stricter in three ways,
//! each failing closed: a duplicate top-level claim name is refused (jsonwebtoken
//! refuses duplicates of `exp`, `nbf`, `sub`, `iss`, `aud` only); `exp`, `nbf` and
//! `iat` must be NumericDates when present (fractions rounded towards refusal, never to
//! nearest as jsonwebtoken does); `iss`, `sub` and `jti` must be strings when
//! present (RFC 7519 StringOrURI) — revocation keys on them, and a token whose `iss`
//! was an array or whose `sub` was a number would otherwise escape a revocation.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserializer;
use serde::de::{self, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, label};
use crate::policy::Policy;

/// Decodes the base64url payload into a JSON object with unique member names.
pub(crate) fn parse(payload_b64: &[u8]) -> Result<Map<String, Value>, Error> {
    let json = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| Error::Malformed("payload is not base64url"))?;
    let mut de = serde_json::Deserializer::from_slice(&json);
    let map = de
        .deserialize_map(UniqueObject)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|_| Error::Malformed("payload is not a JSON object with unique claim names"))?;
    Ok(map)
}

struct UniqueObject;

impl<'de> Visitor<'de> for UniqueObject {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with unique member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let value: Value = access.next_value()?;
            if map.insert(name, value).is_some() {
                return Err(de::Error::custom("duplicate claim name"));
            }
        }
        Ok(map)
    }
}

/// A registered claim as jsonwebtoken's `TryParse` sees it (`null` is absent).
enum Claim<T> {
    Absent,
    Parsed(T),
    Malformed,
}

impl<T> Claim<T> {
    fn is_parsed(&self) -> bool {
        matches!(self, Claim::Parsed(_))
    }
}

fn claim<'a, T>(
    claims: &'a Map<String, Value>,
    name: &str,
    read: impl FnOnce(&'a Value) -> Option<T>,
) -> Claim<T> {
    match claims.get(name) {
        None | Some(Value::Null) => Claim::Absent,
        Some(v) => read(v).map_or(Claim::Malformed, Claim::Parsed),
    }
}

/// Which way a fractional NumericDate is rounded to whole seconds: always towards
/// refusal. `exp` and `iat` round down (a token never lives longer, nor looks
/// minted later, than it says: a later `iat` would escape a per-user revocation
/// watermark); `nbf` rounds up (a token never becomes valid earlier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Round {
    /// `exp`, `iat`.
    Down,
    /// `nbf`.
    Up,
}

impl Round {
    /// How `name` rounds (`nbf` up, every other time claim down).
    pub(crate) fn for_claim(name: &str) -> Self {
        if name == "nbf" {
            Round::Up
        } else {
            Round::Down
        }
    }
}

/// A NumericDate: a non-negative integer, or a finite non-negative number below
/// 2^64, rounded to whole seconds in the direction `round` (never to nearest).
/// `Err(())` for a number out of that range, `None` for a value that is no number.
fn numeric(v: &Value, round: Round) -> Option<Result<u64, ()>> {
    if let Some(n) = v.as_u64() {
        return Some(Ok(n));
    }
    if !v.is_number() {
        return None;
    }
    // `u64::MAX as f64` is 2^64, so `f < 2^64` keeps the cast below exact.
    #[allow(clippy::cast_precision_loss)]
    const LIMIT: f64 = u64::MAX as f64;
    Some(match v.as_f64() {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // range-checked
        Some(f) if (0.0..LIMIT).contains(&f) => Ok(match round {
            Round::Down => f.floor(),
            Round::Up => f.ceil(),
        } as u64),
        _ => Err(()),
    })
}

/// Whether `v` is a usable NumericDate (the direction does not matter here).
fn is_numeric(v: &Value) -> Option<u64> {
    numeric(v, Round::Down)?.ok()
}

/// A string, or an array of strings (`aud`).
fn names(v: &Value) -> Option<Vec<&str>> {
    match v {
        Value::String(s) => Some(vec![s.as_str()]),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// `exp`, `nbf` or `iat` when present, rounded towards refusal ([`Round`]); a value
/// that is not a number is [`Error::MalformedClaim`], a negative, non-finite or
/// too large one [`Error::ClaimOutOfRange`].
pub(crate) fn numeric_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, Error> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match numeric(v, Round::for_claim(name)) {
            Some(Ok(n)) => Ok(Some(n)),
            Some(Err(())) => Err(Error::ClaimOutOfRange(name.to_owned())),
            None => Err(Error::MalformedClaim(name.to_owned())),
        },
    }
}

/// The claims a policy can require: each has its arm in [`check`].
pub(crate) const REQUIRABLE: [&str; 7] = ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"];

/// The policy's claim rules except time, in jsonwebtoken's order.
pub(crate) fn check(claims: &Map<String, Value>, policy: &Policy) -> Result<(), Error> {
    let sub = claim(claims, "sub", Value::as_str);
    let iss = claim(claims, "iss", Value::as_str);
    let aud = claim(claims, "aud", names);
    for (name, malformed) in [
        ("sub", matches!(sub, Claim::Malformed)),
        ("iss", matches!(iss, Claim::Malformed)),
        (
            "jti",
            matches!(claim(claims, "jti", Value::as_str), Claim::Malformed),
        ),
    ] {
        if malformed {
            return Err(Error::MalformedClaim(name.to_owned()));
        }
    }
    for required in &policy.required_claims {
        let present = match required.as_str() {
            "exp" => claim(claims, "exp", is_numeric).is_parsed(),
            "nbf" => claim(claims, "nbf", is_numeric).is_parsed(),
            "sub" => sub.is_parsed(),
            "iss" => iss.is_parsed(),
            "aud" => aud.is_parsed(),
            "iat" => claim(claims, "iat", is_numeric).is_parsed(),
            // An empty `jti` names no token: it cannot be revoked one at a time.
            "jti" => {
                matches!(claim(claims, "jti", Value::as_str), Claim::Parsed(j) if !j.is_empty())
            }
            _ => continue, // not in REQUIRABLE: refused when the policy is built
        };
        if !present {
            return Err(Error::MissingClaim(label(required)));
        }
    }
    if let (Some(want), Claim::Parsed(given)) = (&policy.subject, &sub)
        && want != given
    {
        return Err(Error::WrongSubject);
    }
    if let (Some(allowed), Claim::Parsed(given)) = (&policy.issuers, &iss)
        && !allowed.contains(*given)
    {
        return Err(Error::WrongIssuer);
    }
    match (aud, &policy.audiences) {
        (Claim::Malformed, _) => Err(Error::MalformedClaim("aud".to_owned())),
        // A token addressed to someone must name us, and a policy without an audience
        // is nobody (RFC 7519 §4.1.3; jsonwebtoken's rule).
        (Claim::Parsed(_), None) => Err(Error::WrongAudience),
        (Claim::Parsed(given), Some(allowed)) if !given.iter().any(|a| allowed.contains(*a)) => {
            Err(Error::WrongAudience)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
    use proptest::prelude::*;

    const SECRET: &[u8] = b"differential-test-secret-0123456789";

    /// Raw JSON texts for one claim, `None` = absent; chosen to hit every branch of
    /// jsonwebtoken's `TryParse` (absent, null, right type, wrong type, edge values).
    fn value_strategy(name: &'static str) -> impl Strategy<Value = Option<String>> {
        let texts: &'static [&'static str] = match name {
            "exp" | "nbf" => &[
                "4102444800",
                "4102444800.4",
                "0",
                "-1",
                "-1.5",
                "1e300",
                "\"4102444800\"",
                "null",
                "true",
            ],
            _ => &[
                "\"a\"",
                "\"b\"",
                "\"\"",
                "[\"a\"]",
                "[\"b\",\"a\"]",
                "[\"b\"]",
                "[]",
                "[\"a\",1]",
                "1",
                "null",
                "{\"a\":1}",
            ],
        };
        proptest::option::of(proptest::sample::select(texts).prop_map(str::to_owned))
    }

    /// A payload, and whether one of our stricter rules refuses it: a repeated member
    /// name, `exp`/`nbf` present but not a NumericDate, `sub`/`iss` present but not a
    /// string.
    fn payload() -> impl Strategy<Value = (String, bool)> {
        (
            value_strategy("exp"),
            value_strategy("nbf"),
            value_strategy("sub"),
            value_strategy("iss"),
            value_strategy("aud"),
            proptest::option::of(proptest::sample::select(&["exp", "aud", "x"][..])),
        )
            .prop_map(|(exp, nbf, sub, iss, aud, dup)| {
                let present = |t: &str| serde_json::from_str::<Value>(t).unwrap();
                let bad_time = [&exp, &nbf]
                    .into_iter()
                    .flatten()
                    .map(|t| present(t))
                    .any(|v| !v.is_null() && is_numeric(&v).is_none());
                let bad_name = [&sub, &iss]
                    .into_iter()
                    .flatten()
                    .map(|t| present(t))
                    .any(|v| !v.is_null() && !v.is_string());
                let mut members = vec![("x", "1".to_owned())];
                for (n, v) in [
                    ("exp", exp),
                    ("nbf", nbf),
                    ("sub", sub),
                    ("iss", iss),
                    ("aud", aud),
                ] {
                    if let Some(v) = v {
                        members.push((n, v));
                    }
                }
                let duplicate = dup.is_some_and(|d| members.iter().any(|(n, _)| *n == d));
                if let Some(d) = dup {
                    members.push((d, "1".to_owned()));
                }
                let body: Vec<String> = members
                    .iter()
                    .map(|(n, v)| format!("\"{n}\":{v}"))
                    .collect();
                (
                    format!("{{{}}}", body.join(",")),
                    duplicate || bad_time || bad_name,
                )
            })
    }

    fn policy() -> impl Strategy<Value = Policy> {
        let set =
            || proptest::option::of(proptest::sample::subsequence(&["a", "b", "c"][..], 1..=2));
        (
            set(),
            set(),
            proptest::option::of(proptest::sample::select(&["a", "b"][..])),
            proptest::sample::subsequence(
                &["exp", "nbf", "sub", "iss", "aud", "jti", "iat"][..],
                0..=3,
            ),
        )
            .prop_map(|(iss, aud, sub, required)| {
                let mut p = Policy::builder()
                    .algorithms(&[Algorithm::HS256])
                    .required_claims(&required);
                if let Some(i) = iss {
                    p = p.issuers(&i);
                }
                if let Some(a) = aud {
                    p = p.audiences(&a);
                }
                if let Some(s) = sub {
                    p = p.subject(s);
                }
                p.build().unwrap()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Our parse + check accepts exactly what `jsonwebtoken::decode` accepts with
        /// the same policy, except the two documented stricter rules.
        #[test]
        fn same_answers_as_jsonwebtoken((payload, stricter) in payload(), policy in policy()) {
            let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
            let body = URL_SAFE_NO_PAD.encode(payload.as_bytes());
            let message = format!("{header}.{body}");
            let sig = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &EncodingKey::from_secret(SECRET).unwrap(),
                Algorithm::HS256,
            ).unwrap();
            let token = format!("{message}.{sig}");
            let theirs = jsonwebtoken::decode::<Map<String, Value>>(
                &token,
                &DecodingKey::from_secret(SECRET).unwrap(),
                &policy.jsonwebtoken_validation(Algorithm::HS256),
            );
            // `iat` and `jti` can be required here; jsonwebtoken ignores them.
            let required_beyond_theirs = parse(body.as_bytes()).is_ok_and(|m| {
                let missing = |name: &str| match m.get(name) {
                    None | Some(Value::Null) => true,
                    Some(v) => name == "jti" && !v.is_string(),
                };
                ["iat", "jti"].iter().any(|n| policy.required_claims.contains(*n) && missing(n))
            });
            let ours = parse(body.as_bytes()).and_then(|m| {
                check(&m, &policy)?;
                for name in ["exp", "nbf", "iat"] {
                    numeric_claim(&m, name)?;
                }
                Ok(m)
            });
            prop_assert_eq!(
                ours.is_ok(),
                theirs.is_ok() && !stricter && !required_beyond_theirs,
                "payload {} policy {:?}: ours {:?} theirs {:?}",
                payload, policy, ours.err(), theirs.err()
            );
        }
    }

    /// Asking for `jti` (as the docs advise, to revoke tokens one at a time) adds to
    /// the required claims: `exp` stays required unless explicitly let go. With
    /// jsonwebtoken's replacing semantics a token without `exp` passed, never expired
    /// and could not be revoked.
    #[test]
    fn requiring_more_claims_keeps_exp_required_unless_let_go() {
        let claims = |json: &str| serde_json::from_str::<Map<String, Value>>(json).unwrap();
        let no_exp = claims(r#"{"iss": "https://idp.example", "jti": "t-1"}"#);
        let with_jti = Policy::builder()
            .algorithms(&[Algorithm::HS256])
            .issuers(&["https://idp.example"])
            .required_claims(&["jti"])
            .build()
            .unwrap();
        match check(&no_exp, &with_jti) {
            Err(Error::MissingClaim(name)) => assert_eq!(name, "\"exp\""),
            other => panic!("{other:?}"),
        }
        let let_go = Policy::builder()
            .algorithms(&[Algorithm::HS256])
            .required_claims(&["jti"])
            .allow_missing_exp()
            .build()
            .unwrap();
        assert!(check(&no_exp, &let_go).is_ok());
        // Naming `exp` wins over letting it go.
        let named = Policy::builder()
            .algorithms(&[Algorithm::HS256])
            .allow_missing_exp()
            .required_claims(&["exp"])
            .build()
            .unwrap();
        assert!(matches!(
            check(&no_exp, &named),
            Err(Error::MissingClaim(_))
        ));
        let kept = Policy::builder()
            .algorithms(&[Algorithm::HS256])
            .required_claims(&["jti"])
            .build()
            .unwrap();
        assert_ne!(kept.fingerprint(), let_go.fingerprint());
    }

    /// `iat` and `jti` can be required (jsonwebtoken would ignore them), and a name
    /// the policy cannot check is a configuration error, not a silent no-op.
    #[test]
    fn iat_and_jti_can_be_required_and_unknown_names_are_refused() {
        let policy = Policy::builder()
            .algorithms(&[Algorithm::HS256])
            .required_claims(&["exp", "iat", "jti"])
            .build()
            .unwrap();
        let claims = |json: &str| serde_json::from_str::<Map<String, Value>>(json).unwrap();
        let all = r#"{"exp": 4102444800, "iat": 1700000000, "jti": "t-1"}"#;
        assert!(check(&claims(all), &policy).is_ok());
        for (json, missing) in [
            (r#"{"exp": 4102444800, "jti": "t-1"}"#, "\"iat\""),
            (
                r#"{"exp": 4102444800, "iat": null, "jti": "t-1"}"#,
                "\"iat\"",
            ),
            (r#"{"exp": 4102444800, "iat": 1700000000}"#, "\"jti\""),
            (
                r#"{"exp": 4102444800, "iat": 1700000000, "jti": null}"#,
                "\"jti\"",
            ),
            // An empty `jti` names no token to revoke.
            (
                r#"{"exp": 4102444800, "iat": 1700000000, "jti": ""}"#,
                "\"jti\"",
            ),
        ] {
            match check(&claims(json), &policy) {
                Err(Error::MissingClaim(name)) => assert_eq!(name, missing, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        let unknown = Policy::builder()
            .algorithms(&[Algorithm::HS256])
            .required_claims(&["exp", "scope"])
            .build();
        match unknown {
            Err(Error::InvalidConfig { field, reason }) => {
                assert_eq!(field, "required_claims");
                assert!(reason.contains("`scope`"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
