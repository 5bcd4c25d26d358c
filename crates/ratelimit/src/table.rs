//! The in-memory limiter's key states: a table of (fingerprint, TAT) slot pairs.
//!
//! A key is never stored, only a 64-bit keyed SipHash fingerprint of it (random key per
//! limiter, so attackers cannot aim for collisions). Two live keys with the same
//! fingerprint would share one state: each then sees the other's consumption, so a
//! collision can only deny more, never admit more.
//!
//! Open addressing with linear probing over slots of two `AtomicU64`s. A check reads
//! the slots of its probe path and compare-and-swaps its TAT: it writes nothing that
//! another key's check reads (no lock word), which is what lets two threads check
//! keys in parallel without their caches fighting over a shard lock.
//!
//! - Slots go from empty to a fingerprint once and keep it until the table is rebuilt,
//!   so the first empty slot on a probe path is where that key would be, and two
//!   threads inserting one key meet at the same slot (one compare-and-swap wins).
//! - Eviction sets the `EVICTED` bit of a TAT `<= now` (a compare-and-swap, so a
//!   racing check either lands first, and the key stays, or sees the mark). The TAT
//!   stays beside the mark: a check that revives the key decides on it, exactly as if
//!   the key had never been evicted. That matters because "fresh at the sweep's time"
//!   is not "fresh at the check's time": a check may have read the clock before the
//!   sweeping thread did, and for it a fresh state would admit a burst too early.
//! - A rebuild drops evicted keys and raises `dropped_through` to the latest TAT it
//!   dropped; every check decides at no earlier time than that (read after it loads
//!   the table), so a dropped key never starts fresh before its old state would have
//!   let it. With clocks that agree this changes nothing: a sweep only evicts TATs
//!   that are already past.
//! - Growth and the clean-up of evicted slots rebuild the table under a mutex: each
//!   old slot is marked moved (an empty fingerprint becomes `MOVED_FP`, a TAT is
//!   swapped for `MOVED`, which ends any compare-and-swap racing with the copy) and
//!   copied, then the new table is published. A check that meets a moved mark waits
//!   for the mutex and retries on the new table.

use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};

use crate::{Decision, Quota};

const EMPTY: u64 = 0;
/// An empty slot of a table being rebuilt.
const MOVED_FP: u64 = 1;
/// TAT of a key copied to the next table.
const MOVED: u64 = u64::MAX;
/// Set in the TAT of an evicted key (its slot is reclaimed by the next rebuild).
const EVICTED: u64 = 1 << 63;
/// TATs are clamped below the marks (2^63 ns after 1970 is in the year 2262), so a
/// marked TAT is never `MOVED`.
const MAX_TAT: u64 = EVICTED - 2;
const MIN_SLOTS: usize = 16;

/// Two words; 16-byte alignment keeps a slot inside one cache line.
#[derive(Debug, Default)]
#[repr(align(16))]
struct Slot {
    fingerprint: AtomicU64,
    tat: AtomicU64,
}

#[derive(Debug)]
struct Table {
    slots: Box<[Slot]>,
    /// Slots evicted since this table was built. Slots holding a fingerprint are at
    /// most this plus the limiter's tracked keys (every live key holds a slot of the
    /// key bound), so an insert writes no shared counter.
    evicted: AtomicUsize,
}

enum Probe<'a> {
    Found(&'a Slot),
    Empty(&'a Slot),
    /// Met a moved mark, or probed every slot: the table must be replaced.
    Rebuild,
}

enum Update {
    Decided(Decision),
    /// The key was evicted (to admit, revive it: this is its marked TAT).
    Evicted(u64),
    Moved,
}

impl Table {
    fn new(slots: usize) -> Self {
        Table {
            slots: (0..slots).map(|_| Slot::default()).collect(),
            evicted: AtomicUsize::new(0),
        }
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    #[inline]
    fn probe(&self, fingerprint: u64) -> Probe<'_> {
        let mut i = fingerprint as usize & self.mask();
        for _ in 0..self.slots.len() {
            let slot = &self.slots[i];
            match slot.fingerprint.load(Ordering::Acquire) {
                f if f == fingerprint => return Probe::Found(slot),
                EMPTY => return Probe::Empty(slot),
                MOVED_FP => return Probe::Rebuild,
                _ => i = (i + 1) & self.mask(),
            }
        }
        Probe::Rebuild
    }

    /// Possibly over 7/8 full (`tracked`: the limiter's tracked keys): time to grow or
    /// to clean up evicted slots.
    fn crowded(&self, tracked: usize) -> bool {
        tracked + self.evicted.load(Ordering::Relaxed) > self.slots.len() / 8 * 7
    }
}

/// Decides on a tracked key's TAT with a compare-and-swap loop. A peek of an evicted
/// key decides on its kept TAT.
#[inline]
fn update(tat: &AtomicU64, quota: &Quota, now: u64, cost: u32) -> Update {
    let mut current = tat.load(Ordering::Acquire);
    loop {
        if current == MOVED {
            return Update::Moved;
        }
        if current & EVICTED != 0 {
            if cost == 0 {
                return Update::Decided(quota.decide(current & !EVICTED, now, 0).0);
            }
            return Update::Evicted(current);
        }
        let (decision, new_tat) = quota.decide(current, now, cost);
        let Some(new_tat) = new_tat else {
            return Update::Decided(decision);
        };
        match tat.compare_exchange_weak(
            current,
            new_tat.min(MAX_TAT),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Update::Decided(decision),
            Err(seen) => current = seen,
        }
    }
}

/// Takes `slots` of the `max_keys` slots of the key bound, or returns false (taking
/// none) if fewer are free. A compare-and-swap, so `tracked` never passes `max_keys`,
/// even for an instant: an add undone after the fact counted against the bound
/// meanwhile, and could refuse another thread's key.
pub(crate) fn reserve(tracked: &AtomicUsize, slots: usize, max_keys: usize) -> bool {
    tracked
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
            (taken + slots <= max_keys).then_some(taken + slots)
        })
        .is_ok()
}

/// Gives back one slot taken with [`reserve`].
pub(crate) fn release(tracked: &AtomicUsize) {
    tracked.fetch_sub(1, Ordering::AcqRel);
}

/// A key [`KeyTable::check_tracked`] did not find, and the table it looked in.
pub(crate) struct Untracked {
    fingerprint: u64,
    table: Guard<Arc<Table>>,
}

impl Untracked {
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

/// The key states of one limiter.
#[derive(Debug)]
pub(crate) struct KeyTable {
    current: ArcSwap<Table>,
    rebuilding: Mutex<()>,
    /// SipHash-1-3 keys, random per limiter.
    keys: (u64, u64),
    /// The latest TAT of any evicted key a rebuild dropped.
    dropped_through: AtomicU64,
}

impl Default for KeyTable {
    fn default() -> Self {
        KeyTable {
            current: ArcSwap::from_pointee(Table::new(MIN_SLOTS)),
            rebuilding: Mutex::new(()),
            keys: {
                // Two outputs of std's SipHash under its secret random keys: secret,
                // random keys of our own (std hides its keys).
                let seed = RandomState::new();
                (seed.hash_one(0u8), seed.hash_one(1u8))
            },
            dropped_through: AtomicU64::new(0),
        }
    }
}

impl KeyTable {
    /// The key's fingerprint: never `EMPTY` or `MOVED_FP`.
    pub(crate) fn fingerprint<K: Hash>(&self, key: &K) -> u64 {
        // `siphasher`, not std's `RandomState`: the same SipHash-1-3, but an address
        // (one `write_u64`) goes in as one word, where std's hasher takes it through
        // its byte-slice path (about 80 instructions more per check).
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        key.hash(&mut h);
        h.finish().max(MOVED_FP + 1)
    }

    /// The time to decide at, read after loading the table: `now`, or later if a
    /// rebuild dropped an evicted key whose TAT is later. That key may be the one
    /// checked, now missing or back as a fresh state (TAT 0) that must not start
    /// before its dropped state would have let it. A later time is still inside the
    /// check: the drop happened before this read, and after the sweep's clock reading.
    #[inline]
    pub(crate) fn not_before(&self, now: u64) -> u64 {
        now.max(self.dropped_through.load(Ordering::Acquire))
    }

    /// Decides for a tracked key; if the key is not tracked (never seen, or evicted),
    /// returns the table it looked in: the caller then takes a slot and passes it to
    /// [`check_new`](Self::check_new), which starts there (one table load per new
    /// key: each costs two locked instructions).
    /// Always inlined: as a call of its own (how the compiler built it in the paired
    /// bench) a hot key's check took 44 ns instead of 32.
    #[inline(always)]
    pub(crate) fn check_tracked(
        &self,
        fingerprint: u64,
        quota: &Quota,
        now: u64,
        cost: u32,
    ) -> Result<Decision, Untracked> {
        loop {
            let table = self.current.load();
            let now = self.not_before(now);
            match table.probe(fingerprint) {
                Probe::Found(slot) => match update(&slot.tat, quota, now, cost) {
                    Update::Decided(d) => return Ok(d),
                    Update::Evicted(_) => return Err(Untracked { fingerprint, table }),
                    Update::Moved => self.rebuild(&table, None),
                },
                Probe::Empty(_) => return Err(Untracked { fingerprint, table }),
                Probe::Rebuild => self.rebuild(&table, None),
            }
        }
    }

    /// Tracks a key that [`check_tracked`](Self::check_tracked) did not find (the
    /// caller holds a slot of the key bound for it) and decides, with `cost > 0`.
    /// `tracked` and `max_keys` are the key bound (its count includes the caller's
    /// slot; `tracked` also sizes a rebuild). Returns whether the key took the slot:
    /// `false` if another thread tracked it first (the caller gives the slot back).
    /// `None`: the key needed a second slot and the bound had none (see below).
    ///
    /// Always inlined into its one caller: as a call, its decision went back through
    /// memory, and first-touch inserts took about 4 % longer (paired bench). perf's
    /// samples sat on the loads that read it back. A stalled store forward is the
    /// likely cause; this VM has no counters to confirm it.
    #[inline(always)]
    pub(crate) fn check_new(
        &self,
        untracked: Untracked,
        quota: &Quota,
        now: u64,
        cost: u32,
        tracked: &AtomicUsize,
        max_keys: usize,
    ) -> Option<(Decision, bool)> {
        let mut took_slot = false;
        let fingerprint = untracked.fingerprint;
        let mut looked_in = Some(untracked.table);
        loop {
            let table = looked_in.take().unwrap_or_else(|| self.current.load());
            let now = self.not_before(now);
            match table.probe(fingerprint) {
                Probe::Found(slot) => match update(&slot.tat, quota, now, cost) {
                    Update::Decided(d) => return Some((d, took_slot)),
                    Update::Moved => self.rebuild(&table, None),
                    Update::Evicted(marked) => {
                        let (decision, new_tat) = quota.decide(marked & !EVICTED, now, cost);
                        let Some(new_tat) = new_tat else {
                            // Denied: the key stays evicted, its state unchanged.
                            return Some((decision, took_slot));
                        };
                        // Revive it in place on its kept TAT. That needs a slot of the
                        // bound: the caller's, unless this call inserted the key,
                        // another check admitted it, and a sweep evicted it, all before
                        // our own store (the sweep gave our slot back): then a second.
                        let second = took_slot;
                        if second && !reserve(tracked, 1, max_keys) {
                            return None;
                        }
                        if slot
                            .tat
                            .compare_exchange(
                                marked,
                                new_tat.min(MAX_TAT),
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok()
                        {
                            return Some((decision, true));
                        }
                        if second {
                            release(tracked);
                        }
                    }
                },
                Probe::Empty(slot) => {
                    // Nobody else can see a fresh state's TAT before it is stored:
                    // decide first.
                    let (fresh, fresh_tat) = quota.decide(0, now, cost);
                    let fresh_tat = fresh_tat.unwrap_or(0).min(MAX_TAT);
                    if slot
                        .fingerprint
                        .compare_exchange(EMPTY, fingerprint, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        continue; // taken meanwhile: probe again
                    }
                    took_slot = true;
                    // The slot's TAT is 0 (fresh) unless another check of this key or
                    // a rebuild got there first; then the loop decides on the key's
                    // state where it is now.
                    let stored = slot
                        .tat
                        .compare_exchange(0, fresh_tat, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                    let live = tracked.load(Ordering::Relaxed);
                    if table.crowded(live) {
                        self.rebuild(&table, Some(live));
                    }
                    if stored {
                        return Some((fresh, true));
                    }
                }
                Probe::Rebuild => self.rebuild(&table, Some(tracked.load(Ordering::Relaxed))),
            }
        }
    }

    /// Evicts every tracked key whose TAT is `<= now` (indistinguishable from a fresh
    /// key), gives their slots of the key bound back to `tracked`, and returns how many
    /// were evicted and how many are left. Evicted slots are reclaimed by the next
    /// rebuild.
    pub(crate) fn evict_fresh(&self, now: u64, tracked: &AtomicUsize) -> (usize, usize) {
        let table = self.current.load();
        let evicted = table
            .slots
            .iter()
            .filter(|slot| {
                let tat = slot.tat.load(Ordering::Acquire);
                // Marks are above any `now`. A TAT of 0 is a key being inserted (any
                // admission leaves a TAT above 0): evicting it would lose its slot.
                tat > 0
                    && tat <= now
                    && slot.fingerprint.load(Ordering::Acquire) > MOVED_FP
                    && slot
                        .tat
                        .compare_exchange(tat, tat | EVICTED, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
            })
            .count();
        table.evicted.fetch_add(evicted, Ordering::Relaxed);
        let kept = tracked.fetch_sub(evicted, Ordering::AcqRel) - evicted;
        if table.crowded(kept) {
            self.rebuild(&table, Some(kept));
        }
        (evicted, kept)
    }

    /// Replaces `seen` (if still current) with a table holding its live keys: twice
    /// the slots when more than half of them are live keys, else as many. A thread
    /// that met a moved mark calls it too: it waits on the mutex until the rebuild in
    /// progress has published the new table, then finds `seen` replaced.
    fn rebuild(&self, seen: &Guard<Arc<Table>>, live_keys: Option<usize>) {
        let _rebuilding = self.rebuilding.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current.load();
        if !Arc::ptr_eq(&old, seen) {
            return; // another thread rebuilt it meanwhile
        }
        let mut dropped_through = 0;
        let mut copies = Vec::with_capacity(live_keys.unwrap_or(0).min(old.slots.len()));
        for slot in old.slots.iter() {
            // A fingerprint, once set, stays: only an empty slot needs the CAS.
            let mut fingerprint = slot.fingerprint.load(Ordering::Acquire);
            if fingerprint == EMPTY {
                match slot.fingerprint.compare_exchange(
                    EMPTY,
                    MOVED_FP,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => continue,
                    Err(f) => fingerprint = f,
                }
            }
            let tat = slot.tat.swap(MOVED, Ordering::AcqRel);
            if tat & EVICTED == 0 {
                copies.push((fingerprint, tat));
            } else {
                dropped_through = dropped_through.max(tat & !EVICTED);
            }
        }
        // Before the new table is published: a check that finds a dropped key missing
        // there must see it.
        self.dropped_through
            .fetch_max(dropped_through, Ordering::AcqRel);
        let live = live_keys.unwrap_or(copies.len()).max(copies.len());
        let slots = if live > old.slots.len() / 2 {
            old.slots.len() * 2
        } else {
            old.slots.len()
        };
        let new = Table::new(slots);
        for &(fingerprint, tat) in &copies {
            let mut i = fingerprint as usize & new.mask();
            while new.slots[i].fingerprint.load(Ordering::Relaxed) != EMPTY {
                i = (i + 1) & new.mask();
            }
            new.slots[i]
                .fingerprint
                .store(fingerprint, Ordering::Relaxed);
            new.slots[i].tat.store(tat, Ordering::Relaxed);
        }
        self.current.store(Arc::new(new));
        tracing::debug!(slots, "rate limiter key table rebuilt");
    }
}
