//! Progress survives a restart through the file store, a crash mid-save leaves the
//! previous state, and a damaged state file is an error rather than a fresh start.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use common::{TestLog, naive};
use palisade_ct_monitor::{
    Error, FileStateStore, LogVerifier, MemoryStateStore, State, StateStore, TreeHeadUpdate,
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
    for damaged in [
        good[..good.len() / 2].to_string(),
        good.replace("\"range_size\": 3", "\"range_size\": 4"),
        good.replace("\"version\": 1", "\"version\": 2"),
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
