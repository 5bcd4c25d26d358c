//! One request through an axum router whose handler takes the token's claims as a
//! typed struct, the same ES256 token every time (criterion, one run):
//!
//! - `palisade`: `JwtAuth` layer + `Claims<User>` extractor, the token cached (a hit:
//!   header parse, cache lookup, time and revocation re-check, claims deserialized);
//! - `axum_jwt_auth`: axum-jwt-auth 0.7's `Claims<User>` extractor with a
//!   `LocalDecoder`, which runs `jsonwebtoken::decode` (10, its `rust_crypto` backend,
//!   the one that crate enables) on every request;
//! - `decode_aws_lc`: a hand-written extractor running `jsonwebtoken::decode` (12, the
//!   aws-lc-rs backend this workspace uses) on every request: the fastest a
//!   decode-per-request extractor gets;
//! - `no_auth`: the same route without authentication (the router's own floor).
//!
//! Every side builds the same request (method, URI, `Authorization` header) and runs
//! it through `tower::ServiceExt::oneshot` on the router; the handler returns the
//! subject. docs/jwt-cache.md reports the ratios.
//!
//! cargo bench -p palisade-benches --bench jwt_cache_axum
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use palisade_core_traits::SystemClock;
use palisade_jwt_cache::{Claims, JwtAuth, KeySet, Policy, TokenCache, Validator};
use serde::Deserialize;
use tower::ServiceExt;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/jwt-cache/tests/data/"
);
const ISS: &str = "https://issuer.example";
const AUD: &str = "api";

#[derive(Clone, Deserialize)]
struct User {
    sub: String,
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}{name}")).unwrap()
}

fn token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("k".into());
    let claims = serde_json::json!({
        "iss": ISS, "aud": AUD, "sub": "user-1234567890", "jti": "jti-1",
        "iat": now, "exp": now + 3600, "scope": "read write", "tenant": "acme",
    });
    jsonwebtoken::encode(
        &h,
        &claims,
        &EncodingKey::from_ec_pem(&pem("ec_private.pem")).unwrap(),
    )
    .unwrap()
}

fn palisade() -> Router {
    let mut keys = KeySet::new();
    keys.insert(
        "k",
        Algorithm::ES256,
        DecodingKey::from_ec_pem(&pem("ec_public.pem")).unwrap(),
    )
    .unwrap();
    let validator = Validator::builder()
        .policy(
            Policy::builder()
                .algorithms(&[Algorithm::ES256])
                .issuers(&[ISS])
                .audiences(&[AUD])
                .build()
                .unwrap(),
        )
        .keys(keys)
        .cache(TokenCache::builder().build().unwrap())
        .clock(Arc::new(SystemClock))
        .build()
        .unwrap();
    let auth = JwtAuth::builder()
        .validator(Arc::new(validator))
        .build()
        .unwrap();
    Router::new()
        .route("/me", get(|Claims(u): Claims<User>| async move { u.sub }))
        .layer(auth)
}

#[derive(Clone, FromRef)]
struct JwtAuthState {
    decoder: axum_jwt_auth::Decoder<User>,
}

fn axum_jwt_auth() -> Router {
    let mut validation = jsonwebtoken10::Validation::new(jsonwebtoken10::Algorithm::ES256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    let key = jsonwebtoken10::DecodingKey::from_ec_pem(&pem("ec_public.pem")).unwrap();
    let decoder = axum_jwt_auth::LocalDecoder::builder()
        .keys(vec![key])
        .validation(validation)
        .build()
        .unwrap();
    let state = JwtAuthState {
        decoder: Arc::new(decoder),
    };
    Router::new()
        .route(
            "/me",
            get(|c: axum_jwt_auth::Claims<User>| async move { c.claims.sub }),
        )
        .with_state(state)
}

/// The per-request decode an application writes by hand: bearer header →
/// `jsonwebtoken::decode` (aws-lc-rs) → typed claims.
struct Decoded(User);

#[derive(Clone)]
struct DecodeState(Arc<(DecodingKey, Validation)>);

impl FromRequestParts<DecodeState> for Decoded {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, s: &DecodeState) -> Result<Self, StatusCode> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let (key, validation) = &*s.0;
        jsonwebtoken::decode::<User>(token, key, validation)
            .map(|d| Decoded(d.claims))
            .map_err(|_| StatusCode::UNAUTHORIZED)
    }
}

fn decode_aws_lc() -> Router {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISS]);
    validation.set_audience(&[AUD]);
    let key = DecodingKey::from_ec_pem(&pem("ec_public.pem")).unwrap();
    Router::new()
        .route("/me", get(|Decoded(u): Decoded| async move { u.sub }))
        .with_state(DecodeState(Arc::new((key, validation))))
}

fn no_auth() -> Router {
    Router::new().route("/me", get(|| async { "user-1234567890" }))
}

fn request(authorization: &str) -> Request<Body> {
    Request::get("/me")
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .unwrap()
}

fn per_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let authorization = format!("Bearer {}", token());
    let mut g = c.benchmark_group("jwt_cache_axum");
    for (name, router) in [
        ("palisade", palisade()),
        ("axum_jwt_auth", axum_jwt_auth()),
        ("decode_aws_lc", decode_aws_lc()),
        ("no_auth", no_auth()),
    ] {
        // Every side must answer 200 with the subject (and ours is now cached).
        let response = rt
            .block_on(router.clone().oneshot(request(&authorization)))
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let r = router
                            .clone()
                            .oneshot(request(&authorization))
                            .await
                            .unwrap();
                        std::hint::black_box(r);
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = per_request
}
criterion_main!(benches);
