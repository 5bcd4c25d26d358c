//! `Ja4Acceptor`: the JA4 of a real rustls client's ClientHello, computed on a live
//! connection that then completes its handshake; hostile clients refused or timed
//! out with typed errors.
#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use palisade_device_fp::rustls::ClientConnection;
use palisade_device_fp::{
    ClientHello, DEFAULT_CLIENT_HELLO_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, Error, Ja4, Ja4Acceptor,
    MAX_CLIENT_HELLO_LEN, MAX_CLIENT_HELLO_RECORDS, Transport,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use common::{Recorder, client_hello, configs, first_record, localhost};

#[tokio::test]
async fn a_real_client_gets_its_own_ja4_and_a_working_connection() {
    let (server, client) = configs();
    let acceptor = Ja4Acceptor::builder(server).build().unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let acc = acceptor.clone();
    let served = tokio::spawn(async move {
        let (stream, _) = tcp.accept().await.unwrap();
        let mut tls = acc.accept(stream).await.unwrap();
        let mut ping = [0u8; 4];
        tls.read_exact(&mut ping).await.unwrap();
        assert_eq!(&ping, b"ping");
        tls.write_all(b"pong").await.unwrap();
        tls.shutdown().await.unwrap();
        (tls.ja4().clone(), tls.tls_info())
    });
    let written = Arc::new(Mutex::new(Vec::new()));
    let io = Recorder {
        io: TcpStream::connect(addr).await.unwrap(),
        written: written.clone(),
    };
    let mut tls = TlsConnector::from(client)
        .connect(localhost(), io)
        .await
        .unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut pong = Vec::new();
    tls.read_to_end(&mut pong).await.unwrap();
    assert_eq!(pong, b"pong");
    let (seen, info) = served.await.unwrap();

    // what the client really sent, parsed independently of the acceptor's read path
    let hello = first_record(&written.lock().unwrap());
    let expected = ClientHello::parse(&hello).unwrap().ja4(Transport::Tcp);
    assert_eq!(seen, expected);
    assert_eq!(seen, Ja4::from_client_hello(&hello).unwrap());
    assert!(seen.as_str().starts_with("t13d"), "{seen}"); // rustls: TLS 1.3, SNI
    assert_eq!(info.ja4.as_deref(), Some(seen.as_str()));
    assert_eq!(info.server_name.as_deref(), Some("localhost"));
    let s = acceptor.stats();
    assert_eq!((s.ja4_computed, s.handshakes_completed), (1, 1));
}

/// Drive a sans-I/O rustls client over `io` until its handshake is done.
async fn drive_client(conn: &mut ClientConnection, io: &mut DuplexStream) {
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).unwrap();
        }
        io.write_all(&out).await.unwrap();
        if !conn.is_handshaking() {
            return;
        }
        let n = io.read(&mut buf).await.unwrap();
        assert!(n > 0, "server closed during the handshake");
        let mut read = &buf[..n];
        while !read.is_empty() {
            conn.read_tls(&mut read).unwrap();
            conn.process_new_packets().unwrap();
        }
    }
}

#[tokio::test]
async fn early_data_sent_with_the_client_hello_reaches_rustls_in_order() {
    // TLS 1.3 0-RTT: the client's first flight is its ClientHello and, behind it,
    // early data records, which the acceptor reads together with the ClientHello
    let (server, client) = configs();
    let mut server = Arc::unwrap_or_clone(server);
    server.max_early_data_size = 1024;
    let mut client = Arc::unwrap_or_clone(client);
    client.enable_early_data = true;
    let client = Arc::new(client);
    let acceptor = Ja4Acceptor::builder(Arc::new(server)).build().unwrap();
    // a full handshake first, which leaves the client a ticket
    let (client_end, server_end) = duplex(1 << 16);
    let acc = acceptor.clone();
    let served = tokio::spawn(async move {
        let mut tls = acc.accept(server_end).await.unwrap();
        tls.write_all(b"ticket").await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let mut tls = TlsConnector::from(client.clone())
        .connect(localhost(), client_end)
        .await
        .unwrap();
    let mut got = Vec::new();
    tls.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ticket");
    served.await.unwrap();

    // the resumed connection: ClientHello and early data written before the server reads
    let mut conn = ClientConnection::new(client, localhost()).unwrap();
    let mut early = conn.early_data().expect("a ticket that allows early data");
    std::io::Write::write_all(&mut early, b"early").unwrap();
    let mut first = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut first).unwrap();
    }
    let hello = first_record(&first);
    assert!(
        first.len() > hello.len(),
        "early data behind the ClientHello"
    );
    let (mut client_end, server_end) = duplex(1 << 16);
    client_end.write_all(&first).await.unwrap();
    let acc = acceptor.clone();
    let served = tokio::spawn(async move { acc.accept(server_end).await.map(|s| s.ja4().clone()) });
    drive_client(&mut conn, &mut client_end).await;
    // rustls decrypted the early data records in their place (their record numbers
    // key the decryption of what follows), so none was lost or reordered
    assert!(conn.is_early_data_accepted());
    let seen = served.await.unwrap().unwrap();
    assert_eq!(seen, Ja4::from_client_hello(&hello).unwrap());
    let s = acceptor.stats();
    assert_eq!((s.ja4_computed, s.handshakes_completed), (2, 2));
}

/// Rewrites the client's first record as records of `sizes` bytes, the last one
/// taking the rest.
struct Splitter<IO> {
    io: IO,
    sizes: Vec<usize>,
    done: bool,
}

/// The handshake message of `record` cut into records of `sizes` bytes (the last
/// takes the rest).
fn split(record: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = &record[5..];
    for &n in sizes.iter().chain(std::iter::once(&usize::MAX)) {
        let (part, tail) = rest.split_at(n.min(rest.len()));
        out.extend([0x16, 0x03, 0x01]);
        out.extend((part.len() as u16).to_be_bytes());
        out.extend(part);
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    out
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Splitter<IO> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::task::Poll;
        let this = &mut *self;
        if this.done {
            return std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        }
        let record = first_record(buf);
        let mut split = split(&record, &this.sizes);
        split.extend(&buf[record.len()..]);
        // the duplex has room for all of it
        match std::pin::Pin::new(&mut this.io).poll_write(cx, &split) {
            Poll::Ready(Ok(n)) => {
                assert_eq!(n, split.len());
                this.done = true;
                Poll::Ready(Ok(buf.len()))
            }
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Splitter<IO> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

#[tokio::test]
async fn a_client_hello_split_over_two_or_eight_records_gives_the_same_ja4() {
    let (server, client) = configs();
    // inside the handshake header; eight records of which the first three are tiny
    for sizes in [vec![3], vec![1, 2, 3, 40, 40, 40, 40]] {
        let acceptor = Ja4Acceptor::builder(server.clone()).build().unwrap();
        let (client_end, server_end) = duplex(1 << 16);
        let served =
            tokio::spawn(async move { acceptor.accept(server_end).await.map(|s| s.ja4().clone()) });
        let io = Splitter {
            io: client_end,
            sizes: sizes.clone(),
            done: false,
        };
        let mut tls = TlsConnector::from(client.clone())
            .connect(localhost(), io)
            .await
            .unwrap();
        tls.write_all(b"x").await.unwrap();
        let seen = served.await.unwrap().unwrap();
        // rustls shuffles its extensions per connection; JA4 sorts them, so any hello
        // of this configuration has the same JA4
        assert_eq!(
            seen,
            Ja4::from_client_hello(&client_hello(client.clone())).unwrap(),
            "{sizes:?}"
        );
    }
}

/// Run `accept` against a peer that wrote `bytes` and then keeps the connection open
/// (or closes it, when `close`), with a 5 s timeout on tokio's paused clock.
async fn accept_after(bytes: &[u8], close: bool) -> (Result<(), Error>, Ja4Acceptor) {
    let (server, _) = configs();
    let acceptor = Ja4Acceptor::builder(server)
        .handshake_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let (mut client_end, server_end) = duplex(1 << 16);
    client_end.write_all(bytes).await.unwrap();
    let _open = if close {
        drop(client_end);
        None
    } else {
        Some(client_end)
    };
    let r = acceptor.accept(server_end).await.map(|_| ());
    (r, acceptor)
}

#[tokio::test(start_paused = true)]
async fn a_stalled_client_hello_times_out() {
    let hello = client_hello(configs().1);
    for cut in [0, 3, 5, hello.len() / 2, hello.len() - 1] {
        let (r, acceptor) = accept_after(&hello[..cut], false).await;
        assert!(
            matches!(
                r,
                Err(Error::Timeout {
                    what: "ClientHello",
                    ..
                })
            ),
            "cut {cut}: {r:?}"
        );
        assert_eq!(acceptor.stats().timeouts, 1);
        assert_eq!(acceptor.stats().ja4_computed, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stalls_after_its_hello_times_out_in_the_handshake() {
    let hello = client_hello(configs().1);
    let (r, acceptor) = accept_after(&hello, false).await;
    assert!(
        matches!(
            r,
            Err(Error::Timeout {
                what: "TLS handshake",
                ..
            })
        ),
        "{r:?}"
    );
    let s = acceptor.stats();
    assert_eq!(
        (s.ja4_computed, s.timeouts, s.handshakes_completed),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn foreign_malformed_oversized_and_cut_hellos_are_refused_with_typed_errors() {
    let hello = client_hello(configs().1);
    // plain HTTP on the TLS port
    let (r, acceptor) = accept_after(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
    assert!(
        matches!(r, Err(Error::NotClientHello { value: b'G', .. })),
        "{r:?}"
    );
    assert_eq!(acceptor.stats().client_hellos_refused, 1);
    // a handshake record announcing a 65 535-byte ClientHello: refused at once,
    // while the peer keeps the connection open (no waiting for the timeout)
    let (r, _) = accept_after(
        &[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0xff, 0xff],
        false,
    )
    .await;
    assert!(
        matches!(r, Err(Error::Oversized { len: 65_549, .. })),
        "{r:?}"
    );
    // a complete record whose ClientHello lengths disagree
    let mut bad = hello.clone();
    bad[5 + 4 + 2 + 32] = 33; // session_id length beyond 32
    let (r, _) = accept_after(&bad, false).await;
    assert!(
        matches!(r, Err(Error::Malformed(_) | Error::Truncated { .. })),
        "{r:?}"
    );
    // the peer closes half-way
    let (r, acceptor) = accept_after(&hello[..40], true).await;
    assert!(matches!(r, Err(Error::Truncated { .. })), "{r:?}");
    assert_eq!(acceptor.stats().client_hellos_refused, 1);
}

#[test]
fn a_zero_timeout_is_a_configuration_error() {
    let (server, _) = configs();
    match Ja4Acceptor::builder(server.clone())
        .handshake_timeout(Duration::ZERO)
        .build()
    {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "handshake_timeout"),
        other => panic!("{other:?}"),
    }
    match Ja4Acceptor::builder(server)
        .client_hello_timeout(Duration::ZERO)
        .build()
    {
        Err(Error::InvalidConfig { field, .. }) => assert_eq!(field, "client_hello_timeout"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_first_byte_that_is_not_tls_is_refused_at_once() {
    for first in [b"G", b"\x17", b"S"] {
        let started = Instant::now();
        let (r, acceptor) = accept_after(first, false).await;
        assert!(
            matches!(r, Err(Error::NotClientHello { what: "record type", value }) if value == first[0]),
            "{first:?}: {r:?}"
        );
        // on tokio's paused clock any wait for more bytes would end in the timeout
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(acceptor.stats().client_hellos_refused, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_hello_over_too_many_records_is_refused() {
    let hello = client_hello(configs().1);
    // one byte per record: about 10 times the limit for rustls' ClientHello
    let sizes = vec![1; hello.len()];
    let records = split(&hello, &sizes);
    let started = Instant::now();
    let (r, acceptor) = accept_after(&records, false).await;
    assert!(
        matches!(
            r,
            Err(Error::TooManyRecords {
                max: MAX_CLIENT_HELLO_RECORDS
            })
        ),
        "{r:?}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(acceptor.stats().client_hellos_refused, 1);
    // at the limit it is still read (and rustls would complete it: see the
    // eight-record test above)
    let records = split(&hello, &vec![1; MAX_CLIENT_HELLO_RECORDS - 1]);
    assert_eq!(
        Ja4::from_client_hello(&records).unwrap(),
        Ja4::from_client_hello(&hello).unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn a_hello_that_cannot_fit_with_its_next_record_header_is_refused_at_once() {
    // one full 16 384-byte record whose handshake header declares 16 385 bytes: the
    // next record header alone would pass MAX_CLIENT_HELLO_LEN (this tripped a
    // debug assertion in the reader, and this test runs in a debug build)
    let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x40, 0x01];
    record.resize(MAX_CLIENT_HELLO_LEN, 0);
    let (r, acceptor) = accept_after(&record, false).await;
    assert!(
        matches!(
            r,
            Err(Error::Oversized {
                len: 16_399,
                max: MAX_CLIENT_HELLO_LEN
            })
        ),
        "{r:?}"
    );
    assert_eq!(acceptor.stats().client_hellos_refused, 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_or_trickling_client_is_dropped_by_the_client_hello_timeout() {
    let (server, _) = configs();
    let acceptor = Ja4Acceptor::builder(server.clone())
        .handshake_timeout(Duration::from_secs(60))
        .client_hello_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let hello = client_hello(configs().1);
    for sent in [&[][..], &hello[..3], &hello[..hello.len() - 1]] {
        let (mut client_end, server_end) = duplex(1 << 16);
        client_end.write_all(sent).await.unwrap();
        let started = Instant::now();
        let r = acceptor.accept(server_end).await.map(|_| ());
        assert!(
            matches!(
                r,
                Err(Error::Timeout {
                    what: "ClientHello",
                    after
                }) if after == Duration::from_secs(2)
            ),
            "{r:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        drop(client_end);
    }
    assert_eq!(acceptor.stats().timeouts, 3);
    // the default: a silent client waits DEFAULT_CLIENT_HELLO_TIMEOUT, not the
    // (longer) handshake timeout
    assert!(DEFAULT_CLIENT_HELLO_TIMEOUT < DEFAULT_HANDSHAKE_TIMEOUT);
    let acceptor = Ja4Acceptor::builder(server).build().unwrap();
    let (_client_end, server_end) = duplex(1 << 16);
    let started = Instant::now();
    let r = acceptor.accept(server_end).await.map(|_| ());
    assert!(
        matches!(r, Err(Error::Timeout { what: "ClientHello", after }) if after == DEFAULT_CLIENT_HELLO_TIMEOUT),
        "{r:?}"
    );
    assert_eq!(started.elapsed(), DEFAULT_CLIENT_HELLO_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn the_handshake_keeps_the_rest_of_the_overall_timeout() {
    // the ClientHello arrives at once; the client then stalls: the short ClientHello
    // timeout no longer applies, the handshake timeout does
    let (server, client) = configs();
    let acceptor = Ja4Acceptor::builder(server)
        .handshake_timeout(Duration::from_secs(60))
        .client_hello_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let (mut client_end, server_end) = duplex(1 << 16);
    client_end.write_all(&client_hello(client)).await.unwrap();
    let started = Instant::now();
    let r = acceptor.accept(server_end).await.map(|_| ());
    assert!(
        matches!(r, Err(Error::Timeout { what: "TLS handshake", after }) if after == Duration::from_secs(60)),
        "{r:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    assert_eq!(acceptor.stats().ja4_computed, 1);
}
