//! Validating the same token repeatedly through palisade-jwt-cache, rotating the key
//! set, and revoking a token through palisade-token-blacklist.
//!
//! cargo run -p palisade-examples --bin jwt-cache-demo
//!
//! The two crates never depend on each other: the cache holds an
//! `Arc<dyn RevocationCheck>` (core-traits) and this example hands it the blacklist.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use palisade_core_traits::{RevocationCheck, SystemClock, TokenIdentity, TokenRevoker};
use palisade_jwt_cache::{Algorithm, DecodingKey, KeySet, Policy, TokenCache, Validator};
use palisade_token_blacklist::MemoryBlacklist;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A fresh Ed25519 key: (signing key, verifying key).
fn ed25519() -> Result<(EncodingKey, DecodingKey)> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| "keygen")?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "keygen")?;
    Ok((
        EncodingKey::from_ed_der(pkcs8.as_ref()),
        DecodingKey::from_ed_der(pair.public_key().as_ref()),
    ))
}

fn issue(key: &EncodingKey, kid: &str, jti: &str) -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(kid.to_owned());
    let claims = serde_json::json!({
        "iss": "https://login.example", "aud": "api", "sub": "alice", "jti": jti,
        "iat": now, "exp": now + 300,
    });
    Ok(jsonwebtoken::encode(&h, &claims, key)?)
}

fn check(v: &Validator, label: &str, token: &str) {
    let before = v.stats();
    let start = Instant::now();
    let result = v.validate(token);
    let took = start.elapsed();
    let after = v.stats();
    let how = if after.hits > before.hits {
        "hit "
    } else {
        "miss"
    };
    match result {
        Ok(t) => println!(
            "{label:<28} {how} {took:>10.1?}  ok: sub={:?} kid={}",
            t.identity().subject,
            t.key_id()
        ),
        Err(e) => println!("{label:<28} {how} {took:>10.1?}  REFUSED: {e}"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let (sign_a, verify_a) = ed25519()?;
    let mut keys = KeySet::new();
    keys.insert("2026-a", Algorithm::EdDSA, verify_a.clone())?;
    let blacklist = Arc::new(MemoryBlacklist::builder().build()?);
    let revocation: Arc<dyn RevocationCheck> = blacklist.clone();
    let v = Validator::builder()
        .policy(
            Policy::builder()
                .algorithms(&[Algorithm::EdDSA])
                .issuers(&["https://login.example"])
                .audiences(&["api"])
                .build()?,
        )
        .keys(keys)
        .cache(TokenCache::builder().build()?)
        .clock(Arc::new(SystemClock))
        .revocation(revocation)
        .build()?;

    let token = issue(&sign_a, "2026-a", "t-1")?;
    println!("-- the same token, five times");
    for i in 1..=5 {
        check(&v, &format!("request {i}"), &token);
    }

    println!("\n-- rotation: add key 2026-b (epoch changes, entries are re-validated)");
    let (sign_b, verify_b) = ed25519()?;
    let mut keys = v.keys();
    keys.insert("2026-b", Algorithm::EdDSA, verify_b)?;
    v.set_keys(keys);
    let token_b = issue(&sign_b, "2026-b", "t-2")?;
    check(&v, "old token after rotation", &token);
    check(&v, "old token again", &token);
    check(&v, "new token", &token_b);

    println!("\n-- retire key 2026-a");
    let mut keys = v.keys();
    keys.remove("2026-a");
    v.set_keys(keys);
    check(&v, "old token", &token);
    check(&v, "new token", &token_b);
    check(&v, "new token again", &token_b);

    println!("\n-- revoke t-2 in token-blacklist (refused on the very next hit)");
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 300;
    let revoker: Arc<dyn TokenRevoker> = blacklist.clone();
    revoker
        .revoke_token(
            &TokenIdentity::new("https://login.example")
                .with_jti("t-2")
                .with_expires_at(exp),
        )
        .await?;
    check(&v, "new token", &token_b);

    let s = v.stats();
    println!(
        "\nstats: hits {} misses {} evictions {} rejections {:?}",
        s.hits,
        s.misses,
        s.evictions,
        s.rejections
            .iter()
            .filter(|(_, n)| *n > 0)
            .collect::<Vec<_>>()
    );
    Ok(())
}
