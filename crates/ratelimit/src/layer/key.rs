//! What a policy counts requests by: [`KeySource`] picks, [`HttpKey`] is the result.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

use http::{HeaderName, Request, Response, StatusCode};
use palisade_core_traits::TrustedProxies;

use super::plain;
use crate::{Key, client_net};

/// The authenticated subject of a request, put into its extensions by the
/// authentication layer in front (jwt-cache's `JwtAuth` puts the token's `sub`), for
/// [`KeySource::Subject`]; core-traits' type, re-exported.
pub use palisade_core_traits::AuthenticatedSubject;

/// Where a policy's key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// The client address: the peer (axum's `ConnectInfo<SocketAddr>`, or a
    /// `SocketAddr` extension) or, behind proxies these `TrustedProxies` trust, the
    /// address they forwarded. A forwarded header from an untrusted peer is ignored.
    ///
    /// Keyed as its [`client_net`](crate::client_net): an IPv4 address (IPv4-mapped
    /// ones included) by itself, an IPv6 address by its /64, the smallest usual
    /// allocation of one subscriber (RFC 6177), which would otherwise hold 2^64 quotas
    /// and pass any block on one of its addresses. Hosts sharing one /64 share its quota and its
    /// blocks.
    ClientIp(TrustedProxies),
    /// A request header's value (say, an API key id); missing or not visible ASCII: `400`.
    Header(HeaderName),
    /// The [`AuthenticatedSubject`] in the request's extensions (jwt-cache's `JwtAuth`
    /// puts it there); missing: `400` (put the authentication layer in front).
    Subject,
    /// A fixed name, to count one route (with a limiter shared across routes).
    Route(&'static str),
    /// Several keys together (say, client address and account): every part must exist.
    Composite(Vec<KeySource>),
}

/// Why no key could be formed.
#[derive(Debug, Clone, Copy)]
pub(super) enum KeyError {
    NoPeer,
    Header,
    Subject,
    /// Formed, but refused by the limiter (too long for a Redis key).
    Invalid,
}

impl KeyError {
    pub(super) fn response(self) -> Response<&'static str> {
        match self {
            KeyError::NoPeer => plain(StatusCode::INTERNAL_SERVER_ERROR, "no peer address\n"),
            KeyError::Header => plain(
                StatusCode::BAD_REQUEST,
                "missing or malformed rate-limit key header\n",
            ),
            KeyError::Subject => plain(StatusCode::BAD_REQUEST, "no authenticated subject\n"),
            KeyError::Invalid => plain(StatusCode::BAD_REQUEST, "rate-limit key too long\n"),
        }
    }
}

/// A key formed from a request.
#[derive(Debug, Clone)]
pub enum HttpKey {
    /// A client address, counted as its [`client_net`](crate::client_net) (IPv6: its
    /// /64) whichever address of it is given: hashing, equality and the Redis form
    /// apply it.
    Ip(IpAddr),
    /// A header value ([`KeySource::Header`]).
    Text(Box<str>),
    /// An authenticated subject ([`KeySource::Subject`]): its own form, so a header
    /// value equal to a user's name never spends that user's quota.
    Subject(Box<str>),
    /// A route's name.
    Route(&'static str),
    /// The parts of a composite key.
    Composite(Box<[HttpKey]>),
}

impl Key for HttpKey {}

/// Addresses are equal when their [`client_net`]s are, as they hash.
impl PartialEq for HttpKey {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HttpKey::Ip(a), HttpKey::Ip(b)) => a == b || client_net(*a) == client_net(*b),
            (HttpKey::Text(a), HttpKey::Text(b)) | (HttpKey::Subject(a), HttpKey::Subject(b)) => {
                a == b
            }
            (HttpKey::Route(a), HttpKey::Route(b)) => a == b,
            (HttpKey::Composite(a), HttpKey::Composite(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for HttpKey {}

/// An address as the layer keys it ([`client_net`]: IPv6 by its /64), so blocks
/// through the in-memory limiter's `IpBlocker` reach the requests a `ClientIp` policy
/// checks.
impl From<IpAddr> for HttpKey {
    #[inline]
    fn from(ip: IpAddr) -> Self {
        HttpKey::Ip(client_net(ip))
    }
}

/// A tag byte, then the value. The in-memory table keeps only a hash of the key, so
/// two keys must never feed the hasher the same bytes: each form is tagged and
/// delimits itself (an address has a fixed length, a `str` ends in `0xff`, which
/// UTF-8 never contains; a composite writes its length), so a composite's parts
/// cannot run into each other. An IPv4 address is one 8-byte write (tag 0 in the low
/// byte): the derived hash wrote 20 bytes in three calls, on every request.
impl Hash for HttpKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            HttpKey::Ip(IpAddr::V4(ip)) => state.write_u64(u64::from(ip.to_bits()) << 8),
            // Any address of a /64 hashes as the /64, and a mapped one as its IPv4
            // address (`HttpKey::Ip` built by hand, not by `from`, included).
            HttpKey::Ip(IpAddr::V6(ip)) => match client_net(IpAddr::V6(*ip)) {
                IpAddr::V4(v4) => state.write_u64(u64::from(v4.to_bits()) << 8),
                IpAddr::V6(net) => {
                    state.write_u8(1);
                    state.write_u128(net.to_bits());
                }
            },
            HttpKey::Text(t) => {
                state.write_u8(2);
                t.hash(state);
            }
            HttpKey::Route(r) => {
                state.write_u8(3);
                r.hash(state);
            }
            HttpKey::Composite(parts) => {
                state.write_u8(4);
                parts.hash(state);
            }
            HttpKey::Subject(s) => {
                state.write_u8(5);
                s.hash(state);
            }
        }
    }
}

/// The key as a Redis key: an address as itself (so `RedisLimiter`'s `IpBlocker`
/// blocks reach it), a header value `t:<len>:…`, a subject `s:<len>:…`, `r:…`, parts
/// joined by `|`.
impl fmt::Display for HttpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpKey::Ip(ip) => write!(f, "{}", client_net(*ip)),
            HttpKey::Text(t) => write!(f, "t:{}:{t}", t.len()),
            HttpKey::Subject(s) => write!(f, "s:{}:{s}", s.len()),
            HttpKey::Route(r) => write!(f, "r:{r}"),
            HttpKey::Composite(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl KeySource {
    pub(super) fn extract<B>(
        &self,
        peer: Option<SocketAddr>,
        req: &Request<B>,
    ) -> Result<HttpKey, KeyError> {
        match self {
            KeySource::ClientIp(proxies) => {
                let Some(peer) = peer else {
                    tracing::error!(
                        "rate limit by client address, but the server records no peer address"
                    );
                    return Err(KeyError::NoPeer);
                };
                if proxies.trusts_nobody() {
                    // No forwarded header is read: skip the scan.
                    return Ok(HttpKey::from(peer.ip()));
                }
                // Values as bytes: a line that is not text still holds the entries
                // our proxies appended to it.
                let forwarded: Vec<(&str, &http::HeaderValue)> = req
                    .headers()
                    .iter()
                    .filter(|(n, _)| {
                        *n == http::header::FORWARDED || n.as_str() == "x-forwarded-for"
                    })
                    .map(|(n, v)| (n.as_str(), v))
                    .collect();
                Ok(HttpKey::from(proxies.client_ip(peer.ip(), forwarded)))
            }
            KeySource::Header(name) => match req.headers().get(name).map(|v| v.to_str()) {
                Some(Ok(v)) if !v.is_empty() => Ok(HttpKey::Text(v.into())),
                _ => Err(KeyError::Header),
            },
            KeySource::Subject => match req.extensions().get::<AuthenticatedSubject>() {
                Some(s) if !s.0.is_empty() => Ok(HttpKey::Subject(s.0.as_str().into())),
                _ => Err(KeyError::Subject),
            },
            KeySource::Route(r) => Ok(HttpKey::Route(r)),
            KeySource::Composite(parts) => parts
                .iter()
                .map(|p| p.extract(peer, req))
                .collect::<Result<Box<[_]>, _>>()
                .map(HttpKey::Composite),
        }
    }
}

/// Redis keys are strings: the key's `Display` form.
#[cfg(feature = "redis")]
impl crate::Limiter<HttpKey> for crate::RedisLimiter {
    fn check(
        &self,
        key: &HttpKey,
        cost: u32,
    ) -> impl Future<Output = Result<crate::Decision, crate::Error>> + Send {
        let key = key.to_string();
        async move { crate::RedisLimiter::check(self, &key, cost).await }
    }
}
