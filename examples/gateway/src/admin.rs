//! The operators' side: sign-in with an operator account, a session cookie, the
//! dashboard page and its WebSocket (which checks `Origin` and the session).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Form;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use palisade_core_traits::Clock;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use tokio::sync::watch;

use crate::dashboard::{Dashboard, serve_socket};
use crate::http::OperatorAttempt;
use crate::users::{PasswordCheck, Role, Users};

/// The session cookie's name.
pub const COOKIE: &str = "palisade_admin";
/// How long an operator session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How often an open dashboard WebSocket checks that its session is still live.
pub const SESSION_CHECK: Duration = Duration::from_secs(1);
/// Sessions kept at once (a flood of sign-ins cannot grow memory).
const MAX_SESSIONS: usize = 1024;

/// Operator sessions, keyed by the SHA-256 of their cookie value (a leaked table does
/// not give working cookies).
#[derive(Debug)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], (String, Duration)>>,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
}

fn digest_of(cookie: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, cookie.as_bytes()).as_ref());
    out
}

impl Sessions {
    /// No session yet; expiry runs on `clock`'s monotonic time.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Sessions {
            by_hash: Mutex::new(HashMap::new()),
            clock,
            rng: SystemRandom::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (String, Duration)>> {
        self.by_hash.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `user`; returns the cookie value (32 random bytes, hex).
    pub fn open(&self, user: &str) -> String {
        let mut bytes = [0u8; 32];
        self.rng
            .fill(&mut bytes)
            .unwrap_or_else(|_| unreachable!("the OS random source failed"));
        let value = hex::encode(bytes);
        let now = self.clock.monotonic();
        let mut s = self.lock();
        s.retain(|_, (_, until)| *until > now);
        if s.len() >= MAX_SESSIONS {
            // The oldest-expiring session goes first.
            if let Some(k) = s.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k) {
                s.remove(&k);
            }
        }
        s.insert(digest_of(&value), (user.to_owned(), now + SESSION_TTL));
        value
    }

    /// The operator behind a cookie value, if the session is live.
    pub fn user(&self, cookie: &str) -> Option<String> {
        self.user_of(&digest_of(cookie))
    }

    fn user_of(&self, digest: &[u8; 32]) -> Option<String> {
        let now = self.clock.monotonic();
        let s = self.lock();
        (s.get(digest))
            .filter(|(_, until)| *until > now)
            .map(|(u, _)| u.clone())
    }

    /// Returns once the session of `cookie` has ended (signed out, expired or pushed
    /// out), or at once if it is not live. Checked every [`SESSION_CHECK`].
    pub fn ended(self: &Arc<Self>, cookie: &str) -> impl Future<Output = ()> + Send + 'static {
        let digest = digest_of(cookie); // the cookie itself is not kept
        let sessions = self.clone();
        async move {
            let mut every = tokio::time::interval(SESSION_CHECK);
            while sessions.user_of(&digest).is_some() {
                every.tick().await;
            }
        }
    }

    /// Ends a session.
    pub fn close(&self, cookie: &str) {
        self.lock().remove(&digest_of(cookie));
    }

    /// Ends every session of `user` (normalized); returns how many were live.
    pub fn end_user(&self, user: &str) -> u64 {
        let mut s = self.lock();
        let before = s.len();
        s.retain(|_, (u, _)| u != user);
        (before - s.len()) as u64
    }
}

/// What the operator routes need.
#[derive(Clone)]
pub struct AdminState {
    /// Accounts (operators sign in with theirs).
    pub users: Arc<Users>,
    /// The gateway's per-account limit on sign-ins (`Gateway::account_limit`): a
    /// guess at an operator's password counts the same on either form.
    pub account_limit: crate::shared::Limit<String>,
    /// Operator sessions.
    pub sessions: Arc<Sessions>,
    /// The dashboard.
    pub dashboard: Arc<Dashboard>,
    /// Flips to `true` when the server shuts down (WebSockets close).
    pub shutdown: watch::Receiver<bool>,
    /// Whether the gateway is served over TLS (cookies get `Secure`).
    pub tls: bool,
    /// The origin browsers use, when a proxy in front sets it (`--public-origin`).
    pub public_origin: Option<String>,
    /// The gateway whose risk score, step-up requirements and incident bus a sign-in
    /// goes through as a `/login` does (none: the password alone, for a test).
    pub gateway: Option<Arc<crate::service::Gateway>>,
}

impl AdminState {
    /// The origin operators' pages come from: the configured one, else this server's
    /// scheme and the request's `Host`.
    fn is_our_origin(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if let Some(ours) = &self.public_origin {
            return origin.eq_ignore_ascii_case(ours);
        }
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let scheme = if self.tls { "https" } else { "http" };
        origin.eq_ignore_ascii_case(&format!("{scheme}://{host}"))
    }

    /// Cookies get `Secure` when browsers reach us over https (directly or through the
    /// proxy that `--public-origin` names).
    fn cookie_attributes(&self) -> &'static str {
        let https =
            self.tls || (self.public_origin.as_deref()).is_some_and(|o| o.starts_with("https://"));
        if https {
            "; Path=/; HttpOnly; SameSite=Strict; Secure"
        } else {
            "; Path=/; HttpOnly; SameSite=Strict"
        }
    }
}

/// The session cookie's value in a request, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

fn operator(state: &AdminState, headers: &HeaderMap) -> Option<String> {
    session_cookie(headers).and_then(|c| state.sessions.user(c))
}

/// Headers on every page and asset: no framing, no sniffing, a strict CSP (no inline
/// script or style, WebSocket to ourselves only).
pub fn page_headers() -> [(header::HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

const INDEX: &str = include_str!("../static/index.html");
const LOGIN: &str = include_str!("../static/login.html");

/// `GET /`: the dashboard for an operator, the sign-in page for anyone else.
pub async fn index(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let page = if operator(&state, &headers).is_some() {
        INDEX
    } else {
        LOGIN
    };
    (
        page_headers(),
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct SignIn {
    username: String,
    password: String,
    /// The authenticator's code, asked for when the account must step up.
    #[serde(default)]
    code: String,
}

/// `POST /dashboard/login`: operators only; anyone else gets the same refusal.
pub async fn login(
    State(state): State<AdminState>,
    facts: Option<axum::Extension<crate::http::RequestFacts>>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    let account = palisade_core_traits::normalize_user_id(&form.username).into_owned();
    if !Users::could_exist(&account) {
        return wrong_credentials(); // as on `/login`: no account has such a name
    }
    let d = state.account_limit.check(&account).await;
    if !d.allowed && d.denial != Some(palisade_ratelimit::Denial::Limited) {
        return crate::http::undecided(&d);
    }
    if !d.allowed {
        let r = (
            StatusCode::TOO_MANY_REQUESTS,
            page_headers(),
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            LOGIN.replace(
                "<form method=\"post\"",
                "<p class=\"error\" role=\"alert\">Too many attempts for this account; wait and retry.</p>\n  <form method=\"post\"",
            ),
        )
            .into_response();
        return crate::http::with_retry_after(r, &d);
    }
    let Some(check) = (state.users)
        .check_password_bounded(&form.username, form.password)
        .await
    else {
        return crate::http::busy();
    };
    let valid = check == PasswordCheck::Valid(Role::Operator);
    // Scored, stepped up and reported like a `/login`: the operator form is no way
    // around a playbook's step-up or the brute-force detection.
    let attempt = match (&state.gateway, facts) {
        (Some(gw), Some(axum::Extension(facts))) => {
            (gw.operator_attempt(&facts, &headers, &account, valid, &form.code)).await
        }
        _ if valid => OperatorAttempt::Pass,
        _ => OperatorAttempt::Wrong,
    };
    match attempt {
        OperatorAttempt::Pass => {}
        OperatorAttempt::Wrong => return wrong_credentials(),
        OperatorAttempt::CodeRequired => return code_required(),
        OperatorAttempt::Unavailable(r) => return r,
    }
    let value = state.sessions.open(&account);
    let cookie = format!(
        "{COOKIE}={value}{}; Max-Age={}",
        state.cookie_attributes(),
        SESSION_TTL.as_secs()
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// The sign-in page with "wrong username or password": the one refusal for anyone.
fn wrong_credentials() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        page_headers(),
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        LOGIN.replace(
            "<form method=\"post\"",
            "<p class=\"error\" role=\"alert\">Wrong username or password.</p>\n  <form method=\"post\"",
        ),
    )
        .into_response()
}

/// The sign-in page asking for the authenticator's code (missing or wrong).
fn code_required() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        page_headers(),
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        LOGIN.replace(
            "<form method=\"post\"",
            "<p class=\"error\" role=\"alert\">This sign-in needs the one-time code from your authenticator.</p>\n  <form method=\"post\"",
        ),
    )
        .into_response()
}

/// `POST /dashboard/logout`.
pub async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if let Some(c) = session_cookie(&headers) {
        state.sessions.close(c);
    }
    let mut r = Redirect::to("/").into_response();
    let cleared = format!("{COOKIE}={}; Max-Age=0", state.cookie_attributes());
    if let Ok(v) = HeaderValue::from_str(&cleared) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// `GET /ws`: the dashboard stream, for an operator's page on this origin only (a
/// WebSocket is not covered by the same-origin policy: another site could open one
/// with the operator's cookie).
pub async fn ws(
    State(state): State<AdminState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !state.is_our_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
    }
    let Some(cookie) = session_cookie(&headers).filter(|c| state.sessions.user(c).is_some()) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let ended = state.sessions.ended(cookie);
    let dashboard = state.dashboard.clone();
    let mut shutdown = state.shutdown.clone();
    upgrade
        .max_message_size(4096) // the browser sends nothing but close frames
        .on_upgrade(move |socket| async move {
            // The stream ends with the server or with the session that opened it.
            let stop = async move {
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => {}
                    () = ended => {}
                }
            };
            serve_socket(socket, dashboard, stop).await;
        })
}

struct Asset {
    path: &'static str,
    mime: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 6] = [
    Asset {
        path: "app.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/app.js"),
    },
    Asset {
        path: "style.css",
        mime: "text/css; charset=utf-8",
        bytes: include_bytes!("../static/style.css"),
    },
    Asset {
        path: "vendor/d3-array.min.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/vendor/d3-array.min.js"),
    },
    Asset {
        path: "vendor/d3-geo.min.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/vendor/d3-geo.min.js"),
    },
    Asset {
        path: "vendor/topojson-client.min.js",
        mime: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../static/vendor/topojson-client.min.js"),
    },
    Asset {
        path: "vendor/countries-110m.json",
        mime: "application/json",
        bytes: include_bytes!("../static/vendor/countries-110m.json"),
    },
];

/// `GET /static/*path`: the page's files, from memory.
pub async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(a) => (page_headers(), [(header::CONTENT_TYPE, a.mime)], a.bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
