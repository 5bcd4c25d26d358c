//! RFC 6750 §2: where a bearer token may be, and how each place must look.
//!
//! Only the `Authorization` header is read unless the application enables the
//! form-body (§2.2) or query (§2.3, discouraged: URLs are logged) methods. A request
//! that uses more than one method, repeats a token, or carries a header that is not
//! `Bearer` + one space-separated b64token is `invalid_request`; a request with no
//! bearer credentials at all (no header, or another scheme) is `MissingToken`. A
//! header whose scheme is `Bearer` but separated from its token by anything but
//! spaces (`Bearer<TAB>token`, `Bearer,token`; RFC 7235 §2.1 `1*SP`) is a malformed
//! bearer request, `invalid_request`, not another scheme.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::Error;

/// Whether `c` is a `tchar` (RFC 7230 §3.2.6), a byte that may be in a token such as an
/// auth-scheme.
fn tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Whether `c` may be in a b64token before its `=` padding (RFC 6750 §2.1:
/// `ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"`). Branch-free, so the scan
/// below vectorises: it runs over the whole token on every request.
fn b64token_char(c: u8) -> bool {
    ((c | 0x20).wrapping_sub(b'a') < 26)
        | (c.wrapping_sub(b'0') < 10)
        | (c == b'-')
        | (c == b'.')
        | (c == b'_')
        | (c == b'~')
        | (c == b'+')
        | (c == b'/')
}

/// RFC 6750 §2.1 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
/// (a compact JWS is base64url parts joined by dots, so it always fits). Implies
/// visible ASCII.
fn is_b64token(bytes: &[u8]) -> bool {
    let padding = bytes.iter().rev().take_while(|b| **b == b'=').count();
    let body = &bytes[..bytes.len() - padding];
    !body.is_empty() && body.iter().fold(true, |ok, c| ok & b64token_char(*c))
}

/// The bearer token of the `Authorization` header (RFC 6750 §2.1), if the request
/// has one.
///
/// `Ok(None)`: no `Authorization` header, or one with another scheme (`Basic …`): no
/// bearer credentials were sent. `Err(Error::InvalidRequest)`: several
/// `Authorization` headers, an empty one, `Bearer` without a token, with more than
/// one, with a token outside the b64token syntax (which also refuses anything but
/// visible ASCII), or with the scheme followed by something other than a space
/// (`Bearer<TAB>token`). The scheme is matched case-insensitively (RFC 9110 §11.1).
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    match bearer_credential(headers)? {
        None => Ok(None),
        Some(token) => b64token(token).map(Some),
    }
}

/// [`bearer_token`] without the token's syntax check ([`b64token`]), for the layer,
/// which asks the cache first: a token the cache holds passed that check already.
pub(crate) fn bearer_credential(headers: &HeaderMap) -> Result<Option<&[u8]>, Error> {
    let mut values = headers.get_all(AUTHORIZATION).into_iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::InvalidRequest("more than one Authorization header"));
    }
    let value = value.as_bytes().trim_ascii();
    let (scheme, rest) = match value.iter().position(|b| *b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &value[value.len()..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        if scheme.is_empty() {
            return Err(Error::InvalidRequest("empty Authorization header"));
        }
        // The scheme token ends at the first byte that is not a tchar: `Bearer` then a
        // TAB, a comma or a quote is a bearer request, malformed (RFC 7235 §2.1 wants
        // 1*SP there); `Bearerx` is another scheme.
        if let (Some(name), Some(&next)) = (scheme.get(..6), scheme.get(6))
            && name.eq_ignore_ascii_case(b"bearer")
            && !tchar(next)
        {
            return Err(Error::InvalidRequest(
                "Bearer not followed by a space (RFC 7235 §2.1)",
            ));
        }
        return Ok(None); // another scheme: not a bearer request
    }
    let token = &rest[rest.iter().take_while(|b| **b == b' ').count()..];
    if token.is_empty() {
        return Err(Error::InvalidRequest("Bearer without a token"));
    }
    Ok(Some(token))
}

/// A `Bearer` credential as a b64token (RFC 6750 §2.1), or why it is not one.
pub(crate) fn b64token(token: &[u8]) -> Result<&str, Error> {
    if !is_b64token(token) {
        // Only now look at why: the common case scans the token once.
        return Err(Error::InvalidRequest(
            if token.iter().any(|b| matches!(b, b' ' | b'\t' | b',')) {
                "Bearer with more than one credential"
            } else {
                "Bearer credential is not a b64token (RFC 6750 §2.1)"
            },
        ));
    }
    // A b64token is ASCII, so this cannot fail; no panic path either way.
    std::str::from_utf8(token).map_err(|_| Error::InvalidRequest("Bearer credential is not ASCII"))
}

/// The `access_token` parameter of a query string or form body (RFC 6750 §2.2/§2.3):
/// at most one, and a b64token.
pub(crate) fn access_token_param(form: &[u8]) -> Result<Option<String>, Error> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(form) {
        if name != "access_token" {
            continue;
        }
        if found.is_some() {
            return Err(Error::InvalidRequest(
                "more than one access_token parameter",
            ));
        }
        if !is_b64token(value.as_bytes()) {
            return Err(Error::InvalidRequest(
                "access_token is not a b64token (RFC 6750 §2.1)",
            ));
        }
        found = Some(value.into_owned());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn header(values: &[&[u8]]) -> Result<Option<String>, Error> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        bearer_token(&h).map(|t| t.map(str::to_owned))
    }

    #[test]
    fn the_header_method_follows_rfc_6750() {
        assert_eq!(header(&[]), Ok(None));
        assert_eq!(header(&[b"Bearer a.b.c"]), Ok(Some("a.b.c".into())));
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let v = format!("{scheme} a.b-_~+/c==");
            assert_eq!(header(&[v.as_bytes()]), Ok(Some("a.b-_~+/c==".into())));
        }
        assert_eq!(header(&[b"Bearer   a.b.c"]), Ok(Some("a.b.c".into())));
        // Another scheme: no bearer credentials were sent.
        assert_eq!(header(&[b"Basic dXNlcjpwYXNz"]), Ok(None));
        assert_eq!(header(&[b"Bearerx a.b.c"]), Ok(None));
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer a.b.c d.e.f",
            b"Bearer a.b.c,d",
            b"Bearer a.b\tc",
            b"Bearer a.b.c!",
            b"Bearer \"a.b.c\"",
            b"Bearer ===",
            b"Bearer a=b",
            b"Bearer \xc3\xa9t\xc3\xa9",
            b"",
        ] {
            assert!(
                matches!(header(&[bad]), Err(Error::InvalidRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            header(&[b"Bearer a.b.c", b"Bearer a.b.c"]),
            Err(Error::InvalidRequest(_))
        ));
    }

    /// RFC 7235 §2.1: `credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`.
    /// A `Bearer` scheme followed by anything but spaces is a malformed bearer request
    /// (RFC 6750 §3.1: `400 invalid_request`), not another scheme (`401`).
    #[test]
    fn a_bearer_scheme_not_followed_by_spaces_is_an_invalid_request() {
        for bad in [
            &b"Bearer\ta.b.c"[..],
            b"bearer\ta.b.c",
            b"BEARER\t\ta.b.c",
            b"Bearer\t a.b.c",
            b"Bearer \ta.b.c",
            b"Bearer,a.b.c",
            b"Bearer\"a.b.c\"",
            b"Bearer=a.b.c",
            b"Bearer\xa0a.b.c",
        ] {
            assert!(
                matches!(header(&[bad]), Err(Error::InvalidRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // A longer token is another scheme; so is another scheme's own malformation.
        assert_eq!(header(&[b"Bearer.x a.b.c"]), Ok(None));
        assert_eq!(header(&[b"Bearer_ a.b.c"]), Ok(None));
        assert_eq!(header(&[b"Basic\tdXNlcjpwYXNz"]), Ok(None));
    }

    #[test]
    fn the_branch_free_class_is_the_rfc_class_for_every_byte() {
        for c in 0..=255u8 {
            let rfc = c.is_ascii_alphanumeric() || b"-._~+/".contains(&c);
            assert_eq!(b64token_char(c), rfc, "byte {c:#04x}");
        }
    }

    #[test]
    fn access_token_parameters_are_single_b64tokens() {
        assert_eq!(access_token_param(b"a=1&b=2"), Ok(None));
        assert_eq!(
            access_token_param(b"a=1&access_token=x.y.z"),
            Ok(Some("x.y.z".into()))
        );
        assert!(access_token_param(b"access_token=x&access_token=y").is_err());
        assert!(access_token_param(b"access_token=").is_err());
        assert!(access_token_param(b"access_token=a%20b").is_err());
    }
}
