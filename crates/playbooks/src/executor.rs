//! Runs plans through the core-traits action traits, with timeouts and bounded retries.

use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{
    Error as ActionError, IpBlocker, Notification, Notifier, SessionTerminator, StepUpRequirer,
    Timestamp, TokenIdentity, TokenRevoker,
};
use serde::{Deserialize, Serialize};

use crate::engine::{Action, Decision, Plan, Step};

/// The implementations actions are dispatched to; a missing one makes its actions fail.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Responders {
    /// Blocks and unblocks addresses.
    pub ip_blocker: Option<Arc<dyn IpBlocker>>,
    /// Revokes tokens.
    pub token_revoker: Option<Arc<dyn TokenRevoker>>,
    /// Requires step-up.
    pub step_up: Option<Arc<dyn StepUpRequirer>>,
    /// Terminates sessions.
    pub sessions: Option<Arc<dyn SessionTerminator>>,
    /// Sends notifications.
    pub notifier: Option<Arc<dyn Notifier>>,
}

/// What happened when an action was dispatched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// It took effect.
    Applied {
        /// How many attempts it took.
        attempts: u32,
    },
    /// It failed (after the retries allowed for its error).
    Failed {
        /// How many attempts were made.
        attempts: u32,
        /// The last error.
        error: String,
    },
    /// It timed out after dispatch: it may or may not have taken effect; not retried.
    Unknown {
        /// How many attempts were made.
        attempts: u32,
    },
    /// No responder is configured for this action.
    NoResponder,
}

/// Executes plans and reverts expired decisions.
#[derive(Debug, Clone)]
pub struct Executor {
    responders: Responders,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
}

impl Executor {
    /// An executor with a 2 s timeout per attempt, 2 retries, 50 ms initial backoff.
    pub fn new(responders: Responders) -> Self {
        Executor {
            responders,
            timeout: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(50),
        }
    }

    /// Sets the per-attempt timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the number of retries after a failed attempt and the first backoff (doubling).
    pub fn with_retries(mut self, retries: u32, backoff: Duration) -> Self {
        self.retries = retries;
        self.backoff = backoff;
        self
    }

    /// Executes the plan's [`crate::Verdict::Execute`] steps in order; returns each step's outcome.
    /// `now` is the plan time (used for `issued_before` of user revocations).
    pub async fn execute(&self, plan: &Plan) -> Vec<(u64, Outcome)> {
        let mut out = Vec::new();
        for step in plan.executable() {
            let outcome = self.run(step, plan.time).await;
            out.push((step.decision.unwrap_or(u64::MAX), outcome));
        }
        out
    }

    /// Undoes or closes an expired decision: unblocks an enforced IP block
    /// ([`Decision::needs_revert`]) and resolves an enforced notification with the same
    /// `dedup_key` ([`Decision::needs_resolve`]). `None` if nothing had to be done.
    pub async fn revert(&self, decision: &Decision) -> Option<Outcome> {
        match &decision.action {
            Action::BlockIp { ip, .. } if decision.needs_revert() => {
                let Some(b) = self.responders.ip_blocker.clone() else {
                    return Some(Outcome::NoResponder);
                };
                let ip = *ip;
                Some(
                    self.attempt(|| {
                        let b = b.clone();
                        async move { b.unblock_ip(ip).await }
                    })
                    .await,
                )
            }
            Action::Notify {
                summary, dedup_key, ..
            } if decision.needs_resolve() => {
                let Some(n) = self.responders.notifier.clone() else {
                    return Some(Outcome::NoResponder);
                };
                let note =
                    Notification::resolve(dedup_key.to_string(), format!("resolved: {summary}"));
                Some(
                    self.attempt(|| {
                        let (n, note) = (n.clone(), note.clone());
                        async move { n.notify(&note).await }
                    })
                    .await,
                )
            }
            _ => None,
        }
    }

    async fn run(&self, step: &Step, now: Timestamp) -> Outcome {
        let r = &self.responders;
        let reason = step.why.to_string();
        match step.action.clone() {
            Action::BlockIp { ip, duration } => match r.ip_blocker.clone() {
                Some(b) => {
                    self.attempt(|| {
                        let (b, reason) = (b.clone(), reason.clone());
                        async move { b.block_ip(ip, duration, &reason).await }
                    })
                    .await
                }
                None => Outcome::NoResponder,
            },
            Action::RevokeUserTokens { issuer, user_id } => match r.token_revoker.clone() {
                Some(t) => {
                    self.attempt(|| {
                        let (t, issuer, user_id) = (t.clone(), issuer.clone(), user_id.clone());
                        async move { t.revoke_user(&issuer, &user_id, now).await }
                    })
                    .await
                }
                None => Outcome::NoResponder,
            },
            Action::RevokeToken {
                issuer,
                jti,
                expires_at,
            } => match r.token_revoker.clone() {
                Some(t) => {
                    let token = TokenIdentity::new(issuer)
                        .with_jti(jti)
                        .with_expires_at(expires_at.as_unix_secs());
                    self.attempt(|| {
                        let (t, token) = (t.clone(), token.clone());
                        async move { t.revoke_token(&token).await }
                    })
                    .await
                }
                None => Outcome::NoResponder,
            },
            Action::RequireStepUp { user_id, valid_for } => match r.step_up.clone() {
                Some(s) => {
                    self.attempt(|| {
                        let (s, u, reason) = (s.clone(), user_id.clone(), reason.clone());
                        async move { s.require_step_up(&u, valid_for, &reason).await }
                    })
                    .await
                }
                None => Outcome::NoResponder,
            },
            Action::TerminateSessions { user_id } => match r.sessions.clone() {
                Some(s) => {
                    self.attempt(|| {
                        let (s, u, reason) = (s.clone(), user_id.clone(), reason.clone());
                        async move { s.terminate_sessions(&u, &reason).await.map(|_| ()) }
                    })
                    .await
                }
                None => Outcome::NoResponder,
            },
            Action::Notify {
                severity,
                summary,
                dedup_key,
            } => match r.notifier.clone() {
                Some(n) => {
                    let note =
                        Notification::trigger(severity, summary.to_string(), dedup_key.to_string());
                    self.attempt(|| {
                        let (n, note) = (n.clone(), note.clone());
                        async move { n.notify(&note).await }
                    })
                    .await
                }
                None => Outcome::NoResponder,
            },
        }
    }

    /// Retries only errors that say the action did not happen (backend unavailable);
    /// a timeout means the call was dispatched and may have happened: `Unknown`, no retry.
    async fn attempt<F, Fut>(&self, mut call: F) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), ActionError>>,
    {
        let mut backoff = self.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match tokio::time::timeout(self.timeout, call()).await {
                Ok(Ok(())) => return Outcome::Applied { attempts },
                Err(_) | Ok(Err(ActionError::Timeout(_))) => return Outcome::Unknown { attempts },
                Ok(Err(e)) => {
                    let retryable = matches!(e, ActionError::Unavailable { .. });
                    if !retryable || attempts > self.retries {
                        tracing::warn!(attempts, error = %e, "playbook action failed");
                        return Outcome::Failed {
                            attempts,
                            error: e.to_string(),
                        };
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
            }
        }
    }
}
