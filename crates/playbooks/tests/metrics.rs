//! The `metrics` feature: the counters and gauges docs/playbooks.md lists, recorded by
//! metrics-util's `DebuggingRecorder` installed for this thread only
//! (`metrics::with_local_recorder`), with async work on a current-thread runtime inside
//! the closure. Expected values are counted by hand from the scenario.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use metrics::{SharedString, Unit};
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade_core_traits::{
    BoxError, Error as ActionError, EventId, EventKind, EvidenceBasis, IpBlocker, Notification,
    Notifier, SecurityEvent, Severity, Subject, Timestamp, async_trait,
};
use palisade_playbooks::{Action, Definition, ENFORCEMENT_EVIDENCE, Engine, Executor, Mode, Plan};

type Metrics = Vec<(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)>;

fn recorded(snapshotter: &Snapshotter) -> Metrics {
    snapshotter.snapshot().into_vec()
}

/// The value of the counter or gauge `name` whose labels include all of `labels`
/// (summed over label sets), or `None` if never registered.
fn value(snap: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for (key, _, _, v) in snap {
        let k = key.key();
        if k.name() != name
            || !labels
                .iter()
                .all(|(n, val)| k.labels().any(|l| l.key() == *n && l.value() == *val))
        {
            continue;
        }
        let x = match v {
            DebugValue::Counter(c) => *c as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(_) => continue,
        };
        found = Some(found.unwrap_or(0.0) + x);
    }
    found
}

const T0: u64 = 1_800_000_000;

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + s)
}

fn event(n: u32, kind: EventKind, subject: Subject) -> SecurityEvent {
    SecurityEvent::new(
        EventId::new(format!("e{n}")).unwrap(),
        at(0),
        kind,
        Severity::High,
        subject,
        "test",
    )
}

fn ip(n: u32, addr: &str) -> SecurityEvent {
    event(n, EventKind::BruteForce, Subject::ip(addr.parse().unwrap()))
}

/// Every step kind of the default set, once or twice: see the comments for the count.
fn scenario(e: &mut Engine) -> Vec<Plan> {
    let alice = event(5, EventKind::AccountTakeover, Subject::user("alice"));
    vec![
        // block + notify executed
        e.evaluate(&ip(1, "203.0.113.7"), at(0)),
        // both duplicates
        e.evaluate(&ip(2, "203.0.113.7"), at(1)),
        // block allowlisted, notify executed
        e.evaluate(&ip(3, "127.0.0.1"), at(2)),
        // ignored as a whole
        e.evaluate(
            &ip(4, "198.51.100.1").with_evidence(ENFORCEMENT_EVIDENCE, "x"),
            at(3),
        ),
        // unauthenticated takeover: step-up and notify executed; terminate and revoke
        // suppressed as unauthenticated
        e.evaluate(&alice.with_basis(EvidenceBasis::Unauthenticated), at(4)),
        // dry-run
        e.manual(
            Action::BlockIp {
                ip: "192.0.2.1".parse().unwrap(),
                duration: Duration::from_secs(60),
            },
            Duration::from_secs(60),
            Mode::DryRun,
            "operator",
            at(5),
        ),
    ]
}

#[test]
fn the_engine_counts_events_and_steps_by_verdict_and_reason() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let stats = metrics::with_local_recorder(&recorder, || {
        let mut e = Engine::new(Definition::default_set().unwrap());
        scenario(&mut e);
        // block + notify, notify (127.0.0.1), step-up + notify (alice), dry-run block
        assert_eq!(e.stats().active_decisions, 6);
        assert_eq!(e.expire(at(1_000_000)).len(), 6);
        e.stats()
    });
    let snap = recorded(&snapshotter);
    let m = |name: &str, labels: &[(&str, &str)]| value(&snap, name, labels);
    assert_eq!(
        m("palisade_playbooks_events_evaluated_total", &[]),
        Some(5.0)
    );
    assert_eq!(m("palisade_playbooks_events_ignored_total", &[]), Some(1.0));
    let steps = "palisade_playbooks_steps_total";
    assert_eq!(m(steps, &[("verdict", "execute")]), Some(5.0));
    assert_eq!(m(steps, &[("verdict", "dry_run")]), Some(1.0));
    assert_eq!(m(steps, &[("verdict", "await_approval")]), Some(0.0));
    let suppressed = |reason| m(steps, &[("verdict", "suppressed"), ("reason", reason)]);
    assert_eq!(suppressed("duplicate"), Some(2.0));
    assert_eq!(suppressed("allowlisted"), Some(1.0));
    assert_eq!(suppressed("unauthenticated"), Some(2.0));
    assert_eq!(suppressed("cool_down"), Some(0.0));
    assert_eq!(suppressed("budget"), Some(0.0));
    assert_eq!(
        m("palisade_playbooks_decisions_expired_total", &[]),
        Some(6.0)
    );
    assert_eq!(m("palisade_playbooks_active_decisions", &[]), Some(0.0));

    // stats() counts the same.
    assert_eq!(stats.events_evaluated, 5);
    assert_eq!(stats.events_ignored, 1);
    assert_eq!((stats.steps_execute, stats.steps_dry_run), (5, 1));
    assert_eq!(
        (
            stats.suppressed_duplicate,
            stats.suppressed_allowlisted,
            stats.suppressed_unauthenticated
        ),
        (2, 1, 2)
    );
    assert_eq!((stats.expired, stats.active_decisions), (6, 0));
}

#[test]
fn budget_suppressions_are_counted_by_kind_and_severe_notifications_over_budget() {
    let def = Definition::from_toml(
        "one.toml",
        r#"
        [engine]
        max_actions_per_minute = 1
        [[playbook]]
        name = "bf"
        kinds = ["brute_force"]
        subject = "ip"
        cooldown = "5m"
        [[playbook.action]]
        type = "block_ip"
        duration = "15m"
        [[playbook.action]]
        type = "notify"
        "#,
    )
    .unwrap();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let stats = metrics::with_local_recorder(&recorder, || {
        let mut e = Engine::new(def);
        e.evaluate(&ip(1, "203.0.113.7"), at(0));
        // The minute's block and notification are spent: the block is suppressed, the
        // high-severity notification kept over the budget.
        e.evaluate(&ip(2, "203.0.113.8"), at(1));
        e.stats()
    });
    let snap = recorded(&snapshotter);
    let budget = "palisade_playbooks_budget_suppressions_total";
    assert_eq!(value(&snap, budget, &[("kind", "block_ip")]), Some(1.0));
    assert_eq!(value(&snap, budget, &[("kind", "notify")]), Some(0.0));
    assert_eq!(
        value(
            &snap,
            "palisade_playbooks_over_budget_notifications_total",
            &[]
        ),
        Some(1.0)
    );
    assert_eq!((stats.suppressed_budget, stats.over_budget), (1, 1));
    assert_eq!(stats.steps_execute, 3);
    let active = value(&snap, "palisade_playbooks_active_decisions", &[]);
    assert_eq!(active, Some(3.0));
}

/// Blocks succeed; notifications always find their backend unavailable.
#[derive(Debug)]
struct HalfBroken;

#[async_trait]
impl IpBlocker for HalfBroken {
    async fn block_ip(&self, _: IpAddr, _: Duration, _: &str) -> Result<(), ActionError> {
        Ok(())
    }
    async fn unblock_ip(&self, _: IpAddr) -> Result<(), ActionError> {
        Ok(())
    }
}

#[async_trait]
impl Notifier for HalfBroken {
    async fn notify(&self, _: &Notification) -> Result<(), ActionError> {
        let source: BoxError = "down".into();
        Err(ActionError::Unavailable {
            backend: "pager",
            source,
        })
    }
}

#[test]
fn the_executor_counts_actions_by_kind_and_outcome() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let stats = metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let r = Arc::new(HalfBroken);
            let exec = Executor::builder()
                .ip_blocker(r.clone())
                .notifier(r)
                .retries(2)
                .build()
                .unwrap();
            let mut e = Engine::new(Definition::default_set().unwrap());
            for plan in scenario(&mut e) {
                exec.execute(&plan).await;
            }
            for d in e.expire(at(1_000_000)) {
                exec.revert(&d).await;
            }
            exec.stats()
        })
    });
    let snap = recorded(&snapshotter);
    let actions = |kind, outcome| {
        value(
            &snap,
            "palisade_playbooks_actions_total",
            &[("kind", kind), ("outcome", outcome)],
        )
    };
    // One enforced block (the manual one is a dry run), three notifications, a step-up
    // without a responder; on expiry one unblock and three resolves.
    assert_eq!(actions("block_ip", "applied"), Some(1.0));
    assert_eq!(actions("notify", "failed"), Some(3.0));
    assert_eq!(actions("require_step_up", "no_responder"), Some(1.0));
    assert_eq!(actions("unblock_ip", "applied"), Some(1.0));
    assert_eq!(actions("resolve", "failed"), Some(3.0));
    assert_eq!(actions("block_ip", "failed"), None);
    // Each of the six notification calls was tried three times.
    let retries = "palisade_playbooks_action_retries_total";
    assert_eq!(value(&snap, retries, &[("kind", "notify")]), Some(6.0));
    assert_eq!(value(&snap, retries, &[("kind", "resolve")]), Some(6.0));
    assert_eq!(stats.notify.failed, 3);
    assert_eq!(stats.resolve.failed, 3);
    assert_eq!(stats.require_step_up.no_responder, 1);
    assert_eq!(stats.retries, 12);
}

#[cfg(feature = "http")]
#[test]
fn notifiers_count_sent_and_failed_deliveries() {
    use palisade_playbooks::HttpNotifier;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            // Accepts /ok, refuses everything else with 400.
            let app = axum::Router::new()
                .route("/ok", axum::routing::post(|| async { "" }))
                .fallback(|| async { (axum::http::StatusCode::BAD_REQUEST, "") });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            let n = Notification::trigger(Severity::High, "x", "k");
            let ok = HttpNotifier::webhook(format!("http://{addr}/ok"))
                .build()
                .unwrap();
            ok.send(&n).await.unwrap();
            let refused = HttpNotifier::slack(format!("http://{addr}/no"))
                .build()
                .unwrap();
            refused.send(&n).await.unwrap_err();
        })
    });
    let snap = recorded(&snapshotter);
    assert_eq!(
        value(
            &snap,
            "palisade_playbooks_notifications_sent_total",
            &[("notifier", "webhook")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &snap,
            "palisade_playbooks_notifications_failed_total",
            &[("notifier", "slack"), ("error", "rejected")]
        ),
        Some(1.0)
    );
}
