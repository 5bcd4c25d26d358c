//! The HTTP notifiers against a real HTTP receiver on loopback (axum): payload shape
//! field by field, retry policy (429 + Retry-After, 5xx, other 4xx), and the
//! trigger → expiry → resolve life cycle through the engine and executor.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use palisade_core_traits::{
    Error as ActionError, EventId, EventKind, ManualClock, Notification, Notifier, SecurityEvent,
    Severity, Subject, Timestamp,
};
use palisade_playbooks::{Definition, Engine, Error, Executor, HttpNotifier, Outcome, RetryPolicy};
use serde_json::Value;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    path: String,
    content_type: String,
    body: Value,
}

/// A scripted answer: status and optional `Retry-After`.
type Answer = (u16, Option<&'static str>);

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Scripted answers (status, Retry-After); when empty, 202.
    script: Arc<Mutex<VecDeque<Answer>>>,
}

async fn handle(State(r): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    r.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        path: uri.path().to_owned(),
        content_type: headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let (status, retry_after) = r.script.lock().unwrap().pop_front().unwrap_or((202, None));
    let status = StatusCode::from_u16(status).unwrap();
    match retry_after {
        Some(s) => (status, [("retry-after", s)], "").into_response(),
        None => (status, "").into_response(),
    }
}

impl Receiver {
    /// Serves on a free loopback port; returns the base URL.
    async fn start(script: &[Answer]) -> (Receiver, String) {
        let r = Receiver::default();
        r.script.lock().unwrap().extend(script.iter().copied());
        let app = axum::Router::new().fallback(handle).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, format!("http://{addr}"))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

const KEY: &str = "R0UTINGKEY0123456789abcdef012345";

fn fast() -> RetryPolicy {
    RetryPolicy::new(NonZeroU32::new(3).unwrap(), Duration::from_millis(10))
        .with_timeout(Duration::from_secs(5))
}

/// A webhook on `url` with the fast test retry policy.
fn webhook(url: &str) -> HttpNotifier {
    HttpNotifier::webhook(url).retry(fast()).build().unwrap()
}

/// The notification the retry tests send.
fn alert() -> Notification {
    Notification::trigger(Severity::High, "x", "k")
}

fn event() -> SecurityEvent {
    SecurityEvent::new(
        EventId::new("e-1").unwrap(),
        Timestamp::from_unix_secs(1_800_000_000),
        EventKind::BruteForce,
        Severity::High,
        Subject::Ip {
            ip: "203.0.113.7".parse().unwrap(),
        },
        "test",
    )
    .with_evidence("failed_logins_1m", "57")
}

#[tokio::test]
async fn pagerduty_trigger_and_resolve_have_the_events_v2_shape() {
    let (r, base) = Receiver::start(&[]).await;
    let pd = HttpNotifier::pagerduty(KEY)
        .endpoint(format!("{base}/v2/enqueue"))
        .source("gw-eu1")
        .retry(fast())
        .build()
        .unwrap();
    let trigger = Notification::trigger(
        Severity::High,
        "brute force from 203.0.113.7",
        "bf:203.0.113.7",
    )
    .with_event(event());
    assert_eq!(pd.send(&trigger).await.unwrap(), 1);
    pd.notify(&Notification::resolve("bf:203.0.113.7", "over"))
        .await
        .unwrap();

    let seen = r.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/v2/enqueue");
    assert!(seen[0].content_type.starts_with("application/json"));
    let t = &seen[0].body;
    assert_eq!(t["routing_key"], KEY);
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["dedup_key"], "bf:203.0.113.7");
    assert_eq!(t["payload"]["summary"], "brute force from 203.0.113.7");
    assert_eq!(t["payload"]["source"], "gw-eu1");
    assert_eq!(t["payload"]["severity"], "error"); // High → PagerDuty "error"
    assert_eq!(t["payload"]["timestamp"], "2027-01-15T08:00:00Z");
    assert_eq!(t["payload"]["class"], "brute_force");
    assert_eq!(t["payload"]["custom_details"]["id"], "e-1");
    assert_eq!(t["payload"]["custom_details"]["evidence"][0][1], "57");
    let res = &seen[1].body;
    assert_eq!(res["routing_key"], KEY);
    assert_eq!(res["event_action"], "resolve");
    assert_eq!(res["dedup_key"], t["dedup_key"]);
    assert_eq!(res.as_object().unwrap().len(), 3, "{res}");
}

#[tokio::test]
async fn pagerduty_severities_and_limits() {
    let (r, base) = Receiver::start(&[]).await;
    let pd = HttpNotifier::pagerduty(KEY)
        .endpoint(base.as_str())
        .build()
        .unwrap();
    for (s, want) in [
        (Severity::Critical, "critical"),
        (Severity::Medium, "warning"),
        (Severity::Low, "info"),
        (Severity::Info, "info"),
    ] {
        pd.send(&Notification::trigger(s, "x", "k")).await.unwrap();
        assert_eq!(r.seen().last().unwrap().body["payload"]["severity"], want);
    }
    let long = Notification::trigger(Severity::High, "s".repeat(2000), "d".repeat(300));
    pd.send(&long).await.unwrap();
    let b = r.seen().last().unwrap().body.clone();
    assert_eq!(b["payload"]["summary"].as_str().unwrap().len(), 1024);
    let key = b["dedup_key"].as_str().unwrap();
    assert!(key.starts_with("sha256:") && key.len() <= 255, "{key}");
}

#[tokio::test]
async fn slack_and_webhook_payloads() {
    let (r, base) = Receiver::start(&[]).await;
    let slack = HttpNotifier::slack(format!("{base}/services/T0/B0/s3cr3t"))
        .source("gw-eu1")
        .build()
        .unwrap();
    slack
        .send(&Notification::trigger(
            Severity::Critical,
            "takeover of <alice>",
            "ato:alice",
        ))
        .await
        .unwrap();
    let s = &r.seen()[0];
    assert_eq!(s.path, "/services/T0/B0/s3cr3t");
    assert_eq!(
        s.body["text"],
        "[CRITICAL] security notification from gw-eu1"
    );
    assert_eq!(s.body["blocks"][0]["type"], "section");
    assert_eq!(s.body["blocks"][0]["text"]["type"], "mrkdwn");
    assert_eq!(s.body["blocks"][0]["text"]["verbatim"], true);
    assert_eq!(
        s.body["blocks"][0]["text"]["text"],
        "[CRITICAL] `takeover of &lt;alice&gt;`"
    );
    assert_eq!(s.body["blocks"][1]["type"], "context");
    assert_eq!(
        s.body["blocks"][1]["elements"][0]["text"],
        "incident `ato:alice` · gw-eu1"
    );
    slack
        .send(&Notification::resolve("ato:alice", "over"))
        .await
        .unwrap();
    let resolved = &r.seen()[1].body;
    assert_eq!(
        resolved["text"],
        "[RESOLVED] security notification from gw-eu1"
    );
    assert_eq!(resolved["blocks"][0]["text"]["text"], "[RESOLVED] `over`");

    let hook = HttpNotifier::webhook(format!("{base}/hook"))
        .build()
        .unwrap();
    let n = Notification::trigger(Severity::Low, "hello", "k1").with_event(event());
    hook.send(&n).await.unwrap();
    let mut body = r.seen()[2].body.clone();
    assert_eq!(body["source"], "palisade-playbooks");
    // Without our `source`, the body is the core-traits Notification, field for field,
    // with the id the notifier gave it (it had none).
    body.as_object_mut().unwrap().remove("source");
    let back: Notification = serde_json::from_value(body).unwrap();
    let id = back.id.clone().expect("an id");
    assert_eq!(back, n.with_id(id));
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_delivered_once() {
    let (r, base) = Receiver::start(&[(429, Some("1"))]).await;
    let pd = HttpNotifier::pagerduty(KEY)
        .endpoint(base.as_str())
        .retry(fast())
        .build()
        .unwrap();
    let attempts = pd.send(&alert()).await.unwrap();
    assert_eq!(attempts, 2);
    let seen = r.seen();
    assert_eq!(seen.len(), 2, "one refused, one delivered");
    assert_eq!(seen[0].body, seen[1].body);
    // Retry-After: 1 was honoured (our own backoff is 10 ms).
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_retry_after_beyond_the_policy_fails_without_waiting() {
    let (r, base) = Receiver::start(&[(429, Some("3600"))]).await;
    let hook = webhook(&base);
    let err = hook.send(&alert()).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotifyDeferred { retry_after, .. } if retry_after.as_secs() == 3600),
        "{err}"
    );
    assert_eq!(r.seen().len(), 1);
}

/// The executor does not knock again either: a receiver asking for an hour's wait was
/// sent the notification three times within a few hundred milliseconds (the notifier's
/// stop reached the executor as `Unavailable`, which it retries).
#[tokio::test]
async fn the_executor_honours_a_retry_after_beyond_the_policy_too() {
    let (r, base) = Receiver::start(&[
        (429, Some("3600")),
        (429, Some("3600")),
        (429, Some("3600")),
    ])
    .await;
    let exec = Executor::builder()
        .notifier(Arc::new(webhook(&base)))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut engine = Engine::new(Definition::default_set().unwrap());
    let plan = engine.evaluate(&event(), Timestamp::from_unix_secs(1_800_000_000));
    let out = exec.execute(&plan).await;
    let notify = plan.steps[1].decision.unwrap();
    assert!(
        out.iter()
            .any(|(d, o)| *d == notify && matches!(o, Outcome::Failed { attempts: 1, .. })),
        "{out:?}"
    );
    assert_eq!(r.seen().len(), 1);
    assert!(matches!(
        webhook(&base).notify(&alert()).await,
        Err(ActionError::Refused(_))
    ));
}

/// The notifiers' clock in the HTTP-date tests: Fri, 15 Jan 2027 08:00:00 GMT.
fn fixed_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)))
}

#[tokio::test]
async fn a_429_with_an_http_date_waits_until_that_date() {
    // One second after the notifier's clock.
    let (r, base) = Receiver::start(&[(429, Some("Fri, 15 Jan 2027 08:00:01 GMT"))]).await;
    let hook = HttpNotifier::webhook(base.as_str())
        .retry(fast())
        .clock(fixed_clock())
        .build()
        .unwrap();
    assert_eq!(hook.send(&alert()).await.unwrap(), 2);
    let seen = r.seen();
    assert_eq!(seen.len(), 2, "one refused, one delivered");
    // The date was honoured (our own backoff is 10 ms).
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));

    // An hour after the notifier's clock: longer than the 10 s allowed, no wait at all.
    let (r, base) = Receiver::start(&[(429, Some("Fri, 15 Jan 2027 09:00:00 GMT"))]).await;
    let hook = HttpNotifier::webhook(base.as_str())
        .retry(fast())
        .clock(fixed_clock())
        .build()
        .unwrap();
    let err = hook.send(&alert()).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotifyDeferred { retry_after, .. } if retry_after.as_secs() == 3600),
        "{err}"
    );
    assert_eq!(r.seen().len(), 1);
}

#[tokio::test]
async fn a_429_with_an_http_date_in_the_past_is_retried_at_once() {
    // A minute before the notifier's clock, in the obsolete RFC 850 form. Our own
    // backoff is an hour: only reading the date as "now" delivers within the minute.
    let (r, base) = Receiver::start(&[(429, Some("Friday, 15-Jan-27 07:59:00 GMT"))]).await;
    let slow = RetryPolicy::new(NonZeroU32::new(3).unwrap(), Duration::from_secs(3600))
        .with_timeout(Duration::from_secs(5));
    let hook = HttpNotifier::webhook(base.as_str())
        .retry(slow)
        .clock(fixed_clock())
        .build()
        .unwrap();
    let sent = tokio::time::timeout(Duration::from_secs(60), hook.send(&alert())).await;
    assert_eq!(sent.expect("waited for the backoff").unwrap(), 2);
    assert_eq!(r.seen().len(), 2);
}

#[tokio::test]
async fn server_errors_are_retried_a_bounded_number_of_times() {
    let (r, base) = Receiver::start(&[(500, None); 10]).await;
    let hook = webhook(&format!("{base}/s3cr3t-path"));
    let err = hook.send(&alert()).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotifyGaveUp { attempts: 3, reason, .. } if reason == "HTTP 500"),
        "{err:?}"
    );
    assert_eq!(r.seen().len(), 3);
    let shown = err.to_string();
    assert!(
        shown.contains("127.0.0.1") && !shown.contains("s3cr3t"),
        "{shown}"
    );

    // Through the Notifier trait: backend unavailable, with the endpoint in its source.
    let (r, base) = Receiver::start(&[(503, None), (502, None), (200, None)]).await;
    let hook = webhook(&base);
    hook.notify(&alert()).await.unwrap();
    assert_eq!(r.seen().len(), 3);
}

#[tokio::test]
async fn other_client_errors_are_never_retried_and_never_leak_secrets() {
    for status in [400u16, 401, 403, 404, 413] {
        let (r, base) = Receiver::start(&[(status, None), (202, None)]).await;
        let slack = HttpNotifier::slack(format!("{base}/services/T0/B0/s3cr3t"))
            .retry(fast())
            .build()
            .unwrap();
        let err = slack.notify(&alert()).await.unwrap_err();
        assert_eq!(r.seen().len(), 1, "HTTP {status} must not be retried");
        let ActionError::Refused(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.contains(&format!("HTTP {status}")), "{msg}");
        assert!(!msg.contains("s3cr3t") && !format!("{slack:?}").contains("s3cr3t"));
    }
    let pd = HttpNotifier::pagerduty(KEY).build().unwrap();
    assert!(!format!("{pd:?}").contains(KEY));
}

#[tokio::test]
async fn a_timeout_is_reported_as_unknown_and_not_retried() {
    // A receiver that accepts the connection and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0u32));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            *count.lock().unwrap() += 1;
            held.push(sock);
        }
    });
    let hook = HttpNotifier::webhook(format!("http://{addr}/"))
        .retry(fast().with_timeout(Duration::from_millis(300)))
        .build()
        .unwrap();
    let err = hook.notify(&alert()).await.unwrap_err();
    assert!(
        matches!(err, ActionError::Timeout(d) if d == Duration::from_millis(300)),
        "{err:?}"
    );
    assert_eq!(*accepted.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_reported() {
    // Bind then drop: nothing listens on this port.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let hook = webhook(&format!("http://{addr}/x"));
    let err = hook.send(&alert()).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotifyGaveUp { attempts: 3, reason, .. } if reason.starts_with("cannot connect")),
        "{err:?}"
    );
}

#[tokio::test]
async fn expiry_of_a_notify_decision_sends_resolve_with_the_trigger_dedup_key() {
    let (r, base) = Receiver::start(&[]).await;
    let pd = HttpNotifier::pagerduty(KEY)
        .endpoint(base.as_str())
        .retry(fast())
        .build()
        .unwrap();
    let exec = Executor::builder()
        .notifier(Arc::new(pd))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut engine = Engine::new(Definition::default_set().unwrap());
    let t0 = Timestamp::from_unix_secs(1_800_000_000);
    let plan = engine.evaluate(&event(), t0);
    let out = exec.execute(&plan).await;
    // No IP blocker is configured: the block has no responder, the notify goes out.
    assert!(out.contains(&(
        plan.steps[1].decision.unwrap(),
        Outcome::Applied { attempts: 1 }
    )));
    assert_eq!(r.seen().len(), 1);

    // The notify decision lives for the playbook's 5 min cool-down.
    assert!(
        engine
            .expire(t0.saturating_add(Duration::from_secs(299)))
            .is_empty()
    );
    let mut resolved = 0;
    for d in engine.expire(t0.saturating_add(Duration::from_secs(300))) {
        assert!(d.needs_resolve());
        assert_eq!(
            exec.revert(&d).await,
            Some(Outcome::Applied { attempts: 1 })
        );
        resolved += 1;
    }
    assert_eq!(resolved, 1);
    let seen = r.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body["event_action"], "trigger");
    assert_eq!(seen[1].body["event_action"], "resolve");
    assert_eq!(seen[0].body["dedup_key"], "brute-force-ip:203.0.113.7");
    assert_eq!(seen[1].body["dedup_key"], seen[0].body["dedup_key"]);
    // The block expires later; it needs an unblock, not a resolve, and nothing more is sent.
    for d in engine.expire(t0.saturating_add(Duration::from_secs(3600))) {
        assert!(d.needs_revert() && !d.needs_resolve());
    }
    assert_eq!(r.seen().len(), 2);
}

/// One request as a raw receiver read it: its `Idempotency-Key` header and body.
type Raw = (Option<String>, Value);

/// A receiver that reads each request whole, then closes the connection without an
/// answer for the first `drop_first` of them (the request may have been acted on:
/// the client cannot tell), and answers `200` after that.
async fn dropping_receiver(drop_first: usize) -> (Arc<Mutex<Vec<Raw>>>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed before a whole request");
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let head = text[..end].to_ascii_lowercase();
                    let len: usize = (head.lines())
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if buf.len() >= end + 4 + len {
                        break (head, buf[end + 4..end + 4 + len].to_vec());
                    }
                }
            };
            let key = (head.lines())
                .find_map(|l| l.strip_prefix("idempotency-key:"))
                .map(|v| v.trim().to_owned());
            let n = {
                let mut log = log.lock().unwrap();
                log.push((key, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                log.len()
            };
            if n > drop_first {
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                sock.write_all(ok).await.unwrap();
            }
            drop(sock);
        }
    });
    (seen, format!("http://{addr}/hook"))
}

#[tokio::test]
async fn a_request_lost_after_it_was_sent_is_retried_with_the_same_idempotency_key() {
    let (seen, url) = dropping_receiver(1).await;
    let hook = webhook(&url);
    assert_eq!(hook.send(&alert()).await.unwrap(), 2, "at least once");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let key = seen[0].0.clone().expect("an Idempotency-Key header");
    assert!(key.len() >= 32, "{key}");
    assert_eq!(
        seen[1].0.as_deref(),
        Some(key.as_str()),
        "the retry is the same notification"
    );
    // The webhook body carries it too; the bodies are the same.
    assert_eq!(seen[0].1["id"], key.as_str());
    assert_eq!(seen[0].1, seen[1].1);

    // Another notification, even with the same content, has another key.
    let (seen, url) = dropping_receiver(0).await;
    let hook = webhook(&url);
    hook.send(&alert()).await.unwrap();
    hook.send(&alert()).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_ne!(seen[0].0, seen[1].0);
    // A caller's own id is used as it is.
    let (seen, url) = dropping_receiver(0).await;
    webhook(&url).send(&alert().with_id("n-42")).await.unwrap();
    assert_eq!(seen.lock().unwrap()[0].0.as_deref(), Some("n-42"));
}

#[tokio::test]
async fn the_executors_retry_of_a_lost_notification_carries_the_same_key() {
    // The notifier tries once and gives up (unavailable); the executor tries again.
    let (seen, url) = dropping_receiver(1).await;
    let once = RetryPolicy::new(NonZeroU32::MIN, Duration::from_millis(10));
    let hook = HttpNotifier::webhook(&url).retry(once).build().unwrap();
    let exec = Executor::builder()
        .notifier(Arc::new(hook))
        .retries(1)
        .backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut engine = Engine::new(Definition::default_set().unwrap());
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let plan = engine.evaluate(&event(), now);
    let outcomes = exec.execute(&plan).await;
    let notify = plan
        .steps
        .iter()
        .find(|s| s.action.kind().name() == "notify")
        .unwrap();
    let outcome = outcomes
        .iter()
        .find(|(d, _)| Some(*d) == notify.decision)
        .unwrap();
    assert!(
        matches!(outcome.1, Outcome::Applied { attempts: 2 }),
        "{outcome:?}"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].0.is_some());
    assert_eq!(seen[0].0, seen[1].0);
}
