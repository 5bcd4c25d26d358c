//! Chrome / Apple v3 log lists (`log_list.json`): RFC 6962 `logs` and static-ct
//! `tiled_logs`, their states (a read-only log carries its final tree head) and
//! temporal intervals; and a log's own `log.v3.json` (one log, no operators, with
//! `status` and a top-level `final_tree_head`). One bad log does not sink the list:
//! it is reported in [`LogList::problems`] and left out. Every log keeps its JSON
//! object verbatim ([`LogInfo::json`]); what could not be applied is reported.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use palisade_core_traits::Timestamp;
use serde::Deserialize;

use crate::error::Error;
use crate::merkle::Hash;
use crate::sth::LogKey;

/// How a log is read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogProtocol {
    /// RFC 6962 (`get-sth`, `get-entries`, …) under this URL.
    Rfc6962 {
        /// Base URL.
        url: String,
    },
    /// static-ct-api: checkpoint and tiles under the monitoring prefix.
    StaticCt {
        /// Submission prefix.
        submission_url: String,
        /// Monitoring prefix (checkpoint, tiles, issuers).
        monitoring_url: String,
    },
}

/// A log's state in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogState {
    /// Pending inclusion.
    Pending,
    /// Qualified.
    Qualified,
    /// Usable.
    Usable,
    /// Read-only: the log is frozen at this tree head.
    ReadOnly {
        /// Final tree size.
        tree_size: u64,
        /// Final root hash.
        root_hash: Hash,
    },
    /// Retired.
    Retired,
    /// Rejected.
    Rejected,
    /// The entry has no state.
    Unspecified,
}

/// One log from the list.
#[derive(Debug, Clone)]
pub struct LogInfo {
    /// Operator name.
    pub operator: String,
    /// Human description.
    pub description: String,
    /// Its key (the LogID is checked against it).
    pub key: LogKey,
    /// Protocol and URLs.
    pub protocol: LogProtocol,
    /// Maximum merge delay, seconds.
    pub mmd: u64,
    /// State.
    pub state: LogState,
    /// When the state was entered.
    pub state_since: Option<Timestamp>,
    /// Certificates expiring in `[start, end)` are accepted, if the list says so.
    pub temporal_interval: Option<(Timestamp, Timestamp)>,
    /// Earlier operators and the last time each operated the log (`previous_operators`).
    pub previous_operators: Vec<(String, Timestamp)>,
    /// The log's JSON object as given, every field kept (including those this type
    /// does not interpret, e.g. `log_type`, `friendly_name`, `log_software`).
    pub json: serde_json::Map<String, serde_json::Value>,
}

/// A parsed log list.
#[derive(Debug, Clone)]
pub struct LogList {
    /// The list's `version`.
    pub version: Option<String>,
    /// Usable entries (any state), in list order: `logs` then `tiled_logs` per operator.
    pub logs: Vec<LogInfo>,
    /// Entries left out, with why.
    pub problems: Vec<String>,
}

type Object = serde_json::Map<String, serde_json::Value>;

#[derive(Deserialize)]
struct RawList {
    version: Option<String>,
    operators: Vec<RawOperator>,
}

#[derive(Deserialize)]
struct RawOperator {
    name: String,
    #[serde(default)]
    logs: Vec<Object>,
    #[serde(default)]
    tiled_logs: Vec<Object>,
}

#[derive(Deserialize)]
struct RawLog {
    description: String,
    log_id: String,
    key: String,
    url: Option<String>,
    submission_url: Option<String>,
    monitoring_url: Option<String>,
    mmd: u64,
    state: Option<Object>,
    temporal_interval: Option<RawInterval>,
    #[serde(default)]
    previous_operators: Vec<RawPreviousOperator>,
    // The per-log `log.v3.json` form (sunlight, static-ct logs).
    status: Option<String>,
    status_timestamp: Option<String>,
    final_tree_head: Option<RawTreeHead>,
}

#[derive(Deserialize)]
struct RawPreviousOperator {
    name: String,
    end_time: String,
}

#[derive(Deserialize)]
struct RawInterval {
    start_inclusive: String,
    end_exclusive: String,
}

#[derive(Deserialize)]
struct RawStateBody {
    timestamp: Option<String>,
    final_tree_head: Option<RawTreeHead>,
}

#[derive(Deserialize)]
struct RawTreeHead {
    sha256_root_hash: String,
    tree_size: u64,
}

fn time(s: &str) -> Result<Timestamp, String> {
    let t = humantime::parse_rfc3339(s).map_err(|e| format!("time {s:?}: {e}"))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("time {s:?} before 1970"))?;
    u64::try_from(d.as_nanos())
        .map(Timestamp::from_unix_nanos)
        .map_err(|_| format!("time {s:?} out of range"))
}

fn read_only(head: RawTreeHead) -> Result<LogState, String> {
    let root_hash: Hash = STANDARD
        .decode(&head.sha256_root_hash)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or("final_tree_head root is not base64 of 32 bytes")?;
    Ok(LogState::ReadOnly {
        tree_size: head.tree_size,
        root_hash,
    })
}

/// The per-log form: `status` (`active`, `readonly`, `inactive`), `status_timestamp`
/// and a top-level `final_tree_head`. Returns what cannot be applied as notes.
fn status(
    status: &str,
    since: Option<&str>,
    head: Option<RawTreeHead>,
    notes: &mut Vec<String>,
) -> Result<(LogState, Option<Timestamp>), String> {
    let since = since.map(time).transpose()?;
    let state = match (status, head) {
        ("readonly", Some(head)) => read_only(head)?,
        ("readonly", None) => return Err("status readonly without final_tree_head".into()),
        (other, head) => {
            if other != "active" {
                notes.push(format!(
                    "status {other:?} has no v3 log-list state: state left unspecified"
                ));
            }
            if head.is_some() {
                notes.push(format!(
                    "final_tree_head of a log whose status is {other:?}: not applied"
                ));
            }
            LogState::Unspecified
        }
    };
    Ok((state, since))
}

fn state(raw: Option<Object>) -> Result<(LogState, Option<Timestamp>), String> {
    let Some(map) = raw else {
        return Ok((LogState::Unspecified, None));
    };
    let mut it = map.into_iter();
    let (Some((name, body)), None) = (it.next(), it.next()) else {
        return Err("state must have exactly one key".into());
    };
    let body: RawStateBody =
        serde_json::from_value(body).map_err(|e| format!("state {name}: {e}"))?;
    let since = body.timestamp.as_deref().map(time).transpose()?;
    let st = match name.as_str() {
        "pending" => LogState::Pending,
        "qualified" => LogState::Qualified,
        "usable" => LogState::Usable,
        "retired" => LogState::Retired,
        "rejected" => LogState::Rejected,
        "readonly" => read_only(
            body.final_tree_head
                .ok_or("readonly without final_tree_head")?,
        )?,
        other => return Err(format!("unknown state {other:?}")),
    };
    Ok((st, since))
}

fn log(
    operator: &str,
    json: Object,
    tiled: bool,
    notes: &mut Vec<String>,
) -> Result<LogInfo, String> {
    let raw: RawLog = serde_json::from_value(serde_json::Value::Object(json.clone()))
        .map_err(|e| e.to_string())?;
    let der = STANDARD
        .decode(&raw.key)
        .map_err(|e| format!("key is not base64: {e}"))?;
    let key = LogKey::from_spki_der(&der).map_err(|e| e.to_string())?;
    let id = STANDARD
        .decode(&raw.log_id)
        .map_err(|e| format!("log_id is not base64: {e}"))?;
    if id != key.log_id() {
        return Err("log_id is not SHA-256 of the key".into());
    }
    let protocol = if tiled {
        LogProtocol::StaticCt {
            submission_url: raw
                .submission_url
                .ok_or("tiled log without submission_url")?,
            monitoring_url: raw
                .monitoring_url
                .ok_or("tiled log without monitoring_url")?,
        }
    } else {
        LogProtocol::Rfc6962 {
            url: raw.url.ok_or("log without url")?,
        }
    };
    let (state, state_since) = match (raw.state, raw.status) {
        (Some(st), status) => {
            if status.is_some() || raw.final_tree_head.is_some() {
                notes.push("both state and status/final_tree_head: state applied".into());
            }
            state(Some(st))?
        }
        (None, Some(st)) => status(
            &st,
            raw.status_timestamp.as_deref(),
            raw.final_tree_head,
            notes,
        )?,
        (None, None) => state(None)?,
    };
    let previous_operators = raw
        .previous_operators
        .into_iter()
        .map(|p| Ok::<_, String>((p.name, time(&p.end_time)?)))
        .collect::<Result<_, _>>()?;
    let temporal_interval = raw
        .temporal_interval
        .map(|i| Ok::<_, String>((time(&i.start_inclusive)?, time(&i.end_exclusive)?)))
        .transpose()?;
    Ok(LogInfo {
        operator: operator.to_string(),
        description: raw.description,
        key,
        protocol,
        mmd: raw.mmd,
        state,
        state_since,
        temporal_interval,
        previous_operators,
        json,
    })
}

impl LogList {
    /// Parses a v3 log list, or a single log's own `log.v3.json` (an object with
    /// `log_id` and `key` and no `operators`), which becomes a list of one log with
    /// an empty operator. Fails only if the document is neither.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        let doc: Object =
            serde_json::from_slice(json).map_err(|e| Error::BadLogList(e.to_string()))?;
        if !doc.contains_key("operators") && doc.contains_key("log_id") {
            return Ok(Self::from_log_object(doc));
        }
        let raw: RawList = serde_json::from_value(serde_json::Value::Object(doc))
            .map_err(|e| Error::BadLogList(e.to_string()))?;
        let mut logs = Vec::new();
        let mut problems = Vec::new();
        for op in raw.operators {
            let all = op
                .logs
                .into_iter()
                .map(|l| (l, false))
                .chain(op.tiled_logs.into_iter().map(|l| (l, true)));
            for (l, tiled) in all {
                let description = description(&l);
                let mut notes = Vec::new();
                match log(&op.name, l, tiled, &mut notes) {
                    Ok(info) => logs.push(info),
                    Err(why) => problems.push(format!("{}: {description}: {why}", op.name)),
                }
                for n in notes {
                    problems.push(format!("{}: {description}: {n}", op.name));
                }
            }
        }
        Ok(Self {
            version: raw.version,
            logs,
            problems,
        })
    }

    fn from_log_object(doc: Object) -> Self {
        let description = description(&doc);
        let tiled = doc.contains_key("monitoring_url");
        let mut problems = vec![format!(
            "{description}: a single log's JSON names no operator: operator left empty"
        )];
        let mut notes = Vec::new();
        let logs = match log("", doc, tiled, &mut notes) {
            Ok(info) => vec![info],
            Err(why) => {
                problems.push(format!("{description}: {why}"));
                Vec::new()
            }
        };
        problems.extend(notes.into_iter().map(|n| format!("{description}: {n}")));
        Self {
            version: None,
            logs,
            problems,
        }
    }
}

fn description(log: &Object) -> String {
    log.get("description")
        .and_then(|d| d.as_str())
        .unwrap_or("(no description)")
        .to_string()
}
