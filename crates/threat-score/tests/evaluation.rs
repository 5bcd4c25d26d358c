//! Detection against re-authentication on the seeded synthetic generator.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use palisade_threat_score::eval::{
    Actor, EvalOptions, Evaluation, SynthConfig, evaluate, evaluate_with, generate,
    share_at_or_above,
};
use palisade_threat_score::{Config, ThreatScorer, UserScale};

const CFG: SynthConfig = SynthConfig::new(7, 300, 90, 300);

fn print_curve(name: &str, e: &Evaluation) {
    println!("| attacker | detection | threshold | owners' logins re-auth | median user re-auth |");
    for (attacker, a) in [
        ("naive", &e.naive),
        ("VPN", &e.vpn),
        ("targeted", &e.targeted),
    ] {
        for d in [0.5, 0.8, 0.9, 0.95, 0.99] {
            let p = e.at_detection(a, d);
            println!(
                "| {name} {attacker} | {:.1} % | {:.4} | {:.1} % | {:.1} % |",
                100.0 * p.detected,
                p.threshold,
                100.0 * p.reauth_logins,
                100.0 * p.reauth_median_user
            );
        }
    }
}

#[test]
fn synthetic_detection_vs_reauthentication() {
    let stream = generate(&CFG);
    assert_eq!(
        stream.iter().filter(|l| l.actor == Actor::Targeted).count(),
        300
    );
    let e = evaluate(&stream, 20, |clock| {
        ThreatScorer::builder().clock(clock).build().unwrap()
    });
    println!(
        "legit logins scored: {} of {} users",
        e.legit.len(),
        e.legit_users
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
    );
    for t in [0.5, 0.7, 0.9] {
        println!(
            "t={t}: legit {:.3} (median user {:.3}) naive {:.3} vpn {:.3} targeted {:.3}",
            share_at_or_above(&e.legit, t),
            e.median_user_share(t),
            share_at_or_above(&e.naive, t),
            share_at_or_above(&e.vpn, t),
            share_at_or_above(&e.targeted, t)
        );
    }
    print_curve("Freeman", &e);
    let at99: Vec<_> = [&e.naive, &e.vpn, &e.targeted]
        .iter()
        .map(|a| e.at_detection(a, 0.99))
        .collect();
    for p in &at99 {
        assert!(p.detected >= 0.99, "{p:?}");
    }
    // Naive attackers: 99% caught with at most 10% of the median user's logins re-authenticating.
    assert!(at99[0].reauth_median_user <= 0.10, "{at99:?}");
    // Stronger attackers cost more re-authentication (the model's known limit): the
    // targeted attacker, who copies the UA string and country, is far from the goal.
    assert!(
        at99[0].reauth_logins < at99[1].reauth_logins
            && at99[1].reauth_logins < at99[2].reauth_logins,
        "{at99:?}"
    );
    assert!(at99[2].reauth_median_user > 0.10, "{at99:?}");
    // At the default thresholds almost no owner login is stepped up.
    assert!(share_at_or_above(&e.legit, 0.7) <= 0.01);
    assert!(share_at_or_above(&e.naive, 0.5) >= 0.75);
}

#[test]
fn device_cookie_signal_separates_targeted_attackers() {
    let stream = generate(&CFG);
    for loss in [0.05, 0.10, 0.20] {
        let e = evaluate_with(
            &stream,
            &EvalOptions {
                device_cookie_loss: Some(loss),
                ..EvalOptions::default()
            },
            |clock| ThreatScorer::builder().clock(clock).build().unwrap(),
        );
        print_curve(&format!("Freeman+cookie (loss {loss})"), &e);
        let p = e.at_detection(&e.targeted, 0.99);
        assert!(p.detected >= 0.99, "{p:?}");
        // Re-authentication is bounded by the cookie losses (plus new devices): the
        // attackers' missing cookie is what separates them, not the copied UA.
        assert!(p.reauth_logins <= loss + 0.05, "loss {loss}: {p:?}");
    }
}

#[test]
fn generator_is_seeded() {
    let cfg = SynthConfig::new(3, 20, 30, 5);
    assert_eq!(generate(&cfg), generate(&cfg));
    assert_ne!(generate(&cfg), generate(&SynthConfig { seed: 4, ..cfg }));
}

fn quantiles(mut v: Vec<f64>) -> [f64; 3] {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    [q(0.1), q(0.5), q(0.9)]
}

/// Why the targeted attacker is hard for Freeman's model on this generator: the
/// factors of its score against the owners' own logins.
#[test]
fn targeted_attackers_differ_from_owners_only_in_the_ip_hierarchy() {
    use palisade_core_traits::{LoginOutcome, ManualClock, Timestamp};
    use std::sync::Arc;
    let stream = generate(&CFG);
    let base = 1_700_000_000;
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(base)));
    let s = ThreatScorer::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let (mut owners, mut targeted) = (Vec::new(), Vec::new());
    for l in &stream {
        clock.set(Timestamp::from_unix_secs(base + l.at_secs));
        let f = s.score_with(&l.ctx, &l.signals).freeman.unwrap_or_else(|| {
            assert!(l.prior_logins == 0 || l.actor != Actor::Legit);
            s.score_with(&l.ctx, &l.signals)
                .freeman
                .unwrap_or(FREEMAN_NONE)
        });
        match l.actor {
            Actor::Legit if l.prior_logins >= 20 => owners.push(f),
            Actor::Targeted => targeted.push(f),
            _ => {}
        }
        if l.actor == Actor::Legit {
            let ctx = l.ctx.clone().with_login(LoginOutcome::Success);
            s.record(&ctx, &l.signals).unwrap();
        }
    }
    type Term = fn(&palisade_threat_score::FreemanScore) -> f64;
    let terms: [(&str, Term); 4] = [
        ("IP factor", |f| f.ip.factor),
        ("UA factor", |f| f.ua.factor),
        ("user factor", |f| f.user_factor),
        ("raw S", |f| f.raw),
    ];
    println!("| term | owners p10 / p50 / p90 | targeted p10 / p50 / p90 |");
    for (name, t) in terms {
        let o = quantiles(owners.iter().map(t).collect());
        let a = quantiles(targeted.iter().map(t).collect());
        println!(
            "| {name} | {:.4} / {:.4} / {:.4} | {:.4} / {:.4} / {:.4} |",
            o[0], o[1], o[2], a[0], a[1], a[2]
        );
    }
    let [new_ip, new_asn, new_ua] = owners_new_value_shares(&stream);
    println!(
        "owners' logins from an IP / ASN / UA string they never used before: {:.1} % / {:.1} % / {:.1} %",
        100.0 * new_ip,
        100.0 * new_asn,
        100.0 * new_ua
    );
    // The copied UA string makes the attacker's UA factor as familiar as the owners'.
    let o = quantiles(owners.iter().map(|f| f.ua.factor).collect());
    let a = quantiles(targeted.iter().map(|f| f.ua.factor).collect());
    assert!(a[1] <= o[1] * 1.5, "{a:?} vs {o:?}");
    // The attacker's only tell is the IP hierarchy (new IP and ASN, same country).
    let o = quantiles(owners.iter().map(|f| f.ip.factor).collect());
    let a = quantiles(targeted.iter().map(|f| f.ip.factor).collect());
    assert!(a[1] > o[1], "{a:?} vs {o:?}");
    // And a fifth or more of the owners' logins come from IPs they never used.
    assert!(new_ip >= 0.2, "{new_ip}");
}

const FREEMAN_NONE: palisade_threat_score::FreemanScore = palisade_threat_score::FreemanScore {
    ip: NO_TERMS,
    ua: NO_TERMS,
    user_factor: 0.0,
    raw: 0.0,
    history: 0,
    typical: None,
};
const NO_TERMS: palisade_threat_score::HierarchyTerms = palisade_threat_score::HierarchyTerms {
    local: 0.0,
    global: 0.0,
    factor: 0.0,
    never_seen: true,
};

/// Shares of owners' scored logins (after 20 earlier ones) from an IP address, an ASN
/// and a UA string the owner never used before.
fn owners_new_value_shares(stream: &[palisade_threat_score::eval::SynthLogin]) -> [f64; 3] {
    let mut seen = std::collections::HashSet::new();
    let (mut scored, mut new) = (0usize, [0usize; 3]);
    for l in stream.iter().filter(|l| l.actor == Actor::Legit) {
        let asn = l.signals.geo.as_ref().and_then(|g| g.asn);
        let user = l.ctx.user_id.clone().unwrap();
        let keys = [
            (user.clone(), l.ctx.peer_ip.to_string()),
            (user.clone(), format!("{asn:?}")),
            (user, l.ctx.user_agent().unwrap().to_owned()),
        ];
        if l.prior_logins >= 20 {
            scored += 1;
            for (n, key) in new.iter_mut().zip(&keys) {
                *n += usize::from(!seen.contains(key));
            }
        }
        seen.extend(keys);
    }
    new.map(|n| n as f64 / scored as f64)
}

/// The targeted operating point depends on how often owners log in from a never-seen
/// address (mobile carrier pools, home address renewals): the same model on the same
/// users, with only those two habits changed.
#[test]
fn owners_address_churn_sets_the_targeted_operating_point() {
    println!(
        "| mobile logins | home renewals | owners' logins from a new IP | targeted: threshold at 99 % | owners' logins re-auth | median user re-auth |"
    );
    let mut rows = Vec::new();
    for (mobile, renewal) in [
        (0.2, 0.05),
        (0.1, 0.02),
        (0.05, 0.01),
        (0.0, 0.01),
        (0.0, 0.0),
    ] {
        let cfg = SynthConfig {
            mobile_share: mobile,
            address_renewal: renewal,
            ..CFG
        };
        let stream = generate(&cfg);
        let [new_ip, _, _] = owners_new_value_shares(&stream);
        let e = evaluate(&stream, 20, |clock| {
            ThreatScorer::builder().clock(clock).build().unwrap()
        });
        let p = e.at_detection(&e.targeted, 0.99);
        assert!(p.detected >= 0.99, "{p:?}");
        println!(
            "| {:.0} % | {:.0} % | {:.1} % | {:.4} | {:.1} % | {:.1} % |",
            100.0 * mobile,
            100.0 * renewal,
            100.0 * new_ip,
            p.threshold,
            100.0 * p.reauth_logins,
            100.0 * p.reauth_median_user
        );
        rows.push((new_ip, p));
    }
    // Less address churn, fewer owners asked.
    for w in rows.windows(2) {
        assert!(w[1].0 < w[0].0, "{:?} / {:?}", w[0].0, w[1].0);
    }
    assert!(
        rows[4].1.reauth_logins < rows[0].1.reauth_logins,
        "{rows:?}"
    );
    // But churn is not what keeps the goal out of reach: with owners almost never on a
    // new address, catching 99 % of targeted attackers still asks more than 10 % of the
    // median user's logins (the per-user terms spread the owners' scores).
    assert!(
        rows[4].0 < 0.03 && rows[4].1.reauth_median_user > 0.10,
        "{rows:?}"
    );
}

/// One global threshold on each user's own scale (`Config::user_scale`): the attempt's
/// raw Freeman S over the median raw S of the user's last 20 successful logins.
#[test]
fn a_per_user_scale_cuts_re_authentication_for_strong_attackers() {
    let mut rows = Vec::new();
    println!(
        "| owners' habits | scale | VPN: median user re-auth at 99 % | targeted: owners' logins re-auth | targeted: median user re-auth |"
    );
    for (habits, cfg) in [
        ("default (25.7 % new IPs)", CFG),
        (
            "5 % mobile, 1 % renewals",
            SynthConfig {
                mobile_share: 0.05,
                address_renewal: 0.01,
                ..CFG
            },
        ),
    ] {
        let stream = generate(&cfg);
        for (scale, user_scale) in [
            ("global", None),
            ("per user (last 20)", Some(UserScale::default())),
        ] {
            let config = Config {
                user_scale,
                ..Config::default()
            };
            let e = evaluate(&stream, 20, |clock| {
                ThreatScorer::builder()
                    .config(config)
                    .clock(clock)
                    .build()
                    .unwrap()
            });
            let v = e.at_detection(&e.vpn, 0.99);
            let t = e.at_detection(&e.targeted, 0.99);
            assert!(v.detected >= 0.99 && t.detected >= 0.99, "{v:?} {t:?}");
            println!(
                "| {habits} | {scale} | {:.1} % | {:.1} % | {:.1} % |",
                100.0 * v.reauth_median_user,
                100.0 * t.reauth_logins,
                100.0 * t.reauth_median_user
            );
            rows.push((v, t));
            if user_scale.is_some() {
                // The default thresholds on the default user scale (monitor at 4× the
                // user's usual S, step-up at 6.1×, block at 12×).
                let th = Config::default().thresholds;
                for (name, at) in [
                    ("monitor", th.monitor),
                    ("step-up", th.step_up),
                    ("block", th.block),
                ] {
                    let [n, v, t] = [&e.naive, &e.vpn, &e.targeted].map(|a| e.at_threshold(a, at));
                    println!(
                        "  {habits}, at {name} ({at}): naive {:.1} % / VPN {:.1} % / targeted {:.1} % caught; owners' logins {:.1} %, median user {:.1} %",
                        100.0 * n.detected,
                        100.0 * v.detected,
                        100.0 * t.detected,
                        100.0 * t.reauth_logins,
                        100.0 * t.reauth_median_user
                    );
                    if name == "monitor" {
                        assert!(n.detected >= 0.95 && v.detected >= 0.9, "{n:?} {v:?}");
                        assert!(t.reauth_median_user <= 0.1, "{t:?}");
                    }
                }
            }
        }
    }
    // On both generators the per-user scale asks far fewer owners for the same catch of
    // targeted attackers (it held on each of seeds 1-8, by 2.5x or more). For VPN
    // attackers it is not a rule: seeds 3 and 5 of the calm generator ask more.
    for pair in rows.chunks(2) {
        let (global, per_user) = (&pair[0], &pair[1]);
        assert!(
            per_user.1.reauth_median_user * 2.0 < global.1.reauth_median_user,
            "{pair:?}"
        );
    }
}
