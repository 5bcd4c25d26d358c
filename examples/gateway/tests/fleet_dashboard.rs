//! With `--redis`, each instance's dashboard shows the whole fleet: what happens on
//! one instance appears on the other's, marked with the instance it happened on, and
//! is counted in its aggregates; an instance does not show its own activities twice.
//! Incidents too: one a playbook answered on one instance is listed on the other's,
//! with its actions and the instance's name, beside the other's own.
//! On a standalone redis-server and on the 3-node cluster, where the two instances
//! reach the channel through different nodes.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core_traits::{
    Clock, EventId, EventKind, SecurityEvent, Severity, Subject, SystemClock,
};
use palisade_gateway::server::{Running, start};
use palisade_testkit::{RedisCluster, RedisServer};
use serde_json::{Value, json};

mod common;

async fn instance(redis: &str) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--trusted-proxies", "127.0.0.1/32", "--redis", redis];
    let config = common::config(dir.path(), &extra);
    (start(config, Arc::new(SystemClock)).await.unwrap(), dir)
}

fn snapshot(gw: &Running) -> Value {
    serde_json::from_str(gw.gateway.dashboard.snapshot().as_str()).unwrap()
}

/// The failed logins of `user` in a snapshot's recent activities.
fn failed_logins<'a>(snapshot: &'a Value, user: &str) -> Vec<&'a Value> {
    let recent = snapshot["recent"].as_array().unwrap();
    (recent.iter())
        .filter(|a| a["kind"] == "login" && a["user"] == user && a["result"] == "failure")
        .collect()
}

async fn what_happens_on_one_is_shown_on_the_other(a_redis: &str, b_redis: &str) {
    let (a, _a_dir) = instance(a_redis).await;
    let (b, _b_dir) = instance(b_redis).await;
    let b_name = b.gateway.fleet.as_ref().unwrap().instance().to_owned();
    let http = reqwest::Client::new();
    // Subscriptions start in the background: fail on B until A shows it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let r = http
            .post(format!("http://{}/login", b.addr))
            .header("x-forwarded-for", "81.2.69.142")
            .json(&json!({"username": "bob", "password": "not bob's"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let on_a = snapshot(&a);
        if let Some(seen) = failed_logins(&on_a, "bob").first() {
            break (*seen).clone();
        }
        assert!(
            Instant::now() < deadline,
            "B's failed logins never reached A: {on_a}"
        );
    };
    assert_eq!(seen["instance"], b_name.as_str(), "{seen}");
    assert_eq!(seen["origin"]["ip"], "81.2.69.142", "{seen}");
    assert!(seen["request_id"].is_string(), "{seen}");
    // A counts them in its aggregates (A served no login itself).
    let stats = &snapshot(&a)["stats"];
    assert!(
        stats["counters"]["login_failure"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    // B shows its own once each, unmarked.
    let on_b = snapshot(&b);
    let own = failed_logins(&on_b, "bob");
    assert!(!own.is_empty(), "{on_b}");
    assert!(own.iter().all(|a| a.get("instance").is_none()), "{on_b}");
    let mut ids: Vec<&str> = own
        .iter()
        .map(|a| a["request_id"].as_str().unwrap())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        n,
        "an activity shown twice on its own instance: {on_b}"
    );

    // An incident B's playbooks answer is listed on A, marked with B's name.
    let event = SecurityEvent::new(
        EventId::new("bf-fleet-dashboard").unwrap(),
        SystemClock.now(),
        EventKind::BruteForce,
        Severity::High,
        Subject::ip("198.51.100.99".parse().unwrap()),
        "test",
    );
    b.gateway.bus.publish(event).await;
    let opened_by_b = |snapshot: &Value| {
        (snapshot["incidents"].as_array().unwrap().iter())
            .find(|i| {
                i["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k == "ip 198.51.100.99")
            })
            .cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let shared = loop {
        let on_a = snapshot(&a);
        if let Some(i) = opened_by_b(&on_a).filter(|i| !i["actions"].as_array().unwrap().is_empty())
        {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "B's incident never reached A: {on_a}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(shared["instance"], b_name.as_str(), "{shared}");
    assert_eq!(shared["severity"], "high", "{shared}");
    // On B it is B's own: unmarked, listed once, with the same id.
    let own = opened_by_b(&snapshot(&b)).unwrap();
    assert!(own.get("instance").is_none(), "{own}");
    assert_eq!(own["id"], shared["id"]);
    let on_a = snapshot(&a);
    let listed = (on_a["incidents"].as_array().unwrap().iter())
        .filter(|i| i["id"] == shared["id"] && i["instance"] == shared["instance"])
        .count();
    assert_eq!(listed, 1, "an incident listed twice: {on_a}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn on_one_redis_server_each_dashboard_shows_the_fleet() {
    let server = RedisServer::start();
    what_happens_on_one_is_shown_on_the_other(&server.url(), &server.url()).await;
}

#[tokio::test]
async fn on_the_cluster_each_dashboard_shows_the_fleet_through_another_node() {
    let cluster = RedisCluster::start();
    let mut urls = cluster.urls();
    let a = urls.join(",");
    urls.rotate_left(1); // B publishes through another node than A listens on
    let b = urls.join(",");
    what_happens_on_one_is_shown_on_the_other(&a, &b).await;
}
