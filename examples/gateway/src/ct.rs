//! Certificate Transparency in the background: ct-monitor follows the configured logs
//! (a v3 log list, or the bundled offline test logs), and every certificate for a
//! watched name that nobody authorized, and every log that contradicts itself, becomes
//! a security event on the incident bus and a CT alert on the dashboard.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use palisade_core_traits::Clock;
use palisade_ct_monitor::testlog::{Protocol, TestLog};
use palisade_ct_monitor::{Authorizer, Event, Health, LogList, Monitor, Watchlist};

use crate::activity::{Activity, Origin, What};
use crate::config::Config;
use crate::dashboard::Dashboard;
use crate::response::Bus;
use crate::service::StartError;

/// Errors of the CT part.
fn part<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> StartError {
    crate::service::part("ct-monitor")(e)
}

/// What `--demo` watches in the test logs when `--ct-watch` is not given: two names
/// present in the bundled entries, one of whose keys counts as the gateway's own.
const DEMO_WATCH: &[&str] = &[".websrc.fr", ".herokuappdev.com"];
/// The demo's own key: the SubjectPublicKeyInfo SHA-256 of test-log entry 413.
const DEMO_OWN_SPKI: &str = "4febbf3d615875f7b5209e78d5f17d966d0f742469ac7504779ba0c83a6801b3";
/// Entries served by each bundled test log.
const TEST_LOG_SIZE: u64 = 1024;
/// How often the bundled test logs sign a fresh head (the monitor finds a head older
/// than its log's MMD, 24 h, stale).
const TEST_LOG_RESIGN: std::time::Duration = std::time::Duration::from_secs(3600);

/// Each followed log's last health, for `/readyz`.
#[derive(Debug, Default)]
pub struct CtStatus {
    logs: Mutex<BTreeMap<String, String>>,
}

impl CtStatus {
    /// Log name → `starting`, `ok`, `failing: …` or `stopped: …`.
    pub fn logs(&self) -> BTreeMap<String, String> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, log: &str, health: String) {
        self.logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(log.to_owned(), health);
    }
}

/// Starts the monitor the configuration asks for (none: `Ok(None)`), and the task that
/// turns its events into security events and dashboard alerts.
pub async fn start(
    config: &Config,
    clock: Arc<dyn Clock>,
    bus: Bus,
    dashboard: Arc<Dashboard>,
) -> Result<Option<(Arc<CtStatus>, tokio::task::JoinHandle<()>)>, StartError> {
    let test_logs = config.ct_test_logs || config.demo;
    if !test_logs && config.ct_log_list.is_none() {
        return Ok(None);
    }
    let mut watch: Vec<String> = config.ct_watch.clone();
    let mut authorizer = Authorizer::new();
    if watch.is_empty() {
        if !test_logs {
            return Err(part(
                "--ct-log-list needs --ct-watch: which names are ours?",
            ));
        }
        watch = DEMO_WATCH.iter().map(|s| (*s).to_owned()).collect();
        let mut spki = [0u8; 32];
        hex::decode_to_slice(DEMO_OWN_SPKI, &mut spki).map_err(part)?;
        authorizer.allow_spki_hash(spki);
    }
    let watchlist = Watchlist::parse(&watch.join("\n")).map_err(part)?;
    let mut builder = Monitor::builder()
        .watchlist(watchlist)
        .authorizer(authorizer)
        .clock(clock.clone());
    let mut servers = Vec::new();
    if test_logs {
        for (protocol, name) in [
            (Protocol::Rfc6962, "test-rfc6962"),
            (Protocol::StaticCt, "test-static-ct"),
        ] {
            let log = TestLog::start(protocol, TEST_LOG_SIZE)
                .await
                .map_err(part)?;
            // Heads stamped on the gateway's clock: the monitor finds a head older
            // than the log's MMD stale, and tests run the gateway on a ManualClock.
            log.set_clock(clock.clone());
            log.set_size(TEST_LOG_SIZE).map_err(part)?;
            let mut cfg = log.log_config();
            cfg.name = name.into();
            builder = builder.log(cfg);
            servers.push(log);
        }
    }
    if let Some(path) = &config.ct_log_list {
        let bytes =
            std::fs::read(path).map_err(|e| part(format!("log list {}: {e}", path.display())))?;
        let list = LogList::from_json(&bytes).map_err(part)?;
        for p in &list.problems {
            tracing::warn!(problem = %p, "CT log list: entry skipped");
        }
        builder = builder.log_list(&list);
    }
    let mut monitor = builder.spawn().map_err(part)?;
    let status = Arc::new(CtStatus::default());
    let shown = status.clone();
    let task = tokio::spawn(async move {
        // The test logs serve as long as the task runs, and sign a fresh head of the
        // same tree every hour, as a live log does within its MMD (24 h).
        let mut resign = tokio::time::interval(TEST_LOG_RESIGN);
        resign.tick().await;
        loop {
            tokio::select! {
                event = monitor.next_event() => match event {
                    Some(event) => {
                        handle(&monitor, &event, &shown, &bus, &dashboard, clock.as_ref()).await;
                    }
                    None => break,
                },
                _ = resign.tick(), if !servers.is_empty() => {
                    for log in &servers {
                        if let Err(e) = log.set_size(TEST_LOG_SIZE) {
                            tracing::warn!(error = %e, "CT test log: no fresh head");
                        }
                    }
                }
            }
        }
    });
    Ok(Some((status, task)))
}

async fn handle(
    monitor: &Monitor,
    event: &Event,
    status: &CtStatus,
    bus: &Bus,
    dashboard: &Dashboard,
    clock: &dyn Clock,
) {
    let alert = |domain: String, summary: String| {
        dashboard.publish(Activity::new(
            clock.now(),
            Origin::default(),
            What::CtAlert { domain, summary },
        ));
    };
    match event {
        Event::Health { log, health } => {
            let h = match health {
                Health::Ok => "ok".to_owned(),
                Health::Failing { error } => format!("failing: {error}"),
                Health::Stopped { reason } => format!("stopped: {reason}"),
                other => format!("{other:?}"),
            };
            status.set(log, h);
        }
        Event::Discovered {
            log,
            index,
            info,
            matches,
            ..
        } => {
            for m in matches {
                let kind = if info.is_precert {
                    "precertificate"
                } else {
                    "certificate"
                };
                alert(
                    m.item.to_string(),
                    format!("unauthorized {kind} for {} in {log} #{index}", m.identifier),
                );
            }
        }
        Event::Malformed {
            log, index, reason, ..
        } => alert(
            "*".into(),
            format!("malformed entry {log} #{index}: {reason}"),
        ),
        Event::LogMisbehaved(m) => {
            let mut evidence = format!("{:?}", m.evidence);
            evidence.truncate(evidence.find(" {").unwrap_or(evidence.len()));
            alert(
                "*".into(),
                format!(
                    "log {} misbehaved ({evidence}); it is no longer followed",
                    m.log
                ),
            );
        }
        _ => {}
    }
    match monitor.security_event(event) {
        Ok(Some(sec)) => bus.publish(sec).await,
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "a CT event could not become a security event"),
    }
}
