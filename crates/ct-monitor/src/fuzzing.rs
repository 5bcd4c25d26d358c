//! The entry points of the `ct_*` cargo-fuzz targets (and their corpus replay). Each
//! takes arbitrary bytes, must never panic, and returns the names of the structures
//! the bytes parsed as, for the replay's `ok-*` / `bad-*` seeds.
//!
//! Not part of the API contract: it exists so each fuzz target is a one-line call.

use crate::check::{check_entry, check_precertificate, tbs_hash};
use crate::checkpoint::{Checkpoint, SignedNote, parse_rfc6962_note_signature};
use crate::entry::{ExtraData, MerkleTreeLeaf, SignedEntry, TimestampedEntry};
use crate::entry::{decode_tile, parse_data_tile};
use crate::identifiers::Identifiers;
use crate::loglist::LogList;
use crate::responses;
use crate::sct::{Sct, SctSource, SctVerifier, SignedEntryData, embedded_scts, parse_sct_list};
use crate::sth::DigitallySigned;
use crate::watch::{Authorizer, WatchItem, Watchlist};
use crate::witness::{Witness, WitnessPolicy};

/// TLS structures: data tiles (after gzip), `DigitallySigned`, and
/// `MerkleTreeLeaf` + `extra_data` framed as `u24 leaf length || leaf || extra_data`.
/// Parsed: `"data tile"` (a non-empty one), `"leaf"` (leaf and extra data),
/// `"digitally-signed"`.
pub fn ct_tls_structures(data: &[u8]) -> Vec<&'static str> {
    let mut parsed = Vec::new();
    if let Ok(tile) = decode_tile(data)
        && let Ok(leaves) = parse_data_tile(&tile)
    {
        for leaf in &leaves {
            let _ = leaf.leaf_hash();
            let _ = leaf.entry.leaf_index();
        }
        if !leaves.is_empty() {
            parsed.push("data tile");
        }
    }
    if let Some((leaf, extra)) = split_leaf(data)
        && let Ok(leaf) = MerkleTreeLeaf::parse(leaf)
    {
        let _ = leaf.leaf_hash();
        let _ = leaf.entry.leaf_index();
        if ExtraData::parse(&leaf.entry, extra).is_ok() {
            parsed.push("leaf");
        }
    }
    if DigitallySigned::from_tls(data).is_ok() {
        parsed.push("digitally-signed");
    }
    parsed
}

/// Signed notes and checkpoints, including every `RFC6962NoteSignature` body.
/// Parsed: `"checkpoint"` (a signed note whose text is a checkpoint).
pub fn ct_checkpoint(data: &[u8]) -> Vec<&'static str> {
    let mut parsed = Vec::new();
    if let Ok(note) = SignedNote::parse(data) {
        if Checkpoint::parse(&note.text).is_ok() {
            parsed.push("checkpoint");
        }
        for sig in &note.signatures {
            let _ = parse_rfc6962_note_signature(&sig.signature);
        }
    }
    parsed
}

/// Identifier extraction and matching on a DER certificate or TBS.
/// Parsed: `"certificate"`, `"tbs"`.
pub fn ct_identifiers(data: &[u8]) -> Vec<&'static str> {
    let mut parsed = Vec::new();
    if Identifiers::from_certificate_der(data).is_ok() {
        parsed.push("certificate");
    }
    if Identifiers::from_tbs_der(data).is_ok() {
        parsed.push("tbs");
    }
    let _ = tbs_hash(data);
    let _ = check_precertificate(data, data);
    let list = Watchlist::new([
        WatchItem::DomainAndSubdomains("example.com".into()),
        WatchItem::Domain("www.example.org".into()),
        WatchItem::IpNetwork([192, 0, 2, 0].into(), 24),
    ]);
    let entry = TimestampedEntry {
        timestamp: 0,
        entry: SignedEntry::X509 { certificate: data },
        extensions: &[],
    };
    let _ = check_entry(&entry, 0, &list, &Authorizer::new());
    parsed
}

/// The HTTP response parsers (RFC 6962 JSON) and static-ct tile paths. A tile path
/// that parses must print back to the same text (checked: the fuzzer's oracle).
/// Parsed: `"entries"`, `"consistency"`, `"proof-by-hash"`, `"roots"`, `"tile path"`.
pub fn ct_responses(data: &[u8]) -> Vec<&'static str> {
    let mut parsed = Vec::new();
    if responses::parse_get_entries(data, 1000).is_ok() {
        parsed.push("entries");
    }
    if responses::parse_consistency(data).is_ok() {
        parsed.push("consistency");
    }
    if responses::parse_proof_by_hash(data).is_ok() {
        parsed.push("proof-by-hash");
    }
    if responses::parse_get_roots(data).is_ok() {
        parsed.push("roots");
    }
    if let Ok(s) = std::str::from_utf8(data)
        && let Some((level, index, width)) = responses::parse_tile_path(s)
    {
        assert_eq!(responses::tile_path(level, index, width), s);
        parsed.push("tile path");
    }
    parsed
}

/// Splits `u24 length || leaf || extra` (the `ct_tls_structures` framing).
pub fn split_leaf(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = data.split_at_checked(3)?;
    let n = len.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b));
    rest.split_at_checked(n)
}

/// SCTs: a TLS `SignedCertificateTimestampList`, one SCT, and a certificate's
/// embedded list; the verifier on the same bytes as certificate, issuer and list.
/// Parsed: `"sct list"`, `"single sct"`, `"embedded"` (a certificate with SCTs).
pub fn ct_sct_list(data: &[u8]) -> Vec<&'static str> {
    let mut parsed = Vec::new();
    if let Ok(list) = parse_sct_list(data) {
        parsed.push("sct list");
        for sct in &list {
            let _ = sct.signed_data(&SignedEntryData::X509 { certificate: data });
        }
    }
    if Sct::parse(data).is_ok() {
        parsed.push("single sct");
    }
    if embedded_scts(data).is_ok_and(|l| !l.is_empty()) {
        parsed.push("embedded");
    }
    let list = LogList {
        version: None,
        logs: Vec::new(),
        problems: Vec::new(),
    };
    let _ = SctVerifier::new(&list).verify(data, data, &[(SctSource::TlsExtension, data)]);
    parsed
}

/// A 2-of-2 witness policy over arbitrary notes (origin taken from the note's first
/// line), and the bytes as a verifier key. Parsed: `"cosigned"` (the policy was
/// met), `"vkey"`.
pub fn ct_cosignature(data: &[u8]) -> Vec<&'static str> {
    let mut parsed = Vec::new();
    let policy = [("w.example/a", [1u8; 32]), ("w.example/b", [2u8; 32])]
        .into_iter()
        .filter_map(|(name, key)| Witness::new(name, key).ok())
        .fold(WitnessPolicy::builder(), |b, w| b.witness(w))
        .build();
    if let Ok(policy) = policy
        && let Ok(text) = std::str::from_utf8(data)
    {
        let origin = text.split('\n').next().unwrap_or_default();
        if policy.verify(data, origin).is_ok() {
            parsed.push("cosigned");
        }
        if Witness::from_vkey(text).is_ok() {
            parsed.push("vkey");
        }
    }
    parsed
}

/// A v3 log list or a single log's `log.v3.json`. Parsed: `"log list"` (with at
/// least one usable log).
pub fn ct_log_json(data: &[u8]) -> Vec<&'static str> {
    let mut parsed = Vec::new();
    if let Ok(list) = LogList::from_json(data) {
        for log in &list.logs {
            let _ = log.key.log_id();
        }
        if !list.logs.is_empty() {
            parsed.push("log list");
        }
    }
    parsed
}
