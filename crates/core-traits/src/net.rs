//! Networks and the client address behind trusted proxies.
//!
//! [`IpNetwork`] is a CIDR block. [`TrustedProxies`] answers "which address is the
//! client?" from the peer address and the forwarding header the service's own proxies
//! write: the rightmost address that is not a trusted proxy. Never the leftmost
//! `X-Forwarded-For` entry: the client writes that one.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, canonical_ip};

/// A CIDR block such as `10.0.0.0/8` or `2001:db8::/32`.
///
/// Host bits must be zero. An IPv4-mapped IPv6 block (`::ffff:10.0.0.0/104`) is the
/// IPv4 block it maps (`10.0.0.0/8`), and [`IpNetwork::contains`] compares canonical
/// addresses, so IPv4 clients reported in mapped form match IPv4 blocks.
///
/// ```
/// use palisade_core_traits::IpNetwork;
///
/// let net: IpNetwork = "10.0.0.0/8".parse().unwrap();
/// assert!(net.contains("10.1.2.3".parse().unwrap()));
/// assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
/// assert!(!net.contains("11.0.0.1".parse().unwrap()));
/// assert!("10.0.0.1/8".parse::<IpNetwork>().is_err()); // host bits set
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// A block from its first address and prefix length; host bits must be zero.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, Error> {
        let invalid = |reason: String| Error::invalid("network", reason);
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => {
                (canonical_ip(addr), prefix - 96)
            }
            _ => (addr, prefix),
        };
        let width = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > width {
            return Err(invalid(format!(
                "{addr}/{prefix}: prefix longer than {width}"
            )));
        }
        if bits(addr) & !mask(width, prefix) != 0 {
            return Err(invalid(format!("{addr}/{prefix} has host bits set")));
        }
        Ok(IpNetwork { addr, prefix })
    }

    /// The block holding only `ip` (a /32 or /128), in canonical form.
    pub fn host(ip: IpAddr) -> Self {
        let addr = canonical_ip(ip);
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        IpNetwork { addr, prefix }
    }

    /// The first address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` (made canonical) is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        let width = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 32,
            (IpAddr::V6(_), IpAddr::V6(_)) => 128,
            _ => return false,
        };
        (bits(ip) ^ bits(self.addr)) & mask(width, self.prefix) == 0
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mask(width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let all = if width == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    all & !((1u128 << (width - prefix)) - 1)
}

impl FromStr for IpNetwork {
    type Err = Error;

    /// Parses `addr/prefix`; a bare address is its host block.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::invalid("network", format!("{s:?}: {reason}"));
        let Some((a, p)) = s.split_once('/') else {
            let ip = s
                .parse::<IpAddr>()
                .map_err(|_| invalid("not an address or addr/prefix"))?;
            return Ok(IpNetwork::host(ip));
        };
        let addr = a.parse::<IpAddr>().map_err(|_| invalid("not an address"))?;
        // Only plain decimal digits: `+8` or ` 8` are typos, not prefixes.
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("bad prefix length"));
        }
        let prefix = p.parse::<u8>().map_err(|_| invalid("bad prefix length"))?;
        IpNetwork::new(addr, prefix)
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for IpNetwork {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which forwarding header the service's trusted proxies write.
///
/// Chosen explicitly, never guessed: if the proxies write `X-Forwarded-For` and the
/// code also read a `Forwarded` header, the client could write that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the de-facto standard).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case.
    pub fn name(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Trust {
    /// No proxy: the peer is the client.
    None,
    /// Peers and hops inside these blocks are the service's proxies.
    Networks(Vec<IpNetwork>),
    /// Exactly this many proxies stand in front of the service (the peer is the last).
    Hops(usize),
}

/// The service's own proxies, and how to find the client address behind them.
///
/// The client is the rightmost address of the forwarding chain (the peer, then the
/// header's entries from right to left) that is not a trusted proxy: every entry to
/// its right was written by a proxy we trust, every entry to its left by the client.
/// With a hop count, the client is the address that many hops in from the peer.
///
/// - A peer that is not a trusted proxy is the client, whatever the headers say.
/// - An entry a trusted proxy wrote that is not an address (`unknown`, an obfuscated
///   `_node`, garbage) ends the walk at that proxy: the client is unknown, so the
///   proxy's own address stands for it (a limit keyed on it is conservative).
/// - A chain made only of trusted proxies gives its leftmost address.
///
/// The result is canonical ([`canonical_ip`]), ports are ignored, and the header is
/// read right to left without allocating, so a long header costs only the entries
/// that are walked.
///
/// ```
/// use palisade_core_traits::{ForwardedHeader, TrustedProxies};
///
/// let proxies = TrustedProxies::networks(["10.0.0.0/8".parse().unwrap()]);
/// let peer = "10.0.0.2".parse().unwrap();
/// // The client wrote "1.1.1.1"; our proxy appended the address it saw.
/// let headers = [("X-Forwarded-For", "1.1.1.1, 203.0.113.7")];
/// assert_eq!(proxies.client_ip(peer, headers), "203.0.113.7".parse::<std::net::IpAddr>().unwrap());
///
/// // From a peer we do not trust, headers mean nothing.
/// let stranger = "198.51.100.1".parse().unwrap();
/// assert_eq!(proxies.client_ip(stranger, headers), stranger);
///
/// let rfc7239 = TrustedProxies::hops(1).header(ForwardedHeader::Forwarded);
/// let headers = [("Forwarded", r#"for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711""#)];
/// assert_eq!(rfc7239.client_ip(peer, headers), "2001:db8:cafe::17".parse::<std::net::IpAddr>().unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    trust: Trust,
    header: ForwardedHeader,
}

impl Default for TrustedProxies {
    /// No trusted proxy: the peer address is the client.
    fn default() -> Self {
        TrustedProxies::none()
    }
}

impl TrustedProxies {
    /// No proxy in front of the service: the peer is the client, headers are ignored.
    pub fn none() -> Self {
        TrustedProxies {
            trust: Trust::None,
            header: ForwardedHeader::default(),
        }
    }

    /// Peers and forwarding hops inside these blocks are the service's own proxies.
    pub fn networks(networks: impl IntoIterator<Item = IpNetwork>) -> Self {
        TrustedProxies {
            trust: Trust::Networks(networks.into_iter().collect()),
            header: ForwardedHeader::default(),
        }
    }

    /// Exactly `hops` proxies stand in front of the service (0 is [`TrustedProxies::none`]):
    /// the peer is the last of them, and the client is the `hops`-th header entry from
    /// the right.
    pub fn hops(hops: usize) -> Self {
        TrustedProxies {
            trust: if hops == 0 {
                Trust::None
            } else {
                Trust::Hops(hops)
            },
            header: ForwardedHeader::default(),
        }
    }

    /// Which header the proxies write (default `X-Forwarded-For`).
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// True when the peer is always the client, whatever the headers say (no proxy,
    /// or an empty list of networks): a caller may then skip reading the headers.
    #[inline]
    pub fn trusts_nobody(&self) -> bool {
        match &self.trust {
            Trust::None => true,
            Trust::Networks(nets) => nets.is_empty(),
            Trust::Hops(_) => false,
        }
    }

    /// Whether `ip` is one of the service's proxies (network trust only).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        match &self.trust {
            Trust::Networks(nets) => nets.iter().any(|n| n.contains(ip)),
            Trust::None | Trust::Hops(_) => false,
        }
    }

    /// The client address for a request from `peer` with these headers (name, value
    /// pairs in the order received; names compared case-insensitively; several lines
    /// of the header are one list, in order). Values are bytes (`&str`, `&[u8]` or
    /// `http::HeaderValue`): a line with bytes that are not text (which HTTP allows
    /// and a proxy appends to) still yields the entries a proxy wrote on its right.
    pub fn client_ip<'h, H, V>(&self, peer: IpAddr, headers: H) -> IpAddr
    where
        H: IntoIterator<Item = (&'h str, &'h V)>,
        H::IntoIter: DoubleEndedIterator,
        V: AsRef<[u8]> + ?Sized + 'h,
    {
        let peer = canonical_ip(peer);
        match &self.trust {
            Trust::None => return peer,
            Trust::Networks(_) if !self.is_trusted(peer) => return peer,
            Trust::Networks(_) | Trust::Hops(_) => {}
        }
        let name = self.header.name();
        // `Forwarded` values may be quoted strings holding commas (RFC 7239 `host=`
        // echoes the client's `Host`): only unquoted commas separate its elements.
        let quoted = self.header == ForwardedHeader::Forwarded;
        let entries = headers
            .into_iter()
            .rev()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| RevSplit::new(v.as_ref(), b',', quoted));
        // Walk right to left; `last` is the nearest address known so far.
        let mut last = peer;
        for (walked, entry) in entries.enumerate() {
            let Some(ip) = self.parse_entry(entry) else {
                // A trusted proxy wrote something that is not an address: the client is
                // unknown, and that proxy stands for it.
                return last;
            };
            let is_client = match &self.trust {
                Trust::Hops(n) => walked + 1 >= *n,
                Trust::Networks(_) | Trust::None => !self.is_trusted(ip),
            };
            if is_client {
                return ip;
            }
            last = ip;
        }
        last
    }

    /// One entry of the chain: an address with an optional port (and, in `Forwarded`,
    /// the `for=` parameter of one element, possibly quoted). Not text, or an element
    /// with no `for` or with two: not an address.
    fn parse_entry(&self, entry: &[u8]) -> Option<IpAddr> {
        let node = match self.header {
            ForwardedHeader::XForwardedFor => std::str::from_utf8(entry).ok()?.trim(),
            ForwardedHeader::Forwarded => {
                let mut fors = RevSplit::new(entry, b';', true).filter_map(|pair| {
                    let pair = std::str::from_utf8(pair).ok()?;
                    let (k, v) = pair.trim().split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
                });
                let value = fors.next()?;
                if fors.next().is_some() {
                    return None;
                }
                match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    // A quoted pair (`\x`) stands for `x`; an address never needs one.
                    Some(quoted) if quoted.contains('\\') => {
                        return parse_node(&unescape(quoted)).map(canonical_ip);
                    }
                    Some(quoted) => quoted,
                    None => value,
                }
            }
        };
        parse_node(node).map(canonical_ip)
    }
}

/// The contents of a quoted string with its quoted pairs (`\x`) resolved.
fn unescape(quoted: &str) -> String {
    let mut out = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        out.extend(if c == '\\' { chars.next() } else { Some(c) });
    }
    out
}

/// `s` split at `sep` from the right, without allocating. With `quotes`, a `sep`
/// inside a quoted string (`"…"`, with `\` escapes) does not split. Read from the
/// right, a client's unbalanced quote on the left cannot swallow the elements its
/// proxies appended.
struct RevSplit<'a> {
    rest: Option<&'a [u8]>,
    sep: u8,
    quotes: bool,
}

impl<'a> RevSplit<'a> {
    fn new(s: &'a [u8], sep: u8, quotes: bool) -> Self {
        RevSplit {
            rest: Some(s),
            sep,
            quotes,
        }
    }
}

impl<'a> Iterator for RevSplit<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut in_quotes = false;
        for i in (0..s.len()).rev() {
            if self.quotes && s[i] == b'"' && !escaped(s, i) {
                in_quotes = !in_quotes;
            } else if s[i] == self.sep && !in_quotes {
                self.rest = Some(&s[..i]);
                return Some(&s[i + 1..]);
            }
        }
        self.rest = None;
        Some(s)
    }
}

/// Whether the byte at `i` is escaped: an odd run of backslashes before it.
fn escaped(s: &[u8], i: usize) -> bool {
    s[..i].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or `[2001:db8::1]:443`;
/// the port may also be RFC 7239's obfuscated form (`1.2.3.4:_p1`).
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']')?;
        let port_ok = tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port);
        return port_ok
            .then(|| addr.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))
            .flatten();
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    // IPv4 with a port; a bare IPv6 address has more than one colon and parsed above.
    let (addr, port) = node.rsplit_once(':')?;
    is_port(port)
        .then(|| addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))
        .flatten()
}

/// RFC 7239 §6: `node-port = port / obfport`, `port = 1*5DIGIT`,
/// `obfport = "_" 1*(ALPHA / DIGIT / "." / "_" / "-")`. A proxy that hides ports
/// must not make its clients unknown (they would all be the proxy).
fn is_port(p: &str) -> bool {
    let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    let obfuscated = p.strip_prefix('_').is_some_and(|o| {
        !o.is_empty()
            && (o.bytes()).all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    digits || obfuscated
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_strictly_and_name_the_input() {
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "2001:db8::/129",
            "x/8",
            "",
        ] {
            let err = bad.parse::<IpNetwork>().unwrap_err().to_string();
            assert!(err.contains("network"), "{bad}: {err}");
        }
        assert_eq!(
            "::ffff:10.0.0.0/104".parse::<IpNetwork>().unwrap(),
            "10.0.0.0/8".parse().unwrap()
        );
        assert_eq!(
            "192.0.2.7".parse::<IpNetwork>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("255.255.255.255")) && !all.contains(ip("::1")));
        let v6: IpNetwork = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::")));
    }

    #[test]
    fn nodes_with_ports_brackets_and_garbage() {
        for (node, want) in [
            ("192.0.2.1", Some("192.0.2.1")),
            ("192.0.2.1:8080", Some("192.0.2.1")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("[2001:db8::1]:_x-1", Some("2001:db8::1")),
            ("192.0.2.1:_p.1", Some("192.0.2.1")),
            ("[2001:db8::1]:_", None),
            ("192.0.2.1:_p!", None),
            ("[2001:db8::1]:", None),
            ("[192.0.2.1]", None),
            ("192.0.2.1:", None),
            ("192.0.2.1:123456", None),
            ("unknown", None),
            ("_hidden", None),
            ("", None),
        ] {
            assert_eq!(parse_node(node), want.map(ip), "{node:?}");
        }
    }

    #[test]
    fn forwarded_elements_take_the_for_parameter() {
        let p = TrustedProxies::hops(1).header(ForwardedHeader::Forwarded);
        for (value, want) in [
            (r#"for=192.0.2.43"#, "192.0.2.43"),
            (r#"For="[2001:db8:cafe::17]:4711""#, "2001:db8:cafe::17"),
            (r#"for="[2001:db8:cafe::17]:_hidden""#, "2001:db8:cafe::17"),
            (r#"for="198.51.100.7:_p1""#, "198.51.100.7"),
            (
                r#"proto=https;for=198.51.100.17;by=203.0.113.43"#,
                "198.51.100.17",
            ),
        ] {
            assert_eq!(
                p.client_ip(ip("10.0.0.1"), [("forwarded", value)]),
                ip(want)
            );
        }
        // An element without `for`, or `for=unknown`: the client is unknown, the peer
        // stands for it.
        for value in ["proto=https", "for=unknown", "for=_secret"] {
            assert_eq!(
                p.client_ip(ip("10.0.0.1"), [("Forwarded", value)]),
                ip("10.0.0.1")
            );
        }
    }

    #[test]
    fn quoted_commas_and_semicolons_do_not_split_a_forwarded_element() {
        let nets = TrustedProxies::networks(["10.0.0.0/8".parse().unwrap()])
            .header(ForwardedHeader::Forwarded);
        let peer = ip("10.0.0.9");
        // Our proxy echoes the client's Host (RFC 7239 `host=`), quoted: a client
        // that writes a `for=` into it must not be read as the client.
        for value in [
            r#"for=203.0.113.7;host="a,for=9.9.9.9;x=""#,
            r#"host="a;for=9.9.9.9";for=203.0.113.7"#,
            r#"for=203.0.113.7;host="a\",for=9.9.9.9;x=""#,
            r#"for="203.0.113.7";by="a,\"b""#,
        ] {
            assert_eq!(
                nets.client_ip(peer, [("Forwarded", value)]),
                ip("203.0.113.7"),
                "{value}"
            );
        }
        // A client's unbalanced quote on the left does not swallow what our proxy
        // appended to the same line.
        assert_eq!(
            nets.client_ip(peer, [("Forwarded", r#"for="1.1.1.1, for=203.0.113.7"#)]),
            ip("203.0.113.7")
        );
        // Quoted pairs resolve; two `for` in one element is not an address.
        assert_eq!(
            nets.client_ip(peer, [("Forwarded", r#"for="\203.0.113.7""#)]),
            ip("203.0.113.7")
        );
        assert_eq!(
            nets.client_ip(peer, [("Forwarded", "for=203.0.113.7;for=9.9.9.9")]),
            peer
        );
    }

    #[test]
    fn a_line_that_is_not_text_keeps_the_entries_proxies_appended() {
        let peer = ip("10.0.0.9");
        let nets = TrustedProxies::networks(["10.0.0.0/8".parse().unwrap()]);
        // HTTP allows bytes above 0x7f; a proxy appends to the client's line.
        let line: &[u8] = b"\xff\xfe, 203.0.113.7";
        assert_eq!(
            nets.client_ip(peer, [("X-Forwarded-For", line)]),
            ip("203.0.113.7")
        );
        // Walked into, the bytes are not an address: the proxy that wrote them stands
        // for the client.
        let line: &[u8] = b"203.0.113.7, \xff, 10.0.0.5";
        assert_eq!(
            nets.client_ip(peer, [("X-Forwarded-For", line)]),
            ip("10.0.0.5")
        );
        let fwd = nets.header(ForwardedHeader::Forwarded);
        let line: &[u8] = b"for=\"\xff\", for=203.0.113.7";
        assert_eq!(
            fwd.client_ip(peer, [("Forwarded", line)]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn hop_counts_and_networks() {
        let headers = [
            ("X-Forwarded-For", "6.6.6.6, 203.0.113.7"),
            ("x-forwarded-for", "10.0.0.5"),
        ];
        let peer = ip("10.0.0.9");
        // Two proxies: 10.0.0.5 appended the client, then the peer.
        assert_eq!(
            TrustedProxies::hops(2).client_ip(peer, headers),
            ip("203.0.113.7")
        );
        assert_eq!(
            TrustedProxies::hops(1).client_ip(peer, headers),
            ip("10.0.0.5")
        );
        // Too many hops configured: the leftmost entry, the best there is.
        assert_eq!(
            TrustedProxies::hops(9).client_ip(peer, headers),
            ip("6.6.6.6")
        );
        let nets = TrustedProxies::networks(["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(nets.client_ip(peer, headers), ip("203.0.113.7"));
        assert_eq!(TrustedProxies::none().client_ip(peer, headers), peer);
        // A Forwarded header is ignored when the proxies write X-Forwarded-For.
        assert_eq!(
            nets.client_ip(peer, [("Forwarded", "for=1.2.3.4")]),
            peer,
            "a header our proxies do not write is the client's"
        );
        // Mapped peers and entries are canonical.
        assert_eq!(
            nets.client_ip(
                ip("::ffff:10.0.0.9"),
                [("X-Forwarded-For", "::ffff:203.0.113.7")]
            ),
            ip("203.0.113.7")
        );
    }
}
