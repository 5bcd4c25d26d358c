//! [`Key`]: what the in-memory limiter can track, in one form per subject, and
//! [`client_net`]: the one form every client address is limited and blocked by.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::sync::Arc;

use palisade_core_traits::canonical_ip;

/// The low 64 bits of an IPv6 address: the interface identifier, the part a host
/// chooses for itself inside its /64.
const V6_HOST_BITS: u128 = u64::MAX as u128;

/// The network a client address is limited and blocked as: the canonical address
/// ([`canonical_ip`]: `::ffff:198.51.100.7` is `198.51.100.7`) for IPv4, and the /64
/// network (the low 64 bits zeroed) for IPv6.
///
/// A single IPv6 subscriber or VM is normally given a /64 or more (RFC 6177) and
/// picks its interface identifiers freely (SLAAC privacy addresses rotate them), so keyed
/// per address one host would get 2^64 quotas and walk past any block placed on one
/// of its addresses. The cost: hosts that share one /64 share one quota and one
/// block. Every `IpAddr` the crate turns into a key goes through here: the
/// `IpAddr` [`Key`], the layer's client-IP key, and both limiters' `IpBlocker` and
/// Redis key parsing, so both backends decide alike.
///
/// ```
/// use palisade_ratelimit::client_net;
/// use std::net::IpAddr;
///
/// let ip = |s: &str| s.parse::<IpAddr>().unwrap();
/// assert_eq!(client_net(ip("198.51.100.7")), ip("198.51.100.7"));
/// assert_eq!(client_net(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
/// assert_eq!(client_net(ip("2001:db8:1:2:aaaa::7")), ip("2001:db8:1:2::"));
/// assert_eq!(client_net(ip("2002:c633:6407:5::1")), ip("198.51.100.7")); // 6to4
/// assert_eq!(client_net(ip("64:ff9b::c633:6407")), ip("198.51.100.7")); // NAT64
/// // Teredo (RFC 4380 §4 example: client 192.0.2.45, obfuscated).
/// assert_eq!(client_net(ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")), ip("192.0.2.45"));
/// ```
///
/// IPv6 addresses that carry the client's IPv4 address are keyed as that address:
/// 6to4 (`2002::/16`, RFC 3056: the /16 would otherwise give one IPv4 host 2^16
/// quotas besides its IPv4 one), Teredo (`2001::/32`, RFC 4380: its /64 is every
/// client of one Teredo server) and the NAT64 well-known prefix (`64:ff9b::/96`,
/// RFC 6052: its /64 is the whole IPv4 internet as an IPv6-only server sees it).
#[inline(always)]
pub fn client_net(ip: IpAddr) -> IpAddr {
    match canonical_ip(ip) {
        IpAddr::V6(v6) => {
            let bits = v6.to_bits();
            let v4 = |a: u32| IpAddr::V4(Ipv4Addr::from_bits(a));
            if bits >> 112 == 0x2002 {
                v4((bits >> 80) as u32) // 6to4: the 32 bits after the prefix
            } else if bits >> 96 == 0x2001_0000 {
                v4(!(bits as u32)) // Teredo: the client's address, inverted, at the end
            } else if bits >> 64 == 0x0064_ff9b_0000_0000 {
                // NAT64 (the /96 holds the IPv4 address at the end; the rest of its
                // /64 is read the same way, so that a result never maps again).
                v4(bits as u32)
            } else {
                IpAddr::V6(Ipv6Addr::from_bits(bits & !V6_HOST_BITS))
            }
        }
        v4 => v4,
    }
}

/// A key of a [`KeyedLimiter`](crate::KeyedLimiter).
///
/// Two keys that name one subject must be tracked as one, or the subject gets two
/// quotas and escapes its blocks. [`IpAddr`] keys are tracked as their
/// [`client_net`]: an IPv4 address in canonical form (`::ffff:198.51.100.7` is
/// `198.51.100.7`, so a dual-stack listener's IPv4-mapped peers share their IPv4
/// address's quota and blocks), an IPv6 address as its /64. Every other key is its
/// own canonical form (the default), at no cost.
///
/// Your own key type needs one line, `impl Key for MyKey {}`, or a
/// [`canonical`](Key::canonical) of its own if it holds an address.
///
/// ```
/// use palisade_ratelimit::{Key, KeyedLimiter, Quota, nz};
/// use std::net::IpAddr;
///
/// #[derive(Hash, PartialEq, Eq)]
/// struct Tenant(u32);
/// impl Key for Tenant {}
///
/// let by_tenant = KeyedLimiter::<Tenant>::new(Quota::per_second(nz!(5)));
/// assert!(by_tenant.check(&Tenant(7), 1).unwrap().allowed);
///
/// let by_ip = KeyedLimiter::<IpAddr>::new(Quota::per_second(nz!(1)));
/// assert!(by_ip.check(&"198.51.100.7".parse().unwrap(), 1).unwrap().allowed);
/// // The same client seen through a dual-stack socket: the same key.
/// assert!(!by_ip.check(&"::ffff:198.51.100.7".parse().unwrap(), 1).unwrap().allowed);
/// // Two addresses of one IPv6 /64: one client.
/// assert!(by_ip.check(&"2001:db8:1:2::7".parse().unwrap(), 1).unwrap().allowed);
/// assert!(!by_ip.check(&"2001:db8:1:2::8".parse().unwrap(), 1).unwrap().allowed);
/// ```
pub trait Key: Hash + Eq + Sized {
    /// The form of this key the limiter tracks, when it is not the key itself.
    /// Keys naming one subject must return equal forms. `None` (the default): the
    /// key is canonical as it is.
    #[inline(always)]
    fn canonical(&self) -> Option<Self> {
        None
    }
}

/// The address's [`client_net`]: IPv4-mapped IPv6 addresses become IPv4, other IPv6
/// addresses their /64.
impl Key for IpAddr {
    #[inline(always)]
    fn canonical(&self) -> Option<Self> {
        Some(client_net(*self))
    }
}

macro_rules! canonical_as_they_are {
    ($($t:ty),* $(,)?) => { $(impl Key for $t {})* };
}

// `Ipv4Addr` and `Ipv6Addr` stay themselves: keys taken exactly as given, per address,
// for callers who mean that (an `Ipv6Addr` key does not share its /64's quota, and a
// mapped one is not its IPv4 address). `IpAddr` keys are the client ones (`client_net`).
canonical_as_they_are!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    bool,
    char,
    String,
    Box<str>,
    Arc<str>,
    Rc<str>,
    Vec<u8>,
    Box<[u8]>,
    Arc<[u8]>,
    Ipv4Addr,
    Ipv6Addr,
    &str,
    &[u8],
);

impl<const N: usize> Key for [u8; N] {}

macro_rules! tuple_keys {
    ($(($($t:ident $i:tt),+)),+ $(,)?) => {$(
        /// Canonical element by element.
        impl<$($t: Key + Clone),+> Key for ($($t,)+) {
            #[inline(always)]
            fn canonical(&self) -> Option<Self> {
                let parts = ($(self.$i.canonical(),)+);
                if $(parts.$i.is_none())&&+ {
                    return None;
                }
                Some(($(parts.$i.unwrap_or_else(|| self.$i.clone()),)+))
            }
        }
    )+};
}

tuple_keys!((A 0, B 1), (A 0, B 1, C 2), (A 0, B 1, C 2, D 3));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_tuples_holding_them_are_canonical() {
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
        let v4: IpAddr = "198.51.100.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let net: IpAddr = "2001:db8::".parse().unwrap();
        assert_eq!(mapped.canonical(), Some(v4));
        assert_eq!(v4.canonical(), Some(v4));
        assert_eq!(v6.canonical(), Some(net));
        assert_eq!(net.canonical(), Some(net));
        assert_eq!((mapped, "login").canonical(), Some((v4, "login")));
        assert_eq!(("login", 3u8, mapped).canonical(), Some(("login", 3u8, v4)));
        assert_eq!(("login", 3u8).canonical(), None);
        assert_eq!(String::from("::ffff:198.51.100.7").canonical(), None);
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_every_other_bit_is_kept() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        // The first 64 bits are kept whole, the last 64 all cleared.
        assert_eq!(
            client_net(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            ip("ffff:ffff:ffff:ffff::")
        );
        assert_eq!(
            client_net(ip("2001:db8:1:2:3:4:5:6")),
            client_net(ip("2001:db8:1:2:ffff::1"))
        );
        assert_ne!(
            client_net(ip("2001:db8:1:2::1")),
            client_net(ip("2001:db8:1:3::1"))
        );
        // IPv4, mapped or not, is the whole address: no IPv4 prefix is shared.
        assert_eq!(client_net(ip("::ffff:192.0.2.255")), ip("192.0.2.255"));
        assert_ne!(client_net(ip("192.0.2.1")), client_net(ip("192.0.2.2")));
        // Applying it twice changes nothing (blocks and checks may both apply it).
        for s in [
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "192.0.2.1",
            "::1",
            "::",
            "2002:c000:22d::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b::c000:22d",
            "64:ff9b::1:0:0:5",
        ] {
            assert_eq!(client_net(client_net(ip(s))), client_net(ip(s)), "{s}");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_ipv4_are_their_ipv4_client() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        // 6to4 (RFC 3056): 2002:V4ADDR::/48, any subnet and host of it.
        for s in ["2002:c000:22d::1", "2002:c000:22d:ffff:1:2:3:4"] {
            assert_eq!(client_net(ip(s)), ip("192.0.2.45"), "{s}");
        }
        // Teredo (RFC 4380 §4): the client's address, inverted, in the last 32 bits.
        assert_eq!(
            client_net(ip("2001:0:4136:e378:8000:63bf:3fff:fdd2")),
            ip("192.0.2.45")
        );
        // NAT64 well-known prefix (RFC 6052 §2.4): 64:ff9b::192.0.2.33.
        assert_eq!(client_net(ip("64:ff9b::c000:221")), ip("192.0.2.33"));
        // Not those prefixes: by /64 as any other.
        assert_eq!(client_net(ip("2003:c000:22d::1")), ip("2003:c000:22d::"));
        assert_eq!(client_net(ip("2001:1::1")), ip("2001:1::"));
    }
}
