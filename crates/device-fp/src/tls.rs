//! JA4 from live TLS connections (feature `tls`): [`Ja4Acceptor`] reads the
//! ClientHello records from a freshly accepted connection, computes JA4 once, and
//! hands the same bytes to tokio-rustls, which completes the handshake.
//!
//! The reader reads what has arrived, as rustls itself would (up to 4 KiB a read),
//! until the ClientHello's records are complete: the usual ClientHello costs one
//! read, as without us. JA4 is computed from exactly those records (at most
//! [`MAX_CLIENT_HELLO_LEN`] in at most
//! [`MAX_CLIENT_HELLO_RECORDS`](crate::MAX_CLIENT_HELLO_RECORDS) records, each byte
//! read once into one buffer and each record header checked once). Bytes that came
//! in the same read after them (TLS 1.3 early data, a pipelining client; fewer than
//! 4 KiB) are kept, and everything read is replayed to rustls, in order, from that
//! one buffer, which is freed once rustls has read it. Later traffic goes straight
//! from the connection to rustls.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use palisade_core_traits::TlsInfo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{ServerConfig, ServerConnection};
use tokio_rustls::server::TlsStream;

use crate::error::Error;
use crate::ja4::{self, ClientHello, Ja4, MAX_CLIENT_HELLO_LEN, Transport};
use crate::metrics;

/// How long [`Ja4Acceptor::accept`] waits for the ClientHello and the handshake
/// together, unless set otherwise.
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Ja4Acceptor::accept`] waits for the whole ClientHello, unless set
/// otherwise. A real client sends it right after the TCP handshake, so it arrives
/// within a round trip or a few retransmissions; a connection that stays silent (or
/// trickles) holds its handshake slot for this long, not for the whole
/// [`DEFAULT_HANDSHAKE_TIMEOUT`].
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub const DEFAULT_CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters of a [`Ja4Acceptor`] (shared by its clones) since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub struct AcceptorStats {
    /// Connections whose ClientHello gave a JA4.
    pub ja4_computed: u64,
    /// Connections refused because their first bytes were not a well-formed
    /// ClientHello within [`MAX_CLIENT_HELLO_LEN`] (not TLS, malformed, oversized,
    /// split over too many records, closed half-way).
    pub client_hellos_refused: u64,
    /// Connections that did not finish the ClientHello and handshake in time.
    pub timeouts: u64,
    /// Connections that failed with an I/O error while we read the ClientHello.
    pub io_errors: u64,
    /// Handshakes rustls refused after the JA4 was computed.
    pub handshakes_failed: u64,
    /// Handshakes completed.
    pub handshakes_completed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    ja4_computed: AtomicU64,
    client_hellos_refused: AtomicU64,
    timeouts: AtomicU64,
    io_errors: AtomicU64,
    handshakes_failed: AtomicU64,
    handshakes_completed: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A TLS acceptor that computes the client's JA4 from its ClientHello.
///
/// Hostile clients: the ClientHello must arrive within a short timeout
/// ([`DEFAULT_CLIENT_HELLO_TIMEOUT`]) and the whole accept (ClientHello and
/// handshake) within a longer one ([`DEFAULT_HANDSHAKE_TIMEOUT`]); a connection
/// whose first bytes are not a well-formed ClientHello (another protocol, refused
/// after its first byte; a malformed or truncated one; records announcing more than
/// [`MAX_CLIENT_HELLO_LEN`] bytes or more than
/// [`MAX_CLIENT_HELLO_RECORDS`](crate::MAX_CLIENT_HELLO_RECORDS) records) is refused
/// with a typed [`Error`] before rustls sees it, so every accepted connection has a
/// JA4. Each outcome is counted ([`Ja4Acceptor::stats`], and the `metrics` feature).
///
/// Cheap to clone (clones share the configuration and counters). For axum, wrap it
/// in a `Ja4Listener` (feature `axum`), which runs handshakes
/// concurrently; calling `accept` in a loop without spawning would let one slow
/// client hold the others for up to the timeout.
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub struct Ja4Acceptor {
    tls: TlsAcceptor,
    timeout: Duration,
    client_hello_timeout: Duration,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Ja4Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ja4Acceptor")
            .field("timeout", &self.timeout)
            .field("client_hello_timeout", &self.client_hello_timeout)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Builder of a [`Ja4Acceptor`]; checks everything in [`build`](Self::build).
#[must_use]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub struct Ja4AcceptorBuilder {
    config: Arc<ServerConfig>,
    timeout: Duration,
    client_hello_timeout: Duration,
}

impl std::fmt::Debug for Ja4AcceptorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ja4AcceptorBuilder")
            .field("timeout", &self.timeout)
            .field("client_hello_timeout", &self.client_hello_timeout)
            .finish_non_exhaustive()
    }
}

impl Ja4AcceptorBuilder {
    /// Longest time from the first byte awaited to the completed handshake (default
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`], 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Longest time from the first byte awaited to the complete ClientHello (default
    /// [`DEFAULT_CLIENT_HELLO_TIMEOUT`], 5 s). It bounds how long a silent or
    /// trickling connection holds a handshake slot; `handshake_timeout` still bounds
    /// the whole accept, so a longer value than that has no effect.
    pub fn client_hello_timeout(mut self, timeout: Duration) -> Self {
        self.client_hello_timeout = timeout;
        self
    }

    /// The acceptor; `Error::InvalidConfig` for a zero `handshake_timeout` or
    /// `client_hello_timeout`.
    pub fn build(self) -> Result<Ja4Acceptor, Error> {
        for (field, value) in [
            ("handshake_timeout", self.timeout),
            ("client_hello_timeout", self.client_hello_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig {
                    field,
                    reason: "must be longer than zero".to_owned(),
                });
            }
        }
        Ok(Ja4Acceptor {
            tls: TlsAcceptor::from(self.config),
            timeout: self.timeout,
            client_hello_timeout: self.client_hello_timeout,
            counters: Arc::default(),
        })
    }
}

impl Ja4Acceptor {
    /// A builder serving TLS with this rustls configuration (build it with the
    /// `ring` provider: `palisade_device_fp::rustls`, the version this crate uses).
    pub fn builder(config: Arc<ServerConfig>) -> Ja4AcceptorBuilder {
        Ja4AcceptorBuilder {
            config,
            timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            client_hello_timeout: DEFAULT_CLIENT_HELLO_TIMEOUT,
        }
    }

    /// Read the ClientHello from `io`, compute its JA4, and complete the TLS
    /// handshake. Errors: [`Error::Timeout`] (ClientHello or handshake not done in
    /// time), the ClientHello errors of [`ClientHello::parse`] (`NotClientHello`,
    /// `Malformed`, `Truncated` when the peer closed half-way, `Oversized`,
    /// `TooManyRecords`), and [`Error::Io`] (the connection failed, or rustls refused
    /// the handshake).
    pub async fn accept<IO>(&self, mut io: IO) -> Result<Ja4Stream<IO>, Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let started = Instant::now();
        // The ClientHello has its own, shorter bound inside the overall one.
        let hello_limit = self.client_hello_timeout.min(self.timeout);
        let hello = match timeout(hello_limit, read_client_hello(&mut io)).await {
            Ok(read) => read.and_then(|read| {
                let ja4 = read.ja4()?;
                Ok((read.bytes, ja4))
            }),
            Err(_) => Err(Error::Timeout {
                what: "ClientHello",
                after: hello_limit,
            }),
        };
        let c = &self.counters;
        let (prefix, ja4) = match hello {
            Ok(hello) => hello,
            Err(e) => {
                bump(match e {
                    Error::Timeout { .. } => &c.timeouts,
                    Error::Io { .. } => &c.io_errors,
                    _ => &c.client_hellos_refused,
                });
                metrics::ja4_failed(e.reason());
                tracing::debug!(reason = e.reason(), error = %e, "TLS connection refused before the handshake");
                return Err(e);
            }
        };
        self.computed(&ja4);
        let replay = Replay { prefix, pos: 0, io };
        // The handshake gets what is left of the overall timeout.
        let result = match timeout_at(started + self.timeout, self.tls.accept(replay)).await {
            Ok(Ok(inner)) => Ok(Ja4Stream { inner, ja4 }),
            Ok(Err(source)) => Err(Error::Io {
                during: "TLS handshake",
                source,
            }),
            Err(_) => Err(Error::Timeout {
                what: "TLS handshake",
                after: self.timeout,
            }),
        };
        match &result {
            Ok(stream) => {
                bump(&c.handshakes_completed);
                tracing::trace!(ja4 = %stream.ja4, "TLS handshake completed");
            }
            Err(e) => {
                bump(match e {
                    Error::Timeout { .. } => &c.timeouts,
                    _ => &c.handshakes_failed,
                });
                metrics::tls_handshake_failed();
                tracing::debug!(reason = e.reason(), error = %e, "TLS handshake failed");
            }
        }
        result
    }

    fn computed(&self, ja4: &Ja4) {
        bump(&self.counters.ja4_computed);
        metrics::ja4_computed();
        tracing::trace!(ja4 = %ja4, "JA4 computed");
    }

    /// Counters since the acceptor was built (shared by its clones).
    pub fn stats(&self) -> AcceptorStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AcceptorStats {
            ja4_computed: get(&c.ja4_computed),
            client_hellos_refused: get(&c.client_hellos_refused),
            timeouts: get(&c.timeouts),
            io_errors: get(&c.io_errors),
            handshakes_failed: get(&c.handshakes_failed),
            handshakes_completed: get(&c.handshakes_completed),
        }
    }
}

/// The least one read asks for: rustls reads 4 KiB at a time, so a ClientHello and
/// whatever arrived with it come in one read, as they would to rustls alone.
const READ_SIZE: usize = 4096;

/// What [`read_client_hello`] read: the ClientHello records (`bytes[..hello_len]`),
/// then whatever arrived after them in the same read, all to be replayed to rustls.
#[derive(Debug)]
struct ReadAhead {
    bytes: Vec<u8>,
    hello_len: usize,
}

impl ReadAhead {
    /// The records that carry the ClientHello, nothing after them.
    fn hello(&self) -> &[u8] {
        &self.bytes[..self.hello_len]
    }

    /// The JA4 (TCP) of the ClientHello, or why its records do not hold one.
    fn ja4(&self) -> Result<Ja4, Error> {
        Ok(ClientHello::parse(self.hello())?.ja4(Transport::Tcp))
    }
}

/// Read until the records that carry the ClientHello are complete, keeping whatever
/// arrived with them in the last read.
async fn read_client_hello<IO: AsyncRead + Unpin>(io: &mut IO) -> Result<ReadAhead, Error> {
    // one read's worth: most ClientHellos fit (post-quantum ones are ~1.8 KB)
    let mut buf = Vec::with_capacity(READ_SIZE);
    // resumes where the previous read left off: each record is checked once
    let mut records = ja4::Records::default();
    while let Some(more) = records.advance(&buf)? {
        // advance never lets the records reach past MAX_CLIENT_HELLO_LEN
        debug_assert!(buf.len() + more <= MAX_CLIENT_HELLO_LEN);
        // Bound: a read takes at most max(more, READ_SIZE) bytes and the records need
        // `more` of them, so the buffer stays below MAX_CLIENT_HELLO_LEN + READ_SIZE
        // and fewer than READ_SIZE bytes after the ClientHello are ever read (no read
        // follows the one that completes it). Into spare capacity: nothing is
        // zero-filled per read, so a peer sending a byte at a time costs a byte's
        // work per read.
        let limit = more.max(READ_SIZE);
        buf.reserve(limit);
        let n = (&mut *io)
            .take(u64::try_from(limit).unwrap_or(u64::MAX))
            .read_buf(&mut buf)
            .await
            .map_err(|source| Error::Io {
                during: "reading the ClientHello",
                source,
            })?;
        if n == 0 {
            return Err(Error::Truncated {
                what: "ClientHello records (connection closed)",
                needed: more,
                available: 0,
            });
        }
    }
    debug_assert!(buf.len() - records.end() < READ_SIZE);
    Ok(ReadAhead {
        hello_len: records.end(),
        bytes: buf,
    })
}

/// The connection with the bytes we read (the ClientHello records and what came
/// with them) put back in front of it.
#[derive(Debug)]
struct Replay<IO> {
    prefix: Vec<u8>,
    pos: usize,
    io: IO,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Replay<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new(); // replayed: free it
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Replay<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// An accepted TLS connection and the JA4 of its ClientHello. Reads and writes
/// application data like `tokio_rustls::server::TlsStream`.
#[derive(Debug)]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub struct Ja4Stream<IO> {
    inner: TlsStream<Replay<IO>>,
    ja4: Ja4,
}

impl<IO> Ja4Stream<IO> {
    /// The client's JA4 (TCP), computed once from its ClientHello.
    pub fn ja4(&self) -> &Ja4 {
        &self.ja4
    }

    /// The transport and the rustls connection (negotiated ALPN, SNI, version, …).
    pub fn get_ref(&self) -> (&IO, &ServerConnection) {
        let (replay, conn) = self.inner.get_ref();
        (&replay.io, conn)
    }

    /// The connection's TLS facts for a `RequestContext`: the JA4 and the SNI name.
    pub fn tls_info(&self) -> TlsInfo {
        let mut info = TlsInfo::with_ja4(self.ja4.as_str());
        info.server_name = self.get_ref().1.server_name().map(str::to_owned);
        info
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for Ja4Stream<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Ja4Stream<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A two-record ClientHello (type, length, then the handshake header split).
    fn two_records() -> Vec<u8> {
        let mut hs = vec![0x01, 0x00, 0x00, 41, 0x03, 0x03];
        hs.extend([7u8; 32]); // random
        hs.extend([0, 0, 2, 0x13, 0x01, 1, 0]); // session id, one suite, null compression
        let (a, b) = hs.split_at(2);
        let mut out = Vec::new();
        for part in [a, b] {
            out.extend([0x16, 0x03, 0x01, 0x00, part.len() as u8]);
            out.extend(part);
        }
        out
    }

    /// A peer that delivers its bytes in the given chunk sizes, one per read (then
    /// all that is left per read), counting its reads.
    struct Chunked {
        data: Vec<u8>,
        chunks: Vec<usize>,
        reads: usize,
    }

    impl Chunked {
        fn new(data: Vec<u8>, chunks: Vec<usize>) -> Self {
            Self {
                data,
                chunks,
                reads: 0,
            }
        }
    }

    impl AsyncRead for Chunked {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = &mut *self;
            let chunk = if this.chunks.is_empty() {
                usize::MAX
            } else {
                this.chunks.remove(0)
            };
            let n = chunk.min(buf.remaining()).min(this.data.len());
            buf.put_slice(&this.data[..n]);
            this.data.drain(..n);
            this.reads += 1;
            Poll::Ready(Ok(()))
        }
    }

    /// What rustls is handed: the bytes read ahead, then the rest of the connection.
    async fn replayed(read: ReadAhead, peer: Chunked) -> Vec<u8> {
        let mut replay = Replay {
            prefix: read.bytes,
            pos: 0,
            io: peer,
        };
        let mut out = Vec::new();
        replay.read_to_end(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_client_hello_and_what_came_with_it_take_one_read_and_are_replayed_in_order() {
        let hello = two_records();
        let alone = ClientHello::parse(&hello).unwrap().ja4(Transport::Tcp);
        // e.g. TLS 1.3 early data sent right behind the ClientHello
        let trailing = b"\x17\x03\x03\x00\x05early".to_vec();
        let later = b"the rest of the connection".to_vec();
        let mut wire = hello.clone();
        wire.extend(&trailing);
        wire.extend(&later);
        let mut peer = Chunked::new(wire.clone(), vec![hello.len() + trailing.len()]);
        let read = read_client_hello(&mut peer).await.unwrap();
        assert_eq!(peer.reads, 1, "one read for the ClientHello");
        assert_eq!(read.hello(), hello);
        assert_eq!(read.bytes[hello.len()..], trailing);
        assert_eq!(read.ja4().unwrap(), alone);
        // nothing lost or reordered: the ClientHello, the trailing bytes, then the rest
        assert_eq!(replayed(read, peer).await, wire);
    }

    #[tokio::test]
    async fn a_client_hello_arriving_whole_takes_one_read() {
        // everything the peer sent is there at once: one read, up to READ_SIZE
        let hello = two_records();
        let mut wire = hello.clone();
        wire.resize(hello.len() + 2 * READ_SIZE, 0x17);
        let mut peer = Chunked::new(wire.clone(), vec![]);
        let read = read_client_hello(&mut peer).await.unwrap();
        assert_eq!(peer.reads, 1);
        assert_eq!(read.hello(), hello);
        assert_eq!(
            read.bytes.len(),
            READ_SIZE,
            "one read takes READ_SIZE, no more"
        );
        assert_eq!(replayed(read, peer).await, wire);
    }

    /// A chunk size: mostly a few bytes, sometimes more than a read takes.
    fn chunk() -> impl proptest::strategy::Strategy<Value = usize> {
        proptest::prop_oneof![3 => 1usize..40, 1 => 1usize..2 * READ_SIZE]
    }

    proptest::proptest! {
        /// However the peer delivers it, JA4 is computed from exactly the ClientHello
        /// records, fewer than READ_SIZE bytes after them are read, and the replay
        /// followed by the rest of the connection is the wire, byte for byte.
        #[test]
        fn any_delivery_reads_the_same_records(
            chunks in proptest::collection::vec(chunk(), 0..30),
            after in 0usize..3 * READ_SIZE,
        ) {
            let hello = two_records();
            let mut wire = hello.clone();
            wire.extend((0..after).map(|i| i as u8));
            let mut peer = Chunked::new(wire.clone(), chunks);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let read = rt.block_on(read_client_hello(&mut peer)).unwrap();
            proptest::prop_assert_eq!(read.hello(), &hello[..]);
            proptest::prop_assert_eq!(
                read.ja4().unwrap(),
                ClientHello::parse(&hello).unwrap().ja4(Transport::Tcp)
            );
            proptest::prop_assert!(read.bytes.len() - hello.len() < READ_SIZE);
            proptest::prop_assert_eq!(rt.block_on(replayed(read, peer)), wire);
        }
    }

    /// `hs` cut into records of `size` bytes.
    fn records_of(hs: &[u8], size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in hs.chunks(size) {
            out.extend([0x16, 0x03, 0x01, 0x00, part.len() as u8]);
            out.extend(part);
        }
        out
    }

    /// The handshake message of `two_records()`.
    fn handshake() -> Vec<u8> {
        let records = two_records();
        let mut hs = records[5..7].to_vec();
        hs.extend(&records[12..]);
        hs
    }

    #[tokio::test]
    async fn records_are_read_the_same_byte_by_byte_or_at_once_up_to_the_limit() {
        // eight records, one byte per read or all in one read: the same ClientHello;
        // a read stops where the peer's bytes stop, so byte by byte nothing after the
        // records is read, at once what came with them is kept for the replay
        let hs = handshake();
        let eight = records_of(&hs, hs.len().div_ceil(8));
        let mut data = eight.clone();
        data.extend(b"after");
        let want = ClientHello::parse(&two_records()).unwrap();
        let mut peer = Chunked::new(data.clone(), vec![1; data.len()]);
        let read = read_client_hello(&mut peer).await.unwrap();
        assert_eq!(
            (read.bytes.as_slice(), peer.reads),
            (&eight[..], eight.len())
        );
        assert_eq!(peer.data, b"after");
        assert_eq!(ClientHello::parse(read.hello()).unwrap(), want);
        let mut peer = Chunked::new(data.clone(), vec![]);
        let read = read_client_hello(&mut peer).await.unwrap();
        assert_eq!((read.hello(), peer.reads), (&eight[..], 1));
        assert_eq!(read.bytes, data);
        assert_eq!(ClientHello::parse(read.hello()).unwrap(), want);
        // a longer message in 1-byte records: refused once the last allowed record is
        // in, whether it comes a byte per read (nothing after it is read) or at once
        let mut hs = vec![0x01, 0x00, 0x01, 0x00];
        hs.resize(4 + 256, 0);
        let records = records_of(&hs, 1);
        for chunks in [vec![1; records.len()], vec![]] {
            let mut peer = Chunked::new(records.clone(), chunks.clone());
            let err = read_client_hello(&mut peer).await.unwrap_err();
            assert!(
                matches!(err, Error::TooManyRecords { max } if max == crate::MAX_CLIENT_HELLO_RECORDS),
                "{err}"
            );
            if !chunks.is_empty() {
                let consumed = records.len() - peer.data.len();
                assert_eq!(consumed, crate::MAX_CLIENT_HELLO_RECORDS * 6);
            }
        }
    }

    #[tokio::test]
    async fn a_record_whose_successor_cannot_fit_is_refused_without_waiting_for_it() {
        // 16 384-byte body, handshake header declaring 16 385: refused once the record
        // is in. Alone, then closed: a reader that waited for the next header would
        // see the close (Truncated) instead. With the successor's bytes in the same
        // read: they do not change the answer.
        let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x40, 0x01];
        record.resize(MAX_CLIENT_HELLO_LEN, 0);
        let mut with_next = record.clone();
        with_next.extend([0x16, 0x03, 0x01, 0x00, 0x01, 0x00]);
        // reads: 4096, then 12 193 of the 12 293 still needed, then 100 + the 6 after
        let cases = [
            (record, vec![]),
            (
                with_next,
                vec![READ_SIZE, MAX_CLIENT_HELLO_LEN - READ_SIZE - 100, 106],
            ),
        ];
        for (wire, chunks) in cases {
            let mut peer = Chunked::new(wire, chunks);
            let err = read_client_hello(&mut peer).await.unwrap_err();
            assert!(matches!(err, Error::Oversized { len: 16_399, .. }), "{err}");
            assert!(peer.data.is_empty());
        }
    }

    #[tokio::test]
    async fn the_replayed_bytes_come_first_then_the_connection() {
        let mut replay = Replay {
            prefix: b"hello".to_vec(),
            pos: 0,
            io: &b" world"[..],
        };
        let mut small = [0u8; 3];
        replay.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"hel");
        let mut rest = Vec::new();
        replay.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"lo world");
        assert!(replay.prefix.is_empty() && replay.prefix.capacity() == 0);
    }
}
