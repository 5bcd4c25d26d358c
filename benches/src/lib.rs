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
