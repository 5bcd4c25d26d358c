#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

mod error;
pub mod fuzz;
pub mod identity;
pub mod inputs;
pub mod ja4;

pub use error::Error;
pub use identity::{Attribute, DeviceFingerprint, FingerprintKey, MatchResult, Tier};
pub use inputs::{ClientHints, FingerprintInputs, UserAgent};
pub use ja4::{ClientHello, Ja4, Transport};
