//! What the stores report through the `metrics` facade (feature `metrics`):
//! counters `palisade_hsm_keys_<what>_total`. Without the feature every function is
//! empty. Labels are fixed words (backend, algorithm, outcome, operation), never a
//! key name, label, URI or PIN.

use palisade_core_traits::JwsAlgorithm;

/// A signature attempt by `backend` with `alg`, and whether it succeeded.
pub(crate) fn sign(backend: &'static str, alg: JwsAlgorithm, ok: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        "palisade_hsm_keys_signs_total",
        "backend" => backend,
        "alg" => alg.as_str(),
        "outcome" => if ok { "ok" } else { "error" }
    )
    .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (backend, alg, ok);
}

/// An operation that failed with a backend error (`operation` is the PKCS#11 call or
/// the step, e.g. `C_Sign`).
pub(crate) fn error(operation: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_hsm_keys_errors_total", "operation" => operation).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = operation;
}

/// Every session was replaced (closed underneath, library re-initialised).
#[cfg_attr(not(feature = "pkcs11"), allow(dead_code))]
pub(crate) fn session_recovery() {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_hsm_keys_session_recoveries_total").increment(1);
}

/// A login repeated because the token had logged out.
#[cfg_attr(not(feature = "pkcs11"), allow(dead_code))]
pub(crate) fn relogin() {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_hsm_keys_relogins_total").increment(1);
}

/// A signing session opened.
#[cfg_attr(not(feature = "pkcs11"), allow(dead_code))]
pub(crate) fn session_opened() {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_hsm_keys_sessions_opened_total").increment(1);
}

/// A private-key handle looked up again after `CKR_*_HANDLE_INVALID`.
#[cfg_attr(not(feature = "pkcs11"), allow(dead_code))]
pub(crate) fn handle_refound() {
    #[cfg(feature = "metrics")]
    metrics::counter!("palisade_hsm_keys_handles_refound_total").increment(1);
}
