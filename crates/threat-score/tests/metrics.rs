//! Feature `metrics`: the `palisade_threat_score_*` counters and gauges, read back from
//! metrics-util's `DebuggingRecorder` installed for this thread only, agree with what
//! the scorer answered and with its own `stats()`.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_core_traits::{LoginOutcome, ManualClock, RequestContext, Timestamp};
use palisade_threat_score::{Config, GeoInfo, Signals, ThreatScorer, Verdict};

/// Every metric as `name{k=v,...}` (labels sorted) with its value.
fn read(recorder: &DebuggingRecorder) -> HashMap<String, f64> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            let v = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => panic!("{} is a histogram", key.name()),
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), v)
        })
        .collect()
}

fn login(user: &str, ip: [u8; 4], outcome: Option<LoginOutcome>) -> RequestContext {
    let ctx = RequestContext::new(IpAddr::from(ip), Timestamp::UNIX_EPOCH)
        .with_user(user)
        .with_header(
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        );
    match outcome {
        Some(o) => ctx.with_login(o),
        None => ctx,
    }
}

fn geo(country: &str, location: (f64, f64)) -> Signals {
    Signals::default().with_geo(GeoInfo {
        asn: Some(64_500),
        country: Some(country.into()),
        location: Some(location),
    })
}

#[test]
fn scores_records_events_and_memory_are_reported() {
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
        let scorer = ThreatScorer::builder()
            .clock(clock.clone())
            .build()
            .unwrap();
        let paris = geo("FR", (48.85, 2.35));
        for _ in 0..20 {
            let ctx = login("alice", [192, 0, 2, 10], Some(LoginOutcome::Success));
            scorer.record(&ctx, &paris).unwrap();
            clock.advance(std::time::Duration::from_secs(86_400));
        }
        // One failed attempt on alice's name from Sydney an hour later.
        clock.advance(std::time::Duration::from_secs(3_600));
        let far = login("alice", [198, 51, 100, 7], Some(LoginOutcome::Failure));
        let sydney = geo("AU", (-33.87, 151.21));
        let mut verdicts: HashMap<&'static str, f64> = HashMap::new();
        let familiar = scorer.score_with(&login("alice", [192, 0, 2, 10], None), &paris);
        let risky = scorer.score_with(&far, &sydney);
        for s in [&familiar, &risky] {
            let v = match s.verdict {
                Verdict::Allow => "allow",
                Verdict::Monitor => "monitor",
                Verdict::StepUp => "step_up",
                Verdict::Block => "block",
            };
            *verdicts.entry(v).or_default() += 1.0;
        }
        assert_ne!(risky.verdict, Verdict::Allow, "{risky:?}");
        let event = scorer.event(&far, &risky).unwrap();
        assert!(!event.basis.may_act_on_account());
        scorer.record(&far, &sydney).unwrap();
        assert!(
            scorer
                .record(&login("alice", [192, 0, 2, 10], None), &paris)
                .is_err()
        );

        let m = read(&recorder);
        let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
        assert_eq!(
            get("palisade_threat_score_records_total{outcome=success}"),
            20.0
        );
        assert_eq!(
            get("palisade_threat_score_records_total{outcome=failure}"),
            1.0
        );
        assert_eq!(
            get("palisade_threat_score_records_total{outcome=refused}"),
            1.0
        );
        // Scores by verdict, whatever signal topped them, equal what the scorer answered.
        for (verdict, n) in &verdicts {
            let counted: f64 = m
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("palisade_threat_score_scores_total{")
                        && k.contains(&format!("verdict={verdict}}}"))
                })
                .map(|(_, v)| v)
                .sum();
            assert_eq!(counted, *n, "{verdict}: {m:?}");
        }
        let risky_top = risky.contributions[0].signal.name();
        assert!(
            m.keys()
                .any(|k| k.starts_with("palisade_threat_score_scores_total{")
                    && k.contains(&format!("top={risky_top},"))),
            "{m:?}"
        );
        let events: f64 = m
            .iter()
            .filter(|(k, _)| {
                k.starts_with("palisade_threat_score_events_total{basis=unauthenticated,")
            })
            .map(|(_, v)| v)
            .sum();
        assert_eq!(events, 1.0, "{m:?}");
        let stats = scorer.stats();
        assert_eq!(get("palisade_threat_score_users{}"), stats.users as f64);
        assert_eq!(
            get("palisade_threat_score_memory_bytes{}"),
            stats.memory_bytes as f64
        );
    });
}

#[test]
fn users_forgotten_for_the_memory_budget_are_counted() {
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
        let config = Config {
            memory_budget_bytes: 4_096,
            ..Config::default()
        };
        let scorer = ThreatScorer::builder()
            .config(config)
            .clock(clock.clone())
            .build()
            .unwrap();
        let signals = geo("DE", (52.52, 13.40));
        for i in 0..200u32 {
            let ctx = login(
                &format!("user{i}"),
                [10, 0, (i / 256) as u8, i as u8],
                Some(LoginOutcome::Success),
            );
            scorer.record(&ctx, &signals).unwrap();
            clock.advance(std::time::Duration::from_secs(1));
        }
        let evicted = scorer.stats().evicted_users;
        assert!(evicted > 0, "the budget never bound");
        let m = read(&recorder);
        assert_eq!(
            m.get("palisade_threat_score_evicted_users_total{}")
                .copied(),
            Some(evicted as f64)
        );
    });
}
