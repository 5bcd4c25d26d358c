//! The canonical forms every crate keys on: one address per host, one id per account.
//!
//! Two crates that key the same thing differently let an attacker walk between them:
//! a block set on `198.51.100.7` must stop a peer that a dual-stack listener reports
//! as `::ffff:198.51.100.7`, and an allowlist entry `admin` must protect the account
//! a login form received as `Admin`. Apply these functions wherever an address or a
//! user id becomes a key (rate limits, blocks, histories, device stores, allowlists).

use std::borrow::Cow;
use std::net::IpAddr;

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
}
