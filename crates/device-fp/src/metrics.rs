//! Counters through the `metrics` facade (feature `metrics`); without the feature
//! every function here is empty and compiles away.
//!
//! | counter | labels | counted when |
//! |---|---|---|
//! | `palisade_device_fp_fingerprints_computed_total` | | [`DeviceFingerprint::compute`](crate::DeviceFingerprint::compute) |
//! | `palisade_device_fp_ja4_computed_total` | | a JA4 was computed from ClientHello bytes ([`Ja4::from_client_hello`](crate::Ja4::from_client_hello), the acceptor) |
//! | `palisade_device_fp_ja4_failed_total` | `reason` ([`Error::reason`](crate::Error::reason)) | those bytes were refused, or the connection timed out or failed before them |
//! | `palisade_device_fp_consistency_flags_total` | `flag` ([`ConsistencyFlag::name`](crate::ConsistencyFlag::name)) | [`consistency_flags`](crate::consistency_flags) raised it |
//! | `palisade_device_fp_new_devices_total` | | a sighting matched none of the user's devices |
//! | `palisade_device_fp_devices_evicted_total` | | a user's least-trusted device made room |
//! | `palisade_device_fp_tls_handshakes_failed_total` | | the TLS handshake failed after the JA4 was computed |

#[cfg(feature = "metrics")]
macro_rules! count {
    ($name:literal $(, $k:literal => $v:expr)*) => {
        ::metrics::counter!($name $(, $k => $v)*).increment(1)
    };
}

#[cfg(not(feature = "metrics"))]
macro_rules! count {
    ($name:literal $(, $k:literal => $v:expr)*) => {{
        $(let _ = $v;)*
    }};
}

pub(crate) fn fingerprint_computed() {
    count!("palisade_device_fp_fingerprints_computed_total");
}

pub(crate) fn ja4_computed() {
    count!("palisade_device_fp_ja4_computed_total");
}

pub(crate) fn ja4_failed(reason: &'static str) {
    count!("palisade_device_fp_ja4_failed_total", "reason" => reason);
}

pub(crate) fn flag_raised(flag: &'static str) {
    count!("palisade_device_fp_consistency_flags_total", "flag" => flag);
}

pub(crate) fn new_device() {
    count!("palisade_device_fp_new_devices_total");
}

pub(crate) fn device_evicted() {
    count!("palisade_device_fp_devices_evicted_total");
}

#[cfg(feature = "tls")]
pub(crate) fn tls_handshake_failed() {
    count!("palisade_device_fp_tls_handshakes_failed_total");
}
