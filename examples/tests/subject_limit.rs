//! jwt-cache's `JwtAuth` in front of ratelimit's per-subject `RateLimitLayer`, with no
//! glue between them, over a loopback socket: the layer puts the token's subject where
//! the limiter reads it (core-traits' `AuthenticatedSubject`), so each user has a quota
//! of their own, and a request without a token never reaches the limiter.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use palisade_examples::protected_api::{Issuer, auth};
use palisade_ratelimit::{KeySource, KeyedLimiter, Quota, RateLimitLayer, RateLimitPolicy, nz};
use palisade_token_blacklist::MemoryBlacklist;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_has_a_quota_of_their_own_behind_jwt_auth() {
    let issuer = Issuer::generate().unwrap();
    let auth = auth(
        issuer.key_set().unwrap(),
        Arc::new(MemoryBlacklist::builder().build().unwrap()),
    )
    .unwrap();
    // Two requests per user, one back an hour: the third within the test is refused.
    let quota = Quota::new(nz!(2), nz!(1), std::time::Duration::from_secs(3600)).unwrap();
    let limiter = Arc::new(KeyedLimiter::new(quota));
    let per_user = RateLimitPolicy::new("per-user", &quota, limiter, KeySource::Subject).unwrap();
    let app = Router::new()
        .route("/me", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(vec![per_user]).unwrap())
        .layer(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/me", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = reqwest::Client::new();
    let alice = issuer.access_token("alice", "a-1", "read", 300).unwrap();
    let bob = issuer.access_token("bob", "b-1", "read", 300).unwrap();
    let send = |token: &str| client.get(&base).bearer_auth(token).send();
    for _ in 0..2 {
        assert_eq!(send(&alice).await.unwrap().status(), StatusCode::OK);
    }
    let refused = send(&alice).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let policy = refused.headers()["ratelimit-policy"].to_str().unwrap();
    assert!(policy.starts_with(r#""per-user";q=2"#), "{policy}");
    assert!(refused.headers().contains_key("retry-after"));
    // Bob's quota is his own; a second token of Alice's is still Alice.
    assert_eq!(send(&bob).await.unwrap().status(), StatusCode::OK);
    let alice_again = issuer.access_token("alice", "a-2", "read", 300).unwrap();
    assert_eq!(
        send(&alice_again).await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // No token: refused by JwtAuth (401), never a 400 from a limiter with no subject.
    let anonymous = client.get(&base).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    server.abort();
}
