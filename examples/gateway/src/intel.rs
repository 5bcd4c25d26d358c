//! Threat-intelligence deny lists: CIDR list files (one address or block per line,
//! `#` comments) and CrowdSec decision-stream documents (`GET /v1/decisions/stream`:
//! `{"new": [...], "deleted": [...]}`, `scope` `Ip` or `Range`, `type` `ban`),
//! reloaded when a file changes. A file that stops parsing keeps the previous list in
//! force (and the error is logged): a typo must not lift every block, nor must a CIDR
//! list caught empty while it is rewritten (an empty list on purpose holds a `#`
//! comment). Replace files by renaming a complete one over them: a list read half
//! written is loaded as it is, until the next change.
//!
//! A CrowdSec file is read as the stream is meant to be, like a bouncer: each
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
}

#[derive(Debug, Deserialize)]
struct Stream {
    #[serde(default)]
    new: Option<Vec<Decision>>,
    #[serde(default)]
    deleted: Option<Vec<Decision>>,
}

/// Parses a CrowdSec decision-stream document: `(added, deleted)` blocks. Only `ban`
/// decisions of scope `Ip` or `Range` are used (others: `captcha`, `Country`, `AS`,
/// are not address blocks); a malformed value in them is an error.
pub fn parse_crowdsec(
    path: &Path,
    bytes: &[u8],
) -> Result<(Vec<IpNetwork>, Vec<IpNetwork>), Error> {
    let err = |reason: String| Error::CrowdSec {
        path: path.to_owned(),
        reason,
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| err(e.to_string()))?;
    if !value.is_object() {
        return Err(err(
            "the document must be an object with `new` and `deleted`".into(),
        ));
    }
    let stream: Stream = serde_json::from_value(value).map_err(|e| err(e.to_string()))?;
    let pick = |list: Option<Vec<Decision>>| -> Result<Vec<IpNetwork>, Error> {
        let mut out = Vec::new();
        for d in list.unwrap_or_default() {
            if !d.kind.eq_ignore_ascii_case("ban") {
                continue;
            }
            match d.scope.to_ascii_lowercase().as_str() {
                "ip" | "range" => out.push(
                    d.value
                        .parse::<IpNetwork>()
                        .map_err(|e| err(format!("{:?}: {e}", d.value)))?,
                ),
                _ => {}
            }
        }
        Ok(out)
    };
    Ok((pick(stream.new)?, pick(stream.deleted)?))
}

/// Each CrowdSec file's decisions in force, by path.
pub type Decisions = HashMap<PathBuf, HashSet<IpNetwork>>;

/// Builds the list from files (CIDR lists, or `.json` CrowdSec documents applied to
/// `decisions`, the CrowdSec files' decisions so far). Returns the list and the
/// decisions after these documents; nothing changes unless every file parsed. An
/// empty CIDR list is [`Error::Empty`] unless `empty_ok` (at start there is no
/// previous list to keep: it loads as empty, with a warning).
pub fn load(
    paths: &[PathBuf],
    decisions: &Decisions,
    empty_ok: bool,
) -> Result<(DenyList, Decisions), Error> {
    let mut list = DenyList::default();
    let mut after = Decisions::new();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let name: Arc<str> = Arc::from(path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ));
        if path.extension().is_some_and(|e| e == "json") {
            let (added, deleted) = parse_crowdsec(path, &bytes)?;
            let mut set = decisions.get(path).cloned().unwrap_or_default();
            for n in deleted {
                set.remove(&n);
            }
            set.extend(added);
            for n in &set {
                list.add(*n, &name);
            }
            after.insert(path.clone(), set);
        } else {
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

impl Intel {
    /// Loads the files now; an error here is a start-up error. A CrowdSec stream's
    /// document holds only what changed since the one before, so the decisions of
    /// earlier documents are kept in `saved` (a JSON file) and taken up again at the
    /// next start: a restart does not forget the bans.
    pub fn open(paths: Vec<PathBuf>, saved: Option<PathBuf>) -> Result<Arc<Self>, Error> {
        let seen = std::sync::Mutex::new(stamps(&paths));
        let mut earlier: Decisions = (saved.as_deref())
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|bytes| match serde_json::from_slice(&bytes) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "saved CrowdSec decisions unreadable; starting from the files alone");
                    None
                }
            })
            .unwrap_or_default();
        earlier.retain(|path, _| paths.contains(path));
        let (list, decisions) = load(&paths, &earlier, true)?;
        let intel = Intel {
            paths,
            current: ArcSwap::from_pointee(list),
            decisions: std::sync::Mutex::new(Decisions::new()),
            seen,
            saved,
        };
        intel.keep(&decisions);
        *intel.decisions.lock().unwrap_or_else(|e| e.into_inner()) = decisions;
        Ok(Arc::new(intel))
    }

    /// Saves the CrowdSec decisions (written aside, then renamed over the old ones).
    fn keep(&self, decisions: &Decisions) {
        let Some(path) = &self.saved else {
            return;
        };
        let written = serde_json::to_vec(decisions)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                let aside = path.with_extension("json.new");
                std::fs::write(&aside, json)?;
                std::fs::rename(&aside, path)
            });
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %path.display(), "CrowdSec decisions not saved");
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

    /// Reloads now: the new list replaces the old one only if every file parsed.
    pub fn reload(&self) -> Result<usize, Error> {
        let mut decisions = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        let (list, after) = load(&self.paths, &decisions, false)?;
        let n = list.len();
        self.current.store(Arc::new(list));
        if after != *decisions {
            self.keep(&after);
        }
        *decisions = after;
        Ok(n)
    }

    /// Polls the files every `every` and reloads when one changed (size or time).
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = stamps(&self.paths);
            {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                if *seen == now {
                    continue;
                }
                *seen = now;
            }
            match self.reload() {
                Ok(n) => tracing::info!(entries = n, "threat-intelligence lists reloaded"),
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
