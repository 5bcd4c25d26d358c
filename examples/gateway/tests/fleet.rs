//! Two gateway instances on one Redis (a testkit redis-server, then the 3-node
//! cluster) behave as one: a token issued by one is accepted by the other, a token
//! revoked through one is refused by the other, a per-account limit counts the
//! attempts of both, a block a playbook sets on one holds on the other, a request
//! with an `Idempotency-Key` retried on the other is replayed, and step-ups (a
//! playbook's requirement, a challenge and its attempts) are the fleet's, and a
//! playbook action both instances plan is carried out (and undone) by one of them.
//! With Redis gone, what cannot be checked is refused.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{
    Clock, EventId, EventKind, ManualClock, Score, SecurityEvent, Severity, StepUpRequirer,
    Subject, Timestamp,
};
use palisade_gateway::server::{Running, start};
use palisade_gateway::users::demo_totp;
use palisade_testkit::{RedisCluster, RedisServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;

const LONDON: &str = "81.2.69.142";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

struct Instance {
    gw: Running,
    base: String,
    dir: tempfile::TempDir,
}

async fn instance(redis: &str, clock: Arc<ManualClock>) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(
        dir.path(),
        &["--trusted-proxies", "127.0.0.1/32", "--redis", redis],
    );
    let gw = start(config, clock).await.unwrap();
    let base = format!("http://{}", gw.addr);
    let ready = common::ready(gw.addr).await;
    assert_eq!(ready["revocations"]["fresh"], true, "{ready}");
    Instance { gw, base, dir }
}

/// A `POST` of `body` to `path` from London, with an `Idempotency-Key` if given:
/// status, whether it was a replay, the body.
async fn post(
    http: &reqwest::Client,
    at: &Instance,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, bool, Value) {
    let mut r = http
        .post(format!("{}{path}", at.base))
        .header("x-forwarded-for", LONDON)
        .header("user-agent", UA);
    if let Some(key) = key {
        r = r.header("idempotency-key", key);
    }
    let r = r.json(&body).send().await.unwrap();
    let replayed = (r.headers().get("idempotent-replayed")).is_some_and(|v| v == "true");
    (r.status(), replayed, r.json().await.unwrap_or(Value::Null))
}

async fn login(
    http: &reqwest::Client,
    at: &Instance,
    user: &str,
    password: &str,
) -> (StatusCode, Value) {
    let (s, _, body) = post(http, at, "/login", None, credentials(user, password)).await;
    (s, body)
}

fn credentials(user: &str, password: &str) -> Value {
    json!({"username": user, "password": password})
}

/// A `ManualClock` from a fixed start that moves as time does (the token-blacklist
/// replica proves freshness by the monotonic clock moving between its reads), and the
/// task that moves it.
fn ticking_clock() -> (Arc<ManualClock>, tokio::task::JoinHandle<()>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let ticking = clock.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            ticking.advance(Duration::from_millis(5));
        }
    });
    (clock, ticker)
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

/// Publishes on `at`'s bus a brute-force event about `ip` (the default playbooks
/// block it and notify).
async fn brute_force(at: &Instance, id: &str, ip: &str, clock: &ManualClock) {
    let event = SecurityEvent::new(
        EventId::new(id).unwrap(),
        clock.now(),
        EventKind::BruteForce,
        Severity::High,
        Subject::ip(ip.parse().unwrap()),
        "test",
    );
    at.gw.gateway.bus.publish(event).await;
}

/// `GET /healthz` on `at` from `ip` (through the trusted proxy).
async fn healthz(http: &reqwest::Client, at: &Instance, ip: &str) -> StatusCode {
    http.get(format!("{}/healthz", at.base))
        .header("x-forwarded-for", ip)
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
    let (clock, ticker) = ticking_clock();
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
    // A key refresh that finds the same keys keeps the token cache: the next request
    // is a hit, not a second ES256 verification.
    let gw = &b.gw.gateway;
    assert_eq!(me(&http, &b, &token_a).await, StatusCode::OK);
    let misses = gw.validator.stats().misses;
    for _ in 0..3 {
        gw.refresh_keys().await.unwrap();
        assert_eq!(me(&http, &b, &token_a).await, StatusCode::OK);
    }
    assert_eq!(gw.validator.stats().misses, misses, "verified again");

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
    brute_force(&a, "bf-fleet", "198.51.100.77", &clock).await;
    assert_eq!(
        eventually(StatusCode::FORBIDDEN, || healthz(
            &http,
            &b,
            "::ffff:198.51.100.77"
        ))
        .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(healthz(&http, &b, "198.51.100.78").await, StatusCode::OK);

    idempotency_is_shared(&http, &a, &b).await;
    step_ups_are_shared(&http, &a, &b, &clock).await;
    actions_are_carried_out_once(&http, &a, &b, &clock).await;
    a_block_claimed_anew_elsewhere_is_not_lifted(&http, &a, &clock).await;
    an_ipv6_64_is_one_offender(&http, &a, &b, &clock).await;
    operator_sessions_are_the_fleets(&a, &b).await;
    a.gw.shutdown().await;
    b.gw.shutdown().await;
    ticker.abort();
}

/// An operator signed in on A is signed in on B (no sticky routing); signing out on
/// A, or a playbook ending the user's sessions on B, ends the session everywhere.
async fn operator_sessions_are_the_fleets(a: &Instance, b: &Instance) {
    use palisade_core_traits::SessionTerminator;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_in = || async {
        let r = (http.post(format!("{}/dashboard/login", a.base)))
            .header("x-forwarded-for", LONDON)
            .form(&[("username", "admin"), ("password", "admin-demo-password")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_owned()
    };
    let signed_in = |at: &Instance, cookie: String| {
        let (http, base) = (http.clone(), at.base.clone());
        async move {
            let page = (http.get(format!("{base}/")).header("cookie", cookie))
                .header("x-forwarded-for", "192.0.2.12")
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            !page.contains("/dashboard/login")
        }
    };
    let cookie = sign_in().await;
    assert!(signed_in(a, cookie.clone()).await);
    assert!(
        signed_in(b, cookie.clone()).await,
        "a session of A's holds on B"
    );
    let r = (http.post(format!("{}/dashboard/logout", a.base)))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!signed_in(b, cookie).await, "signed out on A, out on B");
    let cookie = sign_in().await;
    let operators = &a.gw.gateway.sessions.operators;
    let in_flight = operators.generation("admin").await.unwrap();
    (b.gw.gateway.sessions.terminate_sessions("admin", "test"))
        .await
        .unwrap();
    assert!(!signed_in(a, cookie).await, "ended by B, out on A");
    assert_eq!(
        operators.open("admin", in_flight).await,
        palisade_gateway::admin::Opened::Ended,
        "a sign-in on A that began before B ended the sessions opens none"
    );
    let cookie = sign_in().await;
    assert!(signed_in(b, cookie).await, "a sign-in after the end holds");
}

async fn keyed_login(
    http: &reqwest::Client,
    at: &Instance,
    key: &str,
    user: &str,
    password: &str,
) -> (StatusCode, bool, Value) {
    post(http, at, "/login", Some(key), credentials(user, password)).await
}

/// The activities `at` shows that happened on `at` itself (the dashboard shows the
/// fleet's: the others' are marked with their instance), of `kind` with `field` =
/// `value`.
fn own(at: &Instance, kind: &str, field: &str, value: &str) -> usize {
    let snapshot: Value =
        serde_json::from_str(at.gw.gateway.dashboard.snapshot().as_str()).unwrap();
    let recent = snapshot["recent"].as_array().unwrap();
    (recent.iter())
        .filter(|a| a.get("instance").is_none() && a["kind"] == kind && a[field] == value)
        .count()
}

/// A login on A retried with its key on B is replayed (B's handler never ran: B
/// shows no login of its own, one replay); the key with another payload on B is
/// refused.
async fn idempotency_is_shared(http: &reqwest::Client, a: &Instance, b: &Instance) {
    let logins = |result| own(b, "login", "result", result);
    let (success, failure) = (logins("success"), logins("failure"));
    let replays = own(b, "idempotency", "outcome", "replay");
    let (s, replayed, first) =
        keyed_login(http, a, "\"fleet-1\"", "alice", "alice-demo-password").await;
    assert_eq!((s, replayed), (StatusCode::OK, false), "{first}");
    let (s, replayed, again) =
        keyed_login(http, b, "\"fleet-1\"", "alice", "alice-demo-password").await;
    assert_eq!((s, replayed), (StatusCode::OK, true), "{again}");
    assert_eq!(again["access_token"], first["access_token"]);
    assert_eq!(logins("success"), success);
    assert_eq!(own(b, "idempotency", "outcome", "replay"), replays + 1);
    let (s, _, body) = keyed_login(http, b, "\"fleet-1\"", "alice", "another-password").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(logins("failure"), failure);
}

async fn answer(
    http: &reqwest::Client,
    at: &Instance,
    challenge: &str,
    code: &str,
) -> (StatusCode, Value) {
    let body = json!({"challenge": challenge, "code": code});
    let (s, _, body) = post(http, at, "/login/step-up", None, body).await;
    (s, body)
}

/// A playbook's step-up requirement set through A's bus applies to a login on B; a
/// challenge opened on A is completed on B; the attempts of a challenge are counted
/// on both.
async fn step_ups_are_shared(
    http: &reqwest::Client,
    a: &Instance,
    b: &Instance,
    clock: &ManualClock,
) {
    let event = SecurityEvent::new(
        EventId::new("anomalous-fleet").unwrap(),
        clock.now(),
        EventKind::AnomalousLogin,
        Severity::Medium,
        Subject::user("carol"),
        "test",
    )
    .with_score(Score::new(0.9).unwrap());
    a.gw.gateway.bus.publish(event).await;
    let mut required = false;
    for _ in 0..60 {
        required = b.gw.gateway.step_ups.required("Carol").await;
        if required {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(required, "the playbook's step-up did not reach B");
    let (s, on_b) = login(http, b, "carol", "carol-demo-password").await;
    assert_eq!(
        (s, on_b["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("step_up_required")),
        "{on_b}"
    );
    let opened_on_b = on_b["challenge"].as_str().unwrap().to_owned();
    let (s, on_a) = login(http, a, "carol", "carol-demo-password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{on_a}");
    let opened_on_a = on_a["challenge"].as_str().unwrap().to_owned();

    let right = demo_totp("carol", clock.now().as_unix_secs()).unwrap();
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    // Opened on A, answered on B; then spent on both.
    let (s, body) = answer(http, b, &opened_on_a, &right).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body["access_token"].is_string());
    for at in [a, b] {
        assert_eq!(
            answer(http, at, &opened_on_a, &right).await.1["error"],
            "invalid_challenge"
        );
    }
    // The code that passed on B does not pass again on A (RFC 6238 §5.2, fleet-wide).
    let (s, again) = login(http, a, "carol", "carol-demo-password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{again}");
    let replay = again["challenge"].as_str().unwrap();
    assert_eq!(
        answer(http, a, replay, &right).await.1["error"],
        "invalid_code"
    );
    // Three wrong codes, spread over both, spend a challenge: the right one is too late.
    for at in [a, b, a] {
        assert_eq!(
            answer(http, at, &opened_on_b, wrong).await.1["error"],
            "invalid_code"
        );
    }
    let (s, body) = answer(http, b, &opened_on_b, &right).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_challenge"))
    );
}

/// The audit records of `at` about `ip`: (action type, verdict, message).
fn audited(at: &Instance, ip: &str) -> Vec<(String, String, String)> {
    let log = std::fs::read_to_string(at.dir.path().join("audit.jsonl")).unwrap();
    // Whole lines only: the response task may be writing the last one.
    (log.split_inclusive('\n'))
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["unmapped"]["target"]["ip"] == ip)
        .map(|r| {
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            (
                text(&r["unmapped"]["action"]["type"]),
                text(&r["unmapped"]["verdict"]["verdict"]),
                text(&r["message"]),
            )
        })
        .collect()
}

/// Polls `at`'s audit about `ip` every 50 ms for up to 15 s (a Redis out of reach
/// costs timeouts first) until it has `n` records.
async fn audited_n(at: &Instance, ip: &str, n: usize) -> Vec<(String, String, String)> {
    for _ in 0..300 {
        if audited(at, ip).len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    audited(at, ip)
}

/// One attack seen by both instances: both plan the block and the notification, A
/// (first) carries them out, B records them as carried out elsewhere; at expiry A
/// lifts the block and B lifts nothing.
async fn actions_are_carried_out_once(
    http: &reqwest::Client,
    a: &Instance,
    b: &Instance,
    clock: &ManualClock,
) {
    const IP: &str = "198.51.100.90";
    brute_force(a, "bf-once-a", IP, clock).await;
    assert_eq!(
        eventually(StatusCode::FORBIDDEN, || healthz(http, b, IP)).await,
        StatusCode::FORBIDDEN
    );
    brute_force(b, "bf-once-b", IP, clock).await;
    let on_a = audited_n(a, IP, 2).await;
    let on_b = audited_n(b, IP, 2).await;
    let verdicts = |records: &[(String, String, String)]| -> Vec<(String, String)> {
        records
            .iter()
            .map(|(a, v, _)| (a.clone(), v.clone()))
            .collect()
    };
    let pair = |action: &str, verdict: &str| (action.to_owned(), verdict.to_owned());
    assert_eq!(
        verdicts(&on_a),
        vec![pair("block_ip", "execute"), pair("notify", "execute")]
    );
    assert_eq!(
        verdicts(&on_b),
        vec![pair("block_ip", "elsewhere"), pair("notify", "elsewhere")],
        "{on_b:?}"
    );
    assert!(
        on_b[0]
            .2
            .ends_with("carried out by another instance: not executed here, not undone here"),
        "{on_b:?}"
    );
    // Past the block's 15 minutes: A lifts it (and resolves its notification), B's
    // expiry undoes nothing.
    clock.advance(Duration::from_secs(16 * 60));
    let on_a = audited_n(a, IP, 4).await;
    let on_b = audited_n(b, IP, 4).await;
    let expiries = |records: &[(String, String, String)]| -> Vec<String> {
        let mut m: Vec<String> = records[2..].iter().map(|r| r.2.clone()).collect();
        m.sort();
        m
    };
    assert!(
        expiries(&on_a)
            .iter()
            .any(|m| m.ends_with("expired, reverted")),
        "{on_a:?}"
    );
    assert!(
        expiries(&on_b).iter().all(|m| m.ends_with(" expired")),
        "{on_b:?}"
    );
    assert_eq!(
        eventually(StatusCode::OK, || healthz(http, b, IP)).await,
        StatusCode::OK,
        "A lifts its block"
    );
    // The attacker comes back through B alone. B planned the first ban too, but A
    // carried it out: B bans as one engine that saw both would (the second ban, twice
    // as long), not as a first offender, and not as a third.
    brute_force(b, "bf-again-b", IP, clock).await;
    assert_eq!(
        eventually(StatusCode::FORBIDDEN, || healthz(http, a, IP)).await,
        StatusCode::FORBIDDEN
    );
    let on_b = audited_n(b, IP, 5).await;
    let again = (on_b[4..].iter())
        .find(|r| r.0 == "block_ip")
        .unwrap_or_else(|| panic!("{on_b:?}"));
    assert_eq!(again.1, "execute", "{on_b:?}");
    assert!(
        again.2.contains("repeat offender (1 earlier bans")
            && again.2.ends_with("block escalated to 1800s"),
        "{again:?}"
    );
}

/// A blocks an address; its claim lapses with the block and another instance claims
/// the address anew (a new block) before A's expiry runs: A does not lift that block.
/// The claim is written here as that instance would (the key: SHA-256 of the action's
/// kind and target, under the fleet's prefix and hash tag).
async fn a_block_claimed_anew_elsewhere_is_not_lifted(
    http: &reqwest::Client,
    a: &Instance,
    clock: &ManualClock,
) {
    const IP: &str = "198.51.100.92";
    brute_force(a, "bf-lapse", IP, clock).await;
    assert_eq!(audited_n(a, IP, 2).await[0].1, "execute");
    let target = format!("block_ip\n{{\"type\":\"ip\",\"ip\":\"{IP}\"}}");
    let hash = ring::digest::digest(&ring::digest::SHA256, target.as_bytes());
    let key = format!(
        "palisade:gateway:playbooks:{{claims}}:{}",
        hex::encode(hash)
    );
    let redis = a.gw.gateway.redis.as_ref().unwrap();
    let conn = palisade_gateway::shared::RedisConn::connect(redis)
        .await
        .unwrap();
    let mut set = palisade_token_blacklist::redis::cmd("SET");
    set.arg(&key)
        .arg("gw-elsewhere")
        .arg("XX")
        .arg("PX")
        .arg(3_600_000);
    let replaced: Option<String> = conn.query(&set).await.unwrap();
    assert_eq!(
        replaced.as_deref(),
        Some("OK"),
        "A's claim is where it should be"
    );
    clock.advance(Duration::from_secs(16 * 60));
    let on_a = audited_n(a, IP, 4).await;
    assert!(
        on_a.iter()
            .any(|r| r.0 == "block_ip" && r.2.ends_with(" expired")),
        "{on_a:?}"
    );
    assert!(
        !on_a.iter().any(|r| r.2.ends_with("expired, reverted")),
        "{on_a:?}"
    );
    assert_eq!(
        healthz(http, a, IP).await,
        StatusCode::FORBIDDEN,
        "A lifted another's block"
    );
}

/// The limiter blocks an IPv6 client's /64, and the fleet and each engine take the
/// /64 as one offender: another address of it during the block is a duplicate on A
/// and held by A for B; the block ends for the whole /64, and the /64's next offence,
/// from yet another address and on the other instance, is its second ban.
async fn an_ipv6_64_is_one_offender(
    http: &reqwest::Client,
    a: &Instance,
    b: &Instance,
    clock: &ManualClock,
) {
    const FIRST: &str = "2001:db8:64:1::1";
    const SECOND: &str = "2001:db8:64:1::2";
    const NEIGHBOUR: &str = "2001:db8:64:1::3";
    const LATER: &str = "2001:db8:64:1::5";
    brute_force(a, "bf-64-first", FIRST, clock).await;
    assert_eq!(
        eventually(StatusCode::FORBIDDEN, || healthz(http, b, NEIGHBOUR)).await,
        StatusCode::FORBIDDEN,
        "a block covers the /64"
    );
    clock.advance(Duration::from_secs(5 * 60));
    brute_force(a, "bf-64-second", SECOND, clock).await;
    let second = audited_n(a, SECOND, 2).await;
    assert!(
        second[0].1 == "suppressed" && second[0].2.contains("is active until"),
        "{second:?}"
    );
    brute_force(b, "bf-64-third", "2001:db8:64:1::4", clock).await;
    let on_b = audited_n(b, "2001:db8:64:1::4", 2).await;
    assert_eq!(on_b[0].1, "elsewhere", "{on_b:?}");
    // Past the block's 15 minutes: lifted, for the whole /64.
    clock.advance(Duration::from_secs(11 * 60));
    let first = audited_n(a, FIRST, 4).await;
    assert!(
        first.iter().any(|r| r.2.ends_with("expired, reverted")),
        "{first:?}"
    );
    assert_eq!(
        eventually(StatusCode::OK, || healthz(http, b, NEIGHBOUR)).await,
        StatusCode::OK
    );
    // B's record of A's block lasts as long as A's claim did on Redis, whose clock does
    // not follow the test's: past it too.
    clock.advance(Duration::from_secs(10 * 60));
    // The /64's second ban, planned by B from the fleet's history: twice as long.
    brute_force(b, "bf-64-later", LATER, clock).await;
    let later = audited_n(b, LATER, 2).await;
    assert_eq!(later[0].1, "execute", "{later:?}");
    assert!(
        later[0].2.contains("repeat offender (1 earlier bans"),
        "{later:?}"
    );
    assert_eq!(
        eventually(StatusCode::FORBIDDEN, || healthz(http, a, NEIGHBOUR)).await,
        StatusCode::FORBIDDEN
    );
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
    let config = common::config(dir.path(), &["--redis", &url]);
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let err = start(config, clock).await.unwrap_err().to_string();
    assert!(err.starts_with("redis:"), "{err}");
}

/// Redis gone: a login with an `Idempotency-Key` cannot be checked and is refused
/// `503` (it must not run twice unseen), and so is the answer to a challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_what_cannot_be_checked_is_refused() {
    let mut server = RedisServer::start();
    let (clock, ticker) = ticking_clock();
    let a = instance(&server.url(), clock.clone()).await;
    let http = reqwest::Client::new();
    a.gw.gateway
        .step_ups
        .require_step_up("carol", Duration::from_secs(3600), "test")
        .await
        .unwrap();
    let (s, body) = login(&http, &a, "carol", "carol-demo-password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let challenge = body["challenge"].as_str().unwrap().to_owned();
    server.stop();
    let before = a.gw.gateway.dashboard.counters();
    let (s, _, body) = keyed_login(&http, &a, "outage-1", "alice", "alice-demo-password").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let right = demo_totp("carol", clock.now().as_unix_secs()).unwrap();
    let (s, body) = answer(&http, &a, &challenge, &right).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
    // Without a key: the per-account limit (closed when Redis is gone) cannot
    // decide. `503`, not "too many attempts for this account", and not counted as a
    // refusal of the client.
    let (s, body) = login(&http, &a, "alice", "alice-demo-password").await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
        "{body}"
    );
    let after = a.gw.gateway.dashboard.counters();
    assert_eq!(after.rate_limited, before.rate_limited);
    assert_eq!(
        after.login_success, before.login_success,
        "a login ran unchecked"
    );
    assert_eq!(after.step_up_passed, before.step_up_passed);
    // No claim can be taken: the instance carries its playbooks' actions out itself
    // (a block tried here may fail; a block left to nobody would let the attacker in).
    brute_force(&a, "bf-outage", "198.51.100.91", &clock).await;
    let verdicts: Vec<_> = (audited_n(&a, "198.51.100.91", 2).await.into_iter())
        .map(|(action, verdict, _)| (action, verdict))
        .collect();
    let pair = |action: &str| (action.to_owned(), "execute".to_owned());
    assert_eq!(verdicts, vec![pair("block_ip"), pair("notify")]);
    // That block could not be set (Redis is gone): it holds the repeats back only
    // until its retry, not for its 15 minutes. Redis back, the next offence after
    // the retry is blocked.
    server.restart();
    let ip = "198.51.100.91";
    let mut blocked = StatusCode::OK;
    for n in 0..5 {
        // Past the retry of the block that failed (again, if Redis was not back yet).
        clock.advance(palisade_gateway::response::FAILED_RETRY + Duration::from_secs(1));
        brute_force(&a, &format!("bf-outage-again-{n}"), ip, &clock).await;
        blocked = eventually(StatusCode::FORBIDDEN, || healthz(&http, &a, ip)).await;
        if blocked == StatusCode::FORBIDDEN {
            break;
        }
    }
    assert_eq!(blocked, StatusCode::FORBIDDEN, "{:?}", audited(&a, ip));
    a.gw.shutdown().await;
    ticker.abort();
}
