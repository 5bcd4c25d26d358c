//! Throughput and tail latency of a protected route at 64 connections on loopback, the
//! same load generator against three servers in one run:
//!
//! - `gateway`: `GET /api/me` through the whole request path (request id and span,
//!   client address, deny list, per-address `RateLimitLayer`, jwt-cache `JwtAuth` with
//!   the cache and revocation, per-subject `RateLimitLayer`), limits set high enough
//!   never to refuse;
//! - `bare axum`: a handler answering the same claims, nothing in front;
//! - `anchor`: what most services run today, tower-governor's per-address
//!   `GovernorLayer` and a middleware decoding the ES256 token with jsonwebtoken
//!   (issuer, audience, expiry checked) on every request.
//!
//! The generator keeps one HTTP/1.1 keep-alive connection per task and sends the next
//! request when the previous answer is in (closed loop, like wrk); every answer must be
//! `200`. Servers and generator share the machine: each gets a 2-thread runtime. All
//! three run on mimalloc, the allocator the gateway binary ships with.
//!
//! On a machine of two cores the generator takes CPU from the server it loads, so the
//! throughput ratios move with who is the bottleneck (a fast server shares its cores
//! with a busy generator; the anchor's ES256 leaves it almost two). Each run therefore
//! also reports the server runtime's own CPU time per answered request (user and
//! kernel, every thread of that runtime, from the scheduler's per-thread `schedstat`): the
//! inverse ratio of those is the throughput ratio the servers would show with the same
//! cores each, whoever generates the load. With `LOAD_PIN=1` the server runtime is
//! kept on the first core and the generator on the second: every server then gets
//! exactly one core.
//!
//! `cargo bench -p palisade-gateway --bench load [-- SECONDS CONNECTIONS ROUNDS]`
//! (defaults 8, 64, 2; each round runs every server once, in turn).
//!
//! With `GATEWAY_LOOP=<server>:<n>` (`gateway`, `bare` or `anchor`) it sends `n`
//! requests through that server's router in process (`tower::ServiceExt::oneshot`, no
//! sockets) and nothing else: run it under `valgrind --tool=callgrind` at two `n` and
//! divide the difference to count the instructions of one request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a load tool: fail loudly

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use palisade_core_traits::SystemClock;
use palisade_gateway::server::start;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

#[path = "../tests/common/mod.rs"]
mod common;

/// The gateway binary's allocator (main.rs), here for all three servers alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WARMUP: Duration = Duration::from_secs(2);

/// A 2-thread runtime whose threads are recorded in `threads` (and kept on one core,
/// if `core` is given).
fn runtime(threads: &RuntimeThreads, core: Option<usize>) -> tokio::runtime::Runtime {
    let threads = threads.clone();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(move || {
            if let Some(id) = core {
                assert!(core_affinity::set_for_current(core_affinity::CoreId { id }));
            }
            threads.add_current();
        })
        .enable_all()
        .build()
        .unwrap()
}

/// The threads of a runtime (workers and blocking pool), to read their CPU time.
#[derive(Clone, Default)]
struct RuntimeThreads(Arc<std::sync::Mutex<Vec<String>>>);

impl RuntimeThreads {
    fn add_current(&self) {
        // "<pid>/task/<tid>"
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        let stat = format!("/proc/{}/schedstat", me.display());
        self.0.lock().unwrap().push(stat);
    }

    /// CPU time (user and kernel) of every thread still running, in nanoseconds: the
    /// first field of the scheduler's `schedstat`.
    fn nanos(&self) -> u64 {
        let threads = self.0.lock().unwrap();
        (threads.iter())
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .map(|s| s.split(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    }
}

/// Serves `app` (with the peer address recorded) on an ephemeral loopback port.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// The anchor's state: the gateway's public key and the same checks the gateway makes.
struct Decoder {
    key: DecodingKey,
    validation: Validation,
}

async fn decode_every_request(
    State(d): State<Arc<Decoder>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    match jsonwebtoken::decode::<Value>(token, &d.key, &d.validation) {
        Ok(data) => {
            req.extensions_mut().insert(Arc::new(data.claims));
            next.run(req).await
        }
        Err(_) => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn claims(axum::Extension(c): axum::Extension<Arc<Value>>) -> Json<Value> {
    Json((*c).clone())
}

fn anchor(jwk: &Value, issuer: &str) -> Router {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&["palisade-gateway"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let decoder = Arc::new(Decoder {
        key: DecodingKey::from_jwk(&jwk).unwrap(),
        validation,
    });
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    Router::new()
        .route("/api/me", get(claims))
        .layer(from_fn_with_state(decoder, decode_every_request))
        .layer(GovernorLayer::new(governor))
}

fn bare(body: Value) -> Router {
    let body = Arc::new(body);
    Router::new().route(
        "/api/me",
        get(move || {
            let body = body.clone();
            async move { Json((*body).clone()) }
        }),
    )
}

/// One connection's loop: latencies in microseconds, and answers that were not `200`.
async fn connection(addr: SocketAddr, request: Arc<[u8]>, until: Instant) -> (Vec<u32>, u64) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let (mut latencies, mut errors) = (Vec::with_capacity(100_000), 0u64);
    while Instant::now() < until {
        let sent = Instant::now();
        stream.write_all(&request).await.unwrap();
        buf.clear();
        let (head, length) = loop {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end])
                    .unwrap()
                    .to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .expect("a content-length")
                    .trim()
                    .parse()
                    .unwrap();
                break (end + 4, length);
            }
        };
        while buf.len() < head + length {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
        latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
        if !buf.starts_with(b"HTTP/1.1 200") {
            errors += 1;
        }
    }
    (latencies, errors)
}

/// A function of its own (`--toggle-collect=load::in_process_loop`) so that callgrind
/// can count the requests without the start-up.
#[inline(never)]
fn in_process_loop<S: Served>(rt: &tokio::runtime::Runtime, app: S, token: &str, n: u64) {
    rt.block_on(in_process(app, token, n));
}

/// What the servers are: a router, or the gateway's stack.
trait Served:
    tower::Service<Request, Response = Response, Error = std::convert::Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}
impl<S> Served for S where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// `n` requests through `app` in process, each answered `200` with its body read.
async fn in_process<S: Served>(app: S, token: &str, n: u64) {
    use tower::ServiceExt;
    let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let bearer = format!("Bearer {token}");
    for _ in 0..n {
        let mut req = Request::get("/api/me")
            .header("authorization", &bearer)
            .body(axum::body::Body::empty())
            .unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
    }
}

struct Run {
    rps: f64,
    p50: u32,
    p99: u32,
    errors: u64,
    /// The server runtime's CPU time per answered request, in microseconds.
    cpu_us: f64,
}

fn load(
    client: &tokio::runtime::Runtime,
    server_cpu: &RuntimeThreads,
    addr: SocketAddr,
    token: &str,
    seconds: u64,
    connections: usize,
) -> Run {
    let request: Arc<[u8]> =
        format!("GET /api/me HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\r\n")
            .into_bytes()
            .into();
    client.block_on(async {
        let warm = Instant::now() + WARMUP;
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(addr, request.clone(), warm)))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let start = Instant::now();
        let cpu_start = server_cpu.nanos();
        let until = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(connection(addr, request.clone(), until)))
            .collect();
        let (mut all, mut errors) = (Vec::new(), 0);
        for t in tasks {
            let (l, e) = t.await.unwrap();
            all.extend(l);
            errors += e;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = server_cpu.nanos().saturating_sub(cpu_start);
        all.sort_unstable();
        let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
        Run {
            rps: all.len() as f64 / elapsed,
            p50: at(0.50),
            p99: at(0.99),
            errors,
            cpu_us: cpu as f64 / 1e3 / all.len() as f64,
        }
    })
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(8);
    let connections = usize::try_from(args.get(1).copied().unwrap_or(64)).unwrap();
    let rounds = args.get(2).copied().unwrap_or(2);

    // LOAD_PIN=1: the servers on the first core, the generator on the second.
    let pin = std::env::var("LOAD_PIN").is_ok_and(|v| v == "1");
    let server_cpu = RuntimeThreads::default();
    let server = runtime(&server_cpu, pin.then_some(0));
    let client = runtime(&RuntimeThreads::default(), pin.then_some(1));
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(
        dir.path(),
        &[
            // A million a second: the limiter's finest rate, far above what loopback does.
            "--ip-rate",
            "1000000",
            "--subject-rate",
            "1000000",
            "--log",
            "warn",
        ],
    );
    let issuer = config.issuer.clone();
    let gateway = server
        .block_on(start(config, Arc::new(SystemClock)))
        .unwrap();
    let base = format!("http://{}", gateway.addr);
    let (token, jwk, body) = client.block_on(async {
        let http = reqwest::Client::new();
        let login: Value = http
            .post(format!("{base}/login"))
            .json(&json!({"username": "alice", "password": "alice-demo-password"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["access_token"].as_str().expect("a token").to_owned();
        let jwks: Value = http
            .get(format!("{base}/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let body: Value = http
            .get(format!("{base}/api/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (token, jwks["keys"][0].clone(), body)
    });
    if let Ok(spec) = std::env::var("GATEWAY_LOOP") {
        let (which, n) = spec.split_once(':').expect("GATEWAY_LOOP=<server>:<n>");
        let n = n.parse().unwrap();
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        match which {
            "gateway" => {
                let app = palisade_gateway::server::router(gateway.gateway.clone(), stopped);
                in_process_loop(&server, app, &token, n);
            }
            "bare" => in_process_loop(&server, bare(body), &token, n),
            "anchor" => in_process_loop(&server, anchor(&jwk, &issuer), &token, n),
            other => panic!("GATEWAY_LOOP: no server {other}"),
        }
        return;
    }
    let bare_addr = server.block_on(serve(bare(body)));
    let anchor_addr = server.block_on(serve(anchor(&jwk, &issuer)));
    let sides = [
        ("gateway", gateway.addr),
        ("bare axum", bare_addr),
        ("anchor: tower-governor + jsonwebtoken", anchor_addr),
    ];
    println!(
        "GET /api/me, {connections} connections, {seconds} s per run after {} s warm-up, {rounds} rounds{}",
        WARMUP.as_secs(),
        if pin {
            ", servers on core 0, generator on core 1"
        } else {
            ""
        }
    );
    let mut best = vec![0f64; sides.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    for round in 1..=rounds {
        for (i, (name, addr)) in sides.iter().enumerate() {
            let r = load(&client, &server_cpu, *addr, &token, seconds, connections);
            assert_eq!(r.errors, 0, "{name}: answers other than 200");
            println!(
                "round {round} {name:<40} {:>9.0} req/s  p50 {:>6} µs  p99 {:>6} µs  server CPU {:>6.2} µs/request",
                r.rps, r.p50, r.p99, r.cpu_us
            );
            best[i] = best[i].max(r.rps);
            cpu[i].push(r.cpu_us);
        }
    }
    println!(
        "best of {rounds}: gateway / bare axum = {:.2}, gateway / anchor = {:.2}",
        best[0] / best[1],
        best[0] / best[2]
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let cpu: Vec<f64> = cpu.iter_mut().map(median).collect();
    println!(
        "server CPU per request, median of {rounds}: gateway {:.2} µs, bare axum {:.2} µs, anchor {:.2} µs; \
         at equal CPU: gateway / bare axum = {:.2}, gateway / anchor = {:.2}",
        cpu[0],
        cpu[1],
        cpu[2],
        cpu[1] / cpu[0],
        cpu[2] / cpu[0]
    );
    server.block_on(gateway.shutdown());
}
