//! The verification keys: an in-memory map from `kid` to a key bound to one algorithm.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::error::{Error, label};
use crate::mldsa::{self, MlDsa, MlDsaKey, TokenAlgorithm};

/// A verification key bound to exactly one algorithm.
#[derive(Clone)]
pub(crate) enum BoundKey {
    /// Verified by jsonwebtoken's aws-lc-rs backend.
    Jose { alg: Algorithm, key: DecodingKey },
    /// Verified by aws-lc-rs's ML-DSA directly.
    MlDsa(MlDsaKey),
}

impl BoundKey {
    pub(crate) fn alg(&self) -> TokenAlgorithm {
        match self {
            BoundKey::Jose { alg, .. } => TokenAlgorithm::Jose(*alg),
            BoundKey::MlDsa(k) => TokenAlgorithm::MlDsa(k.param),
        }
    }
}

/// The keys a validator trusts, by `kid`.
///
/// Each key is bound to one algorithm when it is added; a token whose header names
/// another algorithm for that `kid` is refused before any cryptography runs, which is
/// what defeats algorithm confusion (an HS256 token "signed" with an RSA public key).
/// Keys are never taken from a token (`jku`, `x5u`, `jwk`, `x5c` are ignored).
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, BoundKey>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<(&String, TokenAlgorithm)> =
            self.keys.iter().map(|(k, v)| (k, v.alg())).collect();
        kids.sort_by(|a, b| a.0.cmp(b.0));
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

impl KeySet {
    /// An empty key set (a validator with it refuses every token with
    /// [`Error::NoKeys`], a configuration error).
    pub fn new() -> Self {
        KeySet::default()
    }

    /// Adds (or replaces) the key `kid`, bound to `alg`.
    ///
    /// Fails if the key's family does not fit `alg` (an RSA key for `HS256`, say).
    pub fn insert(
        &mut self,
        kid: impl Into<String>,
        alg: Algorithm,
        key: DecodingKey,
    ) -> Result<(), Error> {
        let kid = kid.into();
        if kid.is_empty() {
            return Err(Error::InvalidKey {
                kid: label(&kid),
                reason: "empty kid",
            });
        }
        if key.family() != alg.family() {
            return Err(Error::InvalidKey {
                kid: label(&kid),
                reason: "key type does not fit the algorithm",
            });
        }
        self.keys.insert(kid, BoundKey::Jose { alg, key });
        Ok(())
    }

    /// Adds (or replaces) the ML-DSA key `kid`: the raw FIPS 204 public key of
    /// `param` (exactly [`MlDsa::public_key_len`] bytes), bound to that parameter set.
    pub fn insert_ml_dsa(
        &mut self,
        kid: impl Into<String>,
        param: MlDsa,
        public_key: &[u8],
    ) -> Result<(), Error> {
        let kid = kid.into();
        if kid.is_empty() {
            return Err(Error::InvalidKey {
                kid: label(&kid),
                reason: "empty kid",
            });
        }
        let key = MlDsaKey::new(param, public_key, &kid)?;
        self.keys.insert(kid, BoundKey::MlDsa(key));
        Ok(())
    }

    /// Removes the key `kid`; returns whether it was present.
    pub fn remove(&mut self, kid: &str) -> bool {
        self.keys.remove(kid).is_some()
    }

    /// Whether `kid` is present.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&BoundKey> {
        self.keys.get(kid)
    }

    /// Loads a JWKS document (RFC 7517 `{"keys": [...]}`).
    ///
    /// Every key must have a `kid`, must not be marked `"use": "enc"`, and must say
    /// which algorithm it is for: `alg` is required for RSA and symmetric (`oct`)
    /// keys, and inferred from the curve for EC (`P-256` → ES256, `P-384` → ES384)
    /// and OKP (`Ed25519` → EdDSA) keys. A key whose `alg` contradicts its type, a
    /// duplicate `kid` or an unsupported key is an error: a half-loaded key set
    /// would refuse tokens silently.
    ///
    /// `AKP` keys (RFC 9964, ML-DSA) are read here, not by jsonwebtoken: `alg` is
    /// required and must be `ML-DSA-44`, `ML-DSA-65` or `ML-DSA-87`, `pub` must be
    /// base64url of exactly 1312, 1952 or 2592 bytes to match, `priv` is refused, and
    /// other members are ignored.
    pub fn from_jwks(json: &[u8]) -> Result<Self, Error> {
        let json_err = |e: serde_json::Error| {
            Error::InvalidJwks(format!(
                "line {} column {}: {}",
                e.line(),
                e.column(),
                e.classify_str()
            ))
        };
        let doc: JwksDoc = serde_json::from_slice(json).map_err(json_err)?;
        let mut out = KeySet::new();
        let mut others = Vec::with_capacity(doc.keys.len());
        for jwk in doc.keys {
            let Value::Object(obj) = jwk else {
                return Err(Error::InvalidJwks("a key is not a JSON object".to_owned()));
            };
            if obj.get("kty").and_then(Value::as_str) != Some("AKP") {
                others.push(Value::Object(obj));
                continue;
            }
            let (kid, key) = mldsa::akp_from_jwk(&obj)?;
            if out.contains(&kid) {
                return Err(Error::InvalidKey {
                    kid: label(&kid),
                    reason: "duplicate kid",
                });
            }
            out.keys.insert(kid, BoundKey::MlDsa(key));
        }
        let set: JwkSet =
            serde_json::from_value(serde_json::json!({ "keys": others })).map_err(json_err)?;
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| Error::InvalidJwks("a key has no kid".to_owned()))?;
            let bad = |reason: &'static str| Error::InvalidKey {
                kid: label(&kid),
                reason,
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                return Err(bad("key is for encryption (use: enc)"));
            }
            let declared = match jwk.common.key_algorithm {
                Some(a) => Some(
                    Algorithm::from_str(&a.to_string())
                        .map_err(|_| bad("alg is not a JWS signature algorithm"))?,
                ),
                None => None,
            };
            let inferred = match &jwk.algorithm {
                AlgorithmParameters::EllipticCurve(p) => match p.curve {
                    EllipticCurve::P256 => Some(Algorithm::ES256),
                    EllipticCurve::P384 => Some(Algorithm::ES384),
                    _ => return Err(bad("unsupported curve")),
                },
                AlgorithmParameters::OctetKeyPair(p) => match p.curve {
                    EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
                    _ => return Err(bad("unsupported curve")),
                },
                AlgorithmParameters::RSA(_) | AlgorithmParameters::OctetKey(_) => None,
                _ => return Err(bad("unsupported key type")),
            };
            let alg = match (declared, inferred) {
                (Some(d), Some(i)) if d != i => return Err(bad("alg contradicts the curve")),
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => return Err(bad("alg is required for RSA and oct keys")),
            };
            let key =
                DecodingKey::from_jwk(jwk).map_err(|_| bad("key parameters do not decode"))?;
            if out.contains(&kid) {
                return Err(bad("duplicate kid"));
            }
            out.insert(kid, alg, key)?;
        }
        Ok(out)
    }
}

/// A JWKS before its keys are sorted into AKP (ours) and the rest (jsonwebtoken's).
#[derive(serde::Deserialize)]
struct JwksDoc {
    keys: Vec<Value>,
}

/// serde_json's error category, without the message (which may quote input).
trait Classify {
    fn classify_str(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "not a JWKS (keys array of JWKs)",
            serde_json::error::Category::Eof => "unexpected end of input",
        }
    }
}
