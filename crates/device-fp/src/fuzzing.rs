//! Entry points of the cargo-fuzz targets in `fuzz/fuzz_targets/` (one `pub fn` per
//! target), also replayed over the committed corpus by `tests/fuzz_corpus.rs`.
//! Feature `fuzzing`; not part of the supported API.

use crate::ja4::{AlpnFallback, ClientHello, Ja4, Transport};

/// Parse arbitrary bytes as a ClientHello; when they parse, the computed JA4 (and
/// JA4_o), under both ALPN rules, must pass our own JA4 format validation. Returns
/// whether they parsed.
///
/// # Panics
/// Only on a bug: a computed JA4 that the validator rejects.
pub fn client_hello(data: &[u8]) -> bool {
    let Ok(hello) = ClientHello::parse(data) else {
        return false;
    };
    for t in [Transport::Tcp, Transport::Quic, Transport::Dtls] {
        let nines = AlpnFallback::Nines;
        for ja4 in [
            hello.ja4(t),
            hello.ja4_original(t),
            hello.ja4_with(t, nines),
            hello.ja4_original_with(t, nines),
        ] {
            if let Err(e) = Ja4::parse(ja4.as_str()) {
                panic!("computed JA4 fails validation: {e}");
            }
        }
        let _ = hello.ja4_raw(t, true);
    }
    true
}

/// Read arbitrary bytes as header lines (`name: value`, one per line), raise the
/// consistency flags, fingerprint them and match the fingerprint against itself;
/// with feature `http`, also read the raw lines (bytes that are not UTF-8 included)
/// as an `http::HeaderMap`. Returns whether every input of the first reading was
/// usable (no `problems`).
///
/// # Panics
/// Only on a bug: a fingerprint that differs from itself.
pub fn headers(data: &[u8]) -> bool {
    use palisade_core_traits::{RequestContext, Timestamp, TlsInfo};

    use crate::identity::{DeviceFingerprint, FingerprintKey};
    use crate::inputs::FingerprintInputs;

    let text = String::from_utf8_lossy(data);
    let mut ctx = RequestContext::new(
        std::net::IpAddr::from([192, 0, 2, 1]),
        Timestamp::from_unix_secs(0),
    );
    for line in text.lines() {
        match line.split_once(':') {
            Some(("ja4", v)) => ctx = ctx.with_tls(TlsInfo::with_ja4(v.trim())),
            Some((name, value)) => ctx = ctx.with_header(name.trim(), value.trim()),
            None => ctx = ctx.with_header(line, ""),
        }
    }
    let inputs = FingerprintInputs::from_request(&ctx);
    #[cfg(feature = "http")]
    {
        let mut map = http::HeaderMap::new();
        for line in data.split(|&b| b == b'\n') {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => (&line[..i], line[i + 1..].trim_ascii()),
                None => (line, &b""[..]),
            };
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.trim_ascii()),
                http::HeaderValue::from_bytes(value),
            ) {
                map.append(n, v);
            }
        }
        let from_map = FingerprintInputs::from_headers(&map, ctx.peer_ip);
        assert!(from_map.header_order.len() <= crate::limits::MAX_HEADERS);
    }
    let Ok(key) = FingerprintKey::new(&[0x5a; 32]) else {
        return false;
    };
    let _ = crate::flags::consistency_flags(&inputs, ctx.user_agent());
    let fp = DeviceFingerprint::compute(&key, &inputs);
    let r = fp.matches(&fp);
    assert!(
        r.differing.is_empty(),
        "fingerprint differs from itself: {r:?}"
    );
    inputs.problems.is_empty()
}
