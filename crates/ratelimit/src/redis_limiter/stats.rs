//! The Redis limiter's counters, fed with the `metrics` facade from one call site
//! per event.

use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "metrics")]
use crate::stats::metric;
use crate::{FailurePolicy, Stats};

/// Who answered a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Redis,
    LocalDeny,
    /// The failure policy: Redis failed, or lost the state less than a burst window ago.
    FailurePolicy,
}

/// Per-check metric handles, registered once (a check must not look up a registry).
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    allowed: metrics::Counter,
    denied: metrics::Counter,
    local_denied: metrics::Counter,
    failure_policy: metrics::Counter,
    cost_exceeds_burst: metrics::Counter,
}

#[derive(Debug)]
pub(super) struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    local_denied: AtomicU64,
    failed_open: AtomicU64,
    failed_closed: AtomicU64,
    fallback_local: AtomicU64,
    cost_exceeds_burst: AtomicU64,
    data_losses: AtomicU64,
    redis_errors: AtomicU64,
    redis_calls: AtomicU64,
    breaker_opened: AtomicU64,
    #[cfg(feature = "metrics")]
    handles: Handles,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The failure policy's label: `closed`, `open` or `local_share`.
pub(super) fn policy_label(policy: FailurePolicy) -> &'static str {
    match policy {
        FailurePolicy::Closed => "closed",
        FailurePolicy::Open => "open",
        FailurePolicy::LocalShare { .. } => "local_share",
    }
}

impl Counters {
    pub(super) fn new(failure: FailurePolicy) -> Counters {
        let z = || AtomicU64::new(0);
        #[cfg(feature = "metrics")]
        let handles = {
            let by = |answer: &'static str| metrics::counter!(metric!("checks_total"), "backend" => "redis", "answer" => answer);
            Handles {
                allowed: by("allowed"),
                denied: by("denied"),
                local_denied: by("local_denied"),
                cost_exceeds_burst: by("cost_exceeds_burst"),
                failure_policy: metrics::counter!(
                    metric!("failure_policy_total"),
                    "policy" => policy_label(failure)
                ),
            }
        };
        #[cfg(not(feature = "metrics"))]
        let _ = failure;
        Counters {
            allowed: z(),
            denied: z(),
            local_denied: z(),
            failed_open: z(),
            failed_closed: z(),
            fallback_local: z(),
            cost_exceeds_burst: z(),
            data_losses: z(),
            redis_errors: z(),
            redis_calls: z(),
            breaker_opened: z(),
            #[cfg(feature = "metrics")]
            handles,
        }
    }

    /// A check answered by `answer`, under the failure policy `failure`.
    pub(super) fn answer(&self, answer: Answer, allowed: bool, failure: FailurePolicy) {
        bump(match answer {
            Answer::Redis if allowed => &self.allowed,
            Answer::Redis => &self.denied,
            Answer::LocalDeny => &self.local_denied,
            Answer::FailurePolicy => match failure {
                FailurePolicy::Closed => &self.failed_closed,
                FailurePolicy::Open => &self.failed_open,
                FailurePolicy::LocalShare { .. } => &self.fallback_local,
            },
        });
        #[cfg(feature = "metrics")]
        match answer {
            Answer::Redis if allowed => self.handles.allowed.increment(1),
            Answer::Redis => self.handles.denied.increment(1),
            Answer::LocalDeny => self.handles.local_denied.increment(1),
            Answer::FailurePolicy => self.handles.failure_policy.increment(1),
        }
    }

    pub(super) fn cost_exceeds_burst(&self) {
        bump(&self.cost_exceeds_burst);
        #[cfg(feature = "metrics")]
        self.handles.cost_exceeds_burst.increment(1);
    }

    pub(super) fn redis_call(&self) {
        bump(&self.redis_calls);
    }

    pub(super) fn redis_error(&self) {
        bump(&self.redis_errors);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("redis_errors_total")).increment(1);
    }

    pub(super) fn data_loss(&self) {
        bump(&self.data_losses);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("data_losses_total")).increment(1);
    }

    /// The circuit breaker opened (`true`) or closed again (`false`).
    pub(super) fn breaker(&self, open: bool) {
        if open {
            bump(&self.breaker_opened);
        }
        #[cfg(feature = "metrics")]
        {
            if open {
                metrics::counter!(metric!("breaker_opened_total")).increment(1);
            }
            metrics::gauge!(metric!("breaker_open")).set(if open { 1.0 } else { 0.0 });
        }
    }

    pub(super) fn snapshot(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            allowed: g(&self.allowed),
            denied: g(&self.denied),
            local_denied: g(&self.local_denied),
            failed_open: g(&self.failed_open),
            failed_closed: g(&self.failed_closed),
            fallback_local: g(&self.fallback_local),
            cost_exceeds_burst: g(&self.cost_exceeds_burst),
            data_losses: g(&self.data_losses),
            redis_errors: g(&self.redis_errors),
            redis_calls: g(&self.redis_calls),
            breaker_opened: g(&self.breaker_opened),
            ..Stats::default()
        }
    }
}
