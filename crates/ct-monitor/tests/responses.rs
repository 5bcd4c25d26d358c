//! HTTP response parsers, static-ct tile paths, and the tree shapes used to rebuild
//! consistency proofs and compact ranges from Merkle tiles, against the naive
//! RFC 6962 reference in `common`.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use common::naive;
use palisade_ct_monitor::CompactRange;
use palisade_ct_monitor::responses::{
    consistency_proof_ranges, parse_consistency, parse_get_entries, parse_get_roots,
    parse_proof_by_hash, parse_tile_path, perfect_subtrees, tile_path,
};

#[test]
fn tile_paths_follow_the_spec() {
    // c2sp.org/tlog-tiles: index 1234067 is x001/x234/067.
    assert_eq!(tile_path(Some(1), 1_234_067, 256), "tile/1/x001/x234/067");
    assert_eq!(tile_path(None, 1_234_067, 8), "tile/data/x001/x234/067.p/8");
    assert_eq!(tile_path(Some(0), 0, 256), "tile/0/000");
    assert_eq!(tile_path(Some(0), 3, 10), "tile/0/003.p/10");
    assert_eq!(tile_path(None, 1000, 256), "tile/data/x001/000");
    for (level, index, width) in [(Some(0), 0, 1), (None, 999, 255), (Some(5), 1_000_000, 256)] {
        assert_eq!(
            parse_tile_path(&tile_path(level, index, width)),
            Some((level, index, width))
        );
    }
    for bad in [
        "tile/0/1234",
        "tile/0/x000/001",
        "tile/0/001.p/0",
        "tile/0/001.p/256",
        "tile/0/001.p/07",
        "tile/64/000",
        "tile/data/00a",
        "tiles/0/000",
        "tile/0/x1/000",
    ] {
        assert_eq!(parse_tile_path(bad), None, "{bad}");
    }
}

fn leaves(n: usize) -> Vec<naive::H> {
    (0..n)
        .map(|i| naive::leaf(&(i as u64).to_be_bytes()))
        .collect()
}

#[test]
fn consistency_ranges_give_the_rfc_proof() {
    let l = leaves(70);
    for n in 2..=70 {
        for m in 1..n {
            let proof: Vec<_> = consistency_proof_ranges(m as u64, n as u64)
                .into_iter()
                .map(|(a, b)| naive::root(&l[a as usize..b as usize]))
                .collect();
            assert_eq!(proof, naive::proof(m, &l[..n]), "{m} -> {n}");
        }
    }
    assert!(consistency_proof_ranges(0, 5).is_empty());
    assert!(consistency_proof_ranges(5, 5).is_empty());
}

#[test]
fn perfect_subtrees_are_the_compact_range() {
    let l = leaves(300);
    for n in 1..=300u64 {
        let nodes = perfect_subtrees(0, n);
        assert_eq!(nodes.len(), n.count_ones() as usize);
        let hashes: Vec<_> = nodes
            .iter()
            .map(|&(level, index)| {
                let (a, b) = (index << level, (index + 1) << level);
                naive::root(&l[a as usize..b as usize])
            })
            .collect();
        let range = CompactRange::from_parts(n, hashes).unwrap();
        assert_eq!(range.root(), naive::root(&l[..n as usize]), "{n}");
    }
    // An aligned right-hand range, as proofs use: [768, 778) is 8 + 2.
    assert_eq!(perfect_subtrees(768, 778), [(3, 96), (1, 388)]);
}

#[test]
fn json_responses() {
    let ok = br#"{"entries":[{"leaf_input":"AAA=","extra_data":""},{"leaf_input":"AQ==","extra_data":"Ag=="}]}"#;
    let e = parse_get_entries(ok, 5).unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(
        (e[0].leaf_input.as_slice(), e[1].extra_data.as_slice()),
        (&[0u8, 0][..], &[2u8][..])
    );
    assert!(parse_get_entries(ok, 1).is_err(), "more entries than asked");
    assert!(
        parse_get_entries(br#"{"entries":[]}"#, 5).is_err(),
        "no entries"
    );
    assert!(parse_get_entries(br#"{"entries":[{"leaf_input":"!","extra_data":""}]}"#, 5).is_err());
    assert!(parse_get_entries(b"[]", 5).is_err());

    let h: [u8; 32] = common::b64("EMfGG85uIddeOXt5/wdQGP3IQd0COCqoLg9Q6CsPLJA=")
        .try_into()
        .unwrap();
    let proof = r#"{"consistency":["EMfGG85uIddeOXt5/wdQGP3IQd0COCqoLg9Q6CsPLJA="]}"#;
    assert_eq!(parse_consistency(proof.as_bytes()).unwrap(), [h]);
    assert!(
        parse_consistency(br#"{"consistency":["AAAA"]}"#).is_err(),
        "3-byte hash"
    );
    let by_hash = br#"{"leaf_index":7,"audit_path":[]}"#;
    assert_eq!(parse_proof_by_hash(by_hash).unwrap(), (7, vec![]));
    assert!(parse_proof_by_hash(br#"{"leaf_index":-1,"audit_path":[]}"#).is_err());
    assert_eq!(
        parse_get_roots(br#"{"certificates":["MAA="]}"#).unwrap(),
        [vec![0x30, 0]]
    );
    assert!(parse_get_roots(br#"{"certificates":"MAA="}"#).is_err());
}
