//! Persisting a log's progress: the trusted tree head and the earliest signature
//! seen of its tree, the compact range of the
//! leaves read so far (confirmed by a signed root only once the range reaches
//! the head's size) and the last range a signed root confirmed.
//! [`FileStateStore`] writes a temporary file, syncs it, renames it over the old
//! one and syncs the directory, so after a crash the file holds either the old
//! or the new progress, never a torn one. A state file that cannot be read back is
//! an error, never "no state": silently starting again from zero would repeat
//! every event.
//!
//! The trait is synchronous (a save is one small file); an async engine calls it
//! from a blocking task.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::merkle::{CompactRange, Hash};
use crate::sth::{DigitallySigned, SignedTreeHead};

/// What a monitor must remember about one log: its persisted state. Serialised
/// with serde as versioned JSON (hashes and the signature in base64), the format of
/// [`FileStateStore`]'s files; deserialising checks the shape (version, hash
/// lengths, ranges not ahead of their head, the earliest head not stamped after
/// the trusted one), and [`crate::LogVerifierBuilder::state`] checks both heads'
/// signatures again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Stored", try_from = "Stored")]
pub struct State {
    /// The last tree head whose signature and consistency were verified.
    pub trusted: SignedTreeHead,
    /// The earliest signed head seen of the trusted tree (its size and root,
    /// stamped no later than `trusted`): a smaller head stamped after it is a
    /// rollback. A file without one (version 1, or version 2 before it was kept)
    /// loads with `trusted` here, as that code measured rollbacks from it.
    pub earliest: SignedTreeHead,
    /// The leaves read so far (never ahead of `trusted`). Leaves short of
    /// `trusted.tree_size` are as the log served them: no signed root has
    /// confirmed them yet; the root check happens when the range reaches that size.
    pub range: CompactRange,
    /// The last range whose root equalled a trusted head's of its size (never
    /// ahead of `range`): where reading starts again when the root check fails on
    /// leaves read before a restart. A version 1 file has none: it loads as the
    /// empty range (entry 0), and [`crate::LogVerifierBuilder::build`] takes
    /// `range` instead when that is at the head's size.
    pub confirmed: CompactRange,
}

/// The version [`State`] is written in; version 1 (no confirmed range) still loads.
const VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    version: u32,
    tree_size: u64,
    timestamp: u64,
    root_hash: String,
    signature: String,
    range_size: u64,
    range_hashes: Vec<String>,
    // Version 2 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirmed_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    confirmed_hashes: Option<Vec<String>>,
    // Version 2, optional: the earliest head's own fields (size and root are the
    // trusted head's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    earliest_timestamp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    earliest_signature: Option<String>,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadState {
        path: None,
        reason: reason.into(),
    }
}

fn hash(s: &str) -> Result<Hash, Error> {
    STANDARD
        .decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad(format!("{s:?} is not base64 of 32 bytes")))
}

fn signature(s: &str) -> Result<DigitallySigned, Error> {
    let bytes = STANDARD
        .decode(s)
        .map_err(|e| bad(format!("signature: {e}")))?;
    DigitallySigned::from_tls(&bytes)
}

fn range(size: u64, hashes: &[String]) -> Result<CompactRange, Error> {
    let hashes = hashes.iter().map(|h| hash(h)).collect::<Result<_, _>>()?;
    CompactRange::from_parts(size, hashes)
}

fn encode(range: &CompactRange) -> Vec<String> {
    range.hashes().iter().map(|h| STANDARD.encode(h)).collect()
}

impl From<State> for Stored {
    fn from(state: State) -> Self {
        Self {
            version: VERSION,
            tree_size: state.trusted.tree_size,
            timestamp: state.trusted.timestamp,
            root_hash: STANDARD.encode(state.trusted.root_hash),
            signature: STANDARD.encode(state.trusted.signature.to_tls()),
            range_size: state.range.size(),
            range_hashes: encode(&state.range),
            confirmed_size: Some(state.confirmed.size()),
            confirmed_hashes: Some(encode(&state.confirmed)),
            earliest_timestamp: Some(state.earliest.timestamp),
            earliest_signature: Some(STANDARD.encode(state.earliest.signature.to_tls())),
        }
    }
}

impl TryFrom<Stored> for State {
    type Error = Error;

    fn try_from(s: Stored) -> Result<Self, Error> {
        let confirmed = match (s.version, s.confirmed_size, &s.confirmed_hashes) {
            // Nothing was confirmed on record: the empty range is (by every head).
            (1, None, None) => CompactRange::new(),
            (VERSION, Some(size), Some(hashes)) => range(size, hashes)?,
            (1, ..) => return Err(bad("version 1 has no confirmed range")),
            (VERSION, ..) => {
                return Err(bad("version 2 needs confirmed_size and confirmed_hashes"));
            }
            (v, ..) => return Err(bad(format!("unknown version {v}"))),
        };
        let trusted = SignedTreeHead {
            tree_size: s.tree_size,
            timestamp: s.timestamp,
            root_hash: hash(&s.root_hash)?,
            signature: signature(&s.signature)?,
        };
        let earliest = match (s.version, s.earliest_timestamp, &s.earliest_signature) {
            (_, None, None) => trusted.clone(),
            (VERSION, Some(timestamp), Some(sig)) => SignedTreeHead {
                timestamp,
                signature: signature(sig)?,
                ..trusted.clone()
            },
            _ => {
                return Err(bad(
                    "earliest_timestamp and earliest_signature go together, in version 2",
                ));
            }
        };
        if earliest.timestamp > trusted.timestamp {
            return Err(bad("the earliest head is stamped after the trusted head"));
        }
        let range = range(s.range_size, &s.range_hashes)?;
        if range.size() > trusted.tree_size {
            return Err(bad("range is ahead of the trusted tree head"));
        }
        if confirmed.size() > range.size() {
            return Err(bad("confirmed range is ahead of the range read"));
        }
        Ok(Self {
            trusted,
            earliest,
            range,
            confirmed,
        })
    }
}

/// Where progress lives between runs.
pub trait StateStore: Send + Sync {
    /// The stored progress of a log, `None` if it was never saved.
    fn load(&self, log_id: &Hash) -> Result<Option<State>, Error>;
    /// Stores progress atomically: afterwards `load` returns it, or, after a crash
    /// during `save`, the previous value.
    fn save(&self, log_id: &Hash, state: &State) -> Result<(), Error>;
}

/// Progress in memory (tests, or services that keep state elsewhere).
#[derive(Debug, Default)]
pub struct MemoryStateStore(Mutex<HashMap<Hash, State>>);

impl StateStore for MemoryStateStore {
    fn load(&self, log_id: &Hash) -> Result<Option<State>, Error> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(log_id)
            .cloned())
    }

    fn save(&self, log_id: &Hash, state: &State) -> Result<(), Error> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*log_id, state.clone());
        Ok(())
    }
}

/// One JSON file per log in a directory, replaced by write-then-rename.
#[derive(Debug, Clone)]
pub struct FileStateStore {
    dir: PathBuf,
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::BadState {
        path: Some(path.to_path_buf()),
        reason: e.to_string(),
    }
}

impl FileStateStore {
    /// Uses (and creates) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        Ok(Self { dir })
    }

    /// The file that holds a log's progress.
    pub fn path(&self, log_id: &Hash) -> PathBuf {
        self.dir.join(format!("{}.json", hex::encode(log_id)))
    }
}

impl StateStore for FileStateStore {
    fn load(&self, log_id: &Hash) -> Result<Option<State>, Error> {
        let path = self.path(log_id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::BadState {
                    path: Some(path),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    fn save(&self, log_id: &Hash, state: &State) -> Result<(), Error> {
        let path = self.path(log_id);
        // Plain integers and strings: serialisation cannot fail.
        let json = serde_json::to_string_pretty(state).unwrap_or_default();
        // Unique per save: two saves of one log in one process (a monitor dropped
        // while saving and its successor) must not share a temporary file.
        static SAVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SAVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("json.tmp-{}-{n}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(json.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err(&path, e)
        })
    }
}
