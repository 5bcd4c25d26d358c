//! The in-memory limiter's metric names, with a recording recorder (feature
//! `metrics`). The Redis limiter's are tested in `redis_family.rs`.
#![cfg(feature = "metrics")]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_core_traits::{ManualClock, Timestamp};
use palisade_ratelimit::{Denial, KeyedLimiter, Quota, nz};

#[test]
fn every_memory_check_moves_one_answer_of_checks_total() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_000));
    // The handles are registered at construction, with the recorder installed then.
    let limiter = metrics::with_local_recorder(&recorder, || {
        KeyedLimiter::with_clock(Quota::per_minute(nz!(2)), clock.clone()).with_max_keys(nz!(3))
    });
    let mut denials = Vec::new();
    let mut check = |key: u64, cost: u32| {
        let d = limiter.check(&key, cost).unwrap();
        denials.push(d.denial);
    };
    check(1, 1); // allowed
    check(1, 1); // allowed
    check(1, 1); // denied: the quota
    check(1, 3); // a cost above the burst
    limiter.block(2, Duration::from_secs(60));
    check(2, 1); // blocked
    check(3, 1); // allowed
    check(4, 1); // allowed: the third key
    check(5, 1); // the table is full of live keys
    assert_eq!(
        denials,
        [
            None,
            None,
            Some(Denial::Limited),
            Some(Denial::CostExceedsBurst),
            Some(Denial::Blocked),
            None,
            None,
            Some(Denial::TableFull),
        ]
    );

    let snap = snapshotter.snapshot().into_vec();
    let count = |answer: &str| {
        let mut found = snap.iter().filter(|(k, ..)| {
            let labels: Vec<_> = k
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            k.key().name() == "palisade_ratelimit_checks_total"
                && labels.contains(&("backend".into(), "memory".into()))
                && labels.contains(&("answer".into(), answer.into()))
        });
        let value = match found.next() {
            Some((.., DebugValue::Counter(c))) => *c,
            other => panic!("checks_total{{answer={answer}}}: {other:?}"),
        };
        assert!(found.next().is_none(), "one series per answer");
        value
    };
    assert_eq!(count("allowed"), 4);
    assert_eq!(count("denied"), 1);
    assert_eq!(count("cost_exceeds_burst"), 1);
    assert_eq!(count("blocked"), 1);
    assert_eq!(count("table_full"), 1);
    // The same checks as `stats()` counts them (denied there is every denial).
    let stats = limiter.stats();
    assert_eq!((stats.allowed, stats.denied), (4, 4));
}
