//! The `metrics` feature: every counter and gauge docs/token-blacklist.md lists,
//! recorded by metrics-util's `DebuggingRecorder` installed for this thread only
//! (`metrics::with_local_recorder`), with the replica's task on the same thread (a
//! current-thread runtime inside the closure).
#![cfg(all(feature = "metrics", feature = "redis"))]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::time::Duration;

use common::{builder, token, unrevoked, wait_until};
use metrics::{SharedString, Unit};
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade_core_traits::{RevocationStatus, Timestamp};
use palisade_testkit::RedisServer;
use palisade_token_blacklist::{FailurePolicy, MemoryBlacklist};

type Metrics = Vec<(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)>;

/// Everything recorded so far (a snapshot drains the recorder: take one).
fn recorded(snapshotter: &Snapshotter) -> Metrics {
    snapshotter.snapshot().into_vec()
}

/// The value of the counter or gauge `name` whose labels include all of `labels`
/// (summed over label sets), or `None` if never emitted.
fn value(snap: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for (key, _, _, v) in snap {
        let k = key.key();
        if k.name() != name
            || !labels
                .iter()
                .all(|(n, val)| k.labels().any(|l| l.key() == *n && l.value() == *val))
        {
            continue;
        }
        let x = match v {
            DebugValue::Counter(c) => *c as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(_) => continue,
        };
        found = Some(found.unwrap_or(0.0) + x);
    }
    found
}

#[test]
fn the_memory_blacklist_counts_checks_by_answer_and_revocations_by_scope() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let bl = MemoryBlacklist::builder().build().unwrap();
        bl.revoke_token(&token(1)).unwrap();
        bl.revoke_user(
            "https://idp.example",
            "mallory",
            Timestamp::from_unix_secs(common::EXP),
        )
        .unwrap();
        for _ in 0..3 {
            assert_eq!(bl.check(&token(1)), RevocationStatus::Revoked);
        }
        assert_eq!(bl.check(&unrevoked("x")), RevocationStatus::NotRevoked);
    });
    let snap = recorded(&snapshotter);
    let checks = "palisade_token_blacklist_checks_total";
    assert_eq!(value(&snap, checks, &[("answer", "revoked")]), Some(3.0));
    assert_eq!(
        value(&snap, checks, &[("answer", "not_revoked")]),
        Some(1.0)
    );
    let revocations = "palisade_token_blacklist_revocations_total";
    assert_eq!(value(&snap, revocations, &[("scope", "token")]), Some(1.0));
    assert_eq!(value(&snap, revocations, &[("scope", "user")]), Some(1.0));
    assert_eq!(
        value(&snap, "palisade_token_blacklist_entries", &[]),
        Some(2.0)
    );
}

#[test]
fn the_redis_replica_emits_resyncs_stale_answers_data_losses_repairs_and_freshness() {
    let server = RedisServer::start();
    let url = server.url();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let a = builder()
                .fresh_within(Duration::from_millis(300))
                .connect(&url)
                .await
                .unwrap();
            let b = builder().connect(&url).await.unwrap();
            a.revoke_token(&token(1)).await.unwrap();
            wait_until("b holds it", || {
                b.check(&token(1), FailurePolicy::Closed) == RevocationStatus::Revoked
            })
            .await;
            // Redis loses everything: a and b notice, one of them re-writes the record.
            assert_eq!(server.command(&["FLUSHALL"]).unwrap().text(), "OK");
            wait_until("loss noticed and repaired", || {
                a.stats().data_losses + b.stats().data_losses == 2
                    && a.stats().repaired + b.stats().repaired == 1
            })
            .await;
            // While a cannot prove freshness: Closed answers Unknown, Open answers.
            assert_eq!(
                a.check(&unrevoked("x"), FailurePolicy::Closed),
                RevocationStatus::Unknown
            );
            assert_eq!(
                a.check(&unrevoked("x"), FailurePolicy::Open),
                RevocationStatus::NotRevoked
            );
            wait_until("fresh again", || {
                a.check(&unrevoked("y"), FailurePolicy::Closed) == RevocationStatus::NotRevoked
            })
            .await;
            // A heartbeat or two later the gauges carry the current values.
            tokio::time::sleep(Duration::from_millis(200)).await;
        })
    });
    let snap = recorded(&snapshotter);
    let stale = "palisade_token_blacklist_stale_answers_total";
    assert!(value(&snap, stale, &[("policy", "closed"), ("answer", "unknown")]).unwrap() >= 1.0);
    assert!(
        value(
            &snap,
            stale,
            &[("policy", "open"), ("answer", "not_revoked")]
        )
        .unwrap()
            >= 1.0
    );
    let checks = "palisade_token_blacklist_checks_total";
    assert!(value(&snap, checks, &[("answer", "unknown")]).unwrap() >= 1.0);
    assert!(value(&snap, checks, &[("answer", "revoked")]).unwrap() >= 1.0);
    assert_eq!(
        value(&snap, "palisade_token_blacklist_data_losses_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        value(&snap, "palisade_token_blacklist_repaired_total", &[]),
        Some(1.0)
    );
    assert!(value(&snap, "palisade_token_blacklist_resyncs_total", &[]).unwrap() >= 4.0);
    assert!(value(&snap, "palisade_token_blacklist_messages_total", &[]).unwrap() >= 1.0);
    assert_eq!(
        value(
            &snap,
            "palisade_token_blacklist_revocations_total",
            &[("scope", "token")]
        ),
        Some(1.0)
    );
    // Both replicas hold the one record; both are fresh (a few heartbeats old).
    assert_eq!(
        value(&snap, "palisade_token_blacklist_entries", &[]),
        Some(1.0)
    );
    let fresh = value(&snap, "palisade_token_blacklist_freshness_seconds", &[]).unwrap();
    assert!(fresh.is_finite() && fresh < 10.0, "{fresh}");
}

#[test]
fn a_relay_counts_what_it_relayed_and_acknowledged_by_region() {
    let (server_a, server_b) = (RedisServer::start(), RedisServer::start());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let a = builder().connect(&server_a.url()).await.unwrap();
            let b = builder()
                .relayed_from("eu")
                .connect(&server_b.url())
                .await
                .unwrap();
            let relay = palisade_token_blacklist::Relay::builder()
                .region("eu")
                .probe_every(Duration::from_millis(50))
                .connect(&server_a.url(), &server_b.url())
                .await
                .unwrap();
            a.revoke_token(&token(1)).await.unwrap();
            wait_until("relayed and acknowledged", || {
                b.check(&token(1), FailurePolicy::Closed) == RevocationStatus::Revoked
                    && relay.stats().acknowledgements >= 2
            })
            .await;
        })
    });
    let snap = recorded(&snapshotter);
    let relayed = "palisade_token_blacklist_relayed_total";
    assert!(value(&snap, relayed, &[("region", "eu")]).unwrap() >= 1.0);
    let acks = "palisade_token_blacklist_relay_acks_total";
    assert!(value(&snap, acks, &[("region", "eu")]).unwrap() >= 2.0);
}
