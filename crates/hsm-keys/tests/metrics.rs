//! Feature `metrics`: signatures by backend and algorithm, errors by operation,
//! re-logins and session recoveries, read back with metrics-util's `DebuggingRecorder`
//! installed for this thread only (`metrics::with_local_recorder`). Its own test
//! binary: the logout and re-initialisation below disturb every session in the
//! process.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(all(feature = "metrics", feature = "pkcs11"))]

mod common;

use std::collections::BTreeMap;

use common::store;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use palisade_hsm_keys::cryptoki::context::{CInitializeArgs, CInitializeFlags};
use palisade_hsm_keys::cryptoki::session::UserType;
use palisade_hsm_keys::{JwsAlgorithm, KeyStore, SoftStore, sign_compact};
use palisade_testkit::SoftHsm;

/// Every counter as `name{label=value,…}` → value.
fn read(recorder: &DebuggingRecorder) -> BTreeMap<String, u64> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let DebugValue::Counter(n) = value else {
                return None;
            };
            let key = key.key();
            let mut labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            labels.sort();
            Some((format!("{}{{{}}}", key.name(), labels.join(",")), n))
        })
        .collect()
}

#[test]
fn signatures_errors_relogins_and_recoveries_are_counted() {
    let recorder = DebuggingRecorder::new();
    let soft = SoftStore::new();
    let es = soft.generate("m", JwsAlgorithm::ES256).unwrap();
    let ed = soft.generate("n", JwsAlgorithm::EdDSA).unwrap();
    let hsm_store = store();
    let hsm_key = hsm_store.generate("metrics", JwsAlgorithm::ES256).unwrap();
    let doomed = hsm_store
        .generate("metrics-doomed", JwsAlgorithm::ES256)
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        for key in [&es, &es, &ed] {
            sign_compact(&soft, key, None, b"{}").unwrap();
        }
        sign_compact(&hsm_store, &hsm_key, None, b"{}").unwrap();
        // The token logs out underneath (login state is per application): the
        // next signature logs in again.
        let hsm = SoftHsm::get();
        let outsider = hsm.pkcs11().open_rw_session(hsm.slot()).unwrap();
        let _ = outsider.login(UserType::User, Some(&hsm.user_pin()));
        outsider.logout().unwrap();
        drop(outsider);
        sign_compact(&hsm_store, &hsm_key, None, b"{}").unwrap();
        // Every session is closed underneath: recovered, and signing goes on.
        hsm.pkcs11().clone().finalize().unwrap();
        hsm.pkcs11()
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        sign_compact(&hsm_store, &hsm_key, None, b"{}").unwrap();
        // A key destroyed by another store: the signature fails as a backend error.
        store().destroy(&doomed.key).unwrap();
        sign_compact(&hsm_store, &doomed, None, b"{}").unwrap_err();
    });
    let m = read(&recorder);
    let get = |k: &str| {
        *m.get(k)
            .unwrap_or_else(|| panic!("{k} missing from {m:#?}"))
    };
    assert_eq!(
        get("palisade_hsm_keys_signs_total{alg=ES256,backend=soft,outcome=ok}"),
        2
    );
    assert_eq!(
        get("palisade_hsm_keys_signs_total{alg=EdDSA,backend=soft,outcome=ok}"),
        1
    );
    assert_eq!(
        get("palisade_hsm_keys_signs_total{alg=ES256,backend=pkcs11,outcome=ok}"),
        3
    );
    assert_eq!(
        get("palisade_hsm_keys_signs_total{alg=ES256,backend=pkcs11,outcome=error}"),
        1
    );
    assert_eq!(get("palisade_hsm_keys_errors_total{operation=C_Sign}"), 1);
    assert!(get("palisade_hsm_keys_relogins_total{}") >= 1);
    assert!(get("palisade_hsm_keys_session_recoveries_total{}") >= 1);
    assert!(get("palisade_hsm_keys_handles_refound_total{}") >= 1);
    assert!(get("palisade_hsm_keys_sessions_opened_total{}") >= 1);
    // The store's own counters say the same.
    let s = hsm_store.stats();
    assert_eq!((s.signatures, s.errors), (3, 1), "{s:?}");
    assert!(s.relogins >= 1 && s.session_recoveries >= 1, "{s:?}");
    // No label carries a key name, label, token label or PIN.
    let all = format!("{m:?}");
    for secret in [
        "metrics",
        "doomed",
        SoftHsm::USER_PIN,
        SoftHsm::get().token_label(),
    ] {
        assert!(!all.contains(secret), "{secret} in {all}");
    }
}
