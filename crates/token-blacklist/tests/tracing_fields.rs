//! Spans and events (and `Debug`) carry no token, identifier value or URL password: every field
//! of every span and event, at every level, is captured while revocations, checks,
//! a data loss, its repair and a lost subscription happen against a real Redis
//! reached with a password, then searched for the secrets.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::{builder, wait_until};
use palisade_core_traits::{RevocationStatus, Timestamp, TokenIdentity};
use palisade_testkit::RedisServer;
use palisade_token_blacklist::FailurePolicy;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Writes every span's name and fields and every event's fields, at every level.
#[derive(Clone, Default)]
struct Capture {
    text: Arc<Mutex<String>>,
    ids: Arc<AtomicU64>,
}

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
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut text = self.text.lock().unwrap();
        let _ = write!(text, "\nspan {}", span.metadata().name());
        span.record(&mut Fields(&mut text));
        Id::from_u64(self.ids.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Fields(&mut self.text.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = self.text.lock().unwrap();
        let _ = write!(text, "\nevent {}", event.metadata().level());
        event.record(&mut Fields(&mut text));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn no_span_or_event_carries_a_token_an_identifier_or_a_password() {
    let server = RedisServer::start();
    let acl = [
        "ACL",
        "SETUSER",
        "svc",
        "on",
        ">pw-SECRET-1",
        "~*",
        "&*",
        "+@all",
    ];
    assert_eq!(server.command(&acl).unwrap().text(), "OK");
    let url = format!("redis://svc:pw-SECRET-1@127.0.0.1:{}/", server.port());
    let capture = Capture::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(capture.clone(), || {
        rt.block_on(async {
            let a = builder().connect(&url).await.unwrap();
            let b = builder().connect(&url).await.unwrap();
            let t = TokenIdentity::new("https://iss-SECRET.example")
                .with_subject("sub-SECRET")
                .with_jti("jti-SECRET")
                .with_issued_at(common::EXP - 100)
                .with_expires_at(common::EXP);
            a.revoke_token(&t).await.unwrap();
            let memory = palisade_token_blacklist::MemoryBlacklist::builder()
                .build()
                .unwrap();
            memory.revoke_token(&t).unwrap();
            // Nor does `Debug` (a caller may log a validator holding the blacklist).
            let debug = format!("{a:?} {memory:?}");
            assert!(debug.contains("records: 1"), "{debug}");
            assert!(!debug.contains("SECRET"), "an identifier in Debug: {debug}");
            a.revoke_user(
                "https://iss-SECRET.example",
                "user-SECRET",
                Timestamp::from_unix_secs(common::EXP - 10),
            )
            .await
            .unwrap();
            wait_until("b holds it", || {
                b.check(&t, FailurePolicy::Closed) == RevocationStatus::Revoked
            })
            .await;
            assert_eq!(a.check_remote(&t).await.unwrap(), RevocationStatus::Revoked);
            // A data loss and its repair, then a lost subscription.
            assert_eq!(server.command(&["FLUSHALL"]).unwrap().text(), "OK");
            wait_until("repaired", || a.stats().repaired + b.stats().repaired == 2).await;
            let other = TokenIdentity::new("https://iss-SECRET.example")
                .with_subject("sub-SECRET")
                .with_jti("other-SECRET");
            let _ = a.check(&other, FailurePolicy::Open);
            let _ = a.check(&other, FailurePolicy::Closed);
            let resyncs = a.stats().resyncs;
            server
                .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
                .unwrap();
            wait_until("resubscribed", || a.stats().resyncs > resyncs).await;
        })
    });
    let text = capture.text.lock().unwrap().clone();
    // The capture works: the spans and the decisions are there.
    for expected in [
        "span token_blacklist.revoke",
        "span token_blacklist.resync",
        "span token_blacklist.repair",
        "span token_blacklist.subscribe",
        "span token_blacklist.check_remote",
        "redis lost revocation data",
    ] {
        assert!(text.contains(expected), "{expected} not traced:\n{text}");
    }
    assert!(!text.contains("SECRET"), "a secret was traced:\n{text}");
}
