//! Feature `metrics`: what the engine reports through the `metrics` facade, read back
//! with metrics-util's `DebuggingRecorder` installed for this thread only
//! (`metrics::with_local_recorder`), the monitor and the test log running on a
//! current-thread runtime inside it.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "metrics")]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade_core_traits::{ManualClock, Timestamp};
use palisade_ct_monitor::testlog::{Faults, Protocol, RetryAfter, TestLog};
use palisade_ct_monitor::{ClientConfig, Event, Health, Monitor, Watchlist};

/// Every metric as `name{label=value,…}` → value (gauges as whole numbers).
fn read(snapshotter: &Snapshotter) -> BTreeMap<String, u64> {
    snapshotter
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
            let value = match value {
                DebugValue::Counter(n) => n,
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                DebugValue::Gauge(g) => g.into_inner() as u64,
                DebugValue::Histogram(h) => h.len() as u64,
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), value)
        })
        .collect()
}

fn get(m: &BTreeMap<String, u64>, k: &str) -> u64 {
    *m.get(k)
        .unwrap_or_else(|| panic!("{k} missing from {m:#?}"))
}

async fn until(m: &mut Monitor, done: impl Fn(&Event) -> bool) {
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = m.next_event().await {
            if done(&e) {
                return;
            }
        }
    })
    .await;
    assert!(r.is_ok(), "timed out");
}

fn failing(e: &Event) -> bool {
    matches!(
        e,
        Event::Health {
            health: Health::Failing { .. },
            ..
        }
    )
}

#[test]
fn requests_entries_alerts_misbehaviour_and_gauges_are_reported() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The wall and monotonic clocks stand still unless the test moves them.
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_893_456_000)));
    let while_failing = metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let log = TestLog::start(Protocol::StaticCt, 300).await.unwrap();
            // Heads stamped on the monitor's clock, or they would be years old in 2030.
            log.set_clock(clock.clone());
            log.set_size(300).unwrap();
            // One 429 on the first request: one retry.
            log.set_faults(Faults {
                rate_limit: Some((1, RetryAfter::Seconds(0))),
                ..Faults::default()
            });
            let mut cfg = log.log_config();
            cfg.name = "navigli".into();
            let mut client = ClientConfig::default();
            client.backoff = Duration::from_millis(1);
            client.min_interval = Duration::ZERO;
            client.max_retries = 1;
            let mut m = Monitor::builder()
                .log(cfg)
                .watchlist(Watchlist::parse(".websrc.fr\n.herokuappdev.com\n").unwrap())
                .clock(clock.clone())
                .poll_interval(Duration::from_millis(20))
                .client_config(client)
                .spawn()
                .unwrap();
            until(&mut m, |e| {
                matches!(
                    e,
                    Event::Health {
                        health: Health::Ok,
                        ..
                    }
                )
            })
            .await;
            // Every poll now fails (two 429s each). After the first failure the
            // monotonic clock moves 30 s; the next failure reports 30 s since the
            // last good poll.
            log.set_faults(Faults {
                rate_limit: Some((u32::MAX, RetryAfter::Seconds(0))),
                ..Faults::default()
            });
            until(&mut m, failing).await;
            clock.advance(Duration::from_secs(30));
            until(&mut m, failing).await;
            let while_failing = read(&snapshotter);
            // The log recovers, then forks.
            log.set_faults(Faults::default());
            log.rewrite_leaf(3);
            log.set_size(300).unwrap();
            until(&mut m, |e| matches!(e, Event::LogMisbehaved(_))).await;
            m.shutdown().await;
            while_failing
        })
    });
    // A snapshot drains what it read: the counters are the sum of both, the gauges
    // as they stood while the polls failed.
    let mut m = read(&snapshotter);
    for (k, v) in &while_failing {
        if k.contains("_total{") {
            *m.entry(k.clone()).or_default() += v;
        }
    }
    let l = "log=navigli";
    assert_eq!(
        get(&m, &format!("palisade_ct_monitor_entries_total{{{l}}}")),
        300
    );
    // 66, 86 and 163 are the watched names among the first 300 entries.
    assert_eq!(
        get(&m, &format!("palisade_ct_monitor_matches_total{{{l}}}")),
        3
    );
    assert_eq!(
        get(
            &m,
            &format!("palisade_ct_monitor_alerts_total{{kind=discovered,{l}}}")
        ),
        3
    );
    assert_eq!(
        get(
            &m,
            &format!("palisade_ct_monitor_misbehaviour_total{{kind=fork,{l}}}")
        ),
        1
    );
    // Every 4xx here is a 429; each 429 but the last of a failing poll is retried.
    let limited = get(
        &m,
        &format!("palisade_ct_monitor_rate_limited_total{{{l}}}"),
    );
    assert_eq!(
        get(
            &m,
            &format!("palisade_ct_monitor_requests_total{{{l},status=4xx}}")
        ),
        limited
    );
    assert!(
        limited >= 5,
        "1 at the start, then 2 per failing poll: {limited}"
    );
    assert!(get(&m, &format!("palisade_ct_monitor_retries_total{{{l}}}")) >= 3);
    // Checkpoint, data tile 000 and the partial 001.p/44 at least.
    assert!(
        get(
            &m,
            &format!("palisade_ct_monitor_requests_total{{{l},status=2xx}}")
        ) >= 3
    );
    assert!(
        get(
            &m,
            &format!("palisade_ct_monitor_polls_total{{{l},outcome=ok}}")
        ) >= 1
    );
    assert!(
        get(
            &m,
            &format!("palisade_ct_monitor_polls_total{{{l},outcome=failed}}")
        ) >= 2
    );
    assert_eq!(
        get(
            &while_failing,
            &format!("palisade_ct_monitor_tree_size_verified{{{l}}}")
        ),
        300
    );
    assert_eq!(
        get(
            &while_failing,
            &format!("palisade_ct_monitor_lag_entries{{{l}}}")
        ),
        0
    );
    assert_eq!(
        get(
            &while_failing,
            &format!("palisade_ct_monitor_seconds_since_good_poll{{{l}}}")
        ),
        30
    );
}
