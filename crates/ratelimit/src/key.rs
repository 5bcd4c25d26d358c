//! [`Key`]: what the in-memory limiter can track, in one form per subject.

use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::rc::Rc;
use std::sync::Arc;

use palisade_core_traits::client_net;

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
}
