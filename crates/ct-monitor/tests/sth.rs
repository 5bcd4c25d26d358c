//! Real signed tree heads (ECDSA and RSA) and a static-ct checkpoint carrying a real
//! log signature; every single-bit change must fail with a typed error.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use common::{b64, hex};
use palisade_ct_monitor::{
    DigitallySigned, Error, KeyAlgorithm, LogKey, SignedTreeHead, verify_checkpoint,
};
use serde_json::{Value, json};

const FILES: [&str; 4] = [
    "google-pilot",
    "venafi-rsa",
    "ct-python-test-ecdsa",
    "digicert-yeti2018",
];

fn fixture(name: &str) -> (Value, LogKey, SignedTreeHead) {
    let f = common::json(&format!("sth/{name}.json"));
    let key = LogKey::from_spki_der(&b64(f["public_key_spki_der_b64"].as_str().unwrap())).unwrap();
    let sth = SignedTreeHead::from_json(f["sth"].to_string().as_bytes()).unwrap();
    (f, key, sth)
}

#[test]
fn real_sths_verify_and_match_the_facts() {
    for name in FILES {
        let (f, key, sth) = fixture(name);
        assert_eq!(
            key.log_id().to_vec(),
            b64(f["log_id_b64"].as_str().unwrap()),
            "{name}"
        );
        let pem_key = LogKey::from_pem(f["public_key_pem"].as_str().unwrap()).unwrap();
        assert_eq!(pem_key, key);
        let want_alg = if f["key_type"] == "RSA-2048" {
            KeyAlgorithm::Rsa
        } else {
            KeyAlgorithm::EcdsaP256
        };
        assert_eq!(key.algorithm(), want_alg, "{name}");
        assert_eq!(
            sth.signed_input().to_vec(),
            hex(f["expected"]["signed_input_hex"].as_str().unwrap())
        );
        assert_eq!(
            sth.signature.signature.len() as u64,
            f["expected"]["digitally_signed"]["signature_len"]
                .as_u64()
                .unwrap()
        );
        sth.verify(&key).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn pilot_key_file_is_the_same_key() {
    let pem = String::from_utf8(common::read("sth/google-ct-pilot-server-key-public.pem")).unwrap();
    let (_, key, sth) = fixture("google-pilot");
    assert_eq!(LogKey::from_pem(&pem).unwrap(), key);
    sth.verify(&LogKey::from_pem(&pem).unwrap()).unwrap();
}

fn is_bad_sig(r: Result<(), Error>) -> bool {
    matches!(r, Err(Error::BadSignature { what: "STH" }))
}

#[test]
fn every_must_fail_case_fails_with_bad_signature() {
    for name in FILES {
        let (_, key, sth) = fixture(name);
        let mut s = sth.clone();
        s.tree_size += 1;
        assert!(is_bad_sig(s.verify(&key)), "{name} size+1");
        let mut s = sth.clone();
        s.tree_size -= 1;
        assert!(is_bad_sig(s.verify(&key)), "{name} size-1");
        let mut s = sth.clone();
        s.timestamp += 1;
        assert!(is_bad_sig(s.verify(&key)), "{name} ts+1");
        let mut s = sth.clone();
        s.timestamp -= 1;
        assert!(is_bad_sig(s.verify(&key)), "{name} ts-1");
        for bit in 0..256 {
            let mut s = sth.clone();
            s.root_hash[bit / 8] ^= 1 << (bit % 8);
            assert!(is_bad_sig(s.verify(&key)), "{name} root bit {bit}");
        }
        let mut s = sth.clone();
        *s.signature.signature.last_mut().unwrap() ^= 1;
        assert!(is_bad_sig(s.verify(&key)), "{name} last sig byte");
        // Algorithm ids must match the key.
        let mut s = sth.clone();
        s.signature.hash_algorithm = 5;
        assert!(is_bad_sig(s.verify(&key)), "{name} hash alg");
        let mut s = sth.clone();
        s.signature.signature_algorithm ^= 2;
        assert!(is_bad_sig(s.verify(&key)), "{name} sig alg");
    }
}

#[test]
fn every_byte_of_the_encoded_signature_matters() {
    // verify_test.py's malformed-signature cases on the unnamed ECDSA test log.
    let (f, key, sth) = fixture("ct-python-test-ecdsa");
    let raw = b64(f["sth"]["tree_head_signature"].as_str().unwrap());
    assert_eq!(raw, sth.signature.to_tls());
    assert_eq!(raw.len(), 76);
    let check = |bytes: &[u8]| -> bool {
        match DigitallySigned::from_tls(bytes) {
            Err(Error::Malformed { .. }) => true,
            Err(e) => panic!("unexpected {e}"),
            Ok(sig) => {
                let s = SignedTreeHead {
                    signature: sig,
                    ..sth.clone()
                };
                is_bad_sig(s.verify(&key))
            }
        }
    };
    for i in 0..raw.len() {
        let mut b = raw.clone();
        b[i] ^= 1;
        assert!(check(&b), "byte {i} xor 1");
    }
    for i in [5usize, 7, 42] {
        for d in [1u8, 255] {
            let mut b = raw.clone();
            b[i] = b[i].wrapping_add(d);
            assert!(check(&b), "byte {i} {d:+}");
        }
    }
    let mut b = raw.clone();
    b[3] += 1;
    b.push(1);
    assert!(check(&b), "trailing garbage inside the signature");
    let mut b = raw.clone();
    b.push(0);
    assert!(matches!(
        DigitallySigned::from_tls(&b),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn get_sth_json_errors_are_typed() {
    let (f, _, _) = fixture("google-pilot");
    let mut j = f["sth"].clone();
    j["sha256_root_hash"] = json!("AAAA");
    let e = SignedTreeHead::from_json(j.to_string().as_bytes()).unwrap_err();
    assert!(matches!(e, Error::BadTreeHead { .. }), "{e}");
    assert!(e.to_string().contains("3 bytes"), "{e}");
    let mut j = f["sth"].clone();
    j.as_object_mut().unwrap().remove("tree_size");
    assert!(matches!(
        SignedTreeHead::from_json(j.to_string().as_bytes()),
        Err(Error::BadTreeHead { .. })
    ));
    assert!(SignedTreeHead::from_json(b"{").is_err());
}

#[test]
fn keys_other_than_p256_and_rsa_are_refused() {
    // A P-384 SPKI (prefix of a real one; the curve check comes before the point).
    let p384 = b64("MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE");
    assert!(LogKey::from_spki_der(&p384).is_err());
    assert!(matches!(
        LogKey::from_spki_der(b"\x30\x00"),
        Err(Error::BadKey(_))
    ));
    assert!(matches!(
        LogKey::from_pem("no pem here"),
        Err(Error::BadKey(_))
    ));
}

fn yeti() -> (String, LogKey, SignedTreeHead) {
    let note = String::from_utf8(common::read("sth/yeti2018-example.com.checkpoint")).unwrap();
    let (_, key, sth) = fixture("digicert-yeti2018");
    (note, key, sth)
}

#[test]
fn checkpoint_with_real_signature_verifies_as_the_same_sth() {
    let (note, key, sth) = yeti();
    let got = verify_checkpoint(note.as_bytes(), "example.com", &key).unwrap();
    assert_eq!(got, sth);
    assert_eq!(got.tree_size, 90_785_920);
    // The signature line's key id is the spec formula, computed here with ring.
    let mut input = b"example.com\n\x05".to_vec();
    input.extend_from_slice(key.log_id());
    let h = ring::digest::digest(&ring::digest::SHA256, &input);
    let line = note.lines().last().unwrap();
    assert_eq!(b64(line.rsplit(' ').next().unwrap())[..4], h.as_ref()[..4]);
}

#[test]
fn checkpoint_ignores_other_signers_and_rejects_two_from_the_log() {
    let (note, key, sth) = yeti();
    let line = note.lines().last().unwrap().to_string();
    let witness = "\u{2014} witness.example AAAAAAAAAAAA\n";
    let with_witness = format!("{note}{witness}");
    assert_eq!(
        verify_checkpoint(with_witness.as_bytes(), "example.com", &key).unwrap(),
        sth
    );
    let twice = format!("{note}{line}\n");
    assert!(matches!(
        verify_checkpoint(twice.as_bytes(), "example.com", &key),
        Err(Error::BadTreeHead { .. })
    ));
}

#[test]
fn every_flipped_bit_of_the_checkpoint_is_rejected() {
    let (note, key, _) = yeti();
    let bytes = note.as_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.to_vec();
            b[i] ^= 1 << bit;
            let r = verify_checkpoint(&b, "example.com", &key);
            assert!(r.is_err(), "byte {i} bit {bit} accepted");
        }
    }
}

#[test]
fn checkpoint_negative_cases_are_typed() {
    let (note, key, _) = yeti();
    let cp = |s: &str| verify_checkpoint(s.as_bytes(), "example.com", &key);
    // Wrong origin expected by the caller.
    assert!(matches!(
        verify_checkpoint(note.as_bytes(), "example.org", &key),
        Err(Error::BadTreeHead { .. })
    ));
    // A key that is not the log's: no signature line for it.
    let (_, other, _) = fixture("google-pilot");
    assert!(matches!(
        verify_checkpoint(note.as_bytes(), "example.com", &other),
        Err(Error::NoSignatureFromKey { .. })
    ));
    // Tree size changed: parses, signature fails.
    let bumped = note.replace("90785920", "90785921");
    assert!(matches!(
        cp(&bumped),
        Err(Error::BadSignature { what: "checkpoint" })
    ));
    // Leading zero, extension line, missing blank line, hyphen instead of em dash.
    assert!(matches!(
        cp(&note.replace("90785920", "090785920")),
        Err(Error::BadTreeHead { .. })
    ));
    let ext = note.replacen("=\n\n", "=\nextension\n\n", 1);
    assert!(matches!(cp(&ext), Err(Error::BadTreeHead { .. })));
    assert!(matches!(
        cp(&note.replacen("\n\n", "\n", 1)),
        Err(Error::BadTreeHead { .. })
    ));
    assert!(matches!(
        cp(&note.replace('\u{2014}', "-")),
        Err(Error::BadTreeHead { .. })
    ));
    assert!(matches!(cp(""), Err(Error::BadTreeHead { .. })));
    // Trailing garbage inside the RFC6962NoteSignature.
    let line = note.lines().last().unwrap();
    let b64part = line.rsplit(' ').next().unwrap();
    let mut raw = b64(b64part);
    raw.push(0);
    use base64::Engine;
    let longer = note.replace(
        b64part,
        &base64::engine::general_purpose::STANDARD.encode(&raw),
    );
    assert!(matches!(cp(&longer), Err(Error::Malformed { .. })));
}
