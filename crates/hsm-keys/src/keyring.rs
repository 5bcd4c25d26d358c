//! `KeyRing`: one named signing key through its versions, with a lifecycle that
//! never orphans a valid token, a JWKS, and a state file that survives restarts.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use palisade_core_traits::{
    Clock, JwsAlgorithm, JwsSigner, SignedJws, SystemClock, Timestamp, async_trait,
};
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

/// How a key ring behaves: what its builder was given, read back with
/// [`KeyRing::config`].
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    /// in memory only ([`KeyRing::state`] still gives it).
    pub state_file: Option<PathBuf>,
}

impl KeyRingConfig {
    /// How long a retiring key must stay published: the token lifetime, the
    /// leeway, and one second because verifiers accept a token up to and including
    /// the second `exp + leeway` (NumericDate is whole seconds).
    pub fn overlap(&self) -> Duration {
        self.max_token_lifetime
            .saturating_add(self.verifier_leeway)
            .saturating_add(Duration::from_secs(1))
    }
}

/// Builds a [`KeyRing`]: every setter is infallible; [`build`](Self::build) checks
/// them and restores the lifecycle (from [`state`](Self::state) or the state file).
#[must_use]
pub struct KeyRingBuilder<S> {
    store: S,
    name: Option<String>,
    algorithm: Option<JwsAlgorithm>,
    max_token_lifetime: Option<Duration>,
    verifier_leeway: Duration,
    state_file: Option<PathBuf>,
    state: Option<State>,
    clock: Arc<dyn Clock>,
}

impl<S: KeyStore> KeyRingBuilder<S> {
    /// The key name, `[A-Za-z0-9._-]{1,64}` (required).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The algorithm of every version (required).
    pub fn algorithm(mut self, algorithm: JwsAlgorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// The longest lifetime of any token the ring signs (required, at least a
    /// second).
    pub fn max_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.max_token_lifetime = Some(lifetime);
        self
    }

    /// The clock leeway verifiers allow past `exp` (default 60 s, jsonwebtoken's).
    pub fn verifier_leeway(mut self, leeway: Duration) -> Self {
        self.verifier_leeway = leeway;
        self
    }

    /// Persists the lifecycle in `path` (rewritten atomically at every transition)
    /// and, if the file exists, restores it from there.
    pub fn state_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_file = Some(path.into());
        self
    }

    /// Restores the lifecycle from `state` (taken earlier with [`KeyRing::state`]);
    /// not together with an existing state file.
    pub fn state(mut self, state: State) -> Self {
        self.state = Some(state);
        self
    }

    /// The clock of every transition and signature (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The ring. Fails with [`Error::InvalidConfig`] naming the field (a missing or
    /// invalid name, no algorithm, a lifetime under a second, a state for another
    /// ring or naming a key the store lacks or holds under another kid, both a state
    /// and an existing state file), [`Error::StateFile`] if the file cannot be read.
    pub fn build(self) -> Result<KeyRing<S>, Error> {
        let name = self
            .name
            .ok_or_else(|| Error::config("name", "a key ring needs a key name"))?;
        validate_name(&name).map_err(|e| Error::config("name", e.to_string()))?;
        let algorithm = self
            .algorithm
            .ok_or_else(|| Error::config("algorithm", "a key ring needs an algorithm"))?;
        let max_token_lifetime = self
            .max_token_lifetime
            .filter(|d| *d >= Duration::from_secs(1))
            .ok_or_else(|| {
                Error::config(
                    "max_token_lifetime",
                    "a key ring needs a token lifetime of at least one second",
                )
            })?;
        let config = KeyRingConfig {
            name,
            algorithm,
            max_token_lifetime,
            verifier_leeway: self.verifier_leeway,
            state_file: self.state_file,
        };
        let from_file = match &config.state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read(path).map_err(|e| state_err(path, e))?;
                Some(serde_json::from_slice::<State>(&text).map_err(|e| state_err(path, e))?)
            }
            _ => None,
        };
        let state = match (self.state, from_file) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "state",
                    "both a state and an existing state file: give one",
                ));
            }
            (Some(s), None) | (None, Some(s)) => Some(s),
            (None, None) => None,
        };
        let keys = match state {
            Some(state) => restore(&self.store, &config, state)?,
            None => Vec::new(),
        };
        Ok(KeyRing {
            inner: Arc::new(RingInner {
                store: self.store,
                clock: self.clock,
                config,
                keys: RwLock::new(keys),
            }),
        })
    }
}

/// The ring's versions from `state`, each checked against the store: a published key
/// must still be there with the same kid (a retired one may have been destroyed).
fn restore<S: KeyStore>(
    store: &S,
    config: &KeyRingConfig,
    state: State,
) -> Result<Vec<RingKey>, Error> {
    if state.name != config.name || state.algorithm != config.algorithm.as_str() {
        return Err(Error::config(
            "state",
            format!(
                "the state is for {}/{}, not {}/{}",
                state.name, state.algorithm, config.name, config.algorithm
            ),
        ));
    }
    let mut keys = Vec::new();
    for entry in state.keys {
        let key = KeyRef::new(&config.name, entry.version);
        let info = match store.info(&key) {
            Ok(info) => info,
            Err(Error::KeyNotFound { .. }) if !entry.state.is_published() => continue,
            Err(e) => return Err(e),
        };
        if info.jwk.kid != entry.kid {
            return Err(Error::config(
                "state",
                format!(
                    "key {key} in the store has kid {} but the state says {}",
                    info.jwk.kid, entry.kid
                ),
            ));
        }
        keys.push(RingKey {
            info,
            state: entry.state,
        });
    }
    Ok(keys)
}

/// One version of the ring and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingKey {
    /// Key, algorithm and JWK.
    pub info: KeyInfo,
    /// Lifecycle state.
    pub state: KeyState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StateEntry {
    version: u32,
    kid: String,
    #[serde(flatten)]
    state: KeyState,
}

/// A key ring's persisted lifecycle: each version's kid and state. Taken with
/// [`KeyRing::state`], given back with [`KeyRingBuilder::state`]; the state file
/// holds it as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
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
    Error::StateFile {
        path: path.display().to_string(),
        source: e.into(),
    }
}

impl<S: KeyStore> KeyRing<S> {
    /// A builder over `store`: name, algorithm and token lifetime are required;
    /// 60 s verifier leeway, no state file, the system clock.
    pub fn builder(store: S) -> KeyRingBuilder<S> {
        KeyRingBuilder {
            store,
            name: None,
            algorithm: None,
            max_token_lifetime: None,
            verifier_leeway: Duration::from_secs(60),
            state_file: None,
            state: None,
            clock: Arc::new(SystemClock),
        }
    }

    /// The lifecycle now, to persist elsewhere and restore with
    /// [`KeyRingBuilder::state`].
    pub fn state(&self) -> State {
        self.state_of(&self.read())
    }

    fn state_of(&self, keys: &[RingKey]) -> State {
        State {
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
        }
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

    /// Writes the state file atomically and durably (temp file in the same directory,
    /// fsync, rename, fsync of the directory: without the last, a power cut can bring
    /// back the previous file, and with it a previous active key).
    fn save(&self, keys: &[RingKey]) -> Result<(), Error> {
        let Some(path) = &self.inner.config.state_file else {
            return Ok(());
        };
        let doc = self.state_of(keys);
        let json = serde_json::to_vec_pretty(&doc).map_err(|e| state_err(path, e))?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| state_err(path, e))?;
        tmp.write_all(&json).map_err(|e| state_err(path, e))?;
        tmp.as_file().sync_all().map_err(|e| state_err(path, e))?;
        tmp.persist(path).map_err(|e| state_err(path, e.error))?;
        #[cfg(unix)]
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| state_err(path, e))?;
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
