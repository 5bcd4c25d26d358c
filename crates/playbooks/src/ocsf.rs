//! Input adapter: OCSF Authentication (class 3002) and Detection Finding (class 2004)
//! JSON → core-traits [`SecurityEvent`].
//!
//! Ids and field names are those of the OCSF schema repository (`ocsf/ocsf-schema`):
//! `categories.json` (iam = 3, findings = 2), `events/iam/authentication.json`
//! (uid 2 → class 3002; `activity_id` 1 Logon, 2 Logoff, 3 Authentication Ticket,
//! 4 Service Ticket Request, 5 Service Ticket Renew; `user` required, `src_endpoint`),
//! `events/findings/detection_finding.json` extending `events/findings/finding.json`
//! (uid 4 → class 2004; `activity_id` 1 Create, 2 Update, 3 Close; `status_id` 1 New,
//! 2 In Progress, 3 Suppressed, 4 Resolved, 5 Archived, 6 Deleted; `finding_info`
//! required, `evidences`, `confidence_score`), `objects/finding_info.json` (`uid`
//! required, `title`, `types`), `objects/user.json` (`uid`, `name`),
//! `objects/endpoint.json` (`ip`) and `dictionary.json` (`status_id` 0 Unknown,
//! 1 Success, 2 Failure, 99 Other; `severity_id` 0–6, 99; `time` in ms;
//! `type_uid = class_uid × 100 + activity_id`). The mapping table is in
//! `docs/playbooks.md`.
//!
//! [`parse_ocsf`] returns `Ok(None)` for a well-formed event that is no evidence of an
//! attack (a logoff, an ordinary successful logon, a closed or suppressed finding) and
//! a typed [`Error::Ocsf`] naming the field for anything missing or invalid.

use std::net::IpAddr;

use palisade_core_traits::{
    EventId, EventKind, EvidenceBasis, MAX_LABEL_LEN, Score, SecurityEvent, Severity, Subject,
    Timestamp,
};
use serde_json::Value;

use crate::Error;

/// OCSF Authentication: category 3 (Identity & Access Management), class uid 2.
const AUTHENTICATION: u64 = 3002;
/// OCSF Detection Finding: category 2 (Findings), class uid 4.
const DETECTION_FINDING: u64 = 2004;
/// Larger OCSF inputs are refused by [`parse_ocsf`] before parsing.
pub const MAX_OCSF_BYTES: usize = 1 << 20;

fn err(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Ocsf {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The value at a dotted path, `None` if absent or `null`.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

fn int(v: &Value, path: &str) -> Result<Option<u64>, Error> {
    at(v, path)
        .map(|x| {
            x.as_u64()
                .ok_or_else(|| err(path, format!("must be a non-negative integer, got {x}")))
        })
        .transpose()
}

fn req_int(v: &Value, path: &str) -> Result<u64, Error> {
    int(v, path)?.ok_or_else(|| err(path, "required field is missing"))
}

fn text<'a>(v: &'a Value, path: &str) -> Result<Option<&'a str>, Error> {
    at(v, path)
        .map(|x| {
            x.as_str()
                .ok_or_else(|| err(path, "must be a string"))
                .and_then(|s| {
                    if s.len() > MAX_LABEL_LEN || s.chars().any(char::is_control) {
                        Err(err(
                            path,
                            format!("longer than {MAX_LABEL_LEN} bytes or has control characters"),
                        ))
                    } else {
                        Ok(s)
                    }
                })
        })
        .transpose()
        .map(|s| s.filter(|s| !s.trim().is_empty()))
}

fn severity(v: &Value) -> Result<Severity, Error> {
    Ok(match req_int(v, "severity_id")? {
        // Unknown and Other cannot raise an alarm on their own: map to the lowest.
        0 | 1 | 99 => Severity::Info,
        2 => Severity::Low,
        3 => Severity::Medium,
        4 => Severity::High,
        5 | 6 => Severity::Critical, // 6 Fatal
        n => return Err(err("severity_id", format!("{n} is not an OCSF severity"))),
    })
}

fn ip(v: &Value, path: &str) -> Result<Option<IpAddr>, Error> {
    text(v, path)?
        .map(|s| {
            s.parse::<IpAddr>()
                .map_err(|_| err(path, format!("{s:?} is not an IP address")))
        })
        .transpose()
}

/// `user.uid`, else `user.name` (objects/user.json: at least one of them).
fn user(v: &Value, path: &str) -> Result<Option<String>, Error> {
    Ok(text(v, &format!("{path}.uid"))?
        .or(text(v, &format!("{path}.name"))?)
        .map(str::to_owned))
}

/// Finding keywords → event kind, first match over `finding_info.types`, then
/// `finding_info.title`, then `finding_info.analytic.name` (lower-cased).
const KEYWORDS: [(&str, EventKind); 10] = [
    ("credential stuffing", EventKind::CredentialStuffing),
    ("credential-stuffing", EventKind::CredentialStuffing),
    ("password spray", EventKind::PasswordSpray),
    ("password-spray", EventKind::PasswordSpray),
    ("brute", EventKind::BruteForce),
    ("impossible travel", EventKind::ImpossibleTravel),
    ("takeover", EventKind::AccountTakeover),
    ("token", EventKind::TokenMisuse),
    ("anomalous", EventKind::AnomalousLogin),
    ("unusual sign", EventKind::AnomalousLogin),
];

fn finding_kind(v: &Value) -> Result<EventKind, Error> {
    let mut texts: Vec<String> = Vec::new();
    if let Some(types) = at(v, "finding_info.types") {
        let arr = types
            .as_array()
            .ok_or_else(|| err("finding_info.types", "must be an array of strings"))?;
        for (i, t) in arr.iter().enumerate() {
            let s = t
                .as_str()
                .ok_or_else(|| err(format!("finding_info.types[{i}]"), "must be a string"))?;
            texts.push(s.to_lowercase());
        }
    }
    for path in ["finding_info.title", "finding_info.analytic.name"] {
        if let Some(s) = text(v, path)? {
            texts.push(s.to_lowercase());
        }
    }
    texts
        .iter()
        .find_map(|t| {
            KEYWORDS
                .iter()
                .find(|(k, _)| t.contains(k))
                .map(|(_, kind)| *kind)
        })
        .ok_or_else(|| {
            err(
                "finding_info.types",
                format!("no palisade event kind matches {texts:?} (see the mapping table)"),
            )
        })
}

/// Maps one OCSF event (JSON bytes) to a [`SecurityEvent`], or `None` if it is
/// well-formed but no evidence of an attack. Never panics, whatever the bytes.
///
/// Classes: Authentication (3002) and Detection Finding (2004); anything missing or
/// invalid is an [`Error::Ocsf`] naming the field (a path such as
/// `evidences[0].src_endpoint.ip`). The mapping table, checked against the OCSF schema,
/// is in `docs/playbooks.md`.
pub fn parse_ocsf(bytes: &[u8]) -> Result<Option<SecurityEvent>, Error> {
    if bytes.len() > MAX_OCSF_BYTES {
        return Err(err(
            "(document)",
            format!("{} bytes, more than {MAX_OCSF_BYTES}", bytes.len()),
        ));
    }
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
    parse_ocsf_value(&v)
}

/// Like [`parse_ocsf`], for an already parsed JSON value.
pub fn parse_ocsf_value(v: &Value) -> Result<Option<SecurityEvent>, Error> {
    if !v.is_object() {
        return Err(err("(document)", "an OCSF event is a JSON object"));
    }
    let class = req_int(v, "class_uid")?;
    let category = match class {
        AUTHENTICATION => 3,
        DETECTION_FINDING => 2,
        n => {
            return Err(err(
                "class_uid",
                format!("{n} is not mapped (3002 Authentication and 2004 Detection Finding are)"),
            ));
        }
    };
    if let Some(c) = int(v, "category_uid")?
        && c != category
    {
        return Err(err(
            "category_uid",
            format!("{c} contradicts class_uid {class}"),
        ));
    }
    let activity = req_int(v, "activity_id")?;
    if let Some(t) = int(v, "type_uid")?
        && Some(t) != class.checked_mul(100).and_then(|c| c.checked_add(activity))
    {
        return Err(err(
            "type_uid",
            format!("{t} is not class_uid × 100 + activity_id"),
        ));
    }
    let ms = req_int(v, "time")?;
    let time = ms
        .checked_mul(1_000)
        .map(Timestamp::from_unix_micros)
        .filter(|t| *t != Timestamp::MAX)
        .ok_or_else(|| err("time", format!("{ms} ms is out of range")))?;
    let severity = severity(v)?;

    let mut evidence = vec![("ocsf.class_uid".to_owned(), class.to_string())];
    let (kind, subject, score, fallback_id, basis) = if class == AUTHENTICATION {
        match activity {
            1 | 3 | 4 => {}           // Logon, Authentication Ticket, Service Ticket Request
            2 | 5 => return Ok(None), // Logoff, Service Ticket Renew: no new attempt
            0 | 99 => return Ok(None),
            n => {
                return Err(err(
                    "activity_id",
                    format!("{n} is not an Authentication activity"),
                ));
            }
        }
        // objects/user.json: at least one of account, name, uid; we need name or uid.
        let who = user(v, "user")?;
        if at(v, "user").is_none() {
            return Err(err("user", "required field is missing"));
        }
        let from = ip(v, "src_endpoint.ip")?;
        let status = req_int(v, "status_id")?;
        let (kind, subject) = match status {
            // A failure's actionable subject is the source address (the account is
            // the victim); a suspicious success is about the account.
            2 => (
                EventKind::BruteForce,
                match (from, &who) {
                    (Some(ip), _) => Subject::Ip { ip },
                    (None, Some(u)) => Subject::User { user_id: u.clone() },
                    (None, None) => {
                        return Err(err(
                            "user.uid",
                            "neither src_endpoint.ip nor user.uid/user.name",
                        ));
                    }
                },
            ),
            1 if severity == Severity::Info => return Ok(None), // an ordinary logon
            1 => (
                EventKind::AnomalousLogin,
                match (&who, from) {
                    (Some(u), _) => Subject::User { user_id: u.clone() },
                    (None, Some(ip)) => Subject::Ip { ip },
                    (None, None) => {
                        return Err(err(
                            "user.uid",
                            "neither user.uid/user.name nor src_endpoint.ip",
                        ));
                    }
                },
            ),
            n => {
                return Err(err(
                    "status_id",
                    format!("{n}: the outcome of the logon is unknown"),
                ));
            }
        };
        evidence.push(("ocsf.status_id".into(), status.to_string()));
        if let Some(d) = text(v, "status_detail")? {
            evidence.push(("ocsf.status_detail".into(), d.to_owned()));
        }
        if let Some(u) = &who {
            evidence.push(("ocsf.user".into(), u.clone()));
        }
        if let Some(ip) = from {
            evidence.push(("ocsf.src_endpoint.ip".into(), ip.to_string()));
        }
        // A logon whose credentials were accepted is tied to an authenticated session;
        // a failure is anyone's attempt (composition rule: SecurityEvent::basis).
        let basis = if status == 1 {
            EvidenceBasis::Authenticated
        } else {
            EvidenceBasis::Unauthenticated
        };
        (kind, subject, None, None, basis)
    } else {
        match activity {
            1 | 2 => {}                    // Create, Update
            3 | 0 | 99 => return Ok(None), // Close: the finding is over
            n => return Err(err("activity_id", format!("{n} is not a Finding activity"))),
        }
        if let Some(s) = int(v, "status_id")? {
            match s {
                0..=2 | 99 => {}          // Unknown, New, In Progress, Other
                3..=6 => return Ok(None), // Suppressed, Resolved, Archived, Deleted
                n => return Err(err("status_id", format!("{n} is not a Finding status"))),
            }
        }
        let uid = text(v, "finding_info.uid")?
            .ok_or_else(|| err("finding_info.uid", "required field is missing"))?;
        let kind = finding_kind(v)?;
        let score = match int(v, "confidence_score")? {
            Some(c) if c <= 100 => Some(
                Score::new(c as f64 / 100.0).map_err(|e| err("confidence_score", e.to_string()))?,
            ),
            Some(c) => return Err(err("confidence_score", format!("{c} is not in 0..=100"))),
            None => None,
        };
        // The actor of the detected activity: an address first, else an account.
        let evidences = match at(v, "evidences") {
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(err("evidences", "must be an array")),
            None => &[],
        };
        let mut subject = None;
        for (i, e) in evidences.iter().enumerate() {
            if let Some(ip) =
                ip(e, "src_endpoint.ip").map_err(|x| reroot(x, &format!("evidences[{i}]")))?
            {
                subject = Some(Subject::Ip { ip });
                break;
            }
        }
        if subject.is_none() {
            for (i, e) in evidences.iter().enumerate() {
                let u = user(e, "actor.user")
                    .and_then(|u| match u {
                        Some(u) => Ok(Some(u)),
                        None => user(e, "user"),
                    })
                    .map_err(|x| reroot(x, &format!("evidences[{i}]")))?;
                if let Some(user_id) = u {
                    subject = Some(Subject::User { user_id });
                    break;
                }
            }
        }
        let subject = subject.ok_or_else(|| {
            err(
                "evidences",
                "no evidences[].src_endpoint.ip, evidences[].actor.user or evidences[].user to act on",
            )
        })?;
        evidence.push(("ocsf.finding_info.uid".into(), uid.to_owned()));
        if let Some(t) = text(v, "finding_info.title")? {
            evidence.push(("ocsf.finding_info.title".into(), t.to_owned()));
        }
        // A finding names an actor, but nothing ties it to a session we authenticated:
        // it may step up, block and notify, never end sessions or revoke tokens.
        (
            kind,
            subject,
            score,
            Some(uid),
            EvidenceBasis::Unauthenticated,
        )
    };
    let id = text(v, "metadata.uid")?
        .or(fallback_id)
        .ok_or_else(|| err("metadata.uid", "required to identify the event"))?;
    let id = EventId::new(id).map_err(|e| err("metadata.uid", e.to_string()))?;
    let mut event = SecurityEvent::new(id, time, kind, severity, subject, "ocsf").with_basis(basis);
    if let Some(p) = text(v, "metadata.product.name")? {
        event.source = p.to_owned();
    }
    if let Some(s) = score {
        event = event.with_score(s);
    }
    event.evidence = evidence;
    Ok(Some(event))
}

/// Prefixes a nested field path with where the nested object was.
fn reroot(e: Error, prefix: &str) -> Error {
    match e {
        Error::Ocsf { field, reason } => Error::Ocsf {
            field: format!("{prefix}.{field}"),
            reason,
        },
        other => other,
    }
}
