//! [`RequestContext`]: what a service knows about one request or login attempt.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{Error, Timestamp, canonical_ip};

/// Who made a request, once a layer authenticated it: jwt-cache's `JwtAuth` puts the
/// token's `sub` into the request's extensions as this, and the layers behind it read
/// it (ratelimit's `KeySource::Subject` counts requests by it). Defined here so that
/// the two crates meet without depending on each other.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthenticatedSubject(pub String);

/// The outcome of a login attempt, when the request was one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LoginOutcome {
    /// The primary credential was accepted.
    Success,
    /// The primary credential was refused (unknown user, wrong password, locked, …).
    Failure,
    /// A step-up challenge (MFA) was completed.
    StepUpSuccess,
    /// A step-up challenge (MFA) was failed or abandoned.
    StepUpFailure,
}

/// Facts about the client's TLS handshake, as seen by the TLS terminator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The JA4 fingerprint string, if computed by a proxy or by us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
    /// The SNI server name the client asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl TlsInfo {
    /// TLS facts with a JA4 string.
    pub fn with_ja4(ja4: impl Into<String>) -> Self {
        TlsInfo {
            ja4: Some(ja4.into()),
            server_name: None,
        }
    }
}

/// Device facts reported by the client (e.g. collected by a login page script).
///
/// All of it is attacker-controlled: use it as a signal, never as proof.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientDeviceInfo {
    /// Screen width and height in CSS pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<(u32, u32)>,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Preferred languages in order, e.g. `["de-DE", "en"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// A hash of a canvas rendering, as reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canvas_hash: Option<String>,
    /// The WebGL renderer string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webgl_renderer: Option<String>,
}

/// What a service knows about one request or login attempt.
///
/// Built with [`RequestContext::new`] and the `with_*` methods; fields are public to
/// read. Headers are kept in the order received, names as received (compare them
/// case-insensitively, as HTTP does).
///
/// ```
/// use palisade_core_traits::{LoginOutcome, RequestContext, Timestamp};
///
/// let ctx = RequestContext::new("203.0.113.7".parse().unwrap(), Timestamp::from_unix_secs(1_700_000_000))
///     .with_user("alice")
///     .with_request("POST", "/login")
///     .with_header("User-Agent", "Mozilla/5.0")
///     .with_login(LoginOutcome::Failure);
/// assert_eq!(ctx.user_agent(), Some("Mozilla/5.0"));
/// assert_eq!(ctx.header("user-agent"), Some("Mozilla/5.0"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RequestContext {
    /// The peer address the service trusts (after its own proxy handling), in
    /// canonical form ([`crate::canonical_ip`]): the constructor and the deserializer
    /// turn an IPv4-mapped address into IPv4.
    #[serde(deserialize_with = "crate::normalize::deserialize_canonical_ip")]
    pub peer_ip: IpAddr,
    /// When the request arrived.
    pub timestamp: Timestamp,
    /// The account the request is for: the authenticated user, or the username a
    /// login attempt claimed (which may not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// HTTP method, e.g. `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request path without the query, e.g. `/login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Header name/value pairs in the order received.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// TLS handshake facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    /// Client-reported device facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<ClientDeviceInfo>,
    /// Set when the request was a login attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginOutcome>,
}

impl RequestContext {
    /// A context with only the peer address (made canonical) and arrival time.
    pub fn new(peer_ip: IpAddr, timestamp: Timestamp) -> Self {
        RequestContext {
            peer_ip: canonical_ip(peer_ip),
            timestamp,
            user_id: None,
            method: None,
            path: None,
            headers: Vec::new(),
            tls: None,
            device: None,
            login: None,
        }
    }

    /// Sets the user id (authenticated or claimed).
    pub fn with_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Sets method and path.
    pub fn with_request(mut self, method: impl Into<String>, path: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self.path = Some(path.into());
        self
    }

    /// Appends one header, after those already present.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the TLS facts.
    pub fn with_tls(mut self, tls: TlsInfo) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the client-reported device facts.
    pub fn with_device(mut self, device: ClientDeviceInfo) -> Self {
        self.device = Some(device);
        self
    }

    /// Marks the request as a login attempt with this outcome.
    pub fn with_login(mut self, outcome: LoginOutcome) -> Self {
        self.login = Some(outcome);
        self
    }

    /// The value of the first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `User-Agent` header.
    pub fn user_agent(&self) -> Option<&str> {
        self.header("user-agent")
    }

    /// Parses a context from JSON, naming the line, column and field on error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
            what: "RequestContext",
            source,
        })
    }
}
