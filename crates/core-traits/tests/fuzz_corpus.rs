//! Replays the committed cargo-fuzz corpora of `security_event_json`,
//! `request_context_json` and `client_ip` on stable, through the same entry points as the fuzz targets (`fuzzing`, feature
//! `fuzzing`).
//!
//! Every file must be answered without a panic (an accepted event must round-trip
//! exactly). Seed files named `ok-*` must parse; seeds named `bad-*` must be rejected.
//! Files the fuzzer adds (hash names) only have to not panic.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::PathBuf;

use palisade_core_traits::{RequestContext, SecurityEvent};

#[test]
fn fuzz_corpus_security_event_json_replays() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/security_event_json");
    let mut seen = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        palisade_core_traits::fuzzing::security_event_json(&bytes);
        let parsed = SecurityEvent::from_json(&bytes);
        if name.starts_with("ok-") {
            let event = parsed.unwrap_or_else(|e| panic!("{name} must parse: {e}"));
            assert_eq!(
                SecurityEvent::from_json(event.to_json().as_bytes()).unwrap(),
                event
            );
            seen.0 += 1;
        } else if name.starts_with("bad-") {
            assert!(parsed.is_err(), "{name} must be rejected");
            seen.1 += 1;
        } else {
            seen.2 += 1;
        }
    }
    assert!(
        seen.0 >= 4 && seen.1 >= 10,
        "corpus seeds missing from {}: {seen:?}",
        dir.display()
    );
}

#[test]
fn fuzz_corpus_request_context_json_replays() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/request_context_json");
    let (mut ok, mut bad) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        palisade_core_traits::fuzzing::request_context_json(&bytes);
        let parsed = RequestContext::from_json(&bytes);
        if name.starts_with("ok-") {
            parsed.unwrap_or_else(|e| panic!("{name} must parse: {e}"));
            ok += 1;
        } else if name.starts_with("bad-") {
            assert!(parsed.is_err(), "{name} must be rejected");
            bad += 1;
        }
    }
    assert!(
        ok >= 3 && bad >= 8,
        "corpus seeds missing from {}: {ok} ok, {bad} bad",
        dir.display()
    );
}

/// The `client_ip` corpus: every file is answered without a panic (the entry point
/// asserts that every answer is canonical).
#[test]
fn fuzz_corpus_client_ip_replays() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/client_ip");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        palisade_core_traits::fuzzing::client_ip(&std::fs::read(&path).unwrap());
        seeds += 1;
    }
    assert!(seeds >= 5, "corpus seeds missing from {}", dir.display());
}
