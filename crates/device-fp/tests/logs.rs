//! `tracing` at decisions: flags and devices are logged by name and id, never with a
//! header value or key material.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use palisade_core_traits::{ManualClock, RequestContext, Timestamp};
use palisade_device_fp::{
    DeviceFingerprint, DeviceStore, FingerprintInputs, FingerprintKey, InMemoryDeviceStore,
    consistency_flags,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every event's message and fields, as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut out = self.0.lock().unwrap();
        event.record(&mut Fields(&mut out));
        out.push('\n');
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn decisions_are_logged_without_header_values_or_keys() {
    let capture = Capture::default();
    let secret = [0x5au8; 32];
    let ua = "Mozilla/5.0 (Windows NT 10.0) HeadlessChrome/124.0.0.0 Safari/537.36 marker-ua-value";
    tracing::subscriber::with_default(capture.clone(), || {
        let key = FingerprintKey::new(&secret).unwrap();
        let store = InMemoryDeviceStore::builder()
            .max_devices_per_user(NonZeroUsize::new(2).unwrap())
            .clock(Arc::new(ManualClock::new(Timestamp::from_unix_secs(1))))
            .build()
            .unwrap();
        let ctx = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(1))
            .with_header("User-Agent", ua)
            .with_header("Accept-Language", "marker-language-value")
            .with_header("sec-ch-ua-mobile", "marker-hint-value");
        let inputs = FingerprintInputs::from_request(&ctx);
        let flags = consistency_flags(&inputs, ctx.user_agent());
        let fp = DeviceFingerprint::compute(&key, &inputs);
        store.observe("alice", &fp, None, &flags);
        store.observe("alice", &fp, None, &flags);
    });
    let logs = capture.0.lock().unwrap().clone();
    assert!(logs.contains("device anomaly"), "{logs}");
    assert!(
        logs.contains("headless_ua") && logs.contains("sec-ch-ua-mobile"),
        "{logs}"
    );
    assert!(
        logs.contains("new device") && logs.contains("known device"),
        "{logs}"
    );
    for leak in ["marker", "HeadlessChrome/124", "5a5a5a5a", "90, 90, 90"] {
        assert!(!logs.contains(leak), "{leak} in the logs: {logs}");
    }
}
