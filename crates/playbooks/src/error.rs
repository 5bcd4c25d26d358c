//! The crate's one error type.

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
    /// A builder was given a value it cannot work with. The reason never contains a
    /// secret (a notifier's URL or routing key): it describes the value instead.
    #[error("invalid configuration: `{field}`: {reason}")]
    InvalidConfig {
        /// The setting, e.g. `timeout` or `endpoint`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
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
    /// A persisted [`State`](crate::State) could not be parsed.
    #[error("invalid state JSON: {0}")]
    InvalidState(#[source] serde_json::Error),
    /// The audit log is broken at this record.
    #[error("audit record {line}: {reason}")]
    Audit {
        /// 1-based line in the log.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Writing the audit log failed. The [`AuditLog`](crate::AuditLog) then takes no
    /// more records ([`Error::AuditNeedsRepair`]).
    #[error("audit log I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An earlier write to this [`AuditLog`](crate::AuditLog) failed and may have left
    /// part of a record in the log, after which no record would verify: it takes no
    /// more until repaired (verify the log, truncate it to the end of its last
    /// complete line, continue it with [`AuditLog::resume`](crate::AuditLog::resume)).
    #[error(
        "audit log needs repair: writing record {seq} failed; verify the log, truncate it to its last complete line and resume it"
    )]
    AuditNeedsRepair {
        /// The record whose write failed.
        seq: u64,
    },
    /// An OCSF event could not be mapped to a `SecurityEvent`.
    #[error("OCSF event: field `{field}`: {reason}")]
    Ocsf {
        /// The field path, e.g. `src_endpoint.ip`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The receiver refused the notification with a 4xx other than 429; not retried.
    #[error("notifier {endpoint}: refused with HTTP {status}, not retried")]
    NotifyRejected {
        /// `scheme://host[:port]/…`, never the secret path.
        endpoint: String,
        /// The HTTP status.
        status: u16,
    },
    /// The receiver answered `429` with a `Retry-After` longer than the policy's
    /// `max_retry_after`: not retried (core-traits `Refused`), neither by the
    /// notifier nor by the executor. A caller that plans the action again after
    /// `Engine::failed` decides when: `retry_after` is the receiver's wish.
    #[error(
        "notifier {endpoint}: HTTP 429 asking to wait {retry_after:?}, longer than the {max:?} allowed; not retried"
    )]
    NotifyDeferred {
        /// `scheme://host[:port]/…`, never the secret path.
        endpoint: String,
        /// The wait the receiver asked for.
        retry_after: std::time::Duration,
        /// The policy's `max_retry_after`.
        max: std::time::Duration,
    },
    /// Delivery failed after the retries the policy allows.
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

impl Error {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }
}
