//! Redis losing data (FLUSHALL, an empty restart), the repair once under the lock,
//! and the eviction-policy check.

use super::*;

/// `calls` of a command in the server's `INFO commandstats` (0 if never called).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let info = server.command(&["INFO", "commandstats"]).unwrap().text();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_data_no_replica_answers_not_revoked_until_it_is_repaired() {
    let server = RedisServer::start();
    let url = server.url();
    settled_store(&url).await;
    // Replicas on a ManualClock: the repair window passes only when the test says
    // (its backstop, ten windows on Redis's clock, outlasts the test's waits).
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let window = Duration::from_secs(2);
    let on_clock = || {
        builder()
            .clock(Arc::new(clock.clone()))
            .timeout(Duration::from_millis(300))
            .repair_window(window)
    };
    let a = on_clock().connect(&url).await.unwrap();
    let b = on_clock().connect(&url).await.unwrap();
    let held = token(1);
    let mallory = fresh_token("mallory").with_issued_at(NOW_EXP - 10);
    let unrevoked = fresh_token("x");
    a.revoke_token(&held).await.unwrap();
    a.revoke_user(
        "https://idp.example",
        "mallory",
        Timestamp::from_unix_secs(NOW_EXP - 10),
    )
    .await
    .unwrap();
    wait_until("b holds both", || {
        revoked(&b, &held) && revoked(&b, &mallory)
    })
    .await;

    // Redis loses everything; no connection drops.
    assert_eq!(server.command(&["FLUSHALL"]).unwrap().text(), "OK");
    // A replica started now, and one a second later, over a Redis that lost both.
    let c = on_clock().connect(&url).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let d = on_clock().connect(&url).await.unwrap();
    for bl in [&c, &d] {
        for t in [&held, &mallory] {
            assert_ne!(
                bl.check(t, FailurePolicy::Closed),
                RevocationStatus::NotRevoked
            );
            assert_ne!(
                bl.check_remote(t).await.unwrap(),
                RevocationStatus::NotRevoked
            );
        }
        assert_eq!(
            bl.check(&unrevoked, FailurePolicy::Closed),
            RevocationStatus::Unknown
        );
        assert_eq!(
            bl.check_remote(&unrevoked).await.unwrap(),
            RevocationStatus::Unknown
        );
    }
    // The live replicas noticed: they fail closed too, whatever the age bound, and
    // do not vouch for the store either.
    for bl in [&a, &b] {
        wait_until("loss detected", || bl.stats().data_losses == 1).await;
        assert_eq!(bl.freshness(), None);
        let lenient = FailurePolicy::Stale {
            max_age: Duration::from_secs(3600),
        };
        assert_eq!(bl.check(&unrevoked, lenient), RevocationStatus::Unknown);
        assert_eq!(
            bl.check_remote(&unrevoked).await.unwrap(),
            RevocationStatus::Unknown
        );
        assert!(revoked(bl, &held) && revoked(bl, &mallory));
    }
    // One of them restores both records, once.
    let k = token_key("palisade:tb", "https://idp.example", "user-1", "jti-1");
    wait_until("repaired in redis", || {
        server.command(&["EXISTS", &k]).unwrap().text() == "1"
    })
    .await;
    let repaired = || a.stats().repaired + b.stats().repaired;
    wait_until("both records re-written", || repaired() >= 2).await;

    // After the repair window every replica settles and answers again.
    clock.advance(window);
    for bl in [&a, &b, &c, &d] {
        wait_until("settled after the window", || {
            bl.check(&unrevoked, FailurePolicy::Closed) == RevocationStatus::NotRevoked
        })
        .await;
        assert!(revoked(bl, &held) && revoked(bl, &mallory));
        assert_eq!(
            bl.check_remote(&unrevoked).await.unwrap(),
            RevocationStatus::NotRevoked
        );
    }
    assert_eq!(repaired(), 2, "each lost record re-written once");
    let e = builder().connect(&url).await.unwrap();
    assert_eq!(
        e.check_remote(&mallory).await.unwrap(),
        RevocationStatus::Revoked
    );
    assert!(revoked(&e, &held) && revoked(&e, &mallory));
    assert_eq!(c.stats().data_losses + d.stats().data_losses, 0);
}

/// N replicas hold `n` records; `lose` makes Redis lose them all; returns how many
/// revocation-script calls Redis then ran (from its own counters) and the sum of the
/// replicas' `repaired`, once a replica started afterwards sees every record.
async fn rewrites_after(lose: impl FnOnce(&mut RedisServer)) -> (u64, u64) {
    let mut server = RedisServer::start();
    let url = server.url();
    const N: u32 = 3000;
    prefill(&url, N).await;
    let quick = || {
        builder()
            .timeout(Duration::from_millis(500))
            .fresh_within(Duration::from_millis(500))
    };
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let r = quick().connect(&url).await.unwrap();
        assert_eq!(r.len(), N as usize);
        replicas.push(r);
    }
    lose(&mut server);
    for r in &replicas {
        wait_until("fresh again", || {
            r.check(&fresh_token("x"), FailurePolicy::Closed) == RevocationStatus::NotRevoked
        })
        .await;
    }
    let late = quick().connect(&url).await.unwrap();
    wait_until("a replica started afterwards holds every record", || {
        late.len() == N as usize
    })
    .await;
    assert!((0..N).all(|i| revoked(&late, &token(i))));
    let scripts = calls(&server, "evalsha") + calls(&server, "eval");
    let repaired = replicas.iter().map(|r| r.stats().repaired).sum();
    (scripts, repaired)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_empty_restart_three_replicas_rewrite_the_records_once() {
    let (scripts, repaired) = rewrites_after(RedisServer::restart).await;
    assert_eq!(repaired, 3000, "every record re-written exactly once");
    // Redis's own count: the re-writes plus a few epoch and lock scripts, not 3 × 3000.
    assert!((3000..3300).contains(&scripts), "{scripts} script calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_flushall_three_replicas_rewrite_the_records_once() {
    let (scripts, repaired) = rewrites_after(|s| {
        assert_eq!(s.command(&["CONFIG", "RESETSTAT"]).unwrap().text(), "OK");
        assert_eq!(s.command(&["FLUSHALL"]).unwrap().text(), "OK");
    })
    .await;
    assert_eq!(repaired, 3000, "every record re-written exactly once");
    assert!((3000..3300).contains(&scripts), "{scripts} script calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_may_evict_revocations_is_refused_unless_allowed() {
    let server = RedisServer::start();
    let url = server.url();
    let acl = [
        "ACL", "SETUSER", "limited", "on", ">s3cret", "~*", "&*", "+@all", "-config",
    ];
    assert_eq!(server.command(&acl).unwrap().text(), "OK");
    // This user cannot run CONFIG: the policy comes from INFO memory instead.
    let limited = format!("redis://limited:s3cret@127.0.0.1:{}/", server.port());
    for policy in ["allkeys-lru", "volatile-ttl"] {
        let set = ["CONFIG", "SET", "maxmemory-policy", policy];
        assert_eq!(server.command(&set).unwrap().text(), "OK");
        for u in [&url, &limited] {
            match builder().connect(u).await {
                Err(e @ Error::UnsafeEvictionPolicy { .. }) => {
                    let Error::UnsafeEvictionPolicy { policy: found } = &e else {
                        unreachable!()
                    };
                    assert_eq!(found, policy);
                    assert!(!e.to_string().contains("s3cret"), "{e}");
                }
                Err(other) => panic!("{policy}: {other}"),
                Ok(_) => panic!("{policy}: connected"),
            }
        }
    }
    // Allowed explicitly: it connects, and counts that it went on anyway.
    let allowed = builder()
        .allow_eviction_policy(true)
        .connect(&limited)
        .await
        .unwrap();
    assert!(allowed.stats().eviction_policy_allowed >= 1);
    assert!(!format!("{allowed:?}").contains("s3cret"), "{allowed:?}");
    let set = ["CONFIG", "SET", "maxmemory-policy", "noeviction"];
    assert_eq!(server.command(&set).unwrap().text(), "OK");
    let safe = builder().connect(&limited).await.unwrap();
    assert_eq!(safe.stats().eviction_policy_allowed, 0);
    assert!(safe.freshness().is_some());
}

#[tokio::test]
async fn a_zero_repair_window_is_refused_by_name() {
    // Validation comes before any connection, so no server is needed.
    let e = RedisBlacklist::builder()
        .repair_window(Duration::ZERO)
        .connect("redis://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            Error::InvalidConfig {
                field: "repair_window",
                ..
            }
        ),
        "{e}"
    );
}

/// Settings that would make the replica overflow a `Duration` (a lease of ten
/// timeouts), or scan nothing (`SCAN MATCH` pattern characters in the prefix: a `[`
/// matched none of the keys, and a new replica settled empty), are refused by name.
#[tokio::test]
async fn out_of_range_durations_and_pattern_characters_in_the_prefix_are_refused() {
    let field = |e: Error| match e {
        Error::InvalidConfig { field, .. } => field,
        other => panic!("{other}"),
    };
    let refused = |b: crate::RedisBlacklistBuilder| async move {
        field(b.connect("redis://127.0.0.1:1/").await.unwrap_err())
    };
    let b = RedisBlacklist::builder;
    assert_eq!(refused(b().timeout(Duration::MAX)).await, "timeout");
    assert_eq!(
        refused(b().repair_window(Duration::from_secs(24 * 3600 + 1))).await,
        "repair_window"
    );
    for prefix in ["tb[prod]", "tb\\1", "tb*", "tb?", "tb]", "{tb}"] {
        assert_eq!(refused(b().prefix(prefix)).await, "prefix", "{prefix}");
    }
    let config = |c: crate::Config| async move { refused(b().config(c)).await };
    assert_eq!(
        config(crate::Config::default().max_token_lifetime(Duration::MAX)).await,
        "max_token_lifetime"
    );
    assert_eq!(
        config(crate::Config::default().leeway(Duration::MAX)).await,
        "leeway"
    );
    assert_eq!(
        config(crate::Config::default().skew(Duration::from_secs(86_401))).await,
        "skew"
    );
}
