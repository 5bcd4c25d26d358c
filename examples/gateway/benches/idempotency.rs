//! What an `Idempotency-Key` costs a `POST`: the layer with its records in memory and
//! in Redis (a testkit redis-server on loopback), against the same handler without the
//! layer and, for Redis, against the two raw round trips the layer makes (`SET NX PX`
//! to claim, `SET PX` to store). Every request carries a fresh key (the first run of
//! each key: claim, handler, store).
//!
//! cargo bench -p palisade-gateway --bench idempotency
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{Next, from_fn};
use axum::routing::post;
use criterion::{Criterion, criterion_group, criterion_main};
use palisade_gateway::idempotency::{self, ClientIdentity, Config, Idempotency, Store};
use palisade_gateway::shared::RedisConn;
use palisade_testkit::RedisServer;
use tower::ServiceExt;

fn app(store: Option<Store>) -> Router {
    let app = Router::new().route("/pay", post(|body: String| async move { body }));
    let app = match store {
        Some(store) => {
            let idem = Idempotency::new(Config::default(), store, |_, _| {});
            app.layer(idempotency::DedupLayer(idem))
        }
        None => app,
    };
    app.layer(from_fn(|mut req: Request, next: Next| async move {
        req.extensions_mut()
            .insert(ClientIdentity("ip 192.0.2.1".into()));
        next.run(req).await
    }))
}

fn request(n: u64) -> Request {
    Request::post("/pay")
        .header("idempotency-key", format!("k-{n}"))
        .body(Body::from("{\"amount\":5}"))
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let conn = rt
        .block_on(RedisConn::connect(
            &palisade_gateway::shared::RedisAccess::new(vec![server.url()], None, &[]).unwrap(),
        ))
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("idempotency");
    g.measurement_time(Duration::from_secs(5));
    let cases = [
        ("no layer", app(None)),
        ("memory", app(Some(Store::Memory))),
        (
            "redis",
            app(Some(Store::Redis {
                conn: conn.clone(),
                prefix: "bench:idem".into(),
            })),
        ),
    ];
    for (name, app) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                let (app, n) = (app.clone(), next.fetch_add(1, Ordering::Relaxed));
                rt.block_on(async move {
                    let r = app.oneshot(request(n)).await.unwrap();
                    assert!(r.status().is_success());
                })
            })
        });
    }
    // The anchor for the Redis store: its two round trips as raw commands.
    let raw = conn.clone();
    g.bench_function("raw SET NX + SET", |b| {
        b.iter(|| {
            let (conn, n) = (raw.clone(), next.fetch_add(1, Ordering::Relaxed));
            rt.block_on(async move {
                let key = format!("bench:raw:{n}");
                let _: Option<String> = conn
                    .query(
                        palisade_token_blacklist::redis::cmd("SET")
                            .arg(&key)
                            .arg("running")
                            .arg("NX")
                            .arg("PX")
                            .arg(30_000),
                    )
                    .await
                    .unwrap();
                let _: String = conn
                    .query(
                        palisade_token_blacklist::redis::cmd("SET")
                            .arg(&key)
                            .arg("done")
                            .arg("PX")
                            .arg(86_400_000),
                    )
                    .await
                    .unwrap();
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
