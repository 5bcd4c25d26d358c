//! Fingerprint inputs from request headers and client-reported info.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use palisade_core_traits::{ClientDeviceInfo, RequestContext, Timestamp, TlsInfo};
use palisade_device_fp::{
    Attribute, DeviceFingerprint, Error, FingerprintInputs, FingerprintKey, UserAgent,
    parse_sec_ch_ua,
};

const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

fn chrome(major: u32) -> RequestContext {
    let mut device = ClientDeviceInfo::default();
    device.screen = Some((1920, 1080));
    device.timezone = Some("Europe/Berlin".into());
    device.languages = vec!["de-DE".into(), "en".into()];
    RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(0))
        .with_header("Host", "example.com")
        .with_header("sec-ch-ua", format!("\"Chromium\";v=\"{major}\", \"Google Chrome\";v=\"{major}\", \"Not-A.Brand\";v=\"99\""))
        .with_header("sec-ch-ua-mobile", "?0")
        .with_header("sec-ch-ua-platform", "\"Windows\"")
        .with_header("User-Agent", CHROME_WIN.replace("124", &major.to_string()))
        .with_header("Accept-Language", "de-DE,de;q=0.9,en;q=0.8")
        .with_header("Accept-Encoding", "gzip, deflate, br, zstd")
        .with_tls(TlsInfo::with_ja4("t13d1516h2_8daaf6152771_e5627efa2ab1"))
        .with_device(device)
}

#[test]
fn reads_every_input() {
    let f = FingerprintInputs::from_request(&chrome(124));
    let ua = f.user_agent.as_ref().unwrap();
    assert_eq!(ua.browser, "Chrome");
    assert_eq!(ua.browser_major, Some(124));
    assert_eq!(ua.browser_version, "124.0.0.0");
    assert_eq!((ua.os.as_str(), ua.os_version.as_str()), ("Windows", "10"));
    assert_eq!(ua.category, "desktop");
    let ch = f.client_hints.as_ref().unwrap();
    assert_eq!(ch.brands.len(), 2, "Not-A.Brand dropped: {:?}", ch.brands);
    assert_eq!(ch.brand_major("Google Chrome"), Some(124));
    assert_eq!(ch.platform.as_deref(), Some("Windows"));
    assert_eq!(ch.mobile, Some(false));
    assert_eq!(f.accept_language, ["de-de", "de", "en"]);
    assert_eq!(f.accept_encoding, ["br", "deflate", "gzip", "zstd"]);
    assert_eq!(
        f.header_order[..3],
        ["host", "sec-ch-ua", "sec-ch-ua-mobile"]
    );
    assert_eq!(f.ja4.as_ref().unwrap().version(), "13");
    assert_eq!(f.screen, Some((1920, 1080)));
    assert!(f.problems.is_empty(), "{:?}", f.problems);
}

#[test]
fn user_agent_families_and_device_categories() {
    // (UA, browser family, major, OS family, category): real UAs, expectations by hand
    let cases = [
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mobile Safari",
            Some(17),
            "iOS",
            "mobile",
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
            "Mobile Safari",
            Some(16),
            "iOS",
            "tablet",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
            "Chrome Mobile",
            Some(124),
            "Android",
            "mobile",
        ),
        (
            "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.6312.99 Safari/537.36",
            "Chrome",
            Some(123),
            "Android",
            "tablet",
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Firefox",
            Some(125),
            "Mac OS X",
            "desktop",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
            "Edge",
            Some(124),
            "Windows",
            "desktop",
        ),
        (
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Googlebot",
            Some(2),
            "Other",
            "crawler",
        ),
        ("curl/8.5.0", "curl", Some(8), "Other", "other"),
    ];
    for (ua, browser, major, os, category) in cases {
        let p = UserAgent::parse(ua).unwrap();
        assert_eq!(
            (
                p.browser.as_str(),
                p.browser_major,
                p.os.as_str(),
                p.category.as_str()
            ),
            (browser, major, os, category),
            "{ua}"
        );
    }
    // a TV is not a phone: the mobile-hint flag has no opinion on it
    assert_eq!(
        UserAgent::parse("Roku/DVP-9.10 (519.10E04111A)")
            .unwrap()
            .category,
        "other"
    );
    assert_eq!(UserAgent::parse(""), None);
    assert_eq!(UserAgent::parse(&"a".repeat(5000)), None);
    // what no regex knows is "Other", not an error
    let unknown = UserAgent::parse("zz").unwrap();
    assert_eq!(
        (unknown.browser.as_str(), unknown.browser_major),
        ("Other", None)
    );
}

#[test]
fn bad_values_are_dropped_and_noted() {
    let mut device = ClientDeviceInfo::default();
    device.screen = Some((0, 99_999));
    let ctx = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(0))
        .with_header("sec-ch-ua", "Chromium;v=124")
        .with_header("sec-ch-ua-mobile", "yes")
        .with_header("sec-ch-ua-platform", "Windows")
        .with_header("User-Agent", "x".repeat(10_000))
        .with_tls(TlsInfo::with_ja4("t13d1516h2_nope"))
        .with_device(device);
    let f = FingerprintInputs::from_request(&ctx);
    let what: Vec<&str> = f.problems.iter().map(|p| p.0).collect();
    for w in [
        "sec-ch-ua",
        "sec-ch-ua-mobile",
        "sec-ch-ua-platform",
        "user-agent",
        "ja4",
        "screen",
        "header",
    ] {
        assert!(what.contains(&w), "{w} not noted: {what:?}");
    }
    assert!(f.user_agent.is_none() && f.ja4.is_none() && f.screen.is_none());
}

#[test]
fn sec_ch_ua_parsing() {
    assert_eq!(
        parse_sec_ch_ua(
            "\"Microsoft Edge\";v=\"123\", \"Not:A-Brand\";v=\"8\", \"Chromium\";v=\"123\""
        )
        .unwrap(),
        [
            ("Microsoft Edge".to_owned(), "123".to_owned()),
            ("Chromium".to_owned(), "123".to_owned())
        ]
    );
    assert!(parse_sec_ch_ua("\"a\"b\"").is_none());
}

#[test]
fn chrome_update_keeps_the_device_and_a_different_device_does_not_match() {
    let key = FingerprintKey::new(&[1u8; 32]).unwrap();
    let fp = |ctx: &RequestContext| {
        DeviceFingerprint::compute(&key, &FingerprintInputs::from_request(ctx))
    };
    let old = fp(&chrome(124));
    let r = old.matches(&fp(&chrome(125)));
    assert!(r.same_device, "{r:?}");
    assert!(r.similarity > 0.9 && r.similarity < 1.0);
    assert_eq!(r.differing, [Attribute::BrowserMajor]);
    assert_eq!(old.matches(&fp(&chrome(124))).similarity, 1.0);
    // a downgrade, or a jump of 3 majors, is not the same device
    assert!(!fp(&chrome(125)).matches(&old).same_device);
    assert!(!old.matches(&fp(&chrome(127))).same_device);
    // another screen (stable tier) is another device
    let mut other = chrome(124);
    other.device.as_mut().unwrap().screen = Some((1366, 768));
    let r = old.matches(&fp(&other));
    assert!(!r.same_device);
    assert_eq!(r.differing, [Attribute::Screen]);
    // another key gives unrelated hashes: a stolen store cannot be matched without the key
    let key2 = FingerprintKey::new(&[2u8; 32]).unwrap();
    let fp2 = DeviceFingerprint::compute(&key2, &FingerprintInputs::from_request(&chrome(124)));
    assert_ne!(fp2.tag(Attribute::Timezone), old.tag(Attribute::Timezone));
    assert!(!old.matches(&fp2).same_device);
}

#[test]
fn key_is_checked_and_never_printed() {
    match FingerprintKey::new(&[1u8; 31]) {
        Err(Error::InvalidConfig { field, reason }) => {
            assert_eq!(field, "fingerprint_key");
            assert!(reason.contains("31"), "{reason}");
        }
        other => panic!("a 31-byte key must be refused: {other:?}"),
    }
    let key = FingerprintKey::new(&[0x41u8; 32]).unwrap();
    assert_eq!(format!("{key:?}"), "FingerprintKey(<redacted>)");
}
