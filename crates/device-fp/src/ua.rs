//! User-Agent parsing with uap-core's `regexes.yaml` (the ua-parser organisation's
//! `ua-parser` crate). The regexes are embedded in the binary (`uap-core/`, Apache-2.0,
//! see its `PROVENANCE.md`) and compiled once, on first use or by [`UserAgent::warm_up`].

use std::sync::LazyLock;

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use ua_parser::{Extractor, Regexes};

use crate::limits::MAX_HEADER_VALUE;

/// The uap-core release whose `regexes.yaml` is embedded.
pub const UAP_CORE_VERSION: &str = "0.18.0";

const REGEXES_YAML: &str = include_str!("../uap-core/regexes.yaml");

/// Compile uap-core's `regexes.yaml` (user agent, OS and device parsers).
fn build(yaml: &str) -> Result<Extractor<'static>, String> {
    let regexes: Regexes<'static> = yaml_serde::from_str(yaml).map_err(|e| e.to_string())?;
    Extractor::try_from(regexes).map_err(|e| e.to_string())
}

// The embedded file is fixed at compile time and `embedded_regexes_compile` (unit test
// below) proves it builds, so the `expect` cannot fire on any input.
static PARSER: LazyLock<Extractor<'static>> = LazyLock::new(|| {
    build(REGEXES_YAML).expect("embedded uap-core regexes.yaml compiles (unit-tested)")
});

/// Bytes of parsed User-Agents kept by [`UserAgent::parse`].
pub const UA_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Weighs an entry by its strings (the key and the parsed fields) plus a fixed
/// overhead, so the bound holds in bytes whatever the User-Agents' lengths.
#[derive(Clone)]
struct UaWeighter;

impl Weighter<Box<str>, UserAgent> for UaWeighter {
    fn weight(&self, key: &Box<str>, ua: &UserAgent) -> u64 {
        let strings = [
            &ua.category,
            &ua.browser,
            &ua.browser_version,
            &ua.os,
            &ua.os_version,
            &ua.device,
            &ua.skeleton,
        ];
        (key.len() + strings.iter().map(|s| s.len()).sum::<usize>() + 256) as u64
    }
}

/// Parsed User-Agents by their exact string. Real traffic repeats a few thousand
/// User-Agents and a parse costs tens of microseconds, a hit well under one. Parsing
/// is a pure function of the string, so a hit answers exactly what a parse would; a
/// spray of unique User-Agents only evicts (bounded by [`UA_CACHE_BYTES`]).
static PARSED: LazyLock<Cache<Box<str>, UserAgent, UaWeighter>> =
    LazyLock::new(|| Cache::with_weighter(8 * 1024, UA_CACHE_BYTES, UaWeighter));

/// OS families (uap-core names) that only run on desktops and laptops.
const DESKTOP_OS: [&str; 12] = [
    "Windows",
    "Mac OS X",
    "Linux",
    "Ubuntu",
    "Debian",
    "Fedora",
    "Red Hat",
    "SUSE",
    "Chrome OS",
    "FreeBSD",
    "OpenBSD",
    "NetBSD",
];
/// OS families (uap-core names) of phones and tablets (tablets are told apart first).
const MOBILE_OS: [&str; 10] = [
    "Android",
    "iOS",
    "Windows Phone",
    "BlackBerry OS",
    "BlackBerry Tablet OS",
    "Symbian OS",
    "Symbian^3",
    "Firefox OS",
    "KaiOS",
    "Tizen",
];

/// What the User-Agent says, as parsed with uap-core's regexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAgent {
    /// Browser or client family as uap-core names it (`Chrome`, `Chrome Mobile`,
    /// `Firefox`, `Mobile Safari`, `Edge`, `Other`).
    pub browser: String,
    /// Browser major version, when it has a numeric one.
    pub browser_major: Option<u32>,
    /// Full browser version (`major.minor.patch…`, the parts uap-core found).
    pub browser_version: String,
    /// OS family (`Windows`, `Mac OS X`, `Android`, `iOS`, `Other`).
    pub os: String,
    /// OS version (`major.minor…`, the parts uap-core found).
    pub os_version: String,
    /// Device category derived from uap-core's OS and device: `desktop`, `mobile`
    /// (phones), `tablet`, `crawler` or `other` (TVs, consoles, unknown clients).
    pub category: String,
    /// uap-core device family (`iPhone`, `Samsung SM-G960F`, `Mac`, `Spider`, `Other`).
    pub device: String,
    /// The UA with every word holding a digit replaced by `#`: drops versions and build
    /// ids, keeps products, platform, architecture and locale words, so that browser
    /// and OS updates leave it unchanged.
    pub skeleton: String,
}

fn join_version<'a>(parts: impl IntoIterator<Item = Option<&'a str>>) -> String {
    let mut v = String::new();
    for p in parts.into_iter().map_while(|p| p.filter(|p| !p.is_empty())) {
        if !v.is_empty() {
            v.push('.');
        }
        v.push_str(p);
    }
    v
}

/// `ua` with each word (a run of ASCII letters, digits, `.`, `_` and `-`) that holds a
/// digit replaced by `#`: versions (`124.0.6367.82`, `10_15_7`) and build ids
/// (`Build/QP1A.190711.020`, `Mobile/15E148`) go, words without digits (products,
/// platform, locale) stay.
fn skeleton(ua: &str) -> String {
    let mut out = String::with_capacity(ua.len());
    let is_word = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut rest = ua;
    while let Some(c) = rest.chars().next() {
        let len = rest.find(|c| !is_word(c)).unwrap_or(rest.len());
        if len == 0 {
            out.push(c);
            rest = &rest[c.len_utf8()..];
            continue;
        }
        let word = &rest[..len];
        if word.bytes().any(|b| b.is_ascii_digit()) {
            out.push('#');
        } else {
            out.push_str(word);
        }
        rest = &rest[len..];
    }
    out
}

/// Empty and oversized User-Agents are not parsed (the size bound keeps a hostile one
/// cheap).
fn parseable(ua: &str) -> bool {
    !ua.trim().is_empty() && ua.len() <= MAX_HEADER_VALUE
}

fn category(ua: &str, os: &str, device: &str) -> &'static str {
    if device == "Spider" {
        "crawler"
    } else if DESKTOP_OS.contains(&os) {
        "desktop"
    } else if device.contains("iPad")
        || device.contains("Tablet")
        // Android tablets drop the `Mobile` token that Android phones send
        || (os == "Android" && !ua.contains("Mobile"))
    {
        "tablet"
    } else if MOBILE_OS.contains(&os) {
        "mobile"
    } else {
        // TVs, consoles, e-readers, feature phones and unknown clients
        "other"
    }
}

impl UserAgent {
    /// Parse a User-Agent string; `None` for an empty or oversized one. Answers
    /// repeated strings from a bounded, process-wide cache.
    pub fn parse(ua: &str) -> Option<Self> {
        if !parseable(ua) {
            return None;
        }
        if let Some(hit) = PARSED.get(ua) {
            return Some(hit);
        }
        let parsed = Self::extract(ua);
        PARSED.insert(ua.into(), parsed.clone());
        Some(parsed)
    }

    /// [`UserAgent::parse`] without the cache: the regex parse every time (for
    /// measuring it, or for a caller that keeps its own cache).
    pub fn parse_uncached(ua: &str) -> Option<Self> {
        parseable(ua).then(|| Self::extract(ua))
    }

    fn extract(ua: &str) -> Self {
        let (agent, os, device) = PARSER.extract(ua);
        let (browser, browser_major, browser_version) = match agent {
            Some(a) => (
                a.family.into_owned(),
                a.major.and_then(|m| m.parse().ok()),
                join_version([a.major, a.minor, a.patch, a.patch_minor]),
            ),
            None => ("Other".to_owned(), None, String::new()),
        };
        let (os, os_version) = match os {
            Some(o) => {
                let v = join_version([
                    o.major.as_deref(),
                    o.minor.as_deref(),
                    o.patch.as_deref(),
                    o.patch_minor.as_deref(),
                ]);
                (o.os.into_owned(), v)
            }
            None => ("Other".to_owned(), String::new()),
        };
        let skeleton = skeleton(ua);
        let device = device.map_or_else(|| "Other".to_owned(), |d| d.device.into_owned());
        UserAgent {
            category: category(ua, &os, &device).to_owned(),
            browser,
            browser_major,
            browser_version,
            os,
            os_version,
            device,
            skeleton,
        }
    }

    /// Compile the shared parser now instead of on the first request (tens of
    /// milliseconds, see `docs/device-fp.md`); call it at start-up.
    pub fn warm_up() {
        LazyLock::force(&PARSER);
    }

    /// True for the big interactive browsers (what automation tends to pretend to be).
    pub fn is_browser(&self) -> bool {
        matches!(
            self.browser.as_str(),
            "Chrome"
                | "Chrome Mobile"
                | "Chrome Mobile iOS"
                | "Firefox"
                | "Firefox Mobile"
                | "Firefox iOS"
                | "Safari"
                | "Mobile Safari"
                | "Edge"
                | "Edge Mobile"
                | "Opera"
                | "Opera Mobile"
                | "Samsung Internet"
                | "IE"
                | "IE Mobile"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_parse_equals_a_fresh_one_and_the_cache_stays_bounded() {
        let uas = [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "curl/8.5.0",
        ];
        for ua in uas {
            let first = UserAgent::parse(ua).unwrap();
            let second = UserAgent::parse(ua).unwrap();
            assert_eq!(first, second);
            assert_eq!(Some(second), UserAgent::parse_uncached(ua));
        }
        // A spray of unique, long User-Agents never holds more than the byte bound.
        for i in 0..3_000 {
            UserAgent::parse(&format!("spray/{i} {}", "x".repeat(3_000))).unwrap();
        }
        assert!(PARSED.weight() <= UA_CACHE_BYTES, "{}", PARSED.weight());
        assert!(PARSED.len() < 3_000);
    }

    #[test]
    fn skeleton_drops_whole_version_runs() {
        assert_eq!(
            skeleton("(Macintosh; Intel Mac OS X 10_15_7) Chrome/124.0.6367.82 Safari/537.36"),
            "(Macintosh; Intel Mac OS X #) Chrome/# Safari/#"
        );
        assert_eq!(
            skeleton("Linux; Android 14; SM-G960F Build/QP1A.190711.020; wv; en-us"),
            "Linux; Android #; # Build/#; wv; en-us"
        );
        assert_eq!(skeleton("é1 .NET CLR x86_64"), "é# .NET CLR #");
        assert_eq!(skeleton(""), "");
    }

    #[test]
    fn embedded_regexes_compile() {
        assert!(build(REGEXES_YAML).is_ok());
    }

    #[test]
    fn a_broken_regexes_file_is_an_error() {
        let bad =
            "user_agent_parsers:\n  - regex: '(unclosed'\nos_parsers: []\ndevice_parsers: []\n";
        assert!(build(bad).is_err());
        assert!(build("not: [yaml").is_err());
    }
}
