//! palisade-ratelimit on Redis vs a bare redis-rs loop calling the same script over
//! the same connection type, and the connection-type choice (ConnectionManager, a
//! multiplexed connection, vs a deadpool-redis pool that recycles with UNWATCH+PING).
//! Prints markdown tables for docs/ratelimit.md.
//!
//! cargo bench -p palisade-benches --bench ratelimit_redis
//! (starts its own redis-server through palisade-testkit; RATELIMIT_BENCH_SECS sets
//! the seconds per measurement, default 2)
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_ratelimit::{Policy, Quota, RedisLimiter, nz};
use palisade_testkit::RedisServer;

const CHECK_SCRIPT: &str = include_str!("../crates/ratelimit/src/check.lua");
const KEYS: usize = 1_000;

fn secs() -> Duration {
    let s = std::env::var("RATELIMIT_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

struct Run {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

/// Runs `in_flight` tasks calling `op(i)` until the deadline; returns throughput and
/// latency percentiles.
async fn drive<F, Fut>(in_flight: usize, op: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    // Warm up (connections, script cache, allocator) before measuring.
    let warm_until = Instant::now() + Duration::from_millis(200);
    let mut i = 0;
    while Instant::now() < warm_until {
        op(i % KEYS).await;
        i += 1;
    }
    let deadline = Instant::now() + secs();
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut i = t * 101;
                while Instant::now() < deadline {
                    let s = Instant::now();
                    op(i % KEYS).await;
                    lat.push(s.elapsed().as_nanos() as u64);
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1_000.0;
    Run {
        per_sec: all.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// EVALSHA `usec_per_call` and call counts from INFO commandstats.
fn commandstats(server: &RedisServer) -> HashMap<String, (u64, f64)> {
    let text = server.command(&["INFO", "commandstats"]).unwrap().text();
    text.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let field = |f: &str| rest.split(',').find_map(|kv| kv.strip_prefix(f));
            Some((
                name.to_owned(),
                (
                    field("calls=")?.parse().ok()?,
                    field("usec_per_call=")?.parse().ok()?,
                ),
            ))
        })
        .collect()
}

/// The bare loop's epoch key and id (`main` creates it, as `connect` does).
const BARE_EPOCH: &str = "bare:!epoch";
const BARE_EPOCH_ID: u64 = 1;

/// The script's arguments as the limiter sends them: Redis TIME, the cost, the epoch
/// id known, an id for a new epoch, Closed, then the policy.
fn args(cost: u64, quota: &Quota) -> Vec<u64> {
    let interval_us = quota.emission_interval().as_micros() as u64;
    vec![
        0,
        cost,
        BARE_EPOCH_ID,
        BARE_EPOCH_ID + 1,
        1,
        interval_us,
        u64::from(quota.burst()),
    ]
}

fn keys_for(i: usize) -> [String; 3] {
    [
        format!("bare:{{k{i}}}:!block"),
        BARE_EPOCH.to_owned(),
        format!("bare:{{k{i}}}:p"),
    ]
}

/// The bare redis-rs call: the same script, keys and arguments the limiter sends.
async fn bare_call(
    script: &redis::Script,
    conn: &mut impl redis::aio::ConnectionLike,
    i: usize,
    args: &[u64],
) {
    let mut inv = script.prepare_invoke();
    inv.key(&keys_for(i)[..]).arg(args);
    let _: Vec<i64> = inv.invoke_async(conn).await.unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = RedisServer::start();
    let url = server.url();
    // Generous quota: nearly every check is admitted and writes, the common case.
    let quota = Quota::new(nz!(1_000_000), nz!(1_000_000), Duration::from_secs(1)).unwrap();
    let ours = Arc::new(
        RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()])
            .timeout(Duration::from_secs(1))
            .connect(&url)
            .await
            .unwrap(),
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let manager = client.get_connection_manager().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(BARE_EPOCH)
        .arg(format!("{BARE_EPOCH_ID} 0"))
        .query_async(&mut manager.clone())
        .await
        .unwrap();
    let multiplexed = client.get_multiplexed_async_connection().await.unwrap();
    let script = Arc::new(redis::Script::new(CHECK_SCRIPT));
    let pool = deadpool_redis::Config::from_url(url.as_str())
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let a = Arc::new(args(1, &quota));

    println!(
        "## Redis checks ({}s per cell, 2 tokio workers, loopback)\n",
        secs().as_secs_f64()
    );
    println!(
        "| in flight | palisade checks/s | p50 µs | p99 µs | bare redis-rs (ConnectionManager) checks/s | p50 µs | p99 µs | overhead (throughput) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for in_flight in [1usize, 16, 64] {
        let l = ours.clone();
        let o = drive(in_flight, move |i| {
            let l = l.clone();
            async move {
                l.check(&format!("k{i}"), 1).await.unwrap();
            }
        })
        .await;
        let (s, m, a2) = (script.clone(), manager.clone(), a.clone());
        let b = drive(in_flight, move |i| {
            let (s, mut m, a2) = (s.clone(), m.clone(), a2.clone());
            async move { bare_call(&s, &mut m, i, &a2).await }
        })
        .await;
        println!(
            "| {in_flight} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:+.1}% |",
            o.per_sec,
            o.p50_us,
            o.p99_us,
            b.per_sec,
            b.p50_us,
            b.p99_us,
            (b.per_sec / o.per_sec - 1.0) * 100.0
        );
    }

    println!("\n## Connection types, bare script call\n");
    println!(
        "| in flight | ConnectionManager checks/s | multiplexed checks/s | deadpool-redis checks/s | deadpool extra commands per check |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for in_flight in [1usize, 16, 64] {
        let (s, m, a2) = (script.clone(), manager.clone(), a.clone());
        let cm = drive(in_flight, move |i| {
            let (s, mut m, a2) = (s.clone(), m.clone(), a2.clone());
            async move { bare_call(&s, &mut m, i, &a2).await }
        })
        .await;
        let (s, m, a2) = (script.clone(), multiplexed.clone(), a.clone());
        let mx = drive(in_flight, move |i| {
            let (s, mut m, a2) = (s.clone(), m.clone(), a2.clone());
            async move { bare_call(&s, &mut m, i, &a2).await }
        })
        .await;
        let before = commandstats(&server);
        let (s, p, a2) = (script.clone(), pool.clone(), a.clone());
        let dp = drive(in_flight, move |i| {
            let (s, p, a2) = (s.clone(), p.clone(), a2.clone());
            async move {
                let mut conn = p.get().await.unwrap();
                bare_call(&s, &mut conn, i, &a2).await;
            }
        })
        .await;
        let after = commandstats(&server);
        let delta = |c: &str| after.get(c).map_or(0, |v| v.0) - before.get(c).map_or(0, |v| v.0);
        let extra = (delta("ping") + delta("unwatch")) as f64 / delta("evalsha").max(1) as f64;
        println!(
            "| {in_flight} | {:.0} | {:.0} | {:.0} | {extra:.2} |",
            cm.per_sec, mx.per_sec, dp.per_sec
        );
    }

    let stats = commandstats(&server);
    println!("\n## Server cost\n");
    println!(
        "EVALSHA usec_per_call over the whole run: {:.2} µs ({} calls)",
        stats["evalsha"].1, stats["evalsha"].0
    );

    println!(
        "\n## Local deny cache: 64 in flight hammering one denied key for {}s\n",
        secs().as_secs_f64()
    );
    println!("| deny cache | checks/s | Redis calls | Redis calls per 1000 checks |");
    println!("|---|---:|---:|---:|");
    let tight = Quota::new(nz!(1), nz!(1), Duration::from_secs(1)).unwrap();
    for cache in [0usize, 100_000] {
        let l = Arc::new(
            RedisLimiter::builder(vec![Policy::new("p", tight).unwrap()])
                .prefix(&format!("deny{cache}"))
                .deny_cache_keys(cache)
                .timeout(Duration::from_secs(1))
                .connect(&url)
                .await
                .unwrap(),
        );
        let l2 = l.clone();
        let run = drive(64, move |_| {
            let l = l2.clone();
            async move {
                l.check("attacker", 1).await.unwrap();
            }
        })
        .await;
        let s = l.stats();
        let checks = s.redis_calls + s.local_denied;
        println!(
            "| {} | {:.0} | {} | {:.2} |",
            if cache > 0 { "on" } else { "off" },
            run.per_sec,
            s.redis_calls,
            s.redis_calls as f64 * 1000.0 / checks as f64
        );
    }
}
