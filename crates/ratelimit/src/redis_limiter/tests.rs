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
    let keys = l.subject("}evil{").unwrap().keys;
    assert_eq!(keys[2], "palisade:rl:{=7d6576696c7b}:a");
    let keys = l.subject("10.0.0.1").unwrap().keys;
    assert_eq!(
        keys,
        [
            "palisade:rl:{10.0.0.1}:!block",
            "palisade:rl:!epoch",
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

/// The in-memory and Redis backends give identical decisions and metadata (denial
/// reason included) for the same trace under a controlled clock (µs-aligned, as Redis
/// TIME is).
#[test]
fn memory_and_redis_backends_decide_identically() {
    let server = RedisServer::start();
    let rt = runtime();
    let cases = std::sync::atomic::AtomicU32::new(0);
    proptest!(ProptestConfig::with_cases(48), |(
        burst in 1u32..6,
        rate in 1u32..10,
        period_ms in 1u64..2_000,
        ops in proptest::collection::vec((0u64..300_000, 0u32..9), 1..60),
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
            // Up to two above the burst: a request that can never pass is answered alike.
            let cost = cost.min(burst + 2);
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
    // The keys really are spread over the three primaries, each slot with its epoch.
    let keys_of = |n: &RedisServer| -> Vec<String> {
        match n.command(&["KEYS", "*"]).unwrap() {
            Reply::Array(Some(keys)) => keys.iter().map(Reply::text).collect(),
            other => panic!("{other:?}"),
        }
    };
    let per_node: Vec<usize> = cluster
        .nodes()
        .iter()
        .map(|n| keys_of(n).iter().filter(|k| !k.ends_with("!epoch")).count())
        .collect();
    assert!(
        per_node.iter().all(|&k| k > 0),
        "keys per node {per_node:?}"
    );
    assert_eq!(
        per_node.iter().sum::<usize>(),
        60,
        "two policy keys per subject"
    );
    // The slot of each subject's keys is the one Redis computes, and its epoch is there.
    for user in 0..30 {
        let subject = l.subject(&format!("user-{user}")).unwrap();
        let slot = match cluster.nodes()[0]
            .command(&["CLUSTER", "KEYSLOT", &subject.keys[2]])
            .unwrap()
        {
            Reply::Integer(s) => s,
            other => panic!("{other:?}"),
        };
        assert_eq!(subject.slot as i64, slot, "user-{user}");
        let epoch_slot = cluster.nodes()[0]
            .command(&["CLUSTER", "KEYSLOT", &subject.keys[1]])
            .unwrap();
        assert_eq!(epoch_slot, Reply::Integer(slot));
    }
    // Data lost on one primary is seen there: a subject whose slot it serves is
    // denied (Closed) for a burst window instead of being refilled.
    let on_node_0 = (0..30)
        .map(|u| format!("user-{u}"))
        .find(|k| l.subject(k).unwrap().slot < RedisCluster::SLOTS as usize / 3)
        .unwrap();
    assert_eq!(
        cluster.nodes()[0].command(&["FLUSHALL"]).unwrap(),
        Reply::Status("OK".into())
    );
    let d = l.check(&on_node_0, 1).await.unwrap();
    assert_eq!(d.denial, Some(Denial::Unavailable), "{d:?}");
    assert_eq!(l.stats().data_losses, 1);
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

/// A server that keeps its data across `restart()` (append-only file, synced on every
/// write): a restart is then an outage, not a data loss.
fn persistent_server() -> RedisServer {
    RedisServer::start_with_args(&["--appendonly", "yes", "--appendfsync", "always"])
}

/// Runs checks, kills redis-server, runs checks, restarts it (with its data), runs
/// checks again, all on the same limiter (never rebuilt).
async fn outage(failure: FailurePolicy, quota: Quota) -> OutageRun {
    let mut server = persistent_server();
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

#[test]
fn crc16_and_the_slot_tags_match_redis_cluster() {
    // The cluster specification's test vector.
    assert_eq!(crc16(b"123456789"), 0x31C3);
    let tags = slot_tags();
    assert_eq!(tags.len(), SLOTS);
    for (slot, tag) in tags.iter().enumerate() {
        assert_eq!(slot_of(&tag.to_string()), slot);
    }
}

/// Every spelling of one address is one subject on Redis: an IPv4 client seen through
/// a dual-stack listener, and the textual forms of one IPv6 address, share one quota
/// and one block.
#[tokio::test]
async fn every_spelling_of_an_address_is_one_subject() {
    let server = RedisServer::start();
    let l = RedisLimiter::builder(vec![policy("p", 2, 1, Duration::from_secs(60))])
        .unwrap()
        .timeout(PATIENT)
        .deny_cache_keys(0)
        .connect(&server.url())
        .await
        .unwrap();
    for spellings in [
        ["198.51.100.7", "::ffff:198.51.100.7", "::FFFF:c633:6407"],
        ["2001:db8::1", "2001:DB8:0:0::1", "2001:0db8:0000::0001"],
    ] {
        assert!(l.check(spellings[0], 1).await.unwrap().allowed);
        assert!(l.check(spellings[1], 1).await.unwrap().allowed);
        let d = l.check(spellings[2], 1).await.unwrap();
        assert_eq!(d.denial, Some(Denial::Limited), "{spellings:?}: one quota");
    }
    let exists = |key: &str| server.command(&["EXISTS", key]).unwrap();
    assert_eq!(exists("palisade:rl:{198.51.100.7}:p"), Reply::Integer(1));
    assert_eq!(exists("palisade:rl:{2001:db8::1}:p"), Reply::Integer(1));
    // A playbook blocks the IPv4 address; the client comes back mapped, and the
    // other way round.
    let blocker: &dyn IpBlocker = &l;
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    blocker
        .block_ip(ip("198.51.100.8"), Duration::from_secs(600), "stuffing")
        .await
        .unwrap();
    let d = l.check("::ffff:198.51.100.8", 1).await.unwrap();
    assert_eq!(d.denial, Some(Denial::Blocked));
    blocker
        .block_ip(
            ip("::ffff:198.51.100.9"),
            Duration::from_secs(600),
            "stuffing",
        )
        .await
        .unwrap();
    assert_eq!(
        l.check("198.51.100.9", 1).await.unwrap().denial,
        Some(Denial::Blocked)
    );
    blocker.unblock_ip(ip("::ffff:198.51.100.8")).await.unwrap();
    assert!(l.check("198.51.100.8", 1).await.unwrap().allowed);
}

/// The circuit breaker times its cool-down on the monotonic clock: after the wall
/// clock steps back an hour, Redis is probed once the cool-down has passed, and the
/// checks are Redis' again (a burst-2 key admits two, then denies).
#[tokio::test]
async fn a_wall_clock_step_back_does_not_hold_the_circuit_open() {
    for failure in [FailurePolicy::Closed, FailurePolicy::Open] {
        let mut server = persistent_server();
        let clock = manual_clock();
        let l = RedisLimiter::builder(vec![policy("p", 2, 1, Duration::from_secs(60))])
            .unwrap()
            .timeout(Duration::from_millis(250))
            .circuit_breaker(1, Duration::from_secs(1))
            .failure_policy(failure)
            .deny_cache_keys(0)
            .clock(Arc::new(clock.clone()))
            .connect(&server.url())
            .await
            .unwrap();
        server.stop();
        l.check("k", 1).await.unwrap();
        assert!(l.is_circuit_open(), "{failure:?}");
        server.restart();
        // NTP steps the wall clock back an hour; then the cool-down passes.
        let wall = clock.now().as_unix_nanos();
        clock.set(Timestamp::from_unix_nanos(wall - 3_600_000_000_000));
        clock.advance(Duration::from_secs(2));
        let calls = l.stats().redis_calls;
        let mut admitted = Vec::new();
        for _ in 0..3 {
            admitted.push(l.check("k", 1).await.unwrap().allowed);
        }
        assert_eq!(
            l.stats().redis_calls - calls,
            3,
            "{failure:?}: redis not called"
        );
        assert_eq!(admitted, [true, true, false], "{failure:?}");
        assert!(!l.is_circuit_open());
    }
}

/// A request whose cost is above a burst is denied, not an error: answered with the
/// key's state as a peek sees it, and nothing is consumed.
#[tokio::test]
async fn a_cost_above_a_burst_is_a_denial_that_consumes_nothing() {
    let server = RedisServer::start();
    let l = RedisLimiter::builder(vec![
        policy("a", 3, 1, Duration::from_secs(60)),
        policy("b", 5, 1, Duration::from_secs(60)),
    ])
    .unwrap()
    .timeout(PATIENT)
    .connect(&server.url())
    .await
    .unwrap();
    assert!(l.check("k", 1).await.unwrap().allowed);
    for cost in [4, 6, u32::MAX] {
        let d = l.check("k", cost).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.denial, Some(Denial::CostExceedsBurst), "cost {cost}");
        assert_eq!(d.retry_after, Duration::MAX);
        assert_eq!(d.limit, 3, "the first burst it exceeds");
        assert_eq!(d.remaining, 2, "policy a, as a peek sees it");
    }
    assert!(
        l.check("k", 2).await.unwrap().allowed,
        "nothing was consumed"
    );
    assert_eq!(l.check("k", 1).await.unwrap().denial, Some(Denial::Limited));
    let s = l.stats();
    assert_eq!(s.cost_exceeds_burst, 3);
    assert_eq!((s.allowed, s.denied), (2, 1));
}

/// Block durations from zero to `Duration::MAX` (around 2^53 and 2^63 µs included):
/// longer than 100 years blocks for 100 years, and the check reports it exactly
/// (the script overflowed to a `retry_after` of 0 at 2^63 µs).
#[tokio::test]
async fn block_durations_from_zero_to_duration_max_report_their_retry_after() {
    const HUNDRED_YEARS: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let us = Duration::from_micros;
    let mut cases = vec![
        (Duration::ZERO, None),
        (us(1), Some(us(1))),
        (Duration::from_secs(90), Some(Duration::from_secs(90))),
        (HUNDRED_YEARS - us(1), Some(HUNDRED_YEARS - us(1))),
        (HUNDRED_YEARS, Some(HUNDRED_YEARS)),
        (Duration::MAX, Some(HUNDRED_YEARS)),
    ];
    for above in [
        (1u64 << 53) - 1,
        1 << 53,
        (1 << 53) + 1,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + 1,
        u64::MAX,
    ] {
        cases.push((us(above), Some(HUNDRED_YEARS)));
    }
    let server = RedisServer::start();
    let l = limiter(
        &server.url(),
        vec![policy("p", 5, 5, Duration::from_secs(1))],
    )
    .await;
    let now = START_MICROS;
    for (i, (duration, expected)) in cases.into_iter().enumerate() {
        let key = format!("blocked-{i}");
        l.block_inner(&key, duration, Some(now)).await.unwrap();
        let d = l.check_inner(&key, 1, Some(now)).await.unwrap();
        match expected {
            None => assert!(d.allowed, "{duration:?}: {d:?}"),
            Some(left) => {
                assert_eq!(d.denial, Some(Denial::Blocked), "{duration:?}");
                assert_eq!(d.retry_after, left, "{duration:?}");
            }
        }
    }
    // With Redis' own clock too: Duration::MAX is a block of about 100 years.
    l.block("forever", Duration::MAX).await.unwrap();
    let d = l.check("forever", 1).await.unwrap();
    assert!(
        d.retry_after > HUNDRED_YEARS - Duration::from_secs(60) && d.retry_after <= HUNDRED_YEARS,
        "{d:?}"
    );
}

/// `LocalShare` with more instances than burst units: the share is zero, and during
/// an outage the instance admits nothing (6 instances of a burst of 3 admitted 6).
#[tokio::test]
async fn outage_with_more_instances_than_burst_units_admits_nothing_locally() {
    let quota = Quota::new(3, 3, Duration::from_secs(60)).unwrap();
    let run = outage(FailurePolicy::LocalShare { instances: 6 }, quota).await;
    assert!(run.during.iter().all(|d| !d.allowed), "{:?}", run.during);
    assert!(
        run.during
            .iter()
            .all(|d| d.denial == Some(Denial::Unavailable))
    );
    assert_eq!(run.stats_during.fallback_local, 30);
    assert!(run.after.iter().all(|d| d.allowed), "{:?}", run.after);
}

/// A limiter on `url` with the given failure policy and clock, without deny cache.
async fn on_clock(
    url: &str,
    policies: Vec<Policy>,
    failure: FailurePolicy,
    clock: &ManualClock,
) -> RedisLimiter {
    RedisLimiter::builder(policies)
        .unwrap()
        .timeout(PATIENT)
        .deny_cache_keys(0)
        .failure_policy(failure)
        .clock(Arc::new(clock.clone()))
        .connect(url)
        .await
        .unwrap()
}

/// Redis data loss (FLUSHALL, a restart without persistence) never refills a spent
/// key silently. Every instance sees the loss; from the time it was first seen (kept
/// in Redis, so all agree) and for one burst window, the failure policy (Closed:
/// deny) answers for every key; then Redis again.
#[tokio::test]
async fn data_loss_never_refills_a_spent_key_silently() {
    let mut server = RedisServer::start();
    // Burst 2, one per 10 s: the burst window is 20 s.
    let quota = vec![policy("p", 2, 1, Duration::from_secs(10))];
    let clock = manual_clock();
    let a = on_clock(&server.url(), quota.clone(), FailurePolicy::Closed, &clock).await;
    let b = on_clock(&server.url(), quota.clone(), FailurePolicy::Closed, &clock).await;
    let t0 = START_MICROS;
    assert_eq!(admitted_of(&a, "victim", 3, t0).await, 2);
    assert_eq!(
        server.command(&["FLUSHALL"]).unwrap(),
        Reply::Status("OK".into())
    );
    let seen = t0 + 1_000;
    let d = a.check_inner("victim", 1, Some(seen)).await.unwrap();
    assert_eq!(d.denial, Some(Denial::Unavailable), "refilled: {d:?}");
    assert_eq!(d.retry_after, Duration::from_secs(20));
    // B agrees, from the time A saw it; and so does a key nobody had used.
    let d = b
        .check_inner("victim", 1, Some(seen + 5_000_000))
        .await
        .unwrap();
    assert_eq!(d.denial, Some(Denial::Unavailable));
    assert_eq!(d.retry_after, Duration::from_secs(15));
    let d = b
        .check_inner("newcomer", 1, Some(seen + 5_000_000))
        .await
        .unwrap();
    assert_eq!(d.denial, Some(Denial::Unavailable));
    // A limiter that connects afterwards learns the same window from Redis.
    let c = on_clock(&server.url(), quota.clone(), FailurePolicy::Closed, &clock).await;
    let d = c
        .check_inner("victim", 1, Some(seen + 19_999_999))
        .await
        .unwrap();
    assert_eq!(d.denial, Some(Denial::Unavailable));
    assert_eq!(
        (
            a.stats().data_losses,
            b.stats().data_losses,
            c.stats().data_losses
        ),
        (1, 1, 0)
    );
    assert_eq!(a.stats().failed_closed + b.stats().failed_closed, 3);
    // After the window Redis decides again, from a fresh state: nothing was written.
    let after = seen + 20_000_000;
    assert_eq!(admitted_of(&a, "victim", 3, after).await, 2);
    assert_eq!(admitted_of(&b, "newcomer", 3, after).await, 2);
    // A restart without persistence loses the data too.
    server.restart();
    let lost_again = after + 1_000;
    for _ in 0..10 {
        let d = a.check_inner("victim", 1, Some(lost_again)).await.unwrap();
        assert_eq!(d.denial, Some(Denial::Unavailable), "{d:?}");
        if a.stats().data_losses == 2 {
            break;
        }
    }
    assert_eq!(a.stats().data_losses, 2, "{:?}", a.stats());
    let d = b
        .check_inner("victim", 1, Some(lost_again + 1))
        .await
        .unwrap();
    assert_eq!(d.denial, Some(Denial::Unavailable));
}

/// A limiter that connects after a loss, before any instance that knew the old epoch
/// checks, creates a fresh epoch; the first instance that knew the old one then marks
/// the loss, and from then on every instance (the newcomer too) sees the window.
#[tokio::test]
async fn a_loss_is_marked_by_the_first_instance_that_knew_the_old_epoch() {
    let server = RedisServer::start();
    let quota = vec![policy("p", 2, 1, Duration::from_secs(10))];
    let clock = manual_clock();
    let a = on_clock(&server.url(), quota.clone(), FailurePolicy::Closed, &clock).await;
    let t0 = START_MICROS;
    assert_eq!(admitted_of(&a, "victim", 3, t0).await, 2);
    server.command(&["FLUSHALL"]).unwrap();
    let newcomer = on_clock(&server.url(), quota, FailurePolicy::Closed, &clock).await;
    let d = a.check_inner("victim", 1, Some(t0 + 1_000)).await.unwrap();
    assert_eq!(d.denial, Some(Denial::Unavailable));
    assert_eq!(d.retry_after, Duration::from_secs(20));
    let d = newcomer
        .check_inner("victim", 1, Some(t0 + 2_000))
        .await
        .unwrap();
    assert_eq!(d.denial, Some(Denial::Unavailable));
    assert_eq!(a.stats().data_losses, 1);
}

/// Each policy is uncertain for its own burst window after a loss: under `Open` the
/// per-second policy limits again after its 1 s while the per-minute one is still
/// skipped (admitted, counted); under `LocalShare` the per-minute one is checked
/// against its local share; under `Closed` nothing is consumed while denied.
#[tokio::test]
async fn after_a_data_loss_each_policy_is_uncertain_for_its_own_burst_window() {
    let server = RedisServer::start();
    let policies = || {
        vec![
            policy("sec", 2, 2, Duration::from_secs(1)), // window 1 s
            policy("min", 5, 5, Duration::from_secs(60)), // window 60 s
        ]
    };
    let clock = manual_clock();
    let open = on_clock(&server.url(), policies(), FailurePolicy::Open, &clock).await;
    let local = on_clock(
        &server.url(),
        policies(),
        FailurePolicy::LocalShare { instances: 2 },
        &clock,
    )
    .await;
    let closed = on_clock(&server.url(), policies(), FailurePolicy::Closed, &clock).await;
    server.command(&["FLUSHALL"]).unwrap();
    let at = |offset_ms: u64| {
        clock.set(Timestamp::from_unix_micros(
            START_MICROS + offset_ms * 1_000,
        ));
        clock.now().as_unix_micros()
    };
    // Seen at 0: both policies uncertain. Open admits, counted.
    let t = at(0);
    let d = open.check_inner("o", 1, Some(t)).await.unwrap();
    assert!(d.allowed);
    assert_eq!(open.stats().failed_open, 1);
    // At 2 s the per-second policy is Redis' again: 2 admitted, then denied by it.
    let t = at(2_000);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(open.check_inner("o", 1, Some(t)).await.unwrap());
    }
    assert_eq!(
        got.iter().map(|d| d.allowed).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!((got[2].denial, got[2].limit), (Some(Denial::Limited), 2));
    assert_eq!(open.stats().failed_open, 3);
    // LocalShare at 2 s: "sec" on Redis, "min" on its local share (burst 5 / 2 = 2).
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(local.check_inner("l", 1, Some(t)).await.unwrap().allowed);
    }
    assert_eq!(got, [true, true, false]);
    // At 4 s "sec" has refilled; the local share of "min" has not (one per 24 s).
    let t = at(4_000);
    let d = local.check_inner("l", 1, Some(t)).await.unwrap();
    assert_eq!((d.allowed, d.limit), (false, 2), "{d:?}");
    // Two admitted and this one by the share; the third at 2 s was Redis' ("sec").
    assert_eq!(local.stats().fallback_local, 3);
    // Closed at 4 s: denied until the per-minute window ends, consuming nothing.
    let d = closed.check_inner("c", 1, Some(t)).await.unwrap();
    assert_eq!(d.denial, Some(Denial::Unavailable));
    assert_eq!(d.retry_after, Duration::from_secs(56));
    let t = at(60_000);
    assert_eq!(
        admitted_of(&closed, "c", 3, t).await,
        2,
        "sec was not consumed"
    );
    assert_eq!(admitted_of(&open, "o", 1, t).await, 1, "back on redis");
    assert_eq!(open.stats().failed_open, 3);
}

/// Every limiter key carries a TTL, so any `maxmemory-policy` but `noeviction` may
/// evict a spent key and refill it silently: such a Redis is refused at connect
/// (read with CONFIG GET, or INFO memory where an ACL forbids CONFIG), unless the
/// builder allows it.
#[tokio::test]
async fn a_redis_that_may_evict_limiter_keys_is_refused_unless_allowed() {
    let connect = |url: String, allow: bool| async move {
        RedisLimiter::builder(vec![policy("p", 2, 1, Duration::from_secs(60))])
            .unwrap()
            .timeout(PATIENT)
            .allow_key_eviction(allow)
            .connect(&url)
            .await
    };
    for unsafe_policy in [
        "volatile-lru",
        "allkeys-lru",
        "volatile-ttl",
        "allkeys-random",
    ] {
        let server = RedisServer::start_with_args(&["--maxmemory-policy", unsafe_policy]);
        match connect(server.url(), false).await {
            Err(Error::UnsafeEvictionPolicy { policy }) => assert_eq!(policy, unsafe_policy),
            other => panic!("{unsafe_policy}: {other:?}"),
        }
        let err = connect(server.url(), false).await.unwrap_err();
        assert!(err.to_string().contains("noeviction"), "{err}");
        assert!(
            connect(server.url(), true).await.is_ok(),
            "allowed explicitly"
        );
    }
    // An ACL user without CONFIG: the policy is read from INFO memory.
    for (server_policy, refused) in [("volatile-lru", true), ("noeviction", false)] {
        let server = RedisServer::start_with_args(&["--maxmemory-policy", server_policy]);
        let acl = [
            "ACL", "SETUSER", "limiter", "on", ">pw", "~*", "+@all", "-config",
        ];
        assert_eq!(server.command(&acl).unwrap(), Reply::Status("OK".into()));
        let url = format!("redis://limiter:pw@127.0.0.1:{}/", server.port());
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let config: RedisResult<Value> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut conn)
            .await;
        assert!(config.is_err(), "the ACL forbids CONFIG: {config:?}");
        match connect(url, false).await {
            Err(Error::UnsafeEvictionPolicy { policy }) if refused => {
                assert_eq!(policy, server_policy)
            }
            Ok(_) if !refused => {}
            other => panic!("{server_policy}: {other:?}"),
        }
    }
}

/// Why only `noeviction` is safe, under memory pressure from 50,000 or more spray keys
/// (with a TTL, as every limiter key has): under `volatile-lru` Redis evicts the spent key
/// and it is admitted again; under `noeviction` the spent key stays spent (denied on
/// its intact state), and a check that must write is refused by Redis and denied by
/// the failure policy (Closed).
#[tokio::test]
async fn under_memory_pressure_only_noeviction_keeps_a_spent_key_spent() {
    /// Writes 50,000 spray keys, then (under an evicting policy, whose LRU only
    /// samples keys) 1,000 more at a time until the victim is gone, at most 500,000.
    async fn spray(server: &RedisServer) -> RedisResult<()> {
        let client = redis::Client::open(server.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let victim_gone = || {
            server
                .command(&["EXISTS", "palisade:rl:{victim}:p"])
                .unwrap()
                == Reply::Integer(0)
        };
        for batch in 0..500 {
            if batch >= 50 && victim_gone() {
                break;
            }
            let mut pipe = redis::pipe();
            for i in 0..1_000 {
                pipe.cmd("SET")
                    .arg(format!("palisade:rl:{{spray-{batch}-{i}}}:p"))
                    .arg("1800000000000000")
                    .arg("PX")
                    .arg(3_600_000)
                    .ignore();
            }
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(())
    }
    let used = |server: &RedisServer| -> u64 {
        let info = server.command(&["INFO", "memory"]).unwrap().text();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    for (policy, refilled) in [("volatile-lru", true), ("noeviction", false)] {
        let server = RedisServer::start_with_args(&["--maxmemory-policy", policy]);
        // Room for the limiter, not for the spray.
        let limit = (used(&server) + 2_000_000).to_string();
        server
            .command(&["CONFIG", "SET", "maxmemory", &limit])
            .unwrap();
        let l = RedisLimiter::builder(vec![policy_of(2, 3600)])
            .unwrap()
            .timeout(PATIENT)
            .deny_cache_keys(0)
            .allow_key_eviction(true)
            .connect(&server.url())
            .await
            .unwrap();
        assert_eq!(admitted(&l, "victim", 3).await, 2);
        let sprayed = spray(&server).await;
        let victim_kept = server
            .command(&["EXISTS", "palisade:rl:{victim}:p"])
            .unwrap();
        let d = l.check("victim", 1).await.unwrap();
        if refilled {
            assert!(sprayed.is_ok(), "{sprayed:?}");
            assert_eq!(victim_kept, Reply::Integer(0), "evicted");
            assert!(d.allowed, "the evicted key is a full quota again: {d:?}");
        } else {
            assert!(sprayed.is_err(), "noeviction refuses writes when full");
            assert_eq!(victim_kept, Reply::Integer(1));
            assert_eq!(d.denial, Some(Denial::Limited), "{d:?}");
            // New keys fit until Redis is full (its own buffers come and go); then a
            // check that must write is refused, and denied by the failure policy.
            let mut refused = None;
            for i in 0..10_000 {
                let d = l.check(&format!("newcomer-{i}"), 1).await.unwrap();
                if !d.allowed {
                    refused = Some(d);
                    break;
                }
            }
            let refused = refused.expect("a full redis refused no write");
            assert_eq!(refused.denial, Some(Denial::Unavailable), "{refused:?}");
            assert_eq!(l.stats().failed_closed, 1);
            assert!(!l.check("victim", 1).await.unwrap().allowed, "still spent");
        }
    }
}

fn policy_of(burst: u32, per_secs: u64) -> Policy {
    policy("p", burst, 1, Duration::from_secs(per_secs))
}

async fn admitted(l: &RedisLimiter, key: &str, n: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..n {
        admitted += usize::from(l.check(key, 1).await.unwrap().allowed);
    }
    admitted
}
