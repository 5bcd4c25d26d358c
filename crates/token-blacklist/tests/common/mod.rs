//! Helpers shared by the integration tests that run against real redis-servers.
#![allow(dead_code)] // each test binary uses its own subset

use std::time::{Duration, Instant};

use palisade_core_traits::{RevocationStatus, TokenIdentity};
use palisade_token_blacklist::{Config, FailurePolicy, RedisBlacklist, RedisBlacklistBuilder};

/// `exp` far in the future, so lifetimes never end during a test.
pub(crate) const EXP: u64 = 4_000_000_000;

pub(crate) fn token(i: u32) -> TokenIdentity {
    TokenIdentity::new("https://idp.example")
        .with_subject(format!("user-{}", i % 7))
        .with_jti(format!("jti-{i}"))
        .with_issued_at(EXP - 1000)
        .with_expires_at(EXP)
}

/// A token nobody revoked.
pub(crate) fn unrevoked(sub: &str) -> TokenIdentity {
    TokenIdentity::new("https://idp.example")
        .with_subject(sub)
        .with_jti(format!("never-revoked-{sub}"))
        .with_issued_at(EXP - 1)
        .with_expires_at(EXP)
}

pub(crate) fn builder() -> RedisBlacklistBuilder {
    // Long timeouts: CI runs many tests in parallel on 2 cores.
    RedisBlacklist::builder()
        .timeout(Duration::from_secs(3))
        .heartbeat(Duration::from_millis(50))
        .fresh_within(Duration::from_secs(10))
        .repair_window(Duration::from_millis(300))
        .config(Config::default().max_token_lifetime(Duration::from_secs(3600)))
}

/// Polls until `cond` holds; fails the test after 30 s (a bound, not a measurement).
pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn revoked(bl: &RedisBlacklist, t: &TokenIdentity) -> bool {
    bl.check(t, FailurePolicy::Closed) == RevocationStatus::Revoked
}
