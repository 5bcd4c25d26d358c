//! Progress survives a restart through the file store, a crash mid-save leaves the
//! previous state, a damaged state file is an error rather than a fresh start,
//! a file written before version 2 (no confirmed range) or before the earliest
//! signed head was kept still loads, and that head survives a save and a load.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use base64::Engine;
use common::{TestLog, naive};
use palisade_ct_monitor::{
    CompactRange, Error, FileStateStore, LogVerifier, MemoryStateStore, Misbehaviour, State,
    StateStore, TreeHeadUpdate,
};

#[test]
fn verifier_state_survives_a_restart_through_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new();
    let id = *log.key.log_id();
    let l = common::navigli_leaf_hashes();
    {
        let store = FileStateStore::new(dir.path()).unwrap();
        assert_eq!(store.load(&id).unwrap(), None);
        let mut v = LogVerifier::new("test", log.key.clone());
        v.update_tree_head(log.sth(1024, naive::root(&l), 1), &[])
            .unwrap();
        v.append_leaves(l[..700].iter().copied()).unwrap();
        store.save(&id, &v.state().unwrap()).unwrap();
    }
    // A new process: a new store on the same directory, a verifier from the file.
    let store = FileStateStore::new(dir.path()).unwrap();
    let p = store.load(&id).unwrap().unwrap();
    assert_eq!(p.range.size(), 700);
    let mut v = LogVerifier::builder("test", log.key.clone())
        .state(p)
        .build()
        .unwrap();
    assert_eq!(
        v.append_leaves(l[700..].iter().copied()).unwrap(),
        1024,
        "continues where it stopped"
    );
    assert_eq!(v.range().root(), naive::root(&l));
    assert_eq!(
        v.update_tree_head(log.sth(1024, naive::root(&l), 2), &[])
            .unwrap(),
        TreeHeadUpdate::Same
    );
}

#[test]
fn crash_before_rename_keeps_the_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new();
    let id = *log.key.log_id();
    let l = common::navigli_leaf_hashes();
    let store = FileStateStore::new(dir.path()).unwrap();
    let mut v = LogVerifier::new("test", log.key.clone());
    v.update_tree_head(log.sth(1024, naive::root(&l), 1), &[])
        .unwrap();
    v.append_leaves(l[..100].iter().copied()).unwrap();
    let saved = v.state().unwrap();
    store.save(&id, &saved).unwrap();
    // A crash mid-save leaves a half-written temporary file next to the state.
    let path = store.path(&id);
    std::fs::write(
        path.with_extension("json.tmp-99999"),
        &serde_json::to_vec(&saved).unwrap()[..40],
    )
    .unwrap();
    assert_eq!(store.load(&id).unwrap(), Some(saved.clone()));
    // The next save still works and wins.
    v.append_leaves(l[100..200].iter().copied()).unwrap();
    store.save(&id, &v.state().unwrap()).unwrap();
    assert_eq!(store.load(&id).unwrap().unwrap().range.size(), 200);
}

#[test]
fn damaged_state_is_an_error_not_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new();
    let id = *log.key.log_id();
    let store = FileStateStore::new(dir.path()).unwrap();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("test", log.key.clone());
    v.update_tree_head(log.sth(1024, naive::root(&l), 1), &[])
        .unwrap();
    v.append_leaves(l[..3].iter().copied()).unwrap();
    store.save(&id, &v.state().unwrap()).unwrap();
    let good = std::fs::read_to_string(store.path(&id)).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&good).unwrap();
    for key in ["confirmed_size", "confirmed_hashes"] {
        json.as_object_mut().unwrap().remove(key).unwrap();
    }
    let without_confirmed = json.to_string();
    for damaged in [
        good[..good.len() / 2].to_string(),
        good.replace("\"range_size\": 3", "\"range_size\": 4"),
        good.replace("\"version\": 2", "\"version\": 3"),
        // Version 2 without its confirmed range, version 1 with one.
        without_confirmed,
        good.replace("\"version\": 2", "\"version\": 1"),
        good.replace("\"range_size\": 3", "\"range_size\": 2000"),
    ] {
        std::fs::write(store.path(&id), &damaged).unwrap();
        assert!(
            matches!(store.load(&id), Err(Error::BadState { path: Some(_), .. })),
            "{damaged}"
        );
    }
    // A tree head whose signature was altered on disk is refused on restore.
    let mut forged: State = serde_json::from_str(&good).unwrap();
    forged.trusted.root_hash[0] ^= 1;
    assert!(matches!(
        LogVerifier::builder("test", log.key.clone())
            .state(forged)
            .build(),
        Err(Error::BadSignature { .. })
    ));
}

#[test]
fn memory_store_round_trip() {
    let log = TestLog::new();
    let id = *log.key.log_id();
    let store = MemoryStateStore::default();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("test", log.key.clone());
    assert_eq!(v.state(), None);
    v.update_tree_head(log.sth(1024, naive::root(&l), 1), &[])
        .unwrap();
    store.save(&id, &v.state().unwrap()).unwrap();
    assert_eq!(store.load(&id).unwrap(), v.state());
    assert_eq!(store.load(&[0; 32]).unwrap(), None);
    let p = v.state().unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<State>(&json).unwrap(), p);
}

/// A version 1 file (written before the confirmed range was kept) loads. Its
/// confirmed range is the empty one (entry 0: nothing on record was confirmed),
/// unless its range is at the head's size, where the range's root is checked
/// against the head and the range is the confirmed one. Saved again, it is
/// version 2 and reads back the same.
#[test]
fn a_version_1_state_file_loads() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new();
    let id = *log.key.log_id();
    let l = common::navigli_leaf_hashes();
    let store = FileStateStore::new(dir.path()).unwrap();
    let head = log.sth(1024, naive::root(&l), 1);
    for read in [700, 1024] {
        let mut range = CompactRange::new();
        for leaf in &l[..read] {
            range.append(*leaf);
        }
        let b64 = |h: &[u8]| base64::engine::general_purpose::STANDARD.encode(h);
        // The version 1 fields, as the code before version 2 wrote them.
        let v1 = serde_json::json!({
            "version": 1,
            "tree_size": head.tree_size,
            "timestamp": head.timestamp,
            "root_hash": b64(&head.root_hash),
            "signature": b64(&head.signature.to_tls()),
            "range_size": range.size(),
            "range_hashes": range.hashes().iter().map(|h| b64(h)).collect::<Vec<_>>(),
        });
        std::fs::write(store.path(&id), serde_json::to_vec_pretty(&v1).unwrap()).unwrap();
        let state = store.load(&id).unwrap().unwrap();
        assert_eq!((&state.trusted, &state.range), (&head, &range));
        assert_eq!(state.confirmed, CompactRange::new());
        assert_eq!(state.earliest, head, "no earliest head: the trusted one");
        let v = LogVerifier::builder("test", log.key.clone())
            .state(state)
            .build()
            .unwrap();
        let confirmed = if read == 1024 {
            range.clone()
        } else {
            CompactRange::new()
        };
        assert_eq!(v.confirmed(), &confirmed, "{read}");
        assert_eq!(v.range(), &range);
        store.save(&id, &v.state().unwrap()).unwrap();
        let text = std::fs::read_to_string(store.path(&id)).unwrap();
        assert!(text.contains("\"version\": 2"), "{text}");
        assert_eq!(store.load(&id).unwrap(), v.state());
    }
}

#[test]
fn a_confirmed_range_ahead_of_the_range_read_is_refused() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("test", log.key.clone());
    v.update_tree_head(log.sth(1024, naive::root(&l), 1), &[])
        .unwrap();
    v.append_leaves(l[..3].iter().copied()).unwrap();
    let mut json = serde_json::to_value(v.state().unwrap()).unwrap();
    assert_eq!(json["confirmed_size"], 0);
    json["confirmed_size"] = 4.into();
    json["confirmed_hashes"] = serde_json::json!([json["range_hashes"][0]]);
    let err = serde_json::from_value::<State>(json).unwrap_err();
    assert!(
        err.to_string().contains("confirmed range is ahead"),
        "{err}"
    );
}

/// The earliest signature of the trusted tree is saved beside the re-signed head
/// and restored: a smaller head stamped between the two is still a rollback
/// after a restart, proven by the first signing.
#[test]
fn the_earliest_signed_head_survives_a_save_and_a_load() {
    let dir = tempfile::tempdir().unwrap();
    let log = TestLog::new();
    let id = *log.key.log_id();
    let l = common::navigli_leaf_hashes();
    let store = FileStateStore::new(dir.path()).unwrap();
    let first = log.sth(1024, naive::root(&l), 2_000);
    let resigned = log.sth(1024, naive::root(&l), 4_000);
    let mut v = LogVerifier::new("test", log.key.clone());
    v.update_tree_head(first.clone(), &[]).unwrap();
    v.update_tree_head(resigned.clone(), &[]).unwrap();
    store.save(&id, &v.state().unwrap()).unwrap();
    let text = std::fs::read_to_string(store.path(&id)).unwrap();
    assert!(text.contains("\"earliest_timestamp\": 2000"), "{text}");
    let state = store.load(&id).unwrap().unwrap();
    assert_eq!((&state.trusted, &state.earliest), (&resigned, &first));
    let mut w = LogVerifier::builder("test", log.key.clone())
        .state(state)
        .build()
        .unwrap();
    assert_eq!((w.trusted(), w.earliest()), (Some(&resigned), Some(&first)));
    let rolled = log.sth(512, naive::root(&l[..512]), 3_000);
    assert_eq!(
        w.update_tree_head(rolled.clone(), &naive::proof(512, &l))
            .unwrap_err()
            .evidence,
        Misbehaviour::Rollback {
            trusted: first,
            other: rolled
        }
    );
}

/// A version 2 file written before the earliest head was kept loads with the
/// trusted head as its earliest (what that code measured rollbacks from).
#[test]
fn a_version_2_state_file_without_the_earliest_head_loads() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("test", log.key.clone());
    let head = log.sth(1024, naive::root(&l), 2_000);
    v.update_tree_head(head.clone(), &[]).unwrap();
    let mut json = serde_json::to_value(v.state().unwrap()).unwrap();
    for key in ["earliest_timestamp", "earliest_signature"] {
        json.as_object_mut().unwrap().remove(key).unwrap();
    }
    let state: State = serde_json::from_value(json).unwrap();
    assert_eq!(state.earliest, head);
    assert_eq!(state, v.state().unwrap());
}

#[test]
fn an_earliest_head_that_is_not_an_earlier_signature_of_the_trusted_tree_is_refused() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("test", log.key.clone());
    v.update_tree_head(log.sth(1024, naive::root(&l), 2_000), &[])
        .unwrap();
    v.update_tree_head(log.sth(1024, naive::root(&l), 4_000), &[])
        .unwrap();
    let good = v.state().unwrap();
    // In the file: stamped after the trusted head, half of the pair, or in version 1.
    let json = serde_json::to_value(&good).unwrap();
    let mut later = json.clone();
    later["earliest_timestamp"] = 4_001.into();
    let mut half = json.clone();
    half.as_object_mut().unwrap().remove("earliest_signature");
    let mut v1 = json.clone();
    v1["version"] = 1.into();
    for key in ["confirmed_size", "confirmed_hashes"] {
        v1.as_object_mut().unwrap().remove(key);
    }
    for damaged in [later, half, v1] {
        assert!(
            matches!(
                serde_json::from_value::<State>(damaged.clone()),
                Err(e) if e.to_string().contains("earliest")
            ),
            "{damaged}"
        );
    }
    // In memory: validly signed, but of another tree or stamped later, is a
    // corrupt state; a signature that does not verify is refused as such.
    let build = |state: State| {
        LogVerifier::builder("test", log.key.clone())
            .state(state)
            .build()
    };
    for earliest in [
        log.sth(512, naive::root(&l[..512]), 1_000),
        log.sth(1024, naive::root(&l[..1023]), 1_000),
        log.sth(1024, naive::root(&l), 4_001),
    ] {
        let state = State {
            earliest,
            ..good.clone()
        };
        match build(state) {
            Err(Error::BadState { reason, .. }) => {
                assert!(reason.contains("corrupt state"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    let mut forged = good.clone();
    forged.earliest.timestamp = 1_000;
    assert!(matches!(build(forged), Err(Error::BadSignature { .. })));
}
