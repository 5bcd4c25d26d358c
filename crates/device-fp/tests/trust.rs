//! Per-user device trust: store behaviour and trust invariants.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{LoginOutcome, ManualClock, RequestContext, Timestamp};
use palisade_device_fp::{
    ConsistencyFlag, DeviceFingerprint, DeviceRecord, DeviceStore, Error, FingerprintInputs,
    FingerprintKey, InMemoryDeviceStore, Stats, TrustPolicy,
};
use proptest::prelude::*;

fn fp(key: &FingerprintKey, ua: &str) -> DeviceFingerprint {
    let ctx = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(0))
        .with_header("User-Agent", ua)
        .with_header("Accept-Language", "en");
    DeviceFingerprint::compute(key, &FingerprintInputs::from_request(&ctx))
}

fn store(max: usize, clock: &ManualClock) -> InMemoryDeviceStore {
    InMemoryDeviceStore::builder()
        .max_devices_per_user(NonZeroUsize::new(max).unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn chrome(v: u32) -> String {
    format!(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
    )
}

#[test]
fn trust_grows_with_logins_and_mfa_decays_unseen_and_drops_on_flags() {
    let key = FingerprintKey::new(&[3u8; 32]).unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
    let store = store(4, &clock);
    let first = store.observe(
        "alice",
        &fp(&key, &chrome(124)),
        Some(LoginOutcome::Success),
        &[],
    );
    assert!(first.new_device);
    assert_eq!(first.trust_before.score, 0.0);
    let mut last = first.trust.score;
    for _ in 0..3 {
        clock.advance(Duration::from_secs(3600));
        let o = store.observe(
            "alice",
            &fp(&key, &chrome(124)),
            Some(LoginOutcome::Success),
            &[],
        );
        assert!(!o.new_device && o.device == first.device);
        assert!(o.trust.score > last);
        last = o.trust.score;
    }
    let mfa = store.observe(
        "alice",
        &fp(&key, &chrome(125)),
        Some(LoginOutcome::StepUpSuccess),
        &[],
    );
    assert!(!mfa.new_device, "browser update is the same device");
    assert!(mfa.trust.score > last);
    let high = mfa.trust.score;
    clock.advance(Duration::from_secs(60 * 86_400));
    let later = store.observe("alice", &fp(&key, &chrome(125)), None, &[]);
    assert!(
        (later.trust_before.score - high / 4.0).abs() < 1e-9,
        "two half-lives"
    );
    assert!(
        later
            .trust_before
            .reasons
            .iter()
            .any(|r| r.contains("unseen for 60 days"))
    );
    let flagged = store.observe(
        "alice",
        &fp(&key, &chrome(125)),
        None,
        &[ConsistencyFlag::UaVersionVsClientHints],
    );
    assert!(flagged.trust.score < flagged.trust_before.score * 0.51);
    // another user's store is separate
    assert!(
        store
            .observe("bob", &fp(&key, &chrome(125)), None, &[])
            .new_device
    );
}

/// A failed sighting that matched a known device (its Accept-Language and
/// Accept-Encoding differ: two drifting attributes, within the tolerance) does not
/// replace the device's stored fingerprint: an attacker's failed attempt cannot move
/// the victim's device toward the attacker's own requests.
#[test]
fn a_failed_sighting_does_not_replace_a_known_devices_fingerprint() {
    let key = FingerprintKey::new(&[3u8; 32]).unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
    let store = store(4, &clock);
    let sighting = |language: &str, encoding: &str, extra_header: bool| {
        let mut ctx =
            RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(0))
                .with_header("User-Agent", chrome(124))
                .with_header("Accept-Language", language)
                .with_header("Accept-Encoding", encoding);
        if extra_header {
            ctx = ctx.with_header("X-Requested-With", "x");
        }
        DeviceFingerprint::compute(&key, &FingerprintInputs::from_request(&ctx))
    };
    let victim = store.observe(
        "alice",
        &sighting("en", "gzip", false),
        Some(LoginOutcome::Success),
        &[],
    );
    assert!(victim.new_device);
    let attacker = store.observe(
        "alice",
        &sighting("fr", "br", false),
        Some(LoginOutcome::Failure),
        &[],
    );
    assert_eq!(
        attacker.device, victim.device,
        "two drifting attributes differ"
    );
    // One more difference from the victim's device (the header order), none from the
    // attacker's first request: had that been stored, this would match it.
    let o = store.observe(
        "alice",
        &sighting("fr", "br", true),
        Some(LoginOutcome::Failure),
        &[],
    );
    assert!(o.new_device, "the stored fingerprint is still the victim's");
}

/// A request that copies a known device's User-Agent but leaves out what else the
/// device sent (client hints, time zone, screen, JA4) is another device: it gets none
/// of the known device's trust, so it cannot skip a step-up that trust would skip.
#[test]
fn a_sighting_that_leaves_out_a_devices_attributes_is_another_device() {
    let key = FingerprintKey::new(&[3u8; 32]).unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
    let store = store(4, &clock);
    let ctx = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(0))
        .with_header("User-Agent", chrome(124))
        .with_header("Accept-Language", "en")
        .with_header(
            "Sec-CH-UA",
            r#""Chromium";v="124", "Google Chrome";v="124""#,
        )
        .with_header("Sec-CH-UA-Mobile", "?0")
        .with_header("Sec-CH-UA-Platform", r#""Windows""#);
    let mut inputs = FingerprintInputs::from_request(&ctx);
    inputs.timezone = Some("Europe/London".to_owned());
    inputs.screen = Some((1920, 1080));
    let rich = DeviceFingerprint::compute(&key, &inputs);
    let victim = store.observe("alice", &rich, Some(LoginOutcome::StepUpSuccess), &[]);
    for _ in 0..3 {
        store.observe("alice", &rich, Some(LoginOutcome::Success), &[]);
    }
    let trusted = store.observe("alice", &rich, None, &[]);
    assert_eq!(trusted.device, victim.device);
    assert!(
        trusted.trust_before.score > 0.5,
        "{:?}",
        trusted.trust_before
    );

    // Each attribute left out on its own is enough to tell the devices apart.
    let mut without_timezone = inputs.clone();
    without_timezone.timezone = None;
    let mut without_screen = inputs.clone();
    without_screen.screen = None;
    let mut without_hints = inputs.clone();
    without_hints.client_hints = None;
    for (left_out, sparse) in [
        ("timezone", without_timezone),
        ("screen", without_screen),
        ("client hints", without_hints),
    ] {
        let m = rich.matches(&DeviceFingerprint::compute(&key, &sparse));
        assert!(!m.same_device, "without its {left_out}: {m:?}");
        assert!(m.similarity < 1.0, "without its {left_out}: {m:?}");
    }
    // The User-Agent alone, as an attacker who knows the victim's browser sends it.
    let sparse = store.observe(
        "alice",
        &fp(&key, &chrome(124)),
        Some(LoginOutcome::Success),
        &[],
    );
    assert!(sparse.new_device);
    assert_eq!(sparse.trust_before.score, 0.0);
    // The other way round too: the sparse device's sighting does not match the rich one.
    assert!(!fp(&key, &chrome(124)).matches(&rich).same_device);
}

#[test]
fn spellings_of_one_account_share_its_devices() {
    let key = FingerprintKey::new(&[3u8; 32]).unwrap();
    let store = store(
        4,
        &ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)),
    );
    let device = fp(&key, &chrome(124));
    let first = store.observe("Alice", &device, Some(LoginOutcome::Success), &[]);
    assert!(first.new_device);
    // The login form sent " ALICE" this time: the same account, the same device.
    let again = store.observe(" ALICE", &device, Some(LoginOutcome::Success), &[]);
    assert!(!again.new_device);
    assert_eq!(again.device, first.device);
    assert_eq!(store.devices("alice").len(), 1);
    assert_eq!(store.devices("alice")[0].successful_logins, 2);
}

/// The store keeps at most `max_users` users: a new user in a full store forgets the
/// least recently seen one (here the sample covers every user), devices and all.
#[test]
fn bounded_in_users_and_the_least_recently_seen_forgotten() {
    let key = FingerprintKey::new(&[3u8; 32]).unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
    let store = InMemoryDeviceStore::builder()
        .max_users(NonZeroUsize::new(3).unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let device = fp(&key, &chrome(124));
    for user in ["alice", "u1", "u2"] {
        clock.advance(Duration::from_secs(60));
        store.observe(user, &device, Some(LoginOutcome::Success), &[]);
    }
    clock.advance(Duration::from_secs(60));
    assert!(!store.observe("alice", &device, None, &[]).new_device);
    clock.advance(Duration::from_secs(60));
    store.observe("u3", &device, Some(LoginOutcome::Success), &[]);
    let stats = store.stats();
    assert_eq!((stats.users, stats.devices, stats.evicted_users), (3, 3, 1));
    assert!(
        store.devices("u1").is_empty(),
        "the least recently seen goes"
    );
    for kept in ["alice", "u2", "u3"] {
        assert_eq!(store.devices(kept).len(), 1, "{kept}");
    }
    // A forgotten user's device is new again: no trust carried over.
    let again = store.observe("u1", &device, None, &[]);
    assert!(again.new_device);
    assert_eq!(again.trust_before.score, 0.0);
    assert_eq!(store.stats().users, 3);
}

#[test]
fn bounded_per_user_and_least_trusted_evicted() {
    let key = FingerprintKey::new(&[3u8; 32]).unwrap();
    let store = store(
        2,
        &ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)),
    );
    let trusted = store.observe(
        "u",
        &fp(&key, &chrome(124)),
        Some(LoginOutcome::StepUpSuccess),
        &[],
    );
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    let weak = store.observe("u", &fp(&key, firefox), None, &[]);
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    let third = store.observe("u", &fp(&key, iphone), None, &[]);
    let ids: Vec<_> = store.devices("u").iter().map(|d| d.id).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&trusted.device) && ids.contains(&third.device));
    assert!(!ids.contains(&weak.device));
}

#[test]
fn a_wall_clock_step_back_does_not_make_an_unseen_device_fresh() {
    let key = FingerprintKey::new(&[3u8; 32]).unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_secs(1_700_000_000));
    let store = store(4, &clock);
    let device = fp(&key, &chrome(124));
    let first = store.observe("alice", &device, Some(LoginOutcome::Success), &[]);
    // 60 days unseen (two half-lives), then NTP or an operator sets the clock back
    // to the last sighting: the device has still been away for 60 days
    clock.advance(Duration::from_secs(60 * 86_400));
    clock.set(Timestamp::from_unix_secs(1_700_000_000));
    let later = store.observe("alice", &device, None, &[]);
    assert_eq!(later.device, first.device);
    assert!(
        (later.trust_before.score - first.trust.score / 4.0).abs() < 1e-9,
        "{} vs {}",
        later.trust_before.score,
        first.trust.score
    );
    // the sighting is recorded at the later of the two times, so it stays consistent
    assert_eq!(
        store.devices("alice")[0].last_seen,
        Timestamp::from_unix_secs(1_700_000_000 + 60 * 86_400)
    );
}

#[test]
fn the_builder_refuses_a_policy_the_formula_cannot_mean() {
    type Spoil = fn(&mut TrustPolicy);
    let cases: [(&str, Spoil); 6] = [
        ("policy.login_weight", |p| p.login_weight = -0.1),
        ("policy.mfa_weight", |p| p.mfa_weight = f64::NAN),
        ("policy.flag_factor", |p| p.flag_factor = 1.5),
        ("policy.failure_factor", |p| p.failure_factor = -1.0),
        ("policy.half_life", |p| p.half_life = Duration::ZERO),
        ("policy.login_weight", |p| p.login_weight = f64::INFINITY),
    ];
    for (want, spoil) in cases {
        let mut policy = TrustPolicy::default();
        spoil(&mut policy);
        match InMemoryDeviceStore::builder().policy(policy).build() {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, want),
            other => panic!("{want}: {other:?}"),
        }
    }
    assert!(InMemoryDeviceStore::builder().build().is_ok());
}

#[test]
fn stats_count_sightings_new_and_evicted_devices() {
    let key = FingerprintKey::new(&[3u8; 32]).unwrap();
    let store = store(
        1,
        &ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)),
    );
    assert_eq!(store.stats(), Stats::default());
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    store.observe("u", &fp(&key, &chrome(124)), None, &[]);
    store.observe("u", &fp(&key, &chrome(124)), None, &[]);
    store.observe("u", &fp(&key, firefox), None, &[]); // evicts the Chrome
    store.observe("v", &fp(&key, firefox), None, &[]);
    let s = store.stats();
    assert_eq!(
        (
            s.observations,
            s.new_devices,
            s.evicted_devices,
            s.users,
            s.devices
        ),
        (4, 3, 1, 2, 2)
    );
}

fn record(logins: u32, mfa: u32, failures: u32, flags: u32, last_seen: u64) -> DeviceRecord {
    let key = FingerprintKey::new(&[3u8; 32]).unwrap();
    DeviceRecord {
        id: palisade_device_fp::DeviceId(1),
        fingerprint: fp(&key, &chrome(124)),
        first_seen: Timestamp::from_unix_secs(0),
        last_seen: Timestamp::from_unix_secs(last_seen),
        successful_logins: logins,
        mfa_completions: mfa,
        failures,
        flags,
    }
}

proptest! {
    #[test]
    fn trust_is_always_in_unit_interval(
        logins in any::<u32>(), mfa in any::<u32>(), failures in any::<u32>(), flags in any::<u32>(),
        last in 0u64..4_000_000_000, now in 0u64..4_000_000_000,
        lw in -10.0f64..10.0, mw in -10.0f64..10.0, ff in -2.0f64..2.0, half in 0u64..10_000_000,
    ) {
        let mut p = TrustPolicy::default();
        p.login_weight = lw;
        p.mfa_weight = mw;
        p.flag_factor = ff;
        p.failure_factor = ff;
        p.half_life = Duration::from_secs(half);
        for policy in [TrustPolicy::default(), p] {
            let s = policy.score(&record(logins, mfa, failures, flags, last), Timestamp::from_unix_secs(now)).score;
            prop_assert!((0.0..=1.0).contains(&s), "{s}");
        }
    }

    #[test]
    fn more_successful_logins_never_lower_trust(
        logins in 0u32..10_000, extra in 0u32..10_000, mfa in 0u32..100, failures in 0u32..100,
        flags in 0u32..20, last in 0u64..2_000_000_000, unseen in 0u64..100_000_000,
    ) {
        let policy = TrustPolicy::default();
        let now = Timestamp::from_unix_secs(last + unseen);
        let a = policy.score(&record(logins, mfa, failures, flags, last), now).score;
        let b = policy.score(&record(logins + extra, mfa, failures, flags, last), now).score;
        prop_assert!(b >= a, "{logins}+{extra}: {b} < {a}");
    }
}
