//! Configuration: thresholds, calibration, history bounds and the optional signals.

use std::fmt;
use std::num::NonZeroUsize;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::hst::HstConfig;
use crate::velocity::VelocityConfig;
use crate::verdict::Verdict;

/// Maps Freeman's unbounded score `S` to [0, 1]: `p = 1 / (1 + (midpoint / S)^steepness)`.
///
/// The default (midpoint 1, steepness 1) is `S / (1 + S)`: `S = 1` (the attempt is as
/// likely from an attacker as from the user, under the model) maps to 0.5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The raw score that maps to 0.5.
    pub midpoint: f64,
    /// How fast the mapping rises around the midpoint (in log space).
    pub steepness: f64,
}

impl Default for Calibration {
    fn default() -> Self {
        Calibration {
            midpoint: 1.0,
            steepness: 1.0,
        }
    }
}

impl Calibration {
    fn validate(&self, field: &'static str) -> Result<(), Error> {
        check(
            self.midpoint > 0.0
                && self.midpoint.is_finite()
                && self.steepness > 0.0
                && self.steepness.is_finite(),
            field,
            format!("{self:?}"),
            "midpoint and steepness must be finite and > 0",
        )
    }

    /// Maps a raw score. Non-finite or NaN scores map to 1 (fail closed).
    pub fn map(&self, raw: f64) -> f64 {
        if raw.is_nan() || raw == f64::INFINITY {
            return 1.0;
        }
        if raw <= 0.0 {
            return 0.0;
        }
        let p = 1.0 / (1.0 + (self.midpoint / raw).powf(self.steepness));
        if p.is_finite() {
            p.clamp(0.0, 1.0)
        } else {
            1.0
        }
    }
}

/// Verdict thresholds on the score: `monitor ≤ step_up ≤ block`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// At or above: watch more closely.
    pub monitor: f64,
    /// At or above: require step-up authentication.
    pub step_up: f64,
    /// At or above: refuse.
    pub block: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            monitor: 0.5,
            step_up: 0.7,
            block: 0.9,
        }
    }
}

impl Thresholds {
    /// The verdict for `score`.
    pub fn verdict(&self, score: f64) -> Verdict {
        if score >= self.block {
            Verdict::Block
        } else if score >= self.step_up {
            Verdict::StepUp
        } else if score >= self.monitor {
            Verdict::Monitor
        } else {
            Verdict::Allow
        }
    }
}

/// Scorer configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Verdict thresholds.
    pub thresholds: Thresholds,
    /// Freeman raw-score calibration.
    pub calibration: Calibration,
    /// Successful logins kept per user (oldest dropped first).
    pub history_cap: NonZeroUsize,
    /// Successful logins older than this (seconds) age out.
    pub history_max_age_secs: u64,
    /// History length at which confidence reaches 1.
    pub min_history: NonZeroUsize,
    /// Risk for a user without any successful login.
    pub no_history_risk: f64,
    /// Risk of a device never seen with the user (familiarity 0); scales linearly.
    pub new_device_risk: f64,
    /// Travel speed (km/h) at which impossible-travel risk reaches 0.5.
    pub travel_speed_kmh: f64,
    /// Distances below this (km) never count as travel (GeoIP imprecision).
    pub travel_min_km: f64,
    /// Velocity counters.
    pub velocity: VelocityConfig,
    /// Accounted bytes for histories, over all shards together; beyond it the least
    /// recently active users go.
    pub memory_budget_bytes: usize,
    /// The behavioural signal over [`Signals::numeric`](crate::Signals::numeric);
    /// `None` (default): off.
    pub behaviour: Option<BehaviourConfig>,
    /// Scores Freeman's `S` on each user's own scale; `None` (default): one global
    /// scale, as in the paper.
    #[serde(default)]
    pub user_scale: Option<UserScale>,
}

/// Freeman's raw `S` divided by the user's typical `S`, so one threshold fits users
/// whose normal logins score high (common user agent, several devices, few logins).
///
/// Our extension, not Freeman's: each successful login stores its own raw `S` (against
/// the history before it); an attempt's `x = S / m`, with `m` the median of the last
/// `window` stored scores, is mapped by `calibration` instead of [`Config::calibration`].
/// Until a user has `min_samples` stored scores their attempts stay on the global
/// scale. The stored score fits in each history entry's 64 bytes (beside a 32-bit
/// time), so the memory budget counts it at no extra cost; it is saved in the
/// [`State`](crate::State). The cost is one more Freeman evaluation per recorded
/// success. Scores stored while the scale was off are missing: turning it on later
/// starts every user at zero samples. When the user's scale decides the Freeman
/// part of a score, the Freeman contributions' reasons say so (with the risk the
/// global scale would have given).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UserScale {
    /// Stored scores the median is taken over (at most `history_cap`).
    pub window: NonZeroUsize,
    /// Stored scores needed before the user's scale is used (at most `window`).
    pub min_samples: NonZeroUsize,
    /// Maps `x` to [0, 1]; `x = 1` is the user's typical login.
    pub calibration: Calibration,
}

impl Default for UserScale {
    fn default() -> Self {
        UserScale {
            window: const { nz(20) },
            min_samples: const { nz(10) },
            calibration: Calibration {
                midpoint: 4.0,
                steepness: 2.0,
            },
        }
    }
}

/// Half-Space Trees over the numeric request features as a signal of the score.
///
/// One detector for the whole population (not per user), trained only on completed
/// logins, scoring before learning. Its anomaly score `a` in [0, 1] becomes the risk
/// `weight · max(0, (a − floor) / (1 − floor))`: points in dense regions (`a ≤ floor`)
/// add nothing, and with the default weight 0.3 it can never reach monitor (0.5) alone.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BehaviourConfig {
    /// How many numeric features an attempt carries (extra ones are ignored, missing
    /// ones count as 0).
    pub features: usize,
    /// Detector parameters (River's defaults).
    pub hst: HstConfig,
    /// Risk at anomaly score 1.
    pub weight: f64,
    /// Anomaly scores at or below this add no risk.
    pub floor: f64,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            features: 1,
            hst: HstConfig::default(),
            weight: 0.3,
            floor: 0.5,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            thresholds: Thresholds::default(),
            calibration: Calibration::default(),
            history_cap: const { nz(50) },
            history_max_age_secs: 180 * 86_400,
            min_history: const { nz(20) },
            no_history_risk: 0.3,
            new_device_risk: 0.4,
            travel_speed_kmh: 1_000.0,
            travel_min_km: 200.0,
            velocity: VelocityConfig::default(),
            memory_budget_bytes: 512 << 20,
            behaviour: None,
            user_scale: None,
        }
    }
}

/// A non-zero constant, checked at compile time.
pub(crate) const fn nz(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => panic!("zero"),
    }
}

fn check(
    ok: bool,
    field: &'static str,
    value: impl fmt::Display,
    rule: &'static str,
) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field,
            reason: format!("{value}: {rule}"),
        })
    }
}

impl Config {
    /// Checks ranges (the builder's `build()` calls it).
    pub fn validate(&self) -> Result<(), Error> {
        let t = &self.thresholds;
        let unit = |x: f64| (0.0..=1.0).contains(&x);
        check(
            unit(t.monitor) && unit(t.step_up) && unit(t.block),
            "thresholds",
            format!("{t:?}"),
            "must be in [0, 1]",
        )?;
        check(
            t.monitor <= t.step_up && t.step_up <= t.block,
            "thresholds",
            format!("{t:?}"),
            "must be monitor <= step_up <= block",
        )?;
        self.calibration.validate("calibration")?;
        check(
            unit(self.no_history_risk),
            "no_history_risk",
            self.no_history_risk,
            "must be in [0, 1]",
        )?;
        check(
            unit(self.new_device_risk),
            "new_device_risk",
            self.new_device_risk,
            "must be in [0, 1]",
        )?;
        check(
            self.travel_speed_kmh > 0.0 && self.travel_speed_kmh.is_finite(),
            "travel_speed_kmh",
            self.travel_speed_kmh,
            "must be finite and > 0",
        )?;
        check(
            self.travel_min_km >= 0.0 && self.travel_min_km.is_finite(),
            "travel_min_km",
            self.travel_min_km,
            "must be finite and >= 0",
        )?;
        let v = &self.velocity;
        check(
            (16..=1 << 20).contains(&v.width),
            "velocity.width",
            v.width,
            "must be in 16..=1048576",
        )?;
        check(
            (1..=16).contains(&v.depth),
            "velocity.depth",
            v.depth,
            "must be in 1..=16",
        )?;
        check(
            (1..=4096).contains(&v.top_k),
            "velocity.top_k",
            v.top_k,
            "must be in 1..=4096",
        )?;
        for (field, t) in [
            ("velocity.user_failures", v.user_failures),
            ("velocity.ip_failures", v.ip_failures),
            ("velocity.prefix_failures", v.prefix_failures),
            ("velocity.asn_failures", v.asn_failures),
            ("velocity.distinct_users", v.distinct_users),
        ] {
            // 0, a negative or NaN threshold would switch its window off unseen.
            check(
                t.0.iter().all(|x| x.is_finite() && *x > 0.0),
                field,
                format!("{:?}", t.0),
                "every window's threshold must be finite and > 0",
            )?;
        }
        if let Some(u) = &self.user_scale {
            check(
                u.window <= self.history_cap,
                "user_scale.window",
                u.window,
                "must be at most history_cap",
            )?;
            check(
                u.min_samples <= u.window,
                "user_scale.min_samples",
                u.min_samples,
                "must be at most window",
            )?;
            u.calibration.validate("user_scale.calibration")?;
        }
        if let Some(b) = &self.behaviour {
            check(
                (1..=1024).contains(&b.features),
                "behaviour.features",
                b.features,
                "must be in 1..=1024",
            )?;
            check(
                unit(b.weight),
                "behaviour.weight",
                b.weight,
                "must be in [0, 1]",
            )?;
            check(
                (0.0..1.0).contains(&b.floor),
                "behaviour.floor",
                b.floor,
                "must be in [0, 1)",
            )?;
            check(
                b.hst.trees >= 1 && b.hst.window >= 1 && (1..=20).contains(&b.hst.height),
                "behaviour.hst",
                format!("{:?}", b.hst),
                "needs trees >= 1, window >= 1, height in 1..=20",
            )?;
        }
        Ok(())
    }
}
