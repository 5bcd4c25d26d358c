//! RFC 9964's examples (tests/data/rfc9964/README.md), shared by the ML-DSA tests.
#![allow(dead_code, unreachable_pub)]

use palisade_hsm_keys::JwsAlgorithm;
use serde_json::Value;

/// RFC 9964's example for `alg`.
pub fn rfc_example(alg: JwsAlgorithm) -> Value {
    let text = match alg {
        JwsAlgorithm::MlDsa44 => include_str!("../data/rfc9964/ML_DSA_44.jose.json"),
        JwsAlgorithm::MlDsa65 => include_str!("../data/rfc9964/ML_DSA_65.jose.json"),
        _ => include_str!("../data/rfc9964/ML_DSA_87.jose.json"),
    };
    serde_json::from_str(text).unwrap()
}

pub fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
