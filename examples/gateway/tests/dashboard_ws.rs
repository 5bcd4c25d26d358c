//! The dashboard over real sockets: operator sign-in, the WebSocket's origin and
//! session checks, and the stream protocol (snapshot, activities, incidents, stats,
//! resync of a client that fell behind) — driven with tokio-tungstenite.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use palisade_core_traits::Timestamp;
use palisade_gateway::activity::{Activity, LoginResult, Origin, What};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod common;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `POST /dashboard/login`, the answer as it is.
async fn sign_in_answer(addr: SocketAddr, user: &str, password: &str) -> reqwest::Response {
    (no_redirects().post(format!("http://{addr}/dashboard/login")))
        .form(&[("username", user), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// `POST /dashboard/logout` with a session cookie.
async fn sign_out(addr: SocketAddr, cookie: &str) -> reqwest::Response {
    (no_redirects().post(format!("http://{addr}/dashboard/logout")))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// Signs in over HTTP; returns the status and the session cookie, if one was set.
async fn sign_in(addr: SocketAddr, user: &str, password: &str) -> (u16, Option<String>) {
    let r = sign_in_answer(addr, user, password).await;
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
    (r.status().as_u16(), cookie)
}

async fn connect(
    addr: SocketAddr,
    origin: &str,
    cookie: Option<&str>,
) -> Result<Socket, tungstenite::Error> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
}

async fn next_json(ws: &mut Socket) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

fn login_activity(user: &str, ip: &str, result: LoginResult) -> Activity {
    Activity::new(
        Timestamp::from_unix_secs(1_800_000_000),
        Origin {
            ip: Some(ip.parse().unwrap()),
            country: Some("FR".into()),
            location: Some((48.85, 2.35)),
            ..Origin::default()
        },
        What::Login {
            user: user.into(),
            result,
            score: Some(0.42),
        },
    )
}

#[tokio::test]
async fn only_operators_on_this_origin_get_the_stream() {
    let s = common::dashboard_server().await;
    let origin = format!("http://{}", s.addr);
    // Wrong password, unknown user, a non-operator: the same refusal, no cookie.
    let long = "x".repeat(300);
    for (u, p) in [
        ("admin", "wrong"),
        ("nobody", "admin-demo-password"),
        ("alice", "alice-demo-password"),
        ("", "admin-demo-password"),
        (long.as_str(), "admin-demo-password"),
    ] {
        assert_eq!(sign_in(s.addr, u, p).await, (401, None), "{u}");
    }
    let (status, cookie) = sign_in(s.addr, "Admin", "admin-demo-password").await;
    assert_eq!(status, 303);
    let cookie = cookie.unwrap();
    // Guesses at one account are limited as on `/login` (one bucket: 5 a minute):
    // past them even the right password is refused before it is checked.
    for _ in 0..4 {
        assert_eq!(sign_in(s.addr, "ALICE", "guess").await, (401, None));
    }
    assert_eq!(sign_in(s.addr, "alice", "alice-demo-password").await.0, 429);
    assert!(cookie.starts_with("palisade_admin="));

    // The page: sign-in form without a session, dashboard with one; strict CSP.
    let client = reqwest::Client::new();
    let page = client
        .get(format!("http://{}/", s.addr))
        .send()
        .await
        .unwrap();
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("action=\"/dashboard/login\"")
    );
    let page = client
        .get(format!("http://{}/", s.addr))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"map\""));

    // The WebSocket: no session → 401; another site's page → 403 even with the cookie.
    for (o, c, want) in [
        (origin.as_str(), None, 401),
        ("http://evil.example", Some(cookie.as_str()), 403),
        ("null", Some(cookie.as_str()), 403),
    ] {
        match connect(s.addr, o, c).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), want, "{o}"),
            other => panic!(
                "{o}: expected HTTP {want}, got {:?}",
                other.map(|_| "a socket")
            ),
        }
    }
    let mut ws = connect(s.addr, &origin, Some(&cookie)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_activities_incidents_and_stats() {
    let s = common::dashboard_server().await;
    let (_, cookie) = sign_in(s.addr, "admin", "admin-demo-password").await;
    let origin = format!("http://{}", s.addr);
    // History before the client connects is in its snapshot.
    s.dashboard
        .publish(login_activity("alice", "192.0.2.1", LoginResult::Success));
    let mut ws = connect(s.addr, &origin, cookie.as_deref()).await.unwrap();
    let snap = next_json(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(snap["seq"], 1);
    assert_eq!(snap["recent"][0]["user"], "alice");
    assert_eq!(snap["stats"]["counters"]["login_success"], 1);

    // Then each activity, once, in order, with the attacker-controlled text as data.
    let hostile = "<img src=x onerror=alert(1)>";
    s.dashboard.publish(
        login_activity(hostile, "198.51.100.7", LoginResult::Failure).with_request_id("req-1"),
    );
    let m = next_json(&mut ws).await;
    assert_eq!(m["type"], "activity");
    assert_eq!(m["seq"], 2);
    assert_eq!(m["kind"], "login");
    assert_eq!(m["result"], "failure");
    assert_eq!(m["user"], hostile);
    assert_eq!(m["request_id"], "req-1");
    assert_eq!(m["origin"]["location"][0], 48.85);

    s.dashboard.tick();
    let m = next_json(&mut ws).await;
    assert_eq!(m["type"], "stats");
    assert_eq!(m["stats"]["counters"]["login_failure"], 1);
    // Nothing changed: no second stats message (the next one is the activity below).
    s.dashboard.tick();
    s.dashboard
        .publish(login_activity("bob", "192.0.2.2", LoginResult::StepUp));
    assert_eq!(next_json(&mut ws).await["type"], "activity");
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_falls_behind_is_resynced_not_buffered() {
    let s = common::dashboard_server().await;
    let (_, cookie) = sign_in(s.addr, "admin", "admin-demo-password").await;
    let origin = format!("http://{}", s.addr);
    let mut ws = connect(s.addr, &origin, cookie.as_deref()).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    // The client stops reading while far more than the stream keeps, and more than
    // the sockets' buffers hold (~20 MB of 1 KB names), is published.
    let n = palisade_gateway::dashboard::STREAM_CAPACITY as u64 * 40;
    let pad = "x".repeat(1000);
    for i in 0..n {
        s.dashboard.publish(login_activity(
            &format!("u{i}{pad}"),
            "192.0.2.3",
            LoginResult::Failure,
        ));
    }
    // Reading again: a resync snapshot comes, then the stream from where it stands:
    // nothing older than the snapshot, no gap.
    let mut last = 0u64;
    let mut resyncs = 0;
    loop {
        let m = next_json(&mut ws).await;
        let seq = m["seq"].as_u64().unwrap();
        match m["type"].as_str().unwrap() {
            "snapshot" => {
                resyncs += 1;
                assert_eq!(m["recent"].as_array().unwrap().len(), 100);
                last = seq;
            }
            "activity" => {
                assert_eq!(seq, last + 1, "after a snapshot the stream goes on from it");
                last = seq;
            }
            other => panic!("unexpected {other}"),
        }
        if last == n {
            break;
        }
    }
    assert!(resyncs >= 1, "the lagging client was never resynced");
}

/// Reads until the server closes the stream; panics if it stays open 10 s.
async fn closed_by_server(ws: &mut Socket) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the server closes the stream within 10 s")
        {
            None | Some(Ok(Message::Close(_)) | Err(_)) => return,
            Some(Ok(_)) => {}
        }
    }
}

/// The sign-in and sign-out forms refuse a browser's post from another origin (a
/// sibling subdomain, which `SameSite=Strict` does not stop): no session opened, none
/// closed. The page's own origin, and a client that sends no `Origin`, pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_posted_from_another_origin_are_refused() {
    let s = common::dashboard_server().await;
    let ours = format!("http://{}", s.addr);
    let post = |path: &'static str, origin: &str| {
        (no_redirects().post(format!("http://{}{path}", s.addr))).header("origin", origin)
    };
    for origin in ["http://evil.example", "null", "https://127.0.0.1"] {
        let r = post("/dashboard/login", origin)
            .form(&[("username", "admin"), ("password", "admin-demo-password")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 403, "{origin}");
        assert!(r.headers().get("set-cookie").is_none(), "{origin}");
    }
    let r = post("/dashboard/login", &ours)
        .form(&[("username", "admin"), ("password", "admin-demo-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let signed_out = post("/dashboard/logout", "http://evil.example")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status().as_u16(), 403);
    // The session is still open: its stream connects.
    let mut ws = connect(s.addr, &ours, Some(&cookie)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    assert_eq!(sign_out(s.addr, &cookie).await.status().as_u16(), 303);
    closed_by_server(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_ends_with_the_session_that_opened_it() {
    let s = common::dashboard_server().await;
    let origin = format!("http://{}", s.addr);

    // Signing out closes the operator's open dashboard.
    let (_, cookie) = sign_in(s.addr, "admin", "admin-demo-password").await;
    let cookie = cookie.unwrap();
    let mut ws = connect(s.addr, &origin, Some(&cookie)).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
    let (_, other) = sign_in(s.addr, "admin", "admin-demo-password").await;
    let mut other_ws = connect(s.addr, &origin, other.as_deref()).await.unwrap();
    assert_eq!(next_json(&mut other_ws).await["type"], "snapshot");
    assert_eq!(sign_out(s.addr, &cookie).await.status().as_u16(), 303);
    closed_by_server(&mut ws).await;
    // Another session of the same operator stays open.
    s.dashboard
        .publish(login_activity("bob", "192.0.2.2", LoginResult::Failure));
    assert_eq!(next_json(&mut other_ws).await["type"], "activity");

    // A session that expires closes its stream too.
    s.clock
        .advance(palisade_gateway::admin::SESSION_TTL + Duration::from_secs(1));
    closed_by_server(&mut other_ws).await;
    match connect(s.addr, &origin, other.as_deref()).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| "a socket")),
    }
}

#[tokio::test]
async fn behind_a_tls_proxy_the_public_origin_is_the_only_one() {
    let s = common::dashboard_server_at(Some("https://ops.example")).await;
    let (status, cookie) = sign_in(s.addr, "admin", "admin-demo-password").await;
    assert_eq!(status, 303);
    let cookie = cookie.unwrap();
    // The browser reached us over https: the cookie must never travel in clear.
    let r = sign_in_answer(s.addr, "admin", "admin-demo-password").await;
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );
    let out = sign_out(s.addr, &cookie).await;
    let cleared = out.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("; Secure"),
        "{cleared}"
    );

    let (_, cookie) = sign_in(s.addr, "admin", "admin-demo-password").await;
    let cookie = cookie.unwrap();
    // The page's origin, not the address the proxy used to reach us.
    let direct = format!("http://{}", s.addr);
    for o in [
        direct.as_str(),
        "http://ops.example",
        "https://evil.example",
    ] {
        match connect(s.addr, o, Some(&cookie)).await {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 403, "{o}"),
            other => panic!("{o}: expected 403, got {:?}", other.map(|_| "a socket")),
        }
    }
    let mut ws = connect(s.addr, "https://OPS.example", Some(&cookie))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");
}
