//! `Pkcs11Store` on a real SoftHSM2 token: object attributes, token selection,
//! restart, parallel signing, async callers, and the PIN. (The tests that pull
//! sessions or the login away underneath live in `pkcs11_recovery.rs`.)
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point
#![cfg(feature = "pkcs11")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{store, verify};
use palisade_core_traits::{JwsSigner, SystemClock};
use palisade_hsm_keys::cryptoki::mechanism::MechanismType;
use palisade_hsm_keys::cryptoki::object::{Attribute, AttributeType, ObjectClass};
use palisade_hsm_keys::{
    Error, JwsAlgorithm, KeyRing, KeyStore, Pin, Pkcs11Store, TokenSelector, sign_compact,
};
use palisade_testkit::SoftHsm;

#[test]
fn private_keys_are_token_resident_sensitive_and_not_extractable() {
    let store = store();
    for alg in [
        JwsAlgorithm::ES256,
        JwsAlgorithm::RS256,
        JwsAlgorithm::EdDSA,
    ] {
        let info = store.generate(&format!("attrs-{alg}"), alg).unwrap();
        let label = format!("attrs-{alg}/1/{alg}").into_bytes();
        let session = SoftHsm::get().user_session();
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.clone()),
            ])
            .unwrap();
        assert_eq!(
            found.len(),
            1,
            "{alg}: one private key labelled name/version/alg"
        );
        let attrs = session
            .get_attributes(
                found[0],
                &[
                    AttributeType::Token,
                    AttributeType::Private,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::Id,
                ],
            )
            .unwrap();
        for a in &attrs {
            match a {
                Attribute::Token(v)
                | Attribute::Private(v)
                | Attribute::Sensitive(v)
                | Attribute::NeverExtractable(v) => {
                    assert!(*v, "{alg}: {a:?}")
                }
                Attribute::Extractable(v) => assert!(!*v, "{alg}: extractable"),
                Attribute::Id(id) => assert_eq!(id, &label),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(attrs.len(), 6);
        // The secret value cannot be read.
        let secret = if alg == JwsAlgorithm::RS256 {
            AttributeType::PrivateExponent
        } else {
            AttributeType::Value
        };
        let read = session.get_attributes(found[0], &[secret]).unwrap();
        assert!(
            read.is_empty(),
            "{alg}: secret attribute was readable: {read:?}"
        );
        // The public half is there too, with the same label.
        let public = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(label),
            ])
            .unwrap();
        assert_eq!(public.len(), 1);
        drop(info);
    }
}

#[test]
fn tokens_are_chosen_by_label_or_uri_never_by_index() {
    let hsm = SoftHsm::get();
    let pin = || Pin::new(SoftHsm::USER_PIN);
    let uri = format!(
        "pkcs11:token={};manufacturer=SoftHSM%20project",
        hsm.token_label()
    );
    let open = |token: &str| {
        Pkcs11Store::builder()
            .context(hsm.pkcs11().clone())
            .token(token)
            .pin(pin())
            .build()
    };
    let by_uri = open(&uri).unwrap();
    assert_eq!(by_uri.slot(), hsm.slot());
    assert_eq!(by_uri.token_label(), hsm.token_label());

    for bad in [
        "no-such-token",
        "pkcs11:token=no-such-token",
        "pkcs11:slot-id=0",
        "pkcs11:object=x",
        "pkcs11:token=%zz",
    ] {
        let err = open(bad).unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { field: "token", .. }),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        TokenSelector::parse("pkcs11:token=My%20Token;serial=42;object=k;id=%01").unwrap(),
        TokenSelector {
            token: Some("My Token".into()),
            serial: Some("42".into()),
            ..Default::default()
        }
    );
}

#[test]
fn load_by_module_path_shares_the_initialised_library() {
    let hsm = SoftHsm::get();
    // The testkit already called C_Initialize in this process: that must be fine.
    let load = || {
        Pkcs11Store::builder()
            .module(hsm.module_path())
            .token(hsm.token_label())
            .pin(Pin::new(SoftHsm::USER_PIN))
            .build()
            .unwrap()
    };
    let (a, b) = (load(), load());
    let info = a.generate("loaded", JwsAlgorithm::ES256).unwrap();
    let jws = sign_compact(&b, &b.info(&info.key).unwrap(), Some("JWT"), b"{}").unwrap();
    assert_eq!(verify(&jws.compact, &info.jwk), serde_json::json!({}));
}

#[test]
fn mechanisms_come_from_the_token() {
    let hsm = SoftHsm::get();
    let list = hsm.pkcs11().get_mechanism_list(hsm.slot()).unwrap();
    let store = store();
    assert_eq!(
        store.supports(JwsAlgorithm::EdDSA),
        list.contains(&MechanismType::EDDSA)
            && list.contains(&MechanismType::ECC_EDWARDS_KEY_PAIR_GEN)
    );
    assert_eq!(
        store.supports(JwsAlgorithm::ES256),
        list.contains(&MechanismType::ECDSA)
    );
    // SoftHSM 2.6 has no CKM_ECDSA_SHA256; ES256 works anyway (digest computed here).
    if !list.contains(&MechanismType::ECDSA_SHA256) {
        let info = store
            .generate("no-ecdsa-sha256", JwsAlgorithm::ES256)
            .unwrap();
        sign_compact(&store, &info, None, b"{}").unwrap();
    }
}

#[test]
fn a_restart_keeps_keys_and_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        KeyRing::builder(store())
            .name("restart")
            .algorithm(JwsAlgorithm::PS256)
            .max_token_lifetime(Duration::from_secs(600))
            .state_file(dir.path().join("state.json"))
            .build()
            .unwrap()
    };
    let ring = open();
    ring.rotate().unwrap();
    ring.rotate().unwrap();
    let before = ring.keys();
    let jwks = ring.jwks();
    drop(ring);

    let ring = open();
    assert_eq!(ring.keys(), before);
    assert_eq!(ring.jwks(), jwks);
    let token = ring
        .sign_jwt(Default::default(), Duration::from_secs(60))
        .unwrap();
    assert_eq!(token.key_id, before[1].info.jwk.kid);
    assert!(matches!(ring.retire(1), Err(Error::OverlapTooShort { .. })));
}

#[test]
fn threads_sign_in_parallel() {
    let store = store();
    let keys: Vec<_> = [
        JwsAlgorithm::ES256,
        JwsAlgorithm::RS256,
        JwsAlgorithm::EdDSA,
    ]
    .into_iter()
    .map(|alg| store.generate(&format!("par-{alg}"), alg).unwrap())
    .collect();
    let barrier = Arc::new(std::sync::Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|t| {
            let store = store.clone();
            let keys = keys.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut out = Vec::new();
                for i in 0..20 {
                    let key = &keys[(t + i) % keys.len()];
                    let payload = format!(r#"{{"t":{t},"i":{i}}}"#);
                    out.push((
                        key.clone(),
                        sign_compact(&store, key, None, payload.as_bytes()).unwrap(),
                        t,
                        i,
                    ));
                }
                out
            })
        })
        .collect();
    let mut n = 0;
    for h in handles {
        for (key, jws, t, i) in h.join().unwrap() {
            assert_eq!(
                verify(&jws.compact, &key.jwk),
                serde_json::json!({"t": t, "i": i})
            );
            n += 1;
        }
    }
    assert_eq!(n, 120);
    let stats = store.stats();
    assert!(stats.sessions_opened >= 1);
    assert_eq!(stats.session_recoveries, 0);
    assert_eq!(
        stats.handles_refound, 0,
        "steady-state signing never searches the token"
    );
}

#[test]
fn signers_beyond_the_session_bound_wait_for_a_session() {
    let hsm = SoftHsm::get();
    let store = Pkcs11Store::builder()
        .context(hsm.pkcs11().clone())
        .token(hsm.token_label())
        .pin(Pin::new(SoftHsm::USER_PIN))
        .max_sessions(std::num::NonZeroUsize::MIN)
        .build()
        .unwrap();
    let key = store.generate("bounded", JwsAlgorithm::ES256).unwrap();
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (store, key, barrier) = (store.clone(), key.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                (0..10)
                    .map(|i| {
                        sign_compact(
                            &store,
                            &key,
                            None,
                            format!(r#"{{"t":{t},"i":{i}}}"#).as_bytes(),
                        )
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for t in threads {
        for jws in t.join().unwrap() {
            verify(&jws.compact, &key.jwk);
        }
    }
    assert_eq!(store.stats().sessions_opened, 1, "{:?}", store.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_callers_sign_through_the_ring() {
    let ring = KeyRing::builder(store())
        .name("async")
        .algorithm(JwsAlgorithm::ES256)
        .max_token_lifetime(Duration::from_secs(600))
        .build()
        .unwrap();
    let active = ring.rotate().unwrap();
    let exp = palisade_core_traits::Clock::now(&SystemClock).as_unix_secs() + 60;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let ring = ring.clone();
            tokio::spawn(async move {
                ring.sign_jws(
                    Some("JWT"),
                    format!(r#"{{"i":{i},"exp":{exp}}}"#).as_bytes(),
                )
                .await
                .unwrap()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let signed = t.await.unwrap();
        assert_eq!(verify(&signed.compact, &active.jwk)["i"], i);
    }
}

#[test]
fn a_stale_cached_handle_is_found_again() {
    let signer = store();
    let p256: &[u8] = include_bytes!("data/p256.pk8.der");
    let info = signer
        .import_pkcs8("rehandle", JwsAlgorithm::ES256, p256)
        .unwrap();
    sign_compact(&signer, &info, None, b"{}").unwrap(); // caches the handle
    // Someone else replaces the object: same label, same key, new handle.
    let admin = store();
    admin.destroy(&info.key).unwrap();
    let again = admin
        .import_pkcs8("rehandle", JwsAlgorithm::ES256, p256)
        .unwrap();
    assert_eq!(again, info);
    let before = signer.stats();
    let jws = sign_compact(&signer, &info, None, br#"{"after":"replace"}"#).unwrap();
    assert_eq!(verify(&jws.compact, &info.jwk)["after"], "replace");
    assert_eq!(signer.stats().handles_refound, before.handles_refound + 1);
}

#[test]
fn the_pin_never_shows() {
    let pin = Pin::new(SoftHsm::USER_PIN);
    assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");
    let store = store();
    let debug = format!("{store:?}");
    assert!(!debug.contains(SoftHsm::USER_PIN), "{debug}");
    assert!(debug.contains("<redacted>"));

    let hsm = SoftHsm::get();
    let wrong = "wrong-pin-98765";
    // Another open session is logged in already, so a wrong PIN may or may not be
    // checked by the token; if it is refused, the error must not contain it.
    let wrong_pin = Pkcs11Store::builder()
        .context(hsm.pkcs11().clone())
        .token(hsm.token_label())
        .pin(Pin::new(wrong))
        .build();
    if let Err(e) = wrong_pin {
        assert!(!format!("{e} {e:?}").contains(wrong));
    }
    let missing = Pin::from_env("PALISADE_TEST_PIN_THAT_IS_NOT_SET").unwrap_err();
    assert!(
        matches!(missing, Error::InvalidConfig { field: "pin", .. }),
        "{missing}"
    );
}

#[test]
fn a_pin_in_a_pkcs11_uri_never_shows_in_any_error() {
    const PIN: &str = "Secr3tPin8472";
    let hsm = SoftHsm::get();
    let t = hsm.token_label();
    // Every kind of defect, each with a PIN in the URI (RFC 7512 puts it in the query
    // as pin-value; users also misplace it).
    let uris = [
        format!("pkcs11:token={t};colour=blue?pin-value={PIN}"), // unknown attribute
        format!("pkcs11:token={t};x-vendor={PIN}"),              // unknown, PIN as value
        format!("pkcs11:token={t};{PIN}=1"),                     // unknown, PIN as name
        format!("pkcs11:token={t};{PIN}?pin-value={PIN}"),       // no '='
        format!("pkcs11:token=pr%zzod?pin-value={PIN}"),         // bad percent-encoding
        format!("pkcs11:token=%ff%fe?pin-value={PIN}"),          // not UTF-8
        format!("pkcs11:token={t}?pin-value={PIN}%zz"),          // bad encoding in the PIN
        format!("pkcs11:object=key;type=private?pin-value={PIN}"), // missing token
        format!("pkcs11:token={t};token={t}?pin-value={PIN}"),   // duplicate attribute
        format!("pkcs11:slot-id=0?pin-value={PIN}"),             // refused attribute
        format!("pkcs11:token={t};pin-value={PIN}"),             // PIN in the path
        format!("pkcs11:token={t}?pin-value={PIN}"),             // a PIN at all
        format!("PKCS11:token={t}?pin-value={PIN}"),             // scheme in upper case
        format!("pkcs11:token={t}?pin-source=file:/run/{PIN}"),  // PIN source
        format!("pkcs11:token={t}?module-path=/x.so&pin-value={PIN}"), // module
        format!("pkcs11:token={t}?x-pin={PIN}"),                 // unknown query attribute
        format!("pkcs11:token={t}?pin-value={PIN}&pin-value={PIN}"), // duplicate query
    ];
    for uri in &uris {
        let parsed = TokenSelector::parse(uri).unwrap_err();
        let builder = Pkcs11Store::builder()
            .context(hsm.pkcs11().clone())
            .token(uri.as_str())
            .pin(Pin::new(SoftHsm::USER_PIN));
        let shown_builder = format!("{builder:?}");
        assert!(!shown_builder.contains(PIN), "{shown_builder}");
        let opened = builder.build().unwrap_err();
        for e in [&parsed, &opened] {
            assert!(
                matches!(e, Error::InvalidConfig { field: "token", .. }),
                "{uri}: {e}"
            );
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains(PIN), "{uri} shows the PIN: {shown}");
            assert!(!shown.contains(uri.as_str()), "{uri} is echoed: {shown}");
        }
    }
    // What is named instead: the RFC 7512 attribute, or a position.
    let e = TokenSelector::parse(&uris[8]).unwrap_err().to_string();
    assert!(e.contains("token appears twice"), "{e}");
    let e = TokenSelector::parse(&uris[2]).unwrap_err().to_string();
    assert!(e.contains("path attribute #2"), "{e}");
    // A well-formed URI that matches no token: its values are not shown either, only
    // the names of the attributes it selects by.
    let unmatched = format!("pkcs11:token=no-such-{PIN};serial={PIN}");
    let e = Pkcs11Store::builder()
        .context(hsm.pkcs11().clone())
        .token(unmatched.as_str())
        .pin(Pin::new(SoftHsm::USER_PIN))
        .build()
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(PIN), "{shown}");
    assert!(shown.contains("(token, serial)"), "{shown}");
}
