//! [`Stats`] (the counters of both limiters) and, with feature `metrics`, the same
//! events through the `metrics` facade.
//!
//! Metric names are `palisade_ratelimit_<what>_total` (counters) and
//! `palisade_ratelimit_<what>` (gauges); `docs/ratelimit.md` lists them. Handles of
//! the per-check counters are registered when the limiter is built, with the recorder
//! installed then (install yours first).

/// Counters of a limiter ([`KeyedLimiter::stats`](crate::KeyedLimiter::stats), and
/// `RedisLimiter::stats` with feature `redis`). A field a backend has no use for
/// stays 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Checks admitted (in memory, peeks included; on Redis, by Redis itself).
    pub allowed: u64,
    /// Checks denied (in memory, for any reason; on Redis, by Redis: quota or block).
    pub denied: u64,
    /// In memory, of the denied: new keys denied because the table was full of live keys.
    pub overflow_denied: u64,
    /// In memory, of the denied: checks of a blocked key.
    pub blocked: u64,
    /// Requests denied because their cost is above a burst.
    pub cost_exceeds_burst: u64,
    /// In memory: eviction sweeps run.
    pub sweeps: u64,
    /// In memory: keys evicted (each was indistinguishable from a fresh key).
    pub evicted: u64,
    /// Redis: checks denied from the local deny cache, without a Redis call.
    pub local_denied: u64,
    /// Redis: checks allowed under `FailurePolicy::Open` because Redis failed, or
    /// had lost the key's state less than a burst window ago.
    pub failed_open: u64,
    /// Redis: checks denied under `FailurePolicy::Closed` because Redis failed, or
    /// had lost the key's state less than a burst window ago.
    pub failed_closed: u64,
    /// Redis: checks answered (in part) by the local shares under
    /// `FailurePolicy::LocalShare`, for either reason.
    pub fallback_local: u64,
    /// Redis: times this limiter saw that Redis had lost its data (a missing or
    /// replaced epoch key). Alert on it.
    pub data_losses: u64,
    /// Redis: calls that failed or timed out.
    pub redis_errors: u64,
    /// Redis: script calls sent.
    pub redis_calls: u64,
    /// Redis: times the circuit breaker opened.
    pub breaker_opened: u64,
}

/// `name` with the crate's metric prefix, as a `&'static str` literal.
#[cfg(feature = "metrics")]
macro_rules! metric {
    ($what:literal) => {
        concat!("palisade_ratelimit_", $what)
    };
}
#[cfg(all(feature = "metrics", feature = "redis"))]
pub(crate) use metric;

/// The in-memory limiter's `checks_total{backend="memory", answer}` handles, one per
/// answer (every check moves exactly one), registered when the limiter is built.
#[cfg(feature = "metrics")]
#[derive(Debug)]
pub(crate) struct MemoryChecks {
    allowed: metrics::Counter,
    denied: metrics::Counter,
    blocked: metrics::Counter,
    table_full: metrics::Counter,
    cost_exceeds_burst: metrics::Counter,
}

#[cfg(feature = "metrics")]
impl MemoryChecks {
    pub(crate) fn new() -> MemoryChecks {
        let by = |answer: &'static str| metrics::counter!(metric!("checks_total"), "backend" => "memory", "answer" => answer);
        MemoryChecks {
            allowed: by("allowed"),
            denied: by("denied"),
            blocked: by("blocked"),
            table_full: by("table_full"),
            cost_exceeds_burst: by("cost_exceeds_burst"),
        }
    }

    #[inline(always)]
    pub(crate) fn count(&self, decision: &crate::Decision) {
        use crate::Denial;
        match decision.denial {
            None => &self.allowed,
            Some(Denial::Blocked) => &self.blocked,
            Some(Denial::TableFull) => &self.table_full,
            Some(Denial::CostExceedsBurst) => &self.cost_exceeds_burst,
            // Limited (and Unavailable, which only Redis answers).
            Some(_) => &self.denied,
        }
        .increment(1);
    }
}
