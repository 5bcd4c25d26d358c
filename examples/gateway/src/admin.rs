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
use crate::shared::RedisConn;
use crate::users::{PasswordCheck, Role, Users};
use palisade_token_blacklist::redis;

/// The session cookie's name.
pub const COOKIE: &str = "palisade_admin";
/// How long an operator session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How often an open dashboard WebSocket checks that its session is still live.
pub const SESSION_CHECK: Duration = Duration::from_secs(1);
/// Sessions kept at once (a flood of sign-ins cannot grow memory).
const MAX_SESSIONS: usize = 1024;

/// Operator sessions, keyed by the SHA-256 of their cookie value (a leaked table does
/// not give working cookies): in this process, or with `--redis` on the fleet's Redis,
/// so that a session opened on one instance holds on every other (no sticky routing
/// needed) and ends on all of them.
pub struct Sessions {
    store: SessionStore,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
}

enum SessionStore {
    Memory(Mutex<MemorySessions>),
    /// `{prefix}:s:<digest>` → user, expiring with the session; `{prefix}:u:<user>` →
    /// the user's digests; `{prefix}:g:<user>` → how many times the user's sessions
    /// were ended (for a session's lifetime). One hash tag: a cluster keeps them in
    /// one slot.
    Redis {
        conn: RedisConn,
        prefix: String,
    },
}

#[derive(Default)]
struct MemorySessions {
    /// Digest → (user, end on the monotonic clock).
    live: HashMap<[u8; 32], (String, Duration)>,
    /// How many times each user's sessions were ended, for at most [`MAX_ENDED`]
    /// users; past that the map starts again and `base` goes up, which refuses every
    /// sign-in in flight once (they are told to sign in again).
    ended: HashMap<String, u64>,
    base: u64,
}

impl MemorySessions {
    fn generation(&self, user: &str) -> Generation {
        Generation {
            base: self.base,
            ended: self.ended.get(user).copied().unwrap_or(0),
        }
    }
}

/// Users whose ends one instance remembers in memory.
const MAX_ENDED: usize = 4096;

/// How many times a user's sessions had been ended when a sign-in began
/// ([`Sessions::generation`]): [`Sessions::open`] refuses a session if it changed since,
/// so a sign-in that raced a playbook's `terminate_sessions` does not survive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generation {
    pub(crate) base: u64,
    pub(crate) ended: u64,
}

/// What [`Sessions::open`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// A session: the cookie value.
    Session(String),
    /// The user's sessions were ended after the sign-in began: none opened.
    Ended,
    /// The shared store cannot be reached: none opened.
    Unavailable,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match self.store {
            SessionStore::Memory(_) => "memory",
            SessionStore::Redis { .. } => "redis",
        };
        f.debug_struct("Sessions").field("store", &store).finish()
    }
}

/// Opens a session unless the user's sessions were ended since the sign-in began:
/// `KEYS[1]` the session, `KEYS[2]` the user's set, `KEYS[3]` the user's generation,
/// `ARGV[1]` the user, `ARGV[2]` the digest, `ARGV[3]` the lifetime (ms), `ARGV[4]`
/// the generation the sign-in read. Returns 1 if opened, 0 if ended meanwhile.
const OPEN_SESSION_LUA: &str = r"
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[4] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1";
/// Ends every session of a user and counts it in the user's generation: `KEYS[1]`
/// the user's set, `KEYS[2]` the user's generation, `ARGV[1]` the session key prefix,
/// `ARGV[2]` how long the generation is kept (ms: a session's lifetime, far longer
/// than a sign-in takes). Returns how many were live.
const END_USER_LUA: &str = r"
redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
local n = 0
for _, d in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  n = n + redis.call('DEL', ARGV[1] .. d)
end
redis.call('DEL', KEYS[1])
return n";
static OPEN_SESSION: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(OPEN_SESSION_LUA));
static END_USER: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(END_USER_LUA));

fn digest_of(cookie: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, cookie.as_bytes()).as_ref());
    out
}

impl Sessions {
    /// No session yet, in this process; expiry runs on `clock`'s monotonic time.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Sessions {
            store: SessionStore::Memory(Mutex::default()),
            clock,
            rng: SystemRandom::new(),
        }
    }

    /// Sessions on the fleet's Redis, under `prefix`.
    pub fn shared(clock: Arc<dyn Clock>, conn: RedisConn, prefix: &str) -> Self {
        Sessions {
            store: SessionStore::Redis {
                conn,
                prefix: format!("{prefix}:{{operators}}"),
            },
            clock,
            rng: SystemRandom::new(),
        }
    }

    /// Where the user's sessions stand before a sign-in checks anything: pass it to
    /// [`open`](Self::open). `None` when the shared store cannot be reached.
    pub async fn generation(&self, user: &str) -> Option<Generation> {
        match &self.store {
            SessionStore::Memory(m) => {
                Some(m.lock().unwrap_or_else(|e| e.into_inner()).generation(user))
            }
            SessionStore::Redis { conn, prefix } => {
                let get = redis::cmd("GET").arg(format!("{prefix}:g:{user}")).clone();
                match conn.query::<Option<u64>>(&get).await {
                    Ok(ended) => Some(Generation {
                        base: 0,
                        ended: ended.unwrap_or(0),
                    }),
                    Err(e) => {
                        tracing::error!(error = %e, "operator sessions unreachable; sign-in refused");
                        None
                    }
                }
            }
        }
    }

    /// A new session for `user` (cookie value: 32 random bytes, hex), unless the
    /// user's sessions were ended after `seen` was read.
    pub async fn open(&self, user: &str, seen: Generation) -> Opened {
        let mut bytes = [0u8; 32];
        self.rng
            .fill(&mut bytes)
            .unwrap_or_else(|_| unreachable!("the OS random source failed"));
        let value = hex::encode(bytes);
        let digest = digest_of(&value);
        match &self.store {
            SessionStore::Memory(m) => {
                let now = self.clock.monotonic();
                let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
                if s.generation(user) != seen {
                    return Opened::Ended;
                }
                s.live.retain(|_, (_, until)| *until > now);
                if s.live.len() >= MAX_SESSIONS {
                    // The oldest-expiring session goes first.
                    let oldest = s.live.iter().min_by_key(|(_, (_, u))| *u).map(|(k, _)| *k);
                    if let Some(k) = oldest {
                        s.live.remove(&k);
                    }
                }
                s.live.insert(digest, (user.to_owned(), now + SESSION_TTL));
            }
            SessionStore::Redis { conn, prefix } => {
                let mut call = OPEN_SESSION.prepare_invoke();
                call.key(format!("{prefix}:s:{}", hex::encode(digest)))
                    .key(format!("{prefix}:u:{user}"))
                    .key(format!("{prefix}:g:{user}"))
                    .arg(user)
                    .arg(hex::encode(digest))
                    .arg(SESSION_TTL.as_millis() as u64)
                    .arg(seen.ended);
                match conn.invoke::<i64>(&call).await {
                    Ok(1) => {}
                    Ok(_) => return Opened::Ended,
                    Err(e) => {
                        tracing::error!(error = %e, "operator session not stored; sign-in refused");
                        return Opened::Unavailable;
                    }
                }
            }
        }
        Opened::Session(value)
    }

    /// The operator behind a cookie value, if the session is live (the shared store
    /// unreachable: nobody, fail closed).
    pub async fn user(&self, cookie: &str) -> Option<String> {
        self.user_of(&digest_of(cookie)).await
    }

    async fn user_of(&self, digest: &[u8; 32]) -> Option<String> {
        match &self.store {
            SessionStore::Memory(m) => {
                let now = self.clock.monotonic();
                let s = m.lock().unwrap_or_else(|e| e.into_inner());
                (s.live.get(digest))
                    .filter(|(_, until)| *until > now)
                    .map(|(u, _)| u.clone())
            }
            SessionStore::Redis { conn, prefix } => {
                let get = redis::cmd("GET")
                    .arg(format!("{prefix}:s:{}", hex::encode(digest)))
                    .clone();
                conn.query::<Option<String>>(&get)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "operator sessions unreachable: signed out");
                        None
                    })
            }
        }
    }

    /// Returns once the session of `cookie` has ended (signed out, expired, pushed
    /// out or ended elsewhere in the fleet), or at once if it is not live. Checked
    /// every [`SESSION_CHECK`].
    pub fn ended(self: &Arc<Self>, cookie: &str) -> impl Future<Output = ()> + Send + 'static {
        let digest = digest_of(cookie); // the cookie itself is not kept
        let sessions = self.clone();
        async move {
            let mut every = tokio::time::interval(SESSION_CHECK);
            while sessions.user_of(&digest).await.is_some() {
                every.tick().await;
            }
        }
    }

    /// Ends a session.
    pub async fn close(&self, cookie: &str) {
        let digest = digest_of(cookie);
        match &self.store {
            SessionStore::Memory(m) => {
                (m.lock().unwrap_or_else(|e| e.into_inner()).live).remove(&digest);
            }
            SessionStore::Redis { conn, prefix } => {
                // The user's set keeps a dead digest until it expires: harmless.
                let del = redis::cmd("DEL")
                    .arg(format!("{prefix}:s:{}", hex::encode(digest)))
                    .clone();
                if let Err(e) = conn.query::<i64>(&del).await {
                    tracing::warn!(error = %e, "operator session not ended on Redis; it expires");
                }
            }
        }
    }

    /// Ends every session of `user` (normalized), and the sign-ins of theirs in flight
    /// (see [`Generation`]); returns how many sessions were live.
    pub async fn end_user(&self, user: &str) -> Result<u64, redis::RedisError> {
        match &self.store {
            SessionStore::Memory(m) => {
                let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
                if s.ended.len() >= MAX_ENDED && !s.ended.contains_key(user) {
                    s.ended.clear();
                    s.base += 1;
                }
                *s.ended.entry(user.to_owned()).or_default() += 1;
                let before = s.live.len();
                s.live.retain(|_, (u, _)| u != user);
                Ok((before - s.live.len()) as u64)
            }
            SessionStore::Redis { conn, prefix } => {
                let mut call = END_USER.prepare_invoke();
                call.key(format!("{prefix}:u:{user}"))
                    .key(format!("{prefix}:g:{user}"))
                    .arg(format!("{prefix}:s:"))
                    .arg(SESSION_TTL.as_millis() as u64);
                conn.invoke::<u64>(&call).await
            }
        }
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

    /// A browser's form post from another origin (a sibling subdomain that
    /// `SameSite=Strict` lets through, or `null` from a sandboxed frame): refused. A
    /// request without `Origin` is not a browser's cross-site one (browsers send it on
    /// every `POST`; our pages' `Referrer-Policy: same-origin` makes it our origin).
    fn is_cross_origin_post(&self, headers: &HeaderMap) -> bool {
        headers.contains_key(header::ORIGIN) && !self.is_our_origin(headers)
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

async fn operator(state: &AdminState, headers: &HeaderMap) -> Option<String> {
    let cookie = session_cookie(headers)?;
    state.sessions.user(cookie).await
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
        // Nothing to another origin; to ours, the page's own origin: with
        // `no-referrer` a browser's form post says `Origin: null`, which the sign-in
        // form must refuse (a sandboxed cross-site frame says it too).
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

const INDEX: &str = include_str!("../static/index.html");
const LOGIN: &str = include_str!("../static/login.html");

/// `GET /`: the dashboard for an operator, the sign-in page for anyone else.
pub async fn index(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let page = if operator(&state, &headers).await.is_some() {
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
    /// The step-up challenge the code answers (a hidden field of the page that asked).
    #[serde(default)]
    challenge: String,
}

/// `POST /dashboard/login`: operators only; anyone else gets the same refusal.
pub async fn login(
    State(state): State<AdminState>,
    facts: Option<axum::Extension<crate::http::RequestFacts>>,
    tls: Option<axum::Extension<crate::http::ClientTls>>,
    headers: HeaderMap,
    Form(form): Form<SignIn>,
) -> Response {
    if state.is_cross_origin_post(&headers) {
        return cross_origin_post();
    }
    let tls = tls.map(|axum::Extension(t)| t);
    let facts = facts.map(|axum::Extension(f)| f);
    let account = palisade_core_traits::normalize_user_id(&form.username).into_owned();
    if !Users::could_exist(&account) {
        return wrong_credentials(); // as on `/login`: no account has such a name
    }
    let d = state.account_limit.check(&account).await;
    if !d.allowed && d.denial != Some(palisade_ratelimit::Denial::Limited) {
        return crate::http::undecided(&d);
    }
    if !d.allowed {
        if let (Some(gw), Some(facts)) = (&state.gateway, &facts) {
            gw.limited_attempt(facts, &account, &headers, tls.as_ref())
                .await;
        }
        let r = sign_in_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts for this account; wait and retry.",
        );
        return crate::http::with_retry_after(r, &d);
    }
    // Read before anything is checked: a playbook that ends the user's sessions
    // while this sign-in is scored or stepped up ends it too.
    let Some(generation) = state.sessions.generation(&account).await else {
        return crate::http::sessions_unavailable();
    };
    let Some(check) = (state.users)
        .check_password_bounded(&form.username, form.password)
        .await
    else {
        return crate::http::busy();
    };
    let valid = check == PasswordCheck::Valid(Role::Operator);
    // Scored, stepped up and reported like a `/login`: the operator form is no way
    // around a playbook's step-up or the brute-force detection.
    let attempt = match (&state.gateway, &facts) {
        (Some(gw), Some(facts)) => {
            let (code, challenge) = (&form.code, &form.challenge);
            (gw.operator_attempt(
                facts,
                &headers,
                tls.as_ref(),
                &account,
                valid,
                (code, challenge),
                generation,
            ))
            .await
        }
        // The gateway's front layer sets the facts: without them nothing was scored.
        (Some(_), None) => {
            tracing::error!("operator sign-in without request facts: refused");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        (None, _) if valid => OperatorAttempt::Pass,
        (None, _) => OperatorAttempt::Wrong,
    };
    match attempt {
        OperatorAttempt::Pass => {}
        OperatorAttempt::Wrong => return wrong_credentials(),
        OperatorAttempt::Ended => return sessions_ended(),
        OperatorAttempt::CodeRequired { challenge, refused } => {
            return code_required(&challenge, refused);
        }
        OperatorAttempt::Unavailable(r) => return r,
    }
    let value = match state.sessions.open(&account, generation).await {
        Opened::Session(value) => value,
        Opened::Ended => return sessions_ended(),
        Opened::Unavailable => return crate::http::sessions_unavailable(),
    };
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

/// The account's sessions were ended (a playbook's `terminate_sessions`) while it
/// signed in: signing in again goes through whatever the playbook asked for.
fn sessions_ended() -> Response {
    sign_in_error(
        StatusCode::UNAUTHORIZED,
        "This account's sessions were just ended; sign in again.",
    )
}

/// The sign-in page with "wrong username or password": the one refusal for anyone.
fn wrong_credentials() -> Response {
    sign_in_error(StatusCode::UNAUTHORIZED, "Wrong username or password.")
}

/// The sign-in page with `message` above the form, announced to screen readers.
fn sign_in_error(status: StatusCode, message: &str) -> Response {
    let alert = format!("<p class=\"error\" role=\"alert\">{message}</p>\n  <form method=\"post\"");
    (
        status,
        page_headers(),
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        LOGIN.replace("<form method=\"post\"", &alert),
    )
        .into_response()
}

/// The sign-in page asking for the authenticator's code, carrying the step-up
/// `challenge` (hex, generated here: nothing of the client's is echoed).
fn code_required(challenge: &str, refused: bool) -> Response {
    let message = if refused {
        "Wrong or expired one-time code: sign in again with a new one."
    } else {
        "This sign-in needs the one-time code from your authenticator."
    };
    let page = LOGIN
        .replace(
            "<form method=\"post\"",
            &format!("<p class=\"error\" role=\"alert\">{message}</p>\n  <form method=\"post\""),
        )
        .replace(
            "<button type=\"submit\">",
            &format!(
                "<input type=\"hidden\" name=\"challenge\" value=\"{}\">\n    <button type=\"submit\">",
                hex::encode(hex::decode(challenge).unwrap_or_default())
            ),
        );
    (
        StatusCode::UNAUTHORIZED,
        page_headers(),
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

/// A form posted from another origin: nothing of it is done.
fn cross_origin_post() -> Response {
    (StatusCode::FORBIDDEN, "cross-origin form post refused").into_response()
}

/// `POST /dashboard/logout`.
pub async fn logout(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if state.is_cross_origin_post(&headers) {
        return cross_origin_post();
    }
    if let Some(c) = session_cookie(&headers) {
        state.sessions.close(c).await;
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
    let Some(cookie) = session_cookie(&headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    if state.sessions.user(cookie).await.is_none() {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core_traits::SystemClock;

    /// A playbook's `terminate_sessions` that lands while an operator signs in (the
    /// password checked, the risk scored) ends that sign-in too; one that began after
    /// it opens a session. (The same on Redis: `fleet.rs`.)
    #[tokio::test]
    async fn a_sign_in_in_flight_when_its_sessions_end_opens_none() {
        let sessions = Sessions::new(Arc::new(SystemClock));
        let began = sessions.generation("alice").await.unwrap();
        let other = sessions.generation("bob").await.unwrap();
        assert_eq!(sessions.end_user("alice").await.unwrap(), 0);
        assert_eq!(sessions.open("alice", began).await, Opened::Ended);
        let Opened::Session(bob) = sessions.open("bob", other).await else {
            panic!("another user's sign-in is not ended");
        };
        let again = sessions.generation("alice").await.unwrap();
        let Opened::Session(alice) = sessions.open("alice", again).await else {
            panic!("a sign-in begun after the end opens a session");
        };
        assert_eq!(sessions.user(&alice).await.as_deref(), Some("alice"));
        assert_eq!(sessions.end_user("alice").await.unwrap(), 1);
        assert_eq!(sessions.user(&alice).await, None);
        assert_eq!(sessions.user(&bob).await.as_deref(), Some("bob"));
    }

    /// Past `MAX_ENDED` users the memory of ends starts again: every sign-in in
    /// flight then is refused once rather than one that raced an end forgotten.
    #[tokio::test]
    async fn forgetting_ends_refuses_the_sign_ins_in_flight() {
        let sessions = Sessions::new(Arc::new(SystemClock));
        let began = sessions.generation("alice").await.unwrap();
        for i in 0..MAX_ENDED {
            sessions.end_user(&format!("user{i}")).await.unwrap();
        }
        let Opened::Session(_) = sessions.open("alice", began).await else {
            panic!("the ends so far are remembered: alice's sign-in opens");
        };
        let began = sessions.generation("alice").await.unwrap();
        sessions.end_user("one-more").await.unwrap();
        assert_eq!(sessions.open("alice", began).await, Opened::Ended);
        let again = sessions.generation("alice").await.unwrap();
        assert!(matches!(
            sessions.open("alice", again).await,
            Opened::Session(_)
        ));
    }
}
