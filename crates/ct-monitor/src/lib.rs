#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
pub mod merkle;

pub use error::{Error, ProofFailure};
pub use merkle::{CompactRange, Hash};
