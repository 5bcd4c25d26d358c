//! The read path alone: what a check's map lookup costs through dashmap (the structure
//! behind governor, and behind `KeyedLimiter` until its own table replaced it) and
//! through a prototype of that table, which stores only a keyed 64-bit fingerprint and
//! the TAT per slot, in two atomics.
//!
//! cargo bench -p palisade-benches --bench ratelimit_read_path
//! The prototype has no growth and no deletion (sized up front, at most 7/8 full): it
//! isolates the lookup from everything else a check does (the `ratelimit` bench
//! measures the whole limiter). docs/ratelimit.md reports the numbers.
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dashmap::DashMap;
use palisade_benches::threaded;

const KEYS: u64 = 100_000;

/// One slot: 0 is an empty fingerprint. 16 bytes, four to a cache line.
#[derive(Default)]
#[repr(align(16))]
struct Slot {
    fingerprint: AtomicU64,
    tat: AtomicU64,
}

/// Linear probing over slots; a lookup writes nothing shared.
struct FingerprintTable {
    slots: Box<[Slot]>,
    mask: usize,
    hasher: RandomState,
}

impl FingerprintTable {
    fn with_capacity(keys: usize) -> Self {
        let slots = (keys * 8 / 7 + 1).next_power_of_two();
        FingerprintTable {
            slots: (0..slots).map(|_| Slot::default()).collect(),
            mask: slots - 1,
            hasher: RandomState::new(),
        }
    }

    fn bytes_per_key(keys: usize) -> f64 {
        ((keys * 8 / 7 + 1).next_power_of_two() * size_of::<Slot>()) as f64 / keys as f64
    }

    fn fingerprint(&self, key: u64) -> u64 {
        self.hasher.hash_one(key).max(1)
    }

    fn get(&self, key: u64) -> Option<&AtomicU64> {
        let fp = self.fingerprint(key);
        let mut i = fp as usize & self.mask;
        loop {
            let slot = &self.slots[i];
            match slot.fingerprint.load(Ordering::Acquire) {
                0 => return None,
                f if f == fp => return Some(&slot.tat),
                _ => i = (i + 1) & self.mask,
            }
        }
    }

    fn insert(&self, key: u64, tat: u64) {
        let fp = self.fingerprint(key);
        let mut i = fp as usize & self.mask;
        loop {
            let slot = &self.slots[i];
            match slot
                .fingerprint
                .compare_exchange(0, fp, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return slot.tat.store(tat, Ordering::Release),
                Err(f) if f == fp => return,
                Err(_) => i = (i + 1) & self.mask,
            }
        }
    }
}

fn key(i: u64) -> u64 {
    (i % KEYS).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn read_path(c: &mut Criterion) {
    let dash: DashMap<u64, AtomicU64> = DashMap::new();
    let table = FingerprintTable::with_capacity(KEYS as usize);
    for i in 0..KEYS {
        dash.insert(key(i), AtomicU64::new(1));
        table.insert(key(i), 1);
    }
    for (case, spread) in [("hot_key", 0u64), ("100k_keys", 1)] {
        let mut g = c.benchmark_group(format!("ratelimit_read_path/{case}"));
        for threads in [1usize, 2] {
            g.bench_function(BenchmarkId::new("dashmap", format!("{threads}t")), |b| {
                b.iter_custom(|iters| {
                    threaded(threads, iters, |t, n| {
                        for i in 0..n {
                            let k = key((i * 2 + t as u64) * spread);
                            black_box(dash.get(&k).map(|v| v.load(Ordering::Acquire)));
                        }
                    })
                })
            });
            g.bench_function(
                BenchmarkId::new("fingerprint", format!("{threads}t")),
                |b| {
                    b.iter_custom(|iters| {
                        threaded(threads, iters, |t, n| {
                            for i in 0..n {
                                let k = key((i * 2 + t as u64) * spread);
                                black_box(table.get(k).map(|v| v.load(Ordering::Acquire)));
                            }
                        })
                    })
                },
            );
        }
        g.finish();
    }
    for keys in [10_000, 100_000, 1_000_000] {
        println!(
            "fingerprint table, {keys} keys: {:.1} bytes/key (dashmap: see the ratelimit_memory bench)",
            FingerprintTable::bytes_per_key(keys)
        );
    }
}

criterion_group!(benches, read_path);
criterion_main!(benches);
