//! The `ja4-https` example end to end: reqwest (rustls) talks to it through a TCP
//! relay that records the client's first TLS record on the wire; the JA4 the handler
//! saw must equal the JA4 computed from those captured bytes.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use palisade_device_fp::{ClientHello, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The example server, killed when the test ends (also when it fails).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the example; returns it, its port and its certificate (PEM).
fn start() -> (Server, u16, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ja4-https"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let server = Server(child);
    let url = lines.next().unwrap().unwrap();
    let port = url
        .trim_start_matches("https://localhost:")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut pem = String::new();
    for line in lines {
        let line = line.unwrap();
        pem.push_str(&line);
        pem.push('\n');
        if line.starts_with("-----END CERTIFICATE") {
            break;
        }
    }
    (server, port, pem)
}

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

#[tokio::test]
async fn the_handler_sees_the_ja4_of_the_client_hello_on_the_wire() {
    let (_server, port, pem) = start();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let relay = relay(SocketAddr::from(([127, 0, 0, 1], port)), sent.clone()).await;
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()])
        .resolve("localhost", relay)
        .build()
        .unwrap();
    let body = client
        .get(format!("https://localhost:{}/", relay.port()))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();

    let wire = sent.lock().unwrap().clone();
    let len = usize::from(u16::from_be_bytes([wire[3], wire[4]]));
    let first_record = &wire[..5 + len];
    let expected = ClientHello::parse(first_record)
        .unwrap()
        .ja4(Transport::Tcp);
    assert_eq!(body, expected.as_str());
    // reqwest over rustls: TLS 1.3 with SNI
    assert!(body.starts_with("t13d"), "{body}");
}
