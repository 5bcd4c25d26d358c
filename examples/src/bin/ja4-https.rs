//! An HTTPS server on loopback whose handler answers with the JA4 of the client's
//! own ClientHello, computed on the live connection by device-fp's `Ja4Listener`.
//!
//! cargo run -p palisade-examples --bin ja4-https [-- 127.0.0.1:8443]
//!
//! Prints the URL, then the self-signed certificate made at start (PEM) to trust:
//! save it and `curl --cacert cert.pem https://localhost:8443/`.

use std::error::Error;
use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use palisade_device_fp::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use palisade_device_fp::rustls::{self, ServerConfig};
use palisade_device_fp::{Ja4Acceptor, Ja4ConnectInfo, Ja4Listener};

async fn ja4(ConnectInfo(conn): ConnectInfo<Ja4ConnectInfo>) -> String {
    conn.ja4().to_string()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];

    let tcp = tokio::net::TcpListener::bind(&addr).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "https://localhost:{}/", tcp.local_addr()?.port())?;
    write!(out, "{}", cert.cert.pem())?;
    out.flush()?;
    drop(out);

    let acceptor = Ja4Acceptor::builder(Arc::new(tls)).build()?;
    let listener = Ja4Listener::builder(tcp, acceptor).build()?;
    let app = Router::new().route("/", get(ja4));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<Ja4ConnectInfo>(),
    )
    .await?;
    Ok(())
}
