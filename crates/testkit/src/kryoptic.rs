//! A kryoptic token (PKCS#11 3.2, with ML-DSA), the module built by
//! `scripts/test.sh setup` from scripts/kryoptic.

use std::path::PathBuf;
use std::sync::OnceLock;

use crate::token::{Pkcs11Token, write_once};

/// What to do when the kryoptic module or its configuration is missing.
const BUILD_HINT: &str = "run `scripts/test.sh setup`, which builds the kryoptic module \
     (scripts/kryoptic) into target/kryoptic; .cargo/config.toml points \
     PALISADE_KRYOPTIC_MODULE and KRYOPTIC_CONF there";
/// The label this fixture gives the token.
const LABEL: &str = "palisade-kryoptic";

/// One kryoptic token for this test process: [`Kryoptic::get`].
///
/// kryoptic reads `KRYOPTIC_CONF` at `C_Initialize`; like `SOFTHSM2_CONF` it comes
/// from `.cargo/config.toml` (`target/palisade-kryoptic/token.conf`), written here
/// on first use with one slot backed by the sqlite file `token.sql` beside it. The
/// first [`get`](Self::get) of a process re-initialises that token (erasing what
/// an earlier process left), so test processes that use it must not run at the
/// same time; cargo runs test binaries one after another.
#[derive(Debug)]
pub struct Kryoptic;

impl Kryoptic {
    /// The user PIN of the test token (a test secret, not a real one).
    pub const USER_PIN: &'static str = Pkcs11Token::USER_PIN;

    /// The process-wide token, initialised on first call. Safe from many threads.
    pub fn get() -> &'static Pkcs11Token {
        static TOKEN: OnceLock<Pkcs11Token> = OnceLock::new();
        TOKEN.get_or_init(|| {
            let module = Self::module_path();
            let pkcs11 = Pkcs11Token::load(&module, BUILD_HINT);
            let slot = *pkcs11
                .get_all_slots()
                .expect("C_GetSlotList")
                .first()
                .unwrap_or_else(|| panic!("kryoptic lists no slot; {BUILD_HINT}"));
            Pkcs11Token::init(pkcs11, slot, LABEL.to_owned(), module)
        })
    }

    /// The module, `PALISADE_KRYOPTIC_MODULE`, with its configuration written.
    /// Panics with what to run if either is missing.
    pub fn module_path() -> PathBuf {
        let var = |name: &str| {
            std::env::var_os(name)
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("{name} is not set; {BUILD_HINT}"))
        };
        let module = var("PALISADE_KRYOPTIC_MODULE");
        if !module.is_file() {
            panic!("no kryoptic module at {}; {BUILD_HINT}", module.display());
        }
        let conf = var("KRYOPTIC_CONF");
        let db = conf.with_file_name("token.sql");
        write_once(
            &conf,
            &format!(
                "# Written by palisade-testkit for tests only.\n\
                 [[slots]]\n\
                 slot = 1\n\
                 dbtype = \"sqlite\"\n\
                 dbargs = \"{}\"\n",
                db.display()
            ),
        );
        module
    }
}
