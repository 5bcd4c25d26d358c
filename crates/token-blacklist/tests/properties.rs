//! Property tests of the revocation model against a reference written from the spec.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{ManualClock, RevocationStatus, Timestamp, TokenIdentity};
use palisade_token_blacklist::{Config, MemoryBlacklist};
use proptest::prelude::*;

const START: u64 = 1_700_000_000;
const LEEWAY: u64 = 60;
const SKEW: u64 = 5;
const MAX_LIFETIME: u64 = 3600;
const ISS: [&str; 2] = ["https://a.example", "https://b.example"];
const SUB: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Debug, Clone)]
enum Op {
    /// Revoke (iss, jti) of a token from `sub`, issued `iat_ago` s ago, expiring `exp_in` s from now.
    RevokeToken {
        iss: usize,
        jti: u8,
        sub: usize,
        exp_in: u64,
    },
    /// Watermark for (iss, sub) at now − `back` s.
    RevokeUser {
        iss: usize,
        sub: usize,
        back: u64,
    },
    /// Issuer watermark at now − `back`.
    RevokeIssuer {
        iss: usize,
        back: u64,
    },
    /// Global watermark at now − `back`.
    RevokeAll {
        back: u64,
    },
    /// Check a token.
    Check {
        iss: usize,
        jti: u8,
        sub: usize,
        iat_ago: u64,
        no_iat: bool,
    },
    Advance {
        secs: u64,
    },
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..16u8, 0..3usize, 0..600u64)
            .prop_map(|(iss, jti, sub, exp_in)| Op::RevokeToken { iss, jti, sub, exp_in }),
        2 => (0..2usize, 0..3usize, 0..120u64).prop_map(|(iss, sub, back)| Op::RevokeUser { iss, sub, back }),
        1 => (0..2usize, 0..120u64).prop_map(|(iss, back)| Op::RevokeIssuer { iss, back }),
        1 => (0..120u64).prop_map(|back| Op::RevokeAll { back }),
        6 => (0..2usize, 0..16u8, 0..3usize, 0..200u64, any::<bool>())
            .prop_map(|(iss, jti, sub, iat_ago, no_iat)| Op::Check { iss, jti, sub, iat_ago, no_iat }),
        3 => prop_oneof![0..3u64, 0..120u64, 0..5000u64].prop_map(|secs| Op::Advance { secs }),
        1 => Just(Op::Sweep),
    ]
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MarkKey {
    User(usize, usize),
    Issuer(usize),
    Global,
}

/// The reference: what was revoked, with lifetimes computed from the spec.
#[derive(Default)]
struct Reference {
    /// (iss, jti) → latest `exp` given.
    tokens: HashMap<(usize, u8), u64>,
    /// scope → (highest watermark secs, latest lifetime end secs).
    marks: HashMap<MarkKey, (u64, u64)>,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_revocation_holds_for_its_whole_lifetime(ops in prop::collection::vec(op(), 1..80)) {
        let clock = ManualClock::new(Timestamp::from_unix_secs(START));
        let config = Config::default()
            .leeway(Duration::from_secs(LEEWAY))
            .skew(Duration::from_secs(SKEW))
            .max_token_lifetime(Duration::from_secs(MAX_LIFETIME));
        let bl = MemoryBlacklist::builder()
        .config(config)
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
        let mut reference = Reference::default();
        let now = || clock.now_secs();
        for op in ops {
            match op {
                Op::RevokeToken { iss, jti, sub, exp_in } => {
                    let exp = now() + exp_in;
                    let token = TokenIdentity::new(ISS[iss])
                        .with_subject(SUB[sub])
                        .with_jti(format!("jti-{jti}"))
                        .with_expires_at(exp);
                    bl.revoke_token(&token).unwrap();
                    let e = reference.tokens.entry((iss, jti)).or_insert(exp);
                    *e = (*e).max(exp);
                }
                Op::RevokeUser { iss, sub, back } => {
                    let t = now() - back;
                    bl.revoke_user(ISS[iss], SUB[sub], Timestamp::from_unix_secs(t)).unwrap();
                    mark(&mut reference, MarkKey::User(iss, sub), t, now());
                }
                Op::RevokeIssuer { iss, back } => {
                    let t = now() - back;
                    bl.revoke_issuer(ISS[iss], Timestamp::from_unix_secs(t)).unwrap();
                    mark(&mut reference, MarkKey::Issuer(iss), t, now());
                }
                Op::RevokeAll { back } => {
                    let t = now() - back;
                    bl.revoke_all(Timestamp::from_unix_secs(t)).unwrap();
                    mark(&mut reference, MarkKey::Global, t, now());
                }
                Op::Check { iss, jti, sub, iat_ago, no_iat } => {
                    let iat = now() - iat_ago;
                    let mut token = TokenIdentity::new(ISS[iss])
                        .with_subject(SUB[sub])
                        .with_jti(format!("jti-{jti}"))
                        .with_expires_at(iat + MAX_LIFETIME);
                    if !no_iat {
                        token = token.with_issued_at(iat);
                    }
                    let got = bl.check(&token);
                    let t = now();
                    // A revoked (iss, jti) whose exp + leeway has not passed.
                    let by_jti = reference.tokens.get(&(iss, jti));
                    if by_jti.is_some_and(|&exp| exp + LEEWAY > t) {
                        prop_assert_eq!(got, RevocationStatus::Revoked, "jti revoked");
                    }
                    // An applicable, still-live watermark at or above iat.
                    let applicable = [MarkKey::User(iss, sub), MarkKey::Issuer(iss), MarkKey::Global];
                    let live_mark = applicable.iter().filter_map(|k| reference.marks.get(k))
                        .filter(|(_, until)| *until > t)
                        .map(|(secs, _)| *secs)
                        .max();
                    if let Some(m) = live_mark && (no_iat || iat <= m) {
                        prop_assert_eq!(got, RevocationStatus::Revoked, "watermark {} iat {}", m, iat);
                    }
                    // Never revoked by anything ever given: not revoked.
                    let ever_mark = applicable.iter().filter_map(|k| reference.marks.get(k))
                        .map(|(secs, _)| *secs).max();
                    let ever = by_jti.is_some() || ever_mark.is_some_and(|m| no_iat || iat <= m);
                    if !ever {
                        prop_assert_eq!(got, RevocationStatus::NotRevoked);
                    }
                }
                Op::Advance { secs } => clock.advance(Duration::from_secs(secs)),
                Op::Sweep => {
                    bl.sweep();
                    // Exactly the entries whose lifetime has not ended remain.
                    let t = now();
                    let live_tokens = reference.tokens.values()
                        .filter(|&&exp| exp + LEEWAY + SKEW > t).count();
                    let live_marks = reference.marks.values().filter(|(_, until)| *until > t).count();
                    prop_assert_eq!(bl.len(), live_tokens + live_marks);
                }
            }
        }
    }
}

fn mark(reference: &mut Reference, key: MarkKey, t: u64, now: u64) {
    // A watermark covers `iat` up to `skew` past the time given (issuers' clocks),
    // and lives from there.
    let covered = t + SKEW;
    let until = covered.max(now) + MAX_LIFETIME + LEEWAY + SKEW;
    let e = reference.marks.entry(key).or_insert((covered, until));
    e.0 = e.0.max(covered);
    e.1 = e.1.max(until);
}

trait NowSecs {
    fn now_secs(&self) -> u64;
}

impl NowSecs for ManualClock {
    fn now_secs(&self) -> u64 {
        palisade_core_traits::Clock::now(self).as_unix_secs()
    }
}
