//! `KeyRing`: one named signing key through its versions, with a lifecycle that
//! never orphans a valid token, a JWKS, and a state file that survives restarts.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use palisade_core_traits::{Clock, JwsAlgorithm, JwsSigner, SignedJws, Timestamp, async_trait};
use serde::{Deserialize, Serialize};

use crate::{Error, Jwks, KeyInfo, KeyRef, KeyStore, sign_compact, validate_name};

/// Where a key version is in its life.
///
/// `Pending` (published, does not sign yet, so verifiers can fetch it first) →
/// `Active` (published, the one key that signs) → `Retiring` (published, no longer
/// signs) → `Retired` (not published; may be destroyed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// Published and signing.
    Active,
    /// Published, stopped signing at `since`.
    Retiring {
        /// When it stopped signing.
        since: Timestamp,
    },
    /// No longer published, since `since`.
    Retired {
        /// When it was retired.
        since: Timestamp,
    },
}

impl KeyState {
    fn name(self) -> &'static str {
        match self {
            KeyState::Pending => "pending",
            KeyState::Active => "active",
            KeyState::Retiring { .. } => "retiring",
            KeyState::Retired { .. } => "retired",
        }
    }

    /// Whether the key is in the JWKS.
    pub fn is_published(self) -> bool {
        !matches!(self, KeyState::Retired { .. })
    }
}

/// How a key ring behaves.
#[derive(Debug, Clone)]
pub struct KeyRingConfig {
    /// The key name (`[A-Za-z0-9._-]{1,64}`); versions are `name/1`, `name/2`, ….
    pub name: String,
    /// The algorithm of every version.
    pub algorithm: JwsAlgorithm,
    /// The longest lifetime (`exp - now` at signing) of any token this ring signs.
    /// Tokens asking for more are refused.
    pub max_token_lifetime: Duration,
    /// Clock leeway verifiers allow past `exp` (jsonwebtoken's default is 60 s).
    /// A retiring key stays published `max_token_lifetime + leeway + 1 s`.
    pub verifier_leeway: Duration,
    /// Where the lifecycle is persisted (written atomically), or `None` to keep it
    /// in memory only.
    pub state_file: Option<PathBuf>,
}

impl KeyRingConfig {
    /// A config with a 60 s verifier leeway and no state file.
    pub fn new(
        name: impl Into<String>,
        algorithm: JwsAlgorithm,
        max_token_lifetime: Duration,
    ) -> Self {
        KeyRingConfig {
            name: name.into(),
            algorithm,
            max_token_lifetime,
            verifier_leeway: Duration::from_secs(60),
            state_file: None,
        }
    }

    /// Persists the lifecycle in `path`.
    pub fn with_state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Sets the verifier leeway.
    pub fn with_verifier_leeway(mut self, leeway: Duration) -> Self {
        self.verifier_leeway = leeway;
        self
    }

    /// How long a retiring key must stay published: the token lifetime, the
    /// leeway, and one second because verifiers accept a token up to and including
    /// the second `exp + leeway` (NumericDate is whole seconds).
    pub fn overlap(&self) -> Duration {
        self.max_token_lifetime
            .saturating_add(self.verifier_leeway)
            .saturating_add(Duration::from_secs(1))
    }
}

/// One version of the ring and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingKey {
    /// Key, algorithm and JWK.
    pub info: KeyInfo,
    /// Lifecycle state.
    pub state: KeyState,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateEntry {
    version: u32,
    kid: String,
    #[serde(flatten)]
    state: KeyState,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateDoc {
    name: String,
    algorithm: String,
    keys: Vec<StateEntry>,
}

struct RingInner<S> {
    store: S,
    clock: Arc<dyn Clock>,
    config: KeyRingConfig,
    keys: RwLock<Vec<RingKey>>,
}

/// A named signing key through its versions: rotation, JWKS, and signing with the
/// active version (`JwsSigner`). Cheap to clone; clones share state.
///
/// The overlap rule: a key that stopped signing at `t` can be retired (removed from
/// the JWKS) only at `t + max_token_lifetime + verifier_leeway + 1 s` or later, and every
/// token signed carries an `exp` no later than `max_token_lifetime` after signing,
/// so no token that a verifier would still accept ever loses its key.
pub struct KeyRing<S> {
    inner: Arc<RingInner<S>>,
}

impl<S> Clone for KeyRing<S> {
    fn clone(&self) -> Self {
        KeyRing {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: KeyStore> fmt::Debug for KeyRing<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("name", &self.inner.config.name)
            .field("algorithm", &self.inner.config.algorithm)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

fn state_err(path: &Path, e: impl Into<crate::BoxError>) -> Error {
    Error::State {
        path: path.display().to_string(),
        source: e.into(),
    }
}

impl<S: KeyStore> KeyRing<S> {
    /// Opens the ring: reads the state file if there is one (and checks each
    /// published key is still in the store with the same kid), else starts empty.
    pub fn open(store: S, clock: Arc<dyn Clock>, config: KeyRingConfig) -> Result<Self, Error> {
        validate_name(&config.name)?;
        let mut keys = Vec::new();
        if let Some(path) = &config.state_file
            && path.exists()
        {
            let text = std::fs::read(path).map_err(|e| state_err(path, e))?;
            let doc: StateDoc = serde_json::from_slice(&text).map_err(|e| state_err(path, e))?;
            if doc.name != config.name || doc.algorithm != config.algorithm.as_str() {
                return Err(Error::Config(format!(
                    "state file {} is for {}/{}, not {}/{}",
                    path.display(),
                    doc.name,
                    doc.algorithm,
                    config.name,
                    config.algorithm
                )));
            }
            for entry in doc.keys {
                let key = KeyRef::new(&config.name, entry.version);
                let info = match store.info(&key) {
                    Ok(info) => info,
                    // A retired key may have been destroyed already.
                    Err(Error::KeyNotFound { .. }) if !entry.state.is_published() => continue,
                    Err(e) => return Err(e),
                };
                if info.jwk.kid != entry.kid {
                    return Err(Error::Config(format!(
                        "key {key} in the store has kid {} but the state file says {}",
                        info.jwk.kid, entry.kid
                    )));
                }
                keys.push(RingKey {
                    info,
                    state: entry.state,
                });
            }
        }
        Ok(KeyRing {
            inner: Arc::new(RingInner {
                store,
                clock,
                config,
                keys: RwLock::new(keys),
            }),
        })
    }

    /// The store behind the ring.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &KeyRingConfig {
        &self.inner.config
    }

    /// Every version the ring knows and its state, oldest first.
    pub fn keys(&self) -> Vec<RingKey> {
        self.read().clone()
    }

    /// The active version, if any.
    pub fn active(&self) -> Option<KeyInfo> {
        self.read()
            .iter()
            .find(|k| k.state == KeyState::Active)
            .map(|k| k.info.clone())
    }

    /// The JWKS: pending, active and retiring keys.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .read()
                .iter()
                .filter(|k| k.state.is_published())
                .map(|k| k.info.jwk.clone())
                .collect(),
        }
    }

    /// Generates the next version as `Pending` (published, not signing yet).
    pub fn prepare(&self) -> Result<KeyInfo, Error> {
        // Generated before taking the lock: RSA generation on an HSM can take
        // seconds, and signing must not wait for it.
        let info = self
            .inner
            .store
            .generate(&self.inner.config.name, self.inner.config.algorithm)?;
        let mut keys = self.write();
        keys.push(RingKey {
            info: info.clone(),
            state: KeyState::Pending,
        });
        self.save(&keys)?;
        tracing::info!(key = %info.key, kid = %info.kid(), "key prepared");
        Ok(info)
    }

    /// Makes pending `version` the active key; the previous active key starts retiring.
    pub fn activate(&self, version: u32) -> Result<(), Error> {
        let mut keys = self.write();
        let now = self.inner.clock.now();
        let idx = self.find(&keys, version)?;
        if keys[idx].state != KeyState::Pending {
            return Err(self.transition(&keys[idx], "active"));
        }
        for k in keys.iter_mut().filter(|k| k.state == KeyState::Active) {
            k.state = KeyState::Retiring { since: now };
        }
        keys[idx].state = KeyState::Active;
        self.save(&keys)?;
        tracing::info!(key = %keys[idx].info.key, "key activated");
        Ok(())
    }

    /// Prepares a new version and activates it at once.
    ///
    /// Verifiers that cache the JWKS may not know the new key yet; to avoid that,
    /// call [`prepare`](Self::prepare), wait for the JWKS cache lifetime, then
    /// [`activate`](Self::activate).
    pub fn rotate(&self) -> Result<KeyInfo, Error> {
        let info = self.prepare()?;
        self.activate(info.key.version)?;
        Ok(info)
    }

    /// Retires a retiring `version` (removes it from the JWKS), if the overlap has
    /// passed; otherwise [`Error::OverlapTooShort`].
    pub fn retire(&self, version: u32) -> Result<(), Error> {
        let mut keys = self.write();
        let now = self.inner.clock.now();
        let idx = self.find(&keys, version)?;
        let KeyState::Retiring { since } = keys[idx].state else {
            return Err(self.transition(&keys[idx], "retired"));
        };
        let due = since.saturating_add(self.inner.config.overlap());
        if now < due {
            return Err(Error::OverlapTooShort {
                key: keys[idx].info.key.to_string(),
                // Whole seconds, rounded up: what an operator schedules by.
                remaining: round_up_secs(due.saturating_duration_since(now)),
            });
        }
        keys[idx].state = KeyState::Retired { since: now };
        self.save(&keys)?;
        tracing::info!(key = %keys[idx].info.key, "key retired");
        Ok(())
    }

    /// Retires every retiring key whose overlap has passed; returns their versions.
    pub fn retire_due(&self) -> Result<Vec<u32>, Error> {
        let versions: Vec<u32> = self
            .read()
            .iter()
            .filter(|k| matches!(k.state, KeyState::Retiring { .. }))
            .map(|k| k.info.key.version)
            .collect();
        let mut done = Vec::new();
        for v in versions {
            match self.retire(v) {
                Ok(()) => done.push(v),
                Err(Error::OverlapTooShort { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Destroys a retired `version` in the store and forgets it.
    pub fn destroy(&self, version: u32) -> Result<(), Error> {
        let mut keys = self.write();
        let idx = self.find(&keys, version)?;
        if !matches!(keys[idx].state, KeyState::Retired { .. }) {
            return Err(self.transition(&keys[idx], "destroyed"));
        }
        self.inner.store.destroy(&keys[idx].info.key)?;
        keys.remove(idx);
        self.save(&keys)
    }

    /// Signs `payload` (JWT claims) with the active key. The payload must be a
    /// JSON object whose numeric `exp` is at most `max_token_lifetime` from now.
    pub fn sign(&self, typ: Option<&str>, payload: &[u8]) -> Result<SignedJws, Error> {
        // The read lock is held while signing, so a rotation waits for signatures
        // in flight: every token of a key is signed before it starts retiring.
        let keys = self.read();
        let now = self.inner.clock.now();
        check_exp(payload, now, self.inner.config.max_token_lifetime)?;
        let active = keys
            .iter()
            .find(|k| k.state == KeyState::Active)
            .ok_or_else(|| Error::NoActiveKey {
                name: self.inner.config.name.clone(),
            })?;
        sign_compact(&self.inner.store, &active.info, typ, payload)
    }

    /// Signs a JWT with `claims` plus `iat` and `exp = iat + ttl` from the ring's clock.
    pub fn sign_jwt(
        &self,
        claims: serde_json::Map<String, serde_json::Value>,
        ttl: Duration,
    ) -> Result<SignedJws, Error> {
        let now = self.inner.clock.now().as_unix_secs();
        let mut claims = claims;
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(ttl.as_secs()).into());
        let payload = serde_json::to_vec(&claims).map_err(|e| Error::Crypto {
            operation: "encode JWT claims",
            source: Some(Box::new(e)),
        })?;
        self.sign(Some("JWT"), &payload)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<RingKey>> {
        self.inner.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<RingKey>> {
        self.inner.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    fn find(&self, keys: &[RingKey], version: u32) -> Result<usize, Error> {
        keys.iter()
            .position(|k| k.info.key.version == version)
            .ok_or_else(|| Error::KeyNotFound {
                key: KeyRef::new(&self.inner.config.name, version).to_string(),
            })
    }

    fn transition(&self, k: &RingKey, to: &'static str) -> Error {
        Error::InvalidTransition {
            key: k.info.key.to_string(),
            from: k.state.name(),
            to,
        }
    }

    /// Writes the state file atomically (temp file in the same directory, fsync, rename).
    fn save(&self, keys: &[RingKey]) -> Result<(), Error> {
        let Some(path) = &self.inner.config.state_file else {
            return Ok(());
        };
        let doc = StateDoc {
            name: self.inner.config.name.clone(),
            algorithm: self.inner.config.algorithm.as_str().to_owned(),
            keys: keys
                .iter()
                .map(|k| StateEntry {
                    version: k.info.key.version,
                    kid: k.info.jwk.kid.clone(),
                    state: k.state,
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&doc).map_err(|e| state_err(path, e))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| state_err(path, e))?;
        tmp.write_all(&json).map_err(|e| state_err(path, e))?;
        tmp.as_file().sync_all().map_err(|e| state_err(path, e))?;
        tmp.persist(path).map_err(|e| state_err(path, e.error))?;
        Ok(())
    }
}

fn round_up_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}

/// Refuses payloads without a numeric `exp`, or with one beyond `now + max`.
fn check_exp(payload: &[u8], now: Timestamp, max: Duration) -> Result<(), Error> {
    let reject = |reason: String| Err(Error::TokenLifetime { reason });
    let Ok(serde_json::Value::Object(claims)) =
        serde_json::from_slice::<serde_json::Value>(payload)
    else {
        return reject("the payload is not a JSON object with an exp claim".into());
    };
    let Some(exp) = claims.get("exp").and_then(serde_json::Value::as_u64) else {
        return reject("the payload has no numeric exp claim".into());
    };
    let latest = now.saturating_add(max);
    if Timestamp::from_unix_secs(exp) > latest {
        return reject(format!(
            "exp {exp} is more than the maximum token lifetime {max:?} after now ({})",
            now.as_unix_secs()
        ));
    }
    Ok(())
}

#[async_trait]
impl<S: KeyStore + 'static> JwsSigner for KeyRing<S> {
    /// Signs on a blocking thread (`spawn_blocking`) when a Tokio runtime is running,
    /// so an HSM round trip never blocks the async executor.
    async fn sign_jws(
        &self,
        typ: Option<&str>,
        payload: &[u8],
    ) -> Result<SignedJws, palisade_core_traits::Error> {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return self.sign(typ, payload).map_err(Into::into);
        };
        let ring = self.clone();
        let typ = typ.map(str::to_owned);
        let payload = payload.to_vec();
        handle
            .spawn_blocking(move || ring.sign(typ.as_deref(), &payload))
            .await
            .map_err(|e| palisade_core_traits::Error::Unavailable {
                backend: "hsm-keys",
                source: Box::new(e),
            })?
            .map_err(Into::into)
    }
}
