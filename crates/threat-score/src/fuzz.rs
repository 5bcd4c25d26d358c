//! Entry points for the cargo-fuzz targets in `fuzz/` (also replayed by the
//! `fuzz_corpus_*` test on stable).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{LoginOutcome, ManualClock, Timestamp};

use crate::{BehaviourConfig, Config, GeoInfo, LoginAttempt, ThreatScorer, hst::HstConfig};

/// Parses one event line: `outcome|user|ip|user agent|asn|country|lat,lon|familiarity|
/// numeric features (comma-separated)|seconds since the previous event`, where outcome is
/// `s` (success), `f` (failure) or `u` (step-up success). Missing or malformed fields take
/// defaults; the flag says whether every field was well-formed.
fn event(line: &str) -> (LoginAttempt, LoginOutcome, u64, bool) {
    let f: Vec<&str> = line.split('|').collect();
    let get = |i: usize| f.get(i).copied().unwrap_or("");
    let mut ok = f.len() == 10;
    let outcome = match get(0) {
        "s" => LoginOutcome::Success,
        "u" => LoginOutcome::StepUpSuccess,
        "f" => LoginOutcome::Failure,
        _ => {
            ok = false;
            LoginOutcome::Failure
        }
    };
    let ip = get(2).parse().unwrap_or_else(|_| {
        ok = false;
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    });
    let mut number = |s: &str| -> Option<f64> {
        let v = s.trim().parse::<f64>().ok();
        if v.is_none() && !s.is_empty() {
            ok = false;
        }
        v
    };
    let location = get(6)
        .split_once(',')
        .and_then(|(a, b)| Some((number(a)?, number(b)?)));
    let familiarity = number(get(7));
    let numeric: Vec<f64> = get(8)
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(&mut number)
        .collect();
    let dt = get(9).trim().parse::<u64>().unwrap_or(0).min(400 * 86_400);
    let asn = get(4).trim().parse::<u32>().ok();
    let country = Some(get(5).to_owned()).filter(|c| !c.is_empty());
    let mut a = LoginAttempt::new(get(1), ip, get(3))
        .with_geo(GeoInfo {
            asn,
            country,
            location,
        })
        .with_numeric(numeric);
    a.device_familiarity = familiarity;
    (a, outcome, dt, ok)
}

/// Replays event lines (`outcome|user|ip|user agent|asn|country|lat,lon|familiarity|
/// numeric,…|seconds`, outcome `s`, `f` or `u`) through a scorer with every signal on (small
/// history cap and memory budget, behavioural signal with a short window, per-user
/// scale over the last 4 scored logins): every score
/// must be in [0, 1] and never NaN, an event exists exactly above allow, and a
/// snapshot restored into a fresh scorer must score the last attempt identically.
/// Returns whether every line was well-formed. Panics on a broken invariant.
pub fn login_events(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let config = Config {
        history_cap: 8,
        memory_budget_bytes: 4_096,
        behaviour: Some(BehaviourConfig {
            features: 3,
            hst: HstConfig {
                trees: 3,
                height: 4,
                window: 4,
                seed: 1,
            },
            ..BehaviourConfig::default()
        }),
        user_scale: Some(crate::UserScale {
            window: 4,
            min_samples: 2,
            ..crate::UserScale::default()
        }),
        ..Config::default()
    };
    let Ok(mut scorer) = ThreatScorer::new(config.clone(), clock.clone()) else {
        unreachable!("the fuzz configuration is valid")
    };
    let mut all_ok = true;
    let mut last = None;
    for line in text.lines().take(256) {
        let (attempt, outcome, dt, ok) = event(line);
        all_ok &= ok;
        clock.advance(Duration::from_secs(dt));
        let s = scorer.score(&attempt);
        assert!((0.0..=1.0).contains(&s.score), "score {s:?}");
        assert!((0.0..=1.0).contains(&s.confidence), "confidence {s:?}");
        assert!(
            s.contributions
                .iter()
                .all(|c| (0.0..=1.0).contains(&c.share) && (0.0..=1.0).contains(&c.risk)),
            "contributions {s:?}"
        );
        assert_eq!(
            scorer.event(&attempt, &s, outcome).is_some(),
            s.verdict > crate::Verdict::Allow
        );
        scorer.record(&attempt, outcome);
        last = Some(attempt);
    }
    if let Some(a) = last {
        let Ok(mut restored) = ThreatScorer::new(config, clock) else {
            unreachable!("the fuzz configuration is valid")
        };
        assert!(restored.restore(scorer.snapshot()).is_ok());
        // Velocity restarts empty after a restore: compare the learned parts only.
        let (x, y) = (scorer.score(&a), restored.score(&a));
        assert_eq!(
            x.freeman
                .map(|f| (f.raw.to_bits(), f.typical.map(f64::to_bits))),
            y.freeman
                .map(|f| (f.raw.to_bits(), f.typical.map(f64::to_bits)))
        );
    }
    all_ok
}
