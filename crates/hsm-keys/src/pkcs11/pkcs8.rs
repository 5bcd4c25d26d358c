//! A PKCS#8 private key taken apart for `C_CreateObject`, with RustCrypto's DER
//! parsers (`pkcs8`, `sec1`, `pkcs1`), which borrow from the input: each private
//! component is copied exactly once, into the attribute that carries it to the
//! token, inside a [`SecretTemplate`] that wipes every buffer when it is dropped.

use cryptoki::object::{Attribute, KeyType};
use der::asn1::OctetStringRef;
use der::{Decode, Reader, SliceReader};
use palisade_core_traits::JwsAlgorithm;
use pkcs8::{ObjectIdentifier, PrivateKeyInfoRef};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-ml-dsa-44/65/87 (NIST CSOR, RFC 9881).
const ML_DSA_44: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17");
const ML_DSA_65: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18");
const ML_DSA_87: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19");

/// A PKCS#11 template that holds private key material. cryptoki's `Attribute` owns
/// plain `Vec<u8>`s and does not wipe them; this does, for every byte buffer in the
/// template, on drop (also on an early return or a panic).
pub(crate) struct SecretTemplate(pub(crate) Vec<Attribute>);

impl Zeroize for SecretTemplate {
    fn zeroize(&mut self) {
        for attribute in &mut self.0 {
            if let Attribute::Value(v)
            | Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v)
            | Attribute::Modulus(v)
            | Attribute::PublicExponent(v)
            | Attribute::EcParams(v)
            | Attribute::Seed(v)
            | Attribute::Label(v)
            | Attribute::Id(v) = attribute
            {
                v.zeroize();
            }
        }
    }
}

impl Drop for SecretTemplate {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for SecretTemplate {}

/// The key type and private components of the PKCS#8 key `der`, which must be a key
/// for `alg`, as attributes of a PKCS#11 private key object.
pub(crate) fn private_template(alg: JwsAlgorithm, der: &[u8]) -> Result<SecretTemplate, Error> {
    let invalid = |reason: &str| Error::InvalidKey {
        algorithm: alg,
        reason: reason.to_owned(),
    };
    let info = PrivateKeyInfoRef::try_from(der).map_err(|_| invalid("not a PKCS#8 DER key"))?;
    let private = info.private_key.as_bytes();
    let oid = info.algorithm.oid;
    let mut template = SecretTemplate(Vec::with_capacity(16));
    match alg {
        JwsAlgorithm::ES256 | JwsAlgorithm::ES384 => {
            let (curve, params) = if alg == JwsAlgorithm::ES256 {
                (P256, super::P256_OID)
            } else {
                (P384, super::P384_OID)
            };
            if oid != EC_PUBLIC_KEY || info.algorithm.parameters_oid().ok() != Some(curve) {
                return Err(invalid("not a PKCS#8 EC key on the algorithm's curve"));
            }
            let ec = sec1::EcPrivateKey::try_from(private)
                .map_err(|_| invalid("not a SEC1 EC private key"))?;
            if ec
                .parameters
                .is_some_and(|p| p.named_curve() != Some(curve))
            {
                return Err(invalid("SEC1 curve differs from the PKCS#8 curve"));
            }
            template.0.extend([
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(params.to_vec()),
                Attribute::Value(ec.private_key.to_vec()),
            ]);
        }
        JwsAlgorithm::EdDSA => {
            if oid != ED25519 {
                return Err(invalid("not a PKCS#8 Ed25519 key"));
            }
            let seed = <&OctetStringRef>::from_der(private)
                .map_err(|_| invalid("not an Ed25519 private key"))?;
            if seed.as_bytes().len() != 32 {
                return Err(invalid("an Ed25519 seed has 32 bytes"));
            }
            template.0.extend([
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::EcParams(super::ED25519_OID.to_vec()),
                Attribute::Value(seed.as_bytes().to_vec()),
            ]);
        }
        JwsAlgorithm::RS256 | JwsAlgorithm::PS256 => {
            if oid != RSA_ENCRYPTION {
                return Err(invalid("not a PKCS#8 RSA key"));
            }
            let rsa = pkcs1::RsaPrivateKeyRef::try_from(private)
                .map_err(|_| invalid("not a PKCS#1 RSA private key"))?;
            if rsa.other_prime_infos.is_some() {
                return Err(invalid("multi-prime RSA keys are not supported"));
            }
            template.0.extend([
                Attribute::KeyType(KeyType::RSA),
                Attribute::Modulus(rsa.modulus.as_bytes().to_vec()),
                Attribute::PublicExponent(rsa.public_exponent.as_bytes().to_vec()),
                Attribute::PrivateExponent(rsa.private_exponent.as_bytes().to_vec()),
                Attribute::Prime1(rsa.prime1.as_bytes().to_vec()),
                Attribute::Prime2(rsa.prime2.as_bytes().to_vec()),
                Attribute::Exponent1(rsa.exponent1.as_bytes().to_vec()),
                Attribute::Exponent2(rsa.exponent2.as_bytes().to_vec()),
                Attribute::Coefficient(rsa.coefficient.as_bytes().to_vec()),
            ]);
        }
        a if a.is_ml_dsa() => {
            let want = match a {
                JwsAlgorithm::MlDsa44 => ML_DSA_44,
                JwsAlgorithm::MlDsa65 => ML_DSA_65,
                _ => ML_DSA_87,
            };
            if oid != want {
                return Err(invalid("not a PKCS#8 key of this ML-DSA parameter set"));
            }
            template.0.extend(ml_dsa_template(a));
            // RFC 9881 §6: seed [0] IMPLICIT OCTET STRING, expandedKey OCTET STRING,
            // or both SEQUENCE { seed, expandedKey }. The token derives the key from
            // the seed (CKA_SEED) and checks a given expanded key (CKA_VALUE) against it.
            match private {
                [0x80, 0x20, seed @ ..] if seed.len() == 32 => {
                    template.0.push(Attribute::Seed(seed.to_vec()));
                }
                [0x30, ..] => {
                    let (seed, expanded) = ml_dsa_both(private)
                        .map_err(|_| invalid("not an ML-DSA SEQUENCE { seed, expandedKey }"))?;
                    template.0.extend([
                        Attribute::Seed(seed.to_vec()),
                        Attribute::Value(expanded.to_vec()),
                    ]);
                }
                _ => {
                    let expanded = <&OctetStringRef>::from_der(private)
                        .map_err(|_| invalid("not an ML-DSA private key"))?;
                    template
                        .0
                        .push(Attribute::Value(expanded.as_bytes().to_vec()));
                }
            }
        }
        other => {
            return Err(Error::InvalidKey {
                algorithm: other,
                reason: "algorithm not supported".into(),
            });
        }
    }
    Ok(template)
}

/// `CKA_KEY_TYPE` and `CKA_PARAMETER_SET` of an ML-DSA key.
pub(crate) fn ml_dsa_template(alg: JwsAlgorithm) -> [Attribute; 2] {
    [
        Attribute::KeyType(KeyType::ML_DSA),
        Attribute::ParameterSet(super::objects::ml_dsa_parameter_set(alg).into()),
    ]
}

/// The `both` form: `SEQUENCE { seed OCTET STRING (32), expandedKey OCTET STRING }`.
fn ml_dsa_both(der: &[u8]) -> der::Result<(&[u8], &[u8])> {
    let mut reader = SliceReader::new(der)?;
    let both = reader.sequence(|r| {
        let seed = <&OctetStringRef>::decode(r)?;
        let expanded = <&OctetStringRef>::decode(r)?;
        Ok::<_, der::Error>((seed.as_bytes(), expanded.as_bytes()))
    })?;
    reader.finish()?;
    if both.0.len() != 32 {
        return Err(der::ErrorKind::Length {
            tag: der::Tag::OctetString,
        }
        .into());
    }
    Ok(both)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8410 §10.3 example private key.
    const ED25519_KEY: [u8; 48] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20, 0xd4, 0xee, 0x72, 0xdb, 0xf9, 0x13, 0x58, 0x4a, 0xd5, 0xb6, 0xd8, 0xf1, 0xf7, 0x69,
        0xf8, 0xad, 0x3a, 0xfe, 0x7c, 0x28, 0xcb, 0xf1, 0xd4, 0xfb, 0xe0, 0x97, 0xa8, 0x8f, 0x44,
        0x75, 0x58, 0x42,
    ];

    fn value(t: &SecretTemplate) -> &[u8] {
        t.0.iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn truncated_and_wrong_structures_are_refused_with_a_typed_error() {
        for der in [
            &[][..],
            &[0x30],
            &[0x30, 0x82, 0xff],
            &[0x30, 0x03, 0x02, 0x01, 0x00],
            &[0x04, 0x00],
            &ED25519_KEY[..47],
        ] {
            for alg in [
                JwsAlgorithm::ES256,
                JwsAlgorithm::EdDSA,
                JwsAlgorithm::RS256,
            ] {
                assert!(matches!(
                    private_template(alg, der),
                    Err(Error::InvalidKey { algorithm, .. }) if algorithm == alg
                ));
            }
        }
        // A well-formed key of another algorithm is refused too.
        assert!(private_template(JwsAlgorithm::ES256, &ED25519_KEY).is_err());
        assert!(private_template(JwsAlgorithm::RS256, &ED25519_KEY).is_err());
    }

    #[test]
    fn an_ed25519_seed_is_found() {
        let t = private_template(JwsAlgorithm::EdDSA, &ED25519_KEY).unwrap();
        assert_eq!(value(&t), &ED25519_KEY[16..]);
    }

    /// What a test can show about wiping (docs/hsm-keys.md): the template type wipes
    /// on drop, and the wipe Drop runs empties every private buffer. It cannot show
    /// that freed memory holds no copy: that needs an allocator hook (unsafe code).
    #[test]
    fn the_template_wipes_every_private_buffer() {
        fn zeroized_on_drop<T: ZeroizeOnDrop>(_: &T) {}
        for (alg, der, buffers) in [
            (
                JwsAlgorithm::ES256,
                &include_bytes!("../../tests/data/p256.pk8.der")[..],
                2,
            ),
            (
                JwsAlgorithm::ES384,
                &include_bytes!("../../tests/data/p384.pk8.der")[..],
                2,
            ),
            (JwsAlgorithm::EdDSA, &ED25519_KEY[..], 2),
            (
                JwsAlgorithm::RS256,
                &include_bytes!("../../tests/data/rsa2048.pk8.der")[..],
                8,
            ),
        ] {
            let mut t = private_template(alg, der).unwrap();
            zeroized_on_drop(&t);
            let lens = |t: &SecretTemplate| -> Vec<usize> {
                t.0.iter()
                    .filter_map(|a| match a {
                        Attribute::KeyType(_) => None,
                        Attribute::Value(v)
                        | Attribute::EcParams(v)
                        | Attribute::Modulus(v)
                        | Attribute::PublicExponent(v)
                        | Attribute::PrivateExponent(v)
                        | Attribute::Prime1(v)
                        | Attribute::Prime2(v)
                        | Attribute::Exponent1(v)
                        | Attribute::Exponent2(v)
                        | Attribute::Coefficient(v) => Some(v.len()),
                        other => panic!("unexpected {other:?}"),
                    })
                    .collect()
            };
            let before = lens(&t);
            assert_eq!(before.len(), buffers, "{alg}");
            assert!(before.iter().all(|&n| n > 0), "{alg}: {before:?}");
            t.zeroize();
            assert!(lens(&t).iter().all(|&n| n == 0), "{alg}: not wiped");
        }
    }
}
