//! `/metrics` in the Prometheus text format: everything the crates emit through the
//! `metrics` facade (their `metrics` features), and the gateway's own counters
//! (`palisade_gateway_*`).

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::dashboard::Dashboard;

/// The process's recorder: one per process, as the `metrics` facade has one global
/// recorder (a second gateway in the same process shares it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding application's):
            // then ours only renders what is recorded through it.
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder is already installed; /metrics shows only the gateway's counters");
            }
            handle
        })
        .clone()
}

/// The gateway's counters, named `palisade_gateway_<what>_total`.
fn export_dashboard(d: &Dashboard) {
    let c = d.counters();
    for (name, value) in [
        (
            "palisade_gateway_logins_success_total",
            c.login_success + c.step_up_passed,
        ),
        (
            "palisade_gateway_logins_failure_total",
            c.login_failure + c.step_up_failed,
        ),
        ("palisade_gateway_logins_step_up_total", c.login_step_up),
        ("palisade_gateway_logins_denied_total", c.login_denied),
        ("palisade_gateway_rate_limited_total", c.rate_limited),
        ("palisade_gateway_blocked_total", c.blocked),
        ("palisade_gateway_intel_hits_total", c.intel_hits),
        ("palisade_gateway_revocations_total", c.revocations),
        ("palisade_gateway_idempotent_replays_total", c.idem_replay),
        (
            "palisade_gateway_coalesced_requests_total",
            c.idem_coalesced,
        ),
        ("palisade_gateway_detections_total", c.detections),
        ("palisade_gateway_actions_total", c.actions),
        ("palisade_gateway_ct_alerts_total", c.ct_alerts),
    ] {
        metrics::counter!(name).absolute(value);
    }
    metrics::gauge!("palisade_gateway_dashboard_clients").set(d.clients() as f64);
}

/// `GET /metrics`.
pub async fn render(State(dashboard): State<Arc<Dashboard>>) -> impl IntoResponse {
    let handle = handle();
    export_dashboard(&dashboard);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// The routes requests are counted by (`route` label).
pub const ROUTES: [&str; 5] = ["login", "step_up", "logout", "api", "other"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Counts one answered request (the `/metrics` series the autoscaler reads). The
/// counters are registered once (after the recorder): looking one up by its labels
/// on every request cost about 800 instructions.
pub fn count_request(route: &'static str, status: u16) {
    static COUNTERS: OnceLock<Vec<metrics::Counter>> = OnceLock::new();
    let counters = COUNTERS.get_or_init(|| {
        let _ = handle();
        (ROUTES.iter())
            .flat_map(|r| CLASSES.iter().map(move |c| (r, c)))
            .map(|(&route, &class)| {
                metrics::counter!("palisade_gateway_requests_total", "route" => route, "status" => class)
            })
            .collect()
    });
    // A WebSocket upgrade is `101`, no server error.
    let class = match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    };
    let route = ROUTES
        .iter()
        .position(|r| *r == route)
        .unwrap_or(ROUTES.len() - 1);
    counters[route * CLASSES.len() + class].increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_websocket_upgrade_is_no_server_error() {
        count_request("other", 101);
        let text = handle().render();
        let series = |class: &str| {
            format!("palisade_gateway_requests_total{{route=\"other\",status=\"{class}\"}} 1")
        };
        assert!(text.contains(&series("1xx")), "{text}");
        assert!(!text.contains(&series("5xx")), "{text}");
    }
}
