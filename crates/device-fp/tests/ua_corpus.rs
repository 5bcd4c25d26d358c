//! The User-Agent parser against uap-core's own expectations, and stability and
//! collision rates of fingerprints on that real corpus (uap-core 0.18.0's
//! `test_ua.yaml` / `test_os.yaml`, copied with their licence under `tests/data/uap-core/`).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};

use palisade_core_traits::{RequestContext, Timestamp};
use palisade_device_fp::{DeviceFingerprint, FingerprintInputs, FingerprintKey, UserAgent};
use serde::Deserialize;

const TEST_UA: &str = include_str!("data/uap-core/test_ua.yaml");
const TEST_OS: &str = include_str!("data/uap-core/test_os.yaml");

#[derive(Deserialize)]
struct Corpus {
    test_cases: Vec<Case>,
}

/// One uap-core test case: a UA and the family/version uap-core expects for it.
#[derive(Deserialize)]
struct Case {
    user_agent_string: String,
    family: String,
    major: Option<String>,
    minor: Option<String>,
    patch: Option<String>,
    patch_minor: Option<String>,
}

impl Case {
    fn version(&self) -> String {
        [&self.major, &self.minor, &self.patch, &self.patch_minor]
            .into_iter()
            .map_while(|p| p.as_deref().filter(|p| !p.is_empty()))
            .collect::<Vec<_>>()
            .join(".")
    }
}

fn cases(yaml: &str) -> Vec<Case> {
    yaml_serde::from_str::<Corpus>(yaml).unwrap().test_cases
}

/// Distinct UA strings of `test_ua.yaml`.
fn corpus() -> Vec<String> {
    let set: BTreeSet<String> = cases(TEST_UA)
        .into_iter()
        .map(|c| c.user_agent_string)
        .collect();
    set.into_iter().collect()
}

fn fingerprint(key: &FingerprintKey, ua: &str) -> DeviceFingerprint {
    let ctx = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(0))
        .with_header("User-Agent", ua);
    DeviceFingerprint::compute(key, &FingerprintInputs::from_request(&ctx))
}

#[test]
fn parser_agrees_with_uap_core_expectations() {
    let ua_cases = cases(TEST_UA);
    assert!(ua_cases.len() > 1400, "{} UA cases", ua_cases.len());
    let mut wrong = Vec::new();
    for c in &ua_cases {
        let p = UserAgent::parse(&c.user_agent_string).unwrap();
        // test_ua.yaml stops at `patch`; our version may add `patch_minor`
        let v = c.version();
        let version_ok = p.browser_version == v || p.browser_version.starts_with(&format!("{v}."));
        if p.browser != c.family || !version_ok {
            wrong.push((c.user_agent_string.clone(), p.browser, p.browser_version));
        }
    }
    assert!(wrong.is_empty(), "browser family/version wrong: {wrong:?}");

    let os_cases = cases(TEST_OS);
    assert!(os_cases.len() > 450, "{} OS cases", os_cases.len());
    let wrong: Vec<_> = os_cases
        .iter()
        .filter_map(|c| {
            let p = UserAgent::parse(&c.user_agent_string).unwrap();
            (p.os != c.family || p.os_version != c.version())
                .then(|| (c.user_agent_string.clone(), p.os, p.os_version))
        })
        .collect();
    assert!(wrong.is_empty(), "OS family/version wrong: {wrong:?}");
}

/// The UA with its browser's major version raised by one: each whole digit run equal to
/// the major is tried in turn, and the first rewrite the parser reads as the same browser
/// and OS with major + 1 is taken (so the OS version is never the one rewritten).
fn bump_major(ua: &str) -> Option<String> {
    let parsed = UserAgent::parse(ua)?;
    let major = parsed.browser_major?;
    let digits = major.to_string();
    let bytes = ua.as_bytes();
    let is_digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
    for (at, _) in ua.match_indices(&digits) {
        let end = at + digits.len();
        if (at > 0 && is_digit(at - 1)) || is_digit(end) {
            continue;
        }
        let bumped = format!("{}{}{}", &ua[..at], major + 1, &ua[end..]);
        let b = UserAgent::parse(&bumped)?;
        if b.browser == parsed.browser
            && b.browser_major == Some(major + 1)
            && (b.os.as_str(), b.os_version.as_str())
                == (parsed.os.as_str(), parsed.os_version.as_str())
        {
            return Some(bumped);
        }
    }
    None
}

#[test]
fn browser_major_bump_is_never_a_new_device() {
    let key = FingerprintKey::new(&[7u8; 32]).unwrap();
    let uas = corpus();
    assert!(uas.len() > 1400, "corpus has {} UAs", uas.len());
    let with_major = uas
        .iter()
        .filter(|u| UserAgent::parse(u).is_some_and(|p| p.browser_major.is_some()))
        .count();
    let mut bumped = 0;
    let mut new_device = Vec::new();
    for ua in &uas {
        let Some(next) = bump_major(ua) else { continue };
        bumped += 1;
        let r = fingerprint(&key, ua).matches(&fingerprint(&key, &next));
        if !r.same_device {
            new_device.push((ua.clone(), r.differing));
        }
    }
    println!(
        "{bumped} of {} profiles bumped ({with_major} have a numeric browser major)",
        uas.len()
    );
    assert!(bumped > 900, "only {bumped} profiles could be bumped");
    assert!(new_device.is_empty(), "false new device: {new_device:?}");
}

/// The UA with each version number (a digit, then digits, `.` and `_`) replaced by `#`:
/// two UAs with the same profile are one client on one platform at two versions.
fn profile(ua: &str) -> String {
    let mut out = String::with_capacity(ua.len());
    let mut in_version = false;
    for c in ua.chars() {
        in_version = c.is_ascii_digit() || (in_version && matches!(c, '.' | '_'));
        if !in_version {
            out.push(c);
        } else if !out.ends_with('#') {
            out.push('#');
        }
    }
    out
}

/// Ordered pairs of corpus UAs of the same browser family: (all pairs, matched), and
/// the same over distinct profiles only — pairs that differ in more than versions.
fn collisions(uas: &[String]) -> ((u64, u64), (u64, u64)) {
    let key = FingerprintKey::new(&[7u8; 32]).unwrap();
    let mut families: BTreeMap<String, Vec<(String, DeviceFingerprint)>> = BTreeMap::new();
    for ua in uas {
        let parsed = UserAgent::parse(ua).unwrap();
        if parsed.browser == "Other" {
            continue;
        }
        families
            .entry(parsed.browser)
            .or_default()
            .push((profile(ua), fingerprint(&key, ua)));
    }
    let (mut all, mut distinct) = ((0, 0), (0, 0));
    for fps in families.values() {
        for (i, (profile_a, a)) in fps.iter().enumerate() {
            for (j, (profile_b, b)) in fps.iter().enumerate() {
                if i == j {
                    continue;
                }
                let same = u64::from(a.matches(b).same_device);
                all = (all.0 + 1, all.1 + same);
                if profile_a != profile_b {
                    distinct = (distinct.0 + 1, distinct.1 + same);
                }
            }
        }
    }
    println!(
        "{} families; all pairs: {} of {} matched ({:.3}%); distinct profiles: {} of {} ({:.3}%)",
        families.len(),
        all.1,
        all.0,
        all.1 as f64 * 100.0 / all.0 as f64,
        distinct.1,
        distinct.0,
        distinct.1 as f64 * 100.0 / distinct.0 as f64
    );
    (all, distinct)
}

#[test]
fn distinct_profiles_of_one_browser_family_rarely_collide() {
    let (_, (pairs, matched)) = collisions(&corpus());
    assert!(pairs > 2_000, "{pairs} pairs");
    assert!(
        matched * 100 <= pairs,
        "{matched} of {pairs} distinct profiles matched"
    );
}
