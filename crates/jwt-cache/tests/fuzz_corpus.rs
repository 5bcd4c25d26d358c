//! Replays the committed cargo-fuzz corpora of `jwt_cache_validate` and
//! `jwt_cache_akp_jwk` on stable.
//!
//! Every file must be validated without panicking, and the cached, repeated and
//! uncached answers must agree (checked inside `fuzzing::jwt_cache_validate`). Seeds named `ok-*`
//! must be accepted, `bad-*` refused; files the fuzzer adds only must not panic.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "fuzzing")]

use std::path::PathBuf;

use palisade_jwt_cache::fuzzing::{jwt_cache_akp_jwk, jwt_cache_validate};

#[test]
fn fuzz_corpus_jwt_cache_validate_replays() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/jwt_cache_validate");
    let mut seen = (0, 0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let accepted = jwt_cache_validate(&bytes);
        if name.starts_with("ok-") {
            assert!(accepted, "{name} must be accepted");
            seen.0 += 1;
        } else if name.starts_with("bad-") {
            assert!(!accepted, "{name} must be refused");
            seen.1 += 1;
        } else {
            seen.2 += 1;
        }
    }
    assert!(
        seen.0 >= 4 && seen.1 >= 20,
        "corpus seeds missing from {}: {seen:?}",
        dir.display()
    );
}

/// AKP (RFC 9964) JWKS documents: `ok-*` load (RFC 9964's own keys among them),
/// `bad-*` are refused (no alg, wrong alg, `pub` a byte short or long, `priv`
/// published, `use: enc`, ...); other files only must not panic.
#[test]
fn fuzz_corpus_jwt_cache_akp_jwk_replays() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/jwt_cache_akp_jwk");
    let mut seen = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let loaded = jwt_cache_akp_jwk(&std::fs::read(&path).unwrap());
        if name.starts_with("ok-") {
            assert!(loaded.is_some_and(|n| n > 0), "{name} must load");
            seen.0 += 1;
        } else if name.starts_with("bad-") {
            assert_eq!(loaded, None, "{name} must be refused");
            seen.1 += 1;
        }
    }
    assert!(seen.0 >= 5 && seen.1 >= 14, "seeds missing: {seen:?}");
}
