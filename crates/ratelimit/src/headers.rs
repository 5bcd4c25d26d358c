//! HTTP response fields: `RateLimit-Policy` and `RateLimit` of
//! draft-ietf-httpapi-ratelimit-headers-11, and `Retry-After` (RFC 9110).
//!
//! A GCRA quota is advertised as `q` = burst units per `w` = the burst window (the
//! time an empty bucket takes to refill) in whole seconds, rounded up; the live field
//! gives `r` = remaining units and `t` = seconds until the bucket is full again,
//! rounded up, so a client that waits `t` never finds less than it was told. On a
//! refusal `t` is the wait until a unit is back (`Retry-After`'s value): `r=0` holds
//! for exactly that long, and the two fields never disagree.

use std::time::Duration;

use crate::{Decision, Denial, Error, Quota};

/// Whole seconds, rounded up (a client told to wait must not come back early).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0))
}

/// The policy name as a Structured Field string (RFC 8941 §3.3.3).
pub(crate) fn sf_string(name: &str) -> Result<String, Error> {
    if name.is_empty() || !name.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(Error::InvalidKey {
            what: "policy name",
            reason: format!("{name:?} must be non-empty printable ASCII"),
        });
    }
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// `RateLimit-Policy` member for one named quota, e.g. `"login";q=10;w=60`.
///
/// ```
/// use palisade_ratelimit::{Quota, headers, nz};
/// let q = Quota::per_minute(nz!(10));
/// assert_eq!(headers::ratelimit_policy("login", &q).unwrap(), r#""login";q=10;w=60"#);
/// ```
pub fn ratelimit_policy(name: &str, quota: &Quota) -> Result<String, Error> {
    Ok(format!(
        "{};q={};w={}",
        sf_string(name)?,
        quota.burst(),
        ceil_secs(quota.burst_window())
    ))
}

/// `RateLimit` member for a decision under the named policy, e.g. `"login";r=3;t=42`.
pub fn ratelimit(name: &str, decision: &Decision) -> Result<String, Error> {
    let mut out = String::new();
    push_ratelimit(&mut out, &sf_string(name)?, decision);
    Ok(out)
}

/// Appends the `RateLimit` member of `decision` under the policy whose name is
/// already a Structured Field string (`sf_name`), without the formatting machinery:
/// the layer renders one on every allowed response when asked to.
pub(crate) fn push_ratelimit(out: &mut String, sf_name: &str, decision: &Decision) {
    out.push_str(sf_name);
    out.push_str(";r=");
    push_decimal(out, u64::from(decision.remaining));
    out.push_str(";t=");
    push_decimal(out, reset_secs(decision));
}

/// `n` in decimal.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&b| char::from(b)));
}

/// The `t` parameter: whole seconds until the key is full again or, on a refusal
/// that a wait can end, until it admits again.
pub(crate) fn reset_secs(decision: &Decision) -> u64 {
    if decision.allowed || decision.retry_after == Duration::MAX {
        ceil_secs(decision.reset_after)
    } else {
        ceil_secs(decision.retry_after)
    }
}

/// `Retry-After` in whole seconds, rounded up, for a denied decision; `None` when
/// the request was allowed, or when it can never be admitted
/// ([`Denial::CostExceedsBurst`]: retrying the same request will not help).
pub fn retry_after(decision: &Decision) -> Option<String> {
    if decision.allowed || decision.denial == Some(Denial::CostExceedsBurst) {
        return None;
    }
    Some(ceil_secs(decision.retry_after).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nz;

    fn decision(allowed: bool, remaining: u32, reset_ms: u64, retry_ms: u64) -> Decision {
        Decision {
            allowed,
            limit: 10,
            remaining,
            reset_after: Duration::from_millis(reset_ms),
            retry_after: Duration::from_millis(retry_ms),
            denial: (!allowed).then_some(Denial::Limited),
            failed_open: false,
            local_share: false,
        }
    }

    #[test]
    fn fields_round_seconds_up() {
        let q = Quota::new(nz!(10), nz!(5), Duration::from_secs(1)).unwrap();
        assert_eq!(ratelimit_policy("api", &q).unwrap(), "\"api\";q=10;w=2");
        // Refused: `t` is the wait until a unit is back, as `Retry-After`.
        let d = decision(false, 0, 1_001, 200);
        assert_eq!(ratelimit("api", &d).unwrap(), "\"api\";r=0;t=1");
        assert_eq!(retry_after(&d).as_deref(), Some("1"));
        let d = decision(true, 3, 1_001, 0);
        assert_eq!(ratelimit("api", &d).unwrap(), "\"api\";r=3;t=2");
        let d = decision(true, 7, 0, 0);
        assert_eq!(ratelimit("api", &d).unwrap(), "\"api\";r=7;t=0");
        assert_eq!(retry_after(&d), None);
        assert_eq!(
            retry_after(&decision(false, 0, 0, 3_000)).as_deref(),
            Some("3")
        );
    }

    #[test]
    fn a_request_that_can_never_pass_gets_no_retry_after() {
        let never = decision(true, 4, 1_500, 0).cost_exceeds_burst(10);
        assert_eq!(retry_after(&never), None);
        assert_eq!(ratelimit("api", &never).unwrap(), "\"api\";r=4;t=2");
        // An infinite wait renders without overflowing.
        let d = Decision {
            retry_after: Duration::MAX,
            ..decision(false, 0, 0, 0)
        };
        assert_eq!(retry_after(&d).as_deref(), Some("18446744073709551615"));
    }

    #[test]
    fn names_are_escaped_or_refused() {
        let q = Quota::per_second(nz!(1));
        assert_eq!(
            ratelimit_policy(r#"a"b\c"#, &q).unwrap(),
            r#""a\"b\\c";q=1;w=1"#
        );
        for bad in ["", "caf\u{e9}", "new\nline"] {
            let err = ratelimit_policy(bad, &q).unwrap_err();
            assert!(err.to_string().contains("policy name"), "{err}");
        }
    }
}
