//! Per-user device trust: the trust policy, what a store remembers about a device,
//! and the device store trait (the in-memory store is in `store.rs`).

use std::time::Duration;

use palisade_core_traits::{LoginOutcome, Timestamp};

use crate::error::Error;
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
    /// Refuse values the formula cannot mean: weights must be finite and ≥ 0,
    /// factors in 0..=1, the half-life at least one second.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let bad = |field, reason: &str| {
            Err(Error::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        for (field, w) in [
            ("policy.login_weight", self.login_weight),
            ("policy.mfa_weight", self.mfa_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return bad(field, &format!("must be a finite number >= 0, got {w}"));
            }
        }
        for (field, f) in [
            ("policy.flag_factor", self.flag_factor),
            ("policy.failure_factor", self.failure_factor),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return bad(field, &format!("must be within 0..=1, got {f}"));
            }
        }
        if self.half_life < Duration::from_secs(1) {
            return bad(
                "policy.half_life",
                &format!("must be at least 1 s, got {:?}", self.half_life),
            );
        }
        Ok(())
    }

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

/// Where a user's devices live. A store reads the time from its own
/// [`Clock`](palisade_core_traits::Clock) (set on its builder).
pub trait DeviceStore: Send + Sync {
    /// Match `fp` against the user's devices, record the sighting (login outcome,
    /// flags) now, and return the device and its trust.
    fn observe(
        &self,
        user: &str,
        fp: &DeviceFingerprint,
        outcome: Option<LoginOutcome>,
        flags: &[ConsistencyFlag],
    ) -> Observation;

    /// The user's devices.
    fn devices(&self, user: &str) -> Vec<DeviceRecord>;
}
