#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

mod freeman;
pub mod fuzz;
pub mod hst;
#[cfg(feature = "maxmind")]
mod maxmind;
pub mod rba;
pub mod synth;
pub mod ua;
mod velocity;

use std::fmt;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;

use palisade_core_traits::{
    Clock, EventId, EventKind, EvidenceBasis, LoginOutcome, Score, SecurityEvent, Severity,
    Subject, Timestamp, canonical_ip, normalize_user_id,
};
use serde::{Deserialize, Serialize};
use siphasher::sip::SipHasher13;

use freeman::{Entry, Model, entry_secs};
pub use freeman::{FreemanScore, HierarchyTerms, IP_WEIGHTS, LEVELS, UA_WEIGHTS};
#[cfg(feature = "maxmind")]
pub use maxmind::MaxMindLookup;
pub use ua::{SimpleUaParser, UaInfo, UaParser};
pub use velocity::{
    FailureSource, HeavyHitter, SourceKind, VelocityConfig, VelocityRisk, WINDOWS, WindowThresholds,
};
use velocity::{Sources, Velocity};

/// The `source` of the security events this crate emits.
pub const EVENT_SOURCE: &str = "palisade-threat-score";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of its range.
    #[error("invalid threat-score config: {field} = {value}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Its value, printed.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A MaxMind database could not be read.
    #[cfg(feature = "maxmind")]
    #[error("invalid MaxMind {what} database")]
    GeoDatabase {
        /// Which database (city or asn).
        what: &'static str,
        /// The reader's error.
        source: maxminddb::MaxMindDbError,
    },
    /// A database file could not be read.
    #[error("cannot read the {what} database {path}")]
    GeoFile {
        /// Which database (city or asn).
        what: &'static str,
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A row of a login data set (RBA CSV) could not be read.
    #[error("RBA data set line {line}: {reason}")]
    Dataset {
        /// The 1-based line number.
        line: u64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The login data set could not be read.
    #[error("cannot read the RBA data set")]
    DatasetIo {
        /// The I/O error.
        source: std::io::Error,
    },
    /// A snapshot whose contents are inconsistent.
    #[error("invalid threat-score snapshot: {reason}")]
    SnapshotInvalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// A snapshot from an unknown format version.
    #[error("threat-score snapshot version {found} is not supported (expected {expected})")]
    SnapshotVersion {
        /// The version found.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
}

/// What a GeoIP/ASN database knows about an address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeoInfo {
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Latitude and longitude in degrees.
    pub location: Option<(f64, f64)>,
}

/// A GeoIP/ASN lookup. Must not panic; unknown addresses give an empty [`GeoInfo`].
pub trait GeoLookup: Send + Sync + fmt::Debug {
    /// Looks `ip` up.
    fn lookup(&self, ip: IpAddr) -> GeoInfo;
}

/// How well the service knows this device for this user, from any source (a device
/// fingerprint store, a long-lived cookie, a client certificate).
pub trait DeviceSignal: Send + Sync + fmt::Debug {
    /// 0 = never seen with this user, 1 = long-standing device; `None` = no opinion.
    fn familiarity(&self, user: &str, attempt: &LoginAttempt) -> Option<f64>;
}

/// One login attempt as the scorer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginAttempt {
    /// The username or account id the attempt is for.
    pub user: String,
    /// The client address.
    pub ip: IpAddr,
    /// The `User-Agent` header, as received (may be empty or garbage).
    pub user_agent: String,
    /// Geo facts known by the caller; when `None` the scorer's [`GeoLookup`] is asked.
    pub geo: Option<GeoInfo>,
    /// Device familiarity known by the caller (0..1); when `None` the scorer's
    /// [`DeviceSignal`] is asked.
    pub device_familiarity: Option<f64>,
    /// Numeric request features for the behavioural (Half-Space Trees) signal, e.g.
    /// round-trip time, request size, seconds on the login form; always in the same
    /// order. Empty: the signal is skipped.
    pub numeric: Vec<f64>,
}

impl LoginAttempt {
    /// An attempt by `user` from `ip` with `user_agent`.
    pub fn new(user: impl Into<String>, ip: IpAddr, user_agent: impl Into<String>) -> Self {
        LoginAttempt {
            user: user.into(),
            ip,
            user_agent: user_agent.into(),
            geo: None,
            device_familiarity: None,
            numeric: Vec::new(),
        }
    }

    /// Sets the geo facts.
    pub fn with_geo(mut self, geo: GeoInfo) -> Self {
        self.geo = Some(geo);
        self
    }

    /// Sets the device familiarity.
    pub fn with_device_familiarity(mut self, familiarity: f64) -> Self {
        self.device_familiarity = Some(familiarity);
        self
    }

    /// Sets the numeric request features of the behavioural signal.
    pub fn with_numeric(mut self, features: impl Into<Vec<f64>>) -> Self {
        self.numeric = features.into();
        self
    }
}

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

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// Let it through, watch more closely (shorter sessions, alerts on sensitive actions).
    Monitor,
    /// Require step-up (MFA) before completing the login.
    StepUp,
    /// Refuse.
    Block,
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

/// A named part of the score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Signal {
    /// The IP → ASN → country hierarchy is unusual for this user (Freeman).
    IpFamiliarity,
    /// The user-agent hierarchy is unusual for this user (Freeman).
    UserAgentFamiliarity,
    /// The user logs in rarely compared to the average user (Freeman's user prior).
    LoginRarity,
    /// The user has no successful login yet: no history to compare with.
    NoHistory,
    /// Many failures on this username.
    BruteForce,
    /// Many failures from this IP, prefix or ASN.
    CredentialStuffing,
    /// Failures on many usernames from this IP or prefix.
    PasswordSpray,
    /// Too fast from the user's previous login location.
    ImpossibleTravel,
    /// The device is new or little known for this user.
    NewDevice,
    /// The numeric request features lie in a sparse region of what successful logins
    /// looked like (Half-Space Trees).
    BehaviourAnomaly,
}

impl Signal {
    /// A stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Signal::IpFamiliarity => "ip_familiarity",
            Signal::UserAgentFamiliarity => "user_agent_familiarity",
            Signal::LoginRarity => "login_rarity",
            Signal::NoHistory => "no_history",
            Signal::BruteForce => "brute_force",
            Signal::CredentialStuffing => "credential_stuffing",
            Signal::PasswordSpray => "password_spray",
            Signal::ImpossibleTravel => "impossible_travel",
            Signal::NewDevice => "new_device",
            Signal::BehaviourAnomaly => "behaviour_anomaly",
        }
    }

    fn event_kind(self) -> EventKind {
        match self {
            Signal::BruteForce => EventKind::BruteForce,
            Signal::CredentialStuffing => EventKind::CredentialStuffing,
            Signal::PasswordSpray => EventKind::PasswordSpray,
            Signal::ImpossibleTravel => EventKind::ImpossibleTravel,
            Signal::NewDevice => EventKind::DeviceAnomaly,
            _ => EventKind::AnomalousLogin,
        }
    }
}

/// One signal's part in a score.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// Which signal.
    pub signal: Signal,
    /// The signal's own risk in [0, 1] (for Freeman parts: the Freeman risk they share).
    pub risk: f64,
    /// Its share of the total score's evidence, in [0, 1]; shares sum to 1 when the
    /// score is above 0.
    pub share: f64,
    /// A human-readable reason.
    pub reason: String,
}

/// The scored attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreatScore {
    /// Probability-like risk in [0, 1], never NaN.
    pub score: f64,
    /// How much history backs the score, in [0, 1] (user history / `min_history`).
    pub confidence: f64,
    /// Every signal that raised the score, largest share first.
    pub contributions: Vec<Contribution>,
    /// The verdict under the scorer's thresholds.
    pub verdict: Verdict,
    /// The Freeman model's parts (`None` for a user without history).
    pub freeman: Option<FreemanScore>,
    /// The velocity signals' parts.
    pub velocity: VelocityRisk,
}

/// Scorer configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Verdict thresholds.
    pub thresholds: Thresholds,
    /// Freeman raw-score calibration.
    pub calibration: Calibration,
    /// Successful logins kept per user (oldest dropped first).
    pub history_cap: usize,
    /// Successful logins older than this (seconds) age out.
    pub history_max_age_secs: u64,
    /// History length at which confidence reaches 1.
    pub min_history: usize,
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
    /// Accounted bytes for histories; beyond it the least recently active users go.
    pub memory_budget_bytes: usize,
    /// The behavioural signal over [`LoginAttempt::numeric`]; `None` (default): off.
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
/// time); the cost is one more Freeman evaluation per recorded success. Scores stored while the scale was off are missing: turning it on later
/// starts every user at zero samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UserScale {
    /// Stored scores the median is taken over (at most `history_cap`).
    pub window: usize,
    /// Stored scores needed before the user's scale is used (1..=`window`).
    pub min_samples: usize,
    /// Maps `x` to [0, 1]; `x = 1` is the user's typical login.
    pub calibration: Calibration,
}

impl Default for UserScale {
    fn default() -> Self {
        UserScale {
            window: 20,
            min_samples: 10,
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
    pub hst: hst::HstConfig,
    /// Risk at anomaly score 1.
    pub weight: f64,
    /// Anomaly scores at or below this add no risk.
    pub floor: f64,
}

impl Default for BehaviourConfig {
    fn default() -> Self {
        BehaviourConfig {
            features: 1,
            hst: hst::HstConfig::default(),
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
            history_cap: 50,
            history_max_age_secs: 180 * 86_400,
            min_history: 20,
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

fn check(
    ok: bool,
    field: &'static str,
    value: impl fmt::Display,
    reason: &'static str,
) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field,
            value: value.to_string(),
            reason,
        })
    }
}

impl Config {
    /// Checks ranges.
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
            self.history_cap >= 1,
            "history_cap",
            self.history_cap,
            "must be >= 1",
        )?;
        check(
            self.min_history >= 1,
            "min_history",
            self.min_history,
            "must be >= 1",
        )?;
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
        if let Some(u) = &self.user_scale {
            check(
                (1..=self.history_cap).contains(&u.window),
                "user_scale.window",
                u.window,
                "must be in 1..=history_cap",
            )?;
            check(
                (1..=u.window).contains(&u.min_samples),
                "user_scale.min_samples",
                u.min_samples,
                "must be in 1..=window",
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

/// A saved model: the hash key and every user's retained history. The global history
/// is rebuilt from it on restore, so a snapshot cannot hold inconsistent counts.
/// It is as sensitive as the histories themselves (the key links hashes to values).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    version: u32,
    key: (u64, u64),
    users: Vec<(u64, Vec<SnapshotEntry>)>,
    /// The behavioural detector, when enabled (absent in older snapshots).
    #[serde(default)]
    behaviour: Option<hst::HalfSpaceTrees>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotEntry {
    at: u64,
    v: [u64; LEVELS],
    loc: Option<(f32, f32)>,
    /// The login's raw score for the per-user scale (absent in older snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<f32>,
}

const SNAPSHOT_VERSION: u32 = 1;

/// Per-user last known location, for impossible travel.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fix {
    at_secs: u64,
    lat: f32,
    lon: f32,
}

/// The scorer: histories, counters and configuration. Wrap in a `Mutex` to share.
pub struct ThreatScorer {
    config: Config,
    key: (u64, u64),
    model: Model,
    fixes: std::collections::HashMap<u64, Fix>,
    velocity: Velocity,
    ua: Arc<dyn UaParser>,
    geo: Option<Arc<dyn GeoLookup>>,
    device: Option<Arc<dyn DeviceSignal>>,
    clock: Arc<dyn Clock>,
    behaviour: Option<hst::HalfSpaceTrees>,
}

impl fmt::Debug for ThreatScorer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreatScorer")
            .field("users", &self.model.users.len())
            .field("logins", &self.model.total())
            .finish_non_exhaustive()
    }
}

/// Great-circle distance in km.
pub fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1) = (a.0.to_radians(), a.1.to_radians());
    let (la2, lo2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371.0 * h.sqrt().clamp(0.0, 1.0).asin()
}

/// Bytes accounted per user beyond its entries (map slot, deque header, fix).
const USER_OVERHEAD: usize = 96;
/// Bytes accounted per global value count (map slot).
const VALUE_OVERHEAD: usize = 24;

struct Prepared {
    asn: Option<u32>,
    user: u64,
    values: [u64; LEVELS],
    sources: Sources,
    location: Option<(f64, f64)>,
    device: Option<f64>,
}

fn risk_share(r: f64) -> f64 {
    // Evidence weight of a risk under noisy-OR: −ln(1 − r), finite, precise for tiny r.
    -(-r.clamp(0.0, 1.0 - 1e-12)).ln_1p()
}

impl ThreatScorer {
    /// A scorer with the built-in UA parser and no geo lookup or device signal.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Result<Self, Error> {
        config.validate()?;
        let s = std::collections::hash_map::RandomState::new();
        let key = (
            std::hash::BuildHasher::hash_one(&s, 0x5eed_u64),
            std::hash::BuildHasher::hash_one(&s, 0xfeed_u64),
        );
        Ok(ThreatScorer {
            behaviour: config
                .behaviour
                .map(|b| hst::HalfSpaceTrees::new(b.features, b.hst)),
            velocity: Velocity::new(&config.velocity),
            config,
            key,
            model: Model::default(),
            fixes: std::collections::HashMap::new(),
            ua: Arc::new(SimpleUaParser),
            geo: None,
            device: None,
            clock,
        })
    }

    /// Uses `ua` to parse user agents.
    pub fn with_ua_parser(mut self, ua: Arc<dyn UaParser>) -> Self {
        self.ua = ua;
        self
    }

    /// Uses `geo` for attempts without [`LoginAttempt::geo`].
    pub fn with_geo(mut self, geo: Arc<dyn GeoLookup>) -> Self {
        self.geo = Some(geo);
        self
    }

    /// Uses `device` for attempts without [`LoginAttempt::device_familiarity`].
    pub fn with_device_signal(mut self, device: Arc<dyn DeviceSignal>) -> Self {
        self.device = Some(device);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Users with a retained history.
    pub fn users(&self) -> usize {
        self.model.users.len()
    }

    /// Bytes accounted against the memory budget (histories and global counts).
    pub fn memory_bytes(&self) -> usize {
        let entries: usize = self.model.users.values().map(|h| h.len()).sum();
        self.model.users.len() * USER_OVERHEAD
            + entries * std::mem::size_of::<Entry>()
            + self.model.value_count() * VALUE_OVERHEAD
    }

    /// Bytes of the fixed-size velocity counters (not part of the budget).
    pub fn velocity_memory_bytes(&self) -> usize {
        self.velocity.memory_bytes()
    }

    fn hash(&self, tag: u8, bytes: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write_u8(tag);
        h.write(bytes);
        match h.finish() {
            0 => 1,
            x => x,
        }
    }

    fn prepare(&self, a: &LoginAttempt) -> Prepared {
        let looked_up;
        let geo = match &a.geo {
            Some(g) => g,
            None => {
                looked_up = self
                    .geo
                    .as_ref()
                    .map(|g| g.lookup(a.ip))
                    .unwrap_or_default();
                &looked_up
            }
        };
        let ua = self.ua.parse(&a.user_agent);
        // Keys are canonical: a dual-stack listener's `::ffff:a.b.c.d` is `a.b.c.d`, and
        // `Admin` is `admin` (core-traits' rules, shared by every crate).
        let ip = canonical_ip(a.ip);
        let ip_bytes = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let prefix = match ip {
            IpAddr::V4(v4) => self.hash(8, &v4.octets()[..3]),
            IpAddr::V6(v6) => self.hash(9, &v6.octets()[..8]),
        };
        let asn = geo.asn.map_or(0, |n| self.hash(1, &n.to_be_bytes()));
        let country = geo
            .country
            .as_ref()
            .filter(|c| !c.is_empty())
            .map_or(0, |c| self.hash(2, c.to_ascii_uppercase().as_bytes()));
        let values = [
            self.hash(0, &ip_bytes),
            asn,
            country,
            self.hash(3, a.user_agent.as_bytes()),
            self.hash(4, ua.browser.as_bytes()),
            self.hash(5, ua.os.as_bytes()),
            self.hash(6, ua.device.as_bytes()),
        ];
        let user_id = normalize_user_id(&a.user);
        let user = self.hash(7, user_id.as_bytes());
        let location = geo.location.filter(|(la, lo)| {
            la.is_finite() && lo.is_finite() && la.abs() <= 90.0 && lo.abs() <= 180.0
        });
        let device = a
            .device_familiarity
            .or_else(|| (self.device.as_ref()).and_then(|d| d.familiarity(&user_id, a)))
            .filter(|f| f.is_finite())
            .map(|f| f.clamp(0.0, 1.0));
        Prepared {
            asn: geo.asn,
            user,
            values,
            sources: Sources {
                user,
                ip: values[0],
                prefix,
                asn,
            },
            location,
            device,
        }
    }

    fn now_secs(&self) -> u64 {
        self.clock.now().as_unix_secs()
    }

    /// Scores an attempt (read-only: call [`record`](Self::record) with its outcome).
    pub fn score(&self, attempt: &LoginAttempt) -> ThreatScore {
        let p = self.prepare(attempt);
        let now = self.now_secs();
        let cfg = &self.config;
        let mut parts: Vec<(Signal, f64, f64, String)> = Vec::with_capacity(8); // signal, risk, weight, reason
        let mut freeman = self.model.score(p.user, &p.values);
        if let (Some(f), Some(u)) = (&mut freeman, &cfg.user_scale) {
            f.typical = self.model.typical(p.user, u.window, u.min_samples);
        }
        let history = freeman.map_or(0, |f| f.history);
        match &freeman {
            Some(f) => {
                let (r, scale) = match (f.typical, &cfg.user_scale) {
                    (Some(m), Some(u)) => {
                        let x = f.raw / m;
                        (
                            u.calibration.map(x),
                            format!("; S is {x:.2}× this user's usual"),
                        )
                    }
                    _ => (cfg.calibration.map(f.raw), String::new()),
                };
                let w = risk_share(r);
                let logs = [
                    (Signal::IpFamiliarity, f.ip.factor, f.ip.never_seen),
                    (Signal::UserAgentFamiliarity, f.ua.factor, f.ua.never_seen),
                    (Signal::LoginRarity, f.user_factor, false),
                ];
                let positive: f64 = logs.iter().map(|(_, x, _)| x.ln().max(0.0)).sum();
                // The largest factor carries the risk when none is above 1 (familiar login).
                let largest = logs.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
                for (signal, factor, never) in logs {
                    let l = factor.ln().max(0.0);
                    let part = if positive > 0.0 {
                        w * l / positive
                    } else if factor == largest {
                        w
                    } else {
                        0.0
                    };
                    if part > 0.0 || (positive == 0.0 && factor == largest) {
                        let reason = match (signal, never) {
                            (Signal::LoginRarity, _) => {
                                format!("user has {} logins; factor {factor:.3}", f.history)
                            }
                            (_, true) => format!("never seen for this user (factor {factor:.3})"),
                            _ => format!("familiarity factor {factor:.3} (below 1 is familiar)"),
                        } + &scale;
                        parts.push((signal, r, part, reason));
                        if positive == 0.0 {
                            break;
                        }
                    }
                }
            }
            None => {
                let r = cfg.no_history_risk;
                parts.push((
                    Signal::NoHistory,
                    r,
                    risk_share(r),
                    "no successful login to compare with".to_owned(),
                ));
            }
        }
        let v = self.velocity.risk(now, p.sources, &cfg.velocity);
        for (signal, r, reason) in [
            (
                Signal::BruteForce,
                v.brute_force,
                format!(
                    "{} failed logins on this username in a window",
                    v.user_failures
                ),
            ),
            (
                Signal::CredentialStuffing,
                v.stuffing,
                format!(
                    "{} failed logins from this IP in a window (or its prefix/ASN)",
                    v.ip_failures
                ),
            ),
            (
                Signal::PasswordSpray,
                v.spray,
                format!(
                    "{} usernames failed from this IP in a window (or its prefix)",
                    v.ip_distinct_users
                ),
            ),
        ] {
            if r > 0.0 {
                parts.push((signal, r, risk_share(r), reason));
            }
        }
        if let (Some(here), Some(fix)) = (p.location, self.fixes.get(&p.user)) {
            let km = haversine_km((f64::from(fix.lat), f64::from(fix.lon)), here);
            if km >= cfg.travel_min_km && km.is_finite() {
                let hours = now.saturating_sub(fix.at_secs) as f64 / 3600.0;
                let speed = if hours > 0.0 {
                    km / hours
                } else {
                    f64::INFINITY
                };
                let x = speed / cfg.travel_speed_kmh;
                let r = if x.is_finite() {
                    1.0 - (-x).exp2()
                } else {
                    1.0
                };
                parts.push((
                    Signal::ImpossibleTravel,
                    r,
                    risk_share(r),
                    format!("{km:.0} km from the last login in {hours:.2} h"),
                ));
            }
        }
        if let Some(f) = p.device {
            let r = cfg.new_device_risk * (1.0 - f);
            if r > 0.0 {
                parts.push((
                    Signal::NewDevice,
                    r,
                    risk_share(r),
                    format!("device familiarity {f:.2}"),
                ));
            }
        }
        if let (Some(b), Some(h)) = (&cfg.behaviour, &self.behaviour)
            && !attempt.numeric.is_empty()
        {
            let a = h.score(&attempt.numeric);
            let r = b.weight * ((a - b.floor) / (1.0 - b.floor)).clamp(0.0, 1.0);
            if r > 0.0 {
                parts.push((
                    Signal::BehaviourAnomaly,
                    r,
                    risk_share(r),
                    format!("request features anomaly score {a:.2} (Half-Space Trees)"),
                ));
            }
        }
        // Noisy-OR: score = 1 − Π(1 − r_i) = 1 − exp(−Σ w_i).
        let total: f64 = parts.iter().map(|x| x.2).sum();
        let score = if total.is_finite() {
            (1.0 - (-total).exp()).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let mut contributions: Vec<Contribution> = parts
            .into_iter()
            .map(|(signal, risk, w, reason)| Contribution {
                signal,
                risk,
                share: if total > 0.0 && total.is_finite() {
                    w / total
                } else {
                    0.0
                },
                reason,
            })
            .collect();
        contributions.sort_by(|a, b| b.share.total_cmp(&a.share));
        let confidence = (history as f64 / cfg.min_history as f64).min(1.0);
        ThreatScore {
            score,
            confidence,
            verdict: cfg.thresholds.verdict(score),
            contributions,
            freeman,
            velocity: v,
        }
    }

    /// Records the outcome of an attempt. Only a completed login (`Success`, or
    /// `StepUpSuccess` after a step-up) teaches the user's history; every outcome feeds
    /// the velocity counters.
    pub fn record(&mut self, attempt: &LoginAttempt, outcome: LoginOutcome) {
        let p = self.prepare(attempt);
        let now = self.now_secs();
        let success = matches!(outcome, LoginOutcome::Success | LoginOutcome::StepUpSuccess);
        self.velocity.record(now, p.sources, success);
        if !success {
            let ip = canonical_ip(attempt.ip);
            let mut sources = vec![FailureSource::Ip(ip), FailureSource::prefix_of(ip)];
            sources.extend(p.asn.map(FailureSource::Asn));
            self.velocity.record_failure_sources(now, &sources);
            return;
        }
        if let Some(h) = &mut self.behaviour
            && !attempt.numeric.is_empty()
        {
            h.learn(&attempt.numeric);
        }
        // The login's own score, kept for the per-user scale.
        let raw = match self.config.user_scale {
            // Clamped so f32 neither overflows to infinity nor underflows to 0.
            Some(_) => self.model.score(p.user, &p.values).map_or(f32::NAN, |f| {
                (f.raw as f32).clamp(f32::MIN_POSITIVE, f32::MAX)
            }),
            None => f32::NAN,
        };
        let entry = Entry {
            at_secs: entry_secs(now),
            values: p.values,
            raw,
        };
        self.model.learn(
            p.user,
            entry,
            self.config.history_cap,
            self.config.history_max_age_secs,
        );
        if let Some((lat, lon)) = p.location {
            self.fixes.insert(
                p.user,
                Fix {
                    at_secs: now,
                    lat: lat as f32,
                    lon: lon as f32,
                },
            );
        }
        self.enforce_budget(p.user);
    }

    /// Drops sampled least-recently-active users until the accounted memory fits.
    fn enforce_budget(&mut self, keep: u64) {
        while self.memory_bytes() > self.config.memory_budget_bytes && self.model.users.len() > 1 {
            let victim = self
                .model
                .users
                .iter()
                .filter(|(u, _)| **u != keep)
                .take(8)
                .min_by_key(|(_, h)| h.back().map_or(0, |e| e.at_secs))
                .map(|(u, _)| *u);
            match victim {
                Some(u) => {
                    self.model.forget(u);
                    self.fixes.remove(&u);
                }
                None => break,
            }
        }
    }

    /// The `n` sources of `kind` (IPs, /24 or /64 prefixes, ASNs) with the most failed
    /// logins in window `window` (an index into [`WINDOWS`]: 0 = 1 min, 1 = 10 min,
    /// 2 = 1 h), largest first, from fixed-size Space-Saving summaries: counts never
    /// under-estimate, and [`HeavyHitter::error`] bounds the over-estimate.
    pub fn top_failing_sources(
        &self,
        window: usize,
        kind: SourceKind,
        n: usize,
    ) -> Vec<HeavyHitter> {
        self.velocity.top_failing(window, self.now_secs(), kind, n)
    }

    /// Forgets a user (account deletion, erasure request).
    pub fn forget_user(&mut self, user: &str) {
        let u = self.hash(7, normalize_user_id(user).as_bytes());
        self.model.forget(u);
        self.fixes.remove(&u);
    }

    /// A security event for a verdict above allow, `None` for allow.
    ///
    /// `outcome` is what became of the attempt, and decides what the event may justify
    /// ([`SecurityEvent::basis`]): when the primary credential was accepted (`Success`,
    /// `StepUpSuccess`, `StepUpFailure`) the evidence is tied to an authenticated
    /// session, [`EvidenceBasis::Authenticated`], and a playbook may end the account's
    /// sessions; a `Failure` is anyone's attempt on a username,
    /// [`EvidenceBasis::Unauthenticated`]: it may step up the next login and notify,
    /// never log the owner out.
    pub fn event(
        &self,
        attempt: &LoginAttempt,
        score: &ThreatScore,
        outcome: LoginOutcome,
    ) -> Option<SecurityEvent> {
        let severity = match score.verdict {
            Verdict::Allow => return None,
            Verdict::Monitor => Severity::Low,
            Verdict::StepUp => Severity::Medium,
            Verdict::Block => Severity::High,
        };
        let top = score
            .contributions
            .first()
            .map_or(Signal::IpFamiliarity, |c| c.signal);
        let now: Timestamp = self.clock.now();
        let user_id = normalize_user_id(&attempt.user);
        let id = format!(
            "threat-score-{:016x}-{}",
            self.hash(10, user_id.as_bytes()),
            now.as_unix_nanos()
        );
        let id = EventId::new(id).ok()?;
        let ip = canonical_ip(attempt.ip);
        let subject = if user_id.is_empty() {
            Subject::ip(ip)
        } else {
            Subject::user(&user_id)
        };
        let basis = match outcome {
            LoginOutcome::Failure => EvidenceBasis::Unauthenticated,
            // Success, StepUpSuccess, StepUpFailure: the password was accepted. Unknown
            // future outcomes count as the weaker evidence.
            LoginOutcome::Success | LoginOutcome::StepUpSuccess | LoginOutcome::StepUpFailure => {
                EvidenceBasis::Authenticated
            }
            _ => EvidenceBasis::Unauthenticated,
        };
        let mut ev = SecurityEvent::new(id, now, top.event_kind(), severity, subject, EVENT_SOURCE)
            .with_basis(basis)
            .with_evidence("ip", ip.to_string())
            .with_evidence("outcome", format!("{outcome:?}").to_lowercase())
            .with_evidence("verdict", format!("{:?}", score.verdict).to_lowercase())
            .with_evidence("confidence", format!("{:.2}", score.confidence));
        if let Ok(s) = Score::new(score.score) {
            ev = ev.with_score(s);
        }
        for c in &score.contributions {
            ev = ev.with_evidence(
                c.signal.name(),
                format!("share {:.2}: {}", c.share, c.reason),
            );
        }
        Some(ev)
    }

    /// The learned histories, for [`restore`](Self::restore).
    pub fn snapshot(&self) -> Snapshot {
        let users = self
            .model
            .users
            .iter()
            .map(|(u, h)| {
                let fix = self.fixes.get(u);
                // The last known location rides on the entry of the login it came from.
                let at =
                    fix.and_then(|f| h.iter().rposition(|e| e.at_secs == entry_secs(f.at_secs)));
                let entries = h
                    .iter()
                    .enumerate()
                    .map(|(i, e)| SnapshotEntry {
                        at: u64::from(e.at_secs),
                        v: e.values,
                        loc: fix.filter(|_| Some(i) == at).map(|f| (f.lat, f.lon)),
                        s: Some(e.raw).filter(|r| r.is_finite()),
                    })
                    .collect();
                (*u, entries)
            })
            .collect();
        Snapshot {
            version: SNAPSHOT_VERSION,
            key: self.key,
            users,
            behaviour: self.behaviour.clone(),
        }
    }

    /// Replaces the learned histories with `snapshot`'s (velocity counters restart).
    pub fn restore(&mut self, snapshot: Snapshot) -> Result<(), Error> {
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(Error::SnapshotVersion {
                found: snapshot.version,
                expected: SNAPSHOT_VERSION,
            });
        }
        if snapshot
            .behaviour
            .as_ref()
            .is_some_and(|h| !h.is_consistent())
        {
            return Err(Error::SnapshotInvalid {
                reason: "behaviour detector trees do not match their height",
            });
        }
        if snapshot
            .users
            .iter()
            .flat_map(|(_, entries)| entries)
            .any(|e| e.s.is_some_and(|s| !(s.is_finite() && s >= 0.0)))
        {
            return Err(Error::SnapshotInvalid {
                reason: "a login's stored score is negative or not finite",
            });
        }
        self.key = snapshot.key;
        self.model = Model::default();
        self.fixes.clear();
        for (u, entries) in snapshot.users {
            for e in entries {
                self.model.learn(
                    u,
                    Entry {
                        at_secs: entry_secs(e.at),
                        values: e.v,
                        raw: e.s.unwrap_or(f32::NAN),
                    },
                    self.config.history_cap,
                    self.config.history_max_age_secs,
                );
                if let Some((lat, lon)) = e.loc {
                    self.fixes.insert(
                        u,
                        Fix {
                            at_secs: e.at,
                            lat,
                            lon,
                        },
                    );
                }
            }
        }
        self.velocity = Velocity::new(&self.config.velocity);
        // A saved detector only fits the same feature count; otherwise start fresh.
        self.behaviour = match (self.config.behaviour, snapshot.behaviour) {
            (Some(b), Some(h)) if h.features() == b.features => Some(h),
            (Some(b), _) => Some(hst::HalfSpaceTrees::new(b.features, b.hst)),
            (None, _) => None,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
