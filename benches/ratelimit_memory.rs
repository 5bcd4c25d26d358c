//! Bytes per tracked key: palisade-ratelimit's KeyedLimiter vs governor, measured
//! with a counting global allocator (the `cap` crate). Prints a table.
//!
//! cargo bench -p palisade-benches --bench ratelimit_memory
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::alloc::System;
use std::num::NonZeroU32;

use cap::Cap;
use governor::{Quota as GQuota, RateLimiter};
use palisade_ratelimit::{KeyedLimiter, Quota, nz};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

fn bytes_per_key<L>(n: u64, build: impl FnOnce() -> L, touch: impl Fn(&L, u64)) -> f64 {
    let before = ALLOCATOR.allocated();
    let limiter = build();
    for k in 0..n {
        touch(&limiter, k);
    }
    let used = ALLOCATOR.allocated() - before;
    drop(limiter);
    used as f64 / n as f64
}

fn main() {
    // Cargo passes --bench; this harness has no options.
    println!("| keys | key type | palisade B/key | governor B/key | ratio |");
    println!("|---:|---|---:|---:|---:|");
    let n32: NonZeroU32 = nz!(1_000);
    for n in [10_000u64, 100_000, 1_000_000] {
        let ours = bytes_per_key(
            n,
            || KeyedLimiter::<u64>::new(Quota::per_second(n32)),
            |l, k| drop(l.check(&k, 1)),
        );
        let theirs = bytes_per_key(
            n,
            || RateLimiter::keyed(GQuota::per_second(n32)),
            |l, k: u64| drop(l.check_key(&k)),
        );
        println!(
            "| {n} | u64 | {ours:.1} | {theirs:.1} | {:.2} |",
            ours / theirs
        );
        let ours = bytes_per_key(
            n,
            || KeyedLimiter::<String>::new(Quota::per_second(n32)),
            |l, k| drop(l.check(&format!("u{k:x}"), 1)),
        );
        let theirs = bytes_per_key(
            n,
            || RateLimiter::keyed(GQuota::per_second(n32)),
            |l, k: u64| drop(l.check_key(&format!("u{k:x}"))),
        );
        println!(
            "| {n} | short String | {ours:.1} | {theirs:.1} | {:.2} |",
            ours / theirs
        );
    }
}
