//! The OCSF input adapter on schema-shaped events (tests/data/ocsf, see its README):
//! field-by-field mapping, events that are no evidence, and one typed error per
//! missing or invalid field.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::PathBuf;

use palisade_core_traits::{EventKind, EvidenceBasis, Severity, Subject, Timestamp};
use palisade_playbooks::{
    ActionKind, Definition, Engine, Error, Verdict, parse_ocsf, parse_ocsf_value,
};
use serde_json::{Value, json};

fn bytes(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/ocsf")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn value(name: &str) -> Value {
    serde_json::from_slice(&bytes(name)).unwrap()
}

fn evidence(e: &palisade_core_traits::SecurityEvent, key: &str) -> String {
    e.evidence(key)
        .unwrap_or_else(|| panic!("no evidence {key}"))
        .to_owned()
}

#[test]
fn authentication_failure_maps_to_brute_force_about_the_source_address() {
    let e = parse_ocsf(&bytes("auth-failure.json")).unwrap().unwrap();
    assert_eq!(e.id.as_str(), "idp-7f3a9c");
    assert_eq!(e.time, Timestamp::from_unix_micros(1_800_000_000_123_000));
    assert_eq!(e.kind, EventKind::BruteForce);
    assert_eq!(e.severity, Severity::High);
    assert_eq!(
        e.subject,
        Subject::Ip {
            ip: "203.0.113.7".parse().unwrap()
        }
    );
    assert_eq!(e.source, "example-idp");
    assert_eq!(e.score, None);
    assert_eq!(evidence(&e, "ocsf.class_uid"), "3002");
    assert_eq!(evidence(&e, "ocsf.status_id"), "2");
    assert_eq!(evidence(&e, "ocsf.status_detail"), "INVALID_CREDENTIALS");
    assert_eq!(evidence(&e, "ocsf.user"), "u-1001"); // uid preferred over name
    assert_eq!(evidence(&e, "ocsf.src_endpoint.ip"), "203.0.113.7");
    // A failed logon is anyone's attempt.
    assert_eq!(e.basis, EvidenceBasis::Unauthenticated);
}

#[test]
fn a_risky_successful_logon_is_an_anomalous_login_about_the_user() {
    let e = parse_ocsf(&bytes("auth-success-risky.json"))
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, EventKind::AnomalousLogin);
    assert_eq!(e.severity, Severity::Medium);
    assert_eq!(
        e.subject,
        Subject::User {
            user_id: "bob".into()
        }
    );
    assert_eq!(evidence(&e, "ocsf.src_endpoint.ip"), "2001:db8::42");
    // The credentials were accepted: tied to an authenticated session.
    assert_eq!(e.basis, EvidenceBasis::Authenticated);
}

#[test]
fn events_that_are_no_evidence_map_to_none() {
    for name in [
        "auth-success-ordinary.json",
        "auth-logoff.json",
        "finding-suppressed.json",
    ] {
        assert_eq!(parse_ocsf(&bytes(name)).unwrap(), None, "{name}");
    }
    let mut closed = value("finding-stuffing.json");
    closed["activity_id"] = json!(3);
    closed["type_uid"] = json!(200403);
    assert_eq!(parse_ocsf_value(&closed).unwrap(), None);
}

#[test]
fn detection_findings_map_kind_subject_score_and_id() {
    let e = parse_ocsf(&bytes("finding-stuffing.json"))
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, EventKind::CredentialStuffing);
    assert_eq!(e.severity, Severity::Critical);
    // An address anywhere in the evidences wins over an account.
    assert_eq!(
        e.subject,
        Subject::Ip {
            ip: "192.0.2.66".parse().unwrap()
        }
    );
    assert_eq!(e.score.unwrap().get(), 0.87);
    assert_eq!(e.id.as_str(), "det-000912"); // no metadata.uid: the finding's uid
    assert_eq!(e.source, "example-siem");
    assert_eq!(evidence(&e, "ocsf.class_uid"), "2004");
    assert_eq!(
        evidence(&e, "ocsf.finding_info.title"),
        "Credential stuffing against /login"
    );

    let e = parse_ocsf(&bytes("finding-takeover-user.json"))
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, EventKind::AccountTakeover);
    assert_eq!(e.severity, Severity::Critical); // 6 Fatal
    assert_eq!(
        e.subject,
        Subject::User {
            user_id: "u-1003".into()
        }
    );
    assert_eq!(e.id.as_str(), "siem-ev-55");
    // A detector's word is not an authenticated session: it cannot end the account's.
    assert_eq!(e.basis, EvidenceBasis::Unauthenticated);
}

#[test]
fn keywords_pick_the_kind() {
    for (title, kind) in [
        ("Password spray across tenants", EventKind::PasswordSpray),
        ("SSH brute-force", EventKind::BruteForce),
        (
            "Impossible travel: Paris then Sydney",
            EventKind::ImpossibleTravel,
        ),
        ("Refresh token replay", EventKind::TokenMisuse),
        ("Anomalous sign-in location", EventKind::AnomalousLogin),
    ] {
        let mut v = value("finding-takeover-user.json");
        v["finding_info"]["title"] = json!(title);
        assert_eq!(parse_ocsf_value(&v).unwrap().unwrap().kind, kind, "{title}");
    }
}

fn refused(v: &Value) -> (String, String) {
    match parse_ocsf_value(v) {
        Err(Error::Ocsf { field, reason }) => (field, reason),
        other => panic!("expected an OCSF error for {v}, got {other:?}"),
    }
}

#[test]
fn missing_or_invalid_fields_are_typed_errors_naming_the_field() {
    let auth = value("auth-failure.json");
    let finding = value("finding-stuffing.json");
    let mut untyped = auth.clone(); // type_uid is optional; without it activity_id is checked alone
    untyped.as_object_mut().unwrap().remove("type_uid");
    let cases: Vec<(&Value, &str, Value, &str)> = vec![
        (&auth, "class_uid", Value::Null, "class_uid"),
        (&auth, "class_uid", json!(4001), "class_uid"),
        (&auth, "class_uid", json!("3002"), "class_uid"),
        (&auth, "category_uid", json!(2), "category_uid"),
        (&auth, "type_uid", json!(300202), "type_uid"),
        (&untyped, "activity_id", Value::Null, "activity_id"),
        (&untyped, "activity_id", json!(7), "activity_id"),
        (&auth, "time", json!("2027-01-15T08:00:00Z"), "time"),
        (&auth, "time", Value::Null, "time"),
        (&auth, "severity_id", json!(7), "severity_id"),
        (&auth, "severity_id", json!(-1), "severity_id"),
        (&auth, "status_id", json!(0), "status_id"),
        (&auth, "status_id", Value::Null, "status_id"),
        (&auth, "user", Value::Null, "user"),
        (
            &auth,
            "metadata",
            json!({"version": "1.3.0"}),
            "metadata.uid",
        ),
        (
            &auth,
            "src_endpoint",
            json!({"ip": "203.0.113.999"}),
            "src_endpoint.ip",
        ),
        (&auth, "status_detail", json!("a\nb"), "status_detail"),
        (
            &finding,
            "finding_info",
            json!({"title": "brute force"}),
            "finding_info.uid",
        ),
        (
            &finding,
            "finding_info",
            json!({"uid": "x", "title": "weird"}),
            "finding_info.types",
        ),
        (
            &finding,
            "finding_info",
            json!({"uid": "x", "types": "brute"}),
            "finding_info.types",
        ),
        (&finding, "confidence_score", json!(150), "confidence_score"),
        (&finding, "status_id", json!(7), "status_id"),
        (&finding, "evidences", json!([]), "evidences"),
        (
            &finding,
            "evidences",
            json!({"src_endpoint": {}}),
            "evidences",
        ),
        (
            &finding,
            "evidences",
            json!([{"src_endpoint": {"ip": 5}}]),
            "evidences[0].src_endpoint.ip",
        ),
    ];
    for (base, key, new, want) in cases {
        let mut v = base.clone();
        if new.is_null() {
            v.as_object_mut().unwrap().remove(key);
        } else {
            v[key] = new.clone();
        }
        let (field, reason) = refused(&v);
        assert_eq!(field, want, "{key} = {new}: {reason}");
        let shown = Error::Ocsf {
            field: field.clone(),
            reason,
        }
        .to_string();
        assert!(shown.contains(&format!("`{want}`")), "{shown}");
    }
    for bad in [&b"not json"[..], b"[1,2]", b"{}", b"null"] {
        assert!(parse_ocsf(bad).is_err());
    }
    let huge = vec![b' '; palisade_playbooks::MAX_OCSF_BYTES + 1];
    assert!(matches!(parse_ocsf(&huge), Err(Error::Ocsf { field, .. }) if field == "(document)"));
}

#[test]
fn an_ocsf_brute_force_drives_the_default_playbooks() {
    let e = parse_ocsf(&bytes("auth-failure.json")).unwrap().unwrap();
    let mut engine = Engine::new(Definition::default_set().unwrap());
    let plan = engine.evaluate(&e, e.time);
    let block = plan
        .steps
        .iter()
        .find(|s| s.action.kind() == ActionKind::BlockIp)
        .unwrap();
    assert_eq!(block.verdict, Verdict::Execute);
    assert_eq!(block.playbook.as_deref(), Some("brute-force-ip"));
}
