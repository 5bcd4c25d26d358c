//! Hand-computed values on small histories.
use super::*;

const W: [f64; 4] = UA_WEIGHTS;

fn login(at: u64, v: [u64; LEVELS]) -> Entry {
    Entry {
        at_secs: entry_secs(at),
        values: v,
        raw: f32::NAN,
    }
}

// Level values: IPs 1x, ASNs 2x, countries 3x, UAs 4x, browsers 5x, OS 6x, devices 7x.
const A1: [u64; LEVELS] = [11, 21, 31, 41, 51, 61, 71];
const A2: [u64; LEVELS] = [12, 21, 31, 41, 51, 61, 71];
const B1: [u64; LEVELS] = [13, 22, 32, 42, 52, 61, 71];

/// User 1: A1, A1, A2. User 2: B1. N = 4, two users.
fn model() -> Model {
    let m = Model::default();
    m.learn(1, login(1, A1), 100, u64::MAX);
    m.learn(1, login(2, A1), 100, u64::MAX);
    m.learn(1, login(3, A2), 100, u64::MAX);
    m.learn(2, login(4, B1), 100, u64::MAX);
    m
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12 * b.abs().max(1.0), "{a} != {b}");
}

#[test]
fn familiar_login() {
    let s = model().score(1, &A1).unwrap();
    // IP: local = 0.6·2/3 + 0.3·3/3 + 0.1·3/3 = 0.8.
    close(s.ip.local, 0.8);
    // Two ASNs and two countries seen: U = 5; the IP seen twice: g0 = 2/(2+3) · 2/(4+5).
    let g_ip = 0.6 * (2.0 / 5.0) * (2.0 / 9.0) + 0.3 * 0.75 + 0.1 * 0.75;
    close(s.ip.global, g_ip);
    close(s.ip.factor, g_ip / 0.8);
    assert!(!s.ip.never_seen);
    // UA: every level in all 3 of the user's logins: local = Σw = 1.
    close(s.ua.local, W[0] + W[1] + W[2] + W[3]);
    // Two browsers, one OS, one device: U = 5; UA seen 3 times: g0 = 3/(3+4) · 3/(4+5).
    let g_ua = W[0] * (3.0 / 7.0) * (3.0 / 9.0) + W[1] * 0.75 + W[2] * 1.0 + W[3] * 1.0;
    close(s.ua.global, g_ua);
    // N / (users · n_u) = 4 / (2 · 3).
    close(s.user_factor, 4.0 / 6.0);
    close(
        s.raw,
        (g_ip / 0.8) * (g_ua / (W[0] + W[1] + W[2] + W[3])) * (4.0 / 6.0),
    );
    assert_eq!(s.history, 3);
}

#[test]
fn never_seen_rule_gives_factor_four() {
    // User 1 logs in with everything user 2 uses: nothing of it in user 1's history
    // (OS and device aside, which user 1 shares).
    let s = model().score(1, &[13, 22, 32, 42, 52, 0, 0]).unwrap();
    assert!(s.ip.never_seen);
    close(s.ip.factor, 4.0);
    let g_ip = 0.6 * (1.0 / 4.0) * (1.0 / 9.0) + 0.3 * 0.25 + 0.1 * 0.25;
    close(s.ip.global, g_ip);
    close(s.ip.local, g_ip / 4.0);
    assert!(s.ua.never_seen);
    close(s.ua.factor, 4.0);
}

#[test]
fn smoothing_of_a_globally_unseen_ip() {
    // New IP 19 in the user's usual ASN and country.
    let s = model().score(1, &[19, 21, 31, 41, 51, 61, 71]).unwrap();
    close(s.ip.local, 0.3 + 0.1);
    // Unseen at the top: 1/(N+U) = 1/(4+5).
    let g = 0.6 * (1.0 / 9.0) + 0.3 * 0.75 + 0.1 * 0.75;
    close(s.ip.global, g);
    close(s.ip.factor, g / 0.4);
}

#[test]
fn unknown_lower_levels_are_never_seen() {
    // Missing ASN/country (0) count for nobody, not as a shared "unknown" value.
    let m = Model::default();
    m.learn(1, login(1, [11, 0, 0, 41, 51, 61, 71]), 100, u64::MAX);
    let s = m.score(1, &[12, 0, 0, 41, 51, 61, 71]).unwrap();
    assert!(s.ip.never_seen);
}

#[test]
fn empty_history_has_no_score() {
    assert!(model().score(3, &A1).is_none());
    assert!(Model::default().score(1, &A1).is_none());
}

#[test]
fn cap_and_ageing_drop_entries_from_both_histories() {
    let m = Model::default();
    for t in 0..5 {
        m.learn(1, login(t, A1), 3, u64::MAX);
    }
    assert_eq!(m.history_len(1), 3);
    assert_eq!(m.total(), 3);
    // An entry at t=100 with max age 50 drops everything older than t=50.
    m.learn(1, login(100, A2), 3, 50);
    assert_eq!(m.history_len(1), 1);
    assert_eq!(m.total(), 1);
    assert_eq!(m.count(11), 0);
    assert_eq!(m.count(12), 1);
    assert_eq!(m.distinct.each_ref().map(|d| d.load(Relaxed)), [1; LEVELS]);
    m.forget(1);
    assert_eq!(m.total(), 0);
    assert_eq!(m.memory_bytes(), 0);
}

#[test]
fn typical_is_the_median_of_the_last_scored_logins() {
    let m = Model::default();
    // Raw S 8, unscored, 1, 4, 2, 16 (oldest first).
    for (at, raw) in [
        (1, 8.0),
        (2, f32::NAN),
        (3, 1.0),
        (4, 4.0),
        (5, 2.0),
        (6, 16.0),
    ] {
        m.learn(
            1,
            Entry {
                raw,
                ..login(at, A1)
            },
            100,
            u64::MAX,
        );
    }
    // Last 3 scored: 16, 2, 4 -> 4.
    assert_eq!(m.typical(1, 3, 1), Some(4.0));
    // All 5 scored: 1 2 4 8 16 -> 4; the unscored login does not count.
    assert_eq!(m.typical(1, 10, 5), Some(4.0));
    // Last 4: 16, 2, 4, 1 -> sorted 1 2 4 16, upper median 4.
    assert_eq!(m.typical(1, 4, 4), Some(4.0));
    // Last 2: 16, 2 -> upper median 16.
    assert_eq!(m.typical(1, 2, 2), Some(16.0));
    // Too few scored logins, or no such user.
    assert_eq!(m.typical(1, 10, 6), None);
    assert_eq!(m.typical(2, 10, 1), None);
}
