//! `palisade-gateway`: see `docs/gateway.md`.
#![forbid(unsafe_code)]

use std::sync::Arc;

use clap::Parser;
use palisade_core_traits::SystemClock;
use palisade_gateway::config::Config;
use palisade_gateway::users::DEMO_ACCOUNTS;

/// mimalloc: every layer of the request path allocates small, short-lived objects;
/// with glibc's malloc a protected request spent about 31 % of its instructions in
/// malloc/free, and throughput was about 25 % lower (docs/gateway.md, "Measured").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .init();
    let demo = config.demo;
    let running = match palisade_gateway::server::start(config, Arc::new(SystemClock)).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("palisade-gateway: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    eprintln!("palisade-gateway on http://{}/", running.addr);
    eprintln!("demo accounts (demo only; a real service has none):");
    for (user, password, _, role) in DEMO_ACCOUNTS {
        eprintln!("  {user:<6} {password:<22} {role:?}");
    }
    if demo {
        palisade_gateway::demo::spawn(running.addr);
    }
    shutdown_signal().await;
    eprintln!("palisade-gateway: draining");
    running.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
