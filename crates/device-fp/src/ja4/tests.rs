use super::*;

// The worked example of FoxIO's JA4 specification (technical_details/JA4.md).
const SPEC_CIPHERS: [u16; 15] = [
    0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c,
    0x009d, 0x002f, 0x0035,
];
const SPEC_EXTS: [u16; 16] = [
    0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012, 0x002b,
    0xff01, 0x000b, 0x000a, 0x0015,
];
const SPEC_SIGS: [u16; 8] = [
    0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
];

fn u16s(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_be_bytes()).collect()
}

fn vec16(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn vec8(body: &[u8]) -> Vec<u8> {
    let mut out = vec![body.len() as u8];
    out.extend_from_slice(body);
    out
}

/// A hand-built ClientHello: a handshake message (starts 0x01).
struct Hello {
    ciphers: Vec<u16>,
    exts: Vec<u16>,
    sigs: Vec<u16>,
    versions: Vec<u16>,
    alpn: Vec<&'static [u8]>,
    legacy_version: u16,
}

impl Hello {
    fn spec() -> Self {
        // GREASE in every list; JA4 must ignore all of it.
        let mut ciphers = vec![0x0a0a];
        ciphers.extend(SPEC_CIPHERS);
        let mut exts = vec![0x1a1a];
        exts.extend(SPEC_EXTS);
        exts.push(0xfafa);
        Hello {
            ciphers,
            exts,
            sigs: SPEC_SIGS.to_vec(),
            versions: vec![0x2a2a, 0x0304, 0x0303],
            alpn: vec![b"h2", b"http/1.1"],
            legacy_version: 0x0303,
        }
    }

    fn handshake(&self) -> Vec<u8> {
        let mut body = self.legacy_version.to_be_bytes().to_vec();
        body.extend([7u8; 32]);
        body.extend(vec8(&[9u8; 32]));
        body.extend(vec16(&u16s(&self.ciphers)));
        body.extend(vec8(&[0]));
        let mut exts = Vec::new();
        for &ty in &self.exts {
            let data = match ty {
                0x0000 => vec16(&[&[0u8][..], &vec16(b"example.com")].concat()),
                0x0010 => vec16(&self.alpn.iter().flat_map(|p| vec8(p)).collect::<Vec<u8>>()),
                0x000d => vec16(&u16s(&self.sigs)),
                0x002b => vec8(&u16s(&self.versions)),
                _ => vec![0xab; (ty % 5) as usize],
            };
            exts.extend(ty.to_be_bytes());
            exts.extend(vec16(&data));
        }
        body.extend(vec16(&exts));
        let mut out = vec![0x01];
        out.extend(&(body.len() as u32).to_be_bytes()[1..]);
        out.extend(body);
        out
    }

    fn record(&self) -> Vec<u8> {
        let hs = self.handshake();
        let mut out = vec![0x16, 0x03, 0x01];
        out.extend(vec16(&hs));
        out
    }
}

#[test]
fn spec_hash_examples() {
    assert_eq!(
        hash12("002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9"),
        "8daaf6152771"
    );
    let exts = "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01";
    assert_eq!(
        hash12(&format!("{exts}_0403,0804,0401,0503,0805,0501,0806,0601")),
        "e5627efa2ab1"
    );
    assert_eq!(hash12(exts), "6d807ffa2a79");
}

#[test]
fn spec_worked_example_from_record_and_handshake() {
    let hello = Hello::spec();
    for bytes in [hello.record(), hello.handshake()] {
        let ch = ClientHello::parse(&bytes).unwrap();
        assert_eq!(
            ch.ja4(Transport::Tcp).as_str(),
            "t13d1516h2_8daaf6152771_e5627efa2ab1"
        );
        assert_eq!(
            ch.ja4_raw(Transport::Tcp, true),
            "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
        );
        assert_eq!(
            ch.ja4_raw(Transport::Tcp, false),
            "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015_0403,0804,0401,0503,0805,0501,0806,0601"
        );
        assert_eq!(
            ch.ja4_original(Transport::Tcp).as_str(),
            "t13d1516h2_acb858a92679_18f69afefd3d"
        );
    }
    assert_eq!(
        Ja4::from_client_hello(&hello.record()).unwrap().as_str(),
        "t13d1516h2_8daaf6152771_e5627efa2ab1"
    );
}

#[test]
fn sni_absent_is_i_and_still_counted_when_present() {
    let mut hello = Hello::spec();
    hello.exts.retain(|e| *e != 0x0000);
    let ja4 = Ja4::from_client_hello(&hello.record()).unwrap();
    // one extension fewer, same hashes: SNI is never in the extension hash
    assert_eq!(ja4.as_str(), "t13i1515h2_8daaf6152771_e5627efa2ab1");
}

#[test]
fn alpn_absent_or_empty_is_00() {
    let mut hello = Hello::spec();
    hello.alpn.clear();
    assert_eq!(
        Ja4::from_client_hello(&hello.record()).unwrap().alpn(),
        "00"
    );
    hello.exts.retain(|e| *e != 0x0010);
    let ja4 = Ja4::from_client_hello(&hello.record()).unwrap();
    assert_eq!(ja4.as_str(), "t13d151500_8daaf6152771_e5627efa2ab1");
}

#[test]
fn alpn_first_and_last_characters() {
    let mut hello = Hello::spec();
    hello.alpn = vec![b"http/1.1", b"h2"];
    assert_eq!(
        Ja4::from_client_hello(&hello.record()).unwrap().alpn(),
        "h1"
    );
    hello.alpn = vec![b"x"];
    assert_eq!(
        Ja4::from_client_hello(&hello.record()).unwrap().alpn(),
        "xx"
    );
    // non-alphanumeric: first hex digit of the first byte, last of the last byte
    hello.alpn = vec![&[0xab, 0x01, 0xcd]];
    assert_eq!(
        Ja4::from_client_hello(&hello.record()).unwrap().alpn(),
        "ad"
    );
}

#[test]
fn version_from_supported_versions_else_legacy() {
    let mut hello = Hello::spec();
    hello.versions = vec![0x3a3a, 0x0303];
    assert_eq!(
        Ja4::from_client_hello(&hello.record()).unwrap().version(),
        "12"
    );
    hello.exts.retain(|e| *e != 0x002b);
    let ja4 = Ja4::from_client_hello(&hello.record()).unwrap();
    assert_eq!(ja4.version(), "12"); // legacy_version 0x0303
    assert_eq!(&ja4.as_str()[..10], "t12d1515h2");
}

#[test]
fn no_signature_algorithms_hashes_extensions_alone() {
    let mut hello = Hello::spec();
    hello.exts.retain(|e| *e != 0x000d);
    let ja4 = Ja4::from_client_hello(&hello.record()).unwrap();
    let exts = "0005,000a,000b,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01";
    assert_eq!(ja4.extension_hash(), hash12(exts));
    assert_ne!(ja4.extension_hash(), "6d807ffa2a79"); // 000d is gone from the list too
}

#[test]
fn grease_detection() {
    for hi in 0..16u16 {
        let g = (hi << 12) | 0x0a00 | (hi << 4) | 0x0a;
        assert!(is_grease(g), "{g:04x}");
    }
    for v in [0x0a1a, 0x1301, 0x0000, 0x0a0b, 0xabab] {
        assert!(!is_grease(v), "{v:04x}");
    }
}

#[test]
fn every_truncation_is_a_typed_error() {
    for bytes in [Hello::spec().record(), Hello::spec().handshake()] {
        for cut in 0..bytes.len() {
            let err = ClientHello::parse(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, Error::Truncated { .. } | Error::Malformed(_)),
                "cut {cut}: {err}"
            );
        }
    }
}

#[test]
fn oversized_and_foreign_inputs() {
    let big = vec![0x16; MAX_CLIENT_HELLO_LEN + 1];
    assert!(matches!(
        ClientHello::parse(&big).unwrap_err(),
        Error::Oversized { len, max: MAX_CLIENT_HELLO_LEN } if len == MAX_CLIENT_HELLO_LEN + 1
    ));
    assert!(matches!(
        ClientHello::parse(b"GET / HTTP/1.1\r\n").unwrap_err(),
        Error::NotClientHello { value: b'G', .. }
    ));
    // a record carrying a ServerHello (type 2)
    let mut rec = Hello::spec().record();
    rec[5] = 0x02;
    assert!(matches!(
        ClientHello::parse(&rec).unwrap_err(),
        Error::NotClientHello { value: 2, .. }
    ));
    // extension block longer than the body says
    let mut hs = Hello::spec().handshake();
    hs.push(0);
    let len = hs.len() - 4;
    hs[1..4].copy_from_slice(&(len as u32).to_be_bytes()[1..]);
    assert!(matches!(
        ClientHello::parse(&hs).unwrap_err(),
        Error::Malformed("bytes after the extensions block")
    ));
}

#[test]
fn ja4_strings_from_a_proxy() {
    let ok = Ja4::parse("t13d1516h2_8daaf6152771_e5627efa2ab1").unwrap();
    assert_eq!(ok.a(), "t13d1516h2");
    assert_eq!(ok.cipher_hash(), "8daaf6152771");
    assert_eq!(ok.extension_hash(), "e5627efa2ab1");
    assert!(Ja4::parse("q13d0310h3_55b375c5d22e_cd85d2d88918").is_ok());
    assert!(Ja4::parse("t12i0000h1_000000000000_000000000000").is_ok());
    for bad in [
        "",
        "t13d1516h2_8daaf6152771_e5627efa2ab",
        "t13d1516h2_8daaf6152771_e5627efa2ab1x",
        "x13d1516h2_8daaf6152771_e5627efa2ab1",
        "t14d1516h2_8daaf6152771_e5627efa2ab1",
        "t13x1516h2_8daaf6152771_e5627efa2ab1",
        "t13d15a6h2_8daaf6152771_e5627efa2ab1",
        "t13d1516h2-8daaf6152771_e5627efa2ab1",
        "t13d1516h2_8DAAF6152771_e5627efa2ab1",
        "t13d1516h/_8daaf6152771_e5627efa2ab1",
        "t13d1516h2_8daaf615277g_e5627efa2ab1",
        "t13d1516é_8daaf6152771_e5627efa2ab1",
    ] {
        assert!(
            matches!(Ja4::parse(bad), Err(Error::InvalidJa4 { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn alpn_hex_rule_matches_every_example_of_the_specification() {
    // technical_details/JA4.md, "ALPN Extension Value".
    let cases: [(&[u8], &str); 8] = [
        (&[0xab], "ab"),
        (&[0x20], "20"),
        (&[0xab, 0xcd], "ad"),
        (&[0x20, 0x61], "21"),
        (&[0x30, 0xab], "3b"),
        (&[0x61, 0x20], "60"),
        (&[0x30, 0x31, 0xab, 0xcd], "3d"),
        (&[0x30, 0xab, 0xcd, 0x31], "01"),
    ];
    for (value, want) in cases {
        assert_eq!(
            alpn_chars(Some(value), AlpnFallback::Hex),
            want,
            "{value:02x?}"
        );
    }
}

#[test]
fn alpn_nines_rule_is_what_foxio_tools_print() {
    let mut hello = Hello::spec();
    // The first ALPN value of FoxIO's pcap/tls-non-ascii-alpn.pcapng.
    hello.alpn = vec![&[0xba, 0xad], b"http/1.1"];
    let parsed = ClientHello::parse(&hello.record()).unwrap();
    assert_eq!(parsed.ja4(Transport::Tcp).alpn(), "bd");
    let nines = parsed.ja4_with(Transport::Tcp, AlpnFallback::Nines);
    assert_eq!(nines.as_str(), "t13d151699_8daaf6152771_e5627efa2ab1");
    assert!(
        parsed
            .ja4_raw_with(Transport::Tcp, false, AlpnFallback::Nines)
            .starts_with("t13d151699_")
    );
    assert_eq!(
        parsed
            .ja4_original_with(Transport::Tcp, AlpnFallback::Nines)
            .alpn(),
        "99"
    );
    // Alphanumeric values are the same under both rules.
    for rule in [AlpnFallback::Hex, AlpnFallback::Nines] {
        assert_eq!(alpn_chars(Some(b"http/1.1"), rule), "h1");
        assert_eq!(alpn_chars(Some(b"x"), rule), "xx");
        assert_eq!(alpn_chars(None, rule), "00");
    }
    assert_eq!(alpn_chars(Some(&[0x20, 0x61]), AlpnFallback::Nines), "99");
    assert_eq!(alpn_chars(Some(&[0x61, 0xff]), AlpnFallback::Nines), "a9");
}

#[test]
fn version_table_is_the_current_specification() {
    // supported_versions absent, so legacy_version decides.
    let mut hello = Hello::spec();
    hello.exts.retain(|e| *e != 0x002b);
    for (legacy, want) in [
        (0x0304, "13"),
        (0x0300, "s3"),
        (0x0002, "s2"),
        // Removed from the specification in August 2024: 0x0200 is not SSL 2.0
        // and SSL 1.0 ("s1") never existed.
        (0x0200, "00"),
        (0x0100, "00"),
        (0xfefd, "d2"),
        (0x9999, "00"),
    ] {
        hello.legacy_version = legacy;
        let ja4 = Ja4::from_client_hello(&hello.record()).unwrap();
        assert_eq!(ja4.version(), want, "{legacy:#06x}");
        assert!(Ja4::parse(ja4.as_str()).is_ok());
    }
    assert!(Ja4::parse("ts2d1516h2_8daaf6152771_e5627efa2ab1").is_ok());
    assert!(matches!(
        Ja4::parse("ts1d1516h2_8daaf6152771_e5627efa2ab1"),
        Err(Error::InvalidJa4 { .. })
    ));
}

mod records;
