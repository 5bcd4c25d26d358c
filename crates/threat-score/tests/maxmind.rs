//! MaxMind lookups against MaxMind's test databases (facts from the shared MANIFEST).
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "maxmind")]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{Clock, LoginOutcome, ManualClock, RequestContext, Timestamp};
use palisade_threat_score::{
    Error, GeoLookup, MaxMindLookup, Signal, Signals, ThreatScorer, haversine_km,
};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/geoip")
        .join(name)
}

fn lookup() -> MaxMindLookup {
    MaxMindLookup::open(
        Some(&data("GeoLite2-City-Test.mmdb")),
        Some(&data("GeoLite2-ASN-Test.mmdb")),
    )
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn asn_and_city_facts() {
    let l = lookup();
    assert_eq!(l.lookup(ip("1.128.0.0")).asn, Some(1221));
    assert_eq!(l.lookup(ip("12.81.92.0")).asn, Some(7018));
    assert_eq!(l.lookup(ip("149.101.100.0")).asn, Some(6167));
    assert_eq!(l.lookup(ip("2600:6000::1")).asn, Some(237));
    let london = l.lookup(ip("81.2.69.142"));
    assert_eq!(london.asn, None);
    assert_eq!(london.country.as_deref(), Some("GB"));
    assert_eq!(london.location, Some((51.5142, -0.0931)));
    let linkoping = l.lookup(ip("89.160.20.112"));
    assert_eq!(linkoping.country.as_deref(), Some("SE"));
    assert_eq!(linkoping.location, Some((58.4167, 15.6167)));
    assert_eq!(l.lookup(ip("175.16.199.0")).country.as_deref(), Some("CN"));
    let none = l.lookup(ip("1.1.1.1"));
    assert_eq!((none.country, none.location), (None, None));
}

#[test]
fn london_to_linkoping_distance() {
    let l = lookup();
    let a = l.lookup(ip("81.2.69.142")).location.unwrap();
    let b = l.lookup(ip("89.160.20.112")).location.unwrap();
    // MANIFEST: 1,257.7 km with R = 6371.0088 km; we use R = 6371.0 km.
    let expected = 1_257.7 * 6_371.0 / 6_371.008_8;
    assert!(
        (haversine_km(a, b) - expected).abs() < 0.2,
        "{}",
        haversine_km(a, b)
    );
}

#[test]
fn impossible_travel_through_the_lookup() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let s = ThreatScorer::builder()
        .clock(clock.clone())
        .geo(Arc::new(lookup()))
        .build()
        .unwrap();
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
    let eve = |addr: &str| {
        RequestContext::new(ip(addr), clock.now())
            .with_user("eve")
            .with_header("User-Agent", ua)
    };
    s.record(
        &eve("81.2.69.142").with_login(LoginOutcome::Success),
        &Signals::default(),
    )
    .unwrap();
    // 1,258 km in 30 minutes: 2,515 km/h.
    clock.advance(Duration::from_secs(1_800));
    let t = s.score(&eve("89.160.20.112"));
    let c = t
        .contributions
        .iter()
        .find(|c| c.signal == Signal::ImpossibleTravel)
        .unwrap();
    assert!(c.risk > 0.8, "{c:?}");
    // The country changed too: the IP hierarchy is never seen for eve.
    assert!(t.freeman.unwrap().ip.never_seen);
}

#[test]
fn garbage_database_is_an_error() {
    let e = MaxMindLookup::from_bytes(Some(b"not a database".to_vec()), None).unwrap_err();
    assert!(matches!(e, Error::GeoDatabase { what: "city", .. }));
    assert!(std::error::Error::source(&e).is_some());
    let e = MaxMindLookup::open(Some(&data("missing.mmdb")), None).unwrap_err();
    assert!(matches!(e, Error::GeoFile { .. }), "{e}");
}
