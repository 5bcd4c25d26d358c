//! Replays the committed cargo-fuzz corpora of `hsm_keys_pkcs11_uri`,
//! `hsm_keys_pkcs8` and `hsm_keys_akp_jwk` on stable. Every file must be handled without panicking; seeds
//! named `ok-*` must be accepted and `bad-*` rejected. Files the fuzzer adds (hash
//! names) only have to not panic.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "fuzzing")]

use std::path::PathBuf;

use palisade_hsm_keys::fuzzing::{hsm_keys_akp_jwk, hsm_keys_pkcs8, hsm_keys_pkcs11_uri};

fn replay(target: &str, accept: impl Fn(&[u8]) -> bool) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seen = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let ok = accept(&std::fs::read(&path).unwrap());
        if name.starts_with("ok-") {
            assert!(ok, "{target}/{name} must be accepted");
            seen.0 += 1;
        } else if name.starts_with("bad-") {
            assert!(!ok, "{target}/{name} must be rejected");
            seen.1 += 1;
        }
    }
    assert!(
        seen.0 >= 4 && seen.1 >= 5,
        "seeds missing from {}: {seen:?}",
        dir.display()
    );
}

#[test]
fn fuzz_corpus_hsm_keys_pkcs11_uri() {
    replay("hsm_keys_pkcs11_uri", hsm_keys_pkcs11_uri);
}

#[test]
fn fuzz_corpus_hsm_keys_akp_jwk() {
    replay("hsm_keys_akp_jwk", hsm_keys_akp_jwk);
}

#[test]
fn fuzz_corpus_hsm_keys_pkcs8() {
    replay("hsm_keys_pkcs8", |data| hsm_keys_pkcs8(data) > 0);
}

/// The PKCS#8 parser behind `Pkcs11Store` imports is strict DER on its own (not only
/// because ring looked at the key first): each real key is accepted for its one
/// algorithm, and trailing bytes, a non-minimal length or a truncation are refused.
#[test]
fn the_pkcs8_parser_takes_real_keys_and_refuses_malformed_der() {
    let p256: &[u8] = include_bytes!("data/p256.pk8.der");
    for der in [
        p256,
        include_bytes!("data/p384.pk8.der"),
        include_bytes!("data/ed25519.pk8.der"),
        include_bytes!("data/rsa2048.pk8.der"),
    ] {
        assert_eq!(hsm_keys_pkcs8(der), 1);
    }
    assert_eq!(&p256[..2], &[0x30, 0x81]);
    let non_minimal = [&[0x30, 0x82, 0x00][..], &p256[2..]].concat();
    let trailing = [p256, &[0]].concat();
    for bad in [&trailing[..], &non_minimal, &p256[..p256.len() - 1]] {
        assert_eq!(hsm_keys_pkcs8(bad), 0);
    }
}
