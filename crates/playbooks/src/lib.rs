#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod audit;
mod definition;
mod engine;
mod executor;

pub use definition::{
    ActionDef, AllowlistDef, DEFAULT_PLAYBOOKS, Definition, EngineSettings, Escalation, GroupBy,
    Mode, Network, Playbook, Span, SubjectType,
};
pub use engine::{
    Action, ActionKind, Decision, ENFORCEMENT_EVIDENCE, Engine, Plan, Snapshot, Step, Suppression,
    Target, Verdict,
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
}

/// Parses a definition from arbitrary bytes (the fuzz entry point). Never panics.
pub fn fuzz_definition(bytes: &[u8]) {
    if let Ok(s) = std::str::from_utf8(bytes)
        && let Ok(def) = Definition::from_toml("fuzz", s)
    {
        let _ = Engine::new(def);
    }
}
