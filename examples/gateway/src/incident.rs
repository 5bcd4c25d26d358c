//! Correlation of security events into incidents: events about the same source or the
//! same account within a time window are one incident, with its events and the
//! playbooks' actions (each with its explanation).

use std::collections::VecDeque;
use std::time::Duration;

use palisade_core_traits::{SecurityEvent, Subject, Timestamp, canonical_ip, normalize_user_id};
use serde::{Deserialize, Serialize};

/// Keys, events and actions kept per incident, and incidents kept in all: fixed memory.
const MAX_KEYS: usize = 16;
const MAX_ITEMS: usize = 20;
const MAX_INCIDENTS: usize = 200;

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
}

/// Correlated events and what was done about them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Increasing id.
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
    /// The instance of the fleet that opened it, for an incident another instance
    /// shared (`--redis`); `None` for this instance's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip)]
    rank: u8,
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

/// Groups events into incidents.
#[derive(Debug)]
pub struct Correlator {
    window: Duration,
    incidents: VecDeque<Incident>,
    next_id: u64,
}

impl Correlator {
    /// Events within `window` of an incident's last event, sharing a key, join it.
    pub fn new(window: Duration) -> Self {
        Correlator {
            window,
            incidents: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Files `event` into its incident (opening one if none matches); returns it.
    pub fn correlate(&mut self, event: &SecurityEvent) -> &Incident {
        let keys = keys(event);
        let line = EventLine {
            time: event.time,
            kind: name(&event.kind),
            severity: name(&event.severity),
            subject: keys.first().cloned().unwrap_or_default(),
            basis: name(&event.basis),
            source: event.source.clone(),
        };
        let window = self.window;
        let found = self.incidents.iter().position(|i| {
            event.time.saturating_duration_since(i.last) <= window
                && i.keys.iter().any(|k| keys.contains(k))
        });
        let index = match found {
            Some(i) => i,
            None => {
                let title = format!("{} about {}", line.kind.replace('_', " "), line.subject);
                self.incidents.push_back(Incident {
                    id: self.next_id,
                    title,
                    severity: line.severity.clone(),
                    opened: event.time,
                    last: event.time,
                    event_count: 0,
                    keys: Vec::new(),
                    events: VecDeque::new(),
                    actions: VecDeque::new(),
                    instance: None,
                    rank: 0,
                });
                self.next_id += 1;
                if self.incidents.len() > MAX_INCIDENTS {
                    self.incidents.pop_front();
                }
                self.incidents.len() - 1
            }
        };
        let inc = &mut self.incidents[index];
        inc.last = inc.last.max(event.time);
        inc.event_count += 1;
        let rank = severity_rank(&line.severity);
        if rank >= inc.rank {
            inc.rank = rank;
            inc.severity = line.severity.clone();
        }
        for k in keys {
            if !inc.keys.contains(&k) && inc.keys.len() < MAX_KEYS {
                inc.keys.push(k);
            }
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

    #[test]
    fn same_source_or_account_within_the_window_is_one_incident() {
        let mut c = Correlator::new(Duration::from_secs(600));
        let ip = "198.51.100.7".parse().unwrap();
        let a = c
            .correlate(&ev(1, 0, EventKind::BruteForce, Subject::ip(ip)))
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
            .id;
        assert_eq!(a, b);
        // An event about an account whose evidence names that address joins it too.
        let user = ev(3, 120, EventKind::ImpossibleTravel, Subject::user("Alice"))
            .with_evidence("ip", "198.51.100.7")
            .with_basis(EvidenceBasis::Authenticated);
        let inc = c.correlate(&user);
        assert_eq!(inc.id, a);
        assert_eq!(inc.event_count, 3);
        assert!(inc.keys.contains(&"user alice".to_owned()));
        // The account's next event, from elsewhere, still joins through the account.
        let later = ev(4, 300, EventKind::AnomalousLogin, Subject::user("ALICE"));
        assert_eq!(c.correlate(&later).id, a);
        // Outside the window: a new incident.
        let much_later = ev(
            5,
            300 + 601,
            EventKind::AnomalousLogin,
            Subject::user("alice"),
        );
        assert_ne!(c.correlate(&much_later).id, a);
        // Another source: another incident.
        let other = ev(
            6,
            10,
            EventKind::BruteForce,
            Subject::ip("192.0.2.1".parse().unwrap()),
        );
        assert_ne!(c.correlate(&other).id, a);
    }

    #[test]
    fn actions_carry_their_explanation_and_memory_is_bounded() {
        let mut c = Correlator::new(Duration::from_secs(600));
        let id = c
            .correlate(&ev(
                1,
                0,
                EventKind::BruteForce,
                Subject::ip("192.0.2.9".parse().unwrap()),
            ))
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
                },
            );
        }
        let inc = &c.recent(1)[0];
        assert_eq!(inc.actions.len(), MAX_ITEMS);
        assert_eq!(inc.actions.back().unwrap().why, "rule 49");
        for n in 0..1_000u32 {
            let ip = std::net::Ipv4Addr::from(0xcb00_7100 + n).into();
            c.correlate(&ev(n, 0, EventKind::BruteForce, Subject::ip(ip)));
        }
        assert_eq!(c.incidents.len(), MAX_INCIDENTS);
        assert_eq!(c.recent(5).len(), 5);
    }
}
