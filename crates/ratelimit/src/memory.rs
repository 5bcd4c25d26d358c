//! The in-memory keyed limiter: one atomic TAT per key, a hard bound on keys.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use palisade_core_traits::{Clock, IpBlocker, async_trait};

use crate::table::{KeyTable, Untracked, release, reserve};
use crate::{Decision, Denial, Error, Key, MonotonicClock, Quota, Stats, client_net};

/// Default bound on tracked keys.
pub const DEFAULT_MAX_KEYS: NonZeroUsize = crate::nz!(1_000_000);

/// The longest block: a longer one (up to `Duration::MAX`) blocks for this long.
/// 100 years keeps every time in the Redis scripts below 2^53 µs, where Lua's
/// numbers are exact integers, and the two backends answer alike.
pub const MAX_BLOCK: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The most slots of the key bound a thread takes at once (see `reserve_slot`).
const MAX_SLOT_BATCH: usize = 32;

/// Counters of an in-memory limiter.
#[derive(Debug, Default)]
struct MemoryStats {
    overflow_denied: AtomicU64,
    blocked: AtomicU64,
    cost_exceeds_burst: AtomicU64,
    sweeps: AtomicU64,
    evicted: AtomicU64,
}

/// A limiter's per-thread state, in stripes: the allowed and denied counters, and
/// spare slots of the key bound. A thread that owns a stripe (see [`thread_index`])
/// writes it with plain loads and stores, no locked instruction: nobody else writes
/// that stripe. Other threads share a second set of stripes, counting with atomic
/// adds and keeping no spare slots.
///
/// One shared counter made the two-thread hot-key check several times slower (its line
/// bounced between the cores on every check). A locked add to an owned line still cost
/// about 4 ns of a 47 ns check on an Intel Xeon.
#[derive(Debug)]
struct Stripes {
    /// `owned` stripes (one per thread index below `owned`), then as many shared ones.
    stripes: Box<[Stripe]>,
    owned: usize,
}

/// Two lines wide: x86 prefetches cache lines in adjacent pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Stripe {
    allowed: AtomicU64,
    denied: AtomicU64,
    /// Slots of the key bound this thread took but has not used yet.
    spare_slots: AtomicUsize,
}

impl Default for Stripes {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let owned = (2 * cpus).next_power_of_two();
        Stripes {
            stripes: (0..2 * owned).map(|_| Stripe::default()).collect(),
            owned,
        }
    }
}

/// This thread's index: the smallest one no live thread holds (an exiting thread
/// gives its index back), so a process with a steady pool of `n` threads uses indices
/// below `n`. `usize::MAX` while the thread-local is being destroyed.
fn thread_index() -> usize {
    static FREE: Mutex<BinaryHeap<Reverse<usize>>> = Mutex::new(BinaryHeap::new());
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    struct Index(usize);
    impl Drop for Index {
        fn drop(&mut self) {
            // The mutex orders this thread's last writes to its stripes before the next
            // owner's first read.
            let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
            free.push(Reverse(self.0));
        }
    }
    thread_local! {
        static INDEX: Index = Index({
            let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
            free.pop()
                .map_or_else(|| NEXT.fetch_add(1, Ordering::Relaxed), |Reverse(i)| i)
        });
    }
    INDEX.try_with(|i| i.0).unwrap_or(usize::MAX)
}

impl Stripes {
    /// This thread's stripe, if it owns one.
    #[inline]
    fn owned(&self) -> Option<&Stripe> {
        self.stripes[..self.owned].get(thread_index())
    }

    #[inline]
    fn count(&self, allowed: bool) {
        let i = thread_index();
        let owner = i < self.owned;
        let s = &self.stripes[if owner {
            i
        } else {
            self.owned + (i & (self.owned - 1))
        }];
        let counter = if allowed { &s.allowed } else { &s.denied };
        if owner {
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn counts(&self) -> (u64, u64) {
        self.stripes.iter().fold((0, 0), |(a, d), s| {
            (
                a + s.allowed.load(Ordering::Relaxed),
                d + s.denied.load(Ordering::Relaxed),
            )
        })
    }

    /// Spare slots held by all threads (exact when no thread is inserting).
    fn spare_slots(&self) -> usize {
        self.stripes[..self.owned]
            .iter()
            .map(|s| s.spare_slots.load(Ordering::Relaxed))
            .sum()
    }
}

/// Out of line: the admitted path pays one branch. The key is not logged (it may be
/// an address or a user id).
#[cold]
#[inline(never)]
fn trace_denied(decision: &Decision) {
    tracing::debug!(denial = ?decision.denial, retry_after = ?decision.retry_after, "rate limit denied");
}

/// A quota readable on the hot path with a few relaxed loads (a sequence lock):
/// quota changes are rare, reads are every check. Writers serialize on a mutex.
#[derive(Debug)]
struct QuotaCell {
    seq: AtomicU64,
    parts: [AtomicU64; 4],
    writer: Mutex<()>,
}

impl QuotaCell {
    fn new(q: Quota) -> Self {
        QuotaCell {
            seq: AtomicU64::new(0),
            parts: q.to_raw().map(AtomicU64::new),
            writer: Mutex::new(()),
        }
    }

    #[inline]
    fn load(&self) -> Quota {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            let raw = [0, 1, 2, 3].map(|i| self.parts[i].load(Ordering::Acquire));
            // An odd sequence is a write in progress; a changed one, a torn read.
            if before.is_multiple_of(2) && self.seq.load(Ordering::Acquire) == before {
                return Quota::from_raw(raw);
            }
            std::hint::spin_loop();
        }
    }

    fn store(&self, q: Quota) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.seq.fetch_add(1, Ordering::AcqRel);
        for (cell, v) in self.parts.iter().zip(q.to_raw()) {
            cell.store(v, Ordering::Release);
        }
        self.seq.fetch_add(1, Ordering::AcqRel);
    }
}

/// A rate limiter for many keys, in memory.
///
/// Each key's state is one `AtomicU64` (its theoretical arrival time) updated with a
/// compare-and-swap loop, beside a 64-bit keyed fingerprint of the key in an
/// open-addressing table of atomics: a check takes no lock and writes nothing that
/// other keys' checks read. The key itself is not stored. Two live keys whose
/// fingerprints collide (about `n² / 2⁶⁵` for `n` live keys; the hash key is random
/// per limiter) share one state, which can only deny more, never admit more.
///
/// **Bounded memory.** At most `max_keys` keys are tracked. When the table is full, a
/// sweep removes every key whose state equals a fresh key's (`TAT <= now`), so
/// eviction never changes a decision. Sweeps cost O(keys) and run at most once per
/// `max_keys / 8` new keys, which keeps eviction amortised O(1) per new key. When the
/// table is still full — every slot holds a live key, as under a key-spraying attack —
/// a **new** key is denied (fail closed, counted in `overflow_denied`) with a
/// `retry_after` of one emission interval; keys already tracked are unaffected.
/// Threads reserve slots of the bound in small batches, so a new key can be refused
/// while up to 1/64 of `max_keys` sits reserved and unused in other threads.
///
/// Keys are tracked in their [`Key::canonical`] form: an [`IpAddr`] key's quota,
/// overrides and blocks are those of its [`client_net`] (its canonical address; for
/// IPv6, its /64).
///
/// With feature `metrics`, every check moves one
/// `palisade_ratelimit_checks_total{backend="memory", answer}` counter, registered
/// when the limiter is built (install the recorder first).
///
/// ```
/// use palisade_core_traits::{ManualClock, Timestamp};
/// use palisade_ratelimit::{KeyedLimiter, Quota, nz};
///
/// let clock = ManualClock::new(Timestamp::from_unix_secs(1_000));
/// let limiter = KeyedLimiter::with_clock(Quota::per_second(nz!(2)), clock.clone());
/// assert!(limiter.check(&"alice", 1).unwrap().allowed);
/// assert!(limiter.check(&"alice", 1).unwrap().allowed);
/// let third = limiter.check(&"alice", 1).unwrap();
/// assert!(!third.allowed);
/// assert_eq!(third.retry_after, std::time::Duration::from_millis(500));
/// assert!(limiter.check(&"bob", 1).unwrap().allowed); // keys are independent
/// ```
#[derive(Debug)]
pub struct KeyedLimiter<K: Key, C = MonotonicClock> {
    states: KeyTable,
    default_quota: QuotaCell,
    overrides: DashMap<K, Quota>,
    has_overrides: AtomicBool,
    /// Blocked keys → end of the block on the clock's monotonic reading (ns): a
    /// block is a duration, and a wall-clock step must not shorten it.
    blocks: DashMap<K, u64>,
    block_count: AtomicUsize,
    max_keys: usize,
    /// Keys tracked, plus slots reserved by inserts in flight and spare slots held by
    /// threads; never above `max_keys`.
    tracked: AtomicUsize,
    /// Keys left by the last sweep (0 before any): new keys since = max_keys - this.
    kept_after_sweep: AtomicUsize,
    /// New keys refused a slot since the last sweep.
    full_attempts: AtomicUsize,
    sweeping: AtomicBool,
    clock: C,
    per_thread: Stripes,
    stats: MemoryStats,
    #[cfg(feature = "metrics")]
    metrics: crate::stats::MemoryChecks,
}

impl<K: Key> KeyedLimiter<K, MonotonicClock> {
    /// A limiter on a [`MonotonicClock`] with [`DEFAULT_MAX_KEYS`].
    pub fn new(quota: Quota) -> Self {
        Self::with_clock(quota, MonotonicClock::new())
    }
}

impl<K: Key, C: Clock> KeyedLimiter<K, C> {
    /// A limiter reading time from `clock`, with [`DEFAULT_MAX_KEYS`].
    pub fn with_clock(quota: Quota, clock: C) -> Self {
        KeyedLimiter {
            states: KeyTable::default(),
            default_quota: QuotaCell::new(quota),
            overrides: DashMap::new(),
            has_overrides: AtomicBool::new(false),
            blocks: DashMap::new(),
            block_count: AtomicUsize::new(0),
            max_keys: DEFAULT_MAX_KEYS.get(),
            tracked: AtomicUsize::new(0),
            // With nothing kept, the first sweep may run as soon as the table is full.
            kept_after_sweep: AtomicUsize::new(0),
            full_attempts: AtomicUsize::new(0),
            sweeping: AtomicBool::new(false),
            clock,
            per_thread: Stripes::default(),
            stats: MemoryStats::default(),
            #[cfg(feature = "metrics")]
            metrics: crate::stats::MemoryChecks::new(),
        }
    }

    /// Sets the bound on tracked keys.
    pub fn with_max_keys(mut self, max_keys: NonZeroUsize) -> Self {
        self.max_keys = max_keys.get();
        self
    }

    /// Replaces the default quota at runtime. Keys keep their state (a TAT is a time,
    /// meaningful under any quota).
    pub fn set_quota(&self, quota: Quota) {
        self.default_quota.store(quota);
    }

    /// Gives one key its own quota (replacing any earlier override).
    pub fn set_key_quota(&self, key: K, quota: Quota) {
        self.overrides.insert(key.canonical().unwrap_or(key), quota);
        self.has_overrides.store(true, Ordering::Release);
    }

    /// Removes a key's own quota; it falls back to the default.
    pub fn clear_key_quota(&self, key: &K) {
        let canonical = key.canonical();
        self.overrides.remove(canonical.as_ref().unwrap_or(key));
    }

    /// The quota that applies to `key`.
    pub fn quota_for(&self, key: &K) -> Quota {
        let canonical = key.canonical();
        self.quota_of(canonical.as_ref().unwrap_or(key))
    }

    /// The quota of a canonical key.
    #[inline(always)]
    fn quota_of(&self, key: &K) -> Quota {
        if self.has_overrides.load(Ordering::Acquire)
            && let Some(q) = self.overrides.get(key)
        {
            return *q;
        }
        self.default_quota.load()
    }

    /// Number of keys currently tracked, counting inserts in flight (never above
    /// `max_keys`). Exact when no thread is inserting; while one is, it may count a
    /// batch of slots that thread has just taken and not yet put aside as spares.
    pub fn len(&self) -> usize {
        self.tracked
            .load(Ordering::Acquire)
            .saturating_sub(self.per_thread.spare_slots())
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        let s = &self.stats;
        let (allowed, denied) = self.per_thread.counts();
        Stats {
            allowed,
            denied,
            overflow_denied: s.overflow_denied.load(Ordering::Relaxed),
            blocked: s.blocked.load(Ordering::Relaxed),
            cost_exceeds_burst: s.cost_exceeds_burst.load(Ordering::Relaxed),
            sweeps: s.sweeps.load(Ordering::Relaxed),
            evicted: s.evicted.load(Ordering::Relaxed),
            ..Stats::default()
        }
    }

    /// Checks (and, if admitted, consumes) `cost` units for `key`.
    ///
    /// Cost 0 is a peek: it answers for a cost-1 request without changing anything.
    /// A cost above the burst can never pass: it is denied with
    /// [`Denial::CostExceedsBurst`] (and changes nothing). In memory this never
    /// returns an error.
    //
    // Always inlined (the new-key, block, overflow and cost-above-burst paths stay out
    // of line): as a call of its own a hot key's check took 31–46 ns instead of 27–29
    // (paired bench, 6 process runs each).
    #[inline(always)]
    pub fn check(&self, key: &K, cost: u32) -> Result<Decision, Error> {
        // `None` for every key type but addresses: compiled away.
        let canonical = key.canonical();
        let key = canonical.as_ref().unwrap_or(key);
        let now = self.clock.now().as_unix_nanos();
        let quota = self.quota_of(key);
        let decision = if cost <= quota.burst() {
            self.decide(key, &quota, now, cost)
        } else {
            self.cost_exceeds_burst(key, &quota, now)
        };
        self.per_thread.count(decision.allowed);
        #[cfg(feature = "metrics")]
        self.metrics.count(&decision);
        if !decision.allowed {
            trace_denied(&decision);
        }
        Ok(decision)
    }

    /// The decision for a canonical key and a cost that fits the burst.
    #[inline(always)]
    fn decide(&self, key: &K, quota: &Quota, now: u64, cost: u32) -> Decision {
        if self.block_count.load(Ordering::Acquire) > 0
            && let Some(d) = self.blocked(key, quota.burst())
        {
            return d;
        }
        let fingerprint = self.states.fingerprint(key);
        match self.states.check_tracked(fingerprint, quota, now, cost) {
            Ok(d) => d,
            Err(untracked) => self.check_new_key(untracked, quota, now, cost),
        }
    }

    /// A request that can never pass: denied, with the key's state as a peek sees it.
    #[cold]
    #[inline(never)]
    fn cost_exceeds_burst(&self, key: &K, quota: &Quota, now: u64) -> Decision {
        self.stats
            .cost_exceeds_burst
            .fetch_add(1, Ordering::Relaxed);
        self.decide(key, quota, now, 0)
            .cost_exceeds_burst(quota.burst())
    }

    #[cold]
    #[inline(never)]
    fn check_new_key(&self, untracked: Untracked, quota: &Quota, now: u64, cost: u32) -> Decision {
        if cost == 0 {
            // A peek on an untracked key sees a fresh key and tracks nothing.
            return quota.decide(0, self.states.not_before(now), 0).0;
        }
        // Reserve a slot before inserting, so racing threads cannot overshoot the
        // bound (counting the table's keys on each new key would cost a scan).
        if !self.reserve_slot() {
            self.full_attempts.fetch_add(1, Ordering::Relaxed);
            self.maybe_sweep(now);
            if !self.reserve_slot() {
                let fingerprint = untracked.fingerprint();
                if let Ok(d) = self.states.check_tracked(fingerprint, quota, now, cost) {
                    // Another thread inserted it meanwhile: a tracked key, no overflow.
                    return d;
                }
                return self.overflow(quota);
            }
        }
        let Some((decision, took_slot)) =
            self.states
                .check_new(untracked, quota, now, cost, &self.tracked, self.max_keys)
        else {
            return self.overflow(quota);
        };
        if !took_slot {
            // Inserted by another thread since our lookup: give the slot back.
            self.release_slot();
        }
        decision
    }

    /// A new key denied because every slot holds a live key (fail closed).
    fn overflow(&self, quota: &Quota) -> Decision {
        self.stats.overflow_denied.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            max_keys = self.max_keys,
            "rate limiter full of live keys; new key denied"
        );
        Decision::denied(quota.burst(), quota.emission_interval(), Denial::TableFull)
    }

    /// Takes one of the `max_keys` slots, or returns false if none is free.
    ///
    /// A thread that owns a stripe takes slots in batches and keeps the rest as spares.
    /// With one shared `fetch_add` per new key, two threads inserting new keys spent
    /// most of their time waiting for that counter's cache line (`perf` on the
    /// two-thread first-touch bench). A batch is at most `MAX_SLOT_BATCH`, 1/64 of the
    /// keys tracked (small limiters stay exact), and 1/64 of `max_keys` shared over the
    /// owned stripes. So spares never hold more than 1/64 of the bound: a new key can
    /// be refused while that many slots sit unused in other threads' stripes.
    fn reserve_slot(&self) -> bool {
        let Some(stripe) = self.per_thread.owned() else {
            return reserve(&self.tracked, 1, self.max_keys);
        };
        let spare = stripe.spare_slots.load(Ordering::Relaxed);
        if spare > 0 {
            stripe.spare_slots.store(spare - 1, Ordering::Relaxed);
            return true;
        }
        let batch = (self.tracked.load(Ordering::Relaxed) / 64)
            .min(self.max_keys / 64 / self.per_thread.owned)
            .clamp(1, MAX_SLOT_BATCH);
        if batch > 1 && reserve(&self.tracked, batch, self.max_keys) {
            stripe.spare_slots.store(batch - 1, Ordering::Relaxed);
            return true;
        }
        reserve(&self.tracked, 1, self.max_keys)
    }

    /// Gives back a slot taken with [`reserve_slot`](Self::reserve_slot).
    fn release_slot(&self) {
        match self.per_thread.owned() {
            Some(stripe) => {
                let spare = stripe.spare_slots.load(Ordering::Relaxed);
                stripe.spare_slots.store(spare + 1, Ordering::Relaxed);
            }
            None => release(&self.tracked),
        }
    }

    /// Removes every key indistinguishable from a fresh one, if enough new keys have
    /// arrived since the last sweep to pay for it (those inserted into the slots it
    /// freed, plus those refused since the table filled again), and no other thread
    /// is sweeping.
    fn maybe_sweep(&self, now: u64) {
        let due = (self.max_keys / 8).max(1);
        let paid = self
            .max_keys
            .saturating_sub(self.kept_after_sweep.load(Ordering::Relaxed))
            + self.full_attempts.load(Ordering::Relaxed);
        if paid < due || self.sweeping.swap(true, Ordering::Acquire) {
            return;
        }
        let (evicted, kept) = self.states.evict_fresh(now, &self.tracked);
        self.kept_after_sweep.store(kept, Ordering::Relaxed);
        self.full_attempts.store(0, Ordering::Relaxed);
        self.stats.sweeps.fetch_add(1, Ordering::Relaxed);
        self.stats
            .evicted
            .fetch_add(evicted as u64, Ordering::Relaxed);
        self.sweeping.store(false, Ordering::Release);
        tracing::debug!(evicted, kept, "rate limiter sweep");
    }

    /// The clock's monotonic reading in nanoseconds (blocks run on it).
    fn monotonic_nanos(&self) -> u64 {
        u64::try_from(self.clock.monotonic().as_nanos()).unwrap_or(u64::MAX)
    }

    #[cold]
    #[inline(never)]
    fn blocked(&self, key: &K, limit: u32) -> Option<Decision> {
        let until = *self.blocks.get(key)?;
        let now = self.monotonic_nanos();
        if until > now {
            self.stats.blocked.fetch_add(1, Ordering::Relaxed);
            let left = Duration::from_nanos(until - now);
            return Some(Decision::denied(limit, left, Denial::Blocked));
        }
        // Expired: forget it (only if nobody extended it meanwhile).
        if self.blocks.remove_if(key, |_, u| *u <= now).is_some() {
            self.block_count.fetch_sub(1, Ordering::AcqRel);
        }
        None
    }

    /// Denies every check of `key` for `duration` from now (at most [`MAX_BLOCK`]).
    /// An existing block keeps the later of the two expiries; a zero duration does
    /// nothing. The block runs on the clock's monotonic reading, so a step of the wall
    /// clock neither lifts it early nor stretches it.
    pub fn block(&self, key: K, duration: Duration) {
        if duration.is_zero() {
            return;
        }
        // MAX_BLOCK in ns fits a u64, so this cannot truncate.
        let nanos = duration.min(MAX_BLOCK).as_nanos() as u64;
        let until = self.monotonic_nanos().saturating_add(nanos);
        let key = key.canonical().unwrap_or(key);
        let mut fresh = false;
        self.blocks
            .entry(key)
            .and_modify(|u| *u = (*u).max(until))
            .or_insert_with(|| {
                fresh = true;
                until
            });
        if fresh {
            self.block_count.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Lifts a block (a no-op if there is none).
    pub fn unblock(&self, key: &K) {
        let canonical = key.canonical();
        if self
            .blocks
            .remove(canonical.as_ref().unwrap_or(key))
            .is_some()
        {
            self.block_count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Lets an incident-response playbook block an address through this limiter. The
/// key is made from the address's [`client_net`]: an IPv4 address in canonical form,
/// an IPv6 address by its /64, so a block on one address of a /64 refuses all of
/// them (and an unblock of any of them lifts it), as on Redis.
#[async_trait]
impl<K, C> IpBlocker for KeyedLimiter<K, C>
where
    K: Key + From<IpAddr> + Send + Sync + std::fmt::Debug,
    C: Clock,
{
    async fn block_ip(
        &self,
        ip: IpAddr,
        duration: Duration,
        reason: &str,
    ) -> Result<(), palisade_core_traits::Error> {
        let ip = client_net(ip);
        tracing::info!(%ip, ?duration, reason, "blocking address");
        self.block(K::from(ip), duration);
        Ok(())
    }

    async fn unblock_ip(&self, ip: IpAddr) -> Result<(), palisade_core_traits::Error> {
        self.unblock(&K::from(client_net(ip)));
        Ok(())
    }
}
