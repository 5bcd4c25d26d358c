//! What feature `metrics` costs the in-memory limiter's check: a hot u64 key with no
//! recorder installed (the handles are no-ops), with a recorder whose counters are
//! shared atomics (metrics-util's `DebuggingRecorder`, the storage the Prometheus
//! exporter uses too), and governor, the anchor, in the same run.
//!
//! cargo bench -p palisade-benches --features ratelimit-metrics --bench ratelimit_metrics
//! The same check with the feature off is `ratelimit/hot_u64_key` in the `ratelimit` bench.
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use metrics_util::debugging::DebuggingRecorder;
use palisade_benches::ratelimit::{ours, theirs};
use palisade_benches::threaded;

fn hot_key(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratelimit_metrics/hot_u64_key");
    let recorder = DebuggingRecorder::new();
    for threads in [1usize, 2] {
        let cases = [
            ("no_recorder", ours::<u64>()),
            (
                "recorder",
                metrics::with_local_recorder(&recorder, ours::<u64>),
            ),
        ];
        for (name, l) in &cases {
            g.bench_function(BenchmarkId::new(*name, format!("{threads}t")), |b| {
                b.iter_custom(|iters| {
                    threaded(threads, iters, |_, n| {
                        for _ in 0..n {
                            black_box(l.check(&42, 1).unwrap().allowed);
                        }
                    })
                })
            });
        }
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

criterion_group!(benches, hot_key);
criterion_main!(benches);
