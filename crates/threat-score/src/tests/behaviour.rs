//! The behavioural (Half-Space Trees) signal.
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{LoginOutcome, ManualClock, Timestamp};

use super::*;

fn behaviour_scorer(behaviour: Option<BehaviourConfig>) -> (Arc<ManualClock>, ThreatScorer) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let cfg = Config {
        behaviour,
        ..Config::default()
    };
    (clock.clone(), build(cfg, clock).unwrap())
}

/// splitmix64, seeded (the generator of the `eval` feature's synthetic data).
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// 600 completed logins of one user with request features near (100, 2) and the
/// scaler's range fixed by two logins at (0, 0) and (1000, 10).
fn train_behaviour(clock: &ManualClock, s: &ThreatScorer) -> Login {
    let base = Login::new("alice", ip("192.0.2.10"), FIREFOX).with_geo(geo(3320, "DE"));
    let mut rng = Rng(5);
    for x in [[0.0, 0.0], [1000.0, 10.0]] {
        s.record_login(&base.clone().with_numeric(x), LoginOutcome::Success);
    }
    for _ in 0..600 {
        clock.advance(Duration::from_secs(3_600));
        let x = [100.0 + 20.0 * rng.unit(), 2.0 + rng.unit()];
        s.record_login(&base.clone().with_numeric(x), LoginOutcome::Success);
    }
    base
}

#[test]
fn behaviour_anomaly_is_a_named_contribution_when_enabled() {
    let cfg = BehaviourConfig {
        features: 2,
        ..BehaviourConfig::default()
    };
    let (clock, s) = behaviour_scorer(Some(cfg));
    let base = train_behaviour(&clock, &s);
    let usual = s.score_login(&base.clone().with_numeric([110.0, 2.5]));
    let odd = s.score_login(&base.clone().with_numeric([990.0, 9.5]));
    let part = |t: &ThreatScore| {
        t.contributions
            .iter()
            .find(|c| c.signal == Signal::BehaviourAnomaly)
            .map_or(0.0, |c| c.risk)
    };
    assert_eq!(part(&usual), 0.0, "{usual:?}");
    assert!(part(&odd) > 0.1 && part(&odd) <= 0.3, "{odd:?}");
    assert!(odd.score > usual.score);
    // Alone it stays below monitor (weight 0.3 < 0.5).
    assert!(part(&odd) < Config::default().thresholds.monitor);
    // Without features the signal is skipped.
    assert_eq!(part(&s.score_login(&base)), 0.0);
    // Failed logins do not teach it: 1,000 failures at the odd point change nothing.
    for _ in 0..1_000 {
        s.record_login(
            &base.clone().with_numeric([990.0, 9.5]),
            LoginOutcome::Failure,
        );
    }
    let again = s.score_login(&base.clone().with_numeric([990.0, 9.5]));
    assert_eq!(part(&again), part(&odd));
    // A restart keeps the detector.
    let restored = load(
        Config {
            behaviour: Some(cfg),
            ..Config::default()
        },
        clock,
        s.state(),
    )
    .unwrap();
    assert_eq!(
        part(&restored.score_login(&base.clone().with_numeric([990.0, 9.5]))),
        part(&odd)
    );
}

/// A saved detector whose parts disagree (a scaler with fewer maxima than minima, a
/// split on a feature it does not have) is refused when loaded: the first would panic
/// at the next completed login.
#[test]
fn a_saved_detector_out_of_shape_is_refused() {
    let cfg = BehaviourConfig {
        features: 2,
        ..BehaviourConfig::default()
    };
    let (clock, s) = behaviour_scorer(Some(cfg));
    train_behaviour(&clock, &s);
    let saved = serde_json::to_value(s.state()).unwrap();
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 2] = [
        ("scaler", |b| b["scaler"]["max"] = serde_json::json!([])),
        ("feature", |b| {
            b["trees"][0]["nodes"][0]["feature"] = 7.into()
        }),
    ];
    for (what, edit) in edits {
        let mut state = saved.clone();
        edit(&mut state["behaviour"]);
        let state = serde_json::from_value(state).unwrap();
        let loaded = load(
            Config {
                behaviour: Some(cfg),
                ..Config::default()
            },
            clock.clone(),
            state,
        );
        assert!(
            matches!(loaded, Err(Error::InvalidState { .. })),
            "{what}: {loaded:?}"
        );
    }
}

#[test]
fn behaviour_signal_is_off_by_default() {
    let (clock, s) = behaviour_scorer(None);
    let base = train_behaviour(&clock, &s);
    let odd = s.score_login(&base.with_numeric([990.0, 9.5]));
    assert!(
        odd.contributions
            .iter()
            .all(|c| c.signal != Signal::BehaviourAnomaly),
        "{odd:?}"
    );
    let bad = Config {
        behaviour: Some(BehaviourConfig {
            floor: 1.0,
            ..BehaviourConfig::default()
        }),
        ..Config::default()
    };
    assert!(matches!(
        build(bad, clock),
        Err(Error::InvalidConfig {
            field: "behaviour.floor",
            ..
        })
    ));
}
