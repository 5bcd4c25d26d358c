use super::*;
use crate::Error;
use crate::definition::Mode;
use crate::plan::{Action, Note, Resolution, Suppression, Verdict};
use palisade_core_traits::{EventId, Score, Subject};

pub(crate) const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> Timestamp {
    Timestamp::from_unix_secs(T0 + secs)
}

fn ev(n: u32, kind: EventKind, severity: Severity, subject: Subject) -> SecurityEvent {
    SecurityEvent::new(
        EventId::new(format!("e{n}")).unwrap(),
        at(0),
        kind,
        severity,
        subject,
        "test",
    )
}

fn ip_ev(n: u32, ip: &str) -> SecurityEvent {
    ev(
        n,
        EventKind::BruteForce,
        Severity::High,
        Subject::Ip {
            ip: ip.parse().unwrap(),
        },
    )
}

fn engine() -> Engine {
    Engine::new(Definition::default_set().unwrap())
}

fn verdicts(p: &Plan) -> Vec<(ActionKind, Verdict)> {
    p.steps
        .iter()
        .map(|s| (s.action.kind(), s.verdict))
        .collect()
}

#[test]
fn brute_force_blocks_and_notifies_with_an_explanation() {
    let mut e = engine();
    let p = e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    assert_eq!(
        verdicts(&p),
        vec![
            (ActionKind::BlockIp, Verdict::Execute),
            (ActionKind::Notify, Verdict::Execute)
        ]
    );
    assert_eq!(
        p.steps[0].action,
        Action::BlockIp {
            ip: "198.51.100.4".parse().unwrap(),
            duration: Duration::from_secs(15 * 60)
        }
    );
    assert_eq!(p.steps[0].playbook.as_deref(), Some("brute-force-ip"));
    let why = p.steps[0].why.to_string();
    assert_eq!(
        why,
        "playbook \"brute-force-ip\" rule 0 matched BruteForce: block for 900s"
    );
}

#[test]
fn a_step_taken_elsewhere_is_remembered_but_neither_run_nor_undone_here() {
    let mut e = engine();
    let mut p = e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    let (block, notify) = (p.steps[0].decision.unwrap(), p.steps[1].decision.unwrap());
    // The other instance blocked 10 minutes ago: its block ends in 5.
    assert!(e.taken_elsewhere(&mut p, block, at(300)));
    // Only the notification is left to run here; the block's explanation says why.
    let executable: Vec<_> = p.executable().map(|s| s.action.kind()).collect();
    assert_eq!(executable, vec![ActionKind::Notify]);
    assert_eq!(p.steps[0].verdict, Verdict::Elsewhere);
    assert!(
        p.steps[0].why.to_string().ends_with(
            "block for 900s; carried out by another instance: not executed here, not undone here"
        ),
        "{}",
        p.steps[0].why
    );
    // Twice, or a step that is not executable, or an unknown decision: no change.
    assert!(!e.taken_elsewhere(&mut p, block, at(300)));
    assert!(!e.taken_elsewhere(&mut p, 99, at(300)));
    assert_eq!(e.stats().taken_elsewhere, 1);
    assert_eq!(e.stats().steps_execute, 2);
    // Still active here: a repeat is a duplicate of it.
    let again = e.evaluate(&ip_ev(2, "198.51.100.4"), at(60));
    assert_eq!(
        again.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate { decision: block })
    );
    // The state keeps the mark across a restart.
    let state = e.state();
    let json = state.to_json();
    assert_eq!(json.matches("\"elsewhere\":true").count(), 1, "{json}");
    let mut e = Engine::restore(
        Definition::default_set().unwrap(),
        State::from_json(&json).unwrap(),
    );
    // At expiry the block is handed out once, with nothing to undo here; the
    // notification this instance sent is still resolved here.
    let expired = e.expire(at(900));
    let mut by_id: Vec<_> = expired
        .iter()
        .map(|d| (d.id, d.elsewhere, d.needs_revert(), d.needs_resolve()))
        .collect();
    by_id.sort_unstable();
    assert_eq!(
        by_id,
        vec![(block, true, false, false), (notify, false, false, true)]
    );
}

#[test]
fn a_failed_block_is_planned_again_after_the_retry_and_not_counted() {
    let mut e = engine();
    let p = e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    let (block, notify) = (p.steps[0].decision.unwrap(), p.steps[1].decision.unwrap());
    let failed = e.failed(&p, block, at(60)).unwrap();
    assert_eq!((failed.id, failed.active_until), (block, at(60)));
    assert!(!failed.needs_revert(), "nothing to undo");
    assert!(e.failed(&p, block, at(60)).is_none(), "marked once");
    // Until the retry, a repeat is a duplicate: a failure that persists is not
    // retried on every event.
    let soon = e.evaluate(&ip_ev(2, "198.51.100.4"), at(30));
    assert_eq!(
        soon.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate { decision: block })
    );
    // The mark survives a restart.
    let json = e.state().to_json();
    assert_eq!(json.matches("\"failed\":true").count(), 1, "{json}");
    let mut e = Engine::restore(
        Definition::default_set().unwrap(),
        State::from_json(&json).unwrap(),
    );
    // At the retry it expires with nothing to undo; the next event plans the block
    // again (not held back by the playbook's cool-down), as a first ban; the
    // notification that went out is still a duplicate of itself.
    let expired = e.expire(at(60));
    assert_eq!(expired.len(), 1);
    assert!(expired[0].failed && !expired[0].needs_revert());
    let again = e.evaluate(&ip_ev(3, "198.51.100.4"), at(61));
    assert_eq!(again.steps[0].verdict, Verdict::Execute);
    assert_eq!(
        again.steps[0].action,
        Action::BlockIp {
            ip: "198.51.100.4".parse().unwrap(),
            duration: Duration::from_secs(15 * 60)
        }
    );
    assert_eq!(
        again.steps[1].verdict,
        Verdict::Suppressed(Suppression::Duplicate { decision: notify })
    );
    // Nothing else was shortened: another address's block stands.
    let other = e.evaluate(&ip_ev(4, "198.51.100.5"), at(61));
    let other_block = other.steps[0].decision.unwrap();
    let repeat = e.evaluate(&ip_ev(5, "198.51.100.5"), at(200));
    assert_eq!(
        repeat.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate {
            decision: other_block
        })
    );
}

#[test]
fn a_failed_page_grouped_by_subject_and_kind_is_sent_again_after_the_retry() {
    let mut e = engine();
    let finding = |n| {
        ev(
            n,
            EventKind::UnauthorizedCertificate,
            Severity::Critical,
            Subject::Domain {
                domain: "auth.example".into(),
            },
        )
    };
    let p = e.evaluate(&finding(1), at(0));
    assert_eq!(verdicts(&p), vec![(ActionKind::Notify, Verdict::Execute)]);
    let page = p.steps[0].decision.unwrap();
    e.failed(&p, page, at(60)).unwrap();
    // "ct-findings" holds a domain's findings back for an hour after a page; a page
    // that never went out does not.
    let again = e.evaluate(&finding(2), at(61));
    assert_eq!(
        verdicts(&again),
        vec![(ActionKind::Notify, Verdict::Execute)]
    );
    // Once a page went out, the hour holds again.
    let third = e.evaluate(&finding(3), at(120));
    assert!(
        matches!(third.steps[0].verdict, Verdict::Suppressed(_)),
        "{:?}",
        third.steps[0].verdict
    );
}

#[test]
fn an_attacker_rotating_inside_its_64_is_one_offender() {
    let block = |p: &Plan| match (&p.steps[0].action, p.steps[0].verdict) {
        (Action::BlockIp { ip, duration }, v) => (ip.to_string(), duration.as_secs(), v),
        (other, _) => panic!("not a block: {other:?}"),
    };
    let mut e = engine();
    let first = e.evaluate(&ip_ev(1, "2001:db8:1:2::1"), at(0));
    assert_eq!(
        block(&first),
        ("2001:db8:1:2::1".into(), 900, Verdict::Execute),
        "the block names the address the event gave"
    );
    // During the block another address of the /64 is the same client.
    let during = e.evaluate(&ip_ev(2, "2001:db8:1:2:ffff::9"), at(10));
    assert!(matches!(
        during.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate { .. })
    ));
    // After it, a third address is its second offence: the ban escalates.
    let _ = e.expire(at(1000));
    let again = e.evaluate(&ip_ev(3, "2001:db8:1:2:abcd::3"), at(1000));
    assert_eq!(
        block(&again),
        ("2001:db8:1:2:abcd::3".into(), 1800, Verdict::Execute)
    );
    // The next /64 is somebody else: a first offence.
    let other = e.evaluate(&ip_ev(4, "2001:db8:1:3::1"), at(1000));
    assert_eq!(block(&other).1, 900);
}

#[test]
fn a_fleet_escalates_by_the_bans_it_shares_and_counts_each_ban_once() {
    let ip = "198.51.100.4";
    let target = Target::Ip {
        ip: ip.parse().unwrap(),
    };
    let block_secs = |p: &Plan| match p.steps[0].action {
        Action::BlockIp { duration, .. } => duration.as_secs(),
        ref other => panic!("not a block: {other:?}"),
    };
    let (mut a, mut b) = (engine(), engine());
    // One attack seen by both: A carries the ban out, B's plan of it is taken elsewhere
    // and is not a ban of B's own.
    let pa = a.evaluate(&ip_ev(1, ip), at(0));
    assert_eq!(block_secs(&pa), 900);
    let mut pb = b.evaluate(&ip_ev(1, ip), at(1));
    let planned = pb.steps[0].decision.unwrap();
    assert!(b.taken_elsewhere(&mut pb, planned, at(900)));
    let seven_days = Duration::from_secs(7 * 24 * 3600);
    let first = BanHistory {
        count: 1,
        last: at(0),
        decay_after: seven_days,
    };
    assert_eq!(a.ban_history(&target, at(10)), Some(first));
    assert_eq!(b.ban_history(&target, at(10)), None);
    assert_eq!(b.offences.len(), 0, "nothing left of the ban B planned");
    // After the ban the attacker comes back through B only. Alone, B would start over
    // at 15 minutes; with A's history it bans as one engine that saw both would.
    let _ = (a.expire(at(1000)), b.expire(at(1000)));
    let mut alone = engine();
    assert_eq!(block_secs(&alone.evaluate(&ip_ev(2, ip), at(1000))), 900);
    b.learn_bans(&target, a.ban_history(&target, at(1000)).unwrap());
    let pb = b.evaluate(&ip_ev(2, ip), at(1000));
    assert_eq!(block_secs(&pb), 1800);
    assert!(matches!(
        pb.steps[0].why.resolution,
        Resolution::Escalated { earlier: 1, .. }
    ));
    let second = b.ban_history(&target, at(1000)).unwrap();
    assert_eq!((second.count, second.last), (2, at(1000)));
    // Learning never lowers a longer history; the later of two equal ones is kept.
    a.learn_bans(&target, second);
    b.learn_bans(&target, first);
    assert_eq!(a.ban_history(&target, at(1000)), Some(second));
    assert_eq!(b.ban_history(&target, at(1000)), Some(second));
    // A's third ban escalates once more; history that decayed here is replaced.
    let _ = a.expire(at(3000));
    assert_eq!(block_secs(&a.evaluate(&ip_ev(3, ip), at(3000))), 3600);
    let mut stale = engine();
    let _ = stale.evaluate(&ip_ev(4, ip), at(0));
    let later = Timestamp::from_unix_secs(T0 + 8 * 24 * 3600);
    let fresh = BanHistory {
        count: 1,
        last: later,
        decay_after: seven_days,
    };
    stale.learn_bans(&target, fresh);
    assert_eq!(stale.ban_history(&target, later), Some(fresh));
}

#[test]
fn low_severity_and_missing_score_do_not_match() {
    let mut e = engine();
    let low = ev(
        1,
        EventKind::BruteForce,
        Severity::Medium,
        Subject::Ip {
            ip: "198.51.100.4".parse().unwrap(),
        },
    );
    assert!(e.evaluate(&low, at(0)).steps.is_empty());
    let user = Subject::User {
        user_id: "alice".into(),
    };
    let unscored = ev(2, EventKind::AnomalousLogin, Severity::High, user.clone());
    assert!(e.evaluate(&unscored, at(0)).steps.is_empty());
    let scored = unscored.clone().with_score(Score::new(0.69).unwrap());
    assert!(e.evaluate(&scored, at(0)).steps.is_empty());
    let scored = unscored.with_score(Score::new(0.7).unwrap());
    assert_eq!(
        verdicts(&e.evaluate(&scored, at(0))),
        vec![(ActionKind::RequireStepUp, Verdict::Execute)]
    );
}

#[test]
fn repeats_are_duplicates_while_active_then_cooldown_then_fire_again() {
    let mut e = engine();
    e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    let p = e.evaluate(&ip_ev(2, "198.51.100.4"), at(60));
    assert_eq!(
        p.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate { decision: 0 })
    );
    // The notify decision lasts as long as the 5 min cool-down.
    assert_eq!(
        p.steps[1].verdict,
        Verdict::Suppressed(Suppression::Duplicate { decision: 1 })
    );
    // After 5 min the notify is no longer active but the block is: cool-down ended too.
    let p = e.evaluate(&ip_ev(3, "198.51.100.4"), at(301));
    assert_eq!(
        p.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate { decision: 0 })
    );
    assert_eq!(p.steps[1].verdict, Verdict::Execute);
    // Expiry after 15 min hands back the block once, for revert.
    let expired = e.expire(at(900));
    assert_eq!(expired.iter().filter(|d| d.needs_revert()).count(), 1);
    assert!(e.expire(at(900)).is_empty());
}

#[test]
fn cooldown_suppresses_a_new_action_of_the_same_playbook_group() {
    let def = Definition::from_toml(
        "t",
        r#"
[[playbook]]
name = "p"
kinds = ["brute_force"]
subject = "ip"
cooldown = "10m"
[[playbook.action]]
type = "block_ip"
duration = "1m"
"#,
    )
    .unwrap();
    let mut e = Engine::new(def);
    e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    let p = e.evaluate(&ip_ev(2, "198.51.100.4"), at(61));
    assert_eq!(
        p.steps[0].verdict,
        Verdict::Suppressed(Suppression::CoolDown { until: at(600) })
    );
    assert_eq!(
        e.evaluate(&ip_ev(3, "198.51.100.4"), at(600)).steps[0].verdict,
        Verdict::Execute
    );
}

#[test]
fn repeat_offender_ban_doubles_up_to_the_cap_and_decays() {
    let mut e = engine();
    let mut t = 0;
    let mut durations = Vec::new();
    for n in 0..10 {
        let p = e.evaluate(&ip_ev(n, "203.0.113.9"), at(t));
        let Action::BlockIp { duration, .. } = p.steps[0].action else {
            panic!()
        };
        assert_eq!(p.steps[0].verdict, Verdict::Execute);
        durations.push(duration.as_secs() / 60);
        t += duration.as_secs();
        e.expire(at(t));
    }
    assert_eq!(
        durations,
        vec![15, 30, 60, 120, 240, 480, 960, 1440, 1440, 1440]
    );
    // Seven quiet days later, back to the base.
    t += 7 * 86_400;
    e.expire(at(t));
    let p = e.evaluate(&ip_ev(99, "203.0.113.9"), at(t));
    assert_eq!(
        p.steps[0].action,
        Action::BlockIp {
            ip: "203.0.113.9".parse().unwrap(),
            duration: Duration::from_secs(900)
        }
    );
}

#[test]
fn allowlist_covers_ips_networks_users_and_mapped_addresses() {
    let mut def = Definition::default_set().unwrap();
    def.allowlist.networks.push("10.0.0.0/8".parse().unwrap());
    def.allowlist.users.push("Ops".into());
    let mut e = Engine::new(def);
    for (n, ip) in ["127.0.0.1", "10.9.8.7", "::ffff:10.1.1.1"]
        .iter()
        .enumerate()
    {
        let p = e.evaluate(&ip_ev(n as u32, ip), at(0));
        assert_eq!(
            p.steps[0].verdict,
            Verdict::Suppressed(Suppression::Allowlisted)
        );
        // The human still hears about it.
        assert_eq!(p.steps[1].verdict, Verdict::Execute);
    }
    let p = e.evaluate(
        &ev(
            9,
            EventKind::AccountTakeover,
            Severity::Critical,
            Subject::User {
                user_id: " OPS".into(),
            },
        )
        .with_basis(EvidenceBasis::Authenticated),
        at(0),
    );
    assert!(
        p.steps[..3]
            .iter()
            .all(|s| s.verdict == Verdict::Suppressed(Suppression::Allowlisted))
    );
    // Manual actions pass the same allowlist.
    let p = e.manual(
        Action::BlockIp {
            ip: "10.0.0.1".parse().unwrap(),
            duration: Duration::from_secs(60),
        },
        Duration::from_secs(60),
        Mode::Enforce,
        "operator",
        at(0),
    );
    assert_eq!(
        p.steps[0].verdict,
        Verdict::Suppressed(Suppression::Allowlisted)
    );
}

/// A block reaches an IPv6 address's whole /64 and a tunnelled address's IPv4
/// client, so an allowlisted network that such a block would reach is never blocked
/// through another address: a /80 (or a single host) inside the attacker's /64, an
/// IPv4 network behind NAT64, 6to4 or Teredo.
#[test]
fn allowlisted_networks_are_not_reached_through_a_wider_block() {
    let mut def = Definition::default_set().unwrap();
    for n in [
        "2001:db8:1:2:aaaa::/80",
        "2001:db8:7:7::5/128",
        "198.51.100.0/24",
    ] {
        def.allowlist.networks.push(n.parse().unwrap());
    }
    let mut e = Engine::new(def);
    for (n, ip) in [
        "2001:db8:1:2:bbbb::1",                 // same /64 as the /80
        "2001:db8:7:7:ffff::9",                 // same /64 as the /128
        "64:ff9b::c633:6407",                   // NAT64 of 198.51.100.7
        "2002:c633:6407::1",                    // 6to4 of 198.51.100.7
        "2001:0:4136:e378:8000:63bf:39cc:9bf8", // Teredo of 198.51.100.7
    ]
    .iter()
    .enumerate()
    {
        let p = e.evaluate(&ip_ev(n as u32, ip), at(0));
        assert_eq!(
            p.steps[0].verdict,
            Verdict::Suppressed(Suppression::Allowlisted),
            "{ip}"
        );
    }
    // Outside every allowlisted scope: blocked as usual.
    let p = e.evaluate(&ip_ev(9, "2001:db8:1:3::1"), at(0));
    assert_eq!(p.steps[0].verdict, Verdict::Execute);
}

#[test]
fn budget_caps_each_action_kind_per_rolling_minute() {
    let mut e = engine(); // 120 per minute and kind
    let (mut blocks, mut notes) = (0, 0);
    for n in 0..200u32 {
        let ip = format!("198.51.{}.{}", n / 256, n % 256);
        let p = e.evaluate(&ip_ev(n, &ip), at(0));
        blocks += usize::from(p.steps[0].decision.is_some());
        notes += usize::from(p.steps[1].decision.is_some());
        if n >= 120 {
            assert_eq!(p.steps[0].verdict, Verdict::Suppressed(Suppression::Budget));
            // The brute-force notification is high severity: over budget, still sent.
            assert_eq!(p.steps[1].verdict, Verdict::Execute);
            assert_eq!(p.steps[1].why.note, Note::OverBudget { cap: 120 });
        }
    }
    assert_eq!((blocks, notes), (120, 200));
    let p = e.evaluate(&ip_ev(500, "192.0.2.1"), at(60));
    assert_eq!(p.steps[0].verdict, Verdict::Execute);
}

#[test]
fn budgets_never_silence_high_severity_notifications_and_floods_cannot_starve_others() {
    // The review's decoy flood: five brute-force events from distinct addresses spent a
    // 10-actions/minute budget, then a real takeover was neither stopped nor paged.
    let mut def = Definition::default_set().unwrap();
    def.engine.max_actions_per_minute = 10;
    let mut e = Engine::new(def);
    for n in 0..5u32 {
        let p = e.evaluate(&ip_ev(n, &format!("203.0.113.{n}")), at(0));
        assert!(p.steps.iter().all(|s| s.verdict == Verdict::Execute));
    }
    let takeover = ev(
        9,
        EventKind::AccountTakeover,
        Severity::Critical,
        Subject::user("carol"),
    )
    .with_basis(EvidenceBasis::Authenticated);
    let p = e.evaluate(&takeover, at(1));
    assert_eq!(
        verdicts(&p),
        vec![
            (ActionKind::RequireStepUp, Verdict::Execute),
            (ActionKind::TerminateSessions, Verdict::Execute),
            (ActionKind::RevokeUserTokens, Verdict::Execute),
            (ActionKind::Notify, Verdict::Execute),
        ]
    );
    // Low-severity notifications stay budgeted: a flood of them cannot page forever.
    let mut def = Definition::from_toml(
        "t",
        r#"
[engine]
max_actions_per_minute = 2
[[playbook]]
name = "n"
kinds = ["anomalous_login"]
subject = "user"
cooldown = "1s"
[[playbook.action]]
type = "notify"
"#,
    )
    .unwrap();
    def.engine.max_actions_per_minute = 2;
    let mut e = Engine::new(def);
    let low = |n: u32| {
        ev(
            n,
            EventKind::AnomalousLogin,
            Severity::Medium,
            Subject::user(&format!("u{n}")),
        )
    };
    let kept: Vec<_> = (0..4)
        .map(|n| e.evaluate(&low(n), at(0)).steps[0].verdict)
        .collect();
    assert_eq!(kept[..2], [Verdict::Execute, Verdict::Execute]);
    assert_eq!(kept[2..], [Verdict::Suppressed(Suppression::Budget); 2]);
}

/// The review's attack: one failed login on a username from far away made the
/// default playbooks end the owner's sessions and revoke their tokens.
#[test]
fn unauthenticated_evidence_never_ends_sessions_or_revokes_tokens() {
    let mut e = engine();
    let travel = ev(
        1,
        EventKind::ImpossibleTravel,
        Severity::Critical,
        Subject::user("victim"),
    );
    assert_eq!(travel.basis, EvidenceBasis::Unauthenticated);
    let p = e.evaluate(&travel, at(0));
    assert_eq!(
        verdicts(&p),
        vec![
            (ActionKind::RequireStepUp, Verdict::Execute),
            (
                ActionKind::TerminateSessions,
                Verdict::Suppressed(Suppression::Unauthenticated)
            ),
            (
                ActionKind::RevokeUserTokens,
                Verdict::Suppressed(Suppression::Unauthenticated)
            ),
            (ActionKind::Notify, Verdict::Execute),
        ]
    );
    // The step-up it may impose is bounded (the playbook asks for 24 h).
    assert_eq!(
        p.steps[0].action,
        Action::RequireStepUp {
            user_id: "victim".into(),
            valid_for: Duration::from_secs(3_600)
        }
    );
    assert!(
        p.steps[1]
            .why
            .to_string()
            .contains("unauthenticated evidence"),
        "{}",
        p.steps[1].why
    );
    // Repeating the attack adds nothing: the step-up is a duplicate while active.
    let p = e.evaluate(&travel, at(60));
    assert_eq!(
        p.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate { decision: 0 })
    );

    // A token subject on unauthenticated evidence is not revoked either (a jti is
    // not a secret), whatever the playbook says.
    let misuse = ev(
        2,
        EventKind::TokenMisuse,
        Severity::High,
        Subject::Token {
            issuer: "https://auth.example".into(),
            jti: "j1".into(),
        },
    );
    let p = e.evaluate(&misuse, at(0));
    assert_eq!(
        p.steps[0].verdict,
        Verdict::Suppressed(Suppression::Unauthenticated)
    );
    let p = e.evaluate(&misuse.with_basis(EvidenceBasis::Authenticated), at(1));
    assert_eq!(p.steps[0].verdict, Verdict::Execute);

    // The same event backed by an authenticated session acts in full.
    let mut e = engine();
    let p = e.evaluate(&travel.with_basis(EvidenceBasis::Authenticated), at(0));
    assert!(p.steps.iter().all(|s| s.verdict == Verdict::Execute));
    assert_eq!(
        p.steps[0].action,
        Action::RequireStepUp {
            user_id: "victim".into(),
            valid_for: Duration::from_secs(24 * 3_600)
        }
    );
}

#[test]
fn user_targets_are_normalized_for_dedup_allowlist_and_actions() {
    let mut e = engine();
    let strong = |n: u32, user: &str| {
        ev(
            n,
            EventKind::AccountTakeover,
            Severity::High,
            Subject::User {
                user_id: user.into(),
            },
        )
        .with_basis(EvidenceBasis::Authenticated)
    };
    let p = e.evaluate(&strong(1, "Alice"), at(0));
    assert_eq!(
        p.steps[1].action,
        Action::TerminateSessions {
            user_id: "alice".into()
        }
    );
    // `ALICE` is the same account: a duplicate, not a second round of actions.
    let p = e.evaluate(&strong(2, " ALICE"), at(1));
    assert!(p.steps.iter().all(|s| matches!(
        s.verdict,
        Verdict::Suppressed(Suppression::Duplicate { .. })
    )));
    // Manual actions are normalized too.
    let p = e.manual(
        Action::TerminateSessions {
            user_id: "ALICE".into(),
        },
        Duration::from_secs(60),
        Mode::Enforce,
        "operator",
        at(2),
    );
    assert!(matches!(
        p.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate { .. })
    ));
}

#[test]
fn dry_run_records_but_marks_steps_dry_run() {
    let mut def = Definition::default_set().unwrap();
    def.engine.mode = Mode::DryRun;
    let mut e = Engine::new(def);
    let p = e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    assert!(p.steps.iter().all(|s| s.verdict == Verdict::DryRun));
    assert_eq!(p.executable().count(), 0);
    let p = e.evaluate(&ip_ev(2, "198.51.100.4"), at(1));
    assert_eq!(
        p.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate { decision: 0 })
    );
    assert!(e.expire(at(900)).iter().all(|d| !d.needs_revert()));
}

#[test]
fn approval_has_an_expiry() {
    let def = Definition::from_toml(
        "t",
        r#"
[[playbook]]
name = "p"
kinds = ["account_takeover"]
subject = "user"
cooldown = "1m"
[[playbook.action]]
type = "terminate_sessions"
approval = "10m"
"#,
    )
    .unwrap();
    let mut e = Engine::new(def);
    let user = |n| {
        ev(
            n,
            EventKind::AccountTakeover,
            Severity::High,
            Subject::User {
                user_id: "bob".into(),
            },
        )
        .with_basis(EvidenceBasis::Authenticated)
    };
    let p = e.evaluate(&user(1), at(0));
    assert_eq!(
        p.steps[0].verdict,
        Verdict::AwaitApproval { until: at(600) }
    );
    assert_eq!(p.executable().count(), 0);
    // A flood while waiting does not create more approvals.
    let p = e.evaluate(&user(2), at(120));
    assert_eq!(
        p.steps[0].verdict,
        Verdict::Suppressed(Suppression::Duplicate { decision: 0 })
    );
    let p = e.approve(0, at(300)).unwrap();
    assert_eq!(p.executable().count(), 1);
    assert!(matches!(
        e.approve(0, at(301)),
        Err(Error::UnknownDecision(0))
    ));
    // A second one, approved too late.
    e.expire(at(10_000));
    e.evaluate(&user(3), at(10_000));
    assert!(matches!(
        e.approve(1, at(10_601)),
        Err(Error::ApprovalExpired { id: 1, .. })
    ));
    // Counted: three events, two approvals requested, one duplicate, one approved step
    // executed; the approved decision expired, the late one is gone.
    let s = e.stats();
    assert_eq!((s.events_evaluated, s.events_ignored), (3, 0));
    assert_eq!(
        (
            s.steps_await_approval,
            s.steps_execute,
            s.suppressed_duplicate
        ),
        (2, 1, 1)
    );
    assert_eq!((s.expired, s.active_decisions), (1, 0));
}

#[test]
fn own_enforcement_is_not_evidence() {
    let mut e = engine();
    e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    let echo = ev(
        2,
        EventKind::RateLimitExceeded,
        Severity::Critical,
        Subject::Ip {
            ip: "198.51.100.4".parse().unwrap(),
        },
    );
    let p = e.evaluate(&echo, at(10));
    assert!(p.ignored.as_deref().unwrap().contains("decision 0"));
    let marked = ip_ev(3, "192.0.2.7").with_evidence(ENFORCEMENT_EVIDENCE, "blocked-request");
    let p = e.evaluate(&marked, at(10));
    assert!(p.ignored.is_some() && p.steps.is_empty());
}

#[test]
fn state_round_trips_and_restore_keeps_dedup_and_expiry() {
    let mut e = engine();
    e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    let json = e.state().to_json();
    let mut r = Engine::restore(
        Definition::default_set().unwrap(),
        State::from_json(&json).unwrap(),
    );
    assert_eq!(r.state(), e.state());
    let p = r.evaluate(&ip_ev(2, "198.51.100.4"), at(10));
    assert!(p.steps.iter().all(|s| s.decision.is_none()));
    let expired = r.expire(at(900));
    assert_eq!(expired.iter().filter(|d| d.needs_revert()).count(), 1);
    // Ids continue, never reused.
    let p = r.evaluate(&ip_ev(3, "192.0.2.1"), at(900));
    assert_eq!(p.steps[0].decision, Some(2));
    assert!(State::from_json("{\"decisions\":[],\"x\":1}").is_err());
}

#[test]
fn a_dry_run_playbook_never_holds_back_an_enforced_one() {
    let def = Definition::from_toml(
        "t",
        r#"
[[playbook]]
name = "bf-trial"
kinds = ["brute_force"]
subject = "ip"
cooldown = "5m"
mode = "dry_run"
[[playbook.action]]
type = "block_ip"
duration = "1d"
[[playbook.action]]
type = "notify"
severity = "critical"

[[playbook]]
name = "brute-force-ip"
kinds = ["brute_force"]
subject = "ip"
min_severity = "high"
cooldown = "5m"
[[playbook.action]]
type = "block_ip"
duration = "15m"
[[playbook.action]]
type = "notify"
"#,
    )
    .unwrap();
    let mut e = Engine::new(def);
    let p = e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    assert_eq!(
        verdicts(&p),
        vec![
            (ActionKind::BlockIp, Verdict::DryRun),
            (ActionKind::Notify, Verdict::DryRun),
            (ActionKind::BlockIp, Verdict::Execute),
            (ActionKind::Notify, Verdict::Execute),
        ]
    );
    // The enforced block replaced the trial's: a repeat is its duplicate, for both.
    let again = e.evaluate(&ip_ev(2, "198.51.100.4"), at(10));
    let block = p.steps[2].decision.unwrap();
    for s in [&again.steps[0], &again.steps[2]] {
        assert_eq!(
            s.verdict,
            Verdict::Suppressed(Suppression::Duplicate { decision: block })
        );
    }
    // An operator's block is not held back by a trial's either.
    let mut medium = ip_ev(3, "198.51.100.5");
    medium.severity = Severity::Medium;
    let trial = e.evaluate(&medium, at(20));
    assert_eq!(
        verdicts(&trial),
        vec![
            (ActionKind::BlockIp, Verdict::DryRun),
            (ActionKind::Notify, Verdict::DryRun)
        ]
    );
    let manual = e.manual(
        Action::BlockIp {
            ip: "198.51.100.5".parse().unwrap(),
            duration: Duration::from_secs(3600),
        },
        Duration::from_secs(3600),
        Mode::Enforce,
        "operator",
        at(30),
    );
    assert_eq!(manual.steps[0].verdict, Verdict::Execute);
}

#[test]
fn dry_run_bans_do_not_escalate_enforced_ones() {
    let def = Definition::from_toml(
        "t",
        r#"
[[playbook]]
name = "enforced"
kinds = ["brute_force"]
subject = "ip"
min_severity = "high"
cooldown = "1s"
[[playbook.action]]
type = "block_ip"
duration = "15m"
escalation = { factor = 2, max = "1d", decay_after = "7d" }

[[playbook]]
name = "trial"
kinds = ["brute_force"]
subject = "ip"
min_severity = "medium"
cooldown = "1s"
mode = "dry_run"
[[playbook.action]]
type = "block_ip"
duration = "1m"
escalation = { factor = 2, max = "1m", decay_after = "7d" }
"#,
    )
    .unwrap();
    let mut e = Engine::new(def);
    let target = Target::Ip {
        ip: "198.51.100.4".parse().unwrap(),
    };
    // Three dry-run "bans" that never held.
    for (n, t) in [(1, 0), (2, 61), (3, 122)] {
        let mut x = ip_ev(n, "198.51.100.4");
        x.severity = Severity::Medium;
        let p = e.evaluate(&x, at(t));
        assert_eq!(verdicts(&p), vec![(ActionKind::BlockIp, Verdict::DryRun)]);
    }
    assert_eq!(e.ban_history(&target, at(123)), None);
    // The first real ban is a first ban.
    let p = e.evaluate(&ip_ev(4, "198.51.100.4"), at(183));
    assert_eq!(p.steps[0].verdict, Verdict::Execute);
    assert_eq!(p.steps[0].why.resolution, Resolution::Block { secs: 900 });
    let seven_days = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(
        e.ban_history(&target, at(184)),
        Some(BanHistory {
            count: 1,
            last: at(183),
            decay_after: seven_days
        })
    );
}

#[test]
fn a_pending_approval_neither_holds_back_an_automatic_block_nor_counts_until_approved() {
    let def = Definition::from_toml(
        "t",
        r#"
[[playbook]]
name = "gated"
kinds = ["brute_force"]
subject = "ip"
cooldown = "1s"
[[playbook.action]]
type = "block_ip"
duration = "1d"
escalation = { factor = 2, max = "7d", decay_after = "7d" }
approval = "10m"

[[playbook]]
name = "auto"
kinds = ["brute_force"]
subject = "ip"
min_severity = "high"
cooldown = "1s"
[[playbook.action]]
type = "block_ip"
duration = "15m"
escalation = { factor = 2, max = "1d", decay_after = "7d" }
"#,
    )
    .unwrap();
    let mut e = Engine::new(def);
    let medium = |n, ip: &str| {
        let mut x = ip_ev(n, ip);
        x.severity = Severity::Medium;
        x
    };
    let a = Target::Ip {
        ip: "198.51.100.4".parse().unwrap(),
    };
    let seven_days = Duration::from_secs(7 * 24 * 3600);
    // An approval nobody gave is no ban.
    let p = e.evaluate(&medium(1, "198.51.100.4"), at(0));
    assert_eq!(
        p.steps[0].verdict,
        Verdict::AwaitApproval { until: at(600) }
    );
    assert_eq!(e.ban_history(&a, at(1)), None);
    let _ = e.expire(at(601));
    let p = e.evaluate(&medium(2, "198.51.100.4"), at(700));
    assert_eq!(
        p.steps[0].why.resolution,
        Resolution::Block { secs: 86_400 }
    );
    // Approved, it is in force: counted then.
    let id = p.steps[0].decision.unwrap();
    let approved = e.approve(id, at(760)).unwrap();
    assert_eq!(approved.steps[0].verdict, Verdict::Execute);
    assert_eq!(
        e.ban_history(&a, at(761)),
        Some(BanHistory {
            count: 1,
            last: at(760),
            decay_after: seven_days
        })
    );
    // A pending approval does not hold back another playbook's automatic block of
    // the address: the block is enforced and replaces the request, which can no
    // longer be approved.
    let b = Target::Ip {
        ip: "198.51.100.5".parse().unwrap(),
    };
    let p = e.evaluate(&ip_ev(3, "198.51.100.5"), at(800));
    assert_eq!(
        verdicts(&p),
        vec![
            (
                ActionKind::BlockIp,
                Verdict::AwaitApproval { until: at(1400) }
            ),
            (ActionKind::BlockIp, Verdict::Execute),
        ]
    );
    assert_eq!(p.steps[1].why.resolution, Resolution::Block { secs: 900 });
    let pending = p.steps[0].decision.unwrap();
    assert!(matches!(
        e.approve(pending, at(810)),
        Err(Error::UnknownDecision(d)) if d == pending
    ));
    assert_eq!(e.ban_history(&b, at(801)).map(|h| h.count), Some(1));
    let expired = e.expire(at(900));
    let replaced = expired.iter().find(|d| d.id == pending).unwrap();
    assert!(!replaced.needs_revert());
}

#[test]
fn a_block_replaced_before_expire_ran_is_not_reverted_over_the_new_block() {
    let mut e = engine();
    let first = e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    let old = first.steps[0].decision.unwrap();
    // The 900 s block is over, but the caller's expiry tick has not run yet when the
    // address offends again: an escalated block replaces the old decision.
    let p = e.evaluate(&ip_ev(2, "198.51.100.4"), at(901));
    assert_eq!(p.steps[0].verdict, Verdict::Execute);
    assert!(matches!(
        p.steps[0].why.resolution,
        Resolution::Escalated { secs: 1800, .. }
    ));
    let new = p.steps[0].decision.unwrap();
    // The old decision is still handed out once (for the audit), with nothing to
    // undo: lifting it would lift the new block.
    let expired = e.expire(at(902));
    let replaced = expired.iter().find(|d| d.id == old).unwrap();
    assert!(!replaced.needs_revert(), "{replaced:?}");
    assert!(
        expired
            .iter()
            .all(|d| !(d.needs_revert() && d.target == p.steps[0].target)),
        "{expired:?}"
    );
    // The new block is reverted at its own end, once.
    let later = e.expire(at(901 + 1800));
    let reverted: Vec<u64> = (later.iter().filter(|d| d.needs_revert()))
        .map(|d| d.id)
        .collect();
    assert_eq!(reverted, vec![new]);
    // A newer block that failed does not hold the address: the old one is undone.
    let _ = e.evaluate(&ip_ev(3, "198.51.100.7"), at(10_000));
    let p = e.evaluate(&ip_ev(4, "198.51.100.7"), at(10_901));
    let retry = e.failed(&p, p.steps[0].decision.unwrap(), at(10_961));
    assert!(retry.is_some());
    let expired = e.expire(at(10_902));
    let undone: Vec<String> = (expired.iter().filter(|d| d.needs_revert()))
        .map(|d| d.target.value())
        .collect();
    assert_eq!(undone, vec!["198.51.100.7".to_owned()]);
}

#[test]
fn decisions_replaced_before_expire_ran_survive_a_restart() {
    let def = || {
        Definition::from_toml(
            "t",
            r#"
[[playbook]]
name = "block"
kinds = ["brute_force"]
subject = "ip"
cooldown = "1s"
[[playbook.action]]
type = "block_ip"
duration = "15m"
escalation = { factor = 2, max = "1d", decay_after = "7d" }

[[playbook]]
name = "page"
kinds = ["brute_force"]
subject = "ip"
cooldown = "1h"
[[playbook.action]]
type = "notify"
severity = "medium"

[[playbook]]
name = "page-hard"
kinds = ["brute_force"]
subject = "ip"
cooldown = "1h"
[[playbook.action]]
type = "notify"
severity = "critical"
"#,
        )
        .unwrap()
    };
    let mut e = Engine::new(def());
    // Block (0), a medium page (1), then a critical page of another playbook (2)
    // that escalates it: 1 is replaced, its incident (another key) still open.
    let p = e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
    let ids: Vec<_> = p.steps.iter().map(|s| (s.decision, s.verdict)).collect();
    assert_eq!(
        ids,
        vec![
            (Some(0), Verdict::Execute),
            (Some(1), Verdict::Execute),
            (Some(2), Verdict::Execute)
        ]
    );
    // The block ends and is replaced by an escalated one (3) before any expiry tick.
    let p = e.evaluate(&ip_ev(2, "198.51.100.4"), at(901));
    assert_eq!(
        (p.steps[0].decision, p.steps[0].verdict),
        (Some(3), Verdict::Execute)
    );
    // A restart now: the replaced decisions are still handed out, once, the page to
    // resolve and the old block with nothing to undo.
    let json = e.state().to_json();
    let mut r = Engine::restore(def(), State::from_json(&json).unwrap());
    let mut expired: Vec<_> = (r.expire(at(902)).into_iter())
        .map(|d| (d.id, d.needs_revert(), d.needs_resolve()))
        .collect();
    expired.sort_unstable();
    assert_eq!(expired, vec![(0, false, false), (1, false, true)]);
    assert!(r.expire(at(902)).is_empty());
}

/// An approved ban that failed is un-counted like any other failed ban, also when the
/// block is not the playbook's first action and when the decision came back from a
/// saved `State` (its playbook name is another copy): it was counted at approval by
/// its real rule and by name, and un-counted by rule 0 and by pointer.
#[test]
fn a_failed_approved_ban_is_not_counted() {
    let def = || {
        Definition::from_toml(
            "t",
            r#"
[[playbook]]
name = "bf"
kinds = ["brute_force"]
subject = "ip"
cooldown = "5m"
[[playbook.action]]
type = "notify"
[[playbook.action]]
type = "block_ip"
duration = "15m"
escalation = { factor = 2, max = "1d", decay_after = "7d" }
approval = "10m"
"#,
        )
        .unwrap()
    };
    for restored in [false, true] {
        let mut e = Engine::new(def());
        let p = e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
        let id = p.steps[1].decision.unwrap();
        if restored {
            e = Engine::restore(def(), e.state());
        }
        let approved = e.approve(id, at(10)).unwrap();
        let target = approved.steps[0].target.clone();
        assert_eq!(e.ban_history(&target, at(11)).map(|h| h.count), Some(1));
        assert!(e.failed(&approved, id, at(70)).is_some());
        assert_eq!(e.ban_history(&target, at(71)), None, "restored: {restored}");
    }
}

/// A failed approved action ends its playbook's cool-down at the retry also when the
/// cool-down is grouped by subject and event kind: the approved step cites the
/// approval, not the event, so the kind the group was filed under came from the
/// decision (it was looked up as "no kind" and the cool-down held until its end).
#[test]
fn a_failed_approved_action_ends_a_cooldown_grouped_by_kind() {
    let def = || {
        Definition::from_toml(
            "t",
            r#"
[[playbook]]
name = "gated"
kinds = ["brute_force", "credential_stuffing"]
subject = "ip"
cooldown = "30m"
group_by = "subject_and_kind"
[[playbook.action]]
type = "block_ip"
duration = "15m"
approval = "10m"
"#,
        )
        .unwrap()
    };
    // Fresh, restored, and restored from a state of an earlier version (no kind in
    // its decisions: every kind of the playbook is tried).
    for restored in ["no", "state", "old state"] {
        let mut e = Engine::new(def());
        let p = e.evaluate(&ip_ev(1, "198.51.100.4"), at(0));
        assert!(matches!(p.steps[0].verdict, Verdict::AwaitApproval { .. }));
        let id = p.steps[0].decision.unwrap();
        if restored != "no" {
            let mut json = e.state().to_json();
            assert_eq!(json.matches(r#","event_kind":"brute_force""#).count(), 1);
            if restored == "old state" {
                json = json.replace(r#","event_kind":"brute_force""#, "");
            }
            e = Engine::restore(def(), State::from_json(&json).unwrap());
        }
        let approved = e.approve(id, at(10)).unwrap();
        assert_eq!(approved.steps[0].verdict, Verdict::Execute);
        assert!(e.failed(&approved, id, at(70)).is_some());
        // Before the retry: held back; after it: planned again, not cooling down.
        let soon = e.evaluate(&ip_ev(2, "198.51.100.4"), at(60));
        assert!(matches!(soon.steps[0].verdict, Verdict::Suppressed(_)));
        let again = e.evaluate(&ip_ev(3, "198.51.100.4"), at(71));
        assert!(
            matches!(again.steps[0].verdict, Verdict::AwaitApproval { .. }),
            "restored: {restored}: {}",
            again.steps[0].why
        );
    }
}

/// A definition with a budget of 3 per minute and kind: `first` (listed first, in the
/// mode or with the approval given) and an enforced `auto` that fires on high severity.
fn budget_def(first: &str) -> Definition {
    Definition::from_toml(
        "t",
        &format!(
            r#"
[engine]
max_actions_per_minute = 3

[[playbook]]
name = "first"
kinds = ["brute_force"]
subject = "ip"
min_severity = "medium"
cooldown = "1s"
{first}

[[playbook]]
name = "auto"
kinds = ["brute_force"]
subject = "ip"
min_severity = "high"
cooldown = "1s"
[[playbook.action]]
type = "block_ip"
duration = "15m"
"#
        ),
    )
    .unwrap()
}

fn medium_ev(n: u32, ip: &str) -> SecurityEvent {
    let mut x = ip_ev(n, ip);
    x.severity = Severity::Medium;
    x
}

#[test]
fn a_dry_run_playbook_never_spends_the_enforcement_budget() {
    let mut e = Engine::new(budget_def(
        "mode = \"dry_run\"\n[[playbook.action]]\ntype = \"block_ip\"\nduration = \"1d\"",
    ));
    // The trial fires on five addresses: its own budget bounds it at three.
    let trial: Vec<Verdict> = (0..5)
        .map(|n| {
            e.evaluate(&medium_ev(n, &format!("192.0.2.{n}")), at(0))
                .steps[0]
                .verdict
        })
        .collect();
    let budget = Verdict::Suppressed(Suppression::Budget);
    assert_eq!(
        trial,
        [Verdict::DryRun; 3]
            .into_iter()
            .chain([budget; 2])
            .collect::<Vec<_>>()
    );
    // An enforced block is not held back by the trial's spending; the trial, as it
    // would be if it were enforced, still is.
    let p = e.evaluate(&ip_ev(10, "198.51.100.4"), at(1));
    assert_eq!(
        verdicts(&p),
        vec![
            (ActionKind::BlockIp, budget),
            (ActionKind::BlockIp, Verdict::Execute)
        ],
        "{}",
        p.steps[1].why
    );
    // The enforced budget still bounds enforcement: three in force, then no more.
    let auto: Vec<Verdict> = (11..14)
        .map(|n| {
            e.evaluate(&ip_ev(n, &format!("198.51.100.{n}")), at(2))
                .steps[1]
                .verdict
        })
        .collect();
    assert_eq!(auto, [Verdict::Execute, Verdict::Execute, budget]);
    // The split survives a restart.
    let mut r = Engine::restore(
        budget_def(
            "mode = \"dry_run\"\n[[playbook.action]]\ntype = \"block_ip\"\nduration = \"1d\"",
        ),
        e.state(),
    );
    let budgets = |e: &Engine| {
        let v: serde_json::Value = serde_json::from_str(&e.state().to_json()).unwrap();
        (v["budgets"].clone(), v["dry_run_budgets"].clone())
    };
    assert_eq!(budgets(&r), budgets(&e));
    assert_eq!(budgets(&e).1.as_array().map(Vec::len), Some(3));
    let p = r.evaluate(&ip_ev(20, "198.51.100.20"), at(3));
    assert_eq!(verdicts(&p), vec![(ActionKind::BlockIp, budget); 2]);
    // A minute later both budgets are free again.
    let p = r.evaluate(&ip_ev(21, "198.51.100.21"), at(62));
    assert_eq!(
        verdicts(&p),
        vec![
            (ActionKind::BlockIp, Verdict::DryRun),
            (ActionKind::BlockIp, Verdict::Execute)
        ]
    );
}

#[test]
fn pending_approvals_never_spend_the_enforcement_budget() {
    let mut e = Engine::new(budget_def(
        "[[playbook.action]]\ntype = \"block_ip\"\nduration = \"1d\"\napproval = \"10m\"",
    ));
    for n in 0..3 {
        let p = e.evaluate(&medium_ev(n, &format!("192.0.2.{n}")), at(0));
        assert!(matches!(p.steps[0].verdict, Verdict::AwaitApproval { .. }));
    }
    let budget = Verdict::Suppressed(Suppression::Budget);
    let p = e.evaluate(&medium_ev(3, "192.0.2.3"), at(0));
    assert_eq!(p.steps[0].verdict, budget, "approvals are budgeted too");
    let p = e.evaluate(&ip_ev(10, "198.51.100.4"), at(1));
    assert_eq!(
        verdicts(&p),
        vec![
            (ActionKind::BlockIp, budget),
            (ActionKind::BlockIp, Verdict::Execute)
        ]
    );
}
