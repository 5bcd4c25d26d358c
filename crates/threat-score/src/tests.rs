//! Scorer-level tests and properties.
use std::time::Duration;

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;

use palisade_core_traits::{
    EventKind, EvidenceBasis, LoginOutcome, ManualClock, RequestContext, SecurityEvent, Subject,
    Timestamp,
};
use proptest::prelude::*;

use super::*;

/// One login attempt in these tests: the request context (user, peer, `User-Agent`)
/// and what the caller knows beside it.
#[derive(Debug, Clone)]
struct Login {
    ctx: RequestContext,
    signals: Signals,
}

impl Login {
    fn new(user: impl Into<String>, ip: IpAddr, user_agent: impl Into<String>) -> Self {
        Login {
            ctx: RequestContext::new(ip, Timestamp::UNIX_EPOCH)
                .with_user(user)
                .with_header("User-Agent", user_agent),
            signals: Signals::default(),
        }
    }

    fn with_geo(mut self, geo: GeoInfo) -> Self {
        self.signals.geo = Some(geo);
        self
    }

    fn with_device_familiarity(mut self, f: f64) -> Self {
        self.signals.device_familiarity = Some(f);
        self
    }

    fn with_numeric(mut self, x: impl Into<Vec<f64>>) -> Self {
        self.signals.numeric = x.into();
        self
    }

    fn outcome(&self, outcome: LoginOutcome) -> RequestContext {
        self.ctx.clone().with_login(outcome)
    }
}

/// The scorer's API applied to a [`Login`].
trait Logins {
    fn score_login(&self, a: &Login) -> ThreatScore;
    fn record_login(&self, a: &Login, outcome: LoginOutcome);
    fn event_login(
        &self,
        a: &Login,
        t: &ThreatScore,
        outcome: LoginOutcome,
    ) -> Option<SecurityEvent>;
}

impl Logins for ThreatScorer {
    fn score_login(&self, a: &Login) -> ThreatScore {
        self.score_with(&a.ctx, &a.signals)
    }

    fn record_login(&self, a: &Login, outcome: LoginOutcome) {
        self.record(&a.outcome(outcome), &a.signals).unwrap();
    }

    fn event_login(
        &self,
        a: &Login,
        t: &ThreatScore,
        outcome: LoginOutcome,
    ) -> Option<SecurityEvent> {
        self.event(&a.outcome(outcome), t)
    }
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap()
}

fn build(config: Config, clock: Arc<ManualClock>) -> Result<ThreatScorer, Error> {
    ThreatScorer::builder().config(config).clock(clock).build()
}

/// A scorer loaded from `state`.
fn load(config: Config, clock: Arc<ManualClock>, state: State) -> Result<ThreatScorer, Error> {
    ThreatScorer::builder()
        .config(config)
        .clock(clock)
        .state(state)
        .build()
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";

fn geo(asn: u32, cc: &str) -> GeoInfo {
    GeoInfo {
        asn: Some(asn),
        country: Some(cc.into()),
        location: None,
    }
}

fn scorer() -> (Arc<ManualClock>, ThreatScorer) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let s = build(Config::default(), clock.clone()).unwrap();
    (clock, s)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `n` users with `logins` each from their own home, alice among them.
fn populated(users: u32, logins: u32) -> (Arc<ManualClock>, ThreatScorer) {
    let (clock, s) = scorer();
    for _ in 0..logins {
        clock.advance(Duration::from_secs(3_600));
        for u in 0..users {
            let a = Login::new(
                format!("user{u}"),
                ip(&format!("10.0.{}.{}", u / 200, u % 200)),
                if u % 2 == 0 { FIREFOX } else { CHROME_WIN },
            )
            .with_geo(geo(64_500 + u % 20, if u % 3 == 0 { "DE" } else { "FR" }));
            s.record_login(&a, LoginOutcome::Success);
        }
    }
    (clock, s)
}

#[test]
fn failures_do_not_teach_the_history() {
    let (_, s) = scorer();
    let a = Login::new("alice", ip("192.0.2.1"), FIREFOX).with_geo(geo(1, "DE"));
    s.record_login(&a, LoginOutcome::Failure);
    s.record_login(&a, LoginOutcome::StepUpFailure);
    assert_eq!(s.stats().users, 0);
    assert!(s.score_login(&a).freeman.is_none());
    s.record_login(&a, LoginOutcome::Success);
    assert_eq!(s.stats().users, 1);
    assert_eq!(s.score_login(&a).freeman.unwrap().history, 1);
}

#[test]
fn no_history_is_explained() {
    let (_, s) = scorer();
    let t = s.score_login(&Login::new("nobody", ip("::1"), ""));
    assert_eq!(t.confidence, 0.0);
    assert_eq!(t.contributions.len(), 1);
    assert_eq!(t.contributions[0].signal, Signal::NoHistory);
    assert!((t.score - 0.3).abs() < 1e-12);
    assert_eq!(t.verdict, Verdict::Allow);
    assert!(
        s.event_login(
            &Login::new("nobody", ip("::1"), ""),
            &t,
            LoginOutcome::Success
        )
        .is_none()
    );
}

#[test]
fn familiar_allowed_stranger_stepped_up_with_event() {
    let (_, s) = populated(60, 20);
    let usual = Login::new("user0", ip("10.0.0.0"), FIREFOX).with_geo(geo(64_500, "DE"));
    let t = s.score_login(&usual);
    assert_eq!(t.verdict, Verdict::Allow, "{t:?}");
    assert!(t.score < 0.1, "{t:?}");
    assert_eq!(t.confidence, 1.0);
    let odd = Login::new("user0", ip("203.0.113.9"), "curl/8.0").with_geo(geo(9_999, "SG"));
    let t = s.score_login(&odd);
    assert!(t.verdict >= Verdict::StepUp, "{t:?}");
    let f = t.freeman.unwrap();
    assert!(f.ip.never_seen && f.ua.never_seen);
    assert_eq!(f.ip.factor, 4.0);
    let shares: f64 = t.contributions.iter().map(|c| c.share).sum();
    assert!((shares - 1.0).abs() < 1e-9);
    let ev = s.event_login(&odd, &t, LoginOutcome::Success).unwrap();
    assert_eq!(ev.kind, EventKind::AnomalousLogin);
    assert!(ev.evidence("ip_familiarity").is_some());
    assert_eq!(ev.score.unwrap().get(), t.score);
}

#[test]
fn brute_force_is_named_and_blocks() {
    let (_, s) = populated(10, 5);
    let a = Login::new("user1", ip("203.0.113.50"), CHROME_WIN).with_geo(geo(64_501, "FR"));
    for _ in 0..40 {
        s.record_login(&a, LoginOutcome::Failure);
    }
    let t = s.score_login(&a);
    assert_eq!(t.verdict, Verdict::Block, "{t:?}");
    assert_eq!(t.velocity.user_failures, 40);
    let ev = s.event_login(&a, &t, LoginOutcome::Failure).unwrap();
    assert!(matches!(
        ev.kind,
        EventKind::BruteForce | EventKind::CredentialStuffing
    ));
    // The source is what a response may act on (block it); the account is evidence.
    assert_eq!(ev.subject, Subject::ip(ip("203.0.113.50")));
    assert_eq!(ev.evidence("user"), Some("user1"));
}

/// 40 failures on user1's username, each from another address (spread over /24s
/// and ASNs): the owner's own login from home with the right password is stepped up,
/// not blocked, and its event is about the account, not the owner's address (which a
/// playbook would block). Before, the owner was denied and her address blamed.
#[test]
fn a_distributed_brute_force_neither_blocks_nor_blames_the_owner() {
    let (_, s) = populated(10, 5);
    for i in 0..40u32 {
        let attacker = Login::new(
            "user1",
            ip(&format!("198.{}.{}.7", 18 + i % 2, i)),
            CHROME_WIN,
        )
        .with_geo(geo(65_000 + i, "BR"));
        s.record_login(&attacker, LoginOutcome::Failure);
    }
    let owner = Login::new("user1", ip("10.0.0.1"), CHROME_WIN).with_geo(geo(64_501, "FR"));
    let t = s.score_login(&owner);
    assert_eq!(t.velocity.user_failures, 40);
    assert_eq!(t.velocity.ip_failures, 0);
    assert_eq!(t.verdict, Verdict::StepUp, "{t:?}");
    let brute_force = t
        .contributions
        .iter()
        .find(|c| c.signal == Signal::BruteForce);
    assert!(brute_force.unwrap().reason.contains("never block"), "{t:?}");
    let ev = s.event_login(&owner, &t, LoginOutcome::Success).unwrap();
    assert_eq!(ev.kind, EventKind::BruteForce);
    assert_eq!(ev.subject, Subject::user("user1"));
    assert_eq!(ev.evidence("ip"), Some("10.0.0.1"));
    // One attacker's own failed attempt is not blamed either: its address failed once.
    let one = Login::new("user1", ip("198.18.0.7"), CHROME_WIN).with_geo(geo(65_000, "BR"));
    let t = s.score_login(&one);
    let ev = s.event_login(&one, &t, LoginOutcome::Failure).unwrap();
    assert_eq!(ev.subject, Subject::user("user1"));
}

/// Failures from many addresses of one ASN make the stuffing signal; the reason names
/// the level that carries it, and an address of that ASN with no failures of its own
/// is not what the event blames.
#[test]
fn stuffing_carried_by_an_asn_is_explained_and_not_blamed_on_one_address() {
    let (_, s) = populated(10, 5);
    for i in 0..200u32 {
        let a = Login::new(
            format!("victim{i}"),
            ip(&format!("100.{}.{}.9", 64 + i % 50, i)),
            FIREFOX,
        )
        .with_geo(geo(64_999, "NL"));
        s.record_login(&a, LoginOutcome::Failure);
    }
    let next = Login::new("user2", ip("100.127.9.9"), FIREFOX).with_geo(geo(64_999, "NL"));
    let t = s.score_login(&next);
    let stuffing = t
        .contributions
        .iter()
        .find(|c| c.signal == Signal::CredentialStuffing)
        .unwrap();
    assert!(
        stuffing.reason.contains("0 from this IP"),
        "{}",
        stuffing.reason
    );
    assert!(
        stuffing.reason.contains("200 from its ASN"),
        "{}",
        stuffing.reason
    );
    if let Some(ev) = s.event_login(&next, &t, LoginOutcome::Success) {
        assert_ne!(ev.subject, Subject::ip(ip("100.127.9.9")), "{ev:?}");
    }
}

/// The velocity counters key a client as the family does (`client_net`): addresses
/// rotated inside one IPv6 /64 are one source, and so are the 6to4 addresses of one
/// IPv4 host (each of its 2^16 /64s) and that host itself.
#[test]
fn a_client_rotating_ipv6_addresses_is_one_source() {
    let (_, s) = scorer();
    for i in 0..30u32 {
        let a = Login::new(
            format!("victim{i}"),
            ip(&format!("2001:db8:1:2::{i:x}")),
            FIREFOX,
        );
        s.record_login(&a, LoginOutcome::Failure);
    }
    let next = s.score_login(&Login::new("victim99", ip("2001:db8:1:2:ffff::1"), FIREFOX));
    assert_eq!(next.velocity.ip_failures, 30);
    assert_eq!(next.velocity.ip_distinct_users, 30);
    assert!(next.velocity.ip_stuffing >= 0.5 && next.velocity.ip_spray >= 0.5);
    // One IPv4 host, 198.51.100.7, through 6to4 prefixes and then as itself.
    for i in 0..30u32 {
        let a = Login::new(
            format!("victim{i}"),
            ip(&format!("2002:c633:6407:{i:x}::1")),
            FIREFOX,
        );
        s.record_login(&a, LoginOutcome::Failure);
    }
    let itself = s.score_login(&Login::new("victim99", ip("198.51.100.7"), FIREFOX));
    assert_eq!(itself.velocity.ip_failures, 30);
    assert!(itself.velocity.ip_spray >= 0.5, "{:?}", itself.velocity);
    let top = s.top_failing_sources(0, SourceKind::Ip, 2);
    let sources: Vec<_> = top.iter().map(|h| h.source).collect();
    assert!(
        sources.contains(&FailureSource::Ip(ip("198.51.100.7"))),
        "{sources:?}"
    );
    assert!(
        sources.contains(&FailureSource::Ip(ip("2001:db8:1:2::"))),
        "{sources:?}"
    );
}

#[test]
fn impossible_travel() {
    let (clock, s) = scorer();
    let berlin = GeoInfo {
        location: Some((52.52, 13.40)),
        ..geo(3320, "DE")
    };
    let sydney = GeoInfo {
        location: Some((-33.87, 151.21)),
        ..geo(1221, "AU")
    };
    s.record_login(
        &Login::new("bob", ip("192.0.2.1"), FIREFOX).with_geo(berlin),
        LoginOutcome::Success,
    );
    clock.advance(Duration::from_secs(3_600));
    let t = s.score_login(&Login::new("bob", ip("198.51.100.1"), FIREFOX).with_geo(sydney.clone()));
    let travel = t
        .contributions
        .iter()
        .find(|c| c.signal == Signal::ImpossibleTravel)
        .unwrap();
    // ~16 000 km in one hour: 16× the 1000 km/h reference speed.
    assert!(travel.risk > 0.99, "{travel:?}");
    // A week later the same trip is plausible.
    clock.advance(Duration::from_secs(7 * 86_400));
    let t = s.score_login(&Login::new("bob", ip("198.51.100.1"), FIREFOX).with_geo(sydney));
    let travel = t
        .contributions
        .iter()
        .find(|c| c.signal == Signal::ImpossibleTravel)
        .unwrap();
    assert!(travel.risk < 0.1, "{travel:?}");
}

#[test]
fn mapped_addresses_and_spellings_of_a_user_share_one_history() {
    let (_, s) = scorer();
    // The owner logs in over a dual-stack listener (mapped form) as "Alice".
    let home = Login::new("Alice", ip("::ffff:192.0.2.1"), FIREFOX).with_geo(geo(1, "DE"));
    for _ in 0..5 {
        s.record_login(&home, LoginOutcome::Success);
    }
    assert_eq!(s.stats().users, 1);
    // The same address in IPv4 form, the same account in another spelling: familiar.
    let same = Login::new(" alice", ip("192.0.2.1"), FIREFOX).with_geo(geo(1, "DE"));
    let f = s.score_login(&same).freeman.unwrap();
    assert_eq!(f.history, 5);
    assert!(!f.ip.never_seen, "{f:?}");
    // Failures from the mapped form count against the IPv4 source.
    let attacker = Login::new("bob", ip("::ffff:203.0.113.9"), FIREFOX);
    for _ in 0..3 {
        s.record_login(&attacker, LoginOutcome::Failure);
    }
    let top = s.top_failing_sources(0, SourceKind::Ip, 1);
    assert_eq!(top[0].source, FailureSource::Ip(ip("203.0.113.9")));
    // Forgetting an account works whatever the spelling.
    s.forget_user("ALICE");
    assert_eq!(s.stats().users, 0);
}

#[test]
fn events_carry_the_evidence_basis_of_the_outcome() {
    let (clock, s) = scorer();
    let paris = GeoInfo {
        location: Some((48.86, 2.35)),
        ..geo(3215, "FR")
    };
    let sydney = GeoInfo {
        location: Some((-33.87, 151.21)),
        ..geo(1221, "AU")
    };
    for _ in 0..30 {
        clock.advance(Duration::from_secs(86_400));
        s.record_login(
            &Login::new("victim", ip("192.0.2.1"), FIREFOX).with_geo(paris.clone()),
            LoginOutcome::Success,
        );
    }
    clock.advance(Duration::from_secs(3_600));
    let far = Login::new("Victim", ip("::ffff:198.51.100.1"), CHROME_WIN).with_geo(sydney);
    let t = s.score_login(&far);
    assert!(t.verdict > Verdict::Allow, "{t:?}");
    // Someone failed a login on the username from afar: anyone can do that.
    let weak = s.event_login(&far, &t, LoginOutcome::Failure).unwrap();
    assert_eq!(weak.basis, EvidenceBasis::Unauthenticated);
    assert_eq!(weak.subject, Subject::user("victim"));
    assert_eq!(weak.evidence("ip"), Some("198.51.100.1"));
    assert_eq!(weak.evidence("outcome"), Some("failure"));
    // The password was accepted from there: that is about the account itself.
    for outcome in [
        LoginOutcome::Success,
        LoginOutcome::StepUpSuccess,
        LoginOutcome::StepUpFailure,
    ] {
        let strong = s.event_login(&far, &t, outcome).unwrap();
        assert_eq!(strong.basis, EvidenceBasis::Authenticated, "{outcome:?}");
    }
}

#[test]
fn haversine_known_distance() {
    // Paris (48.8566, 2.3522) to London (51.5074, -0.1278): 343.5 km (great circle, R = 6371 km).
    let d = haversine_km((48.8566, 2.3522), (51.5074, -0.1278));
    assert!((d - 343.5).abs() < 1.0, "{d}");
}

#[test]
fn new_device_raises_risk() {
    let (_, s) = populated(20, 10);
    let a = Login::new("user0", ip("10.0.0.0"), FIREFOX).with_geo(geo(64_500, "DE"));
    let known = s.score_login(&a.clone().with_device_familiarity(1.0));
    let new = s.score_login(&a.with_device_familiarity(0.0));
    assert!(new.score > known.score);
    assert!(
        new.contributions
            .iter()
            .any(|c| c.signal == Signal::NewDevice)
    );
}

#[test]
fn state_roundtrip_keeps_scores() {
    let (clock, s) = populated(30, 6);
    let json = serde_json::to_string(&s.state()).unwrap();
    let r = load(
        Config::default(),
        clock.clone(),
        serde_json::from_str(&json).unwrap(),
    )
    .unwrap();
    assert_eq!(r.stats().users, 30);
    assert_eq!(r.stats().memory_bytes, s.stats().memory_bytes);
    for a in [
        Login::new("user3", ip("10.0.0.3"), CHROME_WIN).with_geo(geo(64_503, "DE")),
        Login::new("user3", ip("203.0.113.1"), FIREFOX).with_geo(geo(1, "US")),
    ] {
        assert_eq!(r.score_login(&a).score, s.score_login(&a).score);
    }
    // A stored score of 0 (or subnormal) would make the user's typical score 0 and
    // every later login infinitely unusual: refused.
    for s in [0.0, 1e-40] {
        let mut bad: serde_json::Value = serde_json::from_str(&json).unwrap();
        bad["users"][0][1][0]["s"] = s.into();
        let loaded = load(
            Config::default(),
            clock.clone(),
            serde_json::from_value(bad).unwrap(),
        );
        assert!(
            matches!(loaded, Err(Error::InvalidState { .. })),
            "{s}: {loaded:?}"
        );
    }
    let mut bad: serde_json::Value = serde_json::from_str(&json).unwrap();
    bad["version"] = 99.into();
    assert!(matches!(
        load(
            Config::default(),
            clock,
            serde_json::from_value(bad).unwrap()
        ),
        Err(Error::StateVersion { found: 99, .. })
    ));
}

#[test]
fn memory_budget_is_held() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let cfg = Config {
        memory_budget_bytes: 64 << 10,
        ..Config::default()
    };
    let s = build(cfg, clock.clone()).unwrap();
    for u in 0..5_000u32 {
        clock.advance(Duration::from_secs(1));
        let a = Login::new(format!("u{u}"), IpAddr::from(u.to_be_bytes()), FIREFOX);
        s.record_login(&a, LoginOutcome::Success);
        assert!(s.stats().memory_bytes <= 64 << 10);
    }
    let st = s.stats();
    assert!(st.users > 100 && st.users < 5_000, "{st:?}");
    // Every user who went was counted.
    assert_eq!(st.evicted_users as usize + st.users, 5_000, "{st:?}");
    // The newest user is kept.
    assert!(
        s.score_login(&Login::new(
            "u4999",
            IpAddr::from(4999u32.to_be_bytes()),
            FIREFOX
        ))
        .freeman
        .is_some()
    );
}

#[test]
fn config_is_validated() {
    let clock = Arc::new(ManualClock::new(Timestamp::UNIX_EPOCH));
    let bad = Config {
        thresholds: Thresholds {
            monitor: 0.8,
            step_up: 0.7,
            block: 0.9,
        },
        ..Config::default()
    };
    match build(bad, clock.clone()) {
        // The reason names the value found.
        Err(Error::InvalidConfig {
            field: "thresholds",
            reason,
        }) => assert!(reason.contains("monitor: 0.8"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let bad = Config {
        calibration: Calibration {
            midpoint: f64::NAN,
            steepness: 1.0,
        },
        ..Config::default()
    };
    assert!(build(bad, clock.clone()).is_err());
    // Velocity: a threshold that would switch its window off unseen, and sketch sizes
    // that would be clamped (or overflow) where they were not refused.
    type Edit = fn(&mut crate::VelocityConfig);
    let velocity = |f: Edit| {
        let mut v = crate::VelocityConfig::default();
        f(&mut v);
        Config {
            velocity: v,
            ..Config::default()
        }
    };
    let cases: [(Edit, &str); 6] = [
        (
            |v| v.user_failures.0[0] = f64::NAN,
            "velocity.user_failures",
        ),
        (|v| v.ip_failures.0[1] = 0.0, "velocity.ip_failures"),
        (|v| v.distinct_users.0[2] = -5.0, "velocity.distinct_users"),
        (|v| v.width = usize::MAX / 2, "velocity.width"),
        (|v| v.depth = 0, "velocity.depth"),
        (|v| v.top_k = 0, "velocity.top_k"),
    ];
    for (f, name) in cases {
        match build(velocity(f), clock.clone()) {
            Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn calibration_and_thresholds() {
    let c = Calibration::default();
    assert_eq!(c.map(1.0), 0.5);
    assert_eq!(c.map(3.0), 0.75);
    assert_eq!(c.map(0.0), 0.0);
    assert_eq!(c.map(f64::NAN), 1.0);
    assert_eq!(c.map(f64::INFINITY), 1.0);
    let t = Thresholds::default();
    assert_eq!(t.verdict(0.49), Verdict::Allow);
    assert_eq!(t.verdict(0.5), Verdict::Monitor);
    assert_eq!(t.verdict(0.7), Verdict::StepUp);
    assert_eq!(t.verdict(0.9), Verdict::Block);
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from)
    ]
}

fn any_geo() -> impl Strategy<Value = Option<GeoInfo>> {
    proptest::option::of(
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(".{0,3}"),
            proptest::option::of((any::<f64>(), any::<f64>())),
        )
            .prop_map(|(asn, country, location)| GeoInfo {
                asn,
                country,
                location,
            }),
    )
}

fn any_attempt() -> impl Strategy<Value = Login> {
    (
        "[a-c]{0,2}",
        any_ip(),
        ".{0,40}",
        any_geo(),
        proptest::option::of(any::<f64>()),
    )
        .prop_map(|(user, ip, ua, geo, device_familiarity)| {
            let mut a = Login::new(user, ip, ua);
            a.signals.geo = geo;
            a.signals.device_familiarity = device_familiarity;
            a
        })
}

fn any_outcome() -> impl Strategy<Value = LoginOutcome> {
    prop_oneof![
        Just(LoginOutcome::Success),
        Just(LoginOutcome::Failure),
        Just(LoginOutcome::StepUpSuccess),
        Just(LoginOutcome::StepUpFailure)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Score in [0, 1], never NaN, shares in [0, 1], for any history and attempt.
    #[test]
    fn score_always_in_unit_interval(
        history in proptest::collection::vec((any_attempt(), any_outcome(), 0u64..100_000), 0..40),
        probe in any_attempt(),
        scaled in any::<bool>(),
    ) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
        let cfg = Config {
            user_scale: scaled.then_some(UserScale { window: nz(3), min_samples: nz(1), ..UserScale::default() }),
            ..Config::default()
        };
        let s = build(cfg, clock.clone()).unwrap();
        for (a, o, dt) in &history {
            clock.advance(Duration::from_secs(*dt));
            s.record_login(a, *o);
            let t = s.score_login(a);
            prop_assert!((0.0..=1.0).contains(&t.score), "{t:?}");
        }
        let t = s.score_login(&probe);
        prop_assert!((0.0..=1.0).contains(&t.score) && !t.score.is_nan(), "{t:?}");
        prop_assert!((0.0..=1.0).contains(&t.confidence));
        for c in &t.contributions {
            prop_assert!((0.0..=1.0).contains(&c.share) && (0.0..=1.0).contains(&c.risk), "{c:?}");
        }
        prop_assert_eq!(s.event_login(&probe, &t, LoginOutcome::Failure).is_some(), t.verdict > Verdict::Allow);
    }

    /// More failed attempts from a source never lower the risk of its next attempt.
    #[test]
    fn more_failures_never_lower_velocity_risk(
        background in proptest::collection::vec((0u8..4, 0u8..4, any::<bool>(), 0u64..120), 0..60),
        extra in 1usize..30,
        user in 0u8..4,
        src in 0u8..4,
    ) {
        let (clock, s) = scorer();
        let mk = |u: u8, i: u8| Login::new(format!("u{u}"), IpAddr::from([203, 0, 113, i]), FIREFOX).with_geo(geo(64_496 + u32::from(i % 2), "NL"));
        for (u, i, ok, dt) in &background {
            clock.advance(Duration::from_secs(*dt));
            s.record_login(&mk(*u, *i), if *ok { LoginOutcome::Success } else { LoginOutcome::Failure });
        }
        let probe = mk(user, src);
        let before = s.score_login(&probe);
        for k in 0..extra {
            s.record_login(&mk((user + k as u8) % 4, src), LoginOutcome::Failure);
        }
        let after = s.score_login(&probe);
        let v = |t: &ThreatScore| (t.velocity.brute_force, t.velocity.stuffing, t.velocity.spray);
        prop_assert!(after.velocity.stuffing >= before.velocity.stuffing, "{:?} -> {:?}", v(&before), v(&after));
        prop_assert!(after.velocity.spray >= before.velocity.spray);
        prop_assert!(after.velocity.brute_force >= before.velocity.brute_force);
        prop_assert!(after.score >= before.score, "{} -> {}", before.score, after.score);
    }

    /// A login identical to a long-standing pattern scores lower than the same login
    /// from a new country, ASN and browser.
    #[test]
    fn familiar_beats_new_country_asn_browser(
        others in 1u32..30,
        logins in 2u32..25,
        user in 0u32..30,
        new_asn in 100_000u32..200_000,
    ) {
        let user = user % others;
        let (_, s) = populated(others, logins);
        let home = Login::new(format!("user{user}"), ip(&format!("10.0.{}.{}", user / 200, user % 200)), if user % 2 == 0 { FIREFOX } else { CHROME_WIN })
            .with_geo(geo(64_500 + user % 20, if user % 3 == 0 { "DE" } else { "FR" }));
        // A new ASN and country come with a new address.
        let away = Login::new(
            format!("user{user}"),
            IpAddr::from((new_asn | 0xC000_0000).to_be_bytes()),
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
        )
        .with_geo(geo(new_asn, "BR"));
        let (h, a) = (s.score_login(&home), s.score_login(&away));
        prop_assert!(h.score < a.score, "{} vs {}", h.score, a.score);
    }
}

#[test]
fn record_needs_a_login_outcome() {
    let (_, s) = scorer();
    let a = Login::new("alice", ip("192.0.2.1"), FIREFOX).with_geo(geo(1, "DE"));
    // A context that is not a login attempt's outcome is refused, and nothing is counted.
    assert!(matches!(
        s.record(&a.ctx, &a.signals),
        Err(Error::NoLoginOutcome)
    ));
    assert_eq!(s.stats().users, 0);
    assert_eq!(s.score_login(&a).velocity.user_failures, 0);
    assert!(s.top_failing_sources(0, SourceKind::Ip, 1).is_empty());
    // With the outcome in `ctx.login`, the same attempt is learned.
    s.record(&a.outcome(LoginOutcome::Success), &a.signals)
        .unwrap();
    assert_eq!(s.stats().users, 1);
}

#[test]
fn an_event_without_an_outcome_is_unauthenticated() {
    let (_, s) = populated(60, 20);
    let odd = Login::new("user0", ip("::ffff:203.0.113.9"), "curl/8.0").with_geo(geo(9_999, "SG"));
    let t = s.score_login(&odd);
    assert!(t.verdict > Verdict::Allow, "{t:?}");
    // `odd.ctx` carries no login outcome: the weaker evidence, named "none".
    let ev = s.event(&odd.ctx, &t).unwrap();
    assert_eq!(ev.basis, EvidenceBasis::Unauthenticated);
    assert_eq!(ev.evidence("outcome"), Some("none"));
    assert_eq!(ev.evidence("ip"), Some("203.0.113.9"));
}

#[test]
fn a_state_does_not_print_its_key() {
    let (_, s) = populated(3, 2);
    let state = s.state();
    let json = serde_json::to_value(&state).unwrap();
    let shown = format!("{state:?}");
    for k in json["key"].as_array().unwrap() {
        assert!(!shown.contains(&k.to_string()), "{shown}");
    }
    assert!(shown.contains("users: 3"), "{shown}");
}

#[test]
fn a_snapshot_of_0_1_0_loads_as_a_state() {
    // Written by hand in 0.1.0's `Snapshot` format (version 1; no stored scores, no
    // detector): two logins of one user, the last with a location (f32-exact).
    let old = r#"{"version":1,"key":[11,22],"users":[[42,[
        {"at":1700000000,"v":[1,2,3,4,5,6,7],"loc":null},
        {"at":1700003600,"v":[1,2,3,4,5,6,7],"loc":[52.5,13.375]}]]]}"#;
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_007_200)));
    let s = load(Config::default(), clock, serde_json::from_str(old).unwrap()).unwrap();
    let st = s.stats();
    assert_eq!((st.users, st.logins), (1, 2));
    // 96 for the user, 2 × 64 for the logins, 7 × 24 for the distinct values.
    assert_eq!(st.memory_bytes, 96 + 2 * 64 + 7 * 24);
    // Saved again, it is the same document.
    let again = serde_json::to_value(s.state()).unwrap();
    let old: serde_json::Value = serde_json::from_str(old).unwrap();
    assert_eq!(again["version"], old["version"]);
    assert_eq!(again["key"], old["key"]);
    assert_eq!(again["users"], old["users"]);
}

mod behaviour;
mod user_scale;
