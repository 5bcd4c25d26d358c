//! [`InMemoryDeviceStore`]: devices per user in memory, bounded per user, with
//! trust decay that a wall-clock step cannot undo.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_core_traits::{Clock, LoginOutcome, SystemClock, Timestamp, normalize_user_id};

use crate::error::Error;
use crate::flags::ConsistencyFlag;
use crate::identity::DeviceFingerprint;
use crate::metrics;
use crate::trust::{DeviceId, DeviceRecord, DeviceStore, Observation, TrustPolicy};

/// Devices per user kept by default.
pub const DEFAULT_MAX_DEVICES_PER_USER: NonZeroUsize = NonZeroUsize::new(5).expect("5 > 0");
/// Users kept by default.
pub const DEFAULT_MAX_USERS: NonZeroUsize = NonZeroUsize::new(1_000_000).expect("> 0");
/// How many users a full store looks at to pick the one to forget.
const EVICTION_SAMPLE: usize = 8;

/// Counters of an [`InMemoryDeviceStore`] since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Sightings recorded (`observe` calls).
    pub observations: u64,
    /// Sightings that matched no stored device of the user.
    pub new_devices: u64,
    /// Devices dropped to keep a user within `max_devices_per_user`.
    pub evicted_devices: u64,
    /// Users forgotten (with their devices) to keep the store within `max_users`.
    pub evicted_users: u64,
    /// Users with at least one device now.
    pub users: usize,
    /// Devices stored now, over all users.
    pub devices: usize,
}

/// A stored device and the monotonic reading at its last sighting.
#[derive(Debug)]
struct Entry {
    record: DeviceRecord,
    seen_monotonic: Duration,
}

#[derive(Debug, Default)]
struct Users {
    /// Per user: the last device id handed out, and the devices.
    map: HashMap<String, (u64, Vec<Entry>)>,
    devices: usize,
    stats: Stats,
}

/// An in-memory [`DeviceStore`] keeping at most `max_devices_per_user` per user;
/// when full, the least-trusted device (oldest `last_seen` on ties) is evicted. At
/// most `max_users` users are kept (see
/// [`InMemoryDeviceStoreBuilder::max_users`]).
/// Users are keyed by [`normalize_user_id`]: `Alice` and `alice` share their devices.
///
/// Time comes from the builder's clock. Trust decays with the time a device went
/// unseen, measured as the larger of the wall-clock and the monotonic elapsed time,
/// so setting the wall clock back never makes a long-unseen device look fresh.
///
/// ```
/// use std::num::NonZeroUsize;
/// use palisade_device_fp::{InMemoryDeviceStore, TrustPolicy};
///
/// let store = InMemoryDeviceStore::builder()
///     .max_devices_per_user(NonZeroUsize::new(3).unwrap())
///     .policy(TrustPolicy::default())
///     .build()?;
/// assert_eq!(store.stats().devices, 0);
/// # Ok::<(), palisade_device_fp::Error>(())
/// ```
#[derive(Debug)]
pub struct InMemoryDeviceStore {
    users: Mutex<Users>,
    max_users: usize,
    max_devices_per_user: usize,
    policy: TrustPolicy,
    clock: Arc<dyn Clock>,
}

/// Builder of an [`InMemoryDeviceStore`]; checks everything in [`build`](Self::build).
#[derive(Debug)]
#[must_use]
pub struct InMemoryDeviceStoreBuilder {
    max_users: NonZeroUsize,
    max_devices_per_user: NonZeroUsize,
    policy: TrustPolicy,
    clock: Arc<dyn Clock>,
}

impl InMemoryDeviceStoreBuilder {
    /// Users kept (default [`DEFAULT_MAX_USERS`], 1,000,000). A sighting of a new user
    /// in a full store forgets another user and their devices: the least recently
    /// seen of a few (an arbitrary sample of 8), so memory stays bounded whoever the
    /// caller records sightings for. A forgotten user's devices are new again (no
    /// trust): the bound fails closed.
    pub fn max_users(mut self, n: NonZeroUsize) -> Self {
        self.max_users = n;
        self
    }

    /// Devices kept per user (default [`DEFAULT_MAX_DEVICES_PER_USER`], 5).
    pub fn max_devices_per_user(mut self, n: NonZeroUsize) -> Self {
        self.max_devices_per_user = n;
        self
    }

    /// The trust formula's parameters (default [`TrustPolicy::default`]).
    pub fn policy(mut self, policy: TrustPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Where time comes from (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The store; `Error::InvalidConfig` names a policy value the formula cannot mean
    /// (`policy.login_weight`, `policy.mfa_weight`: finite and ≥ 0;
    /// `policy.flag_factor`, `policy.failure_factor`: 0..=1; `policy.half_life`: ≥ 1 s).
    pub fn build(self) -> Result<InMemoryDeviceStore, Error> {
        self.policy.validate()?;
        Ok(InMemoryDeviceStore {
            users: Mutex::new(Users::default()),
            max_users: self.max_users.get(),
            max_devices_per_user: self.max_devices_per_user.get(),
            policy: self.policy,
            clock: self.clock,
        })
    }
}

impl InMemoryDeviceStore {
    /// A builder with the defaults: 5 devices per user, the default policy, the
    /// system clock.
    pub fn builder() -> InMemoryDeviceStoreBuilder {
        InMemoryDeviceStoreBuilder {
            max_users: DEFAULT_MAX_USERS,
            max_devices_per_user: DEFAULT_MAX_DEVICES_PER_USER,
            policy: TrustPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Counters since the store was built, and its current size.
    pub fn stats(&self) -> Stats {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        Stats {
            users: users.map.len(),
            devices: users.devices,
            ..users.stats
        }
    }
}

/// The time at which to score a device: the wall clock, but never less than its
/// last sighting plus the monotonic time elapsed since (a wall-clock step back
/// cannot shorten how long it went unseen).
fn scoring_time(now: Timestamp, monotonic: Duration, e: &Entry) -> Timestamp {
    let elapsed = monotonic.saturating_sub(e.seen_monotonic);
    now.max(e.record.last_seen.saturating_add(elapsed))
}

/// Forgets the least recently seen of a few users, with their devices.
fn forget_a_user(users: &mut Users) {
    let last_seen = |devices: &[Entry]| devices.iter().map(|e| e.record.last_seen).max();
    let victim = (users.map.iter())
        .take(EVICTION_SAMPLE)
        .min_by_key(|(_, (_, devices))| last_seen(devices))
        .map(|(user, _)| user.clone());
    if let Some((_, devices)) = victim.and_then(|user| users.map.remove(&user)) {
        users.devices -= devices.len();
        users.stats.evicted_users += 1;
        tracing::debug!(
            devices = devices.len(),
            "user forgotten to keep the store bounded"
        );
    }
}

fn apply(
    d: &mut DeviceRecord,
    outcome: Option<LoginOutcome>,
    flags: &[ConsistencyFlag],
    now: Timestamp,
) {
    d.last_seen = d.last_seen.max(now);
    match outcome {
        Some(LoginOutcome::Success) => d.successful_logins = d.successful_logins.saturating_add(1),
        Some(LoginOutcome::StepUpSuccess) => {
            d.mfa_completions = d.mfa_completions.saturating_add(1)
        }
        Some(LoginOutcome::Failure | LoginOutcome::StepUpFailure) => {
            d.failures = d.failures.saturating_add(1)
        }
        _ => {}
    }
    d.flags = d
        .flags
        .saturating_add(u32::try_from(flags.len()).unwrap_or(u32::MAX));
}

impl DeviceStore for InMemoryDeviceStore {
    fn observe(
        &self,
        user: &str,
        fp: &DeviceFingerprint,
        outcome: Option<LoginOutcome>,
        flags: &[ConsistencyFlag],
    ) -> Observation {
        let (now, monotonic) = (self.clock.now(), self.clock.monotonic());
        let mut guard = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let users = &mut *guard;
        users.stats.observations += 1;
        // One account, however the login form spelled it (core-traits' rule).
        let key = normalize_user_id(user).into_owned();
        if users.map.len() >= self.max_users && !users.map.contains_key(&key) {
            forget_a_user(users);
        }
        let (next_id, devices) = users.map.entry(key).or_default();
        let best = devices
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.record.fingerprint.matches(fp)))
            .filter(|(_, m)| m.same_device)
            .max_by(|a, b| a.1.similarity.total_cmp(&b.1.similarity));
        if let Some((i, m)) = best {
            let e = &mut devices[i];
            let at = scoring_time(now, monotonic, e);
            let trust_before = self.policy.score(&e.record, at);
            // Only a completed login updates what the device looks like: a failed or
            // unjudged sighting (perhaps an attacker's) may still differ in a few
            // drifting attributes, and stored, it would move the device toward it.
            if matches!(
                outcome,
                Some(LoginOutcome::Success | LoginOutcome::StepUpSuccess)
            ) {
                e.record.fingerprint = fp.clone();
            }
            apply(&mut e.record, outcome, flags, at);
            e.seen_monotonic = monotonic;
            let trust = self.policy.score(&e.record, at);
            tracing::debug!(
                device = e.record.id.0,
                similarity = m.similarity,
                trust_before = trust_before.score,
                trust = trust.score,
                flags = flags.len(),
                "known device"
            );
            return Observation {
                device: e.record.id,
                new_device: false,
                similarity: m.similarity,
                trust_before,
                trust,
            };
        }
        if devices.len() >= self.max_devices_per_user {
            let policy = &self.policy;
            let score = |e: &Entry| {
                policy
                    .score(&e.record, scoring_time(now, monotonic, e))
                    .score
            };
            if let Some(victim) = devices
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    score(a)
                        .total_cmp(&score(b))
                        .then(a.record.last_seen.cmp(&b.record.last_seen))
                })
                .map(|(i, _)| i)
            {
                let gone = devices.swap_remove(victim);
                users.devices -= 1;
                users.stats.evicted_devices += 1;
                metrics::device_evicted();
                tracing::info!(device = gone.record.id.0, "least-trusted device evicted");
            }
        }
        *next_id += 1;
        let mut d = DeviceRecord {
            id: DeviceId(*next_id),
            fingerprint: fp.clone(),
            first_seen: now,
            last_seen: now,
            successful_logins: 0,
            mfa_completions: 0,
            failures: 0,
            flags: 0,
        };
        let trust_before = self.policy.score(&d, now);
        apply(&mut d, outcome, flags, now);
        let trust = self.policy.score(&d, now);
        let id = d.id;
        devices.push(Entry {
            record: d,
            seen_monotonic: monotonic,
        });
        users.devices += 1;
        users.stats.new_devices += 1;
        metrics::new_device();
        tracing::info!(
            device = id.0,
            trust = trust.score,
            flags = flags.len(),
            "new device"
        );
        Observation {
            device: id,
            new_device: true,
            similarity: 0.0,
            trust_before,
            trust,
        }
    }

    fn devices(&self, user: &str) -> Vec<DeviceRecord> {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        (users.map.get(normalize_user_id(user).as_ref()))
            .map(|(_, d)| d.iter().map(|e| e.record.clone()).collect())
            .unwrap_or_default()
    }
}
