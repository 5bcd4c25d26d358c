//! The hot-path revocation check from local memory vs the anchor, a Redis `EXISTS`
//! round trip on loopback, in the same run; and the check at 10k and 1M revocations.
//!
//! cargo bench -p palisade-benches --bench token_blacklist
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use palisade_core_traits::{Timestamp, TokenIdentity};
use palisade_testkit::RedisServer;
use palisade_token_blacklist::{Config, FailurePolicy, MemoryBlacklist, RedisBlacklist};

const EXP: u64 = 4_000_000_000;

fn token(i: u64) -> TokenIdentity {
    TokenIdentity::new("https://idp.example")
        .with_subject(format!("user-{}", i % 50_000))
        .with_jti(format!("{:032x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .with_issued_at(EXP - 1000)
        .with_expires_at(EXP)
}

fn filled(n: u64) -> MemoryBlacklist {
    let bl = MemoryBlacklist::builder()
        .config(Config::default().capacity(NonZeroUsize::new(2_000_000).unwrap()))
        .build()
        .unwrap();
    for i in 0..n {
        bl.revoke_token(&token(i)).unwrap();
    }
    // Some users with watermarks too, as in production.
    for u in 0..1000 {
        bl.revoke_user(
            "https://idp.example",
            &format!("user-{u}"),
            Timestamp::from_unix_secs(EXP - 2000),
        )
        .unwrap();
    }
    bl
}

fn by_size(c: &mut Criterion) {
    let mut g = c.benchmark_group("token_blacklist/check_memory");
    for n in [10_000u64, 1_000_000] {
        let bl = filled(n);
        let hit = token(n / 2);
        let miss = token(n + 7);
        g.bench_with_input(BenchmarkId::new("hit", n), &hit, |b, t| {
            b.iter(|| black_box(bl.check(black_box(t))))
        });
        g.bench_with_input(BenchmarkId::new("miss", n), &miss, |b, t| {
            b.iter(|| black_box(bl.check(black_box(t))))
        });
    }
    g.finish();
}

fn vs_redis(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    let url = server.url();
    let (replica, mut conn) = rt.block_on(async {
        let bl = RedisBlacklist::builder()
            .timeout(Duration::from_secs(5))
            .connect(&url)
            .await
            .unwrap();
        for i in 0..10_000 {
            bl.revoke_token(&token(i)).await.unwrap();
        }
        let conn = redis::Client::open(url.as_str())
            .unwrap()
            .get_connection_manager()
            .await
            .unwrap();
        (bl, conn)
    });
    let miss = token(20_000);
    let mut g = c.benchmark_group("token_blacklist/local_vs_redis");
    g.bench_function("replica_check_closed", |b| {
        b.iter(|| black_box(replica.check(black_box(&miss), FailurePolicy::Closed)))
    });
    g.bench_function("redis_exists_round_trip", |b| {
        b.iter(|| {
            rt.block_on(async {
                let n: i64 = redis::cmd("EXISTS")
                    .arg("palisade:tb:{0000000000000000}:j:1:xjti")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                black_box(n)
            })
        })
    });
    g.finish();
    drop(replica);
    drop(server);
}

criterion_group!(benches, by_size, vs_redis);
criterion_main!(benches);
