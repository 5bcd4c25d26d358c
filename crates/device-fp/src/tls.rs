//! JA4 from live TLS connections (feature `tls`): [`Ja4Acceptor`] reads the
//! ClientHello records from a freshly accepted connection, computes JA4 once, and
//! hands the same bytes to tokio-rustls, which completes the handshake.
//!
//! Only the ClientHello's own records are read ahead (exactly the bytes their
//! headers announce, at most [`MAX_CLIENT_HELLO_LEN`] in at most
//! [`MAX_CLIENT_HELLO_RECORDS`](crate::MAX_CLIENT_HELLO_RECORDS) records, each byte
//! read once into one buffer and each record header checked once); they are replayed to rustls
//! from that one buffer, which is freed once rustls has read it. Later traffic goes
//! straight from the connection to rustls.

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
            Ok(read) => read.and_then(|prefix| {
                let ja4 = ClientHello::parse(&prefix)?.ja4(Transport::Tcp);
                Ok((prefix, ja4))
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

/// Read exactly the records that carry the ClientHello: never a byte after them.
async fn read_client_hello<IO: AsyncRead + Unpin>(io: &mut IO) -> Result<Vec<u8>, Error> {
    // most ClientHellos fit (post-quantum ones are ~1.8 KB); larger ones grow it
    let mut buf = Vec::with_capacity(2048);
    // resumes where the previous read left off: each record is checked once
    let mut records = ja4::Records::default();
    while let Some(more) = records.advance(&buf)? {
        // advance never lets the records reach past MAX_CLIENT_HELLO_LEN
        debug_assert!(buf.len() + more <= MAX_CLIENT_HELLO_LEN);
        // Read into spare capacity, at most `more` bytes: nothing is zero-filled per
        // read, so a peer sending a byte at a time costs a byte's work per read.
        buf.reserve(more);
        let limit = u64::try_from(more).unwrap_or(u64::MAX);
        let n = (&mut *io)
            .take(limit)
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
    Ok(buf)
}

/// The connection with the ClientHello bytes we read put back in front of it.
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

    #[tokio::test]
    async fn reads_exactly_the_client_hello_records_and_nothing_after() {
        let hello = two_records();
        let mut wire = hello.clone();
        wire.extend(b"application data that must stay unread");
        let mut rest: &[u8] = &wire;
        let read = read_client_hello(&mut rest).await.unwrap();
        assert_eq!(read, hello);
        assert_eq!(rest, b"application data that must stay unread");
        assert!(ClientHello::parse(&read).is_ok());
    }

    /// A peer that delivers its bytes in the given chunk sizes, one per read.
    struct Chunked {
        data: Vec<u8>,
        chunks: Vec<usize>,
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
            Poll::Ready(Ok(()))
        }
    }

    proptest::proptest! {
        /// However slowly the peer delivers it, the acceptor reads the same
        /// ClientHello records and stops right after them.
        #[test]
        fn any_delivery_reads_the_same_records(chunks in proptest::collection::vec(1usize..40, 0..30)) {
            let hello = two_records();
            let mut data = hello.clone();
            data.extend(b"after");
            let mut peer = Chunked { data, chunks };
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let read = rt.block_on(read_client_hello(&mut peer)).unwrap();
            proptest::prop_assert_eq!(read, hello);
            proptest::prop_assert_eq!(peer.data, b"after".to_vec());
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
    async fn byte_by_byte_records_are_read_up_to_the_limit_and_no_further() {
        // eight records delivered one byte per read: the same ClientHello
        let hs = handshake();
        let eight = records_of(&hs, hs.len().div_ceil(8));
        let mut data = eight.clone();
        data.extend(b"after");
        let mut peer = Chunked {
            chunks: vec![1; data.len()],
            data,
        };
        let read = read_client_hello(&mut peer).await.unwrap();
        assert_eq!(read, eight);
        assert_eq!(peer.data, b"after");
        let want = ClientHello::parse(&two_records()).unwrap();
        assert_eq!(ClientHello::parse(&read).unwrap(), want);
        // a longer message in 1-byte records, one byte per read: refused once the
        // last allowed record is in, with everything after it left unread
        let mut hs = vec![0x01, 0x00, 0x01, 0x00];
        hs.resize(4 + 256, 0);
        let records = records_of(&hs, 1);
        let mut peer = Chunked {
            chunks: vec![1; records.len()],
            data: records.clone(),
        };
        let err = read_client_hello(&mut peer).await.unwrap_err();
        assert!(
            matches!(err, Error::TooManyRecords { max } if max == crate::MAX_CLIENT_HELLO_RECORDS),
            "{err}"
        );
        let consumed = records.len() - peer.data.len();
        assert_eq!(consumed, crate::MAX_CLIENT_HELLO_RECORDS * 6);
    }

    #[tokio::test]
    async fn a_record_whose_successor_cannot_fit_is_refused_without_reading_on() {
        // 16 384-byte body, handshake header declaring 16 385: the reader must not
        // ask for the next header (the debug assertion above would fire)
        let mut wire = vec![0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x40, 0x01];
        wire.resize(MAX_CLIENT_HELLO_LEN, 0);
        wire.extend([0x16, 0x03, 0x01, 0x00, 0x01, 0x00]);
        let mut peer: &[u8] = &wire;
        let err = read_client_hello(&mut peer).await.unwrap_err();
        assert!(matches!(err, Error::Oversized { len: 16_399, .. }), "{err}");
        assert_eq!(peer.len(), 6, "read past the first record");
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
