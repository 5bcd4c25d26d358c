//! Replays the committed cargo-fuzz corpora of `playbooks_definition`,
//! `playbooks_audit_record` and `playbooks_ocsf` on stable, through the same entry
//! points as the fuzz targets (`fuzzing`, feature `fuzzing`).
//!
//! Every file must load or fail without panicking. Seeds named `ok-*` must be accepted,
//! seeds named `bad-*` refused; files the fuzzer adds only have to not panic.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::PathBuf;

use palisade_playbooks::fuzzing;
use palisade_playbooks::{AuditRecord, Definition, parse_ocsf};

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn fuzz_corpus_playbooks_definition_replays() {
    let (mut ok, mut bad) = (0, 0);
    for (name, bytes) in corpus("playbooks_definition") {
        fuzzing::playbooks_definition(&bytes);
        let parsed = std::str::from_utf8(&bytes)
            .ok()
            .map(|s| Definition::from_toml(&name, s));
        if name.starts_with("ok-") {
            parsed
                .unwrap()
                .unwrap_or_else(|e| panic!("{name} must load: {e}"));
            ok += 1;
        } else if name.starts_with("bad-") {
            if let Some(Err(e)) = &parsed {
                // A refusal names the file and a position.
                assert!(e.to_string().starts_with(&format!("{name}:")), "{e}");
            } else {
                assert!(parsed.is_none(), "{name} must be refused");
            }
            bad += 1;
        }
    }
    assert!(ok >= 2 && bad >= 5, "seeds missing: {ok} ok, {bad} bad");
}

#[test]
fn fuzz_corpus_playbooks_audit_record_replays() {
    let (mut ok, mut bad) = (0, 0);
    for (name, bytes) in corpus("playbooks_audit_record") {
        fuzzing::playbooks_audit_record(&bytes);
        let parsed = AuditRecord::from_line(&bytes);
        if name.starts_with("ok-") {
            let rec = parsed.unwrap_or_else(|e| panic!("{name} must parse: {e}"));
            assert_eq!(rec.to_line().as_bytes(), &bytes[..], "{name} is canonical");
            ok += 1;
        } else if name.starts_with("bad-") {
            assert!(parsed.is_err(), "{name} must be refused");
            bad += 1;
        }
    }
    assert!(ok >= 2 && bad >= 3, "seeds missing: {ok} ok, {bad} bad");
}

#[test]
fn fuzz_corpus_playbooks_ocsf_replays() {
    let (mut ok, mut bad) = (0, 0);
    for (name, bytes) in corpus("playbooks_ocsf") {
        fuzzing::playbooks_ocsf(&bytes);
        let parsed = parse_ocsf(&bytes);
        if name.starts_with("ok-") {
            parsed.unwrap_or_else(|e| panic!("{name} must map: {e}"));
            ok += 1;
        } else if name.starts_with("bad-") {
            assert!(parsed.is_err(), "{name} must be refused");
            bad += 1;
        }
    }
    assert!(ok >= 5 && bad >= 6, "seeds missing: {ok} ok, {bad} bad");
}
