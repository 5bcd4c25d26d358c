//! `Pkcs11Store`: private keys generated and kept on a PKCS#11 token (the token
//! operations behind each `KeyStore` method are in `token.rs`).

mod token;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};
use cryptoki::slot::Slot;
use palisade_core_traits::JwsAlgorithm;
use ring::rand::SystemRandom;

use super::mechanisms::{Mechs, SignInput};
use super::module::{find_slot, initialize, load_module, token_lock};
use super::objects::*;
use super::pkcs8;
use super::pool::{ATTEMPTS, Failure, Inner, Pool, classify};
use super::{TokenSelector, ck};
use crate::jwk::PublicKey;
use crate::mldsa;
use crate::soft::RingKey;
use crate::{Error, KeyInfo, KeyRef, KeyStore, Pin, telemetry, validate_name};

/// What the store had to do to keep signing: counters since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Signatures made.
    pub signatures: u64,
    /// Operations (signatures, key management) that failed with a backend error.
    pub errors: u64,
    /// Sessions opened for the signing pool.
    pub sessions_opened: u64,
    /// Private-key handles looked up again after `CKR_*_HANDLE_INVALID`.
    pub handles_refound: u64,
    /// Times every session was replaced (closed underneath, library re-initialised).
    pub session_recoveries: u64,
    /// Logins repeated because the token had logged out.
    pub relogins: u64,
    /// `C_Login` calls the token refused for the PIN (at most one: the PIN is not
    /// offered again, see [`Error::PinRefused`]).
    pub pin_refusals: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) signatures: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) sessions_opened: AtomicU64,
    pub(super) handles_refound: AtomicU64,
    pub(super) session_recoveries: AtomicU64,
    pub(super) relogins: AtomicU64,
    pub(super) pin_refusals: AtomicU64,
}

/// Default bound on signing sessions per store.
pub const DEFAULT_MAX_SESSIONS: NonZeroUsize = NonZeroUsize::new(32).expect("non-zero");

/// Where the module comes from.
enum Module {
    Path(PathBuf),
    Context(Pkcs11),
}

/// Builds a [`Pkcs11Store`]: every setter is infallible; [`build`](Self::build)
/// loads the module if needed, finds the token, logs in and reads the key list.
#[must_use]
pub struct Pkcs11StoreBuilder {
    module: Option<Module>,
    token: Option<String>,
    pin: Option<Pin>,
    max_sessions: NonZeroUsize,
}

impl std::fmt::Debug for Pkcs11StoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token may be a URI: it is only shown by the selector it parses to.
        f.debug_struct("Pkcs11StoreBuilder")
            .field("pin", &self.pin)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

impl Pkcs11StoreBuilder {
    /// The vendor's PKCS#11 module, loaded and initialised once per process (see
    /// [`load_module`]). Either this or [`context`](Self::context) is required.
    pub fn module(mut self, path: impl Into<PathBuf>) -> Self {
        self.module = Some(Module::Path(path.into()));
        self
    }

    /// A context the application already has (initialised or not;
    /// `CKR_CRYPTOKI_ALREADY_INITIALIZED` is fine).
    pub fn context(mut self, pkcs11: Pkcs11) -> Self {
        self.module = Some(Module::Context(pkcs11));
        self
    }

    /// The token: its label (at most 32 bytes) or an RFC 7512 `pkcs11:` URI (see
    /// [`TokenSelector::parse`]; never a slot number). Required.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The user PIN (required). Zeroized; never printed.
    pub fn pin(mut self, pin: Pin) -> Self {
        self.pin = Some(pin);
        self
    }

    /// Bounds the signing sessions this store opens (default
    /// [`DEFAULT_MAX_SESSIONS`]); signers beyond it wait for a free session. A
    /// token's own `CKR_SESSION_COUNT` also makes signers wait.
    pub fn max_sessions(mut self, max: NonZeroUsize) -> Self {
        self.max_sessions = max;
        self
    }

    /// The store. [`Error::InvalidConfig`] names what is missing or wrong (`module`,
    /// `token`, `pin`, or a token no initialised slot has); [`Error::Crypto`] is a
    /// module that would not load or a login that failed.
    pub fn build(self) -> Result<Pkcs11Store, Error> {
        let missing = |field: &'static str, what: &str| Error::InvalidConfig {
            field,
            reason: format!("a Pkcs11Store needs {what}"),
        };
        let module = self
            .module
            .ok_or_else(|| missing("module", "a module path or a context"))?;
        let token = self
            .token
            .ok_or_else(|| missing("token", "a token label or pkcs11: URI"))?;
        let pin = self.pin.ok_or_else(|| missing("pin", "the user PIN"))?;
        // Parsed before the module is touched: a bad URI costs no I/O.
        let selector = TokenSelector::parse(&token)?;
        let pkcs11 = match module {
            Module::Path(path) => load_module(&path)?,
            Module::Context(ctx) => ctx,
        };
        Pkcs11Store::open(pkcs11, selector, pin, self.max_sessions.get())
    }
}

/// Signing keys on a PKCS#11 token (an HSM, a cloud HSM, SoftHSM2).
///
/// * Private keys are generated on the token with `CKA_TOKEN`, `CKA_PRIVATE`,
///   `CKA_SENSITIVE` true and `CKA_EXTRACTABLE` false; they never leave it.
/// * Key `name/version` is the object pair labelled (`CKA_LABEL` and `CKA_ID`)
///   `name/version/alg`, e.g. `jwt/2/ES256`.
/// * One keeper session holds the login; signatures run on a pool of sessions, so
///   N threads sign in parallel. Handles are cached and found again on
///   `CKR_*_HANDLE_INVALID`; sessions closed or logged out underneath are replaced.
/// * Mechanisms are read from the token (`C_GetMechanismList`): ECDSA is signed as
///   `CKM_ECDSA` over a digest computed here; RS256 uses `CKM_SHA256_RSA_PKCS` or
///   `CKM_RSA_PKCS` with a DigestInfo; PS256 `CKM_SHA256_RSA_PKCS_PSS` or
///   `CKM_RSA_PKCS_PSS`; EdDSA `CKM_EDDSA`; ML-DSA-44/65/87 (PKCS#11 3.2) are
///   generated with `CKM_ML_DSA_KEY_PAIR_GEN` and `CKA_PARAMETER_SET` and signed
///   with `CKM_ML_DSA`, pure, empty context. A missing mechanism is
///   [`Error::UnsupportedAlgorithm`].
///
/// Cloning is cheap and shares the sessions.
#[derive(Clone)]
pub struct Pkcs11Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Pkcs11Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Store")
            .field("token", &self.inner.token_label)
            .field("slot", &self.inner.slot())
            .field("pin", &self.inner.pin)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Store {
    /// A builder: module (or context), token and PIN are required; at most
    /// [`DEFAULT_MAX_SESSIONS`] signing sessions.
    pub fn builder() -> Pkcs11StoreBuilder {
        Pkcs11StoreBuilder {
            module: None,
            token: None,
            pin: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }

    fn open(
        pkcs11: Pkcs11,
        selector: TokenSelector,
        pin: Pin,
        max_sessions: usize,
    ) -> Result<Self, Error> {
        let _span = tracing::debug_span!("hsm_keys.open").entered();
        initialize(&pkcs11)?;
        let (slot, token_label) = find_slot(&pkcs11, &selector)?;
        let admin = token_lock(&token_label);
        let mechs = Mechs::from_list(
            &pkcs11
                .get_mechanism_list(slot)
                .map_err(|e| ck("C_GetMechanismList", e))?,
        );
        tracing::debug!(token = %token_label, ?mechs, "opened PKCS#11 token");
        let inner = Inner {
            pkcs11,
            selector,
            slot: RwLock::new(slot),
            token_label,
            pin,
            mechs,
            keeper: Mutex::new(None),
            pool: Mutex::new(Pool::default()),
            returned: Condvar::new(),
            max_sessions,
            epoch: AtomicU64::new(0),
            infos: RwLock::new(BTreeMap::new()),
            handles: RwLock::new(HashMap::new()),
            rng: SystemRandom::new(),
            admin,
            counters: Counters::default(),
        };
        {
            let mut keeper = inner.keeper.lock().unwrap_or_else(|p| p.into_inner());
            *keeper = Some(inner.new_keeper()?);
        }
        let store = Pkcs11Store {
            inner: Arc::new(inner),
        };
        store.refresh()?;
        Ok(store)
    }

    /// The label of the token in use.
    pub fn token_label(&self) -> &str {
        &self.inner.token_label
    }

    /// The slot the token was found in (for diagnostics; never chosen by number).
    pub fn slot(&self) -> Slot {
        self.inner.slot()
    }

    /// Counters of signatures, errors, sessions opened and recoveries made.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            signatures: c.signatures.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            sessions_opened: c.sessions_opened.load(Ordering::Relaxed),
            handles_refound: c.handles_refound.load(Ordering::Relaxed),
            session_recoveries: c.session_recoveries.load(Ordering::Relaxed),
            relogins: c.relogins.load(Ordering::Relaxed),
            pin_refusals: c.pin_refusals.load(Ordering::Relaxed),
        }
    }

    /// Whether the token offers the mechanisms to generate and sign `alg` keys.
    pub fn supports(&self, alg: JwsAlgorithm) -> bool {
        self.inner.mechs.generate_gap(alg).is_none()
    }

    /// Imports an ML-DSA key from its 32-byte seed (FIPS 204 ξ, RFC 9964 `priv`) as
    /// `name/(latest version + 1)`: the token derives the key from `CKA_SEED`, so it
    /// is the key (and `kid`) every implementation derives from that seed. A token
    /// without `CKM_ML_DSA`, or one that refuses the seed object, is
    /// [`Error::UnsupportedAlgorithm`]. Wipe the caller's copy of the seed after the
    /// call.
    pub fn import_ml_dsa_seed(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        seed: &[u8],
    ) -> Result<KeyInfo, Error> {
        let _span = tracing::debug_span!("hsm_keys.import", name, alg = %algorithm).entered();
        self.observe(self.import_seed_on_token(name, algorithm, seed))
    }

    /// Re-reads the key list from the token.
    fn refresh(&self) -> Result<Vec<KeyInfo>, Error> {
        let _span =
            tracing::debug_span!("hsm_keys.refresh", token = %self.inner.token_label).entered();
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh_locked()
    }

    /// [`refresh`](Self::refresh) with the admin lock already held.
    fn refresh_locked(&self) -> Result<Vec<KeyInfo>, Error> {
        let inner = &self.inner;
        let found = inner.with_keeper(|s| {
            // Logged out, a token lists no private object at all (no error): the keys
            // would look gone, and a new one would take version 1 again. Log in first.
            if !matches!(
                s.get_session_info()?.session_state(),
                SessionState::RoUser | SessionState::RwUser
            ) {
                return Err(CkError::Pkcs11(
                    RvError::UserNotLoggedIn,
                    cryptoki::context::Function::FindObjects,
                ));
            }
            let mut out = Vec::new();
            for handle in s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])? {
                // Another process or store may be destroying this object right now.
                let Ok(attrs) = s.get_attributes(handle, &[AttributeType::Label]) else {
                    continue;
                };
                let Some(Attribute::Label(label)) = attrs.into_iter().next() else {
                    continue;
                };
                if let Some((key, alg)) = parse_label(&label) {
                    out.push((key, alg, label, handle));
                }
            }
            Ok(out)
        })?;
        let epoch = inner.epoch.load(Ordering::Acquire);
        let mut infos = BTreeMap::new();
        let mut handles = HashMap::new();
        for (key, alg, label, handle) in found {
            let known = inner
                .infos
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .cloned();
            let info = match known {
                Some(i) => i,
                None => match inner.with_keeper(|s| read_public(s, alg, &label)) {
                    Ok(public) => match public.to_jwk() {
                        Ok(jwk) => KeyInfo {
                            key: key.clone(),
                            algorithm: alg,
                            jwk,
                        },
                        // Another application's object under a label of our form, whose
                        // public half is not what its algorithm says: not ours, and no
                        // reason to fail the whole listing (and every `generate`).
                        Err(e) => {
                            tracing::warn!(key = %key, error = %e, "object whose public key does not fit its label left out of the list");
                            continue;
                        }
                    },
                    // Half-destroyed (or half-created elsewhere): not a key yet.
                    Err(e) => {
                        tracing::debug!(key = %key, error = %e, "key without a public half left out of the list");
                        continue;
                    }
                },
            };
            handles.insert(key.clone(), (epoch, handle));
            infos.insert(key, info);
        }
        let list = infos.values().cloned().collect();
        *inner.infos.write().unwrap_or_else(|p| p.into_inner()) = infos;
        *inner.handles.write().unwrap_or_else(|p| p.into_inner()) = handles;
        Ok(list)
    }

    fn next_version(&self, name: &str) -> Result<u32, Error> {
        Ok(self
            .refresh_locked()?
            .iter()
            .filter(|k| k.key.name == name)
            .map(|k| k.key.version)
            .max()
            .unwrap_or(0)
            + 1)
    }

    fn remember(&self, info: &KeyInfo) {
        self.inner
            .infos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.key.clone(), info.clone());
    }

    /// Finds the private key handle, from the cache or the token.
    fn handle(
        &self,
        key: &KeyRef,
        alg: JwsAlgorithm,
        session: &Session,
        epoch: u64,
    ) -> Result<ObjectHandle, CkError> {
        let cached = self
            .inner
            .handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied();
        if let Some((e, h)) = cached
            && e == epoch
        {
            return Ok(h);
        }
        let label = label(key, alg);
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.into_bytes()),
        ])?;
        let h = found.first().copied().ok_or(CkError::Pkcs11(
            RvError::KeyHandleInvalid,
            cryptoki::context::Function::FindObjects,
        ))?;
        self.inner
            .handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), (epoch, h));
        Ok(h)
    }
}

impl KeyStore for Pkcs11Store {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn generate(&self, name: &str, algorithm: JwsAlgorithm) -> Result<KeyInfo, Error> {
        let _span = tracing::debug_span!("hsm_keys.generate", name, alg = %algorithm).entered();
        self.observe(self.generate_on_token(name, algorithm))
    }

    fn import_pkcs8(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        pkcs8_der: &[u8],
    ) -> Result<KeyInfo, Error> {
        let _span = tracing::debug_span!("hsm_keys.import", name, alg = %algorithm).entered();
        self.observe(self.import_on_token(name, algorithm, pkcs8_der))
    }

    fn sign(&self, key: &KeyRef, message: &[u8]) -> Result<Vec<u8>, Error> {
        let _span = tracing::debug_span!("hsm_keys.sign", key = %key).entered();
        let alg = self.observe(self.algorithm_of(key))?;
        let r = self.observe(self.sign_on_token(key, alg, message));
        if r.is_ok() {
            self.inner
                .counters
                .signatures
                .fetch_add(1, Ordering::Relaxed);
        }
        telemetry::sign("pkcs11", alg, r.is_ok());
        r
    }

    fn info(&self, key: &KeyRef) -> Result<KeyInfo, Error> {
        if let Some(i) = self
            .inner
            .infos
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(i.clone());
        }
        self.refresh()?
            .into_iter()
            .find(|i| &i.key == key)
            .ok_or_else(|| Error::not_found(key))
    }

    fn list(&self) -> Result<Vec<KeyInfo>, Error> {
        let _span = tracing::debug_span!("hsm_keys.list").entered();
        self.observe(self.refresh())
    }

    fn destroy(&self, key: &KeyRef) -> Result<(), Error> {
        let _span = tracing::debug_span!("hsm_keys.destroy", key = %key).entered();
        self.observe(self.destroy_on_token(key))
    }
}
