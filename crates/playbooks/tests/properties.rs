//! Property tests of the pipeline's invariants, for any event sequence.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use palisade_core_traits::{
    EventId, EventKind, EvidenceBasis, SecurityEvent, Severity, Subject, Timestamp,
};
use palisade_playbooks::{
    Action, ActionKind, AuditLog, Definition, Engine, Mode, Note, Origin, Suppression, Target,
    Verdict, verify_audit,
};
use proptest::prelude::*;

const DEF: &str = r#"
[engine]
max_actions_per_minute = 7

[allowlist]
ips = ["192.0.2.0"]
networks = ["10.0.0.0/8"]
users = ["u0"]

[[playbook]]
name = "block"
kinds = ["brute_force", "rate_limit_exceeded"]
subject = "ip"
cooldown = "30s"
[[playbook.action]]
type = "block_ip"
duration = "90s"
escalation = { factor = 3, max = "10m", decay_after = "5m" }
[[playbook.action]]
type = "notify"

[[playbook]]
name = "user"
kinds = ["account_takeover"]
subject = "user"
cooldown = "45s"
group_by = "subject_and_kind"
[[playbook.action]]
type = "require_step_up"
valid_for = "2m"
[[playbook.action]]
type = "terminate_sessions"
"#;

const T0: u64 = 1_800_000_000;

#[derive(Debug, Clone)]
enum Input {
    Event {
        ip: u8,
        user: u8,
        kind: u8,
        dt: u16,
        strong: bool,
    },
    Manual {
        ip: u8,
        dt: u16,
    },
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        8 => (0u8..12, 0u8..4, 0u8..4, 0u16..40, any::<bool>())
            .prop_map(|(ip, user, kind, dt, strong)| Input::Event { ip, user, kind, dt, strong }),
        1 => (0u8..12, 0u16..40).prop_map(|(ip, dt)| Input::Manual { ip, dt }),
    ]
}

fn addr(i: u8) -> std::net::IpAddr {
    // 0 is allowlisted by address, 1..3 by network (also as IPv4-mapped IPv6).
    match i {
        0 => "192.0.2.0".parse().unwrap(),
        1 => "10.1.2.3".parse().unwrap(),
        2 => "::ffff:10.9.9.9".parse().unwrap(),
        n => format!("198.51.100.{n}").parse().unwrap(),
    }
}

fn allowlisted(t: &Target) -> bool {
    match t {
        Target::Ip { ip } => ip.to_string() == "192.0.2.0" || ip.to_string().starts_with("10."),
        Target::User { user_id } => user_id == "u0",
        _ => false,
    }
}

fn run(
    inputs: &[Input],
    mut on_plan: impl FnMut(&mut Engine, &palisade_playbooks::Plan, u64),
) -> Engine {
    let mut e = Engine::new(Definition::from_toml("t", DEF).unwrap());
    let mut now = T0;
    for (n, i) in inputs.iter().enumerate() {
        let plan = match i {
            Input::Event {
                ip,
                user,
                kind,
                dt,
                strong,
            } => {
                now += u64::from(*dt);
                let (kind, subject) = match kind {
                    0 => (EventKind::BruteForce, Subject::Ip { ip: addr(*ip) }),
                    1 => (EventKind::RateLimitExceeded, Subject::Ip { ip: addr(*ip) }),
                    2 => (
                        EventKind::AccountTakeover,
                        Subject::User {
                            user_id: format!("u{user}"),
                        },
                    ),
                    _ => (
                        EventKind::AnomalousLogin,
                        Subject::User {
                            user_id: format!("u{user}"),
                        },
                    ),
                };
                let ev = SecurityEvent::new(
                    EventId::new(format!("e{n}")).unwrap(),
                    Timestamp::from_unix_secs(now),
                    kind,
                    Severity::Critical,
                    subject,
                    "prop",
                )
                .with_basis(if *strong {
                    EvidenceBasis::Authenticated
                } else {
                    EvidenceBasis::Unauthenticated
                });
                e.evaluate(&ev, Timestamp::from_unix_secs(now))
            }
            Input::Manual { ip, dt } => {
                now += u64::from(*dt);
                e.manual(
                    Action::BlockIp {
                        ip: addr(*ip),
                        duration: Duration::from_secs(60),
                    },
                    Duration::from_secs(60),
                    Mode::Enforce,
                    "operator",
                    Timestamp::from_unix_secs(now),
                )
            }
        };
        on_plan(&mut e, &plan, now);
    }
    e
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn at_most_one_active_decision_per_target_and_action(inputs in prop::collection::vec(input(), 1..300)) {
        let mut active: HashMap<(ActionKind, Target), (u64, EvidenceBasis)> = HashMap::new();
        run(&inputs, |e, plan, now| {
            for s in plan.steps.iter().filter(|s| s.decision.is_some()) {
                let key = (s.action.kind(), s.target.clone());
                let d = e.active(key.0, &key.1).unwrap();
                // A second decision while one is active only escalates it (stronger
                // evidence), and replaces it: the engine still holds exactly one.
                if let Some((until, basis)) = active.get(&key) {
                    assert!(
                        *until <= now || *basis < d.basis,
                        "second active decision for {key:?}"
                    );
                }
                assert_eq!(Some(d.id), s.decision);
                active.insert(key, (d.active_until.as_unix_secs(), d.basis));
            }
        });
    }

    #[test]
    fn no_kind_exceeds_its_budget_and_no_severe_notification_is_silenced(
        inputs in prop::collection::vec(input(), 1..300),
    ) {
        let mut times: HashMap<ActionKind, Vec<u64>> = HashMap::new();
        run(&inputs, |_, plan, now| {
            for s in plan.steps.iter() {
                let severe_notice = matches!(s.action, Action::Notify { severity, .. } if severity >= Severity::High);
                if severe_notice {
                    assert!(
                        !matches!(s.verdict, Verdict::Suppressed(Suppression::Budget)),
                        "a high-severity notification was suppressed by the budget"
                    );
                } else if s.decision.is_some() {
                    times.entry(s.action.kind()).or_default().push(now);
                }
            }
        });
        for (kind, times) in &times {
            for (i, t) in times.iter().enumerate() {
                let in_window = times[..=i].iter().filter(|u| **u + 60 > *t).count();
                prop_assert!(in_window <= 7, "{in_window} {kind:?} in the minute before {t}");
            }
        }
    }

    #[test]
    fn unauthenticated_evidence_never_acts_on_an_account(inputs in prop::collection::vec(input(), 1..300)) {
        let mut strong_events = HashSet::new();
        for (n, i) in inputs.iter().enumerate() {
            if let Input::Event { strong: true, .. } = i {
                strong_events.insert(format!("e{n}"));
            }
        }
        run(&inputs, |_, plan, _| {
            let strong = plan.event.as_ref().is_some_and(|id| strong_events.contains(id.as_str()));
            for s in plan.steps.iter().filter(|s| s.decision.is_some()) {
                if s.action.kind().acts_on_account() {
                    assert!(strong, "{:?} on unauthenticated evidence", s.action);
                }
            }
        });
    }

    #[test]
    fn allowlisted_subjects_are_never_acted_on(inputs in prop::collection::vec(input(), 1..300)) {
        run(&inputs, |_, plan, _| {
            for s in &plan.steps {
                if s.decision.is_some() && s.action.kind() != ActionKind::Notify {
                    assert!(!allowlisted(&s.target), "acted on {:?}", s.target);
                }
            }
        });
    }

    #[test]
    fn every_expired_block_is_reverted_once_unless_a_newer_block_holds(inputs in prop::collection::vec(input(), 1..300)) {
        // Blocks decided and not yet handed out by `expire`: id, target, in force.
        let mut open: Vec<(u64, Target, bool)> = Vec::new();
        let mut blocks = HashSet::new();
        let mut handed = Vec::new();
        let mut reverted = Vec::new();
        let mut check = |batch: Vec<palisade_playbooks::Decision>, open: &mut Vec<(u64, Target, bool)>| {
            for d in batch.iter().filter(|d| d.action.kind() == ActionKind::BlockIp) {
                let in_force = open.iter().find(|o| o.0 == d.id).unwrap().2;
                // A newer block in force of the same target (active, or over but not
                // handed out yet) holds the address: lifting this one would lift it.
                let newer = open.iter().any(|(id, t, f)| *id > d.id && *t == d.target && *f);
                assert_eq!(d.needs_revert(), in_force && !newer, "{d:?} {open:?}");
                handed.push(d.id);
                if d.needs_revert() {
                    reverted.push(d.id);
                }
            }
            open.retain(|o| batch.iter().all(|d| d.id != o.0));
        };
        let mut e = run(&inputs, |e, plan, now| {
            for s in plan.steps.iter().filter(|s| s.action.kind() == ActionKind::BlockIp) {
                if let Some(id) = s.decision {
                    blocks.insert(id);
                    open.push((id, s.target.clone(), s.verdict == Verdict::Execute));
                }
            }
            check(e.expire(Timestamp::from_unix_secs(now)), &mut open);
        });
        check(e.expire(Timestamp::MAX), &mut open);
        let unique: HashSet<u64> = handed.iter().copied().collect();
        prop_assert_eq!(unique.len(), handed.len(), "a decision was handed out twice");
        prop_assert_eq!(unique, blocks);
        let unique: HashSet<u64> = reverted.iter().copied().collect();
        prop_assert_eq!(unique.len(), reverted.len(), "a decision was reverted twice");
        prop_assert!(open.is_empty());
        prop_assert_eq!(e.active_count(), 0);
    }

    #[test]
    fn audit_detects_any_single_edit_drop_or_swap(
        inputs in prop::collection::vec(input(), 2..40),
        pick in any::<prop::sample::Index>(),
        pick2 in any::<prop::sample::Index>(),
        how in 0u8..3,
    ) {
        let mut audit = AuditLog::new(Vec::new());
        run(&inputs, |_, plan, _| audit.record_plan(plan, &[]).unwrap());
        let log = String::from_utf8(audit.get_ref().clone()).unwrap();
        prop_assert!(verify_audit(&log).is_ok());
        let mut lines: Vec<String> = log.lines().map(str::to_owned).collect();
        prop_assume!(lines.len() >= 2);
        let i = pick.index(lines.len());
        match how {
            0 => { let at = pick2.index(lines[i].len()); let mut b = lines[i].clone().into_bytes(); b[at] = if b[at] == b'7' { b'8' } else { b'7' }; lines[i] = String::from_utf8_lossy(&b).into_owned(); }
            1 => { lines.remove(i); if i == lines.len() { return Ok(()); } }
            _ => { let j = pick2.index(lines.len()); prop_assume!(lines[i] != lines[j]); lines.swap(i, j); }
        }
        prop_assert!(verify_audit(&lines.join("\n")).is_err());
    }

    #[test]
    fn every_step_is_explained_consistently_with_its_verdict(inputs in prop::collection::vec(input(), 1..200)) {
        run(&inputs, |e, plan, _| {
            for s in &plan.steps {
                let text = s.why.to_string();
                // A notification's incident key is its playbook and target, also when
                // it is shared from the open incident of a suppressed duplicate.
                if let Action::Notify { dedup_key, .. } = &s.action {
                    let value = match &s.target {
                        Target::Ip { ip } => ip.to_string(),
                        Target::User { user_id } => user_id.clone(),
                        other => panic!("{other:?}"),
                    };
                    assert_eq!(&**dedup_key, format!("{}:{value}", s.playbook.as_deref().unwrap()));
                }
                // Who decided: the playbook and rule, or the manual reason.
                match &s.why.origin {
                    Origin::Playbook { name, rule, .. } => {
                        assert_eq!(s.playbook.as_deref(), Some(&**name));
                        assert_eq!(*rule, s.rule);
                        assert!(text.starts_with(&format!("playbook {name:?} rule {rule} matched ")), "{text}");
                    }
                    Origin::Manual { reason } => {
                        assert!(text.starts_with(&format!("manual: {reason}")), "{text}");
                    }
                    other => panic!("unexpected origin {other:?}"),
                }
                // Why it was kept or suppressed, with the facts the verdict carries.
                match (s.verdict, s.why.note) {
                    (Verdict::Execute, Note::Kept) => assert!(!text.contains("suppressed"), "{text}"),
                    (Verdict::DryRun, Note::DryRun) => assert!(text.ends_with("dry-run: recorded, not executed")),
                    (Verdict::Suppressed(Suppression::Allowlisted), Note::Allowlisted) => {
                        assert!(text.ends_with("suppressed: target is allowlisted"), "{text}");
                    }
                    (Verdict::Suppressed(Suppression::Duplicate { decision }), Note::Duplicate { decision: d, until }) => {
                        assert_eq!(decision, d);
                        // The cited decision is the active one, and the time is its own.
                        let active = e.active(s.action.kind(), &s.target).unwrap();
                        assert_eq!((active.id, active.active_until), (d, until));
                        assert!(text.ends_with(&format!("suppressed: decision {d} is active until {until}")), "{text}");
                    }
                    (Verdict::Suppressed(Suppression::CoolDown { until }), Note::CoolDown { until: u }) => {
                        assert_eq!(until, u);
                        assert!(text.ends_with(&format!("cooling down until {until}")), "{text}");
                    }
                    (Verdict::Suppressed(Suppression::Budget), Note::Budget { cap }) => {
                        assert_eq!(cap, 7);
                        assert!(text.ends_with("7 actions of this kind in the last minute already"), "{text}");
                    }
                    (Verdict::Execute, Note::OverBudget { cap }) => {
                        assert_eq!(cap, 7);
                        assert_eq!(s.action.kind(), ActionKind::Notify);
                        assert!(text.ends_with("high-severity notifications are never silenced"), "{text}");
                    }
                    (Verdict::Suppressed(Suppression::Unauthenticated), Note::Unauthenticated) => {
                        assert!(s.action.kind().acts_on_account(), "{text}");
                        assert!(text.ends_with("never ends an account's sessions or revokes its tokens"), "{text}");
                    }
                    (v, n) => panic!("verdict {v:?} explained as {n:?}: {text}"),
                }
            }
        });
    }
}
