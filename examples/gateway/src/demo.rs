//! `--demo`: a bounded, seeded traffic and attack scenario sent to the gateway itself,
//! so the dashboard is alive on first start. It stops by itself.

use std::net::SocketAddr;

/// Starts the scenario in the background.
pub fn spawn(addr: SocketAddr) {
    tokio::spawn(async move {
        tracing::info!(%addr, "demo traffic: not yet scripted");
    });
}
