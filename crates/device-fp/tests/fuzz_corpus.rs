//! Replays the committed cargo-fuzz corpora of the device-fp targets on stable.
//!
//! Every file must be handled without panicking; seeds named `ok-*` must be
//! accepted and seeds named `bad-*` refused. Files the fuzzer added only have to
//! not panic.
#![cfg(feature = "fuzzing")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::PathBuf;

fn replay(target: &str, accept: impl Fn(&[u8]) -> bool) -> (usize, usize, usize) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seen = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ok = accept(&std::fs::read(&path).unwrap());
        if name.starts_with("ok-") {
            assert!(ok, "{name} must be accepted");
            seen.0 += 1;
        } else if name.starts_with("bad-") {
            assert!(!ok, "{name} must be refused");
            seen.1 += 1;
        } else {
            seen.2 += 1;
        }
    }
    seen
}

#[test]
fn fuzz_corpus_device_fp_client_hello() {
    let seen = replay(
        "device_fp_client_hello",
        palisade_device_fp::fuzzing::client_hello,
    );
    assert!(seen.0 >= 4 && seen.1 >= 6, "seeds missing: {seen:?}");
}

#[test]
fn fuzz_corpus_device_fp_headers() {
    let seen = replay("device_fp_headers", palisade_device_fp::fuzzing::headers);
    assert!(seen.0 >= 4 && seen.1 >= 6, "seeds missing: {seen:?}");
}
