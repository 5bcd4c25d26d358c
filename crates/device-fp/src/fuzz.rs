//! Entry points for the cargo-fuzz targets in `fuzz/` (also replayed by tests).

use crate::ja4::{ClientHello, Ja4, Transport};

/// Parse arbitrary bytes as a ClientHello; when they parse, the computed JA4 (and
/// JA4_o) must pass our own JA4 format validation. Returns whether they parsed.
///
/// # Panics
/// Only on a bug: a computed JA4 that the validator rejects.
pub fn client_hello(data: &[u8]) -> bool {
    let Ok(hello) = ClientHello::parse(data) else {
        return false;
    };
    for t in [Transport::Tcp, Transport::Quic, Transport::Dtls] {
        for ja4 in [hello.ja4(t), hello.ja4_original(t)] {
            if let Err(e) = Ja4::parse(ja4.as_str()) {
                panic!("computed JA4 fails validation: {e}");
            }
        }
        let _ = hello.ja4_raw(t, true);
    }
    true
}
