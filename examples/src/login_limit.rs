//! `POST /login` rate-limited per client address and per account with
//! palisade-ratelimit's `RateLimitLayer` (the `login-limit` demo and its test).
//!
//! The account comes from the form body (`username=…`): a small middleware in front
//! of the layer reads it (at most 4 KiB) and hands it on as the request's
//! `AuthenticatedSubject` (here: the account being tried), which the per-account policy
//! keys on. Both policies must allow; the one that refuses is named in the `429`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use palisade_core_traits::TrustedProxies;
use palisade_ratelimit::{
    AuthenticatedSubject, KeySource, KeyedLimiter, Quota, RateLimitLayer, RateLimitPolicy, nz,
};

/// Largest login form read.
const MAX_FORM: usize = 4096;

/// Login attempts per client address: 10 at once, 10 per minute.
pub fn per_ip_quota() -> Quota {
    Quota::per_minute(nz!(10))
}

/// Login attempts per account: 3 at once, 3 per minute (password guessing).
pub fn per_account_quota() -> Quota {
    Quota::per_minute(nz!(3))
}

/// The app: `POST /login` behind both policies. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub fn app() -> Result<Router, palisade_ratelimit::Error> {
    let ip = per_ip_quota();
    let account = per_account_quota();
    let layer = RateLimitLayer::new(vec![
        RateLimitPolicy::new(
            "login-ip",
            &ip,
            Arc::new(KeyedLimiter::new(ip)),
            KeySource::ClientIp(TrustedProxies::none()),
        )?,
        RateLimitPolicy::new(
            "login-account",
            &account,
            Arc::new(KeyedLimiter::new(account)),
            KeySource::Subject,
        )?,
    ])?;
    Ok(Router::new()
        .route("/login", post(login))
        .layer(layer)
        // Outermost: runs before the rate limit, so the account is known to it.
        .layer(middleware::from_fn(account_from_form)))
}

/// Every password is wrong in this demo: only the rate limit is shown.
async fn login() -> impl IntoResponse {
    (StatusCode::UNAUTHORIZED, "wrong username or password\n")
}

/// Reads `username` from the form body into the request's `AuthenticatedSubject`.
async fn account_from_form(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "form too large\n").into_response();
    };
    let account = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "username")
        .map(|(_, v)| v.into_owned());
    let mut req = Request::from_parts(parts, Body::from(bytes));
    if let Some(account) = account.filter(|a| !a.is_empty()) {
        req.extensions_mut().insert(AuthenticatedSubject(account));
    }
    next.run(req).await
}
