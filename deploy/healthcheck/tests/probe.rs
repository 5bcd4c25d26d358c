//! The probe against real loopback listeners.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::thread;
use std::time::Duration;

use palisade_healthcheck::{HealthError, check, probe_addr};

/// Serves one connection with `answer`, returning the request it read.
fn serve_once(answer: &'static [u8]) -> (SocketAddr, thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0u8; 1024];
        let n = conn.read(&mut request).unwrap();
        conn.write_all(answer).unwrap();
        String::from_utf8_lossy(&request[..n]).into_owned()
    });
    (addr, handle)
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn healthy_gateway_passes_and_healthz_is_asked() {
    let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    check(addr, TIMEOUT).unwrap();
    assert!(
        server
            .join()
            .unwrap()
            .starts_with("GET /healthz HTTP/1.1\r\n")
    );
}

#[test]
fn unhealthy_status_fails_with_the_status() {
    let (addr, server) = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
    let err = check(addr, TIMEOUT).unwrap_err();
    assert!(
        matches!(err, HealthError::Status { status: 503, .. }),
        "{err}"
    );
    server.join().unwrap();
}

#[test]
fn non_http_answer_fails() {
    let (addr, server) = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n");
    let err = check(addr, TIMEOUT).unwrap_err();
    assert!(matches!(err, HealthError::NotHttp { .. }), "{err}");
    server.join().unwrap();
}

#[test]
fn closed_port_fails_with_io_error() {
    // Bind then drop: the port is free and nothing listens on it.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = check(addr, TIMEOUT).unwrap_err();
    assert!(matches!(err, HealthError::Io { .. }), "{err}");
}

#[test]
fn listen_addresses_map_to_loopback() {
    assert_eq!(
        probe_addr("0.0.0.0:7070").unwrap(),
        "127.0.0.1:7070".parse().unwrap()
    );
    assert_eq!(
        probe_addr("[::]:7070").unwrap(),
        "[::1]:7070".parse().unwrap()
    );
    assert_eq!(
        probe_addr("10.1.2.3:80").unwrap(),
        "10.1.2.3:80".parse().unwrap()
    );
    let err = probe_addr("localhost:7070").unwrap_err();
    assert!(matches!(err, HealthError::InvalidListen { .. }), "{err}");
    assert!(err.to_string().contains("localhost:7070"));
}

#[test]
fn binary_exit_codes_follow_the_answer() {
    let bin = env!("CARGO_BIN_EXE_palisade-healthcheck");
    let (addr, server) = serve_once(b"HTTP/1.1 200 OK\r\n\r\n");
    let ok = Command::new(bin)
        .env("PALISADE_LISTEN", addr.to_string())
        .status()
        .unwrap();
    server.join().unwrap();
    assert!(ok.success());

    let (addr, server) = serve_once(b"HTTP/1.1 500 Internal Server Error\r\n\r\n");
    let out = Command::new(bin)
        .env("PALISADE_LISTEN", addr.to_string())
        .output()
        .unwrap();
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("status 500"));

    let out = Command::new(bin)
        .env("PALISADE_LISTEN", "nonsense")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
