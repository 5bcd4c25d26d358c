//! Replays the committed cargo-fuzz corpora of the ct-monitor targets on stable.
//!
//! Every file must be handled without panicking. Seeds named `ok-*` must parse
//! (the kind is in the name), seeds named `bad-*` must be rejected; files the fuzzer
//! added (hash names) only have to not panic.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::PathBuf;

use palisade_ct_monitor::checkpoint::{Checkpoint, SignedNote};
use palisade_ct_monitor::entry::{decode_tile, parse_data_tile};
use palisade_ct_monitor::identifiers::{from_certificate_der, from_tbs_der};
use palisade_ct_monitor::{DigitallySigned, ExtraData, MerkleTreeLeaf, fuzz, responses};

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

fn parses_as_tls(name: &str, b: &[u8]) -> bool {
    if name.contains("digitally-signed") {
        return DigitallySigned::from_tls(b).is_ok();
    }
    if name.contains("leaf") {
        let (leaf, extra) = fuzz::split_leaf(b).unwrap();
        let leaf = MerkleTreeLeaf::parse(leaf);
        return leaf.is_ok_and(|l| ExtraData::parse(&l.entry, extra).is_ok());
    }
    decode_tile(b).is_ok_and(|t| parse_data_tile(&t).is_ok_and(|l| !l.is_empty()))
}

#[test]
fn fuzz_corpus_ct_tls_structures() {
    let (seeds, total) = replay("ct_tls_structures", |name, b| {
        fuzz::tls_structures(b);
        assert_eq!(parses_as_tls(name, b), name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 7 && total >= seeds, "{seeds} seeds of {total}");
}

#[test]
fn fuzz_corpus_ct_checkpoint() {
    let (seeds, _) = replay("ct_checkpoint", |name, b| {
        fuzz::checkpoint(b);
        let ok = SignedNote::parse(b).is_ok_and(|n| Checkpoint::parse(&n.text).is_ok());
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 8);
}

#[test]
fn fuzz_corpus_ct_identifiers() {
    let (seeds, _) = replay("ct_identifiers", |name, b| {
        fuzz::identifiers(b);
        let ok = if name.contains("-tbs-") {
            from_tbs_der(b).is_ok()
        } else {
            from_certificate_der(b).is_ok()
        };
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 12);
}

#[test]
fn fuzz_corpus_ct_responses() {
    let (seeds, _) = replay("ct_responses", |name, b| {
        fuzz::responses(b);
        let ok = if name.contains("entries") {
            responses::parse_get_entries(b, 1000).is_ok()
        } else if name.contains("consistency") {
            responses::parse_consistency(b).is_ok()
        } else if name.contains("proof-by-hash") {
            responses::parse_proof_by_hash(b).is_ok()
        } else if name.contains("roots") {
            responses::parse_get_roots(b).is_ok()
        } else {
            std::str::from_utf8(b).is_ok_and(|s| responses::parse_tile_path(s).is_some())
        };
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 13);
}

#[test]
fn fuzz_corpus_ct_sct_list() {
    use palisade_ct_monitor::{Sct, embedded_scts, parse_sct_list};
    let (seeds, _) = replay("ct_sct_list", |name, b| {
        fuzz::sct_list(b);
        let ok = if name.contains("-cert-") {
            embedded_scts(b).is_ok_and(|l| !l.is_empty())
        } else if name.contains("single-sct") {
            Sct::parse(b).is_ok()
        } else {
            parse_sct_list(b).is_ok()
        };
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 8);
}

#[test]
fn fuzz_corpus_ct_cosignature() {
    use palisade_ct_monitor::{Witness, WitnessPolicy};
    let policy = WitnessPolicy::new(
        vec![
            Witness::from_vkey(
                "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
            )
            .unwrap(),
            Witness::from_vkey(
                "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4",
            )
            .unwrap(),
        ],
        1,
    )
    .unwrap();
    let (seeds, _) = replay("ct_cosignature", |name, b| {
        fuzz::cosignature(b);
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
        fuzz::log_json(b);
        let ok = LogList::from_json(b).is_ok_and(|l| !l.logs.is_empty());
        assert_eq!(ok, name.starts_with("ok-"), "{name}");
    });
    assert!(seeds >= 6);
}
