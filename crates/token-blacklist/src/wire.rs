//! The text form of a revocation record, as stored in Redis and sent on pub/sub.

use crate::model::{Record, Scope};

// A record is "K secs expires_ms rest" (K: T token, U user, I issuer, G global; secs
// is 0 for a token). rest: T "<len>:<iss><len>:<sub><jti>", U "<len>:<iss><sub>",
// I "<iss>", G "". Lengths make it unambiguous for any bytes in the identifiers.

pub(crate) fn encode(r: &Record) -> String {
    match r {
        Record::Token {
            issuer,
            subject,
            jti,
            expires_ms,
        } => format!(
            "T 0 {expires_ms} {}:{issuer}{}:{subject}{jti}",
            issuer.len(),
            subject.len()
        ),
        Record::Mark {
            scope,
            secs,
            expires_ms,
        } => match scope {
            Scope::User { issuer, subject } => {
                format!("U {secs} {expires_ms} {}:{issuer}{subject}", issuer.len())
            }
            Scope::Issuer { issuer } => format!("I {secs} {expires_ms} {issuer}"),
            Scope::Global => format!("G {secs} {expires_ms} "),
        },
    }
}

/// `"<len>:<bytes>"` at the start of `s` → (bytes, remainder).
fn take_prefixed(s: &str) -> Option<(&str, &str)> {
    let (len, rest) = s.split_once(':')?;
    let len = usize::try_from(number(len)?).ok()?;
    if !rest.is_char_boundary(len.min(rest.len())) || len > rest.len() {
        return None;
    }
    Some(rest.split_at(len))
}

fn valid_id(s: &str) -> bool {
    crate::model::check_id("", s).is_ok()
}

/// Parses a revocation record as read from Redis or a pub/sub message and returns
/// whether it is well-formed. The fuzz target's body: it must never panic, whatever
/// the bytes; a record that parses must encode back to the same bytes.
#[cfg(feature = "fuzzing")]
pub(crate) fn parse_record(bytes: &[u8]) -> bool {
    let Some(text) = std::str::from_utf8(bytes).ok() else {
        return false;
    };
    match decode(text) {
        Some(r) => {
            assert_eq!(encode(&r), text, "a parsed record re-encodes identically");
            true
        }
        None => false,
    }
}

/// A u64 in canonical decimal (no sign, no leading zero), so a record has one form.
fn number(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical { s.parse().ok() } else { None }
}

pub(crate) fn decode(s: &str) -> Option<Record> {
    let mut parts = s.splitn(4, ' ');
    let kind = parts.next()?;
    let secs = number(parts.next()?)?;
    let expires_ms = number(parts.next()?)?;
    let rest = parts.next()?;
    let mark = |scope| Record::Mark {
        scope,
        secs,
        expires_ms,
    };
    let r = match kind {
        "T" if secs == 0 => {
            let (issuer, rest) = take_prefixed(rest)?;
            let (subject, jti) = take_prefixed(rest)?;
            if !valid_id(issuer) || !valid_id(jti) || (!subject.is_empty() && !valid_id(subject)) {
                return None;
            }
            Record::Token {
                issuer: issuer.into(),
                subject: subject.into(),
                jti: jti.into(),
                expires_ms,
            }
        }
        "U" => {
            let (issuer, subject) = take_prefixed(rest)?;
            if !valid_id(issuer) || !valid_id(subject) {
                return None;
            }
            mark(Scope::User {
                issuer: issuer.into(),
                subject: subject.into(),
            })
        }
        "I" if valid_id(rest) => mark(Scope::Issuer {
            issuer: rest.into(),
        }),
        "G" if rest.is_empty() => mark(Scope::Global),
        _ => return None,
    };
    Some(r)
}
