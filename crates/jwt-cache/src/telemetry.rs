//! What the validator and cache report through the `metrics` facade (feature
//! `metrics`): counters `palisade_jwt_cache_<what>_total`, gauges
//! `palisade_jwt_cache_<what>`. Without the feature every function is empty.
//!
//! Labels carry fixed words only (an outcome, an error kind, a revocation answer, the
//! cache's configured name), never a token, claim or key id.

/// A validation answered: `kind` is `None` for an accepted token, else the
/// rejection's [`crate::Error::kind`].
pub(crate) fn validation(kind: Option<&'static str>) {
    #[cfg(feature = "metrics")]
    match kind {
        None => metrics::counter!(
            "palisade_jwt_cache_validations_total",
            "outcome" => "accepted", "kind" => "none"
        )
        .increment(1),
        Some(kind) => metrics::counter!(
            "palisade_jwt_cache_validations_total",
            "outcome" => "rejected", "kind" => kind
        )
        .increment(1),
    }
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}

/// An answer served from the cache.
pub(crate) fn hit() {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_jwt_cache_hits_total").increment(1);
}

/// A full validation (header, key, signature, claims).
pub(crate) fn miss() {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_jwt_cache_misses_total").increment(1);
}

/// An entry evicted by the cache's bound.
pub(crate) fn evicted() {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_jwt_cache_evictions_total").increment(1);
}

/// What the revocation check answered: `not_revoked`, `revoked`, `unknown` or
/// `no_local_answer`.
pub(crate) fn revocation(answer: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_jwt_cache_revocation_answers_total", "answer" => answer)
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = answer;
}

/// The entries and weighed bytes a cache holds now.
pub(crate) fn cache_size(cache: &crate::TokenCache) {
    #[cfg(feature = "metrics")]
    {
        let name = cache.config.name.clone();
        #[allow(clippy::cast_precision_loss)] // a gauge is an f64
        {
            metrics::gauge!("palisade_jwt_cache_entries", "cache" => name.clone())
                .set(cache.len() as f64);
            metrics::gauge!("palisade_jwt_cache_bytes", "cache" => name)
                .set(cache.weighed_bytes() as f64);
        }
    }
    #[cfg(not(feature = "metrics"))]
    let _ = cache;
}
