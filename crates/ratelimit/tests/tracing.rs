//! The in-memory limiter's tracing, alone in its test binary.
//!
//! tracing caches each callsite's interest globally when the callsite is first hit. A
//! test thread that first hits the denial's callsite while this test installs its
//! subscriber can store "never" after the subscriber's rebuild (tracing-core 0.1.36,
//! `DefaultCallsite::register`), and the denial is then never seen. Alone in its
//! process, no other thread hits the callsite.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;

use palisade_core_traits::{ManualClock, Timestamp};
use palisade_ratelimit::{KeyedLimiter, Quota, nz};

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_nanos(1_700_000_000_000_000_000))
}

/// Collects the events emitted on this thread, as text: message and fields.
struct Events(std::sync::Mutex<Vec<String>>);

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 += &format!("{}={:?} ", field.name(), value);
            }
        }
        let mut text = Text(format!("{} ", event.metadata().level()));
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A denial is traced at debug level, with its retry time and without the key (an
/// address or a user id is not for the logs). An admitted check emits nothing.
#[test]
fn a_denial_is_traced_without_its_key() {
    let events = Arc::new(Events(std::sync::Mutex::new(Vec::new())));
    let limiter = KeyedLimiter::with_clock(Quota::per_second(nz!(1)), clock());
    let key = "user-7f3a9c".to_string();
    tracing::subscriber::with_default(events.clone(), || {
        assert!(limiter.check(&key, 1).unwrap().allowed);
        assert!(events.0.lock().unwrap().is_empty());
        assert!(!limiter.check(&key, 1).unwrap().allowed);
    });
    let events = events.0.lock().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("DEBUG "), "{}", events[0]);
    assert!(events[0].contains("rate limit denied"), "{}", events[0]);
    assert!(events[0].contains("retry_after=1s"), "{}", events[0]);
    assert!(!events[0].contains("7f3a9c"), "{}", events[0]);
}
