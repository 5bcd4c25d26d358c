//! Multi-region revocation: two testkit redis-servers stand for two regions, a
//! `Relay` carries region A's revocations into region B, and B's replicas call
//! themselves fresh only while the relay proves it is current.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::time::{Duration, Instant};

use common::{builder, revoked, token, unrevoked, wait_until};
use palisade_core_traits::{RevocationStatus, Timestamp};
use palisade_testkit::{FreezingProxy, RedisServer};
use palisade_token_blacklist::{
    Error, FailurePolicy, RedisBlacklist, RedisBlacklistBuilder, Relay,
};

/// The bound B's replicas hold the relay to.
const BOUND: Duration = Duration::from_millis(800);

fn in_b() -> RedisBlacklistBuilder {
    builder().relayed_from("region-a").fresh_within(BOUND)
}

async fn relay(a: &str, b: &str) -> Relay {
    Relay::builder()
        .region("region-a")
        .timeout(Duration::from_secs(2))
        .probe_every(Duration::from_millis(50))
        .connect(a, b)
        .await
        .unwrap()
}

/// `t` was revoked in region A and that call returned at `acknowledged`: checks on
/// `bl` (region B) until it is refused. The freshness bound is the promise: a check
/// made `BOUND` or more after the acknowledgement never answers `NotRevoked` (it
/// answers `Revoked`, or `Unknown` while B cannot prove the relay current). A slow
/// machine makes B stale (Unknown), never wrong.
async fn refused_within_the_bound(
    bl: &RedisBlacklist,
    t: &palisade_core_traits::TokenIdentity,
    acknowledged: Instant,
) {
    let mut late_not_revoked = 0;
    wait_until("refused in region B", || {
        let at = Instant::now();
        let s = bl.check(t, FailurePolicy::Closed);
        if s == RevocationStatus::NotRevoked && at >= acknowledged + BOUND {
            late_not_revoked += 1;
        }
        s == RevocationStatus::Revoked
    })
    .await;
    assert_eq!(
        late_not_revoked, 0,
        "answered NotRevoked after the bound for a token revoked in region A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_in_region_a_reaches_region_b_and_a_cut_fails_closed_there() {
    let mut server_a = RedisServer::start();
    let server_b = RedisServer::start();
    let (url_a, url_b) = (server_a.url(), server_b.url());
    let a = builder().connect(&url_a).await.unwrap();
    // Revoked in A before the relay or B existed: the relay's catch-up scan carries it.
    a.revoke_token(&token(1)).await.unwrap();
    let b = in_b().connect(&url_b).await.unwrap();
    // No relay yet: B's own Redis is in sync, but nothing proves region A's revocations
    // have arrived, so B is not fresh.
    assert_eq!(b.freshness(), None);
    assert_eq!(
        b.check(&unrevoked("x"), FailurePolicy::Closed),
        RevocationStatus::Unknown
    );
    assert_eq!(
        b.check(&token(1), FailurePolicy::Closed),
        RevocationStatus::Unknown
    );

    let r = relay(&url_a, &url_b).await;
    wait_until("B fresh once the relay proves itself", || {
        b.check(&unrevoked("x"), FailurePolicy::Closed) == RevocationStatus::NotRevoked
    })
    .await;
    assert!(
        revoked(&b, &token(1)),
        "the catch-up scan relayed the old revocation"
    );
    assert!(r.stats().acknowledgements > 0 && r.stats().relayed >= 1);

    // Revoked in A now: B refuses it within the bound, never NotRevoked meanwhile.
    a.revoke_token(&token(2)).await.unwrap();
    let acknowledged = Instant::now();
    refused_within_the_bound(&b, &token(2), acknowledged).await;
    a.revoke_user(
        "https://idp.example",
        "mallory",
        Timestamp::from_unix_secs(common::EXP - 10),
    )
    .await
    .unwrap();
    let acknowledged = Instant::now();
    let mallory = unrevoked("mallory").with_issued_at(common::EXP - 10);
    refused_within_the_bound(&b, &mallory, acknowledged).await;
    // B's own Redis holds the relayed records: a replica started there now sees them.
    let b2 = in_b().connect(&url_b).await.unwrap();
    assert!(revoked(&b2, &token(2)) && revoked(&b2, &mallory));
    assert_eq!(
        b2.check_remote(&token(2)).await.unwrap(),
        RevocationStatus::Revoked
    );

    // Cut the link: the relay stops. Once the bound passes, B answers by policy.
    drop(r);
    wait_until("B stale after the cut", || {
        b.freshness().is_none_or(|f| f > BOUND)
    })
    .await;
    assert_eq!(
        b.check(&unrevoked("x"), FailurePolicy::Closed),
        RevocationStatus::Unknown
    );
    let lenient = FailurePolicy::Stale {
        max_age: Duration::from_secs(3600),
    };
    assert_eq!(
        b.check(&unrevoked("x"), lenient),
        RevocationStatus::NotRevoked
    );
    assert!(revoked(&b, &token(2)), "what B holds stays revoked");
    // B's Redis cannot vouch for region A's revocations either.
    assert_eq!(
        b.check_remote(&unrevoked("x")).await.unwrap(),
        RevocationStatus::Unknown
    );
    // Region A is not affected by the cut.
    assert_eq!(
        a.check(&unrevoked("x"), FailurePolicy::Closed),
        RevocationStatus::NotRevoked
    );
    // Revoked in A during the cut: B must not answer NotRevoked for it.
    a.revoke_token(&token(3)).await.unwrap();
    let acknowledged = Instant::now();
    assert_eq!(
        b.check(&token(3), FailurePolicy::Closed),
        RevocationStatus::Unknown
    );

    // The link comes back: B recovers and refuses what was revoked during the cut.
    let r = relay(&url_a, &url_b).await;
    refused_within_the_bound(&b, &token(3), acknowledged).await;
    wait_until("B fresh again", || {
        b.check(&unrevoked("x"), FailurePolicy::Closed) == RevocationStatus::NotRevoked
    })
    .await;
    assert_eq!(
        b.check_remote(&unrevoked("x")).await.unwrap(),
        RevocationStatus::NotRevoked
    );

    // A partition by the other cut: region A's Redis goes away under a running relay.
    server_a.stop();
    wait_until("B stale while A is unreachable", || {
        b.check(&unrevoked("x"), FailurePolicy::Closed) == RevocationStatus::Unknown
    })
    .await;
    server_a.restart(); // empty: A's replica restores what it holds, the relay reconnects
    wait_until("B fresh after A is back", || {
        b.check(&unrevoked("x"), FailurePolicy::Closed) == RevocationStatus::NotRevoked
    })
    .await;
    assert!(r.stats().failures > 0, "the relay saw the cut");
    a.revoke_token(&token(4)).await.unwrap();
    refused_within_the_bound(&b, &token(4), Instant::now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_both_ways_do_not_echo_forever() {
    let server_a = RedisServer::start();
    let server_b = RedisServer::start();
    let (url_a, url_b) = (server_a.url(), server_b.url());
    let a = builder()
        .relayed_from("region-b")
        .connect(&url_a)
        .await
        .unwrap();
    let b = in_b().connect(&url_b).await.unwrap();
    let to_b = relay(&url_a, &url_b).await;
    let to_a = Relay::builder()
        .region("region-b")
        .probe_every(Duration::from_millis(50))
        .connect(&url_b, &url_a)
        .await
        .unwrap();
    a.revoke_token(&token(1)).await.unwrap();
    b.revoke_token(&token(2)).await.unwrap();
    for bl in [&a, &b] {
        wait_until("both revocations in both regions", || {
            revoked(bl, &token(1)) && revoked(bl, &token(2))
        })
        .await;
    }
    // A record that widens nothing is not announced again, so the two relays stop:
    // each record crosses each way once by message (the catch-up scans, running at
    // the same time, may write it once more).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (x, y) = (to_b.stats().relayed, to_a.stats().relayed);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!((to_b.stats().relayed, to_a.stats().relayed), (x, y));
    assert!(x <= 4 && y <= 4, "{x} {y}");
}

/// A relay whose subscription to the source region went silent without closing (a
/// server gone without a reset) starts a new session: it stops hearing its own
/// probes, which the source still takes, gives the subscription up after
/// `max(10 × probe_every, 3 × timeout)`, subscribes again and scans. Without that,
/// revocations made meanwhile waited for the periodic resync (here an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_source_subscription_went_silent_subscribes_again() {
    let server_a = RedisServer::start();
    let server_b = RedisServer::start();
    let proxy = FreezingProxy::start(server_a.port());
    let a = builder().connect(&server_a.url()).await.unwrap();
    let b = builder().connect(&server_b.url()).await.unwrap();
    let r = Relay::builder()
        .region("region-a")
        .timeout(Duration::from_secs(1))
        .probe_every(Duration::from_millis(100))
        .resync_every(Duration::from_secs(3600))
        .connect(&proxy.redis_url(), &server_b.url())
        .await
        .unwrap();
    a.revoke_token(&token(1)).await.unwrap();
    wait_until("relayed by the first subscription", || {
        revoked(&b, &token(1))
    })
    .await;
    let before = r.stats();
    // The subscription goes silent; the relay's probes still reach region A.
    proxy.freeze_subscriptions();
    a.revoke_token(&token(2)).await.unwrap();
    wait_until("relayed after the silence", || revoked(&b, &token(2))).await;
    let after = r.stats();
    assert!(after.failures > before.failures, "{before:?} {after:?}");
    assert!(after.resyncs > before.resyncs, "{before:?} {after:?}");
    a.revoke_token(&token(3)).await.unwrap();
    wait_until("relayed by the new subscription", || revoked(&b, &token(3))).await;
}

#[tokio::test]
async fn region_names_are_checked_by_name() {
    let e = Relay::builder()
        .region("has space")
        .connect("redis://127.0.0.1:1/", "redis://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidConfig {
                field: "region",
                ..
            }
        ),
        "{e:?}"
    );
    let e = RedisBlacklist::builder()
        .relayed_from("")
        .connect("redis://127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidConfig {
                field: "relayed_from",
                ..
            }
        ),
        "{e:?}"
    );
}
