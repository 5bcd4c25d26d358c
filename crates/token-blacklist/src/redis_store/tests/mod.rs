#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::time::{Duration, Instant};

use palisade_core_traits::{Clock, ManualClock, SystemClock};
use palisade_testkit::{RedisCluster, RedisServer};

use super::*;
use crate::Config;
use crate::wire::encode;

const NOW_EXP: u64 = 4_000_000_000;

fn token(i: u32) -> TokenIdentity {
    TokenIdentity::new("https://idp.example")
        .with_subject(format!("user-{}", i % 7))
        .with_jti(format!("jti-{i}"))
        .with_issued_at(NOW_EXP - 1000)
        .with_expires_at(NOW_EXP)
}

fn fresh_token(sub: &str) -> TokenIdentity {
    TokenIdentity::new("https://idp.example")
        .with_subject(sub)
        .with_jti(format!("never-revoked-{sub}"))
        .with_issued_at(NOW_EXP - 1)
        .with_expires_at(NOW_EXP)
}

fn builder() -> RedisBlacklistBuilder {
    // Long timeouts: CI runs many tests in parallel on 2 cores.
    RedisBlacklist::builder()
        .timeout(Duration::from_secs(3))
        .heartbeat(Duration::from_millis(50))
        // Not an outage test: a stalled CI machine must not make a replica "stale".
        .fresh_within(Duration::from_secs(10))
        // A new store's first replica waits this long before it is fresh.
        .repair_window(Duration::from_millis(300))
        .config(Config::default().max_token_lifetime(Duration::from_secs(3600)))
}

/// Gives a new store its epoch and waits out the repair window, so replicas on a
/// `ManualClock` (whose monotonic time only moves when the test says) find a settled
/// store instead of waiting for a window that never passes.
async fn settled_store(url: &str) {
    let first = builder().connect(url).await.unwrap();
    assert!(first.freshness().is_some(), "settled");
}

/// Polls until `cond` holds; fails the test after 30 s (a bound, not a measurement).
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn revoked(bl: &RedisBlacklist, t: &TokenIdentity) -> bool {
    bl.check(t, FailurePolicy::Closed) == RevocationStatus::Revoked
}

#[test]
fn records_round_trip_whatever_the_identifiers_hold() {
    let ids = ["a", "with space", "co:lon", "{brace}", "12:ab", "é ü"];
    for iss in ids {
        for sub in ids {
            let records = [
                Record::Token {
                    issuer: iss.into(),
                    subject: sub.into(),
                    jti: "j 1:2".into(),
                    expires_ms: 17,
                },
                Record::Token {
                    issuer: iss.into(),
                    subject: "".into(),
                    jti: sub.into(),
                    expires_ms: 1,
                },
                Record::Mark {
                    scope: Scope::User {
                        issuer: iss.into(),
                        subject: sub.into(),
                    },
                    secs: 5,
                    expires_ms: 9,
                },
                Record::Mark {
                    scope: Scope::Issuer { issuer: iss.into() },
                    secs: 5,
                    expires_ms: 9,
                },
                Record::Mark {
                    scope: Scope::Global,
                    secs: 5,
                    expires_ms: 9,
                },
            ];
            for r in records {
                assert_eq!(decode(&encode(&r)), Some(r.clone()), "{}", encode(&r));
            }
        }
    }
    for bad in [
        "",
        "T",
        "T 0 1",
        "T 0 1 9:ab",
        "X 0 1 a",
        "U 1 2 1:a",
        "I 1 2 ",
        "G 1 2 x",
        "T 0 1 2:é",
    ] {
        assert_eq!(decode(bad), None, "{bad:?}");
    }
    // A token's key and its subject's watermark key share one hash tag.
    let t = token_key("p", "iss", "alice", "j");
    let u = user_key("p", "iss", "alice");
    let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
    assert_eq!(tag(&t), tag(&u));
    assert_ne!(tag(&u), tag(&user_key("p", "iss", "bob")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_is_seen_by_all_three() {
    let server = RedisServer::start();
    let url = server.url();
    let a = builder().connect(&url).await.unwrap();
    let b = builder().connect(&url).await.unwrap();
    let c = builder().connect(&url).await.unwrap();
    for bl in [&a, &b, &c] {
        assert!(
            bl.freshness().is_some(),
            "first resync done before connect returns"
        );
        assert_eq!(
            bl.check(&fresh_token("x"), FailurePolicy::Closed),
            RevocationStatus::NotRevoked
        );
    }
    a.revoke_token(&token(1)).await.unwrap();
    // Through the core-traits contract, as a playbook would.
    let b = Arc::new(b);
    let revoker: Arc<dyn TokenRevoker> = b.clone();
    revoker
        .revoke_user(
            "https://idp.example",
            "mallory",
            Timestamp::from_unix_secs(NOW_EXP - 10),
        )
        .await
        .unwrap();
    let b = &*b;
    c.revoke_issuer(
        "https://old-idp.example",
        Timestamp::from_unix_secs(NOW_EXP - 10),
    )
    .await
    .unwrap();
    let mallory = fresh_token("mallory").with_issued_at(NOW_EXP - 10);
    let old_idp = TokenIdentity::new("https://old-idp.example").with_issued_at(NOW_EXP - 20);
    for bl in [&a, b, &c] {
        wait_until("all three revocations everywhere", || {
            revoked(bl, &token(1)) && revoked(bl, &mallory) && revoked(bl, &old_idp)
        })
        .await;
        assert_eq!(
            bl.check(&fresh_token("x"), FailurePolicy::Closed),
            RevocationStatus::NotRevoked
        );
        assert_eq!(bl.len(), 3);
    }
    // The store itself answers the same, in one round trip (jti key + user key).
    assert_eq!(
        a.check_remote(&token(1)).await.unwrap(),
        RevocationStatus::Revoked
    );
    let d = builder().connect(&url).await.unwrap();
    assert_eq!(
        d.check_remote(&mallory).await.unwrap(),
        RevocationStatus::Revoked
    );
    assert_eq!(
        d.check_remote(&fresh_token("x")).await.unwrap(),
        RevocationStatus::NotRevoked
    );
    // A new replica gets everything from its first resync.
    assert_eq!(d.len(), 3);
    assert!(revoked(&d, &old_idp));
    // Redis holds the entries with a TTL no longer than their lifetime.
    let key = token_key("palisade:tb", "https://idp.example", "user-1", "jti-1");
    // Local time read before Redis computes the TTL: Redis's "now" is at least this.
    let before_ms = (SystemClock.now().as_unix_nanos() / 1_000_000) as i64;
    let pttl: i64 = server
        .command(&["PTTL", &key])
        .unwrap()
        .text()
        .parse()
        .unwrap();
    assert!(pttl > 0, "{pttl}");
    // exp + leeway + skew, never more (one Redis/host clock, so no skew between them).
    assert!(pttl <= ((NOW_EXP + 65) * 1000) as i64 - before_ms, "{pttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_watermark_never_narrows_one_in_redis() {
    let server = RedisServer::start();
    let a = builder().connect(&server.url()).await.unwrap();
    a.revoke_user("iss", "alice", Timestamp::from_unix_secs(NOW_EXP - 10))
        .await
        .unwrap();
    a.revoke_user("iss", "alice", Timestamp::from_unix_secs(NOW_EXP - 500))
        .await
        .unwrap();
    let b = builder().connect(&server.url()).await.unwrap();
    let t = TokenIdentity::new("iss")
        .with_subject("alice")
        .with_issued_at(NOW_EXP - 11);
    assert_eq!(b.check_remote(&t).await.unwrap(), RevocationStatus::Revoked);
    assert_eq!(
        b.check(&t, FailurePolicy::Closed),
        RevocationStatus::Revoked
    );
}

/// Redis going back to an older value of a key it kept (a restart from an old RDB
/// snapshot, a failover to a replica that missed a write; the epoch key survives, so
/// no loss is seen): a replica's resync writes back the wider record it holds, so a
/// replica started afterwards does not accept what the later revocation covered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_widens_a_record_redis_went_back_to_an_older_value_of() {
    let server = RedisServer::start();
    let a = builder().connect(&server.url()).await.unwrap();
    let iss = "https://idp.example";
    let between = TokenIdentity::new(iss)
        .with_subject("alice")
        .with_jti("between")
        .with_issued_at(NOW_EXP - 1000)
        .with_expires_at(NOW_EXP);
    let (earlier, later) = (NOW_EXP - 2000, NOW_EXP - 500);
    // Watermarks are stored `skew` (Config's default, 5 s) past the time given.
    let stored = |secs: u64| format!(" {} ", secs + 5);
    for scope in [
        Scope::User {
            issuer: iss.into(),
            subject: "alice".into(),
        },
        Scope::Global,
    ] {
        let revoke = |secs| {
            let a = &a;
            let scope = scope.clone();
            async move {
                let at = Timestamp::from_unix_secs(secs);
                match scope {
                    Scope::Global => a.revoke_all(at).await,
                    _ => a.revoke_user(iss, "alice", at).await,
                }
            }
        };
        let k = key(
            "palisade:tb",
            &Record::Mark {
                scope: scope.clone(),
                secs: 0,
                expires_ms: 0,
            },
        );
        revoke(earlier).await.unwrap();
        let old = server.command(&["GET", &k]).unwrap().text();
        assert!(old.contains(&stored(earlier)), "{old}");
        revoke(later).await.unwrap();
        assert!(revoked(&a, &between));
        // Redis back at the earlier value, TTL included.
        let pttl = server.command(&["PTTL", &k]).unwrap().text();
        let reply = server.command(&["SET", &k, &old, "PX", &pttl]).unwrap();
        assert_eq!(reply.text(), "OK");
        let (_, repaired) = a.resync().await.unwrap();
        assert_eq!(repaired, 1, "{scope:?}");
        let now = server.command(&["GET", &k]).unwrap().text();
        assert!(now.contains(&stored(later)), "{scope:?}: {now}");
        let c = builder().connect(&server.url()).await.unwrap();
        assert!(revoked(&c, &between), "a new replica: {scope:?}");
        assert_eq!(
            c.check_remote(&between).await.unwrap(),
            RevocationStatus::Revoked
        );
        // A record Redis holds as wide as ours is left alone.
        assert_eq!(a.resync().await.unwrap().1, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_subscribers_in_the_middle_of_a_burst_still_converges() {
    let server = RedisServer::start();
    let url = server.url();
    let a = builder().connect(&url).await.unwrap();
    let b = builder().connect(&url).await.unwrap();
    let c = builder().connect(&url).await.unwrap();
    const N: u32 = 300;
    for i in 0..N {
        a.revoke_token(&token(i)).await.unwrap();
        if i == N / 2 {
            let killed = server
                .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
                .unwrap()
                .text();
            assert_eq!(killed, "3", "one subscriber per replica");
        }
    }
    for bl in [&a, &b, &c] {
        wait_until("every revocation on every replica", || {
            (0..N).all(|i| revoked(bl, &token(i)))
        })
        .await;
    }
    for bl in [&b, &c] {
        wait_until("resubscribed and resynced", || bl.stats().resyncs >= 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_revocation_is_lost_across_a_redis_crash() {
    let mut server = RedisServer::start();
    let url = server.url();
    let quick = || {
        builder()
            .timeout(Duration::from_millis(500))
            .fresh_within(Duration::from_millis(300))
    };
    let a = quick().connect(&url).await.unwrap();
    let b = quick().connect(&url).await.unwrap();
    let c = quick().connect(&url).await.unwrap();
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for i in 0..200u32 {
        if i == 100 {
            // SIGKILL: the fixture runs without persistence, so Redis comes back empty.
            server.stop();
        }
        match a.revoke_token(&token(i)).await {
            Ok(()) => acknowledged.push(i),
            Err(_) => refused += 1,
        }
        // Checks keep answering from memory during the outage.
        let _ = b.check(&token(i), FailurePolicy::Closed);
    }
    assert!(acknowledged.len() >= 100, "{}", acknowledged.len());
    assert!(refused > 0, "revocations fail loudly while Redis is away");

    // During the outage: the replicas go stale, and each policy answers as documented.
    wait_until("replica stale", || {
        b.freshness().is_none_or(|f| f > Duration::from_millis(300))
    })
    .await;
    let unrevoked = fresh_token("x");
    assert_eq!(
        b.check(&unrevoked, FailurePolicy::Closed),
        RevocationStatus::Unknown
    );
    assert_eq!(
        b.check(
            &unrevoked,
            FailurePolicy::Stale {
                max_age: Duration::from_secs(3600)
            }
        ),
        RevocationStatus::NotRevoked
    );
    assert_eq!(
        b.check(
            &unrevoked,
            FailurePolicy::Stale {
                max_age: Duration::from_millis(1)
            }
        ),
        RevocationStatus::Unknown
    );
    let open_before = b.stats().stale_allowed;
    assert_eq!(
        b.check(&unrevoked, FailurePolicy::Open),
        RevocationStatus::NotRevoked
    );
    assert_eq!(
        b.stats().stale_allowed,
        open_before + 1,
        "open answers are counted"
    );
    assert!(b.stats().stale_unknown >= 2);
    // What a replica holds stays revoked under every policy.
    for p in [FailurePolicy::Closed, FailurePolicy::Open] {
        assert_eq!(
            a.check(&token(acknowledged[0]), p),
            RevocationStatus::Revoked
        );
    }

    server.restart();
    for bl in [&a, &b, &c] {
        wait_until("fresh again after restart", || {
            bl.check(&unrevoked, FailurePolicy::Closed) == RevocationStatus::NotRevoked
        })
        .await;
    }
    // The replicas re-wrote what the empty Redis had lost: a replica that starts now
    // sees every acknowledged revocation.
    let d = quick().connect(&url).await.unwrap();
    for bl in [&a, &b, &c, &d] {
        wait_until("every acknowledged revocation", || {
            acknowledged.iter().all(|&i| revoked(bl, &token(i)))
        })
        .await;
    }
    assert!(
        a.stats().repaired + b.stats().repaired + c.stats().repaired >= acknowledged.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_converge_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let a = builder().connect_cluster(&urls).await.unwrap();
    let b = builder().connect_cluster(&urls).await.unwrap();
    let c = builder().connect_cluster(&urls).await.unwrap();
    const N: u32 = 100;
    for i in 0..N {
        a.revoke_token(&token(i)).await.unwrap();
        if i == N / 2 {
            // Every replica's subscriber is on one of the nodes: kill them all.
            let killed: u32 = cluster
                .nodes()
                .iter()
                .map(|n| {
                    let r = n.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).unwrap();
                    r.text().parse::<u32>().unwrap()
                })
                .sum();
            assert_eq!(killed, 3, "one subscriber per replica");
        }
    }
    b.revoke_user(
        "https://idp.example",
        "mallory",
        Timestamp::from_unix_secs(NOW_EXP - 10),
    )
    .await
    .unwrap();
    let mallory = fresh_token("mallory").with_issued_at(NOW_EXP - 10);
    for bl in [&a, &b, &c] {
        wait_until("every revocation on every replica", || {
            (0..N).all(|i| revoked(bl, &token(i))) && revoked(bl, &mallory)
        })
        .await;
    }
    // Every node holds its own epoch key (so a loss on any node is seen)...
    for n in cluster.nodes() {
        let epochs = n.command(&["KEYS", "palisade:tb:{e*}:epoch"]).unwrap();
        assert_eq!(epochs.text().lines().count(), 1, "{epochs:?}");
    }
    // ...records spread over the nodes, and a new replica's resync finds all of them.
    let counts: Vec<i64> = cluster
        .nodes()
        .iter()
        .map(|n| {
            n.command(&["DBSIZE"])
                .unwrap()
                .text()
                .parse::<i64>()
                .unwrap()
                - 1
        })
        .collect();
    assert_eq!(counts.iter().sum::<i64>(), i64::from(N) + 1, "{counts:?}");
    assert!(counts.iter().filter(|&&c| c > 0).count() >= 2, "{counts:?}");
    let d = builder().connect_cluster(&urls).await.unwrap();
    for bl in [&a, &b, &c] {
        wait_until("resubscribed and resynced", || bl.stats().resyncs >= 2).await;
    }
    assert_eq!(d.len(), N as usize + 1);
    // One-round-trip remote check works across slots (no CROSSSLOT).
    assert_eq!(
        d.check_remote(&token(3)).await.unwrap(),
        RevocationStatus::Revoked
    );
    assert_eq!(
        d.check_remote(&mallory).await.unwrap(),
        RevocationStatus::Revoked
    );
    assert_eq!(
        d.check_remote(&fresh_token("y")).await.unwrap(),
        RevocationStatus::NotRevoked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_resync_bounds_how_long_a_lost_message_hides_a_revocation() {
    let server = RedisServer::start();
    let a = builder()
        .resync_every(Duration::from_millis(200))
        .connect(&server.url())
        .await
        .unwrap();
    // A write whose message never arrives: SET without PUBLISH, as if lost.
    let t = token(42);
    let record = Record::Token {
        issuer: t.issuer.as_str().into(),
        subject: "user-0".into(),
        jti: "jti-42".into(),
        expires_ms: (NOW_EXP + 65) * 1000,
    };
    let k = key("palisade:tb", &record);
    let resyncs = a.stats().resyncs;
    let reply = server.command(&["SET", &k, &encode(&record)]).unwrap();
    assert_eq!(reply.text(), "OK");
    wait_until("picked up by a periodic resync", || revoked(&a, &t)).await;
    // (A resync is counted when it has finished, a little after it applied the record.)
    wait_until("that resync counted", || a.stats().resyncs > resyncs).await;
    assert_eq!(a.stats().messages, 0, "not through pub/sub");
}

/// A token with `"sub": ""` (accepted by jwt-cache's default policy) is revoked
/// one at a time: on the replica that revoked it, on another one (pub/sub and a
/// new replica's resync), and by `check_remote`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_an_empty_subject_is_revoked_everywhere() {
    let server = RedisServer::start();
    let url = server.url();
    let a = builder().connect(&url).await.unwrap();
    let b = builder().connect(&url).await.unwrap();
    let t = TokenIdentity::new("https://idp.example")
        .with_subject("")
        .with_jti("empty-sub")
        .with_issued_at(NOW_EXP - 1000)
        .with_expires_at(NOW_EXP);
    a.revoke_token(&t).await.unwrap();
    assert!(revoked(&a, &t));
    wait_until("the other replica sees it", || revoked(&b, &t)).await;
    assert_eq!(a.check_remote(&t).await.unwrap(), RevocationStatus::Revoked);
    let c = builder().connect(&url).await.unwrap();
    assert!(revoked(&c, &t), "found by the first resync");
    // The same (iss, jti) without `sub` is the same record, under the same key.
    let no_sub = TokenIdentity::new("https://idp.example")
        .with_jti("empty-sub")
        .with_issued_at(NOW_EXP - 1000)
        .with_expires_at(NOW_EXP);
    assert!(revoked(&c, &no_sub));
    assert_eq!(
        c.check_remote(&no_sub).await.unwrap(),
        RevocationStatus::Revoked
    );
}

/// Records filed under a hash tag that begins with `e`, like the epoch keys
/// (`prefix:{e0}:epoch`; one record tag in sixteen does): a new replica's resync reads
/// them. It once skipped them as its own bookkeeping, so a token revoked while a
/// replica was down stayed valid there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_reads_records_whose_hash_tag_begins_like_an_epoch_key() {
    let server = RedisServer::start();
    let url = server.url();
    let a = builder().connect(&url).await.unwrap();
    let tag_of = |k: &str| k.split_once(":{").unwrap().1.chars().next().unwrap();
    let mut tokens = Vec::new();
    let mut users = Vec::new();
    for i in 0.. {
        if tokens.len() == 4 && users.len() == 3 {
            break;
        }
        let subject = format!("subject-{i}");
        let t = fresh_token(&subject);
        let k = token_key("palisade:tb", &t.issuer, &subject, t.jti.as_ref().unwrap());
        if tag_of(&k) == 'e' && tokens.len() < 4 {
            a.revoke_token(&t).await.unwrap();
            tokens.push(t);
        } else if users.len() < 3 {
            let until = Timestamp::from_unix_secs(NOW_EXP);
            a.revoke_user(&t.issuer, &subject, until).await.unwrap();
            users.push(t);
        }
    }
    // Users under `e` tags too: their watermark keys share the token's tag.
    for t in tokens.iter().take(2) {
        let subject = t.subject.as_ref().unwrap();
        let until = Timestamp::from_unix_secs(NOW_EXP);
        a.revoke_user(&t.issuer, subject, until).await.unwrap();
    }
    let c = builder().connect(&url).await.unwrap();
    for t in tokens.iter().chain(&users) {
        assert!(revoked(&c, t), "{t:?} found by the first resync");
    }
    let later_token_of = |t: &TokenIdentity| {
        TokenIdentity::new(t.issuer.as_str())
            .with_subject(t.subject.clone().unwrap())
            .with_jti("later")
            .with_issued_at(NOW_EXP - 10)
            .with_expires_at(NOW_EXP)
    };
    for t in tokens.iter().take(2) {
        assert!(revoked(&c, &later_token_of(t)), "its user's watermark too");
    }
}

/// A watermark whose message never reached this replica (written without PUBLISH):
/// the replica does not know it, `check_remote` reads it from Redis. Issuer and global
/// watermarks too, which live under other hash tags than the token's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_remote_reads_issuer_and_global_watermarks_a_replica_missed() {
    let server = RedisServer::start();
    let a = builder().connect(&server.url()).await.unwrap();
    let t = token(5);
    for scope in [
        Scope::Issuer {
            issuer: t.issuer.as_str().into(),
        },
        Scope::Global,
    ] {
        let record = Record::Mark {
            scope,
            secs: NOW_EXP - 500,
            expires_ms: (NOW_EXP + 65) * 1000,
        };
        let k = key("palisade:tb", &record);
        assert_eq!(
            a.check(&t, FailurePolicy::Closed),
            RevocationStatus::NotRevoked
        );
        assert_eq!(
            a.check_remote(&t).await.unwrap(),
            RevocationStatus::NotRevoked
        );
        let reply = server.command(&["SET", &k, &encode(&record)]).unwrap();
        assert_eq!(reply.text(), "OK");
        assert_eq!(
            a.check(&t, FailurePolicy::Closed),
            RevocationStatus::NotRevoked
        );
        assert_eq!(
            a.check_remote(&t).await.unwrap(),
            RevocationStatus::Revoked,
            "{record:?}"
        );
        // Issued after the watermark: not revoked by it.
        assert_eq!(
            a.check_remote(&fresh_token("user-5")).await.unwrap(),
            RevocationStatus::NotRevoked
        );
        assert_eq!(server.command(&["DEL", &k]).unwrap().text(), "1");
    }
}

/// A replica whose local store holds five revocations.
async fn five_slot_replica(url: &str) -> RedisBlacklist {
    builder()
        .config(Config::default().capacity(std::num::NonZeroUsize::new(5).unwrap()))
        .connect(url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replica_fails_closed_instead_of_forgetting() {
    let server = RedisServer::start();
    let a = builder().connect(&server.url()).await.unwrap();
    let small = five_slot_replica(&server.url()).await;
    for i in 0..10 {
        a.revoke_token(&token(i)).await.unwrap();
    }
    wait_until("all messages delivered", || small.stats().messages >= 10).await;
    assert_eq!(small.len(), 5);
    assert_eq!(small.freshness(), None);
    let statuses: Vec<_> = (0..10)
        .map(|i| small.check(&token(i), FailurePolicy::Closed))
        .collect();
    let held = statuses
        .iter()
        .filter(|s| **s == RevocationStatus::Revoked)
        .count();
    let unknown = statuses
        .iter()
        .filter(|s| **s == RevocationStatus::Unknown)
        .count();
    assert_eq!((held, unknown), (5, 5), "{statuses:?}");
    // A stale-tolerant policy cannot help either: there is no proven view at all.
    // Messages arrive in order: the first five are held, the last five are not.
    assert_eq!(
        small.check(&token(9), FailurePolicy::Closed),
        RevocationStatus::Unknown
    );
    let lenient = FailurePolicy::Stale {
        max_age: Duration::from_secs(3600),
    };
    assert_eq!(small.check(&token(9), lenient), RevocationStatus::Unknown);
    assert_eq!(small.check(&token(0), lenient), RevocationStatus::Revoked);
}

/// A resync that held everything it read does not make a replica fresh if a
/// revocation was refused while it ran (it arrived by pub/sub and the scan may not
/// have read it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_refused_during_a_resync_keeps_the_replica_incomplete() {
    let server = RedisServer::start();
    let a = builder().connect(&server.url()).await.unwrap();
    let small = five_slot_replica(&server.url()).await;
    for i in 0..5 {
        a.revoke_token(&token(i)).await.unwrap();
    }
    wait_until("all five held", || small.len() == 5).await;
    // A resync that reads the five: it holds every record it read.
    let synced = small.inner.resync_traced().await.unwrap();
    assert!(synced.complete);
    // Before it settles, a sixth revocation arrives and cannot be held.
    a.revoke_token(&token(5)).await.unwrap();
    wait_until("the sixth refused", || {
        small.inner.drops.load(std::sync::atomic::Ordering::Acquire) > 0
    })
    .await;
    assert_eq!(small.freshness(), None);
    small.inner.settle(&synced, None);
    assert_eq!(
        small.freshness(),
        None,
        "a refused revocation was forgotten"
    );
    assert_eq!(
        small.check(&token(5), FailurePolicy::Closed),
        RevocationStatus::Unknown
    );
}

/// A full replica asked to revoke answers `Full`, but the revocation is still written
/// to Redis, so every other replica refuses the token; the full one stops calling
/// itself fresh. Before, nothing was written: the revocation existed nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_replica_still_shares_the_revocation_it_cannot_hold() {
    let server = RedisServer::start();
    let small = five_slot_replica(&server.url()).await;
    let other = builder().connect(&server.url()).await.unwrap();
    for i in 0..5 {
        small.revoke_token(&token(i)).await.unwrap();
    }
    assert!(small.freshness().is_some());
    assert!(matches!(
        small.revoke_token(&token(5)).await,
        Err(Error::Full { capacity: 5 })
    ));
    wait_until("the sixth reaches the other replica", || {
        revoked(&other, &token(5))
    })
    .await;
    assert_eq!(
        other.check_remote(&token(5)).await.unwrap(),
        RevocationStatus::Revoked
    );
    assert_eq!(small.freshness(), None);
    assert_eq!(
        small.check(&token(5), FailurePolicy::Closed),
        RevocationStatus::Unknown
    );
}

/// Wall time for tests on a `ManualClock` (lifetimes are far in the future: NOW_EXP).
const T0: u64 = 1_700_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_step_never_makes_a_stalled_replica_look_fresh() {
    let mut server = RedisServer::start();
    settled_store(&server.url()).await;
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let a = builder()
        .clock(Arc::new(clock.clone()))
        .fresh_within(Duration::from_secs(1))
        .connect(&server.url())
        .await
        .unwrap();
    let unrevoked = fresh_token("x");
    assert_eq!(
        a.check(&unrevoked, FailurePolicy::Closed),
        RevocationStatus::NotRevoked
    );
    // NTP steps the wall clock an hour forward; heartbeats keep coming back...
    clock.set(Timestamp::from_unix_secs(T0 + 3600));
    wait_until("in sync after the step", || {
        a.freshness() == Some(Duration::ZERO)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // a few heartbeats more
    // ...then back, and the replica stalls: nothing can reach it any more.
    clock.set(Timestamp::from_unix_secs(T0));
    server.stop();
    clock.advance(Duration::from_secs(10));
    // Ten seconds without a heartbeat are ten seconds, whatever the wall clock did.
    assert_eq!(a.freshness(), Some(Duration::from_secs(10)));
    assert_eq!(
        a.check(&unrevoked, FailurePolicy::Closed),
        RevocationStatus::Unknown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_traits_check_answers_by_the_configured_policy() {
    let mut server = RedisServer::start();
    let clock = ManualClock::new(Timestamp::from_unix_secs(T0));
    let url = server.url();
    settled_store(&url).await;
    let with = |policy: Option<FailurePolicy>| {
        let b = builder()
            .clock(Arc::new(clock.clone()))
            .fresh_within(Duration::from_secs(1));
        let b = match policy {
            Some(p) => b.failure_policy(p),
            None => b,
        };
        b.connect(&url)
    };
    let default = with(None).await.unwrap();
    let open = with(Some(FailurePolicy::Open)).await.unwrap();
    let hour = FailurePolicy::Stale {
        max_age: Duration::from_secs(3600),
    };
    let stale_1h = with(Some(hour)).await.unwrap();
    let stale_5s = with(Some(FailurePolicy::Stale {
        max_age: Duration::from_secs(5),
    }))
    .await
    .unwrap();
    let held = token(1);
    open.revoke_token(&held).await.unwrap();
    let checks: [(&RedisBlacklist, RevocationStatus); 4] = [
        (&default, RevocationStatus::Unknown),
        (&open, RevocationStatus::NotRevoked),
        (&stale_1h, RevocationStatus::NotRevoked),
        (&stale_5s, RevocationStatus::Unknown),
    ];
    server.stop();
    clock.advance(Duration::from_secs(10)); // every replica is 10 s stale
    let unrevoked = fresh_token("x");
    for (bl, expected) in checks {
        let contract: &dyn RevocationCheck = bl;
        let before = bl.stats();
        assert_eq!(contract.check_local(&unrevoked), Some(expected));
        let after = bl.stats();
        // Every stale answer is counted, as allowed or as unknown.
        assert_eq!(
            (after.stale_allowed - before.stale_allowed)
                + (after.stale_unknown - before.stale_unknown),
            1
        );
    }
    // A revocation the replica holds is refused under every policy.
    assert_eq!(
        (&open as &dyn RevocationCheck).check_local(&held),
        Some(RevocationStatus::Revoked)
    );
}

/// Writes `n` token records straight into Redis (pipelined SETs, no messages): a
/// large store for resync tests, built in seconds rather than n round trips.
async fn prefill(url: &str, n: u32) {
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let t = token(i);
            let r = Config::default()
                .token_record(&t, Timestamp::from_unix_secs(T0))
                .unwrap()
                .unwrap();
            pipe.set(key("palisade:tb", &r), encode(&r)).ignore();
        }
        let () = pipe.query_async(&mut c).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_keep_answering_while_a_large_store_resyncs() {
    let server = RedisServer::start();
    let url = server.url();
    // A writer that holds nothing of the large store and never resyncs during the test.
    let b = builder().connect(&url).await.unwrap();
    // 200k records: a resync takes seconds here, well above `fresh_within`.
    const N: u32 = 200_000;
    prefill(&url, N).await;
    let fresh_within = Duration::from_secs(2);
    let a = builder()
        .fresh_within(fresh_within)
        .resync_every(Duration::from_secs(2))
        .connect(&url)
        .await
        .unwrap();
    assert_eq!(a.len(), N as usize);
    let unrevoked = fresh_token("x");
    let mallory = fresh_token("mallory").with_issued_at(NOW_EXP - 100);
    let r0 = a.stats().resyncs;
    let (mut during, mut revoked_seen) = (0u32, 0u32);
    let mut unknown = Vec::new(); // (freshness, resyncs) of each Unknown answer
    let mut raised = false;
    // Sample until two periodic resyncs have completed: the whole second one is sampled.
    while a.stats().resyncs < r0 + 2 {
        let in_second = a.stats().resyncs == r0 + 1;
        if in_second && !raised {
            // Messages during a resync: a low then a high watermark for mallory. They
            // must be applied (not lost), and the high one must stay.
            for secs in [NOW_EXP - 500, NOW_EXP - 50] {
                b.revoke_user(
                    "https://idp.example",
                    "mallory",
                    Timestamp::from_unix_secs(secs),
                )
                .await
                .unwrap();
            }
            raised = true;
        }
        for (t, expected) in [
            (&unrevoked, RevocationStatus::NotRevoked),
            (&token(N / 2), RevocationStatus::Revoked),
        ] {
            match a.check(t, FailurePolicy::Closed) {
                RevocationStatus::Unknown => unknown.push((a.freshness(), a.stats().resyncs)),
                s => assert_eq!(s, expected),
            }
        }
        if in_second {
            during += 1;
            revoked_seen += u32::from(revoked(&a, &mallory));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(during > 0, "sampled during the second periodic resync");
    assert!(unknown.is_empty(), "Unknown during a resync: {unknown:?}");
    assert!(revoked_seen > 0, "a message was applied during the resync");
    assert!(revoked(&a, &mallory));
    assert_eq!(
        a.check(
            &mallory.clone().with_issued_at(NOW_EXP - 50),
            FailurePolicy::Closed
        ),
        RevocationStatus::Revoked,
        "the higher watermark stays"
    );
}

// Redis losing data, the repair, and the eviction-policy check.
mod loss;

/// A subscription whose server went silent without closing it is replaced: the
/// replica stops hearing its own heartbeats (which Redis still takes, through the
/// connection manager), resubscribes and resyncs. Before, it waited for the next
/// periodic resync (60 s by default) for every revocation, and under `Closed`
/// answered `Unknown` meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_that_went_silent_is_replaced() {
    let server = RedisServer::start();
    let proxy = palisade_testkit::FreezingProxy::start(server.port());
    let manager = redis::Client::open(server.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let through_proxy = redis::Client::open(proxy.redis_url()).unwrap();
    let replica = builder()
        .timeout(Duration::from_secs(1))
        .connect_manager(manager, through_proxy)
        .await
        .unwrap();
    let other = builder().connect(&server.url()).await.unwrap();
    other.revoke_token(&token(1)).await.unwrap();
    wait_until("the first revocation", || revoked(&replica, &token(1))).await;
    proxy.freeze();
    other.revoke_token(&token(2)).await.unwrap();
    // Three timeouts of silence, then a new subscription and its resync (not the
    // periodic one, 60 s away: the wait gives up after 30).
    wait_until("the revocation made after the freeze", || {
        revoked(&replica, &token(2))
    })
    .await;
    other.revoke_token(&token(3)).await.unwrap();
    wait_until("a revocation through the new subscription", || {
        revoked(&replica, &token(3))
    })
    .await;
}

/// A Redis that stalls for longer than the silence bound (here every client paused for
/// 4 s; a fork for a snapshot, a network blip) with the subscription alive is not a
/// dead subscription: the first heartbeat Redis takes afterwards comes back, and the
/// replica neither resubscribes nor starts a full resync. Measuring the silence from
/// the last heartbeat heard made every replica resync at once after such a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_stall_with_the_subscription_alive_is_not_taken_for_silence() {
    let server = RedisServer::start();
    let replica = builder()
        .timeout(Duration::from_secs(1))
        .connect(&server.url())
        .await
        .unwrap();
    wait_until("settled", || replica.freshness().is_some()).await;
    let resyncs = replica.stats().resyncs;
    let reply = server.command(&["CLIENT", "PAUSE", "4000", "ALL"]).unwrap();
    assert_eq!(reply.text(), "OK");
    tokio::time::sleep(Duration::from_secs(6)).await;
    wait_until("fresh again", || {
        replica
            .freshness()
            .is_some_and(|f| f < Duration::from_secs(1))
    })
    .await;
    assert_eq!(
        replica.stats().resyncs,
        resyncs,
        "no resync after the stall"
    );
}
