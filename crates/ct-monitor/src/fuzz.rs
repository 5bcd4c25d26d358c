//! Entry points for the cargo-fuzz targets in `fuzz/` (and their corpus replay
//! tests). Each takes arbitrary bytes and must never panic.

use crate::checkpoint::{Checkpoint, SignedNote, parse_rfc6962_note_signature};
use crate::entry::{ExtraData, MerkleTreeLeaf, decode_tile, parse_data_tile};
use crate::loglist::LogList;
use crate::sct::{Sct, SctSource, SctVerifier, embedded_scts, parse_sct_list};
use crate::sth::DigitallySigned;
use crate::watch::{Authorizer, WatchItem, Watchlist};
use crate::witness::{Witness, WitnessPolicy};
use crate::{check, identifiers, responses};

/// TLS structures: data tiles (after gzip), `DigitallySigned`, and
/// `MerkleTreeLeaf` + `extra_data` framed as `u24 leaf length || leaf || extra_data`.
pub fn tls_structures(data: &[u8]) {
    if let Ok(tile) = decode_tile(data)
        && let Ok(leaves) = parse_data_tile(&tile)
    {
        for leaf in leaves {
            let _ = leaf.leaf_hash();
            let _ = leaf.entry.leaf_index();
        }
    }
    if let Some((leaf, extra)) = split_leaf(data)
        && let Ok(leaf) = MerkleTreeLeaf::parse(leaf)
    {
        let _ = leaf.leaf_hash();
        let _ = leaf.entry.leaf_index();
        let _ = ExtraData::parse(&leaf.entry, extra);
    }
    let _ = DigitallySigned::from_tls(data);
}

/// Signed notes and checkpoints, including every `RFC6962NoteSignature` body.
pub fn checkpoint(data: &[u8]) {
    if let Ok(note) = SignedNote::parse(data) {
        let _ = Checkpoint::parse(&note.text);
        for sig in &note.signatures {
            let _ = parse_rfc6962_note_signature(&sig.signature);
        }
    }
}

/// Identifier extraction and matching on a DER certificate or TBS.
pub fn identifiers(data: &[u8]) {
    let _ = identifiers::from_certificate_der(data);
    let _ = identifiers::from_tbs_der(data);
    let _ = crate::tbs_hash(data);
    let _ = check::check_precertificate(data, data);
    let list = Watchlist::new([
        WatchItem::DomainAndSubdomains("example.com".into()),
        WatchItem::Domain("www.example.org".into()),
        WatchItem::IpNetwork([192, 0, 2, 0].into(), 24),
    ]);
    let entry = crate::TimestampedEntry {
        timestamp: 0,
        entry: crate::SignedEntry::X509 { certificate: data },
        extensions: &[],
    };
    let _ = check::check_entry(&entry, 0, &list, &Authorizer::new());
}

/// The HTTP response parsers (RFC 6962 JSON) and static-ct tile paths. A tile path
/// that parses must print back to the same text (checked: the fuzzer's oracle).
pub fn responses(data: &[u8]) {
    let _ = responses::parse_get_entries(data, 1000);
    let _ = responses::parse_consistency(data);
    let _ = responses::parse_proof_by_hash(data);
    let _ = responses::parse_get_roots(data);
    if let Ok(s) = std::str::from_utf8(data)
        && let Some((level, index, width)) = responses::parse_tile_path(s)
    {
        assert_eq!(responses::tile_path(level, index, width), s);
    }
}

/// Splits `u24 length || leaf || extra` (the `tls_structures` framing).
pub fn split_leaf(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_at_checked(3)?;
    let n = len.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
    rest.split_at_checked(n)
}

/// SCTs: a TLS `SignedCertificateTimestampList`, one SCT, and a certificate's
/// embedded list; the verifier on the same bytes as certificate, issuer and list.
pub fn sct_list(data: &[u8]) {
    if let Ok(list) = parse_sct_list(data) {
        for sct in &list {
            let _ = sct.signed_data(&crate::sct::SignedEntryData::X509 { certificate: data });
        }
    }
    let _ = Sct::parse(data);
    let _ = embedded_scts(data);
    let list = LogList {
        version: None,
        logs: Vec::new(),
        problems: Vec::new(),
    };
    let _ = SctVerifier::new(&list).verify(data, data, &[(SctSource::TlsExtension, data)]);
}

/// A 2-of-2 witness policy over arbitrary notes (origin taken from the note's first
/// line), and the bytes as a verifier key.
pub fn cosignature(data: &[u8]) {
    let witnesses = [("w.example/a", [1u8; 32]), ("w.example/b", [2u8; 32])]
        .into_iter()
        .filter_map(|(name, key)| Witness::new(name, key).ok())
        .collect();
    if let Ok(policy) = WitnessPolicy::new(witnesses, 2)
        && let Ok(text) = std::str::from_utf8(data)
    {
        let origin = text.split('\n').next().unwrap_or_default();
        let _ = policy.verify(data, origin);
        let _ = Witness::from_vkey(text);
    }
}

/// A v3 log list or a single log's `log.v3.json`.
pub fn log_json(data: &[u8]) {
    if let Ok(list) = LogList::from_json(data) {
        for log in &list.logs {
            let _ = log.key.log_id();
        }
    }
}
