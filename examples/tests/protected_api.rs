//! The `protected-api` demo over real HTTP on a loopback socket: jwt-cache's layer and
//! extractor, token-blacklist's `MemoryBlacklist` as the revocation check, every
//! answer a client can get.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;

use palisade_core_traits::TokenIdentity;
use palisade_examples::protected_api::{AUDIENCE, ISSUER, Issuer, app, now_secs};
use palisade_token_blacklist::MemoryBlacklist;
use reqwest::StatusCode;
use serde_json::json;

struct Server {
    base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(issuer: &Issuer, blacklist: Arc<MemoryBlacklist>) -> Server {
    let router = app(issuer.key_set().unwrap(), blacklist).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server { base, task }
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

async fn call(request: reqwest::RequestBuilder) -> Answer {
    let r = request.send().await.unwrap();
    Answer {
        status: r.status(),
        challenge: r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned()),
        body: r.text().await.unwrap(),
    }
}

fn challenge(code: Option<&str>) -> Option<String> {
    Some(match code {
        None => r#"Bearer realm="protected-api""#.to_owned(),
        Some(c) => format!(r#"Bearer realm="protected-api", error="{c}""#),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_over_a_loopback_socket() {
    let issuer = Issuer::generate().unwrap();
    let blacklist = Arc::new(MemoryBlacklist::builder().build().unwrap());
    let server = serve(&issuer, blacklist.clone()).await;
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", server.base));
    let alice = issuer.access_token("alice", "t-1", "read", 300).unwrap();

    // Allowed, and again (a cache hit).
    for _ in 0..2 {
        let a = call(get("/me").bearer_auth(&alice)).await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, "hello alice"));
        assert_eq!(a.challenge, None);
    }
    assert_eq!(call(get("/health")).await.status, StatusCode::OK);

    // Missing token: 401, a challenge without an error code.
    let a = call(get("/me")).await;
    assert_eq!(
        (a.status, a.challenge),
        (StatusCode::UNAUTHORIZED, challenge(None))
    );

    // Malformed header: 400 invalid_request.
    for header in ["Bearer", "Bearer a b", "Bearer tok!en"] {
        let a = call(get("/me").header("authorization", header)).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{header}");
        assert_eq!(a.challenge, challenge(Some("invalid_request")));
    }

    // Expired, wrong audience, another issuer's key: 401 invalid_token, and the body
    // says nothing more.
    let now = now_secs().unwrap();
    let expired = issuer.access_token("alice", "t-2", "read", -1).unwrap();
    let wrong_aud = issuer
        .sign(
            &json!({"iss": ISSUER, "aud": "billing", "sub": "alice", "jti": "t-3",
                      "iat": now, "exp": now + 300}),
        )
        .unwrap();
    let stranger = Issuer::generate().unwrap();
    let forged = stranger
        .access_token("alice", "t-4", "read admin", 300)
        .unwrap();
    for (what, token) in [
        ("expired", expired),
        ("wrong audience", wrong_aud),
        ("forged", forged),
    ] {
        let a = call(get("/me").bearer_auth(&token)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(a.challenge, challenge(Some("invalid_token")), "{what}");
        assert_eq!(a.body, "invalid_token", "{what}");
    }
    assert_ne!(AUDIENCE, "billing");

    // Claims that do not fit the handler's type (no `email`): 401, not 500.
    let a = call(get("/profile").bearer_auth(&alice)).await;
    assert_eq!(
        (a.status, a.challenge),
        (StatusCode::UNAUTHORIZED, challenge(Some("invalid_token")))
    );
    let with_email = issuer
        .sign(
            &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "jti": "t-5",
                      "email": "alice@example.org", "iat": now, "exp": now + 300}),
        )
        .unwrap();
    let a = call(get("/profile").bearer_auth(&with_email)).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (StatusCode::OK, "alice <alice@example.org>")
    );

    // Insufficient scope: 403 naming the scope the route needs.
    let a = call(get("/admin").bearer_auth(&alice)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(
        a.challenge.as_deref(),
        Some(r#"Bearer realm="protected-api", error="insufficient_scope", scope="admin""#)
    );
    let root = issuer
        .access_token("root", "t-6", "read admin", 300)
        .unwrap();
    assert_eq!(
        call(get("/admin").bearer_auth(&root)).await.status,
        StatusCode::OK
    );

    // Revoked through the blacklist's revoke_token: refused on the very next request,
    // although the token sits in the validation cache.
    assert_eq!(
        call(get("/admin").bearer_auth(&root)).await.status,
        StatusCode::OK
    );
    blacklist
        .revoke_token(
            &TokenIdentity::new(ISSUER)
                .with_jti("t-6")
                .with_expires_at(now + 300),
        )
        .unwrap();
    let a = call(get("/admin").bearer_auth(&root)).await;
    assert_eq!(
        (a.status, a.challenge),
        (StatusCode::UNAUTHORIZED, challenge(Some("invalid_token")))
    );

    // And through the API itself: the caller logs out, its next request is refused.
    let logout = client
        .post(format!("{}/logout", server.base))
        .bearer_auth(&alice);
    assert_eq!(call(logout).await.status, StatusCode::NO_CONTENT);
    let a = call(get("/me").bearer_auth(&alice)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}
