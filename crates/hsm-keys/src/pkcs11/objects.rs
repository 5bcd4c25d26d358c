//! Objects on the token: labels, the templates keys are created with, public halves.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{
    Attribute, AttributeType, MlDsaParameterSetType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use palisade_core_traits::JwsAlgorithm;

use crate::jwk::PublicKey;
use crate::{KeyRef, validate_name};

pub(crate) const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// Modulus size of generated RSA keys.
pub(super) const RSA_BITS: u64 = 2048;

pub(super) fn label(key: &KeyRef, alg: JwsAlgorithm) -> String {
    format!("{}/{}/{}", key.name, key.version, alg)
}

pub(super) fn parse_label(label: &[u8]) -> Option<(KeyRef, JwsAlgorithm)> {
    let label = std::str::from_utf8(label).ok()?;
    let mut parts = label.splitn(3, '/');
    let name = parts.next()?;
    let version: u32 = parts.next()?.parse().ok()?;
    let alg = match parts.next()? {
        "ES256" => JwsAlgorithm::ES256,
        "ES384" => JwsAlgorithm::ES384,
        "RS256" => JwsAlgorithm::RS256,
        "PS256" => JwsAlgorithm::PS256,
        "EdDSA" => JwsAlgorithm::EdDSA,
        "ML-DSA-44" => JwsAlgorithm::MlDsa44,
        "ML-DSA-65" => JwsAlgorithm::MlDsa65,
        "ML-DSA-87" => JwsAlgorithm::MlDsa87,
        _ => return None,
    };
    validate_name(name).ok()?;
    Some((KeyRef::new(name, version), alg))
}

/// Strips the DER OCTET STRING around a `CKA_EC_POINT` if the token added one.
pub(super) fn unwrap_point(raw: Vec<u8>, len: usize) -> Vec<u8> {
    if raw.len() == len + 2 && raw[0] == 0x04 && usize::from(raw[1]) == len {
        raw[2..].to_vec()
    } else {
        raw
    }
}

pub(super) fn der_octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    if bytes.len() < 0x80 {
        out.push(bytes.len() as u8);
    } else {
        out.extend([0x81, bytes.len() as u8]);
    }
    out.extend_from_slice(bytes);
    out
}

pub(super) fn read_public(
    s: &Session,
    alg: JwsAlgorithm,
    label: &[u8],
) -> Result<PublicKey, CkError> {
    let handle = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(label.to_vec()),
        ])?
        .first()
        .copied()
        .ok_or(CkError::Pkcs11(
            RvError::KeyHandleInvalid,
            cryptoki::context::Function::FindObjects,
        ))?;
    read_public_handle(s, alg, handle)
}

pub(super) fn read_public_handle(
    s: &Session,
    alg: JwsAlgorithm,
    handle: ObjectHandle,
) -> Result<PublicKey, CkError> {
    let attr_missing = || {
        CkError::Pkcs11(
            RvError::AttributeTypeInvalid,
            cryptoki::context::Function::GetAttributeValue,
        )
    };
    let byte_attribute = |t: AttributeType| {
        s.get_attributes(handle, &[t])?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) | Attribute::EcPoint(v) => Some(v),
                _ => None,
            })
            .ok_or_else(attr_missing)
    };
    match alg {
        JwsAlgorithm::RS256 | JwsAlgorithm::PS256 => {
            let (mut n, mut e) = (None, None);
            for a in s.get_attributes(
                handle,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )? {
                match a {
                    Attribute::Modulus(v) => n = Some(v),
                    Attribute::PublicExponent(v) => e = Some(v),
                    _ => {}
                }
            }
            Ok(PublicKey::Rsa {
                alg,
                n: n.ok_or_else(attr_missing)?,
                e: e.ok_or_else(attr_missing)?,
            })
        }
        a if a.is_ml_dsa() => {
            // CKA_VALUE of an ML-DSA public key is the raw FIPS 204 pkEncode.
            let public = byte_attribute(AttributeType::Value)?;
            Ok(PublicKey::MlDsa { alg, public })
        }
        _ => {
            let point = byte_attribute(AttributeType::EcPoint)?;
            Ok(match alg {
                JwsAlgorithm::EdDSA => PublicKey::Ed25519(unwrap_point(point, 32)),
                JwsAlgorithm::ES384 => PublicKey::Ec {
                    alg,
                    point: unwrap_point(point, 97),
                },
                _ => PublicKey::Ec {
                    alg,
                    point: unwrap_point(point, 65),
                },
            })
        }
    }
}

pub(super) fn private_template(label: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Derive(false),
        Attribute::Label(label.to_vec()),
        Attribute::Id(label.to_vec()),
    ]
}

pub(super) fn public_template(label: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Label(label.to_vec()),
        Attribute::Id(label.to_vec()),
    ]
}

/// `CKA_PARAMETER_SET` of an ML-DSA algorithm (ML-DSA-87 for any other).
pub(super) fn ml_dsa_parameter_set(alg: JwsAlgorithm) -> MlDsaParameterSetType {
    match alg {
        JwsAlgorithm::MlDsa44 => MlDsaParameterSetType::ML_DSA_44,
        JwsAlgorithm::MlDsa65 => MlDsaParameterSetType::ML_DSA_65,
        _ => MlDsaParameterSetType::ML_DSA_87,
    }
}

pub(super) fn ec_params(alg: JwsAlgorithm) -> &'static [u8] {
    match alg {
        JwsAlgorithm::ES384 => P384_OID,
        JwsAlgorithm::EdDSA => ED25519_OID,
        _ => P256_OID,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_and_foreign_labels_are_skipped() {
        let key = KeyRef::new("jwt-signing", 12);
        let l = label(&key, JwsAlgorithm::PS256);
        assert_eq!(l, "jwt-signing/12/PS256");
        assert_eq!(
            parse_label(l.as_bytes()),
            Some((key.clone(), JwsAlgorithm::PS256))
        );
        let l = label(&key, JwsAlgorithm::MlDsa65);
        assert_eq!(l, "jwt-signing/12/ML-DSA-65");
        assert_eq!(
            parse_label(l.as_bytes()),
            Some((key, JwsAlgorithm::MlDsa65))
        );
        for foreign in [
            "my key",
            "a/b",
            "a/1/HS256",
            "a/x/ES256",
            "/1/ES256",
            "a/1/ES256/extra",
            "a/1/ML-DSA-66",
        ] {
            assert_eq!(parse_label(foreign.as_bytes()), None, "{foreign}");
        }
    }

    #[test]
    fn ec_points_with_and_without_der_wrapping() {
        let mut point = vec![4u8];
        point.extend([7u8; 64]);
        assert_eq!(unwrap_point(point.clone(), 65), point);
        assert_eq!(unwrap_point(der_octet_string(&point), 65), point);
        let ed = vec![9u8; 32];
        assert_eq!(unwrap_point(der_octet_string(&ed), 32), ed);
    }
}
