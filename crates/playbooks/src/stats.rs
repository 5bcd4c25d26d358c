//! Counters: [`EngineStats`] and [`ExecutorStats`] from `stats()`, and with feature
//! `metrics` the same events through the `metrics` facade. One call site per event
//! feeds both.
//!
//! Metric names (docs/playbooks.md lists them with their labels):
//! `palisade_playbooks_<what>_total` (counters) and `palisade_playbooks_<what>` (gauges).
//! The engine registers its handles when it is built, with the recorder installed then
//! (install yours first); the executor and the notifiers look theirs up per call (they
//! do I/O anyway).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::plan::{ActionKind, Note, Step, Suppression, Verdict};

/// `what` with the crate's metric prefix, as a `&'static str` literal.
#[cfg(feature = "metrics")]
macro_rules! metric {
    ($what:literal) => {
        concat!("palisade_playbooks_", $what)
    };
}
#[cfg(all(feature = "metrics", feature = "http"))]
pub(crate) use metric;

/// The planning engine's counters ([`Engine::stats`](crate::Engine::stats)).
///
/// Every step counts once, under its verdict (and, when suppressed, its reason):
/// steps from events, from [`Engine::manual`](crate::Engine::manual) and from
/// [`Engine::approve`](crate::Engine::approve).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct EngineStats {
    /// Events given to [`Engine::evaluate`](crate::Engine::evaluate).
    pub events_evaluated: u64,
    /// Of those, events ignored as a whole (feedback-loop rule, or a subject type this
    /// version does not know).
    pub events_ignored: u64,
    /// Steps to execute now ([`Verdict::Execute`]).
    pub steps_execute: u64,
    /// Steps recorded but not executed ([`Verdict::DryRun`]).
    pub steps_dry_run: u64,
    /// Steps waiting for approval ([`Verdict::AwaitApproval`]).
    pub steps_await_approval: u64,
    /// Steps suppressed: the target is allowlisted.
    pub suppressed_allowlisted: u64,
    /// Steps suppressed: unauthenticated evidence for an action on an account.
    pub suppressed_unauthenticated: u64,
    /// Steps suppressed: an equal decision is active.
    pub suppressed_duplicate: u64,
    /// Steps suppressed: the playbook is cooling down for the group.
    pub suppressed_cool_down: u64,
    /// Steps suppressed: the per-minute budget of their action kind is spent (dry-run
    /// and approval candidates included: they are held back by what binds as far as
    /// they do or further, never the reverse).
    pub suppressed_budget: u64,
    /// High-severity notifications kept although their budget was spent
    /// ([`Note::OverBudget`]; also counted under their verdict).
    pub over_budget: u64,
    /// Steps planned to execute that another instance had carried out
    /// ([`Engine::taken_elsewhere`](crate::Engine::taken_elsewhere); also counted
    /// under `steps_execute`, the verdict they were planned with).
    pub taken_elsewhere: u64,
    /// Decisions handed out by [`Engine::expire`](crate::Engine::expire).
    pub expired: u64,
    /// Decisions active now, including those awaiting approval.
    pub active_decisions: u64,
}

/// Metric handles of the engine's hot path, registered once.
#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Handles {
    evaluated: metrics::Counter,
    ignored: metrics::Counter,
    /// Indexed like [`verdict_index`].
    steps: [metrics::Counter; 8],
    /// Indexed like [`ActionKind::ALL`].
    budget: [metrics::Counter; ActionKind::ALL.len()],
    over_budget: metrics::Counter,
    taken_elsewhere: metrics::Counter,
    expired: metrics::Counter,
    active: metrics::Gauge,
}

/// `(verdict, reason)` label values of the steps counter, in [`verdict_index`] order.
#[cfg(feature = "metrics")]
const STEP_LABELS: [(&str, Option<&str>); 8] = [
    ("execute", None),
    ("dry_run", None),
    ("await_approval", None),
    ("suppressed", Some("allowlisted")),
    ("suppressed", Some("unauthenticated")),
    ("suppressed", Some("duplicate")),
    ("suppressed", Some("cool_down")),
    ("suppressed", Some("budget")),
];

/// The position of a verdict among the step counters.
fn verdict_index(v: &Verdict) -> usize {
    match v {
        Verdict::Execute => 0,
        Verdict::DryRun => 1,
        Verdict::AwaitApproval { .. } => 2,
        Verdict::Suppressed(Suppression::Allowlisted) => 3,
        Verdict::Suppressed(Suppression::Unauthenticated) => 4,
        Verdict::Suppressed(Suppression::Duplicate { .. }) => 5,
        Verdict::Suppressed(Suppression::CoolDown { .. }) => 6,
        Verdict::Suppressed(Suppression::Budget) => 7,
        // Never planned: `Engine::taken_elsewhere` turns an `Execute` step into it
        // after it was counted (and counts it under `taken_elsewhere`).
        Verdict::Elsewhere => 0,
    }
}

/// The engine's counters (plain integers: the engine is `&mut self`).
#[derive(Debug)]
pub(crate) struct EngineCounters {
    stats: EngineStats,
    #[cfg(feature = "metrics")]
    handles: Handles,
}

impl EngineCounters {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "metrics")]
        let handles = Handles {
            evaluated: metrics::counter!(metric!("events_evaluated_total")),
            ignored: metrics::counter!(metric!("events_ignored_total")),
            steps: STEP_LABELS.map(|(verdict, reason)| match reason {
                Some(reason) => {
                    metrics::counter!(metric!("steps_total"), "verdict" => verdict, "reason" => reason)
                }
                None => metrics::counter!(metric!("steps_total"), "verdict" => verdict),
            }),
            budget: ActionKind::ALL
                .map(|k| metrics::counter!(metric!("budget_suppressions_total"), "kind" => k.name())),
            over_budget: metrics::counter!(metric!("over_budget_notifications_total")),
            taken_elsewhere: metrics::counter!(metric!("steps_taken_elsewhere_total")),
            expired: metrics::counter!(metric!("decisions_expired_total")),
            active: metrics::gauge!(metric!("active_decisions")),
        };
        EngineCounters {
            stats: EngineStats::default(),
            #[cfg(feature = "metrics")]
            handles,
        }
    }

    pub(crate) fn stats(&self) -> EngineStats {
        self.stats
    }

    /// An event was evaluated (`ignored`: as a whole).
    #[inline]
    pub(crate) fn event(&mut self, ignored: bool) {
        self.stats.events_evaluated += 1;
        self.stats.events_ignored += u64::from(ignored);
        #[cfg(feature = "metrics")]
        {
            self.handles.evaluated.increment(1);
            if ignored {
                self.handles.ignored.increment(1);
            }
        }
    }

    /// A step left the pipeline.
    #[inline]
    pub(crate) fn step(&mut self, step: &Step) {
        let s = &mut self.stats;
        let i = verdict_index(&step.verdict);
        *[
            &mut s.steps_execute,
            &mut s.steps_dry_run,
            &mut s.steps_await_approval,
            &mut s.suppressed_allowlisted,
            &mut s.suppressed_unauthenticated,
            &mut s.suppressed_duplicate,
            &mut s.suppressed_cool_down,
            &mut s.suppressed_budget,
        ][i] += 1;
        let over = matches!(step.why.note, Note::OverBudget { .. });
        s.over_budget += u64::from(over);
        #[cfg(feature = "metrics")]
        {
            self.handles.steps[i].increment(1);
            if step.verdict == Verdict::Suppressed(Suppression::Budget) {
                self.handles.budget[step.action.kind() as usize].increment(1);
            }
            if over {
                self.handles.over_budget.increment(1);
            }
        }
    }

    /// An executable step was carried out by another instance.
    pub(crate) fn taken_elsewhere(&mut self) {
        self.stats.taken_elsewhere += 1;
        #[cfg(feature = "metrics")]
        self.handles.taken_elsewhere.increment(1);
    }

    /// `n` decisions were handed out by `expire`.
    pub(crate) fn expired(&mut self, n: usize) {
        self.stats.expired += n as u64;
        #[cfg(feature = "metrics")]
        self.handles.expired.increment(n as u64);
    }

    /// The number of active decisions is now `n`.
    #[inline]
    pub(crate) fn set_active(&mut self, n: usize) {
        self.stats.active_decisions = n as u64;
        #[cfg(feature = "metrics")]
        self.handles.active.set(n as f64);
    }
}

/// What became of the actions of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OutcomeCounts {
    /// Took effect ([`Outcome::Applied`](crate::Outcome::Applied)).
    pub applied: u64,
    /// Failed after the retries allowed ([`Outcome::Failed`](crate::Outcome::Failed)).
    pub failed: u64,
    /// Timed out after dispatch ([`Outcome::Unknown`](crate::Outcome::Unknown)).
    pub unknown: u64,
    /// No responder configured ([`Outcome::NoResponder`](crate::Outcome::NoResponder)).
    pub no_responder: u64,
}

/// The executor's counters ([`Executor::stats`](crate::Executor::stats)): outcomes by
/// action kind, and attempts beyond the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ExecutorStats {
    /// [`ActionKind::BlockIp`] steps.
    pub block_ip: OutcomeCounts,
    /// [`ActionKind::RevokeUserTokens`] steps.
    pub revoke_user_tokens: OutcomeCounts,
    /// [`ActionKind::RevokeToken`] steps.
    pub revoke_token: OutcomeCounts,
    /// [`ActionKind::RequireStepUp`] steps.
    pub require_step_up: OutcomeCounts,
    /// [`ActionKind::TerminateSessions`] steps.
    pub terminate_sessions: OutcomeCounts,
    /// [`ActionKind::Notify`] steps.
    pub notify: OutcomeCounts,
    /// Expired blocks lifted by [`Executor::revert`](crate::Executor::revert).
    pub unblock_ip: OutcomeCounts,
    /// Expired notifications resolved by [`Executor::revert`](crate::Executor::revert).
    pub resolve: OutcomeCounts,
    /// Attempts after the first (retries of backend-unavailable errors).
    pub retries: u64,
}

/// What the executor dispatched: a step's action kind, or one of the two reverts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dispatched {
    Step(ActionKind),
    Unblock,
    Resolve,
}

impl Dispatched {
    fn index(self) -> usize {
        match self {
            Dispatched::Step(k) => k as usize,
            Dispatched::Unblock => ActionKind::ALL.len(),
            Dispatched::Resolve => ActionKind::ALL.len() + 1,
        }
    }

    /// The `kind` label value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dispatched::Step(k) => k.name(),
            Dispatched::Unblock => "unblock_ip",
            Dispatched::Resolve => "resolve",
        }
    }
}

/// `[applied, failed, unknown, no_responder]` per [`Dispatched::index`], shared by the
/// executor's clones.
#[derive(Debug, Default)]
pub(crate) struct ExecutorCounters {
    outcomes: [[AtomicU64; 4]; ActionKind::ALL.len() + 2],
    retries: AtomicU64,
}

impl ExecutorCounters {
    /// An action finished: `outcome` is 0 applied, 1 failed, 2 unknown, 3 no responder.
    pub(crate) fn outcome(&self, what: Dispatched, outcome: usize) {
        self.outcomes[what.index()][outcome].fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            const NAMES: [&str; 4] = ["applied", "failed", "unknown", "no_responder"];
            metrics::counter!(metric!("actions_total"), "kind" => what.name(), "outcome" => NAMES[outcome])
                .increment(1);
        }
    }

    /// An attempt after the first.
    pub(crate) fn retry(&self, what: Dispatched) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(metric!("action_retries_total"), "kind" => what.name()).increment(1);
        #[cfg(not(feature = "metrics"))]
        let _ = what;
    }

    pub(crate) fn stats(&self) -> ExecutorStats {
        let of = |what: Dispatched| {
            let [applied, failed, unknown, no_responder] = self.outcomes[what.index()]
                .each_ref()
                .map(|c| c.load(Ordering::Relaxed));
            OutcomeCounts {
                applied,
                failed,
                unknown,
                no_responder,
            }
        };
        let step = |k| of(Dispatched::Step(k));
        ExecutorStats {
            block_ip: step(ActionKind::BlockIp),
            revoke_user_tokens: step(ActionKind::RevokeUserTokens),
            revoke_token: step(ActionKind::RevokeToken),
            require_step_up: step(ActionKind::RequireStepUp),
            terminate_sessions: step(ActionKind::TerminateSessions),
            notify: step(ActionKind::Notify),
            unblock_ip: of(Dispatched::Unblock),
            resolve: of(Dispatched::Resolve),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}
