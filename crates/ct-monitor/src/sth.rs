//! Log keys, `DigitallySigned` and RFC 6962 signed tree heads (`get-sth`).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::Error;
use crate::merkle::{Hash, sha256};
use crate::tls::Reader;

/// The signature algorithm of a log key (RFC 6962 §2.1.4: these two only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA over NIST P-256 with SHA-256 (`SignatureAlgorithm` 3).
    EcdsaP256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 8192 bits (`SignatureAlgorithm` 1).
    Rsa,
}

impl KeyAlgorithm {
    /// The TLS `SignatureAlgorithm` code point.
    pub fn tls_code(self) -> u8 {
        match self {
            Self::EcdsaP256 => 3,
            Self::Rsa => 1,
        }
    }
}

/// A CT log's public key, parsed from its SubjectPublicKeyInfo.
#[derive(Clone, PartialEq, Eq)]
pub struct LogKey {
    spki: Vec<u8>,
    key: Vec<u8>,
    algorithm: KeyAlgorithm,
    log_id: Hash,
}

impl fmt::Debug for LogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogKey")
            .field("algorithm", &self.algorithm)
            .field("log_id", &STANDARD.encode(self.log_id))
            .finish()
    }
}

impl LogKey {
    /// Parses a DER SubjectPublicKeyInfo (the log list's `key`, base64-decoded).
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| Error::BadKey(format!("not a SubjectPublicKeyInfo: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::BadKey(format!(
                "{} bytes after the SubjectPublicKeyInfo",
                rest.len()
            )));
        }
        let oid = &spki.algorithm.algorithm;
        let algorithm = if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            if curve.as_ref() != Some(&OID_EC_P256) {
                return Err(Error::BadKey(format!(
                    "EC key on curve {curve:?}, only P-256 is allowed"
                )));
            }
            KeyAlgorithm::EcdsaP256
        } else if *oid == OID_PKCS1_RSAENCRYPTION {
            KeyAlgorithm::Rsa
        } else {
            return Err(Error::BadKey(format!(
                "key algorithm {oid} is neither EC P-256 nor RSA"
            )));
        };
        Ok(Self {
            spki: der.to_vec(),
            key: spki.subject_public_key.data.to_vec(),
            algorithm,
            log_id: sha256(der),
        })
    }

    /// Parses a PEM `PUBLIC KEY` block.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        const BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
        const END: &str = "-----END PUBLIC KEY-----";
        let body = pem
            .split_once(BEGIN)
            .and_then(|(_, rest)| rest.split_once(END))
            .map(|(body, _)| body)
            .ok_or_else(|| Error::BadKey("no PUBLIC KEY PEM block".into()))?;
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|e| Error::BadKey(format!("PEM body is not base64: {e}")))?;
        Self::from_spki_der(&der)
    }

    /// The RFC 6962 LogID: SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn log_id(&self) -> &Hash {
        &self.log_id
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// Verifies a `DigitallySigned` over `message`; the algorithm ids must match the key.
    pub fn verify(
        &self,
        message: &[u8],
        sig: &DigitallySigned,
        what: &'static str,
    ) -> Result<(), Error> {
        if sig.hash_algorithm != 4 || sig.signature_algorithm != self.algorithm.tls_code() {
            return Err(Error::BadSignature { what });
        }
        let alg: &dyn signature::VerificationAlgorithm = match self.algorithm {
            KeyAlgorithm::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
            KeyAlgorithm::Rsa => &signature::RSA_PKCS1_2048_8192_SHA256,
        };
        UnparsedPublicKey::new(alg, &self.key)
            .verify(message, &sig.signature)
            .map_err(|_| Error::BadSignature { what })
    }
}

/// RFC 5246 `DigitallySigned`: hash and signature algorithm ids plus the signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DigitallySigned {
    /// `HashAlgorithm` (4 = SHA-256, the only one accepted).
    pub hash_algorithm: u8,
    /// `SignatureAlgorithm` (1 = RSA, 3 = ECDSA).
    pub signature_algorithm: u8,
    /// The signature bytes (DER for ECDSA).
    pub signature: Vec<u8>,
}

impl DigitallySigned {
    /// Parses the TLS encoding; the input must hold exactly one structure.
    pub fn from_tls(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes, "DigitallySigned");
        let ds = Self::read(&mut r)?;
        r.finish()?;
        Ok(ds)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, Error> {
        Ok(Self {
            hash_algorithm: r.u8()?,
            signature_algorithm: r.u8()?,
            signature: r.vec(2, 0)?.to_vec(),
        })
    }

    /// The TLS encoding.
    pub fn to_tls(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.signature.len());
        out.push(self.hash_algorithm);
        out.push(self.signature_algorithm);
        // Parsed from a u16-prefixed vector, so the length fits.
        out.extend_from_slice(&(self.signature.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.signature);
        out
    }
}

/// A signed tree head, from `get-sth` or from a static-ct checkpoint: both sign
/// the same RFC 6962 `TreeHeadSignature` input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedTreeHead {
    /// Number of leaves.
    pub tree_size: u64,
    /// Milliseconds since the Unix epoch, as signed by the log.
    pub timestamp: u64,
    /// Merkle root of the first `tree_size` leaves.
    pub root_hash: Hash,
    /// The log's signature.
    pub signature: DigitallySigned,
}

#[derive(Deserialize)]
struct SthJson {
    tree_size: u64,
    timestamp: u64,
    sha256_root_hash: String,
    tree_head_signature: String,
}

impl SignedTreeHead {
    /// Parses a `get-sth` JSON response (RFC 6962 §4.3). Unknown fields are ignored.
    pub fn from_json(json: &[u8]) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadTreeHead {
            what: "get-sth JSON",
            reason,
        };
        let j: SthJson = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        let root = STANDARD
            .decode(&j.sha256_root_hash)
            .map_err(|e| bad(format!("sha256_root_hash: {e}")))?;
        let root_hash: Hash = root
            .try_into()
            .map_err(|r: Vec<u8>| bad(format!("sha256_root_hash has {} bytes, not 32", r.len())))?;
        let sig = STANDARD
            .decode(&j.tree_head_signature)
            .map_err(|e| bad(format!("tree_head_signature: {e}")))?;
        Ok(Self {
            tree_size: j.tree_size,
            timestamp: j.timestamp,
            root_hash,
            signature: DigitallySigned::from_tls(&sig)?,
        })
    }

    /// The signed input: `TreeHeadSignature` (RFC 6962 §3.5), 50 bytes.
    pub fn signed_input(&self) -> [u8; 50] {
        let mut out = [0u8; 50];
        out[0] = 0; // v1
        out[1] = 1; // tree_hash
        out[2..10].copy_from_slice(&self.timestamp.to_be_bytes());
        out[10..18].copy_from_slice(&self.tree_size.to_be_bytes());
        out[18..].copy_from_slice(&self.root_hash);
        out
    }

    /// Verifies the log's signature with `key`.
    pub fn verify(&self, key: &LogKey) -> Result<(), Error> {
        key.verify(&self.signed_input(), &self.signature, "STH")
    }
}
