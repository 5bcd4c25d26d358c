#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod audit;
mod definition;
mod engine;
mod executor;
#[cfg(feature = "http")]
pub mod notify;
pub mod ocsf;

pub use definition::{
    ActionDef, AllowlistDef, DEFAULT_PLAYBOOKS, Definition, EngineSettings, Escalation, GroupBy,
    Mode, Playbook, Span, SubjectType,
};
pub use engine::{
    Action, ActionKind, Decision, ENFORCEMENT_EVIDENCE, Engine, Note, Origin, Plan, Resolution,
    Snapshot, Step, Suppression, Target, Verdict, Why,
};
pub use executor::{Executor, Outcome, Responders};

use palisade_core_traits::Timestamp;

/// What went wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A playbook definition was refused.
    #[error("{origin}:{line}:{column}: {message}")]
    Definition {
        /// The file (or other origin) name.
        origin: String,
        /// 1-based line (0 if unknown).
        line: usize,
        /// 1-based column (0 if unknown).
        column: usize,
        /// What was wrong, naming the field.
        message: String,
    },
    /// No decision with this id awaits approval.
    #[error("no decision {0} awaits approval")]
    UnknownDecision(u64),
    /// The approval came too late.
    #[error("decision {id}: approval deadline {deadline} has passed")]
    ApprovalExpired {
        /// The decision.
        id: u64,
        /// Its deadline.
        deadline: Timestamp,
    },
    /// A snapshot could not be parsed.
    #[error("invalid snapshot JSON: {0}")]
    Snapshot(#[source] serde_json::Error),
    /// The audit log is broken at this record.
    #[error("audit record {line}: {reason}")]
    Audit {
        /// 1-based line in the log.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Writing the audit log failed.
    #[error("audit log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An OCSF event could not be mapped to a `SecurityEvent`.
    #[error("OCSF event: field `{field}`: {reason}")]
    Ocsf {
        /// The field path, e.g. `src_endpoint.ip`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A notifier was configured wrongly (the message never contains the URL or key).
    #[error("notifier configuration: {0}")]
    NotifierConfig(String),
    /// The receiver refused the notification with a 4xx other than 429; not retried.
    #[error("notifier {endpoint}: refused with HTTP {status}, not retried")]
    NotifyRejected {
        /// `scheme://host[:port]/…`, never the secret path.
        endpoint: String,
        /// The HTTP status.
        status: u16,
    },
    /// Delivery failed after the retries the policy allows (or a `Retry-After` too long).
    #[error("notifier {endpoint}: gave up after {attempts} attempt(s): {reason}")]
    NotifyGaveUp {
        /// `scheme://host[:port]/…`, never the secret path.
        endpoint: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// A request timed out after it was sent: it may have been delivered; not retried.
    #[error("notifier {endpoint}: no response within {after:?}; delivery unknown")]
    NotifyTimeout {
        /// `scheme://host[:port]/…`, never the secret path.
        endpoint: String,
        /// The per-request timeout.
        after: std::time::Duration,
    },
}

/// Parses a definition from arbitrary bytes (the fuzz entry point). Never panics.
pub fn fuzz_definition(bytes: &[u8]) {
    if let Ok(s) = std::str::from_utf8(bytes)
        && let Ok(def) = Definition::from_toml("fuzz", s)
    {
        let _ = Engine::new(def);
    }
}

/// Maps an OCSF event from arbitrary bytes (the fuzz entry point). Never panics.
pub fn fuzz_ocsf(bytes: &[u8]) {
    if let Ok(Some(event)) = ocsf::parse(bytes) {
        // Whatever the adapter accepts must be a valid SecurityEvent.
        let json = event.to_json();
        let back = palisade_core_traits::SecurityEvent::from_json(json.as_bytes());
        assert!(back.is_ok(), "adapter produced an invalid event: {json}");
    }
}
