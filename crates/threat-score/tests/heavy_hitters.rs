//! Recall of the top failing sources on a stream with known heavy hitters.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use palisade_core_traits::{LoginOutcome, ManualClock, RequestContext, Timestamp};
use palisade_threat_score::eval::Rng;
use palisade_threat_score::{FailureSource, GeoInfo, Signals, SourceKind, ThreatScorer};

#[test]
fn top_failing_sources_find_the_heavy_hitters() {
    // Aligned to the hour, so the 600 s of events fill whole buckets of both windows.
    let start = 1_699_999_200;
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(start)));
    let scorer = ThreatScorer::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut rng = Rng::new(11);
    // 10 heavy IPs in 203.0.113.0/24 (AS64500), 500 failures each; 20,000 background
    // failures from random addresses in 198.18.0.0/15 spread over 500 other ASNs.
    let mut events: Vec<(u64, IpAddr, u32)> = Vec::new();
    for h in 1..=10u8 {
        for _ in 0..500 {
            events.push((rng.below(600), IpAddr::from([203, 0, 113, h]), 64_500));
        }
    }
    for _ in 0..20_000 {
        let host = rng.below(1 << 17) as u32;
        let ip = IpAddr::from([198, 18 + (host >> 16) as u8, (host >> 8) as u8, host as u8]);
        events.push((rng.below(600), ip, 64_501 + rng.below(500) as u32));
    }
    events.sort_by_key(|e| e.0);
    let mut truth: HashMap<IpAddr, u64> = HashMap::new();
    for (i, &(t, ip, asn)) in events.iter().enumerate() {
        clock.set(Timestamp::from_unix_secs(start + t));
        *truth.entry(ip).or_insert(0) += 1;
        let geo = GeoInfo {
            asn: Some(asn),
            country: Some("NL".into()),
            location: None,
        };
        let ctx = RequestContext::new(ip, Timestamp::from_unix_secs(start + t))
            .with_user(format!("victim{}", i % 3_000))
            .with_header("User-Agent", "python-requests/2.31")
            .with_login(LoginOutcome::Failure);
        scorer
            .record(&ctx, &Signals::default().with_geo(geo))
            .unwrap();
    }
    let heavy: Vec<IpAddr> = (1..=10u8).map(|h| IpAddr::from([203, 0, 113, h])).collect();
    // The 10-minute and 1-hour windows hold the whole stream.
    for window in [1, 2] {
        let top = scorer.top_failing_sources(window, SourceKind::Ip, 10);
        assert_eq!(top.len(), 10);
        let found = top
            .iter()
            .filter(|h| matches!(h.source, FailureSource::Ip(ip) if heavy.contains(&ip)))
            .count();
        assert_eq!(found, 10, "recall {found}/10 in window {window}: {top:?}");
        for h in &top {
            let FailureSource::Ip(ip) = h.source else {
                panic!("{h:?}")
            };
            let t = truth[&ip];
            assert!(h.count >= t && h.count - h.error <= t, "{h:?} true {t}");
        }
        let prefixes = scorer.top_failing_sources(window, SourceKind::Prefix, 1);
        assert_eq!(prefixes[0].source.to_string(), "203.0.113.0/24");
        assert!(prefixes[0].count >= 5_000);
        let asns = scorer.top_failing_sources(window, SourceKind::Asn, 1);
        assert_eq!(asns[0].source, FailureSource::Asn(64_500));
        assert!(asns[0].count >= 5_000 && asns[0].count - asns[0].error <= 5_000);
    }
    // Two hours later every window has forgotten them.
    clock.set(Timestamp::from_unix_secs(start + 600 + 7_200));
    assert!(scorer.top_failing_sources(2, SourceKind::Ip, 10).is_empty());
    // Successes never enter the lists.
    let ok = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::UNIX_EPOCH)
        .with_user("someone")
        .with_header("User-Agent", "ua")
        .with_login(LoginOutcome::Success);
    scorer.record(&ok, &Signals::default()).unwrap();
    assert!(scorer.top_failing_sources(0, SourceKind::Ip, 10).is_empty());
}
