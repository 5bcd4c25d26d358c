//! The testkit's Redis fixtures, tested against real redis-server processes.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::Path;

use palisade_testkit::{RedisCluster, RedisServer, Reply};
use redis::Commands;

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn server_answers_and_stores_through_a_real_client() {
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: () = con.set("k", "v").unwrap();
    let v: String = con.get("k").unwrap();
    assert_eq!(v, "v");
    // Persistence is off: nothing would survive a restart.
    let save: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query(&mut con)
        .unwrap();
    assert_eq!(save, vec!["save".to_owned(), String::new()]);
    assert!(server.dir().join("redis.log").exists());
}

#[test]
fn stop_makes_connections_fail_and_restart_serves_again_on_the_same_port() {
    let mut server = RedisServer::start();
    let port = server.port();
    assert_eq!(
        server.command(&["SET", "a", "1"]).unwrap(),
        Reply::Status("OK".into())
    );

    server.stop();
    assert!(!server.is_running());
    let client = redis::Client::open(server.url()).unwrap();
    assert!(
        client.get_connection().is_err(),
        "a stopped server must refuse connections"
    );
    assert!(server.command(&["PING"]).is_err());

    server.restart();
    assert_eq!(server.port(), port);
    let mut con = client.get_connection().unwrap();
    let a: Option<String> = con.get("a").unwrap();
    assert_eq!(a, None, "a restarted server starts empty");
    let _: () = con.set("a", "2").unwrap();
    let a: String = con.get("a").unwrap();
    assert_eq!(a, "2");
}

#[test]
fn drop_kills_the_process_also_when_a_test_panics() {
    let server = RedisServer::start();
    let pid = server.pid().unwrap();
    assert!(process_exists(pid));
    drop(server);
    assert!(
        !process_exists(pid),
        "redis-server {pid} outlived its fixture"
    );

    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let server = RedisServer::start();
        tx.send(server.pid().unwrap()).unwrap();
        panic!("test failure while the server runs");
    });
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    assert!(
        !process_exists(pid),
        "redis-server {pid} outlived a panicking test"
    );
}

#[test]
fn two_servers_get_different_ports() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    assert_ne!(a.port(), b.port());
    a.command(&["SET", "x", "a"]).unwrap();
    assert_eq!(b.command(&["GET", "x"]).unwrap(), Reply::Bulk(None));
}

#[test]
fn cluster_spreads_keys_over_slots_and_runs_multi_key_commands_on_one_hash_tag() {
    let cluster = RedisCluster::start();
    assert_eq!(cluster.nodes().len(), 3);
    for node in cluster.nodes() {
        let info = node.command(&["CLUSTER", "INFO"]).unwrap().text();
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(info.contains("cluster_slots_assigned:16384"), "{info}");
    }

    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..60 {
        let _: () = con.set(format!("key:{i}"), i).unwrap();
    }
    for i in 0..60 {
        let v: i64 = con.get(format!("key:{i}")).unwrap();
        assert_eq!(v, i);
    }
    // The keys really live on different primaries.
    let holding: Vec<i64> = cluster
        .nodes()
        .iter()
        .map(|n| match n.command(&["DBSIZE"]).unwrap() {
            Reply::Integer(k) => k,
            other => panic!("DBSIZE answered {other:?}"),
        })
        .collect();
    assert_eq!(holding.iter().sum::<i64>(), 60);
    assert!(holding.iter().all(|&k| k > 0), "keys per node: {holding:?}");

    // One hash tag: one slot, so a multi-key command works.
    let _: () = redis::cmd("MSET")
        .arg("{user:7}:a")
        .arg("1")
        .arg("{user:7}:b")
        .arg("2")
        .query(&mut con)
        .unwrap();
    let both: Vec<String> = redis::cmd("MGET")
        .arg("{user:7}:a")
        .arg("{user:7}:b")
        .query(&mut con)
        .unwrap();
    assert_eq!(both, vec!["1", "2"]);

    // Without a shared hash tag the cluster refuses: this is a real cluster.
    let node = &cluster.nodes()[0];
    let slots: Vec<i64> = ["key:0", "key:1", "key:2"]
        .iter()
        .map(
            |k| match node.command(&["CLUSTER", "KEYSLOT", k]).unwrap() {
                Reply::Integer(s) => s,
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert!(slots.windows(2).any(|w| w[0] != w[1]), "{slots:?}");
    // (redis-rs would split a cross-slot MGET for us, so ask a node directly.)
    match node.command(&["MGET", "key:0", "key:1", "key:2"]).unwrap() {
        Reply::Error(e) => assert!(e.starts_with("CROSSSLOT"), "{e}"),
        other => panic!("cross-slot MGET must fail on a cluster, got {other:?}"),
    }
}

#[test]
fn a_tls_server_serves_tls_only_with_its_own_ca() {
    let mut server = RedisServer::start_tls();
    let port = server.port();
    assert_eq!(server.url(), format!("rediss://127.0.0.1:{port}/"));
    let ca = server.ca_pem().unwrap().to_owned();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_ne!(ca, palisade_testkit::unrelated_ca_pem());
    // Set up and probed through the Unix socket; no plain-text TCP port at all.
    let config = |name: &str| server.command(&["CONFIG", "GET", name]).unwrap().text();
    assert_eq!(config("port"), "port\n0");
    assert_eq!(config("tls-port"), format!("tls-port\n{port}"));
    assert!(
        !matches!(palisade_testkit::command(port, &["PING"]), Ok(Reply::Status(s)) if s == "PONG"),
        "plain text must not be answered on the TLS port"
    );
    // A plain server has no CA and a redis:// URL, as before.
    assert_eq!(RedisServer::start().ca_pem(), None);
    // A restart keeps TLS (same certificates) and starts empty.
    assert_eq!(server.command(&["SET", "k", "v"]).unwrap().text(), "OK");
    server.restart();
    assert_eq!(server.ca_pem(), Some(ca.as_str()));
    assert_eq!(server.command(&["DBSIZE"]).unwrap().text(), "0");
    assert_eq!(config_port(&server), "0");
}

fn config_port(server: &RedisServer) -> String {
    let reply = server.command(&["CONFIG", "GET", "port"]).unwrap().text();
    reply.lines().nth(1).unwrap().to_owned()
}

#[test]
fn a_tls_cluster_speaks_tls_to_clients_and_between_nodes() {
    let cluster = RedisCluster::start_tls();
    let ca = cluster.ca_pem().unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(RedisCluster::start().ca_pem(), None);
    let nodes_text = cluster.nodes()[0]
        .command(&["CLUSTER", "NODES"])
        .unwrap()
        .text();
    for (node, url) in cluster.nodes().iter().zip(cluster.urls()) {
        let port = node.port();
        assert_eq!(url, format!("rediss://127.0.0.1:{port}/"));
        // One CA for the whole cluster: each node trusts the others' certificates.
        assert_eq!(node.ca_pem(), Some(ca));
        let config = |name: &str| node.command(&["CONFIG", "GET", name]).unwrap().text();
        assert_eq!(config("port"), "port\n0");
        assert_eq!(config("tls-cluster"), "tls-cluster\nyes");
        // The cluster announces the TLS port, so clients it redirects speak TLS.
        assert!(
            nodes_text.contains(&format!("127.0.0.1:{port}@")),
            "{port} not in\n{nodes_text}"
        );
        assert!(
            !matches!(palisade_testkit::command(port, &["PING"]), Ok(Reply::Status(s)) if s == "PONG"),
            "plain text must not be answered on a TLS node"
        );
    }
}
