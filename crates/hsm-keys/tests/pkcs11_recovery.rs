//! Sessions closed or logged out underneath, and signing goes on. Its own test
//! binary, because these disturb every session in the process (and one changes the
//! PIN for a while); the tests share a lock so they do not disturb each other either.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "pkcs11")]

mod common;

use common::{store, verify};
use palisade_hsm_keys::cryptoki::context::{CInitializeArgs, CInitializeFlags};
use palisade_hsm_keys::{JwsAlgorithm, KeyStore, Pin, Pkcs11Store, sign_compact};
use palisade_testkit::SoftHsm;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn signing_survives_all_sessions_being_closed_underneath() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let hsm = SoftHsm::get();
    let store = Pkcs11Store::builder()
        .context(hsm.pkcs11().clone())
        .token(hsm.token_label())
        .pin(Pin::new(SoftHsm::USER_PIN))
        .build()
        .unwrap();
    let keys: Vec<_> = [JwsAlgorithm::ES256, JwsAlgorithm::RS256]
        .into_iter()
        .map(|alg| store.generate(&format!("recover-{alg}"), alg).unwrap())
        .collect();
    for round in 0..3 {
        for key in &keys {
            sign_compact(&store, key, None, b"{}").unwrap();
        }
        // cryptoki 0.12 has no C_CloseAllSessions; C_Finalize closes every session
        // of the application (and invalidates every handle), which is harsher.
        hsm.pkcs11().clone().finalize().unwrap();
        hsm.pkcs11()
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .unwrap();
        for key in &keys {
            let jws = sign_compact(
                &store,
                key,
                None,
                format!(r#"{{"round":{round}}}"#).as_bytes(),
            )
            .unwrap();
            assert_eq!(verify(&jws.compact, &key.jwk)["round"], round);
        }
    }
    // Key management works again too.
    let listed = store.list().unwrap();
    assert_eq!(
        listed
            .iter()
            .filter(|k| k.key.name.starts_with("recover-"))
            .count(),
        2
    );
    assert_eq!(store.stats().session_recoveries, 3, "{:?}", store.stats());
}

#[test]
fn signing_survives_the_token_logging_out_underneath() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let store = store();
    let info = store.generate("logout", JwsAlgorithm::ES256).unwrap();
    sign_compact(&store, &info, None, b"{}").unwrap();
    for _ in 0..3 {
        // Login state is per application: a logout on any session logs out all.
        let outsider = user_session();
        outsider.logout().unwrap();
        drop(outsider);
        let before = store.stats();
        let jws = sign_compact(&store, &info, None, br#"{"after":"logout"}"#).unwrap();
        assert!(
            store.stats().relogins > before.relogins,
            "{:?}",
            store.stats()
        );
        assert_eq!(verify(&jws.compact, &info.jwk)["after"], "logout");
    }
}

/// A token logged out lists no private object, without an error: a key generated then
/// must not take a version that exists (before, it took 1 again, a second object under
/// the first key's label, and a ring that held both could not load again).
#[test]
fn a_key_generated_after_a_logout_takes_the_next_version() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let store = store();
    let first = store.generate("after-logout", JwsAlgorithm::ES256).unwrap();
    let outsider = user_session();
    outsider.logout().unwrap();
    drop(outsider);
    let second = store.generate("after-logout", JwsAlgorithm::ES256).unwrap();
    assert_eq!(
        (first.key.version, second.key.version),
        (first.key.version, first.key.version + 1)
    );
    assert_ne!(first.kid(), second.kid());
    // Both are listed, each version once.
    let listed: Vec<_> = (store.list().unwrap().into_iter())
        .filter(|k| k.key.name == "after-logout")
        .map(|k| k.key.version)
        .collect();
    let mut distinct = listed.clone();
    distinct.dedup();
    assert_eq!(distinct, listed);
    assert!(
        listed.ends_with(&[first.key.version, second.key.version]),
        "{listed:?}"
    );
}

/// Another application's key pair under a label of our form whose public half does not
/// fit it (a P-384 key labelled ES256) is left out of the listing; before, it failed
/// the listing, and with it `build` and every `generate`.
#[test]
fn a_foreign_object_under_our_label_form_does_not_break_the_store() {
    use palisade_hsm_keys::cryptoki::mechanism::Mechanism;
    use palisade_hsm_keys::cryptoki::object::Attribute;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let outsider = user_session();
    let label = b"foreign/1/ES256".to_vec();
    let p384 = vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let (public, private) = outsider
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::Label(label.clone()),
                Attribute::EcParams(p384),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Token(true),
                Attribute::Label(label),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
            ],
        )
        .unwrap();
    let store = store();
    let listed = store.list().unwrap();
    assert!(listed.iter().all(|k| k.key.name != "foreign"), "{listed:?}");
    let ours = store
        .generate("beside-foreign", JwsAlgorithm::ES256)
        .unwrap();
    sign_compact(&store, &ours, None, b"{}").unwrap();
    outsider.destroy_object(public).unwrap();
    outsider.destroy_object(private).unwrap();
}

#[test]
fn a_refused_pin_is_offered_once_not_on_every_signature() {
    use palisade_hsm_keys::Error;
    use palisade_hsm_keys::cryptoki::types::AuthPin;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let store = store();
    let info = store.generate("pin-change", JwsAlgorithm::ES256).unwrap();
    sign_compact(&store, &info, None, b"{}").unwrap();
    // An operator changes the PIN on the token, and the token logs out: the store
    // holds a PIN that is now wrong.
    let (old, new) = (SoftHsm::USER_PIN, "palisade-user-rotated-4321");
    let outsider = user_session();
    (outsider.set_pin(&AuthPin::from(old), &AuthPin::from(new))).unwrap();
    outsider.logout().unwrap();
    drop(outsider);
    for _ in 0..5 {
        let err = sign_compact(&store, &info, None, b"{}").unwrap_err();
        assert!(matches!(err, Error::PinRefused { .. }), "{err}");
        assert!(!format!("{err} {err:?}").contains(old));
    }
    // One wrong try reached the token, not one per signature (a token locks its PIN
    // after a few).
    assert_eq!(store.stats().pin_refusals, 1, "{:?}", store.stats());
    // The PIN back as it was; a store built again signs.
    let outsider = user_session_with(new);
    (outsider.set_pin(&AuthPin::from(new), &AuthPin::from(old))).unwrap();
    drop(outsider);
    let again = palisade_hsm_keys::Pkcs11Store::builder()
        .context(SoftHsm::get().pkcs11().clone())
        .token(SoftHsm::get().token_label())
        .pin(Pin::new(old))
        .build()
        .unwrap();
    let jws = sign_compact(&again, &info, None, br#"{"pin":"right"}"#).unwrap();
    assert_eq!(verify(&jws.compact, &info.jwk)["pin"], "right");
}

fn user_session() -> palisade_hsm_keys::cryptoki::session::Session {
    user_session_with(SoftHsm::USER_PIN)
}

/// A logged-in session on the test token, found by label (the testkit's remembered
/// slot number is stale once the other test re-initialised the library).
fn user_session_with(pin: &str) -> palisade_hsm_keys::cryptoki::session::Session {
    use palisade_hsm_keys::cryptoki::types::AuthPin;
    use palisade_hsm_keys::cryptoki::{error::Error as CkError, error::RvError, session::UserType};
    let hsm = SoftHsm::get();
    let ctx = hsm.pkcs11();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == hsm.token_label())
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::from(pin))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => session,
        Err(e) => panic!("C_Login: {e}"),
    }
}
