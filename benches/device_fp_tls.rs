//! palisade-device-fp's `Ja4Acceptor` vs plain `tokio_rustls::TlsAcceptor`: the cost
//! per TLS handshake on loopback of reading the ClientHello ahead, computing its JA4
//! and replaying it to rustls.
//!
//! cargo bench -p palisade-benches --bench device_fp_tls
//!
//! Each handshake is a fresh loopback TCP connection, a TLS 1.3 handshake (rustls,
//! ring, ECDSA P-256 certificate from rcgen) and one byte each way, client and server
//! on one current-thread runtime. Each round times pairs of handshakes, one through
//! our acceptor and one through the plain one back to back (which goes first
//! alternates pair by pair), so both see the same machine; the table gives the
//! median of the rounds' ratios (sum of ours / sum of plain) and, more robust to a
//! preemption that hits one handshake, the median of the per-pair ratios, each with
//! its interquartile range. Cases: full handshakes (client resumption off) and resumed
//! ones (TLS 1.3 tickets, rustls' default client and server caches).
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_device_fp::Ja4Acceptor;
use palisade_device_fp::rustls::client::Resumption;
use palisade_device_fp::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use palisade_device_fp::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const ROUNDS: usize = 31;
const BATCH: usize = 100;

fn configs(resume: bool) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if !resume {
        client.resumption = Resumption::disabled();
    }
    (Arc::new(server), Arc::new(client))
}

/// One byte each way over an accepted connection.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut tls: S) {
    let mut b = [0u8; 1];
    tls.read_exact(&mut b).await.unwrap();
    tls.write_all(&b).await.unwrap();
}

/// One handshake, the server side accepting with `ours` (the JA4 acceptor) or the
/// plain tokio-rustls acceptor; returns its duration.
async fn handshake(
    listener: &TcpListener,
    addr: SocketAddr,
    connector: &TlsConnector,
    ours: Option<&Ja4Acceptor>,
    plain: &TlsAcceptor,
) -> Duration {
    let name = ServerName::try_from("localhost").unwrap();
    let start = Instant::now();
    let client = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await.unwrap();
    };
    let server = async {
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        match ours {
            Some(acceptor) => {
                let tls = acceptor.accept(tcp).await.unwrap();
                black_box(tls.ja4());
                echo(tls).await;
            }
            None => echo(plain.accept(tcp).await.unwrap()).await,
        }
    };
    tokio::join!(client, server);
    start.elapsed()
}

/// A round: `BATCH` pairs of handshakes, ours and plain back to back (the order
/// alternating pair by pair), so drift in the machine's speed hits both alike.
/// Returns both sums and each pair's ratio.
async fn round(
    listener: &TcpListener,
    addr: SocketAddr,
    connector: &TlsConnector,
    ours: &Ja4Acceptor,
    plain: &TlsAcceptor,
    pairs: &mut Vec<f64>,
) -> (Duration, Duration) {
    let (mut a, mut b) = (Duration::ZERO, Duration::ZERO);
    for i in 0..BATCH {
        let (x, y) = if i % 2 == 0 {
            let x = handshake(listener, addr, connector, Some(ours), plain).await;
            (x, handshake(listener, addr, connector, None, plain).await)
        } else {
            let y = handshake(listener, addr, connector, None, plain).await;
            (
                handshake(listener, addr, connector, Some(ours), plain).await,
                y,
            )
        };
        pairs.push(x.as_secs_f64() / y.as_secs_f64());
        a += x;
        b += y;
    }
    (a, b)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn case(label: &str, resume: bool) {
    let (server, client) = configs(resume);
    let ours = Ja4Acceptor::builder(server.clone()).build().unwrap();
    let plain = TlsAcceptor::from(server);
    let connector = TlsConnector::from(client);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // warm up both paths (caches, tickets, page faults)
    round(&listener, addr, &connector, &ours, &plain, &mut vec![]).await;
    let (mut a, mut b, mut r, mut pairs) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let (x, y) = round(&listener, addr, &connector, &ours, &plain, &mut pairs).await;
        let per = |d: Duration| d.as_secs_f64() * 1e6 / BATCH as f64;
        a.push(per(x));
        b.push(per(y));
        r.push(per(x) / per(y));
    }
    let mut sorted = r.clone();
    sorted.sort_by(f64::total_cmp);
    let (q1, q3) = (sorted[ROUNDS / 4], sorted[3 * ROUNDS / 4]);
    let stats = ours.stats();
    assert_eq!(stats.handshakes_completed as usize, (ROUNDS + 1) * BATCH);
    pairs.sort_by(f64::total_cmp);
    let n = pairs.len();
    println!(
        "| {label} | {:.1} | {:.1} | {:.3} ({q1:.3}–{q3:.3}) | {:.3} ({:.3}–{:.3}) |",
        median(&mut a),
        median(&mut b),
        median(&mut r),
        pairs[n / 2],
        pairs[n / 4],
        pairs[3 * n / 4],
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| handshake | Ja4Acceptor µs | tokio-rustls µs | ratio of round sums, median (IQR) of {ROUNDS} rounds of {BATCH} pairs | ratio per pair, median (IQR) of {} pairs |",
        ROUNDS * BATCH
    );
    println!("|---|---:|---:|---:|---:|");
    rt.block_on(async {
        case("full (ECDHE + ECDSA P-256)", false).await;
        case("resumed (TLS 1.3 ticket)", true).await;
    });
}
