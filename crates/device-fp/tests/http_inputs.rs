//! `FingerprintInputs::from_headers`: the same rules as `from_request`, straight
//! from an `http::HeaderMap`.
#![cfg(feature = "http")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use palisade_core_traits::{RequestContext, Timestamp};
use palisade_device_fp::{
    DeviceFingerprint, FingerprintInputs, FingerprintKey, MAX_HEADER_VALUE, MAX_HEADERS,
    consistency_flags,
};
use proptest::prelude::*;

const CHROME: [(&str, &str); 8] = [
    ("Host", "example.com"),
    (
        "sec-ch-ua",
        "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"",
    ),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Windows\""),
    (
        "User-Agent",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    ),
    ("Accept", "text/html"),
    ("Accept-Language", "de-DE,de;q=0.9,en;q=0.8"),
    ("Accept-Encoding", "gzip, deflate, br, zstd"),
];

fn ip() -> IpAddr {
    "192.0.2.1".parse().unwrap()
}

fn map(headers: &[(&str, &[u8])]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (n, v) in headers {
        m.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    m
}

fn context(headers: &[(&str, &str)]) -> RequestContext {
    let mut ctx = RequestContext::new(ip(), Timestamp::from_unix_secs(0));
    for (n, v) in headers {
        ctx = ctx.with_header(*n, *v);
    }
    ctx
}

#[test]
fn a_header_map_gives_the_inputs_and_fingerprint_of_the_same_request_context() {
    let bytes: Vec<(&str, &[u8])> = CHROME.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    let from_map = FingerprintInputs::from_headers(&map(&bytes), ip());
    let from_ctx = FingerprintInputs::from_request(&context(&CHROME));
    assert_eq!(from_map, from_ctx);
    // what a service and an earlier version of it computed stay the same device
    let key = FingerprintKey::new(&[7u8; 32]).unwrap();
    assert_eq!(
        DeviceFingerprint::compute(&key, &from_map),
        DeviceFingerprint::compute(&key, &from_ctx)
    );
    // read by hand: names lowercased in the order received, hints parsed
    assert_eq!(
        from_map.header_order[..3],
        ["host", "sec-ch-ua", "sec-ch-ua-mobile"]
    );
    assert_eq!(from_map.user_agent.as_ref().unwrap().browser, "Chrome");
    assert_eq!(
        from_map.client_hints.as_ref().unwrap().platform.as_deref(),
        Some("Windows")
    );
    assert_eq!(from_map.accept_language, ["de-de", "de", "en"]);
    assert!(from_map.problems.is_empty(), "{:?}", from_map.problems);
    assert_eq!(consistency_flags(&from_map, Some(CHROME[4].1)), []);
}

#[test]
fn the_client_address_is_kept_canonical_and_never_fingerprinted() {
    let bytes: Vec<(&str, &[u8])> = CHROME.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
    let a = FingerprintInputs::from_headers(&map(&bytes), mapped);
    assert_eq!(a.client_ip, Some("198.51.100.7".parse().unwrap()));
    // another network, the same device
    let b = FingerprintInputs::from_headers(&map(&bytes), "2001:db8::1".parse().unwrap());
    let key = FingerprintKey::new(&[7u8; 32]).unwrap();
    assert_eq!(
        DeviceFingerprint::compute(&key, &a),
        DeviceFingerprint::compute(&key, &b)
    );
}

#[test]
fn values_that_are_not_utf8_are_dropped_and_noted_not_a_panic() {
    // obs-text bytes are legal in an HTTP header value, but not UTF-8
    let f = FingerprintInputs::from_headers(
        &map(&[
            ("user-agent", b"Mozilla/5.0 \xff\xfe"),
            ("accept-language", b"en\x80"),
            ("sec-ch-ua-platform", b"\"Windows\""),
        ]),
        ip(),
    );
    assert!(f.user_agent.is_none());
    assert!(f.accept_language.is_empty());
    assert_eq!(
        f.problems,
        [("header", "value not UTF-8"), ("header", "value not UTF-8")]
    );
    assert_eq!(
        f.header_order,
        ["user-agent", "accept-language", "sec-ch-ua-platform"]
    );
    assert_eq!(f.client_hints.unwrap().platform.as_deref(), Some("Windows"));
}

#[test]
fn sizes_are_bounded_as_for_a_request_context() {
    let long = "x".repeat(MAX_HEADER_VALUE + 1);
    let mut m = map(&[
        ("user-agent", long.as_bytes()),
        ("accept-language", long.as_bytes()),
    ]);
    for i in 0..MAX_HEADERS + 10 {
        m.append(
            HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    let f = FingerprintInputs::from_headers(&m, ip());
    assert_eq!(f.header_order.len(), MAX_HEADERS);
    assert!(f.user_agent.is_none() && f.accept_language.is_empty());
    assert!(f.problems.contains(&("header", "value too long")));
    assert!(f.problems.contains(&("user-agent", "empty or too long")));
}

#[test]
fn repeated_names_are_grouped_in_the_header_order() {
    let f = FingerprintInputs::from_headers(
        &map(&[
            ("a", b"1"),
            ("cookie", b"x=1"),
            ("b", b"2"),
            ("cookie", b"y=2"),
        ]),
        ip(),
    );
    assert_eq!(f.header_order, ["a", "cookie", "cookie", "b"]);
}

proptest! {
    /// For any header names and value bytes: no panic, and, when every value is UTF-8
    /// and no name repeats, exactly the inputs of the same `RequestContext`.
    #[test]
    fn any_header_map_reads_like_its_request_context(
        headers in proptest::collection::vec(("[a-z][a-z0-9-]{0,12}", proptest::collection::vec(32u8..=255, 0..40)), 0..12),
        ua in proptest::option::of("[ -~]{0,80}"),
    ) {
        let mut pairs: Vec<(String, Vec<u8>)> = headers;
        if let Some(ua) = ua {
            pairs.push(("user-agent".to_owned(), ua.into_bytes()));
        }
        let mut m = HeaderMap::new();
        for (n, v) in &pairs {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_bytes(v)) {
                m.append(n, v);
            }
        }
        let f = FingerprintInputs::from_headers(&m, ip());
        let mut names: Vec<&str> = m.keys().map(|k| k.as_str()).collect();
        names.dedup();
        let utf8: Option<Vec<(&str, &str)>> = m
            .iter()
            .map(|(n, v)| Some((n.as_str(), std::str::from_utf8(v.as_bytes()).ok()?)))
            .collect();
        if let Some(utf8) = utf8.filter(|u| u.len() == names.len()) {
            prop_assert_eq!(f, FingerprintInputs::from_request(&context(&utf8)));
        }
    }
}
