//! Per-user device trust: a device store trait, an in-memory store with a bound
//! on devices per user, and the trust policy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use palisade_core_traits::{LoginOutcome, Timestamp, normalize_user_id};

use crate::flags::ConsistencyFlag;
use crate::identity::DeviceFingerprint;

/// A device's id within its user's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub u64);

/// How much a device is trusted, 0..=1, with the reasons that made the score.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustScore {
    /// 0 (unknown or distrusted) ..= 1 (long-known, MFA-confirmed, seen recently).
    pub score: f64,
    /// Human-readable factors, e.g. `"3 successful logins"`.
    pub reasons: Vec<String>,
}

/// What a store remembers about one device. Only keyed hashes of attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    /// Id within the user.
    pub id: DeviceId,
    /// The latest fingerprint (replaced on every match, so drift follows the device).
    pub fingerprint: DeviceFingerprint,
    /// First sighting.
    pub first_seen: Timestamp,
    /// Latest sighting.
    pub last_seen: Timestamp,
    /// Successful primary logins.
    pub successful_logins: u32,
    /// Completed MFA challenges.
    pub mfa_completions: u32,
    /// Failed logins or MFA challenges.
    pub failures: u32,
    /// Consistency flags raised over all sightings.
    pub flags: u32,
}

/// The trust formula's parameters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TrustPolicy {
    /// Evidence per successful login.
    pub login_weight: f64,
    /// Evidence per completed MFA.
    pub mfa_weight: f64,
    /// Trust halves after this long unseen.
    pub half_life: Duration,
    /// Factor per consistency flag ever raised.
    pub flag_factor: f64,
    /// Factor per failure.
    pub failure_factor: f64,
}

impl Default for TrustPolicy {
    fn default() -> Self {
        TrustPolicy {
            login_weight: 0.2,
            mfa_weight: 0.6,
            half_life: Duration::from_secs(30 * 86_400),
            flag_factor: 0.5,
            failure_factor: 0.9,
        }
    }
}

impl TrustPolicy {
    /// Trust = (1 − e^−evidence) × ½^(unseen / half_life) × flag_factor^flags ×
    /// failure_factor^failures, evidence = logins × login_weight + MFA × mfa_weight.
    /// Always in 0..=1; more successful logins never lower it.
    pub fn score(&self, d: &DeviceRecord, now: Timestamp) -> TrustScore {
        let unit = |x: f64| {
            if x.is_finite() {
                x.clamp(0.0, 1.0)
            } else {
                0.0
            }
        };
        let evidence = f64::from(d.successful_logins) * self.login_weight.max(0.0)
            + f64::from(d.mfa_completions) * self.mfa_weight.max(0.0);
        let base = unit(1.0 - (-evidence).exp());
        let unseen = now.saturating_duration_since(d.last_seen);
        let half = self.half_life.as_secs_f64().max(1.0);
        let decay = unit(0.5f64.powf(unseen.as_secs_f64() / half));
        let flags = unit(unit(self.flag_factor).powi(d.flags.min(1000) as i32));
        let fails = unit(unit(self.failure_factor).powi(d.failures.min(1000) as i32));
        let mut reasons = vec![format!(
            "{} successful logins, {} MFA completions",
            d.successful_logins, d.mfa_completions
        )];
        if unseen.as_secs() >= 86_400 {
            reasons.push(format!("unseen for {} days", unseen.as_secs() / 86_400));
        }
        if d.flags > 0 {
            reasons.push(format!("{} consistency flags", d.flags));
        }
        if d.failures > 0 {
            reasons.push(format!("{} failed logins or MFA", d.failures));
        }
        TrustScore {
            score: unit(base * decay * flags * fails),
            reasons,
        }
    }
}

/// The result of recording one sighting.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The matched or newly created device.
    pub device: DeviceId,
    /// No stored device matched.
    pub new_device: bool,
    /// Similarity to the matched device (0 for a new one).
    pub similarity: f64,
    /// Trust before this sighting was recorded: use it for this request's decision.
    pub trust_before: TrustScore,
    /// Trust after recording it.
    pub trust: TrustScore,
}

/// Where a user's devices live.
pub trait DeviceStore: Send + Sync {
    /// Match `fp` against the user's devices, record the sighting (login outcome,
    /// flags) and return the device and its trust.
    fn observe(
        &self,
        user: &str,
        fp: &DeviceFingerprint,
        outcome: Option<LoginOutcome>,
        flags: &[ConsistencyFlag],
        now: Timestamp,
    ) -> Observation;

    /// The user's devices.
    fn devices(&self, user: &str) -> Vec<DeviceRecord>;
}

/// An in-memory [`DeviceStore`] keeping at most `max_devices_per_user`; when full, the
/// least-trusted device (oldest `last_seen` on ties) is evicted. Users are keyed by
/// [`normalize_user_id`]: `Alice` and `alice` share their devices.
#[derive(Debug)]
pub struct InMemoryDeviceStore {
    users: Mutex<HashMap<String, (u64, Vec<DeviceRecord>)>>,
    max_devices_per_user: usize,
    policy: TrustPolicy,
}

impl InMemoryDeviceStore {
    /// A store with the given bound (at least 1) and policy.
    pub fn new(max_devices_per_user: usize, policy: TrustPolicy) -> Self {
        InMemoryDeviceStore {
            users: Mutex::new(HashMap::new()),
            max_devices_per_user: max_devices_per_user.max(1),
            policy,
        }
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
        now: Timestamp,
    ) -> Observation {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        // One account, however the login form spelled it (core-traits' rule).
        let (next_id, devices) = users
            .entry(normalize_user_id(user).into_owned())
            .or_default();
        let best = devices
            .iter()
            .enumerate()
            .map(|(i, d)| (i, d.fingerprint.matches(fp)))
            .filter(|(_, m)| m.same_device)
            .max_by(|a, b| a.1.similarity.total_cmp(&b.1.similarity));
        if let Some((i, m)) = best {
            let d = &mut devices[i];
            let trust_before = self.policy.score(d, now);
            d.fingerprint = fp.clone();
            apply(d, outcome, flags, now);
            return Observation {
                device: d.id,
                new_device: false,
                similarity: m.similarity,
                trust_before,
                trust: self.policy.score(d, now),
            };
        }
        if devices.len() >= self.max_devices_per_user {
            let policy = &self.policy;
            if let Some(victim) = devices
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    policy
                        .score(a, now)
                        .score
                        .total_cmp(&policy.score(b, now).score)
                        .then(a.last_seen.cmp(&b.last_seen))
                })
                .map(|(i, _)| i)
            {
                devices.swap_remove(victim);
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
        devices.push(d);
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
        (users.get(normalize_user_id(user).as_ref()))
            .map(|(_, d)| d.clone())
            .unwrap_or_default()
    }
}
