//! With `--redis`, each instance's dashboard shows the whole fleet: what happens on
//! one instance appears on the other's, marked with the instance it happened on, and
//! is counted in its aggregates; an instance does not show its own activities twice.
//! Incidents are the fleet's: one a playbook answered on one instance is listed on the
//! other's with its actions and the instance's name, and events about one source on
//! both instances are one incident, with one id, on both dashboards.
//! On a standalone redis-server and on the 3-node cluster, where the two instances
//! reach the channel through different nodes. A paused Redis is asked once, by
//! correlation and the playbooks' action claims together, until the retry.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core_traits::{
    Clock, EventId, EventKind, SecurityEvent, Severity, Subject, SystemClock,
};
use palisade_gateway::incident::{Correlator, FleetIds, LOCAL_ONLY_IDS, RETRY_FLEET_AFTER};
use palisade_gateway::response::ActionClaims;
use palisade_gateway::server::{Running, start};
use palisade_gateway::shared::{RedisAccess, RedisConn};
use palisade_playbooks::{Definition, Engine};
use palisade_testkit::{RedisCluster, RedisServer};
use palisade_token_blacklist::redis;
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
    let brute_force = event(
        "bf-fleet-dashboard",
        Subject::ip("198.51.100.99".parse().unwrap()),
    );
    b.gateway.bus.publish(brute_force).await;
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
    assert_eq!(shared["instances"], json!([b_name]), "{shared}");
    assert_eq!(shared["severity"], "high", "{shared}");
    assert!(
        (shared["events"].as_array().unwrap().iter()).all(|e| e["instance"] == b_name.as_str()),
        "{shared}"
    );
    // On B it is B's own: unmarked, listed once, with the same id.
    let own = opened_by_b(&snapshot(&b)).unwrap();
    assert!(own.get("instances").is_none(), "{own}");
    assert_eq!(own["id"], shared["id"]);
    let on_a = snapshot(&a);
    let listed = (on_a["incidents"].as_array().unwrap().iter())
        .filter(|i| i["id"] == shared["id"])
        .count();
    assert_eq!(listed, 1, "an incident listed twice: {on_a}");

    // A sees the same source: it joins B's incident (one id for the fleet), and both
    // dashboards show both instances' events in it.
    let a_name = a.gateway.fleet.as_ref().unwrap().instance().to_owned();
    let mut stuffing = event(
        "cs-fleet-dashboard",
        Subject::ip("::ffff:198.51.100.99".parse().unwrap()),
    );
    (stuffing.kind, stuffing.severity) = (EventKind::CredentialStuffing, Severity::Medium);
    a.gateway.bus.publish(stuffing).await;
    let both = |snapshot: &Value| {
        opened_by_b(snapshot).filter(|i| {
            let kinds: Vec<&str> = (i["events"].as_array().unwrap().iter())
                .map(|e| e["kind"].as_str().unwrap())
                .collect();
            kinds.contains(&"brute_force") && kinds.contains(&"credential_stuffing")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (on_a, on_b) = loop {
        let (sa, sb) = (snapshot(&a), snapshot(&b));
        if let (Some(x), Some(y)) = (both(&sa), both(&sb)) {
            break (x, y);
        }
        assert!(
            Instant::now() < deadline,
            "one source on two instances never became one incident: {sa} {sb}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(on_a["id"], shared["id"], "{on_a}");
    assert_eq!(on_b["id"], shared["id"], "{on_b}");
    assert_eq!(on_a["event_count"], 2, "{on_a}");
    assert_eq!(on_b["event_count"], 2, "{on_b}");
    assert_eq!(on_a["instances"], json!([b_name]), "{on_a}");
    assert_eq!(on_b["instances"], json!([a_name]), "{on_b}");
    for s in [snapshot(&a), snapshot(&b)] {
        let with_source = (s["incidents"].as_array().unwrap().iter())
            .filter(|i| (i["keys"].as_array().unwrap().iter()).any(|k| k == "ip 198.51.100.99"))
            .count();
        assert_eq!(with_source, 1, "one source, several incidents: {s}");
    }
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

/// A high-severity brute force about `subject`, now.
fn event(id: &str, subject: Subject) -> SecurityEvent {
    SecurityEvent::new(
        EventId::new(id).unwrap(),
        SystemClock.now(),
        EventKind::BruteForce,
        Severity::High,
        subject,
        "test",
    )
}

/// The correlation itself, on the fleet's Redis: two instances' correlators agree on
/// one incident per source and account, a window of silence ends it, and instances
/// that see one new source at the same moment open one incident, not several.
async fn the_fleet_correlates_as_one(urls: Vec<String>) -> FleetIds {
    let access = RedisAccess::new(urls, None, &[]).unwrap();
    let ids = FleetIds::new(RedisConn::connect(&access).await.unwrap(), "test:incident");
    let window = Duration::from_millis(600);
    let mut a = Correlator::fleet(window, ids.clone());
    let mut b = Correlator::fleet(window, ids.clone());
    let ip = Subject::ip("203.0.113.77".parse().unwrap());
    let first = a.correlate(&event("e1", ip.clone())).await.id;
    assert!(first < LOCAL_ONLY_IDS, "{first}");
    // B sees the account, the address in its evidence: the same incident.
    let carol = event("e2", Subject::user("Carol")).with_evidence("ip", "203.0.113.77");
    assert_eq!(b.correlate(&carol).await.id, first);
    // Then the account alone, on A: joins through the account B saw.
    assert_eq!(
        a.correlate(&event("e3", Subject::user("carol"))).await.id,
        first
    );
    // Another source: another incident.
    let other = Subject::ip("203.0.113.78".parse().unwrap());
    let second = b.correlate(&event("e4", other)).await.id;
    assert_ne!(second, first);
    // A window of silence ends it.
    tokio::time::sleep(window + Duration::from_millis(300)).await;
    let later = b.correlate(&event("e5", ip)).await.id;
    assert!(
        later != first && later != second,
        "{first} {second} {later}"
    );
    // Sixteen instances see one new source at once: one incident.
    let mut racing = tokio::task::JoinSet::new();
    for n in 0..16 {
        let ids = ids.clone();
        racing.spawn(async move {
            let mut c = Correlator::fleet(window, ids);
            let e = event(
                &format!("r{n}"),
                Subject::ip("203.0.113.200".parse().unwrap()),
            );
            c.correlate(&e).await.id
        });
    }
    let mut seen: Vec<u64> = racing.join_all().await;
    seen.dedup();
    assert_eq!(seen.len(), 1, "{seen:?}");
    ids
}

#[tokio::test]
async fn on_one_redis_server_the_fleet_correlates_as_one() {
    let server = RedisServer::start();
    let ids = the_fleet_correlates_as_one(vec![server.url()]).await;
    // Redis stops answering (every client paused): one event waits out the timeout and
    // is correlated here; the next ones do not ask Redis at all, until the retry.
    let client = redis::Client::open(server.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let scripts_run = |info: String| -> u64 {
        let line = info
            .lines()
            .find(|l| l.starts_with("cmdstat_evalsha:"))
            .unwrap();
        let calls = line
            .split("calls=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        calls.parse().unwrap()
    };
    let mut info = redis::cmd("INFO");
    info.arg("commandstats");
    let before = scripts_run(info.query_async(&mut admin).await.unwrap());
    let mut pause = redis::cmd("CLIENT");
    pause.arg("PAUSE").arg(3000).arg("ALL");
    let () = pause.query_async(&mut admin).await.unwrap();
    let resumes = tokio::time::Instant::now() + Duration::from_millis(3500);
    let mut hung = Correlator::fleet(Duration::from_secs(600), ids.clone());
    let ip = Subject::ip("192.0.2.55".parse().unwrap());
    let first = hung.correlate(&event("h0", ip.clone())).await.id;
    assert!(first >= LOCAL_ONLY_IDS, "{first}");
    for n in 1..=10 {
        let id = hung
            .correlate(&event(&format!("h{n}"), ip.clone()))
            .await
            .id;
        assert_eq!(id, first);
    }
    // The playbooks' action claims on the same Redis share the back-off: the response
    // to the event is planned and kept here without asking, and an expiring block is
    // left to end by itself.
    let access = RedisAccess::new(vec![server.url()], None, &[]).unwrap();
    let claims = ActionClaims::new(
        RedisConn::connect(&access).await.unwrap(),
        "test:playbooks",
        "gw-paused",
        ids.backoff(),
    );
    let mut engine = Engine::new(Definition::default_set().unwrap());
    let attack = event("h-attack", ip.clone());
    let now = SystemClock.now();
    let mut plan = engine.evaluate(&attack, now);
    assert!(claims.settle(&mut engine, &mut plan, now).await.is_empty());
    assert_eq!(plan.executable().count(), 2, "{plan:?}");
    let block = engine.expire(now.saturating_add(Duration::from_secs(3600)));
    let block = block.iter().find(|d| d.needs_revert()).unwrap();
    assert!(claims.held_elsewhere(block).await);
    tokio::time::sleep_until(resumes).await;
    let after = scripts_run(info.query_async(&mut admin).await.unwrap());
    assert_eq!(
        after,
        before + 1,
        "only the first event asked the paused Redis"
    );
    // After the retry delay the fleet is asked again.
    tokio::time::sleep(RETRY_FLEET_AFTER).await;
    let back = hung.correlate(&event("h11", ip)).await.id;
    assert!(back < LOCAL_ONLY_IDS, "{back}");
    // Redis gone: an instance correlates alone, with ids it does not share.
    drop(server);
    let mut alone = Correlator::fleet(Duration::from_secs(600), ids);
    let ip = Subject::ip("192.0.2.44".parse().unwrap());
    let id = alone.correlate(&event("d1", ip.clone())).await.id;
    assert!(id >= LOCAL_ONLY_IDS, "{id}");
    assert_eq!(alone.correlate(&event("d2", ip)).await.id, id);
}

#[tokio::test]
async fn on_the_cluster_the_fleet_correlates_as_one() {
    let cluster = RedisCluster::start();
    the_fleet_correlates_as_one(cluster.urls()).await;
}
