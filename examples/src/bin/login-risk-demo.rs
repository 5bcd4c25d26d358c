//! device-fp feeding threat-score, wired here and nowhere else: the device trust that
//! palisade-device-fp computes for a login becomes the device familiarity that
//! palisade-threat-score weighs. Neither crate depends on the other.
//!
//! cargo run -p palisade-examples --bin login-risk-demo
#![allow(clippy::unwrap_used)] // a demo that unwraps stops loudly

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{Clock, LoginOutcome, ManualClock, RequestContext, Timestamp, TlsInfo};
use palisade_device_fp::{
    DeviceFingerprint, DeviceStore, FingerprintInputs, FingerprintKey, InMemoryDeviceStore,
    TrustPolicy, consistency_flags,
};
use palisade_threat_score::{GeoInfo, Signals, ThreatScorer};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36";

fn browser(clock: &ManualClock, ip: &str) -> RequestContext {
    RequestContext::new(ip.parse().unwrap(), clock.now())
        .with_user("alice")
        .with_header(
            "sec-ch-ua",
            "\"Chromium\";v=\"125\", \"Google Chrome\";v=\"125\"",
        )
        .with_header("sec-ch-ua-platform", "\"Windows\"")
        .with_header("User-Agent", CHROME)
        .with_header("Accept-Language", "en-GB,en;q=0.9")
        .with_tls(TlsInfo::with_ja4("t13d1516h2_8daaf6152771_e5627efa2ab1"))
}

/// A script that copies the browser's User-Agent but not its TLS or client hints.
fn script(clock: &ManualClock, ip: &str) -> RequestContext {
    RequestContext::new(ip.parse().unwrap(), clock.now())
        .with_user("alice")
        .with_header("User-Agent", CHROME)
        .with_tls(TlsInfo::with_ja4("t13d131100_8daaf6152771_e5627efa2ab1"))
}

fn main() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let key = FingerprintKey::new(b"demo-only-fingerprint-secret-32b!").unwrap();
    let devices = InMemoryDeviceStore::builder()
        .max_devices_per_user(NonZeroUsize::new(5).unwrap())
        .policy(TrustPolicy::default())
        .clock(clock.clone())
        .build()
        .unwrap();
    let scorer = ThreatScorer::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let home = GeoInfo {
        asn: Some(64_500),
        country: Some("GB".into()),
        location: Some((51.5, -0.1)),
    };
    let abroad = GeoInfo {
        asn: Some(64_999),
        country: Some("BR".into()),
        location: Some((-23.5, -46.6)),
    };

    let login = |label: &str, ctx: RequestContext, geo: &GeoInfo, succeeded: bool| {
        // device-fp: fingerprint, flags, and this user's trust in the device *before* this login.
        let inputs = FingerprintInputs::from_request(&ctx);
        let flags = consistency_flags(&inputs, ctx.user_agent());
        let fp = DeviceFingerprint::compute(&key, &inputs);
        let outcome = if succeeded {
            LoginOutcome::Success
        } else {
            LoginOutcome::Failure
        };
        let seen = devices.observe("alice", &fp, Some(outcome), &flags);
        // threat-score: the device trust is the device familiarity signal.
        let signals = Signals::default()
            .with_geo(geo.clone())
            .with_device_familiarity(seen.trust_before.score);
        let risk = scorer.score_with(&ctx, &signals);
        let flag_names: Vec<&str> = flags.iter().map(|f| f.name()).collect();
        println!(
            "{label:<34} device trust {:.2}  risk {:.3} -> {:?}  flags {flag_names:?}",
            seen.trust_before.score, risk.score, risk.verdict
        );
        if succeeded {
            scorer
                .record(&ctx.with_login(LoginOutcome::Success), &signals)
                .unwrap();
        }
    };

    for day in 1..=10 {
        login(
            &format!("alice's browser, day {day}"),
            browser(&clock, "198.51.100.7"),
            &home,
            true,
        );
        clock.advance(Duration::from_secs(86_400));
    }
    login(
        "same browser, new home address",
        browser(&clock, "198.51.100.99"),
        &home,
        true,
    );
    login(
        "script copying her UA, abroad",
        script(&clock, "203.0.113.9"),
        &abroad,
        false,
    );
}
