//! Deterministic planning: event → [`Plan`], through one fixed pipeline.
//!
//! `engine.rs` holds the engine's tables and the walk over an event's playbooks;
//! `pipeline.rs` resolves each candidate action and runs it through the pipeline (also
//! for manual actions and approvals); `state.rs` is what survives a restart.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use palisade_core_traits::{
    EventKind, EvidenceBasis, SecurityEvent, Severity, Timestamp, canonical_ip, normalize_user_id,
};

use crate::definition::{ActionDef, Definition, GroupBy, Mode, Playbook, SubjectType};
use crate::plan::{Action, ActionKind, Decision, Note, Plan, Target, Verdict};
use crate::stats::{EngineCounters, EngineStats};

mod pipeline;
mod state;

pub use state::{BanHistory, State};

/// The evidence key that marks an event as caused by our own enforcement.
pub const ENFORCEMENT_EVIDENCE: &str = "palisade.enforcement";

/// The budget window.
const MINUTE: Duration = Duration::from_secs(60);

/// A cool-down group: playbook index, target (unless grouped by playbook), event kind
/// (if grouped by subject and kind).
type GroupKey = (usize, Option<Target>, Option<EventKind>);

/// The hash an `active` entry for `kind` is filed under: the target's keyed hash, moved by
/// a fixed odd multiple per kind. A bijection of a keyed hash stays as hard to collide.
fn active_hash(target_hash: u64, kind: ActionKind) -> u64 {
    target_hash ^ (kind as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Ends decision `d` (its `active` entry filed under `h`) at `until` if that is
/// earlier, keeping its `expiries` entry in step.
fn end_by(
    expiries: &mut BTreeMap<(Timestamp, u64), u64>,
    d: &mut Decision,
    until: Timestamp,
    h: u64,
) {
    if until < d.active_until {
        expiries.remove(&(d.active_until, d.id));
        d.active_until = until;
        expiries.insert((until, d.id), h);
    }
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
    offences: HashTable<(u64, Target, BanHistory)>,
    /// Cool-downs, with the evidence basis that set each: weaker evidence cannot
    /// start a cool-down that holds back a response to stronger evidence.
    cooldowns: HashTable<(u64, GroupKey, Timestamp, EvidenceBasis)>,
    /// Per playbook, the keyed hash its cool-down groups are filed under.
    group_salts: Vec<u64>,
    /// Times of recent budgeted actions, per action kind (indexed like
    /// [`ActionKind::ALL`]) and per how far they bind (dry run, awaiting approval, in
    /// force: `pipeline::force`), so a trial never spends what enforcement may do.
    budgets: [[VecDeque<Timestamp>; 3]; ActionKind::ALL.len()],
    next_id: u64,
    /// Over, but replaced before `expire` ran: still handed out by `expire`, once.
    replaced: Vec<Decision>,
    /// Playbook indices per event kind, in file order: an event visits only these. A
    /// short list scanned by equality: cheaper than hashing the kind on every event.
    by_kind: Vec<(EventKind, Vec<usize>)>,
    /// Playbook names, shared by every step that cites them.
    names: Vec<Arc<str>>,
    /// What `stats()` returns (and, with feature `metrics`, the metric handles).
    counters: EngineCounters,
}

/// What the pipeline needs beyond the [`Step`](crate::Step) itself (which is built once, in place
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
    /// The event's kind (`None` for manual actions).
    event_kind: Option<EventKind>,
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
            counters: EngineCounters::new(),
        }
    }

    /// The counters: events evaluated and ignored, steps by verdict and suppression
    /// reason, expiries, active decisions.
    pub fn stats(&self) -> EngineStats {
        self.counters.stats()
    }

    /// Counts and traces a plan's outcome (every plan the engine hands out passes here).
    fn account(&mut self, plan: &Plan) {
        if let Some(reason) = &plan.ignored {
            tracing::debug!(event = ?plan.event, reason = %reason, "playbooks: event ignored");
        }
        for step in &plan.steps {
            self.counters.step(step);
            // The target stays out of logs: the audit record of the decision has it.
            match step.decision {
                Some(id) => tracing::debug!(
                    decision = id,
                    kind = step.action.kind().name(),
                    verdict = ?step.verdict,
                    why = %step.why,
                    "playbooks: decision"
                ),
                None => tracing::trace!(
                    kind = step.action.kind().name(),
                    verdict = ?step.verdict,
                    why = %step.why,
                    "playbooks: step suppressed"
                ),
            }
        }
        self.counters.set_active(self.active.len());
    }

    /// The definition in use.
    pub fn definition(&self) -> &Definition {
        &self.def
    }

    /// The active decision for this action kind and target, if any.
    pub fn active(&self, kind: ActionKind, target: &Target) -> Option<&Decision> {
        self.find_active(kind, target, self.hasher.hash_one(target))
    }

    /// The active `block_ip` decisions (awaiting approval and taken elsewhere
    /// included). [`expire`](Self::expire) already marks a block replaced by a newer
    /// one of the same target ([`Decision::superseded`]); a caller whose blocker
    /// reaches wider than one target (wider than its `client_net`) must not lift a
    /// block at one decision's expiry while another of them covers it.
    pub fn active_blocks(&self) -> impl Iterator<Item = &Decision> {
        (self.active.iter())
            .map(|(_, d)| d)
            .filter(|d| d.action.kind() == ActionKind::BlockIp)
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

    /// Marks the blocks in `replaced` that a newer block in force of the same target
    /// (still active, or replaced too) covers: undoing them would lift it. Checked at
    /// expiry, not at replacement, so a newer block that failed meanwhile covers nothing.
    fn mark_superseded(&self, replaced: &mut [Decision]) {
        if !replaced.iter().any(Decision::needs_revert) {
            return;
        }
        let is_block = |d: &Decision| matches!(d.action, Action::BlockIp { .. });
        let mut newest: HashMap<&Target, u64> = HashMap::new();
        for d in replaced.iter().filter(|d| is_block(d) && d.in_force()) {
            let id = newest.entry(&d.target).or_insert(d.id);
            *id = (*id).max(d.id);
        }
        let covered: Vec<bool> = (replaced.iter())
            .map(|d| {
                let th = self.hasher.hash_one(&d.target);
                d.needs_revert()
                    && (newest.get(&d.target).is_some_and(|n| *n > d.id)
                        || (self.find_active(ActionKind::BlockIp, &d.target, th))
                            .is_some_and(|a| a.id > d.id && a.in_force()))
            })
            .collect();
        for (d, covered) in replaced.iter_mut().zip(covered) {
            d.superseded |= covered;
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
            && !d.failed
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
        let plan = self.plan(event, now);
        self.counters.event(plan.ignored.is_some());
        self.account(&plan);
        plan
    }

    fn plan(&mut self, event: &SecurityEvent, now: Timestamp) -> Plan {
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

    /// Records that another instance sharing this engine's enforcement (the same
    /// limiter, blacklist, notifier) has already carried out the step of `plan` with
    /// decision `decision`, and that its action ends at `until`. This instance must
    /// neither run it nor undo it: the step becomes
    /// [`Verdict::Elsewhere`] (no longer [`Plan::executable`]), and the decision stays
    /// active (repeats are duplicates) until `until` at the latest, so that once the
    /// other instance's block ends a new offence here is answered again. It is handed
    /// out by [`expire`](Self::expire) with [`Decision::needs_revert`] and
    /// [`Decision::needs_resolve`] false: the instance that carried it out undoes it.
    /// Without this, two instances that block one address would each lift the block at
    /// their own expiry, the owner's longer (escalated) block included.
    ///
    /// Returns false (and changes nothing) if the plan has no executable step with
    /// that decision. How instances agree on who carries an action out is the
    /// caller's (the gateway claims `(kind, target)` in Redis).
    pub fn taken_elsewhere(&mut self, plan: &mut Plan, decision: u64, until: Timestamp) -> bool {
        let Some(step) = (plan.steps.iter_mut())
            .find(|s| s.decision == Some(decision) && s.verdict == Verdict::Execute)
        else {
            return false;
        };
        let th = self.hasher.hash_one(&step.target);
        let h = active_hash(th, step.action.kind());
        if let Some((_, d)) = self.active.find_mut(h, |(_, d)| d.id == decision) {
            d.elsewhere = true;
            end_by(&mut self.expiries, d, until, h);
        }
        step.verdict = Verdict::Elsewhere;
        step.why.note = Note::Elsewhere;
        // The ban is the other instance's: its history is the fleet's to share
        // (`learn_bans`), not one more ban of this instance's own.
        self.uncount_ban(step, th);
        self.counters.taken_elsewhere();
        true
    }

    /// The action of `decision`, a step of `plan`, failed (the executor's
    /// [`Outcome::Failed`](crate::Outcome::Failed)). The decision is marked failed
    /// (nothing to undo or resolve at expiry) and holds repeats back only until
    /// `retry` (at most its own end); the cool-down its playbook set for the target
    /// (grouped by subject, or by subject and the event's kind) ends then too, and
    /// its ban is not counted. So the next
    /// matching event after `retry` plans the action again: kept as it was, the
    /// decision suppressed every repeat as a duplicate of a block that never held,
    /// until it would have expired. The delay keeps a failure that persists (a
    /// webhook refusing every call) from being retried on every event. A cool-down
    /// grouped by playbook (all targets) is left as it is.
    ///
    /// Returns the decision as it now is (a caller that claimed it elsewhere gives
    /// the claim back), or `None` if `plan` has no such step or it is not active.
    pub fn failed(&mut self, plan: &Plan, decision: u64, retry: Timestamp) -> Option<Decision> {
        let step = (plan.steps.iter()).find(|s| s.decision == Some(decision))?;
        let th = self.hasher.hash_one(&step.target);
        let h = active_hash(th, step.action.kind());
        let (_, d) = self.active.find_mut(h, |(_, d)| d.id == decision)?;
        if d.failed {
            return None;
        }
        // Only a ban that was in force was counted (not a dry run or a pending approval).
        let counted = d.in_force();
        d.failed = true;
        end_by(&mut self.expiries, d, retry, h);
        let d = d.clone();
        if counted {
            self.uncount_ban(step, th);
        }
        let Some(pi) = self.playbook_index(step.playbook.as_ref()) else {
            return Some(d);
        };
        // The groups `plan` may have filed the cool-down under; one grouped by
        // playbook holds back every target, and stays. The kind is the decision's (an
        // approved step cites the approval, not the event); an approved decision from
        // an older state has none, so every kind of its playbook is tried.
        let origin_kind = match &step.why.origin {
            crate::plan::Origin::Playbook { kind, .. } => Some(*kind),
            _ => None,
        };
        let p = &self.def.playbooks[pi];
        let kinds: Vec<Option<EventKind>> = match (p.group_by, d.event_kind.or(origin_kind)) {
            (GroupBy::Subject, _) => vec![None],
            (GroupBy::SubjectAndKind, Some(k)) => vec![Some(k)],
            (GroupBy::SubjectAndKind, None) => p.kinds.iter().copied().map(Some).collect(),
            (GroupBy::Playbook, _) => return Some(d),
        };
        for group_kind in kinds {
            let gh = self.group_hash(pi, Some(th), group_kind);
            let group = |(_, (i, t, k), _, _): &(u64, GroupKey, Timestamp, EvidenceBasis)| {
                *i == pi && t.as_ref() == Some(&step.target) && *k == group_kind
            };
            if let Some((_, _, until, _)) = self.cooldowns.find_mut(gh, group) {
                *until = (*until).min(retry);
            }
        }
        Some(d)
    }

    /// The index of the playbook a step cites, by name (names are unique; a decision
    /// restored from a `State` holds its own copy of the name).
    fn playbook_index(&self, playbook: Option<&Arc<str>>) -> Option<usize> {
        playbook.and_then(|p| self.names.iter().position(|n| **n == **p))
    }

    /// A ban counted when `step` was planned that is not this engine's after all
    /// (carried out elsewhere, or failed).
    fn uncount_ban(&mut self, step: &crate::Step, th: u64) {
        if self.escalates(step.playbook.as_ref(), step.rule)
            && let Ok(mut entry) = self.offences.find_entry(th, |(_, t, _)| *t == step.target)
        {
            let o = &mut entry.get_mut().2;
            o.count = o.count.saturating_sub(1);
            if o.count == 0 {
                entry.remove();
            }
        }
    }

    /// Whether rule `rule` of the playbook named `playbook` is a `block_ip` with
    /// escalation (whose bans are counted).
    fn escalates(&self, playbook: Option<&Arc<str>>, rule: usize) -> bool {
        let Some(pi) = self.playbook_index(playbook) else {
            return false;
        };
        matches!(
            self.def.playbooks[pi]
                .actions
                .get(rule)
                .map(|a| a.get_ref()),
            Some(ActionDef::BlockIp {
                escalation: Some(_),
                ..
            })
        )
    }

    /// `target`'s ban history as escalation counts it at `now` (`None`: no ban within
    /// the decay window).
    pub fn ban_history(&self, target: &Target, now: Timestamp) -> Option<BanHistory> {
        let th = self.hasher.hash_one(target);
        (self.offences.find(th, |(_, t, _)| t == target))
            .map(|(_, _, o)| *o)
            .filter(|o| o.count > 0 && o.counts_at(now))
    }

    /// Bans of `target` that other instances of a fleet carried out (their
    /// [`ban_history`](Self::ban_history), shared by the caller): this engine's history
    /// becomes the longer of the two, so the next ban of `target` here escalates as
    /// one engine that saw every ban would. Never lowers what this engine counts.
    pub fn learn_bans(&mut self, target: &Target, fleet: BanHistory) {
        let th = self.hasher.hash_one(target);
        match self.offences.entry(th, |(_, t, _)| t == target, |e| e.0) {
            Entry::Vacant(v) => {
                v.insert((th, target.clone(), fleet));
            }
            Entry::Occupied(o) => {
                let o = &mut o.into_mut().2;
                if fleet.count > o.count || !o.counts_at(fleet.last) {
                    *o = fleet;
                } else {
                    o.last = o.last.max(fleet.last);
                }
            }
        }
    }

    /// Forgets every decision whose time is over and returns them; the caller reverts
    /// those with [`Decision::needs_revert`]. Each decision is returned exactly once,
    /// also one replaced by a newer decision before `expire` ran; a block replaced by
    /// a newer block in force of the same target comes back
    /// [`superseded`](Decision::superseded), with nothing to undo.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Decision> {
        let mut out = std::mem::take(&mut self.replaced);
        self.mark_superseded(&mut out);
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
        self.offences.retain(|(_, _, o)| o.counts_at(now));
        self.cooldowns.retain(|(_, _, until, _)| *until > now);
        self.counters.expired(out.len());
        self.counters.set_active(self.active.len());
        out
    }
}

#[cfg(test)]
mod tests;
