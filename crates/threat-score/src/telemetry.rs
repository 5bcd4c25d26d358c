//! What the scorer reports through the `metrics` facade (feature `metrics`): counters
//! `palisade_threat_score_<what>_total`, gauges `palisade_threat_score_<what>`.
//! Without the feature every function is empty.
//!
//! Labels carry fixed words only (a verdict, a signal name, an outcome, an evidence
//! basis), never a user id, an address or a reason text.

use crate::Verdict;

fn verdict_label(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Allow => "allow",
        Verdict::Monitor => "monitor",
        Verdict::StepUp => "step_up",
        Verdict::Block => "block",
    }
}

/// A score computed: its verdict and the signal that contributed most.
pub(crate) fn scored(verdict: Verdict, top: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "palisade_threat_score_scores_total",
        "verdict" => verdict_label(verdict), "top" => top
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (verdict_label(verdict), top);
}

/// An outcome recorded: `success`, `failure`, or `refused` (no login outcome).
pub(crate) fn recorded(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_threat_score_records_total", "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// A security event emitted: its verdict and whether its evidence is authenticated.
pub(crate) fn event(verdict: Verdict, authenticated: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "palisade_threat_score_events_total",
        "verdict" => verdict_label(verdict),
        "basis" => if authenticated { "authenticated" } else { "unauthenticated" }
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (verdict_label(verdict), authenticated);
}

/// Users forgotten to hold the memory budget, and the accounted memory after.
pub(crate) fn memory(evicted: u64, users: usize, memory_bytes: usize) {
    #[cfg(feature = "metrics")]
    {
        if evicted > 0 {
            metrics::counter!("palisade_threat_score_evicted_users_total").increment(evicted);
        }
        metrics::gauge!("palisade_threat_score_users").set(users as f64);
        metrics::gauge!("palisade_threat_score_memory_bytes").set(memory_bytes as f64);
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (evicted, users, memory_bytes);
}
