//! JA4 of real ClientHellos written by rustls, checked against the value derived by
//! hand from what rustls 0.23 is documented (and read) to send.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::sync::Arc;

use palisade_device_fp::{ClientHello, Ja4, Transport};
use ring::digest;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

fn first_flight(
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
    server: &str,
) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = ServerName::try_from(server.to_owned()).unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

fn hash12(s: &str) -> String {
    let d = digest::digest(&digest::SHA256, s.as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

fn hex(v: &[u16]) -> String {
    v.iter()
        .map(|x| format!("{x:04x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Cipher codes rustls offers: all its provider's suites whatever the enabled
/// versions (it filters by QUIC/TCP only), plus the renegotiation SCSV (0x00ff)
/// when TLS 1.2 is enabled.
fn ciphers(tls12: bool) -> Vec<u16> {
    let provider = rustls::crypto::ring::default_provider();
    let mut v: Vec<u16> = provider
        .cipher_suites
        .iter()
        .map(|cs| u16::from(cs.suite()))
        .collect();
    if tls12 {
        v.push(0x00ff);
    }
    v
}

fn sig_algs() -> Vec<u16> {
    rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .supported_schemes()
        .into_iter()
        .map(u16::from)
        .collect()
}

#[test]
fn rustls_tls13_with_sni_and_alpn() {
    let bytes = first_flight(rustls::ALL_VERSIONS, &[b"h2", b"http/1.1"], "example.com");
    assert_eq!(bytes[0], 0x16);
    let mut c = ciphers(true);
    c.sort_unstable();
    // server_name, status_request, supported_groups, ec_point_formats, signature_algorithms,
    // ALPN, extended_master_secret, session_ticket (TLS 1.2 ticket request),
    // supported_versions, psk_key_exchange_modes, key_share: 11 extensions.
    let exts = "0005,000a,000b,000d,0017,0023,002b,002d,0033";
    let expected = format!(
        "t13d{:02}11h2_{}_{}",
        c.len(),
        hash12(&hex(&c)),
        hash12(&format!("{exts}_{}", hex(&sig_algs())))
    );
    let ja4 = Ja4::from_client_hello(&bytes).unwrap();
    assert_eq!(ja4.as_str(), expected);
    // the bare handshake message (after the 5-byte record header) gives the same
    assert_eq!(Ja4::from_client_hello(&bytes[5..]).unwrap(), ja4);
}

#[test]
fn rustls_randomised_extension_order_does_not_change_ja4() {
    let mut seen_orders = std::collections::HashSet::new();
    let mut ja4s = std::collections::HashSet::new();
    for _ in 0..8 {
        let bytes = first_flight(rustls::ALL_VERSIONS, &[b"h2"], "example.com");
        let hello = ClientHello::parse(&bytes).unwrap();
        seen_orders.insert(hello.extensions.clone());
        ja4s.insert(hello.ja4(Transport::Tcp));
    }
    assert!(
        seen_orders.len() > 1,
        "rustls shuffles extensions per connection"
    );
    assert_eq!(ja4s.len(), 1, "JA4 sorts them away: {ja4s:?}");
}

#[test]
fn rustls_ip_address_no_alpn_is_i_and_00() {
    let bytes = first_flight(rustls::ALL_VERSIONS, &[], "192.0.2.1");
    let ja4 = Ja4::from_client_hello(&bytes).unwrap();
    // no SNI, no ALPN: 9 extensions
    assert_eq!(ja4.a(), format!("t13i{:02}0900", ciphers(true).len()));
}

#[test]
fn rustls_tls12_only_reports_12_from_supported_versions() {
    let bytes = first_flight(&[&rustls::version::TLS12], &[b"http/1.1"], "example.com");
    let hello = ClientHello::parse(&bytes).unwrap();
    assert_eq!(hello.supported_versions, [0x0303]); // rustls always sends the extension
    let mut c = ciphers(true);
    c.sort_unstable();
    let ja4 = hello.ja4(Transport::Tcp);
    assert_eq!(ja4.version(), "12");
    assert_eq!(ja4.alpn(), "h1");
    assert_eq!(ja4.cipher_hash(), hash12(&hex(&c)));
}

#[test]
fn rustls_tls13_only_has_no_scsv() {
    let bytes = first_flight(&[&rustls::version::TLS13], &[b"h2"], "example.com");
    let ja4 = Ja4::from_client_hello(&bytes).unwrap();
    let mut c = ciphers(false);
    assert!(!c.contains(&0x00ff));
    c.sort_unstable();
    assert_eq!(ja4.cipher_hash(), hash12(&hex(&c)));
    assert_eq!(&ja4.a()[..6], format!("t13d{:02}", c.len()));
}
