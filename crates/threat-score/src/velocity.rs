//! Velocity and spray signals in fixed memory.
//!
//! Each window (1 min, 10 min, 1 h) is a ring of time buckets; each bucket is one
//! count-min sketch shared by every counter (keys are tagged by what they count).
//! A count is the sum of the bucket estimates inside the window, so it over-estimates
//! by at most the sketch error and never under-estimates. Distinct usernames per
//! source are counted by incrementing a per-source counter the first time the
//! (source, username) pair's own estimate in the window is zero: a collision can only
//! make it miss a user, so spray counts err low; only two failures of the same
//! (source, username) pair recorded at the same instant by two tasks can both count it.
//!
//! Shared without a `Mutex`: counters are atomics, so records and scores from several
//! tasks run side by side; a window's lock is taken for writing only when a bucket
//! rotates to a new time slot (once per bucket length), and the heavy-hitter summaries
//! have one small lock per bucket, taken only for failed logins.
//!
//! Heavy hitters: each bucket also keeps one Space-Saving summary (Metwally et al.,
//! 2005) per kind of source of failed logins (IP, /24 or /64, ASN) with `top_k` slots.
//! In a bucket with `n` failed logins, every source of that kind with more than
//! `n / top_k` of them is kept, and a kept source's count over-estimates by at most its
//! recorded error. A window's top list adds up its buckets' summaries.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::sync::{lock, read, write};

/// The windows: (length in seconds, number of buckets).
pub const WINDOWS: [(u64, u64); 3] = [(60, 6), (600, 10), (3600, 12)];

/// What a counter counts, tagged into its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub(crate) enum Counter {
    Failures = 1,
    Successes = 2,
    DistinctFailedUsers = 3,
    Pair = 4,
}

/// Thresholds per window for one signal: the count at which it alone reaches 0.5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowThresholds(pub [f64; 3]);

/// Velocity thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VelocityConfig {
    /// Count-min sketch width (counters per row).
    pub width: usize,
    /// Count-min sketch depth (rows).
    pub depth: usize,
    /// Failed logins on one username (brute force).
    pub user_failures: WindowThresholds,
    /// Failed logins from one IP (credential stuffing).
    pub ip_failures: WindowThresholds,
    /// Failed logins from one /24 or /64.
    pub prefix_failures: WindowThresholds,
    /// Failed logins from one ASN.
    pub asn_failures: WindowThresholds,
    /// Distinct usernames failing from one IP or prefix (password spray).
    pub distinct_users: WindowThresholds,
    /// Heavy-hitter slots per time bucket (Space-Saving) for the top failing sources.
    pub top_k: usize,
}

impl Default for VelocityConfig {
    fn default() -> Self {
        VelocityConfig {
            width: 4096,
            depth: 4,
            user_failures: WindowThresholds([5.0, 15.0, 40.0]),
            ip_failures: WindowThresholds([10.0, 40.0, 150.0]),
            prefix_failures: WindowThresholds([20.0, 80.0, 300.0]),
            asn_failures: WindowThresholds([100.0, 500.0, 2000.0]),
            distinct_users: WindowThresholds([5.0, 15.0, 40.0]),
            top_k: 128,
        }
    }
}

/// A source of failed logins, as reported by the heavy-hitter lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureSource {
    /// One address.
    Ip(IpAddr),
    /// A network: the /24 (IPv4) or /64 (IPv6) holding the address, as its first address
    /// and prefix length.
    Prefix(IpAddr, u8),
    /// An autonomous system.
    Asn(u32),
}

/// The kinds of [`FailureSource`], each with its own heavy-hitter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Addresses.
    Ip,
    /// /24 and /64 networks.
    Prefix,
    /// Autonomous systems.
    Asn,
}

impl FailureSource {
    /// Its kind.
    pub fn kind(&self) -> SourceKind {
        match self {
            FailureSource::Ip(_) => SourceKind::Ip,
            FailureSource::Prefix(..) => SourceKind::Prefix,
            FailureSource::Asn(_) => SourceKind::Asn,
        }
    }

    /// The /24 or /64 holding `ip`.
    pub fn prefix_of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => {
                let [a, b, c, _] = v4.octets();
                FailureSource::Prefix(IpAddr::from([a, b, c, 0]), 24)
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                FailureSource::Prefix(IpAddr::V6(net), 64)
            }
        }
    }
}

impl std::fmt::Display for FailureSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureSource::Ip(ip) => write!(f, "{ip}"),
            FailureSource::Prefix(net, len) => write!(f, "{net}/{len}"),
            FailureSource::Asn(n) => write!(f, "AS{n}"),
        }
    }
}

/// One entry of a window's top failing sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeavyHitter {
    /// The source.
    pub source: FailureSource,
    /// Estimated failed logins from it in the window: never below the true count.
    pub count: u64,
    /// Largest possible over-estimate: the true count is in `count - error ..= count`.
    pub error: u64,
}

/// A Space-Saving summary with a fixed number of slots.
#[derive(Debug, Clone, Default)]
struct SpaceSaving {
    /// (source, count, error), at most `cap` of them.
    slots: Vec<(FailureSource, u32, u32)>,
}

impl SpaceSaving {
    fn add(&mut self, source: FailureSource, cap: usize) {
        if let Some(s) = self.slots.iter_mut().find(|s| s.0 == source) {
            s.1 = s.1.saturating_add(1);
        } else if self.slots.len() < cap {
            self.slots.push((source, 1, 0));
        } else if let Some(min) = self.slots.iter_mut().min_by_key(|s| s.1) {
            // Evict the smallest: the newcomer inherits its count as error.
            *min = (source, min.1.saturating_add(1), min.1);
        }
    }

    /// The count below which an absent source may hide (0 when not full).
    fn floor(&self, cap: usize) -> u32 {
        if self.slots.len() < cap {
            0
        } else {
            self.slots.iter().map(|s| s.1).min().unwrap_or(0)
        }
    }
}

#[derive(Debug)]
struct Bucket {
    /// The time slot counted, `u64::MAX` before the first.
    epoch: AtomicU64,
    counters: Box<[AtomicU32]>,
    /// One summary per [`SourceKind`], in declaration order.
    top: Mutex<[SpaceSaving; 3]>,
}

#[derive(Debug)]
struct Window {
    bucket_secs: u64,
    buckets: Vec<Bucket>,
    /// Read: counting and reading; write: clearing a bucket for a new time slot.
    rotate: RwLock<()>,
}

/// The counters of every window.
#[derive(Debug)]
pub(crate) struct Velocity {
    width: usize,
    depth: usize,
    top_k: usize,
    windows: Vec<Window>,
}

/// The velocity risks of one attempt, each in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VelocityRisk {
    /// Failures on the username.
    pub brute_force: f64,
    /// Failures from the IP, prefix or ASN.
    pub stuffing: f64,
    /// Distinct usernames failing from the IP or prefix.
    pub spray: f64,
    /// The largest per-window failure count on the username.
    pub user_failures: u64,
    /// The largest per-window failure count from the IP.
    pub ip_failures: u64,
    /// The largest per-window failure count from the IP's prefix (/24 or /64).
    pub prefix_failures: u64,
    /// The largest per-window failure count from the IP's ASN.
    pub asn_failures: u64,
    /// The largest per-window distinct failing usernames from the IP.
    pub ip_distinct_users: u64,
    /// The largest per-window distinct failing usernames from the IP's prefix.
    pub prefix_distinct_users: u64,
    /// The IP's own failures (on any username) against the brute-force thresholds:
    /// 0.5 or more when this address alone failed as often as a brute force does.
    /// A brute force is blamed on the address only then: the username's failures may
    /// come from anywhere, and the attempt scored may be the owner's.
    pub ip_brute_force: f64,
    /// The IP's own failures against the stuffing thresholds (`stuffing` is the largest
    /// of the IP's, its prefix's and its ASN's).
    pub ip_stuffing: f64,
    /// The IP's own distinct failing usernames against the spray thresholds (`spray`
    /// is the larger of the IP's and its prefix's).
    pub ip_spray: f64,
}

/// `1 − 2^−x`: 0 at 0, 0.5 at the threshold, monotone, below 1 for any finite x.
fn saturate(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        1.0 - (-x).exp2()
    } else if x > 0.0 {
        1.0
    } else {
        0.0
    }
}

/// The keys of one attempt's sources: ip, prefix, asn (0 when unknown).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sources {
    pub(crate) user: u64,
    pub(crate) ip: u64,
    pub(crate) prefix: u64,
    pub(crate) asn: u64,
}

fn mix(a: u64, b: u64) -> u64 {
    // splitmix64 finaliser over the pair: spreads keys over the sketch rows.
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Velocity {
    /// Sketches of `cfg`'s sizes, which `Config::validate` bounds.
    pub(crate) fn new(cfg: &VelocityConfig) -> Self {
        let (width, depth, top_k) = (cfg.width, cfg.depth, cfg.top_k);
        let windows = WINDOWS
            .iter()
            .map(|&(len, n)| Window {
                bucket_secs: len / n,
                buckets: (0..n)
                    .map(|_| Bucket {
                        epoch: AtomicU64::new(u64::MAX),
                        counters: (0..width * depth).map(|_| AtomicU32::new(0)).collect(),
                        top: Mutex::default(),
                    })
                    .collect(),
                rotate: RwLock::new(()),
            })
            .collect();
        Velocity {
            width,
            depth,
            top_k,
            windows,
        }
    }

    /// Bytes held by the counters and heavy-hitter slots (fixed at construction).
    pub(crate) fn memory_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(FailureSource, u32, u32)>();
        self.windows
            .iter()
            .map(|w| w.buckets.len() * (self.width * self.depth * 4 + 3 * self.top_k * slot))
            .sum()
    }

    /// Runs `f` on the current bucket of window `w` at `now`, cleared first if it held
    /// an older time slot.
    fn with_bucket<T>(&self, w: usize, now: u64, f: impl FnOnce(&Bucket) -> T) -> T {
        let win = &self.windows[w];
        let epoch = now / win.bucket_secs;
        let b = &win.buckets[(epoch % win.buckets.len() as u64) as usize];
        {
            let _counting = read(&win.rotate);
            if b.epoch.load(Relaxed) == epoch {
                return f(b);
            }
        }
        let _rotating = write(&win.rotate);
        if b.epoch.load(Relaxed) != epoch {
            b.epoch.store(epoch, Relaxed);
            b.counters.iter().for_each(|c| c.store(0, Relaxed));
            lock(&b.top).iter_mut().for_each(|t| t.slots.clear());
        }
        f(b)
    }

    /// Counts one failed login from each of `sources` in the heavy-hitter summaries.
    pub(crate) fn record_failure_sources(&self, now: u64, sources: &[FailureSource]) {
        let cap = self.top_k;
        for w in 0..self.windows.len() {
            self.with_bucket(w, now, |b| {
                let mut top = lock(&b.top);
                for s in sources {
                    top[s.kind() as usize].add(*s, cap);
                }
            });
        }
    }

    /// The `n` sources of `kind` with the most failed logins in window `w` (index into
    /// [`WINDOWS`]) at `now`, largest first.
    pub(crate) fn top_failing(
        &self,
        w: usize,
        now: u64,
        kind: SourceKind,
        n: usize,
    ) -> Vec<HeavyHitter> {
        let k = kind as usize;
        let Some(win) = self.windows.get(w) else {
            return Vec::new();
        };
        let current = now / win.bucket_secs;
        let oldest = current.saturating_sub(win.buckets.len() as u64 - 1);
        let live: Vec<SpaceSaving> = {
            let _counting = read(&win.rotate);
            win.buckets
                .iter()
                .filter(|b| {
                    let e = b.epoch.load(Relaxed);
                    e != u64::MAX && e >= oldest && e <= current
                })
                .map(|b| lock(&b.top)[k].clone())
                .collect()
        };
        let mut sum: std::collections::HashMap<FailureSource, (u64, u64)> =
            std::collections::HashMap::new();
        for b in &live {
            for &(s, c, e) in &b.slots {
                let x = sum.entry(s).or_insert((0, 0));
                x.0 += u64::from(c);
                x.1 += u64::from(e);
            }
        }
        // A source missing from a full bucket may have had up to that bucket's floor.
        let mut out: Vec<HeavyHitter> = sum
            .into_iter()
            .map(|(source, (count, error))| {
                let hidden: u64 = live
                    .iter()
                    .filter(|b| !b.slots.iter().any(|s| s.0 == source))
                    .map(|b| u64::from(b.floor(self.top_k)))
                    .sum();
                HeavyHitter {
                    source,
                    count: count + hidden,
                    error: error + hidden,
                }
            })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.error.cmp(&b.error)));
        out.truncate(n);
        out
    }

    fn slots(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        (0..self.depth).map(move |row| {
            row * self.width + (mix(key, row as u64 + 1) % self.width as u64) as usize
        })
    }

    fn key(counter: Counter, a: u64, b: u64) -> u64 {
        mix(mix(counter as u64, a), b)
    }

    /// The estimate of `key` in window `w` at `now`, summed over the live buckets
    /// (skipping the one at `skip`, a time slot).
    fn estimate_in(&self, w: usize, now: u64, key: u64, skip: Option<u64>) -> u64 {
        let win = &self.windows[w];
        let current = now / win.bucket_secs;
        let oldest = current.saturating_sub(win.buckets.len() as u64 - 1);
        let _counting = read(&win.rotate);
        let mut total = 0u64;
        for b in &win.buckets {
            let e = b.epoch.load(Relaxed);
            if e != u64::MAX && e >= oldest && e <= current && Some(e) != skip {
                total += self
                    .slots(key)
                    .map(|s| u64::from(b.counters[s].load(Relaxed)))
                    .min()
                    .unwrap_or(0);
            }
        }
        total
    }

    /// Adds one to `key` in the current bucket of window `w`; the key's estimate in
    /// that bucket before (the smallest of its rows, as a count-min read).
    fn bump(&self, w: usize, now: u64, key: u64) -> u64 {
        self.with_bucket(w, now, |b| {
            self.slots(key)
                .map(|s| {
                    // Saturating: a wrapped counter would read as few failures.
                    let prev = b.counters[s]
                        .fetch_update(Relaxed, Relaxed, |c| c.checked_add(1))
                        .unwrap_or(u32::MAX);
                    u64::from(prev)
                })
                .min()
                .unwrap_or(0)
        })
    }

    /// Records one login attempt at `now` (unix seconds).
    pub(crate) fn record(&self, now: u64, src: Sources, success: bool) {
        let counter = if success {
            Counter::Successes
        } else {
            Counter::Failures
        };
        for w in 0..self.windows.len() {
            for (tag, v) in [(1, src.user), (2, src.ip), (3, src.prefix), (4, src.asn)] {
                if v != 0 {
                    self.bump(w, now, Self::key(counter, tag, v));
                }
            }
            if !success {
                let current = now / self.windows[w].bucket_secs;
                for (tag, v) in [(2, src.ip), (3, src.prefix)] {
                    if v == 0 {
                        continue;
                    }
                    // First failure of this (source, user) pair in the window: one more
                    // distinct user. The pair's count is read and raised in one step.
                    let pair = Self::key(Counter::Pair, mix(tag, v), src.user);
                    let before =
                        self.bump(w, now, pair) + self.estimate_in(w, now, pair, Some(current));
                    if before == 0 {
                        self.bump(w, now, Self::key(Counter::DistinctFailedUsers, tag, v));
                    }
                }
            }
        }
    }

    /// Per window, the estimates of `keys` (0 for a key of 0) at `now`: one read lock
    /// per window, not per key.
    fn estimates<const N: usize>(&self, now: u64, keys: [u64; N]) -> [[u64; WINDOWS.len()]; N] {
        let mut out = [[0; WINDOWS.len()]; N];
        for (w, win) in self.windows.iter().enumerate() {
            let current = now / win.bucket_secs;
            let oldest = current.saturating_sub(win.buckets.len() as u64 - 1);
            let _counting = read(&win.rotate);
            for b in &win.buckets {
                let e = b.epoch.load(Relaxed);
                if e == u64::MAX || e < oldest || e > current {
                    continue;
                }
                for (k, &key) in keys.iter().enumerate() {
                    if key != 0 {
                        out[k][w] += self
                            .slots(key)
                            .map(|s| u64::from(b.counters[s].load(Relaxed)))
                            .min()
                            .unwrap_or(0);
                    }
                }
            }
        }
        out
    }

    /// The risk of per-window counts against thresholds, and the largest count.
    fn risk_of(counts: [u64; WINDOWS.len()], t: &WindowThresholds) -> (f64, u64) {
        let mut x: f64 = 0.0;
        for (w, &c) in counts.iter().enumerate() {
            if t.0[w] > 0.0 {
                x = x.max(c as f64 / t.0[w]);
            }
        }
        (saturate(x), counts.iter().copied().max().unwrap_or(0))
    }

    /// The velocity risks of an attempt from `src` at `now`.
    pub(crate) fn risk(&self, now: u64, src: Sources, cfg: &VelocityConfig) -> VelocityRisk {
        let f = Counter::Failures;
        let d = Counter::DistinctFailedUsers;
        // A source of 0 is unknown: its keys stay 0 and count nothing.
        let key = |c, tag, v| if v == 0 { 0 } else { Self::key(c, tag, v) };
        let [user, ip, ip_users, prefix, prefix_users, asn] = self.estimates(
            now,
            [
                key(f, 1, src.user),
                key(f, 2, src.ip),
                key(d, 2, src.ip),
                key(f, 3, src.prefix),
                key(d, 3, src.prefix),
                key(f, 4, src.asn),
            ],
        );
        let (brute_force, user_failures) = Self::risk_of(user, &cfg.user_failures);
        let (ip_stuffing, ip_failures) = Self::risk_of(ip, &cfg.ip_failures);
        let (prefix_risk, prefix_failures) = Self::risk_of(prefix, &cfg.prefix_failures);
        let (asn_risk, asn_failures) = Self::risk_of(asn, &cfg.asn_failures);
        let (ip_spray, ip_distinct_users) = Self::risk_of(ip_users, &cfg.distinct_users);
        let (prefix_spray, prefix_distinct_users) =
            Self::risk_of(prefix_users, &cfg.distinct_users);
        VelocityRisk {
            brute_force,
            stuffing: ip_stuffing.max(prefix_risk).max(asn_risk),
            spray: ip_spray.max(prefix_spray),
            user_failures,
            ip_failures,
            prefix_failures,
            asn_failures,
            ip_distinct_users,
            prefix_distinct_users,
            ip_brute_force: Self::risk_of(ip, &cfg.user_failures).0,
            ip_stuffing,
            ip_spray,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(user: u64, ip: u64) -> Sources {
        Sources {
            user,
            ip,
            prefix: ip / 256 + 1,
            asn: 7,
        }
    }

    #[test]
    fn counts_fall_out_of_windows() {
        let cfg = VelocityConfig::default();
        let v = Velocity::new(&cfg);
        for _ in 0..5 {
            v.record(1_000, src(1, 500), false);
        }
        let r = v.risk(1_000, src(1, 500), &cfg);
        assert_eq!(r.user_failures, 5);
        // 5 failures in a minute hit the 1-minute threshold exactly: 0.5.
        assert!((r.brute_force - 0.5).abs() < 1e-12);
        // Two hours later nothing remains in any window.
        let later = v.risk(1_000 + 7_200, src(1, 500), &cfg);
        assert_eq!(later.user_failures, 0);
        assert_eq!(later.brute_force, 0.0);
        // Ten minutes later only the 1-hour window still sees them: 5/40.
        let r = v.risk(1_000 + 660, src(1, 500), &cfg);
        assert!((r.brute_force - (1.0 - (-(5.0f64 / 40.0)).exp2())).abs() < 1e-12);
    }

    #[test]
    fn spray_counts_distinct_users() {
        let cfg = VelocityConfig::default();
        let v = Velocity::new(&cfg);
        for user in 1..=10u64 {
            v.record(2_000, src(user, 900), false);
            v.record(2_000, src(user, 900), false);
        }
        let r = v.risk(2_000, src(99, 900), &cfg);
        assert_eq!(r.ip_distinct_users, 10);
        assert_eq!(r.ip_failures, 20);
        // 10 distinct users in a minute, threshold 5: x = 2.
        assert!((r.spray - 0.75).abs() < 1e-12);
        // Successes do not count as failures.
        let v = Velocity::new(&cfg);
        v.record(2_000, src(1, 900), true);
        assert_eq!(v.risk(2_000, src(1, 900), &cfg).ip_failures, 0);
    }

    #[test]
    fn space_saving_keeps_heavy_sources_and_bounds_counts() {
        let mut ss = SpaceSaving::default();
        let a = FailureSource::Asn(1);
        for i in 0..100u32 {
            ss.add(a, 4);
            ss.add(FailureSource::Asn(1_000 + i), 4);
        }
        // 200 records, 4 slots: a source with more than 50 is guaranteed to stay.
        let kept = ss.slots.iter().find(|s| s.0 == a).unwrap();
        assert!(kept.1 >= 100 && kept.1 - kept.2 <= 100, "{kept:?}");
        assert_eq!(ss.slots.len(), 4);
        assert_eq!(
            FailureSource::prefix_of("192.0.2.77".parse().unwrap()).to_string(),
            "192.0.2.0/24"
        );
        assert_eq!(
            FailureSource::prefix_of("2001:db8:1:2:3:4:5:6".parse().unwrap()).to_string(),
            "2001:db8:1:2::/64"
        );
    }
}
