//! Runs plans through the core-traits action traits, with timeouts and bounded retries.

use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{
    Error as ActionError, IpBlocker, Notification, Notifier, SessionTerminator, StepUpRequirer,
    Timestamp, TokenIdentity, TokenRevoker,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::Error;
use crate::plan::{Action, Decision, Plan, Step};
use crate::stats::{Dispatched, ExecutorCounters, ExecutorStats};

/// The implementations actions are dispatched to; a missing one makes its actions
/// [`Outcome::NoResponder`].
#[derive(Debug, Clone, Default)]
struct Responders {
    ip_blocker: Option<Arc<dyn IpBlocker>>,
    token_revoker: Option<Arc<dyn TokenRevoker>>,
    step_up: Option<Arc<dyn StepUpRequirer>>,
    sessions: Option<Arc<dyn SessionTerminator>>,
    notifier: Option<Arc<dyn Notifier>>,
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

impl Outcome {
    /// The position among [`crate::OutcomeCounts`]' fields (applied, failed, unknown,
    /// no responder).
    fn index(&self) -> usize {
        match self {
            Outcome::Applied { .. } => 0,
            Outcome::Failed { .. } => 1,
            Outcome::Unknown { .. } => 2,
            Outcome::NoResponder => 3,
        }
    }
}

/// Builds an [`Executor`]: the responders actions go to, and how each call is timed
/// out and retried.
///
/// ```
/// # use std::{net::IpAddr, sync::Arc, time::Duration};
/// # use palisade_core_traits::{Error, IpBlocker, async_trait};
/// # #[derive(Debug)] struct Firewall;
/// # #[async_trait] impl IpBlocker for Firewall {
/// #     async fn block_ip(&self, _: IpAddr, _: Duration, _: &str) -> Result<(), Error> { Ok(()) }
/// #     async fn unblock_ip(&self, _: IpAddr) -> Result<(), Error> { Ok(()) }
/// # }
/// use palisade_playbooks::{Error as PlaybookError, Executor};
///
/// let exec = Executor::builder()
///     .ip_blocker(Arc::new(Firewall))
///     .timeout(Duration::from_secs(1))
///     .retries(3)
///     .build()
///     .unwrap();
/// assert_eq!(exec.stats().block_ip.applied, 0);
///
/// let err = Executor::builder().timeout(Duration::ZERO).build().unwrap_err();
/// assert!(matches!(err, PlaybookError::InvalidConfig { field: "timeout", .. }));
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build()"]
pub struct ExecutorBuilder {
    responders: Responders,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
}

impl Default for ExecutorBuilder {
    fn default() -> Self {
        ExecutorBuilder {
            responders: Responders::default(),
            timeout: Duration::from_secs(2),
            retries: 2,
            backoff: Duration::from_millis(50),
        }
    }
}

impl ExecutorBuilder {
    /// Blocks and unblocks addresses (`block_ip`, and the revert of an expired block).
    pub fn ip_blocker(mut self, b: Arc<dyn IpBlocker>) -> Self {
        self.responders.ip_blocker = Some(b);
        self
    }

    /// Revokes tokens (`revoke_token`, `revoke_user_tokens`).
    pub fn token_revoker(mut self, r: Arc<dyn TokenRevoker>) -> Self {
        self.responders.token_revoker = Some(r);
        self
    }

    /// Requires step-up (`require_step_up`).
    pub fn step_up(mut self, s: Arc<dyn StepUpRequirer>) -> Self {
        self.responders.step_up = Some(s);
        self
    }

    /// Ends sessions (`terminate_sessions`).
    pub fn sessions(mut self, s: Arc<dyn SessionTerminator>) -> Self {
        self.responders.sessions = Some(s);
        self
    }

    /// Sends notifications (`notify`, and the resolve of an expired notification).
    pub fn notifier(mut self, n: Arc<dyn Notifier>) -> Self {
        self.responders.notifier = Some(n);
        self
    }

    /// The timeout of one attempt (default 2 s; must not be zero). A timeout is
    /// [`Outcome::Unknown`] and is not retried: the call may have taken effect.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries after an attempt that failed with `Unavailable` (default 2; 0: none).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The wait before the first retry, doubling after each (default 50 ms).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// The executor; refused with [`Error::InvalidConfig`] for a zero `timeout`
    /// (every call would be "outcome unknown" without being given a chance).
    pub fn build(self) -> Result<Executor, Error> {
        if self.timeout.is_zero() {
            return Err(Error::config(
                "timeout",
                "a zero timeout gives no action a chance to finish",
            ));
        }
        Ok(Executor {
            responders: self.responders,
            timeout: self.timeout,
            retries: self.retries,
            backoff: self.backoff,
            counters: Arc::default(),
        })
    }
}

/// Executes plans and reverts expired decisions. Clones share their counters.
#[derive(Debug, Clone)]
pub struct Executor {
    responders: Responders,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
    counters: Arc<ExecutorCounters>,
}

impl Executor {
    /// A builder: no responders, a 2 s timeout per attempt, 2 retries, 50 ms initial
    /// backoff.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// The counters: outcomes by action kind (and of reverts), retries.
    pub fn stats(&self) -> ExecutorStats {
        self.counters.stats()
    }

    /// Executes the plan's [`crate::Verdict::Execute`] steps in order; returns each
    /// step's decision id and outcome. The plan time is the `issued_before` of user
    /// revocations.
    pub async fn execute(&self, plan: &Plan) -> Vec<(u64, Outcome)> {
        let mut out = Vec::new();
        for step in plan.executable() {
            let decision = step.decision.unwrap_or(u64::MAX);
            let kind = step.action.kind();
            let span = tracing::info_span!("playbooks.action", decision, kind = kind.name());
            let outcome = self.run(step, plan.time).instrument(span.clone()).await;
            self.finished(Dispatched::Step(kind), &outcome, &span);
            out.push((decision, outcome));
        }
        out
    }

    /// Undoes or closes an expired decision: unblocks an enforced IP block
    /// ([`Decision::needs_revert`]) and resolves an enforced notification with the same
    /// `dedup_key` ([`Decision::needs_resolve`]). `None` if nothing had to be done.
    pub async fn revert(&self, decision: &Decision) -> Option<Outcome> {
        let what = match &decision.action {
            Action::BlockIp { .. } if decision.needs_revert() => Dispatched::Unblock,
            Action::Notify { .. } if decision.needs_resolve() => Dispatched::Resolve,
            _ => return None,
        };
        let span = tracing::info_span!(
            "playbooks.revert",
            decision = decision.id,
            kind = what.name()
        );
        let outcome = match &decision.action {
            Action::BlockIp { ip, .. } => self.unblock(*ip).instrument(span.clone()).await,
            Action::Notify {
                summary, dedup_key, ..
            } => {
                (self.resolve(summary, dedup_key))
                    .instrument(span.clone())
                    .await
            }
            _ => return None,
        };
        self.finished(what, &outcome, &span);
        Some(outcome)
    }

    /// Counts an outcome and logs it inside the action's span.
    fn finished(&self, what: Dispatched, outcome: &Outcome, span: &tracing::Span) {
        self.counters.outcome(what, outcome.index());
        let _in = span.enter();
        match outcome {
            Outcome::Applied { attempts } => tracing::debug!(attempts, "playbooks: applied"),
            Outcome::Failed { attempts, error } => {
                tracing::warn!(attempts, error = %error, "playbooks: action failed");
            }
            Outcome::Unknown { attempts } => {
                tracing::warn!(attempts, "playbooks: timed out, outcome unknown");
            }
            Outcome::NoResponder => tracing::warn!("playbooks: no responder configured"),
        }
    }

    async fn unblock(&self, ip: std::net::IpAddr) -> Outcome {
        let Some(b) = self.responders.ip_blocker.clone() else {
            return Outcome::NoResponder;
        };
        self.attempt(Dispatched::Unblock, || {
            let b = b.clone();
            async move { b.unblock_ip(ip).await }
        })
        .await
    }

    async fn resolve(&self, summary: &str, dedup_key: &str) -> Outcome {
        let Some(n) = self.responders.notifier.clone() else {
            return Outcome::NoResponder;
        };
        let note = with_random_id(Notification::resolve(
            dedup_key,
            format!("resolved: {summary}"),
        ));
        self.attempt(Dispatched::Resolve, || {
            let (n, note) = (n.clone(), note.clone());
            async move { n.notify(&note).await }
        })
        .await
    }

    async fn run(&self, step: &Step, now: Timestamp) -> Outcome {
        let r = &self.responders;
        let reason = step.why.to_string();
        let what = Dispatched::Step(step.action.kind());
        match step.action.clone() {
            Action::BlockIp { ip, duration } => match r.ip_blocker.clone() {
                Some(b) => {
                    self.attempt(what, || {
                        let (b, reason) = (b.clone(), reason.clone());
                        async move { b.block_ip(ip, duration, &reason).await }
                    })
                    .await
                }
                None => Outcome::NoResponder,
            },
            Action::RevokeUserTokens { issuer, user_id } => match r.token_revoker.clone() {
                Some(t) => {
                    self.attempt(what, || {
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
                    self.attempt(what, || {
                        let (t, token) = (t.clone(), token.clone());
                        async move { t.revoke_token(&token).await }
                    })
                    .await
                }
                None => Outcome::NoResponder,
            },
            Action::RequireStepUp { user_id, valid_for } => match r.step_up.clone() {
                Some(s) => {
                    self.attempt(what, || {
                        let (s, u, reason) = (s.clone(), user_id.clone(), reason.clone());
                        async move { s.require_step_up(&u, valid_for, &reason).await }
                    })
                    .await
                }
                None => Outcome::NoResponder,
            },
            Action::TerminateSessions { user_id } => match r.sessions.clone() {
                Some(s) => {
                    self.attempt(what, || {
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
                    // One id for every attempt, the retries below included: the
                    // receiver drops a repeat of a notification that did arrive.
                    let note = with_random_id(Notification::trigger(
                        severity,
                        summary.to_string(),
                        dedup_key.to_string(),
                    ));
                    self.attempt(what, || {
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
    async fn attempt<F, Fut>(&self, what: Dispatched, mut call: F) -> Outcome
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
                        return Outcome::Failed {
                            attempts,
                            error: e.to_string(),
                        };
                    }
                    tracing::debug!(attempts, error = %e, "playbooks: backend unavailable, retrying");
                    self.counters.retry(what);
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                }
            }
        }
    }
}

/// 128 random bits in hex: a notification's id. `None` if the system's random source
/// fails (the notification then goes without one).
fn random_id() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

/// `n` with a random id ([`random_id`]), or as it is if none could be drawn.
pub(crate) fn with_random_id(n: Notification) -> Notification {
    match random_id() {
        Some(id) => n.with_id(id),
        None => n,
    }
}
