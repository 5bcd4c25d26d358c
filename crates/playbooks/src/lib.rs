#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod audit;
mod definition;
mod engine;
mod error;
mod executor;
#[cfg(feature = "http")]
mod notify;
mod ocsf;
mod plan;
mod stats;

pub use audit::{
    AUDIT_GENESIS, AUDIT_OCSF_VERSION, AuditDetails, AuditLog, AuditMetadata, AuditProduct,
    AuditRecord, MAX_AUDIT_LINE, verify_audit, verify_audit_from,
};
pub use definition::{
    ActionDef, AllowlistDef, DEFAULT_PLAYBOOKS, Definition, EngineSettings, Escalation, GroupBy,
    Mode, Playbook, Span, SubjectType,
};
pub use engine::{BanHistory, ENFORCEMENT_EVIDENCE, Engine, State};
pub use error::Error;
pub use executor::{Executor, ExecutorBuilder, Outcome};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use notify::{HttpNotifier, HttpNotifierBuilder, PAGERDUTY_EVENTS_URL, RetryPolicy};
pub use ocsf::{MAX_OCSF_BYTES, parse_ocsf, parse_ocsf_value};
pub use plan::{
    Action, ActionKind, Decision, Note, Origin, Plan, Resolution, Step, Suppression, Target,
    Verdict, Why,
};
pub use stats::{EngineStats, ExecutorStats, OutcomeCounts};

/// Entry points of the cargo-fuzz targets in `fuzz/`, one per target, also replayed on
/// stable by `tests/fuzz_corpus.rs`.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
