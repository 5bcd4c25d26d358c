#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod hybrid;
mod jwk;
mod jws;
mod keyring;
mod mldsa;
mod pin;
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod soft;
mod telemetry;

#[cfg(feature = "pkcs11")]
#[cfg_attr(docsrs, doc(cfg(feature = "pkcs11")))]
pub use cryptoki;
pub use error::{BoxError, Error};
pub use hybrid::{HybridKeyRing, HybridKeyRingBuilder};
pub use jwk::{Jwk, Jwks};
pub use jws::sign_compact;
pub use keyring::{KeyRing, KeyRingBuilder, KeyRingConfig, KeyState, RingKey, State};
pub use mldsa::ML_DSA_SEED_LEN;
pub use palisade_core_traits::{JwsAlgorithm, SignedJws};
pub use pin::Pin;
#[cfg(feature = "pkcs11")]
#[cfg_attr(docsrs, doc(cfg(feature = "pkcs11")))]
pub use pkcs11::{
    DEFAULT_MAX_SESSIONS, Pkcs11Store, Pkcs11StoreBuilder, Stats, TokenSelector, load_module,
};
pub use soft::SoftStore;

/// Fuzz entry points, one per cargo-fuzz target; not part of the API contract.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use crate::JwsAlgorithm;

    /// `hsm_keys_pkcs11_uri`: a token label or `pkcs11:` URI, parsed; whether it was
    /// accepted.
    pub fn hsm_keys_pkcs11_uri(data: &[u8]) -> bool {
        crate::TokenSelector::parse(&String::from_utf8_lossy(data)).is_ok()
    }

    /// `hsm_keys_akp_jwk`: a private AKP JWK (RFC 9964) as `SoftStore::import_akp_jwk`
    /// parses it; whether it was accepted.
    pub fn hsm_keys_akp_jwk(data: &[u8]) -> bool {
        crate::mldsa::parse_private_akp(data).is_ok()
    }

    /// `hsm_keys_pkcs8`: the PKCS#8 parsing used by `Pkcs11Store` imports
    /// (RustCrypto's `pkcs8`, `sec1`, `pkcs1`), run on arbitrary bytes for every
    /// algorithm (in the store it only sees keys ring accepted). Returns how many
    /// algorithms accepted the bytes.
    pub fn hsm_keys_pkcs8(data: &[u8]) -> usize {
        [
            JwsAlgorithm::ES256,
            JwsAlgorithm::ES384,
            JwsAlgorithm::EdDSA,
            JwsAlgorithm::RS256,
            JwsAlgorithm::MlDsa44,
            JwsAlgorithm::MlDsa65,
            JwsAlgorithm::MlDsa87,
        ]
        .into_iter()
        .filter(|&alg| crate::pkcs11::pkcs8::private_template(alg, data).is_ok())
        .count()
    }
}

use std::fmt;

/// Longest key name accepted (it must fit a PKCS#11 label with its version).
pub const MAX_KEY_NAME_LEN: usize = 64;

/// One version of a named key: `name/version`, versions counting up from 1.
///
/// In a [`Pkcs11Store`](crate) both objects of the pair carry
/// `CKA_LABEL = CKA_ID = "name/version/alg"`, e.g. `jwt/3/ES256`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyRef {
    /// The key name, `[A-Za-z0-9._-]{1,64}`.
    pub name: String,
    /// The version, 1 for the first key of a name.
    pub version: u32,
}

impl KeyRef {
    /// A reference to `name/version` (the name is checked when it is used).
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        KeyRef {
            name: name.into(),
            version,
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

/// What a store knows about one key: where it is, its algorithm, its public JWK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// Name and version.
    pub key: KeyRef,
    /// The one algorithm the key signs with.
    pub algorithm: JwsAlgorithm,
    /// The public key; `jwk.kid` is the RFC 7638 thumbprint.
    pub jwk: Jwk,
}

impl KeyInfo {
    /// The key id used in JWS headers: the RFC 7638 thumbprint.
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }
}

/// A place where signing keys live: [`SoftStore`] (ring, in memory) or
/// `Pkcs11Store` (feature `pkcs11`, private keys never leave the token).
///
/// All methods block (an HSM call is I/O); async callers go through
/// [`KeyRing`]'s `JwsSigner` impl, which uses `spawn_blocking`.
/// Signatures are in JWS form: ECDSA as raw `r‖s`, RSA, Ed25519 and ML-DSA as usual.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// `"soft"` or `"pkcs11"`, for errors and logs.
    fn backend(&self) -> &'static str;

    /// Generates a new key `name/(latest version + 1)` for `algorithm`.
    fn generate(&self, name: &str, algorithm: JwsAlgorithm) -> Result<KeyInfo, Error>;

    /// Imports a PKCS#8 (v1 or v2) private key as `name/(latest version + 1)`.
    fn import_pkcs8(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        pkcs8_der: &[u8],
    ) -> Result<KeyInfo, Error>;

    /// Signs `message` (the JWS signing input) with the key's algorithm.
    fn sign(&self, key: &KeyRef, message: &[u8]) -> Result<Vec<u8>, Error>;

    /// The key's algorithm and public JWK.
    fn info(&self, key: &KeyRef) -> Result<KeyInfo, Error>;

    /// Every key in the store, sorted by name then version.
    fn list(&self) -> Result<Vec<KeyInfo>, Error>;

    /// Destroys the key (both halves of the pair). Irreversible.
    fn destroy(&self, key: &KeyRef) -> Result<(), Error>;

    /// The versions of `name`, oldest first.
    fn versions(&self, name: &str) -> Result<Vec<KeyInfo>, Error> {
        validate_name(name)?;
        Ok(self
            .list()?
            .into_iter()
            .filter(|k| k.key.name == name)
            .collect())
    }

    /// Generates the next version of `name` with the algorithm of its latest version.
    fn rotate(&self, name: &str) -> Result<KeyInfo, Error> {
        let latest = self
            .versions(name)?
            .pop()
            .ok_or_else(|| Error::KeyNotFound {
                key: format!("{name}/*"),
            })?;
        self.generate(name, latest.algorithm)
    }
}

impl<S: KeyStore + ?Sized> KeyStore for std::sync::Arc<S> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn generate(&self, name: &str, algorithm: JwsAlgorithm) -> Result<KeyInfo, Error> {
        (**self).generate(name, algorithm)
    }
    fn import_pkcs8(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        pkcs8_der: &[u8],
    ) -> Result<KeyInfo, Error> {
        (**self).import_pkcs8(name, algorithm, pkcs8_der)
    }
    fn sign(&self, key: &KeyRef, message: &[u8]) -> Result<Vec<u8>, Error> {
        (**self).sign(key, message)
    }
    fn info(&self, key: &KeyRef) -> Result<KeyInfo, Error> {
        (**self).info(key)
    }
    fn list(&self) -> Result<Vec<KeyInfo>, Error> {
        (**self).list()
    }
    fn destroy(&self, key: &KeyRef) -> Result<(), Error> {
        (**self).destroy(key)
    }
}

/// Checks a key name: 1 to 64 characters of `[A-Za-z0-9._-]`.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > MAX_KEY_NAME_LEN {
        "longer than 64 bytes"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "only A-Z a-z 0-9 . _ - are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKeyName {
        name: name.chars().take(80).collect(),
        reason,
    })
}
