//! The dashboard's fan-out: activities published at a steady rate to WebSocket clients
//! signed in as operators, over real sockets (tokio-tungstenite).
//!
//! Reports, per run: activities delivered per client (min and mean, of those
//! published), resyncs (a client that fell behind gets a snapshot instead of the
//! backlog), the delay from `publish` to a client reading the frame (p50, p95, p99,
//! max), and the process's resident memory before the clients connect, and its peak
//! during the run (sampled every 50 ms): memory must not grow with the backlog.
//!
//! `cargo bench -p palisade-gateway --bench fanout [-- RATE CLIENTS SECONDS]`
//! (defaults 1000 activities/s, 50 clients, 10 s). A second run with 0.2 s stalls in
//! every client's reader shows a slow client is resynced, not buffered for.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a load tool: fail loudly

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use palisade_core_traits::Timestamp;
use palisade_gateway::activity::{Activity, LoginResult, Origin, What};
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[path = "../tests/common/mod.rs"]
mod common;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn session(addr: SocketAddr) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .post(format!("http://{addr}/dashboard/login"))
        .form(&[("username", "admin"), ("password", "admin-demo-password")])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

fn activity(i: u64) -> Activity {
    Activity::new(
        Timestamp::from_unix_secs(1_800_000_000),
        Origin {
            ip: Some(format!("192.0.2.{}", i % 250).parse().unwrap()),
            country: Some("FR".into()),
            location: Some((48.85, 2.35)),
            ..Origin::default()
        },
        What::Login {
            user: format!("user{}", i % 1000),
            result: LoginResult::Failure,
            score: Some(0.42),
        },
    )
}

#[derive(Default)]
struct Seen {
    activities: u64,
    resyncs: u64,
    delays_us: Vec<u32>,
}

/// One client: reads until the stop signal; `stall` pauses it every 100 frames.
async fn client(
    addr: SocketAddr,
    cookie: String,
    sent: Arc<Mutex<Vec<Instant>>>,
    stall: Option<Duration>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", format!("http://{addr}").parse().unwrap());
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut seen = Seen::default();
    let mut frames = 0u64;
    loop {
        let m = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let Some(Ok(Message::Text(t))) = m else {
            continue;
        };
        let at = Instant::now();
        frames += 1;
        let v: Value = serde_json::from_str(&t).unwrap();
        match v["type"].as_str() {
            Some("activity") => {
                seen.activities += 1;
                let seq = v["seq"].as_u64().unwrap();
                // seq counts from 1; the publisher recorded its time before publishing.
                if let Some(t0) = sent.lock().unwrap().get((seq - 1) as usize).copied() {
                    let d = at.saturating_duration_since(t0).as_micros();
                    seen.delays_us.push(u32::try_from(d).unwrap_or(u32::MAX));
                }
            }
            Some("snapshot") => seen.resyncs += 1,
            _ => {}
        }
        if let Some(pause) = stall
            && frames.is_multiple_of(100)
        {
            tokio::time::sleep(pause).await;
        }
    }
    seen.resyncs -= 1; // the first snapshot is the connect's, not a resync
    seen
}

async fn run(rate: u64, clients: usize, seconds: u64, stall: Option<Duration>) {
    let common::DashboardServer {
        addr,
        dashboard,
        stop: stop_server,
        ..
    } = common::dashboard_server().await;

    let cookie = session(addr).await;
    let before = rss_kib();
    let sent = Arc::new(Mutex::new(Vec::with_capacity((rate * seconds) as usize)));
    let (stop, stopped) = watch::channel(false);
    let readers: Vec<_> = (0..clients)
        .map(|_| {
            tokio::spawn(client(
                addr,
                cookie.clone(),
                sent.clone(),
                stall,
                stopped.clone(),
            ))
        })
        .collect();
    while dashboard.clients() < clients {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_kib()));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // A steady rate: each millisecond tick publishes what is due by then.
    let total = rate * seconds;
    let start = Instant::now();
    let mut published = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while published < total {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while published < due.min(total) {
            sent.lock().unwrap().push(Instant::now());
            dashboard.publish(activity(published));
            published += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    let mut all: Vec<Seen> = Vec::new();
    for r in readers {
        all.push(r.await.unwrap());
    }
    sampler.abort();
    let _ = stop_server.send(true);
    let mut delays: Vec<u32> = all.iter().flat_map(|s| s.delays_us.clone()).collect();
    delays.sort_unstable();
    let at = |q: f64| delays[((delays.len() as f64 * q) as usize).min(delays.len() - 1)];
    let min = all.iter().map(|s| s.activities).min().unwrap();
    let mean = all.iter().map(|s| s.activities).sum::<u64>() as f64 / clients as f64;
    let resyncs: u64 = all.iter().map(|s| s.resyncs).sum();
    println!(
        "{rate}/s × {seconds} s to {clients} clients{}: delivered per client min {min} / mean {mean:.0} of {total}; resyncs {resyncs}; delay p50 {:.1} ms p95 {:.1} ms p99 {:.1} ms max {:.1} ms; RSS {} → peak {} KiB",
        stall.map_or(String::new(), |d| format!(
            " (readers stall {} ms every 100 frames)",
            d.as_millis()
        )),
        f64::from(at(0.50)) / 1000.0,
        f64::from(at(0.95)) / 1000.0,
        f64::from(at(0.99)) / 1000.0,
        f64::from(*delays.last().unwrap()) / 1000.0,
        before,
        peak.load(std::sync::atomic::Ordering::Relaxed),
    );
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rate = args.first().copied().unwrap_or(1000);
    let clients = usize::try_from(args.get(1).copied().unwrap_or(50)).unwrap();
    let seconds = args.get(2).copied().unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(rate, clients, seconds, None));
    rt.block_on(run(
        rate,
        clients,
        seconds,
        Some(Duration::from_millis(200)),
    ));
}
