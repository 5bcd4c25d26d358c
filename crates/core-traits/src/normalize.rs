//! The canonical forms every crate keys on: one address per host, one id per account.
//!
//! Two crates that key the same thing differently let an attacker walk between them:
//! a block set on `198.51.100.7` must stop a peer that a dual-stack listener reports
//! as `::ffff:198.51.100.7`, and an allowlist entry `admin` must protect the account
//! a login form received as `Admin`. Apply these functions wherever an address or a
//! user id becomes a key (rate limits, blocks, histories, device stores, allowlists).

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use unicode_normalization::UnicodeNormalization;

/// The canonical form of an address: an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`) is the IPv4 address `a.b.c.d`; every other address is itself.
///
/// Dual-stack listeners report IPv4 clients in the mapped form, so a key taken from a
/// socket and a key taken from configuration only agree once both are canonical.
/// IPv4-compatible addresses (`::a.b.c.d`, deprecated by RFC 4291) are left as IPv6.
///
/// ```
/// use palisade_core_traits::canonical_ip;
/// use std::net::IpAddr;
///
/// let mapped: IpAddr = "::ffff:198.51.100.7".parse().unwrap();
/// assert_eq!(canonical_ip(mapped), "198.51.100.7".parse::<IpAddr>().unwrap());
/// let v6: IpAddr = "2001:db8::1".parse().unwrap();
/// assert_eq!(canonical_ip(v6), v6);
/// ```
#[inline]
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

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
/// block. ratelimit keys and blocks every client address by it (memory and Redis
/// alike), and playbooks' engine groups an address's decisions, cool-downs and ban
/// history by it, so the two agree on who a client is.
///
/// ```
/// use palisade_core_traits::client_net;
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

/// Deserializes an address and makes it canonical (serde `deserialize_with`).
pub(crate) fn deserialize_canonical_ip<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<IpAddr, D::Error> {
    <IpAddr as serde::Deserialize>::deserialize(d).map(canonical_ip)
}

/// The canonical form of a user identifier (a username, an email address, a JWT
/// `sub` that a service derives from one): surrounding white space removed, Unicode
/// compatibility forms folded (NFKC: full-width letters, ligatures), then lower-cased,
/// and the four lower-case letters whose upper case lower-cases to something else
/// folded to that: `ß` → `ss`, final `ς` → `σ`, U+0345 → `ι` (as Unicode's
/// NFKC_Casefold does), dotless `ı` → `i`. So no two spellings that differ only by case
/// are two accounts: `Straße` is `STRASSE`, and a look-alike `admın` is `admin`.
///
/// `Admin`, ` admin ` and `ａｄｍｉｎ` (full-width) are one account. Borrowed when the
/// input is already canonical, so the common case allocates nothing.
///
/// A service that issues tokens should put the canonical id in `sub`, so that what
/// playbooks and revocation key on (the token's subject) and what login risk keys on
/// (the name typed at login) agree.
///
/// ```
/// use palisade_core_traits::normalize_user_id;
///
/// assert_eq!(normalize_user_id("Admin"), "admin");
/// assert_eq!(normalize_user_id(" alice@Example.COM\n"), "alice@example.com");
/// assert_eq!(normalize_user_id("ａｄｍｉｎ"), "admin");
/// assert_eq!(normalize_user_id("Straße"), "strasse");
/// assert_eq!(normalize_user_id("admın"), "admin");
/// ```
pub fn normalize_user_id(id: &str) -> Cow<'_, str> {
    let trimmed = id.trim();
    // Fast path: printable ASCII without upper case is already canonical (NFKC leaves
    // ASCII alone).
    if trimmed
        .bytes()
        .all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase() || b == b' ')
    {
        return Cow::Borrowed(trimmed);
    }
    // Lower case alone keeps `ß`, `ς`, U+0345 and `ı`, whose upper case (`SS`, `Σ`,
    // `Ι`, `I`) lower-cases to something else: then an id and its upper-case spelling
    // (or a look-alike) would be two accounts. NFKC even makes them out of caseless
    // characters (U+037A → U+0345, U+1D6A4 → `ı`, U+1D7BB → `ς`).
    let lower = trimmed.nfkc().collect::<String>().to_lowercase();
    let mut folded = String::with_capacity(lower.len() + 1);
    for c in lower.chars() {
        match c {
            'ß' => folded.push_str("ss"),
            'ς' => folded.push('σ'),
            '\u{345}' => folded.push('ι'),
            'ı' => folded.push('i'),
            c => folded.push(c),
        }
    }
    // Folding can produce characters NFKC would change again (rarely), so normalize
    // once more: the result is a fixed point of this function.
    let refolded: String = folded.nfkc().collect();
    Cow::Owned(refolded.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_become_ipv4_and_others_stay() {
        let cases = [
            ("::ffff:198.51.100.7", "198.51.100.7"),
            ("::ffff:0.0.0.0", "0.0.0.0"),
            ("198.51.100.7", "198.51.100.7"),
            ("2001:db8::1", "2001:db8::1"),
            ("::1", "::1"),
            ("::198.51.100.7", "::198.51.100.7"),
            ("64:ff9b::c633:6407", "64:ff9b::c633:6407"),
        ];
        for (input, want) in cases {
            let got = canonical_ip(input.parse().unwrap());
            assert_eq!(got, want.parse::<IpAddr>().unwrap(), "{input}");
        }
    }

    #[test]
    fn user_ids_fold_case_width_and_space() {
        for (input, want) in [
            ("admin", "admin"),
            ("Admin", "admin"),
            ("  ADMIN\t", "admin"),
            ("ａｄｍｉｎ", "admin"),
            ("Ａｄｍｉｎ", "admin"),
            ("ÉLODIE", "élodie"),
            ("E\u{301}lodie", "élodie"),
            ("ﬁnance", "finance"),
            ("first last", "first last"),
            ("\u{37a}", "\u{3b9}"),
            ("\u{345}", "\u{3b9}"),
            ("\u{399}", "\u{3b9}"),
            ("Straße", "strasse"),
            ("STRASSE", "strasse"),
            ("\u{1e9e}", "ss"),
            ("ΟΔΟΣ", "οδοσ"),
            ("οδος", "οδοσ"),
            ("\u{1d7bb}", "σ"),
            ("admın", "admin"),
            ("\u{1d6a4}", "i"),
            ("", ""),
        ] {
            assert_eq!(normalize_user_id(input), want, "{input:?}");
        }
    }

    #[test]
    fn already_canonical_ids_are_borrowed() {
        assert!(matches!(
            normalize_user_id("alice@example.com"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(normalize_user_id("Alice"), Cow::Owned(_)));
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
