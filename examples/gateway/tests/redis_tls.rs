//! `--redis rediss://…` with `--redis-ca`: two instances on a TLS-only redis-server,
//! or on a TLS-only 3-node Redis Cluster, whose certificates a private CA signed,
//! behave as one (a token revoked through one is refused by the other); a CA that did
//! not sign the servers stops the start, and a CA with a plaintext URL (one of a
//! cluster's too) is refused before anything connects.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::SystemClock;
use palisade_gateway::config::Config;
use palisade_gateway::server::{Running, start};
use palisade_testkit::{RedisCluster, RedisServer, unrelated_ca_pem};
use reqwest::StatusCode;
use serde_json::{Value, json};

const LONDON: &str = "81.2.69.142";
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

mod common;

fn config(dir: &Path, url: &str, ca: &Path) -> Config {
    let ca = ca.to_str().unwrap();
    let extra = [
        "--trusted-proxies",
        "127.0.0.1/32",
        "--redis",
        url,
        "--redis-ca",
        ca,
    ];
    common::config(dir, &extra)
}

/// The PEM `ca` in a file of `dir`.
fn ca_file(dir: &Path, ca: &str) -> std::path::PathBuf {
    let path = dir.join("redis-ca.pem");
    std::fs::write(&path, ca).unwrap();
    path
}

/// An instance on `url`, once its revocation replica is proven in sync.
async fn instance(url: &str, ca: &str) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(dir.path(), ca);
    let gw = start(config(dir.path(), url, &ca), Arc::new(SystemClock))
        .await
        .unwrap();
    let ready = common::ready(gw.addr).await;
    assert_eq!(ready["revocations"]["fresh"], true, "{ready}");
    (gw, dir)
}

#[tokio::test]
async fn two_instances_share_revocations_over_tls_with_a_private_ca() {
    let server = RedisServer::start_tls();
    let url = server.url();
    assert!(url.starts_with("rediss://"), "{url}");
    share_revocations(&url, server.ca_pem().unwrap()).await;
}

#[tokio::test]
async fn two_instances_share_revocations_over_a_tls_cluster_with_a_private_ca() {
    let cluster = RedisCluster::start_tls();
    let urls = cluster.urls();
    assert!(urls.iter().all(|u| u.starts_with("rediss://")), "{urls:?}");
    share_revocations(&urls.join(","), cluster.ca_pem().unwrap()).await;
}

/// A token issued by one instance on `url` is accepted by another, and once revoked
/// through the first is refused by both.
async fn share_revocations(url: &str, ca: &str) {
    let (a, _a_dir) = instance(url, ca).await;
    let (b, _b_dir) = instance(url, ca).await;
    let http = reqwest::Client::new();

    let login: Value = http
        .post(format!("http://{}/login", a.addr))
        .header("x-forwarded-for", LONDON)
        .header("user-agent", UA)
        .json(&json!({"username": "alice", "password": "alice-demo-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().expect("a token").to_owned();
    let me = |at: std::net::SocketAddr| {
        let (http, token) = (http.clone(), token.clone());
        async move {
            http.get(format!("http://{at}/api/me"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Issued by A, accepted by B: the fleet's keys went through the TLS server.
    assert_eq!(me(b.addr).await, StatusCode::OK);

    let out = http
        .post(format!("http://{}/logout", a.addr))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let mut refused = false;
    for _ in 0..50 {
        if me(b.addr).await == StatusCode::UNAUTHORIZED {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "a token revoked through A is still accepted by B");
    // And by A itself at once.
    assert_eq!(me(a.addr).await, StatusCode::UNAUTHORIZED);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_server_stops_the_start() {
    let server = RedisServer::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(dir.path(), &unrelated_ca_pem());
    let err = start(
        config(dir.path(), &server.url(), &ca),
        Arc::new(SystemClock),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("redis:"), "{err}");
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_cluster_stops_the_start() {
    let cluster = RedisCluster::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(dir.path(), &unrelated_ca_pem());
    let err = start(
        config(dir.path(), &cluster.urls().join(","), &ca),
        Arc::new(SystemClock),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("redis:"), "{err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn a_ca_with_a_plaintext_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(dir.path(), &unrelated_ca_pem());
    // Nothing listens there: the refusal comes before any connection.
    let plain = config(dir.path(), "redis://127.0.0.1:1/", &ca);
    let err = start(plain, Arc::new(SystemClock))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be rediss://"), "{err}");
    // One plaintext node in a cluster's list is enough to refuse it.
    let cluster = config(
        dir.path(),
        "rediss://127.0.0.1:1/,redis://127.0.0.1:2/,rediss://127.0.0.1:3/",
        &ca,
    );
    let err = start(cluster, Arc::new(SystemClock))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be rediss://"), "{err}");
    let missing = config(
        dir.path(),
        "rediss://127.0.0.1:1/",
        &dir.path().join("none.pem"),
    );
    let err = start(missing, Arc::new(SystemClock))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--redis-ca") && err.contains("none.pem"),
        "{err}"
    );
}
