//! hsm-keys demo: generate a signing key in an HSM (SoftHSM2 here), sign a JWT,
//! publish the JWKS, rotate, and show that the old token still verifies.
//!
//! cargo run -p palisade-examples --bin hsm-keys-demo
//!
//! Key store, in order of preference:
//! * a real HSM: `PALISADE_HSM_MODULE=/path/to/pkcs11.so PALISADE_HSM_TOKEN=<label or
//!   pkcs11: URI> PALISADE_HSM_PIN=<user PIN>`;
//! * SoftHSM2 if installed: a throwaway token in `target/palisade-softhsm/`
//!   (cargo sets `SOFTHSM2_CONF` from `.cargo/config.toml`);
//! * otherwise `SoftStore` (keys in memory, ring).

use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{Clock, JwsSigner, SystemClock};
use palisade_hsm_keys::{
    Error, Jwks, JwsAlgorithm, KeyRing, KeyStore, Pin, Pkcs11Store, SoftStore,
};

const SOFTHSM_MODULES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];

fn choose_store() -> Result<Arc<dyn KeyStore>, Error> {
    if let Ok(module) = std::env::var("PALISADE_HSM_MODULE") {
        let token = std::env::var("PALISADE_HSM_TOKEN").map_err(|_| Error::InvalidConfig {
            field: "token",
            reason: "PALISADE_HSM_TOKEN is not set".into(),
        })?;
        let store = Pkcs11Store::builder()
            .module(&module)
            .token(token)
            .pin(Pin::from_env("PALISADE_HSM_PIN")?)
            .build()?;
        println!(
            "key store: PKCS#11 module {module}, token {:?}",
            store.token_label()
        );
        return Ok(Arc::new(store));
    }
    if SOFTHSM_MODULES
        .iter()
        .any(|m| std::path::Path::new(m).is_file())
    {
        let hsm = palisade_testkit::SoftHsm::get();
        let store = Pkcs11Store::builder()
            .context(hsm.pkcs11().clone())
            .token(format!("pkcs11:token={}", hsm.token_label()))
            .pin(Pin::new(palisade_testkit::SoftHsm::USER_PIN))
            .build()?;
        println!(
            "key store: SoftHSM2 token {:?} (throwaway)",
            store.token_label()
        );
        return Ok(Arc::new(store));
    }
    println!("key store: SoftStore (no PKCS#11 module found; keys live in memory)");
    Ok(Arc::new(SoftStore::new()))
}

fn verify(token: &str, jwks: &Jwks) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(serde_json::to_value(jwks)?)?;
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.ok_or("token has no kid")?;
    let jwk = set.find(&kid).ok_or("kid not in the JWKS")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)?;
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &key,
        &jsonwebtoken::Validation::new(header.alg),
    )?
    .claims;
    Ok(claims)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = choose_store()?;
    let state_dir = tempfile::tempdir()?;
    let ring = KeyRing::builder(store)
        .name("demo-jwt")
        .algorithm(JwsAlgorithm::ES256)
        .max_token_lifetime(Duration::from_secs(900))
        .state_file(state_dir.path().join("demo-jwt.json"))
        .build()?;

    let v1 = ring.rotate()?;
    println!("\n1. generated and activated {} (kid {})", v1.key, v1.kid());

    // Sign through the cross-crate trait, as a service would (spawn_blocking inside).
    let signer: Arc<dyn JwsSigner> = Arc::new(ring.clone());
    let exp = SystemClock.now().as_unix_secs() + 600;
    let claims = format!(r#"{{"sub":"alice","exp":{exp}}}"#);
    let token = signer.sign_jws(Some("JWT"), claims.as_bytes()).await?;
    println!(
        "\n2. signed a JWT with kid {}:\n{}",
        token.key_id, token.compact
    );

    println!(
        "\n3. JWKS:\n{}",
        serde_json::to_string_pretty(&ring.jwks())?
    );
    println!(
        "   jsonwebtoken verifies it: {}",
        verify(&token.compact, &ring.jwks())?
    );

    let v2 = ring.prepare()?;
    ring.activate(v2.key.version)?;
    println!("\n4. rotated: {} is active; states:", v2.key);
    for k in ring.keys() {
        println!("   {} {:?}", k.info.key, k.state);
    }
    println!(
        "   the token signed by {} still verifies: {}",
        v1.key,
        verify(&token.compact, &ring.jwks())?
    );
    match ring.retire(v1.key.version) {
        Err(e @ Error::OverlapTooShort { .. }) => {
            println!("   retiring {} now is refused: {e}", v1.key)
        }
        other => println!("   unexpected: {other:?}"),
    }
    let new_token = ring.sign_jwt(serde_json::Map::new(), Duration::from_secs(60))?;
    println!("   new tokens carry kid {}", new_token.key_id);
    println!(
        "\n5. JWKS now publishes {} keys; the lifecycle state file (a restart keeps it):\n{}",
        ring.jwks().keys.len(),
        std::fs::read_to_string(state_dir.path().join("demo-jwt.json"))?
    );
    Ok(())
}
