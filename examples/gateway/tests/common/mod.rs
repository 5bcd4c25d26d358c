//! What the gateway's tests and benches share: a gateway's configuration on a loopback
//! port, and the dashboard's routes served alone.
//!
//! Every file in `tests/` and `benches/` is its own crate and takes this module with
//! `mod common;` (tests) or `#[path = "../tests/common/mod.rs"] mod common;` (benches).
//! None uses all of it, so each item allows `dead_code`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use clap::Parser;
use palisade_core_traits::{ManualClock, Timestamp};
use palisade_gateway::admin::{AdminState, Sessions};
use palisade_gateway::app::admin_routes;
use palisade_gateway::config::Config;
use palisade_gateway::dashboard::Dashboard;
use palisade_gateway::users::Users;
use tokio::sync::watch;

/// The gateway's configuration with `--listen 127.0.0.1:0 --state-dir <state_dir>`,
/// then `extra` (more flags, as on the command line). Panics if clap refuses them.
///
/// The caller keeps `state_dir` alive (usually a `tempfile::TempDir`) for as long as
/// the gateway runs, and may put files there first (a certificate, a feed), or start
/// again on the same state.
#[allow(dead_code, reason = "the dashboard-only crates do not start a gateway")]
pub(crate) fn config(state_dir: &Path, extra: &[&str]) -> Config {
    let state = state_dir.display().to_string();
    let mut args = vec![
        "palisade-gateway",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        &state,
    ];
    args.extend_from_slice(extra);
    Config::try_parse_from(args).unwrap()
}

/// Waits until the gateway at `addr` is ready (`/readyz` answers `200`; with
/// `--redis`, once its revocation replica is proven in sync, before which tokens are
/// refused), for up to 10 s; returns the last `/readyz` body.
#[allow(dead_code, reason = "only the crates that run a fleet use it")]
pub(crate) async fn ready(addr: SocketAddr) -> serde_json::Value {
    let http = reqwest::Client::new();
    let mut ready = serde_json::Value::Null;
    for _ in 0..100 {
        let r = http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .unwrap();
        let ok = r.status() == reqwest::StatusCode::OK;
        ready = r.json().await.unwrap();
        if ok {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ready
}

/// The dashboard's routes (`admin_routes`: sign-in, pages, WebSocket) alone, on a
/// loopback port, with the demo users, a manual clock and no TLS.
#[allow(dead_code, reason = "only the dashboard crates use it")]
pub(crate) struct DashboardServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// What its WebSocket clients are sent.
    pub(crate) dashboard: Arc<Dashboard>,
    /// Sending `true` (or dropping it) closes the WebSockets.
    pub(crate) stop: watch::Sender<bool>,
    /// The sessions' clock.
    pub(crate) clock: Arc<ManualClock>,
}

/// Starts a [`DashboardServer`] on the current runtime (it serves until the runtime
/// ends).
#[allow(dead_code, reason = "only the dashboard crates use it")]
pub(crate) async fn dashboard_server() -> DashboardServer {
    dashboard_server_at(None).await
}

/// A [`DashboardServer`] whose browsers come from `public_origin` (`--public-origin`:
/// behind a proxy that terminates TLS).
#[allow(dead_code, reason = "only the dashboard crates use it")]
pub(crate) async fn dashboard_server_at(public_origin: Option<&str>) -> DashboardServer {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let dashboard = Arc::new(Dashboard::default());
    let (stop, shutdown) = watch::channel(false);
    let (burst, rate, period) = palisade_gateway::service::ACCOUNT_QUOTA;
    let quota = palisade_ratelimit::Quota::new(burst, rate, period).unwrap();
    let limit_clock: Arc<dyn palisade_core_traits::Clock> = clock.clone();
    let limiter = palisade_ratelimit::KeyedLimiter::with_clock(quota, limit_clock);
    let state = AdminState {
        users: Arc::new(Users::demo()),
        account_limit: palisade_gateway::shared::Limit::Memory(Arc::new(limiter)),
        sessions: Arc::new(Sessions::new(clock.clone())),
        dashboard: dashboard.clone(),
        shutdown,
        tls: false,
        public_origin: public_origin.map(str::to_owned),
        gateway: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, admin_routes(state)).await });
    DashboardServer {
        addr,
        dashboard,
        stop,
        clock,
    }
}
