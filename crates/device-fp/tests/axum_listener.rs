//! `Ja4Listener` + `Ja4ConnectInfo` under `axum::serve`: a handler sees the JA4 of
//! the client's own ClientHello, a stalled client does not hold the others, and a
//! silent one gives its slot back after the ClientHello timeout.
#![cfg(feature = "axum")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use palisade_device_fp::{ClientHello, Ja4Acceptor, Ja4ConnectInfo, Ja4Listener, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use common::{Recorder, configs, first_record, localhost};

async fn serve(acceptor: Ja4Acceptor, max_handshakes: usize) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = Ja4Listener::builder(tcp, acceptor)
        .max_handshakes(NonZeroUsize::new(max_handshakes).unwrap())
        .build()
        .unwrap();
    let app = Router::new().route(
        "/",
        get(
            |ConnectInfo(conn): ConnectInfo<Ja4ConnectInfo>| async move {
                format!("{} {}", conn.ja4(), conn.server_name().unwrap_or("-"))
            },
        ),
    );
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<Ja4ConnectInfo>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// GET / over TLS by hand; returns the response body and the client's first record.
async fn get_root(
    addr: SocketAddr,
    client: Arc<palisade_device_fp::rustls::ClientConfig>,
) -> (String, Vec<u8>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let io = Recorder {
        io: TcpStream::connect(addr).await.unwrap(),
        written: written.clone(),
    };
    let mut tls = TlsConnector::from(client)
        .connect(localhost(), io)
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    let body = response.split("\r\n\r\n").nth(1).unwrap().to_owned();
    let hello = first_record(&written.lock().unwrap());
    (body, hello)
}

#[tokio::test]
async fn a_handler_sees_the_ja4_of_the_clients_own_client_hello() {
    let (server, client) = configs();
    let addr = serve(Ja4Acceptor::builder(server).build().unwrap(), 16).await;
    let (body, hello) = get_root(addr, client).await;
    let ja4 = ClientHello::parse(&hello).unwrap().ja4(Transport::Tcp);
    assert_eq!(body, format!("{ja4} localhost"));
}

#[tokio::test]
async fn a_stalled_client_does_not_hold_the_listener() {
    let (server, client) = configs();
    // timeouts far longer than the test: only concurrency can let the request through
    let acceptor = Ja4Acceptor::builder(server)
        .handshake_timeout(Duration::from_secs(3600))
        .client_hello_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let addr = serve(acceptor.clone(), 4).await;
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        stalled.push(s);
    }
    let (body, _) = tokio::time::timeout(Duration::from_secs(60), get_root(addr, client))
        .await
        .expect("the request waited behind stalled handshakes");
    assert!(body.starts_with("t13d"), "{body}");
    assert_eq!(acceptor.stats().handshakes_completed, 1);
    drop(stalled);
}

#[tokio::test]
async fn a_silent_client_gives_its_slot_back_after_the_client_hello_timeout() {
    let (server, client) = configs();
    // one slot and an hour for the handshake: only the ClientHello timeout frees it
    let acceptor = Ja4Acceptor::builder(server)
        .handshake_timeout(Duration::from_secs(3600))
        .client_hello_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let addr = serve(acceptor.clone(), 1).await;
    let silent = TcpStream::connect(addr).await.unwrap();
    // let the listener take the silent connection into its one slot first
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (body, _) = tokio::time::timeout(Duration::from_secs(30), get_root(addr, client))
        .await
        .expect("the silent connection kept the only slot");
    assert!(body.starts_with("t13d"), "{body}");
    let s = acceptor.stats();
    assert_eq!((s.timeouts, s.handshakes_completed), (1, 1));
    drop(silent);
}
