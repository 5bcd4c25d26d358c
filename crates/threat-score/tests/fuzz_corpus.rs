//! Replays the committed cargo-fuzz corpus of the threat-score target on stable.
//!
//! Every file must be handled without panicking (the entry point asserts scores in
//! [0, 1], never NaN, events exactly above allow, snapshot round trips); seeds named
//! `ok-*` must be well-formed and `bad-*` not. Files the fuzzer added only have to not
//! panic.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::PathBuf;

#[test]
fn fuzz_corpus_threat_score_events() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/threat_score_events");
    let mut seen = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ok =
            palisade_threat_score::fuzzing::threat_score_events(&std::fs::read(&path).unwrap());
        if name.starts_with("ok-") {
            assert!(ok, "{name} must be well-formed");
            seen.0 += 1;
        } else if name.starts_with("bad-") {
            assert!(!ok, "{name} must be flagged malformed");
            seen.1 += 1;
        } else {
            seen.2 += 1;
        }
    }
    assert!(seen.0 >= 4 && seen.1 >= 4, "seeds missing: {seen:?}");
}
