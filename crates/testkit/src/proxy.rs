//! [`FreezingProxy`]: a TCP proxy that can make connections go silent without closing
//! them, as a server gone without a reset (a dead host, a dropped NAT entry) does.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

/// A loopback TCP proxy to `127.0.0.1:<upstream>`. Frozen connections stay open, and
/// what the client sends still reaches the server, but nothing the server sends
/// reaches the client. Closes every connection when dropped.
#[derive(Debug)]
pub struct FreezingProxy {
    port: u16,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Connections accepted so far; each one's id is the count before it.
    opened: AtomicU64,
    /// Connections with an id below this are frozen.
    frozen_below: AtomicU64,
    /// Connections with an id below this that sent a `SUBSCRIBE` are frozen.
    subscriptions_frozen_below: AtomicU64,
    closing: AtomicBool,
    /// Every socket of every connection, to close them on drop.
    sockets: Mutex<Vec<TcpStream>>,
}

impl FreezingProxy {
    /// Starts a proxy to the server listening on loopback port `upstream`.
    pub fn start(upstream: u16) -> FreezingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.closing.load(SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let id = accepting.opened.fetch_add(1, SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                connect(&accepting, id, client, server);
            }
        });
        FreezingProxy { port, shared }
    }

    /// The proxy's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Connections accepted so far.
    pub fn opened(&self) -> u64 {
        self.shared.opened.load(SeqCst)
    }

    /// Every connection open now goes silent; later ones are carried.
    pub fn freeze(&self) {
        self.shared.frozen_below.store(self.opened(), SeqCst);
    }

    /// Every connection open now on which the client sent a Redis `SUBSCRIBE` goes
    /// silent (a dead subscription, its client's other connections alive); later
    /// ones are carried.
    pub fn freeze_subscriptions(&self) {
        (self.shared.subscriptions_frozen_below).store(self.opened(), SeqCst);
    }
}

/// Carries one connection both ways, each on a thread of its own.
fn connect(shared: &Arc<Shared>, id: u64, client: TcpStream, server: TcpStream) {
    let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    if let Ok(mut sockets) = shared.sockets.lock() {
        sockets.extend(
            [client.try_clone(), server.try_clone()]
                .into_iter()
                .flatten(),
        );
    }
    let subscriber = Arc::new(AtomicBool::new(false));
    let sent_subscribe = subscriber.clone();
    std::thread::spawn(move || {
        // The command's name, in a RESP array or inline, in any case.
        carry(client_reader, server, |bytes| {
            if bytes
                .to_ascii_uppercase()
                .windows(9)
                .any(|w| w == b"SUBSCRIBE")
            {
                sent_subscribe.store(true, SeqCst);
            }
            true
        });
    });
    let shared = shared.clone();
    std::thread::spawn(move || {
        carry(server_reader, client, |_| {
            let frozen = id < shared.frozen_below.load(SeqCst)
                || (subscriber.load(SeqCst) && id < shared.subscriptions_frozen_below.load(SeqCst));
            !frozen
        });
    });
}

/// Copies `from` to `to` until either closes; `pass` sees each chunk and says whether
/// to write it (a chunk it refuses is swallowed).
fn carry(mut from: TcpStream, mut to: TcpStream, mut pass: impl FnMut(&[u8]) -> bool) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if pass(&buf[..n]) && to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, SeqCst);
        // Wakes the accepting thread, which then sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Ok(sockets) = self.shared.sockets.lock() {
            for s in sockets.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}
