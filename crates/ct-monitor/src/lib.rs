#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod entry;
mod error;
pub mod merkle;
pub mod sth;
mod tls;

pub use checkpoint::{Checkpoint, SignedNote, verify_checkpoint};
pub use entry::{ExtraData, MerkleTreeLeaf, SignedEntry, TileLeaf, TimestampedEntry};
pub use error::{Error, ProofFailure};
pub use merkle::{CompactRange, Hash};
pub use sth::{DigitallySigned, KeyAlgorithm, LogKey, SignedTreeHead};
