//! Shared helpers for Palisade's criterion benchmarks (the benchmarks are the
//! `[[bench]]` targets of this package, one file per subject in `benches/`).
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// Runs `per_thread(thread index, iters)` on `threads` threads at once; returns the
/// wall time (criterion's `iter_custom` then reports it per iteration).
pub fn threaded(threads: usize, iters: u64, per_thread: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let f = &per_thread;
            s.spawn(move || f(t, iters));
        }
    });
    start.elapsed()
}

/// The in-memory limiter and its anchor, governor, with the same quota (the
/// `ratelimit` and `ratelimit_paired` benches).
pub mod ratelimit {
    use std::hash::Hash;
    use std::num::NonZeroU32;

    use governor::{DefaultKeyedRateLimiter, Quota as GQuota, RateLimiter};
    use palisade_ratelimit::{Key, KeyedLimiter, Quota, nz};

    /// Checks per second per key, and the burst (high, so most checks are admitted).
    pub const RATE: NonZeroU32 = nz!(1_000_000);
    /// Keys in the many-keys cases.
    pub const KEYS: u64 = 100_000;

    /// Ours.
    pub fn ours<K: Key>() -> KeyedLimiter<K> {
        KeyedLimiter::new(Quota::per_second(RATE))
    }

    /// governor's keyed limiter with the same quota.
    pub fn theirs<K: Hash + Eq + Clone>() -> DefaultKeyedRateLimiter<K> {
        RateLimiter::keyed(GQuota::per_second(RATE).allow_burst(RATE))
    }

    /// `KEYS` u64 keys spread over the hash space the way real ids are not: no
    /// sequential luck.
    pub fn u64_keys() -> Vec<u64> {
        (0..KEYS)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect()
    }

    /// `KEYS` short string keys.
    pub fn string_keys() -> Vec<String> {
        (0..KEYS).map(|i| format!("u{i:x}")).collect()
    }

    /// Checks every key once with both limiters, so the many-keys cases time
    /// tracked keys only.
    pub fn prefill<K: Key + Clone>(
        l: &KeyedLimiter<K>,
        g: &DefaultKeyedRateLimiter<K>,
        keys: &[K],
    ) {
        for k in keys {
            l.check(k, 1).expect("cost 1 fits the burst");
            let _ = g.check_key(k);
        }
    }

    /// Thread `t`'s walk over `keys` in a many-keys case: `n` checks, each thread
    /// starting at its own offset.
    pub fn cycle<K>(keys: &[K], t: usize, n: u64, mut check: impl FnMut(&K)) {
        let mut i = t * 7_919;
        for _ in 0..n {
            i = (i + 1) % keys.len();
            check(&keys[i]);
        }
    }

    /// Thread `t`'s `n` new keys in a first-touch case, disjoint from every other
    /// thread's.
    pub fn new_keys(t: usize, n: u64) -> std::ops::Range<u64> {
        t as u64 * n..(t as u64 + 1) * n
    }
}
