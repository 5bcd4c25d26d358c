//! The PKCS#11 backend (feature `pkcs11`), split along its seams: choosing the token
//! (`uri`), loading the module (`module`), the mechanisms (`mechanisms`), the objects
//! on the token (`objects`), PKCS#8 import (`pkcs8`), sessions and recovery (`pool`),
//! and the store itself (`store`).

mod mechanisms;
mod module;
mod objects;
pub(crate) mod pkcs8;
mod pool;
mod store;
mod uri;

use cryptoki::error::Error as CkError;

pub use module::load_module;
pub(crate) use objects::{ED25519_OID, P256_OID, P384_OID};
pub use store::{DEFAULT_MAX_SESSIONS, Pkcs11Store, Pkcs11StoreBuilder, Stats};
pub use uri::TokenSelector;

use crate::Error;

/// A cryptoki failure as our opaque [`Error::Crypto`], the cause kept as `source()`.
fn ck(operation: &'static str, e: CkError) -> Error {
    Error::Crypto {
        operation,
        source: Some(Box::new(e)),
    }
}
