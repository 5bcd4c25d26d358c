//! Replays the committed cargo-fuzz corpus of `token_blacklist_record` on stable,
//! through the same entry point as the fuzz target (feature `fuzzing`).
//!
//! Every file must parse or fail without panicking (a parsed record re-encodes to the
//! same bytes, asserted inside `parse_record`). Seeds named `ok-*` must parse; `bad-*`
//! must be rejected. Files the fuzzer adds only have to not panic.
#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::PathBuf;

use palisade_token_blacklist::fuzzing::token_blacklist_record as parse_record;

#[test]
fn fuzz_corpus_token_blacklist_record_replays() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/token_blacklist_record");
    let mut seen = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ok = parse_record(&std::fs::read(&path).unwrap());
        if name.starts_with("ok-") {
            assert!(ok, "{name} must parse");
            seen.0 += 1;
        } else if name.starts_with("bad-") {
            assert!(!ok, "{name} must be rejected");
            seen.1 += 1;
        } else {
            seen.2 += 1;
        }
    }
    assert!(
        seen.0 >= 6 && seen.1 >= 12,
        "corpus seeds missing: {seen:?}"
    );
}
