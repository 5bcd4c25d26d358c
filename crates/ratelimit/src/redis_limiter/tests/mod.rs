//! The Redis limiter against real redis-server processes and a real 3-node cluster.
//! Unit tests (not `tests/`) so they can pass a controlled `now` into the script;
//! production code always passes 0, which makes the script read Redis `TIME`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core_traits::{Clock, IpBlocker, ManualClock, Timestamp};
use palisade_testkit::{RedisCluster, RedisServer, Reply};
use proptest::prelude::*;

use super::conn::{SLOTS, crc16, slot_of, slot_tags};
use super::*;
use crate::{Quota, Stats, nz};
use redis::{RedisResult, Value};
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;

mod data_loss;
mod outage;

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
        .timeout(PATIENT)
        .connect(url)
        .await
        .unwrap()
}

/// A run-time count (literals use `nz!`).
fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn policy(name: &str, burst: u32, rate: u32, period: Duration) -> Policy {
    Policy::new(
        name,
        Quota::new(non_zero(burst), non_zero(rate), period).unwrap(),
    )
    .unwrap()
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
    // Both scripts were loaded at connect; after the flush redis-rs's `Script` got
    // NOSCRIPT once, loaded the script once more and re-sent EVALSHA: one EVALSHA
    // more than the checks sent.
    assert_eq!(calls.get("script|load").copied(), Some(3), "{calls:?}");
    assert_eq!(
        calls.get("evalsha").copied(),
        Some(l.stats().redis_calls + 1),
        "{calls:?}"
    );
    assert_eq!(calls.get("eval"), None, "{calls:?}");
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

/// A denial answered from the local deny cache names the policy Redis named (its
/// burst as `limit`), whichever of several policies denied, not the first one.
#[tokio::test]
async fn a_cached_denial_names_the_policy_that_denied_on_redis() {
    let server = RedisServer::start();
    let clock = manual_clock();
    let l = RedisLimiter::builder(vec![
        policy("sec", 3, 3, Duration::from_secs(1)),
        policy("min", 5, 5, Duration::from_secs(60)),
    ])
    .timeout(PATIENT)
    .clock(Arc::new(clock.clone()))
    .connect(&server.url())
    .await
    .unwrap();
    let now = || clock.now().as_unix_micros();
    for (policy_burst, admitted) in [(3, 3), (5, 2)] {
        assert_eq!(admitted_of(&l, "alice", admitted, now()).await, admitted);
        let calls = l.stats().redis_calls;
        let on_redis = l.check_inner("alice", 1, Some(now())).await.unwrap();
        assert_eq!(l.stats().redis_calls, calls + 1, "denied by redis");
        let cached = l.check_inner("alice", 1, Some(now())).await.unwrap();
        assert_eq!(l.stats().redis_calls, calls + 1, "denied from the cache");
        for d in [on_redis, cached] {
            assert_eq!(
                (d.allowed, d.limit, d.denial),
                (false, policy_burst, Some(Denial::Limited))
            );
        }
        // Past the per-second window: the per-minute policy decides next.
        clock.advance(Duration::from_secs(2));
    }
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
    let err = RedisLimiter::builder(vec![])
        .connect(&server.url())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "policies",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(Policy::new("bad:name", Quota::per_second(nz!(1))).is_err());
    let err = RedisLimiter::builder(vec![policy("a", 1, 1, Duration::from_secs(1))])
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
        let quota = Quota::new(non_zero(burst), non_zero(rate), Duration::from_millis(period_ms)).unwrap();
        let clock = manual_clock();
        let memory = KeyedLimiter::with_clock(quota, clock.clone());
        let redis = rt.block_on(
            RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()])
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
        let quota = Quota::new(non_zero(burst), non_zero(rate), Duration::from_millis(period_ms)).unwrap();
        let clock = manual_clock();
        let instances: Vec<RedisLimiter> = (0..3).map(|_| rt.block_on(
            RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()])
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
/// every decision's `allowed` equals a cache-less limiter's on the same trace (peeks,
/// cost 0, among them), and the cache saved Redis calls.
#[test]
fn local_deny_cache_only_denies_what_redis_would_deny() {
    let server = RedisServer::start();
    let rt = runtime();
    let cases = std::sync::atomic::AtomicU32::new(0);
    let saved = AtomicU64::new(0);
    proptest!(ProptestConfig::with_cases(32), |(
        burst in 1u32..5,
        period_ms in 10u64..500,
        ops in proptest::collection::vec((0u64..50_000, 0u32..5), 1..80),
    )| {
        let case = cases.fetch_add(1, Ordering::Relaxed);
        let quota = Quota::new(non_zero(burst), nz!(1), Duration::from_millis(period_ms)).unwrap();
        let clock = manual_clock();
        let build = |prefix: String, cache: usize| rt.block_on(
            RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()])
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

/// A full deny cache is swept of its ended entries at most every 100 ms, so a spray of
/// denied keys does not pay a scan of the whole cache per denial: between sweeps a new
/// denial is not cached (its next check asks Redis), after one it is.
#[test]
fn a_full_deny_cache_is_swept_at_most_every_100_ms() {
    let server = RedisServer::start();
    let rt = runtime();
    let clock = manual_clock();
    let quota = Quota::new(nz!(1), nz!(1), Duration::from_millis(50)).unwrap();
    let l = rt
        .block_on(
            RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()])
                .timeout(PATIENT)
                .deny_cache_keys(1)
                .clock(Arc::new(clock.clone()))
                .connect(&server.url()),
        )
        .unwrap();
    let check = |key: &str| {
        let now = clock.now().as_unix_micros();
        rt.block_on(l.check_inner(key, 1, Some(now))).unwrap()
    };
    // Admitted, then denied by Redis: whether the next check is answered locally.
    let denial_cached = |key: &str| {
        assert!(check(key).allowed, "{key}");
        assert!(!check(key).allowed, "{key}");
        let local = l.stats().local_denied;
        assert!(!check(key).allowed, "{key}");
        l.stats().local_denied > local
    };
    assert!(denial_cached("a"), "an empty cache takes a denial");
    clock.advance(Duration::from_millis(60)); // a's entry has ended
    assert!(
        denial_cached("b"),
        "full of an ended entry: swept, b cached"
    );
    clock.advance(Duration::from_millis(60)); // b's too, 60 ms after the sweep
    assert!(!denial_cached("c"), "no second sweep within 100 ms");
    clock.advance(Duration::from_millis(50)); // 110 ms after the sweep
    assert!(denial_cached("d"), "100 ms on, swept again: d cached");
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
