//! Consistency flags on realistic and forged requests.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use palisade_core_traits::{RequestContext, Timestamp, TlsInfo};
use palisade_device_fp::{ConsistencyFlag as F, FingerprintInputs, consistency_flags};

const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";

fn req(headers: &[(&str, &str)], ja4: Option<&str>) -> Vec<F> {
    let mut ctx = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(0));
    for (n, v) in headers {
        ctx = ctx.with_header(*n, *v);
    }
    if let Some(j) = ja4 {
        ctx = ctx.with_tls(TlsInfo::with_ja4(j));
    }
    consistency_flags(&FingerprintInputs::from_request(&ctx), ctx.user_agent())
}

const CH: [(&str, &str); 3] = [
    (
        "sec-ch-ua",
        "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"",
    ),
    ("sec-ch-ua-mobile", "?0"),
    ("sec-ch-ua-platform", "\"Windows\""),
];
const BROWSER_JA4: &str = "t13d1516h2_8daaf6152771_e5627efa2ab1";

#[test]
fn a_consistent_chrome_raises_nothing() {
    let mut h = vec![("User-Agent", CHROME_WIN), ("Accept-Language", "en-US")];
    h.extend(CH);
    assert_eq!(req(&h, Some(BROWSER_JA4)), []);
    let h = [("User-Agent", FIREFOX_LINUX), ("Accept-Language", "en-US")];
    assert_eq!(req(&h, Some(BROWSER_JA4)), []);
}

#[test]
fn ua_and_client_hints_disagree() {
    let mac = CHROME_WIN.replace(
        "Windows NT 10.0; Win64; x64",
        "Macintosh; Intel Mac OS X 10_15_7",
    );
    let mut h = vec![("User-Agent", mac.as_str()), ("Accept-Language", "en")];
    h.extend(CH);
    assert_eq!(req(&h, None), [F::UaPlatformVsClientHints]);

    let old = CHROME_WIN.replace("124", "120");
    let mut h = vec![("User-Agent", old.as_str()), ("Accept-Language", "en")];
    h.extend(CH);
    assert_eq!(req(&h, None), [F::UaVersionVsClientHints]);

    let mut h = vec![("User-Agent", CHROME_WIN), ("Accept-Language", "en")];
    h.extend(CH);
    h[3] = ("sec-ch-ua-mobile", "?1");
    assert_eq!(req(&h, None), [F::UaMobileVsClientHints]);

    let h = [
        ("User-Agent", FIREFOX_LINUX),
        ("Accept-Language", "en"),
        ("sec-ch-ua-platform", "\"Linux\""),
    ];
    assert_eq!(req(&h, None), [F::ClientHintsFromNonChromium]);
}

#[test]
fn mobile_hint_follows_phones_not_tablets() {
    let hints = |mobile: &str, major: u32| {
        [
            (
                "sec-ch-ua",
                format!("\"Chromium\";v=\"{major}\", \"Google Chrome\";v=\"{major}\""),
            ),
            ("sec-ch-ua-mobile", String::from(mobile)),
            ("sec-ch-ua-platform", "\"Android\"".to_owned()),
            ("Accept-Language", "en".to_owned()),
        ]
    };
    let phone = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36";
    let tablet = "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.6312.99 Safari/537.36";
    let run = |ua: &str, mobile: &str, major: u32| {
        let hs = hints(mobile, major);
        let mut h: Vec<(&str, &str)> = hs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        h.push(("User-Agent", ua));
        req(&h, Some(BROWSER_JA4))
    };
    assert_eq!(run(phone, "?1", 124), []);
    assert_eq!(run(tablet, "?0", 123), []);
    assert_eq!(run(phone, "?0", 124), [F::UaMobileVsClientHints]);
    assert_eq!(run(tablet, "?1", 123), [F::UaMobileVsClientHints]);
    // a Linux distribution in the UA is still the "Linux" platform
    let ubuntu = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    let h = [
        ("User-Agent", ubuntu),
        ("Accept-Language", "en"),
        ("sec-ch-ua-platform", "\"Linux\""),
    ];
    assert_eq!(req(&h, None), []);
    // iOS browsers are WebKit and send no client hints, even Chrome's
    let crios = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1";
    let h = [
        ("User-Agent", crios),
        ("Accept-Language", "en"),
        ("sec-ch-ua-mobile", "?1"),
    ];
    assert_eq!(req(&h, None), [F::ClientHintsFromNonChromium]);
}

#[test]
fn headless_and_automation() {
    let headless = CHROME_WIN.replace("Chrome/", "HeadlessChrome/");
    assert!(
        req(
            &[("User-Agent", &headless), ("Accept-Language", "en")],
            None
        )
        .contains(&F::HeadlessUa)
    );
    for ua in [
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Go-http-client/1.1",
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
    ] {
        assert!(
            req(&[("User-Agent", ua)], None).contains(&F::AutomationUa),
            "{ua}"
        );
    }
}

#[test]
fn library_tls_behind_a_browser_ua() {
    let h = [("User-Agent", CHROME_WIN), ("Accept-Language", "en")];
    // what an HTTP/1.1-only library sends: no ALPN
    assert_eq!(
        req(&h, Some("t13d131100_8daaf6152771_e5627efa2ab1")),
        [F::LibraryTlsBehindBrowserUa]
    );
    assert_eq!(
        req(&h, Some("t12d1311h1_8daaf6152771_e5627efa2ab1")),
        [F::LibraryTlsBehindBrowserUa]
    );
    // the same JA4 behind curl's honest UA is not this flag
    assert_eq!(
        req(
            &[("User-Agent", "curl/8.5.0")],
            Some("t13d1311h1_8daaf6152771_e5627efa2ab1")
        ),
        [F::AutomationUa]
    );
}

#[test]
fn missing_language_and_malformed_input() {
    assert_eq!(
        req(&[("User-Agent", CHROME_WIN)], None),
        [F::MissingAcceptLanguage]
    );
    let h = [("User-Agent", CHROME_WIN), ("Accept-Language", "en")];
    assert_eq!(req(&h, Some("not-a-ja4")), [F::MalformedInput]);
    assert_eq!(
        F::LibraryTlsBehindBrowserUa.to_string(),
        "library_tls_behind_browser_ua"
    );
}
