//! Watchlists and certspotter-style defensive name matching, with an index so a
//! thousand watch items cost a few hash lookups per name, not a thousand compares.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use palisade_core_traits::canonical_ip;

use crate::error::Error;
use crate::identifiers::Identifiers;
use crate::merkle::Hash;

/// One thing to watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WatchItem {
    /// Exactly this DNS name (lower-case punycode, no trailing dot).
    Domain(String),
    /// This DNS name and every name below it; the empty string watches every name.
    DomainAndSubdomains(String),
    /// One IP address.
    Ip(IpAddr),
    /// Every address in a network (`addr/prefix`).
    IpNetwork(IpAddr, u8),
}

impl fmt::Display for WatchItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Domain(d) => f.write_str(d),
            Self::DomainAndSubdomains(d) => write!(f, ".{d}"),
            Self::Ip(ip) => write!(f, "{ip}"),
            Self::IpNetwork(ip, p) => write!(f, "{ip}/{p}"),
        }
    }
}

/// A network inside `::ffff:0:0/96` is the IPv4 network it maps; a wider IPv6
/// network stays IPv6 (it holds more than the mapped range).
fn canonical_network(ip: IpAddr, prefix: u8) -> (IpAddr, u8) {
    match (canonical_ip(ip), ip) {
        (IpAddr::V4(v4), IpAddr::V6(_)) if prefix >= 96 => (IpAddr::V4(v4), prefix - 96),
        _ => (ip, prefix),
    }
}

fn canonical_watch_domain(item: &str, domain: &str) -> Result<String, Error> {
    let bad = |reason: &str| Error::BadWatchItem {
        item: item.to_string(),
        reason: reason.to_string(),
    };
    let ascii = idna::domain_to_ascii(domain.trim_end_matches('.'))
        .map_err(|_| bad("not a valid (IDNA) domain name"))?;
    if ascii.is_empty() || ascii.split('.').any(str::is_empty) {
        return Err(bad("empty label"));
    }
    if ascii.contains(['*', '?', ' ', '/', '\0']) {
        return Err(bad(
            "watch items are plain names; wildcards belong in certificates",
        ));
    }
    Ok(ascii)
}

impl WatchItem {
    /// Parses certspotter's syntax: `example.com` (exactly), `.example.com` (and
    /// subdomains), `.` (everything), an IP address, or `addr/prefix`. IDNs are
    /// converted to punycode.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let bad = |reason: &str| Error::BadWatchItem {
            item: s.to_string(),
            reason: reason.to_string(),
        };
        if s == "." {
            return Ok(Self::DomainAndSubdomains(String::new()));
        }
        if let Some((addr, prefix)) = s.split_once('/') {
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| bad("network address is not an IP"))?;
            let prefix: u8 = prefix.parse().map_err(|_| bad("prefix is not a number"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(bad("prefix longer than the address"));
            }
            let (ip, prefix) = canonical_network(ip, prefix);
            return Ok(Self::IpNetwork(ip, prefix));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Ip(canonical_ip(ip)));
        }
        match s.strip_prefix('.') {
            Some(d) => Ok(Self::DomainAndSubdomains(canonical_watch_domain(s, d)?)),
            None => Ok(Self::Domain(canonical_watch_domain(s, s)?)),
        }
    }

    /// Whether this item matches one identifier name (the unindexed rule).
    pub fn matches_dns_name(&self, name: &str) -> bool {
        let (domain, subtree) = match self {
            Self::Domain(d) => (d.as_str(), false),
            Self::DomainAndSubdomains(d) => (d.as_str(), true),
            _ => return false,
        };
        if domain.is_empty() {
            return subtree;
        }
        let mut cert = name.rsplit('.');
        for watch_label in domain.rsplit('.') {
            match cert.next() {
                Some(c) if label_matches(c, watch_label) => {}
                _ => return false,
            }
        }
        subtree || cert.next().is_none()
    }

    /// Whether this item matches an IP address.
    /// Whether this item matches an IP address. Both sides are compared in
    /// canonical form: an IPv4-mapped IPv6 address is the IPv4 address.
    pub fn matches_ip(&self, ip: &IpAddr) -> bool {
        // Items may be built directly, not only by `parse`: canonicalise here too.
        let ip = canonical_ip(*ip);
        match self {
            Self::Ip(a) => canonical_ip(*a) == ip,
            Self::IpNetwork(n, p) => match (canonical_network(*n, *p), ip) {
                ((IpAddr::V4(n), p), IpAddr::V4(a)) => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                    u32::from(n) & mask == u32::from(a) & mask
                }
                ((IpAddr::V6(n), p), a) => {
                    // An IPv6 network wider than ::ffff:0:0/96 (e.g. ::/0) holds the
                    // mapped IPv4 addresses too.
                    let a = match a {
                        IpAddr::V4(a) => a.to_ipv6_mapped(),
                        IpAddr::V6(a) => a,
                    };
                    let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                    u128::from(n) & mask == u128::from(a) & mask
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// A certificate label against a watched label: `*` and `?` (redacted) match any
/// label, and `*` inside a label matches any run of characters (`w*.example.com`).
pub(crate) fn label_matches(cert: &str, watch: &str) -> bool {
    if cert == watch || cert == "*" || cert == "?" {
        return true;
    }
    cert.contains('*') && glob(cert.as_bytes(), watch.as_bytes())
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard match with backtracking to the last '*'.
    let (mut p, mut t, mut star, mut mark) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Which watch item matched, on which identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchMatch {
    /// The item.
    pub item: WatchItem,
    /// The certificate's identifier that it matched (`"*"` for a malformed entry).
    pub identifier: String,
}

/// More matches than the limit.
struct Full;

/// The matches of one entry: each (item, identifier) pair once, by a hash set
/// (a scan of the list per match would be quadratic), up to a limit.
struct Found<'a> {
    out: Vec<WatchMatch>,
    names: HashSet<(usize, &'a str)>,
    ips: HashSet<(usize, IpAddr)>,
    limit: usize,
}

impl<'a> Found<'a> {
    fn new(limit: usize) -> Self {
        Self {
            out: Vec::new(),
            names: HashSet::new(),
            ips: HashSet::new(),
            limit,
        }
    }

    fn name(&mut self, items: &[WatchItem], i: usize, name: &'a str) -> Result<(), Full> {
        if self.names.insert((i, name)) {
            self.add(&items[i], name.to_string())?;
        }
        Ok(())
    }

    fn ip(&mut self, items: &[WatchItem], i: usize, ip: IpAddr) -> Result<(), Full> {
        if self.ips.insert((i, ip)) {
            self.add(&items[i], ip.to_string())?;
        }
        Ok(())
    }

    fn add(&mut self, item: &WatchItem, identifier: String) -> Result<(), Full> {
        if self.out.len() >= self.limit {
            return Err(Full);
        }
        self.out.push(WatchMatch {
            item: item.clone(),
            identifier,
        });
        Ok(())
    }
}

/// An immutable, indexed set of watch items.
#[derive(Debug, Clone, Default)]
pub struct Watchlist {
    items: Vec<WatchItem>,
    /// Watched domain → items (exact and subtree).
    by_domain: HashMap<String, Vec<usize>>,
    /// Every proper label-suffix of a watched domain → items.
    by_suffix: HashMap<String, Vec<usize>>,
    domain_items: Vec<usize>,
    root_items: Vec<usize>,
    ip_items: Vec<usize>,
}

impl Watchlist {
    /// Builds the index (duplicates are kept once).
    pub fn new(items: impl IntoIterator<Item = WatchItem>) -> Self {
        let mut w = Self::default();
        let mut seen = HashSet::new();
        for item in items {
            if !seen.insert(item.clone()) {
                continue;
            }
            let i = w.items.len();
            match &item {
                WatchItem::Domain(d) | WatchItem::DomainAndSubdomains(d) if d.is_empty() => {
                    w.root_items.push(i)
                }
                WatchItem::Domain(d) | WatchItem::DomainAndSubdomains(d) => {
                    w.domain_items.push(i);
                    w.by_domain.entry(d.clone()).or_default().push(i);
                    let mut rest = d.as_str();
                    while let Some((_, suffix)) = rest.split_once('.') {
                        w.by_suffix.entry(suffix.to_string()).or_default().push(i);
                        rest = suffix;
                    }
                }
                _ => w.ip_items.push(i),
            }
            w.items.push(item);
        }
        w
    }

    /// Parses one item per line; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let items = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty())
            .map(WatchItem::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(items))
    }

    /// The items, in insertion order.
    pub fn items(&self) -> &[WatchItem] {
        &self.items
    }

    /// Every (item, identifier) pair that matches, each once, in the order found.
    /// Not capped: [`crate::check_entry`] caps the matches of one entry.
    pub fn matches(&self, ids: &Identifiers) -> Vec<WatchMatch> {
        let mut found = Found::new(usize::MAX);
        // Unreachable with no limit; the matches so far either way.
        let _ = self.find(ids, &mut found);
        found.out
    }

    /// [`Watchlist::matches`], or `None` once more than `limit` pairs match
    /// (matching stops there, so the work stays bounded).
    pub(crate) fn matches_at_most(
        &self,
        ids: &Identifiers,
        limit: usize,
    ) -> Option<Vec<WatchMatch>> {
        let mut found = Found::new(limit);
        self.find(ids, &mut found).ok()?;
        Some(found.out)
    }

    fn find<'a>(&self, ids: &'a Identifiers, found: &mut Found<'a>) -> Result<(), Full> {
        for name in &ids.dns_names {
            for &i in &self.root_items {
                found.name(&self.items, i, name)?;
            }
            // The literal suffix: labels right of the last one with '*' or '?'.
            let literal_start = match name.rfind(['*', '?']) {
                None => 0,
                Some(pos) => name[pos..].find('.').map_or(name.len(), |d| pos + d + 1),
            };
            let literal = &name[literal_start..];
            let mut suffix = literal;
            loop {
                if let Some(items) = self.by_domain.get(suffix) {
                    for &i in items {
                        if self.items[i].matches_dns_name(name) {
                            found.name(&self.items, i, name)?;
                        }
                    }
                }
                match suffix.split_once('.') {
                    Some((_, rest)) => suffix = rest,
                    None => break,
                }
            }
            if literal_start > 0 {
                // Wildcard or redacted labels: watched names longer than the literal part.
                let candidates = if literal.is_empty() {
                    &self.domain_items
                } else {
                    self.by_suffix.get(literal).map_or(&[][..], Vec::as_slice)
                };
                for &i in candidates {
                    if self.items[i].matches_dns_name(name) {
                        found.name(&self.items, i, name)?;
                    }
                }
            }
        }
        for ip in &ids.ip_addrs {
            for &i in &self.ip_items {
                if self.items[i].matches_ip(ip) {
                    found.ip(&self.items, i, *ip)?;
                }
            }
        }
        Ok(())
    }

    /// The unindexed reference: every item against every identifier. Same result
    /// as [`Watchlist::matches`] (property-tested), slower.
    pub fn matches_linear(&self, ids: &Identifiers) -> Vec<WatchMatch> {
        let mut found = Found::new(usize::MAX);
        for name in &ids.dns_names {
            for (i, item) in self.items.iter().enumerate() {
                if item.matches_dns_name(name) {
                    let _ = found.name(&self.items, i, name);
                }
            }
        }
        for ip in &ids.ip_addrs {
            for (i, item) in self.items.iter().enumerate() {
                if item.matches_ip(ip) {
                    let _ = found.ip(&self.items, i, *ip);
                }
            }
        }
        found.out
    }

    /// A malformed entry matches every item (fail towards alerting).
    pub fn match_all(&self) -> Vec<WatchMatch> {
        self.items
            .iter()
            .map(|item| WatchMatch {
                item: item.clone(),
                identifier: "*".to_string(),
            })
            .collect()
    }
}

/// A watchlist that can be replaced while matching goes on: readers take a cheap
/// `Arc` snapshot, a writer swaps in a new list.
#[derive(Debug, Clone, Default)]
pub struct SharedWatchlist(Arc<RwLock<Arc<Watchlist>>>);

impl SharedWatchlist {
    /// Wraps a list.
    pub fn new(list: Watchlist) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(list))))
    }

    /// The current list.
    pub fn load(&self) -> Arc<Watchlist> {
        // A poisoned lock only means a writer panicked between two valid states.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the list; matches already running keep their snapshot.
    pub fn replace(&self, list: Watchlist) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(list);
    }
}

/// Certificates of your own, which must not alert. Issuer names and serials are
/// chosen by whoever requests a certificate, so they are not used: only the TBS
/// hash (this exact certificate; precertificate and certificate share it) or the
/// SPKI hash (any certificate for this key pair).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorizer {
    tbs: HashSet<Hash>,
    spki: HashSet<Hash>,
}

impl Authorizer {
    /// Nothing authorized.
    pub fn new() -> Self {
        Self::default()
    }

    /// Authorizes one certificate by [`crate::CertificateInfo::tbs_hash`].
    pub fn allow_tbs_hash(&mut self, hash: Hash) -> &mut Self {
        self.tbs.insert(hash);
        self
    }

    /// Authorizes every certificate for a key, by SHA-256 of its DER SubjectPublicKeyInfo.
    pub fn allow_spki_hash(&mut self, hash: Hash) -> &mut Self {
        self.spki.insert(hash);
        self
    }

    /// Whether a certificate with these hashes is authorized.
    pub fn is_authorized(&self, tbs_hash: &Hash, spki_hash: &Hash) -> bool {
        self.tbs.contains(tbs_hash) || self.spki.contains(spki_hash)
    }
}
