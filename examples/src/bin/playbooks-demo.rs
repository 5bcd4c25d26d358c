//! Replays a recorded attack through the default playbooks with logging responders:
//! a brute force, its own rate-limit echoes, credential stuffing (and an allowlisted
//! office address), expiry of the first ban, the same address again (a repeat
//! offender, ban doubled), a failed login from afar (bounded step-up only), then an
//! account takeover backed by an accepted password. Prints every plan step with its
//! explanation, every call, and verifies the audit chain at the end.
//!
//! cargo run -p palisade-examples --bin playbooks-demo
#![allow(clippy::unwrap_used)] // a demo that unwraps stops loudly

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{
    Clock, Error, EventId, EventKind, EvidenceBasis, IpBlocker, ManualClock, Notification,
    Notifier, SecurityEvent, SessionTerminator, Severity, StepUpRequirer, Subject, Timestamp,
    TokenIdentity, TokenRevoker, async_trait,
};
use palisade_playbooks::{AuditLog, Definition, Engine, Executor, Plan, Verdict, verify_audit};

/// Prints every call instead of acting.
#[derive(Debug)]
struct Log;

#[async_trait]
impl IpBlocker for Log {
    async fn block_ip(&self, ip: IpAddr, d: Duration, _: &str) -> Result<(), Error> {
        println!("      -> block_ip({ip}, {} min)", d.as_secs() / 60);
        Ok(())
    }
    async fn unblock_ip(&self, ip: IpAddr) -> Result<(), Error> {
        println!("      -> unblock_ip({ip})");
        Ok(())
    }
}

#[async_trait]
impl TokenRevoker for Log {
    async fn revoke_token(&self, t: &TokenIdentity) -> Result<(), Error> {
        println!("      -> revoke_token({}, {:?})", t.issuer, t.jti);
        Ok(())
    }
    async fn revoke_user(&self, iss: &str, sub: &str, before: Timestamp) -> Result<(), Error> {
        println!("      -> revoke_user({iss}, {sub}, issued before {before})");
        Ok(())
    }
}

#[async_trait]
impl StepUpRequirer for Log {
    async fn require_step_up(&self, u: &str, d: Duration, _: &str) -> Result<(), Error> {
        println!("      -> require_step_up({u}, {} h)", d.as_secs() / 3600);
        Ok(())
    }
}

#[async_trait]
impl SessionTerminator for Log {
    async fn terminate_sessions(&self, u: &str, _: &str) -> Result<Option<u64>, Error> {
        println!("      -> terminate_sessions({u})");
        Ok(Some(2))
    }
}

#[async_trait]
impl Notifier for Log {
    async fn notify(&self, n: &Notification) -> Result<(), Error> {
        println!(
            "      -> notify {:?}[{:?}] {} (key {})",
            n.action, n.severity, n.summary, n.dedup_key
        );
        Ok(())
    }
}

fn event(
    n: &mut u32,
    t: Timestamp,
    kind: EventKind,
    sev: Severity,
    subject: Subject,
) -> SecurityEvent {
    *n += 1;
    SecurityEvent::new(
        EventId::new(format!("evt-{n}")).unwrap(),
        t,
        kind,
        sev,
        subject,
        "demo",
    )
}

fn ip(s: &str) -> Subject {
    Subject::Ip {
        ip: s.parse().unwrap(),
    }
}

fn show(plan: &Plan) {
    if let Some(why) = &plan.ignored {
        println!("    ignored: {why}");
    }
    for s in &plan.steps {
        let v = match s.verdict {
            Verdict::Execute => "EXECUTE".to_owned(),
            Verdict::Suppressed(x) => format!("suppressed {x:?}"),
            other => format!("{other:?}"),
        };
        println!("    [{v}] {}", s.why);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
    let mut def = Definition::default_set().unwrap();
    def.allowlist.networks.push("10.0.0.0/8".parse().unwrap());
    let mut engine = Engine::new(def);
    let log: Arc<Log> = Arc::new(Log);
    let exec = Executor::builder()
        .ip_blocker(log.clone())
        .token_revoker(log.clone())
        .step_up(log.clone())
        .sessions(log.clone())
        .notifier(log)
        .build()
        .unwrap();
    let mut audit = AuditLog::new(Vec::new());
    let mut n = 0;

    let handle = async |engine: &mut Engine, audit: &mut AuditLog<Vec<u8>>, ev: SecurityEvent| {
        println!(
            "  {} {:?} {:?} about {:?}",
            ev.id, ev.kind, ev.severity, ev.subject
        );
        let plan = engine.evaluate(&ev, clock.now());
        show(&plan);
        let out = exec.execute(&plan).await;
        audit.record_plan(&plan, &out).unwrap();
    };

    println!("1. brute force from 203.0.113.7: five detections in a minute");
    for _ in 0..5 {
        let ev = event(
            &mut n,
            clock.now(),
            EventKind::BruteForce,
            Severity::High,
            ip("203.0.113.7"),
        );
        handle(&mut engine, &mut audit, ev).await;
        clock.advance(Duration::from_secs(12));
    }

    println!("\n2. the blocked address keeps knocking; the rate limiter reports it");
    let ev = event(
        &mut n,
        clock.now(),
        EventKind::RateLimitExceeded,
        Severity::Critical,
        ip("203.0.113.7"),
    );
    handle(&mut engine, &mut audit, ev).await;

    println!(
        "\n3. credential stuffing from 198.51.100.23, and from the office (10.1.2.3, allowlisted)"
    );
    for src in ["198.51.100.23", "198.51.100.23", "10.1.2.3"] {
        let ev = event(
            &mut n,
            clock.now(),
            EventKind::CredentialStuffing,
            Severity::High,
            ip(src),
        )
        .with_evidence("accounts_tried_5m", "412");
        handle(&mut engine, &mut audit, ev).await;
    }

    println!("\n4. 15 minutes later: the first ban expires and is lifted");
    clock.advance(Duration::from_secs(15 * 60));
    for d in engine.expire(clock.now()) {
        let outcome = exec.revert(&d).await;
        if outcome.is_some() {
            // Blocks are lifted; notifications are resolved with their dedup_key.
            let what = if d.needs_revert() {
                "reverted"
            } else {
                "resolved"
            };
            println!("    decision {} over: {what} ({:?})", d.id, outcome);
        }
        audit.record_expiry(clock.now(), &d, outcome).unwrap();
    }

    println!("\n5. 203.0.113.7 comes back: a repeat offender, the ban doubles");
    let ev = event(
        &mut n,
        clock.now(),
        EventKind::BruteForce,
        Severity::Critical,
        ip("203.0.113.7"),
    );
    handle(&mut engine, &mut audit, ev).await;

    println!("\n6. a failed login on user-0815 from the other side of the world");
    println!("   (anyone can fail a login on any username: step-up and notify, nothing more)");
    let ev = event(
        &mut n,
        clock.now(),
        EventKind::ImpossibleTravel,
        Severity::Critical,
        Subject::user("user-0815"),
    );
    handle(&mut engine, &mut audit, ev).await;

    println!("\n7. one of the stuffed accounts is taken over: its password was accepted");
    let ev = event(
        &mut n,
        clock.now(),
        EventKind::AccountTakeover,
        Severity::Critical,
        Subject::user("user-4711"),
    )
    .with_basis(EvidenceBasis::Authenticated);
    handle(&mut engine, &mut audit, ev).await;

    let log = String::from_utf8(audit.get_ref().clone()).unwrap();
    let (records, head) = verify_audit(&log).unwrap();
    println!(
        "\naudit: {records} hash-chained OCSF Remediation Activity records verify; head {}",
        &head[..16]
    );
    println!(
        "active decisions to persist on shutdown: {}",
        engine.state().decisions.len()
    );
}
