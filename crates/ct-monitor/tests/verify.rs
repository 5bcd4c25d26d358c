//! The per-log state machine over the real Navigli2025h2 leaves, with tree heads
//! signed by a P-256 key generated in the test (a log's private key is not public):
//! every kind of misbehaviour produces evidence and leaves the state where it was.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use common::{TestLog, naive};
use palisade_core_traits::{EventKind, SecurityEvent, Timestamp};
use palisade_ct_monitor::{
    AppendError, Authorizer, CertificateInfo, Error, LogMisbehaved, LogVerifier, Misbehaviour,
    State, TreeHeadUpdate, WatchItem, Watchlist, check_entry, parse_data_tile,
};

fn misbehaved(e: AppendError) -> LogMisbehaved {
    match e {
        AppendError::Misbehaved(m) => *m,
        other => panic!("{other:?}"),
    }
}

#[test]
fn honest_log_advances_and_recomputes_every_root() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("navigli-test", log.key.clone());
    assert_eq!(v.append_leaves([l[0]]), Err(AppendError::NoTrustedTreeHead));
    let s512 = log.sth(512, naive::root(&l[..512]), 1);
    assert_eq!(
        v.update_tree_head(s512.clone(), &[]).unwrap(),
        TreeHeadUpdate::Initial
    );
    assert_eq!(v.append_leaves(l[..512].iter().copied()).unwrap(), 512);
    assert_eq!(
        v.append_leaves([l[512]]),
        Err(AppendError::BeyondTreeHead { tree_size: 512 })
    );
    let s1024 = log.sth(1024, naive::root(&l), 2);
    let proof = naive::proof(512, &l);
    assert_eq!(
        v.update_tree_head(s1024.clone(), &proof).unwrap(),
        TreeHeadUpdate::Advanced
    );
    assert_eq!(v.append_leaves(l[512..].iter().copied()).unwrap(), 1024);
    assert_eq!(v.range().root(), s1024.root_hash);
    // Re-signed same tree (its later signature is kept), and an older head with
    // its proof, stamped before the trusted one (a cached copy), which changes
    // nothing. Stamped after it, it would be a rollback.
    let resigned = log.sth(1024, naive::root(&l), 3);
    assert_eq!(
        v.update_tree_head(resigned.clone(), &[]).unwrap(),
        TreeHeadUpdate::Same
    );
    let s778 = log.sth(778, naive::root(&l[..778]), 2);
    assert_eq!(
        v.update_tree_head(s778, &naive::proof(778, &l)).unwrap(),
        TreeHeadUpdate::Older
    );
    assert_eq!(v.trusted(), Some(&resigned));
    // Inclusion proofs against the trusted head.
    v.check_inclusion(700, l[700], &naive::path(700, &l))
        .unwrap();
    let m = misbehaved(
        v.check_inclusion(701, l[700], &naive::path(700, &l))
            .unwrap_err(),
    );
    assert!(matches!(
        m.evidence,
        Misbehaviour::BadInclusionProof {
            leaf_index: 701,
            ..
        }
    ));
    // Restoring the stored state gives the same verifier.
    let back = LogVerifier::builder("navigli-test", log.key.clone())
        .state(v.state().unwrap())
        .build()
        .unwrap();
    assert_eq!(back.range(), v.range());
    assert_eq!(back.trusted(), Some(&resigned));
    // A pin and a state together are refused: a restored verifier already trusts a head.
    assert!(matches!(
        LogVerifier::builder("navigli-test", log.key.clone())
            .pin(512, naive::root(&l[..512]))
            .state(v.state().unwrap())
            .build(),
        Err(Error::InvalidConfig { field: "pin", .. })
    ));
    // A range ahead of its head is refused.
    let mut ahead: State = v.state().unwrap();
    ahead.trusted = log.sth(512, naive::root(&l[..512]), 3);
    assert!(matches!(
        LogVerifier::builder("navigli-test", log.key.clone())
            .state(ahead)
            .build(),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn bad_signature_fork_inconsistency_and_root_mismatch_carry_evidence() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("navigli-test", log.key.clone());
    let s512 = log.sth(512, naive::root(&l[..512]), 1);
    v.update_tree_head(s512.clone(), &[]).unwrap();

    // Bad signature: a real head with one root bit flipped.
    let mut forged = log.sth(1024, naive::root(&l), 2);
    forged.root_hash[0] ^= 1;
    let m = v
        .update_tree_head(forged.clone(), &naive::proof(512, &l))
        .unwrap_err();
    assert_eq!(m.evidence, Misbehaviour::BadSignature { sth: forged });
    assert_eq!(m.log_id, *log.key.log_id());

    // Fork: same size, both validly signed, different roots.
    let mut other = l[..512].to_vec();
    other[3] = naive::leaf(b"inserted");
    let fork = log.sth(512, naive::root(&other), 3);
    let m = v.update_tree_head(fork.clone(), &[]).unwrap_err();
    assert_eq!(
        m.evidence,
        Misbehaviour::Fork {
            trusted: s512.clone(),
            other: fork
        }
    );

    // Inconsistent: a larger validly signed head over a history that rewrote leaf 3.
    let mut rewritten = l.clone();
    rewritten[3] = naive::leaf(b"inserted");
    let bad_new = log.sth(1024, naive::root(&rewritten), 4);
    let proof = naive::proof(512, &rewritten);
    let m = v.update_tree_head(bad_new.clone(), &proof).unwrap_err();
    match &m.evidence {
        Misbehaviour::InconsistentTreeHeads {
            old, new, proof: p, ..
        } => {
            assert_eq!((old, new, p), (&s512, &bad_new, &proof));
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(v.trusted(), Some(&s512), "never advances past misbehaviour");

    // Root mismatch: the head is consistent-looking (first head) but the entries
    // the log serves do not hash to it.
    let mut v2 = LogVerifier::new("navigli-test", log.key.clone());
    let lie = log.sth(768, naive::root(&l[..778][..768]).map(|b| b ^ 0xff), 5);
    v2.update_tree_head(lie.clone(), &[]).unwrap();
    let m = misbehaved(v2.append_leaves(l[..768].iter().copied()).unwrap_err());
    assert_eq!(
        m.evidence,
        Misbehaviour::RootMismatch {
            sth: lie,
            computed: naive::root(&l[..768])
        }
    );
    assert_eq!(
        v2.range().size(),
        767,
        "state stays at the last verified leaf"
    );

    // The shared-vocabulary event carries the signed objects.
    let ev = m
        .to_security_event(Timestamp::from_unix_nanos(1_700_000_000_000_000_000))
        .unwrap();
    assert_eq!(ev.kind, EventKind::LogMisbehaviour);
    assert_eq!(ev.evidence("misbehaviour"), Some("root_mismatch"));
    assert_eq!(ev.evidence("sth_tree_size"), Some("768"));
    assert!(ev.evidence("sth_signature").is_some());
    assert_eq!(
        SecurityEvent::from_json(ev.to_json().as_bytes()).unwrap(),
        ev
    );
}

#[test]
fn unauthorized_certificate_becomes_a_security_event() {
    let d = common::read("static-ct/navigli2025h2/tile/data/000");
    let leaves = parse_data_tile(&d).unwrap();
    let (index, entry, info, name) = leaves
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let info = CertificateInfo::from_entry(&l.entry).unwrap();
            let name = info
                .identifiers
                .dns_names
                .iter()
                .find(|n| !n.contains('*'))?
                .clone();
            Some((i as u64, l.entry, info, name))
        })
        .unwrap();
    let list = Watchlist::new([WatchItem::Domain(name.clone())]);
    let v = check_entry(&entry, index, &list, &Authorizer::new());
    let t = Timestamp::from_unix_nanos(1);
    let ev = v.to_security_event("navigli2025h2", 0, t).unwrap().unwrap();
    assert_eq!(ev.kind, EventKind::UnauthorizedCertificate);
    assert_eq!(
        ev.evidence("matched"),
        Some(format!("{name} on {name}").as_str())
    );
    assert_eq!(
        SecurityEvent::from_json(ev.to_json().as_bytes()).unwrap(),
        ev
    );
    let mut auth = Authorizer::new();
    auth.allow_tbs_hash(info.tbs_hash);
    let v = check_entry(&entry, index, &list, &auth);
    assert_eq!(v.to_security_event("navigli2025h2", 0, t).unwrap(), None);
}

#[test]
fn pinned_tree_is_checked_against_the_first_signed_head() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let pinned_root = naive::root(&l[..512]);
    // Without a pin the first head is trusted blindly: a forked log gets in.
    let mut forked: Vec<_> = l.clone();
    forked[3] = forked[4];
    let fork_head = log.sth(1024, naive::root(&forked), 2);
    let mut blind = LogVerifier::new("navigli-test", log.key.clone());
    assert_eq!(
        blind.update_tree_head(fork_head.clone(), &[]).unwrap(),
        TreeHeadUpdate::Initial
    );
    // With the pin, the same head and any proof the log can make fail.
    let mut v = LogVerifier::builder("navigli-test", log.key.clone())
        .pin(512, pinned_root)
        .build()
        .unwrap();
    assert_eq!(v.anchor(), Some((512, pinned_root)));
    assert!(v.trusted().is_none());
    let m = v
        .update_tree_head(fork_head.clone(), &naive::proof(512, &forked))
        .unwrap_err();
    assert!(matches!(
        m.evidence,
        Misbehaviour::InconsistentWithPinned {
            pinned_size: 512,
            ..
        }
    ));
    assert!(v.trusted().is_none(), "state must not advance");
    let ev = m.to_security_event(Timestamp::from_unix_secs(1)).unwrap();
    assert!(
        ev.evidence
            .iter()
            .any(|(k, v)| k == "misbehaviour" && v == "inconsistent_with_pinned")
    );
    // Same size, other root: a fork from the pinned view.
    let other512 = log.sth(512, naive::root(&forked[..512]), 3);
    assert!(v.update_tree_head(other512, &[]).is_err());
    // An honest head with the right proof advances from the pin.
    let s1024 = log.sth(1024, naive::root(&l), 4);
    assert_eq!(
        v.update_tree_head(s1024.clone(), &naive::proof(512, &l))
            .unwrap(),
        TreeHeadUpdate::Advanced
    );
    assert_eq!(v.trusted(), Some(&s1024));
    assert_eq!(v.append_leaves(l.iter().copied()).unwrap(), 1024);
}

#[test]
fn pinned_tree_accepts_equal_and_older_consistent_heads() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::builder("t", log.key.clone())
        .pin(778, naive::root(&l[..778]))
        .build()
        .unwrap();
    // Older and consistent: nothing trusted yet, the pin stays the anchor.
    let s512 = log.sth(512, naive::root(&l[..512]), 1);
    assert_eq!(
        v.update_tree_head(s512, &naive::proof(512, &l[..778]))
            .unwrap(),
        TreeHeadUpdate::Older
    );
    assert_eq!(v.anchor(), Some((778, naive::root(&l[..778]))));
    assert!(v.trusted().is_none());
    let s778 = log.sth(778, naive::root(&l[..778]), 2);
    assert_eq!(
        v.update_tree_head(s778.clone(), &[]).unwrap(),
        TreeHeadUpdate::Same
    );
    assert_eq!(v.trusted(), Some(&s778));
    // A bad signature is still a bad signature.
    let mut p = LogVerifier::builder("t", log.key.clone())
        .pin(778, naive::root(&l[..778]))
        .build()
        .unwrap();
    let mut forged = log.sth(1024, naive::root(&l), 3);
    forged.timestamp += 1;
    assert!(matches!(
        p.update_tree_head(forged, &naive::proof(778, &l))
            .unwrap_err()
            .evidence,
        Misbehaviour::BadSignature { .. }
    ));
}

#[test]
fn timestamps_move_forward_with_the_tree() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("t", log.key.clone());
    let s512 = log.sth(512, naive::root(&l[..512]), 1_000);
    v.update_tree_head(s512.clone(), &[]).unwrap();
    // The same tree re-signed later replaces the trusted head (freshness is
    // measured from it); re-signed earlier (a cached copy) changes nothing.
    let later = log.sth(512, naive::root(&l[..512]), 2_000);
    assert_eq!(
        v.update_tree_head(later.clone(), &[]).unwrap(),
        TreeHeadUpdate::Same
    );
    assert_eq!(v.trusted(), Some(&later));
    let earlier = log.sth(512, naive::root(&l[..512]), 1_500);
    assert_eq!(
        v.update_tree_head(earlier, &[]).unwrap(),
        TreeHeadUpdate::Same
    );
    assert_eq!(v.trusted(), Some(&later));
    // A larger, consistent head stamped before the trusted one: both are signed,
    // and RFC 6962 §3.5 wants each new head more recent than the last.
    let back_dated = log.sth(1024, naive::root(&l), 1_999);
    let m = v
        .update_tree_head(back_dated.clone(), &naive::proof(512, &l))
        .unwrap_err();
    assert_eq!(
        m.evidence,
        Misbehaviour::TimestampRegression {
            trusted: later.clone(),
            other: back_dated
        }
    );
    assert_eq!(
        v.trusted(),
        Some(&later),
        "never advances past misbehaviour"
    );
    let ev = m
        .to_security_event(Timestamp::from_unix_secs(1_700_000_000))
        .unwrap();
    assert_eq!(ev.evidence("misbehaviour"), Some("timestamp_regression"));
    assert_eq!(ev.evidence("trusted_timestamp"), Some("2000"));
    assert_eq!(ev.evidence("other_timestamp"), Some("1999"));
    // Stamped at the same millisecond or later, it advances.
    let s1024 = log.sth(1024, naive::root(&l), 2_000);
    assert_eq!(
        v.update_tree_head(s1024, &naive::proof(512, &l)).unwrap(),
        TreeHeadUpdate::Advanced
    );
}

#[test]
fn an_empty_tree_head_must_carry_the_empty_root() {
    let log = TestLog::new();
    let empty = naive::root(&[]);
    let mut bad_root = empty;
    bad_root[0] ^= 1;
    let lie = log.sth(0, bad_root, 1);
    // As the first head, after a trusted one, and on a pinned verifier.
    let mut v = LogVerifier::new("t", log.key.clone());
    let m = v.update_tree_head(lie.clone(), &[]).unwrap_err();
    assert_eq!(
        m.evidence,
        Misbehaviour::RootMismatch {
            sth: lie.clone(),
            computed: empty
        }
    );
    assert!(v.trusted().is_none());
    let honest = log.sth(0, empty, 2);
    assert_eq!(
        v.update_tree_head(honest.clone(), &[]).unwrap(),
        TreeHeadUpdate::Initial
    );
    assert!(matches!(
        v.update_tree_head(lie.clone(), &[]).unwrap_err().evidence,
        Misbehaviour::RootMismatch { .. }
    ));
    assert_eq!(v.trusted(), Some(&honest));
    let l = common::navigli_leaf_hashes();
    let mut p = LogVerifier::builder("t", log.key.clone())
        .pin(512, naive::root(&l[..512]))
        .build()
        .unwrap();
    assert!(matches!(
        p.update_tree_head(lie, &[]).unwrap_err().evidence,
        Misbehaviour::RootMismatch { .. }
    ));
}

#[test]
fn restored_state_whose_range_does_not_give_the_head_root_is_corrupt() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let s512 = log.sth(512, naive::root(&l[..512]), 1);
    let mut range = palisade_ct_monitor::CompactRange::new();
    for leaf in &l[..512] {
        range.append(*leaf);
    }
    let good = State {
        trusted: s512.clone(),
        earliest: s512.clone(),
        range: range.clone(),
        confirmed: range.clone(),
    };
    assert!(
        LogVerifier::builder("t", log.key.clone())
            .state(good)
            .build()
            .is_ok()
    );
    // Leaves 1..513 instead of 0..512: the right size, another root.
    let mut other = palisade_ct_monitor::CompactRange::new();
    for leaf in &l[1..513] {
        other.append(*leaf);
    }
    let corrupt = State {
        trusted: s512.clone(),
        earliest: s512,
        range: other,
        confirmed: palisade_ct_monitor::CompactRange::new(),
    };
    match LogVerifier::builder("t", log.key.clone())
        .state(corrupt)
        .build()
    {
        Err(Error::BadState { reason, .. }) => {
            assert!(reason.contains("corrupt state"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_smaller_head_signed_later_is_a_rollback() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("t", log.key.clone());
    let s1024 = log.sth(1024, naive::root(&l), 2_000);
    v.update_tree_head(s1024.clone(), &[]).unwrap();
    // Signed after the 1,024 head, and smaller: the log went back (RFC 6962 §3.5),
    // even with a valid proof between the two.
    let rolled = log.sth(512, naive::root(&l[..512]), 3_000);
    let m = v
        .update_tree_head(rolled.clone(), &naive::proof(512, &l))
        .unwrap_err();
    assert_eq!(
        m.evidence,
        Misbehaviour::Rollback {
            trusted: s1024.clone(),
            other: rolled.clone()
        }
    );
    assert_eq!(m.evidence.kind(), "rollback");
    let ev = m
        .to_security_event(Timestamp::from_unix_secs(1_700_000_000))
        .unwrap();
    assert_eq!(ev.evidence("misbehaviour"), Some("rollback"));
    assert_eq!(ev.evidence("trusted_tree_size"), Some("1024"));
    assert_eq!(ev.evidence("trusted_timestamp"), Some("2000"));
    assert_eq!(ev.evidence("other_tree_size"), Some("512"));
    assert_eq!(ev.evidence("other_timestamp"), Some("3000"));
    // No proof needed: the two signed heads are the evidence.
    assert_eq!(
        v.update_tree_head(rolled, &[]).unwrap_err().evidence.kind(),
        "rollback"
    );
    // Wiped to the empty tree, signed later: the same (no proof is ever asked).
    let wiped = log.sth(0, naive::root(&[]), 2_001);
    assert_eq!(
        v.update_tree_head(wiped, &[]).unwrap_err().evidence.kind(),
        "rollback"
    );
    // A cached older head (stamped at or before the trusted one) changes nothing.
    for t in [1_000, 2_000] {
        let cached = log.sth(512, naive::root(&l[..512]), t);
        assert_eq!(
            v.update_tree_head(cached, &naive::proof(512, &l)).unwrap(),
            TreeHeadUpdate::Older
        );
        let empty = log.sth(0, naive::root(&[]), t);
        assert_eq!(
            v.update_tree_head(empty, &[]).unwrap(),
            TreeHeadUpdate::Older
        );
    }
    assert_eq!(
        v.trusted(),
        Some(&s1024),
        "never advances past misbehaviour"
    );
}

/// Review finding 4: a wrong leaf saved before the root check (served once by
/// the log, a CDN or a replica) no longer poisons the state. After a restart, a
/// root mismatch over leaves read before it sends the verifier back to its last
/// confirmed range; the right leaves read again pass. A mismatch over leaves all
/// appended since the verifier was built is misbehaviour, as before. (On the
/// old code the restarted verifier reported `RootMismatch` and never recovered.)
#[test]
fn a_wrong_leaf_saved_before_the_root_check_is_read_again_from_the_confirmed_range() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("t", log.key.clone());
    assert_eq!(v.confirmed().size(), 0);
    v.update_tree_head(log.sth(512, naive::root(&l[..512]), 1), &[])
        .unwrap();
    v.append_leaves(l[..512].iter().copied()).unwrap();
    assert_eq!(v.confirmed(), v.range(), "confirmed by the head of 512");
    let at_512 = v.state().unwrap();
    let s1024 = log.sth(1024, naive::root(&l), 2);
    let proof = naive::proof(512, &l);
    v.update_tree_head(s1024.clone(), &proof).unwrap();
    let mut served = l.clone();
    served[700] = naive::leaf(b"substituted");
    // Accepted: nothing checks a leaf before the range reaches the trusted size.
    assert_eq!(
        v.append_leaves(served[512..1000].iter().copied()).unwrap(),
        1000
    );
    let saved = v.state().unwrap();
    assert_eq!((saved.range.size(), saved.confirmed.size()), (1000, 512));
    let restore = || {
        LogVerifier::builder("t", log.key.clone())
            .state(saved.clone())
            .build()
            .unwrap()
    };

    // Restarted, and the log serves the right entries from 1000 on: read again
    // from 512, and the right leaf 700 passes the root check.
    let mut w = restore();
    assert_eq!(
        w.append_leaves(l[1000..].iter().copied()),
        Err(AppendError::ReadAgain { from: 512 })
    );
    assert_eq!((w.range(), w.range().size()), (w.confirmed(), 512));
    assert_eq!(w.append_leaves(l[512..].iter().copied()).unwrap(), 1024);
    assert_eq!(w.range().root(), s1024.root_hash);
    assert_eq!(w.state().unwrap().confirmed.size(), 1024);

    // Restarted, and the log still serves the wrong leaf: read again once, then
    // the mismatch over this run's leaves is evidence.
    let mut x = restore();
    assert_eq!(
        x.append_leaves(l[1000..].iter().copied()),
        Err(AppendError::ReadAgain { from: 512 })
    );
    let m = misbehaved(x.append_leaves(served[512..].iter().copied()).unwrap_err());
    assert_eq!(
        m.evidence,
        Misbehaviour::RootMismatch {
            sth: s1024.clone(),
            computed: naive::root(&served)
        }
    );
    assert_eq!(x.range().size(), 1023, "stops before the last leaf");

    // Restarted from a confirmed range (nothing unconfirmed restored): a wrong
    // leaf read in this run is evidence at once.
    let mut y = LogVerifier::builder("t", log.key.clone())
        .state(at_512)
        .build()
        .unwrap();
    y.update_tree_head(s1024.clone(), &proof).unwrap();
    let m = misbehaved(y.append_leaves(served[512..].iter().copied()).unwrap_err());
    assert!(matches!(m.evidence, Misbehaviour::RootMismatch { .. }));

    // A confirmed range ahead of the range read is refused.
    let mut ahead = saved.clone();
    ahead.confirmed = w.state().unwrap().range;
    assert!(matches!(
        LogVerifier::builder("t", log.key.clone())
            .state(ahead)
            .build(),
        Err(Error::Malformed { .. })
    ));
}

/// The log signed 1,024 at 2,000 and re-signed it at 4,000: a head of 512 stamped
/// in between says the tree was smaller after it had signed 1,024, a rollback
/// proven by the first signing. (On the old code only the re-signed head's
/// timestamp was kept, and this head was an older copy: `Older`.)
#[test]
fn a_smaller_head_signed_between_two_signings_of_the_trusted_tree_is_a_rollback() {
    let log = TestLog::new();
    let l = common::navigli_leaf_hashes();
    let mut v = LogVerifier::new("t", log.key.clone());
    let first = log.sth(1024, naive::root(&l), 2_000);
    v.update_tree_head(first.clone(), &[]).unwrap();
    let resigned = log.sth(1024, naive::root(&l), 4_000);
    assert_eq!(
        v.update_tree_head(resigned.clone(), &[]).unwrap(),
        TreeHeadUpdate::Same
    );
    assert_eq!(v.trusted(), Some(&resigned), "freshness from the latest");
    // Stamped before the first signing, or at it: a cached copy, as before.
    for t in [1_000, 2_000] {
        let cached = log.sth(512, naive::root(&l[..512]), t);
        assert_eq!(
            v.update_tree_head(cached, &naive::proof(512, &l)).unwrap(),
            TreeHeadUpdate::Older,
            "{t}"
        );
    }
    // Stamped after the first signing (up to the latest one, and after it): the
    // first signing is the evidence, whatever the proof.
    for t in [2_001, 3_000, 4_000, 5_000] {
        let rolled = log.sth(512, naive::root(&l[..512]), t);
        let m = v
            .update_tree_head(rolled.clone(), &naive::proof(512, &l))
            .unwrap_err();
        assert_eq!(
            m.evidence,
            Misbehaviour::Rollback {
                trusted: first.clone(),
                other: rolled
            },
            "{t}"
        );
    }
    // A same-tree head signed before the first one seen is an earlier signing too.
    let earlier = log.sth(1024, naive::root(&l), 1_500);
    assert_eq!(
        v.update_tree_head(earlier.clone(), &[]).unwrap(),
        TreeHeadUpdate::Same
    );
    assert_eq!(v.trusted(), Some(&resigned));
    let rolled = log.sth(512, naive::root(&l[..512]), 1_800);
    assert_eq!(
        v.update_tree_head(rolled.clone(), &[])
            .unwrap_err()
            .evidence,
        Misbehaviour::Rollback {
            trusted: earlier,
            other: rolled
        }
    );
    // A larger tree trusted: its own first signing is the one that counts.
    let mut w = LogVerifier::new("t", log.key.clone());
    w.update_tree_head(log.sth(512, naive::root(&l[..512]), 2_000), &[])
        .unwrap();
    let s1024 = log.sth(1024, naive::root(&l), 3_000);
    w.update_tree_head(s1024.clone(), &naive::proof(512, &l))
        .unwrap();
    w.update_tree_head(log.sth(1024, naive::root(&l), 4_000), &[])
        .unwrap();
    let cached = log.sth(778, naive::root(&l[..778]), 2_500);
    assert_eq!(
        w.update_tree_head(cached, &naive::proof(778, &l)).unwrap(),
        TreeHeadUpdate::Older
    );
    let rolled = log.sth(778, naive::root(&l[..778]), 3_500);
    assert_eq!(
        w.update_tree_head(rolled.clone(), &[])
            .unwrap_err()
            .evidence,
        Misbehaviour::Rollback {
            trusted: s1024,
            other: rolled
        }
    );
}
