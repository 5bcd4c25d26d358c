//! The `login-limit` app over a real loopback socket, with reqwest: per-account and
//! per-address limits, each named when it refuses.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::SocketAddr;

async fn serve() -> String {
    let app = palisade_examples::login_limit::app().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/login", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    url
}

/// Status, `RateLimit-Policy`, `Retry-After` and body of one login attempt.
async fn attempt(url: &str, form: &str) -> (u16, String, String, String) {
    let res = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", "203.0.113.99") // untrusted: must change nothing
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    let field = |n: &str| {
        res.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let (policy, retry) = (field("ratelimit-policy"), field("retry-after"));
    (
        res.status().as_u16(),
        policy,
        retry,
        res.text().await.unwrap(),
    )
}

#[tokio::test]
async fn an_account_is_limited_then_the_address() {
    let url = serve().await;
    // Three tries for alice reach the handler (wrong password), the fourth is refused
    // by the per-account policy: 3 per minute, one back in 20 s.
    for _ in 0..3 {
        let (status, _, _, body) = attempt(&url, "username=alice&password=x").await;
        assert_eq!(
            (status, body.as_str()),
            (401, "wrong username or password\n")
        );
    }
    let (status, policy, retry, body) = attempt(&url, "username=alice&password=x").await;
    assert_eq!(status, 429);
    assert_eq!(policy, r#""login-account";q=3;w=60"#);
    assert_eq!(retry, "20");
    assert_eq!(body, "rate limited\n");
    // Other accounts from the same address: the address's 10 run out (3 for alice:
    // the refused fourth spent nothing of the address's), then the per-address policy
    // refuses.
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(attempt(&url, &format!("username=user{i}&password=x")).await);
    }
    assert!(statuses[..7].iter().all(|a| a.0 == 401), "{statuses:?}");
    let last = &statuses[7];
    assert_eq!((last.0, last.1.as_str()), (429, r#""login-ip";q=10;w=60"#));
    // A form without a username has no account key: 400.
    let (status, ..) = attempt(&url, "password=x").await;
    assert_eq!(status, 400);
}
