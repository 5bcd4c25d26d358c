//! Compact JWS (RFC 7515) with a header built by the signer.

use palisade_core_traits::SignedJws;
use serde::Serialize;

use crate::jwk::b64;
use crate::{Error, KeyInfo, KeyStore};

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    typ: Option<&'a str>,
}

/// Signs `payload` as a compact JWS with `key`: the header is
/// `{"alg":…,"kid":<RFC 7638 thumbprint>,"typ":…}` and is built here, so it
/// always names the key that signed.
pub fn sign_compact(
    store: &dyn KeyStore,
    key: &KeyInfo,
    typ: Option<&str>,
    payload: &[u8],
) -> Result<SignedJws, Error> {
    let header = serde_json::to_vec(&Header {
        alg: key.algorithm.as_str(),
        kid: key.kid(),
        typ,
    })
    .map_err(|e| Error::Crypto {
        operation: "encode JWS header",
        source: Some(Box::new(e)),
    })?;
    let mut compact = b64(&header);
    compact.push('.');
    compact.push_str(&b64(payload));
    let signature = store.sign(&key.key, compact.as_bytes())?;
    compact.push('.');
    compact.push_str(&b64(&signature));
    Ok(SignedJws::new(compact, key.kid().to_owned(), key.algorithm))
}
