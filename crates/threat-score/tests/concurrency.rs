//! One scorer shared by reference between threads: what several threads record
//! concurrently ends exactly as the same records made one after another.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::IpAddr;
use std::sync::Arc;

use palisade_core_traits::{LoginOutcome, ManualClock, RequestContext, Timestamp};
use palisade_threat_score::{
    Config, GeoInfo, Signals, SourceKind, State, ThreatScore, ThreatScorer, VelocityConfig,
};

const THREADS: u8 = 4;
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

/// Thread `t`'s `i`-th attempt: its own users and addresses (so the order between
/// threads cannot matter), shared ASNs, countries and user agents (so the global
/// counts and velocity counters are written by every thread).
fn attempt(t: u8, i: u32) -> (RequestContext, Signals) {
    let user = format!("t{t}-user{}", i % 25);
    let ip = IpAddr::from([10, t, 0, (i % 8) as u8]);
    let outcome = if i % 7 == 6 {
        LoginOutcome::Failure
    } else {
        LoginOutcome::Success
    };
    let ctx = RequestContext::new(ip, Timestamp::UNIX_EPOCH)
        .with_user(user)
        .with_header(
            "User-Agent",
            if i.is_multiple_of(3) { CHROME } else { FIREFOX },
        )
        .with_login(outcome);
    let geo = GeoInfo {
        asn: Some(64_500 + i % 4),
        country: Some(if i.is_multiple_of(2) { "DE" } else { "FR" }.into()),
        location: None,
    };
    (ctx, Signals::default().with_geo(geo))
}

fn scorer(clock: &Arc<ManualClock>, config: &Config, state: Option<State>) -> ThreatScorer {
    let b = ThreatScorer::builder()
        .config(config.clone())
        .clock(clock.clone());
    match state {
        Some(s) => b.state(s),
        None => b,
    }
    .build()
    .unwrap()
}

/// The saved histories with users in a fixed order.
fn histories(s: &ThreatScorer) -> serde_json::Value {
    let mut v = serde_json::to_value(s.state()).unwrap();
    v["users"]
        .as_array_mut()
        .unwrap()
        .sort_by_key(|u| u[0].as_u64().unwrap());
    v
}

fn check(t: &ThreatScore) {
    assert!((0.0..=1.0).contains(&t.score) && !t.score.is_nan(), "{t:?}");
    assert!((0.0..=1.0).contains(&t.confidence), "{t:?}");
}

#[test]
fn concurrent_records_end_as_a_sequential_run() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let config = Config {
        velocity: VelocityConfig {
            width: 1 << 16,
            ..VelocityConfig::default()
        },
        ..Config::default()
    };
    let shared = Arc::new(scorer(&clock, &config, None));
    // The same hash key for the sequential run: start it from the empty state.
    let sequential = scorer(&clock, &config, Some(shared.state()));
    let n = 400;

    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let s = shared.clone();
            sc.spawn(move || {
                for i in 0..n {
                    let (ctx, signals) = attempt(t, i);
                    // Score another thread's attempt while it may be recorded.
                    let (other, other_signals) = attempt((t + 1) % THREADS, i);
                    check(&s.score_with(&other, &other_signals));
                    check(&s.score_with(&ctx, &signals));
                    s.record(&ctx, &signals).unwrap();
                }
            });
        }
    });
    for t in 0..THREADS {
        for i in 0..n {
            let (ctx, signals) = attempt(t, i);
            sequential.record(&ctx, &signals).unwrap();
        }
    }

    // Histories, global counts and velocity counters are the same. (Velocity reads
    // are count-min estimates, and a distinct failing user is counted when the
    // (source, user) pair's estimate is 0, so with sketch collisions the counts would
    // depend on the order of records even in one thread; the sketch here is wide
    // enough for this test's few hundred keys that a collision in all four rows has a
    // probability around 1e-9.)
    assert_eq!(shared.stats(), sequential.stats());
    assert_eq!(shared.stats().users, usize::from(THREADS) * 25);
    assert_eq!(histories(&shared), histories(&sequential));
    for t in 0..THREADS {
        for i in 0..25 {
            let (ctx, signals) = attempt(t, i);
            let (a, b) = (
                shared.score_with(&ctx, &signals),
                sequential.score_with(&ctx, &signals),
            );
            assert_eq!(a, b, "thread {t} attempt {i}");
            // Exact counts: the failures of this address, and its distinct users.
            let failed: Vec<RequestContext> = (0..n)
                .map(|j| attempt(t, j).0)
                .filter(|c| c.peer_ip == ctx.peer_ip && c.login == Some(LoginOutcome::Failure))
                .collect();
            let users: std::collections::HashSet<_> = failed.iter().map(|c| &c.user_id).collect();
            assert_eq!(a.velocity.ip_failures, failed.len() as u64);
            assert_eq!(a.velocity.ip_distinct_users, users.len() as u64);
        }
    }
    // The failing-source lists hold the same sources and counts (ties in any order).
    let sorted = |s: &ThreatScorer, window, kind| {
        let mut v: Vec<(u64, u64, String)> = s
            .top_failing_sources(window, kind, 100)
            .into_iter()
            .map(|h| (h.count, h.error, h.source.to_string()))
            .collect();
        v.sort();
        v
    };
    for (window, kind) in [
        (0, SourceKind::Ip),
        (1, SourceKind::Prefix),
        (2, SourceKind::Asn),
    ] {
        let listed = sorted(&shared, window, kind);
        assert!(!listed.is_empty());
        assert_eq!(listed, sorted(&sequential, window, kind));
    }
}

#[test]
fn the_memory_budget_holds_over_all_shards_under_concurrent_records() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let config = Config {
        memory_budget_bytes: 32 << 10,
        ..Config::default()
    };
    let s = scorer(&clock, &config, None);
    std::thread::scope(|sc| {
        for t in 0..THREADS {
            let s = &s;
            sc.spawn(move || {
                for u in 0..1_500u32 {
                    let ip = IpAddr::from([10, t, (u >> 8) as u8, u as u8]);
                    let ctx = RequestContext::new(ip, Timestamp::UNIX_EPOCH)
                        .with_user(format!("t{t}-u{u}"))
                        .with_header("User-Agent", FIREFOX)
                        .with_login(LoginOutcome::Success);
                    s.record(&ctx, &Signals::default()).unwrap();
                }
            });
        }
    });
    let st = s.stats();
    assert!(st.memory_bytes <= 32 << 10, "{st:?}");
    assert!(st.users > 50, "{st:?}");
    assert_eq!(st.evicted_users as usize + st.users, 4 * 1_500, "{st:?}");
    // The accounted totals agree with what is held.
    let saved = serde_json::to_value(s.state()).unwrap();
    let users = saved["users"].as_array().unwrap();
    assert_eq!(users.len(), st.users);
    let logins: usize = users.iter().map(|u| u[1].as_array().unwrap().len()).sum();
    assert_eq!(logins as u64, st.logins);
}
