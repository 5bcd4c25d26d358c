//! The PKCS#11 module: loaded and initialised once per process; the token's slot,
//! found by label; the process-wide key-management lock of a token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::slot::Slot;

use super::{TokenSelector, ck};
use crate::Error;

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

pub(super) fn initialize(ctx: &Pkcs11) -> Result<(), Error> {
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
        Err(e) => Err(ck("C_Initialize", e)),
    }
}

/// The one slot whose token matches `selector` (slot numbers may change when the
/// library is initialised again, so they are looked up, never remembered for good).
pub(super) fn find_slot(
    pkcs11: &Pkcs11,
    selector: &TokenSelector,
) -> Result<(Slot, String), Error> {
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
        0 => Err(Error::config(
            "token",
            format!(
                "no initialised token matches the selector ({})",
                selector.names()
            ),
        )),
        n => Err(Error::config(
            "token",
            format!(
                "{n} tokens match the selector ({}); be more specific",
                selector.names()
            ),
        )),
    }
}

/// The process-wide key-management lock of a token.
pub(super) fn token_lock(label: &str) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    Arc::clone(locks.entry(label.to_owned()).or_default())
}
