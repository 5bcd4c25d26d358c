//! One candidate action, from a playbook rule, [`Engine::manual`] or
//! [`Engine::approve`], resolved against its target and run through the fixed pipeline:
//! allowlist → evidence → de-duplication → cool-down → budget → mode → approval.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Duration;

use hashbrown::hash_table::Entry;
use palisade_core_traits::{
    EvidenceBasis, IpNetwork, SecurityEvent, Severity, Timestamp, canonical_ip, client_net,
};

use super::{BanHistory, Engine, MINUTE, Pending};
use crate::Error;
use crate::definition::{ActionDef, Mode};
use crate::plan::{
    Action, ActionKind, Decision, Note, Origin, Plan, Resolution, Step, Suppression, Target,
    TargetValue, Verdict, Why,
};

impl Engine {
    #[allow(clippy::too_many_arguments)] // one resolution needs all of the event's context
    pub(super) fn resolve(
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
        // An active decision holds back this candidate unless the candidate binds
        // further (a trial must not hold back enforcement) or escalates it: stronger
        // evidence, or a notification of higher severity. Only kinds with nothing to
        // undo escalate (a block is extended by the next one instead).
        let binds = force(mode == Mode::DryRun, def.approval().is_some());
        let active_decision = self
            .find_active(def.kind(), target, th)
            .filter(|d| d.active_until > now)
            .filter(|d| decision_force(d) >= binds)
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
                    && o.count > 0
                    && o.counts_at(now)
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
            event_kind: Some(event.kind),
        }
    }

    fn allowlisted(&self, target: &Target, th: u64) -> bool {
        self.allow.find(th, |(_, t)| t == target).is_some()
            || matches!(target, Target::Ip { ip } if self.allow_nets.iter().any(|n| reaches(n, *ip)))
    }

    /// The decision active at `now` for this action kind and target that holds back
    /// a candidate binding as far as `binds` ([`force`]): `(id, until)`.
    fn active_decision(
        &self,
        kind: ActionKind,
        target: &Target,
        th: u64,
        now: Timestamp,
        binds: u8,
    ) -> Option<(u64, Timestamp)> {
        self.find_active(kind, target, th)
            .filter(|d| d.active_until > now && decision_force(d) >= binds)
            .map(|d| (d.id, d.active_until))
    }

    /// The fixed pipeline every candidate passes: allowlist → evidence →
    /// de-duplication → cool-down → budget → mode → approval.
    pub(super) fn pipeline(
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
        let dry_run = c.mode == Mode::DryRun;
        // Like de-duplication: what binds less never spends what binds more. A
        // candidate counts the kept actions that bind at least as far as it would, so
        // enforcement counts only enforcement, and a trial sees the suppression it
        // would meet if it were enforced, its own spending included.
        let binds = usize::from(force(dry_run, c.approval.is_some()));
        let budgets = &mut self.budgets[kind as usize];
        for budget in budgets.iter_mut() {
            while budget.front().is_some_and(|t| *t <= horizon) {
                budget.pop_front();
            }
        }
        let spent: usize = budgets[binds..].iter().map(VecDeque::len).sum();
        let cap = self.def.engine.max_actions_per_minute;
        if spent >= cap as usize {
            // A budget caps what a flood can make us do; it never silences the alarm.
            if kind == ActionKind::Notify && c.severity >= Severity::High {
                step.why.note = Note::OverBudget { cap };
            } else {
                suppress(step, Suppression::Budget, Note::Budget { cap });
                return;
            }
        }
        budgets[binds].push_back(now);
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
        // Only a ban in force counts toward escalation: a dry run never is, an
        // approval is counted when given (`approve`).
        if let (Action::BlockIp { .. }, Some(p), Verdict::Execute) =
            (&step.action, c.playbook, step.verdict)
        {
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
                event_kind: c.event_kind,
                elsewhere: false,
                failed: false,
                superseded: false,
            },
            c.target_hash,
        );
        step.decision = Some(id);
    }

    /// The rule of playbook `name` whose block waited for approval: its first
    /// `block_ip` with an approval. By name, so decisions restored from a [`State`]
    /// (fresh `Arc`s) find it too.
    ///
    /// [`State`]: crate::State
    fn approved_block_rule(&self, name: Option<&str>) -> Option<(usize, usize)> {
        let pi = (self.def.playbooks.iter()).position(|p| Some(p.name.as_str()) == name)?;
        let rule = (self.def.playbooks[pi].actions.iter()).position(|a| {
            matches!(
                a.get_ref(),
                ActionDef::BlockIp {
                    approval: Some(_),
                    ..
                }
            )
        })?;
        Some((pi, rule))
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
        let fresh = BanHistory {
            count: 0,
            last: now,
            decay_after,
        };
        let o = match self.offences.entry(th, |(_, t, _)| t == target, |e| e.0) {
            Entry::Occupied(o) => &mut o.into_mut().2,
            Entry::Vacant(v) => &mut v.insert((th, target.clone(), fresh)).into_mut().2,
        };
        if !o.counts_at(now) {
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
        let binds = force(mode == Mode::DryRun, false);
        let active = self.active_decision(action.kind(), &target, th, now, binds);
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
            event_kind: None,
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
        let plan = Plan {
            event: None,
            time: now,
            ignored: None,
            steps: vec![step],
        };
        self.account(&plan);
        plan
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
            self.counters.set_active(self.active.len());
            return Err(Error::ApprovalExpired { id, deadline });
        }
        let window = match &d.action {
            Action::BlockIp { duration, .. } => *duration,
            Action::RequireStepUp { valid_for, .. } => *valid_for,
            _ => deadline.saturating_duration_since(d.created),
        };
        d.awaiting_approval = None;
        d.active_until = now.saturating_add(window);
        // The block's own rule: `failed` and `taken_elsewhere` un-count its ban by it.
        let block_rule = if matches!(d.action, Action::BlockIp { .. }) {
            self.approved_block_rule(d.playbook.as_deref())
        } else {
            None
        };
        let step = Step {
            playbook: d.playbook.clone(),
            rule: block_rule.map_or(0, |(_, rule)| rule),
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
        // The ban is in force from now: it counts toward escalation now.
        if !d.dry_run
            && let Some((pi, rule)) = block_rule
        {
            self.record_offence(pi, rule, (&d.target, th), now);
        }
        self.insert(d, th);
        let plan = Plan {
            event: None,
            time: now,
            ignored: None,
            steps: vec![step],
        };
        self.account(&plan);
        Ok(plan)
    }
}

/// How far an action binds: a dry run (0) never, one awaiting approval (1) once
/// approved, any other (2) now. An active decision holds back only candidates that
/// bind no further than it does, so neither a trial nor a pending approval holds back
/// an automatic enforcement (which replaces it).
fn force(dry_run: bool, awaiting_approval: bool) -> u8 {
    match (dry_run, awaiting_approval) {
        (true, _) => 0,
        (false, true) => 1,
        (false, false) => 2,
    }
}

/// [`force`] of a decision. A failed one or one taken elsewhere still binds: it holds
/// repeats back until its retry or the other instance's end.
fn decision_force(d: &Decision) -> u8 {
    force(d.dry_run, d.awaiting_approval.is_some())
}

/// Whether acting on `ip` would reach into the allowlisted network `n`. A block takes
/// an address as its `client_net` (an IPv6 address's whole /64, a 6to4, Teredo or
/// NAT64 address as the IPv4 client it carries), so `n` is compared with that scope,
/// not with the address alone: a /80 inside the /64, or an IPv4 network behind NAT64.
fn reaches(n: &IpNetwork, ip: IpAddr) -> bool {
    let scope = client_net(ip);
    n.contains(ip)
        || n.contains(scope)
        || (scope.is_ipv6() && n.addr().is_ipv6() && client_net(n.addr()) == scope)
}
