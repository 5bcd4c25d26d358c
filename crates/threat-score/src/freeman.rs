//! The Freeman et al. (NDSS 2016) model, as implemented by das-group/rba-algorithm.
//!
//! Feature values are stored as keyed 64-bit hashes; level `l`
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
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::sync::{read, write};

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

/// Shards of the per-user state and of the global value counts: a power of two, so a
/// scorer shared by a few tasks rarely waits on a lock.
pub(crate) const SHARDS: usize = 16;

/// Bytes accounted per user beyond its entries (map slot, deque header, fix).
pub(crate) const USER_OVERHEAD: usize = 96;
/// Bytes accounted per global value count (map slot).
pub(crate) const VALUE_OVERHEAD: usize = 24;

/// A user's last known location, for impossible travel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fix {
    pub(crate) at_secs: u64,
    pub(crate) lat: f32,
    pub(crate) lon: f32,
}

/// What is kept per user: the retained successful logins and the last location.
#[derive(Debug, Clone, Default)]
pub(crate) struct User {
    pub(crate) history: VecDeque<Entry>,
    pub(crate) fix: Option<Fix>,
}

/// One shard of users, keyed by the keyed hash of the normalized user id.
pub(crate) type Shard = HashMap<u64, User>;

/// Per-user histories (sharded by user) and the global history's value counts
/// (sharded by value), shared by reference: every method takes `&self`.
///
/// Lock order: a user shard, then value-count shards; never two user shards at once.
/// The global totals are atomics: a score that runs beside a record may see the
/// record's values counted at some levels and not yet at others (it is scored as if
/// it came a moment earlier or later), never a negative or torn count.
#[derive(Debug)]
pub(crate) struct Model {
    shards: Box<[RwLock<Shard>]>,
    /// Count of each (level-tagged) value over all retained user entries.
    counts: Box<[RwLock<HashMap<u64, u32>>]>,
    distinct: [AtomicU64; LEVELS],
    total: AtomicU64,
    users: AtomicUsize,
    entries: AtomicUsize,
    values: AtomicUsize,
    /// Where the next eviction starts looking, so evictions spread over the shards.
    cursor: AtomicUsize,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            counts: (0..SHARDS).map(|_| RwLock::default()).collect(),
            distinct: Default::default(),
            total: AtomicU64::new(0),
            users: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            values: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
        }
    }
}

fn shard_of(key: u64) -> usize {
    // Keys are SipHash outputs: any bits are uniform.
    (key % SHARDS as u64) as usize
}

impl Model {
    /// The shard holding `user`.
    pub(crate) fn shard(&self, user: u64) -> &RwLock<Shard> {
        &self.shards[shard_of(user)]
    }

    /// Every shard, for saving the state.
    pub(crate) fn shards(&self) -> &[RwLock<Shard>] {
        &self.shards
    }

    /// Retained successful logins over all users (`N`).
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Relaxed)
    }

    /// Users with a retained history.
    pub(crate) fn users(&self) -> usize {
        self.users.load(Relaxed)
    }

    /// Bytes accounted against the memory budget, over all shards.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.users.load(Relaxed) * USER_OVERHEAD
            + self.entries.load(Relaxed) * std::mem::size_of::<Entry>()
            + self.values.load(Relaxed) * VALUE_OVERHEAD
    }

    fn count(&self, v: u64) -> u64 {
        if v == 0 {
            0
        } else {
            read(&self.counts[shard_of(v)])
                .get(&v)
                .copied()
                .map_or(0, u64::from)
        }
    }

    fn add_global(&self, e: &Entry) {
        // The total first: a concurrent score never sees a count above it.
        self.total.fetch_add(1, Relaxed);
        for (l, &v) in e.values.iter().enumerate() {
            if v == 0 {
                continue;
            }
            let mut counts = write(&self.counts[shard_of(v)]);
            let c = counts.entry(v).or_insert(0);
            if *c == 0 {
                self.distinct[l].fetch_add(1, Relaxed);
                self.values.fetch_add(1, Relaxed);
            }
            *c = c.saturating_add(1);
        }
    }

    fn remove_global(&self, e: &Entry) {
        for (l, &v) in e.values.iter().enumerate() {
            if v == 0 {
                continue;
            }
            let mut counts = write(&self.counts[shard_of(v)]);
            if let Some(c) = counts.get_mut(&v) {
                *c -= 1;
                if *c == 0 {
                    counts.remove(&v);
                    self.distinct[l].fetch_sub(1, Relaxed);
                    self.values.fetch_sub(1, Relaxed);
                }
            }
        }
        self.total.fetch_sub(1, Relaxed);
    }

    /// Records a successful login in `shard` (the user's, write-locked by the caller);
    /// drops the user's entries older than `max_age_secs` and the oldest beyond `cap`,
    /// from both histories.
    pub(crate) fn learn_in(
        &self,
        shard: &mut Shard,
        user: u64,
        e: Entry,
        cap: usize,
        max_age_secs: u64,
    ) {
        let u = shard.entry(user).or_insert_with(|| {
            self.users.fetch_add(1, Relaxed);
            User::default()
        });
        let horizon = u64::from(e.at_secs).saturating_sub(max_age_secs);
        while let Some(front) = u.history.front() {
            if u.history.len() >= cap.max(1) || u64::from(front.at_secs) < horizon {
                if let Some(d) = u.history.pop_front() {
                    self.remove_global(&d);
                    self.entries.fetch_sub(1, Relaxed);
                }
            } else {
                break;
            }
        }
        u.history.push_back(e);
        self.add_global(&e);
        self.entries.fetch_add(1, Relaxed);
    }

    /// [`learn_in`](Self::learn_in), locking the user's shard.
    #[cfg(test)]
    pub(crate) fn learn(&self, user: u64, e: Entry, cap: usize, max_age_secs: u64) {
        self.learn_in(&mut write(self.shard(user)), user, e, cap, max_age_secs);
    }

    /// Forgets a user of `shard` entirely; whether there was one.
    pub(crate) fn forget_in(&self, shard: &mut Shard, user: u64) -> bool {
        let Some(u) = shard.remove(&user) else {
            return false;
        };
        for e in &u.history {
            self.remove_global(e);
        }
        self.entries.fetch_sub(u.history.len(), Relaxed);
        self.users.fetch_sub(1, Relaxed);
        true
    }

    /// Forgets a user entirely (account deletion).
    pub(crate) fn forget(&self, user: u64) {
        self.forget_in(&mut write(self.shard(user)), user);
    }

    /// Forgets sampled least-recently-active users (8 sampled per shard visited, never
    /// `keep`) until the accounted memory fits `budget`; how many went. The budget is
    /// global: the accounted bytes are atomics over all shards.
    pub(crate) fn evict(&self, keep: u64, budget: usize) -> u64 {
        let mut evicted = 0;
        let mut empty_shards = 0;
        while self.memory_bytes() > budget && self.users() > 1 && empty_shards < SHARDS {
            let i = self.cursor.fetch_add(1, Relaxed) % SHARDS;
            let mut shard = write(&self.shards[i]);
            let victim = shard
                .iter()
                .filter(|(u, _)| **u != keep)
                .take(8)
                .min_by_key(|(_, s)| s.history.back().map_or(0, |e| e.at_secs))
                .map(|(u, _)| *u);
            match victim {
                Some(u) => {
                    self.forget_in(&mut shard, u);
                    evicted += 1;
                    empty_shards = 0;
                }
                None => empty_shards += 1,
            }
        }
        evicted
    }

    fn hierarchy(
        &self,
        history: &VecDeque<Entry>,
        values: &[u64],
        range: std::ops::Range<usize>,
        weights: &[f64],
    ) -> HierarchyTerms {
        let n_u = history.len() as f64;
        let n = self.total() as f64;
        let levels = range.len();
        let mut local = 0.0;
        let mut global = 0.0;
        let unseen_global = 1.0
            + range
                .clone()
                .skip(1)
                .map(|l| self.distinct[l].load(Relaxed) as f64)
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

    /// The Freeman score against `history` (the user's, read from a locked shard), or
    /// `None` for an empty history (the formula divides by `n_u`).
    pub(crate) fn score_history(
        &self,
        history: &VecDeque<Entry>,
        values: &[u64; LEVELS],
    ) -> Option<FreemanScore> {
        if history.is_empty() {
            return None;
        }
        let ip = self.hierarchy(history, values, 0..3, &IP_WEIGHTS);
        let ua = self.hierarchy(history, values, 3..7, &UA_WEIGHTS);
        let users = self.users().max(1) as f64;
        let user_factor = self.total() as f64 / (users * history.len() as f64);
        Some(FreemanScore {
            ip,
            ua,
            user_factor,
            raw: ip.factor * ua.factor * user_factor,
            history: history.len(),
            typical: None,
        })
    }

    /// The Freeman score of `user`'s attempt with `values`.
    #[cfg(test)]
    pub(crate) fn score(&self, user: u64, values: &[u64; LEVELS]) -> Option<FreemanScore> {
        let shard = read(self.shard(user));
        self.score_history(&shard.get(&user)?.history, values)
    }

    /// `typical` of `user`'s history.
    #[cfg(test)]
    pub(crate) fn typical(&self, user: u64, window: usize, min_samples: usize) -> Option<f64> {
        typical(
            &read(self.shard(user)).get(&user)?.history,
            window,
            min_samples,
        )
    }

    /// Retained logins of `user`.
    #[cfg(test)]
    pub(crate) fn history_len(&self, user: u64) -> usize {
        read(self.shard(user))
            .get(&user)
            .map_or(0, |u| u.history.len())
    }
}

/// The median raw `S` over the last `window` scored logins of `history` (the upper
/// one of an even count), or `None` with fewer than `min_samples` of them.
pub(crate) fn typical(history: &VecDeque<Entry>, window: usize, min_samples: usize) -> Option<f64> {
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

#[cfg(test)]
mod tests;
