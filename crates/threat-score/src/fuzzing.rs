//! Entry points for the cargo-fuzz targets in `fuzz/` (also replayed by the
//! `fuzz_corpus_*` test on stable), one function per target.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{LoginOutcome, ManualClock, RequestContext, Timestamp};

use crate::config::nz;
use crate::{BehaviourConfig, Config, GeoInfo, HstConfig, Signals, ThreatScorer};

/// Parses one event line: `outcome|user|ip|user agent|asn|country|lat,lon|familiarity|
/// numeric features (comma-separated)|seconds since the previous event`, where outcome is
/// `s` (success), `f` (failure) or `u` (step-up success). Missing or malformed fields take
/// defaults; the flag says whether every field was well-formed.
fn event(line: &str) -> (RequestContext, Signals, u64, bool) {
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
    let ctx = RequestContext::new(ip, Timestamp::UNIX_EPOCH)
        .with_user(get(1))
        .with_header("User-Agent", get(3))
        .with_login(outcome);
    let mut signals = Signals::default()
        .with_geo(GeoInfo {
            asn,
            country,
            location,
        })
        .with_numeric(numeric);
    signals.device_familiarity = familiarity;
    (ctx, signals, dt, ok)
}

/// Replays event lines (`outcome|user|ip|user agent|asn|country|lat,lon|familiarity|
/// numeric,…|seconds`, outcome `s`, `f` or `u`) through a scorer with every signal on (small
/// history cap and memory budget, behavioural signal with a short window, per-user
/// scale over the last 4 scored logins): every score
/// must be in [0, 1] and never NaN, an event exists exactly above allow, and a
/// state loaded into a fresh scorer must score the last attempt identically.
/// Returns whether every line was well-formed. Panics on a broken invariant.
pub fn threat_score_events(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let config = Config {
        history_cap: const { nz(8) },
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
            window: const { nz(4) },
            min_samples: const { nz(2) },
            ..crate::UserScale::default()
        }),
        ..Config::default()
    };
    let built = ThreatScorer::builder()
        .config(config.clone())
        .clock(clock.clone())
        .build();
    let Ok(scorer) = built else {
        unreachable!("the fuzz configuration is valid")
    };
    let mut all_ok = true;
    let mut last = None;
    for line in text.lines().take(256) {
        let (ctx, signals, dt, ok) = event(line);
        all_ok &= ok;
        clock.advance(Duration::from_secs(dt));
        let s = scorer.score_with(&ctx, &signals);
        assert!((0.0..=1.0).contains(&s.score), "score {s:?}");
        assert!((0.0..=1.0).contains(&s.confidence), "confidence {s:?}");
        assert!(
            s.contributions
                .iter()
                .all(|c| (0.0..=1.0).contains(&c.share) && (0.0..=1.0).contains(&c.risk)),
            "contributions {s:?}"
        );
        assert_eq!(
            scorer.event(&ctx, &s).is_some(),
            s.verdict > crate::Verdict::Allow
        );
        assert!(
            scorer.record(&ctx, &signals).is_ok(),
            "the context has an outcome"
        );
        last = Some((ctx, signals));
    }
    if let Some((ctx, signals)) = last {
        let restored = ThreatScorer::builder()
            .config(config)
            .clock(clock)
            .state(scorer.state())
            .build();
        let Ok(restored) = restored else {
            unreachable!("a state taken from a scorer loads: {restored:?}")
        };
        // Velocity restarts empty with a loaded state: compare the learned parts only.
        let (x, y) = (
            scorer.score_with(&ctx, &signals),
            restored.score_with(&ctx, &signals),
        );
        assert_eq!(
            x.freeman
                .map(|f| (f.raw.to_bits(), f.typical.map(f64::to_bits))),
            y.freeman
                .map(|f| (f.raw.to_bits(), f.typical.map(f64::to_bits)))
        );
    }
    all_ok
}
