//! Entry points of the cargo-fuzz targets in `fuzz/`, one function per target, also
//! replayed on stable by `tests/fuzz_corpus.rs`. Not part of the API: behind the
//! `fuzzing` feature and hidden from the docs.

use palisade_core_traits::SecurityEvent;

use crate::{AuditRecord, Definition, Engine, parse_ocsf};

/// Target `playbooks_definition`: loads a definition from arbitrary bytes, then builds
/// an engine from it. Never panics.
pub fn playbooks_definition(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(def) = Definition::from_toml("fuzz", s)
    {
        let _ = Engine::new(def);
    }
}

/// Target `playbooks_ocsf`: maps an OCSF event from arbitrary bytes. Never panics, and
/// whatever the adapter accepts is a valid `SecurityEvent` (it survives
/// `SecurityEvent::from_json`).
pub fn playbooks_ocsf(data: &[u8]) {
    if let Ok(Some(event)) = parse_ocsf(data) {
        let json = event.to_json();
        let back = SecurityEvent::from_json(json.as_bytes());
        assert!(back.is_ok(), "adapter produced an invalid event: {json}");
    }
}

/// Target `playbooks_audit_record`: parses one audit line strictly. Never panics; an
/// accepted record serializes back to a line that parses to the same record.
pub fn playbooks_audit_record(data: &[u8]) {
    if let Ok(rec) = AuditRecord::from_line(data) {
        let again = AuditRecord::from_line(rec.to_line().as_bytes());
        assert_eq!(
            again.ok().as_ref(),
            Some(&rec),
            "record does not round-trip"
        );
    }
}
