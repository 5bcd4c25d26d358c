//! Record framing: reassembly, the bounds on length and record count, early refusal.

use super::*;

/// The handshake message cut into records of `sizes` bytes (the last takes the rest).
fn split_records(hs: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = hs;
    for &n in sizes.iter().chain(std::iter::once(&usize::MAX)) {
        let (part, tail) = rest.split_at(n.min(rest.len()));
        out.extend([0x16, 0x03, 0x01]);
        out.extend(vec16(part));
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
    out
}

#[test]
fn a_client_hello_split_over_records_is_reassembled() {
    let hello = Hello::spec();
    let want = ClientHello::parse(&hello.record()).unwrap();
    let hs = hello.handshake();
    // across the handshake header, in the middle, one byte per record at the start
    for sizes in [&[2][..], &[100], &[1, 1, 1, 1, 1, 50]] {
        let records = split_records(&hs, sizes);
        assert_eq!(ClientHello::parse(&records).unwrap(), want, "{sizes:?}");
        assert_eq!(bytes_needed_for(&records), None);
        // every prefix asks for more, never past the end of the records
        for cut in 0..records.len() {
            let need = bytes_needed_for(&records[..cut]).unwrap();
            assert!(
                need >= 1 && cut + need <= records.len(),
                "cut {cut}: {need}"
            );
        }
    }
    // a record of another type in between is refused
    let mut records = split_records(&hs, &[100]);
    let second = 5 + 100;
    records[second] = 0x17;
    assert!(matches!(
        ClientHello::parse(&records).unwrap_err(),
        Error::NotClientHello {
            what: "record type",
            value: 0x17
        }
    ));
    // an empty handshake record is malformed (RFC 8446 5.1)
    let mut empty = vec![0x16, 0x03, 0x01, 0x00, 0x00];
    empty.extend(hello.record());
    assert!(matches!(
        ClientHello::parse(&empty).unwrap_err(),
        Error::Malformed("empty handshake record")
    ));
}

/// `bytes_needed` exists with feature `tls`; without it, the same through `reassemble`.
fn bytes_needed_for(buf: &[u8]) -> Option<usize> {
    match reassemble(buf).unwrap() {
        Framed::Done(_) => None,
        Framed::Need(n) => Some(n),
    }
}

#[test]
fn records_reaching_past_the_limit_are_refused() {
    // a ClientHello announcing 65 535 bytes, in a complete first record: refused with
    // the least the records would need (109 so far, a header, 65 435 more bytes)
    let mut hs = vec![0x01, 0x00, 0xff, 0xff];
    hs.extend(vec![0u8; 100]);
    assert!(matches!(
        reassemble(&split_records(&hs, &[])),
        Err(Error::Oversized { len: 65_549, .. })
    ));
    // a full 16 384-byte record whose handshake header declares 16 385 bytes: the
    // message fits the limit, but not with the next record's header, so it is
    // refused at once instead of asking for that header (which would read past
    // MAX_CLIENT_HELLO_LEN)
    let mut hs = vec![0x01, 0x00, 0x40, 0x01];
    hs.extend(vec![0u8; 16_380]);
    let records = split_records(&hs, &[]);
    assert_eq!(records.len(), MAX_CLIENT_HELLO_LEN);
    assert!(matches!(
        reassemble(&records),
        Err(Error::Oversized {
            len: 16_399,
            max: MAX_CLIENT_HELLO_LEN
        })
    ));
    // a message that fits with exactly one more record: 16 378 bytes in the first
    // record, the last byte in a second one ending at the limit: still read
    let mut hs = vec![0x01, 0x00, 0x3f, 0xf7]; // 16 379 bytes with its header
    hs.extend(vec![0u8; 16_375]);
    let records = split_records(&hs, &[16_378]);
    assert_eq!(records.len(), MAX_CLIENT_HELLO_LEN);
    assert_eq!(bytes_needed_for(&records[..16_383]), Some(5));
    assert_eq!(bytes_needed_for(&records), None);
}

#[test]
fn a_client_hello_over_too_many_records_is_refused() {
    let hello = Hello::spec();
    let want = ClientHello::parse(&hello.record()).unwrap();
    let hs = hello.handshake();
    assert!(hs.len() > MAX_CLIENT_HELLO_RECORDS + 8);
    // 8 records, and exactly the limit (63 one-byte records and the rest): the same
    for sizes in [vec![30; 7], vec![1; MAX_CLIENT_HELLO_RECORDS - 1]] {
        let records = split_records(&hs, &sizes);
        let parsed = ClientHello::parse(&records).unwrap();
        assert_eq!(parsed, want);
        assert_eq!(parsed.ja4(Transport::Tcp), want.ja4(Transport::Tcp));
    }
    // one record more, and one byte per record all the way (the reviewer's case:
    // cheap for the client, one record header per byte for us)
    for sizes in [vec![1; MAX_CLIENT_HELLO_RECORDS], vec![1; hs.len()]] {
        let records = split_records(&hs, &sizes);
        assert!(matches!(
            ClientHello::parse(&records).unwrap_err(),
            Error::TooManyRecords {
                max: MAX_CLIENT_HELLO_RECORDS
            }
        ));
        // refused as soon as the last allowed record ends: nothing after it is awaited
        let at_limit = MAX_CLIENT_HELLO_RECORDS * 6;
        assert!(matches!(
            reassemble(&records[..at_limit]),
            Err(Error::TooManyRecords { .. })
        ));
        assert_eq!(bytes_needed_for(&records[..at_limit - 1]), Some(1));
    }
}

#[test]
fn a_foreign_first_byte_is_refused_before_the_header_is_complete() {
    for first in [b'G', 0x17, 0x80, 0x00] {
        assert!(
            matches!(
                reassemble(&[first]),
                Err(Error::NotClientHello {
                    what: "record type",
                    value
                }) if value == first
            ),
            "{first:#04x}"
        );
    }
    assert_eq!(bytes_needed_for(&[0x16]), Some(4));
    // the next record's type, one byte after the first record
    let hs = Hello::spec().handshake();
    let mut records = split_records(&hs, &[10]);
    records.truncate(15);
    assert_eq!(bytes_needed_for(&records), Some(5));
    records.push(0x15);
    assert!(matches!(
        reassemble(&records),
        Err(Error::NotClientHello {
            what: "record type",
            value: 0x15
        })
    ));
    // a handshake message that is not a ClientHello, on its first byte
    assert!(matches!(
        reassemble(&[0x16, 0x03, 0x01, 0x00, 0x40, 0x02]),
        Err(Error::NotClientHello {
            what: "handshake type",
            value: 0x02
        })
    ));
}

/// Feed `wire` to one `Records` a byte at a time, as a reader that gets one byte
/// per read would; check every answer against a fresh reading of the same prefix
/// and against the read bound. Returns the final answer.
fn feed_bytewise(wire: &[u8]) -> Result<usize, Error> {
    let mut records = Records::default();
    for len in 0..=wire.len() {
        let prefix = &wire[..len];
        let answer = records.advance(prefix);
        match (&answer, Records::default().advance(prefix)) {
            (Ok(a), Ok(b)) => assert_eq!(*a, b, "at {len}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "at {len}"),
            (a, b) => panic!("at {len}: fed {a:?}, fresh {b:?}"),
        }
        match answer {
            Ok(Some(n)) => assert!(n >= 1 && len + n <= MAX_CLIENT_HELLO_LEN, "at {len}: {n}"),
            Ok(None) => return Ok(len),
            Err(e) => return Err(e),
        }
    }
    Ok(wire.len())
}

#[test]
fn fed_a_byte_at_a_time_the_records_are_read_the_same() {
    let hs = Hello::spec().handshake();
    for sizes in [&[][..], &[2], &[1, 1, 1, 1, 1, 50], &[30; 7]] {
        let records = split_records(&hs, sizes);
        assert_eq!(feed_bytewise(&records).unwrap(), records.len(), "{sizes:?}");
    }
}

proptest::proptest! {
    /// However a ClientHello is cut into handshake records, it parses to the same
    /// fields, and every proper prefix of those records asks for more bytes.
    #[test]
    fn any_record_split_parses_the_same(cuts in proptest::collection::vec(1usize..300, 0..8)) {
        let hello = Hello::spec();
        let want = ClientHello::parse(&hello.record()).unwrap();
        let records = split_records(&hello.handshake(), &cuts);
        proptest::prop_assert_eq!(ClientHello::parse(&records).unwrap(), want);
        proptest::prop_assert_eq!(bytes_needed_for(&records), None);
        for cut in [0, 1, 4, 5, 6, records.len() / 2, records.len() - 1] {
            let need = bytes_needed_for(&records[..cut]);
            proptest::prop_assert!(need.is_some_and(|n| cut + n <= records.len()), "cut {}: {:?}", cut, need);
        }
    }

    /// For any record lengths and any declared handshake length, read a byte at a
    /// time, the reader never asks for a byte past MAX_CLIENT_HELLO_LEN and agrees
    /// with a fresh reading of every prefix (checked inside `feed_bytewise`).
    #[test]
    fn any_record_lengths_stay_within_the_bound(
        declared in 0usize..20_000,
        bodies in proptest::collection::vec(1usize..=16_384, 1..5),
    ) {
        let mut wire = Vec::new();
        let mut first = vec![0x01];
        first.extend(&(declared as u32).to_be_bytes()[1..]);
        for (i, &len) in bodies.iter().enumerate() {
            wire.extend([0x16, 0x03, 0x01]);
            wire.extend((len as u16).to_be_bytes());
            let mut body = vec![0u8; len];
            if i == 0 {
                let n = first.len().min(len);
                body[..n].copy_from_slice(&first[..n]);
            }
            wire.extend(body);
        }
        let _ = feed_bytewise(&wire);
    }
}
