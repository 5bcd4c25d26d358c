//! The HSM user PIN: zeroized on drop, never printed.

use std::fmt;

use zeroize::Zeroizing;

use crate::Error;

/// A PKCS#11 user PIN. Zeroized on drop; `Debug` prints `Pin(<redacted>)` and
/// there is no `Display`, so it cannot reach a log by accident.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// A PIN from configuration.
    pub fn new(pin: impl Into<String>) -> Self {
        Pin(Zeroizing::new(pin.into()))
    }

    /// The PIN in environment variable `var` (e.g. `PALISADE_HSM_PIN`).
    pub fn from_env(var: &str) -> Result<Self, Error> {
        match std::env::var(var) {
            Ok(pin) if !pin.is_empty() => Ok(Pin::new(pin)),
            _ => Err(Error::config(
                "pin",
                format!("environment variable {var} with the HSM user PIN is unset or empty"),
            )),
        }
    }

    /// The PIN as text, for the one call that needs it.
    #[cfg_attr(not(feature = "pkcs11"), allow(dead_code))]
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}
