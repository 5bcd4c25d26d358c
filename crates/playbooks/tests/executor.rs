//! The executor against recording implementations of the core-traits action traits.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core_traits::{
    BoxError, Error as ActionError, EventId, EventKind, EvidenceBasis, IpBlocker, Notification,
    Notifier, SecurityEvent, SessionTerminator, Severity, StepUpRequirer, Subject, Timestamp,
    TokenIdentity, TokenRevoker, async_trait,
};
use palisade_playbooks::{
    ActionKind, Definition, Engine, Error, Executor, Outcome, OutcomeCounts, State, Target,
};

/// Records every call; can be told to fail or hang for the next calls.
#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    fail_next: Mutex<u32>,
    hang: Mutex<bool>,
    refuse: Mutex<bool>,
}

impl Recorder {
    async fn call(&self, what: String) -> Result<(), ActionError> {
        self.calls.lock().unwrap().push(what);
        if *self.hang.lock().unwrap() {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if *self.refuse.lock().unwrap() {
            return Err(ActionError::Refused("policy".into()));
        }
        let mut f = self.fail_next.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            let source: BoxError = "connection reset".into();
            return Err(ActionError::Unavailable {
                backend: "test",
                source,
            });
        }
        Ok(())
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl IpBlocker for Recorder {
    async fn block_ip(&self, ip: IpAddr, d: Duration, _: &str) -> Result<(), ActionError> {
        self.call(format!("block {ip} {}s", d.as_secs())).await
    }
    async fn unblock_ip(&self, ip: IpAddr) -> Result<(), ActionError> {
        self.call(format!("unblock {ip}")).await
    }
}

#[async_trait]
impl TokenRevoker for Recorder {
    async fn revoke_token(&self, t: &TokenIdentity) -> Result<(), ActionError> {
        self.call(format!("revoke {} {}", t.issuer, t.jti.as_deref().unwrap()))
            .await
    }
    async fn revoke_user(
        &self,
        iss: &str,
        sub: &str,
        before: Timestamp,
    ) -> Result<(), ActionError> {
        self.call(format!("revoke-user {iss} {sub} {}", before.as_unix_secs()))
            .await
    }
}

#[async_trait]
impl StepUpRequirer for Recorder {
    async fn require_step_up(&self, u: &str, d: Duration, _: &str) -> Result<(), ActionError> {
        self.call(format!("step-up {u} {}s", d.as_secs())).await
    }
}

#[async_trait]
impl SessionTerminator for Recorder {
    async fn terminate_sessions(&self, u: &str, _: &str) -> Result<Option<u64>, ActionError> {
        self.call(format!("terminate {u}")).await.map(|()| Some(1))
    }
}

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, n: &Notification) -> Result<(), ActionError> {
        self.call(format!("notify {:?} {}", n.severity, n.dedup_key))
            .await
    }
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
        Severity::Critical,
        subject,
        "test",
    )
    // Backed by an authenticated session: every action of the default playbooks may run.
    .with_basis(EvidenceBasis::Authenticated)
}

fn ip(n: u32, addr: &str) -> SecurityEvent {
    event(
        n,
        EventKind::BruteForce,
        Subject::Ip {
            ip: addr.parse().unwrap(),
        },
    )
}

fn setup() -> (Arc<Recorder>, Executor) {
    let r = Arc::new(Recorder::default());
    let exec = Executor::builder()
        .ip_blocker(r.clone())
        .token_revoker(r.clone())
        .step_up(r.clone())
        .sessions(r.clone())
        .notifier(r.clone())
        .timeout(Duration::from_secs(1))
        .retries(2)
        .backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    (r, exec)
}

#[tokio::test(start_paused = true)]
async fn plans_run_in_order_through_every_trait() {
    let (r, exec) = setup();
    let mut e = Engine::new(Definition::default_set().unwrap());
    let plan = e.evaluate(
        &event(
            1,
            EventKind::AccountTakeover,
            Subject::User {
                user_id: "alice".into(),
            },
        ),
        at(0),
    );
    let out = exec.execute(&plan).await;
    assert_eq!(out.len(), 4);
    assert!(
        out.iter()
            .all(|(_, o)| *o == Outcome::Applied { attempts: 1 })
    );
    assert_eq!(
        r.calls(),
        vec![
            "step-up alice 86400s".to_owned(),
            "terminate alice".into(),
            format!("revoke-user https://auth.example alice {T0}"),
            "notify Critical account-takeover-user:alice".into(),
        ]
    );
    let plan = e.evaluate(
        &event(
            2,
            EventKind::TokenMisuse,
            Subject::Token {
                issuer: "iss".into(),
                jti: "j1".into(),
            },
        ),
        at(0),
    );
    exec.execute(&plan).await;
    assert_eq!(r.calls()[4], "revoke iss j1");
    // Counted by action kind.
    let stats = exec.stats();
    let one = applied(1);
    assert_eq!(stats.require_step_up, one);
    assert_eq!(stats.terminate_sessions, one);
    assert_eq!(stats.revoke_user_tokens, one);
    assert_eq!(stats.revoke_token, one);
    assert_eq!(stats.notify, applied(2)); // the takeover's and the token misuse's
    assert_eq!(stats.block_ip, OutcomeCounts::default());
    assert_eq!(stats.retries, 0);
}

/// Counts with `n` applied and nothing else.
fn applied(n: u64) -> OutcomeCounts {
    let mut c = OutcomeCounts::default();
    c.applied = n;
    c
}

#[tokio::test(start_paused = true)]
async fn unavailable_is_retried_a_bounded_number_of_times() {
    let (r, exec) = setup();
    let mut e = Engine::new(Definition::default_set().unwrap());
    *r.fail_next.lock().unwrap() = 2;
    let out = exec.execute(&e.evaluate(&ip(1, "192.0.2.1"), at(0))).await;
    assert_eq!(out[0].1, Outcome::Applied { attempts: 3 });
    *r.fail_next.lock().unwrap() = 5;
    let out = exec.execute(&e.evaluate(&ip(2, "192.0.2.2"), at(0))).await;
    assert!(matches!(out[0].1, Outcome::Failed { attempts: 3, .. }));
    // Its notification then failed twice more and went through on its third attempt.
    assert_eq!(out[1].1, Outcome::Applied { attempts: 3 });
    let stats = exec.stats();
    assert_eq!((stats.block_ip.applied, stats.block_ip.failed), (1, 1));
    assert_eq!(stats.notify, applied(2));
    assert_eq!(stats.retries, 2 + 2 + 2);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_is_not_retried() {
    let (r, exec) = setup();
    let mut e = Engine::new(Definition::default_set().unwrap());
    *r.refuse.lock().unwrap() = true;
    let out = exec.execute(&e.evaluate(&ip(1, "192.0.2.1"), at(0))).await;
    assert!(matches!(out[0].1, Outcome::Failed { attempts: 1, .. }));
    assert_eq!(r.calls().len(), 2); // block once, notify once
}

#[tokio::test(start_paused = true)]
async fn a_timeout_after_dispatch_is_unknown_and_not_retried() {
    let (r, exec) = setup();
    let mut e = Engine::new(Definition::default_set().unwrap());
    *r.hang.lock().unwrap() = true;
    let out = exec.execute(&e.evaluate(&ip(1, "192.0.2.1"), at(0))).await;
    assert_eq!(out[0].1, Outcome::Unknown { attempts: 1 });
    assert_eq!(exec.stats().block_ip.unknown, 1);
    assert_eq!(exec.stats().retries, 0);
    assert_eq!(
        r.calls(),
        vec![
            "block 192.0.2.1 900s",
            "notify Critical brute-force-ip:192.0.2.1"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn dry_run_never_calls_an_executor() {
    let (r, exec) = setup();
    let mut def = Definition::default_set().unwrap();
    def.engine.mode = palisade_playbooks::Mode::DryRun;
    let mut e = Engine::new(def);
    for n in 0..50 {
        let plan = e.evaluate(&ip(n, &format!("192.0.2.{n}")), at(u64::from(n)));
        assert!(exec.execute(&plan).await.is_empty());
    }
    for d in e.expire(at(100_000)) {
        assert!(exec.revert(&d).await.is_none());
    }
    assert!(r.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn restart_keeps_decisions_fires_pending_expiries_and_applies_nothing_twice() {
    let (r, exec) = setup();
    let mut e = Engine::new(Definition::default_set().unwrap());
    exec.execute(&e.evaluate(&ip(1, "192.0.2.1"), at(0))).await;
    exec.execute(&e.evaluate(&ip(2, "192.0.2.2"), at(600)))
        .await;
    let state = e.state().to_json();
    drop(e);

    // A new process: restore, replay the same events (a redelivering queue), tick time.
    let mut e = Engine::restore(
        Definition::default_set().unwrap(),
        State::from_json(&state).unwrap(),
    );
    for (n, a) in [(1, "192.0.2.1"), (2, "192.0.2.2")] {
        let plan = e.evaluate(&ip(n, a), at(700));
        // The block is still active: a duplicate. (A notification may repeat after its 5 min.)
        assert!(
            plan.executable()
                .all(|s| s.action.kind() != ActionKind::BlockIp),
            "{plan:?}"
        );
    }
    let mut reverted = Vec::new();
    for t in [899, 900, 1499, 1500, 1501, 5000] {
        for d in e.expire(at(t)) {
            if !d.needs_revert() {
                continue; // notify decisions are resolved, tested with the HTTP receiver
            }
            if let Some(o) = exec.revert(&d).await {
                assert_eq!(o, Outcome::Applied { attempts: 1 });
                reverted.push((t, d.target));
            }
        }
    }
    assert_eq!(reverted.len(), 2);
    assert_eq!(exec.stats().unblock_ip, applied(2));
    assert_eq!(reverted[0].0, 900);
    assert_eq!(reverted[1].0, 1500);
    let calls = r.calls();
    for a in ["192.0.2.1", "192.0.2.2"] {
        assert_eq!(
            calls
                .iter()
                .filter(|c| **c == format!("block {a} 900s"))
                .count(),
            1
        );
        assert_eq!(
            calls
                .iter()
                .filter(|c| **c == format!("unblock {a}"))
                .count(),
            1
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_missing_responder_is_a_failure_not_a_panic() {
    let exec = Executor::builder().build().unwrap();
    let mut e = Engine::new(Definition::default_set().unwrap());
    let out = exec.execute(&e.evaluate(&ip(1, "192.0.2.1"), at(0))).await;
    assert!(out.iter().all(|(_, o)| *o == Outcome::NoResponder));
    let stats = exec.stats();
    assert_eq!(
        (stats.block_ip.no_responder, stats.notify.no_responder),
        (1, 1)
    );
    for d in e.expire(at(100_000)) {
        assert_eq!(exec.revert(&d).await, Some(Outcome::NoResponder));
    }
    let stats = exec.stats();
    assert_eq!(
        (stats.unblock_ip.no_responder, stats.resolve.no_responder),
        (1, 1)
    );
}

#[test]
fn a_zero_timeout_is_refused_by_name() {
    let err = Executor::builder()
        .timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "timeout",
                ..
            }
        ),
        "{err:?}"
    );
}

/// A state written by 0.1.0 (then called `Snapshot`; `tests/data/state-0.1.0.json`):
/// brute force from 203.0.113.7 twice (the second ban escalated to 30 min), credential
/// stuffing from 198.51.100.9, an authenticated takeover of `Alice`; next id 10.
#[test]
fn a_state_written_by_0_1_0_loads_and_resumes() {
    let json = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/state-0.1.0.json"
    ))
    .unwrap();
    let state = State::from_json(json.trim_end()).unwrap();
    // The format has not changed: what was read writes back byte for byte.
    assert_eq!(state.to_json(), json.trim_end());
    assert_eq!(state.decisions.len(), 8);
    let mut e = Engine::restore(Definition::default_set().unwrap(), state);
    assert_eq!(e.active_count(), 8);
    assert_eq!(e.stats().active_decisions, 8);
    // The escalated ban is still active: a re-delivered event is a duplicate (and so
    // is its notification, on the same unauthenticated evidence).
    let redelivered = ip(10, "203.0.113.7").with_basis(EvidenceBasis::Unauthenticated);
    let p = e.evaluate(&redelivered, at(1030));
    assert!(p.steps.iter().all(|s| s.decision.is_none()), "{p:?}");
    // A new decision takes the next id.
    let p = e.evaluate(&ip(11, "192.0.2.9"), at(1030));
    assert_eq!(p.steps[0].decision, Some(10));
    // The offence history came along: after the 30 min ban, the third one doubles again.
    let expired = e.expire(at(1000 + 1800));
    let ban = Target::Ip {
        ip: "203.0.113.7".parse().unwrap(),
    };
    assert!(expired.iter().any(|d| d.id == 2 && d.needs_revert()));
    let p = e.evaluate(&ip(12, "203.0.113.7"), at(1000 + 1800));
    let block = e.active(ActionKind::BlockIp, &ban).unwrap();
    assert_eq!(p.steps[0].decision, Some(block.id));
    assert_eq!(
        block.active_until,
        at(1000 + 1800 + 3600),
        "third ban: 15 min × 2²"
    );
}

/// The documented loop (revert what `expire` hands out with `needs_revert`) when an
/// address offends again after its block ended but before the expiry tick ran.
#[tokio::test(start_paused = true)]
async fn the_expiry_loop_never_lifts_a_newer_block_of_the_same_address() {
    let (r, exec) = setup();
    let mut e = Engine::new(Definition::default_set().unwrap());
    exec.execute(&e.evaluate(&ip(1, "198.51.100.4"), at(0)))
        .await;
    exec.execute(&e.evaluate(&ip(2, "198.51.100.4"), at(901)))
        .await;
    for t in [902, 901 + 1800] {
        for d in e.expire(at(t)) {
            exec.revert(&d).await;
        }
    }
    let blocks: Vec<String> = (r.calls().into_iter())
        .filter(|c| c.contains("block"))
        .collect();
    assert_eq!(
        blocks,
        vec![
            "block 198.51.100.4 900s",
            "block 198.51.100.4 1800s",
            "unblock 198.51.100.4"
        ]
    );
    assert_eq!(exec.stats().unblock_ip, applied(1));
}
