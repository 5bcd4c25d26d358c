//! ML-DSA (FIPS 204, RFC 9964) verification through aws-lc-rs, and AKP JWKs.
//!
//! jsonwebtoken knows no ML-DSA, so these tokens never reach it: the validator reads
//! the header itself and routes `ML-DSA-*` here.

use std::fmt;

use aws_lc_rs::signature::{ML_DSA_44, ML_DSA_65, ML_DSA_87, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::error::{Error, label};

/// An ML-DSA parameter set (FIPS 204 Table 1), as a JWS `alg` of RFC 9964.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MlDsa {
    /// `ML-DSA-44`: 1312-byte public keys, 2420-byte signatures.
    MlDsa44,
    /// `ML-DSA-65`: 1952-byte public keys, 3309-byte signatures.
    MlDsa65,
    /// `ML-DSA-87`: 2592-byte public keys, 4627-byte signatures.
    MlDsa87,
}

impl MlDsa {
    /// All three, smallest first.
    pub const ALL: [MlDsa; 3] = [MlDsa::MlDsa44, MlDsa::MlDsa65, MlDsa::MlDsa87];

    /// The `alg` name: `ML-DSA-44`, `ML-DSA-65` or `ML-DSA-87`.
    pub fn as_str(self) -> &'static str {
        match self {
            MlDsa::MlDsa44 => "ML-DSA-44",
            MlDsa::MlDsa65 => "ML-DSA-65",
            MlDsa::MlDsa87 => "ML-DSA-87",
        }
    }

    /// The parameter set an `alg` names (exact, case-sensitive as in RFC 7515).
    pub fn from_name(alg: &str) -> Option<Self> {
        MlDsa::ALL.into_iter().find(|m| m.as_str() == alg)
    }

    /// Bytes of a public key (`pkEncode`).
    pub fn public_key_len(self) -> usize {
        match self {
            MlDsa::MlDsa44 => 1312,
            MlDsa::MlDsa65 => 1952,
            MlDsa::MlDsa87 => 2592,
        }
    }

    /// Bytes of a signature.
    pub fn signature_len(self) -> usize {
        match self {
            MlDsa::MlDsa44 => 2420,
            MlDsa::MlDsa65 => 3309,
            MlDsa::MlDsa87 => 4627,
        }
    }

    fn verifier(self) -> &'static aws_lc_rs::signature::PqdsaVerificationAlgorithm {
        match self {
            MlDsa::MlDsa44 => &ML_DSA_44,
            MlDsa::MlDsa65 => &ML_DSA_65,
            MlDsa::MlDsa87 => &ML_DSA_87,
        }
    }
}

impl fmt::Display for MlDsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The algorithm a token was (or a key is bound to be) verified with: one of
/// jsonwebtoken's, or ML-DSA. Compares equal to the jsonwebtoken [`Algorithm`] it wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenAlgorithm {
    /// A JOSE algorithm verified by jsonwebtoken's aws-lc-rs backend.
    Jose(Algorithm),
    /// ML-DSA, verified by aws-lc-rs directly.
    MlDsa(MlDsa),
}

impl From<Algorithm> for TokenAlgorithm {
    fn from(a: Algorithm) -> Self {
        TokenAlgorithm::Jose(a)
    }
}

impl From<MlDsa> for TokenAlgorithm {
    fn from(m: MlDsa) -> Self {
        TokenAlgorithm::MlDsa(m)
    }
}

impl PartialEq<Algorithm> for TokenAlgorithm {
    fn eq(&self, other: &Algorithm) -> bool {
        *self == TokenAlgorithm::Jose(*other)
    }
}

impl PartialEq<MlDsa> for TokenAlgorithm {
    fn eq(&self, other: &MlDsa) -> bool {
        *self == TokenAlgorithm::MlDsa(*other)
    }
}

impl fmt::Display for TokenAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenAlgorithm::Jose(a) => write!(f, "{a:?}"),
            TokenAlgorithm::MlDsa(m) => f.write_str(m.as_str()),
        }
    }
}

/// An ML-DSA public key, parsed once when it is added to a key set.
#[derive(Clone)]
pub(crate) struct MlDsaKey {
    pub(crate) param: MlDsa,
    key: ParsedPublicKey,
}

impl MlDsaKey {
    /// Accepts exactly `param.public_key_len()` raw bytes (never a DER SPKI, which
    /// aws-lc-rs would also take).
    pub(crate) fn new(param: MlDsa, public: &[u8], kid: &str) -> Result<Self, Error> {
        if public.len() != param.public_key_len() {
            return Err(Error::InvalidKey {
                kid: label(kid),
                reason: "pub has the wrong length for its ML-DSA parameter set",
            });
        }
        let key =
            ParsedPublicKey::new(param.verifier(), public).map_err(|_| Error::InvalidKey {
                kid: label(kid),
                reason: "pub is not an ML-DSA public key",
            })?;
        Ok(MlDsaKey { param, key })
    }

    /// `Ok` only for a valid signature of exactly the parameter set's length
    /// (truncated or padded ones are refused before the arithmetic).
    pub(crate) fn verify(&self, message: &[u8], signature_b64: &[u8]) -> Result<(), Error> {
        let sig = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| Error::Malformed("a part is not base64url"))?;
        if sig.len() != self.param.signature_len() {
            return Err(Error::BadSignature);
        }
        self.key
            .verify_sig(message, &sig)
            .map_err(|_| Error::BadSignature)
    }
}

/// One AKP JWK of a JWKS (RFC 9964): `kid`, `alg` (required, one of the three) and
/// `pub` of the parameter set's length. `use` other than `sig` and `priv` (a private
/// key published by mistake) are refused; other members are ignored.
pub(crate) fn akp_from_jwk(jwk: &Map<String, Value>) -> Result<(String, MlDsaKey), Error> {
    let kid = match jwk.get("kid") {
        Some(Value::String(k)) => k.clone(),
        _ => return Err(Error::InvalidJwks("a key has no kid".to_owned())),
    };
    let bad = |reason: &'static str| Error::InvalidKey {
        kid: label(&kid),
        reason,
    };
    if jwk.contains_key("priv") {
        return Err(bad("an AKP key in a JWKS carries priv (a private key)"));
    }
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Err(bad("key is not for signatures (use is not sig)")),
    }
    let param = match jwk.get("alg") {
        None => return Err(bad("alg is required for AKP keys")),
        Some(Value::String(a)) => MlDsa::from_name(a)
            .ok_or_else(|| bad("alg is not ML-DSA-44, ML-DSA-65 or ML-DSA-87"))?,
        Some(_) => return Err(bad("alg is not a string")),
    };
    let public = match jwk.get("pub") {
        Some(Value::String(p)) => URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| bad("pub is not base64url"))?,
        _ => return Err(bad("pub is missing")),
    };
    let key = MlDsaKey::new(param, &public, &kid)?;
    Ok((kid, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes_follow_fips_204() {
        for m in MlDsa::ALL {
            assert_eq!(MlDsa::from_name(m.as_str()), Some(m));
            assert_eq!(TokenAlgorithm::from(m).to_string(), m.as_str());
        }
        assert_eq!(MlDsa::from_name("ml-dsa-65"), None);
        assert_eq!(MlDsa::from_name("ML-DSA-66"), None);
        assert_eq!(TokenAlgorithm::from(Algorithm::ES256), Algorithm::ES256);
        assert_ne!(TokenAlgorithm::from(MlDsa::MlDsa65), MlDsa::MlDsa44);
    }
}
