//! Incident response: every decision of the gateway that is a security event goes on
//! one bounded bus; one task correlates it into an incident, plans the playbooks'
//! response, executes it through the crates' traits, writes the OCSF audit, and shows
//! each step (with the playbook's explanation) on the dashboard.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{Clock, SecurityEvent, Severity};
use palisade_playbooks::{AuditLog, Engine, Executor, Outcome, Plan, Verdict};
use tokio::sync::mpsc;

use crate::activity::{Activity, Origin, What};
use crate::dashboard::Dashboard;
use crate::incident::{ActionLine, Correlator};

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
    /// Groups events into incidents.
    pub correlator: Correlator,
    /// Where operators watch.
    pub dashboard: Arc<Dashboard>,
    /// Time for planning and expiry.
    pub clock: Arc<dyn Clock>,
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
        let now = self.clock.now();
        let plan = self.engine.evaluate(&event, now);
        let outcomes = self.executor.execute(&plan).await;
        self.show_plan(incident.id, &plan, &outcomes, origin);
        if let Err(e) = self.audit.record_plan(&plan, &outcomes) {
            tracing::error!(error = %e, "audit log write failed");
        }
    }

    fn show_plan(
        &mut self,
        incident: u64,
        plan: &Plan,
        outcomes: &[(u64, Outcome)],
        origin: Origin,
    ) {
        let mut last = None;
        for step in &plan.steps {
            let outcome = step
                .decision
                .and_then(|id| outcomes.iter().find(|(d, _)| *d == id))
                .map(|(_, o)| outcome_text(o));
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
            let outcome = self.executor.revert(&decision).await;
            if let Err(e) = self.audit.record_expiry(now, &decision, outcome) {
                tracing::error!(error = %e, "audit log write failed");
            }
        }
    }

    /// Runs until the bus closes: events as they come, expiry every `tick`.
    pub async fn run(mut self, mut rx: mpsc::Receiver<SecurityEvent>, tick: Duration) -> Self {
        let mut timer = tokio::time::interval(tick);
        loop {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => return self,
                },
                _ = timer.tick() => self.expire().await,
            }
        }
    }
}
