//! Sessions: the keeper that holds the login, the pool that signs, and recovery when
//! sessions, handles or the login are lost underneath.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ring::rand::SystemRandom;

use super::mechanisms::Mechs;
use super::module::{find_slot, initialize};
use super::store::Counters;
use super::{TokenSelector, ck};
use crate::{Error, KeyInfo, KeyRef, Pin, telemetry};

/// How often a signature is retried after recovering a session or handle.
pub(super) const ATTEMPTS: usize = 3;

/// What a failed call says about our state.
pub(super) enum Failure {
    /// The object handle is stale: find the key again.
    Handle,
    /// The session (or the whole library state) is gone: new sessions, new login.
    Session,
    /// The token logged out: log in again.
    Login,
    /// Anything else: give up.
    Other,
}

pub(super) fn classify(e: &CkError) -> Failure {
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

/// The signing sessions of the current epoch.
#[derive(Default)]
pub(super) struct Pool {
    pub(super) idle: Vec<Idle>,
    /// Sessions of the current epoch, idle or lent out.
    pub(super) open: usize,
}

/// An idle session and the recovery epoch it was opened in.
pub(super) struct Idle {
    pub(super) epoch: u64,
    pub(super) session: Session,
}

pub(super) struct Inner {
    pub(super) pkcs11: Pkcs11,
    pub(super) selector: TokenSelector,
    /// Found by `selector`; looked up again when sessions are lost.
    pub(super) slot: RwLock<Slot>,
    pub(super) token_label: String,
    pub(super) pin: Pin,
    pub(super) mechs: Mechs,
    /// Read-write session that holds the login and does the rare admin work
    /// (generate, import, list, destroy). Signing never waits for it.
    pub(super) keeper: Mutex<Option<Session>>,
    /// Idle read-only sessions; a signer pops one, signs, and pushes it back.
    pub(super) pool: Mutex<Pool>,
    /// Signalled when a session is returned or the pool is reset.
    pub(super) returned: Condvar,
    /// Upper bound on pool sessions (HSMs limit sessions per token).
    pub(super) max_sessions: usize,
    /// Bumped when every session had to be replaced; stale sessions are dropped
    /// without `C_CloseSession` (their handle numbers may belong to new sessions).
    pub(super) epoch: AtomicU64,
    /// Public facts about each key (stable across sessions).
    pub(super) infos: RwLock<BTreeMap<KeyRef, KeyInfo>>,
    /// Private-key object handles, valid within one epoch.
    pub(super) handles: RwLock<HashMap<KeyRef, (u64, ObjectHandle)>>,
    pub(super) rng: SystemRandom,
    /// Serialises key management (generate, import, list, destroy) on this token
    /// across every store in the process: versions are assigned once, and SoftHSM
    /// fails concurrent object creation with CKR_GENERAL_ERROR (SoftHSMv2#573).
    /// Signing never takes it.
    pub(super) admin: Arc<Mutex<()>>,
    pub(super) counters: Counters,
}

impl Inner {
    pub(super) fn slot(&self) -> Slot {
        *self.slot.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn new_keeper(&self) -> Result<Session, Error> {
        let _span =
            tracing::debug_span!("hsm_keys.open_session", token = %self.token_label, rw = true)
                .entered();
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

    pub(super) fn login(&self, session: &Session) -> Result<(), Error> {
        // The span names the token, never the PIN.
        let _span = tracing::debug_span!("hsm_keys.login", token = %self.token_label).entered();
        let refused = |reason: String| Error::PinRefused {
            token: self.token_label.clone(),
            reason,
        };
        // Refused once, never offered again: each wrong try counts towards the
        // token locking its PIN (CKR_PIN_LOCKED), and this runs on every signature
        // that finds the token logged out.
        if self.counters.pin_refusals.load(Ordering::Acquire) > 0 {
            return Err(refused("refused before".into()));
        }
        let pin = AuthPin::from(self.pin.expose());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(CkError::Pkcs11(
                rv @ (RvError::PinIncorrect
                | RvError::PinLocked
                | RvError::PinExpired
                | RvError::PinInvalid
                | RvError::PinLenRange),
                _,
            )) => {
                self.counters.pin_refusals.fetch_add(1, Ordering::AcqRel);
                tracing::error!(token = %self.token_label, rv = %rv, "the token refused the PIN; it will not be offered again");
                Err(refused(format!("{rv:?}")))
            }
            Err(e) => Err(ck("C_Login", e)),
        }
    }

    /// Runs admin work on the keeper session, recovering it once if it died.
    pub(super) fn with_keeper<T>(
        &self,
        f: impl Fn(&Session) -> Result<T, CkError>,
    ) -> Result<T, Error> {
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
    pub(super) fn new_epoch(&self) {
        let new = {
            // The epoch moves under the pool's lock, where `checkout` reads it with
            // the count: a checkout that counted a session of the new epoch must not
            // have the count reset under it (its failed open would take it below 0).
            let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
            let new = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
            // Dropped without C_CloseSession (no-drop sessions): see `epoch`.
            pool.idle.clear();
            pool.open = 0;
            new
        };
        self.counters
            .session_recoveries
            .fetch_add(1, Ordering::Relaxed);
        telemetry::session_recovery();
        self.returned.notify_all();
        tracing::warn!(token = %self.token_label, epoch = new, "PKCS#11 sessions lost; reopening");
    }

    /// Replaces the keeper if it is dead (and logs in again), then starts a new
    /// epoch if `seen` is still current.
    pub(super) fn recover_sessions(&self, seen: u64) -> Result<(), Error> {
        let _span =
            tracing::debug_span!("hsm_keys.recover_sessions", token = %self.token_label).entered();
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

    pub(super) fn relogin(&self) -> Result<(), Error> {
        self.counters.relogins.fetch_add(1, Ordering::Relaxed);
        telemetry::relogin();
        tracing::info!(token = %self.token_label, "PKCS#11 token logged out; logging in again");
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
    pub(super) fn checkout(&self) -> Result<Idle, CkError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let epoch = self.epoch.load(Ordering::Acquire);
            if let Some(s) = pool.idle.pop() {
                return Ok(s); // the pool only ever holds current-epoch sessions
            }
            if pool.open < self.max_sessions {
                pool.open += 1;
                drop(pool);
                let opened = tracing::debug_span!("hsm_keys.open_session", token = %self.token_label, rw = false)
                    .in_scope(|| self.pkcs11.open_ro_session_no_drop(self.slot()));
                match opened {
                    Ok(session) => {
                        self.counters
                            .sessions_opened
                            .fetch_add(1, Ordering::Relaxed);
                        telemetry::session_opened();
                        return Ok(Idle { epoch, session });
                    }
                    Err(e) => {
                        pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
                        if self.epoch.load(Ordering::Acquire) == epoch {
                            pool.open = pool.open.saturating_sub(1);
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
    pub(super) fn checkin(&self, s: Idle) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if s.epoch == self.epoch.load(Ordering::Acquire) {
            pool.idle.push(s);
            drop(pool);
            self.returned.notify_one();
        }
    }

    /// Forgets a dead session (without `C_CloseSession`) and frees its slot.
    pub(super) fn discard(&self, s: Idle) {
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
