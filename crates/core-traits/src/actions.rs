//! The object-safe traits that cross crate borders.
//!
//! A capability crate implements one of these; another crate (or a playbook) holds it
//! as `Arc<dyn Trait>`; an example wires the two. Traits that may do I/O are async
//! (through `async-trait`); the revocation check also has a synchronous local path.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, SecurityEvent, Severity, Timestamp};

/// The claims that identify a token for revocation purposes.
///
/// Per-token revocation keys on `(issuer, jti)`, never on the token's bytes (an ECDSA
/// signature has a second valid form). Per-user revocation compares `issued_at` with a
/// watermark for `(issuer, subject)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenIdentity {
    /// The `iss` claim.
    pub issuer: String,
    /// The `sub` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The `jti` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The `iat` claim, whole seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<u64>,
    /// The `exp` claim, whole seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl TokenIdentity {
    /// An identity with only the issuer; add the other claims with the `with_*` methods.
    pub fn new(issuer: impl Into<String>) -> Self {
        TokenIdentity {
            issuer: issuer.into(),
            subject: None,
            jti: None,
            issued_at: None,
            expires_at: None,
        }
    }

    /// Sets `sub`.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets `jti`.
    pub fn with_jti(mut self, jti: impl Into<String>) -> Self {
        self.jti = Some(jti.into());
        self
    }

    /// Sets `iat` (seconds).
    pub fn with_issued_at(mut self, iat: u64) -> Self {
        self.issued_at = Some(iat);
        self
    }

    /// Sets `exp` (seconds).
    pub fn with_expires_at(mut self, exp: u64) -> Self {
        self.expires_at = Some(exp);
        self
    }
}

/// The answer to "is this token revoked?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationStatus {
    /// Not revoked, as far as a sufficiently fresh view can tell.
    NotRevoked,
    /// Revoked: refuse the token.
    Revoked,
    /// Freshness cannot be proven (e.g. the revocation store is unreachable).
    /// Callers that must fail closed treat this as [`RevocationStatus::Revoked`].
    Unknown,
}

impl RevocationStatus {
    /// Whether a fail-closed caller may accept the token: only for `NotRevoked`.
    pub fn allows(self) -> bool {
        self == RevocationStatus::NotRevoked
    }
}

/// Answers whether a token has been revoked.
///
/// Implemented by token-blacklist; consulted by jwt-cache on every hit and miss.
#[async_trait]
pub trait RevocationCheck: Send + Sync + fmt::Debug {
    /// Answers from local memory without I/O, or `None` if this implementation needs
    /// I/O to answer (then call [`RevocationCheck::check`]). A hot path calls this
    /// first, so a local answer never pays for a boxed future.
    fn check_local(&self, token: &TokenIdentity) -> Option<RevocationStatus>;

    /// Answers, doing I/O if needed. The default returns the local answer, or
    /// [`RevocationStatus::Unknown`] if there is none.
    async fn check(&self, token: &TokenIdentity) -> Result<RevocationStatus, Error> {
        Ok(self.check_local(token).unwrap_or(RevocationStatus::Unknown))
    }
}

/// Revokes tokens: one by `(issuer, jti)`, or all of a user's.
///
/// Implemented by token-blacklist; called by playbooks. Both methods return only
/// once the revocation is durable in the implementation's store.
#[async_trait]
pub trait TokenRevoker: Send + Sync + fmt::Debug {
    /// Revokes one token. `token` must carry `jti` and `expires_at`, or the
    /// implementation returns [`Error::InvalidValue`].
    async fn revoke_token(&self, token: &TokenIdentity) -> Result<(), Error>;

    /// Revokes every token of `(issuer, subject)` issued at or before `issued_before`.
    async fn revoke_user(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: Timestamp,
    ) -> Result<(), Error>;
}

/// Blocks network peers for a while.
///
/// Implemented by ratelimit (a blocked address is denied until the block expires);
/// called by playbooks.
#[async_trait]
pub trait IpBlocker: Send + Sync + fmt::Debug {
    /// Blocks `ip` for `duration` from now. Blocking an already blocked address
    /// replaces its expiry with the later of the two.
    async fn block_ip(&self, ip: IpAddr, duration: Duration, reason: &str) -> Result<(), Error>;

    /// Lifts a block early (a no-op if there is none).
    async fn unblock_ip(&self, ip: IpAddr) -> Result<(), Error>;
}

/// Requires a user to pass a step-up challenge (MFA) before continuing.
#[async_trait]
pub trait StepUpRequirer: Send + Sync + fmt::Debug {
    /// From now on and for `valid_for`, the user's next sensitive request must step up.
    async fn require_step_up(
        &self,
        user_id: &str,
        valid_for: Duration,
        reason: &str,
    ) -> Result<(), Error>;
}

/// Ends a user's sessions.
#[async_trait]
pub trait SessionTerminator: Send + Sync + fmt::Debug {
    /// Terminates every session of the user; returns how many were ended, if known.
    async fn terminate_sessions(&self, user_id: &str, reason: &str) -> Result<Option<u64>, Error>;
}

/// Whether a notification opens or closes an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationAction {
    /// Open (or re-open) an incident.
    Trigger,
    /// Close the incident with the same de-duplication key.
    Resolve,
}

/// A message to a human or a paging system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Notification {
    /// Open or close.
    pub action: NotificationAction,
    /// How urgent.
    pub severity: Severity,
    /// One line for a human.
    pub summary: String,
    /// Groups notifications about the same incident (PagerDuty's `dedup_key`).
    pub dedup_key: String,
    /// The event that caused it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<SecurityEvent>,
    /// This notification's own id (not its incident's: that is `dedup_key`), the same
    /// on every attempt to deliver it: delivery is at least once, and a receiver drops
    /// a repeat by it. `None`: the notifier picks one per delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Notification {
    /// A trigger notification.
    pub fn trigger(
        severity: Severity,
        summary: impl Into<String>,
        dedup_key: impl Into<String>,
    ) -> Self {
        Notification {
            action: NotificationAction::Trigger,
            severity,
            summary: summary.into(),
            dedup_key: dedup_key.into(),
            event: None,
            id: None,
        }
    }

    /// A resolve notification for an earlier trigger with the same key.
    pub fn resolve(dedup_key: impl Into<String>, summary: impl Into<String>) -> Self {
        Notification {
            action: NotificationAction::Resolve,
            severity: Severity::Info,
            summary: summary.into(),
            dedup_key: dedup_key.into(),
            event: None,
            id: None,
        }
    }

    /// Attaches the causing event.
    pub fn with_event(mut self, event: SecurityEvent) -> Self {
        self.event = Some(event);
        self
    }

    /// Sets its id ([`Notification::id`]).
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// Sends notifications (webhook, chat, pager).
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// Delivers one notification.
    async fn notify(&self, notification: &Notification) -> Result<(), Error>;
}

/// A JWS signature algorithm (RFC 7518 / RFC 8037 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// ECDSA P-256 with SHA-256, raw `r‖s` signature.
    ES256,
    /// ECDSA P-384 with SHA-384, raw `r‖s` signature.
    ES384,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
    PS256,
    /// Ed25519.
    EdDSA,
    /// ML-DSA-44 (FIPS 204, RFC 9964), pure mode with an empty context.
    #[serde(rename = "ML-DSA-44")]
    MlDsa44,
    /// ML-DSA-65 (FIPS 204, RFC 9964), pure mode with an empty context.
    #[serde(rename = "ML-DSA-65")]
    MlDsa65,
    /// ML-DSA-87 (FIPS 204, RFC 9964), pure mode with an empty context.
    #[serde(rename = "ML-DSA-87")]
    MlDsa87,
}

impl JwsAlgorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlgorithm::ES256 => "ES256",
            JwsAlgorithm::ES384 => "ES384",
            JwsAlgorithm::RS256 => "RS256",
            JwsAlgorithm::PS256 => "PS256",
            JwsAlgorithm::EdDSA => "EdDSA",
            JwsAlgorithm::MlDsa44 => "ML-DSA-44",
            JwsAlgorithm::MlDsa65 => "ML-DSA-65",
            JwsAlgorithm::MlDsa87 => "ML-DSA-87",
        }
    }

    /// Whether this is one of the post-quantum ML-DSA parameter sets.
    pub fn is_ml_dsa(self) -> bool {
        matches!(
            self,
            JwsAlgorithm::MlDsa44 | JwsAlgorithm::MlDsa65 | JwsAlgorithm::MlDsa87
        )
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compact JWS and the key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SignedJws {
    /// `header.payload.signature`, base64url without padding.
    pub compact: String,
    /// The `kid` in the header.
    pub key_id: String,
    /// The `alg` in the header.
    pub algorithm: JwsAlgorithm,
}

impl SignedJws {
    /// Bundles a signed token with its key id and algorithm.
    pub fn new(compact: String, key_id: String, algorithm: JwsAlgorithm) -> Self {
        SignedJws {
            compact,
            key_id,
            algorithm,
        }
    }
}

/// Signs JWS/JWTs with the currently active key.
///
/// Implemented by hsm-keys. The signer builds the protected header itself (`alg`,
/// `kid`, and `typ` if given), so the header always names the key that signed.
#[async_trait]
pub trait JwsSigner: Send + Sync + fmt::Debug {
    /// Signs `payload` (the JWT claims JSON, or any bytes) as a compact JWS.
    async fn sign_jws(&self, typ: Option<&str>, payload: &[u8]) -> Result<SignedJws, Error>;
}
