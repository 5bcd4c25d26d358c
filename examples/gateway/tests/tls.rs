//! The gateway serving TLS itself (`--tls-cert`, `--tls-key`): a login over HTTPS
//! through a relay that records the client's bytes on the wire; the JA4 the gateway
//! used for the login (shown on the dashboard, fed to the device fingerprint) equals
//! the JA4 computed from the captured ClientHello.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use palisade_core_traits::{ManualClock, Timestamp};
use palisade_device_fp::{ClientHello, Transport};
use palisade_gateway::server::start;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;

/// A relay to `upstream` that keeps every byte the client sends.
async fn relay(upstream: SocketAddr, sent: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(upstream).await.unwrap();
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = cr.read(&mut buf).await {
                    sent.lock().unwrap().extend_from_slice(&buf[..n]);
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_over_tls_carries_the_ja4_of_the_client_hello_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let config = common::config(
        dir.path(),
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_800_000_000)));
    let gw = start(config, clock).await.unwrap();

    let sent = Arc::new(Mutex::new(Vec::new()));
    let relay = relay(gw.addr, sent.clone()).await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap()])
        .resolve("localhost", relay)
        .build()
        .unwrap();
    let r = client
        .post(format!("https://localhost:{}/login", relay.port()))
        .json(&json!({"username": "alice", "password": "alice-demo-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");

    let wire = sent.lock().unwrap().clone();
    let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
    let expected = ClientHello::parse(&wire[..5 + len])
        .unwrap()
        .ja4(Transport::Tcp);
    let snapshot: Value = serde_json::from_str(gw.gateway.dashboard.snapshot().as_str()).unwrap();
    let top_ja4 = &snapshot["stats"]["top_ja4"];
    assert_eq!(top_ja4[0][0], expected.as_str(), "{top_ja4}");
    assert_eq!(top_ja4[0][1], 1, "{top_ja4}");
    // The recent activity names it on the login line too.
    let logins: Vec<&Value> = snapshot["recent"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["origin"]["ja4"] == expected.as_str())
        .collect();
    assert_eq!(logins.len(), 1, "{snapshot}");

    // Plain HTTP on the TLS port is refused, nothing is served in clear text.
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", gw.addr))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    gw.shutdown().await;
}
