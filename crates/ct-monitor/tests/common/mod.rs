//! Helpers shared by the integration tests (decoding only, no logic under test).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::PathBuf;

pub fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = data(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&read(rel)).unwrap()
}

pub fn hex(s: &str) -> Vec<u8> {
    ::hex::decode(s).unwrap()
}

pub fn hex32(s: &str) -> [u8; 32] {
    hex(s).try_into().unwrap()
}

pub fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Every PEM block labelled `label` in `text` (files may start with an OpenSSL dump).
pub fn pem_blocks(text: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&begin) {
        let after = &rest[i + begin.len()..];
        let j = after.find(&end).unwrap();
        let body: String = after[..j].chars().filter(|c| !c.is_whitespace()).collect();
        out.push(b64(&body));
        rest = &after[j + end.len()..];
    }
    out
}

pub mod naive;

/// A log whose P-256 key is generated here (real logs' private keys are not public).
pub struct TestLog {
    pair: ring::signature::EcdsaKeyPair,
    pub key: palisade_ct_monitor::LogKey,
}

impl TestLog {
    pub fn new() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &rng,
        )
        .unwrap();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .unwrap();
        // SubjectPublicKeyInfo for id-ecPublicKey / prime256v1, then the point.
        let mut spki = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
        spki.extend_from_slice(ring::signature::KeyPair::public_key(&pair).as_ref());
        let key = palisade_ct_monitor::LogKey::from_spki_der(&spki).unwrap();
        Self { pair, key }
    }

    pub fn sth(
        &self,
        tree_size: u64,
        root_hash: [u8; 32],
        timestamp: u64,
    ) -> palisade_ct_monitor::SignedTreeHead {
        let mut sth = palisade_ct_monitor::SignedTreeHead {
            tree_size,
            timestamp,
            root_hash,
            signature: palisade_ct_monitor::DigitallySigned {
                hash_algorithm: 4,
                signature_algorithm: 3,
                signature: vec![],
            },
        };
        let sig = self
            .pair
            .sign(&ring::rand::SystemRandom::new(), &sth.signed_input())
            .unwrap();
        sth.signature.signature = sig.as_ref().to_vec();
        sth
    }
}

/// The leaf hashes of the first 1,024 Navigli2025h2 entries (data tiles 000–003).
pub fn navigli_leaf_hashes() -> Vec<palisade_ct_monitor::Hash> {
    ["000", "001", "002", "003"]
        .iter()
        .flat_map(|n| {
            let d = read(&format!("static-ct/navigli2025h2/tile/data/{n}"));
            palisade_ct_monitor::parse_data_tile(&d)
                .unwrap()
                .iter()
                .map(|l| l.leaf_hash())
                .collect::<Vec<_>>()
        })
        .collect()
}
