//! What a score says: the verdict, the signals and their shares.

use palisade_core_traits::EventKind;
use serde::{Deserialize, Serialize};

use crate::freeman::FreemanScore;
use crate::velocity::VelocityRisk;

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

    pub(crate) fn event_kind(self) -> EventKind {
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
