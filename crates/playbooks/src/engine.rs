//! Deterministic planning: event → [`Plan`], through one fixed pipeline.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use palisade_core_traits::{
    EventId, EventKind, EvidenceBasis, SecurityEvent, Severity, Subject, Timestamp, canonical_ip,
    normalize_user_id,
};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::definition::{ActionDef, Definition, GroupBy, Mode, Playbook, SubjectType};

/// The evidence key that marks an event as caused by our own enforcement.
pub const ENFORCEMENT_EVIDENCE: &str = "palisade.enforcement";

const MINUTE: Duration = Duration::from_secs(60);

/// Who or what an action is aimed at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

    fn subject_type(&self) -> SubjectType {
        match self {
            Target::Ip { .. } => SubjectType::Ip,
            Target::User { .. } => SubjectType::User,
            Target::Token { .. } => SubjectType::Token,
            Target::Device { .. } => SubjectType::Device,
            Target::Domain { .. } => SubjectType::Domain,
        }
    }

    fn value(&self) -> String {
        TargetValue(self).to_string()
    }
}

/// The target's value as text (address, user id, `jti`, …), formatted in place.
struct TargetValue<'a>(&'a Target);

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
    /// Every kind, in declaration order (the index of a kind's budget).
    const ALL: [ActionKind; 6] = [
        ActionKind::BlockIp,
        ActionKind::RevokeUserTokens,
        ActionKind::RevokeToken,
        ActionKind::RequireStepUp,
        ActionKind::TerminateSessions,
        ActionKind::Notify,
    ];

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
    /// Wait for [`Engine::approve`] before this time.
    AwaitApproval {
        /// The approval deadline.
        until: Timestamp,
    },
    /// Dropped.
    Suppressed(Suppression),
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
    /// [`Engine::manual`].
    Manual {
        /// The caller's reason.
        reason: String,
    },
    /// [`Engine::approve`].
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

/// The output of [`Engine::evaluate`]: every candidate action with its verdict.
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
}

impl Decision {
    /// Whether expiry must undo something: an enforced IP block.
    pub fn needs_revert(&self) -> bool {
        !self.dry_run
            && self.awaiting_approval.is_none()
            && matches!(self.action, Action::BlockIp { .. })
    }

    /// Whether expiry must close an incident: an enforced notification (a resolve with
    /// the same `dedup_key` is sent, so a pager does not stay open forever).
    pub fn needs_resolve(&self) -> bool {
        !self.dry_run
            && self.awaiting_approval.is_none()
            && matches!(self.action, Action::Notify { .. })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Offence {
    count: u32,
    last: Timestamp,
    decay_after: Duration,
}

type GroupKey = (usize, Option<Target>, Option<EventKind>);

/// A cool-down as persisted: playbook name, group target, group kind, until, and the
/// evidence that set it (absent in snapshots of earlier versions: unauthenticated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CoolDown(
    String,
    Option<Target>,
    Option<EventKind>,
    Timestamp,
    #[serde(default)] EvidenceBasis,
);

/// The hash an `active` entry for `kind` is filed under: the target's keyed hash, moved by
/// a fixed odd multiple per kind. A bijection of a keyed hash stays as hard to collide.
fn active_hash(target_hash: u64, kind: ActionKind) -> u64 {
    target_hash ^ (kind as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Files `value` under `hash` in a table whose entries start with their hash, replacing
/// the entry with the same key (`same`); returns the replaced entry.
fn replace_or_insert<T>(
    table: &mut HashTable<T>,
    hash: u64,
    value: T,
    same: impl Fn(&T, &T) -> bool,
    hash_of: impl Fn(&T) -> u64,
) -> Option<T> {
    match table.entry(hash, |e| same(e, &value), hash_of) {
        Entry::Occupied(mut o) => Some(std::mem::replace(o.get_mut(), value)),
        Entry::Vacant(v) => {
            v.insert(value);
            None
        }
    }
}

/// All state that must survive a restart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Snapshot {
    /// Active and approval-pending decisions.
    pub decisions: Vec<Decision>,
    /// Repeat-offender history: target, count, last offence, decay.
    offences: Vec<(Target, Offence)>,
    /// Cool-downs: playbook name, group target, group kind, until.
    cooldowns: Vec<CoolDown>,
    /// Times of recent budgeted actions, per action kind.
    #[serde(default)]
    budgets: Vec<(ActionKind, Timestamp)>,
    /// Snapshots before 0.1.x kept one budget for every kind; read and dropped (it
    /// only ever holds the last minute).
    #[serde(default, skip_serializing)]
    budget: Vec<Timestamp>,
    /// Next decision id.
    next_id: u64,
}

impl Snapshot {
    /// Serializes to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("snapshot serializes: {e}"))
    }

    /// Parses JSON written by [`Snapshot::to_json`].
    pub fn from_json(s: &str) -> Result<Self, Error> {
        serde_json::from_str(s).map_err(Error::Snapshot)
    }
}

/// The planning engine. Pure: no I/O, no clock reads; time is an argument, so the same
/// state, event and time always give the same plan.
///
/// Every table is keyed by targets, which attackers choose, so hashes are keyed
/// SipHash-1-3 (random keys per engine). An event's target is hashed once; each table
/// files its entries under that hash, mixed with the action kind or the playbook, and
/// keeps it beside the entry for resizing.
#[derive(Debug)]
pub struct Engine {
    def: Definition,
    hasher: RandomState,
    /// Allowlisted addresses and users, as targets.
    allow: HashTable<(u64, Target)>,
    allow_nets: Vec<palisade_core_traits::IpNetwork>,
    /// At most one decision per (action kind, target).
    active: HashTable<(u64, Decision)>,
    /// `(active_until, id)` → the hash of that decision's `active` entry.
    expiries: BTreeMap<(Timestamp, u64), u64>,
    offences: HashTable<(u64, Target, Offence)>,
    /// Cool-downs, with the evidence basis that set each: weaker evidence cannot
    /// start a cool-down that holds back a response to stronger evidence.
    cooldowns: HashTable<(u64, GroupKey, Timestamp, EvidenceBasis)>,
    /// Per playbook, the keyed hash its cool-down groups are filed under.
    group_salts: Vec<u64>,
    /// Times of recent budgeted actions, one queue per action kind
    /// (indexed like [`ActionKind::ALL`]).
    budgets: [VecDeque<Timestamp>; ActionKind::ALL.len()],
    next_id: u64,
    /// Over, but replaced before `expire` ran: still handed out by `expire`, once.
    replaced: Vec<Decision>,
    /// Playbook indices per event kind, in file order: an event visits only these. A
    /// short list scanned by equality: cheaper than hashing the kind on every event.
    by_kind: Vec<(EventKind, Vec<usize>)>,
    /// Playbook names, shared by every step that cites them.
    names: Vec<Arc<str>>,
}

/// What the pipeline needs beyond the [`Step`] itself (which is built once, in place
/// in the plan, and only updated by the pipeline: steps are large, moves are not free).
struct Pending {
    playbook: Option<usize>,
    window: Duration,
    approval: Option<Duration>,
    mode: Mode,
    /// The active decision for (kind, target), looked up once: `(id, active_until)`.
    active: Option<(u64, Timestamp)>,
    /// The target's keyed hash.
    target_hash: u64,
    /// What the evidence behind the candidate is tied to.
    basis: EvidenceBasis,
    /// The severity a notification would be sent with (budget exemption).
    severity: Severity,
}

impl Engine {
    /// An engine with no state.
    pub fn new(mut def: Definition) -> Self {
        // Subject values are compared with targets, which are canonical.
        for p in &mut def.playbooks {
            if let Some(values) = &mut p.subject_values {
                for v in values.iter_mut() {
                    *v = match p.subject {
                        SubjectType::User => normalize_user_id(v).into_owned(),
                        SubjectType::Ip => v
                            .parse::<IpAddr>()
                            .map_or_else(|_| v.clone(), |ip| canonical_ip(ip).to_string()),
                        _ => continue,
                    };
                }
            }
        }
        let mut lists: HashMap<EventKind, Vec<usize>> = HashMap::new();
        for (i, p) in def.playbooks.iter().enumerate() {
            for k in &p.kinds {
                let list = lists.entry(*k).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        let by_kind = lists.into_iter().collect();
        let names = def
            .playbooks
            .iter()
            .map(|p| Arc::from(p.name.as_str()))
            .collect();
        let hasher = RandomState::new();
        let mut allow = HashTable::new();
        let ips = def.allowlist.ips.iter().map(|ip| Target::Ip {
            ip: canonical_ip(*ip),
        });
        let users = (def.allowlist.users.iter()).map(|u| Target::user(u));
        for t in ips.chain(users) {
            let h = hasher.hash_one(&t);
            replace_or_insert(&mut allow, h, (h, t), |a, b| a.1 == b.1, |e| e.0);
        }
        Engine {
            by_kind,
            names,
            allow,
            allow_nets: def.allowlist.networks.clone(),
            group_salts: (0..def.playbooks.len())
                .map(|i| hasher.hash_one(i))
                .collect(),
            hasher,
            def,
            active: HashTable::new(),
            expiries: BTreeMap::new(),
            offences: HashTable::new(),
            cooldowns: HashTable::new(),
            budgets: Default::default(),
            next_id: 0,
            replaced: Vec::new(),
        }
    }

    /// An engine resumed from a snapshot (cool-downs of playbooks no longer defined are dropped).
    pub fn restore(def: Definition, snap: Snapshot) -> Self {
        let mut e = Engine::new(def);
        for d in snap.decisions {
            let th = e.hasher.hash_one(&d.target);
            e.insert(d, th);
        }
        for (target, o) in snap.offences {
            let th = e.hasher.hash_one(&target);
            replace_or_insert(
                &mut e.offences,
                th,
                (th, target, o),
                |a, b| a.1 == b.1,
                |e| e.0,
            );
        }
        for CoolDown(name, target, kind, until, basis) in snap.cooldowns {
            if let Some(i) = e.def.playbooks.iter().position(|p| p.name == name) {
                let th = target.as_ref().map(|t| e.hasher.hash_one(t));
                e.set_cooldown(e.group_hash(i, th, kind), (i, target, kind), until, basis);
            }
        }
        for (kind, t) in snap.budgets {
            e.budgets[kind as usize].push_back(t);
        }
        e.next_id = snap.next_id;
        e
    }

    /// The state to persist.
    pub fn snapshot(&self) -> Snapshot {
        let mut decisions: Vec<Decision> = self.active.iter().map(|(_, d)| d.clone()).collect();
        decisions.sort_by_key(|d| d.id);
        Snapshot {
            decisions,
            offences: (self.offences.iter())
                .map(|(_, t, o)| (t.clone(), *o))
                .collect(),
            cooldowns: (self.cooldowns.iter())
                .map(|(_, (i, t, k), u, b)| {
                    let name = self.def.playbooks[*i].name.clone();
                    CoolDown(name, t.clone(), *k, *u, *b)
                })
                .collect(),
            budgets: (ActionKind::ALL.iter())
                .flat_map(|k| self.budgets[*k as usize].iter().map(|t| (*k, *t)))
                .collect(),
            budget: Vec::new(),
            next_id: self.next_id,
        }
    }

    /// The definition in use.
    pub fn definition(&self) -> &Definition {
        &self.def
    }

    /// The active decision for this action kind and target, if any.
    pub fn active(&self, kind: ActionKind, target: &Target) -> Option<&Decision> {
        self.find_active(kind, target, self.hasher.hash_one(target))
    }

    /// The decision filed for (kind, target), active or not yet expired by `expire`.
    fn find_active(&self, kind: ActionKind, target: &Target, th: u64) -> Option<&Decision> {
        (self.active)
            .find(active_hash(th, kind), |(_, d)| {
                d.action.kind() == kind && d.target == *target
            })
            .map(|(_, d)| d)
    }

    /// The hash a cool-down group of playbook `pi` is filed under.
    fn group_hash(&self, pi: usize, th: Option<u64>, kind: Option<EventKind>) -> u64 {
        th.unwrap_or(0) ^ self.group_salts[pi] ^ kind.map_or(0, |k| self.hasher.hash_one(k))
    }

    fn set_cooldown(&mut self, gh: u64, group: GroupKey, until: Timestamp, basis: EvidenceBasis) {
        let entry = (gh, group, until, basis);
        replace_or_insert(&mut self.cooldowns, gh, entry, |a, b| a.1 == b.1, |e| e.0);
    }

    /// How many decisions are active (including those awaiting approval).
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Files `d` (target hash `th`), replacing the decision for the same kind and target.
    fn insert(&mut self, d: Decision, th: u64) {
        let kind = d.action.kind();
        let h = active_hash(th, kind);
        self.expiries.insert((d.active_until, d.id), h);
        let same = |(_, a): &(u64, Decision), (_, b): &(u64, Decision)| {
            a.action.kind() == b.action.kind() && a.target == b.target
        };
        let key = match &d.action {
            Action::Notify { dedup_key, .. } => Some(dedup_key.clone()),
            _ => None,
        };
        if let Some((_, old)) = replace_or_insert(&mut self.active, h, (h, d), same, |e| e.0) {
            self.expiries.remove(&(old.active_until, old.id));
            // A notification escalated under the same key continues its incident: the
            // newer one resolves it later, the older one must not resolve it now.
            let continued = matches!(&old.action, Action::Notify { dedup_key, .. } if Some(dedup_key) == key.as_ref());
            if !continued {
                self.replaced.push(old);
            }
        }
    }

    /// The feedback-loop rule: an event caused by our own enforcement is not evidence.
    fn self_inflicted(
        &self,
        event: &SecurityEvent,
        target: &Target,
        th: u64,
        now: Timestamp,
    ) -> Option<String> {
        if event.evidence(ENFORCEMENT_EVIDENCE).is_some() {
            return Some(format!(
                "event carries the {ENFORCEMENT_EVIDENCE} marker: caused by our own enforcement"
            ));
        }
        if event.kind == EventKind::RateLimitExceeded
            && let Some(d) = self.find_active(ActionKind::BlockIp, target, th)
            && d.active_until > now
            && d.awaiting_approval.is_none()
        {
            return Some(format!(
                "rate_limit_exceeded about an address we block (decision {}): our own enforcement",
                d.id
            ));
        }
        None
    }

    fn matches(p: &Playbook, event: &SecurityEvent, target: &Target) -> bool {
        p.kinds.contains(&event.kind)
            && p.subject == target.subject_type()
            && event.severity >= p.min_severity
            && p.min_score
                .is_none_or(|min| event.score.is_some_and(|s| s.get() >= min))
            && p.subject_values
                .as_ref()
                .is_none_or(|vals| vals.contains(&target.value()))
    }

    /// Plans the response to one event at time `now`.
    pub fn evaluate(&mut self, event: &SecurityEvent, now: Timestamp) -> Plan {
        let mut plan = Plan {
            event: Some(event.id.clone()),
            time: now,
            ignored: None,
            steps: Vec::new(),
        };
        let Some(target) = Target::of(&event.subject) else {
            plan.ignored = Some("subject type unknown to this version".into());
            return plan;
        };
        // The one keyed hash of the target that every table below is filed under.
        let th = self.hasher.hash_one(&target);
        if let Some(reason) = self.self_inflicted(event, &target, th, now) {
            plan.ignored = Some(reason);
            return plan;
        }
        // Only the playbooks listing this kind, by position: the pipeline below
        // mutates the engine, so the list is indexed, not borrowed.
        let Some(list) = self.by_kind.iter().position(|(k, _)| *k == event.kind) else {
            return plan;
        };
        for j in 0..self.by_kind[list].1.len() {
            let pi = self.by_kind[list].1[j];
            let p = &self.def.playbooks[pi];
            if !Self::matches(p, event, &target) {
                continue;
            }
            let (group_target, group_kind) = match p.group_by {
                GroupBy::Subject => (Some(&target), None),
                GroupBy::SubjectAndKind => (Some(&target), Some(event.kind)),
                GroupBy::Playbook => (None, None),
            };
            let gh = self.group_hash(pi, group_target.map(|_| th), group_kind);
            let in_group = |(_, (i, t, k), _, _): &(u64, GroupKey, Timestamp, EvidenceBasis)| {
                *i == pi && t.as_ref() == group_target && *k == group_kind
            };
            // A cool-down set on weaker evidence does not hold back stronger evidence
            // (a failed login from afar must not buy an attacker 30 quiet minutes).
            let cooldown_until = (self.cooldowns.find(gh, in_group))
                .filter(|e| e.3 >= event.basis)
                .map(|e| e.2)
                .filter(|u| *u > now);
            let mode = p.mode.unwrap_or(self.def.engine.mode);
            let window = p.cooldown.0;
            let mut fired = false;
            plan.steps.reserve(p.actions.len());
            for rule in 0..p.actions.len() {
                let def = self.def.playbooks[pi].actions[rule].get_ref();
                let pending = self.resolve(
                    pi,
                    rule,
                    def,
                    event,
                    (&target, th),
                    window,
                    mode,
                    now,
                    &mut plan.steps,
                );
                let step = plan
                    .steps
                    .last_mut()
                    .unwrap_or_else(|| unreachable!("just pushed"));
                self.pipeline(step, pending, cooldown_until, now);
                fired |= step.decision.is_some();
            }
            if fired {
                let group = (pi, group_target.cloned(), group_kind);
                let until = now.saturating_add(window);
                self.set_cooldown(gh, group, until, event.basis);
            }
        }
        plan
    }

    #[allow(clippy::too_many_arguments)] // one resolution needs all of the event's context
    fn resolve(
        &self,
        pi: usize,
        rule: usize,
        def: &ActionDef,
        event: &SecurityEvent,
        (target, th): (&Target, u64),
        window: Duration,
        mode: Mode,
        now: Timestamp,
        steps: &mut Vec<Step>,
    ) -> Pending {
        let p = &self.def.playbooks[pi];
        let notify_severity = match def {
            ActionDef::Notify { severity } => Some(severity.unwrap_or(event.severity)),
            _ => None,
        };
        // An active decision holds back this candidate unless the candidate escalates
        // it: stronger evidence, or a notification of higher severity. Only kinds
        // with nothing to undo escalate (a block is extended by the next one instead).
        let active_decision = self
            .find_active(def.kind(), target, th)
            .filter(|d| d.active_until > now)
            .filter(|d| match &d.action {
                Action::Notify { severity, .. } => {
                    d.basis >= event.basis && notify_severity.is_none_or(|s| *severity >= s)
                }
                Action::RequireStepUp { .. } => d.basis >= event.basis,
                _ => true,
            });
        let active = active_decision.map(|d| (d.id, d.active_until));
        let user = || match target {
            Target::User { user_id } => user_id.clone(),
            other => other.value(),
        };
        let (action, why) = match def {
            ActionDef::BlockIp {
                duration,
                escalation,
                ..
            } => {
                let ip = match target {
                    Target::Ip { ip } => *ip,
                    // Load-time validation ties block_ip to subject = "ip".
                    _ => IpAddr::from([0, 0, 0, 0]),
                };
                let mut d = duration.0;
                let mut why = Resolution::Block { secs: d.as_secs() };
                // While a ban is active, the next step is a duplicate: do not describe it
                // as an escalation of itself.
                if let Some(e) = escalation.filter(|_| active.is_none())
                    && let Some((_, _, o)) = self.offences.find(th, |(_, t, _)| t == target)
                    && now.saturating_duration_since(o.last) < o.decay_after
                {
                    for _ in 0..o.count {
                        d = d.saturating_mul(e.factor).min(e.max.0);
                    }
                    why = Resolution::Escalated {
                        earlier: o.count,
                        last: o.last,
                        secs: d.as_secs(),
                    };
                }
                (Action::BlockIp { ip, duration: d }, why)
            }
            ActionDef::RevokeUserTokens { issuer, .. } => (
                Action::RevokeUserTokens {
                    issuer: issuer.clone(),
                    user_id: user(),
                },
                Resolution::RevokeUserTokens,
            ),
            ActionDef::RevokeToken { max_lifetime, .. } => {
                let (issuer, jti) = match target {
                    Target::Token { issuer, jti } => (issuer.clone(), jti.clone()),
                    other => (String::new(), other.value()),
                };
                (
                    Action::RevokeToken {
                        issuer,
                        jti,
                        expires_at: now.saturating_add(max_lifetime.0),
                    },
                    Resolution::RevokeToken,
                )
            }
            ActionDef::RequireStepUp { valid_for, .. } => {
                // What an unauthenticated attempt can impose on an account is bounded.
                let valid_for = if event.basis.may_act_on_account() {
                    valid_for.0
                } else {
                    valid_for
                        .0
                        .min(self.def.engine.max_unauthenticated_step_up.0)
                };
                (
                    Action::RequireStepUp {
                        user_id: user(),
                        valid_for,
                    },
                    Resolution::StepUp {
                        secs: valid_for.as_secs(),
                    },
                )
            }
            ActionDef::TerminateSessions { .. } => (
                Action::TerminateSessions { user_id: user() },
                Resolution::TerminateSessions,
            ),
            ActionDef::Notify { severity } => {
                let severity = severity.unwrap_or(event.severity);
                // A duplicate of this playbook's open incident about the target: its
                // key is ours by construction, and its summary names the event that
                // opened it. Share both instead of formatting strings that are never
                // sent (the hot path of a flood).
                let open = active_decision.and_then(|d| match &d.action {
                    Action::Notify {
                        summary, dedup_key, ..
                    } if d.playbook.as_deref() == Some(p.name.as_str()) => {
                        Some((summary.clone(), dedup_key.clone()))
                    }
                    _ => None,
                });
                let (summary, dedup_key) = open.unwrap_or_else(|| {
                    // The target is formatted once, into the key; the summary reuses it.
                    let key = format!("{}:{}", p.name, TargetValue(target));
                    let about = key.get(p.name.len() + 1..).unwrap_or_default();
                    let summary = format!(
                        "{}: {:?} about {about} ({:?})",
                        p.name, event.kind, event.severity
                    );
                    (summary.into(), key.into())
                });
                (
                    Action::Notify {
                        severity,
                        summary,
                        dedup_key,
                    },
                    Resolution::Notify,
                )
            }
        };
        let window = match &action {
            Action::BlockIp { duration, .. } => *duration,
            Action::RequireStepUp { valid_for, .. } => *valid_for,
            _ => window,
        };
        steps.push(Step {
            playbook: Some(self.names[pi].clone()),
            rule,
            action,
            target: target.clone(),
            verdict: Verdict::Execute,
            decision: None,
            why: Why {
                origin: Origin::Playbook {
                    name: self.names[pi].clone(),
                    rule,
                    kind: event.kind,
                },
                resolution: why,
                note: Note::Kept,
            },
        });
        Pending {
            playbook: Some(pi),
            window,
            approval: def.approval().map(|s| s.0),
            mode,
            active,
            target_hash: th,
            basis: event.basis,
            severity: notify_severity.unwrap_or(event.severity),
        }
    }

    fn allowlisted(&self, target: &Target, th: u64) -> bool {
        self.allow.find(th, |(_, t)| t == target).is_some()
            || matches!(target, Target::Ip { ip } if self.allow_nets.iter().any(|n| n.contains(*ip)))
    }

    /// The decision active at `now` for this action kind and target: `(id, until)`.
    fn active_decision(
        &self,
        kind: ActionKind,
        target: &Target,
        th: u64,
        now: Timestamp,
    ) -> Option<(u64, Timestamp)> {
        self.find_active(kind, target, th)
            .filter(|d| d.active_until > now)
            .map(|d| (d.id, d.active_until))
    }

    /// The fixed pipeline every candidate passes: allowlist → evidence →
    /// de-duplication → cool-down → budget → mode → approval.
    fn pipeline(
        &mut self,
        step: &mut Step,
        c: Pending,
        cooldown_until: Option<Timestamp>,
        now: Timestamp,
    ) {
        let suppress = |step: &mut Step, s: Suppression, note: Note| {
            step.verdict = Verdict::Suppressed(s);
            step.why.note = note;
        };
        // Allowlisted subjects are never acted on; notifications about them still go out.
        if step.action.kind() != ActionKind::Notify && self.allowlisted(&step.target, c.target_hash)
        {
            suppress(step, Suppression::Allowlisted, Note::Allowlisted);
            return;
        }
        // Whatever a playbook says: only evidence tied to an authenticated session or
        // token may end an account's sessions or revoke its tokens.
        if step.action.kind().acts_on_account() && !c.basis.may_act_on_account() {
            suppress(step, Suppression::Unauthenticated, Note::Unauthenticated);
            return;
        }
        // Looked up when the candidate was resolved; nothing has changed since.
        if let Some((decision, until)) = c.active {
            suppress(
                step,
                Suppression::Duplicate { decision },
                Note::Duplicate { decision, until },
            );
            return;
        }
        if let Some(until) = cooldown_until {
            suppress(
                step,
                Suppression::CoolDown { until },
                Note::CoolDown { until },
            );
            return;
        }
        let horizon = now.saturating_sub(MINUTE);
        let kind = step.action.kind();
        let budget = &mut self.budgets[kind as usize];
        while budget.front().is_some_and(|t| *t <= horizon) {
            budget.pop_front();
        }
        let cap = self.def.engine.max_actions_per_minute;
        if budget.len() >= cap as usize {
            // A budget caps what a flood can make us do; it never silences the alarm.
            if kind == ActionKind::Notify && c.severity >= Severity::High {
                step.why.note = Note::OverBudget { cap };
            } else {
                suppress(step, Suppression::Budget, Note::Budget { cap });
                return;
            }
        }
        budget.push_back(now);
        let dry_run = c.mode == Mode::DryRun;
        let awaiting = c.approval.map(|a| now.saturating_add(a));
        step.verdict = match (awaiting, dry_run) {
            (Some(until), _) => Verdict::AwaitApproval { until },
            (None, true) => Verdict::DryRun,
            (None, false) => Verdict::Execute,
        };
        if dry_run {
            step.why.note = Note::DryRun;
        }
        let id = self.next_id;
        self.next_id += 1;
        let active_until = awaiting.unwrap_or_else(|| now.saturating_add(c.window));
        if let (Action::BlockIp { .. }, Some(p)) = (&step.action, c.playbook) {
            self.record_offence(p, step.rule, (&step.target, c.target_hash), now);
        }
        self.insert(
            Decision {
                id,
                playbook: step.playbook.clone(),
                action: step.action.clone(),
                target: step.target.clone(),
                created: now,
                active_until,
                dry_run,
                awaiting_approval: awaiting,
                basis: c.basis,
            },
            c.target_hash,
        );
        step.decision = Some(id);
    }

    fn record_offence(
        &mut self,
        pi: usize,
        rule: usize,
        (target, th): (&Target, u64),
        now: Timestamp,
    ) {
        let ActionDef::BlockIp {
            escalation: Some(e),
            ..
        } = self.def.playbooks[pi].actions[rule].get_ref()
        else {
            return;
        };
        let decay_after = e.decay_after.0;
        let fresh = Offence {
            count: 0,
            last: now,
            decay_after,
        };
        let o = match self.offences.entry(th, |(_, t, _)| t == target, |e| e.0) {
            Entry::Occupied(o) => &mut o.into_mut().2,
            Entry::Vacant(v) => &mut v.insert((th, target.clone(), fresh)).into_mut().2,
        };
        if now.saturating_duration_since(o.last) >= o.decay_after {
            o.count = 0;
        }
        o.count = o.count.saturating_add(1);
        o.last = now;
        o.decay_after = decay_after;
    }

    /// Runs one manual action through the same pipeline (no cool-down: no playbook).
    /// `window` is how long it de-duplicates (for blocks and step-up, their duration).
    pub fn manual(
        &mut self,
        action: Action,
        window: Duration,
        mode: Mode,
        reason: &str,
        now: Timestamp,
    ) -> Plan {
        let target = match &action {
            Action::BlockIp { ip, .. } => Target::Ip {
                ip: canonical_ip(*ip),
            },
            Action::RevokeUserTokens { user_id, .. }
            | Action::RequireStepUp { user_id, .. }
            | Action::TerminateSessions { user_id } => Target::user(user_id),
            Action::RevokeToken { issuer, jti, .. } => Target::Token {
                issuer: issuer.clone(),
                jti: jti.clone(),
            },
            Action::Notify { dedup_key, .. } => Target::Domain {
                domain: dedup_key.to_string(),
            },
        };
        let action = match action {
            Action::BlockIp { duration, .. } => Action::BlockIp {
                ip: match target {
                    Target::Ip { ip } => ip,
                    _ => unreachable!("a block targets an address"),
                },
                duration,
            },
            Action::RevokeUserTokens { issuer, .. } => Action::RevokeUserTokens {
                issuer,
                user_id: target.value(),
            },
            Action::RequireStepUp { valid_for, .. } => Action::RequireStepUp {
                user_id: target.value(),
                valid_for,
            },
            Action::TerminateSessions { .. } => Action::TerminateSessions {
                user_id: target.value(),
            },
            a => a,
        };
        let window = match &action {
            Action::BlockIp { duration, .. } => *duration,
            Action::RequireStepUp { valid_for, .. } => *valid_for,
            _ => window,
        };
        let th = self.hasher.hash_one(&target);
        let active = self.active_decision(action.kind(), &target, th, now);
        let severity = match &action {
            Action::Notify { severity, .. } => *severity,
            _ => Severity::Info,
        };
        let pending = Pending {
            target_hash: th,
            active,
            playbook: None,
            window,
            approval: None,
            mode,
            // An operator's manual action is theirs to answer for.
            basis: EvidenceBasis::Authenticated,
            severity,
        };
        let mut step = Step {
            playbook: None,
            rule: 0,
            action,
            target,
            verdict: Verdict::Execute,
            decision: None,
            why: Why {
                origin: Origin::Manual {
                    reason: reason.to_owned(),
                },
                resolution: Resolution::AsGiven,
                note: Note::Kept,
            },
        };
        self.pipeline(&mut step, pending, None, now);
        Plan {
            event: None,
            time: now,
            ignored: None,
            steps: vec![step],
        }
    }

    /// Approves a decision awaiting approval. Refused if unknown or past its deadline.
    pub fn approve(&mut self, id: u64, now: Timestamp) -> Result<Plan, Error> {
        let h = (self.active.iter())
            .find(|(_, d)| d.id == id && d.awaiting_approval.is_some())
            .map(|(h, _)| *h)
            .ok_or(Error::UnknownDecision(id))?;
        let Ok(entry) = self.active.find_entry(h, |(_, d)| d.id == id) else {
            return Err(Error::UnknownDecision(id));
        };
        let ((_, mut d), _) = entry.remove();
        self.expiries.remove(&(d.active_until, d.id));
        let deadline = d.awaiting_approval.unwrap_or(now);
        if now > deadline {
            return Err(Error::ApprovalExpired { id, deadline });
        }
        let window = match &d.action {
            Action::BlockIp { duration, .. } => *duration,
            Action::RequireStepUp { valid_for, .. } => *valid_for,
            _ => deadline.saturating_duration_since(d.created),
        };
        d.awaiting_approval = None;
        d.active_until = now.saturating_add(window);
        let step = Step {
            playbook: d.playbook.clone(),
            rule: 0,
            action: d.action.clone(),
            target: d.target.clone(),
            verdict: if d.dry_run {
                Verdict::DryRun
            } else {
                Verdict::Execute
            },
            decision: Some(d.id),
            why: Why {
                origin: Origin::Approved { decision: id },
                resolution: Resolution::AsGiven,
                note: if d.dry_run { Note::DryRun } else { Note::Kept },
            },
        };
        let th = self.hasher.hash_one(&d.target);
        self.insert(d, th);
        Ok(Plan {
            event: None,
            time: now,
            ignored: None,
            steps: vec![step],
        })
    }

    /// Forgets every decision whose time is over and returns them; the caller reverts
    /// those with [`Decision::needs_revert`]. Each decision is returned exactly once.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Decision> {
        let mut out = std::mem::take(&mut self.replaced);
        while let Some(entry) = self.expiries.first_entry() {
            let (until, id) = *entry.key();
            if until > now {
                break;
            }
            let h = entry.remove();
            if let Ok(found) = self.active.find_entry(h, |(_, d)| d.id == id) {
                out.push(found.remove().0.1);
            }
        }
        self.offences
            .retain(|(_, _, o)| now.saturating_duration_since(o.last) < o.decay_after);
        self.cooldowns.retain(|(_, _, until, _)| *until > now);
        out
    }
}

#[cfg(test)]
mod tests;
