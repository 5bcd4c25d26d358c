//! axum integration (feature `axum`): [`Ja4Listener`] accepts TCP connections and
//! runs their JA4 + TLS handshakes concurrently, bounded; `axum::serve` takes it as
//! its listener, and handlers read [`Ja4ConnectInfo`] through `ConnectInfo`.

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use palisade_core_traits::TlsInfo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::ja4::Ja4;
use crate::tls::{Ja4Acceptor, Ja4Stream};

/// Handshakes in progress at once, unless set otherwise.
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub const DEFAULT_MAX_HANDSHAKES: NonZeroUsize = NonZeroUsize::new(256).expect("256 > 0");

/// A TLS listener for `axum::serve` that gives every connection's JA4 to handlers.
///
/// A background task accepts TCP connections and hands each to the
/// [`Ja4Acceptor`] on its own task, at most `max_handshakes` at once (further
/// connections wait in the kernel's backlog); a slow or hostile client holds only
/// its own slot: until its ClientHello is complete for at most the acceptor's
/// ClientHello timeout (`DEFAULT_CLIENT_HELLO_TIMEOUT`, 5 s), and for at most its
/// handshake timeout (`DEFAULT_HANDSHAKE_TIMEOUT`, 10 s) in all. Refused connections
/// are dropped, counted in [`Ja4Acceptor::stats`] and logged at debug level.
/// Dropping the listener stops the task.
///
/// Limit: slots are not per client. Enough connections that open and stay silent
/// fill all `max_handshakes` slots (256 connections every 5 s by default) and new
/// connections then wait in the backlog; put a per-address connection limit in front
/// (a load balancer, a firewall) where that matters.
///
/// ```no_run
/// use std::sync::Arc;
/// use axum::{Router, extract::ConnectInfo, routing::get};
/// use palisade_device_fp::{Ja4Acceptor, Ja4ConnectInfo, Ja4Listener};
///
/// # async fn serve(tls: Arc<palisade_device_fp::rustls::ServerConfig>) -> Result<(), Box<dyn std::error::Error>> {
/// let acceptor = Ja4Acceptor::builder(tls).build()?;
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
/// let listener = Ja4Listener::builder(tcp, acceptor).build()?;
/// let app = Router::new().route(
///     "/",
///     get(|ConnectInfo(conn): ConnectInfo<Ja4ConnectInfo>| async move { conn.ja4().to_string() }),
/// );
/// axum::serve(listener, app.into_make_service_with_connect_info::<Ja4ConnectInfo>()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub struct Ja4Listener {
    accepted: mpsc::Receiver<(Ja4Stream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

/// Builder of a [`Ja4Listener`]; checks everything in [`build`](Self::build).
#[derive(Debug)]
#[must_use]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub struct Ja4ListenerBuilder {
    tcp: TcpListener,
    acceptor: Ja4Acceptor,
    max_handshakes: NonZeroUsize,
}

impl Ja4ListenerBuilder {
    /// Handshakes in progress at once (default [`DEFAULT_MAX_HANDSHAKES`], 256).
    pub fn max_handshakes(mut self, n: NonZeroUsize) -> Self {
        self.max_handshakes = n;
        self
    }

    /// Start accepting. Must run inside a tokio runtime (`Error::InvalidConfig` with
    /// field `runtime` otherwise); `Error::Io` if the socket has no local address.
    pub fn build(self) -> Result<Ja4Listener, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| Error::InvalidConfig {
            field: "runtime",
            reason: format!("Ja4Listener must be built inside a tokio runtime: {e}"),
        })?;
        let local_addr = self.tcp.local_addr().map_err(|source| Error::Io {
            during: "reading the listener's address",
            source,
        })?;
        let (tx, accepted) = mpsc::channel(self.max_handshakes.get());
        let slots = Arc::new(Semaphore::new(self.max_handshakes.get()));
        let task = runtime.spawn(accept_loop(self.tcp, self.acceptor, slots, tx));
        Ok(Ja4Listener {
            accepted,
            local_addr,
            task,
        })
    }
}

impl Ja4Listener {
    /// A builder accepting on `tcp` with `acceptor`.
    pub fn builder(tcp: TcpListener, acceptor: Ja4Acceptor) -> Ja4ListenerBuilder {
        Ja4ListenerBuilder {
            tcp,
            acceptor,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }
}

impl Drop for Ja4Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: Ja4Acceptor,
    slots: Arc<Semaphore>,
    tx: mpsc::Sender<(Ja4Stream<TcpStream>, SocketAddr)>,
) {
    loop {
        // A slot before accept(): when all are taken, connections wait in the kernel's
        // backlog instead of as accepted sockets here. The semaphore is never
        // closed, so acquiring only waits.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "TCP accept failed");
                // Out of file descriptors and the like: back off as axum::serve does.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match acceptor.accept(stream).await {
                // the slot is held until the server has taken the connection
                Ok(tls) => drop(tx.send((tls, peer)).await),
                Err(e) => tracing::debug!(%peer, reason = e.reason(), "TLS connection refused"),
            }
            drop(slot);
        });
    }
}

impl Listener for Ja4Listener {
    type Io = Ja4Stream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // the accept task is gone (it only ends if it panicked): accept nothing more
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// What a handler learns about its connection: the client's address, its JA4 and
/// the SNI name it asked for. Use with
/// `Router::into_make_service_with_connect_info::<Ja4ConnectInfo>()` and a
/// [`Ja4Listener`]; extract it with `ConnectInfo<Ja4ConnectInfo>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub struct Ja4ConnectInfo {
    remote_addr: SocketAddr,
    ja4: Ja4,
    server_name: Option<String>,
}

impl Ja4ConnectInfo {
    /// The TCP peer (a proxy, if one stands in front: see
    /// `palisade_core_traits::TrustedProxies`).
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }

    /// The client's JA4.
    pub fn ja4(&self) -> &Ja4 {
        &self.ja4
    }

    /// The SNI name, if the client sent one.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The TLS facts for a `RequestContext`.
    pub fn tls_info(&self) -> TlsInfo {
        let mut info = TlsInfo::with_ja4(self.ja4.as_str());
        info.server_name.clone_from(&self.server_name);
        info
    }
}

impl Connected<IncomingStream<'_, Ja4Listener>> for Ja4ConnectInfo {
    fn connect_info(stream: IncomingStream<'_, Ja4Listener>) -> Self {
        let io = stream.io();
        Ja4ConnectInfo {
            remote_addr: *stream.remote_addr(),
            ja4: io.ja4().clone(),
            server_name: io.get_ref().1.server_name().map(str::to_owned),
        }
    }
}
