//! Counters (`stats()`) and, with feature `metrics`, the same events through the
//! `metrics` facade. One call site per event feeds both.
//!
//! Metric names: `palisade_token_blacklist_<what>_total` (counters) and
//! `palisade_token_blacklist_<what>` (gauges); docs/token-blacklist.md lists them.
//! The handles of the hot-path counters are registered when the blacklist is built,
//! with the recorder installed then (install yours first).

use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "redis")]
use std::time::Duration;

use palisade_core_traits::RevocationStatus;

/// Counters of one blacklist (in memory, or a Redis replica and its relay messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Checks answered (`check`, `check_local`; not `check_remote`).
    pub checks: u64,
    /// Checks answered `Revoked`.
    pub hits: u64,
    /// Checks answered `Unknown` because freshness could not be proven (also
    /// `check_remote`'s `Unknown`).
    pub stale_unknown: u64,
    /// Checks answered `NotRevoked` by a view older than the freshness bound
    /// (under `FailurePolicy::Open` or within `Stale { max_age }`).
    pub stale_allowed: u64,
    /// Revocations made through this instance (`revoke_*`).
    pub revocations: u64,
    /// Full resyncs from the shared store completed.
    pub resyncs: u64,
    /// Revocation messages applied from other instances.
    pub messages: u64,
    /// Records re-written to the shared store because it had lost them.
    pub repaired: u64,
    /// Entries removed by sweeps after their lifetime.
    pub swept: u64,
    /// Times a Redis replica found that Redis had lost data (an epoch key gone or
    /// changed) and started failing closed until it was repaired.
    pub data_losses: u64,
    /// Times a Redis replica went on with a `maxmemory-policy` that can evict
    /// revocation keys, because the builder allows it.
    pub eviction_policy_allowed: u64,
}

/// `name` with the crate's metric prefix, as a `&'static str` literal.
#[cfg(feature = "metrics")]
macro_rules! metric {
    ($what:literal) => {
        concat!("palisade_token_blacklist_", $what)
    };
}

/// The check counters' handles, by answer (registered once: a check must not pay
/// for a registry lookup).
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    revoked: metrics::Counter,
    not_revoked: metrics::Counter,
    unknown: metrics::Counter,
}

#[derive(Debug)]
pub(crate) struct Counters {
    checks: AtomicU64,
    hits: AtomicU64,
    stale_unknown: AtomicU64,
    pub(crate) stale_allowed: AtomicU64,
    revocations: AtomicU64,
    resyncs: AtomicU64,
    messages: AtomicU64,
    repaired: AtomicU64,
    swept: AtomicU64,
    data_losses: AtomicU64,
    eviction_policy_allowed: AtomicU64,
    #[cfg(feature = "metrics")]
    handles: Handles,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn new() -> Counters {
        let z = || AtomicU64::new(0);
        #[cfg(feature = "metrics")]
        let handles = {
            let by = |answer: &'static str| metrics::counter!(metric!("checks_total"), "answer" => answer);
            Handles {
                revoked: by("revoked"),
                not_revoked: by("not_revoked"),
                unknown: by("unknown"),
            }
        };
        Counters {
            checks: z(),
            hits: z(),
            stale_unknown: z(),
            stale_allowed: z(),
            revocations: z(),
            resyncs: z(),
            messages: z(),
            repaired: z(),
            swept: z(),
            data_losses: z(),
            eviction_policy_allowed: z(),
            #[cfg(feature = "metrics")]
            handles,
        }
    }

    /// A check answered `status` (the final answer, after any policy).
    #[inline]
    pub(crate) fn check(&self, status: RevocationStatus) {
        add(&self.checks, 1);
        if status == RevocationStatus::Revoked {
            add(&self.hits, 1);
        }
        #[cfg(feature = "metrics")]
        match status {
            RevocationStatus::Revoked => self.handles.revoked.increment(1),
            RevocationStatus::NotRevoked => self.handles.not_revoked.increment(1),
            _ => self.handles.unknown.increment(1),
        }
    }

    /// A check (or `check_remote`) that could not prove freshness answered by
    /// `policy`: `allowed` is `NotRevoked` from a stale view, else `Unknown`.
    #[cfg(feature = "redis")]
    pub(crate) fn stale(&self, policy: &'static str, allowed: bool) {
        add(
            if allowed {
                &self.stale_allowed
            } else {
                &self.stale_unknown
            },
            1,
        );
        #[cfg(feature = "metrics")]
        metrics::counter!(
            metric!("stale_answers_total"),
            "policy" => policy,
            "answer" => if allowed { "not_revoked" } else { "unknown" }
        )
        .increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = policy;
    }

    /// A revocation of `scope` (`token`, `user`, `issuer`, `global`) made here.
    pub(crate) fn revocation(&self, scope: &'static str) {
        add(&self.revocations, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("revocations_total"), "scope" => scope).increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = scope;
    }

    #[cfg(feature = "redis")]
    pub(crate) fn resync(&self) {
        add(&self.resyncs, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("resyncs_total")).increment(1);
    }

    #[cfg(feature = "redis")]
    pub(crate) fn message(&self) {
        add(&self.messages, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("messages_total")).increment(1);
    }

    #[cfg(feature = "redis")]
    pub(crate) fn repaired(&self, n: usize) {
        add(&self.repaired, n as u64);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("repaired_total")).increment(n as u64);
    }

    pub(crate) fn swept(&self, n: usize) {
        add(&self.swept, n as u64);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("swept_total")).increment(n as u64);
    }

    #[cfg(feature = "redis")]
    pub(crate) fn data_loss(&self) {
        add(&self.data_losses, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("data_losses_total")).increment(1);
    }

    #[cfg(feature = "redis")]
    pub(crate) fn eviction_policy_allowed(&self) {
        add(&self.eviction_policy_allowed, 1);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("eviction_policy_allowed_total")).increment(1);
    }

    /// Gauge: entries held locally.
    #[inline]
    pub(crate) fn entries(&self, n: usize) {
        #[cfg(feature = "metrics")]
        metrics::gauge!(metric!("entries")).set(n as f64);
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }

    /// Gauge: seconds since the replica was last proven fresh (`+Inf` while it has
    /// no proof at all).
    #[cfg(feature = "redis")]
    pub(crate) fn freshness(&self, age: Option<Duration>) {
        #[cfg(feature = "metrics")]
        metrics::gauge!(metric!("freshness_seconds"))
            .set(age.map_or(f64::INFINITY, |a| a.as_secs_f64()));
        #[cfg(not(feature = "metrics"))]
        let _ = age;
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            checks: g(&self.checks),
            hits: g(&self.hits),
            stale_unknown: g(&self.stale_unknown),
            stale_allowed: g(&self.stale_allowed),
            revocations: g(&self.revocations),
            resyncs: g(&self.resyncs),
            messages: g(&self.messages),
            repaired: g(&self.repaired),
            swept: g(&self.swept),
            data_losses: g(&self.data_losses),
            eviction_policy_allowed: g(&self.eviction_policy_allowed),
        }
    }
}
