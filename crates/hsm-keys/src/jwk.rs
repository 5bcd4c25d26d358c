//! Public keys as JWKs (RFC 7517/7518/8037, AKP of RFC 9964) and RFC 7638 thumbprints.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_core_traits::JwsAlgorithm;
use serde::{Deserialize, Serialize};

use crate::Error;

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A public key: what a backend hands out, from which the JWK is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// P-256 or P-384: the uncompressed SEC1 point `04 || x || y`.
    Ec { alg: JwsAlgorithm, point: Vec<u8> },
    /// Ed25519: the 32-byte public key.
    Ed25519(Vec<u8>),
    /// RSA modulus and public exponent, big-endian.
    Rsa {
        alg: JwsAlgorithm,
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// ML-DSA: the raw FIPS 204 public key (`pkEncode`), an AKP key of RFC 9964.
    MlDsa { alg: JwsAlgorithm, public: Vec<u8> },
}

/// FIPS 204 Table 2: (public key, signature) bytes of an ML-DSA parameter set.
pub(crate) fn ml_dsa_sizes(alg: JwsAlgorithm) -> Option<(usize, usize)> {
    match alg {
        JwsAlgorithm::MlDsa44 => Some((1312, 2420)),
        JwsAlgorithm::MlDsa65 => Some((1952, 3309)),
        JwsAlgorithm::MlDsa87 => Some((2592, 4627)),
        _ => None,
    }
}

/// The JWK (`kty`, curve, modulus or `pub`, `alg`, `use`, `kid`) of one signing key.
///
/// `kid` is the RFC 7638 SHA-256 thumbprint of the key, so it is the same for the
/// same key in every store and every process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `EC`, `OKP`, `RSA` or `AKP` (RFC 9964, ML-DSA).
    pub kty: String,
    /// `P-256`, `P-384` or `Ed25519` (EC and OKP keys).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub crv: Option<String>,
    /// The x coordinate (EC) or the public key (OKP), base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub x: Option<String>,
    /// The y coordinate (EC), base64url.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub y: Option<String>,
    /// The RSA modulus, base64url, minimal length.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub n: Option<String>,
    /// The RSA public exponent, base64url, minimal length.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e: Option<String>,
    /// The public key of an `AKP` key (RFC 9964), base64url.
    #[serde(rename = "pub", skip_serializing_if = "Option::is_none", default)]
    pub pub_: Option<String>,
    /// The JWS algorithm this key is for (required for `AKP` keys).
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// The RFC 7638 thumbprint.
    pub kid: String,
}

/// A JWK Set document (RFC 7517 §5): `{"keys":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The published keys.
    pub keys: Vec<Jwk>,
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

impl PublicKey {
    pub(crate) fn algorithm(&self) -> JwsAlgorithm {
        match self {
            PublicKey::Ec { alg, .. } | PublicKey::Rsa { alg, .. } => *alg,
            PublicKey::Ed25519(_) => JwsAlgorithm::EdDSA,
            PublicKey::MlDsa { alg, .. } => *alg,
        }
    }

    /// Builds the JWK; fails if the point has the wrong size for its curve.
    pub(crate) fn to_jwk(&self) -> Result<Jwk, Error> {
        let alg = self.algorithm();
        let (kty, crv, x, y, n, e) = match self {
            PublicKey::Ec { point, .. } => {
                let (crv, coord) = match alg {
                    JwsAlgorithm::ES384 => ("P-384", 48),
                    _ => ("P-256", 32),
                };
                if point.len() != 1 + 2 * coord || point[0] != 4 {
                    return Err(Error::InvalidKey {
                        algorithm: alg,
                        reason: format!(
                            "EC point of {} bytes is not uncompressed {crv}",
                            point.len()
                        ),
                    });
                }
                let (x, y) = point[1..].split_at(coord);
                ("EC", Some(crv), Some(b64(x)), Some(b64(y)), None, None)
            }
            PublicKey::Ed25519(k) => {
                if k.len() != 32 {
                    return Err(Error::InvalidKey {
                        algorithm: alg,
                        reason: format!("Ed25519 public key of {} bytes", k.len()),
                    });
                }
                ("OKP", Some("Ed25519"), Some(b64(k)), None, None, None)
            }
            PublicKey::MlDsa { public, .. } => return akp_jwk(alg, public),
            PublicKey::Rsa { n, e, .. } => (
                "RSA",
                None,
                None,
                None,
                Some(b64(strip_zeros(n))),
                Some(b64(strip_zeros(e))),
            ),
        };
        // RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
        let canonical = match kty {
            "EC" => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                crv.unwrap_or_default(),
                x.as_deref().unwrap_or_default(),
                y.as_deref().unwrap_or_default()
            ),
            "OKP" => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                x.as_deref().unwrap_or_default()
            ),
            _ => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                e.as_deref().unwrap_or_default(),
                n.as_deref().unwrap_or_default()
            ),
        };
        Ok(Jwk {
            kty: kty.to_owned(),
            crv: crv.map(str::to_owned),
            x,
            y,
            n,
            e,
            pub_: None,
            alg: alg.as_str().to_owned(),
            use_: "sig".to_owned(),
            kid: thumbprint(&canonical),
        })
    }
}

fn thumbprint(canonical: &str) -> String {
    b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
}

/// RFC 9964 §6: an AKP key's thumbprint covers `alg`, `kty` and `pub`, in that
/// (lexicographic) order: unlike EC or OKP keys, the algorithm is part of the key.
fn akp_jwk(alg: JwsAlgorithm, public: &[u8]) -> Result<Jwk, Error> {
    let (want, _) = ml_dsa_sizes(alg).ok_or_else(|| Error::InvalidKey {
        algorithm: alg,
        reason: "not an ML-DSA algorithm".into(),
    })?;
    if public.len() != want {
        return Err(Error::InvalidKey {
            algorithm: alg,
            reason: format!("{alg} public key of {} bytes, not {want}", public.len()),
        });
    }
    let pub_ = b64(public);
    let canonical = format!(r#"{{"alg":"{alg}","kty":"AKP","pub":"{pub_}"}}"#);
    Ok(Jwk {
        kty: "AKP".to_owned(),
        crv: None,
        x: None,
        y: None,
        n: None,
        e: None,
        pub_: Some(pub_),
        alg: alg.as_str().to_owned(),
        use_: "sig".to_owned(),
        kid: thumbprint(&canonical),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1: the example RSA key and its thumbprint.
    #[test]
    fn rfc7638_example_thumbprint() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let n = URL_SAFE_NO_PAD
            .decode(
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo\
                 c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQ\
                 R0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFT\
                 WhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            )
            .unwrap();
        let jwk = PublicKey::Rsa {
            alg: JwsAlgorithm::RS256,
            n,
            e: vec![1, 0, 1],
        }
        .to_jwk()
        .unwrap();
        assert_eq!(jwk.kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(jwk.e.as_deref(), Some("AQAB"));
    }

    #[test]
    fn wrong_point_size_is_rejected() {
        let err = PublicKey::Ec {
            alg: JwsAlgorithm::ES256,
            point: vec![4; 97],
        }
        .to_jwk()
        .unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
    }
}
