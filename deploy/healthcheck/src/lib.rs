//! The container health check of the `palisade-gateway` image (`deploy/Dockerfile`).
//!
//! The runtime image has no shell and no `curl`, so Docker's `HEALTHCHECK` runs
//! this small binary in exec form. It sends `GET /healthz` to the gateway's own
//! listener (`PALISADE_LISTEN`, default `0.0.0.0:7070`; an unspecified address is
//! probed on loopback) and exits 0 on a 2xx answer, 1 otherwise. Kubernetes ignores
//! `HEALTHCHECK` and uses the chart's probes instead.
//!
//! ```
//! use palisade_healthcheck::probe_addr;
//! assert_eq!(probe_addr("0.0.0.0:7070").unwrap().to_string(), "127.0.0.1:7070");
//! ```
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The listener the gateway uses when `PALISADE_LISTEN` is not set.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7070";

/// Why the gateway was judged unhealthy (or could not be asked).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// `PALISADE_LISTEN` is not an `IP:port` socket address.
    #[error("PALISADE_LISTEN {value:?} is not an IP:port address: {reason}")]
    InvalidListen {
        /// The value that was given.
        value: String,
        /// What the parser said.
        reason: String,
    },
    /// No connection, or the exchange failed or timed out.
    #[error("health check of {addr} failed: {source}")]
    Io {
        /// The address probed.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The answer did not start with an HTTP status line.
    #[error("health check of {addr}: not an HTTP answer")]
    NotHttp {
        /// The address probed.
        addr: SocketAddr,
    },
    /// The gateway answered with a status other than 2xx.
    #[error("health check of {addr}: status {status}")]
    Status {
        /// The address probed.
        addr: SocketAddr,
        /// The HTTP status code.
        status: u16,
    },
}

/// The address to probe for a listen address: an unspecified IP (`0.0.0.0`, `::`)
/// becomes the loopback address of the same family.
pub fn probe_addr(listen: &str) -> Result<SocketAddr, HealthError> {
    let mut addr: SocketAddr =
        listen
            .parse()
            .map_err(|e: std::net::AddrParseError| HealthError::InvalidListen {
                value: listen.to_owned(),
                reason: e.to_string(),
            })?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(addr)
}

/// Sends `GET /healthz` to `addr` and accepts a 2xx status; each step (connect,
/// write, read) is bounded by `timeout`.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let io = |source| HealthError::Io { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    // The status line is all we need; read at most 512 bytes of it.
    let mut head = Vec::with_capacity(64);
    stream.take(512).read_to_end(&mut head).map_err(io)?;
    let status = parse_status(&head).ok_or(HealthError::NotHttp { addr })?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(HealthError::Status { addr, status })
    }
}

/// The status code of an `HTTP/1.x NNN ...` status line.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let mut parts = std::str::from_utf8(line).ok()?.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?.trim_end();
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_status;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(parse_status(b"HTTP/1.1 204\r\n"), Some(204));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(parse_status(b""), None);
    }
}
