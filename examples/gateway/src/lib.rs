//! Palisade's reference auth service (`palisade-gateway`): every Palisade crate
//! composed into one service, with its live security dashboard. See
//! `docs/gateway.md`; run it with `cargo run -p palisade-gateway`.
#![forbid(unsafe_code)]

pub mod activity;
pub mod admin;
pub mod app;
pub mod audit;
pub mod config;
pub mod ct;
pub mod dashboard;
pub mod demo;
pub mod http;
pub mod idempotency;
pub mod incident;
pub mod intel;
pub mod metrics;
pub mod regions;
pub mod response;
pub mod server;
pub mod service;
pub mod shared;
pub mod users;
