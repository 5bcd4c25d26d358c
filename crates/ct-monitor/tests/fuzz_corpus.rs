//! Replays the committed cargo-fuzz corpora of the ct-monitor targets on stable,
//! through the same `fuzzing` entry points the targets call.
//!
//! Every file must be handled without panicking. Seeds named `ok-*` must parse
//! (the kind is in the name), seeds named `bad-*` must be rejected; files the fuzzer
//! added (hash names) only have to not panic. Where the public API can say whether
//! a seed parses, it is the oracle; for the internal parsers (signed notes, JSON
//! responses, tile paths) the entry point reports what parsed.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::io::Read;
use std::path::PathBuf;

use palisade_ct_monitor::fuzzing;
use palisade_ct_monitor::{
    DigitallySigned, ExtraData, Identifiers, MerkleTreeLeaf, parse_data_tile,
};

fn replay(target: &str, mut check: impl FnMut(&str, &[u8])) -> (usize, usize) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let (mut seeds, mut total) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        if name.starts_with("ok-") || name.starts_with("bad-") {
            check(&name, &bytes);
            seeds += 1;
        }
        total += 1;
    }
    (seeds, total)
}

/// A data tile, gunzipped here with flate2 when it is gzip.
fn gunzip(b: &[u8]) -> Option<Vec<u8>> {
    if !b.starts_with(&[0x1f, 0x8b]) {
        return Some(b.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .ok()
        .map(|_| out)
}

fn parses_as_tls(name: &str, b: &[u8]) -> bool {
    if name.contains("digitally-signed") {
        return DigitallySigned::from_tls(b).is_ok();
    }
    if name.contains("leaf") {
        let (leaf, extra) = fuzzing::split_leaf(b).unwrap();
        let leaf = MerkleTreeLeaf::parse(leaf);
        return leaf.is_ok_and(|l| ExtraData::parse(&l.entry, extra).is_ok());
    }
    gunzip(b).is_some_and(|t| parse_data_tile(&t).is_ok_and(|l| !l.is_empty()))
}

/// The kind a seed's name says it is, among the entry point's kinds.
fn kind_in_name<'a>(name: &str, kinds: &[(&str, &'a str)], default: &'a str) -> &'a str {
    kinds
        .iter()
        .find(|(word, _)| name.contains(word))
        .map_or(default, |(_, kind)| kind)
}

#[test]
fn fuzz_corpus_ct_tls_structures() {
    let (seeds, total) = replay("ct_tls_structures", |name, b| {
        let parsed = fuzzing::ct_tls_structures(b);
        let ok = parses_as_tls(name, b);
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
        let kind = kind_in_name(
            name,
            &[("digitally-signed", "digitally-signed"), ("leaf", "leaf")],
            "data tile",
        );
        assert_eq!(parsed.contains(&kind), ok, "{name}: {parsed:?}");
    });
    assert!(seeds >= 7 && total >= seeds, "{seeds} seeds of {total}");
}

#[test]
fn fuzz_corpus_ct_checkpoint() {
    let (seeds, _) = replay("ct_checkpoint", |name, b| {
        let ok = fuzzing::ct_checkpoint(b).contains(&"checkpoint");
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 8);
}

#[test]
fn fuzz_corpus_ct_identifiers() {
    let (seeds, _) = replay("ct_identifiers", |name, b| {
        let parsed = fuzzing::ct_identifiers(b);
        let ok = if name.contains("-tbs-") {
            Identifiers::from_tbs_der(b).is_ok()
        } else {
            Identifiers::from_certificate_der(b).is_ok()
        };
        let kind = if name.contains("-tbs-") {
            "tbs"
        } else {
            "certificate"
        };
        assert_eq!(parsed.contains(&kind), ok, "{name}: {parsed:?}");
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 12);
}

#[test]
fn fuzz_corpus_ct_responses() {
    let (seeds, _) = replay("ct_responses", |name, b| {
        let kind = kind_in_name(
            name,
            &[
                ("entries", "entries"),
                ("consistency", "consistency"),
                ("proof-by-hash", "proof-by-hash"),
                ("roots", "roots"),
            ],
            "tile path",
        );
        let ok = fuzzing::ct_responses(b).contains(&kind);
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 13);
}

#[test]
fn fuzz_corpus_ct_sct_list() {
    use palisade_ct_monitor::{Sct, embedded_scts, parse_sct_list};
    let (seeds, _) = replay("ct_sct_list", |name, b| {
        let parsed = fuzzing::ct_sct_list(b);
        let kind = kind_in_name(
            name,
            &[("-cert-", "embedded"), ("single-sct", "single sct")],
            "sct list",
        );
        let ok = if name.contains("-cert-") {
            embedded_scts(b).is_ok_and(|l| !l.is_empty())
        } else if name.contains("single-sct") {
            Sct::parse(b).is_ok()
        } else {
            parse_sct_list(b).is_ok()
        };
        assert_eq!(parsed.contains(&kind), ok, "{name}: {parsed:?}");
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 8);
}

#[test]
fn fuzz_corpus_ct_cosignature() {
    use palisade_ct_monitor::{Witness, WitnessPolicy};
    let policy = WitnessPolicy::builder()
        .witness(
            Witness::from_vkey(
                "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
            )
            .unwrap(),
        )
        .witness(
            Witness::from_vkey(
                "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
            )
            .unwrap(),
        )
        .threshold(std::num::NonZeroUsize::MIN)
        .build()
        .unwrap();
    let (seeds, _) = replay("ct_cosignature", |name, b| {
        fuzzing::ct_cosignature(b);
        let origin = std::str::from_utf8(b)
            .map(|s| s.split('\n').next().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(
            policy.verify(b, origin).is_ok(),
            name.starts_with("ok-"),
            "{name}"
        );
    });
    assert!(seeds >= 5);
}

#[test]
fn fuzz_corpus_ct_log_json() {
    use palisade_ct_monitor::LogList;
    let (seeds, _) = replay("ct_log_json", |name, b| {
        let parsed = fuzzing::ct_log_json(b);
        let ok = LogList::from_json(b).is_ok_and(|l| !l.logs.is_empty());
        assert_eq!(parsed.contains(&"log list"), ok, "{name}");
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 6);
}
