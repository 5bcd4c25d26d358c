//! Correlation of security events into incidents: an event joins the incident in which
//! one of its keys (its source address, its account, …) was last seen within a time
//! window; otherwise it opens one. Each incident lists its events and the playbooks'
//! actions (each with its explanation).
//!
//! With `--redis` the fleet correlates as one: which incident a key belongs to is kept
//! on the fleet's Redis (one script, atomic, so two instances that see the same new
//! source at once agree on one incident), and incident ids come from one counter
//! there. Each instance keeps its own part of an incident (its events and its
//! playbooks' actions) and shares it; a dashboard shows the parts merged ([`merge`]).
//! While Redis is out of reach an instance correlates alone, with ids from
//! [`LOCAL_ONLY_IDS`] up that it does not share.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use palisade_core_traits::{SecurityEvent, Subject, Timestamp, canonical_ip, normalize_user_id};
use palisade_token_blacklist::redis;
use serde::{Deserialize, Serialize};

use crate::shared::{RedisConn, hashed_key, millis};

/// Keys, events and actions kept per incident, and incidents kept in all: fixed memory.
const MAX_KEYS: usize = 16;
const MAX_ITEMS: usize = 20;
const MAX_INCIDENTS: usize = 200;
/// Keys remembered for correlation in memory: fixed memory, the oldest forgotten first.
const MAX_SEEN: usize = MAX_INCIDENTS * MAX_KEYS;
/// How long an instance correlates alone after the fleet's Redis failed it.
pub const RETRY_FLEET_AFTER: Duration = Duration::from_secs(5);
/// Events this close to an incident's key join it (the gateway's setting).
pub const WINDOW: Duration = Duration::from_secs(600);
/// Ids an instance of a fleet gives the incidents it opens while the fleet's Redis is
/// out of reach (2^52: below JavaScript's exact integers, far above any counter).
pub const LOCAL_ONLY_IDS: u64 = 1 << 52;

/// One event as an incident lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventLine {
    /// When.
    pub time: Timestamp,
    /// Kind, e.g. `brute_force`.
    pub kind: String,
    /// Severity.
    pub severity: String,
    /// About whom.
    pub subject: String,
    /// `authenticated` or `unauthenticated`.
    pub basis: String,
    /// The producing crate.
    pub source: String,
    /// The instance of the fleet it happened on, when another one (`--redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// One playbook step as an incident lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionLine {
    /// When it was planned.
    pub time: Timestamp,
    /// e.g. `block_ip`.
    pub action: String,
    /// e.g. `execute`, `suppressed`.
    pub verdict: String,
    /// The playbook's explanation, e.g. `playbook "brute-force-ip" rule 0 matched …`.
    pub why: String,
    /// What execution reported, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The instance of the fleet that acted, when another one (`--redis`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// Correlated events and what was done about them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Increasing id (the fleet's, with `--redis`).
    pub id: u64,
    /// One line: the first event's kind and subject.
    pub title: String,
    /// The highest severity seen.
    pub severity: String,
    /// When the first event happened.
    pub opened: Timestamp,
    /// When the last one happened.
    pub last: Timestamp,
    /// Events in it (the last few).
    pub event_count: u64,
    /// What ties them: `ip 198.51.100.7`, `user alice`, … (the first few).
    pub keys: Vec<String>,
    /// The last events.
    pub events: VecDeque<EventLine>,
    /// The last actions.
    pub actions: VecDeque<ActionLine>,
    /// The other instances of the fleet whose events or actions it holds (`--redis`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<String>,
}

impl Incident {
    /// Adds a key that ties events to it (the first [`MAX_KEYS`] are kept).
    fn add_key(&mut self, key: String) {
        if !self.keys.contains(&key) && self.keys.len() < MAX_KEYS {
            self.keys.push(key);
        }
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

/// Text of a serde enum value (`"brute_force"`), without quotes.
fn name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The correlation keys of an event: its subject, and the address or account its
/// evidence names (threat-score puts the source address of a login in `ip`).
fn keys(event: &SecurityEvent) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    match &event.subject {
        Subject::Ip { ip } => out.push(format!("ip {}", canonical_ip(*ip))),
        Subject::User { user_id } => out.push(format!("user {}", normalize_user_id(user_id))),
        Subject::Token { issuer, jti } => out.push(format!("token {issuer} {jti}")),
        Subject::Device { device_id } => out.push(format!("device {device_id}")),
        Subject::Domain { domain } => out.push(format!("domain {domain}")),
        _ => {}
    }
    if let Some(ip) = event
        .evidence("ip")
        .and_then(|v| v.parse::<std::net::IpAddr>().ok())
    {
        out.push(format!("ip {}", canonical_ip(ip)));
    }
    if let Some(user) = event.evidence("user") {
        out.push(format!("user {}", normalize_user_id(user)));
    }
    out.dedup();
    out
}

/// Which incident a key belongs to, on the fleet's Redis: `KEYS[1]` is the id counter,
/// the others an event's keys; the first key seen within the window names the incident
/// (else the counter opens one), and every key of the event then names it for another
/// window. One hash tag: one slot, so a cluster runs it on one node.
const ASSIGN_LUA: &str = r"
local id = false
for i = 2, #KEYS do
  id = redis.call('GET', KEYS[i])
  if id then break end
end
if not id then id = redis.call('INCR', KEYS[1]) end
for i = 2, #KEYS do redis.call('SET', KEYS[i], id, 'PX', ARGV[1]) end
return tonumber(id)
";
static ASSIGN: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(ASSIGN_LUA));

/// When the response task may ask the fleet's Redis again after it failed. One for
/// the incident ids and the playbooks' action claims ([`FleetIds::backoff`]), so a
/// Redis that stops answering costs the task one timeout, not one per part.
#[derive(Debug, Clone, Default)]
pub struct FleetBackoff(std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>);

impl FleetBackoff {
    fn until(&self) -> std::sync::MutexGuard<'_, Option<std::time::Instant>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What `call` returns, unless Redis failed less than [`RETRY_FLEET_AFTER`] ago
    /// (then it is not asked) or fails now (logged with `fallback`, what the caller does
    /// instead): `None` in both cases.
    pub async fn ask<T>(
        &self,
        fallback: &str,
        call: impl std::future::Future<Output = Result<T, redis::RedisError>>,
    ) -> Option<T> {
        if self.until().is_some_and(|t| std::time::Instant::now() < t) {
            return None;
        }
        let answer = call.await;
        *self.until() = answer
            .is_err()
            .then(|| std::time::Instant::now() + RETRY_FLEET_AFTER);
        answer
            .inspect_err(
                |e| tracing::warn!(error = %e, "the fleet's Redis is out of reach; {fallback}"),
            )
            .ok()
    }
}

/// Where a fleet keeps its correlation.
#[derive(Clone)]
pub struct FleetIds {
    conn: RedisConn,
    prefix: String,
    backoff: FleetBackoff,
}

impl std::fmt::Debug for FleetIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetIds")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl FleetIds {
    /// Correlation on `conn` under `prefix` (e.g. `palisade:gateway:incident`).
    pub fn new(conn: RedisConn, prefix: &str) -> FleetIds {
        FleetIds {
            conn,
            prefix: format!("{prefix}:{{ids}}"),
            backoff: FleetBackoff::default(),
        }
    }

    /// The back-off after a failure of this fleet's Redis, to share with the other
    /// users of that Redis in the response task.
    pub fn backoff(&self) -> FleetBackoff {
        self.backoff.clone()
    }

    /// The fleet's incident for an event with `keys`, which now name it for `window`.
    async fn assign(&self, keys: &[String], window: Duration) -> Result<u64, redis::RedisError> {
        let mut call = ASSIGN.prepare_invoke();
        call.key(format!("{}:next", self.prefix));
        for k in keys {
            call.key(hashed_key(&self.prefix, k));
        }
        call.arg(millis(window));
        self.conn.invoke(&call).await
    }
}

/// Groups events into incidents.
#[derive(Debug)]
pub struct Correlator {
    window: Duration,
    fleet: Option<FleetIds>,
    /// Key → (incident, when last seen): this instance's correlation (all of it
    /// alone, the fallback in a fleet).
    seen: HashMap<String, (u64, Timestamp)>,
    incidents: VecDeque<Incident>,
    next_id: u64,
}

impl Correlator {
    /// An event joins the incident one of its keys was seen in within `window`.
    pub fn new(window: Duration) -> Self {
        Correlator {
            window,
            fleet: None,
            seen: HashMap::new(),
            incidents: VecDeque::new(),
            next_id: 1,
        }
    }

    /// The same, the keys and ids kept on the fleet's Redis (`fleet`).
    pub fn fleet(window: Duration, fleet: FleetIds) -> Self {
        Correlator {
            fleet: Some(fleet),
            next_id: LOCAL_ONLY_IDS,
            ..Correlator::new(window)
        }
    }

    /// This instance's incident for an event with `keys` at `time`.
    fn assign_here(&mut self, keys: &[String], time: Timestamp) -> u64 {
        let window = self.window;
        let found = keys.iter().find_map(|k| {
            self.seen
                .get(k)
                .filter(|(_, last)| time.saturating_duration_since(*last) <= window)
                .map(|(id, _)| *id)
        });
        let id = found.unwrap_or_else(|| {
            self.next_id += 1;
            self.next_id - 1
        });
        for k in keys {
            (self.seen.entry(k.clone()))
                .and_modify(|(i, last)| (*i, *last) = (id, (*last).max(time)))
                .or_insert((id, time));
        }
        if self.seen.len() > MAX_SEEN {
            // Forget what fell out of the window, then the oldest half if that was not
            // enough (a flood of distinct sources).
            self.seen
                .retain(|_, (_, last)| time.saturating_duration_since(*last) <= window);
            if self.seen.len() > MAX_SEEN {
                let mut times: Vec<Timestamp> = self.seen.values().map(|(_, t)| *t).collect();
                times.sort_unstable();
                let cut = times[times.len() / 2];
                self.seen.retain(|_, (_, last)| *last > cut);
            }
        }
        id
    }

    /// The fleet's incident for `keys`; `None` when this instance correlates alone (no
    /// fleet, or its Redis out of reach). After a failure Redis is not asked again for
    /// [`RETRY_FLEET_AFTER`]: a Redis that does not answer costs the response task one
    /// timeout, not one per event.
    async fn fleet_id(&mut self, keys: &[String]) -> Option<u64> {
        let fleet = self.fleet.as_ref()?;
        let id = (fleet.backoff)
            .ask("correlating here alone", fleet.assign(keys, self.window))
            .await;
        if id.is_none() {
            metrics::counter!("palisade_gateway_incident_fleet_unreached_total").increment(1);
        }
        id
    }

    /// Files `event` into its incident (opening one if none matches); returns this
    /// instance's part of it.
    pub async fn correlate(&mut self, event: &SecurityEvent) -> &Incident {
        let keys = keys(event);
        let id = match self.fleet_id(&keys).await {
            Some(id) => id,
            None => self.assign_here(&keys, event.time),
        };
        let line = EventLine {
            time: event.time,
            kind: name(&event.kind),
            severity: name(&event.severity),
            subject: keys.first().cloned().unwrap_or_default(),
            basis: name(&event.basis),
            source: event.source.clone(),
            instance: None,
        };
        let window = self.window;
        let index = match self.incidents.iter().position(|i| i.id == id) {
            Some(i) if event.time.saturating_duration_since(self.incidents[i].last) <= window => i,
            // An id met again after a window of silence is a new incident (the fleet's
            // counter restarted with its Redis): it replaces the old one.
            found => {
                if let Some(i) = found {
                    self.incidents.remove(i);
                }
                let title = format!("{} about {}", line.kind.replace('_', " "), line.subject);
                self.incidents.push_back(Incident {
                    id,
                    title,
                    severity: line.severity.clone(),
                    opened: event.time,
                    last: event.time,
                    event_count: 0,
                    keys: Vec::new(),
                    events: VecDeque::new(),
                    actions: VecDeque::new(),
                    instances: Vec::new(),
                });
                if self.incidents.len() > MAX_INCIDENTS {
                    self.incidents.pop_front();
                }
                self.incidents.len() - 1
            }
        };
        let inc = &mut self.incidents[index];
        inc.last = inc.last.max(event.time);
        inc.event_count += 1;
        if severity_rank(&line.severity) >= severity_rank(&inc.severity) {
            inc.severity = line.severity.clone();
        }
        for k in keys {
            inc.add_key(k);
        }
        inc.events.push_back(line);
        if inc.events.len() > MAX_ITEMS {
            inc.events.pop_front();
        }
        &self.incidents[index]
    }

    /// Adds an action to incident `id` (ignored if it has been dropped).
    pub fn record_action(&mut self, id: u64, action: ActionLine) -> Option<&Incident> {
        let inc = self.incidents.iter_mut().find(|i| i.id == id)?;
        inc.actions.push_back(action);
        if inc.actions.len() > MAX_ITEMS {
            inc.actions.pop_front();
        }
        Some(inc)
    }

    /// The most recent incidents, newest first.
    pub fn recent(&self, n: usize) -> Vec<Incident> {
        let mut v: Vec<Incident> = self.incidents.iter().rev().take(n).cloned().collect();
        v.sort_by(|a, b| b.last.cmp(&a.last).then(b.id.cmp(&a.id)));
        v
    }
}

/// One incident as the fleet sees it, from the parts its instances correlated
/// (`None`: this instance's own): events and actions of all (each marked with its
/// instance, the last few), counts summed, the highest severity, the earliest part's
/// title. `parts` all have the same id and at least one element.
pub fn merge(parts: &[(Option<String>, Incident)]) -> Incident {
    let Some(first) = parts.iter().min_by_key(|(_, p)| (p.opened, p.id)) else {
        unreachable!("merge of no part")
    };
    let mut out = Incident {
        events: VecDeque::new(),
        actions: VecDeque::new(),
        keys: Vec::new(),
        instances: Vec::new(),
        event_count: 0,
        ..first.1.clone()
    };
    let mut events = Vec::new();
    let mut actions = Vec::new();
    for (instance, p) in parts {
        out.last = out.last.max(p.last);
        out.event_count += p.event_count;
        if severity_rank(&p.severity) > severity_rank(&out.severity) {
            out.severity = p.severity.clone();
        }
        for k in &p.keys {
            out.add_key(k.clone());
        }
        if let Some(name) = instance
            && !out.instances.contains(name)
        {
            out.instances.push(name.clone());
        }
        events.extend(p.events.iter().map(|e| EventLine {
            instance: instance.clone(),
            ..e.clone()
        }));
        actions.extend(p.actions.iter().map(|a| ActionLine {
            instance: instance.clone(),
            ..a.clone()
        }));
    }
    out.instances.sort();
    events.sort_by_key(|e| e.time);
    actions.sort_by_key(|a| a.time);
    let skip = events.len().saturating_sub(MAX_ITEMS);
    out.events = events.into_iter().skip(skip).collect();
    let skip = actions.len().saturating_sub(MAX_ITEMS);
    out.actions = actions.into_iter().skip(skip).collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core_traits::{EventId, EventKind, EvidenceBasis, Severity};

    fn ev(n: u32, secs: u64, kind: EventKind, subject: Subject) -> SecurityEvent {
        SecurityEvent::new(
            EventId::new(format!("e{n}")).unwrap(),
            Timestamp::from_unix_secs(1_800_000_000 + secs),
            kind,
            Severity::High,
            subject,
            "test",
        )
    }

    #[tokio::test]
    async fn same_source_or_account_within_the_window_is_one_incident() {
        let mut c = Correlator::new(Duration::from_secs(600));
        let ip = "198.51.100.7".parse().unwrap();
        let a = c
            .correlate(&ev(1, 0, EventKind::BruteForce, Subject::ip(ip)))
            .await
            .id;
        // The mapped form of the same address, a minute later: same incident.
        let mapped = "::ffff:198.51.100.7".parse().unwrap();
        let b = c
            .correlate(&ev(
                2,
                60,
                EventKind::CredentialStuffing,
                Subject::Ip { ip: mapped },
            ))
            .await
            .id;
        assert_eq!(a, b);
        // An event about an account whose evidence names that address joins it too.
        let user = ev(3, 120, EventKind::ImpossibleTravel, Subject::user("Alice"))
            .with_evidence("ip", "198.51.100.7")
            .with_basis(EvidenceBasis::Authenticated);
        let inc = c.correlate(&user).await;
        assert_eq!(inc.id, a);
        assert_eq!(inc.event_count, 3);
        assert!(inc.keys.contains(&"user alice".to_owned()));
        // The account's next event, from elsewhere, still joins through the account.
        let later = ev(4, 300, EventKind::AnomalousLogin, Subject::user("ALICE"));
        assert_eq!(c.correlate(&later).await.id, a);
        // Outside the window: a new incident.
        let much_later = ev(
            5,
            300 + 601,
            EventKind::AnomalousLogin,
            Subject::user("alice"),
        );
        assert_ne!(c.correlate(&much_later).await.id, a);
        // Another source: another incident.
        let other = ev(
            6,
            10,
            EventKind::BruteForce,
            Subject::ip("192.0.2.1".parse().unwrap()),
        );
        assert_ne!(c.correlate(&other).await.id, a);
    }

    #[tokio::test]
    async fn actions_carry_their_explanation_and_memory_is_bounded() {
        let mut c = Correlator::new(Duration::from_secs(600));
        let id = c
            .correlate(&ev(
                1,
                0,
                EventKind::BruteForce,
                Subject::ip("192.0.2.9".parse().unwrap()),
            ))
            .await
            .id;
        for i in 0..50 {
            c.record_action(
                id,
                ActionLine {
                    time: Timestamp::from_unix_secs(i),
                    action: "block_ip".into(),
                    verdict: "execute".into(),
                    why: format!("rule {i}"),
                    outcome: None,
                    instance: None,
                },
            );
        }
        let inc = &c.recent(1)[0];
        assert_eq!(inc.actions.len(), MAX_ITEMS);
        assert_eq!(inc.actions.back().unwrap().why, "rule 49");
        for n in 0..1_000u32 {
            let ip = std::net::Ipv4Addr::from(0xcb00_7100 + n).into();
            c.correlate(&ev(n, 0, EventKind::BruteForce, Subject::ip(ip)))
                .await;
        }
        assert_eq!(c.incidents.len(), MAX_INCIDENTS);
        assert_eq!(c.recent(5).len(), 5);
    }

    #[tokio::test]
    async fn a_flood_of_sources_keeps_memory_bounded_and_the_fresh_ones_correlated() {
        let mut c = Correlator::new(Duration::from_secs(600));
        for n in 0..20_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + n).into();
            c.correlate(&ev(
                n,
                u64::from(n) / 100,
                EventKind::BruteForce,
                Subject::ip(ip),
            ))
            .await;
            assert!(c.seen.len() <= MAX_SEEN);
        }
        // The last source seen still names its incident.
        let last = std::net::Ipv4Addr::from(0x0a00_0000 + 19_999).into();
        let id = c.recent(1)[0].id;
        let again = ev(1, 200, EventKind::CredentialStuffing, Subject::ip(last));
        assert_eq!(c.correlate(&again).await.id, id);
    }

    #[tokio::test]
    async fn parts_of_one_incident_merge_into_the_fleets_view() {
        let ip = Subject::ip("203.0.113.5".parse().unwrap());
        let mut here = Correlator::new(Duration::from_secs(600));
        let mut there = Correlator::new(Duration::from_secs(600));
        let mine = here
            .correlate(&ev(1, 10, EventKind::BruteForce, ip.clone()))
            .await
            .clone();
        there
            .correlate(&ev(2, 5, EventKind::CredentialStuffing, ip.clone()))
            .await;
        let mut theirs = there
            .correlate(&ev(3, 30, EventKind::BruteForce, ip))
            .await
            .clone();
        theirs.severity = "critical".into();
        let merged = merge(&[(None, mine.clone()), (Some("b-1".into()), theirs.clone())]);
        assert_eq!(merged.event_count, 3);
        assert_eq!(merged.severity, "critical");
        assert_eq!(merged.instances, vec!["b-1".to_owned()]);
        // The earliest part names it and opened it; the latest event ends it.
        assert_eq!(merged.title, theirs.title);
        assert_eq!(merged.opened, theirs.opened);
        assert_eq!(merged.last, theirs.last);
        let times: Vec<(u64, Option<&str>)> = (merged.events.iter())
            .map(|e| (e.time.as_unix_secs() - 1_800_000_000, e.instance.as_deref()))
            .collect();
        assert_eq!(times, [(5, Some("b-1")), (10, None), (30, Some("b-1"))]);
        // Merging is the same whatever the order of the parts.
        let reversed = merge(&[(Some("b-1".into()), theirs), (None, mine)]);
        assert_eq!(reversed, merged);
    }
}
