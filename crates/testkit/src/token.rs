//! What the PKCS#11 fixtures share: loading a module, initialising a token with the
//! test PINs, and the handle the tests get.

use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

/// A token initialised for this test process, with the test user PIN, behind one
/// initialised [`Pkcs11`] context shared by all threads. [`SoftHsm`](crate::SoftHsm)
/// and [`Kryoptic`](crate::Kryoptic) hand these out.
#[derive(Debug)]
pub struct Pkcs11Token {
    pkcs11: Pkcs11,
    slot: Slot,
    label: String,
    module: PathBuf,
}

impl Pkcs11Token {
    /// The user PIN of every test token (a test secret, not a real one).
    pub const USER_PIN: &'static str = "palisade-user-1234";
    /// The security officer PIN of every test token.
    pub const SO_PIN: &'static str = "palisade-so-5678";

    /// Loads and initialises `module` (`CKR_CRYPTOKI_ALREADY_INITIALIZED` is fine).
    pub(crate) fn load(module: &Path, hint: &str) -> Pkcs11 {
        let pkcs11 = Pkcs11::new(module)
            .unwrap_or_else(|e| panic!("cannot load {}: {e}; {hint}", module.display()));
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("C_Initialize failed on {}: {e}", module.display()),
        }
        pkcs11
    }

    /// Initialises the token in `slot` as `label` (erasing what it held), sets the
    /// user PIN, and finds it again by label.
    pub(crate) fn init(pkcs11: Pkcs11, slot: Slot, label: String, module: PathBuf) -> Self {
        pkcs11
            .init_token(slot, &AuthPin::from(Self::SO_PIN), &label)
            .expect("C_InitToken");
        let slot = find_slot_by_label(&pkcs11, &label);
        let session = pkcs11.open_rw_session(slot).expect("C_OpenSession");
        session
            .login(UserType::So, Some(&AuthPin::from(Self::SO_PIN)))
            .expect("C_Login as SO");
        session
            .init_pin(&AuthPin::from(Self::USER_PIN))
            .expect("C_InitPIN");
        session.logout().expect("C_Logout");
        drop(session);
        Pkcs11Token {
            pkcs11,
            slot,
            label,
            module,
        }
    }

    /// The initialised context (clone it freely: clones share one library handle).
    pub fn pkcs11(&self) -> &Pkcs11 {
        &self.pkcs11
    }

    /// The slot holding this process's token.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// This process's token label.
    pub fn token_label(&self) -> &str {
        &self.label
    }

    /// The PKCS#11 module that was loaded.
    pub fn module_path(&self) -> &Path {
        &self.module
    }

    /// The user PIN as cryptoki wants it.
    pub fn user_pin(&self) -> AuthPin {
        AuthPin::from(Self::USER_PIN)
    }

    /// A new read-write session with the user logged in. PKCS#11 login state is
    /// per token and application, so a second login is not an error here.
    pub fn user_session(&self) -> Session {
        let session = self
            .pkcs11
            .open_rw_session(self.slot)
            .expect("C_OpenSession");
        match session.login(UserType::User, Some(&self.user_pin())) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => session,
            Err(e) => panic!("C_Login as user failed: {e}"),
        }
    }
}

pub(crate) fn find_slot_by_label(pkcs11: &Pkcs11, label: &str) -> Slot {
    pkcs11
        .get_slots_with_initialized_token()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|s| {
            pkcs11
                .get_token_info(*s)
                .map(|t| t.label().trim_end() == label)
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no token labelled {label:?} after C_InitToken"))
}

/// Writes `text` to `path` unless it exists; through a temp name and a rename, so
/// parallel test processes never read half a file.
pub(crate) fn write_once(path: &Path, text: &str) {
    if path.exists() {
        return;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
