//! Data loss (epochs), eviction policies, and the remaining properties.

use super::*;

/// A limiter on `url` with the given failure policy and clock, without deny cache.
async fn on_clock(
    url: &str,
    policies: Vec<Policy>,
    failure: FailurePolicy,
    clock: &ManualClock,
) -> RedisLimiter {
    RedisLimiter::builder(policies)
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
        FailurePolicy::LocalShare { instances: nz!(2) },
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
