//! SCT verification and the Chrome / Apple CT policies on real certificates:
//! a Cloudflare certificate with SCTs from Google Xenon2025h2 and Cloudflare
//! Nimbus2025 (cloudflare/azul's sct_validator test data, with Chrome's log list
//! v81.14), and the certificate-transparency test log's six SCTs.
#![allow(clippy::unwrap_used)]

mod common;

use common::{b64, hex, pem_blocks, read};
use palisade_ct_monitor::{
    CertificateInfo, CtPolicy, LogList, LogState, Sct, SctSource, SctStatus, SctVerifier,
    SignedEntryData, embedded_scts, parse_sct_list, spki_hash, tbs_without_ct_extensions,
};
use x509_parser::prelude::{FromDer, X509Certificate};

fn pem(rel: &str) -> Vec<Vec<u8>> {
    pem_blocks(std::str::from_utf8(&read(rel)).unwrap(), "CERTIFICATE")
}

fn cloudflare() -> (Vec<u8>, Vec<u8>) {
    let leaf = pem("sct/cloudflare.pem").remove(0);
    let issuer = pem("sct/google-we1.pem").remove(0);
    (leaf, issuer)
}

fn chrome_list() -> LogList {
    LogList::from_json(&read("loglist/log_list.json")).unwrap()
}

/// Chrome's list with one log's state replaced (`state` is its v3 JSON).
fn list_with_state(description: &str, state: &str) -> LogList {
    let mut doc = common::json("loglist/log_list.json");
    let mut found = false;
    for op in doc["operators"].as_array_mut().unwrap() {
        for log in op["logs"].as_array_mut().unwrap() {
            if log["description"] == description {
                log["state"] = serde_json::from_str(state).unwrap();
                found = true;
            }
        }
    }
    assert!(found, "{description}");
    LogList::from_json(&serde_json::to_vec(&doc).unwrap()).unwrap()
}

// Values read from `openssl x509 -text` of sct/cloudflare.pem (Sep 10 19:11:57.152
// and .172 2025 GMT) and from the log list, not from the crate.
const XENON_ID: &str = "dddcca3495d7e11605e79532fac79ff83d1c50dfdb003a1412760a2cacbbc82a";
const NIMBUS_ID: &str = "ccfb0f6a85710965fe959b53cee9b27c22e9855c0d978db6a97e54c0fe4c0db0";

#[test]
fn real_certificate_with_two_embedded_scts_from_two_operators() {
    let (leaf, issuer) = cloudflare();
    let list = chrome_list();
    let report = SctVerifier::new(&list).verify(&leaf, &issuer, &[]).unwrap();
    assert_eq!(report.scts.len(), 2);
    let want = [
        (
            XENON_ID,
            1_757_531_517_152,
            "Google 'Xenon2025h2' log",
            "Google",
        ),
        (
            NIMBUS_ID,
            1_757_531_517_172,
            "Cloudflare 'Nimbus2025'",
            "Cloudflare",
        ),
    ];
    for (c, (id, ts, log, op)) in report.scts.iter().zip(want) {
        assert_eq!(c.source, SctSource::Embedded);
        assert_eq!(c.log_id.to_vec(), hex(id));
        assert_eq!(c.timestamp, ts);
        assert_eq!(c.status, SctStatus::Valid, "{log}");
        assert_eq!(c.log.as_deref(), Some(log));
        assert_eq!(c.operator.as_deref(), Some(op));
        assert_eq!(c.log_state, Some(LogState::Usable));
        assert!(c.log_usable && c.rfc6962_log);
    }
    assert!(report.policy(CtPolicy::Chrome).compliant);
    assert!(report.policy(CtPolicy::Apple).compliant);
    assert_eq!(embedded_scts(&leaf).unwrap().len(), 2);
}

#[test]
fn precertificate_tbs_is_rebuilt_byte_for_byte_as_azul_does() {
    // azul's golden file: the leaf's TBSCertificate without the SCT list, written by
    // an independent implementation (Rust `der` crate).
    let (leaf, _) = cloudflare();
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    let ours = tbs_without_ct_extensions(cert.tbs_certificate.as_ref()).unwrap();
    assert_eq!(ours, read("sct/cloudflare-tbs-without-sct.der"));
}

#[test]
fn issuer_key_hash_of_a_plain_certificate() {
    // shared testdata facts: issuer key hashes of the test log's CA and intermediate.
    let ca = pem("testlog/ca-cert.pem").remove(0);
    let inter = pem("testlog/intermediate-cert.pem").remove(0);
    assert_eq!(
        spki_hash(&ca).unwrap().to_vec(),
        hex("02adddca08b8bf9861f035940c940156d8350fdff899a6239c6bd77255b8f8fc")
    );
    assert_eq!(
        spki_hash(&inter).unwrap().to_vec(),
        hex("6fa870e52e065a34243667409e8bfdf29ffa9e49c731525c167b30e8ad6a7516")
    );
    let info = CertificateInfo::from_certificate_der(&ca).unwrap();
    assert_eq!(info.spki_hash, spki_hash(&ca).unwrap());
    assert!(!info.is_precert);
    assert!(spki_hash(b"\x30\x03\x02\x01\x00").is_err());
}

#[test]
fn timestamp_changed_by_one_millisecond_is_invalid() {
    let (leaf, issuer) = cloudflare();
    let list = chrome_list();
    let verifier = SctVerifier::new(&list);
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    let tbs = tbs_without_ct_extensions(cert.tbs_certificate.as_ref()).unwrap();
    let ikh = spki_hash(&issuer).unwrap();
    let entry = SignedEntryData::Precert {
        issuer_key_hash: &ikh,
        tbs_certificate: &tbs,
    };
    let not_after = verifier.verify(&leaf, &issuer, &[]).unwrap().not_after;
    for sct in embedded_scts(&leaf).unwrap() {
        let ok = verifier.check(&sct, &entry, SctSource::Embedded, not_after);
        assert_eq!(ok.status, SctStatus::Valid);
        for delta in [1i64, -1] {
            let mut moved = sct.clone();
            moved.timestamp = sct.timestamp.checked_add_signed(delta).unwrap();
            let bad = verifier.check(&moved, &entry, SctSource::Embedded, not_after);
            assert_eq!(bad.status, SctStatus::Invalid, "{delta}");
        }
    }
}

#[test]
fn wrong_issuer_makes_every_embedded_sct_invalid_and_fails_policy() {
    let (leaf, _) = cloudflare();
    let list = chrome_list();
    // The leaf is not its own issuer; neither is an unrelated CA.
    for issuer in [leaf.clone(), pem("testlog/ca-cert.pem").remove(0)] {
        let report = SctVerifier::new(&list).verify(&leaf, &issuer, &[]).unwrap();
        assert!(report.scts.iter().all(|c| c.status == SctStatus::Invalid));
        assert!(!report.policy(CtPolicy::Chrome).compliant);
        assert!(!report.policy(CtPolicy::Apple).compliant);
    }
}

#[test]
fn sct_from_a_log_not_in_the_list_is_unknown() {
    let (leaf, issuer) = cloudflare();
    // certificate-transparency-go's test list has neither Xenon2025h2 nor Nimbus2025.
    let other = LogList::from_json(&read("loglist/loglist3.json")).unwrap();
    let report = SctVerifier::new(&other)
        .verify(&leaf, &issuer, &[])
        .unwrap();
    assert!(
        report
            .scts
            .iter()
            .all(|c| c.status == SctStatus::UnknownLog && c.log.is_none() && !c.log_usable)
    );
    let chrome = report.policy(CtPolicy::Chrome);
    assert!(!chrome.compliant && !chrome.reason.is_empty());
}

#[test]
fn log_retired_before_the_timestamp_does_not_count() {
    let (leaf, issuer) = cloudflare();
    // Nimbus2025 retired on 2025-09-01, before the SCT (2025-09-10).
    let before = list_with_state(
        "Cloudflare 'Nimbus2025'",
        r#"{"retired": {"timestamp": "2025-09-01T00:00:00Z"}}"#,
    );
    let report = SctVerifier::new(&before)
        .verify(&leaf, &issuer, &[])
        .unwrap();
    let nimbus = &report.scts[1];
    assert_eq!(nimbus.status, SctStatus::Valid);
    assert_eq!(nimbus.log_state, Some(LogState::Retired));
    assert!(!nimbus.log_usable);
    let chrome = report.policy(CtPolicy::Chrome);
    assert!(!chrome.compliant, "{chrome:?}");
    assert!(!report.policy(CtPolicy::Apple).compliant);

    // Retired after the SCT: still counts (once-approved).
    let after = list_with_state(
        "Cloudflare 'Nimbus2025'",
        r#"{"retired": {"timestamp": "2025-10-01T00:00:00Z"}}"#,
    );
    let report = SctVerifier::new(&after)
        .verify(&leaf, &issuer, &[])
        .unwrap();
    assert!(report.scts[1].log_usable);
    assert!(report.policy(CtPolicy::Chrome).compliant);
    assert!(report.policy(CtPolicy::Apple).compliant);

    // Pending and rejected logs never count.
    for st in [
        r#"{"pending": {"timestamp": "2025-01-01T00:00:00Z"}}"#,
        r#"{"rejected": {"timestamp": "2025-01-01T00:00:00Z"}}"#,
    ] {
        let list = list_with_state("Cloudflare 'Nimbus2025'", st);
        let report = SctVerifier::new(&list).verify(&leaf, &issuer, &[]).unwrap();
        assert!(!report.scts[1].log_usable);
        assert!(!report.policy(CtPolicy::Chrome).compliant, "{st}");
    }
}

#[test]
fn two_logs_of_one_operator_do_not_satisfy_the_operator_rule() {
    let (leaf, issuer) = cloudflare();
    let list = chrome_list();
    let mut report = SctVerifier::new(&list).verify(&leaf, &issuer, &[]).unwrap();
    report.scts[1].operator = Some("Google".into());
    let chrome = report.policy(CtPolicy::Chrome);
    assert!(!chrome.compliant);
    assert!(chrome.reason.contains("operators"), "{}", chrome.reason);
    assert!(!report.policy(CtPolicy::Apple).compliant);
}

/// A v3 list holding only the certificate-transparency test log.
fn test_log_list() -> LogList {
    let key = pem_blocks(
        std::str::from_utf8(&read("testlog/ct-server-key-public.pem")).unwrap(),
        "PUBLIC KEY",
    )
    .remove(0);
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let json = format!(
        r#"{{"operators": [{{"name": "test", "email": [], "logs": [{{
            "description": "ct test log", "log_id": "3xwuwRUAlFJHqWFoMl3cXHlZ6PfG04j8AC4LvT9012Q=",
            "key": "{key}", "url": "https://ct.example/", "mmd": 86400,
            "state": {{"usable": {{"timestamp": "2013-01-01T00:00:00Z"}}}}}}]}}]}}"#
    );
    let list = LogList::from_json(json.as_bytes()).unwrap();
    assert!(list.problems.is_empty(), "{:?}", list.problems);
    list
}

fn sct_list(proof: &[u8]) -> Vec<u8> {
    let mut inner = (proof.len() as u16).to_be_bytes().to_vec();
    inner.extend_from_slice(proof);
    let mut out = (inner.len() as u16).to_be_bytes().to_vec();
    out.extend(inner);
    out
}

#[test]
fn test_log_scts_over_certificates_and_precertificates() {
    let list = test_log_list();
    let verifier = SctVerifier::new(&list);
    let ca = pem("testlog/ca-cert.pem").remove(0);
    let inter = pem("testlog/intermediate-cert.pem").remove(0);
    // SCTs delivered outside the certificate are over the whole certificate.
    for (cert, ts) in [
        ("test-cert", 1_365_181_456_089),
        ("test-intermediate-cert", 1_365_181_456_860),
    ] {
        let der = pem(&format!("testlog/{cert}.pem")).remove(0);
        let list = sct_list(&read(&format!("testlog/{cert}.proof")));
        for source in [SctSource::TlsExtension, SctSource::Ocsp] {
            let r = verifier.verify(&der, &ca, &[(source, &list)]).unwrap();
            assert_eq!(r.scts.len(), 1);
            assert_eq!(
                (r.scts[0].status.clone(), r.scts[0].timestamp),
                (SctStatus::Valid, ts)
            );
            assert_eq!(r.scts[0].source, source);
        }
        // The same SCT as if it were embedded (precert form) does not verify.
        let sct = parse_sct_list(&list).unwrap().remove(0);
        let ikh = spki_hash(&ca).unwrap();
        let entry = SignedEntryData::Precert {
            issuer_key_hash: &ikh,
            tbs_certificate: &der,
        };
        let c = verifier.check(
            &sct,
            &entry,
            SctSource::Embedded,
            palisade_core_traits::Timestamp::MAX,
        );
        assert_eq!(c.status, SctStatus::Invalid);
    }
    // Embedded SCTs are over the precertificate: TBS without the SCT list plus the
    // final issuer's key hash (also when a pre-CA signed the precertificate).
    for (cert, issuer, ts) in [
        ("test-embedded-cert", &ca, 1_365_181_456_275),
        ("test-embedded-with-preca-cert", &ca, 1_365_181_456_475),
        (
            "test-embedded-with-intermediate-cert",
            &inter,
            1_365_181_457_060,
        ),
        (
            "test-embedded-with-intermediate-preca-cert",
            &inter,
            1_365_181_457_342,
        ),
    ] {
        let der = pem(&format!("testlog/{cert}.pem")).remove(0);
        let r = verifier.verify(&der, issuer, &[]).unwrap();
        assert_eq!(r.scts.len(), 1, "{cert}");
        assert_eq!(r.scts[0].status, SctStatus::Valid, "{cert}");
        assert_eq!(r.scts[0].timestamp, ts);
        // Only one log: no policy is satisfied.
        assert!(!r.policy(CtPolicy::Chrome).compliant);
    }
    let bad = pem("testlog/test-invalid-embedded-cert.pem").remove(0);
    let r = verifier.verify(&bad, &ca, &[]).unwrap();
    assert_eq!(r.scts[0].status, SctStatus::Invalid);
}

#[test]
fn malformed_sct_lists_are_typed_errors() {
    let proof = read("testlog/test-cert.proof");
    assert!(Sct::parse(&proof).is_ok());
    let good = sct_list(&proof);
    assert_eq!(parse_sct_list(&good).unwrap().len(), 1);
    for n in 0..good.len() {
        assert!(parse_sct_list(&good[..n]).is_err(), "truncated at {n}");
    }
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(parse_sct_list(&trailing).is_err());
    let mut v2 = proof.clone();
    v2[0] = 1;
    let err = Sct::parse(&v2).unwrap_err().to_string();
    assert!(err.contains("version 1"), "{err}");
    assert!(parse_sct_list(&[0, 0]).is_err(), "empty list");
    assert!(matches!(
        SctVerifier::new(&chrome_list()).verify(b"not a certificate", b"", &[]),
        Err(palisade_ct_monitor::Error::Malformed { .. })
    ));
    let _ = b64("");
}

#[test]
fn non_canonical_encodings_outside_the_sct_list_are_kept_byte_for_byte() {
    // A hand-made TBS whose other fields use non-minimal DER lengths (81 03, 82 00 01)
    // and a BER TRUE (01 01 01): the signed precertificate TBS is the CA's bytes
    // minus the SCT-list extension, so everything else must survive unchanged.
    let version = hex("a08103020102");
    let serial = hex("0282000105");
    let other_ext = hex("300c0603551d1301010104023000");
    let sct_ext = hex("3011060a2b06010401d6790204020403040100");
    let mut exts = other_ext.clone();
    exts.extend(&sct_ext);
    let wrap = |tag: u8, body: &[u8]| {
        let mut v = vec![tag, body.len() as u8];
        v.extend_from_slice(body);
        v
    };
    let tbs_with = |exts: &[u8]| {
        let mut body = version.clone();
        body.extend(&serial);
        body.extend(wrap(0xa3, &wrap(0x30, exts)));
        wrap(0x30, &body)
    };
    let stripped = tbs_without_ct_extensions(&tbs_with(&exts)).unwrap();
    assert_eq!(stripped, tbs_with(&other_ext));
}

#[test]
fn an_sct_from_the_future_of_the_clock_does_not_count() {
    use std::sync::Arc;

    use palisade_core_traits::{ManualClock, Timestamp};
    let (leaf, issuer) = cloudflare();
    let list = chrome_list();
    // The two SCTs are stamped 1,757,531,517,152 and ...172 ms (openssl's dates).
    let at = |ms: u64| Arc::new(ManualClock::new(Timestamp::from_unix_nanos(ms * 1_000_000)));
    let verify = |clock: Arc<ManualClock>| {
        SctVerifier::new(&list)
            .clock(clock)
            .verify(&leaf, &issuer, &[])
            .unwrap()
    };
    // Between the two: the first is valid, the second is from the future.
    let report = verify(at(1_757_531_517_160));
    let status: Vec<_> = report.scts.iter().map(|c| c.status.clone()).collect();
    assert_eq!(status, [SctStatus::Valid, SctStatus::FutureTimestamp]);
    assert!(!report.policy(CtPolicy::Chrome).compliant);
    assert!(!report.policy(CtPolicy::Apple).compliant);
    // At the second's own millisecond both count, and both policies are met.
    let report = verify(at(1_757_531_517_172));
    assert!(report.scts.iter().all(|c| c.status == SctStatus::Valid));
    assert!(report.policy(CtPolicy::Chrome).compliant);
    assert!(report.policy(CtPolicy::Apple).compliant);
}
