//! palisade-ratelimit's in-memory limiter vs governor (the anchor), same quota, same run.
//!
//! cargo bench -p palisade-benches --bench ratelimit
//! Each group has a `governor` and a `palisade` line; docs/ratelimit.md reports ratios.
//! "2 threads" lines: wall time for each of two threads to do one check.
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use palisade_benches::ratelimit::{cycle, new_keys, ours, prefill, string_keys, theirs, u64_keys};
use palisade_benches::threaded;
use palisade_ratelimit::Key;

fn hot_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit/hot_u64_key");
    for threads in [1usize, 2] {
        let l = ours::<u64>();
        g.bench_function(BenchmarkId::new("palisade", format!("{threads}t")), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, |_, n| {
                    for _ in 0..n {
                        black_box(l.check(&42, 1).unwrap().allowed);
                    }
                })
            })
        });
        let gl = theirs::<u64>();
        g.bench_function(BenchmarkId::new("governor", format!("{threads}t")), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, |_, n| {
                    for _ in 0..n {
                        black_box(gl.check_key(&42).is_ok());
                    }
                })
            })
        });
    }
    g.finish();
}

fn many_keys<K: Key + Clone + Send + Sync>(c: &mut Criterion, name: &str, keys: Vec<K>) {
    let mut g = c.benchmark_group(format!("ratelimit/{name}"));
    for threads in [1usize, 2] {
        let l = ours::<K>();
        let gl = theirs::<K>();
        prefill(&l, &gl, &keys);
        let keys = &keys;
        g.bench_function(BenchmarkId::new("palisade", format!("{threads}t")), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, |t, n| {
                    cycle(keys, t, n, |k| {
                        black_box(l.check(k, 1).unwrap().allowed);
                    })
                })
            })
        });
        g.bench_function(BenchmarkId::new("governor", format!("{threads}t")), |b| {
            b.iter_custom(|iters| {
                threaded(threads, iters, |t, n| {
                    cycle(keys, t, n, |k| {
                        black_box(gl.check_key(k).is_ok());
                    })
                })
            })
        });
    }
    g.finish();
}

fn first_touch(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit/first_touch_insert");
    for threads in [1usize, 2] {
        // A fresh limiter per sample; each thread inserts its own new keys.
        g.bench_function(BenchmarkId::new("palisade", format!("{threads}t")), |b| {
            b.iter_custom(|iters| {
                let l = ours::<u64>();
                threaded(threads, iters, |t, n| {
                    for k in new_keys(t, n) {
                        black_box(l.check(&k, 1).unwrap().allowed);
                    }
                })
            })
        });
        g.bench_function(BenchmarkId::new("governor", format!("{threads}t")), |b| {
            b.iter_custom(|iters| {
                let gl = theirs::<u64>();
                threaded(threads, iters, |t, n| {
                    for k in new_keys(t, n) {
                        black_box(gl.check_key(&k).is_ok());
                    }
                })
            })
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    hot_key(c);
    many_keys(c, "100k_u64_keys", u64_keys());
    many_keys(c, "100k_string_keys", string_keys());
    first_touch(c);
}

criterion_group! {
    name = group;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(group);
