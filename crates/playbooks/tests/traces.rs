//! Traces, in a test binary of their own: `tracing`'s per-callsite interest cache is
//! shared by the threads of a process, so a thread-local subscriber next to tests that
//! run without one can miss callsites.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use palisade_core_traits::{EventId, EventKind, SecurityEvent, Severity, Subject, Timestamp};
use palisade_playbooks::{Definition, Engine, Executor, HttpNotifier, Outcome};

/// Answers 503 to the first request, 202 to the others; counts them.
async fn receiver() -> (Arc<AtomicU32>, String) {
    let seen = Arc::new(AtomicU32::new(0));
    let count = seen.clone();
    let app = axum::Router::new().fallback(move || {
        let n = count.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::ACCEPTED
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (seen, format!("http://{addr}"))
}

fn event() -> SecurityEvent {
    SecurityEvent::new(
        EventId::new("e-1").unwrap(),
        Timestamp::from_unix_secs(1_800_000_000),
        EventKind::BruteForce,
        Severity::High,
        Subject::ip("203.0.113.7".parse().unwrap()),
        "test",
    )
}

/// Every span and event, as `target name field=value …` lines.
#[derive(Clone, Default)]
struct Capture {
    lines: Arc<Mutex<Vec<String>>>,
    next_id: Arc<std::sync::atomic::AtomicU64>,
}

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut f = Fields(format!(
            "{} {}",
            span.metadata().target(),
            span.metadata().name()
        ));
        span.record(&mut f);
        self.lines.lock().unwrap().push(f.0);
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::span::Id::from_u64(id + 1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut f = Fields("record".into());
        values.record(&mut f);
        self.lines.lock().unwrap().push(f.0);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(format!("{} event", event.metadata().target()));
        event.record(&mut f);
        self.lines.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn traces_name_the_endpoint_decision_and_kind_never_the_secret_path_or_the_target() {
    let capture = Capture::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = tracing::subscriber::with_default(capture.clone(), || {
        rt.block_on(async {
            let (seen, base) = receiver().await;
            let hook = HttpNotifier::webhook(format!("{base}/hooks/s3cr3t-path"))
                .build()
                .unwrap();
            let exec = Executor::builder()
                .notifier(Arc::new(hook))
                .build()
                .unwrap();
            let mut engine = Engine::new(Definition::default_set().unwrap());
            let plan = engine.evaluate(&event(), Timestamp::from_unix_secs(1_800_000_000));
            let out = exec.execute(&plan).await;
            assert_eq!(out[1].1, Outcome::Applied { attempts: 1 });
            assert_eq!(seen.load(Ordering::SeqCst), 2, "503, then delivered");
            base
        })
    });
    let lines = capture.lines.lock().unwrap().clone();
    let ours: Vec<&String> = (lines.iter())
        .filter(|l| l.starts_with("palisade_playbooks"))
        .collect();
    let shown = format!("endpoint={}/…", addr);
    let has = |needle: &str| ours.iter().any(|l| l.contains(needle));
    assert!(has("playbooks.action") && has("kind=notify"), "{ours:#?}");
    assert!(has("decision=1"), "{ours:#?}");
    assert!(has("playbooks.notify") && has(&shown), "{ours:#?}");
    assert!(has("attempt=2"), "{ours:#?}");
    assert!(has("playbooks: decision"), "{ours:#?}");
    for l in &lines {
        assert!(!l.contains("s3cr3t"), "secret path in a trace: {l}");
    }
    for l in &ours {
        assert!(!l.contains("203.0.113.7"), "target in a trace: {l}");
    }
}
