//! One request through an axum router rate-limited per client address (the allowed
//! path), criterion, one run:
//!
//! - `palisade`: `RateLimitLayer` with one policy, `KeySource::ClientIp` (no trusted
//!   proxies), a `KeyedLimiter<HttpKey>`;
//! - `tower_governor`: tower-governor 0.8's `GovernorLayer` with `PeerIpKeyExtractor`
//!   (governor 0.10 underneath), default middleware (no headers on allowed responses);
//! - `palisade_fields`: the same with `fields_on_allowed` (`RateLimit-Policy` and
//!   `RateLimit` on every allowed response), what the option costs;
//! - `tower_governor_headers`: tower-governor with `use_headers()` (its
//!   `x-ratelimit-*` fields on every allowed response), the anchor for the above;
//! - `no_limit`: the same route without a limiter (the router's own floor).
//!
//! Same quota on both (burst 10^9, one unit back per microsecond: never refuses here),
//! same 1,024 client addresses in turn, each request built the same way
//! (`ConnectInfo<SocketAddr>` in its extensions) and run through
//! `tower::ServiceExt::oneshot`. docs/ratelimit.md reports the ratio.
//!
//! cargo bench -p palisade-benches --bench ratelimit_layer
//!
//! Instructions per request (repeatable on a loaded machine, unlike wall time): run
//! the bench binary with `RATELIMIT_LAYER_LOOP=<router>:<n>` (a name above)
//! under `valgrind --tool=callgrind` for two `n`; see docs/ratelimit.md.
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use criterion::{Criterion, criterion_group};
use palisade_core_traits::TrustedProxies;
use palisade_ratelimit::{KeySource, KeyedLimiter, Quota, RateLimitLayer, RateLimitPolicy, nz};
use tower::ServiceExt;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

const BURST: u32 = 1_000_000_000;
const CLIENTS: u32 = 1_024;

fn route() -> Router {
    Router::new().route("/", get(|| async { "ok" }))
}

fn palisade_layer() -> RateLimitLayer<KeyedLimiter<palisade_ratelimit::HttpKey>> {
    let quota = Quota::new(nz!(BURST), nz!(1), Duration::from_micros(1)).unwrap();
    let policy = RateLimitPolicy::new(
        "per-ip",
        &quota,
        Arc::new(KeyedLimiter::new(quota)),
        KeySource::ClientIp(TrustedProxies::none()),
    )
    .unwrap();
    RateLimitLayer::new(vec![policy]).unwrap()
}

fn palisade() -> Router {
    route().layer(palisade_layer())
}

fn palisade_fields() -> Router {
    route().layer(palisade_layer().fields_on_allowed())
}

fn tower_governor() -> Router {
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1_000)
        .burst_size(BURST)
        .finish()
        .unwrap();
    route().layer(GovernorLayer::new(config))
}

fn tower_governor_headers() -> Router {
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1_000)
        .burst_size(BURST)
        .use_headers()
        .finish()
        .unwrap();
    route().layer(GovernorLayer::new(config))
}

fn request(i: u32) -> Request<Body> {
    let ip = IpAddr::V4(Ipv4Addr::from(0xC633_6400 + (i % CLIENTS))); // 198.51.100.0/22
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40_000)));
    req
}

fn per_request(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("ratelimit_layer");
    for (name, router) in [
        ("palisade", palisade()),
        ("tower_governor", tower_governor()),
        ("palisade_fields", palisade_fields()),
        ("tower_governor_headers", tower_governor_headers()),
        ("no_limit", route()),
    ] {
        for i in 0..CLIENTS {
            let r = rt.block_on(router.clone().oneshot(request(i))).unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            let fields = r.headers().contains_key("ratelimit")
                || r.headers().contains_key("x-ratelimit-remaining");
            assert_eq!(
                fields,
                name.ends_with("fields") || name.ends_with("headers"),
                "{name}"
            );
        }
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let r = router.clone().oneshot(request(i as u32)).await.unwrap();
                        std::hint::black_box(r);
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = per_request
}

/// `RATELIMIT_LAYER_LOOP=<router>:<n>` runs `n` requests through one router and
/// nothing else, for an instruction count (callgrind) that criterion's own work does
/// not blur: the difference between two `n` is the cost of the extra requests.
fn profile_loop(spec: &str) {
    let (name, n) = spec.split_once(':').expect("<router>:<n>");
    let n: u32 = n.parse().expect("a request count");
    let router = match name {
        "palisade" => palisade(),
        "tower_governor" => tower_governor(),
        "palisade_fields" => palisade_fields(),
        "tower_governor_headers" => tower_governor_headers(),
        "no_limit" => route(),
        other => panic!("no router {other:?}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..n {
            let r = router.clone().oneshot(request(i)).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    });
}

fn main() {
    match std::env::var("RATELIMIT_LAYER_LOOP") {
        Ok(spec) => profile_loop(&spec),
        Err(_) => {
            benches();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
