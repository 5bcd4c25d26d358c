//! The dashboard's aggregates: counters, per-minute series, the risk histogram and the
//! top sources, all in fixed memory whatever the traffic.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;

use palisade_core_traits::Timestamp;
use serde::Serialize;

use crate::activity::{Activity, LoginResult, What};

/// Minutes of history in the series.
pub const SERIES_MINUTES: usize = 15;
/// Counters kept per top-list (Space-Saving).
const TOP_CAPACITY: usize = 64;
/// Entries shown per top-list.
const TOP_SHOWN: usize = 10;
/// Distinct rate-limit policies counted (policies come from configuration).
const MAX_POLICIES: usize = 32;

/// Totals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Logins that got a token at once.
    pub login_success: u64,
    /// Wrong credentials.
    pub login_failure: u64,
    /// Logins asked for a one-time code.
    pub login_step_up: u64,
    /// One-time codes accepted.
    pub step_up_passed: u64,
    /// One-time codes refused.
    pub step_up_failed: u64,
    /// Logins refused by risk.
    pub login_denied: u64,
    /// Requests answered `429`.
    pub rate_limited: u64,
    /// Requests from blocked addresses answered `403`.
    pub blocked: u64,
    /// Threat-intelligence matches.
    pub intel_hits: u64,
    /// Revocations (tokens and users).
    pub revocations: u64,
    /// Idempotent replays of a stored response.
    pub idem_replay: u64,
    /// Idempotency conflicts (`409`: first request still running).
    pub idem_conflict: u64,
    /// Idempotency key reused with another payload (`422`).
    pub idem_mismatch: u64,
    /// Identical concurrent requests served by one execution.
    pub idem_coalesced: u64,
    /// Security events from the crates.
    pub detections: u64,
    /// Playbook actions executed.
    pub actions: u64,
    /// Certificate Transparency alerts.
    pub ct_alerts: u64,
}

/// One minute of the series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: u64,
    /// Successful logins (direct or after step-up).
    pub success: u32,
    /// Failed logins.
    pub failure: u32,
    /// Step-ups asked.
    pub step_up: u32,
    /// `429`s.
    pub limited: u32,
    /// `403`s for blocked addresses and intel hits.
    pub blocked: u32,
}

/// Space-Saving heavy hitters: at most `TOP_CAPACITY` counters; counts never
/// under-estimate, so a spray of distinct keys cannot grow memory or hide the
/// heaviest source.
#[derive(Debug, Clone)]
struct TopK<K> {
    counts: HashMap<K, u64>,
}

impl<K: Hash + Eq + Clone + Ord> TopK<K> {
    fn new() -> Self {
        TopK {
            counts: HashMap::with_capacity(TOP_CAPACITY),
        }
    }

    fn add(&mut self, key: K) {
        if let Some(c) = self.counts.get_mut(&key) {
            *c += 1;
            return;
        }
        if self.counts.len() < TOP_CAPACITY {
            self.counts.insert(key, 1);
            return;
        }
        // Replace the smallest counter; the newcomer inherits its count.
        if let Some((victim, min)) = (self.counts.iter())
            .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
            .map(|(k, c)| (k.clone(), *c))
        {
            self.counts.remove(&victim);
            self.counts.insert(key, min + 1);
        }
    }

    fn top(&self) -> Vec<(K, u64)> {
        let mut v: Vec<(K, u64)> = self.counts.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(TOP_SHOWN);
        v
    }
}

/// The aggregates behind every panel but the feed, the incidents and the map.
#[derive(Debug, Clone)]
pub struct Stats {
    counters: Counters,
    series: VecDeque<Minute>,
    limited_by_policy: BTreeMap<String, u64>,
    risk: [u64; 10],
    ips: TopK<String>,
    asns: TopK<u32>,
    ja4: TopK<String>,
    keys: BTreeMap<String, (String, String)>,
}

/// The aggregates as sent to the browser.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsView {
    /// Totals since start.
    pub counters: Counters,
    /// The last minutes, oldest first.
    pub series: Vec<Minute>,
    /// `429`s per policy.
    pub limited_by_policy: BTreeMap<String, u64>,
    /// Risk scores of scored logins in ten bins of 0.1.
    pub risk_histogram: [u64; 10],
    /// Top client addresses by activity.
    pub top_ips: Vec<(String, u64)>,
    /// Top autonomous systems.
    pub top_asns: Vec<(u32, u64)>,
    /// Top JA4 fingerprints.
    pub top_ja4: Vec<(String, u64)>,
    /// Signing keys: kid → (alg, status).
    pub keys: BTreeMap<String, (String, String)>,
}

/// The series bucket of `time`, opening (and trimming) minutes as time moves. A late
/// activity counts in the newest minute: the series is a rate, not a log.
fn minute_of(series: &mut VecDeque<Minute>, time: Timestamp) -> &mut Minute {
    let m = time.as_unix_secs() / 60;
    if series.back().is_none_or(|last| last.minute < m) {
        series.push_back(Minute {
            minute: m,
            ..Minute::default()
        });
        while series.len() > SERIES_MINUTES {
            series.pop_front();
        }
    }
    let last = series.len() - 1;
    &mut series[last]
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            counters: Counters::default(),
            series: VecDeque::with_capacity(SERIES_MINUTES),
            limited_by_policy: BTreeMap::new(),
            risk: [0; 10],
            ips: TopK::new(),
            asns: TopK::new(),
            ja4: TopK::new(),
            keys: BTreeMap::new(),
        }
    }
}

impl Stats {
    /// Counts one activity.
    pub fn apply(&mut self, a: &Activity) {
        let minute = minute_of(&mut self.series, a.time);
        if let Some(ip) = a.origin.ip {
            self.ips.add(ip.to_string());
        }
        if let Some(asn) = a.origin.asn {
            self.asns.add(asn);
        }
        if let Some(ja4) = &a.origin.ja4 {
            self.ja4.add(ja4.clone());
        }
        let c = &mut self.counters;
        match &a.what {
            What::Login { result, score, .. } => {
                if let Some(s) = score.filter(|s| s.is_finite()) {
                    self.risk[((s.clamp(0.0, 1.0) * 10.0) as usize).min(9)] += 1;
                }
                match result {
                    LoginResult::Success => {
                        c.login_success += 1;
                        minute.success += 1;
                    }
                    LoginResult::Failure => {
                        c.login_failure += 1;
                        minute.failure += 1;
                    }
                    LoginResult::StepUp => {
                        c.login_step_up += 1;
                        minute.step_up += 1;
                    }
                    LoginResult::StepUpPassed => {
                        c.step_up_passed += 1;
                        minute.success += 1;
                    }
                    LoginResult::StepUpFailed => {
                        c.step_up_failed += 1;
                        minute.failure += 1;
                    }
                    LoginResult::Denied => {
                        c.login_denied += 1;
                        minute.blocked += 1;
                    }
                }
            }
            What::RateLimited { policy } => {
                c.rate_limited += 1;
                minute.limited += 1;
                if self.limited_by_policy.len() < MAX_POLICIES
                    || self.limited_by_policy.contains_key(policy)
                {
                    *self.limited_by_policy.entry(policy.clone()).or_default() += 1;
                }
            }
            What::Blocked { .. } => {
                c.blocked += 1;
                minute.blocked += 1;
            }
            What::IntelHit { .. } => {
                c.intel_hits += 1;
                minute.blocked += 1;
            }
            What::Revoked { .. } => c.revocations += 1,
            What::Idempotency { outcome, .. } => match outcome.as_str() {
                "replay" => c.idem_replay += 1,
                "conflict" => c.idem_conflict += 1,
                "mismatch" => c.idem_mismatch += 1,
                _ => c.idem_coalesced += 1,
            },
            What::Detection { .. } => c.detections += 1,
            What::Action { verdict, .. } => {
                if verdict == "execute" {
                    c.actions += 1;
                }
            }
            What::Key { kid, alg, status } => {
                self.keys.insert(kid.clone(), (alg.clone(), status.clone()));
                // Keep the newest few: a key ring never holds many.
                while self.keys.len() > 16 {
                    self.keys.pop_first();
                }
            }
            What::CtAlert { .. } => c.ct_alerts += 1,
        }
    }

    /// The view the browser gets.
    pub fn view(&self) -> StatsView {
        StatsView {
            counters: self.counters,
            series: self.series.iter().copied().collect(),
            limited_by_policy: self.limited_by_policy.clone(),
            risk_histogram: self.risk,
            top_ips: self.ips.top(),
            top_asns: self.asns.top(),
            top_ja4: self.ja4.top(),
            keys: self.keys.clone(),
        }
    }

    /// Totals since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::Origin;

    fn at(secs: u64, what: What, ip: &str) -> Activity {
        Activity::new(
            Timestamp::from_unix_secs(secs),
            Origin {
                ip: Some(ip.parse().unwrap()),
                ..Origin::default()
            },
            what,
        )
    }

    #[test]
    fn counts_series_and_histogram() {
        let mut s = Stats::default();
        let login = |result, score| What::Login {
            user: "u".into(),
            result,
            score,
        };
        s.apply(&at(
            60,
            login(LoginResult::Success, Some(0.05)),
            "192.0.2.1",
        ));
        s.apply(&at(
            61,
            login(LoginResult::Failure, Some(0.95)),
            "192.0.2.2",
        ));
        s.apply(&at(130, login(LoginResult::StepUp, Some(1.0)), "192.0.2.2"));
        s.apply(&at(
            131,
            What::RateLimited {
                policy: "login-ip".into(),
            },
            "192.0.2.2",
        ));
        let v = s.view();
        assert_eq!(v.counters.login_success, 1);
        assert_eq!(v.counters.login_failure, 1);
        assert_eq!(v.counters.login_step_up, 1);
        assert_eq!(v.counters.rate_limited, 1);
        assert_eq!(v.limited_by_policy["login-ip"], 1);
        assert_eq!(v.risk_histogram[0], 1);
        assert_eq!(v.risk_histogram[9], 2);
        assert_eq!(v.series.len(), 2);
        assert_eq!((v.series[0].success, v.series[0].failure), (1, 1));
        assert_eq!((v.series[1].step_up, v.series[1].limited), (1, 1));
        assert_eq!(v.top_ips[0], ("192.0.2.2".to_owned(), 3));
    }

    #[test]
    fn a_spray_of_sources_keeps_memory_fixed_and_the_heaviest_on_top() {
        let mut s = Stats::default();
        let blocked = || What::Blocked { reason: "x".into() };
        // 100,000 one-off addresses, and one source 5,000 times among them: more than
        // a 64th of the stream, which Space-Saving guarantees to keep, never under-counted.
        for i in 0..100_000u32 {
            let ip = std::net::Ipv4Addr::from(0xc000_0000 + i);
            s.apply(&at(1, blocked(), &ip.to_string()));
            if i % 20 == 0 {
                s.apply(&at(1, blocked(), "203.0.113.9"));
            }
        }
        assert!(s.ips.counts.len() <= TOP_CAPACITY);
        let top = s.view().top_ips;
        assert_eq!(top[0].0, "203.0.113.9", "{top:?}");
        assert!(top[0].1 >= 5_000);
        // The series keeps at most SERIES_MINUTES minutes.
        for m in 0..100 {
            s.apply(&at(
                m * 60,
                What::Blocked { reason: "x".into() },
                "192.0.2.1",
            ));
        }
        assert_eq!(s.view().series.len(), SERIES_MINUTES);
    }
}
