//! What the gateway did, in the form the dashboard shows: one [`Activity`] per
//! decision (a login, a denial, a block, a revocation, a detection, an action).

use std::net::IpAddr;

use palisade_core_traits::Timestamp;
use serde::{Deserialize, Serialize};

/// Where a request came from, located through GeoIP when the database knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// The client address (canonical).
    pub ip: Option<IpAddr>,
    /// ISO country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Latitude, longitude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<(f64, f64)>,
    /// Autonomous system number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// The client's JA4 fingerprint, when served over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ja4: Option<String>,
}

/// How a login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginResult {
    /// Credentials accepted, token issued.
    Success,
    /// Wrong credentials (or unknown user).
    Failure,
    /// Credentials accepted, a one-time code is required first.
    StepUp,
    /// The one-time code was right: token issued.
    StepUpPassed,
    /// The one-time code was wrong or expired.
    StepUpFailed,
    /// Refused by risk (block verdict), whatever the credentials.
    Denied,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum What {
    /// A login attempt and its result.
    Login {
        /// The account (normalized).
        user: String,
        /// How it ended.
        result: LoginResult,
        /// The risk score, when scored.
        #[serde(skip_serializing_if = "Option::is_none")]
        score: Option<f64>,
    },
    /// A rate limit denied a request (`429`).
    RateLimited {
        /// The policy that decided.
        policy: String,
    },
    /// A blocked address was refused (`403`).
    Blocked {
        /// Why it is blocked (playbook, manual, threat intelligence list).
        reason: String,
    },
    /// The threat-intelligence deny list matched.
    IntelHit {
        /// Which list.
        list: String,
    },
    /// Tokens were revoked.
    Revoked {
        /// `token` or `user`.
        scope: String,
        /// The `jti` or the user id.
        subject: String,
    },
    /// A request was answered by the idempotency layer.
    Idempotency {
        /// `replay`, `conflict`, `mismatch` or `coalesced`.
        outcome: String,
        /// Whose request (`ip …` or `sub …`).
        client: String,
    },
    /// A security event from one of the crates.
    Detection {
        /// Its kind, e.g. `impossible_travel`.
        event: String,
        /// Its severity.
        severity: String,
        /// Who it is about, e.g. `user alice` or `ip 198.51.100.7`.
        subject: String,
        /// `authenticated` or `unauthenticated`.
        basis: String,
        /// The region whose gateway detected it (`--region`).
        region: String,
        /// The incident it joined.
        incident: u64,
    },
    /// A playbook action and its explanation.
    Action {
        /// The incident it answers.
        incident: u64,
        /// e.g. `block_ip`.
        action: String,
        /// e.g. `execute`, `suppressed`.
        verdict: String,
        /// The playbook's explanation.
        why: String,
    },
    /// A signing key changed state.
    Key {
        /// The key id.
        kid: String,
        /// Its algorithm.
        alg: String,
        /// `active`, `published` (verifying only) or `retired`.
        status: String,
    },
    /// Certificate Transparency found something.
    CtAlert {
        /// The watched domain.
        domain: String,
        /// One line for a human.
        summary: String,
    },
}

/// One thing the gateway did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    /// Position in the gateway's stream (assigned when published).
    pub seq: u64,
    /// The instance it happened on, when another instance of the fleet shared it
    /// (`--redis`); absent for this instance's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// When it happened.
    pub time: Timestamp,
    /// The request it belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Where the request came from.
    pub origin: Origin,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

impl Activity {
    /// An activity at `time` from `origin` (its `seq` is set when published).
    pub fn new(time: Timestamp, origin: Origin, what: What) -> Self {
        Activity {
            seq: 0,
            instance: None,
            time,
            request_id: None,
            origin,
            what,
        }
    }

    /// Ties it to a request.
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}
