//! Append-only, hash-chained JSON-lines audit records in OCSF 1.3.0's Remediation Activity
//! class.
//!
//! Each line is one [`AuditRecord`]: OCSF fields (`category_uid` 7 Remediation,
//! `class_uid` 7001 Remediation Activity, `activity_id`, `type_uid`, `status_id`,
//! `severity_id`, `command_uid`, `metadata`, `time` in ms) plus `unmapped` details. `hash` is hex SHA-256 of the previous record's hash
//! followed by this line serialized with `hash` empty; `seq` counts from 0. [`verify_audit`]
//! recomputes the chain and refuses a log with any edited, dropped, inserted or
//! reordered record. Truncation of the tail is only detected against an anchor kept
//! elsewhere (the last `(seq, hash)` that [`verify_audit`] returns).

use std::io::Write;

use palisade_core_traits::{Severity, Timestamp};
use ring::digest;
use serde::{Deserialize, Serialize};

use crate::plan::{Action, ActionKind, Decision, Plan, Target, Verdict};
use crate::{Error, Outcome};

/// The `prev_hash` of the first record.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit record's details outside the OCSF schema (its `unmapped` object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditDetails {
    /// The event that led to the plan.
    pub event_uid: Option<String>,
    /// The playbook (`None`: manual or revert).
    pub playbook: Option<String>,
    /// The decision id.
    pub decision: Option<u64>,
    /// The action.
    pub action: Option<Action>,
    /// The target.
    pub target: Option<Target>,
    /// The pipeline's verdict.
    pub verdict: Option<Verdict>,
    /// The executor's outcome, if executed.
    pub outcome: Option<Outcome>,
}

/// The OCSF schema version the records follow: 1.3.0 added the Remediation category.
pub const AUDIT_OCSF_VERSION: &str = "1.3.0";

/// OCSF `metadata`: the schema version and the product that wrote the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditMetadata {
    /// The OCSF schema version ([`AUDIT_OCSF_VERSION`]).
    pub version: String,
    /// The writer.
    pub product: AuditProduct,
}

/// OCSF `product`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditProduct {
    /// `palisade-playbooks`.
    pub name: String,
    /// `Palisade` (required by OCSF 1.3.0, optional later).
    pub vendor_name: String,
    /// The crate version that wrote the record.
    pub version: String,
}

impl AuditMetadata {
    fn ours() -> Self {
        AuditMetadata {
            version: AUDIT_OCSF_VERSION.to_owned(),
            product: AuditProduct {
                name: env!("CARGO_PKG_NAME").to_owned(),
                vendor_name: "Palisade".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
        }
    }
}

/// One audit line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuditRecord {
    /// Position in the log, from 0.
    pub seq: u64,
    /// OCSF `time`: ms since the epoch.
    pub time: u64,
    /// OCSF category: 7, Remediation.
    pub category_uid: u32,
    /// OCSF class: 7001, Remediation Activity.
    pub class_uid: u32,
    /// OCSF activity: 1 Isolate, 2 Evict, 3 Restore, 4 Harden, 99 Other.
    pub activity_id: u32,
    /// `class_uid * 100 + activity_id`.
    pub type_uid: u32,
    /// OCSF status: 0 Unknown, 1 Success, 2 Failure, 99 Other (suppressed, dry-run, pending).
    pub status_id: u32,
    /// OCSF severity: a notification's severity (1 Informational … 5 Critical); every
    /// other record is 1 Informational (a record of what we did, not a finding).
    pub severity_id: u32,
    /// OCSF `command_uid`: `decision-<id>` for a step that created or met a decision,
    /// `decision-<id>-expiry` for its expiry, `record-<seq>` for a record without one.
    pub command_uid: String,
    /// One line for a human (the pipeline's explanation).
    pub message: String,
    /// OCSF `metadata`.
    pub metadata: AuditMetadata,
    /// Everything else.
    pub unmapped: AuditDetails,
    /// The previous record's `hash`, [`AUDIT_GENESIS`] for the first.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

fn activity(kind: Option<ActionKind>) -> u32 {
    match kind {
        Some(ActionKind::BlockIp) => 1,
        Some(
            ActionKind::RevokeUserTokens | ActionKind::RevokeToken | ActionKind::TerminateSessions,
        ) => 2,
        Some(ActionKind::RequireStepUp) => 4,
        Some(ActionKind::Notify) | None => 99,
    }
}

fn severity(action: Option<&Action>) -> u32 {
    match action {
        Some(Action::Notify { severity, .. }) => match severity {
            Severity::Info => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        },
        _ => 1,
    }
}

fn status(verdict: Option<Verdict>, outcome: Option<&Outcome>) -> u32 {
    match (verdict, outcome) {
        (_, Some(Outcome::Applied { .. })) => 1,
        (_, Some(Outcome::Failed { .. } | Outcome::NoResponder)) => 2,
        (_, Some(Outcome::Unknown { .. })) => 0,
        _ => 99,
    }
}

impl AuditRecord {
    fn hash_of(&self) -> String {
        let mut unhashed = self.clone();
        unhashed.hash = String::new();
        let body = serde_json::to_vec(&unhashed)
            .unwrap_or_else(|e| unreachable!("audit record serializes: {e}"));
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(self.prev_hash.as_bytes());
        ctx.update(&body);
        hex::encode(ctx.finish().as_ref())
    }

    /// The canonical line (without the newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("audit record serializes: {e}"))
    }

    /// Parses one line strictly (unknown fields refused); does not check its hash (see
    /// [`verify_audit`]). Never panics, whatever the bytes.
    pub fn from_line(line: &[u8]) -> Result<AuditRecord, Error> {
        serde_json::from_slice(line).map_err(|e| Error::Audit {
            line: 0,
            reason: format!("not an audit record: {e}"),
        })
    }
}

/// Checks a whole audit log: every record canonical, `seq` from 0 without a gap, each
/// `prev_hash` the previous record's hash, each hash right. Returns the number of records
/// and the last hash: the anchor to keep elsewhere, since dropping the last records is
/// only detectable against it.
pub fn verify_audit(log: &str) -> Result<(u64, String), Error> {
    verify_audit_from(log.as_bytes())
}

/// The longest audit line [`verify_audit_from`] reads (a record is about 1 KiB).
pub const MAX_AUDIT_LINE: usize = 1 << 20;

/// [`verify_audit`] over a reader, a line at a time: a log of any size is checked in
/// the memory of one line (lines over [`MAX_AUDIT_LINE`] are refused).
pub fn verify_audit_from(mut log: impl std::io::BufRead) -> Result<(u64, String), Error> {
    use std::io::{BufRead, Read};
    let mut prev = AUDIT_GENESIS.to_owned();
    let mut n = 0u64;
    let mut buf = Vec::new();
    for i in 1.. {
        buf.clear();
        let read = (&mut log)
            .take(MAX_AUDIT_LINE as u64 + 2)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        let bad = |reason: String| Error::Audit { line: i, reason };
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > MAX_AUDIT_LINE {
            return Err(bad(format!("longer than {MAX_AUDIT_LINE} bytes")));
        }
        let line = std::str::from_utf8(line).map_err(|_| bad("not UTF-8".into()))?;
        let rec = AuditRecord::from_line(line.as_bytes()).map_err(|e| bad(e.to_string()))?;
        if rec.seq != n {
            return Err(bad(format!(
                "seq {} where {n} was expected (dropped or reordered)",
                rec.seq
            )));
        }
        if rec.prev_hash != prev {
            return Err(bad("prev_hash does not match the previous record".into()));
        }
        if rec.to_line() != line {
            return Err(bad("not in canonical form (edited)".into()));
        }
        if rec.hash_of() != rec.hash {
            return Err(bad("hash mismatch (edited)".into()));
        }
        prev = rec.hash;
        n += 1;
    }
    Ok((n, prev))
}

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum About {
    /// A plan step or an ignored event.
    Plan,
    /// A decision's expiry with nothing to undo.
    Expiry,
    /// An expiry that unblocked an address (OCSF activity Restore).
    Restore,
}

/// Appends hash-chained audit records, one JSON line each, in OCSF 1.3.0's Remediation
/// Activity class, to a writer (a file opened for append, typically).
///
/// Each line is one [`AuditRecord`]: OCSF fields (`category_uid` 7 Remediation,
/// `class_uid` 7001 Remediation Activity, `activity_id`, `type_uid`, `status_id`,
/// `severity_id`, `command_uid`, `metadata`, `time` in ms) plus `unmapped` details.
/// `hash` is hex SHA-256 of the previous record's hash followed by this line serialized
/// with `hash` empty; `seq` counts from 0. [`verify_audit`] recomputes the chain and
/// refuses a log with any edited, dropped, inserted or reordered record. Truncation of
/// the tail is only detected against an anchor kept elsewhere (the last hash
/// [`verify_audit`] returns).
///
/// A write or flush that fails ([`Error::Io`]) may leave part of a record in the log,
/// so the log then takes no more records ([`Error::AuditNeedsRepair`]) instead of
/// writing records that would never verify. To repair it: [`verify_audit`] the file,
/// which stops at the partial last line; truncate the file to the end of its last
/// complete line (an error on any earlier line is not a failed write: investigate);
/// verify again and continue with [`AuditLog::resume`] and the `(count, last_hash)`
/// it returns.
#[derive(Debug)]
pub struct AuditLog<W: Write> {
    out: W,
    seq: u64,
    prev: String,
    /// A write failed: the log may end in part of a record.
    poisoned: bool,
}

impl<W: Write> AuditLog<W> {
    /// A new, empty log.
    pub fn new(out: W) -> Self {
        AuditLog {
            out,
            seq: 0,
            prev: AUDIT_GENESIS.to_owned(),
            poisoned: false,
        }
    }

    /// Continues a log for which [`verify_audit`] returned `(count, last_hash)`.
    pub fn resume(out: W, count: u64, last_hash: String) -> Self {
        AuditLog {
            out,
            seq: count,
            prev: last_hash,
            poisoned: false,
        }
    }

    /// The writer.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    fn append(
        &mut self,
        time: Timestamp,
        message: String,
        d: AuditDetails,
        about: About,
    ) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::AuditNeedsRepair { seq: self.seq });
        }
        let activity_id = if about == About::Restore {
            3
        } else {
            activity(d.action.as_ref().map(Action::kind))
        };
        let mut rec = AuditRecord {
            seq: self.seq,
            time: time.as_unix_micros() / 1000,
            category_uid: 7,
            class_uid: 7001,
            activity_id,
            type_uid: 7001 * 100 + activity_id,
            status_id: status(d.verdict, d.outcome.as_ref()),
            severity_id: severity(d.action.as_ref()),
            command_uid: match (d.decision, about) {
                (Some(id), About::Plan) => format!("decision-{id}"),
                (Some(id), About::Expiry | About::Restore) => format!("decision-{id}-expiry"),
                (None, _) => format!("record-{}", self.seq),
            },
            message,
            metadata: AuditMetadata::ours(),
            unmapped: d,
            prev_hash: self.prev.clone(),
            hash: String::new(),
        };
        rec.hash = rec.hash_of();
        let mut line = rec.to_line();
        line.push('\n');
        // Whatever part of the line reached the writer stays there: the next record
        // would not chain onto it.
        if let Err(e) = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.flush())
        {
            self.poisoned = true;
            return Err(Error::Io(e));
        }
        self.seq += 1;
        self.prev = rec.hash;
        Ok(())
    }

    /// Records every step of a plan (executed, dry-run, pending or suppressed) with
    /// its outcome, or one record if the event was ignored.
    pub fn record_plan(&mut self, plan: &Plan, outcomes: &[(u64, Outcome)]) -> Result<(), Error> {
        let event_uid = plan.event.as_ref().map(|e| e.to_string());
        if let Some(reason) = &plan.ignored {
            return self.append(
                plan.time,
                format!("event ignored: {reason}"),
                AuditDetails {
                    event_uid,
                    playbook: None,
                    decision: None,
                    action: None,
                    target: None,
                    verdict: None,
                    outcome: None,
                },
                About::Plan,
            );
        }
        for s in &plan.steps {
            let outcome = s
                .decision
                .and_then(|id| outcomes.iter().find(|(d, _)| *d == id))
                .map(|(_, o)| o.clone());
            self.append(
                plan.time,
                s.why.to_string(),
                AuditDetails {
                    event_uid: event_uid.clone(),
                    playbook: s.playbook.as_deref().map(str::to_owned),
                    decision: s.decision,
                    action: Some(s.action.clone()),
                    target: Some(s.target.clone()),
                    verdict: Some(s.verdict),
                    outcome,
                },
                About::Plan,
            )?;
        }
        Ok(())
    }

    /// Records an expiry (and its revert outcome, if a revert was needed).
    pub fn record_expiry(
        &mut self,
        now: Timestamp,
        d: &Decision,
        outcome: Option<Outcome>,
    ) -> Result<(), Error> {
        // Unblocking is a Restore; resolving a notification is not a remediation (Other).
        let about = if outcome.is_some() && matches!(d.action, Action::BlockIp { .. }) {
            About::Restore
        } else {
            About::Expiry
        };
        let message = format!(
            "decision {} expired{}",
            d.id,
            match (&outcome, about) {
                (Some(_), About::Restore) => ", reverted",
                (Some(_), _) => ", resolved",
                (None, _) => "",
            }
        );
        let details = AuditDetails {
            event_uid: None,
            playbook: d.playbook.as_deref().map(str::to_owned),
            decision: Some(d.id),
            action: Some(d.action.clone()),
            target: Some(d.target.clone()),
            verdict: None,
            outcome,
        };
        self.append(now, message, details, about)
    }
}

#[cfg(test)]
mod tests;
