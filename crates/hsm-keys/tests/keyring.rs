//! Key lifecycle: pending → active → retiring → retired, the overlap rule, the JWKS,
//! the persisted state, and signing through `JwsSigner`.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{Clock, JwsSigner, ManualClock, SystemClock, Timestamp};
use palisade_hsm_keys::{
    Error, Jwks, JwsAlgorithm, KeyRing, KeyRingBuilder, KeyState, KeyStore, SoftStore,
};
use proptest::prelude::*;

const HOUR: Duration = Duration::from_secs(3600);

fn manual() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_secs(1_800_000_000))
}

/// A ring builder over `store` named `name` for `alg`, tokens up to an hour.
fn builder<S: KeyStore>(store: S, name: &str, alg: JwsAlgorithm) -> KeyRingBuilder<S> {
    KeyRing::builder(store)
        .name(name)
        .algorithm(alg)
        .max_token_lifetime(HOUR)
}

fn ring(clock: &ManualClock, leeway: Duration) -> KeyRing<SoftStore> {
    builder(SoftStore::new(), "jwt", JwsAlgorithm::ES256)
        .verifier_leeway(leeway)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap()
}

fn kids(jwks: &Jwks) -> Vec<String> {
    jwks.keys.iter().map(|k| k.kid.clone()).collect()
}

/// jsonwebtoken verifies a token against a JWKS document, by kid, with exp checked
/// against the real clock.
fn verify_with_jwks(token: &str, jwks: &Jwks) -> serde_json::Value {
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(serde_json::to_value(jwks).unwrap()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let v = jsonwebtoken::Validation::new(header.alg);
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
        .unwrap()
        .claims
}

#[test]
fn states_move_forward_and_the_overlap_is_enforced() {
    let clock = manual();
    let ring = ring(&clock, Duration::from_secs(60));
    assert!(matches!(
        ring.sign_jwt(Default::default(), HOUR),
        Err(Error::NoActiveKey { .. })
    ));

    let v1 = ring.rotate().unwrap();
    assert_eq!(ring.active().unwrap(), v1);
    let v2 = ring.prepare().unwrap();
    assert_eq!(kids(&ring.jwks()), [v1.jwk.kid.clone(), v2.jwk.kid.clone()]);
    assert_eq!(ring.active().unwrap(), v1, "a pending key does not sign");

    clock.advance(Duration::from_secs(10));
    ring.activate(2).unwrap();
    assert_eq!(ring.active().unwrap(), v2);
    let retiring_since = clock.now();
    assert_eq!(
        ring.keys()[0].state,
        KeyState::Retiring {
            since: retiring_since
        }
    );

    // 1 h token lifetime + 60 s leeway + 1 s: one second early is refused, with the time left.
    clock.advance(HOUR + Duration::from_secs(60));
    match ring.retire(1) {
        Err(Error::OverlapTooShort { remaining, .. }) => {
            assert_eq!(remaining, Duration::from_secs(1))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ring.retire_due().unwrap(), Vec::<u32>::new());
    clock.advance(Duration::from_secs(1));
    assert_eq!(ring.retire_due().unwrap(), [1]);
    assert_eq!(kids(&ring.jwks()), std::slice::from_ref(&v2.jwk.kid));

    // Only forward, one step at a time.
    for (version, result) in [
        (2, ring.retire(2)),
        (2, ring.activate(2)),
        (2, ring.destroy(2)),
        (1, ring.activate(1)),
    ] {
        assert!(
            matches!(result, Err(Error::InvalidTransition { .. })),
            "v{version}: {result:?}"
        );
    }
    ring.destroy(1).unwrap();
    assert_eq!(ring.keys().len(), 1);
    assert!(matches!(ring.retire(1), Err(Error::KeyNotFound { .. })));
}

/// A token signed in the same second its key starts retiring is still accepted
/// by a verifier at `exp + leeway`; the key must still be published then.
#[test]
fn the_last_accepted_second_is_covered() {
    let clock = manual();
    let ring = ring(&clock, Duration::from_secs(60));
    ring.rotate().unwrap();
    ring.sign_jwt(Default::default(), HOUR).unwrap();
    ring.rotate().unwrap();
    clock.advance(HOUR + Duration::from_secs(60)); // now == exp + leeway
    assert!(matches!(ring.retire(1), Err(Error::OverlapTooShort { .. })));
    clock.advance(Duration::from_secs(1));
    ring.retire(1).unwrap();
}

#[test]
fn payloads_must_carry_a_bounded_exp() {
    let clock = manual();
    let ring = ring(&clock, Duration::ZERO);
    ring.rotate().unwrap();
    let now = clock.now().as_unix_secs();
    let ok = format!(r#"{{"exp":{}}}"#, now + 3600);
    assert!(ring.sign(None, ok.as_bytes()).is_ok());
    for bad in [
        format!(r#"{{"exp":{}}}"#, now + 3601),
        r#"{"sub":"no exp"}"#.to_owned(),
        r#"{"exp":"soon"}"#.to_owned(),
        "not json".to_owned(),
        "[1]".to_owned(),
    ] {
        assert!(
            matches!(
                ring.sign(None, bad.as_bytes()),
                Err(Error::TokenLifetime { .. })
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        ring.sign_jwt(Default::default(), HOUR + Duration::from_secs(1)),
        Err(Error::TokenLifetime { .. })
    ));
}

#[test]
fn jwt_from_the_ring_verifies_against_its_jwks() {
    let ring = builder(SoftStore::new(), "jwt", JwsAlgorithm::EdDSA)
        .build()
        .unwrap();
    ring.rotate().unwrap();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "alice".into());
    let old = ring
        .sign_jwt(claims.clone(), Duration::from_secs(600))
        .unwrap();
    ring.rotate().unwrap();
    let new = ring.sign_jwt(claims, Duration::from_secs(600)).unwrap();
    assert_ne!(old.key_id, new.key_id);
    let jwks = ring.jwks();
    assert_eq!(verify_with_jwks(&old.compact, &jwks)["sub"], "alice");
    assert_eq!(verify_with_jwks(&new.compact, &jwks)["sub"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jws_signer_signs_with_the_active_key() {
    let ring = builder(SoftStore::new(), "jwt", JwsAlgorithm::ES384)
        .build()
        .unwrap();
    let active = ring.rotate().unwrap();
    let signer: Arc<dyn JwsSigner> = Arc::new(ring.clone());
    let exp = SystemClock.now().as_unix_secs() + 60;
    let signed = signer
        .sign_jws(
            Some("JWT"),
            format!(r#"{{"sub":"bob","exp":{exp}}}"#).as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(signed.key_id, active.jwk.kid);
    assert_eq!(
        verify_with_jwks(&signed.compact, &ring.jwks())["sub"],
        "bob"
    );
    let refused = signer.sign_jws(None, b"{}").await.unwrap_err();
    assert!(
        matches!(refused, palisade_core_traits::Error::InvalidValue { .. }),
        "{refused}"
    );
}

#[test]
fn the_lifecycle_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt.state.json");
    let clock = manual();
    let store = Arc::new(SoftStore::new());
    let open = |store: Arc<SoftStore>, name: &str| {
        builder(store, name, JwsAlgorithm::ES256)
            .state_file(&path)
            .clock(Arc::new(clock.clone()))
            .build()
    };
    let first = open(Arc::clone(&store), "jwt").unwrap();
    first.rotate().unwrap();
    first.rotate().unwrap();
    first.prepare().unwrap();
    let before = first.keys();
    drop(first);

    let again = open(Arc::clone(&store), "jwt").unwrap();
    assert_eq!(again.keys(), before);
    assert_eq!(again.active().unwrap().key.version, 2);
    // The overlap clock kept running across the restart.
    assert!(matches!(
        again.retire(1),
        Err(Error::OverlapTooShort { .. })
    ));

    // A state file for another ring, or a corrupt one, is refused.
    assert!(matches!(
        open(Arc::clone(&store), "other"),
        Err(Error::InvalidConfig { field: "state", .. })
    ));
    // The same lifecycle, taken as a State and given back without a file.
    let state = again.state();
    let restored = builder(Arc::clone(&store), "jwt", JwsAlgorithm::ES256)
        .state(state.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    assert_eq!(restored.keys(), before);
    assert_eq!(restored.state(), state);
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(
        serde_json::from_str::<palisade_hsm_keys::State>(&json).unwrap(),
        state
    );
    // A State and an existing state file at once: which one? Refused.
    assert!(matches!(
        builder(Arc::clone(&store), "jwt", JwsAlgorithm::ES256)
            .state_file(&path)
            .state(state)
            .build(),
        Err(Error::InvalidConfig { field: "state", .. })
    ));
    std::fs::write(&path, b"{").unwrap();
    assert!(matches!(
        open(Arc::clone(&store), "jwt"),
        Err(Error::StateFile { .. })
    ));
    // A state file naming keys the store does not have is refused (SoftStore keys
    // do not survive a process restart; HSM keys do).
    std::fs::remove_file(&path).unwrap();
    let fresh = open(Arc::clone(&store), "jwt").unwrap();
    fresh.rotate().unwrap();
    assert!(matches!(
        open(Arc::new(SoftStore::new()), "jwt"),
        Err(Error::KeyNotFound { .. })
    ));
}

#[test]
fn the_builder_names_the_field_that_is_wrong() {
    let field = |r: Result<KeyRing<SoftStore>, Error>| match r {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    let store = SoftStore::new;
    assert_eq!(
        field(
            KeyRing::builder(store())
                .algorithm(JwsAlgorithm::ES256)
                .max_token_lifetime(HOUR)
                .build()
        ),
        "name"
    );
    assert_eq!(
        field(builder(store(), "a b", JwsAlgorithm::ES256).build()),
        "name"
    );
    assert_eq!(
        field(
            KeyRing::builder(store())
                .name("jwt")
                .max_token_lifetime(HOUR)
                .build()
        ),
        "algorithm"
    );
    assert_eq!(
        field(
            builder(store(), "jwt", JwsAlgorithm::ES256)
                .max_token_lifetime(Duration::from_millis(999))
                .build()
        ),
        "max_token_lifetime"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Rotate,
    Prepare,
    ActivateNewest,
    Issue(u64),
    Advance(u64),
    /// Jump to the last second a verifier still accepts the oldest live token.
    AdvanceToLastAcceptedSecond,
    RetireDue,
    RetireOldest,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Rotate),
        1 => Just(Op::Prepare),
        1 => Just(Op::ActivateNewest),
        // The maximum lifetime is the interesting edge: weight it.
        4 => prop_oneof![Just(3600u64), 1u64..=3600].prop_map(Op::Issue),
        3 => (0u64..=5000).prop_map(Op::Advance),
        2 => Just(Op::AdvanceToLastAcceptedSecond),
        2 => Just(Op::RetireDue),
        1 => Just(Op::RetireOldest),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any schedule of rotations, issuances, clock advances and retirements,
    /// every token a verifier would still accept has its kid in the JWKS.
    #[test]
    fn every_unexpired_token_has_its_key_published(
        ops in proptest::collection::vec(op(), 1..60),
        leeway in 0u64..=120,
    ) {
        let clock = manual();
        let ring = ring(&clock, Duration::from_secs(leeway));
        ring.rotate().unwrap();
        let mut tokens: Vec<(String, u64)> = Vec::new(); // (compact, exp)
        for op in ops {
            match op {
                Op::Rotate => { ring.rotate().unwrap(); }
                Op::Prepare => { ring.prepare().unwrap(); }
                Op::ActivateNewest => {
                    let newest = ring.keys().last().cloned().unwrap();
                    let r = ring.activate(newest.info.key.version);
                    prop_assert!(r.is_ok() || newest.state != KeyState::Pending);
                }
                Op::Issue(ttl) => {
                    let t = ring.sign_jwt(Default::default(), Duration::from_secs(ttl)).unwrap();
                    let exp = clock.now().as_unix_secs() + ttl;
                    tokens.push((t.compact, exp));
                }
                Op::Advance(s) => clock.advance(Duration::from_secs(s)),
                Op::AdvanceToLastAcceptedSecond => {
                    let now = clock.now().as_unix_secs();
                    if let Some(last) = tokens.iter().map(|(_, exp)| exp + leeway).filter(|&t| t > now).min() {
                        clock.set(Timestamp::from_unix_secs(last));
                    }
                }
                Op::RetireDue => { ring.retire_due().unwrap(); }
                Op::RetireOldest => {
                    let oldest = ring.keys().into_iter().find(|k| matches!(k.state, KeyState::Retiring { .. }));
                    if let Some(k) = oldest {
                        match ring.retire(k.info.key.version) {
                            Ok(()) | Err(Error::OverlapTooShort { .. }) => {}
                            Err(e) => prop_assert!(false, "{e}"),
                        }
                    }
                }
            }
            let published = kids(&ring.jwks());
            let now = clock.now().as_unix_secs();
            for (token, exp) in &tokens {
                if exp + leeway >= now {
                    // The kid is read by jsonwebtoken, not by the code under test.
                    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
                    prop_assert!(published.contains(&kid), "token with exp {exp} at {now} lost kid {kid}");
                }
            }
        }
    }
}
