//! The Redis limiter against real redis-server processes and a real 3-node cluster.
//! Unit tests (not `tests/`) so they can pass a controlled `now` into the script;
//! production code always passes 0, which makes the script read Redis `TIME`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core_traits::{Clock, IpBlocker, ManualClock, Timestamp};
use palisade_testkit::{RedisCluster, RedisServer, Reply};
use proptest::prelude::*;

use super::*;

const START_MICROS: u64 = 1_800_000_000_000_000;

fn manual_clock() -> ManualClock {
    ManualClock::new(Timestamp::from_unix_micros(START_MICROS))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `cmdstat_<name>` call counts from `INFO commandstats`.
fn command_calls(server: &RedisServer) -> HashMap<String, u64> {
    let text = server.command(&["INFO", "commandstats"]).unwrap().text();
    text.lines()
        .filter_map(|l| l.strip_prefix("cmdstat_"))
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Tests that are not about outages use a long timeout, so a loaded CI machine can
/// never turn a slow answer into a failure-policy decision.
const PATIENT: Duration = Duration::from_secs(5);

async fn limiter(url: &str, policies: Vec<Policy>) -> RedisLimiter {
    RedisLimiter::builder(policies)
        .unwrap()
        .timeout(PATIENT)
        .connect(url)
        .await
        .unwrap()
}

fn policy(name: &str, burst: u32, rate: u32, period: Duration) -> Policy {
    Policy::new(name, Quota::new(burst, rate, period).unwrap()).unwrap()
}

#[tokio::test]
async fn each_check_is_exactly_one_script_call() {
    let server = RedisServer::start();
    let l = limiter(
        &server.url(),
        vec![policy("sec", 10, 10, Duration::from_secs(1))],
    )
    .await;
    let loaded = command_calls(&server);
    assert_eq!(
        loaded.get("script|load").copied(),
        Some(2),
        "both scripts loaded at connect"
    );
    l.check("warm-up", 1).await.unwrap();
    let before = command_calls(&server);
    assert_eq!(
        before.get("eval"),
        None,
        "the first check was one EVALSHA too: {before:?}"
    );
    for i in 0..200 {
        l.check(&format!("user-{}", i % 20), 1).await.unwrap();
    }
    let after = command_calls(&server);
    let delta = |c: &str| after.get(c).copied().unwrap_or(0) - before.get(c).copied().unwrap_or(0);
    assert_eq!(delta("evalsha"), 200);
    assert_eq!(delta("eval"), 0);
    assert_eq!(delta("ping"), 0);
    assert_eq!(delta("unwatch"), 0);
    // Nothing else reached the server from outside: commandstats also counts the
    // commands the script runs (TIME, GET, SET), and INFO is our own probe.
    let inside_script = ["evalsha", "info", "time", "get", "set"];
    let others: u64 = after
        .keys()
        .filter(|c| !inside_script.contains(&c.as_str()))
        .map(|c| delta(c))
        .sum();
    assert_eq!(others, 0, "{after:?}");
    assert_eq!(l.stats().redis_calls, 201);
}

#[tokio::test]
async fn noscript_after_script_flush_is_recovered() {
    let server = RedisServer::start();
    let l = limiter(
        &server.url(),
        vec![policy("sec", 5, 5, Duration::from_secs(60))],
    )
    .await;
    let mut admitted = 0;
    for i in 0..10 {
        if i == 3 {
            assert_eq!(
                server.command(&["SCRIPT", "FLUSH"]).unwrap(),
                Reply::Status("OK".into())
            );
        }
        if l.check("k", 1).await.unwrap().allowed {
            admitted += 1;
        }
    }
    assert_eq!(
        admitted, 5,
        "state survived the flush; only the script was reloaded"
    );
    let calls = command_calls(&server);
    // The scripts were loaded at connect; one full EVAL after the flush.
    assert_eq!(calls.get("eval").copied(), Some(1), "{calls:?}");
    assert_eq!(l.stats().redis_errors, 0);
}

/// How many of `n` unit checks of `key` at the controlled time `now_us` are admitted.
async fn admitted_of(l: &RedisLimiter, key: &str, n: usize, now_us: u64) -> usize {
    let mut admitted = 0;
    for _ in 0..n {
        admitted += usize::from(l.check_inner(key, 1, Some(now_us)).await.unwrap().allowed);
    }
    admitted
}

#[tokio::test]
async fn several_policies_are_checked_atomically_all_or_nothing() {
    let server = RedisServer::start();
    let clock = manual_clock();
    let l = RedisLimiter::builder(vec![
        policy("sec", 3, 3, Duration::from_secs(1)),
        policy("min", 5, 5, Duration::from_secs(60)),
    ])
    .unwrap()
    .timeout(PATIENT)
    .clock(Arc::new(clock.clone()))
    .deny_cache_keys(0)
    .connect(&server.url())
    .await
    .unwrap();
    let now = || clock.now().as_unix_micros();
    let admitted = admitted_of(&l, "alice", 5, now()).await;
    assert_eq!(admitted, 3, "the per-second policy caps the burst");
    let denied = l.check_inner("alice", 1, Some(now())).await.unwrap();
    assert_eq!(
        (denied.allowed, denied.limit),
        (false, 3),
        "answered by the sec policy"
    );
    // The denied requests consumed nothing from the per-minute policy: 2 units left.
    clock.advance(Duration::from_secs(2));
    let admitted = admitted_of(&l, "alice", 5, now()).await;
    assert_eq!(admitted, 2, "the per-minute policy had 2 units left");
    let denied = l.check_inner("alice", 1, Some(now())).await.unwrap();
    assert_eq!(
        (denied.allowed, denied.limit),
        (false, 5),
        "answered by the min policy"
    );
    // Another subject is untouched.
    assert!(l.check_inner("bob", 1, Some(now())).await.unwrap().allowed);
}

#[tokio::test]
async fn keys_are_validated_and_braces_keep_one_slot() {
    let server = RedisServer::start();
    let l = limiter(
        &server.url(),
        vec![
            policy("a", 1, 1, Duration::from_secs(60)),
            policy("b", 1, 1, Duration::from_secs(60)),
        ],
    )
    .await;
    assert!(matches!(
        l.check("", 1).await,
        Err(Error::InvalidKey { what: "key", .. })
    ));
    assert!(matches!(
        l.check(&"x".repeat(MAX_KEY_LEN + 1), 1).await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        l.check("k", 2).await,
        Err(Error::CostExceedsBurst { cost: 2, burst: 1 })
    ));
    let keys = l.redis_keys("}evil{").unwrap();
    assert_eq!(keys[1], "palisade:rl:{=7d6576696c7b}:a");
    let keys = l.redis_keys("10.0.0.1").unwrap();
    assert_eq!(
        keys,
        [
            "palisade:rl:{10.0.0.1}:!block",
            "palisade:rl:{10.0.0.1}:a",
            "palisade:rl:{10.0.0.1}:b"
        ]
    );
    assert!(l.check("}evil{", 1).await.unwrap().allowed);
    assert!(!l.check("}evil{", 1).await.unwrap().allowed);
    assert!(
        l.check("=7d6576696c7b", 1).await.unwrap().allowed,
        "no collision with the encoded form"
    );
    assert!(RedisLimiter::builder(vec![]).is_err());
    assert!(Policy::new("bad:name", Quota::per_second(1).unwrap()).is_err());
    let err = RedisLimiter::builder(vec![policy("a", 1, 1, Duration::from_secs(1))])
        .unwrap()
        .prefix("p{x}")
        .connect(&server.url())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("prefix"), "{err}");
}

/// The in-memory and Redis backends give identical decisions and metadata for the
/// same trace under a controlled clock (µs-aligned, as Redis TIME is).
#[test]
fn memory_and_redis_backends_decide_identically() {
    let server = RedisServer::start();
    let rt = runtime();
    let cases = std::sync::atomic::AtomicU32::new(0);
    proptest!(ProptestConfig::with_cases(48), |(
        burst in 1u32..6,
        rate in 1u32..10,
        period_ms in 1u64..2_000,
        ops in proptest::collection::vec((0u64..300_000, 0u32..6), 1..60),
    )| {
        let case = cases.fetch_add(1, Ordering::Relaxed);
        let quota = Quota::new(burst, rate, Duration::from_millis(period_ms)).unwrap();
        let clock = manual_clock();
        let memory = KeyedLimiter::with_clock(quota, clock.clone());
        let redis = rt.block_on(
            RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()]).unwrap()
                .prefix(&format!("eq{case}"))
                .timeout(PATIENT)
                .deny_cache_keys(0)
                .clock(Arc::new(clock.clone()))
                .connect(&server.url()),
        ).unwrap();
        for (gap_us, cost) in ops {
            clock.advance(Duration::from_micros(gap_us));
            let cost = cost.min(burst);
            let m = memory.check(&"k", cost).unwrap();
            let r = rt.block_on(redis.check_inner("k", cost, Some(clock.now().as_unix_micros()))).unwrap();
            prop_assert_eq!(m, r);
        }
        prop_assert_eq!(redis.stats().redis_errors, 0);
    });
}

/// K limiter instances (separate connections) sharing one Redis, any interleaving of
/// arrivals and costs: admitted cost in every window is within burst + rate·w.
#[test]
fn k_instances_on_one_store_stay_within_the_bound() {
    let server = RedisServer::start();
    let rt = runtime();
    let cases = std::sync::atomic::AtomicU32::new(0);
    proptest!(ProptestConfig::with_cases(24), |(
        burst in 1u32..6,
        rate in 1u32..10,
        period_ms in 1u64..1_000,
        ops in proptest::collection::vec((0usize..3, 0u64..200_000, 1u32..6), 1..80),
    )| {
        let case = cases.fetch_add(1, Ordering::Relaxed);
        let quota = Quota::new(burst, rate, Duration::from_millis(period_ms)).unwrap();
        let clock = manual_clock();
        let instances: Vec<RedisLimiter> = (0..3).map(|_| rt.block_on(
            RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()]).unwrap()
                .prefix(&format!("k{case}")).timeout(PATIENT).clock(Arc::new(clock.clone())).connect(&server.url()),
        ).unwrap()).collect();
        let mut admitted: Vec<(u64, u32)> = Vec::new();
        for (who, gap_us, cost) in ops {
            clock.advance(Duration::from_micros(gap_us));
            let cost = cost.min(burst);
            let now = clock.now().as_unix_micros();
            let d = rt.block_on(instances[who].check_inner("shared", cost, Some(now))).unwrap();
            if d.allowed { admitted.push((now, cost)); }
        }
        let t = quota.emission_interval().as_micros() as u64;
        for i in 0..admitted.len() {
            let mut sum = 0u64;
            for j in i..admitted.len() {
                sum += u64::from(admitted[j].1);
                let bound = u64::from(burst) + (admitted[j].0 - admitted[i].0) / t;
                prop_assert!(sum <= bound, "window admitted {} > {}", sum, bound);
            }
        }
    });
}

/// A local deny is always what Redis would have answered: with the deny cache on,
/// every decision's `allowed` equals a cache-less limiter's on the same trace, and the
/// cache saved Redis calls.
#[test]
fn local_deny_cache_only_denies_what_redis_would_deny() {
    let server = RedisServer::start();
    let rt = runtime();
    let cases = std::sync::atomic::AtomicU32::new(0);
    let saved = AtomicU64::new(0);
    proptest!(ProptestConfig::with_cases(32), |(
        burst in 1u32..5,
        period_ms in 10u64..500,
        ops in proptest::collection::vec((0u64..50_000, 1u32..5), 1..80),
    )| {
        let case = cases.fetch_add(1, Ordering::Relaxed);
        let quota = Quota::new(burst, 1, Duration::from_millis(period_ms)).unwrap();
        let clock = manual_clock();
        let build = |prefix: String, cache: usize| rt.block_on(
            RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()]).unwrap()
                .prefix(&prefix).timeout(PATIENT).deny_cache_keys(cache).clock(Arc::new(clock.clone()))
                .connect(&server.url()),
        ).unwrap();
        let cached = build(format!("c{case}"), 1_000);
        let plain = build(format!("p{case}"), 0);
        for (gap_us, cost) in ops {
            clock.advance(Duration::from_micros(gap_us));
            let cost = cost.min(burst);
            let now = clock.now().as_unix_micros();
            let c = rt.block_on(cached.check_inner("k", cost, Some(now))).unwrap();
            let p = rt.block_on(plain.check_inner("k", cost, Some(now))).unwrap();
            prop_assert_eq!(c.allowed, p.allowed);
            if !c.allowed {
                prop_assert!(c.retry_after <= p.retry_after, "local retry_after {:?} > redis {:?}", c.retry_after, p.retry_after);
            }
        }
        prop_assert_eq!(cached.stats().redis_errors + plain.stats().redis_errors, 0);
        saved.fetch_add(cached.stats().local_denied, Ordering::Relaxed);
        prop_assert_eq!(cached.stats().redis_calls + cached.stats().local_denied, plain.stats().redis_calls);
    });
    assert!(
        saved.load(Ordering::Relaxed) > 0,
        "the deny cache never answered locally"
    );
}

#[tokio::test]
async fn hammering_a_denied_key_costs_about_one_redis_call_per_retry_window() {
    let server = RedisServer::start();
    let l = limiter(
        &server.url(),
        vec![policy("p", 1, 1, Duration::from_secs(60))],
    )
    .await;
    let mut admitted = 0;
    for _ in 0..1_000 {
        admitted += u32::from(l.check("attacker", 1).await.unwrap().allowed);
    }
    assert_eq!(admitted, 1);
    let s = l.stats();
    assert_eq!(s.redis_calls, 2, "{s:?}");
    assert_eq!(s.local_denied, 998);
}

#[tokio::test]
async fn works_unchanged_on_a_three_node_cluster() {
    let cluster = RedisCluster::start();
    let l = RedisLimiter::builder(vec![
        policy("sec", 2, 2, Duration::from_secs(1)),
        policy("min", 3, 3, Duration::from_secs(60)),
    ])
    .unwrap()
    .deny_cache_keys(0)
    .timeout(PATIENT)
    .connect_cluster(&cluster.urls())
    .await
    .unwrap();
    for user in 0..30 {
        let key = format!("user-{user}");
        let admitted: Vec<bool> = futures_check(&l, &key, 3).await;
        assert_eq!(admitted, [true, true, false], "{key}");
    }
    // The keys really are spread over the three primaries.
    let per_node: Vec<i64> = cluster
        .nodes()
        .iter()
        .map(|n| match n.command(&["DBSIZE"]).unwrap() {
            Reply::Integer(k) => k,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        per_node.iter().all(|&k| k > 0),
        "keys per node {per_node:?}"
    );
    assert_eq!(
        per_node.iter().sum::<i64>(),
        60,
        "two policy keys per subject"
    );
    // Blocks work on the cluster too.
    l.block("user-0", Duration::from_secs(30)).await.unwrap();
    let d = l.check("user-0", 0).await.unwrap();
    assert!(!d.allowed && d.retry_after > Duration::from_secs(29));
}

async fn futures_check(l: &RedisLimiter, key: &str, n: usize) -> Vec<bool> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(l.check(key, 1).await.unwrap().allowed);
    }
    out
}

#[tokio::test]
async fn a_block_is_seen_by_every_instance_in_its_single_round_trip() {
    let server = RedisServer::start();
    let a = limiter(
        &server.url(),
        vec![policy("p", 100, 100, Duration::from_secs(1))],
    )
    .await;
    let b = limiter(
        &server.url(),
        vec![policy("p", 100, 100, Duration::from_secs(1))],
    )
    .await;
    let ip: std::net::IpAddr = "198.51.100.23".parse().unwrap();
    assert!(b.check("198.51.100.23", 1).await.unwrap().allowed);
    let blocker: &dyn IpBlocker = &a;
    blocker
        .block_ip(ip, Duration::from_secs(120), "credential stuffing")
        .await
        .unwrap();
    let before = command_calls(&server);
    let d = b.check("198.51.100.23", 1).await.unwrap();
    let after = command_calls(&server);
    assert!(!d.allowed);
    assert!(
        d.retry_after > Duration::from_secs(119) && d.retry_after <= Duration::from_secs(120),
        "{d:?}"
    );
    assert_eq!(after["evalsha"] - before["evalsha"], 1);
    assert!(
        b.check("198.51.100.24", 1).await.unwrap().allowed,
        "other addresses unaffected"
    );
    // The block is stored with its expiry.
    let ttl = server
        .command(&["PTTL", "palisade:rl:{198.51.100.23}:!block"])
        .unwrap();
    assert!(
        matches!(ttl, Reply::Integer(ms) if ms > 119_000 && ms <= 120_000),
        "{ttl:?}"
    );
    blocker.unblock_ip(ip).await.unwrap();
    assert!(b.check("198.51.100.23", 1).await.unwrap().allowed);
}

/// Upper bound on how long one check may take during an outage. Generous on purpose:
/// this is a liveness check (no hang until a TCP timeout), not a performance claim.
const OUTAGE_BOUND: Duration = Duration::from_secs(2);

struct OutageRun {
    during: Vec<Decision>,
    stats_during: RedisStatsSnapshot,
    after: Vec<Decision>,
    limiter: RedisLimiter,
}

/// Runs checks, kills redis-server, runs checks, restarts it, runs checks again, all
/// on the same limiter (never rebuilt).
async fn outage(failure: FailurePolicy, quota: Quota) -> OutageRun {
    let mut server = RedisServer::start();
    let limiter = RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()])
        .unwrap()
        .timeout(Duration::from_millis(250))
        .circuit_breaker(1, Duration::from_millis(300))
        .failure_policy(failure)
        .connect(&server.url())
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(limiter.check("warm", 1).await.unwrap().allowed);
    }
    server.stop();
    let mut during = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        during.push(limiter.check("victim", 1).await.unwrap());
        assert!(
            started.elapsed() < OUTAGE_BOUND,
            "a check took {:?} during the outage",
            started.elapsed()
        );
    }
    assert!(limiter.is_circuit_open());
    let stats_during = limiter.stats();
    server.restart();
    // Recovery: after the cooldown one probe goes to Redis and closes the circuit.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let calls = limiter.stats().redis_calls;
        limiter.check("probe", 1).await.unwrap();
        if !limiter.is_circuit_open() && limiter.stats().redis_calls > calls {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "limiter did not return to redis: {:?}",
            limiter.stats()
        );
    }
    let mut after = Vec::new();
    for _ in 0..3 {
        after.push(limiter.check("after", 1).await.unwrap());
    }
    OutageRun {
        during,
        stats_during,
        after,
        limiter,
    }
}

#[tokio::test]
async fn outage_with_closed_policy_denies_then_recovers() {
    let run = outage(FailurePolicy::Closed, Quota::per_second(100).unwrap()).await;
    assert!(run.during.iter().all(|d| !d.allowed));
    assert_eq!(run.stats_during.failed_closed, 30);
    assert_eq!(run.stats_during.failed_open, 0);
    assert!(run.stats_during.redis_errors >= 1);
    // The breaker kept most outage checks off the network.
    assert!(run.stats_during.redis_errors < 30, "{:?}", run.stats_during);
    assert!(
        run.after.iter().all(|d| d.allowed),
        "back on redis: {:?}",
        run.after
    );
    assert!(!run.limiter.is_circuit_open());
}

#[tokio::test]
async fn outage_with_open_policy_allows_and_counts() {
    let run = outage(FailurePolicy::Open, Quota::per_second(100).unwrap()).await;
    assert!(run.during.iter().all(|d| d.allowed));
    assert_eq!(run.stats_during.failed_open, 30);
    assert_eq!(run.stats_during.failed_closed, 0);
    assert!(run.after.iter().all(|d| d.allowed));
}

#[tokio::test]
async fn outage_with_local_share_keeps_the_shared_bound() {
    // burst 10, 10/min shared by 2 instances: each may admit 5 during an outage.
    let quota = Quota::new(10, 10, Duration::from_secs(60)).unwrap();
    let run = outage(FailurePolicy::LocalShare { instances: 2 }, quota).await;
    let admitted = run.during.iter().filter(|d| d.allowed).count();
    assert_eq!(admitted, 5, "{:?}", run.during);
    assert_eq!(run.stats_during.fallback_local, 30);
    assert!(run.after.iter().all(|d| d.allowed));
    assert_eq!(
        run.after[0].limit, 10,
        "answered by redis with the full quota again"
    );
}

/// 4 instances on one key for 2 seconds never admit more than the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_hammering_one_key_for_two_seconds_stay_within_the_bound() {
    let server = RedisServer::start();
    let quota = Quota::new(20, 200, Duration::from_secs(1)).unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let l = RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()])
            .unwrap()
            .deny_cache_keys(0)
            .timeout(Duration::from_secs(1))
            .connect(&server.url())
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u64;
            let mut checks = 0u64;
            while started.elapsed() < Duration::from_secs(2) {
                checks += 1;
                if l.check("hot", 1).await.unwrap().allowed {
                    admitted += 1;
                }
            }
            (admitted, checks)
        }));
    }
    let mut admitted = 0;
    let mut checks = 0;
    for t in tasks {
        let (a, c) = t.await.unwrap();
        admitted += a;
        checks += c;
    }
    let elapsed = started.elapsed();
    // Redis TIME spans at most the wall time of the run (plus one round trip each side).
    let bound = 20 + (200.0 * (elapsed.as_secs_f64() + 0.01)) as u64;
    assert!(
        admitted <= bound,
        "admitted {admitted} > bound {bound} over {elapsed:?}"
    );
    assert!(
        checks > admitted,
        "the key was really contended: {checks} checks"
    );
    assert!(
        admitted >= 300,
        "the limiter admitted too little: {admitted}"
    );
}
