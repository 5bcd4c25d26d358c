//! ML-DSA (FIPS 204) keys for `SoftStore` through aws-lc-rs, and private AKP JWKs
//! (RFC 9964: `priv` is the 32-byte seed).

use aws_lc_rs::signature::{
    KeyPair as _, ML_DSA_44_SIGNING, ML_DSA_65_SIGNING, ML_DSA_87_SIGNING, PqdsaKeyPair,
    PqdsaSigningAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use palisade_core_traits::JwsAlgorithm;
use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;
use crate::jwk::b64;

/// Length of an ML-DSA seed (FIPS 204 ξ; RFC 9964 `priv`), for every parameter set.
pub const ML_DSA_SEED_LEN: usize = 32;

fn signing_alg(alg: JwsAlgorithm) -> Result<&'static PqdsaSigningAlgorithm, Error> {
    match alg {
        JwsAlgorithm::MlDsa44 => Ok(&ML_DSA_44_SIGNING),
        JwsAlgorithm::MlDsa65 => Ok(&ML_DSA_65_SIGNING),
        JwsAlgorithm::MlDsa87 => Ok(&ML_DSA_87_SIGNING),
        other => Err(Error::InvalidKey {
            algorithm: other,
            reason: "not an ML-DSA algorithm".into(),
        }),
    }
}

/// A fresh key pair (aws-lc-rs draws the seed).
pub(crate) fn generate(alg: JwsAlgorithm) -> Result<PqdsaKeyPair, Error> {
    PqdsaKeyPair::generate(signing_alg(alg)?).map_err(|_| Error::crypto("generate ML-DSA key"))
}

/// The key pair FIPS 204 `ML-DSA.KeyGen_internal` derives from `seed`
/// (deterministic: the same seed gives the same key in every implementation).
pub(crate) fn from_seed(alg: JwsAlgorithm, seed: &[u8]) -> Result<PqdsaKeyPair, Error> {
    let signing = signing_alg(alg)?;
    if seed.len() != ML_DSA_SEED_LEN {
        return Err(Error::InvalidKey {
            algorithm: alg,
            reason: format!(
                "an ML-DSA seed is {ML_DSA_SEED_LEN} bytes, not {}",
                seed.len()
            ),
        });
    }
    PqdsaKeyPair::from_seed(signing, seed).map_err(|e| Error::InvalidKey {
        algorithm: alg,
        reason: format!("seed rejected ({e})"),
    })
}

/// A PKCS#8 ML-DSA key (seed, expanded or both forms; aws-lc-rs checks they agree).
pub(crate) fn from_pkcs8(alg: JwsAlgorithm, der: &[u8]) -> Result<PqdsaKeyPair, Error> {
    PqdsaKeyPair::from_pkcs8(signing_alg(alg)?, der).map_err(|e| Error::InvalidKey {
        algorithm: alg,
        reason: format!("not a PKCS#8 {alg} key ({e})"),
    })
}

/// The raw public key (`pkEncode`).
pub(crate) fn public(kp: &PqdsaKeyPair) -> Vec<u8> {
    kp.public_key().as_ref().to_vec()
}

/// A pure ML-DSA signature with an empty context (RFC 9964 §4), hedged (randomised)
/// as FIPS 204 recommends: two signatures of one message differ, both verify.
pub(crate) fn sign(kp: &PqdsaKeyPair, msg: &[u8]) -> Result<Vec<u8>, Error> {
    let mut sig = vec![0; kp.algorithm().signature_len()];
    let n = kp
        .sign(msg, &mut sig)
        .map_err(|_| Error::crypto("ML-DSA sign"))?;
    sig.truncate(n);
    Ok(sig)
}

/// The members of a private AKP JWK we read; wiped when dropped.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct PrivateAkp {
    kty: Option<String>,
    alg: Option<String>,
    #[serde(rename = "pub")]
    pub_: Option<String>,
    #[serde(rename = "priv")]
    priv_: Option<String>,
}

fn bad(member: &'static str, reason: &'static str) -> Error {
    Error::InvalidJwk { member, reason }
}

/// Parses a private AKP JWK (`{"kty":"AKP","alg":"ML-DSA-65","pub":…,"priv":…}`):
/// `priv` must be a 32-byte seed and `pub` the public key derived from it (RFC 9964
/// §8 warns about mismatched AKP parameters). Other members are ignored.
pub(crate) fn parse_private_akp(json: &[u8]) -> Result<(JwsAlgorithm, PqdsaKeyPair), Error> {
    let jwk: PrivateAkp =
        serde_json::from_slice(json).map_err(|_| bad("(document)", "not a JSON object"))?;
    match jwk.kty.as_deref() {
        Some("AKP") => {}
        None => return Err(bad("kty", "missing")),
        Some(_) => return Err(bad("kty", "not AKP")),
    }
    let alg = match jwk.alg.as_deref() {
        Some("ML-DSA-44") => JwsAlgorithm::MlDsa44,
        Some("ML-DSA-65") => JwsAlgorithm::MlDsa65,
        Some("ML-DSA-87") => JwsAlgorithm::MlDsa87,
        None => return Err(bad("alg", "required for AKP keys")),
        Some(_) => return Err(bad("alg", "not ML-DSA-44, ML-DSA-65 or ML-DSA-87")),
    };
    let seed = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(jwk.priv_.as_deref().ok_or(bad("priv", "missing"))?)
            .map_err(|_| bad("priv", "not base64url"))?,
    );
    if seed.len() != ML_DSA_SEED_LEN {
        return Err(bad("priv", "an ML-DSA seed is 32 bytes"));
    }
    let claimed = jwk.pub_.as_deref().ok_or(bad("pub", "missing"))?;
    let kp = from_seed(alg, &seed)?;
    // Compared as text: our encoding is canonical, so a non-canonical `pub` fails too.
    if b64(kp.public_key().as_ref()) != claimed {
        return Err(bad("pub", "does not match the key derived from priv"));
    }
    Ok((alg, kp))
}
