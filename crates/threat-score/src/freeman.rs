//! The Freeman et al. (NDSS 2016) model, as implemented by das-group/rba-algorithm.
//!
//! Feature values are stored as keyed 64-bit hashes ([`crate::Hashes`]); level `l`
//! of an attempt is `values[l]`, 0 when unknown. Levels 0..3 are IP → ASN → country,
//! levels 3..7 are user agent → browser+version → OS+version → device type.
//!
//! For one hierarchy with levels `l = 0..L`, weights `w_l`, a user history of `n_u`
//! successful logins of which `c_u(l)` share the attempt's value at level `l`, and a
//! global history of `N` logins with counts `c_g(l)` and `D(l)` distinct values:
//!
//! ```text
//! local  = Σ_l w_l · c_u(l) / n_u                       (no smoothing for the user)
//! g_0    = c_g(0)/(c_g(0)+L) · c_g(0)/(N+U)  if c_g(0) > 0, U = 1 + Σ_{l≥1} D(l)
//!        = 1/(N+U)                           otherwise   (smoothing, top level only)
//! g_l    = c_g(l)/N                          for l ≥ 1   (0 when unseen)
//! global = Σ_l w_l · g_l
//! local  = global / 4                        if local = 0 (the never-seen rule)
//! factor = global / local
//! S      = Π_hierarchies factor · N / (users · n_u)
//! ```
//!
//! `L` in `g_0` is the reference's per-value unseen count: one plus the number of
//! distinct lower-level values among the logins with that top value. Our lower
//! levels are functions of the top value (one parser, one lookup), so that is `L`.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Number of hashed feature levels in a login.
pub const LEVELS: usize = 7;
/// IP → ASN → country weights of the reference implementation.
pub const IP_WEIGHTS: [f64; 3] = [0.6, 0.3, 0.1];
/// User agent → browser+version → OS+version → device type weights of the reference
/// implementation (fitted on the RBA data set).
pub const UA_WEIGHTS: [f64; 4] = [
    0.538_665_384_055_135_9,
    0.268_045_149_862_566_6,
    0.188_182_951_001_095_36,
    0.005_106_515_081_202_152_5,
];

/// One successful login as remembered: when (Unix seconds, saturating in 2106), its
/// hashed feature values, and its raw score `S` against the history before it (NaN
/// when not scored: the user's first login, or the per-user scale off).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) at_secs: u32,
    pub(crate) raw: f32,
    pub(crate) values: [u64; LEVELS],
}

// The stored score fits beside a 32-bit time: an entry stays 64 bytes.
const _: () = assert!(std::mem::size_of::<Entry>() == 64);

/// Unix seconds as stored in an [`Entry`].
pub(crate) fn entry_secs(secs: u64) -> u32 {
    u32::try_from(secs).unwrap_or(u32::MAX)
}

/// The terms of one hierarchy, kept for explanations and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HierarchyTerms {
    /// The user's likelihood of the attempt's values (after the never-seen rule).
    pub local: f64,
    /// The global likelihood of the attempt's values.
    pub global: f64,
    /// `global / local`: below 1 is familiar, 4 is never seen by this user.
    pub factor: f64,
    /// Whether the user had never seen any level of this hierarchy.
    pub never_seen: bool,
}

/// The Freeman score of one attempt with its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreemanScore {
    /// IP → ASN → country terms.
    pub ip: HierarchyTerms,
    /// User-agent hierarchy terms.
    pub ua: HierarchyTerms,
    /// `N / (users · n_u)`: how rarely this user logs in compared to the average.
    pub user_factor: f64,
    /// The unbounded score `S`.
    pub raw: f64,
    /// The user's history length `n_u`.
    pub history: usize,
    /// With a per-user scale ([`crate::UserScale`]): the median raw `S` of the user's
    /// recent logins that `raw` was divided by; `None` when the score is on the global
    /// scale (scale off, or too few scored logins yet).
    pub typical: Option<f64>,
}

/// Per-user and global histories.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Model {
    pub(crate) users: HashMap<u64, VecDeque<Entry>>,
    /// Count of each (level-tagged) value over all retained user entries.
    counts: HashMap<u64, u32>,
    distinct: [u64; LEVELS],
    total: u64,
}

impl Model {
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    pub(crate) fn value_count(&self) -> usize {
        self.counts.len()
    }

    fn count(&self, v: u64) -> u64 {
        if v == 0 {
            0
        } else {
            self.counts.get(&v).copied().map_or(0, u64::from)
        }
    }

    fn add_global(&mut self, e: &Entry) {
        for (l, &v) in e.values.iter().enumerate() {
            if v == 0 {
                continue;
            }
            let c = self.counts.entry(v).or_insert(0);
            if *c == 0 {
                self.distinct[l] += 1;
            }
            *c = c.saturating_add(1);
        }
        self.total += 1;
    }

    fn remove_global(&mut self, e: &Entry) {
        for (l, &v) in e.values.iter().enumerate() {
            if v == 0 {
                continue;
            }
            if let Some(c) = self.counts.get_mut(&v) {
                *c -= 1;
                if *c == 0 {
                    self.counts.remove(&v);
                    self.distinct[l] = self.distinct[l].saturating_sub(1);
                }
            }
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Records a successful login; drops the user's entries older than `max_age_secs`
    /// and the oldest beyond `cap`, from both histories.
    pub(crate) fn learn(&mut self, user: u64, e: Entry, cap: usize, max_age_secs: u64) {
        let mut history = self.users.remove(&user).unwrap_or_default();
        let mut dropped = Vec::new();
        let horizon = u64::from(e.at_secs).saturating_sub(max_age_secs);
        while let Some(front) = history.front() {
            if history.len() >= cap.max(1) || u64::from(front.at_secs) < horizon {
                dropped.extend(history.pop_front());
            } else {
                break;
            }
        }
        for d in &dropped {
            self.remove_global(d);
        }
        history.push_back(e);
        self.add_global(&e);
        self.users.insert(user, history);
    }

    /// Forgets a user entirely (memory budget, account deletion).
    pub(crate) fn forget(&mut self, user: u64) {
        if let Some(history) = self.users.remove(&user) {
            for e in &history {
                self.remove_global(e);
            }
        }
    }

    fn hierarchy(
        &self,
        history: &VecDeque<Entry>,
        values: &[u64],
        range: std::ops::Range<usize>,
        weights: &[f64],
    ) -> HierarchyTerms {
        let n_u = history.len() as f64;
        let n = self.total as f64;
        let levels = range.len();
        let mut local = 0.0;
        let mut global = 0.0;
        let unseen_global = 1.0
            + range
                .clone()
                .skip(1)
                .map(|l| self.distinct[l] as f64)
                .sum::<f64>();
        for (i, l) in range.enumerate() {
            let v = values[l];
            let c_u = if v == 0 {
                0
            } else {
                history.iter().filter(|e| e.values[l] == v).count()
            };
            if n_u > 0.0 {
                local += weights[i] * c_u as f64 / n_u;
            }
            let c_g = self.count(v) as f64;
            let g = if i == 0 {
                if c_g > 0.0 {
                    c_g / (c_g + levels as f64) * (c_g / (n + unseen_global))
                } else {
                    1.0 / (n + unseen_global)
                }
            } else if c_g > 0.0 && n > 0.0 {
                c_g / n
            } else {
                0.0
            };
            global += weights[i] * g;
        }
        let never_seen = local == 0.0;
        if never_seen {
            local = global / 4.0;
        }
        HierarchyTerms {
            local,
            global,
            factor: global / local,
            never_seen,
        }
    }

    /// The Freeman score, or `None` for a user without history (the formula divides
    /// by `n_u`).
    pub(crate) fn score(&self, user: u64, values: &[u64; LEVELS]) -> Option<FreemanScore> {
        let history = self.users.get(&user).filter(|h| !h.is_empty())?;
        let ip = self.hierarchy(history, values, 0..3, &IP_WEIGHTS);
        let ua = self.hierarchy(history, values, 3..7, &UA_WEIGHTS);
        let users = self.users.len().max(1) as f64;
        let user_factor = self.total as f64 / (users * history.len() as f64);
        Some(FreemanScore {
            ip,
            ua,
            user_factor,
            raw: ip.factor * ua.factor * user_factor,
            history: history.len(),
            typical: None,
        })
    }

    /// The median raw `S` over the user's last `window` scored logins (the upper one
    /// of an even count), or `None` with fewer than `min_samples` of them.
    pub(crate) fn typical(&self, user: u64, window: usize, min_samples: usize) -> Option<f64> {
        let history = self.users.get(&user)?;
        let mut recent: Vec<f32> = history
            .iter()
            .rev()
            .map(|e| e.raw)
            .filter(|r| r.is_finite())
            .take(window)
            .collect();
        if recent.len() < min_samples.max(1) {
            return None;
        }
        let mid = recent.len() / 2;
        let (_, m, _) = recent.select_nth_unstable_by(mid, f32::total_cmp);
        Some(f64::from(*m))
    }
}

#[cfg(test)]
mod tests;
