//! Just enough DER to take a PKCS#8 private key apart for `C_CreateObject`.
//! Keys reach this parser only after ring has accepted them.

use palisade_core_traits::JwsAlgorithm;

use crate::Error;

/// The private components of a PKCS#8 key, as PKCS#11 attributes want them.
pub(crate) enum PrivateParts {
    /// The EC private scalar `d`.
    Ec { d: Vec<u8> },
    /// The 32-byte Ed25519 seed.
    Ed25519 { seed: Vec<u8> },
    /// RSA CRT components, big-endian.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
        d: Vec<u8>,
        p: Vec<u8>,
        q: Vec<u8>,
        dp: Vec<u8>,
        dq: Vec<u8>,
        qinv: Vec<u8>,
    },
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Reads one TLV and returns (tag, contents).
    fn tlv(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (bytes, r) = rest.split_at(n);
            rest = r;
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if rest.len() < len {
            return None;
        }
        let (value, r) = rest.split_at(len);
        self.0 = r;
        Some((tag, value))
    }

    fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.tlv()? {
            (t, v) if t == tag => Some(v),
            _ => None,
        }
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;

fn unsigned(int: &[u8]) -> Vec<u8> {
    let start = int
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(int.len().saturating_sub(1));
    int[start..].to_vec()
}

/// Splits a PKCS#8 `PrivateKeyInfo` into the components for `alg`.
pub(crate) fn private_parts(alg: JwsAlgorithm, der: &[u8]) -> Result<PrivateParts, Error> {
    parse(alg, der).ok_or_else(|| Error::InvalidKey {
        algorithm: alg,
        reason: "PKCS#8 structure not understood".into(),
    })
}

fn parse(alg: JwsAlgorithm, der: &[u8]) -> Option<PrivateParts> {
    let mut info = Reader(Reader(der).expect(SEQUENCE)?);
    info.expect(INTEGER)?; // version
    info.expect(SEQUENCE)?; // AlgorithmIdentifier (ring already checked it)
    let private = info.expect(OCTET_STRING)?;
    Some(match alg {
        JwsAlgorithm::ES256 | JwsAlgorithm::ES384 => {
            let mut ec = Reader(Reader(private).expect(SEQUENCE)?);
            ec.expect(INTEGER)?;
            PrivateParts::Ec {
                d: ec.expect(OCTET_STRING)?.to_vec(),
            }
        }
        JwsAlgorithm::EdDSA => {
            let seed = Reader(private).expect(OCTET_STRING)?;
            (seed.len() == 32).then(|| PrivateParts::Ed25519 {
                seed: seed.to_vec(),
            })?
        }
        _ => {
            let mut rsa = Reader(Reader(private).expect(SEQUENCE)?);
            rsa.expect(INTEGER)?;
            let mut next = || rsa.expect(INTEGER).map(unsigned);
            PrivateParts::Rsa {
                n: next()?,
                e: next()?,
                d: next()?,
                p: next()?,
                q: next()?,
                dp: next()?,
                dq: next()?,
                qinv: next()?,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_wrong_structures_are_refused() {
        for der in [
            &[][..],
            &[0x30],
            &[0x30, 0x82, 0xff],
            &[0x30, 0x03, 0x02, 0x01, 0x00],
            &[0x04, 0x00],
        ] {
            for alg in [
                JwsAlgorithm::ES256,
                JwsAlgorithm::EdDSA,
                JwsAlgorithm::RS256,
            ] {
                assert!(private_parts(alg, der).is_err());
            }
        }
    }

    #[test]
    fn an_ed25519_seed_is_found() {
        // RFC 8410 §10.3 example private key.
        let der = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20, 0xd4, 0xee, 0x72, 0xdb, 0xf9, 0x13, 0x58, 0x4a, 0xd5, 0xb6, 0xd8, 0xf1,
            0xf7, 0x69, 0xf8, 0xad, 0x3a, 0xfe, 0x7c, 0x28, 0xcb, 0xf1, 0xd4, 0xfb, 0xe0, 0x97,
            0xa8, 0x8f, 0x44, 0x75, 0x58, 0x42,
        ];
        let Ok(PrivateParts::Ed25519 { seed }) = private_parts(JwsAlgorithm::EdDSA, &der) else {
            panic!("not parsed");
        };
        assert_eq!(seed, der[16..]);
    }
}
