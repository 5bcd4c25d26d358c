//! Composition: playbooks → ratelimit's `IpBlocker`, then a request from the blocked
//! client as a dual-stack listener reports it (`::ffff:a.b.c.d`).
//!
//! The hardening review's attack: playbooks normalised the address and blocked
//! `198.51.100.7`, the limiter keyed on the mapped form, and the blocked client walked
//! through. Tested in memory and on a real redis-server.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::IpAddr;
use std::sync::Arc;

use palisade_core_traits::{
    EventId, EventKind, IpBlocker, ManualClock, SecurityEvent, Severity, Subject, Timestamp,
};
use palisade_playbooks::{ActionKind, Definition, Engine, Executor, Outcome};
use palisade_ratelimit::{Denial, KeyedLimiter, Policy, Quota, RedisLimiter, nz};
use palisade_testkit::RedisServer;

fn brute_force_from(ip: &str) -> SecurityEvent {
    SecurityEvent::new(
        EventId::new("bf-1").unwrap(),
        Timestamp::from_unix_secs(1_800_000_000),
        EventKind::BruteForce,
        Severity::High,
        // The detector saw the peer as the dual-stack listener reported it.
        Subject::Ip {
            ip: ip.parse().unwrap(),
        },
        "test",
    )
}

/// Runs the default playbooks on the event with `blocker` as the IP blocker; returns
/// whether the block was applied.
async fn block_through_playbooks(blocker: Arc<dyn IpBlocker>, event: &SecurityEvent) -> bool {
    let mut engine = Engine::new(Definition::default_set().unwrap());
    let plan = engine.evaluate(event, event.time);
    let executor = Executor::builder().ip_blocker(blocker).build().unwrap();
    let outcomes = executor.execute(&plan).await;
    plan.executable().zip(&outcomes).any(|(s, (_, o))| {
        s.action.kind() == ActionKind::BlockIp && matches!(o, Outcome::Applied { .. })
    })
}

const FORMS: [&str; 2] = ["198.51.100.7", "::ffff:198.51.100.7"];

#[tokio::test]
async fn an_in_memory_block_holds_for_every_form_of_the_address() {
    for detected in FORMS {
        let clock = ManualClock::new(Timestamp::from_unix_secs(1_800_000_000));
        let limiter = Arc::new(KeyedLimiter::<IpAddr, _>::with_clock(
            Quota::per_second(nz!(100)),
            clock,
        ));
        assert!(block_through_playbooks(limiter.clone(), &brute_force_from(detected)).await);
        for peer in FORMS {
            let d = limiter.check(&peer.parse().unwrap(), 1).unwrap();
            assert!(
                !d.allowed,
                "detected as {detected}, request from {peer} admitted"
            );
            assert_eq!(d.denial, Some(Denial::Blocked));
        }
        // Its neighbour is not blocked.
        assert!(
            limiter
                .check(&"198.51.100.8".parse().unwrap(), 1)
                .unwrap()
                .allowed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_block_holds_for_every_form_of_the_address() {
    let server = RedisServer::start();
    for detected in FORMS {
        let limiter = Arc::new(
            RedisLimiter::builder(vec![
                Policy::new("per-ip", Quota::per_second(nz!(100))).unwrap(),
            ])
            .prefix(&format!("t{}", detected.len()))
            .connect(&server.url())
            .await
            .unwrap(),
        );
        assert!(block_through_playbooks(limiter.clone(), &brute_force_from(detected)).await);
        // The listener hands the key over as text, in whichever form it saw.
        for peer in FORMS {
            let d = limiter.check(peer, 1).await.unwrap();
            assert!(
                !d.allowed,
                "detected as {detected}, request from {peer} admitted"
            );
            assert_eq!(d.denial, Some(Denial::Blocked));
        }
        assert!(limiter.check("198.51.100.8", 1).await.unwrap().allowed);
    }
}
