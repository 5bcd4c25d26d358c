//! Two gateway instances on one Redis (a testkit redis-server, then the 3-node
//! cluster) behave as one: a token issued by one is accepted by the other, a token
//! revoked through one is refused by the other, a per-account limit counts the
//! attempts of both, and a block a playbook sets on one holds on the other.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use palisade_core_traits::{
    Clock, EventId, EventKind, ManualClock, SecurityEvent, Severity, Subject, Timestamp,
};
use palisade_gateway::config::Config;
use palisade_gateway::server::{Running, start};
use palisade_testkit::{RedisCluster, RedisServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LONDON: &str = "81.2.69.142";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

struct Instance {
    gw: Running,
    base: String,
    _dir: tempfile::TempDir,
}

async fn instance(redis: &str, clock: Arc<ManualClock>) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().display().to_string();
    let config = Config::try_parse_from([
        "palisade-gateway",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        &state,
        "--trusted-proxies",
        "127.0.0.1/32",
        "--redis",
        redis,
    ])
    .unwrap();
    let gw = start(config, clock).await.unwrap();
    let base = format!("http://{}", gw.addr);
    // Ready once the revocation replica is proven in sync (before, tokens are refused).
    let http = reqwest::Client::new();
    let mut ready = Value::Null;
    for _ in 0..50 {
        let r = http.get(format!("{base}/readyz")).send().await.unwrap();
        let ok = r.status() == StatusCode::OK;
        ready = r.json().await.unwrap();
        if ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready["revocations"]["fresh"], true, "{ready}");
    Instance {
        gw,
        base,
        _dir: dir,
    }
}

async fn login(
    http: &reqwest::Client,
    at: &Instance,
    user: &str,
    password: &str,
) -> (StatusCode, Value) {
    let r = http
        .post(format!("{}/login", at.base))
        .header("x-forwarded-for", LONDON)
        .header("user-agent", UA)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn me(http: &reqwest::Client, at: &Instance, token: &str) -> StatusCode {
    http.get(format!("{}/api/me", at.base))
        .header("x-forwarded-for", "192.0.2.10")
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// Polls `f` every 50 ms for up to 3 s (within the per-address limit) until it
/// returns `want`; returns the last answer.
async fn eventually<F, Fut>(want: StatusCode, mut f: F) -> StatusCode
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StatusCode>,
{
    let mut last = f().await;
    for _ in 0..60 {
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = f().await;
    }
    last
}

async fn two_instances_act_as_one(redis: &str) {
    // Time passes as it does (the token-blacklist replica proves freshness by the
    // monotonic clock moving between its reads), from a fixed start.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let ticking = clock.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            ticking.advance(Duration::from_millis(5));
        }
    });
    let a = instance(redis, clock.clone()).await;
    let b = instance(redis, clock.clone()).await;
    let http = reqwest::Client::new();

    // A token issued by A is accepted by B, and B's by A (A reads B's keys on its next
    // refresh).
    let (s, body) = login(&http, &a, "alice", "alice-demo-password").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token_a = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(me(&http, &b, &token_a).await, StatusCode::OK);
    let (s, body) = login(&http, &b, "bob", "bob-demo-password").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token_b = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        eventually(StatusCode::OK, || me(&http, &a, &token_b)).await,
        StatusCode::OK
    );
    // Both JWKS routes publish both instances' keys.
    let kids = |v: Value| -> Vec<String> {
        let mut k: Vec<String> = v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        k.sort();
        k
    };
    let jwks_a: Value = http
        .get(format!("{}/.well-known/jwks.json", a.base))
        .header("x-forwarded-for", "192.0.2.11")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks_b: Value = http
        .get(format!("{}/.well-known/jwks.json", b.base))
        .header("x-forwarded-for", "192.0.2.11")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kids(jwks_a.clone()).len(), 2, "{jwks_a}");
    assert_eq!(kids(jwks_a), kids(jwks_b));

    // Revoked through A (logout), refused by B.
    let r = http
        .post(format!("{}/logout", a.base))
        .bearer_auth(&token_a)
        .header("x-forwarded-for", LONDON)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        eventually(StatusCode::UNAUTHORIZED, || me(&http, &b, &token_a)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&http, &b, &token_b).await,
        StatusCode::OK,
        "only the revoked token"
    );

    // The per-account login limit (5 a minute) counts the attempts on both.
    for at in [&a, &b, &a, &b, &a] {
        assert_eq!(
            login(&http, at, "dave", "wrong").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login(&http, &b, "dave", "wrong").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&http, &a, "DAVE", "wrong").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    // A playbook block set on A holds on B (also for the IPv4-mapped form).
    let event = SecurityEvent::new(
        EventId::new("bf-fleet").unwrap(),
        clock.now(),
        EventKind::BruteForce,
        Severity::High,
        Subject::ip("198.51.100.77".parse().unwrap()),
        "test",
    );
    a.gw.gateway.bus.publish(event).await;
    let healthz = |from: &'static str| {
        let (http, base) = (http.clone(), b.base.clone());
        async move {
            http.get(format!("{base}/healthz"))
                .header("x-forwarded-for", from)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        eventually(StatusCode::FORBIDDEN, || healthz("::ffff:198.51.100.77")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(healthz("198.51.100.78").await, StatusCode::OK);
    a.gw.shutdown().await;
    b.gw.shutdown().await;
    ticker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_redis_server_act_as_one() {
    let server = RedisServer::start();
    two_instances_act_as_one(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_redis_cluster_act_as_one() {
    let cluster = RedisCluster::start();
    two_instances_act_as_one(&cluster.urls().join(",")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_stops_the_start_naming_it() {
    // A port nothing listens on (a server started and stopped).
    let mut server = RedisServer::start();
    let url = server.url();
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().display().to_string();
    let config = Config::try_parse_from([
        "palisade-gateway",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        &state,
        "--redis",
        &url,
    ])
    .unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let err = start(config, clock).await.unwrap_err().to_string();
    assert!(err.starts_with("redis:"), "{err}");
}
