//! Memory per revocation (local, counting allocator; Redis, `used_memory` delta and
//! `MEMORY USAGE`), propagation latency over 3 replicas, and resync time. Prints tables.
//!
//! cargo bench -p palisade-benches --bench token_blacklist_redis
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::alloc::System;
use std::time::{Duration, Instant};

use cap::Cap;
use palisade_core_traits::{RevocationStatus, TokenIdentity};
use palisade_testkit::RedisServer;
use palisade_token_blacklist::{FailurePolicy, MemoryBlacklist, RedisBlacklist};

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const EXP: u64 = 4_000_000_000;

/// A realistic token: URL issuer, UUID-sized subject, 32-hex-digit jti.
fn token(i: u64) -> TokenIdentity {
    TokenIdentity::new("https://idp.example.com/")
        .with_subject(format!("{:036x}", i % 50_000))
        .with_jti(format!("{:032x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .with_issued_at(EXP - 1000)
        .with_expires_at(EXP)
}

fn used_memory(server: &RedisServer) -> i64 {
    let info = server.command(&["INFO", "memory"]).unwrap().text();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // Cargo passes --bench; this harness has no options.
    let n: u64 = 100_000;
    let before = ALLOCATOR.allocated();
    let bl = MemoryBlacklist::builder().build().unwrap();
    for i in 0..n {
        bl.revoke_token(&token(i)).unwrap();
    }
    let local = (ALLOCATOR.allocated() - before) as f64 / n as f64;
    drop(bl);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let url = server.url();
    rt.block_on(async {
        let builder = || RedisBlacklist::builder().timeout(Duration::from_secs(10));
        let a = builder().connect(&url).await.unwrap();
        let b = builder().connect(&url).await.unwrap();
        let c = builder().connect(&url).await.unwrap();

        // Propagation: from revoke() returning on A to B and C answering Revoked.
        let rounds = 2_000u64;
        let mut lat = Vec::new();
        let mut from_call = Vec::new();
        for i in 0..rounds {
            let t = token(10_000_000 + i);
            let called = Instant::now();
            a.revoke_token(&t).await.unwrap();
            let t0 = Instant::now();
            let mut pending = vec![&b, &c];
            while !pending.is_empty() {
                pending.retain(|r| {
                    if r.check(&t, FailurePolicy::Open) == RevocationStatus::Revoked {
                        lat.push(t0.elapsed());
                        from_call.push(called.elapsed());
                        false
                    } else {
                        true
                    }
                });
                tokio::task::yield_now().await;
            }
        }
        lat.sort();
        println!("| propagation, A's revoke() returned → B and C refuse ({} samples) | p50 | p99 | max |", lat.len());
        println!("|---|---:|---:|---:|");
        println!(
            "| 3 replicas, loopback redis-server | {:?} | {:?} | {:?} |",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat[lat.len() - 1]
        );
        from_call.sort();
        println!(
            "| same, from A's revoke() being called | {:?} | {:?} | {:?} |",
            percentile(&from_call, 0.5),
            percentile(&from_call, 0.99),
            from_call[from_call.len() - 1]
        );
        drop((a, b, c));

        // Redis memory and resync of n revocations.
        let w = builder().connect(&url).await.unwrap();
        let mem0 = used_memory(&server);
        let mut tasks = Vec::new();
        let w = std::sync::Arc::new(w);
        for part in 0..8u64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                for i in (part..n).step_by(8) {
                    w.revoke_token(&token(i)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let redis_bytes = (used_memory(&server) - mem0) as f64 / n as f64;
        let key = server.command(&["RANDOMKEY"]).unwrap().text();
        let one = server.command(&["MEMORY", "USAGE", &key]).unwrap().text();
        let t0 = Instant::now();
        let fresh = builder().connect(&url).await.unwrap();
        let connect = t0.elapsed();
        assert_eq!(fresh.len() as u64, n + rounds);
        let t0 = Instant::now();
        let (read, repaired) = fresh.resync().await.unwrap();
        let again = t0.elapsed();
        assert_eq!((read as u64, repaired), (n + rounds, 0));
        println!();
        println!("| {n} revocations | bytes/revocation |");
        println!("|---|---:|");
        println!("| local replica (counting allocator) | {local:.0} |");
        println!("| Redis used_memory delta | {redis_bytes:.0} |");
        println!("| Redis MEMORY USAGE of one token key | {one} |");
        println!();
        println!("| resync of {} records | time |", n + rounds);
        println!("|---|---:|");
        println!("| new replica: connect + first resync | {connect:?} |");
        println!("| resync() on a warm replica | {again:?} |");
    });
}
