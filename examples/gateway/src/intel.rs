//! Threat-intelligence deny lists: CIDR list files (one address or block per line,
//! `#` comments) and CrowdSec decision-stream documents (`GET /v1/decisions/stream`:
//! `{"new": [...], "deleted": [...]}`, `scope` `Ip` or `Range`, `type` `ban`),
//! reloaded when a file changes. A file that stops parsing keeps the previous list in
//! force (and the error is logged): a typo must not lift every block, nor must a CIDR
//! list caught empty while it is rewritten (an empty list on purpose holds a `#`
//! comment). Replace files by renaming a complete one over them: a list read half
//! written is loaded as it is, until the next change.
//!
//! A CrowdSec file is read as the stream is meant to be, like a bouncer (several
//! documents one after the other are applied in order; each ban lasts its
//! `duration`; the decisions are kept across restarts in the state directory): each
//! document is a change to what the file's earlier documents set up (the first, with
//! `startup=true`, lists every decision; later ones add `new` and remove `deleted`;
//! "nothing changed" is `{"new": null, "deleted": null}`). Its `deleted` entries
//! remove only that file's own decisions, never another list's.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use palisade_core_traits::{IpNetwork, canonical_ip};
use serde::Deserialize;

/// What went wrong reading a list.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line of a CIDR list is not an address or block.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// A CIDR list file holds nothing, not even a comment: most likely caught while
    /// it is rewritten in place (truncated, then written).
    #[error("{path}: empty; to clear the list on purpose, leave a `#` comment in it")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A CrowdSec document is not valid.
    #[error("{path}: CrowdSec decisions: {reason}")]
    CrowdSec {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Blocks grouped by prefix length: a lookup masks the address once per length.
#[derive(Debug, Default, Clone)]
pub struct DenyList {
    hosts: HashSet<IpAddr>,
    /// (is IPv4, prefix) → block addresses (as their `IpNetwork`).
    blocks: HashMap<(bool, u8), HashSet<IpNetwork>>,
    /// Where each entry came from, for the dashboard (list name per block).
    names: HashMap<IpNetwork, Arc<str>>,
}

impl DenyList {
    fn add(&mut self, net: IpNetwork, list: &Arc<str>) {
        let full = if net.addr().is_ipv4() { 32 } else { 128 };
        if net.prefix() == full {
            self.hosts.insert(net.addr());
        } else {
            (self.blocks.entry((net.addr().is_ipv4(), net.prefix())))
                .or_default()
                .insert(net);
        }
        self.names.entry(net).or_insert_with(|| list.clone());
    }

    /// The list that denies `ip` (made canonical), if any.
    pub fn matches(&self, ip: IpAddr) -> Option<&str> {
        let ip = canonical_ip(ip);
        if self.hosts.contains(&ip) {
            return self.names.get(&IpNetwork::host(ip)).map(|s| &**s);
        }
        for ((v4, prefix), set) in &self.blocks {
            if *v4 != ip.is_ipv4() {
                continue;
            }
            let Ok(net) = IpNetwork::new(mask(ip, *prefix), *prefix) else {
                continue;
            };
            if set.contains(&net) {
                return self.names.get(&net).map(|s| &**s);
            }
        }
        None
    }

    /// Entries in the list.
    pub fn len(&self) -> usize {
        self.hosts.len() + self.blocks.values().map(HashSet::len).sum::<usize>()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// Parses a CIDR list: one address or block per line; blank lines and `#` comments
/// ignored. Every bad line is an error naming it, and so is a file of nothing but
/// white space ([`Error::Empty`]): a file being rewritten in place is empty for a
/// moment, and loading that would lift every block.
pub fn parse_cidr_list(path: &Path, text: &str) -> Result<Vec<IpNetwork>, Error> {
    if text.trim().is_empty() {
        return Err(Error::Empty {
            path: path.to_owned(),
        });
    }
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let net = line.parse::<IpNetwork>().map_err(|e| Error::Line {
            path: path.to_owned(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        out.push(net);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
struct Decision {
    scope: String,
    value: String,
    #[serde(rename = "type")]
    kind: String,
    /// How long it lasts from now, as Go prints a duration (`3h59m55.1s`; negative:
    /// over).
    #[serde(default)]
    duration: Option<String>,
}

/// A Go duration (`1h30m`, `59m55.5s`, `300ms`): `None` for a negative one (over),
/// `Err` for text that is not one.
fn go_duration(text: &str) -> Result<Option<Duration>, String> {
    if text.starts_with('-') {
        return Ok(None);
    }
    let bad = || format!("duration {text:?} is not a Go duration");
    let (mut rest, mut secs) = (text.strip_prefix('+').unwrap_or(text), 0f64);
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        secs += value * scale;
        rest = &rest[u..];
    }
    Duration::try_from_secs_f64(secs)
        .map(Some)
        .map_err(|_| bad())
}

#[derive(Debug, Deserialize)]
struct Stream {
    #[serde(default)]
    new: Option<Vec<Decision>>,
    #[serde(default)]
    deleted: Option<Vec<Decision>>,
}

/// A CrowdSec file's changes: blocks added (with how long they last; `None`: no
/// duration given, until deleted) and blocks deleted.
pub type Changes = (HashMap<IpNetwork, Option<Duration>>, HashSet<IpNetwork>);

/// Parses CrowdSec decision-stream documents, one or several one after the other (a
/// writer may append each answer of the stream), into their changes, applied in order.
/// Only `ban` decisions of scope `Ip` or `Range` are used (others: `captcha`,
/// `Country`, `AS`, are not address blocks); a malformed value or duration in them is
/// an error; a decision whose duration is over is a deletion.
pub fn parse_crowdsec(path: &Path, bytes: &[u8]) -> Result<Changes, Error> {
    let err = |reason: String| Error::CrowdSec {
        path: path.to_owned(),
        reason,
    };
    let (mut added, mut deleted): Changes = Default::default();
    let mut documents = 0;
    for value in serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| err(e.to_string()))?;
        if !value.is_object() {
            return Err(err(
                "the document must be an object with `new` and `deleted`".into(),
            ));
        }
        documents += 1;
        let stream: Stream = serde_json::from_value(value).map_err(|e| err(e.to_string()))?;
        let blocks = |list: Option<Vec<Decision>>| {
            (list.unwrap_or_default().into_iter())
                .filter(|d| d.kind.eq_ignore_ascii_case("ban"))
                .filter(|d| matches!(d.scope.to_ascii_lowercase().as_str(), "ip" | "range"))
                .map(|d| {
                    let net = (d.value.parse::<IpNetwork>())
                        .map_err(|e| err(format!("{:?}: {e}", d.value)))?;
                    let lasts = match d.duration.as_deref() {
                        None => Some(None),
                        Some(text) => go_duration(text).map_err(err)?.map(Some),
                    };
                    Ok((net, lasts))
                })
                .collect::<Result<Vec<_>, Error>>()
        };
        for (net, _) in blocks(stream.deleted)? {
            added.remove(&net);
            deleted.insert(net);
        }
        for (net, lasts) in blocks(stream.new)? {
            match lasts {
                Some(lasts) => {
                    deleted.remove(&net);
                    added.insert(net, lasts);
                }
                None => {
                    added.remove(&net);
                    deleted.insert(net);
                }
            }
        }
    }
    if documents == 0 {
        return Err(err("no document".into()));
    }
    Ok((added, deleted))
}

/// Each CrowdSec file's decisions in force, by path: each block and when it ends
/// (Unix seconds; `u64::MAX`: when deleted).
pub type Decisions = HashMap<PathBuf, HashMap<IpNetwork, u64>>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Builds the list from files (CIDR lists, or `.json` CrowdSec documents applied to
/// `decisions`, the CrowdSec files' decisions so far, if `apply(path)`: a document
/// read before is not applied again, or it would extend its blocks) at `now` (Unix
/// seconds: blocks that ended are gone). Returns the list and the decisions after
/// these documents; nothing changes unless every file parsed. An empty CIDR list is
/// [`Error::Empty`] unless `empty_ok` (at start there is no previous list to keep: it
/// loads as empty, with a warning).
pub fn load(
    paths: &[PathBuf],
    decisions: &Decisions,
    apply: impl Fn(&Path) -> bool,
    now: u64,
    empty_ok: bool,
) -> Result<(DenyList, Decisions), Error> {
    let mut list = DenyList::default();
    let mut after = Decisions::new();
    for path in paths {
        let name: Arc<str> = Arc::from(path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ));
        if path.extension().is_some_and(|e| e == "json") {
            let mut set = decisions.get(path).cloned().unwrap_or_default();
            if apply(path) {
                let io = |source| Error::Io {
                    path: path.clone(),
                    source,
                };
                let bytes = std::fs::read(path).map_err(io)?;
                // Durations count from when the documents were written (the file's
                // last write), not from when they are read: a document read again (at
                // a restart) gives its bans the same end, and one that ended stays
                // ended.
                let written = (std::fs::metadata(path).and_then(|m| m.modified()))
                    .map_err(io)?
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(now, |d| d.as_secs().min(now));
                let (added, deleted) = parse_crowdsec(path, &bytes)?;
                set.retain(|n, _| !deleted.contains(n));
                for (n, lasts) in added {
                    let until =
                        lasts.map_or(u64::MAX, |d| written.saturating_add(d.as_secs().max(1)));
                    // Two decisions on one address: the longer holds.
                    let end = set.entry(n).or_insert(until);
                    *end = (*end).max(until);
                }
            }
            set.retain(|_, until| *until > now);
            for n in set.keys() {
                list.add(*n, &name);
            }
            after.insert(path.clone(), set);
        } else {
            let bytes = std::fs::read(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let text = String::from_utf8_lossy(&bytes);
            let nets = match parse_cidr_list(path, &text) {
                Err(Error::Empty { .. }) if empty_ok => {
                    tracing::warn!(path = %path.display(), "threat-intelligence list is empty");
                    Vec::new()
                }
                parsed => parsed?,
            };
            for n in nets {
                list.add(n, &name);
            }
        }
    }
    Ok((list, after))
}

/// The lists in force, reloaded by [`Intel::watch`].
#[derive(Debug)]
pub struct Intel {
    paths: Vec<PathBuf>,
    current: ArcSwap<DenyList>,
    /// The CrowdSec files' decisions, which each reload changes.
    decisions: std::sync::Mutex<Decisions>,
    /// The files' (modified, size) when last read.
    seen: std::sync::Mutex<Vec<Option<(SystemTime, u64)>>>,
    /// Where the CrowdSec decisions are kept across restarts, if anywhere.
    saved: Option<PathBuf>,
    /// The decisions last written there.
    kept: std::sync::Mutex<Option<Decisions>>,
}

fn stamps(paths: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect()
}

/// The saved form of [`Decisions`] (JSON object keys must be strings).
type SavedDecisions = HashMap<PathBuf, Vec<(IpNetwork, u64)>>;

impl Intel {
    /// Loads the files now; an error here is a start-up error. A CrowdSec stream's
    /// document holds only what changed since the one before, so the decisions of
    /// earlier documents are kept in `saved` (a JSON file) and taken up again at the
    /// next start, each until its `duration` ends: a restart does not forget the bans,
    /// and a ban whose deletion was never read still ends.
    pub fn open(paths: Vec<PathBuf>, saved: Option<PathBuf>) -> Result<Arc<Self>, Error> {
        let seen = std::sync::Mutex::new(stamps(&paths));
        let earlier: SavedDecisions = (saved.as_deref())
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| match serde_json::from_slice(&bytes) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "saved CrowdSec decisions unreadable; starting from the files alone");
                    None
                }
            })
            .unwrap_or_default();
        let earlier: Decisions = (earlier.into_iter())
            .filter(|(path, _)| paths.contains(path))
            .map(|(path, set)| (path, set.into_iter().collect()))
            .collect();
        let (list, decisions) = load(&paths, &earlier, |_| true, unix_now(), true)?;
        let intel = Intel {
            paths,
            current: ArcSwap::from_pointee(list),
            decisions: std::sync::Mutex::new(Decisions::new()),
            seen,
            saved,
            kept: std::sync::Mutex::new(None),
        };
        intel.keep(&decisions);
        *intel.decisions.lock().unwrap_or_else(|e| e.into_inner()) = decisions;
        Ok(Arc::new(intel))
    }

    /// Saves the CrowdSec decisions, if they differ from what was last saved (written
    /// aside and synced, then renamed over the old ones). A failed save is tried again
    /// at the next reload.
    fn keep(&self, decisions: &Decisions) {
        let Some(path) = &self.saved else {
            return;
        };
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.as_ref() == Some(decisions) {
            return;
        }
        let saved: SavedDecisions = (decisions.iter())
            .map(|(p, set)| (p.clone(), set.iter().map(|(n, u)| (*n, *u)).collect()))
            .collect();
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                use std::io::Write;
                let aside = path.with_extension("json.new");
                let mut f = std::fs::File::create(&aside)?;
                f.write_all(&json)?;
                f.sync_all()?;
                std::fs::rename(&aside, path)
            });
        match written {
            Ok(()) => *kept = Some(decisions.clone()),
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "CrowdSec decisions not saved");
            }
        }
    }

    /// The list that denies `ip`, if any.
    pub fn matches(&self, ip: IpAddr) -> Option<Arc<str>> {
        let list = self.current.load();
        list.matches(ip).map(Arc::from)
    }

    /// Entries in force.
    pub fn len(&self) -> usize {
        self.current.load().len()
    }

    /// Whether no entry is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reloads now (every CrowdSec document applied again): the new list replaces the
    /// old one only if every file parsed.
    pub fn reload(&self) -> Result<usize, Error> {
        self.rebuild(|_| true)
    }

    fn rebuild(&self, apply: impl Fn(&Path) -> bool) -> Result<usize, Error> {
        let mut decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        let (list, after) = load(&self.paths, &decisions, apply, unix_now(), false)?;
        let n = list.len();
        self.current.store(Arc::new(list));
        self.keep(&after);
        *decisions = after;
        Ok(n)
    }

    /// When the first CrowdSec decision in force ends, if any does.
    fn next_end(&self) -> Option<u64> {
        let decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        (decisions.values().flat_map(HashMap::values).copied()).min()
    }

    /// Polls the files every `every`: reloads when one changed (size or time),
    /// applying the CrowdSec documents that changed, and drops decisions whose time
    /// is over.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        let mut pending: Vec<PathBuf> = Vec::new();
        loop {
            tick.tick().await;
            let now = stamps(&self.paths);
            {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                for (p, (was, is)) in self.paths.iter().zip(seen.iter().zip(&now)) {
                    if was != is && !pending.contains(p) {
                        pending.push(p.clone());
                    }
                }
                *seen = now;
            }
            let expired = self.next_end().is_some_and(|end| end <= unix_now());
            if pending.is_empty() && !expired {
                continue;
            }
            // A file that changed stays to be applied until a reload succeeds: a
            // reload that another file made fail must not lose its document.
            match self.rebuild(|p| pending.iter().any(|c| c == p)) {
                Ok(n) => {
                    pending.clear();
                    tracing::info!(entries = n, "threat-intelligence lists reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "threat-intelligence reload failed; keeping the previous lists")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = r#"{
      "deleted": null,
      "new": [
        {"duration": "3h59m55s", "id": 1, "origin": "crowdsec", "scenario": "crowdsecurity/ssh-bf",
         "scope": "Ip", "type": "ban", "value": "192.0.2.10"},
        {"duration": "24h", "id": 2, "origin": "lists", "scenario": "lists:firehol", "scope": "Range",
         "type": "ban", "value": "198.51.100.0/24"},
        {"duration": "1h", "id": 3, "origin": "cscli", "scenario": "manual", "scope": "Ip",
         "type": "captcha", "value": "203.0.113.5"},
        {"duration": "1h", "id": 4, "origin": "cscli", "scenario": "manual", "scope": "Country",
         "type": "ban", "value": "XX"}
      ]
    }"#;

    #[test]
    fn crowdsec_decisions_of_earlier_documents_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cs = dir.path().join("crowdsec.json");
        let saved = dir.path().join("state.json");
        let doc = |new: &str, deleted: &str| {
            let d = |v: &str| {
                if v.is_empty() {
                    "null".to_owned()
                } else {
                    format!(r#"[{{"duration":"1h","scope":"Ip","type":"ban","value":"{v}"}}]"#)
                }
            };
            format!(r#"{{"new":{},"deleted":{}}}"#, d(new), d(deleted))
        };
        std::fs::write(&cs, doc("192.0.2.1", "")).unwrap();
        let first = Intel::open(vec![cs.clone()], Some(saved.clone())).unwrap();
        std::fs::write(&cs, doc("192.0.2.2", "")).unwrap();
        first.reload().unwrap();
        let hit = |i: &Intel, ip: &str| i.matches(ip.parse().unwrap()).is_some();
        assert!(hit(&first, "192.0.2.1") && hit(&first, "192.0.2.2"));
        // Restarted with the last document in the file: both bans hold.
        let again = Intel::open(vec![cs.clone()], Some(saved.clone())).unwrap();
        assert!(hit(&again, "192.0.2.1") && hit(&again, "192.0.2.2"));
        // Without the saved decisions only the last document's.
        let forgetful = Intel::open(vec![cs.clone()], None).unwrap();
        assert!(!hit(&forgetful, "192.0.2.1"));
        // A deletion is kept too.
        std::fs::write(&cs, doc("", "192.0.2.1")).unwrap();
        again.reload().unwrap();
        let third = Intel::open(vec![cs], Some(saved)).unwrap();
        assert!(!hit(&third, "192.0.2.1") && hit(&third, "192.0.2.2"));
    }

    #[test]
    fn a_ban_ends_with_its_duration_even_if_its_deletion_was_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let cs = dir.path().join("crowdsec.json");
        let saved = dir.path().join("state.json");
        // Saved by an earlier run: one ban over a minute ago, one still running.
        let now = unix_now();
        let earlier = serde_json::json!({
            cs.display().to_string(): [["192.0.2.1/32", now - 60], ["192.0.2.2/32", now + 3600]]
        });
        std::fs::write(&saved, earlier.to_string()).unwrap();
        std::fs::write(&cs, r#"{"new":null,"deleted":null}"#).unwrap();
        let intel = Intel::open(vec![cs.clone()], Some(saved.clone())).unwrap();
        let hit = |ip: &str| intel.matches(ip.parse().unwrap()).is_some();
        assert!(!hit("192.0.2.1") && hit("192.0.2.2"));
        // A decision whose duration is over (negative) is a deletion.
        std::fs::write(
            &cs,
            r#"{"new":[{"duration":"-1m","scope":"Ip","type":"ban","value":"192.0.2.2"}],"deleted":null}"#,
        )
        .unwrap();
        intel.reload().unwrap();
        assert!(!hit("192.0.2.2"));
        // A ban's time counts from when its document was written: read again at a
        // restart two hours later, a one-hour ban has ended (it is not renewed).
        std::fs::write(
            &cs,
            r#"{"new":[{"duration":"1h","scope":"Ip","type":"ban","value":"192.0.2.3"}]}"#,
        )
        .unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        (std::fs::File::options().write(true).open(&cs).unwrap())
            .set_modified(two_hours_ago)
            .unwrap();
        let restarted = Intel::open(vec![cs], Some(saved)).unwrap();
        assert!(restarted.matches("192.0.2.3".parse().unwrap()).is_none());
    }

    #[tokio::test]
    async fn a_document_waits_for_a_reload_that_another_file_made_fail() {
        let dir = tempfile::tempdir().unwrap();
        let (cs, txt) = (
            dir.path().join("crowdsec.json"),
            dir.path().join("feed.txt"),
        );
        std::fs::write(&cs, r#"{"new":null}"#).unwrap();
        std::fs::write(&txt, "203.0.113.0/24\n").unwrap();
        let intel = Intel::open(vec![cs.clone(), txt.clone()], None).unwrap();
        let watching = tokio::spawn(intel.clone().watch(Duration::from_millis(10)));
        // In one go: the list caught empty (refused) and a new CrowdSec ban.
        std::fs::write(&txt, "").unwrap();
        std::fs::write(
            &cs,
            r#"{"new":[{"duration":"4h","scope":"Ip","type":"ban","value":"192.0.2.9"}]}"#,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let banned = || intel.matches("192.0.2.9".parse().unwrap()).is_some();
        assert!(!banned(), "the reload failed: nothing changed");
        std::fs::write(&txt, "203.0.113.0/24\n").unwrap();
        let mut applied = false;
        for _ in 0..200 {
            applied = banned();
            if applied {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        watching.abort();
        assert!(applied, "the CrowdSec document was lost");
    }

    #[test]
    fn appended_documents_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let cs = dir.path().join("crowdsec.json");
        let ban =
            |v: &str| format!(r#"[{{"duration":"4h","scope":"Ip","type":"ban","value":"{v}"}}]"#);
        let stream = format!(
            "{{\"new\":{}}}\n{{\"new\":{},\"deleted\":{}}}\n",
            ban("192.0.2.1"),
            ban("192.0.2.2"),
            ban("192.0.2.1")
        );
        std::fs::write(&cs, stream).unwrap();
        let intel = Intel::open(vec![cs], None).unwrap();
        assert!(intel.matches("192.0.2.1".parse().unwrap()).is_none());
        assert!(intel.matches("192.0.2.2".parse().unwrap()).is_some());
    }

    #[test]
    fn go_durations() {
        let secs = |t: &str| go_duration(t).unwrap().map(|d| d.as_secs_f64());
        assert_eq!(secs("3h59m55s"), Some(14_395.0));
        assert_eq!(secs("1.5h"), Some(5_400.0));
        assert_eq!(secs("300ms"), Some(0.3));
        assert_eq!(secs("-2m"), None);
        for bad in ["", "h", "4", "4d", "1h-2m", "1..5s"] {
            assert!(go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn crowdsec_streams_and_cidr_lists() {
        let dir = tempfile::tempdir().unwrap();
        let cs = dir.path().join("crowdsec.json");
        std::fs::write(&cs, STREAM).unwrap();
        let txt = dir.path().join("feed.txt");
        std::fs::write(
            &txt,
            "# a feed\n2001:db8:bad::/48\n203.0.113.77 # one host\n\n",
        )
        .unwrap();
        let intel = Intel::open(vec![cs.clone(), txt.clone()], None).unwrap();
        assert_eq!(intel.len(), 4);
        let hit = |ip: &str| intel.matches(ip.parse().unwrap()).map(|s| s.to_string());
        assert_eq!(hit("192.0.2.10").as_deref(), Some("crowdsec.json"));
        assert_eq!(hit("::ffff:192.0.2.10").as_deref(), Some("crowdsec.json"));
        assert_eq!(hit("198.51.100.200").as_deref(), Some("crowdsec.json"));
        assert_eq!(hit("2001:db8:bad:1::9").as_deref(), Some("feed.txt"));
        assert_eq!(hit("203.0.113.77").as_deref(), Some("feed.txt"));
        assert_eq!(hit("203.0.113.5"), None, "captcha is not a ban");
        assert_eq!(hit("198.51.101.1"), None);

        // A reload picks up changes; a broken file keeps the previous list in force.
        std::fs::write(&txt, "203.0.113.0/24\n").unwrap();
        assert_eq!(intel.reload().unwrap(), 3);
        assert!(hit("203.0.113.5").is_some());
        std::fs::write(&txt, "203.0.113.0/24\nnot-an-address\n").unwrap();
        let err = intel.reload().unwrap_err().to_string();
        assert!(err.contains("feed.txt:2"), "{err}");
        assert!(hit("203.0.113.5").is_some());
        std::fs::write(&txt, "203.0.113.0/24\n").unwrap();
        // The stream's "nothing changed" lifts nothing.
        std::fs::write(&cs, r#"{"new": null, "deleted": null}"#).unwrap();
        assert_eq!(intel.reload().unwrap(), 3);
        assert_eq!(hit("198.51.100.200").as_deref(), Some("crowdsec.json"));
        // A CrowdSec delta deletes what it lists, and only from its own decisions: the
        // same block in a CIDR list stays.
        std::fs::write(
            &cs,
            r#"{"new": [{"scope": "Ip", "type": "ban", "value": "192.0.2.99"}], "deleted": [
                {"scope": "Ip", "type": "ban", "value": "192.0.2.10"},
                {"scope": "Range", "type": "ban", "value": "203.0.113.0/24"}]}"#,
        )
        .unwrap();
        intel.reload().unwrap();
        assert_eq!(hit("192.0.2.10"), None);
        assert_eq!(hit("192.0.2.99").as_deref(), Some("crowdsec.json"));
        assert_eq!(hit("198.51.100.200").as_deref(), Some("crowdsec.json"));
        assert_eq!(hit("203.0.113.5").as_deref(), Some("feed.txt"));
    }

    #[test]
    fn bad_documents_are_typed_errors() {
        let p = Path::new("x.json");
        for bad in [
            "",
            "[]",
            r#"{"new": [{"scope": "Ip", "type": "ban", "value": "999.1.1.1"}]}"#,
            r#"{"new": [{"scope": "Range", "type": "ban", "value": "10.0.0.1/8"}]}"#,
            r#"{"new": [{"scope": "Ip"}]}"#,
        ] {
            assert!(parse_crowdsec(p, bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_list_at_start_loads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("feed.txt");
        std::fs::write(&txt, "").unwrap();
        let intel = Intel::open(vec![txt.clone()], None).unwrap();
        assert!(intel.is_empty());
        std::fs::write(&txt, "192.0.2.1\n").unwrap();
        assert_eq!(intel.reload().unwrap(), 1);
    }

    #[tokio::test]
    async fn watching_reloads_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("feed.txt");
        std::fs::write(&txt, "192.0.2.1\n").unwrap();
        let intel = Intel::open(vec![txt.clone()], None).unwrap();
        tokio::spawn(intel.clone().watch(Duration::from_millis(20)));
        std::fs::write(&txt, "192.0.2.1\n192.0.2.2\n192.0.2.3\n").unwrap();
        for _ in 0..200 {
            if intel.len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(intel.len(), 3);
        // Caught empty mid-rewrite: the previous list stays; a comment clears it.
        std::fs::write(&txt, "").unwrap();
        assert!(matches!(intel.reload(), Err(Error::Empty { .. })));
        std::fs::write(&txt, " \n\n").unwrap();
        assert!(matches!(intel.reload(), Err(Error::Empty { .. })));
        assert_eq!(intel.len(), 3);
        std::fs::write(&txt, "# nothing listed today\n").unwrap();
        assert_eq!(intel.reload().unwrap(), 0);
        assert!(intel.matches("192.0.2.2".parse().unwrap()).is_none());
    }
}
