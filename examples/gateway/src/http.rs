//! The request path: middleware (request id, client address, threat intelligence,
//! per-address limit, bearer tokens) and the handlers (login, step-up, logout, JWKS,
//! the API, operations).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use palisade_core_traits::{
    EventId, EventKind, LoginOutcome, RequestContext, SecurityEvent, Severity, Subject,
    TokenIdentity, TokenRevoker, normalize_user_id,
};
use palisade_device_fp::{DeviceFingerprint, DeviceStore, FingerprintInputs, consistency_flags};
use palisade_jwt_cache::ValidatedToken;
use palisade_ratelimit::{Denial, KeyedLimiter, Quota, nz};
use palisade_threat_score::{GeoLookup, Signals, Verdict};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::json;

use crate::activity::{Activity, LoginResult, Origin, What};
use crate::admin::Generation;
use crate::service::{AUDIENCE, Gateway, IP_POLICY, TOKEN_TTL};
use crate::users::{PasswordCheck, Users};

/// The request's id (`X-Request-Id`: the client's if well-formed, else a new one).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// What [`Front`] learned of a request, for the handlers: its id, and the client
/// address (from the peer and the trusted proxies' headers). One extension, not two:
/// each insert into a request's extensions is an allocation, and an eighth one grows
/// their table again.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    /// The request's id.
    pub id: RequestId,
    /// The client address.
    pub ip: IpAddr,
}

/// The client's TLS handshake (JA4, version, SNI) when the gateway serves TLS itself.
#[derive(Debug, Clone)]
pub struct ClientTls(pub palisade_core_traits::TlsInfo);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut b)
        .unwrap_or_else(|_| unreachable!("the OS random source failed"));
    hex::encode(b)
}

/// A new request id (24 hex digits): this process's random prefix and a counter,
/// unique without a system call per request (an id is not a secret).
fn new_request_id() -> String {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| random_hex(6));
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut id = String::with_capacity(24);
    id.push_str(prefix);
    // The counter's low 48 bits, 12 hex digits (no formatting machinery per request).
    id.extend((0..12).rev().map(|i| {
        let digit = ((n >> (4 * i)) & 0xf) as u32;
        char::from_digit(digit, 16).unwrap_or('0')
    }));
    id
}

/// A random identifier (16 hex digits).
pub fn random_id() -> String {
    random_hex(8)
}

pub(crate) fn problem(status: StatusCode, error: &str, detail: &str) -> Response {
    (status, Json(json!({"error": error, "detail": detail}))).into_response()
}

/// `r` with the `Retry-After` of a denied decision `d` (none if it can never pass).
pub(crate) fn with_retry_after(mut r: Response, d: &palisade_ratelimit::Decision) -> Response {
    if let Some(v) =
        palisade_ratelimit::headers::retry_after(d).and_then(|s| HeaderValue::from_str(&s).ok())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// The per-account limit could not decide (a full table, Redis out of reach under a
/// closed policy): the server's condition, not the account's. `503`, `Retry-After`.
pub(crate) fn undecided(d: &palisade_ratelimit::Decision) -> Response {
    let r = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "sign-ins cannot be checked right now; retry later",
    );
    with_retry_after(r, d)
}

/// Every password check is taken ([`Users::check_password_bounded`]): retry soon.
pub(crate) fn busy() -> Response {
    let mut r = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "too many sign-ins are being checked; retry in a second",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

impl Gateway {
    /// Where an address is, for the map (GeoIP).
    pub fn origin(&self, ip: IpAddr) -> Origin {
        let g = self.geo.lookup(ip);
        Origin {
            ip: Some(ip),
            country: g.country,
            location: g.location,
            asn: g.asn,
            ja4: None,
        }
    }

    fn show(&self, req_id: &RequestId, ip: IpAddr, what: What) {
        self.show_tls(req_id, ip, None, what);
    }

    /// A refusal (`429`, a block, a deny-list hit). They come in floods, which the
    /// feed must survive: each is counted, but shown (located, on the feed, shared
    /// with the fleet) only within [`RefusalFeed`]'s bounds. Returns whether it was.
    fn show_refusal(&self, req_id: &RequestId, ip: IpAddr, what: What) -> bool {
        let shown = self.refusal_feed.admits(ip);
        if shown {
            self.show(req_id, ip, what);
        } else {
            let origin = Origin {
                ip: Some(ip),
                ..Origin::default()
            };
            self.dashboard
                .count(&Activity::new(self.clock.now(), origin, what));
        }
        shown
    }

    /// Like `show`, with the client's JA4 when the connection was TLS.
    fn show_tls(&self, req_id: &RequestId, ip: IpAddr, tls: Option<&ClientTls>, what: What) {
        let mut origin = self.origin(ip);
        origin.ja4 = tls.and_then(|t| t.0.ja4.clone());
        self.dashboard.publish(
            Activity::new(self.clock.now(), origin, what).with_request_id(req_id.0.clone()),
        );
    }

    async fn detect(&self, event: SecurityEvent) {
        self.bus.publish(event).await;
    }

    fn event_id(&self, what: &str) -> EventId {
        EventId::new(format!("gateway-{what}-{}", random_hex(8)))
            .unwrap_or_else(|e| unreachable!("a generated id is valid: {e}"))
    }
}

/// How many refusals the feed shows: per client address (a /64 for IPv6, as the
/// limits count), and in all.
#[derive(Debug)]
pub struct RefusalFeed {
    per_address: KeyedLimiter<IpAddr>,
    all: KeyedLimiter<bool>,
}

impl RefusalFeed {
    /// Shown per address: bursts of 5, then 1 a second. In all: 100 a second.
    pub fn new() -> Self {
        RefusalFeed {
            per_address: KeyedLimiter::new(
                (Quota::per_second(nz!(1)).with_burst(nz!(5)))
                    .unwrap_or_else(|e| unreachable!("a 5 s burst window: {e}")),
            ),
            all: KeyedLimiter::new(Quota::per_second(nz!(100))),
        }
    }

    /// Whether a refusal of `ip` is shown (counted against both bounds).
    fn admits(&self, ip: IpAddr) -> bool {
        let within = |d: Result<palisade_ratelimit::Decision, _>| d.is_ok_and(|d| d.allowed);
        within(self.per_address.check(&ip, 1)) && within(self.all.check(&true, 1))
    }
}

impl Default for RefusalFeed {
    fn default() -> Self {
        Self::new()
    }
}

/// The request's route, for the request count.
fn route_of(path: &str) -> &'static str {
    match path {
        "/login" => "login",
        "/login/step-up" => "step_up",
        "/logout" => "logout",
        p if p.starts_with("/api/") => "api",
        _ => "other",
    }
}

/// The request id the client sent, if it is well-formed.
fn client_request_id(req: &Request) -> Option<&str> {
    let id = req.headers().get(&REQUEST_ID)?.to_str().ok()?;
    let ok = (1..=64).contains(&id.len())
        && (id.bytes()).all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(id)
}

/// The outermost layer, once per request: request id, client address (from the peer
/// and the trusted proxies' headers) and a tracing span; the threat-intelligence deny
/// list. On the way out: the request count, the rate-limit layers' refusals (ratelimit's
/// `RateLimitLayer` answers them; this shows them on the dashboard and puts the
/// per-address ones on the bus) and `X-Request-Id`.
///
/// A tower service, not `from_fn` middleware: it calls the inner service before
/// building its future, so a request costs one boxed future and no clone of the
/// service behind it (the two `from_fn` layers this replaced cost 12 % of the
/// request path's instructions, docs/gateway.md).
#[derive(Clone)]
pub struct Front<S> {
    gw: Arc<Gateway>,
    inner: S,
}

/// Builds [`Front`].
#[derive(Clone)]
pub struct FrontLayer(pub Arc<Gateway>);

impl<S> tower::Layer<S> for FrontLayer {
    type Service = Front<S>;
    fn layer(&self, inner: S) -> Front<S> {
        Front {
            gw: self.0.clone(),
            inner,
        }
    }
}

/// What the gateway's own tower services answer.
pub(crate) type Answer = Result<Response, std::convert::Infallible>;
/// Their boxed future, for the paths that wait.
pub(crate) type BoxedAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

impl<S> tower::Service<Request> for Front<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = FrontFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let Some(&ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() else {
            tracing::error!("no peer address (serve with into_make_service_with_connect_info)");
            return FrontFuture::ready(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        };
        let id = client_request_id(&req).map_or_else(new_request_id, str::to_owned);
        let id_header = HeaderValue::from_str(&id).ok();
        let ip = {
            // Read only if a proxy is trusted (lazily), by a parsed name.
            let headers = [&X_FORWARDED_FOR, &header::FORWARDED]
                .into_iter()
                .flat_map(|name| {
                    let values = req.headers().get_all(name).iter();
                    // As bytes: a line that is not text still holds what our proxies
                    // appended to it.
                    values.map(move |v| (name.as_str(), v))
                });
            self.gw.proxies.client_ip(peer.ip(), headers)
        };
        // No span at all below `info`: a disabled one still costs its enter, exit and
        // drop on every poll (tracing's `log` feature, which axum turns on).
        let span = if tracing::enabled!(tracing::Level::INFO) {
            tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path(), client = %ip)
        } else {
            tracing::Span::none()
        };
        let out = Out {
            gw: self.gw.clone(),
            id: RequestId(id),
            ip,
            route: route_of(req.uri().path()),
            id_header,
        };
        if let Some(list) = self.gw.intel.as_ref().and_then(|i| i.matches(ip)) {
            let list = list.to_string();
            span.in_scope(|| (self.gw).show_refusal(&out.id, ip, What::IntelHit { list }));
            let r = problem(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the client address is on a deny list",
            );
            return FrontFuture::ready(out.finish(r));
        }
        req.extensions_mut().insert(RequestFacts {
            id: out.id.clone(),
            ip,
        });
        let answer = span.in_scope(|| self.inner.call(req));
        FrontFuture {
            kind: FrontKind::Inner {
                fut: tracing::Instrument::instrument(answer, span),
                out: Some(out),
            },
        }
    }
}

/// What [`Front`] does on the way out.
struct Out {
    gw: Arc<Gateway>,
    id: RequestId,
    ip: IpAddr,
    route: &'static str,
    id_header: Option<HeaderValue>,
}

impl Out {
    fn finish(self, mut response: Response) -> Response {
        crate::metrics::count_request(self.route, response.status().as_u16());
        if let Some(v) = self.id_header {
            response.headers_mut().insert(REQUEST_ID, v);
        }
        response
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Front`]: the inner service's in the request's span, then (a
    /// rate-limit refusal only) a boxed one that reports it.
    pub struct FrontFuture<F> {
        #[pin]
        kind: FrontKind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = FrontProjected]
    enum FrontKind<F> {
        Ready { response: Option<Response> },
        Inner { #[pin] fut: tracing::instrument::Instrumented<F>, out: Option<Out> },
        Refused { fut: BoxedAnswer },
    }
}

impl<F> FrontFuture<F> {
    fn ready(response: Response) -> Self {
        FrontFuture {
            kind: FrontKind::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F> std::future::Future for FrontFuture<F>
where
    F: std::future::Future<Output = Answer>,
{
    type Output = Answer;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Answer> {
        use std::task::Poll;
        let mut kind = self.project().kind;
        let (response, out, span) = match kind.as_mut().project() {
            FrontProjected::Ready { response } => {
                return match response.take() {
                    Some(r) => Poll::Ready(Ok(r)),
                    None => Poll::Pending, // polled after completion
                };
            }
            FrontProjected::Refused { fut } => return fut.as_mut().poll(cx),
            FrontProjected::Inner { mut fut, out } => {
                let Poll::Ready(Ok(response)) = fut.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                let Some(out) = out.take() else {
                    return Poll::Ready(Ok(response));
                };
                (response, out, fut.span().clone())
            }
        };
        let Some(policy) = refused_by(&response).map(str::to_owned) else {
            return Poll::Ready(Ok(out.finish(response)));
        };
        let mut report: BoxedAnswer = Box::pin(tracing::Instrument::instrument(
            async move {
                (out.gw.limited(&out.id, out.ip, response.status(), &policy)).await;
                Ok(out.finish(response))
            },
            span,
        ));
        let polled = report.as_mut().poll(cx);
        kind.set(FrontKind::Refused { fut: report });
        polled
    }
}

/// The policy a `RateLimitLayer` refusal names (`RateLimit-Policy: "name";q=…`).
fn refused_by(response: &Response) -> Option<&str> {
    if !matches!(
        response.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::FORBIDDEN
    ) {
        return None;
    }
    let field = response.headers().get("ratelimit-policy")?.to_str().ok()?;
    field.strip_prefix('"')?.split('"').next()
}

impl Gateway {
    /// A refusal by the limit `policy`: on the dashboard, and on the bus when it is the
    /// per-address limit (what playbooks answer) and shown. The feed's bounds (per
    /// address, and in all) keep a flood of `429`s, from one address or from many,
    /// from filling the bus, where it would push out other low and medium events
    /// (`credential_stuffing` is medium). The bound in all can be spent by decoys to
    /// hide another address's `rate_limit_exceeded` events; no default playbook acts
    /// on those (blocks answer `brute_force` and `credential_stuffing`).
    async fn limited(&self, id: &RequestId, ip: IpAddr, status: StatusCode, policy: &str) {
        if status == StatusCode::FORBIDDEN {
            let reason = "blocked by a playbook".into();
            self.show_refusal(id, ip, What::Blocked { reason });
            return;
        }
        let policy = policy.to_owned();
        let shown = self.show_refusal(
            id,
            ip,
            What::RateLimited {
                policy: policy.clone(),
            },
        );
        if policy != IP_POLICY || !shown {
            return;
        }
        let event = SecurityEvent::new(
            self.event_id("limit"),
            self.clock.now(),
            EventKind::RateLimitExceeded,
            Severity::Low,
            Subject::ip(ip),
            "palisade-gateway",
        )
        .with_evidence("policy", policy);
        self.detect(event).await;
    }
}

/// `POST /login` body.
#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

fn token_response(token: Option<String>) -> Response {
    let Some(token) = token else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "tokens cannot be issued right now",
        );
    };
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL.as_secs(),
        })),
    )
        .into_response()
}

impl Gateway {
    /// The token answer to a login that read `began` before it checked the password
    /// (`Ok`), or the refusal (`Err`) if a playbook ended the user's sessions since
    /// (`terminate_sessions`), or a token or the count cannot be had. The count is
    /// read again after the token is minted: an end after that read revokes the token
    /// (ends are counted before the tokens are revoked, and the revocation covers
    /// every token minted until it), an end before it refuses the login, so a login in
    /// flight does not outlive the end.
    pub async fn issue_unless_ended(
        &self,
        user: &str,
        began: Generation,
    ) -> Result<Response, Response> {
        let token = self.issue(user);
        match self.sessions.operators.generation(user).await {
            None => Err(sessions_unavailable()),
            Some(now) if now != began => Err(problem(
                StatusCode::UNAUTHORIZED,
                "sessions_ended",
                "this account's sessions were just ended; log in again",
            )),
            Some(_) if token.is_none() => Err(token_response(None)),
            Some(_) => Ok(token_response(token)),
        }
    }

    /// A signed access token for `user`, or `None` (logged) if signing failed.
    fn issue(&self, user: &str) -> Option<String> {
        let mut claims = serde_json::Map::new();
        claims.insert("iss".into(), self.config.issuer.clone().into());
        claims.insert("sub".into(), normalize_user_id(user).into_owned().into());
        claims.insert("aud".into(), AUDIENCE.into());
        claims.insert("jti".into(), random_hex(16).into());
        match self.keys.sign_jwt(claims, TOKEN_TTL) {
            Ok(t) => Some(t.compact),
            Err(e) => {
                tracing::error!(error = %e, "signing failed");
                None
            }
        }
    }

    /// The request as the crates see it.
    fn context_of(
        &self,
        ip: IpAddr,
        user: &str,
        headers: &HeaderMap,
        tls: Option<&ClientTls>,
    ) -> RequestContext {
        let mut ctx = RequestContext::new(ip, self.clock.now())
            .with_user(user)
            .with_request("POST", "/login");
        if let Some(t) = tls {
            // JA4 joins the device fingerprint (device-fp reads it from the context).
            ctx = ctx.with_tls(t.0.clone());
        }
        for (n, v) in headers {
            if let Ok(v) = v.to_str() {
                ctx = ctx.with_header(n.as_str(), v);
            }
        }
        ctx
    }
}

/// The largest request body any route reads (bodies are small here).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// Marks a `/login` request whose account limit [`keyed_login_gate`] already spent.
#[derive(Debug, Clone, Copy)]
pub struct AccountCounted;

/// The account a `/login` body names (nothing else of it is read here).
#[derive(Deserialize)]
struct LoginAccount {
    username: String,
}

/// In front of `/login`'s `Idempotency-Key` records: a request with a key spends the
/// account's limit before its record is compared or replayed. Otherwise someone who
/// shares a victim's address and learns the victim's key would get `422` for each
/// wrong password and the token for the right one, as fast as the address limit
/// allows. Over the limit it is `429`, and not counted as a failed login (it checked
/// no password: a client's retry storm must not look like a brute force). A body that
/// names no usable account goes on, for the handler to refuse.
pub async fn keyed_login_gate(
    State(gw): State<Arc<Gateway>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if !request
        .headers()
        .contains_key(crate::idempotency::IDEMPOTENCY_KEY)
    {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "request body too large",
        );
    };
    if let Ok(LoginAccount { username }) = serde_json::from_slice(&bytes) {
        let user = normalize_user_id(&username).into_owned();
        if Users::could_exist(&user) {
            let d = gw.account_limit.check(&user).await;
            if !d.allowed {
                return limited_login(&d);
            }
            parts.extensions.insert(AccountCounted);
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// The answer to a login over its account's limit (or one the limit could not decide).
fn limited_login(d: &palisade_ratelimit::Decision) -> Response {
    if d.denial != Some(Denial::Limited) {
        // Not held against the account or the client.
        return undecided(d);
    }
    let r = problem(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many login attempts for this account",
    );
    with_retry_after(r, d)
}

/// `POST /login`: per-account limit, device trust, risk, then allow, step up or deny.
pub async fn login(
    State(gw): State<Arc<Gateway>>,
    axum::Extension(RequestFacts { id, ip }): axum::Extension<RequestFacts>,
    tls: Option<axum::Extension<ClientTls>>,
    counted: Option<axum::Extension<AccountCounted>>,
    headers: HeaderMap,
    Json(body): Json<LoginBody>,
) -> Response {
    let tls = tls.map(|axum::Extension(t)| t);
    let user = normalize_user_id(&body.username).into_owned();
    if !Users::could_exist(&user) {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "username must be 1 to 256 characters",
        );
    }
    if counted.is_none() {
        let d = gw.account_limit.check(&user).await;
        if !d.allowed {
            // A guess refused by the limit is a failed login for risk and the
            // dashboard (brute-force detection sees it).
            if d.denial == Some(Denial::Limited) {
                gw.limited_attempt(&RequestFacts { id, ip }, &user, &headers, tls.as_ref())
                    .await;
            }
            return limited_login(&d);
        }
    }
    // Read before the password is checked: see `Gateway::issue_unless_ended`.
    let Some(began) = gw.sessions.operators.generation(&user).await else {
        return sessions_unavailable();
    };
    let Some(check) = gw.users.check_password_bounded(&user, body.password).await else {
        return busy();
    };
    let outcome = match check {
        PasswordCheck::Valid(_) => LoginOutcome::Success,
        PasswordCheck::Invalid => LoginOutcome::Failure,
    };
    let Assessed {
        ctx,
        signals,
        score,
        fp,
        known,
    } = gw.assess(ip, &user, &headers, tls.as_ref(), outcome);
    let step_up_required = gw.step_ups.required(&user).await;
    let result = match (outcome, score.verdict) {
        (LoginOutcome::Failure, _) => LoginResult::Failure,
        (_, Verdict::Block) => LoginResult::Denied,
        (_, Verdict::StepUp) => LoginResult::StepUp,
        _ if step_up_required => LoginResult::StepUp,
        _ => LoginResult::Success,
    };
    // A login about to succeed gets its token first: one refused then (the user's
    // sessions ended meanwhile, Redis gone) is no success to learn from, and shows
    // as denied.
    let issued = match result {
        LoginResult::Success => Some(gw.issue_unless_ended(&user, began).await),
        _ => None,
    };
    let result = match &issued {
        Some(Err(_)) => LoginResult::Denied,
        _ => result,
    };
    // Only a completed login teaches the history; a failure feeds the velocity counters.
    let teach = match result {
        LoginResult::Success => Some(LoginOutcome::Success),
        LoginResult::Failure => Some(LoginOutcome::Failure),
        _ => None,
    };
    if let Some(o) = teach {
        let _ = gw.scorer.record(&ctx.clone().with_login(o), &signals);
    }
    if known && matches!(result, LoginResult::Success) {
        gw.devices
            .observe(&user, &fp, Some(LoginOutcome::Success), &[]);
    }
    gw.show_tls(
        &id,
        ip,
        tls.as_ref(),
        What::Login {
            user: user.clone(),
            result,
            score: Some(score.score),
        },
    );
    if let Some(event) = gw.scorer.event(&ctx, &score) {
        gw.detect(event.with_evidence("request_id", id.0.clone()))
            .await;
    }
    match (result, issued) {
        (_, Some(answer)) => answer.unwrap_or_else(|refused| refused),
        (LoginResult::StepUp, None) => {
            let challenge = match gw.step_ups.open(&user, ip, began).await {
                Ok(c) => c,
                Err(e) => return step_ups_unavailable(&e),
            };
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Palisade-OTP")],
                Json(json!({
                    "error": "step_up_required",
                    "challenge": challenge,
                    "detail": "send the code from your authenticator to /login/step-up",
                })),
            )
                .into_response()
        }
        // A denied login is answered as a wrong password: a bot whose attempts score
        // as an attack must not learn which of its passwords are right.
        _ => problem(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        ),
    }
}

/// The shared store of sessions cannot be reached: `503` (fail closed).
pub(crate) fn sessions_unavailable() -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "sessions cannot be checked now; retry later",
    )
}

/// One sign-in attempt as risk sees it ([`Gateway::assess`]).
pub(crate) struct Assessed {
    ctx: RequestContext,
    signals: Signals,
    score: palisade_threat_score::ThreatScore,
    /// The device, to credit when the login ends with a token.
    fp: DeviceFingerprint,
    /// Whether the account exists (only then are its devices remembered).
    known: bool,
}

/// How an operator sign-in ends ([`Gateway::operator_attempt`]).
pub enum OperatorAttempt {
    /// A session may open.
    Pass,
    /// Answered as wrong credentials (wrong password, not an operator, or denied).
    Wrong,
    /// The password was right and the authenticator's code is needed: the step-up
    /// challenge the form carries next, and whether a code was just refused.
    CodeRequired {
        /// The challenge id (hex).
        challenge: String,
        /// A code was sent and refused.
        refused: bool,
    },
    /// The code passed, but the account's sessions were ended (a playbook's
    /// `terminate_sessions`) after the challenge was opened: no session.
    Ended,
    /// Something that must be checked cannot be: this answer.
    Unavailable(Response),
}

/// What the operator form's second factor decided ([`Gateway::operator_code`]).
enum SecondFactor {
    Passed,
    /// The code passed on a challenge opened before the account's sessions ended.
    Ended,
    /// The challenge to carry next (the same while it has attempts, a new one
    /// otherwise), and whether a code was refused.
    Ask {
        challenge: String,
        refused: bool,
    },
}

impl Gateway {
    /// Scores a sign-in attempt by `user` from `ip`: geo, and for an account that
    /// exists the device's familiarity (the device-trust decision of threat-score),
    /// the sighting recorded. A right password is no success of the device's yet:
    /// [`Gateway::device_learns`] credits it once the login ends with a token, or
    /// password-only attempts that are stepped up or denied would build its trust.
    pub(crate) fn assess(
        &self,
        ip: IpAddr,
        user: &str,
        headers: &HeaderMap,
        tls: Option<&ClientTls>,
        outcome: LoginOutcome,
    ) -> Assessed {
        let ctx = self.context_of(ip, user, headers, tls).with_login(outcome);
        let inputs = FingerprintInputs::from_request(&ctx);
        let flags = consistency_flags(&inputs, ctx.user_agent());
        let fp = DeviceFingerprint::compute(&self.fingerprint_key, &inputs);
        let mut signals = Signals::default();
        // Devices are remembered for accounts that exist: a flood of made-up names
        // must not grow the store (the in-memory one keeps every account it is shown).
        let known = self.users.role(user).is_some();
        if known {
            let failed = (outcome == LoginOutcome::Failure).then_some(outcome);
            let seen = self.devices.observe(user, &fp, failed, &flags);
            signals = signals.with_device_familiarity(seen.trust_before.score);
        }
        signals.geo = Some(self.geo.lookup(ip));
        let score = self.scorer.score_with(&ctx, &signals);
        Assessed {
            ctx,
            signals,
            score,
            fp,
            known,
        }
    }

    /// Records on the device of an attempt how its login ended: with a token, or
    /// with a wrong authenticator code.
    fn device_learns(&self, a: &Assessed, user: &str, outcome: LoginOutcome) {
        if a.known {
            self.devices.observe(user, &a.fp, Some(outcome), &[]);
        }
    }

    /// A sign-in the per-account limit refused before its password was checked: for
    /// risk a failed attempt (a brute force shows in the velocity signals although its
    /// guesses never reach Argon2), and a refusal on the dashboard.
    pub(crate) async fn limited_attempt(
        &self,
        RequestFacts { id, ip }: &RequestFacts,
        user: &str,
        headers: &HeaderMap,
        tls: Option<&ClientTls>,
    ) {
        let ctx = (self.context_of(*ip, user, headers, tls)).with_login(LoginOutcome::Failure);
        let mut signals = Signals::default();
        signals.geo = Some(self.geo.lookup(*ip));
        let score = self.scorer.score_with(&ctx, &signals);
        let _ = self.scorer.record(&ctx, &signals);
        if let Some(event) = self.scorer.event(&ctx, &score) {
            self.detect(event.with_evidence("request_id", id.0.clone()))
                .await;
        }
        let policy = "login-account".into();
        self.show_refusal(id, *ip, What::RateLimited { policy });
    }

    /// The password was right and every code of a challenge wrong: about the account.
    async fn codes_exhausted(&self, user: &str, ip: IpAddr) {
        let event = SecurityEvent::new(
            self.event_id("step-up"),
            self.clock.now(),
            EventKind::AccountTakeover,
            Severity::High,
            Subject::user(user),
            "palisade-gateway",
        )
        .with_basis(palisade_core_traits::EvidenceBasis::Authenticated)
        .with_evidence("ip", ip.to_string())
        .with_evidence(
            "reason",
            "every one-time code for an accepted password was wrong",
        );
        self.detect(event).await;
    }

    /// An operator's sign-in on the dashboard form, after its password was checked
    /// (`valid`), as a `/login` and its step-up: scored with the device, recorded,
    /// its alerts on the bus; denied as a wrong password; a playbook's step-up or a
    /// step-up verdict asks for the authenticator's `code` against the `challenge`
    /// the form carries (its attempts spent per code, a code accepted once in the
    /// fleet, every code of a challenge wrong: an account takeover event).
    #[allow(clippy::too_many_arguments)]
    pub async fn operator_attempt(
        &self,
        RequestFacts { id, ip }: &RequestFacts,
        headers: &HeaderMap,
        tls: Option<&ClientTls>,
        user: &str,
        valid: bool,
        (code, challenge): (&str, &str),
        began: Generation,
    ) -> OperatorAttempt {
        let ip = *ip;
        let outcome = if valid {
            LoginOutcome::Success
        } else {
            LoginOutcome::Failure
        };
        let a = self.assess(ip, user, headers, tls, outcome);
        if let Some(event) = self.scorer.event(&a.ctx, &a.score) {
            self.detect(event.with_evidence("request_id", id.0.clone()))
                .await;
        }
        let (result, answer) = if !valid {
            (LoginResult::Failure, OperatorAttempt::Wrong)
        } else if a.score.verdict == Verdict::Block {
            (LoginResult::Denied, OperatorAttempt::Wrong)
        } else if a.score.verdict == Verdict::StepUp || self.step_ups.required(user).await {
            match self.operator_code(ip, user, (code, challenge), began).await {
                Err(e) => return OperatorAttempt::Unavailable(step_ups_unavailable(&e)),
                Ok(SecondFactor::Passed) => (LoginResult::StepUpPassed, OperatorAttempt::Pass),
                Ok(SecondFactor::Ended) => (LoginResult::StepUpPassed, OperatorAttempt::Ended),
                Ok(SecondFactor::Ask { challenge, refused }) => (
                    if refused {
                        LoginResult::StepUpFailed
                    } else {
                        LoginResult::StepUp
                    },
                    OperatorAttempt::CodeRequired { challenge, refused },
                ),
            }
        } else {
            (LoginResult::Success, OperatorAttempt::Pass)
        };
        let teach = match result {
            LoginResult::Failure => Some(LoginOutcome::Failure),
            LoginResult::Success => Some(LoginOutcome::Success),
            LoginResult::StepUpPassed => Some(LoginOutcome::StepUpSuccess),
            LoginResult::StepUpFailed => Some(LoginOutcome::StepUpFailure),
            _ => None,
        };
        if let Some(o) = teach {
            let _ = self.scorer.record(&a.ctx.clone().with_login(o), &a.signals);
            // The device learns how the login ended (a failure of the password was
            // recorded when it was assessed).
            if o != LoginOutcome::Failure {
                self.device_learns(&a, user, o);
            }
        }
        let score = Some(a.score.score);
        self.show(
            id,
            ip,
            What::Login {
                user: user.to_owned(),
                result,
                score,
            },
        );
        answer
    }

    /// The operator form's second factor: `code` against the form's live `challenge`
    /// of this account (closed once a code passes). `began`: the account's sessions
    /// as this sign-in found them, which a new challenge keeps and an answered one
    /// must still match.
    async fn operator_code(
        &self,
        ip: IpAddr,
        user: &str,
        (code, challenge): (&str, &str),
        began: Generation,
    ) -> Result<SecondFactor, palisade_token_blacklist::redis::RedisError> {
        let live = match (code.is_empty(), challenge.is_empty()) {
            (false, false) => (self.step_ups.attempt(challenge, ip).await?)
                .filter(|ch| ch.user == normalize_user_id(user)),
            _ => None,
        };
        let ask = |challenge, refused| SecondFactor::Ask { challenge, refused };
        let Some(ch) = live else {
            return Ok(ask(self.step_ups.open(user, ip, began).await?, false));
        };
        let step = (self.users).totp_step(user, code, self.clock.now().as_unix_secs());
        let fresh = match step {
            Some(step) => self.step_ups.spend_totp_step(user, step).await?,
            None => false,
        };
        if fresh {
            self.step_ups.close(challenge).await?;
            if ch.began != began {
                return Ok(SecondFactor::Ended);
            }
            return Ok(SecondFactor::Passed);
        }
        if ch.attempts_left > 0 {
            return Ok(ask(challenge.to_owned(), true));
        }
        self.codes_exhausted(user, ip).await;
        Ok(ask(self.step_ups.open(user, ip, began).await?, true))
    }
}

/// The shared step-up store cannot be reached: `503` (fail closed).
fn step_ups_unavailable(e: &dyn std::error::Error) -> Response {
    tracing::error!(error = %e, "step-up store unavailable; refusing");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "step-up challenges cannot be checked now; retry later",
    )
}

/// `POST /login/step-up` body.
#[derive(Deserialize)]
pub struct StepUpBody {
    challenge: String,
    code: String,
}

/// `POST /login/step-up`: the one-time code for a challenge from the same address.
pub async fn step_up(
    State(gw): State<Arc<Gateway>>,
    axum::Extension(RequestFacts { id, ip }): axum::Extension<RequestFacts>,
    tls: Option<axum::Extension<ClientTls>>,
    headers: HeaderMap,
    Json(body): Json<StepUpBody>,
) -> Response {
    let tls = tls.map(|axum::Extension(t)| t);
    let ch = match gw.step_ups.attempt(&body.challenge, ip).await {
        Ok(ch) => ch,
        Err(e) => return step_ups_unavailable(&e),
    };
    let Some(ch) = ch else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "invalid_challenge",
            "unknown, expired or spent challenge",
        );
    };
    let step = (gw.users).totp_step(&ch.user, &body.code, gw.clock.now().as_unix_secs());
    let ok = match step {
        Some(step) => match gw.step_ups.spend_totp_step(&ch.user, step).await {
            Ok(fresh) => fresh,
            Err(e) => return step_ups_unavailable(&e),
        },
        None => false,
    };
    // The token first: a code that passed but gets none (the user's sessions ended
    // since the login began) teaches nothing.
    let issued = if ok {
        if let Err(e) = gw.step_ups.close(&body.challenge).await {
            return step_ups_unavailable(&e); // no token for a challenge that stays open
        }
        // Sessions ended since the login that opened the challenge end it too.
        Some(gw.issue_unless_ended(&ch.user, ch.began).await)
    } else {
        None
    };
    let (outcome, result) = match &issued {
        None => (Some(LoginOutcome::StepUpFailure), LoginResult::StepUpFailed),
        Some(Ok(_)) => (Some(LoginOutcome::StepUpSuccess), LoginResult::StepUpPassed),
        Some(Err(_)) => (None, LoginResult::Denied),
    };
    if let Some(outcome) = outcome {
        let ctx = gw
            .context_of(ip, &ch.user, &headers, tls.as_ref())
            .with_login(outcome);
        let mut signals = Signals::default();
        signals.geo = Some(gw.geo.lookup(ip));
        let _ = gw.scorer.record(&ctx, &signals);
        // The device answered the second factor (or failed to): that is what its trust
        // learns from this login.
        let fp =
            DeviceFingerprint::compute(&gw.fingerprint_key, &FingerprintInputs::from_request(&ctx));
        gw.devices.observe(&ch.user, &fp, Some(outcome), &[]);
    }
    gw.show_tls(
        &id,
        ip,
        tls.as_ref(),
        What::Login {
            user: ch.user.clone(),
            result,
            score: None,
        },
    );
    if let Some(answer) = issued {
        return answer.unwrap_or_else(|refused| refused);
    }
    if ch.attempts_left == 0 {
        gw.codes_exhausted(&ch.user, ip).await;
    }
    problem(
        StatusCode::UNAUTHORIZED,
        "invalid_code",
        "wrong or expired code",
    )
}

/// `GET /api/me`: the caller's claims.
pub async fn me(axum::Extension(token): axum::Extension<Arc<ValidatedToken>>) -> Response {
    Json(token.claims()).into_response()
}

/// `POST /logout`: revokes the caller's token at once.
pub async fn logout(
    State(gw): State<Arc<Gateway>>,
    axum::Extension(token): axum::Extension<Arc<ValidatedToken>>,
    axum::Extension(RequestFacts { id, ip }): axum::Extension<RequestFacts>,
) -> Response {
    let identity: &TokenIdentity = token.identity();
    match TokenRevoker::revoke_token(gw.blacklist.as_ref(), identity).await {
        Ok(()) => {
            gw.show(
                &id,
                ip,
                What::Revoked {
                    scope: "token".into(),
                    subject: identity.jti.clone().unwrap_or_default(),
                },
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "revocation failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the token could not be revoked; retry",
            )
        }
    }
}

/// `GET /.well-known/jwks.json`.
pub async fn jwks(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(gw.published_keys.load().as_ref().clone()),
    )
        .into_response()
}

/// `GET /healthz`: the process serves.
pub async fn healthz() -> &'static str {
    "ok"
}

/// How recently the revocation replica must have been proven in sync to be ready
/// (token-blacklist's default `fresh_within`).
const REPLICA_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// `GET /readyz`: the parts a request needs are ready (an active signing key; with
/// `--redis`, a revocation replica proven in sync).
///
/// Ready means a key signs. The CT monitor's per-log health is reported beside it but
/// never makes the gateway unready: logins do not depend on it, and a stopped log is
/// an alert on the dashboard and the bus, not a reason to refuse traffic.
pub async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    let keys = gw.keys.active().is_some();
    let status = if keys {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let ct = gw.ct.get().map_or(json!("off"), |c| json!(c.logs()));
    let mut body = json!({"keys": keys, "ct": ct});
    let mut status = status;
    if let Some(replica) = &gw.revocation_replica {
        // Until the replica is proven in sync every token is refused (fail closed):
        // not ready for traffic.
        let age = replica.freshness();
        let fresh = age.is_some_and(|a| a <= REPLICA_FRESH);
        body["revocations"] = json!({
            "fresh": fresh,
            "age_ms": age.map(|a| a.as_millis() as u64),
        });
        if !fresh {
            status = StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    (status, Json(body)).into_response()
}

/// Answers `/api/*` paths no route takes (after authentication).
pub async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_the_prefix_and_a_counter_in_24_hex_digits() {
        let a = new_request_id();
        let b = new_request_id();
        for id in [&a, &b] {
            assert_eq!(id.len(), 24, "{id}");
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
        }
        assert_eq!(a[..12], b[..12], "one prefix per process");
        let count = |id: &str| u64::from_str_radix(&id[12..], 16).unwrap();
        // Other tests may take ids in between, never the same one twice.
        assert!(count(&b) > count(&a), "{a} then {b}");
    }
}
