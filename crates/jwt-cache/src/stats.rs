//! Counters that stay cheap under many threads: one padded slot per thread group.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::error::{Error, ErrorClass, KINDS};
use crate::telemetry;

const SLOTS: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicU64);

/// A striped counter: threads add to their own cache line, readers sum.
#[derive(Default)]
pub(crate) struct Counter([Slot; SLOTS]);

fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0[slot()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// A validator's counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) shared: Counter,
    pub(crate) not_cached: Counter,
    pub(crate) rejections: [Counter; KINDS.len()],
}

impl Counters {
    /// Counts (and reports) a validation's outcome.
    pub(crate) fn outcome<T>(&self, r: &Result<T, Error>) {
        match r {
            Ok(_) => telemetry::validation(None),
            Err(e) => self.reject(e),
        }
    }

    pub(crate) fn reject(&self, e: &Error) {
        let kind = KINDS[e.kind_index()];
        self.rejections[e.kind_index()].add(1);
        telemetry::validation(Some(kind));
        // The kind only: the error's text may hold a kid, never the token.
        match e.class() {
            ErrorClass::Rejected => tracing::debug!(kind, "jwt rejected"),
            ErrorClass::Backend => {
                tracing::warn!(kind, "jwt refused: the revocation check had no answer");
            }
            ErrorClass::Configuration => {
                tracing::error!(kind, error = %e, "jwt validation cannot work as configured");
            }
        }
    }

    pub(crate) fn hit(&self, shared: bool) {
        self.hits.add(1);
        if shared {
            self.shared.add(1);
        }
        telemetry::hit();
    }

    pub(crate) fn miss(&self) {
        self.misses.add(1);
        telemetry::miss();
    }
}

/// A snapshot of a validator's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Answers served from the cache (after the per-hit time and revocation checks).
    pub hits: u64,
    /// Full validations (header, key lookup, signature, claims): one per miss.
    pub misses: u64,
    /// Hits that waited for another thread's in-flight validation of the same
    /// token (single flight); also counted in `hits`.
    pub shared: u64,
    /// Successful validations that were not cached (too large, about to expire,
    /// raced with a key change or an invalidation, or no cache configured).
    pub not_cached: u64,
    /// Entries evicted by the cache's bound (of the cache this validator uses;
    /// shared between validators that share it).
    pub evictions: u64,
    /// Rejections by [`Error::kind`], every kind listed (zero included).
    pub rejections: Vec<(&'static str, u64)>,
}

impl Stats {
    /// The rejections of one kind.
    pub fn rejected(&self, kind: &str) -> u64 {
        self.rejections
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |(_, n)| *n)
    }

    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejections.iter().map(|(_, n)| n).sum()
    }
}

pub(crate) fn snapshot(c: &Counters, evictions: u64) -> Stats {
    Stats {
        hits: c.hits.get(),
        misses: c.misses.get(),
        shared: c.shared.get(),
        not_cached: c.not_cached.get(),
        evictions,
        rejections: KINDS
            .iter()
            .zip(&c.rejections)
            .map(|(k, n)| (*k, n.get()))
            .collect(),
    }
}
