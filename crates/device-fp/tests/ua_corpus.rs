//! Stability and collision rates on a real User-Agent corpus (uap-core's
//! `test_ua.yaml`, copied with its licence under `tests/data/uap-core/`).
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::collections::{BTreeMap, BTreeSet};

use palisade_core_traits::{RequestContext, Timestamp};
use palisade_device_fp::{DeviceFingerprint, FingerprintInputs, FingerprintKey, UserAgent};

const CORPUS: &str = include_str!("data/uap-core/test_ua.yaml");

fn corpus() -> Vec<String> {
    let mut out = BTreeSet::new();
    for line in CORPUS.lines() {
        let Some(v) = line.trim().strip_prefix("- user_agent_string:") else {
            continue;
        };
        let v = v.trim();
        let ua = if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            s.replace("''", "'")
        } else if let Some(s) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            s.replace("\\\"", "\"").replace("\\\\", "\\")
        } else {
            v.to_owned()
        };
        out.insert(ua);
    }
    out.into_iter().collect()
}

fn fingerprint(key: &FingerprintKey, ua: &str) -> DeviceFingerprint {
    let ctx = RequestContext::new("192.0.2.1".parse().unwrap(), Timestamp::from_unix_secs(0))
        .with_header("User-Agent", ua);
    DeviceFingerprint::compute(key, &FingerprintInputs::from_request(&ctx))
}

/// The UA with the browser's major version raised by one, when the version woothee
/// reports appears verbatim in the string.
fn bump_major(ua: &str) -> Option<String> {
    let parsed = UserAgent::parse(ua)?;
    let major = parsed.browser_major?;
    let at = ua.find(&parsed.browser_version)?;
    let major_len = major.to_string().len();
    let bumped = format!("{}{}{}", &ua[..at], major + 1, &ua[at + major_len..]);
    (UserAgent::parse(&bumped)?.browser_major == Some(major + 1)).then_some(bumped)
}

#[test]
fn browser_major_bump_is_never_a_new_device() {
    let key = FingerprintKey::new(&[7u8; 32]).unwrap();
    let uas = corpus();
    assert!(uas.len() > 1000, "corpus has {} UAs", uas.len());
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
    println!("{bumped} of {} profiles bumped", uas.len());
    assert!(bumped > 200, "only {bumped} profiles could be bumped");
    assert!(new_device.is_empty(), "false new device: {new_device:?}");
}

#[test]
fn distinct_profiles_of_one_browser_family_rarely_collide() {
    let key = FingerprintKey::new(&[7u8; 32]).unwrap();
    let mut families: BTreeMap<String, Vec<DeviceFingerprint>> = BTreeMap::new();
    for ua in corpus() {
        let Some(parsed) = UserAgent::parse(&ua) else {
            continue;
        };
        if parsed.browser == "UNKNOWN" {
            continue;
        }
        families
            .entry(parsed.browser)
            .or_default()
            .push(fingerprint(&key, &ua));
    }
    let (mut pairs, mut collisions) = (0u64, 0u64);
    for fps in families.values() {
        for (i, a) in fps.iter().enumerate() {
            for (j, b) in fps.iter().enumerate() {
                if i != j {
                    pairs += 1;
                    collisions += u64::from(a.matches(b).same_device);
                }
            }
        }
    }
    let rate = collisions as f64 / pairs as f64;
    println!(
        "{collisions} collisions in {pairs} ordered pairs ({:.4}%), {} families",
        rate * 100.0,
        families.len()
    );
    assert!(pairs > 10_000);
    assert!(rate <= 0.01, "collision rate {rate}");
}
