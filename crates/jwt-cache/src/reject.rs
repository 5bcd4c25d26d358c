//! A refusal as an HTTP response (RFC 6750 §3): status, `WWW-Authenticate`, a body
//! of one fixed word.
//!
//! Nothing from the request or the token reaches the response: the challenge
//! carries the configured realm, the RFC 6750 error code and, for
//! `insufficient_scope`, the scopes the route requires (configuration). No
//! `error_description`: why a token failed (bad signature, unknown key, expired) is
//! counted and logged at debug level on the server, not told to the client.

use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::{Error, ErrorClass};

/// A request refused by [`crate::JwtAuth`] or the axum `Claims<T>` extractor: the
/// [`Error`] and the realm of the challenge. Turn it into a response with
/// [`AuthRejection::into_http`] (or axum's `IntoResponse`).
///
/// | error | status | `WWW-Authenticate` |
/// |---|---|---|
/// | [`Error::MissingToken`] (no header, another scheme) | 401 | `Bearer realm="…"` (no `error`, RFC 6750 §3.1) |
/// | [`Error::InvalidRequest`] | 400 | `Bearer realm="…", error="invalid_request"` |
/// | [`Error::InsufficientScope`] | 403 | `Bearer realm="…", error="insufficient_scope", scope="…"` |
/// | every other [`ErrorClass::Rejected`] (expired, bad signature, unknown `kid`, revoked, claims that do not fit `T`, …) | 401 | `Bearer realm="…", error="invalid_token"` |
/// | [`ErrorClass::Backend`] (revocation status unknown) | 503 | none; `Retry-After: 1` |
/// | [`ErrorClass::Configuration`] | 500 | none |
#[derive(Debug, Clone)]
pub struct AuthRejection {
    error: Error,
    realm: Option<std::sync::Arc<str>>,
}

impl AuthRejection {
    pub(crate) fn new(error: Error, realm: Option<std::sync::Arc<str>>) -> Self {
        AuthRejection { error, realm }
    }

    /// Why the request was refused.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Whose problem it is.
    pub fn class(&self) -> ErrorClass {
        self.error.class()
    }

    /// The HTTP status this refusal answers with.
    pub fn status(&self) -> StatusCode {
        match (&self.error, self.error.class()) {
            (_, ErrorClass::Configuration) => StatusCode::INTERNAL_SERVER_ERROR,
            (_, ErrorClass::Backend) => StatusCode::SERVICE_UNAVAILABLE,
            (Error::InvalidRequest(_), _) => StatusCode::BAD_REQUEST,
            (Error::InsufficientScope { .. }, _) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 error code, `None` when the challenge has none.
    fn code(&self) -> Option<&'static str> {
        match (&self.error, self.error.class()) {
            (_, ErrorClass::Configuration | ErrorClass::Backend) | (Error::MissingToken, _) => None,
            (Error::InvalidRequest(_), _) => Some("invalid_request"),
            (Error::InsufficientScope { .. }, _) => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// The `WWW-Authenticate` challenge, if this status carries one.
    pub fn challenge(&self) -> Option<String> {
        if matches!(
            self.error.class(),
            ErrorClass::Configuration | ErrorClass::Backend
        ) {
            return None;
        }
        let mut params = Vec::new();
        if let Some(realm) = &self.realm {
            params.push(format!("realm={}", quoted(realm)));
        }
        if let Some(code) = self.code() {
            params.push(format!("error=\"{code}\""));
        }
        if let Error::InsufficientScope { required } = &self.error {
            params.push(format!("scope={}", quoted(required)));
        }
        Some(if params.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer {}", params.join(", "))
        })
    }

    /// The response: status, challenge, and a body of one fixed word (the error code,
    /// or the status's reason).
    pub fn into_http<B: From<&'static str>>(self) -> Response<B> {
        let body = match (self.code(), self.error.class()) {
            (Some(code), _) => code,
            (None, ErrorClass::Configuration) => "internal server error",
            (None, ErrorClass::Backend) => "service unavailable",
            (None, _) => "authentication required",
        };
        let mut response = Response::new(B::from(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(challenge) = self.challenge()
            && let Ok(value) = HeaderValue::from_str(&challenge)
        {
            headers.insert(WWW_AUTHENTICATE, value);
        }
        if self.error.class() == ErrorClass::Backend {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl std::fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for AuthRejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// An RFC 9110 quoted-string (the builder admits only visible ASCII and spaces).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Whether `s` can be a realm: visible ASCII and spaces (quoted on output).
pub(crate) fn valid_realm(s: &str) -> bool {
    s.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
}

/// RFC 6749 §3.3 `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub(crate) fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realms_are_quoted_strings() {
        assert_eq!(quoted(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert!(valid_realm("api v2 \"x\""));
        assert!(!valid_realm("a\r\nb"));
        assert!(!valid_realm("é"));
        assert!(valid_scope("read:all"));
        assert!(!valid_scope("a b"));
        assert!(!valid_scope("a\"b"));
        assert!(!valid_scope(""));
    }
}
