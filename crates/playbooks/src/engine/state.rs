//! The state that survives a restart: [`State`], taken with [`Engine::state`] and
//! given back with [`Engine::restore`].

use std::hash::BuildHasher;
use std::time::Duration;

use palisade_core_traits::{EventKind, EvidenceBasis, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Engine, replace_or_insert};
use crate::Error;
use crate::definition::Definition;
use crate::plan::{ActionKind, Decision, Target};

/// A repeat offender's history, which `block_ip` escalation counts: the bans put in
/// force (executed or approved; not dry runs or pending approvals) within `decay_after`
/// of each other, and when the last one was. Forgotten once `decay_after` passes
/// without a ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanHistory {
    /// Bans counted.
    pub count: u32,
    /// When the last of them was put in force.
    pub last: Timestamp,
    /// How long the history lasts after the last ban.
    pub decay_after: Duration,
}

impl BanHistory {
    /// Whether the history still counts at `now`.
    pub fn counts_at(&self, now: Timestamp) -> bool {
        now.saturating_duration_since(self.last) < self.decay_after
    }
}

/// A cool-down as persisted: playbook name, group target, group kind, until, and the
/// evidence that set it (absent in states of earlier versions: unauthenticated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CoolDown(
    String,
    Option<Target>,
    Option<EventKind>,
    Timestamp,
    #[serde(default)] EvidenceBasis,
);

/// All the engine's state that must survive a restart: active and approval-pending
/// decisions, decisions replaced before `expire` ran (still to be handed out by it),
/// offence history, cool-downs, the budget window and the next decision id.
///
/// The JSON format is the one 0.1.0 wrote as `Snapshot` (same fields, unknown fields
/// refused); a state of an earlier version, with one budget for every action kind or
/// every mode (read as budgets in force), or cool-downs without an evidence basis,
/// still loads. Replaced decisions and the budgets of pending approvals and dry runs
/// are written only when there are some (`replaced`, `approval_budgets`,
/// `dry_run_budgets`): such a state is refused by versions before them with
/// [`Error::InvalidState`] (unknown field), never misread.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct State {
    /// Active and approval-pending decisions.
    pub decisions: Vec<Decision>,
    /// Decisions replaced before `expire` ran, which it still hands out (once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replaced: Vec<Decision>,
    /// Repeat-offender history: target, count, last offence, decay.
    offences: Vec<(Target, BanHistory)>,
    /// Cool-downs: playbook name, group target, group kind, until.
    cooldowns: Vec<CoolDown>,
    /// Times of recent budgeted actions in force, per action kind (in states written
    /// before budgets per mode: every kept action's).
    #[serde(default)]
    budgets: Vec<(ActionKind, Timestamp)>,
    /// The same for actions awaiting approval, and for dry runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    approval_budgets: Vec<(ActionKind, Timestamp)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dry_run_budgets: Vec<(ActionKind, Timestamp)>,
    /// States before budgets per kind kept one budget for every kind; read and dropped
    /// (it only ever holds the last minute).
    #[serde(default, skip_serializing)]
    budget: Vec<Timestamp>,
    /// Next decision id.
    next_id: u64,
}

impl State {
    /// Serializes to JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("state serializes: {e}"))
    }

    /// Parses JSON written by [`State::to_json`] (or by 0.1.0's `Snapshot::to_json`).
    pub fn from_json(s: &str) -> Result<Self, Error> {
        serde_json::from_str(s).map_err(Error::InvalidState)
    }
}

impl Engine {
    /// An engine resumed from a [`State`]: re-delivered events are duplicates, pending
    /// expiries still fire, ids are never reused. Cool-downs of playbooks no longer
    /// defined are dropped.
    pub fn restore(def: Definition, state: State) -> Self {
        let mut e = Engine::new(def);
        e.replaced = state.replaced;
        for d in state.decisions {
            let th = e.hasher.hash_one(&d.target);
            e.insert(d, th);
        }
        for (target, o) in state.offences {
            let th = e.hasher.hash_one(&target);
            replace_or_insert(
                &mut e.offences,
                th,
                (th, target, o),
                |a, b| a.1 == b.1,
                |e| e.0,
            );
        }
        for CoolDown(name, target, kind, until, basis) in state.cooldowns {
            if let Some(i) = e.def.playbooks.iter().position(|p| p.name == name) {
                let th = target.as_ref().map(|t| e.hasher.hash_one(t));
                e.set_cooldown(e.group_hash(i, th, kind), (i, target, kind), until, basis);
            }
        }
        // Index 2 in force, 1 awaiting approval, 0 dry run (`pipeline::force`).
        let tiers = [state.dry_run_budgets, state.approval_budgets, state.budgets];
        for (tier, entries) in tiers.into_iter().enumerate() {
            for (kind, t) in entries {
                e.budgets[kind as usize][tier].push_back(t);
            }
        }
        e.next_id = state.next_id;
        e.counters.set_active(e.active.len());
        e
    }

    /// The budget entries of one tier (`pipeline::force`), per kind.
    fn budget_entries(&self, tier: usize) -> Vec<(ActionKind, Timestamp)> {
        (ActionKind::ALL.iter())
            .flat_map(|k| self.budgets[*k as usize][tier].iter().map(|t| (*k, *t)))
            .collect()
    }

    /// The state to persist.
    pub fn state(&self) -> State {
        let mut decisions: Vec<Decision> = self.active.iter().map(|(_, d)| d.clone()).collect();
        decisions.sort_by_key(|d| d.id);
        State {
            decisions,
            replaced: self.replaced.clone(),
            offences: (self.offences.iter())
                .map(|(_, t, o)| (t.clone(), *o))
                .collect(),
            cooldowns: (self.cooldowns.iter())
                .map(|(_, (i, t, k), u, b)| {
                    let name = self.def.playbooks[*i].name.clone();
                    CoolDown(name, t.clone(), *k, *u, *b)
                })
                .collect(),
            budgets: self.budget_entries(2),
            approval_budgets: self.budget_entries(1),
            dry_run_budgets: self.budget_entries(0),
            budget: Vec::new(),
            next_id: self.next_id,
        }
    }
}
