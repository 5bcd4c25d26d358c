//! The gateway over real sockets: every route's statuses and headers, the step-up flow,
//! the composition attacks the hardening review found, idempotency under a retry storm,
//! threat intelligence and playbook blocks on the request path.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{
    Clock, EventId, EventKind, ManualClock, SecurityEvent, Severity, StepUpRequirer, Subject,
    Timestamp,
};
use palisade_device_fp::DeviceStore;
use palisade_gateway::server::{Running, start};
use palisade_gateway::users::demo_totp;
use reqwest::StatusCode;
use serde_json::{Value, json};

mod common;

/// MaxMind test addresses (the bundled databases locate them).
const LONDON: &str = "81.2.69.142";
const CHANGCHUN: &str = "175.16.199.0";

struct Harness {
    gw: Running,
    clock: Arc<ManualClock>,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

async fn gateway(extra: &[&str]) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let gw = start(common::config(dir.path(), extra), clock.clone())
        .await
        .unwrap();
    let base = format!("http://{}", gw.addr);
    Harness {
        gw,
        clock,
        http: reqwest::Client::new(),
        base,
        _dir: dir,
    }
}

/// Through a trusted proxy on loopback: the client is `from`.
async fn trusted() -> Harness {
    gateway(&["--trusted-proxies", "127.0.0.1/32"]).await
}

impl Harness {
    async fn login(&self, user: &str, password: &str, from: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/login", self.base))
            .header("x-forwarded-for", from)
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            )
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn token(&self, user: &str, from: &str) -> String {
        let (s, body) = self
            .login(user, &format!("{user}-demo-password"), from)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn me(&self, token: &str) -> StatusCode {
        self.http
            .get(format!("{}/api/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Waits until the response task has handled `n` detections.
    async fn detections(&self, n: u64) {
        for _ in 0..500 {
            if self.gw.gateway.dashboard.counters().detections >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("fewer than {n} detections handled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_with_the_right_status_and_headers() {
    let h = trusted().await;
    let b = &h.base;
    // Login.
    let r = h
        .http
        .post(format!("{b}/login"))
        .header("x-request-id", "req-abc_1")
        .json(&json!({"username": "Alice", "password": "alice-demo-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-request-id"], "req-abc_1");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        h.login("alice", "nope", LONDON).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        h.login("nobody", "nope", LONDON).await.0,
        StatusCode::UNAUTHORIZED
    );
    let r = h
        .http
        .post(format!("{b}/login"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());

    // The API: 401 before routing, with the RFC 6750 challenge.
    for path in [
        "/api/me",
        "/api/does-not-exist",
        "/api",
        "/api/",
        "/api/me/more",
    ] {
        let r = h.http.get(format!("{b}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"palisade\"");
    }
    // Another scheme is no bearer credential: a bare challenge (RFC 6750 §3.1);
    // a malformed bearer credential is `invalid_request`.
    let r = h
        .http
        .get(format!("{b}/api/me"))
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"palisade\"");
    for malformed in ["Bearer", "Bearer a b", "Bearer {}"] {
        let r = h
            .http
            .get(format!("{b}/api/me"))
            .header("authorization", malformed)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{malformed}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("error=\"invalid_request\""),
            "{malformed}"
        );
    }
    let r = h
        .http
        .get(format!("{b}/api/me"))
        .bearer_auth("e30.e30.e30")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let r = h
        .http
        .get(format!("{b}/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let claims: Value = r.json().await.unwrap();
    // With a valid token, the API's own answers: no such resource, or method.
    for path in ["/api/does-not-exist", "/api", "/api/"] {
        let r = h
            .http
            .get(format!("{b}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = h
        .http
        .post(format!("{b}/api/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // A method the route does not have is not an idempotent request: with a key it
    // stores nothing (else one account could fill the store with made-up keys).
    let stored = h.gw.gateway.idempotency.stored_bytes();
    for i in 0..3 {
        let r = (h.http.post(format!("{b}/api/me")))
            .bearer_auth(&token)
            .header("idempotency-key", format!("\"k-{i}\""))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    assert_eq!(h.gw.gateway.idempotency.stored_bytes(), stored);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "palisade-gateway");
    let r = h
        .http
        .get(format!("{b}/api/does-not-exist"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // JWKS: the key that signed the token.
    let jwks: Value = h
        .http
        .get(format!("{b}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    // Operations.
    assert_eq!(
        h.http
            .get(format!("{b}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        h.http
            .get(format!("{b}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let metrics = h
        .http
        .get(format!("{b}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("palisade_gateway_logins_success_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("palisade_gateway_requests_total"));

    // Logout revokes the token at once.
    let r = h
        .http
        .post(format!("{b}/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(h.me(&token).await, StatusCode::UNAUTHORIZED);
    h.gw.shutdown().await;
}

/// A brute force on bob from many addresses (failures anyone can make) steps bob's
/// next login up; it does not lock bob out. Before, the account's failures alone made
/// the verdict a block, and bob's right password was refused like a wrong one.
/// (A step-up answer tells a guesser the password was right, as every step-up does;
/// the per-account limit bounds how fast anyone gets to guess.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brute_force_on_an_account_steps_its_owner_up_not_out() {
    let h = trusted().await;
    for i in 0..40 {
        let _ = h.login("bob", "not-it", &format!("198.51.100.{i}")).await;
    }
    h.clock.advance(Duration::from_secs(60));
    let (s, wrong) = h.login("bob", "still-not-it", "198.51.100.201").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong["error"], "invalid_credentials", "{wrong}");
    let (s, right) = h.login("bob", "bob-demo-password", "198.51.100.200").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(right["error"], "step_up_required", "{right}");
    let code = demo_totp("bob", h.clock.now().as_unix_secs()).unwrap();
    let r = h
        .http
        .post(format!("{}/login/step-up", h.base))
        .header("x-forwarded-for", "198.51.100.200")
        .json(&json!({"challenge": right["challenge"], "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        h.me(body["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    h.gw.shutdown().await;
}

/// A login the risk verdict denies is answered as a wrong password: the right password
/// does not stand out. Here bob, at home in London for a month, signs in from
/// Changchun two minutes after his last login (impossible travel: a block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_login_tells_nothing_about_the_password() {
    let h = trusted().await;
    for _ in 0..30 {
        h.clock.advance(Duration::from_secs(86_400));
        h.token("bob", LONDON).await;
    }
    h.clock.advance(Duration::from_secs(120));
    let right = h.login("bob", "bob-demo-password", CHANGCHUN).await;
    let wrong = h.login("bob", "still-not-it", CHANGCHUN).await;
    assert_eq!(right.0, StatusCode::UNAUTHORIZED, "{}", right.1);
    assert_eq!(right, wrong, "the right password must not stand out");
    let snapshot: Value = serde_json::from_str(h.gw.gateway.dashboard.snapshot().as_str()).unwrap();
    let denied = (snapshot["recent"].as_array().unwrap().iter())
        .any(|a| a["result"] == "denied" && a["user"] == "bob");
    assert!(denied, "the operator still sees a denial: {snapshot}");
    h.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_step_up_is_completed_with_the_authenticator_code() {
    let h = trusted().await;
    h.gw.gateway
        .step_ups
        .require_step_up("carol", Duration::from_secs(3600), "test")
        .await
        .unwrap();
    // Password-only attempts that are stepped up build no trust in the device.
    for _ in 0..3 {
        let (s, body) = h.login("Carol", "carol-demo-password", LONDON).await;
        assert_eq!(
            (s, &body["error"]),
            (StatusCode::UNAUTHORIZED, &json!("step_up_required"))
        );
    }
    let carol_devices = || h.gw.gateway.devices.devices("carol");
    let device = carol_devices();
    assert_eq!(device.len(), 1);
    assert_eq!(
        (device[0].successful_logins, device[0].mfa_completions),
        (0, 0)
    );
    let (s, body) = h.login("Carol", "carol-demo-password", LONDON).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "step_up_required");
    let challenge = body["challenge"].as_str().unwrap().to_owned();
    let step = |code: String, from: &'static str| {
        let (http, b, ch) = (h.http.clone(), h.base.clone(), challenge.clone());
        async move {
            let r = http
                .post(format!("{b}/login/step-up"))
                .header("x-forwarded-for", from)
                .json(&json!({"challenge": ch, "code": code}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let now = h.clock.now().as_unix_secs();
    let right = demo_totp("carol", now).unwrap();
    // The right code from elsewhere does not count, and spends none of the
    // challenge's attempts (more tries than it has); a wrong code is refused.
    for _ in 0..=palisade_gateway::service::CHALLENGE_ATTEMPTS {
        assert_eq!(
            step(right.clone(), CHANGCHUN).await.1["error"],
            "invalid_challenge"
        );
    }
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    assert_eq!(step(wrong.into(), LONDON).await.1["error"], "invalid_code");
    let (s, body) = step(right.clone(), LONDON).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        h.me(body["access_token"].as_str().unwrap()).await,
        StatusCode::OK
    );
    // A challenge is answered once.
    assert_eq!(step(right, LONDON).await.1["error"], "invalid_challenge");
    h.gw.shutdown().await;
}

/// The review's attack, through the whole service: a month of logins from London, then
/// one wrong password from China minutes later. The owner keeps their session; the
/// next login to the account asks for a step-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_login_from_afar_does_not_log_the_victim_out() {
    let h = trusted().await;
    let mut token = String::new();
    for _ in 0..30 {
        h.clock.advance(Duration::from_secs(86_400));
        token = h.token("alice", LONDON).await;
    }
    // Minutes later (the token lives 15), a wrong password from the other end of Asia.
    h.clock.advance(Duration::from_secs(120));
    let before = h.gw.gateway.dashboard.counters().detections;
    let (s, _) = h.login("alice", "guessed-wrong", CHANGCHUN).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    h.detections(before + 1).await;
    // Give the playbooks time to act (they would have revoked at once).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        h.me(&token).await,
        StatusCode::OK,
        "the victim was logged out"
    );
    // What the attempt may do: raise the bar for the next login.
    assert!(h.gw.gateway.step_ups.required("alice").await);
    let (s, body) = h.login("alice", "alice-demo-password", LONDON).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("step_up_required"))
    );
    h.gw.shutdown().await;
}

/// A playbook's `terminate_sessions` that lands while a login is in flight (its
/// password checked before the end) does not let that login outlive it: an end before
/// the token is minted refuses the login, an end after it revokes the token. (The
/// operator form: `admin::tests`, and on Redis `fleet.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_in_flight_when_the_users_sessions_end_does_not_outlive_them() {
    use palisade_core_traits::SessionTerminator;
    let h = trusted().await;
    let gw = &h.gw.gateway;
    let token = h.token("alice", LONDON).await;
    let began = gw.sessions.operators.generation("alice").await.unwrap();
    h.clock.advance(Duration::from_secs(5));
    let end = || async {
        (gw.sessions.terminate_sessions("alice", "test"))
            .await
            .unwrap()
    };
    end().await;
    let r = gw.issue_unless_ended("alice", began).await.unwrap_err();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "ended before the token"
    );
    let body = axum::body::to_bytes(r.into_body(), 4096).await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "sessions_ended");
    assert_eq!(h.me(&token).await, StatusCode::UNAUTHORIZED);

    // The revocation reaches 5 s (the instances' clock skew) past the end: a token
    // stamped up to that late, as an instance whose clock runs ahead does, is covered.
    h.clock.advance(Duration::from_secs(5));
    let stamped_late = h.token("alice", LONDON).await;
    assert_eq!(h.me(&stamped_late).await, StatusCode::UNAUTHORIZED);

    h.clock.advance(Duration::from_secs(1));
    let began = gw.sessions.operators.generation("alice").await.unwrap();
    let r = gw.issue_unless_ended("alice", began).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "nothing ended meanwhile");
    let body = axum::body::to_bytes(r.into_body(), 16_384).await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    let minted = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(h.me(&minted).await, StatusCode::OK);
    h.clock.advance(Duration::from_secs(5));
    end().await;
    assert_eq!(
        h.me(&minted).await,
        StatusCode::UNAUTHORIZED,
        "ended after the token: revoked"
    );
    h.clock.advance(Duration::from_secs(6));
    let after = h.token("alice", LONDON).await;
    assert_eq!(
        h.me(&after).await,
        StatusCode::OK,
        "a login past the skew after the end holds"
    );
    h.gw.shutdown().await;
}

/// A step-up challenge opened before a playbook ended the user's sessions gives no
/// token when its code passes after the end: the login it completes began before.
/// A login begun after the end steps up as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_opened_before_the_sessions_end_gives_no_token_after_it() {
    use palisade_core_traits::SessionTerminator;
    let h = trusted().await;
    let gw = &h.gw.gateway;
    (gw.step_ups
        .require_step_up("carol", Duration::from_secs(3600), "test"))
    .await
    .unwrap();
    let challenge = || async {
        let (s, body) = h.login("Carol", "carol-demo-password", LONDON).await;
        assert_eq!(
            (s, &body["error"]),
            (StatusCode::UNAUTHORIZED, &json!("step_up_required"))
        );
        body["challenge"].as_str().unwrap().to_owned()
    };
    let harness = &h;
    let answer = move |challenge: String| async move {
        let code = demo_totp("carol", harness.clock.now().as_unix_secs()).unwrap();
        let r = (harness.http.post(format!("{}/login/step-up", harness.base)))
            .header("x-forwarded-for", LONDON)
            .json(&json!({"challenge": challenge, "code": code}))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let before = challenge().await;
    gw.sessions
        .terminate_sessions("carol", "test")
        .await
        .unwrap();
    // Past the revocation's reach: only the check of the challenge refuses now.
    h.clock.advance(Duration::from_secs(30));
    let (s, body) = answer(before).await;
    assert_eq!(
        (s, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("sessions_ended")),
        "{body}"
    );
    // A code that got no token taught no device anything.
    let mfa_completions = || {
        let devices = gw.devices.devices("carol");
        devices.iter().map(|d| d.mfa_completions).sum::<u32>()
    };
    assert_eq!(mfa_completions(), 0);
    h.clock.advance(Duration::from_secs(30)); // the next code
    let after = challenge().await;
    let (s, body) = answer(after).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(h.me(token).await, StatusCode::OK);
    assert_eq!(mfa_completions(), 1);
    h.gw.shutdown().await;
}

/// Someone who shares alice's address and learns her `Idempotency-Key` gets no faster
/// way to guess her password: each reuse of the key spends the account's limit before
/// the record is compared, so the guesses meet `429` once the burst is spent, and so
/// does the right password while the limit holds. (Before, every wrong guess got `422`
/// and the right one the replayed token, at the address limit's pace.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_is_no_way_around_the_account_limit() {
    let h = trusted().await;
    let keyed = |password: String| {
        let (http, b) = (h.http.clone(), h.base.clone());
        async move {
            let r = http
                .post(format!("{b}/login"))
                .header("x-forwarded-for", LONDON)
                .header("idempotency-key", "\"alice-1\"")
                .json(&json!({"username": "alice", "password": password}))
                .send()
                .await
                .unwrap();
            (r.status(), r.headers().contains_key("idempotent-replayed"))
        }
    };
    assert_eq!(
        keyed("alice-demo-password".into()).await,
        (StatusCode::OK, false)
    );
    let mut answers = Vec::new();
    for i in 0..10 {
        answers.push(keyed(format!("guess-{i}")).await);
    }
    // The burst is 5 a minute and alice's own login spent one.
    let expected: Vec<_> = (0..10)
        .map(|i| {
            let status = if i < 4 {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            (status, false)
        })
        .collect();
    assert_eq!(answers, expected);
    assert_eq!(
        keyed("alice-demo-password".into()).await,
        (StatusCode::TOO_MANY_REQUESTS, false)
    );
    // A minute later the limit lets one through: her own retry is replayed.
    h.clock.advance(Duration::from_secs(60));
    assert_eq!(
        keyed("alice-demo-password".into()).await,
        (StatusCode::OK, true)
    );
    h.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_storm_with_one_idempotency_key_logs_in_once() {
    let h = trusted().await;
    let mut tasks = Vec::new();
    for _ in 0..500 {
        let (http, b) = (h.http.clone(), h.base.clone());
        tasks.push(tokio::spawn(async move {
            http.post(format!("{b}/login"))
                .header("x-forwarded-for", LONDON)
                .header("idempotency-key", "\"retry-1\"")
                .json(&json!({"username": "bob", "password": "bob-demo-password"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let s = t.await.unwrap();
        // Served, still running (409), or over the per-address limit (429).
        assert!(
            [
                StatusCode::OK,
                StatusCode::CONFLICT,
                StatusCode::TOO_MANY_REQUESTS
            ]
            .contains(&s),
            "{s}"
        );
        ok += usize::from(s == StatusCode::OK);
    }
    assert!(ok >= 1);
    assert_eq!(
        h.gw.gateway.dashboard.counters().login_success,
        1,
        "the handler ran more than once"
    );
    h.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_intel_and_playbook_blocks_hold_on_the_request_path() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.txt");
    std::fs::write(&feed, "203.0.113.0/24\n").unwrap();
    let feed = feed.display().to_string();
    let h = gateway(&["--trusted-proxies", "127.0.0.1/32", "--intel", &feed]).await;
    // Threat intelligence: 403 whatever the route.
    let r = h
        .http
        .get(format!("{}/healthz", h.base))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A flood from a listed address (the deny list answers before any limit) is
    // counted in full but does not drown the feed: a burst of 5, then 1 a second.
    let started = std::time::Instant::now();
    for _ in 0..59 {
        let r = (h.http.get(format!("{}/healthz", h.base)))
            .header("x-forwarded-for", "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let elapsed = started.elapsed().as_secs();
    let snapshot: Value = serde_json::from_str(h.gw.gateway.dashboard.snapshot().as_str()).unwrap();
    assert_eq!(snapshot["stats"]["counters"]["intel_hits"], 60);
    let shown = (snapshot["recent"].as_array().unwrap().iter())
        .filter(|a| a["kind"] == "intel_hit")
        .count() as u64;
    assert!(
        (5..=6 + elapsed).contains(&shown),
        "{shown} of 60 deny-list hits shown in {elapsed} s"
    );
    // The proxy writes `X-Forwarded-For`: a `Forwarded` header is the client's own
    // words (the proxy passes it on), so it names nobody; the peer is the client.
    for forwarded in ["for=203.0.113.10;proto=https", "for=\"[2001:db8::1]:4711\""] {
        let r = (h.http.get(format!("{}/healthz", h.base)))
            .header("forwarded", forwarded)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{forwarded}");
    }
    // Per-account limit: the sixth attempt in a minute gets 429 with Retry-After.
    for _ in 0..5 {
        assert_eq!(
            h.login("dave", "x", LONDON).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = h
        .http
        .post(format!("{}/login", h.base))
        .header("x-forwarded-for", LONDON)
        .json(&json!({"username": "DAVE", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    // A playbook block (brute force from an address) holds for the mapped form too.
    let event = SecurityEvent::new(
        EventId::new("bf-test").unwrap(),
        h.clock.now(),
        EventKind::BruteForce,
        Severity::High,
        Subject::ip("198.51.100.77".parse().unwrap()),
        "test",
    );
    h.gw.gateway.bus.publish(event).await;
    let mut blocked = false;
    for _ in 0..200 {
        let r = h
            .http
            .get(format!("{}/healthz", h.base))
            .header("x-forwarded-for", "::ffff:198.51.100.77")
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::FORBIDDEN {
            blocked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        blocked,
        "the playbook's block did not reach the request path"
    );
    let r = h
        .http
        .get(format!("{}/healthz", h.base))
        .header("x-forwarded-for", "198.51.100.78")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    h.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.txt");
    std::fs::write(&feed, "127.0.0.0/8\n").unwrap();
    let feed = feed.display().to_string();
    // No trusted proxy: the peer (loopback, on the deny list) is the client, whatever
    // the header claims.
    let h = gateway(&["--intel", &feed]).await;
    let r = h
        .http
        .get(format!("{}/healthz", h.base))
        .header("x-forwarded-for", "192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    h.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_with_overlap_and_old_tokens_stay_valid() {
    let h = trusted().await;
    let old = h.token("alice", LONDON).await;
    h.gw.gateway.rotate_keys().await.unwrap();
    let jwks: Value = h
        .http
        .get(format!("{}/.well-known/jwks.json", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let new = h.token("bob", LONDON).await;
    let kid = |t: &str| {
        use base64::Engine;
        let header = t.split('.').next().unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap();
        serde_json::from_slice::<Value>(&bytes).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(kid(&old), kid(&new));
    assert_eq!(
        h.me(&old).await,
        StatusCode::OK,
        "a token of the previous key was refused"
    );
    assert_eq!(h.me(&new).await, StatusCode::OK);
    h.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playbook_notification_reaches_the_webhook_with_the_region() {
    // The receiving end: a real HTTP server on loopback that keeps what it is sent.
    let received: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let keep = received.clone();
    let hook = axum::Router::new().route(
        "/hook/secret-token",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(v);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hook/secret-token",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let h = gateway(&["--webhook", &url, "--region", "eu-west-1"]).await;
    let event = SecurityEvent::new(
        EventId::new("bf-webhook").unwrap(),
        h.clock.now(),
        EventKind::BruteForce,
        Severity::High,
        Subject::ip("198.51.100.90".parse().unwrap()),
        "test",
    );
    h.gw.gateway.bus.publish(event).await;
    let mut body = None;
    for _ in 0..300 {
        if let Some(v) = received.lock().unwrap().first() {
            body = Some(v.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = body.expect("no notification reached the webhook");
    assert_eq!(body["source"], "palisade-gateway/eu-west-1", "{body}");
    assert_eq!(body["severity"], "high", "{body}");
    assert_eq!(body["dedup_key"], "brute-force-ip:198.51.100.90", "{body}");
    // The detection, as operators see it, names the region that took it.
    let snapshot: Value = serde_json::from_str(h.gw.gateway.dashboard.snapshot().as_str()).unwrap();
    let detection = snapshot["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "detection")
        .unwrap_or_else(|| panic!("no detection shown: {snapshot}"));
    assert_eq!(detection["region"], "eu-west-1", "{detection}");
    h.gw.shutdown().await;
}

#[tokio::test]
async fn a_webhook_url_that_is_not_https_off_loopback_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(
        dir.path(),
        &["--webhook", "http://hooks.example/secret-token"],
    );
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let err = start(config, clock).await.unwrap_err().to_string();
    assert!(err.starts_with("webhook:"), "{err}");
    assert!(
        !err.contains("secret-token"),
        "the URL is the credential: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ct_alerts_from_the_bundled_test_logs_join_the_bus_and_the_dashboard() {
    let h = gateway(&["--ct-test-logs"]).await;
    let mut snapshot = Value::Null;
    let mut ready = Value::Null;
    for _ in 0..600 {
        snapshot = serde_json::from_str(h.gw.gateway.dashboard.snapshot().as_str()).unwrap();
        ready = h
            .http
            .get(format!("{}/readyz", h.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let both_ok = ready["ct"]["test-rfc6962"] == "ok" && ready["ct"]["test-static-ct"] == "ok";
        let detected = snapshot["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "detection" && a["event"] == "unauthorized_certificate");
        if both_ok && detected && !snapshot["ct"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready["keys"], true, "{ready}");
    assert_eq!(ready["ct"]["test-rfc6962"], "ok", "{ready}");
    assert_eq!(ready["ct"]["test-static-ct"], "ok", "{ready}");
    let alerts = snapshot["ct"].as_array().unwrap();
    assert!(!alerts.is_empty(), "no CT alert: {snapshot}");
    for a in alerts {
        let summary = a["summary"].as_str().unwrap();
        assert!(summary.starts_with("unauthorized "), "{a}");
        // Entry 413 carries the key the gateway authorized: never an alert.
        assert!(!summary.ends_with(" #413"), "{a}");
        let domain = a["domain"].as_str().unwrap();
        assert!(
            domain == ".websrc.fr" || domain == ".herokuappdev.com",
            "{a}"
        );
    }
    assert!(snapshot["stats"]["counters"]["ct_alerts"].as_u64().unwrap() >= 1);
    h.gw.shutdown().await;
}

#[tokio::test]
async fn readyz_says_ct_is_off_when_no_log_is_followed() {
    let h = gateway(&[]).await;
    let ready: Value = h
        .http
        .get(format!("{}/readyz", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready, json!({"keys": true, "ct": "off"}));
    h.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pkcs11_tokens_are_signed_in_the_hsm_and_the_ring_survives_a_restart() {
    let hsm = palisade_testkit::SoftHsm::get();
    let module = hsm.module_path().display().to_string();
    let uri = format!("pkcs11:token={}", hsm.token_label());
    let key_name = format!("gw-test-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--trusted-proxies",
        "127.0.0.1/32",
        "--pkcs11-module",
        &module,
        "--pkcs11",
        &uri,
        "--pkcs11-pin",
        palisade_testkit::SoftHsm::USER_PIN,
        "--key-name",
        &key_name,
    ];
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let http = reqwest::Client::new();
    let jwks = |base: String| {
        let http = http.clone();
        async move {
            let v: Value = http
                .get(format!("{base}/.well-known/jwks.json"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["keys"][0]["kid"].as_str().unwrap().to_owned()
        }
    };
    let gw = start(common::config(dir.path(), &args), clock.clone())
        .await
        .unwrap();
    assert_eq!(gw.gateway.keys.store().backend(), "pkcs11");
    let base = format!("http://{}", gw.addr);
    let kid = jwks(base.clone()).await;
    let r = http
        .post(format!("{base}/login"))
        .header("x-forwarded-for", LONDON)
        .json(&json!({"username": "alice", "password": "alice-demo-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = |base: String, token: String| {
        let http = http.clone();
        async move {
            http.get(format!("{base}/api/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(me(base.clone(), token.clone()).await, StatusCode::OK);
    gw.shutdown().await;

    // Restarted on the same state: the same HSM key still signs and verifies, and a
    // token from before the restart is still accepted.
    let gw = start(common::config(dir.path(), &args), clock)
        .await
        .unwrap();
    let base = format!("http://{}", gw.addr);
    assert_eq!(jwks(base.clone()).await, kid);
    assert_eq!(me(base, token).await, StatusCode::OK);
    gw.shutdown().await;
}

#[tokio::test]
async fn pkcs11_without_a_pin_refuses_to_start_naming_the_flag() {
    let hsm = palisade_testkit::SoftHsm::get();
    let module = hsm.module_path().display().to_string();
    let uri = format!("pkcs11:token={}", hsm.token_label());
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path(), &["--pkcs11-module", &module, "--pkcs11", &uri]);
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let err = start(config, clock).await.unwrap_err().to_string();
    assert!(
        err.starts_with("pkcs11:") && err.contains("--pkcs11-pin"),
        "{err}"
    );
}

/// The per-address and per-subject limits are ratelimit's `RateLimitLayer`: a refusal
/// names its policy in the draft-11 fields, carries `Retry-After`, and reaches the
/// dashboard's counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_refusals_name_their_policy_and_reach_the_dashboard() {
    let h = trusted().await;
    let healthz = |from: String| {
        let (http, base) = (h.http.clone(), h.base.clone());
        async move {
            http.get(format!("{base}/healthz"))
                .header("x-forwarded-for", from)
                .send()
                .await
                .unwrap()
        }
    };
    // The clock stands still: a burst of 60 per address, then refusals.
    for _ in 0..60 {
        assert_eq!(healthz("192.0.2.50".into()).await.status(), StatusCode::OK);
    }
    let r = healthz("192.0.2.50".into()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let field = |name: &str| r.headers()[name].to_str().unwrap().to_owned();
    assert!(
        field("ratelimit-policy").starts_with("\"ip\";q=60"),
        "{}",
        field("ratelimit-policy")
    );
    assert!(
        field("ratelimit").starts_with("\"ip\";r=0;t="),
        "{}",
        field("ratelimit")
    );
    assert_eq!(field("retry-after"), "1");
    assert!(
        field("x-request-id").len() >= 16,
        "the context still wraps refusals"
    );
    assert_eq!(healthz("192.0.2.51".into()).await.status(), StatusCode::OK);
    assert_eq!(h.gw.gateway.dashboard.counters().rate_limited, 1);
    // A flood of refusals is counted in full, but only those the feed shows (a burst
    // of 5, then 1 a second per address) go on the bus, where they would push out
    // other events.
    let started = std::time::Instant::now();
    for _ in 0..59 {
        let r = healthz("192.0.2.50".into()).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    let elapsed = started.elapsed().as_secs();
    assert_eq!(h.gw.gateway.dashboard.counters().rate_limited, 60);
    let detections = || h.gw.gateway.dashboard.counters().detections;
    for _ in 0..200 {
        if detections() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // any more would be in by now
    assert!(
        (5..=6 + elapsed).contains(&detections()),
        "{} rate-limit events on the bus for 60 refusals in {elapsed} s",
        detections()
    );
    let rate_limited = h.gw.gateway.dashboard.counters().rate_limited;

    // Per subject on /api: 100 at once whatever the address, then refusals.
    let token = h.token("alice", LONDON).await;
    let me = |i: u32| {
        let (http, base, token) = (h.http.clone(), h.base.clone(), token.clone());
        async move {
            http.get(format!("{base}/api/me"))
                .header("x-forwarded-for", format!("198.51.100.{}", i % 200))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    for i in 0..100 {
        assert_eq!(me(i).await.status(), StatusCode::OK, "request {i}");
    }
    let r = me(100).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let policy = r.headers()["ratelimit-policy"].to_str().unwrap();
    assert!(policy.starts_with("\"api-subject\";q=100"), "{policy}");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        h.gw.gateway.dashboard.counters().rate_limited,
        rate_limited + 1
    );
    // Without a valid token the subject limit is never reached: 401 first.
    let r = h
        .http
        .get(format!("{}/api/me", h.base))
        .header("x-forwarded-for", "198.51.100.201")
        .bearer_auth("e30.e30.e30")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    h.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_ends_does_not_hold_the_shutdown() {
    use tokio::io::AsyncWriteExt;
    let h = gateway(&["--drain-timeout", "1s"]).await;
    // Half a login body, and then nothing.
    let mut slow = tokio::net::TcpStream::connect(h.gw.addr).await.unwrap();
    slow.write_all(
        b"POST /login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"user",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = h._dir.path().join("playbooks-state.json");
    let _ = std::fs::remove_file(&state);
    let stopped = tokio::time::timeout(Duration::from_secs(15), h.gw.shutdown()).await;
    assert!(stopped.is_ok(), "the shutdown waited for the slow client");
    assert!(state.exists(), "the state was saved");
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_form_is_stepped_up_reported_and_ended_like_a_login() {
    use palisade_core_traits::SessionTerminator;
    let h = trusted().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let sign_in = |password: &'static str, code: String, challenge: String| {
        let (http, b) = (no_redirects.clone(), h.base.clone());
        async move {
            let form = [
                ("username", "admin"),
                ("password", password),
                ("code", &code),
                ("challenge", &challenge),
            ];
            let r = (http.post(format!("{b}/dashboard/login")))
                .header("x-forwarded-for", LONDON)
                .form(&form)
                .send()
                .await
                .unwrap();
            let cookie = (r.headers().get("set-cookie"))
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
            (r.status(), cookie, r.text().await.unwrap())
        }
    };
    // The challenge a code-asking page carries.
    let challenge_of = |page: &str| -> String {
        let at = page.find("name=\"challenge\" value=\"").expect(page) + 24;
        page[at..at + 32].to_owned()
    };
    let recent = |result: &str| {
        let snapshot: Value =
            serde_json::from_str(h.gw.gateway.dashboard.snapshot().as_str()).unwrap();
        (snapshot["recent"].as_array().unwrap().iter())
            .filter(|a| a["user"] == "admin" && a["result"] == result)
            .count()
    };
    // A wrong guess is a failed login for the operators and the playbooks.
    let (s, cookie, _) = sign_in("wrong", String::new(), String::new()).await;
    assert_eq!((s, cookie), (StatusCode::UNAUTHORIZED, None));
    assert_eq!(recent("failure"), 1);
    // A playbook's step-up holds on this form too: no session without the code.
    let gw = &h.gw.gateway;
    (gw.step_ups
        .require_step_up("admin", Duration::from_secs(3600), "test"))
    .await
    .unwrap();
    let (s, cookie, page) = sign_in("admin-demo-password", String::new(), String::new()).await;
    assert_eq!((s, cookie), (StatusCode::UNAUTHORIZED, None));
    assert!(page.contains("one-time code"), "{page}");
    let challenge = challenge_of(&page);
    let code = demo_totp("admin", h.clock.now().as_unix_secs()).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    // A wrong code is refused and reported; the challenge has attempts left.
    let (s, _, page) = sign_in("admin-demo-password", wrong.into(), challenge.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge_of(&page), challenge);
    assert_eq!(recent("step_up_failed"), 1);
    // The device is held to it too: the wrong password, then the wrong code.
    let failures: u32 = (gw.devices.devices("admin").iter())
        .map(|d| d.failures)
        .sum();
    assert_eq!(failures, 2, "{:?}", gw.devices.devices("admin"));
    // A made-up challenge is no challenge: a new one is asked for.
    let (s, _, page) = sign_in("admin-demo-password", code.clone(), "00".repeat(16)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_ne!(challenge_of(&page), challenge);
    let (s, cookie, _) = sign_in("admin-demo-password", code.clone(), challenge).await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let cookie = cookie.unwrap();
    // The same code does not pass twice (24 s later: still within its drift window,
    // and the per-account limit, counting the form's attempts too, has two more).
    h.clock.advance(Duration::from_secs(24));
    let (_, _, page) = sign_in("admin-demo-password", String::new(), String::new()).await;
    let again = sign_in("admin-demo-password", code, challenge_of(&page)).await;
    assert_eq!(again.0, StatusCode::UNAUTHORIZED);
    let page = |cookie: String| {
        let (http, b) = (no_redirects.clone(), h.base.clone());
        async move {
            (http
                .get(format!("{b}/"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap())
            .text()
            .await
            .unwrap()
        }
    };
    assert!(
        !page(cookie.clone()).await.contains("/dashboard/login"),
        "signed in"
    );
    // Ending the operator's sessions (account takeover) ends the dashboard's too.
    (gw.sessions.terminate_sessions("Admin", "test"))
        .await
        .unwrap();
    assert!(
        page(cookie).await.contains("/dashboard/login"),
        "signed out"
    );
    // Every code of a challenge wrong: an account takeover, as on /login/step-up.
    h.clock.advance(Duration::from_secs(60));
    let (_, _, page) = sign_in("admin-demo-password", String::new(), String::new()).await;
    let challenge = challenge_of(&page);
    for _ in 0..palisade_gateway::service::CHALLENGE_ATTEMPTS {
        let (s, _, _) = sign_in("admin-demo-password", wrong.into(), challenge.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let audit = h._dir.path().join("audit.jsonl");
    let mut seen = false;
    for _ in 0..100 {
        seen = std::fs::read_to_string(&audit).is_ok_and(|a| a.contains("AccountTakeover"));
        if seen {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "no account takeover in the audit");
    h.gw.shutdown().await;
}

/// The playbooks' audit log goes on across restarts as one chain: a restart resumes it
/// (it began a second chain at 0 in the same file, which then never verified). A torn
/// last record is cut off (kept aside) and the chain goes on; a file that does not
/// verify otherwise is kept aside and a new chain starts.
#[tokio::test]
async fn the_audit_log_stays_one_verifiable_chain_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let lines = || {
        std::fs::read_to_string(&path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let attack = |gw: &Running, id: &str, ip: &str| {
        let event = SecurityEvent::new(
            EventId::new(id).unwrap(),
            clock.now(),
            EventKind::BruteForce,
            Severity::High,
            Subject::ip(ip.parse().unwrap()),
            "test",
        );
        let bus = gw.gateway.bus.clone();
        async move { bus.publish(event).await }
    };
    let audited_more_than = |n: usize| {
        let lines = &lines;
        async move {
            for _ in 0..300 {
                if lines() > n {
                    return lines();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no audit record after {n}");
        }
    };
    let run = || start(common::config(dir.path(), &[]), clock.clone());

    let gw = run().await.unwrap();
    attack(&gw, "before-restart", "198.51.100.7").await;
    let first = audited_more_than(0).await;
    gw.shutdown().await;
    let gw = run().await.unwrap();
    attack(&gw, "after-restart", "198.51.100.8").await;
    let second = audited_more_than(first).await;
    gw.shutdown().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let (count, _) = palisade_playbooks::verify_audit(&text).unwrap();
    assert_eq!(count as usize, text.lines().count());
    assert!(count as usize >= second);

    // A last record that lost only its newline: still one chain, the next record on
    // a line of its own.
    std::fs::write(&path, text.trim_end()).unwrap();
    let gw = run().await.unwrap();
    attack(&gw, "after-a-lost-newline", "198.51.100.10").await;
    audited_more_than(text.lines().count()).await;
    gw.shutdown().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        palisade_playbooks::verify_audit(&text).unwrap().0 as usize,
        text.lines().count()
    );

    // A torn last line (a crash in the middle of a write): cut off and kept aside,
    // the chain goes on from the last whole record; twice within one second, two
    // files kept.
    let aside = |what: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("audit.jsonl.") && n.ends_with(what))
            .collect();
        names.sort();
        names
    };
    for (round, ip) in [(1, "198.51.100.9"), (2, "198.51.100.11")] {
        let before = std::fs::read_to_string(&path).unwrap();
        let kept_before = aside(".torn");
        let torn = format!("{{\"seq\":{round}");
        std::fs::write(&path, format!("{before}{torn}")).unwrap();
        let gw = run().await.unwrap();
        attack(&gw, &format!("after-a-torn-write-{round}"), ip).await;
        audited_more_than(before.lines().count()).await;
        gw.shutdown().await;
        let after = std::fs::read_to_string(&path).unwrap();
        assert!(after.starts_with(&before), "the chain goes on");
        assert_eq!(
            palisade_playbooks::verify_audit(&after).unwrap().0 as usize,
            after.lines().count()
        );
        let kept = aside(".torn");
        assert_eq!(kept.len(), round, "{kept:?}");
        let new = kept.iter().find(|n| !kept_before.contains(n)).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join(new)).unwrap(), torn);
    }
    assert!(aside(".unverified").is_empty());

    // An edited record (a whole line that does not verify): the file is kept aside
    // whole and a new chain starts.
    let before = std::fs::read_to_string(&path).unwrap();
    let edited = before.replacen("198.51.100.7", "198.51.100.6", 1);
    assert_ne!(edited, before);
    std::fs::write(&path, &edited).unwrap();
    let gw = run().await.unwrap();
    attack(&gw, "after-an-edit", "198.51.100.12").await;
    audited_more_than(0).await;
    gw.shutdown().await;
    let fresh = std::fs::read_to_string(&path).unwrap();
    assert!(fresh.starts_with("{\"seq\":0,"), "{fresh}");
    assert!(palisade_playbooks::verify_audit(&fresh).is_ok());
    let kept = aside(".unverified");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&kept[0])).unwrap(),
        edited
    );
}
