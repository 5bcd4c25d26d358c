//! The client address behind trusted proxies, for any header chain.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_core_traits::{ForwardedHeader, IpNetwork, TrustedProxies, canonical_ip};
use proptest::prelude::*;

/// Our proxies live in 10.0.0.0/8 and fd00::/8.
fn proxies() -> TrustedProxies {
    TrustedProxies::networks(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()])
}

fn proxy_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
        any::<u128>().prop_map(|x| IpAddr::V6(Ipv6Addr::from((x >> 8) | (0xfd << 120)))),
        // A proxy that reports itself in mapped form is still ours.
        any::<[u8; 3]>()
            .prop_map(|[a, b, c]| IpAddr::V6(Ipv4Addr::new(10, a, b, c).to_ipv6_mapped())),
    ]
}

/// A client address outside the proxies' networks (any form, mapped included).
fn client_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from(x))),
        any::<u128>().prop_map(|x| IpAddr::V6(Ipv6Addr::from(x))),
        any::<u32>().prop_map(|x| IpAddr::V6(Ipv4Addr::from(x).to_ipv6_mapped())),
    ]
    .prop_filter("not one of our proxies", |ip| !proxies().is_trusted(*ip))
}

/// What a client may put in the header before our first proxy appends: anything,
/// including addresses of our own proxies, garbage and empty entries.
fn attacker_entries() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            proxy_addr().prop_map(|ip| ip.to_string()),
            client_addr().prop_map(|ip| ip.to_string()),
            "[ -~]{0,24}".prop_map(|s| s.replace(',', "")),
            Just("unknown".to_owned()),
        ],
        0..6,
    )
}

/// Renders a chain as header lines: split at arbitrary points, as HTTP allows.
fn lines(name: &str, entries: &[String], splits: &[bool]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        current.push(e);
        if splits.get(i).copied().unwrap_or(false) || i + 1 == entries.len() {
            out.push((name.to_owned(), current.join(", ")));
            current.clear();
        }
    }
    out
}

fn as_refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the client writes, the answer is the address our first proxy saw.
    #[test]
    fn spoofed_entries_never_change_the_client(
        prefix in attacker_entries(),
        client in client_addr(),
        hops in prop::collection::vec(proxy_addr(), 1..5),
        splits in prop::collection::vec(any::<bool>(), 0..12),
        forwarded in any::<bool>(),
    ) {
        // Proxy i appends the address it received the request from.
        let mut chain = prefix.clone();
        let mut from = client;
        for proxy in &hops[..hops.len() - 1] {
            chain.push(from.to_string());
            from = *proxy;
        }
        chain.push(from.to_string());
        let peer = *hops.last().unwrap();
        let (name, chain, header) = if forwarded {
            let quoted = chain.iter().map(|e| match e.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => format!("for=\"[{v6}]:443\""),
                Ok(v4) => format!("for={v4}"),
                Err(_) => format!("for={e}"),
            });
            ("Forwarded", quoted.collect::<Vec<_>>(), ForwardedHeader::Forwarded)
        } else {
            ("X-Forwarded-For", chain, ForwardedHeader::XForwardedFor)
        };
        let headers = lines(name, &chain, &splits);
        let by_networks = proxies().header(header).client_ip(peer, as_refs(&headers));
        prop_assert_eq!(by_networks, canonical_ip(client));
        let by_hops = TrustedProxies::hops(hops.len()).header(header).client_ip(peer, as_refs(&headers));
        prop_assert_eq!(by_hops, canonical_ip(client));
    }

    /// A peer that is not our proxy is the client, whatever it sends.
    #[test]
    fn an_untrusted_peer_is_the_client(
        peer in client_addr(),
        entries in attacker_entries(),
        splits in prop::collection::vec(any::<bool>(), 0..8),
    ) {
        let headers = lines("x-forwarded-for", &entries, &splits);
        prop_assert_eq!(proxies().client_ip(peer, as_refs(&headers)), canonical_ip(peer));
        prop_assert_eq!(TrustedProxies::none().client_ip(peer, as_refs(&headers)), canonical_ip(peer));
    }

    /// Any header bytes: no panic, and the answer is the peer or an address that
    /// appears in the header, canonical.
    #[test]
    fn any_header_gives_the_peer_or_an_address_from_it(
        peer in proxy_addr(),
        value in "\\PC{0,80}",
        hops in 0usize..4,
        forwarded in any::<bool>(),
    ) {
        let header = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
        let headers = [(header.name(), value.as_str())];
        for p in [proxies().header(header), TrustedProxies::hops(hops).header(header)] {
            let got = p.client_ip(peer, headers);
            prop_assert_eq!(got, canonical_ip(got));
            let appears = value
                .split([',', ';', '=', '"', '[', ']', ' '])
                .any(|part| {
                    part.parse::<IpAddr>().is_ok_and(|ip| canonical_ip(ip) == got)
                        || part.rsplit_once(':').is_some_and(|(a, _)| a.parse::<IpAddr>().is_ok_and(|ip| canonical_ip(ip) == got))
                });
            prop_assert!(got == canonical_ip(peer) || appears, "{got} from {value:?}");
        }
    }

    /// `trusts_nobody` holds exactly for the configurations whose answer is always
    /// the peer (so a caller that skips the headers on it loses nothing), and not for
    /// those that read them.
    #[test]
    fn trusting_nobody_means_the_peer_whatever_the_headers(
        peer in prop_oneof![proxy_addr(), client_addr()],
        entries in attacker_entries(),
        forwarded in any::<bool>(),
    ) {
        let header = if forwarded { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
        let headers = lines(header.name(), &entries, &[]);
        let nobody = [
            TrustedProxies::none(),
            TrustedProxies::none().header(header),
            TrustedProxies::hops(0).header(header),
            TrustedProxies::networks([]).header(header),
        ];
        for p in nobody {
            prop_assert!(p.trusts_nobody(), "{p:?}");
            prop_assert_eq!(p.client_ip(peer, as_refs(&headers)), canonical_ip(peer));
        }
        prop_assert!(!proxies().header(header).trusts_nobody());
        prop_assert!(!TrustedProxies::hops(1).header(header).trusts_nobody());
    }

    #[test]
    fn network_text_round_trips(addr in any::<u32>(), prefix in 0u8..=32) {
        let masked = if prefix == 0 { 0 } else { addr & (u32::MAX << (32 - prefix)) };
        let net = IpNetwork::new(IpAddr::V4(Ipv4Addr::from(masked)), prefix).unwrap();
        prop_assert_eq!(net.to_string().parse::<IpNetwork>().unwrap(), net);
        prop_assert!(net.contains(IpAddr::V4(Ipv4Addr::from(addr))));
    }
}
