//! Identifier extraction and defensive matching on real awkward certificates, the CT
//! test log's certificates and precertificates, and the Navigli2025h2 entries.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::net::IpAddr;

use common::hex32;
use palisade_ct_monitor::{
    Authorizer, CertificateInfo, Error, Identifiers, SharedWatchlist, SignedEntry,
    TimestampedEntry, Verdict, WatchItem, Watchlist, check_entry, check_tile_leaf, parse_data_tile,
    tbs_hash,
};
use proptest::prelude::*;

fn sha256(data: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .try_into()
        .unwrap()
}

fn from_certificate_der(der: &[u8]) -> Result<Identifiers, Error> {
    Identifiers::from_certificate_der(der)
}

fn certificate_info(entry: &TimestampedEntry<'_>) -> Result<CertificateInfo, Error> {
    CertificateInfo::from_entry(entry)
}

fn cert(rel: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(&common::read(rel)).into_owned();
    common::pem_blocks(&text, "CERTIFICATE").remove(0)
}

fn awkward(name: &str) -> Vec<u8> {
    cert(&format!("awkward-certs/{name}"))
}

fn ids(name: &str) -> Identifiers {
    from_certificate_der(&awkward(name)).unwrap()
}

fn list(items: &[&str]) -> Watchlist {
    Watchlist::new(items.iter().map(|i| WatchItem::parse(i).unwrap()))
}

fn x509(der: &[u8]) -> TimestampedEntry<'_> {
    TimestampedEntry {
        timestamp: 0,
        entry: SignedEntry::X509 { certificate: der },
        extensions: &[],
    }
}

#[test]
fn pem_files_match_their_der_hashes() {
    let facts = common::json("awkward-certs/facts.json");
    for (name, f) in facts["files"].as_object().unwrap() {
        let der = awkward(name);
        assert_eq!(
            sha256(&der),
            hex32(f["der_sha256"].as_str().unwrap()),
            "{name}"
        );
    }
}

#[test]
fn nul_bytes_keep_the_full_and_the_truncated_name() {
    let i = ids("null_chars.pem");
    for n in [
        "null.python.org\0example.org",
        "null.python.org",
        "altnull.python.org\0example.com",
        "altnull.python.org",
    ] {
        assert!(
            i.dns_names.contains(&n.to_string()),
            "{n:?} in {:?}",
            i.dns_names
        );
    }
    let ips: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
    assert_eq!(i.ip_addrs, ips);
    let w = list(&[".python.org", "2001:db8::/32", "example.com"]);
    let m = w.matches(&i);
    assert!(m.iter().any(|m| m.identifier == "altnull.python.org"));
    assert!(m.iter().any(|m| m.identifier == "2001:db8::1"));
    assert!(
        !m.iter()
            .any(|m| m.item == WatchItem::parse("example.com").unwrap())
    );
}

#[test]
fn every_cn_is_extracted() {
    let facts = common::json("awkward-certs/facts.json");
    let want: Vec<String> = facts["files"]["multiple_cn.pem"]["cn_values_der_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let i = ids("multiple_cn.pem");
    assert_eq!(i.dns_names, want, "CNs in DER order, SANs deduplicated");
    // Each CN is a match on its own.
    assert_eq!(list(&["api.rd.io"]).matches(&i).len(), 1);
}

#[test]
fn eight_byte_ip_san_is_an_anomaly_and_cn_is_kept() {
    let i = ids("invalid_ip.pem");
    assert_eq!(i.dns_names, vec!["www.valu.va.gov"]);
    assert!(i.ip_addrs.is_empty());
    assert_eq!(i.anomalies, vec!["iPAddress SAN of 8 bytes ignored"]);
}

#[test]
fn cn_with_space_is_not_a_dns_name() {
    let i = ids("cn_utf8.pem");
    assert!(i.dns_names.is_empty() && i.ip_addrs.is_empty());
}

#[test]
fn invalid_utf8_elsewhere_in_the_subject_does_not_lose_the_cn() {
    let i = ids("cert_bad_utf8_subject.pem");
    assert_eq!(i.dns_names, vec!["www.alojamientocostadelsol.com"]);
}

#[test]
fn issuer_names_are_not_identifiers() {
    let i = ids("domain_in_issuer.pem");
    assert!(
        list(&["digicert.com", ".digicert.com", "www.digicert.com"])
            .matches(&i)
            .is_empty()
    );
    assert_eq!(list(&["abc.net.au"]).matches(&i).len(), 1);
    // *.abc.net.au and abc.net.au both match the subtree item.
    assert_eq!(list(&[".abc.net.au"]).matches(&i).len(), 2);
    assert_eq!(
        list(&["www.abc.net.au"]).matches(&i).len(),
        1,
        "wildcard covers www"
    );
}

#[test]
fn teletex_cn_with_negative_serial_is_read() {
    let i = ids("negative_serial.pem");
    assert_eq!(i.dns_names, vec!["*.nyc.gov"]);
    assert_eq!(list(&["www.nyc.gov"]).matches(&i).len(), 1);
    assert!(
        list(&["nyc.gov"]).matches(&i).is_empty(),
        "*.nyc.gov does not cover nyc.gov"
    );
}

#[test]
fn ber_indefinite_length_is_malformed_and_matches_everything() {
    let der = awkward("asn1_indefinite_length_encoding.pem");
    assert!(matches!(
        from_certificate_der(&der),
        Err(Error::Malformed { .. })
    ));
    let w = list(&["example.com", ".example.org", "192.0.2.1"]);
    match check_entry(&x509(&der), 0, &w, &Authorizer::new()) {
        Verdict::Malformed { matches, .. } => assert_eq!(matches.len(), 3),
        v => panic!("{v:?}"),
    }
}

#[test]
fn defensive_label_rules() {
    let n = |s: &str| {
        let mut i = Identifiers::default();
        i.add_dns_san(s.as_bytes());
        i
    };
    let hit = |item: &str, name: &str| !list(&[item]).matches(&n(name)).is_empty();
    assert!(hit("www.example.com", "*.example.com"));
    assert!(
        hit("www.example.com", "w*.example.com"),
        "wildcard inside a label"
    );
    assert!(hit("www.example.com", "*w.example.com"));
    assert!(!hit("mail.example.com", "w*.example.com"));
    assert!(hit("www.example.com", "?.example.com"), "redacted label");
    assert!(hit("example.com", "*.com"), "a wildcard at any level");
    assert!(
        hit("a.b.example.com", "a.*.example.com"),
        "wildcard in the middle"
    );
    assert!(
        hit("www.example.com", "WWW.Example.COM."),
        "case and trailing dot"
    );
    assert!(hit(".example.com", "deep.sub.example.com"));
    assert!(
        !hit("example.com", "sub.example.com"),
        "exact items skip subdomains"
    );
    assert!(!hit(".example.com", "example.com.evil.net"));
    assert!(!hit(".example.com", "notexample.com"));
    assert!(hit(".", "anything.at.all"));
    // IDNs: watch in Unicode or punycode, certificate in either.
    assert!(hit("bücher.example", "xn--bcher-kva.example"));
    assert!(hit("xn--bcher-kva.example", "BÜCHER.example"));
    assert!(hit(".bücher.example", "*.xn--bcher-kva.example"));
    // http(s):// prefix and an IP address in a DNS SAN / CN.
    let mut i = Identifiers::default();
    i.add_common_name("https://Login.Example.com/path");
    i.add_common_name("203.0.113.9");
    i.add_dns_san(b"198.51.100.7");
    i.add_common_name("Example Corp Root");
    assert_eq!(
        i.dns_names,
        vec!["https://login.example.com/path", "login.example.com"]
    );
    let ips: Vec<IpAddr> = vec![
        "203.0.113.9".parse().unwrap(),
        "198.51.100.7".parse().unwrap(),
    ];
    assert_eq!(i.ip_addrs, ips);
    // UTF-8 / Latin-1: bytes that are valid UTF-8 give both readings; others Latin-1.
    let mut i = Identifiers::default();
    i.add_dns_san("bücher.example".as_bytes());
    assert_eq!(
        i.dns_names,
        vec!["xn--bcher-kva.example", "xn--b14cher-xwa2143e.example"]
    ); // Python: "bÃ¼cher".lower().encode("idna")
    let mut i = Identifiers::default();
    i.add_dns_san(b"b\xfccher.example");
    assert_eq!(
        i.dns_names,
        vec!["xn--bcher-kva.example"],
        "Latin-1 \\xfc is u-umlaut"
    );
    assert!(list(&["bücher.example"]).matches(&i).len() == 1);
    assert!(hit("x.example", "*.example") && hit("x.example", "?.example"));
    assert!(!hit("xz.example", "x*y.example"));
}

#[test]
fn precert_and_certificate_share_a_tbs_hash() {
    let facts = common::json("testlog/facts.json");
    let mut checked = 0;
    for (proof, f) in facts["expected"].as_object().unwrap() {
        let Some(final_cert) = f["final_cert"].as_str() else {
            continue;
        };
        let want = hex32(f["tbs_sha256_hex"].as_str().unwrap());
        let final_der = cert(&format!("testlog/{final_cert}"));
        let info = certificate_info(&x509(&final_der)).unwrap();
        assert_eq!(
            info.tbs_hash, want,
            "{proof}: final certificate minus SCT list"
        );
        let pre_der = cert(&format!("testlog/{}", f["precert"].as_str().unwrap()));
        let pre = certificate_info(&x509(&pre_der)).unwrap();
        // A precert signed by the final issuer has the final TBS once the poison is
        // gone; a pre-CA precert has another issuer, so its hash differs.
        assert_eq!(
            pre.tbs_hash == want,
            f["precert_issuer_is_final_issuer"].as_bool().unwrap(),
            "{proof}"
        );
        assert_eq!(
            pre.spki_hash, info.spki_hash,
            "same key in precert and certificate"
        );
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn authorizer_by_tbs_or_spki_hash() {
    let der = awkward("domain_in_issuer.pem");
    let w = list(&[".abc.net.au"]);
    let info = certificate_info(&x509(&der)).unwrap();
    assert!(matches!(
        check_entry(&x509(&der), 0, &w, &Authorizer::new()),
        Verdict::Unauthorized { .. }
    ));
    let mut by_tbs = Authorizer::new();
    by_tbs.allow_tbs_hash(info.tbs_hash);
    assert!(matches!(
        check_entry(&x509(&der), 0, &w, &by_tbs),
        Verdict::Authorized { .. }
    ));
    let mut by_key = Authorizer::new();
    by_key.allow_spki_hash(info.spki_hash);
    assert!(!check_entry(&x509(&der), 0, &w, &by_key).is_alert());
    // Another certificate's hashes do not authorize this one.
    let other = certificate_info(&x509(&awkward("multiple_cn.pem"))).unwrap();
    let mut wrong = Authorizer::new();
    wrong
        .allow_tbs_hash(other.tbs_hash)
        .allow_spki_hash(other.spki_hash);
    assert!(check_entry(&x509(&der), 0, &w, &wrong).is_alert());
    assert_eq!(
        check_entry(&x509(&der), 0, &list(&["example.com"]), &wrong),
        Verdict::NoMatch
    );
}

#[test]
fn navigli_entries_all_parse_and_precert_tbs_hashes_agree() {
    let data = common::read("static-ct/navigli2025h2/tile/data/000");
    let leaves = parse_data_tile(&data).unwrap();
    let mut names = 0;
    for leaf in &leaves {
        let info = certificate_info(&leaf.entry).unwrap();
        assert!(info.is_precert);
        names += info.identifiers.dns_names.len();
        let SignedEntry::Precert {
            tbs_certificate, ..
        } = leaf.entry.entry
        else {
            panic!()
        };
        assert_eq!(tbs_hash(tbs_certificate).unwrap(), info.tbs_hash);
        // The full precertificate minus its poison is the logged TBS.
        let full = certificate_info(&x509(leaf.pre_certificate.unwrap())).unwrap();
        assert_eq!(full.tbs_hash, info.tbs_hash);
        assert_eq!(full.identifiers, info.identifiers);
        let tbs_ids = Identifiers::from_tbs_der(tbs_certificate).unwrap();
        assert_eq!(tbs_ids, info.identifiers);
    }
    assert!(names >= 256, "every entry names something: {names}");
    // A subtree watch on one real name from the tile matches; the watchlist swaps.
    let (index, entry, first) = leaves
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let names = certificate_info(&l.entry).unwrap().identifiers.dns_names;
            names
                .into_iter()
                .find(|n| !n.contains('*'))
                .map(|n| (i as u64, l.entry, n))
        })
        .unwrap();
    let shared = SharedWatchlist::new(list(&["nothing.invalid"]));
    assert_eq!(
        check_entry(&entry, index, &shared.load(), &Authorizer::new()),
        Verdict::NoMatch
    );
    shared.replace(list(&[&first]));
    assert!(check_entry(&entry, index, &shared.load(), &Authorizer::new()).is_alert());
}

#[test]
fn static_ct_leaf_index_must_equal_the_position() {
    // Navigli entry 5 carries leaf_index 5 (facts.json: every entry, its position).
    let data = common::read("static-ct/navigli2025h2/tile/data/000");
    let leaves = parse_data_tile(&data).unwrap();
    let w = list(&["nothing.invalid"]);
    let none = Authorizer::new();
    assert_eq!(check_tile_leaf(&leaves[5], 5, &w, &none), Verdict::NoMatch);
    assert_eq!(
        check_entry(&leaves[5].entry, 5, &w, &none),
        Verdict::NoMatch
    );
    for wrong in [4, 6, 256 + 5] {
        for v in [
            check_tile_leaf(&leaves[5], wrong, &w, &none),
            check_entry(&leaves[5].entry, wrong, &w, &none),
        ] {
            match v {
                Verdict::Malformed { reason, matches } => {
                    assert!(reason.contains("leaf_index extension 5"), "{reason}");
                    assert_eq!(matches.len(), 1);
                }
                v => panic!("{v:?}"),
            }
        }
    }
    // A static-ct leaf without the extension is malformed; an RFC 6962 entry need not carry it.
    let mut bare = leaves[5].clone();
    bare.entry.extensions = &[];
    assert!(matches!(
        check_tile_leaf(&bare, 5, &w, &none),
        Verdict::Malformed { .. }
    ));
    assert_eq!(check_entry(&bare.entry, 77, &w, &none), Verdict::NoMatch);
}

#[test]
fn watch_item_parsing() {
    assert_eq!(
        WatchItem::parse(".Example.COM").unwrap(),
        WatchItem::DomainAndSubdomains("example.com".into())
    );
    assert_eq!(
        WatchItem::parse("bücher.example").unwrap(),
        WatchItem::Domain("xn--bcher-kva.example".into())
    );
    assert_eq!(
        WatchItem::parse("10.0.0.0/8").unwrap().to_string(),
        "10.0.0.0/8"
    );
    for bad in ["", "*.example.com", "a..b", "10.0.0.0/33", "x/y"] {
        assert!(
            matches!(WatchItem::parse(bad), Err(Error::BadWatchItem { .. })),
            "{bad:?}"
        );
    }
    let w = Watchlist::parse("# mine\nexample.com\n.example.org # and below\n\n192.0.2.0/24\n")
        .unwrap();
    assert_eq!(w.items().len(), 3);
    assert!(Watchlist::parse("ok.com\n*bad").is_err());
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]{1,3}",
        1 => Just("*".to_string()),
        1 => Just("?".to_string()),
        1 => "[a-c]{0,1}\\*[a-c]{0,1}",
    ]
}

fn literal_label() -> impl Strategy<Value = String> {
    "[a-c]{1,3}"
}

proptest! {
    #[test]
    fn indexed_matching_equals_linear_matching(
        names in prop::collection::vec(prop::collection::vec(label(), 1..5), 0..6),
        watched in prop::collection::vec((prop::collection::vec(literal_label(), 0..4), any::<bool>()), 0..12),
    ) {
        let items = watched.iter().map(|(labels, sub)| {
            let d = labels.join(".");
            if *sub || d.is_empty() { WatchItem::DomainAndSubdomains(d) } else { WatchItem::Domain(d) }
        });
        let w = Watchlist::new(items);
        let mut ids = Identifiers::default();
        ids.dns_names = names.iter().map(|l| l.join(".")).collect();
        let mut a = w.matches(&ids);
        let mut b = w.matches_linear(&ids);
        a.sort_by_key(|m| format!("{:?}", m));
        b.sort_by_key(|m| format!("{:?}", m));
        prop_assert_eq!(a, b);
    }

    #[test]
    fn arbitrary_der_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = from_certificate_der(&bytes);
        let _ = Identifiers::from_tbs_der(&bytes);
        let _ = tbs_hash(&bytes);
        let _ = palisade_ct_monitor::check_precertificate(&bytes, &bytes);
    }

    #[test]
    fn mutated_real_certificates_never_panic(pos in 0usize..1244, x in 1u8..=255) {
        let mut der = awkward("null_chars.pem");
        der[pos] ^= x;
        let v = check_entry(&x509(&der), 0, &list(&["example.com"]), &Authorizer::new());
        // Parsable or malformed, but never silent when malformed.
        if let Verdict::Malformed { matches, .. } = v {
            prop_assert_eq!(matches.len(), 1);
        }
    }
}

#[test]
fn precertificates_match_their_logged_tbs() {
    use palisade_ct_monitor::{check_precertificate, tbs_without_ct_extensions};
    // Navigli: every full precertificate matches its logged TBS.
    let data = common::read("static-ct/navigli2025h2/tile/data/000");
    let leaves = parse_data_tile(&data).unwrap();
    let w = list(&["nothing.invalid"]);
    for (i, leaf) in leaves.iter().enumerate() {
        let SignedEntry::Precert {
            tbs_certificate, ..
        } = leaf.entry.entry
        else {
            panic!()
        };
        check_precertificate(tbs_certificate, leaf.pre_certificate.unwrap()).unwrap();
        assert_eq!(
            check_tile_leaf(leaf, i as u64, &w, &Authorizer::new()),
            check_entry(&leaf.entry, i as u64, &w, &Authorizer::new())
        );
    }
    // Another entry's precertificate does not match, and the tile leaf turns malformed.
    let SignedEntry::Precert {
        tbs_certificate, ..
    } = leaves[0].entry.entry
    else {
        panic!()
    };
    let e = check_precertificate(tbs_certificate, leaves[1].pre_certificate.unwrap()).unwrap_err();
    assert!(matches!(e, Error::PrecertMismatch { .. }), "{e}");
    let mut swapped = leaves[0].clone();
    swapped.pre_certificate = leaves[1].pre_certificate;
    assert!(matches!(
        check_tile_leaf(&swapped, 0, &w, &Authorizer::new()),
        Verdict::Malformed { .. }
    ));
    // A final certificate (no poison) is not a precertificate.
    let e = check_precertificate(tbs_certificate, &cert("testlog/test-cert.pem")).unwrap_err();
    assert!(matches!(e, Error::PrecertMismatch { .. }));

    // Test log: the logged TBS is the final certificate's minus its SCT list (its
    // hash is the facts' value); direct and pre-CA precertificates both match it.
    let facts = common::json("testlog/facts.json");
    let mut logged_all = Vec::new();
    for (proof, f) in facts["expected"].as_object().unwrap() {
        let Some(final_cert) = f["final_cert"].as_str() else {
            continue;
        };
        let final_der = cert(&format!("testlog/{final_cert}"));
        let (_, c) = x509_parser::parse_x509_certificate(&final_der).unwrap();
        let logged = tbs_without_ct_extensions(c.tbs_certificate.as_ref()).unwrap();
        assert_eq!(
            sha256(&logged),
            hex32(f["tbs_sha256_hex"].as_str().unwrap()),
            "{proof}"
        );
        let pre = cert(&format!("testlog/{}", f["precert"].as_str().unwrap()));
        check_precertificate(&logged, &pre).unwrap_or_else(|e| panic!("{proof}: {e}"));
        logged_all.push((logged, pre));
    }
    assert_eq!(logged_all.len(), 4);
    for (i, (logged, _)) in logged_all.iter().enumerate() {
        for (j, (_, pre)) in logged_all.iter().enumerate() {
            if i != j {
                assert!(check_precertificate(logged, pre).is_err(), "{i} vs {j}");
            }
        }
    }
}

/// DER tag-length-value (short and long lengths, enough for a small TBS).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n if n < 0x80 => out.push(n as u8),
        n if n < 0x100 => out.extend_from_slice(&[0x81, n as u8]),
        n if n < 0x1_0000 => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
        n => out.extend_from_slice(&[0x83, (n >> 16) as u8, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A minimal TBSCertificate whose only name is one iPAddress SAN of these bytes.
fn tbs_with_ip_san(ip: &[u8]) -> Vec<u8> {
    tbs_with_sans(&der(0x87, ip))
}

/// A minimal TBSCertificate whose only names are these dNSName SANs.
fn tbs_with_dns_sans<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Vec<u8> {
    let general_names: Vec<u8> = names
        .into_iter()
        .flat_map(|n| der(0x82, n.as_ref().as_bytes()))
        .collect();
    tbs_with_sans(&general_names)
}

/// A minimal TBSCertificate whose subjectAltName holds these DER GeneralNames.
fn tbs_with_sans(general_names: &[u8]) -> Vec<u8> {
    let ecdsa_sha256 = der(0x30, &der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2]));
    let validity = [der(0x17, b"250101000000Z"), der(0x17, b"260101000000Z")].concat();
    let alg = [
        der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 2, 1]),
        der(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7]),
    ]
    .concat();
    let point = [&[0u8, 4][..], &[1; 64]].concat();
    let spki = der(0x30, &[der(0x30, &alg), der(0x03, &point)].concat());
    let san = der(0x30, general_names);
    let ext = der(
        0x30,
        &[der(0x06, &[0x55, 0x1d, 0x11]), der(0x04, &san)].concat(),
    );
    let exts = der(0xa3, &der(0x30, &ext));
    let body = [
        der(0xa0, &der(0x02, &[2])),
        der(0x02, &[1]),
        ecdsa_sha256,
        der(0x30, &[]),
        der(0x30, &validity),
        der(0x30, &[]),
        spki,
        exts,
    ]
    .concat();
    der(0x30, &body)
}

#[test]
fn ipv4_mapped_ipv6_is_the_ipv4_address_on_both_sides() {
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    let mapped: std::net::Ipv6Addr = "::ffff:192.0.2.1".parse().unwrap();
    // A 16-byte iPAddress SAN holding a mapped address is the IPv4 address.
    let mapped_san = Identifiers::from_tbs_der(&tbs_with_ip_san(&mapped.octets())).unwrap();
    assert_eq!(mapped_san.ip_addrs, vec![v4]);
    let v4_san = Identifiers::from_tbs_der(&tbs_with_ip_san(&[192, 0, 2, 1])).unwrap();
    assert_eq!(v4_san.ip_addrs, vec![v4]);
    // A CN that reads as a mapped address too.
    let mut cn = Identifiers::default();
    cn.add_common_name("::ffff:192.0.2.1");
    assert_eq!(cn.ip_addrs, vec![v4]);
    // IPv4 watch items match the mapped SAN; mapped watch items match the IPv4 SAN.
    for item in ["192.0.2.1", "192.0.2.0/24"] {
        let list = Watchlist::parse(item).unwrap();
        assert_eq!(list.matches(&mapped_san).len(), 1, "{item}");
        assert_eq!(list.matches_linear(&mapped_san).len(), 1, "{item}");
    }
    for item in ["::ffff:192.0.2.1", "::ffff:192.0.2.0/120", "::/0"] {
        let list = Watchlist::parse(item).unwrap();
        assert_eq!(list.matches(&v4_san).len(), 1, "{item}");
        assert_eq!(list.matches_linear(&v4_san).len(), 1, "{item}");
    }
    assert_eq!(
        WatchItem::parse("::ffff:192.0.2.1").unwrap(),
        WatchItem::Ip(v4)
    );
    assert_eq!(
        WatchItem::parse("::ffff:192.0.2.0/120").unwrap(),
        WatchItem::IpNetwork("192.0.2.0".parse().unwrap(), 24)
    );
    // Items built directly, not parsed, are compared in canonical form as well.
    assert!(WatchItem::Ip(IpAddr::V6(mapped)).matches_ip(&v4));
    assert!(WatchItem::Ip(v4).matches_ip(&IpAddr::V6(mapped)));
    // Other networks still do not match.
    assert!(
        Watchlist::parse("192.0.3.0/24")
            .unwrap()
            .matches(&mapped_san)
            .is_empty()
    );
    assert!(
        Watchlist::parse("2001:db8::/32")
            .unwrap()
            .matches(&v4_san)
            .is_empty()
    );
}

#[test]
fn hundreds_of_thousands_of_names_are_deduplicated_and_matched() {
    // Same-length names, so the old pairwise comparison compared every byte:
    // quadratic in the names (hours here), where hashing is linear.
    const N: u32 = 150_000;
    let name = |i: u32| format!("h{i:06}.example.com");
    let mut ids = Identifiers::default();
    for _ in 0..2 {
        for i in 0..N {
            ids.add_dns_san(name(i).as_bytes());
            ids.add_dns_san(format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff).as_bytes());
        }
    }
    assert_eq!(ids.dns_names.len(), N as usize, "each name once");
    assert_eq!(ids.ip_addrs.len(), N as usize, "each address once");
    assert_eq!(ids.dns_names[0], "h000000.example.com");
    assert_eq!(
        ids.dns_names[N as usize - 1],
        name(N - 1),
        "in first-seen order"
    );
    assert_eq!(ids.ip_addrs[1], "10.0.0.1".parse::<IpAddr>().unwrap());
    let w = list(&[".example.com", "h000007.example.com", "10.0.0.0/8"]);
    let m = w.matches(&ids);
    // Every name under .example.com, one of them exactly, every address in 10/8.
    assert_eq!(m.len(), 2 * N as usize + 1);
    assert_eq!(w.matches_linear(&ids).len(), m.len());
    // Names given twice are matched once per item.
    ids.dns_names.push(name(3));
    assert_eq!(w.matches(&ids).len(), m.len());
    // A name the caller replaced by hand is added again, not taken as a duplicate.
    ids.dns_names[0] = "replaced.example.net".into();
    ids.add_dns_san(name(0).as_bytes());
    assert_eq!(ids.dns_names.last(), Some(&name(0)));
}

#[test]
fn a_certificate_with_too_many_names_is_malformed_and_matches_every_item() {
    let w = list(&[".example.com", "elsewhere.org"]);
    let precert = |tbs: &[u8]| -> Verdict {
        let entry = TimestampedEntry {
            timestamp: 0,
            entry: SignedEntry::Precert {
                issuer_key_hash: [0; 32],
                tbs_certificate: tbs,
            },
            extensions: &[],
        };
        check_entry(&entry, 5, &w, &Authorizer::new())
    };
    // 9,000 names, each twice: under the limit of 10,000 identifiers once deduplicated.
    let names: Vec<String> = (0..18_000)
        .map(|i| format!("h{:05}.example.com", i % 9_000))
        .collect();
    let tbs = tbs_with_dns_sans(&names);
    assert_eq!(
        Identifiers::from_tbs_der(&tbs).unwrap().dns_names.len(),
        9_000
    );
    match precert(&tbs) {
        Verdict::Unauthorized { matches, .. } => assert_eq!(matches.len(), 9_000),
        v => panic!("{v:?}"),
    }
    // 20,000 distinct names: over the limit. Extraction stops with an error, and the
    // entry alerts as malformed, matching every item (never as "no match").
    let tbs = tbs_with_dns_sans((0..20_000).map(|i| format!("h{i:05}.example.com")));
    assert!(matches!(
        Identifiers::from_tbs_der(&tbs),
        Err(Error::TooManyIdentifiers { limit: 10_000 })
    ));
    match precert(&tbs) {
        Verdict::Malformed { reason, matches } => {
            assert!(reason.contains("more than 10000"), "{reason}");
            assert_eq!(matches, w.match_all());
        }
        v => panic!("{v:?}"),
    }
    // Names that match nothing: still malformed, so still an alert.
    let tbs = tbs_with_dns_sans((0..20_000).map(|i| format!("h{i:05}.unwatched.net")));
    assert!(precert(&tbs).is_alert());
}

#[test]
fn an_entry_with_too_many_matches_is_malformed_and_matches_every_item() {
    // Each `h<i>.*.com` matches every `.d<j>.com`: names × items matches.
    let w = Watchlist::new((0..100).map(|j| WatchItem::parse(&format!(".d{j}.com")).unwrap()));
    let check = |names: u32| {
        let tbs = tbs_with_dns_sans((0..names).map(|i| format!("h{i}.*.com")));
        let entry = TimestampedEntry {
            timestamp: 0,
            entry: SignedEntry::Precert {
                issuer_key_hash: [0; 32],
                tbs_certificate: &tbs,
            },
            extensions: &[],
        };
        check_entry(&entry, 0, &w, &Authorizer::new())
    };
    // 50 × 100 = 5,000 matches: under the limit of 10,000.
    match check(50) {
        Verdict::Unauthorized { matches, .. } => assert_eq!(matches.len(), 5_000),
        v => panic!("{v:?}"),
    }
    // 200 × 100 = 20,000: over it; every item once instead, as malformed.
    match check(200) {
        Verdict::Malformed { reason, matches } => {
            assert!(reason.contains("more than 10000 watch matches"), "{reason}");
            assert_eq!(matches, w.match_all());
        }
        v => panic!("{v:?}"),
    }
    // The public matcher itself is not capped: it returns what matched.
    let mut ids = Identifiers::default();
    for i in 0..200 {
        ids.add_dns_san(format!("h{i}.*.com").as_bytes());
    }
    assert_eq!(w.matches(&ids).len(), 20_000);
}
