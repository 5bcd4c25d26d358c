//! The per-user scale (`Config::user_scale`): scores, stored scores, state, budget,
//! explanation.
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{LoginOutcome, ManualClock, Timestamp};

use super::*;

fn scaled_scorer() -> (Arc<ManualClock>, ThreatScorer) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let cfg = Config {
        user_scale: Some(UserScale::default()),
        ..Config::default()
    };
    (clock.clone(), build(cfg, clock).unwrap())
}

/// 40 users on a common browser and one (`rare`) on a browser nobody else uses, 30
/// logins each from home.
fn common_and_rare(s: &ThreatScorer, clock: &ManualClock) -> [Login; 2] {
    let home = |u: u32, ua: &str| {
        Login::new(format!("user{u}"), ip(&format!("10.0.0.{u}")), ua)
            .with_geo(geo(64_500 + u % 5, "FR"))
    };
    const RARE: &str = "Mozilla/5.0 (X11; OpenBSD amd64; rv:115.0) Gecko/20100101 Firefox/115.0";
    for _ in 0..30 {
        clock.advance(Duration::from_secs(3_600));
        for u in 0..40 {
            s.record_login(&home(u, FIREFOX), LoginOutcome::Success);
        }
        s.record_login(&home(40, RARE), LoginOutcome::Success);
    }
    [home(0, FIREFOX), home(40, RARE)]
}

#[test]
fn user_scale_puts_each_user_on_their_own_scale() {
    // Global scale: the common browser's users score far higher on every usual login
    // (an attacker is likelier to bring a common browser than a rare one).
    let (clock, global) = scorer();
    let [common, rare] = common_and_rare(&global, &clock);
    let (c, r) = (global.score_login(&common), global.score_login(&rare));
    assert!(c.score > 10.0 * r.score, "{} vs {}", c.score, r.score);
    assert_eq!(c.freeman.unwrap().typical, None);

    // Per-user scale: both usual logins are at their user's usual, x ≈ 1 (the global
    // counts move a little between logins), which the default calibration maps to
    // 1 / (1 + (4 / x)²) ≈ 1/17.
    let (clock, scaled) = scaled_scorer();
    let [common, rare] = common_and_rare(&scaled, &clock);
    for usual in [&common, &rare] {
        let t = scaled.score_login(usual);
        let f = t.freeman.unwrap();
        assert_eq!(f.raw, global.score_login(usual).freeman.unwrap().raw);
        let x = f.raw / f.typical.unwrap();
        assert!((x - 1.0).abs() < 0.05, "{x}");
        assert!(
            (t.score - 1.0 / (1.0 + (4.0 / x).powi(2))).abs() < 1e-9,
            "{}",
            t.score
        );
        assert_eq!(t.verdict, Verdict::Allow);
    }
    // A new country, ASN and browser is far above either user's usual.
    for usual in [common, rare] {
        let user = usual.ctx.user_id.clone().unwrap();
        let away = Login::new(user, ip("203.0.113.9"), CHROME_WIN).with_geo(geo(1, "BR"));
        let t = scaled.score_login(&away);
        assert!(t.verdict >= Verdict::StepUp, "{t:?}");
        assert!(
            t.contributions[0].reason.contains("this user's usual"),
            "{:?}",
            t.contributions
        );
    }
}

#[test]
fn user_scale_waits_for_min_samples() {
    let (clock, s) = scaled_scorer();
    let a = Login::new("alice", ip("192.0.2.1"), FIREFOX).with_geo(geo(1, "DE"));
    // The first login has nothing to be scored against, so it stores no score: after
    // 10 logins there are 9 scores, one short of min_samples.
    for n in 1..=11 {
        clock.advance(Duration::from_secs(60));
        s.record_login(&a, LoginOutcome::Success);
        let typical = s.score_login(&a).freeman.unwrap().typical;
        assert_eq!(typical.is_some(), n == 11, "after {n} logins");
    }
}

#[test]
fn the_state_keeps_the_user_scale() {
    let (clock, s) = scaled_scorer();
    let [common, rare] = common_and_rare(&s, &clock);
    let json = serde_json::to_string(&s.state()).unwrap();
    let scaled = Config {
        user_scale: Some(UserScale::default()),
        ..Config::default()
    };
    let r = load(
        scaled.clone(),
        clock.clone(),
        serde_json::from_str(&json).unwrap(),
    )
    .unwrap();
    assert_eq!(r.stats().memory_bytes, s.stats().memory_bytes);
    for a in [&common, &rare] {
        assert_eq!(r.score_login(a).score, s.score_login(a).score);
        assert!(r.score_login(a).freeman.unwrap().typical.is_some());
    }
    // A state from before the scale (no stored scores) loads on the global scale.
    let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
    for user in old["users"].as_array_mut().unwrap() {
        for e in user[1].as_array_mut().unwrap() {
            e.as_object_mut().unwrap().remove("s");
        }
    }
    let r = load(
        scaled.clone(),
        clock.clone(),
        serde_json::from_value(old.clone()).unwrap(),
    )
    .unwrap();
    assert_eq!(r.score_login(&common).freeman.unwrap().typical, None);
    // A negative stored score is refused, and the scorer keeps what it had.
    old["users"][0][1][0]["s"] = (-1.0).into();
    assert!(matches!(
        load(scaled, clock, serde_json::from_value(old).unwrap()),
        Err(Error::InvalidState { .. })
    ));
    assert_eq!(r.stats().users, s.stats().users);
}

#[test]
fn user_scale_config_is_validated() {
    let clock = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
    for (u, field) in [
        (
            UserScale {
                window: nz(51),
                ..UserScale::default()
            },
            "user_scale.window",
        ),
        (
            UserScale {
                min_samples: nz(21),
                ..UserScale::default()
            },
            "user_scale.min_samples",
        ),
        (
            UserScale {
                calibration: Calibration {
                    midpoint: 0.0,
                    steepness: 1.0,
                },
                ..UserScale::default()
            },
            "user_scale.calibration",
        ),
    ] {
        let cfg = Config {
            user_scale: Some(u),
            ..Config::default()
        };
        match build(cfg, clock.clone()) {
            Err(Error::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{u:?}: {other:?}"),
        }
    }
    // Zero samples is unrepresentable, also in a configuration read from JSON.
    let mut json = serde_json::to_value(UserScale::default()).unwrap();
    json["min_samples"] = 0.into();
    assert!(serde_json::from_value::<UserScale>(json).is_err());
}

#[test]
fn the_user_scale_score_is_stored_with_each_login_saved_and_counted() {
    // One user, three identical logins: 96 bytes for the user, 64 per login and 24 per
    // distinct value (7 levels), with or without the scale: the stored score rides in
    // the 64-byte entry.
    for user_scale in [None, Some(UserScale::default())] {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
        let cfg = Config {
            user_scale,
            ..Config::default()
        };
        let s = build(cfg, clock.clone()).unwrap();
        let a = Login::new("alice", ip("192.0.2.1"), FIREFOX).with_geo(geo(1, "DE"));
        for _ in 0..3 {
            clock.advance(Duration::from_secs(60));
            s.record_login(&a, LoginOutcome::Success);
        }
        assert_eq!(
            s.stats().memory_bytes,
            96 + 3 * 64 + 7 * 24,
            "{user_scale:?}"
        );
        // The state carries each login's score when the scale is on (the first login
        // had no history to be scored against).
        let saved = serde_json::to_value(s.state()).unwrap();
        let stored: Vec<Option<f64>> = saved["users"][0][1]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.get("s").and_then(|x| x.as_f64()))
            .collect();
        if user_scale.is_some() {
            assert_eq!(stored.len(), 3);
            assert_eq!(stored[0], None);
            // Identical logins of the only user: S = factor_IP · factor_UA · N/(1 · n)
            // = 1 · 1 · 1 (every global likelihood equals the local one but for the
            // top-level smoothing, below 1).
            assert!(
                stored[1..]
                    .iter()
                    .all(|x| x.is_some_and(|x| x > 0.0 && x <= 1.0)),
                "{stored:?}"
            );
        } else {
            assert_eq!(stored, [None, None, None]);
        }
    }
}

#[test]
fn the_explanation_says_when_the_user_scale_decided() {
    let (clock, s) = scaled_scorer();
    let a = Login::new("alice", ip("192.0.2.1"), FIREFOX).with_geo(geo(1, "DE"));
    let away = Login::new("alice", ip("203.0.113.9"), CHROME_WIN).with_geo(geo(2, "BR"));
    let says = |t: &ThreatScore| {
        t.contributions
            .iter()
            .any(|c| c.reason.contains("on this user's scale"))
    };
    // Too few stored scores: the global scale decides, and no reason mentions the user's.
    for _ in 0..5 {
        clock.advance(Duration::from_secs(60));
        s.record_login(&a, LoginOutcome::Success);
    }
    let t = s.score_login(&away);
    assert_eq!(t.freeman.unwrap().typical, None);
    assert!(!says(&t), "{:?}", t.contributions);
    // With enough, the Freeman parts name the scale, the ratio and the global risk.
    for _ in 0..10 {
        clock.advance(Duration::from_secs(60));
        s.record_login(&a, LoginOutcome::Success);
    }
    let t = s.score_login(&away);
    let f = t.freeman.unwrap();
    let m = f.typical.unwrap();
    assert!(says(&t), "{:?}", t.contributions);
    let global = Config::default().calibration.map(f.raw);
    let ip_part = t
        .contributions
        .iter()
        .find(|c| c.signal == Signal::IpFamiliarity)
        .unwrap();
    assert!(
        ip_part
            .reason
            .contains(&format!("S is {:.2}× this user's usual", f.raw / m)),
        "{}",
        ip_part.reason
    );
    assert!(
        ip_part
            .reason
            .contains(&format!("the global scale would give {global:.2}")),
        "{}",
        ip_part.reason
    );
}
