//! One SoftHSM2 token per test process, behind one shared `cryptoki` context.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::INSTALL_HINT;

/// Where Debian's `softhsm2` package puts the module.
const MODULE_CANDIDATES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];
/// Token labels are `palisade-<pid>`; stale tokens of dead processes are removed.
const LABEL_PREFIX: &str = "palisade-";

/// A SoftHSM2 token initialised for this test process, with a logged-in-capable
/// user PIN, behind one initialised [`Pkcs11`] context shared by all threads.
///
/// SoftHSM reads `SOFTHSM2_CONF` at `C_Initialize`. Edition 2024 makes
/// `std::env::set_var` unsafe and this crate forbids unsafe code, so the variable
/// comes from the workspace's `.cargo/config.toml` (`target/palisade-softhsm/…`);
/// the fixture writes that file and its token directory on first use. Each process
/// gets its own token, labelled `palisade-<pid>`, found by label, never by slot index.
#[derive(Debug)]
pub struct SoftHsm {
    pkcs11: Pkcs11,
    slot: Slot,
    label: String,
    module: PathBuf,
}

impl SoftHsm {
    /// The user PIN of the test token (a test secret, not a real one).
    pub const USER_PIN: &'static str = "palisade-user-1234";
    /// The security officer PIN of the test token.
    pub const SO_PIN: &'static str = "palisade-so-5678";

    /// The process-wide token, initialised on first call. Safe from many threads.
    pub fn get() -> &'static SoftHsm {
        static HSM: OnceLock<SoftHsm> = OnceLock::new();
        HSM.get_or_init(SoftHsm::init)
    }

    fn init() -> SoftHsm {
        let module = module_path();
        let conf = std::env::var_os("SOFTHSM2_CONF")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "SOFTHSM2_CONF is not set: run the tests through cargo in this workspace \
                 (.cargo/config.toml sets it) or {INSTALL_HINT}"
                )
            });
        let token_dir = write_config(&conf);
        remove_stale_tokens(&token_dir);

        let pkcs11 = Pkcs11::new(&module)
            .unwrap_or_else(|e| panic!("cannot load {}: {e}; {INSTALL_HINT}", module.display()));
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => panic!("C_Initialize failed on {}: {e}", module.display()),
        }

        let label = format!("{LABEL_PREFIX}{}", std::process::id());
        let empty = pkcs11
            .get_all_slots()
            .expect("C_GetSlotList")
            .into_iter()
            .find(|s| {
                pkcs11
                    .get_token_info(*s)
                    .map(|t| !t.token_initialized())
                    .unwrap_or(false)
            })
            .expect("SoftHSM offers no uninitialised slot");
        pkcs11
            .init_token(empty, &AuthPin::from(Self::SO_PIN), &label)
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
        SoftHsm {
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

    /// This process's token label, `palisade-<pid>`.
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

fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PALISADE_PKCS11_MODULE") {
        return PathBuf::from(p);
    }
    MODULE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("SoftHSM2 module not found at {MODULE_CANDIDATES:?}; {INSTALL_HINT}")
        })
}

/// Writes the SoftHSM configuration (if absent) and returns its token directory.
/// Written to a temp name and renamed, so parallel test processes never read half a file.
fn write_config(conf: &Path) -> PathBuf {
    let dir = conf.parent().unwrap_or(Path::new("."));
    let token_dir = dir.join("tokens");
    fs::create_dir_all(&token_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", token_dir.display()));
    if !conf.exists() {
        let text = format!(
            "# Written by palisade-testkit for tests only.\n\
             directories.tokendir = {}\n\
             objectstore.backend = file\n\
             log.level = ERROR\n\
             slots.removable = false\n",
            token_dir.display()
        );
        let tmp = dir.join(format!("softhsm2.conf.{}", std::process::id()));
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        fs::rename(&tmp, conf).unwrap_or_else(|e| panic!("cannot write {}: {e}", conf.display()));
    }
    token_dir
}

/// Removes token directories whose `palisade-<pid>` owner no longer runs, so the
/// shared token directory does not grow with every test run.
fn remove_stale_tokens(token_dir: &Path) {
    let Ok(entries) = fs::read_dir(token_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(bytes) = fs::read(entry.path().join("token.object")) else {
            continue;
        };
        let Some(pid) = owner_pid(&bytes) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in the first `palisade-<digits>` label found in a token file.
fn owner_pid(bytes: &[u8]) -> Option<u32> {
    let prefix = LABEL_PREFIX.as_bytes();
    let at = bytes.windows(prefix.len()).position(|w| w == prefix)?;
    let digits: String = bytes[at + prefix.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| char::from(b))
        .collect();
    digits.parse().ok()
}

fn find_slot_by_label(pkcs11: &Pkcs11, label: &str) -> Slot {
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

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn owner_pid_reads_the_label_digits() {
        assert_eq!(owner_pid(b"\0\0palisade-4242   \0"), Some(4242));
        assert_eq!(owner_pid(b"palisade-"), None);
        assert_eq!(owner_pid(b"other-label"), None);
    }
}
