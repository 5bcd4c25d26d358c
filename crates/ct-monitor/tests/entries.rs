//! Real static-ct-api tiles from Navigli2025h2: entry parsing, leaf hashes against the
//! level-0 Merkle tiles, and roots against the MANIFEST facts; malformed input is typed.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::collections::HashSet;

use common::hex32;
use palisade_ct_monitor::{
    CompactRange, Error, ExtraData, MerkleTreeLeaf, SignedEntry, parse_data_tile,
};
use proptest::prelude::*;

const DIR: &str = "static-ct/navigli2025h2/tile";

/// A level-0 Merkle tile: consecutive 32-byte leaf hashes.
fn parse_hash_tile(bytes: &[u8]) -> Vec<[u8; 32]> {
    assert!(bytes.len().is_multiple_of(32));
    bytes
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect()
}

fn tiles() -> Vec<(Vec<u8>, Vec<u8>)> {
    ["000", "001", "002", "003"]
        .iter()
        .map(|n| {
            (
                common::read(&format!("{DIR}/data/{n}")),
                common::read(&format!("{DIR}/0/{n}")),
            )
        })
        .collect()
}

#[test]
fn every_leaf_hash_equals_the_level0_tile_and_roots_match_the_facts() {
    let facts = common::json("static-ct/navigli2025h2/facts.json");
    let want = facts["expected"]["root_hex_by_tree_size"]
        .as_object()
        .unwrap();
    let fps: HashSet<String> = facts["expected"]["distinct_issuer_fingerprints_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let mut range = CompactRange::new();
    let mut seen_fps = HashSet::new();
    let mut last_ts = 0;
    let mut checked_roots = 0;
    for (t, (data, hashes)) in tiles().iter().enumerate() {
        let leaves = parse_data_tile(data).unwrap();
        let hashes = parse_hash_tile(hashes);
        assert_eq!((leaves.len(), hashes.len()), (256, 256));
        for (i, (leaf, h)) in leaves.iter().zip(&hashes).enumerate() {
            let index = (t * 256 + i) as u64;
            assert_eq!(leaf.leaf_hash(), *h, "leaf {index}");
            assert_eq!(leaf.entry.leaf_index().unwrap(), Some(index));
            assert!(matches!(leaf.entry.entry, SignedEntry::Precert { .. }));
            assert!(leaf.pre_certificate.is_some());
            assert_eq!(leaf.chain_fingerprints.len(), 2);
            for fp in &leaf.chain_fingerprints {
                seen_fps.insert(hex::encode(fp));
            }
            assert!(leaf.entry.timestamp >= last_ts);
            last_ts = leaf.entry.timestamp;
            if index == 0 {
                assert_eq!(leaf.entry.timestamp, 1_746_292_399_101);
            }
            range.append(leaf.leaf_hash());
            if let Some(root) = want.get(&range.size().to_string()) {
                assert_eq!(
                    range.root(),
                    hex32(root.as_str().unwrap()),
                    "size {}",
                    range.size()
                );
                checked_roots += 1;
            }
        }
    }
    assert_eq!(last_ts, 1_746_292_689_102);
    assert_eq!(seen_fps, fps);
    assert_eq!(checked_roots, 9);
    assert_eq!(
        range.root(),
        hex32(
            facts["expected"]["root_of_first_1024_leaves_hex"]
                .as_str()
                .unwrap()
        )
    );
}

#[test]
fn partial_tiles_are_prefixes_of_the_full_tiles() {
    let pdata = common::read(&format!("{DIR}/data/003.p/10"));
    let phash = common::read(&format!("{DIR}/0/003.p/10"));
    let (full, full_hashes) = &tiles()[3];
    let partial = parse_data_tile(&pdata).unwrap();
    assert_eq!(partial.len(), 10);
    assert_eq!(
        parse_hash_tile(&phash),
        parse_hash_tile(&full_hashes[..320])
    );
    let full = parse_data_tile(full).unwrap();
    assert_eq!(partial[..], full[..10]);
}

#[test]
fn merkle_tree_leaf_and_extra_data_round_trip() {
    let (data, hashes) = &tiles()[0];
    let leaves = parse_data_tile(data).unwrap();
    let hashes = parse_hash_tile(hashes);
    let first = &leaves[0];
    // Rebuild the get-entries leaf_input: v1, timestamped_entry, then the entry bytes.
    let SignedEntry::Precert {
        issuer_key_hash,
        tbs_certificate,
    } = first.entry.entry
    else {
        panic!()
    };
    let mut input = vec![0u8, 0];
    input.extend_from_slice(&first.entry.timestamp.to_be_bytes());
    input.extend_from_slice(&[0, 1]);
    input.extend_from_slice(&issuer_key_hash);
    input.extend_from_slice(&(tbs_certificate.len() as u32).to_be_bytes()[1..]);
    input.extend_from_slice(tbs_certificate);
    input.extend_from_slice(&(first.entry.extensions.len() as u16).to_be_bytes());
    input.extend_from_slice(first.entry.extensions);
    let leaf = MerkleTreeLeaf::parse(&input).unwrap();
    assert_eq!(leaf.leaf_hash(), hashes[0]);
    assert_eq!(leaf.entry, first.entry);
    // extra_data: PrecertChainEntry with the precert and a two-certificate chain.
    let pre = first.pre_certificate.unwrap();
    let u24 = |n: usize| (n as u32).to_be_bytes()[1..].to_vec();
    let chain_certs = [b"\x30\x03\x02\x01\x01".as_slice(), b"\x30\x00"];
    let mut chain = Vec::new();
    for c in chain_certs {
        chain.extend(u24(c.len()));
        chain.extend_from_slice(c);
    }
    let mut extra = u24(pre.len());
    extra.extend_from_slice(pre);
    extra.extend(u24(chain.len()));
    extra.extend_from_slice(&chain);
    let parsed = ExtraData::parse(&leaf.entry, &extra).unwrap();
    assert_eq!(
        parsed,
        ExtraData::Precert {
            pre_certificate: pre,
            chain: chain_certs.to_vec()
        }
    );
    // Trailing byte, truncated chain, bad version.
    let mut longer = extra.clone();
    longer.push(0);
    assert!(matches!(
        ExtraData::parse(&leaf.entry, &longer),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        ExtraData::parse(&leaf.entry, &extra[..extra.len() - 1]),
        Err(Error::Malformed { .. })
    ));
    let mut v2 = input.clone();
    v2[0] = 1;
    assert!(matches!(
        MerkleTreeLeaf::parse(&v2),
        Err(Error::Malformed { .. })
    ));
    let mut ty = input.clone();
    ty[11] = 7;
    let e = MerkleTreeLeaf::parse(&ty).unwrap_err();
    assert!(e.to_string().contains("unknown LogEntryType 7"), "{e}");
}

#[test]
fn every_truncation_of_a_tile_is_an_error_or_a_prefix() {
    let (data, _) = &tiles()[0];
    let full = parse_data_tile(data).unwrap();
    // Cutting at every byte (step 7 keeps the test fast) never panics; a cut that
    // lands exactly on an entry boundary parses to a prefix.
    for cut in (0..data.len()).step_by(7) {
        match parse_data_tile(&data[..cut]) {
            Ok(p) => assert_eq!(p[..], full[..p.len()]),
            Err(Error::Malformed {
                structure, offset, ..
            }) => {
                assert_eq!(structure, "data tile");
                assert!(offset <= cut);
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut too_many = Vec::new();
    for _ in 0..257 {
        too_many.extend_from_slice(&data[..entry_len(data)]);
    }
    assert!(parse_data_tile(&too_many).is_err());
}

fn entry_len(data: &[u8]) -> usize {
    let one = parse_data_tile(data).unwrap();
    // Length of the first entry: find the shortest prefix that parses to one entry.
    (1..data.len())
        .find(|n| parse_data_tile(&data[..*n]).is_ok_and(|p| p.len() == 1 && p[0] == one[0]))
        .unwrap()
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_data_tile(&bytes);
        if let Ok(leaf) = MerkleTreeLeaf::parse(&bytes) {
            let _ = leaf.entry.leaf_index();
            let _ = ExtraData::parse(&leaf.entry, &bytes);
        }
    }

    #[test]
    fn flipped_byte_in_a_real_entry_never_panics(pos in 0usize..4000, x in 1u8..=255) {
        let data = common::read(&format!("{DIR}/data/000"));
        let mut b = data[..4000].to_vec();
        b[pos] ^= x;
        let _ = parse_data_tile(&b);
    }
}
