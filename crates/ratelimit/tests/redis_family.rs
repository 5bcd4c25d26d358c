//! Redis the way users run it (TLS with their CA, their own `Client`) and the
//! `metrics` feature, against real redis-server processes from the testkit.
#![cfg(all(feature = "redis", feature = "tls", feature = "metrics"))]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_ratelimit::redis::{Client, TlsCertificates};
use palisade_ratelimit::{Denial, Error, FailurePolicy, Policy, Quota, RedisLimiter, nz};
use palisade_testkit::{RedisServer, unrelated_ca_pem};

fn tls_client(url: &str, ca_pem: &str) -> Client {
    Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(ca_pem.as_bytes().to_vec()),
        },
    )
    .unwrap()
}

fn policies() -> Vec<Policy> {
    vec![Policy::new("sec", Quota::per_second(nz!(2))).unwrap()]
}

#[tokio::test]
async fn checks_over_tls_with_the_servers_ca_and_a_wrong_ca_is_a_tls_error() {
    let server = RedisServer::start_tls();
    let url = server.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let ca = server.ca_pem().unwrap();
    let l = RedisLimiter::builder(policies())
        .timeout(Duration::from_secs(5))
        .connect_client(tls_client(&url, ca))
        .await
        .unwrap();
    assert!(l.check("alice", 1).await.unwrap().allowed);
    assert!(l.check("alice", 1).await.unwrap().allowed);
    let third = l.check("alice", 1).await.unwrap();
    assert_eq!(third.denial, Some(Denial::Limited));
    assert_eq!(l.stats().allowed, 2);
    // The same limiter through the `Limiter` trait: the same decision type.
    let via_trait = palisade_ratelimit::Limiter::check(&l, "alice", 1)
        .await
        .unwrap();
    assert_eq!(via_trait.denial, Some(Denial::Limited));

    let wrong = RedisLimiter::builder(policies())
        .connect_client(tls_client(&url, &unrelated_ca_pem()))
        .await
        .unwrap_err();
    assert!(matches!(wrong, Error::Tls(_)), "{wrong:?}");
}

#[test]
fn metrics_count_answers_failure_policy_decisions_and_the_breaker() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut server = RedisServer::start();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = RedisLimiter::builder(policies())
                .failure_policy(FailurePolicy::Open)
                .deny_cache_keys(0)
                .circuit_breaker(nz!(1), Duration::from_secs(60))
                .timeout(Duration::from_millis(300))
                .connect(&server.url())
                .await
                .unwrap();
            for _ in 0..3 {
                l.check("bob", 1).await.unwrap();
            }
            server.stop();
            let open = l.check("bob", 1).await.unwrap();
            assert!(open.allowed && open.failed_open, "{open:?}");
            let open = l.check("bob", 1).await.unwrap();
            assert!(open.failed_open, "{open:?}");
            assert!(l.is_circuit_open());
        });
    });
    let snap = snapshotter.snapshot().into_vec();
    let value = |name: &str, labels: &[(&str, &str)]| {
        snap.iter()
            .filter(|(k, ..)| {
                k.key().name() == name
                    && labels
                        .iter()
                        .all(|(n, v)| k.key().labels().any(|l| l.key() == *n && l.value() == *v))
            })
            .map(|(.., v)| match v {
                DebugValue::Counter(c) => *c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => f64::NAN,
            })
            .sum::<f64>()
    };
    let checks = "palisade_ratelimit_checks_total";
    assert_eq!(value(checks, &[("answer", "allowed")]), 2.0);
    assert_eq!(value(checks, &[("answer", "denied")]), 1.0);
    assert_eq!(
        value(
            "palisade_ratelimit_failure_policy_total",
            &[("policy", "open")]
        ),
        2.0
    );
    assert_eq!(value("palisade_ratelimit_redis_errors_total", &[]), 1.0);
    assert_eq!(value("palisade_ratelimit_breaker_opened_total", &[]), 1.0);
    assert_eq!(value("palisade_ratelimit_breaker_open", &[]), 1.0);
}
