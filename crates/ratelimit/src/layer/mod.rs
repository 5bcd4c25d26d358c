//! `RateLimitLayer` (feature `tower`): rate limits requests by policies, each with
//! its limiter and its key, and answers refusals as HTTP.
//!
//! - Every policy must allow; the first that refuses is named in `RateLimit-Policy`
//!   and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11), with `Retry-After`.
//! - `429` for a spent quota, `403` for a blocked key, `503` + `Retry-After` when an
//!   in-memory table is full of live keys (the client spent no quota: the server ran
//!   out of room) or when Redis is down and the failure policy is closed; when it is
//!   open the request passes with `RateLimit-Degraded: fail-open` on the response,
//!   and with `RateLimit-Degraded: local-share` when this instance's share admitted
//!   it.
//! - Allowed responses carry no rate-limit fields unless the layer is built with
//!   [`RateLimitLayer::fields_on_allowed`]: then `RateLimit-Policy` (every policy)
//!   and `RateLimit` (each policy's `r` and `t` after this request) are appended.
//! - A key that cannot be formed (a missing header or subject) is `400`; no peer
//!   address (the server does not record it) is `500`.

mod key;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use key::KeyError;
pub use key::{AuthenticatedSubject, HttpKey, KeySource};

use crate::{Decision, Denial, Error, Limiter, Quota, headers};

/// The header set on a response admitted by `FailurePolicy::Open` while Redis was
/// down (no limit held for it).
pub const DEGRADED_HEADER: &str = "ratelimit-degraded";

/// The fields of draft-ietf-httpapi-ratelimit-headers-11, as names built once (a
/// `&str` name is parsed, and a name http does not know copied, at every use).
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// One policy of a layer: a name, the limiter that holds its state, and the key.
#[derive(Debug)]
pub struct RateLimitPolicy<L> {
    name: Box<str>,
    /// `"name"` as a Structured Field string, for the `RateLimit` field.
    sf_name: Box<str>,
    /// `RateLimit-Policy` member, rendered once.
    policy_field: HeaderValue,
    limiter: Arc<L>,
    key: KeySource,
}

impl<L> RateLimitPolicy<L> {
    /// A policy named `name` (advertised with `quota`), limited by `limiter` on `key`.
    /// The name must be printable ASCII (it is sent in headers).
    pub fn new(name: &str, quota: &Quota, limiter: Arc<L>, key: KeySource) -> Result<Self, Error> {
        let field = headers::ratelimit_policy(name, quota)?;
        let policy_field = HeaderValue::from_str(&field)
            .map_err(|_| Error::config("name", format!("{name:?} is not a header value")))?;
        let sf_name = headers::sf_string(name)?.into();
        Ok(RateLimitPolicy {
            name: name.into(),
            sf_name,
            policy_field,
            limiter,
            key,
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A tower `Layer` applying its policies to every request (all must allow).
#[derive(Debug)]
pub struct RateLimitLayer<L> {
    policies: Arc<[RateLimitPolicy<L>]>,
    /// Every policy's limiter answers at once: decide inside `call`.
    at_once: bool,
    /// Every policy's `RateLimit-Policy` member, joined, when allowed responses carry
    /// the fields ([`RateLimitLayer::fields_on_allowed`]).
    allowed_fields: Option<Arc<HeaderValue>>,
}

impl<L> Clone for RateLimitLayer<L> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            policies: self.policies.clone(),
            at_once: self.at_once,
            allowed_fields: self.allowed_fields.clone(),
        }
    }
}

impl<L: Limiter<HttpKey>> RateLimitLayer<L> {
    /// A layer checking `policies` in order (at least one).
    pub fn new(policies: Vec<RateLimitPolicy<L>>) -> Result<Self, Error> {
        if policies.is_empty() {
            return Err(Error::config("policies", "at least one policy is needed"));
        }
        let at_once = policies.iter().all(|p| p.limiter.answers_at_once());
        Ok(RateLimitLayer {
            policies: policies.into(),
            at_once,
            allowed_fields: None,
        })
    }

    /// Allowed responses carry the fields too: `RateLimit-Policy` naming every policy
    /// and `RateLimit` with each policy's `r` (units left) and `t` (seconds until its
    /// bucket is full) after this request, both appended to what the inner service
    /// set (a layer inside another adds its own members to the lists). A policy
    /// admitted while Redis was down (`RateLimit-Degraded`) has no `RateLimit` member:
    /// nobody knows its count. Off by default: an allowed response then costs a
    /// formatted header value and two allocations.
    pub fn fields_on_allowed(mut self) -> Self {
        let joined = (self.policies.iter())
            .map(|p| p.policy_field.to_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(", ");
        // Valid header values joined with ", " make a valid header value.
        self.allowed_fields = HeaderValue::from_str(&joined).ok().map(Arc::new);
        self
    }
}

impl<S, L> Layer<S> for RateLimitLayer<L> {
    type Service = RateLimit<S, L>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            policies: self.policies.clone(),
            at_once: self.at_once,
            allowed_fields: self.allowed_fields.clone(),
        }
    }
}

/// The service of [`RateLimitLayer`].
#[derive(Debug)]
pub struct RateLimit<S, L> {
    inner: S,
    policies: Arc<[RateLimitPolicy<L>]>,
    at_once: bool,
    allowed_fields: Option<Arc<HeaderValue>>,
}

impl<S: Clone, L> Clone for RateLimit<S, L> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            policies: self.policies.clone(),
            at_once: self.at_once,
            allowed_fields: self.allowed_fields.clone(),
        }
    }
}

/// What the policies answered.
enum Verdict {
    Pass(Admission),
    Refuse(Response<&'static str>),
}

/// The admitted decisions of one request, gathered policy by policy.
struct Admission {
    degraded: Degraded,
    /// The `RateLimit` members so far, when the layer sends fields on allowed
    /// responses.
    members: Option<String>,
}

impl Admission {
    fn add<L>(&mut self, p: &RateLimitPolicy<L>, d: &Decision) {
        let degraded = Degraded::of(d);
        self.degraded = self.degraded.max(degraded);
        if let Some(members) = &mut self.members
            && degraded == Degraded::No
        {
            if !members.is_empty() {
                members.push_str(", ");
            }
            headers::push_ratelimit(members, &p.sf_name, d);
        }
    }

    /// Marks the response: `RateLimit-Degraded`, and the fields appended (both are
    /// lists, and a layer inside this one may have set its own members).
    fn mark<ResBody>(self, response: &mut Response<ResBody>, policy: Option<&HeaderValue>) {
        let h = response.headers_mut();
        if let Some(policy) = policy {
            h.append(RATELIMIT_POLICY, policy.clone());
        }
        if let Some(v) = (self.members)
            .filter(|m| !m.is_empty())
            .and_then(|m| HeaderValue::from_str(&m).ok())
        {
            h.append(RATELIMIT, v);
        }
        mark(response, self.degraded);
    }
}

/// How much of the limit held for an admitted request while Redis was down: the
/// response says so (`RateLimit-Degraded`). Ordered: the weakest policy's answer wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Degraded {
    /// Every limit held.
    No,
    /// Only this instance's share of a quota held (`FailurePolicy::LocalShare`).
    LocalShare,
    /// No limit held (`FailurePolicy::Open`).
    Open,
}

impl Degraded {
    #[inline]
    fn of(d: &Decision) -> Degraded {
        if d.failed_open {
            Degraded::Open
        } else if d.local_share {
            Degraded::LocalShare
        } else {
            Degraded::No
        }
    }
}

/// Every policy's key, formed before any await (the request need not be `Sync`):
/// the first apart, so one policy costs no allocation.
fn keys_of<L, B>(
    policies: &[RateLimitPolicy<L>],
    req: &Request<B>,
) -> Result<(HttpKey, Vec<HttpKey>), KeyError> {
    let peer = peer_of(req);
    let first = policies[0].key.extract(peer, req)?;
    let rest = policies[1..]
        .iter()
        .map(|p| p.key.extract(peer, req))
        .collect::<Result<_, _>>()?;
    Ok((first, rest))
}

async fn verdict<L: Limiter<HttpKey>>(
    policies: &[RateLimitPolicy<L>],
    (first, rest): (HttpKey, Vec<HttpKey>),
    fields: bool,
) -> Verdict {
    let keys = || policies.iter().zip(std::iter::once(&first).chain(&rest));
    // Every policy after the first is peeked before any is spent (see `decide_now`).
    for (p, key) in keys().skip(1) {
        if let Err(refusal) = answer(p, p.limiter.check(key, 0).await) {
            return Verdict::Refuse(refusal);
        }
    }
    let mut admission = Admission {
        degraded: Degraded::No,
        // Room for a usual member per policy: one allocation.
        members: fields.then(|| String::with_capacity(40 * policies.len())),
    };
    for (p, key) in keys() {
        match p.limiter.check(key, 1).await {
            Ok(d) if d.allowed => admission.add(p, &d),
            refused => {
                if let Err(refusal) = answer(p, refused) {
                    return Verdict::Refuse(refusal);
                }
            }
        }
    }
    Verdict::Pass(admission)
}

/// A policy's answer: admitted (and how degraded), or the refusal. A key the
/// limiter refuses (a header value longer than Redis keys may be) is the client's
/// `400`, not an outage.
// The large `Err` is the refusal itself, built once, on the refusal path only.
#[allow(clippy::result_large_err)]
#[inline]
fn answer<L>(
    p: &RateLimitPolicy<L>,
    checked: Result<Decision, Error>,
) -> Result<Degraded, Response<&'static str>> {
    match checked {
        Ok(d) if d.allowed => Ok(Degraded::of(&d)),
        Ok(d) => Err(refusal(p, &d)),
        Err(Error::InvalidKey { .. }) => Err(KeyError::Invalid.response()),
        Err(e) => {
            tracing::warn!(policy = &*p.name, error = %e, "rate limit check failed");
            Err(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "rate limit unavailable\n",
            ))
        }
    }
}

/// The peer address: axum's `ConnectInfo<SocketAddr>` (feature `axum`) or a
/// `SocketAddr` extension put there by the server.
fn peer_of<B>(req: &Request<B>) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(axum::extract::ConnectInfo(addr)) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(*addr);
    }
    req.extensions().get::<SocketAddr>().copied()
}

pub(crate) fn plain(status: StatusCode, body: &'static str) -> Response<&'static str> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The refusal for a denied decision of policy `p`.
fn refusal<L>(p: &RateLimitPolicy<L>, d: &Decision) -> Response<&'static str> {
    let (status, body) = match d.denial {
        Some(Denial::Blocked) => (StatusCode::FORBIDDEN, "blocked\n"),
        Some(Denial::Unavailable) => (StatusCode::SERVICE_UNAVAILABLE, "rate limit unavailable\n"),
        // The server ran out of room for new keys: no quota of the client's was spent.
        Some(Denial::TableFull) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "rate limiter at capacity\n",
        ),
        _ => (StatusCode::TOO_MANY_REQUESTS, "rate limited\n"),
    };
    let mut r = plain(status, body);
    let h = r.headers_mut();
    h.insert(RATELIMIT_POLICY, p.policy_field.clone());
    // `r=0` would tell a client refused for want of room (a full table) or for want
    // of an answer (Redis down, closed policy) that its own quota is spent.
    if !matches!(d.denial, Some(Denial::TableFull | Denial::Unavailable)) {
        let mut member = String::new();
        headers::push_ratelimit(&mut member, &p.sf_name, d);
        if let Ok(v) = HeaderValue::from_str(&member) {
            h.insert(RATELIMIT, v);
        }
    }
    if let Some(v) = headers::retry_after(d).and_then(|s| HeaderValue::from_str(&s).ok()) {
        h.insert(http::header::RETRY_AFTER, v);
    }
    r
}

impl<S, L, B, ResBody> Service<Request<B>> for RateLimit<S, L>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    L: Limiter<HttpKey> + 'static,
    B: Send + 'static,
    ResBody: From<&'static str> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.at_once && self.allowed_fields.is_none() {
            // In memory, no fields on allowed responses: decide here and call the
            // service that polled ready, with no clone of it and no future of our own
            // to allocate.
            return match self.decide_now(&req) {
                Ok(degraded) => ResponseFuture {
                    kind: Kind::Inner {
                        fut: self.inner.call(req),
                        degraded,
                    },
                },
                Err(refusal) => ResponseFuture::ready(refusal),
            };
        }
        if self.at_once {
            return self.call_with_fields(req);
        }
        // The service that polled ready goes with the future; its clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policies = self.policies.clone();
        let allowed_fields = self.allowed_fields.clone();
        let keys = keys_of(&policies, &req);
        ResponseFuture {
            kind: Kind::Boxed {
                fut: Box::pin(async move {
                    let keys = match keys {
                        Ok(keys) => keys,
                        Err(e) => return Ok(e.response().map(ResBody::from)),
                    };
                    match verdict(&policies, keys, allowed_fields.is_some()).await {
                        Verdict::Refuse(r) => Ok(r.map(ResBody::from)),
                        Verdict::Pass(admission) => {
                            let mut response = inner.call(req).await?;
                            admission.mark(&mut response, allowed_fields.as_deref());
                            Ok(response)
                        }
                    }
                }),
            },
        }
    }
}

impl<S, L: Limiter<HttpKey>> RateLimit<S, L> {
    /// `call` for a layer that answers at once and sends fields on allowed
    /// responses: the limiters' verdict (ready at its first poll), then the inner
    /// service that polled ready. Apart from `call`, so that the default path is
    /// compiled as if this did not exist.
    #[inline(never)]
    fn call_with_fields<B, ResBody>(
        &mut self,
        req: Request<B>,
    ) -> ResponseFuture<S::Future, ResBody, S::Error>
    where
        S: Service<Request<B>, Response = Response<ResBody>> + 'static,
        S::Future: Send,
        B: 'static,
        ResBody: From<&'static str> + Send + 'static,
    {
        let keys = match keys_of(&self.policies, &req) {
            Ok(keys) => keys,
            Err(e) => return ResponseFuture::ready(e.response()),
        };
        let verdict = std::pin::pin!(verdict(&self.policies, keys, true));
        let admission = match verdict.poll(&mut Context::from_waker(std::task::Waker::noop())) {
            Poll::Ready(Verdict::Pass(admission)) => admission,
            Poll::Ready(Verdict::Refuse(refusal)) => return ResponseFuture::ready(refusal),
            // Not if every limiter answers at once, as each said.
            Poll::Pending => {
                tracing::warn!("a rate limiter did not answer at once");
                return ResponseFuture::ready(plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "rate limit unavailable\n",
                ));
            }
        };
        // Boxed, as for a limiter that waits: a variant of its own would make every
        // layer's future larger (and the default path copy it once more).
        let fut = self.inner.call(req);
        let policy = self.allowed_fields.clone();
        ResponseFuture {
            kind: Kind::Boxed {
                fut: Box::pin(async move {
                    let mut response = fut.await?;
                    admission.mark(&mut response, policy.as_deref());
                    Ok(response)
                }),
            },
        }
    }

    /// For a limiter that answers at once: whether the request passes (and was
    /// admitted failing open), or the refusal. Every key is formed before any check,
    /// so a request refused for a missing key consumes nothing.
    // The large `Err` is the refusal itself, built once, on the refusal path only.
    #[allow(clippy::result_large_err)]
    fn decide_now<B>(&self, req: &Request<B>) -> Result<Degraded, Response<&'static str>> {
        let check =
            |p: &RateLimitPolicy<L>, key: &HttpKey, cost| match p.limiter.check_now(key, cost) {
                // The admitted path first, nothing moved: this is nearly every request.
                Some(Ok(d)) if d.allowed => Ok(Degraded::of(&d)),
                Some(checked) => answer(p, checked),
                None => answer(
                    p,
                    Err(Error::UnexpectedReply(
                        "the limiter did not answer at once".into(),
                    )),
                ),
            };
        if let [only] = &*self.policies {
            // The commonest policy, the peer's address with no proxy to trust: its key
            // is built here, with no general extraction and nothing to drop after.
            if let KeySource::ClientIp(proxies) = &only.key
                && proxies.trusts_nobody()
                && let Some(peer) = peer_of(req)
            {
                // An address owns nothing to free: no drop call on every request.
                let key = std::mem::ManuallyDrop::new(HttpKey::from(peer.ip()));
                return check(only, &key, 1);
            }
            // One policy, one key: no list of keys to build.
            let key = only
                .key
                .extract(peer_of(req), req)
                .map_err(KeyError::response)?;
            return check(only, &key, 1);
        }
        let (first, rest) = keys_of(&self.policies, req).map_err(KeyError::response)?;
        let keys = || {
            self.policies
                .iter()
                .zip(std::iter::once(&first).chain(&rest))
        };
        // Peek every policy after the first before spending any: a request one policy
        // refuses spends nothing of the others, so a blocked or limited client cannot
        // drain a quota it shares with everyone (a route's). The first policy's own
        // check is its peek. Two requests racing between peek and spend may still
        // spend an earlier policy's unit and be refused by a later one.
        for (p, key) in keys().skip(1) {
            check(p, key, 0)?;
        }
        let mut degraded = Degraded::No;
        for (p, key) in keys() {
            degraded = degraded.max(check(p, key, 1)?);
        }
        Ok(degraded)
    }
}

fn mark<ResBody>(response: &mut Response<ResBody>, degraded: Degraded) {
    let value = match degraded {
        Degraded::No => return,
        Degraded::LocalShare => "local-share",
        Degraded::Open => "fail-open",
    };
    (response.headers_mut()).insert(DEGRADED_HEADER, HeaderValue::from_static(value));
}

type BoxedResponse<ResBody, E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of [`RateLimit`]: the inner service's (decided at once), a refusal,
    /// or a boxed one (a limiter that waits, such as Redis).
    pub struct ResponseFuture<F, ResBody, E> {
        #[pin]
        kind: Kind<F, ResBody, E>,
    }
}

pin_project_lite::pin_project! {
    #[project = Projected]
    enum Kind<F, ResBody, E> {
        // Admitted without waiting: the inner service's future.
        Inner { #[pin] fut: F, degraded: Degraded },
        // Refused (or no key could be formed).
        Ready { response: Option<Response<ResBody>> },
        // Decided by a limiter that waits (or admitted with fields to add).
        Boxed { fut: BoxedResponse<ResBody, E> },
    }
}

impl<F, ResBody, E> ResponseFuture<F, ResBody, E>
where
    ResBody: From<&'static str>,
{
    fn ready(response: Response<&'static str>) -> Self {
        ResponseFuture {
            kind: Kind::Ready {
                response: Some(response.map(ResBody::from)),
            },
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, ResBody, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            Projected::Inner {
                fut,
                degraded: Degraded::No,
            } => fut.poll(cx),
            Projected::Inner { fut, degraded } => {
                let degraded = *degraded;
                fut.poll(cx).map_ok(|mut r| {
                    mark(&mut r, degraded);
                    r
                })
            }
            Projected::Ready { response } => match response.take() {
                Some(r) => Poll::Ready(Ok(r)),
                None => Poll::Pending, // polled after completion
            },
            Projected::Boxed { fut } => fut.as_mut().poll(cx),
        }
    }
}
