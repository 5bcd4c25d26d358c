//! The revocation model's documented edges: typed errors, whole seconds, bounds.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{
    Clock, ManualClock, RevocationCheck, RevocationStatus, Timestamp, TokenIdentity, TokenRevoker,
};
use palisade_token_blacklist::{Config, Error, MAX_ID_LEN, MemoryBlacklist};

const NOW: u64 = 1_700_000_000;

fn setup(config: Config) -> (ManualClock, MemoryBlacklist) {
    let clock = ManualClock::new(Timestamp::from_unix_secs(NOW));
    let bl = MemoryBlacklist::builder()
        .config(config)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    (clock, bl)
}

fn token(jti: &str) -> TokenIdentity {
    TokenIdentity::new("iss")
        .with_subject("alice")
        .with_jti(jti)
        .with_issued_at(NOW - 10)
        .with_expires_at(NOW + 300)
}

#[test]
fn per_token_revocation_needs_jti_and_exp() {
    let (_, bl) = setup(Config::default());
    let no_jti = TokenIdentity::new("iss").with_expires_at(NOW + 300);
    assert!(matches!(
        bl.revoke_token(&no_jti),
        Err(Error::MissingClaim { claim: "jti" })
    ));
    let no_exp = TokenIdentity::new("iss").with_jti("j");
    assert!(matches!(
        bl.revoke_token(&no_exp),
        Err(Error::MissingClaim { claim: "exp" })
    ));
    assert!(bl.is_empty());
}

#[test]
fn empty_and_oversized_identifiers_are_refused_by_name() {
    let (_, bl) = setup(Config::default());
    let empty_iss = TokenIdentity::new("")
        .with_jti("j")
        .with_expires_at(NOW + 1);
    assert!(matches!(
        bl.revoke_token(&empty_iss),
        Err(Error::InvalidIdentifier { field: "iss", .. })
    ));
    let long = "x".repeat(MAX_ID_LEN + 1);
    let e = bl.revoke_token(&token(&long)).unwrap_err();
    assert!(matches!(e, Error::InvalidIdentifier { field: "jti", .. }));
    assert!(e.to_string().contains("513 bytes"), "{e}");
    assert!(
        !e.to_string().contains("xxxx"),
        "the value is not echoed: {e}"
    );
    assert!(matches!(
        bl.revoke_user("iss", "", Timestamp::from_unix_secs(NOW)),
        Err(Error::InvalidIdentifier { field: "sub", .. })
    ));
    // Exactly at the limit is fine.
    bl.revoke_token(&token(&"y".repeat(MAX_ID_LEN))).unwrap();
    assert_eq!(bl.len(), 1);
    // A token without `iss` (jwt-cache reports it as "") can only be revoked by the
    // global watermark, as docs/token-blacklist.md says.
    assert!(matches!(
        bl.revoke_issuer("", Timestamp::from_unix_secs(NOW)),
        Err(Error::InvalidIdentifier { field: "iss", .. })
    ));
    let no_iss = empty_iss.with_subject("alice").with_issued_at(NOW - 10);
    assert_eq!(bl.check(&no_iss), RevocationStatus::NotRevoked);
    bl.revoke_all(Timestamp::from_unix_secs(NOW)).unwrap();
    assert_eq!(bl.check(&no_iss), RevocationStatus::Revoked);
}

/// A token with `"sub": ""` passes jwt-cache's default policy, so it must be
/// revocable one at a time: the subject only places the Redis key.
#[test]
fn a_token_with_an_empty_subject_is_revoked_like_one_without() {
    let (_, bl) = setup(Config::default());
    let empty_sub = TokenIdentity::new("iss")
        .with_subject("")
        .with_jti("j")
        .with_expires_at(NOW + 300);
    bl.revoke_token(&empty_sub).unwrap();
    assert_eq!(bl.check(&empty_sub), RevocationStatus::Revoked);
    // The same (iss, jti) without `sub` is the same token record.
    let no_sub = TokenIdentity::new("iss")
        .with_jti("j")
        .with_expires_at(NOW + 300);
    assert_eq!(bl.check(&no_sub), RevocationStatus::Revoked);
    let other = TokenIdentity::new("iss")
        .with_subject("")
        .with_jti("k")
        .with_expires_at(NOW + 300);
    assert_eq!(bl.check(&other), RevocationStatus::NotRevoked);
    assert_eq!(bl.len(), 1);
}

/// A watermark covers tokens stamped up to `skew` after the time given: an issuer
/// whose clock runs ahead (within the validators' leeway) stamps a token it minted
/// just before the revocation with a later `iat`.
#[test]
fn a_watermark_covers_a_token_stamped_by_an_issuer_clock_running_ahead() {
    let (clock, bl) = setup(Config::default().skew(Duration::from_secs(5)));
    // Minted half a second before the revocation by an issuer 3 s ahead.
    let ahead = token("a").with_issued_at(NOW + 2);
    bl.revoke_user("iss", "alice", clock.now()).unwrap();
    assert_eq!(bl.check(&ahead), RevocationStatus::Revoked);
    assert_eq!(
        bl.check(&token("b").with_issued_at(NOW + 5)),
        RevocationStatus::Revoked
    );
    // Past the skew: a token minted after the revocation.
    assert_eq!(
        bl.check(&token("c").with_issued_at(NOW + 6)),
        RevocationStatus::NotRevoked
    );
    bl.revoke_all(clock.now()).unwrap();
    assert_eq!(
        bl.check(&token("d").with_subject("bob").with_issued_at(NOW + 5)),
        RevocationStatus::Revoked
    );
}

#[test]
fn a_token_minted_in_the_watermarks_second_is_revoked() {
    // No skew: this is about the rounding of the time given.
    let (_, bl) = setup(Config::default().skew(Duration::ZERO));
    // Watermark at NOW + 0.999 s: floor is NOW.
    let t = Timestamp::from_unix_micros(NOW * 1_000_000 + 999_000);
    bl.revoke_user("iss", "alice", t).unwrap();
    let same_second = token("a").with_issued_at(NOW);
    let next_second = token("b").with_issued_at(NOW + 1);
    let no_iat = TokenIdentity::new("iss")
        .with_subject("alice")
        .with_jti("c");
    let other_user = token("d").with_subject("bob").with_issued_at(NOW);
    assert_eq!(bl.check(&same_second), RevocationStatus::Revoked);
    assert_eq!(bl.check(&next_second), RevocationStatus::NotRevoked);
    assert_eq!(bl.check(&no_iat), RevocationStatus::Revoked);
    assert_eq!(bl.check(&other_user), RevocationStatus::NotRevoked);
}

#[test]
fn watermarks_combine_as_their_maximum_and_never_go_down() {
    let (_, bl) = setup(Config::default().skew(Duration::ZERO));
    bl.revoke_user("iss", "alice", Timestamp::from_unix_secs(NOW - 100))
        .unwrap();
    bl.revoke_issuer("iss", Timestamp::from_unix_secs(NOW - 50))
        .unwrap();
    bl.revoke_all(Timestamp::from_unix_secs(NOW - 200)).unwrap();
    // A lower user watermark later does not lower anything.
    bl.revoke_user("iss", "alice", Timestamp::from_unix_secs(NOW - 300))
        .unwrap();
    let at = |iat: u64, sub: &str, iss: &str| {
        bl.check(
            &TokenIdentity::new(iss)
                .with_subject(sub)
                .with_issued_at(iat),
        )
    };
    assert_eq!(at(NOW - 50, "alice", "iss"), RevocationStatus::Revoked); // issuer mark
    assert_eq!(at(NOW - 49, "alice", "iss"), RevocationStatus::NotRevoked);
    assert_eq!(at(NOW - 50, "bob", "iss"), RevocationStatus::Revoked);
    assert_eq!(at(NOW - 200, "bob", "other"), RevocationStatus::Revoked); // global
    assert_eq!(at(NOW - 199, "bob", "other"), RevocationStatus::NotRevoked);
}

#[test]
fn entries_live_exactly_exp_plus_leeway_plus_skew() {
    let (clock, bl) = setup(Config::default());
    let t = token("a"); // exp = NOW + 300
    bl.revoke_token(&t).unwrap();
    clock.set(Timestamp::from_unix_secs(NOW + 300 + 60 + 5 - 1));
    assert_eq!(bl.sweep(), 0);
    assert_eq!(bl.check(&t), RevocationStatus::Revoked);
    clock.set(Timestamp::from_unix_secs(NOW + 300 + 60 + 5));
    assert_eq!(bl.sweep(), 1);
    assert!(bl.is_empty());
    // Revoking a token already past its lifetime stores nothing.
    bl.revoke_token(
        &TokenIdentity::new("iss")
            .with_jti("old")
            .with_expires_at(NOW),
    )
    .unwrap();
    assert!(bl.is_empty());
}

#[test]
fn watermarks_live_max_token_lifetime_plus_leeway_plus_skew() {
    let config = Config::default().max_token_lifetime(Duration::from_secs(3600));
    let (clock, bl) = setup(config);
    bl.revoke_user("iss", "alice", Timestamp::from_unix_secs(NOW))
        .unwrap();
    // It covers tokens stamped up to NOW + 5 (skew): the last of them is accepted
    // until NOW + 5 + 3600 + 60 (leeway), and the watermark outlives that by the
    // skew again (instances' clocks).
    clock.set(Timestamp::from_unix_secs(NOW + 5 + 3600 + 65 - 1));
    assert_eq!(bl.sweep(), 0);
    clock.set(Timestamp::from_unix_secs(NOW + 5 + 3600 + 65));
    assert_eq!(bl.sweep(), 1);
}

#[test]
fn a_full_store_refuses_instead_of_evicting_a_live_revocation() {
    let (clock, bl) = setup(Config::default().capacity(NonZeroUsize::new(2).unwrap()));
    bl.revoke_token(&token("a")).unwrap();
    bl.revoke_user("iss", "bob", Timestamp::from_unix_secs(NOW))
        .unwrap();
    assert!(matches!(
        bl.revoke_token(&token("b")),
        Err(Error::Full { capacity: 2 })
    ));
    assert_eq!(bl.check(&token("a")), RevocationStatus::Revoked);
    // Re-revoking an existing entry is not a new entry.
    bl.revoke_token(&token("a")).unwrap();
    // Once "a" has expired, the sweep on a full store makes room.
    clock.set(Timestamp::from_unix_secs(NOW + 365));
    bl.revoke_token(&token("b").with_expires_at(NOW + 1000))
        .unwrap();
    assert_eq!(bl.check(&token("b")), RevocationStatus::Revoked);
}

#[tokio::test]
async fn implements_the_core_traits_with_a_local_answer() {
    let (_, bl) = setup(Config::default());
    let bl: Arc<MemoryBlacklist> = Arc::new(bl);
    let check: Arc<dyn RevocationCheck> = bl.clone();
    let revoker: Arc<dyn TokenRevoker> = bl.clone();
    assert_eq!(
        check.check_local(&token("a")),
        Some(RevocationStatus::NotRevoked)
    );
    revoker.revoke_token(&token("a")).await.unwrap();
    assert_eq!(
        check.check_local(&token("a")),
        Some(RevocationStatus::Revoked)
    );
    revoker
        .revoke_user("iss", "carol", Timestamp::from_unix_secs(NOW))
        .await
        .unwrap();
    let carol = token("z").with_subject("carol");
    assert_eq!(
        check.check(&carol).await.unwrap(),
        RevocationStatus::Revoked
    );
    let e = revoker
        .revoke_token(&TokenIdentity::new("iss"))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        palisade_core_traits::Error::InvalidValue { field: "jti", .. }
    ));
    assert_eq!(bl.stats().hits, 2);
    assert_eq!(bl.stats().checks, 3);
}

#[test]
fn invalid_config_is_refused_by_name() {
    // A zero capacity is unrepresentable (NonZeroUsize); a zero lifetime is refused.
    let e = MemoryBlacklist::builder()
        .config(Config::default().max_token_lifetime(Duration::ZERO))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::InvalidConfig {
                field: "max_token_lifetime",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("max_token_lifetime"), "{e}");
}
