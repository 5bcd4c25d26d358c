//! Incident response: every decision of the gateway that is a security event goes on
//! one bounded bus; one task correlates it into an incident, plans the playbooks'
//! response, executes it through the crates' traits, writes the OCSF audit, and shows
//! each step (with the playbook's explanation) on the dashboard.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{Clock, SecurityEvent, Severity, Timestamp};
use palisade_playbooks::{
    Action, ActionKind, AuditLog, BanHistory, Decision, Engine, Error as PlaybookError, Executor,
    Outcome, Plan, Target, Verdict,
};
use palisade_token_blacklist::redis;
use tokio::sync::mpsc;

use crate::activity::{Activity, Origin, What};
use crate::dashboard::Dashboard;
use crate::incident::{ActionLine, Correlator, FleetBackoff};
use crate::shared::{RedisConn, hashed_key, millis};

/// Events waiting for the response task.
pub const BUS_CAPACITY: usize = 4096;

/// The sending side of the bus, cloned into every place that detects something.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: mpsc::Sender<SecurityEvent>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
    region: Arc<str>,
}

impl Bus {
    /// A bus and its receiving end; every event on it names `region` (evidence
    /// `region`), so an operator who merges several regions' audits knows where each
    /// decision was taken.
    pub fn new(region: &str) -> (Bus, mpsc::Receiver<SecurityEvent>) {
        let (tx, rx) = mpsc::channel(BUS_CAPACITY);
        let bus = Bus {
            tx,
            dropped: Arc::default(),
            region: region.into(),
        };
        (bus, rx)
    }

    /// Hands an event over. When the bus is full, events below high severity are
    /// dropped (and counted); high and critical ones wait for room: the request that
    /// caused them is slowed, the alarm is not lost.
    pub async fn publish(&self, event: SecurityEvent) {
        let event = if event.evidence("region").is_some() {
            event
        } else {
            event.with_evidence("region", self.region.as_ref())
        };
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) if event.severity >= Severity::High => {
                let _ = self.tx.send(event).await;
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("security event bus full: a low-severity event was dropped");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Events dropped because the bus was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How long a failed playbook action holds repeats back before the next matching
/// event plans it again (`Engine::failed`): long enough that a failure that persists
/// is not retried on every event, short against a block's 15 minutes.
pub const FAILED_RETRY: Duration = Duration::from_secs(60);

/// Who carries out an action, on the fleet's Redis: `KEYS[1]` names the action's kind
/// and target, `ARGV[1]` is this instance, `ARGV[2]` how long the action lasts (ms).
/// Free, or already this instance's (a longer block replacing its own): this instance
/// holds it, for the longer of its time left and `ARGV[2]`. Returns the holder and the
/// milliseconds its action has left.
const CLAIM_LUA: &str = r"
local holder = redis.call('GET', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if holder and holder ~= ARGV[1] then return {holder, left} end
local px = math.max(tonumber(ARGV[2]), left)
redis.call('SET', KEYS[1], ARGV[1], 'PX', px)
return {ARGV[1], px}
";
static CLAIM: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(CLAIM_LUA));

/// The fleet's ban history of an address (`Engine::ban_history` as JSON), written by
/// the instance that carried a ban out: `KEYS[1]` the address's key, `ARGV[1]` the
/// history, `ARGV[2]` its count, `ARGV[3]` how long it lasts (ms). A history that
/// counts fewer bans than the one kept is not written (two instances that both
/// learned the same bans never lower it).
const BANS_LUA: &str = r"
local kept = redis.call('GET', KEYS[1])
if kept and cjson.decode(kept).count >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
";
static BANS: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(BANS_LUA));

/// Gives a claim back: `KEYS[1]` the claim, deleted if `ARGV[1]` (this instance)
/// holds it.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";
static RELEASE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(RELEASE_LUA));

/// Which instance of a fleet carries out a playbook's action. Every instance plans
/// the response to the events it sees, so two instances that see one attack plan the
/// same action (block this address, notify about it). The first to claim the action's
/// kind and target carries it out, and undoes it when it expires; the others record it
/// as taken elsewhere (`Engine::taken_elsewhere`): they neither run it again (one
/// notification, not one per instance) nor lift a block they did not set.
///
/// The fleet then answers as one engine would: an action held elsewhere is, like an
/// active decision of one engine, a duplicate, even if this instance planned it longer
/// (one engine suppresses a second block of an address it blocks, whatever its
/// length). A claim ends with its action: the holder gives it back once it has undone
/// the action ([`ActionClaims::release`]), else it lapses in Redis at the action's
/// end. An instance whose expiry runs after another instance claimed the address anew
/// does not lift that instance's block ([`ActionClaims::held_elsewhere`]).
///
/// Escalation counts the fleet's bans: the instance that carries a ban out writes the
/// address's ban history ([`Engine::ban_history`]); an instance about to plan a ban
/// reads it first ([`ActionClaims::learn_bans`]). A ban taken elsewhere is not counted
/// by the instance that planned it too, so one attack seen by two instances is one
/// ban, and an attacker who comes back through another instance is banned longer.
///
/// When Redis is out of reach an instance carries its actions out itself: a block
/// set twice still holds, a block not set would let the attacker in. Redis is then
/// not asked again for [`RETRY_FLEET_AFTER`](crate::incident::RETRY_FLEET_AFTER), by
/// the claims or the incident correlation ([`FleetBackoff`]).
#[derive(Clone)]
pub struct ActionClaims {
    conn: RedisConn,
    prefix: String,
    instance: String,
    backoff: FleetBackoff,
}

impl std::fmt::Debug for ActionClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionClaims")
            .field("prefix", &self.prefix)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl ActionClaims {
    /// Claims on `conn` under `prefix` (e.g. `palisade:gateway:playbooks`), as
    /// `instance`; after a failure Redis is not asked again while `backoff` waits
    /// (shared with the incident correlation on the same Redis).
    pub fn new(
        conn: RedisConn,
        prefix: &str,
        instance: &str,
        backoff: FleetBackoff,
    ) -> ActionClaims {
        ActionClaims {
            conn,
            // One hash tag: a cluster keeps every claim in one slot.
            prefix: format!("{prefix}:{{claims}}"),
            instance: instance.to_owned(),
            backoff,
        }
    }

    /// Claims every executable step of `plan` (planned by `engine` at `now`); a step
    /// another instance holds becomes taken elsewhere, until the holder's action ends.
    /// Returns those steps' decisions with the instance that holds each.
    pub async fn settle(
        &self,
        engine: &mut Engine,
        plan: &mut Plan,
        now: Timestamp,
    ) -> Vec<(u64, String)> {
        let mut elsewhere = Vec::new();
        let steps: Vec<_> = (plan.executable())
            .filter_map(|s| Some((s.decision?, s.action.kind(), s.target.clone())))
            .collect();
        for (decision, kind, target) in steps {
            let Some(until) = engine.active(kind, &target).map(|d| d.active_until) else {
                continue;
            };
            let mut call = CLAIM.prepare_invoke();
            call.key(self.key(kind, &target))
                .arg(&self.instance)
                .arg(millis(until.saturating_duration_since(now)));
            let claimed = (self.backoff)
                .ask(
                    "acting here alone",
                    self.conn.invoke::<(String, i64)>(&call),
                )
                .await;
            match claimed {
                None => metrics::counter!("palisade_gateway_playbook_claims_unreached_total")
                    .increment(1),
                // Its ban history is shared once the block took effect
                // (`Responder::handle`): a failed block is not a ban.
                Some((holder, _)) if holder == self.instance => {}
                Some((holder, left_ms)) => {
                    let left = Duration::from_millis(u64::try_from(left_ms).unwrap_or(0));
                    if engine.taken_elsewhere(plan, decision, now.saturating_add(left)) {
                        elsewhere.push((decision, holder));
                    }
                }
            }
        }
        elsewhere
    }

    /// The claim key of an action's kind and target.
    fn key(&self, kind: ActionKind, target: &Target) -> String {
        self.key_of(kind.name(), target)
    }

    /// The key of the fleet's ban history of `target`.
    fn bans_key(&self, target: &Target) -> String {
        self.key_of("bans", target)
    }

    fn key_of(&self, what: &str, target: &Target) -> String {
        // A block's address as the limiter blocks it (an IPv6 /64): two blocks that
        // are one block in the limiter are one claim and one ban history. Other
        // actions about an address (a notification) stay the address's own.
        let net = match target {
            Target::Ip { ip } if what == ActionKind::BlockIp.name() || what == "bans" => {
                Some(Target::Ip {
                    ip: palisade_ratelimit::client_net(*ip),
                })
            }
            _ => None,
        };
        let target = serde_json::to_string(net.as_ref().unwrap_or(target))
            .unwrap_or_else(|e| unreachable!("a target serializes: {e}"));
        hashed_key(&self.prefix, &format!("{what}\n{target}"))
    }

    /// After this instance undid `decision`'s action at its expiry: the claim is given
    /// back (if this instance still holds it), so the next offence is answered by
    /// whichever instance sees it first, even when this instance's clock ran ahead of
    /// Redis' (whose claim would otherwise outlive the action).
    pub async fn release(&self, decision: &Decision) {
        let mut call = RELEASE.prepare_invoke();
        call.key(self.key(decision.action.kind(), &decision.target))
            .arg(&self.instance);
        let fallback = "the claim lapses by itself";
        let _ = (self.backoff)
            .ask(fallback, self.conn.invoke::<i64>(&call))
            .await;
    }

    /// Before `event` is planned: if it may ban an address this instance does not
    /// block now, the bans the fleet carried out are learned, so the ban escalates as
    /// one engine that saw them all would. A repeat during a block asks nothing.
    pub async fn learn_bans(&self, engine: &mut Engine, event: &SecurityEvent) {
        let Some(target @ Target::Ip { .. }) = Target::of(&event.subject) else {
            return;
        };
        if engine.active(ActionKind::BlockIp, &target).is_some() {
            return;
        }
        let mut get = redis::cmd("GET");
        get.arg(self.bans_key(&target));
        let fallback = "escalating by this instance's bans alone";
        let kept = self
            .backoff
            .ask(fallback, self.conn.query::<Option<String>>(&get));
        if let Some(Some(json)) = kept.await {
            match serde_json::from_str::<BanHistory>(&json) {
                Ok(fleet) => engine.learn_bans(&target, fleet),
                Err(e) => tracing::warn!(error = %e, "unreadable fleet ban history ignored"),
            }
        }
    }

    /// After a ban of `target` this instance carried out: its ban history becomes the
    /// fleet's, for as long as it counts.
    pub(crate) async fn share_bans(&self, engine: &Engine, target: &Target, now: Timestamp) {
        let Some(history) = engine.ban_history(target, now) else {
            return;
        };
        let left = history
            .decay_after
            .saturating_sub(now.saturating_duration_since(history.last));
        let json = serde_json::to_string(&history)
            .unwrap_or_else(|e| unreachable!("a ban history serializes: {e}"));
        let mut call = BANS.prepare_invoke();
        call.key(self.bans_key(target))
            .arg(json)
            .arg(history.count)
            .arg(millis(left));
        let fallback = "the fleet's ban history misses this ban";
        let _ = (self.backoff)
            .ask(fallback, self.conn.invoke::<i64>(&call))
            .await;
    }

    /// Whether another instance now holds `decision`'s action (this instance's claim
    /// lapsed with its block, and another instance blocked the address anew before this
    /// one's expiry ran): then this instance must not lift it. When Redis cannot tell,
    /// also true: the block stays, and ends by itself in the fleet's limiter.
    pub async fn held_elsewhere(&self, decision: &Decision) -> bool {
        let mut get = redis::cmd("GET");
        get.arg(self.key(decision.action.kind(), &decision.target));
        let fallback = "a block is left to end by itself";
        match self
            .backoff
            .ask(fallback, self.conn.query::<Option<String>>(&get))
            .await
        {
            Some(holder) => holder.is_some_and(|h| h != self.instance),
            None => true,
        }
    }
}

fn name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Execute => "execute",
        Verdict::DryRun => "dry_run",
        Verdict::AwaitApproval { .. } => "awaiting_approval",
        Verdict::Suppressed(_) => "suppressed",
        Verdict::Elsewhere => "elsewhere",
        _ => "other",
    }
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Applied { .. } => "applied".into(),
        Outcome::Failed { attempts, error } => {
            format!("failed after {attempts} attempt(s): {error}")
        }
        Outcome::Unknown { .. } => "timed out after dispatch: outcome unknown".into(),
        Outcome::NoResponder => "no responder configured".into(),
        other => format!("{other:?}"),
    }
}

/// The response task's parts.
pub struct Responder<W: Write> {
    /// The playbooks.
    pub engine: Engine,
    /// Runs plans through the crates' traits.
    pub executor: Executor,
    /// The hash-chained OCSF audit.
    pub audit: AuditLog<W>,
    /// Opens the audit again after a failed write, its torn end cut off
    /// ([`crate::audit::open`]); `None`: a failed write stops the audit.
    #[allow(clippy::type_complexity)]
    pub reopen_audit: Option<Box<dyn FnMut() -> std::io::Result<AuditLog<W>> + Send>>,
    /// Groups events into incidents.
    pub correlator: Correlator,
    /// Where operators watch.
    pub dashboard: Arc<Dashboard>,
    /// Time for planning and expiry.
    pub clock: Arc<dyn Clock>,
    /// Who in the fleet carries out each action (`None`: this instance alone).
    pub claims: Option<ActionClaims>,
}

/// Whether an action's outcome makes it to be planned again after [`FAILED_RETRY`]
/// (the engine marks it failed): it failed, or it timed out after dispatch (it may
/// or may not have taken effect) and doing it twice is harmless. A block, a
/// revocation, a step-up or an end of sessions done twice changes nothing more (a
/// repeated block keeps the later end); taken as done, a timed-out block that did not
/// hold let the attacker in for its whole length, the repeats held back as its
/// duplicates. A notification is not sent twice (it may page someone twice). The
/// cost: a timed-out block that did hold is not counted as a ban, so the next one is
/// not escalated for it.
fn retried(outcome: &Outcome, kind: Option<ActionKind>) -> bool {
    match outcome {
        Outcome::Failed { .. } => true,
        Outcome::Unknown { .. } => kind.is_some_and(|k| k != ActionKind::Notify),
        _ => false,
    }
}

impl<W: Write> Responder<W> {
    /// Handles one event: correlate, plan, execute, audit, show.
    pub async fn handle(&mut self, event: SecurityEvent) {
        let incident = self.correlator.correlate(&event).await.clone();
        let origin = Origin {
            ip: event
                .evidence("ip")
                .and_then(|v| v.parse().ok())
                .or(match &event.subject {
                    palisade_core_traits::Subject::Ip { ip } => Some(*ip),
                    _ => None,
                }),
            ..Origin::default()
        };
        let subject = (incident.events)
            .back()
            .map(|e| e.subject.clone())
            .unwrap_or_default();
        self.dashboard.publish(Activity::new(
            event.time,
            origin.clone(),
            What::Detection {
                event: name(&event.kind),
                severity: name(&event.severity),
                subject,
                basis: name(&event.basis),
                region: event.evidence("region").unwrap_or_default().to_owned(),
                incident: incident.id,
            },
        ));
        if let Some(claims) = &self.claims {
            claims.learn_bans(&mut self.engine, &event).await;
        }
        let now = self.clock.now();
        let mut plan = self.engine.evaluate(&event, now);
        let elsewhere = match &self.claims {
            Some(claims) => claims.settle(&mut self.engine, &mut plan, now).await,
            None => Vec::new(),
        };
        let outcomes = self.executor.execute(&plan).await;
        for (id, outcome) in &outcomes {
            let step = (plan.executable()).find(|s| s.decision == Some(*id));
            if retried(outcome, step.map(|s| s.action.kind())) {
                // Planned again by the first event after a retry delay, not held back
                // as a duplicate until it would have expired; the claim goes back so
                // that event may come to another instance (unless another block of
                // this instance's, in the same /64, holds the claim).
                let retry = now.saturating_add(FAILED_RETRY);
                if let Some(decision) = self.engine.failed(&plan, *id, retry)
                    && let Some(claims) = &self.claims
                    && !self.still_blocked(&decision)
                {
                    claims.release(&decision).await;
                }
            } else if let Some(claims) = &self.claims
                && let Some(step) = step
                && step.action.kind() == ActionKind::BlockIp
            {
                // Carried out: the fleet's ban history.
                claims.share_bans(&self.engine, &step.target, now).await;
            }
        }
        self.show_plan(incident.id, &plan, &outcomes, &elsewhere, origin);
        self.audited(|audit| audit.record_plan(&plan, &outcomes));
    }

    fn show_plan(
        &mut self,
        incident: u64,
        plan: &Plan,
        outcomes: &[(u64, Outcome)],
        elsewhere: &[(u64, String)],
        origin: Origin,
    ) {
        let mut last = None;
        for step in &plan.steps {
            let outcome = step.decision.and_then(|id| {
                let run = outcomes.iter().find(|(d, _)| *d == id);
                let by = elsewhere.iter().find(|(d, _)| *d == id);
                run.map(|(_, o)| outcome_text(o))
                    .or(by.map(|(_, by)| format!("carried out by {by}")))
            });
            let line = ActionLine {
                time: plan.time,
                action: name(&step.action.kind()),
                verdict: verdict_name(&step.verdict).to_owned(),
                why: step.why.to_string(),
                outcome,
                instance: None,
            };
            self.dashboard.publish(Activity::new(
                plan.time,
                origin.clone(),
                What::Action {
                    incident,
                    action: line.action.clone(),
                    verdict: line.verdict.clone(),
                    why: line.why.clone(),
                },
            ));
            last = self.correlator.record_action(incident, line).cloned();
        }
        if let Some(inc) = last.or_else(|| {
            self.correlator
                .recent(200)
                .into_iter()
                .find(|i| i.id == incident)
        }) {
            self.dashboard.publish_incident(inc);
        }
    }

    /// Undoes what expired (lifts blocks, resolves notifications) and audits it.
    pub async fn expire(&mut self) {
        let now = self.clock.now();
        for decision in self.engine.expire(now) {
            let held_elsewhere = match &self.claims {
                Some(claims) if decision.needs_revert() => claims.held_elsewhere(&decision).await,
                _ => false,
            };
            // The limiter blocks an IPv6 client's /64: another block of the same /64,
            // still active, ends it (the limiter keeps the later end).
            let covered = decision.needs_revert() && self.still_blocked(&decision);
            let outcome = if held_elsewhere || covered {
                None
            } else {
                self.executor.revert(&decision).await
            };
            if let Some(claims) = &self.claims
                && !held_elsewhere
                && !covered
                && (decision.needs_revert() || decision.needs_resolve())
            {
                claims.release(&decision).await;
            }
            self.audited(|audit| audit.record_expiry(now, &decision, outcome.clone()));
        }
    }

    /// Writes to the audit; after a failed write, opens it again (cutting off what
    /// part of a record reached the file) and writes once more. A plan that failed
    /// after some of its records were written is written again whole: those records
    /// appear twice (a decision's with the same `command_uid`), where a lost record
    /// could not be told.
    fn audited(&mut self, write: impl Fn(&mut AuditLog<W>) -> Result<(), PlaybookError>) {
        let Err(e) = write(&mut self.audit) else {
            return;
        };
        tracing::error!(error = %e, "audit log write failed");
        let Some(reopen) = &mut self.reopen_audit else {
            return;
        };
        match reopen() {
            Ok(log) => {
                self.audit = log;
                match write(&mut self.audit) {
                    Ok(()) => tracing::info!("audit log repaired; the record is written"),
                    Err(e) => {
                        tracing::error!(error = %e, "audit log write failed again after its repair")
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "audit log repair failed"),
        }
    }

    /// Whether another active block in force (not a dry run, not awaiting approval,
    /// not failed; carried out here or elsewhere) covers what `decision`'s block
    /// covers.
    fn still_blocked(&self, decision: &Decision) -> bool {
        let Action::BlockIp { ip, .. } = &decision.action else {
            return false;
        };
        let net = palisade_ratelimit::client_net(*ip);
        self.engine.active_blocks().any(|d| {
            d.in_force()
                && d.id != decision.id
                && matches!(&d.action, Action::BlockIp { ip: other, .. }
                    if palisade_ratelimit::client_net(*other) == net)
        })
    }

    /// Runs until the bus closes (every sender gone, or `closing` notified: the
    /// events already queued are still handled): events as they come, expiry every
    /// `tick`.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<SecurityEvent>,
        tick: Duration,
        closing: Arc<tokio::sync::Notify>,
    ) -> Self {
        let mut timer = tokio::time::interval(tick);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => return self,
                },
                _ = timer.tick() => self.expire().await,
                () = closing.notified() => rx.close(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use palisade_core_traits::{
        Error as ActionError, EventId, EventKind, IpBlocker, ManualClock, Subject, async_trait,
    };
    use palisade_playbooks::Definition;

    use super::*;

    /// Records every block; answers a timeout (the call went out, its effect is
    /// unknown) while `time_out` is set.
    #[derive(Debug, Default)]
    struct Blocker {
        calls: Mutex<Vec<IpAddr>>,
        time_out: AtomicBool,
    }

    #[async_trait]
    impl IpBlocker for Blocker {
        async fn block_ip(&self, ip: IpAddr, _: Duration, _: &str) -> Result<(), ActionError> {
            self.calls.lock().unwrap().push(ip);
            if self.time_out.load(Ordering::SeqCst) {
                return Err(ActionError::Timeout(Duration::from_secs(1)));
            }
            Ok(())
        }

        async fn unblock_ip(&self, _: IpAddr) -> Result<(), ActionError> {
            Ok(())
        }
    }

    fn brute_force(id: &str, clock: &ManualClock) -> SecurityEvent {
        SecurityEvent::new(
            EventId::new(id).unwrap(),
            clock.now(),
            EventKind::BruteForce,
            Severity::High,
            Subject::ip("198.51.100.7".parse().unwrap()),
            "test",
        )
    }

    /// A block whose call timed out may not hold: the first offence after
    /// `FAILED_RETRY` blocks again (taken as done, every repeat was held back as its
    /// duplicate for the block's 15 minutes). Once a block held, repeats are held back.
    #[tokio::test]
    async fn a_block_that_timed_out_after_dispatch_is_tried_again_after_the_retry() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
        let blocker = Arc::new(Blocker::default());
        blocker.time_out.store(true, Ordering::SeqCst);
        let mut responder = Responder {
            engine: Engine::new(Definition::default_set().unwrap()),
            executor: Executor::builder()
                .ip_blocker(blocker.clone())
                .build()
                .unwrap(),
            audit: AuditLog::new(Vec::new()),
            reopen_audit: None,
            correlator: Correlator::new(crate::incident::WINDOW),
            dashboard: Arc::new(Dashboard::default()),
            clock: clock.clone(),
            claims: None,
        };
        let calls = || blocker.calls.lock().unwrap().len();
        responder.handle(brute_force("bf-1", &clock)).await;
        assert_eq!(calls(), 1);
        // Before the retry, a repeat is held back.
        clock.advance(Duration::from_secs(30));
        responder.handle(brute_force("bf-2", &clock)).await;
        assert_eq!(calls(), 1);
        // After it, blocked again; this time the block holds.
        blocker.time_out.store(false, Ordering::SeqCst);
        clock.advance(FAILED_RETRY);
        responder.handle(brute_force("bf-3", &clock)).await;
        assert_eq!(calls(), 2);
        clock.advance(FAILED_RETRY + Duration::from_secs(1));
        responder.handle(brute_force("bf-4", &clock)).await;
        assert_eq!(calls(), 2, "a block that held is not repeated");
    }

    /// A failed audit write no longer stops the audit until a restart: the file is
    /// opened again, the part of a record the failed write left is cut off (kept
    /// aside), and the record is written on the one chain.
    #[tokio::test]
    async fn a_failed_audit_write_is_repaired_and_the_record_written() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        // One whole record, then the start of one a failed write left behind.
        let mut first = AuditLog::new(Vec::new());
        first
            .record_expiry(clock.now(), &sample_decision(&clock), None)
            .unwrap();
        let whole = String::from_utf8(first.get_ref().clone()).unwrap();
        std::fs::write(&path, format!("{whole}{{\"seq\":1,\"ti")).unwrap();
        // The log this process holds cannot write (a read-only handle): every append
        // fails, as on a full disk.
        let broken = AuditLog::resume(
            std::fs::File::open(&path).unwrap(),
            1,
            palisade_playbooks::verify_audit(&whole).unwrap().1,
        );
        let reopen_path = path.clone();
        let reopen_clock = clock.clone();
        let mut responder = Responder {
            engine: Engine::new(Definition::default_set().unwrap()),
            executor: Executor::builder()
                .ip_blocker(Arc::new(Blocker::default()))
                .build()
                .unwrap(),
            audit: broken,
            reopen_audit: Some(Box::new(move || {
                crate::audit::open(&reopen_path, reopen_clock.now())
            })),
            correlator: Correlator::new(crate::incident::WINDOW),
            dashboard: Arc::new(Dashboard::default()),
            clock: clock.clone(),
            claims: None,
        };
        responder.handle(brute_force("bf-1", &clock)).await;
        let text = std::fs::read_to_string(&path).unwrap();
        let (count, _) = palisade_playbooks::verify_audit(&text).unwrap();
        assert!(count >= 2, "{text}");
        assert!(
            text.starts_with(&whole),
            "the chain goes on from the whole record"
        );
        assert!(text.contains("198.51.100.7"), "{text}");
        let torn = dir
            .path()
            .join(format!("audit.jsonl.{}.torn", clock.now().as_unix_secs()));
        assert_eq!(std::fs::read_to_string(torn).unwrap(), "{\"seq\":1,\"ti");
    }

    /// A decision to write an expiry record about.
    fn sample_decision(clock: &ManualClock) -> Decision {
        let mut engine = Engine::new(Definition::default_set().unwrap());
        engine.evaluate(&brute_force("sample", clock), clock.now());
        engine.active_blocks().next().unwrap().clone()
    }

    #[test]
    fn what_a_timeout_makes_to_be_tried_again() {
        let unknown = Outcome::Unknown { attempts: 1 };
        let failed = Outcome::Failed {
            attempts: 1,
            error: "down".into(),
        };
        for kind in [
            ActionKind::BlockIp,
            ActionKind::RevokeUserTokens,
            ActionKind::RevokeToken,
            ActionKind::RequireStepUp,
            ActionKind::TerminateSessions,
        ] {
            assert!(retried(&unknown, Some(kind)), "{kind:?}");
        }
        // A notification may already have paged someone.
        assert!(!retried(&unknown, Some(ActionKind::Notify)));
        assert!(retried(&failed, Some(ActionKind::Notify)));
        assert!(!retried(
            &Outcome::Applied { attempts: 1 },
            Some(ActionKind::BlockIp)
        ));
    }
}
