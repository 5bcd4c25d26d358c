//! Serde round trips, rejection of malformed input, and object safety of the traits.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core_traits::*;
use proptest::prelude::*;

fn event() -> SecurityEvent {
    SecurityEvent::new(
        EventId::new("ev-1").unwrap(),
        Timestamp::from_unix_nanos(1_764_341_408_123_456_789),
        EventKind::CredentialStuffing,
        Severity::High,
        Subject::Ip {
            ip: "2001:db8::7".parse().unwrap(),
        },
        "palisade-threat-score",
    )
    .with_score(Score::new(0.93).unwrap())
    .with_evidence("distinct_users_10m", "412")
}

#[test]
fn security_event_json_has_the_documented_shape() {
    let json: serde_json::Value = serde_json::from_str(&event().to_json()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "id": "ev-1",
            "time": "2025-11-28T14:50:08.123456789Z",
            "kind": "credential_stuffing",
            "severity": "high",
            "score": 0.93,
            "subject": {"type": "ip", "ip": "2001:db8::7"},
            "evidence": [["distinct_users_10m", "412"]],
            "source": "palisade-threat-score"
        })
    );
}

#[test]
fn security_event_round_trips_every_subject_kind() {
    let subjects = [
        Subject::Ip {
            ip: "192.0.2.1".parse().unwrap(),
        },
        Subject::User {
            user_id: "alice".into(),
        },
        Subject::Token {
            issuer: "https://id.example".into(),
            jti: "j1".into(),
        },
        Subject::Device {
            device_id: "d1".into(),
        },
        Subject::Domain {
            domain: "example.com".into(),
        },
    ];
    for subject in subjects {
        let mut e = event();
        e.subject = subject;
        let back = SecurityEvent::from_json(e.to_json().as_bytes()).unwrap();
        assert_eq!(back, e);
    }
}

/// Each malformed document must be refused, and the error must name what was wrong.
#[test]
fn malformed_security_events_are_rejected_with_a_clear_error() {
    let good = event().to_json();
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "EOF"),
        ("{".into(), "EOF"),
        ("[]".into(), "invalid length 0"),
        ("42".into(), "invalid type"),
        (good.replace("\"high\"", "\"apocalyptic\""), "apocalyptic"),
        (
            good.replace("credential_stuffing", "alien_invasion"),
            "alien_invasion",
        ),
        (good.replace("0.93", "1.5"), "score"),
        (good.replace("0.93", "-0.1"), "score"),
        (good.replace("\"ev-1\"", "\"\""), "event id"),
        (good.replace("\"palisade-threat-score\"", "\"\""), "source"),
        (
            good.replace("2025-11-28T14:50:08.123456789Z", "yesterday"),
            "timestamp",
        ),
        (good.replace("\"2001:db8::7\"", "\"999.1.1.1\""), "address"),
        (
            good.replace("\"type\":\"ip\"", "\"type\":\"planet\""),
            "planet",
        ),
        (
            good.replace("\"source\"", "\"extra\":1,\"source\""),
            "unknown field `extra`",
        ),
        (
            good.replace(",\"source\":\"palisade-threat-score\"", ""),
            "missing field `source`",
        ),
        (
            good.replace(
                "\"ev-1\"",
                &format!("\"{}\"", "x".repeat(MAX_LABEL_LEN + 1)),
            ),
            "event id",
        ),
        (
            good.replace("\"ev-1\"", "\"a\\u0000b\""),
            "control character",
        ),
    ];
    for (doc, needle) in cases {
        let err = SecurityEvent::from_json(doc.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidJson {
                    what: "SecurityEvent",
                    ..
                }
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(needle),
            "error for {doc:?} should mention {needle:?}: {msg}"
        );
    }
}

#[test]
fn score_rejects_nan_and_out_of_range() {
    for bad in [f64::NAN, f64::INFINITY, -0.0001, 1.0001] {
        assert!(Score::new(bad).is_err(), "{bad}");
    }
    assert_eq!(Score::new(1.0).unwrap().get(), 1.0);
    assert_eq!(Score::new(0.0).unwrap().get(), 0.0);
}

#[test]
fn severities_are_ordered() {
    assert!(Severity::Info < Severity::Low);
    assert!(Severity::Low < Severity::Medium);
    assert!(Severity::Medium < Severity::High);
    assert!(Severity::High < Severity::Critical);
}

#[test]
fn request_context_round_trips_and_rejects_unknown_fields() {
    let mut device = ClientDeviceInfo::default();
    device.screen = Some((1920, 1080));
    device.timezone = Some("Europe/Berlin".into());
    device.languages = vec!["de-DE".into(), "en".into()];
    let ctx = RequestContext::new(
        "198.51.100.9".parse().unwrap(),
        Timestamp::from_unix_secs(5),
    )
    .with_user("bob")
    .with_request("POST", "/login")
    .with_header("Host", "id.example")
    .with_header("user-agent", "curl/8.5.0")
    .with_tls(TlsInfo::with_ja4("t13d1516h2_8daaf6152771_02713d6af862"))
    .with_device(device)
    .with_login(LoginOutcome::StepUpSuccess);
    let json = serde_json::to_vec(&ctx).unwrap();
    assert_eq!(RequestContext::from_json(&json).unwrap(), ctx);
    assert_eq!(
        ctx.headers[0].0, "Host",
        "headers keep their order and case"
    );
    assert_eq!(ctx.user_agent(), Some("curl/8.5.0"));
    assert_eq!(ctx.header("HOST"), Some("id.example"));
    assert_eq!(ctx.header("cookie"), None);

    let err = RequestContext::from_json(
        br#"{"peer_ip":"1.2.3.4","timestamp":"1970-01-01T00:00:00Z","x":1}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `x`"), "{err}");
    let err = RequestContext::from_json(br#"{"peer_ip":"1.2.3.4"}"#).unwrap_err();
    assert!(
        err.to_string().contains("missing field `timestamp`"),
        "{err}"
    );
    let err = RequestContext::from_json(
        br#"{"peer_ip":"1.2.3.4","timestamp":"1970-01-01T00:00:00Z","login":"maybe"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("maybe"), "{err}");
}

#[test]
fn token_identity_and_notification_round_trip() {
    let t = TokenIdentity::new("https://id.example")
        .with_subject("alice")
        .with_jti("j-1")
        .with_issued_at(10)
        .with_expires_at(20);
    let back: TokenIdentity = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(back, t);
    let n = Notification::trigger(Severity::Critical, "brute force on alice", "bf:alice")
        .with_event(event());
    let back: Notification = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
    assert_eq!(back, n);
    let r = Notification::resolve("bf:alice", "block expired");
    assert_eq!(r.action, NotificationAction::Resolve);
    // An id is written only when set: a notification without one reads as before.
    assert!(!serde_json::to_string(&r).unwrap().contains("\"id\""));
    let r = r.with_id("n-1");
    let back: Notification = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back.id.as_deref(), Some("n-1"));
    assert_eq!(JwsAlgorithm::EdDSA.to_string(), "EdDSA");
    let alg: JwsAlgorithm = serde_json::from_str("\"PS256\"").unwrap();
    assert_eq!(alg, JwsAlgorithm::PS256);
    assert!(
        serde_json::from_str::<JwsAlgorithm>("\"none\"").is_err(),
        "alg none is not an algorithm"
    );
    // RFC 9964 names: the serde form and the header form are the same string.
    for (alg, name) in [
        (JwsAlgorithm::MlDsa44, "ML-DSA-44"),
        (JwsAlgorithm::MlDsa65, "ML-DSA-65"),
        (JwsAlgorithm::MlDsa87, "ML-DSA-87"),
    ] {
        assert_eq!(alg.as_str(), name);
        assert_eq!(serde_json::to_string(&alg).unwrap(), format!("\"{name}\""));
        assert_eq!(
            serde_json::from_str::<JwsAlgorithm>(&format!("\"{name}\"")).unwrap(),
            alg
        );
        assert!(alg.is_ml_dsa());
    }
    assert!(!JwsAlgorithm::ES256.is_ml_dsa());
    assert!(serde_json::from_str::<JwsAlgorithm>("\"MlDsa65\"").is_err());
}

#[test]
fn only_not_revoked_allows() {
    assert!(RevocationStatus::NotRevoked.allows());
    assert!(!RevocationStatus::Revoked.allows());
    assert!(!RevocationStatus::Unknown.allows());
}

/// One type implementing every cross-crate trait, recording the calls, held as
/// `Arc<dyn Trait>`: this compiles only if every trait is object-safe.
#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl Recorder {
    fn record(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

#[async_trait]
impl RevocationCheck for Recorder {
    fn check_local(&self, token: &TokenIdentity) -> Option<RevocationStatus> {
        (token.issuer == "local").then_some(RevocationStatus::NotRevoked)
    }
}

#[async_trait]
impl TokenRevoker for Recorder {
    async fn revoke_token(&self, token: &TokenIdentity) -> Result<(), Error> {
        let jti = token
            .jti
            .as_deref()
            .ok_or_else(|| Error::invalid("jti", "missing"))?;
        self.record(format!("revoke {jti}"));
        Ok(())
    }
    async fn revoke_user(
        &self,
        issuer: &str,
        subject: &str,
        before: Timestamp,
    ) -> Result<(), Error> {
        self.record(format!(
            "revoke-user {issuer} {subject} {}",
            before.as_unix_secs()
        ));
        Ok(())
    }
}

#[async_trait]
impl IpBlocker for Recorder {
    async fn block_ip(&self, ip: IpAddr, d: Duration, reason: &str) -> Result<(), Error> {
        self.record(format!("block {ip} {}s {reason}", d.as_secs()));
        Ok(())
    }
    async fn unblock_ip(&self, ip: IpAddr) -> Result<(), Error> {
        self.record(format!("unblock {ip}"));
        Ok(())
    }
}

#[async_trait]
impl StepUpRequirer for Recorder {
    async fn require_step_up(&self, user: &str, d: Duration, _reason: &str) -> Result<(), Error> {
        self.record(format!("step-up {user} {}s", d.as_secs()));
        Ok(())
    }
}

#[async_trait]
impl SessionTerminator for Recorder {
    async fn terminate_sessions(&self, user: &str, _reason: &str) -> Result<Option<u64>, Error> {
        self.record(format!("terminate {user}"));
        Ok(Some(2))
    }
}

#[async_trait]
impl Notifier for Recorder {
    async fn notify(&self, n: &Notification) -> Result<(), Error> {
        self.record(format!("notify {}", n.dedup_key));
        Ok(())
    }
}

#[async_trait]
impl JwsSigner for Recorder {
    async fn sign_jws(&self, typ: Option<&str>, payload: &[u8]) -> Result<SignedJws, Error> {
        self.record(format!("sign {typ:?} {}", payload.len()));
        Ok(SignedJws::new(
            "h.p.s".into(),
            "kid-1".into(),
            JwsAlgorithm::ES256,
        ))
    }
}

#[tokio::test]
async fn every_trait_is_object_safe_and_callable_through_arc_dyn() {
    let rec = Arc::new(Recorder::default());
    let check: Arc<dyn RevocationCheck> = rec.clone();
    let revoker: Arc<dyn TokenRevoker> = rec.clone();
    let blocker: Arc<dyn IpBlocker> = rec.clone();
    let step_up: Arc<dyn StepUpRequirer> = rec.clone();
    let terminator: Arc<dyn SessionTerminator> = rec.clone();
    let notifier: Arc<dyn Notifier> = rec.clone();
    let signer: Arc<dyn JwsSigner> = rec.clone();

    let local = TokenIdentity::new("local");
    assert_eq!(
        check.check_local(&local),
        Some(RevocationStatus::NotRevoked)
    );
    assert_eq!(
        check.check(&local).await.unwrap(),
        RevocationStatus::NotRevoked
    );
    // No local answer: the default async path fails closed.
    assert_eq!(
        check.check(&TokenIdentity::new("remote")).await.unwrap(),
        RevocationStatus::Unknown
    );

    let err = revoker
        .revoke_token(&TokenIdentity::new("i"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("jti"), "{err}");
    revoker
        .revoke_token(&TokenIdentity::new("i").with_jti("j9"))
        .await
        .unwrap();
    revoker
        .revoke_user("i", "alice", Timestamp::from_unix_secs(7))
        .await
        .unwrap();
    blocker
        .block_ip("192.0.2.5".parse().unwrap(), Duration::from_secs(60), "bf")
        .await
        .unwrap();
    blocker
        .unblock_ip("192.0.2.5".parse().unwrap())
        .await
        .unwrap();
    step_up
        .require_step_up("alice", Duration::from_secs(300), "risk")
        .await
        .unwrap();
    assert_eq!(
        terminator.terminate_sessions("alice", "ato").await.unwrap(),
        Some(2)
    );
    notifier
        .notify(&Notification::resolve("k", "done"))
        .await
        .unwrap();
    let signed = signer.sign_jws(Some("JWT"), b"{}").await.unwrap();
    assert_eq!(signed.key_id, "kid-1");

    assert_eq!(
        *rec.calls.lock().unwrap(),
        vec![
            "revoke j9",
            "revoke-user i alice 7",
            "block 192.0.2.5 60s bf",
            "unblock 192.0.2.5",
            "step-up alice 300s",
            "terminate alice",
            "notify k",
            "sign Some(\"JWT\") 2",
        ]
    );
}

#[test]
fn evidence_basis_defaults_to_unauthenticated_and_round_trips() {
    // Absent means unauthenticated: an event that does not say what backs it is weak.
    let weak = event();
    assert_eq!(weak.basis, EvidenceBasis::Unauthenticated);
    assert!(!weak.basis.may_act_on_account());
    assert!(!weak.to_json().contains("basis"));

    let strong = event().with_basis(EvidenceBasis::Authenticated);
    assert!(strong.basis.may_act_on_account());
    assert!(strong.to_json().contains(r#""basis":"authenticated""#));
    assert_eq!(
        SecurityEvent::from_json(strong.to_json().as_bytes()).unwrap(),
        strong
    );

    let err = SecurityEvent::from_json(
        event()
            .to_json()
            .replace(r#""source""#, r#""basis":"trusted","source""#)
            .as_bytes(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("trusted"), "{err}");
}

#[test]
fn mapped_addresses_are_canonical_in_contexts_and_subjects() {
    let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
    let v4: IpAddr = "198.51.100.7".parse().unwrap();

    assert_eq!(
        RequestContext::new(mapped, Timestamp::UNIX_EPOCH).peer_ip,
        v4
    );
    let ctx = RequestContext::from_json(
        br#"{"peer_ip":"::ffff:198.51.100.7","timestamp":"1970-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(ctx.peer_ip, v4);

    assert_eq!(Subject::ip(mapped), Subject::Ip { ip: v4 });
    let mut e = event();
    e.subject = Subject::Ip { ip: mapped };
    let back = SecurityEvent::from_json(e.to_json().as_bytes()).unwrap();
    assert_eq!(back.subject, Subject::Ip { ip: v4 });
}

#[test]
fn user_subjects_are_normalized() {
    assert_eq!(
        Subject::user(" Admin "),
        Subject::User {
            user_id: "admin".into()
        }
    );
}

proptest! {
    #[test]
    fn user_id_normalization_is_a_fixed_point(id in "\\PC{0,16}") {
        let once = normalize_user_id(&id).into_owned();
        prop_assert_eq!(normalize_user_id(&once).into_owned(), once.clone());
        // Case never separates two spellings of one id.
        let (upper, once_upper) = (id.to_uppercase(), once.to_uppercase());
        prop_assert_eq!(normalize_user_id(&upper), normalize_user_id(&once_upper));
    }

    #[test]
    fn canonical_ip_is_idempotent_and_maps_every_ipv4(bits in any::<u32>()) {
        let v4 = IpAddr::from(std::net::Ipv4Addr::from(bits));
        let mapped = IpAddr::from(std::net::Ipv4Addr::from(bits).to_ipv6_mapped());
        prop_assert_eq!(canonical_ip(mapped), v4);
        prop_assert_eq!(canonical_ip(canonical_ip(mapped)), v4);
        prop_assert_eq!(canonical_ip(v4), v4);
    }

    #[test]
    fn timestamp_text_round_trips(nanos in any::<u64>()) {
        // Every representable instant (to 2554) has an RFC 3339 form.
        let t = Timestamp::from_unix_nanos(nanos);
        prop_assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
    }

    #[test]
    fn timestamp_add_then_sub_is_identity(base in 0u64..u64::MAX / 2, step in 0u64..u64::MAX / 2) {
        let t = Timestamp::from_unix_nanos(base);
        let d = Duration::from_nanos(step);
        prop_assert_eq!(t.saturating_add(d).saturating_sub(d), t);
        prop_assert_eq!(t.saturating_add(d).saturating_duration_since(t), d);
    }

    #[test]
    fn any_bytes_parse_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = SecurityEvent::from_json(&bytes);
        let _ = RequestContext::from_json(&bytes);
    }

    #[test]
    fn events_with_arbitrary_evidence_round_trip(
        evidence in proptest::collection::vec(("[a-z_]{1,12}", "\\PC{0,24}"), 0..6),
        score in 0.0f64..=1.0,
        secs in 0u64..4_000_000_000,
    ) {
        let mut e = event().with_score(Score::new(score).unwrap());
        e.time = Timestamp::from_unix_secs(secs);
        e.evidence = evidence;
        let back = SecurityEvent::from_json(e.to_json().as_bytes()).unwrap();
        prop_assert_eq!(back, e);
    }
}
