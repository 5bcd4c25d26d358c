//! [`SecurityEvent`]: what one crate detected, in a form another crate can act on.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Timestamp, canonical_ip, normalize_user_id};

/// Longest accepted event id or source name, in bytes.
pub const MAX_LABEL_LEN: usize = 256;

fn check_label(field: &'static str, s: &str) -> Result<(), Error> {
    if s.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if s.len() > MAX_LABEL_LEN {
        return Err(Error::invalid(
            field,
            format!("{} bytes, more than the {MAX_LABEL_LEN} allowed", s.len()),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(field, format!("control character in {s:?}")));
    }
    Ok(())
}

/// A unique, non-empty event identifier (at most [`MAX_LABEL_LEN`] bytes, no control
/// characters), chosen by the producer, e.g. `"threat-score:1f2e…"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EventId(String);

impl EventId {
    /// Validates and wraps an id.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        check_label("event id", &id)?;
        Ok(EventId(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        EventId::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A risk score in `[0, 1]`: never NaN, never out of range.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
pub struct Score(f64);

impl Score {
    /// Validates a score.
    pub fn new(value: f64) -> Result<Self, Error> {
        if (0.0..=1.0).contains(&value) {
            Ok(Score(value))
        } else {
            Err(Error::invalid("score", format!("{value} is not in [0, 1]")))
        }
    }

    /// The score as a number in `[0, 1]`.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Score::new(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// How bad an event is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth recording, nothing to do.
    Info,
    /// Unusual, probably benign.
    Low,
    /// Suspicious; watch or add friction.
    Medium,
    /// Likely an attack; act.
    High,
    /// An attack in progress or a compromise; act now and page someone.
    Critical,
}

/// What kind of thing was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// Many failed logins against one account.
    BruteForce,
    /// Many accounts tried from one source with leaked credentials.
    CredentialStuffing,
    /// A few common passwords tried across many accounts.
    PasswordSpray,
    /// Signs that an account is controlled by someone else.
    AccountTakeover,
    /// A login unlike the user's history (new country, network, device).
    AnomalousLogin,
    /// Two logins too far apart for the time between them.
    ImpossibleTravel,
    /// A rate limit denied requests.
    RateLimitExceeded,
    /// A token used in a way it must not be (revoked, replayed, wrong audience).
    TokenMisuse,
    /// A certificate for a watched name that nobody authorized.
    UnauthorizedCertificate,
    /// A Certificate Transparency log broke its promises (bad signature, fork, bad proof).
    LogMisbehaviour,
    /// A device fingerprint that contradicts itself or its user's history.
    DeviceAnomaly,
}

/// What an event's evidence is tied to, and so which responses it can justify.
///
/// The rule every consumer applies (playbooks enforces it whatever a playbook says):
/// evidence from an unauthenticated attempt may act on the attempt's source (its
/// address), may notify, and may raise the bar for the next login to the account it
/// names (a bounded step-up), but never ends the account owner's sessions or revokes
/// their tokens. Anyone who knows a username can fail a login on it from anywhere;
/// only evidence tied to an authenticated session or token proves that the account
/// itself is in someone else's hands.
///
/// The default is [`EvidenceBasis::Unauthenticated`]: an event that does not say what
/// backs it is worth the least.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EvidenceBasis {
    /// Derived from traffic nobody proved they own: a failed login, a request from an
    /// address, a claimed username, data from outside (a CT log, a feed).
    #[default]
    Unauthenticated,
    /// Tied to an authenticated session or token: a login whose credentials were
    /// accepted and that scored as a takeover, a valid token used where it must not be.
    Authenticated,
}

impl EvidenceBasis {
    /// Whether this evidence may justify ending an account's sessions or revoking its
    /// tokens.
    pub fn may_act_on_account(self) -> bool {
        self == EvidenceBasis::Authenticated
    }
}

/// Who or what an event is about: the target a response would act on.
///
/// Build address and user subjects with [`Subject::ip`] and [`Subject::user`], which
/// apply the canonical forms ([`crate::canonical_ip`], [`crate::normalize_user_id`]);
/// a deserialized address is made canonical too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Subject {
    /// A network peer.
    Ip {
        /// The address.
        #[serde(deserialize_with = "crate::normalize::deserialize_canonical_ip")]
        ip: IpAddr,
    },
    /// An account.
    User {
        /// The user id (JWT `sub` or the service's account id).
        user_id: String,
    },
    /// One token, by issuer and JWT id.
    Token {
        /// The `iss` claim.
        issuer: String,
        /// The `jti` claim.
        jti: String,
    },
    /// A device, by its (keyed, non-reversible) fingerprint id.
    Device {
        /// The device id.
        device_id: String,
    },
    /// A DNS name, e.g. a domain a certificate was issued for.
    Domain {
        /// The name.
        domain: String,
    },
}

impl Subject {
    /// A network peer, in canonical form (IPv4-mapped IPv6 becomes IPv4).
    pub fn ip(ip: IpAddr) -> Self {
        Subject::Ip {
            ip: canonical_ip(ip),
        }
    }

    /// An account, by its normalized user id ([`crate::normalize_user_id`]).
    pub fn user(user_id: &str) -> Self {
        Subject::User {
            user_id: normalize_user_id(user_id).into_owned(),
        }
    }
}

/// A security event: what was detected, about whom, how bad, and why.
///
/// Producers (threat-score, ratelimit, ct-monitor, …) emit them; playbooks consume
/// them. Parse untrusted JSON with [`SecurityEvent::from_json`], which validates every
/// field (unknown fields are rejected, scores must be in `[0, 1]`).
///
/// ```
/// use palisade_core_traits::{EventId, EventKind, SecurityEvent, Severity, Subject, Timestamp};
///
/// let event = SecurityEvent::new(
///     EventId::new("threat-score:42").unwrap(),
///     Timestamp::from_unix_secs(1_700_000_000),
///     EventKind::BruteForce,
///     Severity::High,
///     Subject::Ip { ip: "198.51.100.4".parse().unwrap() },
///     "palisade-threat-score",
/// )
/// .with_evidence("failed_logins_1m", "57");
///
/// let json = serde_json::to_vec(&event).unwrap();
/// assert_eq!(SecurityEvent::from_json(&json).unwrap(), event);
/// assert!(SecurityEvent::from_json(br#"{"id":"x"}"#).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SecurityEvent {
    /// Unique id chosen by the producer.
    pub id: EventId,
    /// When the detected activity happened (not when it was processed).
    pub time: Timestamp,
    /// What was detected.
    pub kind: EventKind,
    /// How bad it is.
    pub severity: Severity,
    /// The producer's risk score, if it computes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Score>,
    /// Who or what the event is about.
    pub subject: Subject,
    /// What the evidence is tied to; decides which responses it may justify.
    /// Absent in JSON means [`EvidenceBasis::Unauthenticated`].
    #[serde(default, skip_serializing_if = "is_unauthenticated")]
    pub basis: EvidenceBasis,
    /// Key–value facts that explain the event, in the order the producer gave them.
    /// Never tokens, keys or passwords.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<(String, String)>,
    /// Which component produced the event, e.g. `palisade-threat-score`.
    #[serde(deserialize_with = "deserialize_source")]
    pub source: String,
}

fn is_unauthenticated(basis: &EvidenceBasis) -> bool {
    *basis == EvidenceBasis::Unauthenticated
}

fn deserialize_source<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_label("source", &s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

impl SecurityEvent {
    /// An event without score or evidence, on [`EvidenceBasis::Unauthenticated`]
    /// evidence until [`SecurityEvent::with_basis`] says otherwise.
    ///
    /// `source` is a static name of the producing component.
    pub fn new(
        id: EventId,
        time: Timestamp,
        kind: EventKind,
        severity: Severity,
        subject: Subject,
        source: &'static str,
    ) -> Self {
        SecurityEvent {
            id,
            time,
            kind,
            severity,
            score: None,
            subject,
            basis: EvidenceBasis::Unauthenticated,
            evidence: Vec::new(),
            source: source.to_owned(),
        }
    }

    /// Sets the risk score.
    pub fn with_score(mut self, score: Score) -> Self {
        self.score = Some(score);
        self
    }

    /// Sets what the evidence is tied to.
    pub fn with_basis(mut self, basis: EvidenceBasis) -> Self {
        self.basis = basis;
        self
    }

    /// Appends one evidence pair.
    pub fn with_evidence(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.evidence.push((key.into(), value.into()));
        self
    }

    /// The value of the first evidence pair with this key.
    pub fn evidence(&self, key: &str) -> Option<&str> {
        self.evidence
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Parses and validates an event from untrusted JSON bytes.
    ///
    /// Never panics, whatever the bytes; errors name the line, column and field.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        serde_json::from_slice(bytes).map_err(|source| Error::InvalidJson {
            what: "SecurityEvent",
            source,
        })
    }

    /// Serializes the event as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serialization of these plain types cannot fail: no maps with non-string
        // keys, no custom serializer that errors.
        serde_json::to_string(self)
            .unwrap_or_else(|e| unreachable!("SecurityEvent serializes: {e}"))
    }
}
