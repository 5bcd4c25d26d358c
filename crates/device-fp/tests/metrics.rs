//! Feature `metrics`: the `palisade_device_fp_*_total` counters, read back from
//! metrics-util's `DebuggingRecorder` installed for this thread only.
#![cfg(all(feature = "metrics", feature = "tls"))]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use palisade_core_traits::{ManualClock, RequestContext, Timestamp, TlsInfo};
use palisade_device_fp::{
    DeviceFingerprint, DeviceStore, FingerprintInputs, FingerprintKey, InMemoryDeviceStore, Ja4,
    Ja4Acceptor, consistency_flags,
};
use tokio::io::{AsyncWriteExt, duplex};

/// Every counter's name, labels and value (a snapshot resets what it reports, so take one).
type Counters = Vec<(String, Vec<(String, String)>, u64)>;

fn counters(snapshotter: &Snapshotter) -> Counters {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()));
            let n = match value {
                DebugValue::Counter(n) => n,
                other => panic!("{} is not a counter: {other:?}", key.name()),
            };
            (key.name().to_owned(), labels.collect(), n)
        })
        .collect()
}

/// The counter `name` with exactly these labels (0 when never incremented).
fn counter(all: &Counters, name: &str, labels: &[(&str, &str)]) -> u64 {
    all.iter()
        .find(|(n, l, _)| {
            n == name
                && l.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .eq(labels.iter().copied())
        })
        .map_or(0, |c| c.2)
}

#[test]
fn fingerprints_flags_devices_and_ja4_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let key = FingerprintKey::new(&[9u8; 32]).unwrap();
        let store = InMemoryDeviceStore::builder()
            .max_devices_per_user(NonZeroUsize::new(1).unwrap())
            .clock(Arc::new(ManualClock::new(Timestamp::from_unix_secs(1))))
            .build()
            .unwrap();
        // a browser UA over a library's TLS, without Accept-Language: two flags
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
        let ctx = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(1))
            .with_header("User-Agent", chrome)
            .with_tls(TlsInfo::with_ja4("t13d131100_8daaf6152771_e5627efa2ab1"));
        let inputs = FingerprintInputs::from_request(&ctx);
        let flags = consistency_flags(&inputs, ctx.user_agent());
        let fp = DeviceFingerprint::compute(&key, &inputs);
        store.observe("alice", &fp, None, &flags); // new
        store.observe("alice", &fp, None, &flags); // known
        let curl = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(1))
            .with_header("User-Agent", "curl/8.5.0");
        let other = DeviceFingerprint::compute(&key, &FingerprintInputs::from_request(&curl));
        store.observe("alice", &other, None, &[]); // new, evicts the first

        let hello = common::client_hello(common::configs().1);
        Ja4::from_client_hello(&hello).unwrap();
        Ja4::from_client_hello(b"GET / HTTP/1.1").unwrap_err();
        Ja4::from_client_hello(&hello[..50]).unwrap_err();
    });
    let snap = counters(&snap);
    assert_eq!(
        counter(&snap, "palisade_device_fp_fingerprints_computed_total", &[]),
        2
    );
    for flag in ["library_tls_behind_browser_ua", "missing_accept_language"] {
        assert_eq!(
            counter(
                &snap,
                "palisade_device_fp_consistency_flags_total",
                &[("flag", flag)]
            ),
            1,
            "{flag}"
        );
    }
    assert_eq!(
        counter(
            &snap,
            "palisade_device_fp_consistency_flags_total",
            &[("flag", "headless_ua")]
        ),
        0
    );
    assert_eq!(
        counter(&snap, "palisade_device_fp_new_devices_total", &[]),
        2
    );
    assert_eq!(
        counter(&snap, "palisade_device_fp_devices_evicted_total", &[]),
        1
    );
    assert_eq!(
        counter(&snap, "palisade_device_fp_ja4_computed_total", &[]),
        1
    );
    for reason in ["not_client_hello", "truncated"] {
        assert_eq!(
            counter(
                &snap,
                "palisade_device_fp_ja4_failed_total",
                &[("reason", reason)]
            ),
            1,
            "{reason}"
        );
    }
}

#[test]
fn the_acceptor_counts_ja4_computed_and_failed_by_reason() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        // one thread: every increment happens where the recorder is installed
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (server, client) = common::configs();
            let acceptor = Ja4Acceptor::builder(server).build().unwrap();
            let hello = common::client_hello(client);
            // a ClientHello, then silence: JA4 computed, then the handshake times out
            let (mut c, s) = duplex(1 << 16);
            c.write_all(&hello).await.unwrap();
            acceptor.accept(s).await.unwrap_err();
            // not TLS
            let (mut c, s) = duplex(1 << 16);
            c.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
            acceptor.accept(s).await.unwrap_err();
            // silence from the start
            let (_c, s) = duplex(1 << 16);
            acceptor.accept(s).await.unwrap_err();
        });
    });
    let snap = counters(&snap);
    assert_eq!(
        counter(&snap, "palisade_device_fp_ja4_computed_total", &[]),
        1
    );
    assert_eq!(
        counter(&snap, "palisade_device_fp_tls_handshakes_failed_total", &[]),
        1
    );
    for reason in ["not_client_hello", "timeout"] {
        assert_eq!(
            counter(
                &snap,
                "palisade_device_fp_ja4_failed_total",
                &[("reason", reason)]
            ),
            1,
            "{reason}"
        );
    }
}
