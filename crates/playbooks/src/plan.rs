//! What the engine decides: targets, actions, verdicts, explanations, plans and the
//! decisions it remembers. Plain data, serializable; the pipeline is in `engine`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{
    EventId, EventKind, EvidenceBasis, Severity, Subject, Timestamp, canonical_ip, client_net,
    normalize_user_id,
};
use serde::{Deserialize, Serialize};

use crate::definition::SubjectType;

/// Who or what an action is aimed at.
///
/// Two address targets are the same target when they are one client as ratelimit
/// limits and blocks it ([`client_net`]: an IPv6 address's /64): the engine
/// de-duplicates, cools down and escalates a client rotating addresses inside its /64
/// as one, and an allowlisted IPv6 address covers its /64. The address itself is kept
/// as the event gave it, for the action and the audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Target {
    /// A network peer.
    Ip {
        /// The address (IPv4-mapped IPv6 is stored as IPv4).
        ip: IpAddr,
    },
    /// An account.
    User {
        /// The user id, normalized ([`normalize_user_id`]).
        user_id: String,
    },
    /// One token.
    Token {
        /// `iss`.
        issuer: String,
        /// `jti`.
        jti: String,
    },
    /// A device.
    Device {
        /// The device id.
        device_id: String,
    },
    /// A DNS name.
    Domain {
        /// The name.
        domain: String,
    },
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        match (self, other) {
            (Target::Ip { ip: a }, Target::Ip { ip: b }) => client_net(*a) == client_net(*b),
            (Target::User { user_id: a }, Target::User { user_id: b }) => a == b,
            (Target::Token { issuer, jti }, Target::Token { issuer: i, jti: j }) => {
                issuer == i && jti == j
            }
            (Target::Device { device_id: a }, Target::Device { device_id: b }) => a == b,
            (Target::Domain { domain: a }, Target::Domain { domain: b }) => a == b,
            _ => false,
        }
    }
}

impl Eq for Target {}

// Consistent with `eq`: an address hashes as its `client_net`.
impl Hash for Target {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Target::Ip { ip } => client_net(*ip).hash(state),
            Target::User { user_id } => user_id.hash(state),
            Target::Token { issuer, jti } => (issuer, jti).hash(state),
            Target::Device { device_id } => device_id.hash(state),
            Target::Domain { domain } => domain.hash(state),
        }
    }
}

impl Target {
    /// An account target, normalized: `Admin` and `admin` are one account.
    pub fn user(user_id: &str) -> Target {
        Target::User {
            user_id: normalize_user_id(user_id).into_owned(),
        }
    }

    /// The target of an event's subject, or `None` for a subject type this version does not know.
    pub fn of(subject: &Subject) -> Option<Target> {
        Some(match subject {
            Subject::Ip { ip } => Target::Ip {
                ip: canonical_ip(*ip),
            },
            Subject::User { user_id } => Target::user(user_id),
            Subject::Token { issuer, jti } => Target::Token {
                issuer: issuer.clone(),
                jti: jti.clone(),
            },
            Subject::Device { device_id } => Target::Device {
                device_id: device_id.clone(),
            },
            Subject::Domain { domain } => Target::Domain {
                domain: domain.clone(),
            },
            _ => return None,
        })
    }

    pub(crate) fn subject_type(&self) -> SubjectType {
        match self {
            Target::Ip { .. } => SubjectType::Ip,
            Target::User { .. } => SubjectType::User,
            Target::Token { .. } => SubjectType::Token,
            Target::Device { .. } => SubjectType::Device,
            Target::Domain { .. } => SubjectType::Domain,
        }
    }

    pub(crate) fn value(&self) -> String {
        TargetValue(self).to_string()
    }
}

/// The target's value as text (address, user id, `jti`, …), formatted in place.
pub(crate) struct TargetValue<'a>(pub(crate) &'a Target);

impl fmt::Display for TargetValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Target::Ip { ip } => write!(f, "{ip}"),
            Target::User { user_id } => f.write_str(user_id),
            Target::Token { jti, .. } => f.write_str(jti),
            Target::Device { device_id } => f.write_str(device_id),
            Target::Domain { domain } => f.write_str(domain),
        }
    }
}

/// A concrete action, resolved against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Block an address for a while (reverted on expiry).
    BlockIp {
        /// The address.
        ip: IpAddr,
        /// How long (after escalation).
        duration: Duration,
    },
    /// Revoke all of a user's tokens issued until now.
    RevokeUserTokens {
        /// The issuer.
        issuer: String,
        /// The user.
        user_id: String,
    },
    /// Revoke one token.
    RevokeToken {
        /// `iss`.
        issuer: String,
        /// `jti`.
        jti: String,
        /// Until when the revocation must be kept (the token's latest possible expiry).
        expires_at: Timestamp,
    },
    /// Require step-up.
    RequireStepUp {
        /// The user.
        user_id: String,
        /// How long.
        valid_for: Duration,
    },
    /// End the user's sessions.
    TerminateSessions {
        /// The user.
        user_id: String,
    },
    /// Tell a human.
    Notify {
        /// How urgent.
        severity: Severity,
        /// One line.
        summary: Arc<str>,
        /// Groups notifications about one incident.
        dedup_key: Arc<str>,
    },
}

/// The kind of an [`Action`], part of the de-duplication key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// [`Action::BlockIp`].
    BlockIp,
    /// [`Action::RevokeUserTokens`].
    RevokeUserTokens,
    /// [`Action::RevokeToken`].
    RevokeToken,
    /// [`Action::RequireStepUp`].
    RequireStepUp,
    /// [`Action::TerminateSessions`].
    TerminateSessions,
    /// [`Action::Notify`].
    Notify,
}

impl ActionKind {
    /// Every kind, in declaration order (the index of a kind's budget and counters).
    pub(crate) const ALL: [ActionKind; 6] = [
        ActionKind::BlockIp,
        ActionKind::RevokeUserTokens,
        ActionKind::RevokeToken,
        ActionKind::RequireStepUp,
        ActionKind::TerminateSessions,
        ActionKind::Notify,
    ];

    /// The kind's name as playbook files and JSON spell it (`block_ip`, `notify`, …).
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::BlockIp => "block_ip",
            ActionKind::RevokeUserTokens => "revoke_user_tokens",
            ActionKind::RevokeToken => "revoke_token",
            ActionKind::RequireStepUp => "require_step_up",
            ActionKind::TerminateSessions => "terminate_sessions",
            ActionKind::Notify => "notify",
        }
    }

    /// Whether the action works against an account's owner (ends their sessions or
    /// revokes their tokens): only authenticated evidence may justify it.
    pub fn acts_on_account(self) -> bool {
        matches!(
            self,
            ActionKind::RevokeUserTokens | ActionKind::RevokeToken | ActionKind::TerminateSessions
        )
    }
}

impl Action {
    /// Its kind.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::BlockIp { .. } => ActionKind::BlockIp,
            Action::RevokeUserTokens { .. } => ActionKind::RevokeUserTokens,
            Action::RevokeToken { .. } => ActionKind::RevokeToken,
            Action::RequireStepUp { .. } => ActionKind::RequireStepUp,
            Action::TerminateSessions { .. } => ActionKind::TerminateSessions,
            Action::Notify { .. } => ActionKind::Notify,
        }
    }
}

/// Why a candidate action was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Suppression {
    /// The target is on the allowlist.
    Allowlisted,
    /// The same action on the same target is already active.
    Duplicate {
        /// The active decision.
        decision: u64,
    },
    /// The playbook fired for this group recently.
    CoolDown {
        /// When the cool-down ends.
        until: Timestamp,
    },
    /// The action would end an account's sessions or revoke its tokens, but the event's
    /// evidence is not tied to an authenticated session or token
    /// ([`EvidenceBasis::Unauthenticated`]).
    Unauthenticated,
    /// The per-minute budget of this action kind is spent.
    Budget,
}

/// What happens to a candidate action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// Run it.
    Execute,
    /// Record it, do not run it.
    DryRun,
    /// Wait for [`Engine::approve`](crate::Engine::approve) before this time.
    AwaitApproval {
        /// The approval deadline.
        until: Timestamp,
    },
    /// Dropped.
    Suppressed(Suppression),
    /// Already carried out by another instance that shares this engine's enforcement
    /// ([`Engine::taken_elsewhere`](crate::Engine::taken_elsewhere)): remembered here
    /// (duplicates and cool-downs hold), not run here, not undone here at expiry.
    Elsewhere,
}

/// Where a candidate action came from (part of [`Why`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "origin", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Origin {
    /// A playbook's rule matched an event.
    Playbook {
        /// The playbook.
        name: Arc<str>,
        /// The action's index in the playbook.
        rule: usize,
        /// The event kind that matched.
        kind: EventKind,
    },
    /// [`Engine::manual`](crate::Engine::manual).
    Manual {
        /// The caller's reason.
        reason: String,
    },
    /// [`Engine::approve`](crate::Engine::approve).
    Approved {
        /// The approved decision.
        decision: u64,
    },
}

/// What the resolved action does, and why it has this size (part of [`Why`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resolution", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Resolution {
    /// A block of the base duration.
    Block {
        /// Seconds.
        secs: u64,
    },
    /// A repeat offender's block, escalated.
    Escalated {
        /// Earlier bans within the decay window.
        earlier: u32,
        /// The last of them.
        last: Timestamp,
        /// Seconds, after escalation and cap.
        secs: u64,
    },
    /// Revoke the user's tokens.
    RevokeUserTokens,
    /// Revoke one token.
    RevokeToken,
    /// Require step-up.
    StepUp {
        /// Seconds.
        secs: u64,
    },
    /// Terminate the user's sessions.
    TerminateSessions,
    /// Notify.
    Notify,
    /// Given by the caller ([`Origin::Manual`], [`Origin::Approved`]).
    AsGiven,
}

/// What the pipeline noted beyond the verdict (part of [`Why`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "note", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Note {
    /// Nothing: the action was kept and is enforced (or awaits approval).
    Kept,
    /// Suppressed: the target is allowlisted.
    Allowlisted,
    /// Suppressed: an equal decision is active.
    Duplicate {
        /// The active decision.
        decision: u64,
        /// Until when it is active.
        until: Timestamp,
    },
    /// Suppressed: the playbook is cooling down for this group.
    CoolDown {
        /// Until when.
        until: Timestamp,
    },
    /// Suppressed: the event's evidence is unauthenticated and the action would act
    /// against the account's owner (end sessions, revoke tokens).
    Unauthenticated,
    /// Suppressed: the per-minute budget of this action kind is spent.
    Budget {
        /// The cap.
        cap: u32,
    },
    /// Kept although the budget of its kind is spent: a notification of high or
    /// critical severity is never silenced by a budget.
    OverBudget {
        /// The cap that was passed.
        cap: u32,
    },
    /// Kept, but dry-run: recorded, not executed.
    DryRun,
    /// Kept, but another instance carried it out: not executed here, not undone here.
    Elsewhere,
}

/// The explanation of a [`Step`]: structured, so planning costs no formatting; its
/// `Display` renders the sentence (e.g. `playbook "brute-force-ip" rule 0 matched
/// BruteForce: block for 900s; suppressed: decision 3 is active until …`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Why {
    /// Where the candidate came from.
    pub origin: Origin,
    /// What it resolved to.
    pub resolution: Resolution,
    /// What the pipeline decided beyond the verdict.
    pub note: Note,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Playbook { name, rule, kind } => {
                write!(f, "playbook {name:?} rule {rule} matched {kind:?}: ")?;
            }
            Origin::Manual { reason } => write!(f, "manual: {reason}")?,
            Origin::Approved { decision } => write!(f, "decision {decision} approved")?,
        }
        match self.resolution {
            Resolution::Block { secs } => write!(f, "block for {secs}s")?,
            Resolution::Escalated {
                earlier,
                last,
                secs,
            } => write!(
                f,
                "repeat offender ({earlier} earlier bans, last at {last}): block escalated to {secs}s"
            )?,
            Resolution::RevokeUserTokens => {
                f.write_str("revoke every token issued to the user until now")?;
            }
            Resolution::RevokeToken => f.write_str("revoke the token")?,
            Resolution::StepUp { secs } => write!(f, "require step-up for {secs}s")?,
            Resolution::TerminateSessions => f.write_str("terminate the user's sessions")?,
            Resolution::Notify => f.write_str("notify")?,
            Resolution::AsGiven => {}
        }
        match self.note {
            Note::Kept => Ok(()),
            Note::Allowlisted => f.write_str("; suppressed: target is allowlisted"),
            Note::Duplicate { decision, until } => write!(
                f,
                "; suppressed: decision {decision} is active until {until}"
            ),
            Note::CoolDown { until } => {
                write!(f, "; suppressed: playbook cooling down until {until}")
            }
            Note::Unauthenticated => f.write_str(
                "; suppressed: unauthenticated evidence never ends an account's sessions or revokes its tokens",
            ),
            Note::Budget { cap } => {
                write!(
                    f,
                    "; suppressed: {cap} actions of this kind in the last minute already"
                )
            }
            Note::OverBudget { cap } => write!(
                f,
                "; kept over the budget of {cap} per minute: high-severity notifications are never silenced"
            ),
            Note::DryRun => f.write_str("; dry-run: recorded, not executed"),
            Note::Elsewhere => f.write_str(
                "; carried out by another instance: not executed here, not undone here",
            ),
        }
    }
}

/// One candidate action and what the pipeline decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Step {
    /// The playbook, or `None` for a manual action.
    pub playbook: Option<Arc<str>>,
    /// The action's index in the playbook (0 for manual).
    pub rule: usize,
    /// The resolved action. A notification suppressed as a duplicate of the same
    /// playbook's open incident shares that incident's `dedup_key` (equal by
    /// construction) and `summary` (naming the event that opened it).
    pub action: Action,
    /// The target.
    pub target: Target,
    /// The decision.
    pub verdict: Verdict,
    /// The decision id, if one was recorded (executed, dry-run, or awaiting approval).
    pub decision: Option<u64>,
    /// The explanation; `to_string()` renders it for humans.
    pub why: Why,
}

/// The output of [`Engine::evaluate`](crate::Engine::evaluate): every candidate action with its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Plan {
    /// The event, if the plan came from one.
    pub event: Option<EventId>,
    /// When it was planned.
    pub time: Timestamp,
    /// Set when the whole event was ignored (feedback-loop rule), with the reason.
    pub ignored: Option<String>,
    /// The steps in playbook order, then action order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// The steps to execute now.
    pub fn executable(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.verdict == Verdict::Execute)
    }
}

/// An action the engine decided on and still remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Decision {
    /// Unique id, increasing.
    pub id: u64,
    /// The playbook, or `None` for manual.
    pub playbook: Option<Arc<str>>,
    /// The action.
    pub action: Action,
    /// The target.
    pub target: Target,
    /// When it was decided.
    pub created: Timestamp,
    /// It de-duplicates until this time.
    pub active_until: Timestamp,
    /// Whether it was dry-run (never executed, never reverted).
    pub dry_run: bool,
    /// `Some(deadline)` while waiting for approval.
    pub awaiting_approval: Option<Timestamp>,
    /// What the evidence behind it was tied to (manual actions: authenticated).
    #[serde(default)]
    pub basis: EvidenceBasis,
    /// The kind of the event that started it (`None` for manual actions and in
    /// states saved by earlier versions): a playbook grouped by subject and kind
    /// filed its cool-down under it, which [`Engine::failed`](crate::Engine::failed)
    /// ends early, also after an approval. Absent from JSON when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_kind: Option<EventKind>,
    /// Carried out by another instance ([`Verdict::Elsewhere`]): that instance undoes
    /// it, this one never does. Absent from JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub elsewhere: bool,
    /// Its action failed ([`Engine::failed`](crate::Engine::failed)): nothing to undo
    /// or resolve; it holds repeats back only until the retry. Absent from JSON when
    /// false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed: bool,
    /// A block handed out by [`expire`](crate::Engine::expire) after a newer block
    /// of the same target, in force, replaced it (it ended and the target offended
    /// again before `expire` ran): nothing to undo, since lifting it would lift the
    /// newer block. Absent from JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
}

impl Decision {
    /// Whether its action is in force: not a dry run, not awaiting approval, and not
    /// failed (carried out here or, [`elsewhere`](Self::elsewhere), by another
    /// instance).
    pub fn in_force(&self) -> bool {
        !self.dry_run && !self.failed && self.awaiting_approval.is_none()
    }

    /// Whether expiry must undo something: an IP block enforced by this instance and
    /// not [`superseded`](Self::superseded) by a newer one.
    pub fn needs_revert(&self) -> bool {
        self.in_force()
            && !self.elsewhere
            && !self.superseded
            && matches!(self.action, Action::BlockIp { .. })
    }

    /// Whether expiry must close an incident: a notification sent by this instance (a
    /// resolve with the same `dedup_key` is sent, so a pager does not stay open forever).
    pub fn needs_resolve(&self) -> bool {
        self.in_force() && !self.elsewhere && matches!(self.action, Action::Notify { .. })
    }
}
