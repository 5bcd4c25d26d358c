#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

mod error;
pub mod flags;
pub mod fuzz;
pub mod identity;
pub mod inputs;
pub mod ja4;
pub mod trust;
pub mod ua;

pub use error::Error;
pub use flags::{ConsistencyFlag, consistency_flags};
pub use identity::{Attribute, DeviceFingerprint, FingerprintKey, MatchResult, Tier};
pub use inputs::{ClientHints, FingerprintInputs, UserAgent};
pub use ja4::{AlpnFallback, ClientHello, Ja4, Transport};
pub use trust::{
    DeviceId, DeviceRecord, DeviceStore, InMemoryDeviceStore, Observation, TrustPolicy, TrustScore,
};
