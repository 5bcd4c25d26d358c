//! One SoftHSM2 token per test process, behind one shared `cryptoki` context.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::INSTALL_HINT;
use crate::token::{Pkcs11Token, write_once};

/// Where Debian's `softhsm2` package puts the module.
const MODULE_CANDIDATES: [&str; 2] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
];
/// Token labels are `palisade-<pid>`; stale tokens of dead processes are removed.
const LABEL_PREFIX: &str = "palisade-";

/// One SoftHSM2 token for this test process: [`SoftHsm::get`].
///
/// SoftHSM reads `SOFTHSM2_CONF` at `C_Initialize`. Edition 2024 makes
/// `std::env::set_var` unsafe and this crate forbids unsafe code, so the variable
/// comes from the workspace's `.cargo/config.toml` (`target/palisade-softhsm/…`);
/// the fixture writes that file and its token directory on first use. Each process
/// gets its own token, labelled `palisade-<pid>`, found by label, never by slot index.
#[derive(Debug)]
pub struct SoftHsm;

impl SoftHsm {
    /// The user PIN of the test token (a test secret, not a real one).
    pub const USER_PIN: &'static str = Pkcs11Token::USER_PIN;
    /// The security officer PIN of the test token.
    pub const SO_PIN: &'static str = Pkcs11Token::SO_PIN;

    /// The process-wide token, initialised on first call. Safe from many threads.
    pub fn get() -> &'static Pkcs11Token {
        static HSM: OnceLock<Pkcs11Token> = OnceLock::new();
        HSM.get_or_init(SoftHsm::init)
    }

    fn init() -> Pkcs11Token {
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
        let pkcs11 = Pkcs11Token::load(&module, INSTALL_HINT);
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
        Pkcs11Token::init(pkcs11, empty, label, module)
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
fn write_config(conf: &Path) -> PathBuf {
    let dir = conf.parent().unwrap_or(Path::new("."));
    let token_dir = dir.join("tokens");
    fs::create_dir_all(&token_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", token_dir.display()));
    write_once(
        conf,
        &format!(
            "# Written by palisade-testkit for tests only.\n\
             directories.tokendir = {}\n\
             objectstore.backend = file\n\
             log.level = ERROR\n\
             slots.removable = false\n",
            token_dir.display()
        ),
    );
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
