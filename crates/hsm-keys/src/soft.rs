//! `SoftStore`: keys in process memory, signed with ring (ML-DSA with aws-lc-rs).

use std::collections::BTreeMap;
use std::sync::RwLock;

use palisade_core_traits::JwsAlgorithm;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use zeroize::Zeroizing;

use crate::jwk::PublicKey;
use crate::mldsa;
use crate::{Error, KeyInfo, KeyRef, KeyStore, telemetry, validate_name};

/// Smallest RSA modulus accepted, in bits.
pub(crate) const MIN_RSA_BITS: usize = 2048;

/// A parsed key pair: ring's, or aws-lc-rs's for ML-DSA (ring has none).
pub(crate) enum RingKey {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
    MlDsa(aws_lc_rs::signature::PqdsaKeyPair),
}

impl RingKey {
    /// Parses and checks a PKCS#8 key for `alg` (ring validates the key; RSA
    /// keys under 2048 bits are refused).
    pub(crate) fn from_pkcs8(
        alg: JwsAlgorithm,
        der: &[u8],
        rng: &SystemRandom,
    ) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidKey {
            algorithm: alg,
            reason,
        };
        let key = match alg {
            JwsAlgorithm::ES256 | JwsAlgorithm::ES384 => {
                EcdsaKeyPair::from_pkcs8(ecdsa_alg(alg), der, rng)
                    .map(RingKey::Ecdsa)
                    .map_err(|e| invalid(format!("not a PKCS#8 {alg} key ({e})")))?
            }
            JwsAlgorithm::EdDSA => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(RingKey::Ed25519)
                .map_err(|e| invalid(format!("not a PKCS#8 Ed25519 key ({e})")))?,
            JwsAlgorithm::RS256 | JwsAlgorithm::PS256 => {
                let kp = RsaKeyPair::from_pkcs8(der)
                    .map_err(|e| invalid(format!("not a PKCS#8 RSA key ({e})")))?;
                if kp.public().modulus_len() * 8 < MIN_RSA_BITS {
                    return Err(invalid(format!(
                        "RSA modulus of {} bits is under {MIN_RSA_BITS}",
                        kp.public().modulus_len() * 8
                    )));
                }
                RingKey::Rsa(kp)
            }
            a if a.is_ml_dsa() => RingKey::MlDsa(mldsa::from_pkcs8(a, der)?),
            other => {
                return Err(invalid(format!("algorithm {other} is not supported")));
            }
        };
        Ok(key)
    }

    pub(crate) fn public_key(&self, alg: JwsAlgorithm) -> PublicKey {
        match self {
            RingKey::Ecdsa(kp) => PublicKey::Ec {
                alg,
                point: kp.public_key().as_ref().to_vec(),
            },
            RingKey::Ed25519(kp) => PublicKey::Ed25519(kp.public_key().as_ref().to_vec()),
            RingKey::MlDsa(kp) => PublicKey::MlDsa {
                alg,
                public: mldsa::public(kp),
            },
            RingKey::Rsa(kp) => {
                let c = signature::RsaPublicKeyComponents::<Vec<u8>>::from(kp.public());
                PublicKey::Rsa {
                    alg,
                    n: c.n,
                    e: c.e,
                }
            }
        }
    }

    fn sign(&self, alg: JwsAlgorithm, rng: &SystemRandom, msg: &[u8]) -> Result<Vec<u8>, Error> {
        match self {
            RingKey::Ecdsa(kp) => kp
                .sign(rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::crypto("ECDSA sign")),
            RingKey::Ed25519(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
            RingKey::MlDsa(kp) => mldsa::sign(kp, msg),
            RingKey::Rsa(kp) => {
                let padding: &'static dyn signature::RsaEncoding = if alg == JwsAlgorithm::PS256 {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut sig = vec![0; kp.public().modulus_len()];
                kp.sign(padding, rng, msg, &mut sig)
                    .map_err(|_| Error::crypto("RSA sign"))?;
                Ok(sig)
            }
        }
    }
}

pub(crate) fn ecdsa_alg(alg: JwsAlgorithm) -> &'static signature::EcdsaSigningAlgorithm {
    if alg == JwsAlgorithm::ES384 {
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING
    }
}

struct SoftKey {
    key: RingKey,
    info: KeyInfo,
}

/// Signing keys in process memory, signed with ring: for development, tests, and
/// services without an HSM.
///
/// Generates ES256, ES384, EdDSA and ML-DSA-44/65/87 keys (ML-DSA through
/// aws-lc-rs; also importable from a 32-byte seed or a private AKP JWK). **RSA keys (RS256, PS256) can only be
/// imported** from PKCS#8: ring has no RSA key generation, and the pure-Rust `rsa`
/// crate is not used because its private-key operations are not constant time
/// (RUSTSEC-2023-0071, Marvin). Generate RSA keys in an HSM, or with a vetted tool,
/// and import them. Keys live only as long as the store; nothing is written to disk.
pub struct SoftStore {
    rng: SystemRandom,
    keys: RwLock<BTreeMap<KeyRef, SoftKey>>,
}

impl std::fmt::Debug for SoftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.keys.read().map(|k| k.len()).unwrap_or(0);
        f.debug_struct("SoftStore").field("keys", &n).finish()
    }
}

impl Default for SoftStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftStore {
    /// An empty store.
    pub fn new() -> Self {
        SoftStore {
            rng: SystemRandom::new(),
            keys: RwLock::new(BTreeMap::new()),
        }
    }

    fn insert(&self, name: &str, alg: JwsAlgorithm, key: RingKey) -> Result<KeyInfo, Error> {
        let jwk = key.public_key(alg).to_jwk()?;
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let version = keys
            .keys()
            .filter(|k| k.name == name)
            .map(|k| k.version)
            .max()
            .unwrap_or(0)
            + 1;
        let info = KeyInfo {
            key: KeyRef::new(name, version),
            algorithm: alg,
            jwk,
        };
        keys.insert(
            info.key.clone(),
            SoftKey {
                key,
                info: info.clone(),
            },
        );
        Ok(info)
    }
}

impl SoftStore {
    /// Imports an ML-DSA key from its 32-byte seed (FIPS 204 ξ, RFC 9964 `priv`) as
    /// `name/(latest version + 1)`. The same seed gives the same key (and `kid`) in
    /// every implementation. Wipe the caller's copy of the seed after the call.
    pub fn import_ml_dsa_seed(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        seed: &[u8],
    ) -> Result<KeyInfo, Error> {
        validate_name(name)?;
        let kp = mldsa::from_seed(algorithm, seed)?;
        self.insert(name, algorithm, RingKey::MlDsa(kp))
    }

    /// Imports a private AKP JWK (RFC 9964: `kty` `AKP`, `alg` one of the ML-DSA
    /// names, `pub`, and `priv` the 32-byte seed) as `name/(latest version + 1)`.
    /// `pub` must be the key derived from `priv`; other members (`kid`, `use`) are
    /// ignored, the `kid` is recomputed. Errors name the member, never its value.
    pub fn import_akp_jwk(&self, name: &str, jwk_json: &[u8]) -> Result<KeyInfo, Error> {
        validate_name(name)?;
        let (alg, kp) = mldsa::parse_private_akp(jwk_json)?;
        self.insert(name, alg, RingKey::MlDsa(kp))
    }
}

impl KeyStore for SoftStore {
    fn backend(&self) -> &'static str {
        "soft"
    }

    fn generate(&self, name: &str, algorithm: JwsAlgorithm) -> Result<KeyInfo, Error> {
        validate_name(name)?;
        let pkcs8 = Zeroizing::new(match algorithm {
            JwsAlgorithm::ES256 | JwsAlgorithm::ES384 => {
                EcdsaKeyPair::generate_pkcs8(ecdsa_alg(algorithm), &self.rng)
                    .map_err(|_| Error::crypto("generate ECDSA key"))?
                    .as_ref()
                    .to_vec()
            }
            JwsAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(&self.rng)
                .map_err(|_| Error::crypto("generate Ed25519 key"))?
                .as_ref()
                .to_vec(),
            a if a.is_ml_dsa() => {
                return self.insert(name, a, RingKey::MlDsa(mldsa::generate(a)?));
            }
            other => {
                return Err(Error::UnsupportedAlgorithm {
                    backend: "soft",
                    operation: "generate",
                    algorithm: other,
                    reason: "ring has no RSA key generation; import a PKCS#8 RSA key instead"
                        .into(),
                });
            }
        });
        let key = RingKey::from_pkcs8(algorithm, &pkcs8, &self.rng)?;
        self.insert(name, algorithm, key)
    }

    fn import_pkcs8(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        pkcs8_der: &[u8],
    ) -> Result<KeyInfo, Error> {
        validate_name(name)?;
        let key = RingKey::from_pkcs8(algorithm, pkcs8_der, &self.rng)?;
        self.insert(name, algorithm, key)
    }

    fn sign(&self, key: &KeyRef, message: &[u8]) -> Result<Vec<u8>, Error> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let k = keys.get(key).ok_or_else(|| Error::not_found(key))?;
        let r = k.key.sign(k.info.algorithm, &self.rng, message);
        telemetry::sign("soft", k.info.algorithm, r.is_ok());
        if let Err(Error::Crypto { operation, .. }) = &r {
            telemetry::error(operation);
        }
        r
    }

    fn info(&self, key: &KeyRef) -> Result<KeyInfo, Error> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(key)
            .map(|k| k.info.clone())
            .ok_or_else(|| Error::not_found(key))
    }

    fn list(&self) -> Result<Vec<KeyInfo>, Error> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        Ok(keys.values().map(|k| k.info.clone()).collect())
    }

    fn destroy(&self, key: &KeyRef) -> Result<(), Error> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.remove(key)
            .map(|_| ())
            .ok_or_else(|| Error::not_found(key))
    }
}
