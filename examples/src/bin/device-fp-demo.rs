//! Fingerprints a few login requests for one user and shows device trust evolving:
//! a first login, repeat logins, MFA, a browser update (same device), a scripted
//! client copying the browser's User-Agent (flags, new device), and time passing.
//!
//! cargo run -p palisade-examples --bin device-fp-demo
#![allow(clippy::unwrap_used)] // a demo that unwraps stops loudly

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{Clock, LoginOutcome, ManualClock, RequestContext, Timestamp, TlsInfo};
use palisade_device_fp::{
    DeviceFingerprint, DeviceStore, FingerprintInputs, FingerprintKey, InMemoryDeviceStore,
    TrustPolicy, consistency_flags,
};

fn chrome(clock: &ManualClock, major: u32, outcome: LoginOutcome) -> RequestContext {
    RequestContext::new("198.51.100.7".parse().unwrap(), clock.now())
        .with_user("alice")
        .with_request("POST", "/login")
        .with_header("Host", "example.com")
        .with_header(
            "sec-ch-ua",
            format!("\"Chromium\";v=\"{major}\", \"Google Chrome\";v=\"{major}\", \"Not-A.Brand\";v=\"99\""),
        )
        .with_header("sec-ch-ua-mobile", "?0")
        .with_header("sec-ch-ua-platform", "\"Windows\"")
        .with_header(
            "User-Agent",
            format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36"),
        )
        .with_header("Accept-Language", "en-GB,en;q=0.9")
        .with_tls(TlsInfo::with_ja4("t13d1516h2_8daaf6152771_e5627efa2ab1"))
        .with_login(outcome)
}

fn main() {
    // In production: 32+ random bytes from your secret store, the same on every node.
    let key = FingerprintKey::new(b"demo-only-fingerprint-secret-32b!").unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
    let store = InMemoryDeviceStore::builder()
        .max_devices_per_user(NonZeroUsize::new(5).unwrap())
        .policy(TrustPolicy::default())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();

    let step = |label: &str, ctx: RequestContext| {
        let inputs = FingerprintInputs::from_request(&ctx);
        let flags = consistency_flags(&inputs, ctx.user_agent());
        let fp = DeviceFingerprint::compute(&key, &inputs);
        let o = store.observe("alice", &fp, ctx.login, &flags);
        let names: Vec<&str> = flags.iter().map(|f| f.name()).collect();
        println!(
            "{label:<42} device {:>2} new={:<5} similarity {:.2}  trust {:.2} -> {:.2}  flags {names:?}",
            o.device.0, o.new_device, o.similarity, o.trust_before.score, o.trust.score
        );
    };

    step(
        "first login, Chrome 124",
        chrome(&clock, 124, LoginOutcome::Success),
    );
    step(
        "MFA completed",
        chrome(&clock, 124, LoginOutcome::StepUpSuccess),
    );
    for day in 1..=3 {
        clock.advance(Duration::from_secs(86_400));
        step(
            &format!("login on day {day}"),
            chrome(&clock, 124, LoginOutcome::Success),
        );
    }
    clock.advance(Duration::from_secs(86_400));
    step(
        "Chrome updated to 125",
        chrome(&clock, 125, LoginOutcome::Success),
    );

    // a script copying Chrome's UA, but with an HTTP library's TLS (no ALPN) and no hints
    let script = RequestContext::new("203.0.113.9".parse().unwrap(), clock.now())
        .with_user("alice")
        .with_header("User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36")
        .with_tls(TlsInfo::with_ja4("t13d131100_8daaf6152771_e5627efa2ab1"))
        .with_login(LoginOutcome::Success);
    step("script with a copied UA (password right)", script);

    clock.advance(Duration::from_secs(90 * 86_400));
    step(
        "back after 90 days",
        chrome(&clock, 125, LoginOutcome::Success),
    );
    let last = store.devices("alice");
    println!(
        "alice has {} stored devices (keyed hashes only)",
        last.len()
    );
}
