//! Redis the way users run it: TLS (`rediss://`, their CA), their own `Client`,
//! `ConnectionManager` or cluster connection. Real servers from the testkit.
#![cfg(all(feature = "redis", feature = "tls"))]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::time::Duration;

use common::{builder, revoked, token, unrevoked, wait_until};
use palisade_core_traits::RevocationStatus;
use palisade_testkit::{RedisCluster, RedisServer, unrelated_ca_pem};
use palisade_token_blacklist::redis::{Client, TlsCertificates};
use palisade_token_blacklist::{Error, FailurePolicy};

fn tls_client(url: &str, ca_pem: &str) -> Client {
    Client::build_with_tls(
        url,
        TlsCertificates {
            client_tls: None,
            root_cert: Some(ca_pem.as_bytes().to_vec()),
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_revocations_over_tls_with_the_servers_ca() {
    let server = RedisServer::start_tls();
    let url = server.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let ca = server.ca_pem().unwrap();
    let a = builder()
        .connect_client(tls_client(&url, ca))
        .await
        .unwrap();
    let b = builder()
        .connect_client(tls_client(&url, ca))
        .await
        .unwrap();
    for bl in [&a, &b] {
        assert!(bl.freshness().is_some(), "settled over TLS");
    }
    a.revoke_token(&token(1)).await.unwrap();
    wait_until("b refuses the token", || revoked(&b, &token(1))).await;
    assert_eq!(
        b.check_remote(&token(1)).await.unwrap(),
        RevocationStatus::Revoked
    );
    assert_eq!(
        b.check(&unrevoked("x"), FailurePolicy::Closed),
        RevocationStatus::NotRevoked
    );
    // The record really is in the TLS server (read over its admin socket).
    let keys = server.command(&["DBSIZE"]).unwrap().text();
    assert!(keys.parse::<u32>().unwrap() >= 2, "{keys}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_with_a_tls_error_and_nothing_falls_back_to_plain_text() {
    let server = RedisServer::start_tls();
    let url = server.url();
    let wrong = builder()
        .timeout(Duration::from_secs(3))
        .connect_client(tls_client(&url, &unrelated_ca_pem()))
        .await
        .unwrap_err();
    assert!(matches!(wrong, Error::Tls(_)), "{wrong:?}");
    assert!(wrong.to_string().contains("TLS"), "{wrong}");
    // A rediss:// URL alone trusts the system roots, which do not hold the test CA.
    let system_roots = builder().connect(&url).await.unwrap_err();
    assert!(matches!(system_roots, Error::Tls(_)), "{system_roots:?}");
    // The same port in plain text is refused too (the server speaks only TLS).
    let plain = url.replacen("rediss://", "redis://", 1);
    let e = builder()
        .timeout(Duration::from_millis(500))
        .connect(&plain)
        .await
        .unwrap_err();
    assert!(!matches!(e, Error::Tls(_)), "{e:?}");
    // Nothing was written: no epoch key, no record.
    assert_eq!(server.command(&["DBSIZE"]).unwrap().text(), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_connection_manager_with_a_client_for_the_subscription() {
    let server = RedisServer::start();
    let url = server.url();
    let client = Client::open(url.as_str()).unwrap();
    let manager = client.get_connection_manager().await.unwrap();
    let mine = builder()
        .connect_manager(manager, client.clone())
        .await
        .unwrap();
    let other = builder().connect(&url).await.unwrap();
    other.revoke_token(&token(2)).await.unwrap();
    mine.revoke_user(
        "https://idp.example",
        "mallory",
        palisade_core_traits::Timestamp::from_unix_secs(common::EXP - 10),
    )
    .await
    .unwrap();
    let mallory = unrevoked("mallory").with_issued_at(common::EXP - 10);
    for bl in [&mine, &other] {
        wait_until("both revocations on both", || {
            revoked(bl, &token(2)) && revoked(bl, &mallory)
        })
        .await;
    }
    assert!(mine.freshness().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_cluster_connection_with_a_client_per_primary() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls();
    let conn = palisade_token_blacklist::redis::cluster::ClusterClient::new(urls.clone())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap();
    // No primaries: refused by name before anything runs.
    let e = builder()
        .connect_cluster_connection(conn.clone(), Vec::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidConfig {
                field: "primaries",
                ..
            }
        ),
        "{e:?}"
    );
    let primaries: Vec<Client> = urls
        .iter()
        .map(|u| Client::open(u.as_str()).unwrap())
        .collect();
    let mine = builder()
        .connect_cluster_connection(conn, primaries)
        .await
        .unwrap();
    let other = builder().connect_cluster(&urls).await.unwrap();
    for i in 0..20 {
        other.revoke_token(&token(i)).await.unwrap();
    }
    mine.revoke_token(&token(100)).await.unwrap();
    for bl in [&mine, &other] {
        wait_until("every revocation on both", || {
            (0..20).all(|i| revoked(bl, &token(i))) && revoked(bl, &token(100))
        })
        .await;
    }
    assert_eq!(
        mine.check_remote(&token(3)).await.unwrap(),
        RevocationStatus::Revoked
    );
}
