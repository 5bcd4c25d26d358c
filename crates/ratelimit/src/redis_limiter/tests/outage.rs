//! Outages: the failure policies, the circuit breaker, and what one check may cost.

use super::*;

/// Upper bound on how long one check may take during an outage. Generous on purpose:
/// this is a liveness check (no hang until a TCP timeout), not a performance claim.
const OUTAGE_BOUND: Duration = Duration::from_secs(2);

struct OutageRun {
    during: Vec<Decision>,
    stats_during: Stats,
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
        .timeout(Duration::from_millis(250))
        .circuit_breaker(nz!(1), Duration::from_millis(300))
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
    let run = outage(FailurePolicy::Closed, Quota::per_second(nz!(100))).await;
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
    let run = outage(FailurePolicy::Open, Quota::per_second(nz!(100))).await;
    assert!(run.during.iter().all(|d| d.allowed));
    assert_eq!(run.stats_during.failed_open, 30);
    assert_eq!(run.stats_during.failed_closed, 0);
    assert!(run.after.iter().all(|d| d.allowed));
}

#[tokio::test]
async fn outage_with_local_share_keeps_the_shared_bound() {
    // burst 10, 10/min shared by 2 instances: each may admit 5 during an outage.
    let quota = Quota::new(nz!(10), nz!(10), Duration::from_secs(60)).unwrap();
    let run = outage(FailurePolicy::LocalShare { instances: nz!(2) }, quota).await;
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
    let quota = Quota::new(nz!(20), nz!(200), Duration::from_secs(1)).unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let l = RedisLimiter::builder(vec![Policy::new("p", quota).unwrap()])
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
    // An IPv6 address is keyed by its /64.
    assert_eq!(exists("palisade:rl:{2001:db8::}:p"), Reply::Integer(1));
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

/// Every address of one IPv6 /64 is one subject on Redis, decided exactly as the
/// in-memory limiter decides for `IpAddr` keys (same trace, same clock); a block on
/// one address of the /64 refuses the others in both backends.
#[tokio::test]
async fn addresses_of_one_ipv6_64_are_one_subject_decided_as_in_memory() {
    let server = RedisServer::start();
    let clock = manual_clock();
    let p = policy("p", 2, 1, Duration::from_secs(60));
    let redis = RedisLimiter::builder(vec![p.clone()])
        .timeout(PATIENT)
        .deny_cache_keys(0)
        .clock(Arc::new(clock.clone()))
        .connect(&server.url())
        .await
        .unwrap();
    let memory: KeyedLimiter<IpAddr, ManualClock> =
        KeyedLimiter::with_clock(p.quota, clock.clone());
    // (µs since the previous check, address, admitted?)
    let trace = [
        (0, "2001:db8:1:2::1", true),
        (10, "2001:db8:1:2:ffff:ffff:ffff:ffff", true),
        (10, "2001:DB8:1:2:0:0:0:7", false), // the /64's burst of 2 is spent
        (10, "2001:db8:1:3::1", true),       // the next /64 is another client
        (10, "::ffff:192.0.2.7", true),
        (10, "192.0.2.7", true),
        (10, "192.0.2.7", false), // one quota for an IPv4 address and its mapped form
        (60_000_000, "2001:db8:1:2:abcd::1", true), // one unit back for the /64
        (10, "2001:db8:1:2::1", false),
    ];
    for (gap_us, key, admitted) in trace {
        clock.advance(Duration::from_micros(gap_us));
        let now = clock.now().as_unix_micros();
        let m = memory.check(&key.parse().unwrap(), 1).unwrap();
        let r = redis.check_inner(key, 1, Some(now)).await.unwrap();
        assert_eq!(m, r, "{key}: the backends differ");
        assert_eq!(r.allowed, admitted, "{key}: {r:?}");
    }
    let exists = |key: &str| server.command(&["EXISTS", key]).unwrap();
    assert_eq!(exists("palisade:rl:{2001:db8:1:2::}:p"), Reply::Integer(1));
    assert_eq!(exists("palisade:rl:{2001:db8:1:2::1}:p"), Reply::Integer(0));
    // Blocks: placed on one address, they refuse another of the /64 in both backends,
    // leave the next /64 alone, and are lifted through any address of the /64.
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let (x, y, elsewhere) = (
        ip("2001:db8:aa:bb::10"),
        ip("2001:db8:aa:bb:1234::99"),
        ip("2001:db8:aa:bc::10"),
    );
    let blockers: [&dyn IpBlocker; 2] = [&redis, &memory];
    for blocker in blockers {
        blocker
            .block_ip(x, Duration::from_secs(600), "credential stuffing")
            .await
            .unwrap();
    }
    let d = redis.check(&y.to_string(), 1).await.unwrap();
    assert_eq!(d.denial, Some(Denial::Blocked), "redis: {d:?}");
    let d = memory.check(&y, 1).unwrap();
    assert_eq!(d.denial, Some(Denial::Blocked), "memory: {d:?}");
    assert!(
        redis
            .check(&elsewhere.to_string(), 1)
            .await
            .unwrap()
            .allowed
    );
    assert!(memory.check(&elsewhere, 1).unwrap().allowed);
    for blocker in blockers {
        blocker.unblock_ip(y).await.unwrap();
    }
    assert!(redis.check(&x.to_string(), 1).await.unwrap().allowed);
    assert!(memory.check(&x, 1).unwrap().allowed);
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
            .timeout(Duration::from_millis(250))
            .circuit_breaker(nz!(1), Duration::from_secs(1))
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

/// `LocalShare`'s shares decide on elapsed (monotonic) time: the wall clock stepping
/// an hour forward during an outage (NTP, a resumed VM) refills nothing, where every
/// instance would otherwise admit another share at once; elapsed time does refill.
#[tokio::test]
async fn a_wall_clock_step_forward_does_not_refill_the_local_shares() {
    let mut server = persistent_server();
    let clock = manual_clock();
    // burst 10, 10/min, 2 instances: a share of 5, one more every 12 s.
    let l = RedisLimiter::builder(vec![policy("p", 10, 10, Duration::from_secs(60))])
        .timeout(Duration::from_millis(250))
        .circuit_breaker(nz!(1), Duration::from_secs(3600))
        .failure_policy(FailurePolicy::LocalShare { instances: nz!(2) })
        .deny_cache_keys(0)
        .clock(Arc::new(clock.clone()))
        .connect(&server.url())
        .await
        .unwrap();
    server.stop();
    let mut admitted = 0;
    for _ in 0..8 {
        admitted += usize::from(l.check("k", 1).await.unwrap().allowed);
    }
    assert_eq!(admitted, 5);
    let wall = clock.now().as_unix_nanos();
    clock.set(Timestamp::from_unix_nanos(wall + 3_600_000_000_000));
    assert!(
        !l.check("k", 1).await.unwrap().allowed,
        "the wall clock refilled the share"
    );
    clock.advance(Duration::from_secs(12));
    assert!(l.check("k", 1).await.unwrap().allowed, "12 s refill one");
    assert!(!l.check("k", 1).await.unwrap().allowed);
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
        // Exact to the µs. (Not a 1 µs block: its key lives 1 ms of Redis' own time,
        // which a loaded machine spends before the check reads it.)
        (
            Duration::from_secs(2) + us(1),
            Some(Duration::from_secs(2) + us(1)),
        ),
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
    let quota = Quota::new(nz!(3), nz!(3), Duration::from_secs(60)).unwrap();
    let run = outage(FailurePolicy::LocalShare { instances: nz!(6) }, quota).await;
    assert!(run.during.iter().all(|d| !d.allowed), "{:?}", run.during);
    assert!(
        run.during
            .iter()
            .all(|d| d.denial == Some(Denial::Unavailable))
    );
    assert_eq!(run.stats_during.fallback_local, 30);
    assert!(run.after.iter().all(|d| d.allowed), "{:?}", run.after);
}

/// A Redis slow to answer at connect (here every client paused for 300 ms, as a
/// server starting up or busy with a fork is) does not fail the start: the per-call
/// timeout (50 ms) is for checks, and a set-up query that timed out is asked again
/// until the connect's patience (2 s) runs out. Before, the first slow answer failed
/// the connect ("redis failed"), and a gateway on a loaded machine did not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_slow_to_answer_at_connect_does_not_fail_the_start() {
    let server = RedisServer::start();
    for _ in 0..3 {
        let paused =
            palisade_testkit::command(server.port(), &["CLIENT", "PAUSE", "300", "ALL"]).unwrap();
        assert_eq!(paused, palisade_testkit::Reply::Status("OK".into()));
        let l = RedisLimiter::builder(vec![policy("p", 5, 1, Duration::from_secs(1))])
            .timeout(Duration::from_millis(50))
            .connect(&server.url())
            .await
            .unwrap();
        assert!(l.check("alice", 1).await.unwrap().allowed);
    }
}
