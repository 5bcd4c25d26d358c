//! `RateLimitLayer` through `tower::ServiceExt::oneshot` and over a real socket
//! (axum::serve on 127.0.0.1:0 with `ConnectInfo`), with real Redis for the failure
//! policies.
#![cfg(all(feature = "axum", feature = "redis"))]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http_body_util::BodyExt;
use palisade_core_traits::{IpBlocker, ManualClock, Timestamp, TrustedProxies};
use palisade_ratelimit::{
    AuthenticatedSubject, FailurePolicy, HttpKey, KeySource, KeyedLimiter, Policy, Quota,
    RateLimitLayer, RateLimitPolicy, RedisLimiter, nz,
};
use palisade_testkit::RedisServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

type Memory = KeyedLimiter<HttpKey, ManualClock>;

fn memory(quota: Quota) -> Arc<Memory> {
    Arc::new(KeyedLimiter::with_clock(
        quota,
        ManualClock::new(Timestamp::from_unix_secs(1_000)),
    ))
}

fn app<L: palisade_ratelimit::Limiter<HttpKey> + 'static>(
    policies: Vec<RateLimitPolicy<L>>,
) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(policies).unwrap())
}

fn request(peer: &str) -> http::Request<Body> {
    let mut req = http::Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

/// Status, the three rate-limit fields (absent ones as ""), and the body.
async fn answer(app: &Router, req: http::Request<Body>) -> (u16, [String; 4], String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let h = |n: &str| {
        res.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let fields = [
        h("ratelimit-policy"),
        h("ratelimit"),
        h("retry-after"),
        h("ratelimit-degraded"),
    ];
    let status = res.status().as_u16();
    let body =
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, fields, body)
}

#[tokio::test]
async fn allowed_then_denied_with_the_draft_11_fields_naming_the_policy() {
    let q = Quota::per_minute(nz!(2));
    let per_ip = RateLimitPolicy::new(
        "per-ip",
        &q,
        memory(q),
        KeySource::ClientIp(TrustedProxies::none()),
    )
    .unwrap();
    let app = app(vec![per_ip]);
    for _ in 0..2 {
        let (status, fields, body) = answer(&app, request("198.51.100.7:5000")).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert_eq!(
            fields,
            [String::new(), String::new(), String::new(), String::new()]
        );
    }
    let (status, fields, body) = answer(&app, request("198.51.100.7:5001")).await;
    assert_eq!(status, 429);
    assert_eq!(body, "rate limited\n");
    // Burst 2 refilled at 2/min: one unit back in 30 s. On a refusal `t` is that
    // wait, as `Retry-After`: none remains for exactly that long.
    assert_eq!(fields[0], r#""per-ip";q=2;w=60"#);
    assert_eq!(fields[1], r#""per-ip";r=0;t=30"#);
    assert_eq!(fields[2], "30");
    // Another client is counted apart; an IPv4-mapped spelling is the same client.
    assert_eq!(answer(&app, request("198.51.100.8:5000")).await.0, 200);
    assert_eq!(
        answer(&app, request("[::ffff:198.51.100.7]:5000")).await.0,
        429
    );
}

/// Opted in, an allowed response lists every policy and each one's `r` and `t` after
/// the request; a layer inside another adds its own members to the lists.
#[tokio::test]
async fn fields_on_allowed_responses_list_every_policy_when_asked_for() {
    let per_ip = Quota::per_minute(nz!(3));
    let site = Quota::per_minute(nz!(100));
    let policies = || {
        vec![
            RateLimitPolicy::new(
                "per-ip",
                &per_ip,
                memory(per_ip),
                KeySource::ClientIp(TrustedProxies::none()),
            )
            .unwrap(),
            RateLimitPolicy::new("site", &site, memory(site), KeySource::Route("site")).unwrap(),
        ]
    };
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(RateLimitLayer::new(policies()).unwrap().fields_on_allowed());
    // 3 a minute: one unit back every 20 s, so after one request the bucket is full
    // again in 20 s; 100 a minute: every 0.6 s, rounded up to 1 s.
    let (status, fields, _) = answer(&app, request("198.51.100.7:5000")).await;
    assert_eq!(status, 200);
    assert_eq!(fields[0], r#""per-ip";q=3;w=60, "site";q=100;w=60"#);
    assert_eq!(fields[1], r#""per-ip";r=2;t=20, "site";r=99;t=1"#);
    assert_eq!((fields[2].as_str(), fields[3].as_str()), ("", ""));
    let (_, fields, _) = answer(&app, request("198.51.100.7:5000")).await;
    assert_eq!(fields[1], r#""per-ip";r=1;t=40, "site";r=98;t=2"#);
    // Another client: its own per-ip count, the site's shared one.
    let (_, fields, _) = answer(&app, request("198.51.100.8:5000")).await;
    assert_eq!(fields[1], r#""per-ip";r=2;t=20, "site";r=97;t=2"#);
    let (_, fields, _) = answer(&app, request("198.51.100.7:5000")).await;
    assert_eq!(fields[1], r#""per-ip";r=0;t=60, "site";r=96;t=3"#);
    // A refusal is answered as without the option.
    let (status, fields, _) = answer(&app, request("198.51.100.7:5000")).await;
    assert_eq!(status, 429);
    assert_eq!(fields[0], r#""per-ip";q=3;w=60"#);
    assert_eq!(fields[1], r#""per-ip";r=0;t=20"#);

    // Nested layers: each appends its own lines (a field list may span lines).
    let inner = Quota::per_minute(nz!(5));
    let nested = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(
            RateLimitLayer::new(vec![
                RateLimitPolicy::new("inner", &inner, memory(inner), KeySource::Route("r"))
                    .unwrap(),
            ])
            .unwrap()
            .fields_on_allowed(),
        )
        .layer(RateLimitLayer::new(policies()).unwrap().fields_on_allowed());
    let res = nested.oneshot(request("198.51.100.7:5000")).await.unwrap();
    let all = |name: &str| {
        res.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        all("ratelimit"),
        [
            r#""inner";r=4;t=12"#,
            r#""per-ip";r=2;t=20, "site";r=99;t=1"#
        ]
    );
    assert_eq!(all("ratelimit-policy").len(), 2);
}

/// An IPv6 client is its /64, in memory and on Redis, for the peer address, an
/// address forwarded by a trusted proxy, and blocks: two addresses of one /64 share
/// a quota and a block, two /64s do not.
#[tokio::test]
async fn the_layer_limits_and_blocks_ipv6_clients_by_their_64() {
    let server = RedisServer::start();
    let q = Quota::per_minute(nz!(2));
    let in_memory = memory(q);
    let on_redis = Arc::new(
        RedisLimiter::builder(vec![Policy::new("p", q).unwrap()])
            // Patient: a slow answer on a loaded machine must not read as an outage.
            .timeout(Duration::from_secs(5))
            .connect(&server.url())
            .await
            .unwrap(),
    );
    let by_ip = || KeySource::ClientIp(TrustedProxies::none());
    let memory_app = app(vec![
        RateLimitPolicy::new("per-ip", &q, in_memory.clone(), by_ip()).unwrap(),
    ]);
    let redis_app = app(vec![
        RateLimitPolicy::new("per-ip", &q, on_redis.clone(), by_ip()).unwrap(),
    ]);
    let blockers: [&dyn IpBlocker; 2] = [&*in_memory, &*on_redis];
    for (app, blocker) in [&memory_app, &redis_app].into_iter().zip(blockers) {
        assert_eq!(answer(app, request("[2001:db8:1:2::1]:5000")).await.0, 200);
        assert_eq!(answer(app, request("[2001:db8:1:2::2]:5000")).await.0, 200);
        let (status, fields, _) = answer(app, request("[2001:db8:1:2:ffff::3]:1")).await;
        assert_eq!(
            (status, fields[2].as_str()),
            (429, "30"),
            "one quota per /64"
        );
        assert_eq!(answer(app, request("[2001:db8:1:3::1]:5000")).await.0, 200);
        // A block placed on one address refuses another of its /64, not the next /64.
        let blocked: std::net::IpAddr = "2001:db8:5:6::1".parse().unwrap();
        blocker
            .block_ip(blocked, Duration::from_secs(60), "test")
            .await
            .unwrap();
        let (status, fields, _) = answer(app, request("[2001:db8:5:6:abcd::9]:1")).await;
        assert_eq!((status, fields[2].as_str()), (403, "60"));
        assert_eq!(answer(app, request("[2001:db8:5:7::1]:1")).await.0, 200);
    }
    // Behind a trusted proxy, the forwarded address is keyed the same way (the general
    // extraction, not the single-policy fast path).
    let proxies = TrustedProxies::networks(["2001:db8:ffff::/48".parse().unwrap()]);
    let app_behind_proxy = app(vec![
        RateLimitPolicy::new("per-ip", &q, memory(q), KeySource::ClientIp(proxies)).unwrap(),
    ]);
    let forwarded = |client: &str| {
        let mut req = request("[2001:db8:ffff::1]:443");
        req.headers_mut()
            .insert("x-forwarded-for", client.parse().unwrap());
        req
    };
    for client in ["2001:db8:9:9::1", "2001:db8:9:9::2"] {
        assert_eq!(answer(&app_behind_proxy, forwarded(client)).await.0, 200);
    }
    assert_eq!(
        answer(&app_behind_proxy, forwarded("2001:db8:9:9::3"))
            .await
            .0,
        429
    );
    assert_eq!(
        answer(&app_behind_proxy, forwarded("2001:db8:9:a::1"))
            .await
            .0,
        200
    );
    // So is the client address inside a composite key.
    let per_route = app(vec![
        RateLimitPolicy::new(
            "per-ip-route",
            &q,
            memory(q),
            KeySource::Composite(vec![KeySource::Route("login"), by_ip()]),
        )
        .unwrap(),
    ]);
    for peer in ["[2001:db8:7::1]:1", "[2001:db8:7::2]:1"] {
        assert_eq!(answer(&per_route, request(peer)).await.0, 200);
    }
    assert_eq!(
        answer(&per_route, request("[2001:db8:7::3]:1")).await.0,
        429
    );
    assert_eq!(
        answer(&per_route, request("[2001:db8:8::3]:1")).await.0,
        200
    );
}

#[tokio::test]
async fn every_policy_must_allow_and_the_one_that_refuses_is_named() {
    let wide = Quota::per_minute(nz!(100));
    let narrow = Quota::per_minute(nz!(1));
    let app = app(vec![
        RateLimitPolicy::new(
            "per-ip",
            &wide,
            memory(wide),
            KeySource::ClientIp(TrustedProxies::none()),
        )
        .unwrap(),
        RateLimitPolicy::new(
            "per-account",
            &narrow,
            memory(narrow),
            KeySource::Composite(vec![
                KeySource::Route("login"),
                KeySource::Header("x-account".parse().unwrap()),
            ]),
        )
        .unwrap(),
    ]);
    let with_account = |account: &str| {
        let mut req = request("203.0.113.5:1");
        req.headers_mut()
            .insert("x-account", account.parse().unwrap());
        req
    };
    assert_eq!(answer(&app, with_account("alice")).await.0, 200);
    let (status, fields, _) = answer(&app, with_account("alice")).await;
    assert_eq!(status, 429);
    assert_eq!(fields[0], r#""per-account";q=1;w=60"#);
    assert!(
        fields[1].starts_with(r#""per-account";r=0;t="#),
        "{}",
        fields[1]
    );
    assert_eq!(answer(&app, with_account("bob")).await.0, 200);
    // Malformed: no account header is a 400, not a shared bucket.
    let (status, _, body) = answer(&app, request("203.0.113.5:1")).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "missing or malformed rate-limit key header\n")
    );
}

#[tokio::test]
async fn a_request_one_policy_refuses_spends_nothing_of_the_others() {
    let shared = Quota::per_minute(nz!(3));
    let own = Quota::per_minute(nz!(1));
    let per_ip = memory(own);
    let app = app(vec![
        RateLimitPolicy::new("login", &shared, memory(shared), KeySource::Route("login")).unwrap(),
        RateLimitPolicy::new(
            "per-ip",
            &own,
            per_ip.clone(),
            KeySource::ClientIp(TrustedProxies::none()),
        )
        .unwrap(),
    ]);
    per_ip.block(
        HttpKey::Ip("192.0.2.66".parse().unwrap()),
        Duration::from_secs(300),
    );
    // Built by hand from one IPv6 address (not through `HttpKey::from`): the block
    // is still its /64's, as on Redis.
    per_ip.block(
        HttpKey::Ip("2001:db8:66::1".parse().unwrap()),
        Duration::from_secs(300),
    );
    assert_eq!(answer(&app, request("[2001:db8:66::2]:1")).await.0, 403);
    assert_eq!(answer(&app, request("192.0.2.1:1")).await.0, 200);
    // A client over its own limit, or blocked, does not drain the route everyone
    // shares: its refusals spend none of it.
    for _ in 0..5 {
        let (status, fields, _) = answer(&app, request("192.0.2.1:1")).await;
        assert_eq!((status, fields[0].as_str()), (429, r#""per-ip";q=1;w=60"#));
        assert_eq!(answer(&app, request("192.0.2.66:1")).await.0, 403);
    }
    assert_eq!(answer(&app, request("192.0.2.2:1")).await.0, 200);
    assert_eq!(answer(&app, request("192.0.2.3:1")).await.0, 200);
    let (status, fields, _) = answer(&app, request("192.0.2.4:1")).await;
    assert_eq!((status, fields[0].as_str()), (429, r#""login";q=3;w=60"#));
}

#[tokio::test]
async fn a_blocked_key_is_403_and_a_subject_key_needs_a_subject() {
    let q = Quota::per_minute(nz!(10));
    let limiter = memory(q);
    let app = app(vec![
        RateLimitPolicy::new("per-user", &q, limiter.clone(), KeySource::Subject).unwrap(),
    ]);
    limiter.block(HttpKey::Subject("mallory".into()), Duration::from_secs(300));
    let as_user = |user: &str| {
        let mut req = request("192.0.2.1:1");
        req.extensions_mut()
            .insert(AuthenticatedSubject(user.into()));
        req
    };
    let (status, fields, body) = answer(&app, as_user("mallory")).await;
    assert_eq!((status, body.as_str()), (403, "blocked\n"));
    assert_eq!(fields[2], "300");
    assert_eq!(answer(&app, as_user("alice")).await.0, 200);
    assert_eq!(answer(&app, request("192.0.2.1:1")).await.0, 400);
}

/// A header value and an authenticated subject are different keys even when their
/// text is equal: with one limiter behind a `Header(x-api-key)` policy and a
/// `Subject` policy, a client sending `x-api-key: alice` does not spend user alice's
/// quota (in memory, and on Redis, where they are `t:5:alice` and `s:5:alice`).
#[tokio::test]
async fn a_header_value_never_spends_the_quota_of_a_subject_with_the_same_name() {
    async fn run<L: palisade_ratelimit::Limiter<HttpKey> + 'static>(limiter: Arc<L>, q: &Quota) {
        let by_header = app(vec![
            RateLimitPolicy::new(
                "per-key",
                q,
                limiter.clone(),
                KeySource::Header("x-api-key".parse().unwrap()),
            )
            .unwrap(),
        ]);
        let by_subject = app(vec![
            RateLimitPolicy::new("per-user", q, limiter, KeySource::Subject).unwrap(),
        ]);
        let mut with_key = request("192.0.2.1:1");
        with_key
            .headers_mut()
            .insert("x-api-key", "alice".parse().unwrap());
        let as_alice = || {
            let mut req = request("192.0.2.2:1");
            req.extensions_mut()
                .insert(AuthenticatedSubject("alice".into()));
            req
        };
        assert_eq!(answer(&by_header, with_key).await.0, 200);
        assert_eq!(
            answer(&by_subject, as_alice()).await.0,
            200,
            "alice's own unit"
        );
        // The quota is real: alice's second request is refused.
        assert_eq!(answer(&by_subject, as_alice()).await.0, 429);
    }
    let q = Quota::per_minute(nz!(1));
    run(memory(q), &q).await;
    let server = RedisServer::start();
    let redis = RedisLimiter::builder(vec![Policy::new("p", q).unwrap()])
        .timeout(Duration::from_secs(5))
        .connect(&server.url())
        .await
        .unwrap();
    run(Arc::new(redis), &q).await;
    assert_eq!(HttpKey::Text("alice".into()).to_string(), "t:5:alice");
    assert_eq!(HttpKey::Subject("alice".into()).to_string(), "s:5:alice");
}

/// A table full of live keys refuses a new key (fail closed), but the client spent
/// no quota: the server ran out of room. `503` with `Retry-After`, not `429`, and no
/// `RateLimit` field claiming the client's quota is spent.
#[tokio::test]
async fn a_full_table_is_503_at_capacity_not_429() {
    let q = Quota::per_minute(nz!(2));
    let limiter: Arc<Memory> = Arc::new(
        KeyedLimiter::with_clock(q, ManualClock::new(Timestamp::from_unix_secs(1_000)))
            .with_max_keys(nz!(1)),
    );
    let app = app(vec![
        RateLimitPolicy::new(
            "per-ip",
            &q,
            limiter,
            KeySource::ClientIp(TrustedProxies::none()),
        )
        .unwrap(),
    ]);
    // The one slot goes to the first client, live for the next 30 s.
    assert_eq!(answer(&app, request("192.0.2.1:1")).await.0, 200);
    let res = app.clone().oneshot(request("192.0.2.2:1")).await.unwrap();
    assert_eq!(res.status(), 503);
    let h = |n: &str| res.headers().get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("content-type").unwrap(), "text/plain; charset=utf-8");
    // Retry after one emission interval (2 per minute: 30 s).
    assert_eq!(h("retry-after").unwrap(), "30");
    assert_eq!(h("ratelimit-policy").unwrap(), r#""per-ip";q=2;w=60"#);
    assert_eq!(h("ratelimit"), None);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"rate limiter at capacity\n");
    // The tracked client is answered as usual: its quota, then a quota's 429.
    assert_eq!(answer(&app, request("192.0.2.1:1")).await.0, 200);
    let (status, _, body) = answer(&app, request("192.0.2.1:1")).await;
    assert_eq!((status, body.as_str()), (429, "rate limited\n"));
}

#[tokio::test]
async fn redis_down_closed_is_503_with_retry_after_and_open_passes_marked() {
    let mut server = RedisServer::start();
    let q = Quota::per_minute(nz!(100));
    let url = server.url();
    let connect = |failure| {
        RedisLimiter::builder(vec![Policy::new("p", q).unwrap()])
            .failure_policy(failure)
            .timeout(Duration::from_millis(300))
            .circuit_breaker(nz!(1), Duration::from_secs(2))
            .connect(&url)
    };
    let closed = Arc::new(connect(FailurePolicy::Closed).await.unwrap());
    let open = Arc::new(connect(FailurePolicy::Open).await.unwrap());
    let by_ip = || KeySource::ClientIp(TrustedProxies::none());
    let closed_app = app(vec![
        RateLimitPolicy::new("shared", &q, closed, by_ip()).unwrap(),
    ]);
    let open_app = Router::new().route("/", get(|| async { "ok" })).layer(
        RateLimitLayer::new(vec![
            RateLimitPolicy::new("shared", &q, open, by_ip()).unwrap(),
        ])
        .unwrap()
        .fields_on_allowed(),
    );
    assert_eq!(answer(&closed_app, request("192.0.2.9:1")).await.0, 200);
    // A block through core-traits' IpBlocker reaches the layer's client-IP key.
    let blocker = RedisLimiter::builder(vec![Policy::new("p", q).unwrap()])
        .connect(&url)
        .await
        .unwrap();
    palisade_core_traits::IpBlocker::block_ip(
        &blocker,
        "192.0.2.66".parse().unwrap(),
        Duration::from_secs(60),
        "test",
    )
    .await
    .unwrap();
    let (status, fields, _) = answer(&closed_app, request("192.0.2.66:1")).await;
    assert_eq!((status, fields[2].as_str()), (403, "60"));
    // Opted in, through Redis: a new client's count after its first request, the
    // bucket full again in 0.6 s (rounded up).
    let (_, fields, _) = answer(&open_app, request("192.0.2.10:1")).await;
    assert_eq!(fields[0], r#""shared";q=100;w=60"#);
    assert_eq!(fields[1], r#""shared";r=99;t=1"#);
    assert_eq!(fields[3], "");
    server.stop();
    let (status, fields, body) = answer(&closed_app, request("192.0.2.9:1")).await;
    assert_eq!((status, body.as_str()), (503, "rate limit unavailable\n"));
    assert_eq!(fields[2], "2", "the breaker's cool-down");
    // The policy is still named, but no `RateLimit` field: nothing says how much of
    // its quota the client has left, and `r=0` would claim it spent it all.
    assert_eq!(fields[0], r#""shared";q=100;w=60"#);
    assert_eq!(fields[1], "", "no RateLimit field on an outage");
    let (status, fields, body) = answer(&open_app, request("192.0.2.9:1")).await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(fields[3], "fail-open");
    // Admitted failing open: the policy is named, no count is claimed.
    assert_eq!(fields[0], r#""shared";q=100;w=60"#);
    assert_eq!(fields[1], "");
}

#[tokio::test]
async fn redis_down_local_share_passes_marked_and_a_key_too_long_is_the_clients_400() {
    let mut server = RedisServer::start();
    let q = Quota::per_minute(nz!(4));
    let shared = RedisLimiter::builder(vec![Policy::new("p", q).unwrap()])
        .failure_policy(FailurePolicy::LocalShare { instances: nz!(2) })
        .timeout(Duration::from_millis(300))
        .circuit_breaker(nz!(1), Duration::from_secs(2))
        .connect(&server.url())
        .await
        .unwrap();
    let by_key = KeySource::Header("x-api-key".parse().unwrap());
    let app = app(vec![
        RateLimitPolicy::new("per-key", &q, Arc::new(shared), by_key).unwrap(),
    ]);
    let with_key = |key: &str| {
        let mut req = request("192.0.2.9:1");
        req.headers_mut().insert("x-api-key", key.parse().unwrap());
        req
    };
    let (status, fields, _) = answer(&app, with_key("k1")).await;
    assert_eq!((status, fields[3].as_str()), (200, ""));
    // A header value longer than a Redis key may be is the client's error, not an
    // outage (no 503, no warning per request).
    let long = "k".repeat(palisade_ratelimit::MAX_KEY_LEN + 1);
    let (status, _, body) = answer(&app, with_key(&long)).await;
    assert_eq!((status, body.as_str()), (400, "rate-limit key too long\n"));
    server.stop();
    // Redis down: this instance's share (2 of 4) admits, and says so.
    for _ in 0..2 {
        let (status, fields, body) = answer(&app, with_key("k1")).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        assert_eq!(fields[3], "local-share");
    }
    assert_eq!(answer(&app, with_key("k1")).await.0, 429);
}

/// One HTTP/1.1 request over a real socket: the status line's code and the body.
async fn send(addr: SocketAddr, extra_headers: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n{extra_headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    (status, out)
}

#[tokio::test]
async fn over_a_socket_a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let q = Quota::per_minute(nz!(2));
    // Only 10.0.0.0/8 proxies are trusted: the loopback peer's X-Forwarded-For is not.
    let proxies = TrustedProxies::networks(["10.0.0.0/8".parse().unwrap()]);
    let app = app(vec![
        RateLimitPolicy::new("per-ip", &q, memory(q), KeySource::ClientIp(proxies)).unwrap(),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let (status, text) = send(addr, "").await;
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("ok"), "{text}");
    assert_eq!(send(addr, "x-forwarded-for: 203.0.113.1\r\n").await.0, 200);
    let (status, text) = send(addr, "x-forwarded-for: 203.0.113.2\r\n").await;
    assert_eq!(status, 429, "{text}");
    assert!(
        text.contains("ratelimit-policy: \"per-ip\";q=2;w=60\r\n"),
        "{text}"
    );
    assert!(text.contains("retry-after: 30\r\n"), "{text}");
    assert!(text.ends_with("rate limited\n"), "{text}");
}

/// The bytes a key feeds its hasher.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl std::hash::Hasher for Bytes {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// Keys from a small domain (bytes that are tags, short strings, addresses made of
/// them), so that lookalike keys of different forms meet in one case.
fn http_key() -> impl proptest::strategy::Strategy<Value = HttpKey> {
    use proptest::prelude::*;
    let byte = proptest::sample::select(vec![0u8, 1, 2, 3, 4, b'a', 0xff]);
    let leaf = prop_oneof![
        proptest::array::uniform4(byte.clone())
            .prop_map(|o| HttpKey::Ip(std::net::Ipv4Addr::from(o).into())),
        proptest::array::uniform16(byte)
            .prop_map(|o| HttpKey::Ip(std::net::Ipv6Addr::from(o).into())),
        "[\\x00-\\x04a]{0,3}".prop_map(|t| HttpKey::Text(t.into())),
        "[\\x00-\\x05a]{0,3}".prop_map(|t| HttpKey::Subject(t.into())),
        proptest::sample::select(vec!["", "a", "\u{2}", "\u{3}a"]).prop_map(HttpKey::Route),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        proptest::collection::vec(inner, 0..3).prop_map(|p| HttpKey::Composite(p.into()))
    })
}

proptest::proptest! {
    /// The in-memory table keeps only a hash of each key: two different keys must
    /// never feed the hasher the same bytes (or they would always share a state).
    #[test]
    fn different_keys_feed_the_hasher_different_bytes(
        keys in proptest::collection::vec(http_key(), 40),
    ) {
        use std::hash::Hash;
        let bytes: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| {
                let mut h = Bytes::default();
                k.hash(&mut h);
                h.0
            })
            .collect();
        for (a, ba) in keys.iter().zip(&bytes) {
            for (b, bb) in keys.iter().zip(&bytes) {
                proptest::prop_assert_eq!(a == b, ba == bb, "{:?} {:?}", a, b);
            }
        }
    }
}
