//! `Pkcs11Store`: private keys generated and kept on a PKCS#11 token.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use palisade_core_traits::JwsAlgorithm;
use ring::digest;
use ring::rand::SystemRandom;

use crate::jwk::PublicKey;
use crate::pkcs8;
use crate::soft::RingKey;
use crate::{Error, KeyInfo, KeyRef, KeyStore, Pin, validate_name};

pub(crate) const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
pub(crate) const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER `DigestInfo` prefix for SHA-256 (RFC 8017 §9.2 note 1), for `CKM_RSA_PKCS`.
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// Modulus size of generated RSA keys.
const RSA_BITS: u64 = 2048;
/// How often a signature is retried after recovering a session or handle.
const ATTEMPTS: usize = 3;

/// Which token to use: its label, or an RFC 7512 `pkcs11:` URI with `token=`
/// (and optionally `manufacturer=`, `model=`, `serial=`). Never a slot index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSelector {
    /// `CKA_LABEL` of the token (`token=` in a URI).
    pub token: Option<String>,
    /// `manufacturerID` of the token.
    pub manufacturer: Option<String>,
    /// `model` of the token.
    pub model: Option<String>,
    /// `serialNumber` of the token.
    pub serial: Option<String>,
}

/// RFC 7512 path attributes. Only these names are ever echoed in an error: a URI may
/// carry a PIN (`pin-value`), so neither values nor unknown names are.
const PATH_ATTRIBUTES: [&str; 13] = [
    "token",
    "manufacturer",
    "serial",
    "model",
    "library-manufacturer",
    "library-description",
    "library-version",
    "object",
    "type",
    "id",
    "slot-description",
    "slot-manufacturer",
    "slot-id",
];
/// RFC 7512 query attributes.
const QUERY_ATTRIBUTES: [&str; 4] = ["pin-source", "pin-value", "module-name", "module-path"];
/// `CK_TOKEN_INFO.label` is 32 bytes: a longer label matches no token.
const MAX_LABEL_BYTES: usize = 32;

fn uri_error(what: String) -> Error {
    Error::Config(format!("pkcs11 URI refused: {what}"))
}

/// The error for a query attribute (or one misplaced in the path): named only if it
/// is one of RFC 7512's, and never with its value.
fn query_attribute_error(name: &str, position: usize) -> Error {
    uri_error(match QUERY_ATTRIBUTES.iter().find(|n| **n == name) {
        Some(&n @ ("pin-value" | "pin-source")) => format!(
            "attribute {n} is not accepted: give the PIN as a Pin (configuration or \
             environment variable), never in the URI"
        ),
        Some(n) => format!("attribute {n} is not accepted: the module is given to load()"),
        None => format!("query attribute #{position} is not an RFC 7512 attribute"),
    })
}

impl TokenSelector {
    /// Parses a token label, or a `pkcs11:` URI (RFC 7512, scheme in any case).
    ///
    /// Path attributes `object`, `type`, `id` and `library-*` are accepted and
    /// ignored (keys are named by this crate); `slot-*` is refused (slot numbers are
    /// not stable), as are unknown or repeated attributes and any query attribute
    /// (`pin-value`/`pin-source`: the PIN is a [`Pin`]; `module-*`: the module is
    /// given to [`Pkcs11Store::load`]). Errors name the attribute only if it is one
    /// of RFC 7512's, or its position, and never a value or the URI: a URI may
    /// carry a PIN.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let Some(rest) = s
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &s[7..])
        else {
            if s.is_empty() {
                return Err(Error::Config("empty token label".into()));
            }
            if s.len() > MAX_LABEL_BYTES {
                return Err(Error::Config(format!(
                    "token label of {} bytes: PKCS#11 labels have at most {MAX_LABEL_BYTES}",
                    s.len()
                )));
            }
            return Ok(TokenSelector {
                token: Some(s.to_owned()),
                ..Default::default()
            });
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut sel = TokenSelector::default();
        let mut seen: Vec<&'static str> = Vec::new();
        for (i, attr) in path.split(';').enumerate() {
            let position = i + 1;
            if attr.is_empty() {
                continue;
            }
            let Some((k, v)) = attr.split_once('=') else {
                return Err(uri_error(format!("path attribute #{position} has no '='")));
            };
            let Some(&name) = PATH_ATTRIBUTES.iter().find(|n| **n == k) else {
                if QUERY_ATTRIBUTES.contains(&k) {
                    return Err(query_attribute_error(k, position));
                }
                return Err(uri_error(format!(
                    "path attribute #{position} is not an RFC 7512 attribute"
                )));
            };
            if seen.contains(&name) {
                return Err(uri_error(format!("attribute {name} appears twice")));
            }
            seen.push(name);
            let v = percent_decode(v).ok_or_else(|| {
                uri_error(format!(
                    "the value of attribute {name} is not valid percent-encoded UTF-8"
                ))
            })?;
            match name {
                "token" => sel.token = Some(v),
                "manufacturer" => sel.manufacturer = Some(v),
                "model" => sel.model = Some(v),
                "serial" => sel.serial = Some(v),
                "slot-id" | "slot-description" | "slot-manufacturer" => {
                    return Err(uri_error(format!(
                        "attribute {name} is not accepted: choose the token by token= label"
                    )));
                }
                _ => {}
            }
        }
        if let Some((i, attr)) = query.split('&').enumerate().find(|(_, a)| !a.is_empty()) {
            let name = attr.split_once('=').map_or(attr, |(k, _)| k);
            return Err(query_attribute_error(name, i + 1));
        }
        if sel.token.is_none() && sel.serial.is_none() {
            return Err(uri_error("it names no token= or serial=".into()));
        }
        Ok(sel)
    }

    fn matches(&self, info: &cryptoki::slot::TokenInfo) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w == have.trim_end())
        };
        eq(&self.token, info.label())
            && eq(&self.manufacturer, info.manufacturer_id())
            && eq(&self.model, info.model())
            && eq(&self.serial, info.serial_number())
    }
}

/// RFC 3986 percent-decoding into UTF-8; `None` if it is malformed.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None; // from_str_radix alone would take "+f"
            }
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Loads a PKCS#11 module once per process and initialises it once; later calls
/// for the same path share the context. `CKR_CRYPTOKI_ALREADY_INITIALIZED` (someone
/// else in the process initialised it) is fine.
pub fn load_module(path: &Path) -> Result<Pkcs11, Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| Error::Crypto {
        operation: "load PKCS#11 module",
        source: Some(Box::new(e)),
    })?;
    initialize(&ctx)?;
    modules.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

fn initialize(ctx: &Pkcs11) -> Result<(), Error> {
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(ck("C_Initialize", e)),
    }
}

/// The one slot whose token matches `selector` (slot numbers may change when the
/// library is initialised again, so they are looked up, never remembered for good).
fn find_slot(pkcs11: &Pkcs11, selector: &TokenSelector) -> Result<(Slot, String), Error> {
    let slots = pkcs11
        .get_slots_with_initialized_token()
        .map_err(|e| ck("C_GetSlotList", e))?;
    let mut found = Vec::new();
    for slot in slots {
        let info = pkcs11
            .get_token_info(slot)
            .map_err(|e| ck("C_GetTokenInfo", e))?;
        if selector.matches(&info) {
            found.push((slot, info.label().trim_end().to_owned()));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::Config(format!(
            "no initialised token matches {selector:?}"
        ))),
        n => Err(Error::Config(format!(
            "{n} tokens match {selector:?}; be more specific"
        ))),
    }
}

/// The process-wide key-management lock of a token.
fn token_lock(label: &str) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Arc::clone(locks.entry(label.to_owned()).or_default())
}

fn ck(operation: &'static str, e: CkError) -> Error {
    Error::Crypto {
        operation,
        source: Some(Box::new(e)),
    }
}

/// What a failed call says about our state.
enum Failure {
    /// The object handle is stale: find the key again.
    Handle,
    /// The session (or the whole library state) is gone: new sessions, new login.
    Session,
    /// The token logged out: log in again.
    Login,
    /// Anything else: give up.
    Other,
}

fn classify(e: &CkError) -> Failure {
    match e {
        CkError::Pkcs11(rv, _) => match rv {
            RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid => Failure::Handle,
            RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::CryptokiNotInitialized
            | RvError::SlotIdInvalid
            | RvError::DeviceRemoved
            | RvError::TokenNotPresent => Failure::Session,
            RvError::UserNotLoggedIn => Failure::Login,
            _ => Failure::Other,
        },
        _ => Failure::Other,
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Mechs {
    ecdsa: bool,
    ec_gen: bool,
    eddsa: bool,
    ed_gen: bool,
    rsa_gen: bool,
    rsa_pkcs: bool,
    sha256_rsa_pkcs: bool,
    rsa_pss: bool,
    sha256_rsa_pss: bool,
}

impl Mechs {
    fn from_list(list: &[MechanismType]) -> Self {
        let has = |m: MechanismType| list.contains(&m);
        Mechs {
            ecdsa: has(MechanismType::ECDSA),
            ec_gen: has(MechanismType::ECC_KEY_PAIR_GEN),
            eddsa: has(MechanismType::EDDSA),
            ed_gen: has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN),
            rsa_gen: has(MechanismType::RSA_PKCS_KEY_PAIR_GEN),
            rsa_pkcs: has(MechanismType::RSA_PKCS),
            sha256_rsa_pkcs: has(MechanismType::SHA256_RSA_PKCS),
            rsa_pss: has(MechanismType::RSA_PKCS_PSS),
            sha256_rsa_pss: has(MechanismType::SHA256_RSA_PKCS_PSS),
        }
    }

    /// Why the token cannot sign with `alg`, if it cannot.
    fn sign_gap(&self, alg: JwsAlgorithm) -> Option<&'static str> {
        match alg {
            JwsAlgorithm::ES256 | JwsAlgorithm::ES384 => (!self.ecdsa).then_some("no CKM_ECDSA"),
            JwsAlgorithm::EdDSA => (!self.eddsa).then_some("no CKM_EDDSA"),
            JwsAlgorithm::RS256 => (!self.sha256_rsa_pkcs && !self.rsa_pkcs)
                .then_some("no CKM_SHA256_RSA_PKCS or CKM_RSA_PKCS"),
            JwsAlgorithm::PS256 => (!self.sha256_rsa_pss && !self.rsa_pss)
                .then_some("no CKM_SHA256_RSA_PKCS_PSS or CKM_RSA_PKCS_PSS"),
            _ => Some("algorithm not supported by this crate"),
        }
    }

    fn generate_gap(&self, alg: JwsAlgorithm) -> Option<&'static str> {
        let gen_missing = match alg {
            JwsAlgorithm::ES256 | JwsAlgorithm::ES384 => {
                (!self.ec_gen).then_some("no CKM_EC_KEY_PAIR_GEN")
            }
            JwsAlgorithm::EdDSA => (!self.ed_gen).then_some("no CKM_EC_EDWARDS_KEY_PAIR_GEN"),
            _ => (!self.rsa_gen).then_some("no CKM_RSA_PKCS_KEY_PAIR_GEN"),
        };
        self.sign_gap(alg).or(gen_missing)
    }
}

const PSS_SHA256: PkcsPssParams = PkcsPssParams {
    hash_alg: MechanismType::SHA256,
    mgf: PkcsMgfType::MGF1_SHA256,
    s_len: cryptoki::types::Ulong::new(32),
};

/// What the store had to do to keep signing: counters since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Pkcs11Stats {
    /// Sessions opened for the signing pool.
    pub sessions_opened: u64,
    /// Private-key handles looked up again after `CKR_*_HANDLE_INVALID`.
    pub handles_refound: u64,
    /// Times every session was replaced (closed underneath, library re-initialised).
    pub session_recoveries: u64,
    /// Logins repeated because the token had logged out.
    pub relogins: u64,
}

#[derive(Default)]
struct Counters {
    sessions_opened: AtomicU64,
    handles_refound: AtomicU64,
    session_recoveries: AtomicU64,
    relogins: AtomicU64,
}

/// Default bound on signing sessions per store.
pub const DEFAULT_MAX_SESSIONS: usize = 32;

/// The signing sessions of the current epoch.
#[derive(Default)]
struct Pool {
    idle: Vec<Idle>,
    /// Sessions of the current epoch, idle or lent out.
    open: usize,
}

/// An idle session and the recovery epoch it was opened in.
struct Idle {
    epoch: u64,
    session: Session,
}

struct Inner {
    pkcs11: Pkcs11,
    selector: TokenSelector,
    /// Found by `selector`; looked up again when sessions are lost.
    slot: RwLock<Slot>,
    token_label: String,
    pin: Pin,
    mechs: Mechs,
    /// Read-write session that holds the login and does the rare admin work
    /// (generate, import, list, destroy). Signing never waits for it.
    keeper: Mutex<Option<Session>>,
    /// Idle read-only sessions; a signer pops one, signs, and pushes it back.
    pool: Mutex<Pool>,
    /// Signalled when a session is returned or the pool is reset.
    returned: Condvar,
    /// Upper bound on pool sessions (HSMs limit sessions per token).
    max_sessions: AtomicUsize,
    /// Bumped when every session had to be replaced; stale sessions are dropped
    /// without `C_CloseSession` (their handle numbers may belong to new sessions).
    epoch: AtomicU64,
    /// Public facts about each key (stable across sessions).
    infos: RwLock<BTreeMap<KeyRef, KeyInfo>>,
    /// Private-key object handles, valid within one epoch.
    handles: RwLock<HashMap<KeyRef, (u64, ObjectHandle)>>,
    rng: SystemRandom,
    /// Serialises key management (generate, import, list, destroy) on this token
    /// across every store in the process: versions are assigned once, and SoftHSM
    /// fails concurrent object creation with CKR_GENERAL_ERROR (SoftHSMv2#573).
    /// Signing never takes it.
    admin: Arc<Mutex<()>>,
    counters: Counters,
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
///   `CKM_RSA_PKCS_PSS`; EdDSA `CKM_EDDSA`. A missing mechanism is
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
    /// Loads `module` (once per process, see [`load_module`]) and opens the token
    /// chosen by `token` (a label or a `pkcs11:` URI).
    pub fn load(module: impl AsRef<Path>, token: &str, pin: Pin) -> Result<Self, Error> {
        let ctx = load_module(module.as_ref())?;
        Self::open(ctx, token, pin)
    }

    /// Opens the token chosen by `token` (a label or a `pkcs11:` URI) through a
    /// context the application already has (initialised or not).
    pub fn open(pkcs11: Pkcs11, token: &str, pin: Pin) -> Result<Self, Error> {
        initialize(&pkcs11)?;
        let selector = TokenSelector::parse(token)?;
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
            max_sessions: AtomicUsize::new(DEFAULT_MAX_SESSIONS),
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

    /// Bounds the signing sessions this store opens (default
    /// [`DEFAULT_MAX_SESSIONS`], at least 1); signers beyond it wait for a free
    /// session. A token's own `CKR_SESSION_COUNT` also makes signers wait.
    pub fn with_max_sessions(self, max: usize) -> Self {
        self.inner.max_sessions.store(max.max(1), Ordering::Relaxed);
        self
    }

    /// Counters of sessions opened and recoveries made.
    pub fn stats(&self) -> Pkcs11Stats {
        let c = &self.inner.counters;
        Pkcs11Stats {
            sessions_opened: c.sessions_opened.load(Ordering::Relaxed),
            handles_refound: c.handles_refound.load(Ordering::Relaxed),
            session_recoveries: c.session_recoveries.load(Ordering::Relaxed),
            relogins: c.relogins.load(Ordering::Relaxed),
        }
    }

    /// Whether the token offers the mechanisms to generate and sign `alg` keys.
    pub fn supports(&self, alg: JwsAlgorithm) -> bool {
        self.inner.mechs.generate_gap(alg).is_none()
    }

    /// Re-reads the key list from the token.
    fn refresh(&self) -> Result<Vec<KeyInfo>, Error> {
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh_locked()
    }

    /// [`refresh`](Self::refresh) with the admin lock already held.
    fn refresh_locked(&self) -> Result<Vec<KeyInfo>, Error> {
        let inner = &self.inner;
        let found = inner.with_keeper(|s| {
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
                    Ok(public) => KeyInfo {
                        key: key.clone(),
                        algorithm: alg,
                        jwk: public.to_jwk()?,
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

impl Inner {
    fn slot(&self) -> Slot {
        *self.slot.read().unwrap_or_else(|p| p.into_inner())
    }

    fn new_keeper(&self) -> Result<Session, Error> {
        let session = match self.pkcs11.open_rw_session_no_drop(self.slot()) {
            Err(CkError::Pkcs11(
                RvError::CryptokiNotInitialized | RvError::SlotIdInvalid | RvError::TokenNotPresent,
                _,
            )) => {
                // The library was finalized and initialised again (slot numbers may
                // have changed): initialise if needed and find the token by label.
                initialize(&self.pkcs11)?;
                let (slot, _) = find_slot(&self.pkcs11, &self.selector)?;
                *self.slot.write().unwrap_or_else(|p| p.into_inner()) = slot;
                self.pkcs11.open_rw_session_no_drop(slot)
            }
            other => other,
        }
        .map_err(|e| ck("C_OpenSession", e))?;
        self.login(&session)?;
        Ok(session)
    }

    fn login(&self, session: &Session) -> Result<(), Error> {
        let pin = AuthPin::from(self.pin.expose());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(ck("C_Login", e)),
        }
    }

    /// Runs admin work on the keeper session, recovering it once if it died.
    fn with_keeper<T>(&self, f: impl Fn(&Session) -> Result<T, CkError>) -> Result<T, Error> {
        let mut keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..ATTEMPTS {
            let session = match keeper.as_ref() {
                Some(s) => s,
                None => keeper.insert(self.new_keeper()?),
            };
            match f(session) {
                Ok(v) => return Ok(v),
                Err(e) if attempt + 1 < ATTEMPTS => match classify(&e) {
                    Failure::Session => {
                        *keeper = None;
                        self.new_epoch();
                    }
                    Failure::Login => self.login(session)?,
                    Failure::Handle | Failure::Other => {
                        return Err(ck("PKCS#11 key management", e));
                    }
                },
                Err(e) => return Err(ck("PKCS#11 key management", e)),
            }
        }
        Err(Error::crypto("PKCS#11 key management"))
    }

    /// Every session is presumed dead: forget the idle ones and the handles.
    fn new_epoch(&self) {
        let new = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.counters
            .session_recoveries
            .fetch_add(1, Ordering::Relaxed);
        {
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            // Dropped without C_CloseSession (no-drop sessions): see `epoch`.
            pool.idle.clear();
            pool.open = 0;
        }
        self.returned.notify_all();
        tracing::warn!(token = %self.token_label, epoch = new, "PKCS#11 sessions lost; reopening");
    }

    /// Replaces the keeper if it is dead (and logs in again), then starts a new
    /// epoch if `seen` is still current.
    fn recover_sessions(&self, seen: u64) -> Result<(), Error> {
        let mut keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
        if self.epoch.load(Ordering::Acquire) != seen {
            return Ok(()); // another thread already recovered
        }
        let alive = keeper
            .as_ref()
            .is_some_and(|s| s.get_session_info().is_ok());
        if !alive {
            *keeper = Some(self.new_keeper()?);
        } else if let Some(s) = keeper.as_ref() {
            self.login(s)?;
        }
        self.new_epoch();
        Ok(())
    }

    fn relogin(&self) -> Result<(), Error> {
        self.counters.relogins.fetch_add(1, Ordering::Relaxed);
        let mut keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
        match keeper.as_ref() {
            Some(s) if s.get_session_info().is_ok() => self.login(s),
            _ => {
                *keeper = Some(self.new_keeper()?);
                Ok(())
            }
        }
    }

    /// Lends an idle session, opens one if under `max_sessions`, or waits for one.
    fn checkout(&self) -> Result<Idle, CkError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if let Some(s) = pool.idle.pop() {
                return Ok(s); // the pool only ever holds current-epoch sessions
            }
            if pool.open < self.max_sessions.load(Ordering::Relaxed) {
                pool.open += 1;
                drop(pool);
                match self.pkcs11.open_ro_session_no_drop(self.slot()) {
                    Ok(session) => {
                        self.counters
                            .sessions_opened
                            .fetch_add(1, Ordering::Relaxed);
                        return Ok(Idle { epoch, session });
                    }
                    Err(e) => {
                        pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                        if self.epoch.load(Ordering::Acquire) == epoch {
                            pool.open -= 1;
                        }
                        // The token's own session limit: wait for one of ours.
                        let wait =
                            matches!(e, CkError::Pkcs11(RvError::SessionCount, _)) && pool.open > 0;
                        if !wait {
                            return Err(e);
                        }
                    }
                }
            }
            // Bounded wait, so a lost wake-up costs at most a second.
            pool = self
                .returned
                .wait_timeout(pool, std::time::Duration::from_secs(1))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Returns a working session to the pool.
    fn checkin(&self, s: Idle) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if s.epoch == self.epoch.load(Ordering::Acquire) {
            pool.idle.push(s);
            drop(pool);
            self.returned.notify_one();
        }
    }

    /// Forgets a dead session (without `C_CloseSession`) and frees its slot.
    fn discard(&self, s: Idle) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if s.epoch == self.epoch.load(Ordering::Acquire) {
            pool.open = pool.open.saturating_sub(1);
        }
        drop(pool);
        self.returned.notify_one();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let epoch = *self.epoch.get_mut();
        let pool = std::mem::take(self.pool.get_mut().unwrap_or_else(|p| p.into_inner()));
        for s in pool.idle.into_iter().filter(|s| s.epoch == epoch) {
            let _ = s.session.close();
        }
        // The keeper is closed without C_Logout: the login belongs to the whole
        // application, which may have other sessions open.
        if let Some(k) = self
            .keeper
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = k.close();
        }
    }
}

fn label(key: &KeyRef, alg: JwsAlgorithm) -> String {
    format!("{}/{}/{}", key.name, key.version, alg)
}

fn parse_label(label: &[u8]) -> Option<(KeyRef, JwsAlgorithm)> {
    let label = std::str::from_utf8(label).ok()?;
    let mut parts = label.splitn(3, '/');
    let name = parts.next()?;
    let version: u32 = parts.next()?.parse().ok()?;
    let alg = match parts.next()? {
        "ES256" => JwsAlgorithm::ES256,
        "ES384" => JwsAlgorithm::ES384,
        "RS256" => JwsAlgorithm::RS256,
        "PS256" => JwsAlgorithm::PS256,
        "EdDSA" => JwsAlgorithm::EdDSA,
        _ => return None,
    };
    validate_name(name).ok()?;
    Some((KeyRef::new(name, version), alg))
}

/// Strips the DER OCTET STRING around a `CKA_EC_POINT` if the token added one.
fn unwrap_point(raw: Vec<u8>, len: usize) -> Vec<u8> {
    if raw.len() == len + 2 && raw[0] == 0x04 && usize::from(raw[1]) == len {
        raw[2..].to_vec()
    } else {
        raw
    }
}

fn der_octet_string(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x04];
    if bytes.len() < 0x80 {
        out.push(bytes.len() as u8);
    } else {
        out.extend([0x81, bytes.len() as u8]);
    }
    out.extend_from_slice(bytes);
    out
}

fn read_public(s: &Session, alg: JwsAlgorithm, label: &[u8]) -> Result<PublicKey, CkError> {
    let handle = s
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(label.to_vec()),
        ])?
        .first()
        .copied()
        .ok_or(CkError::Pkcs11(
            RvError::KeyHandleInvalid,
            cryptoki::context::Function::FindObjects,
        ))?;
    read_public_handle(s, alg, handle)
}

fn read_public_handle(
    s: &Session,
    alg: JwsAlgorithm,
    handle: ObjectHandle,
) -> Result<PublicKey, CkError> {
    let attr_missing = || {
        CkError::Pkcs11(
            RvError::AttributeTypeInvalid,
            cryptoki::context::Function::GetAttributeValue,
        )
    };
    match alg {
        JwsAlgorithm::RS256 | JwsAlgorithm::PS256 => {
            let (mut n, mut e) = (None, None);
            for a in s.get_attributes(
                handle,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )? {
                match a {
                    Attribute::Modulus(v) => n = Some(v),
                    Attribute::PublicExponent(v) => e = Some(v),
                    _ => {}
                }
            }
            Ok(PublicKey::Rsa {
                alg,
                n: n.ok_or_else(attr_missing)?,
                e: e.ok_or_else(attr_missing)?,
            })
        }
        _ => {
            let point = s
                .get_attributes(handle, &[AttributeType::EcPoint])?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => Some(p),
                    _ => None,
                })
                .ok_or_else(attr_missing)?;
            Ok(match alg {
                JwsAlgorithm::EdDSA => PublicKey::Ed25519(unwrap_point(point, 32)),
                JwsAlgorithm::ES384 => PublicKey::Ec {
                    alg,
                    point: unwrap_point(point, 97),
                },
                _ => PublicKey::Ec {
                    alg,
                    point: unwrap_point(point, 65),
                },
            })
        }
    }
}

fn private_template(label: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Derive(false),
        Attribute::Label(label.to_vec()),
        Attribute::Id(label.to_vec()),
    ]
}

fn public_template(label: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Label(label.to_vec()),
        Attribute::Id(label.to_vec()),
    ]
}

fn ec_params(alg: JwsAlgorithm) -> &'static [u8] {
    match alg {
        JwsAlgorithm::ES384 => P384_OID,
        JwsAlgorithm::EdDSA => ED25519_OID,
        _ => P256_OID,
    }
}

impl KeyStore for Pkcs11Store {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }

    fn generate(&self, name: &str, algorithm: JwsAlgorithm) -> Result<KeyInfo, Error> {
        validate_name(name)?;
        if let Some(reason) = self.inner.mechs.generate_gap(algorithm) {
            return Err(Error::UnsupportedAlgorithm {
                backend: "pkcs11",
                operation: "generate",
                algorithm,
                reason: format!("token {:?} has {reason}", self.inner.token_label),
            });
        }
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let key = KeyRef::new(name, self.next_version(name)?);
        let label = label(&key, algorithm).into_bytes();
        let mut public = public_template(&label);
        let mechanism = match algorithm {
            JwsAlgorithm::RS256 | JwsAlgorithm::PS256 => {
                public.push(Attribute::ModulusBits(RSA_BITS.into()));
                public.push(Attribute::PublicExponent(vec![1, 0, 1]));
                Mechanism::RsaPkcsKeyPairGen
            }
            JwsAlgorithm::EdDSA => {
                public.push(Attribute::EcParams(ED25519_OID.to_vec()));
                Mechanism::EccEdwardsKeyPairGen
            }
            _ => {
                public.push(Attribute::EcParams(ec_params(algorithm).to_vec()));
                Mechanism::EccKeyPairGen
            }
        };
        let private = private_template(&label);
        let pk = self.inner.with_keeper(|s| {
            let (public, _) = s.generate_key_pair(&mechanism, &public, &private)?;
            read_public_handle(s, algorithm, public)
        })?;
        let info = KeyInfo {
            key,
            algorithm,
            jwk: pk.to_jwk()?,
        };
        self.remember(&info);
        tracing::info!(key = %info.key, alg = %algorithm, kid = %info.kid(), "generated key on token");
        Ok(info)
    }

    fn import_pkcs8(
        &self,
        name: &str,
        algorithm: JwsAlgorithm,
        pkcs8_der: &[u8],
    ) -> Result<KeyInfo, Error> {
        validate_name(name)?;
        if let Some(reason) = self.inner.mechs.sign_gap(algorithm) {
            return Err(Error::UnsupportedAlgorithm {
                backend: "pkcs11",
                operation: "import",
                algorithm,
                reason: format!("token {:?} has {reason}", self.inner.token_label),
            });
        }
        // ring validates the key and gives the public half; the private components
        // go from the caller's DER straight into a template that is wiped on drop.
        let public_key =
            RingKey::from_pkcs8(algorithm, pkcs8_der, &self.inner.rng)?.public_key(algorithm);
        let mut private = pkcs8::private_template(algorithm, pkcs8_der)?;
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let key = KeyRef::new(name, self.next_version(name)?);
        let label = label(&key, algorithm).into_bytes();
        private.0.extend(private_template(&label));
        private.0.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
        let mut public = public_template(&label);
        public.push(Attribute::Class(ObjectClass::PUBLIC_KEY));
        match &public_key {
            PublicKey::Rsa { n, e, .. } => public.extend([
                Attribute::KeyType(KeyType::RSA),
                Attribute::Modulus(n.clone()),
                Attribute::PublicExponent(e.clone()),
            ]),
            PublicKey::Ec { point, .. } => public.extend([
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(ec_params(algorithm).to_vec()),
                Attribute::EcPoint(der_octet_string(point)),
            ]),
            PublicKey::Ed25519(pk) => public.extend([
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::EcParams(ED25519_OID.to_vec()),
                Attribute::EcPoint(der_octet_string(pk)),
            ]),
        }
        self.inner.with_keeper(|s| {
            let priv_handle = s.create_object(&private.0)?;
            if let Err(e) = s.create_object(&public) {
                let _ = s.destroy_object(priv_handle);
                return Err(e);
            }
            Ok(())
        })?;
        let info = KeyInfo {
            key,
            algorithm,
            jwk: public_key.to_jwk()?,
        };
        self.remember(&info);
        Ok(info)
    }

    fn sign(&self, key: &KeyRef, message: &[u8]) -> Result<Vec<u8>, Error> {
        // Only the algorithm is needed here: no KeyInfo clone on the hot path.
        let cached_alg = self
            .inner
            .infos
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .map(|i| i.algorithm);
        let alg = match cached_alg {
            Some(alg) => alg,
            None => self.info(key)?.algorithm,
        };
        let m = &self.inner.mechs;
        if let Some(reason) = m.sign_gap(alg) {
            return Err(Error::UnsupportedAlgorithm {
                backend: "pkcs11",
                operation: "sign with",
                algorithm: alg,
                reason: format!("token {:?} has {reason}", self.inner.token_label),
            });
        }
        let prepared: Vec<u8>;
        let (mechanism, data): (Mechanism<'_>, &[u8]) = match alg {
            JwsAlgorithm::ES256 => {
                prepared = digest::digest(&digest::SHA256, message).as_ref().to_vec();
                (Mechanism::Ecdsa, &prepared)
            }
            JwsAlgorithm::ES384 => {
                prepared = digest::digest(&digest::SHA384, message).as_ref().to_vec();
                (Mechanism::Ecdsa, &prepared)
            }
            JwsAlgorithm::EdDSA => (
                Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                message,
            ),
            JwsAlgorithm::RS256 if m.sha256_rsa_pkcs => (Mechanism::Sha256RsaPkcs, message),
            JwsAlgorithm::RS256 => {
                let mut v = SHA256_DIGEST_INFO.to_vec();
                v.extend_from_slice(digest::digest(&digest::SHA256, message).as_ref());
                prepared = v;
                (Mechanism::RsaPkcs, &prepared)
            }
            JwsAlgorithm::PS256 if m.sha256_rsa_pss => {
                (Mechanism::Sha256RsaPkcsPss(PSS_SHA256), message)
            }
            _ => {
                prepared = digest::digest(&digest::SHA256, message).as_ref().to_vec();
                (Mechanism::RsaPkcsPss(PSS_SHA256), &prepared)
            }
        };
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let lease = match self.inner.checkout() {
                Ok(lease) => lease,
                Err(e) if matches!(classify(&e), Failure::Session) => {
                    self.inner
                        .recover_sessions(self.inner.epoch.load(Ordering::Acquire))?;
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(ck("C_OpenSession", e)),
            };
            let result = self
                .handle(key, alg, &lease.session, lease.epoch)
                .and_then(|h| lease.session.sign(&mechanism, h, data));
            match result {
                Ok(sig) => {
                    self.inner.checkin(lease);
                    return Ok(sig);
                }
                Err(e) => {
                    match classify(&e) {
                        Failure::Handle => {
                            // Stale handle, or private objects hidden because the
                            // token logged out: find it again after (re)login.
                            self.inner
                                .counters
                                .handles_refound
                                .fetch_add(1, Ordering::Relaxed);
                            self.inner
                                .handles
                                .write()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(key);
                            self.inner.checkin(lease);
                            self.inner.relogin()?;
                        }
                        Failure::Login => {
                            self.inner.checkin(lease);
                            self.inner.relogin()?;
                        }
                        Failure::Session => {
                            // Dropped without C_CloseSession (no-drop session).
                            let seen = lease.epoch;
                            self.inner.discard(lease);
                            self.inner.recover_sessions(seen)?;
                        }
                        Failure::Other => {
                            self.inner.checkin(lease);
                            return Err(ck("C_Sign", e));
                        }
                    }
                    last = Some(e);
                }
            }
        }
        Err(match last {
            Some(e) => ck("C_Sign", e),
            None => Error::crypto("C_Sign"),
        })
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
        self.refresh()
    }

    fn destroy(&self, key: &KeyRef) -> Result<(), Error> {
        let info = self.info(key)?;
        let _admin = self.inner.admin.lock().unwrap_or_else(|p| p.into_inner());
        let label = label(key, info.algorithm).into_bytes();
        self.inner.with_keeper(|s| {
            // Public half last, so a concurrent lister never sees a private key
            // without its public half as a key.
            for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
                for h in
                    s.find_objects(&[Attribute::Class(class), Attribute::Label(label.clone())])?
                {
                    s.destroy_object(h)?;
                }
            }
            Ok(())
        })?;
        self.inner
            .infos
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        self.inner
            .handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
        tracing::info!(key = %key, "destroyed key on token");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_mechanisms_are_named() {
        let only_ecdsa = Mechs::from_list(&[MechanismType::ECDSA, MechanismType::ECC_KEY_PAIR_GEN]);
        assert_eq!(only_ecdsa.generate_gap(JwsAlgorithm::ES256), None);
        assert_eq!(
            only_ecdsa.sign_gap(JwsAlgorithm::EdDSA),
            Some("no CKM_EDDSA")
        );
        assert_eq!(
            only_ecdsa.generate_gap(JwsAlgorithm::RS256),
            Some("no CKM_SHA256_RSA_PKCS or CKM_RSA_PKCS")
        );
        let no_gen = Mechs::from_list(&[MechanismType::EDDSA]);
        assert_eq!(no_gen.sign_gap(JwsAlgorithm::EdDSA), None);
        assert_eq!(
            no_gen.generate_gap(JwsAlgorithm::EdDSA),
            Some("no CKM_EC_EDWARDS_KEY_PAIR_GEN")
        );
    }

    #[test]
    fn labels_round_trip_and_foreign_labels_are_skipped() {
        let key = KeyRef::new("jwt-signing", 12);
        let l = label(&key, JwsAlgorithm::PS256);
        assert_eq!(l, "jwt-signing/12/PS256");
        assert_eq!(parse_label(l.as_bytes()), Some((key, JwsAlgorithm::PS256)));
        for foreign in [
            "my key",
            "a/b",
            "a/1/HS256",
            "a/x/ES256",
            "/1/ES256",
            "a/1/ES256/extra",
        ] {
            assert_eq!(parse_label(foreign.as_bytes()), None, "{foreign}");
        }
    }

    #[test]
    fn ec_points_with_and_without_der_wrapping() {
        let mut point = vec![4u8];
        point.extend([7u8; 64]);
        assert_eq!(unwrap_point(point.clone(), 65), point);
        assert_eq!(unwrap_point(der_octet_string(&point), 65), point);
        let ed = vec![9u8; 32];
        assert_eq!(unwrap_point(der_octet_string(&ed), 32), ed);
    }

    #[test]
    fn uris_pick_tokens_by_label() {
        let sel =
            TokenSelector::parse("PKCS11:model=SoftHSM%20v2;token=a%3Bb;object=k;type=private")
                .unwrap();
        assert_eq!(sel.token.as_deref(), Some("a;b"));
        assert_eq!(sel.model.as_deref(), Some("SoftHSM v2"));
        assert_eq!(
            TokenSelector::parse("plain label")
                .unwrap()
                .token
                .as_deref(),
            Some("plain label")
        );
        for bad in [
            "",
            "pkcs11:",
            "pkcs11:slot-id=1",
            "pkcs11:token",
            "pkcs11:token=%4",
            "pkcs11:token=%ff%fe",
            "pkcs11:token=%+f",
            "pkcs11:token=a;token=b",
            "pkcs11:token=a;colour=blue",
            "pkcs11:token=a?module-path=/x.so",
            "a label longer than thirty-two bytes",
        ] {
            assert!(
                matches!(TokenSelector::parse(bad), Err(Error::Config(_))),
                "{bad}"
            );
        }
    }
}
