//! JA4 TLS client fingerprints (FoxIO's BSD-3-Clause JA4 specification, JA4 only).
//!
//! [`ClientHello::parse`] reads raw bytes — a TLS record starting `0x16` or a bare
//! handshake message starting `0x01` — and [`ClientHello::ja4`] computes the
//! fingerprint. [`Ja4::parse`] validates a JA4 string that a proxy or CDN computed.

use std::fmt;

use ring::digest;

use crate::error::{Error, shorten};

mod records;

pub use records::MAX_CLIENT_HELLO_RECORDS;
// the acceptor reads connections through it; parse only through `reassemble`
#[cfg(any(feature = "tls", test))]
pub(crate) use records::Records;
use records::{Framed, reassemble};

/// The largest input accepted: a TLS record carries at most 2^14 bytes of
/// plaintext; we allow a full record plus its 5-byte header.
pub const MAX_CLIENT_HELLO_LEN: usize = (1 << 14) + 5;

const EXT_SNI: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
const EXT_SIG_ALGS: u16 = 0x000d;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// True for the RFC 8701 GREASE values (0x0a0a, 0x1a1a, … 0xfafa), which JA4 ignores.
pub fn is_grease(v: u16) -> bool {
    (v & 0x0f0f) == 0x0a0a && (v >> 8) == (v & 0xff)
}

/// How the ClientHello travelled: JA4's first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// TLS over TCP (`t`).
    Tcp,
    /// QUIC (`q`).
    Quic,
    /// DTLS (`d`).
    Dtls,
}

/// The fields of a ClientHello that JA4 uses, in the order they appeared, GREASE included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// `legacy_version` from the ClientHello body.
    pub legacy_version: u16,
    /// Cipher suite codes.
    pub cipher_suites: Vec<u16>,
    /// Extension types.
    pub extensions: Vec<u16>,
    /// Versions from `supported_versions` (empty when the extension is absent).
    pub supported_versions: Vec<u16>,
    /// Signature algorithms from `signature_algorithms` (empty when absent).
    pub signature_algorithms: Vec<u16>,
    /// The first ALPN protocol, if any.
    pub alpn_first: Option<Vec<u8>>,
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Truncated {
                what,
                needed: n,
                available: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self, what: &'static str) -> Result<usize, Error> {
        let b = self.take(3, what)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
    fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }
    fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }
}

fn u16_list(bytes: &[u8], what: &'static str) -> Result<Vec<u16>, Error> {
    if !bytes.len().is_multiple_of(2) {
        return Err(Error::Malformed(what));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

impl ClientHello {
    /// Parse a ClientHello from TLS records (`0x16 …`) or a handshake message (`0x01 …`).
    ///
    /// A ClientHello split over several consecutive handshake records is reassembled
    /// (at most [`MAX_CLIENT_HELLO_RECORDS`] records; the whole input is still bounded
    /// by [`MAX_CLIENT_HELLO_LEN`]). Bytes after the
    /// message are ignored; every length inside it must agree.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_CLIENT_HELLO_LEN {
            return Err(Error::Oversized {
                len: bytes.len(),
                max: MAX_CLIENT_HELLO_LEN,
            });
        }
        let first = *bytes.first().ok_or(Error::Truncated {
            what: "first byte",
            needed: 1,
            available: 0,
        })?;
        match first {
            0x16 => match reassemble(bytes)? {
                Framed::Done(message) => Self::parse_handshake(&message),
                Framed::Need(needed) => Err(Error::Truncated {
                    what: "ClientHello records",
                    needed,
                    available: 0,
                }),
            },
            0x01 => Self::parse_handshake(bytes),
            other => Err(Error::NotClientHello {
                what: "first byte",
                value: other,
            }),
        }
    }

    fn parse_handshake(handshake: &[u8]) -> Result<Self, Error> {
        let mut r = Reader { buf: handshake };
        let ty = r.u8("handshake type")?;
        if ty != 0x01 {
            return Err(Error::NotClientHello {
                what: "handshake type",
                value: ty,
            });
        }
        let len = r.u24("handshake length")?;
        let body = r.take(len, "ClientHello body")?;
        Self::parse_body(body)
    }

    fn parse_body(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader { buf: body };
        let legacy_version = r.u16("legacy_version")?;
        r.take(32, "random")?;
        let session_id = r.vec8("session_id")?;
        if session_id.len() > 32 {
            return Err(Error::Malformed("session_id longer than 32 bytes"));
        }
        let cipher_suites = u16_list(r.vec16("cipher_suites")?, "odd cipher_suites length")?;
        r.vec8("compression_methods")?;
        let mut hello = ClientHello {
            legacy_version,
            cipher_suites,
            extensions: Vec::new(),
            supported_versions: Vec::new(),
            signature_algorithms: Vec::new(),
            alpn_first: None,
        };
        if r.buf.is_empty() {
            return Ok(hello); // no extensions block at all (SSL 3.0 style)
        }
        let mut exts = Reader {
            buf: r.vec16("extensions")?,
        };
        if !r.buf.is_empty() {
            return Err(Error::Malformed("bytes after the extensions block"));
        }
        while !exts.buf.is_empty() {
            let ty = exts.u16("extension type")?;
            let data = exts.vec16("extension data")?;
            hello.extensions.push(ty);
            let mut d = Reader { buf: data };
            match ty {
                EXT_SIG_ALGS => {
                    hello.signature_algorithms =
                        u16_list(d.vec16("signature_algorithms")?, "odd signature_algorithms")?;
                }
                EXT_SUPPORTED_VERSIONS => {
                    hello.supported_versions =
                        u16_list(d.vec8("supported_versions")?, "odd supported_versions")?;
                }
                EXT_ALPN => {
                    let mut list = Reader {
                        buf: d.vec16("ALPN list")?,
                    };
                    if !list.buf.is_empty() {
                        let first = list.vec8("ALPN protocol")?;
                        hello.alpn_first = Some(first.to_vec());
                    }
                }
                _ => {}
            }
        }
        Ok(hello)
    }

    /// The TLS version JA4 reports: the highest non-GREASE `supported_versions`
    /// entry, else `legacy_version`.
    pub fn version(&self) -> u16 {
        self.supported_versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.legacy_version)
    }

    fn ja4_a(&self, transport: Transport, alpn: AlpnFallback) -> String {
        let proto = match transport {
            Transport::Tcp => 't',
            Transport::Quic => 'q',
            Transport::Dtls => 'd',
        };
        let version = match self.version() {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            // SSL 2.0's version number is 0x0002 (FoxIO corrected the table in
            // August 2024; 0x0200 was never a version and "s1" never existed).
            0x0002 => "s2",
            0xfeff => "d1",
            0xfefd => "d2",
            0xfefc => "d3",
            _ => "00",
        };
        let sni = if self.extensions.contains(&EXT_SNI) {
            'd'
        } else {
            'i'
        };
        let ciphers = self
            .cipher_suites
            .iter()
            .filter(|v| !is_grease(**v))
            .count();
        let exts = self.extensions.iter().filter(|v| !is_grease(**v)).count();
        format!(
            "{proto}{version}{sni}{:02}{:02}{}",
            ciphers.min(99),
            exts.min(99),
            alpn_chars(self.alpn_first.as_deref(), alpn)
        )
    }

    /// The JA4 fingerprint (`t13d1516h2_8daaf6152771_e5627efa2ab1`), with the
    /// specification's ALPN rule ([`AlpnFallback::Hex`]).
    pub fn ja4(&self, transport: Transport) -> Ja4 {
        self.ja4_with(transport, AlpnFallback::Hex)
    }

    /// [`ClientHello::ja4`] with a chosen rule for a first ALPN value that does not
    /// start and end with an ASCII alphanumeric.
    pub fn ja4_with(&self, transport: Transport, alpn: AlpnFallback) -> Ja4 {
        let (b, c) = self.raw_parts(true);
        Ja4(format!(
            "{}_{}_{}",
            self.ja4_a(transport, alpn),
            hash12(&b),
            hash12(&c)
        ))
    }

    /// JA4_o: the same hashes over the lists in their original order, SNI and ALPN
    /// kept (specification ALPN rule).
    pub fn ja4_original(&self, transport: Transport) -> Ja4 {
        self.ja4_original_with(transport, AlpnFallback::Hex)
    }

    /// [`ClientHello::ja4_original`] with a chosen ALPN rule.
    pub fn ja4_original_with(&self, transport: Transport, alpn: AlpnFallback) -> Ja4 {
        let (b, c) = self.raw_parts(false);
        Ja4(format!(
            "{}_{}_{}",
            self.ja4_a(transport, alpn),
            hash12(&b),
            hash12(&c)
        ))
    }

    /// JA4_r (`sorted = true`) or JA4_ro (`sorted = false`): the unhashed lists
    /// (specification ALPN rule).
    pub fn ja4_raw(&self, transport: Transport, sorted: bool) -> String {
        self.ja4_raw_with(transport, sorted, AlpnFallback::Hex)
    }

    /// [`ClientHello::ja4_raw`] with a chosen ALPN rule.
    pub fn ja4_raw_with(&self, transport: Transport, sorted: bool, alpn: AlpnFallback) -> String {
        let (b, c) = self.raw_parts(sorted);
        format!("{}_{b}_{c}", self.ja4_a(transport, alpn))
    }

    /// The cipher list and the `extensions[_sigalgs]` list as JA4 hashes them.
    fn raw_parts(&self, sorted: bool) -> (String, String) {
        let mut ciphers: Vec<u16> = self
            .cipher_suites
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .collect();
        let mut exts: Vec<u16> = self
            .extensions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v) && (!sorted || (*v != EXT_SNI && *v != EXT_ALPN)))
            .collect();
        if sorted {
            ciphers.sort_unstable();
            exts.sort_unstable();
        }
        let sigs: Vec<u16> = self
            .signature_algorithms
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .collect();
        let mut c = hex_list(&exts);
        if !sigs.is_empty() && !exts.is_empty() {
            c.push('_');
            c.push_str(&hex_list(&sigs));
        }
        (hex_list(&ciphers), c)
    }
}

/// What JA4 prints for a first ALPN value that does not start and end with an
/// ASCII alphanumeric (`0x30-0x39`, `0x41-0x5A`, `0x61-0x7A`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AlpnFallback {
    /// The specification (`technical_details/JA4.md`): the first hex digit of the
    /// first byte and the last hex digit of the last byte (`0xBA 0xAD` → `bd`).
    #[default]
    Hex,
    /// What FoxIO's own tools print (Rust `ja4`, Python `ja4.py`, the Wireshark
    /// plugin): `99` when the first byte is not an ASCII alphanumeric; otherwise the
    /// first character and, for a last byte that is not one, `9`.
    Nines,
}

/// First and last character of the first ALPN value; `00` when absent or empty.
fn alpn_chars(alpn: Option<&[u8]>, fallback: AlpnFallback) -> String {
    let (first, last) = match alpn {
        Some([first, .., last]) => (*first, *last),
        Some([only]) => (*only, *only),
        _ => return "00".to_owned(),
    };
    let (a, z) = (first.is_ascii_alphanumeric(), last.is_ascii_alphanumeric());
    match fallback {
        _ if a && z => format!("{}{}", char::from(first), char::from(last)),
        AlpnFallback::Hex => {
            let f = format!("{first:02x}");
            let l = format!("{last:02x}");
            format!("{}{}", &f[..1], &l[1..])
        }
        AlpnFallback::Nines if !a => "99".to_owned(),
        AlpnFallback::Nines => format!("{}9", char::from(first)),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `0a0b,1301,…`: each value as 4 lowercase hex digits (no formatting machinery:
/// this runs once per connection in the TLS acceptor).
fn hex_list(values: &[u16]) -> String {
    let mut s = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        for shift in [12, 8, 4, 0] {
            s.push(char::from(HEX[usize::from((v >> shift) & 0xf)]));
        }
    }
    s
}

/// SHA-256 of `s`, first 12 hex characters; `000000000000` for an empty list.
fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_owned();
    }
    let d = digest::digest(&digest::SHA256, s.as_bytes());
    let mut out = String::with_capacity(12);
    for b in &d.as_ref()[..6] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// A JA4 fingerprint string, computed here or validated with [`Ja4::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ja4(String);

impl Ja4 {
    /// Compute JA4 for a TCP ClientHello given as raw bytes (counted as
    /// `palisade_device_fp_ja4_computed_total` / `_failed_total` with feature `metrics`).
    pub fn from_client_hello(bytes: &[u8]) -> Result<Self, Error> {
        match ClientHello::parse(bytes) {
            Ok(hello) => {
                crate::metrics::ja4_computed();
                Ok(hello.ja4(Transport::Tcp))
            }
            Err(e) => {
                crate::metrics::ja4_failed(e.reason());
                Err(e)
            }
        }
    }

    /// Validate a JA4 string from a proxy or CDN: `[tqd]` + version + `[di]` + two
    /// 2-digit counts + 2 ALPN characters, then two 12-digit lowercase hex hashes.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidJa4 {
            value: shorten(s),
            reason,
        };
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(bad("must be 36 characters"));
        }
        if b[10] != b'_' || b[23] != b'_' {
            return Err(bad("sections must be separated by '_' at 10 and 23"));
        }
        if !matches!(b[0], b't' | b'q' | b'd') {
            return Err(bad("first character must be t, q or d"));
        }
        const VERSIONS: [&[u8]; 10] = [
            b"13", b"12", b"11", b"10", b"s3", b"s2", b"d1", b"d2", b"d3", b"00",
        ];
        if !VERSIONS.contains(&&b[1..3]) {
            return Err(bad("unknown TLS version"));
        }
        if !matches!(b[3], b'd' | b'i') {
            return Err(bad("SNI flag must be d or i"));
        }
        if !b[4..8].iter().all(u8::is_ascii_digit) {
            return Err(bad("cipher and extension counts must be digits"));
        }
        if !b[8..10].iter().all(u8::is_ascii_alphanumeric) {
            return Err(bad("ALPN characters must be alphanumeric"));
        }
        let hex = |h: &[u8]| h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if !hex(&b[11..23]) || !hex(&b[24..36]) {
            return Err(bad("hashes must be 12 lowercase hex digits"));
        }
        Ok(Ja4(s.to_owned()))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Section a (`t13d1516h2`).
    pub fn a(&self) -> &str {
        &self.0[..10]
    }

    /// Section b: the cipher hash.
    pub fn cipher_hash(&self) -> &str {
        &self.0[11..23]
    }

    /// Section c: the extension + signature algorithm hash.
    pub fn extension_hash(&self) -> &str {
        &self.0[24..]
    }

    /// The TLS version characters (`13`).
    pub fn version(&self) -> &str {
        &self.0[1..3]
    }

    /// The ALPN characters (`h2`, `h1`, `00`).
    pub fn alpn(&self) -> &str {
        &self.0[8..10]
    }
}

impl fmt::Display for Ja4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Ja4 {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ja4::parse(s)
    }
}

#[cfg(test)]
mod tests;
