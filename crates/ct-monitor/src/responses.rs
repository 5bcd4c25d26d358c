//! What logs answer over HTTP, as bytes in and typed values out (no network here):
//! RFC 6962 JSON responses, static-ct-api tile paths, and the Merkle-tree shapes a
//! monitor needs to rebuild consistency proofs and compact ranges from hash tiles.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::entry::TILE_WIDTH;
use crate::error::Error;
use crate::merkle::Hash;

/// Most entries accepted from one `get-entries` response (logs cap pages far lower).
pub(crate) const MAX_ENTRIES_PER_RESPONSE: usize = 10_000;

/// One `get-entries` entry, decoded from base64 (parse it with
/// [`crate::MerkleTreeLeaf::parse`] and [`crate::ExtraData::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "http"), allow(unreachable_pub))]
pub struct RawEntry {
    /// The `MerkleTreeLeaf`.
    pub leaf_input: Vec<u8>,
    /// The chain (and precertificate) the log was given.
    pub extra_data: Vec<u8>,
}

fn bad(what: &'static str, reason: impl Into<String>) -> Error {
    Error::Malformed {
        structure: what,
        offset: 0,
        reason: reason.into(),
    }
}

fn b64(what: &'static str, s: &str) -> Result<Vec<u8>, Error> {
    STANDARD
        .decode(s)
        .map_err(|e| bad(what, format!("not base64: {e}")))
}

fn hashes(what: &'static str, list: &[String]) -> Result<Vec<Hash>, Error> {
    if list.len() > 64 {
        return Err(bad(
            what,
            format!("{} hashes, a proof has at most 64", list.len()),
        ));
    }
    list.iter()
        .map(|h| {
            b64(what, h)?
                .try_into()
                .map_err(|v: Vec<u8>| bad(what, format!("hash of {} bytes", v.len())))
        })
        .collect()
}

#[derive(Deserialize)]
struct EntriesJson {
    entries: Vec<EntryJson>,
}

#[derive(Deserialize)]
struct EntryJson {
    leaf_input: String,
    extra_data: String,
}

/// Parses a `get-entries` response (RFC 6962 §4.6). It may hold fewer entries than
/// asked for, but never none and never more than `asked`.
pub(crate) fn parse_get_entries(json: &[u8], asked: u64) -> Result<Vec<RawEntry>, Error> {
    const WHAT: &str = "get-entries response";
    let j: EntriesJson = serde_json::from_slice(json).map_err(|e| bad(WHAT, e.to_string()))?;
    let n = j.entries.len();
    if n == 0 || n as u64 > asked || n > MAX_ENTRIES_PER_RESPONSE {
        return Err(bad(WHAT, format!("{n} entries for {asked} asked")));
    }
    j.entries
        .iter()
        .map(|e| {
            Ok(RawEntry {
                leaf_input: b64(WHAT, &e.leaf_input)?,
                extra_data: b64(WHAT, &e.extra_data)?,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct ConsistencyJson {
    consistency: Vec<String>,
}

/// Parses a `get-sth-consistency` response.
pub(crate) fn parse_consistency(json: &[u8]) -> Result<Vec<Hash>, Error> {
    const WHAT: &str = "get-sth-consistency response";
    let j: ConsistencyJson = serde_json::from_slice(json).map_err(|e| bad(WHAT, e.to_string()))?;
    hashes(WHAT, &j.consistency)
}

#[derive(Deserialize)]
struct ProofJson {
    leaf_index: u64,
    audit_path: Vec<String>,
}

/// Parses a `get-proof-by-hash` response: the leaf index and the audit path.
pub(crate) fn parse_proof_by_hash(json: &[u8]) -> Result<(u64, Vec<Hash>), Error> {
    const WHAT: &str = "get-proof-by-hash response";
    let j: ProofJson = serde_json::from_slice(json).map_err(|e| bad(WHAT, e.to_string()))?;
    Ok((j.leaf_index, hashes(WHAT, &j.audit_path)?))
}

#[derive(Deserialize)]
struct RootsJson {
    certificates: Vec<String>,
}

/// Parses a `get-roots` response into DER certificates.
pub(crate) fn parse_get_roots(json: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    const WHAT: &str = "get-roots response";
    let j: RootsJson = serde_json::from_slice(json).map_err(|e| bad(WHAT, e.to_string()))?;
    j.certificates.iter().map(|c| b64(WHAT, c)).collect()
}

/// The static-ct-api path of a tile below the monitoring prefix:
/// `tile/<level>/<N>` or `tile/data/<N>` (`level` `None`), with `.p/<width>` for a
/// partial tile. `N` is written in groups of three digits, all but the last
/// prefixed with `x` (1234067 is `x001/x234/067`).
pub(crate) fn tile_path(level: Option<u8>, index: u64, width: usize) -> String {
    let mut groups = vec![format!("{:03}", index % 1000)];
    let mut rest = index / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    let level = level.map_or_else(|| "data".to_string(), |l| l.to_string());
    let mut path = format!("tile/{level}/{}", groups.join("/"));
    if width < TILE_WIDTH {
        path.push_str(&format!(".p/{width}"));
    }
    path
}

/// Parses a path made by [`tile_path`] back into `(level, index, width)`; `None` if
/// it is not one (e.g. a non-canonical index).
#[cfg(any(test, feature = "test-log", feature = "fuzzing"))] // the test log's and the fuzzer's
pub(crate) fn parse_tile_path(path: &str) -> Option<(Option<u8>, u64, usize)> {
    let rest = path.strip_prefix("tile/")?;
    let (level, rest) = rest.split_once('/')?;
    let level = match level {
        "data" => None,
        l => Some(l.parse::<u8>().ok().filter(|l| *l < 64)?),
    };
    let (index_part, width) = match rest.split_once(".p/") {
        Some((i, w)) => {
            let w: usize = w.parse().ok()?;
            (i, w)
        }
        None => (rest, TILE_WIDTH),
    };
    if width == 0 || width > TILE_WIDTH {
        return None;
    }
    let mut index: u64 = 0;
    for group in index_part.split('/') {
        let digits = group.strip_prefix('x').unwrap_or(group);
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        index = index.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    (tile_path(level, index, width) == path).then_some((level, index, width))
}

/// The perfect subtrees that make up leaves `[start, end)`, largest first, as
/// `(level, index)`: the node at `level` covers leaves
/// `[index << level, (index + 1) << level)`. `start` must be a multiple of the
/// largest power of two not above `end - start` (true for every range a proof uses).
pub(crate) fn perfect_subtrees(start: u64, end: u64) -> Vec<(u8, u64)> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let mut level = 63 - (end - at).leading_zeros();
        // Also aligned: the largest power of two that fits and divides `at`.
        if at != 0 {
            level = level.min(at.trailing_zeros());
        }
        out.push((level as u8, at >> level));
        at += 1 << level;
    }
    out
}

/// The leaf ranges `[start, end)` whose Merkle roots form the RFC 9162 consistency
/// proof from size `m` to size `n` (`0 < m < n`), in proof order (SUBPROOF, §2.1.4.1).
pub(crate) fn consistency_proof_ranges(m: u64, n: u64) -> Vec<(u64, u64)> {
    fn sub(m: u64, start: u64, end: u64, complete: bool, out: &mut Vec<(u64, u64)>) {
        let size = end - start;
        if m == size {
            if !complete {
                out.push((start, end));
            }
            return;
        }
        // Largest power of two smaller than size.
        let k = 1u64 << (63 - (size - 1).leading_zeros());
        if m <= k {
            sub(m, start, start + k, complete, out);
            out.push((start + k, end));
        } else {
            sub(m - k, start + k, end, false, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if 0 < m && m < n {
        sub(m, 0, n, true, &mut out);
    }
    out
}

/// The naive RFC 6962 reference the integration tests use too.
#[cfg(test)]
#[path = "../tests/common/naive.rs"]
mod naive;

#[cfg(test)]
mod tests {
    //! Response parsers, tile paths, and the tree shapes used to rebuild consistency
    //! proofs and compact ranges from Merkle tiles, against the naive RFC 6962
    //! reference of the integration tests.
    #![allow(clippy::unwrap_used)]

    use super::naive;
    use super::*;
    use crate::merkle::CompactRange;

    fn b64(s: &str) -> Vec<u8> {
        STANDARD.decode(s).unwrap()
    }

    #[test]
    fn tile_paths_follow_the_spec() {
        // c2sp.org/tlog-tiles: index 1234067 is x001/x234/067.
        assert_eq!(tile_path(Some(1), 1_234_067, 256), "tile/1/x001/x234/067");
        assert_eq!(tile_path(None, 1_234_067, 8), "tile/data/x001/x234/067.p/8");
        assert_eq!(tile_path(Some(0), 0, 256), "tile/0/000");
        assert_eq!(tile_path(Some(0), 3, 10), "tile/0/003.p/10");
        assert_eq!(tile_path(None, 1000, 256), "tile/data/x001/000");
        for (level, index, width) in [(Some(0), 0, 1), (None, 999, 255), (Some(5), 1_000_000, 256)]
        {
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
        assert!(
            parse_get_entries(br#"{"entries":[{"leaf_input":"!","extra_data":""}]}"#, 5).is_err()
        );
        assert!(parse_get_entries(b"[]", 5).is_err());

        let h: [u8; 32] = b64("EMfGG85uIddeOXt5/wdQGP3IQd0COCqoLg9Q6CsPLJA=")
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
}
