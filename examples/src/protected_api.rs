//! The parts of the `protected-api` demo (`src/bin/protected-api.rs`), shared with its
//! loopback test (`tests/protected_api.rs`): an axum API whose routes need a bearer
//! token validated by palisade-jwt-cache, with revocation answered by
//! palisade-token-blacklist's `MemoryBlacklist`. The two crates never meet except
//! here: the validator holds the blacklist as an `Arc<dyn RevocationCheck>`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Router};
use jsonwebtoken::{EncodingKey, Header};
use palisade_core_traits::{RevocationCheck, TokenRevoker};
use palisade_jwt_cache::{
    Algorithm, Claims, DecodingKey, JwtAuth, KeySet, Policy, TokenCache, ValidatedToken, Validator,
};
use palisade_token_blacklist::MemoryBlacklist;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::Deserialize;

/// The issuer the API trusts.
pub const ISSUER: &str = "https://login.example";
/// The audience the API answers to.
pub const AUDIENCE: &str = "api";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What `/me` needs from a token.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// The subject.
    pub sub: String,
}

/// What `/profile` needs: an `email` claim, which the demo's tokens do not carry
/// unless asked to.
#[derive(Debug, Clone, Deserialize)]
pub struct Profile {
    /// The subject.
    pub sub: String,
    /// The e-mail address.
    pub email: String,
}

/// A stand-in for the login service: an ES256 key that signs access tokens.
pub struct Issuer {
    key: EncodingKey,
    kid: String,
    public: DecodingKey,
}

impl Issuer {
    /// A fresh P-256 key under kid `login-1`.
    pub fn generate() -> Result<Self> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "key generation failed")?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| "key generation failed")?;
        Ok(Issuer {
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            kid: "login-1".into(),
            // The uncompressed point, which is what the verifier reads.
            public: DecodingKey::from_ec_der(pair.public_key().as_ref()),
        })
    }

    /// The key set a verifier needs (in production: the issuer's JWKS).
    pub fn key_set(&self) -> Result<KeySet> {
        let mut keys = KeySet::new();
        keys.insert(self.kid.clone(), Algorithm::ES256, self.public.clone())?;
        Ok(keys)
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.key)?)
    }

    /// An access token for `sub` with id `jti` and `scope`, valid for `ttl_secs`
    /// (negative: already expired).
    pub fn access_token(&self, sub: &str, jti: &str, scope: &str, ttl_secs: i64) -> Result<String> {
        let now = now_secs()?;
        self.sign(&serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "jti": jti, "scope": scope,
            "iat": now, "exp": now.saturating_add_signed(ttl_secs),
        }))
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())
}

/// The API: `GET /me` (any valid token), `GET /profile` (claims must include
/// `email`), `GET /admin` (scope `admin`), `POST /logout` (revokes the caller's token),
/// `GET /health` (no token).
pub fn app(keys: KeySet, blacklist: Arc<MemoryBlacklist>) -> Result<Router> {
    let auth = auth(keys, blacklist.clone())?;
    let admin = auth.with_scopes(&["admin"])?;
    let revoker: Arc<dyn TokenRevoker> = blacklist;
    Ok(Router::new()
        .route(
            "/me",
            get(|Claims(u): Claims<User>| async move { format!("hello {}", u.sub) }),
        )
        .route(
            "/profile",
            get(|Claims(p): Claims<Profile>| async move { format!("{} <{}>", p.sub, p.email) }),
        )
        .route("/logout", post(logout).with_state(revoker))
        .merge(
            Router::new()
                .route(
                    "/admin",
                    get(|Claims(u): Claims<User>| async move { format!("admin {}", u.sub) }),
                )
                .route_layer(admin),
        )
        .layer(auth)
        .merge(Router::new().route("/health", get(|| async { "ok" }))))
}

/// The API's bearer-token layer: ES256 tokens of [`ISSUER`] for [`AUDIENCE`], cached,
/// with revocation answered by `blacklist`.
pub fn auth(keys: KeySet, blacklist: Arc<MemoryBlacklist>) -> Result<JwtAuth> {
    let revocation: Arc<dyn RevocationCheck> = blacklist;
    let policy = Policy::builder()
        .algorithms(&[Algorithm::ES256])
        .issuers(&[ISSUER])
        .audiences(&[AUDIENCE])
        .build()?;
    let validator = Validator::builder()
        .policy(policy)
        .keys(keys)
        .cache(TokenCache::builder().build()?)
        .revocation(revocation)
        .build()?;
    Ok(JwtAuth::builder()
        .validator(Arc::new(validator))
        .realm("protected-api")
        .build()?)
}

/// Revokes the token that authenticated this request: refused from the next request on.
async fn logout(
    State(revoker): State<Arc<dyn TokenRevoker>>,
    Extension(token): Extension<Arc<ValidatedToken>>,
) -> StatusCode {
    match revoker.revoke_token(token.identity()).await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(e) => {
            tracing::error!(error = %e, "revocation failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}
