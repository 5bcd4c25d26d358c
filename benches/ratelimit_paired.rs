//! palisade-ratelimit's in-memory limiter vs governor, measured in alternating pairs.
//!
//! cargo bench -p palisade-benches --bench ratelimit_paired
//!
//! Criterion times one function, then the next: on a shared VM the machine's speed
//! drifts between the two by more than the difference being measured (single cells
//! of `--bench ratelimit` moved ±30 % between identical runs). Here each round times a
//! batch of ours and a batch of governor's back to back (which goes first alternates),
//! so both see the same machine, and the table reports the median of the rounds'
//! ratios with its interquartile range. Prints a Markdown table.
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use palisade_benches::ratelimit::{
    KEYS, cycle, new_keys, ours, prefill, string_keys, theirs, u64_keys,
};
use palisade_benches::threaded;
use palisade_ratelimit::Key;

const ROUNDS: usize = 21;
/// Checks per thread per batch.
const BATCH: u64 = 1_000_000;

/// Cases whose name contains this argument run (all when none is given), as with
/// criterion: `cargo bench -p palisade-benches --bench ratelimit_paired -- first`.
fn selected(case: &str) -> bool {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .all(|filter| case.contains(&filter))
}

/// Runs `ROUNDS` rounds of one batch each (order alternating) and prints a row:
/// median ns per check for each, the median of the per-round ratios and its IQR.
fn paired(
    case: &str,
    checks: u64,
    mut ours: impl FnMut() -> Duration,
    mut theirs: impl FnMut() -> Duration,
) {
    if !selected(case) {
        return;
    }
    let (mut a, mut b, mut r) = (vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let (x, y) = if round % 2 == 0 {
            let x = ours();
            (x, theirs())
        } else {
            let y = theirs();
            (ours(), y)
        };
        let (x, y) = (
            x.as_secs_f64() * 1e9 / checks as f64,
            y.as_secs_f64() * 1e9 / checks as f64,
        );
        a.push(x);
        b.push(y);
        r.push(x / y);
    }
    for v in [&mut a, &mut b, &mut r] {
        v.sort_by(f64::total_cmp);
    }
    let (q1, med, q3) = (r[ROUNDS / 4], r[ROUNDS / 2], r[3 * ROUNDS / 4]);
    println!(
        "| {case} | {:.1} | {:.1} | {med:.2} ({q1:.2}–{q3:.2}) |",
        a[ROUNDS / 2],
        b[ROUNDS / 2]
    );
}

/// One key checked over and over. An `IpAddr` key costs us its canonical form
/// (governor takes it as it is).
fn hot_key<K: Key + Clone + Send + Sync>(name: &str, key: K, threads: usize) {
    let l = ours::<K>();
    let g = theirs::<K>();
    paired(
        &format!("hot {name} key, {threads} thread(s)"),
        BATCH,
        || {
            threaded(threads, BATCH, |_, n| {
                (0..n).for_each(|_| {
                    black_box(l.check(black_box(&key), 1).unwrap().allowed);
                })
            })
        },
        || {
            threaded(threads, BATCH, |_, n| {
                (0..n).for_each(|_| {
                    black_box(g.check_key(black_box(&key)).is_ok());
                })
            })
        },
    );
}

fn many_keys<K: Key + Clone + Send + Sync>(name: &str, keys: &[K], threads: usize) {
    let case = format!("100k {name} keys, {threads} thread(s)");
    if !selected(&case) {
        return; // before the prefill, which takes longer than the case
    }
    let l = ours::<K>();
    let g = theirs::<K>();
    prefill(&l, &g, keys);
    paired(
        &case,
        BATCH,
        || {
            threaded(threads, BATCH, |t, n| {
                cycle(keys, t, n, |k| {
                    black_box(l.check(k, 1).unwrap().allowed);
                })
            })
        },
        || {
            threaded(threads, BATCH, |t, n| {
                cycle(keys, t, n, |k| {
                    black_box(g.check_key(k).is_ok());
                })
            })
        },
    );
}

fn first_touch(threads: usize) {
    // A fresh limiter per batch, timed from its first check: growth included. The
    // threads insert disjoint shares of the 100k keys.
    let per_thread = KEYS / threads as u64;
    paired(
        &format!("first-touch insert (100k new keys), {threads} thread(s)"),
        per_thread,
        || {
            let l = ours::<u64>();
            threaded(threads, per_thread, |t, n| {
                new_keys(t, n).for_each(|k| {
                    black_box(l.check(&k, 1).unwrap().allowed);
                })
            })
        },
        || {
            let g = theirs::<u64>();
            threaded(threads, per_thread, |t, n| {
                new_keys(t, n).for_each(|k| {
                    black_box(g.check_key(&k).is_ok());
                })
            })
        },
    );
}

fn main() {
    // Cargo passes --bench; a further argument selects cases (see `selected`).
    println!(
        "| case | palisade ns/check | governor ns/check | ratio, median (IQR) of {ROUNDS} rounds |"
    );
    println!("|---|---:|---:|---:|");
    hot_key("u64", 42u64, 1);
    hot_key("u64", 42u64, 2);
    let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
    hot_key("IPv4-mapped IpAddr", mapped, 1);
    let u64_keys = u64_keys();
    many_keys("u64", &u64_keys, 1);
    many_keys("u64", &u64_keys, 2);
    let string_keys = string_keys();
    many_keys("short string", &string_keys, 1);
    many_keys("short string", &string_keys, 2);
    first_touch(1);
    first_touch(2);
}
