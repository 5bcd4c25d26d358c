#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Modules are private; the API is re-exported below, deliberately. Two modules stay
// public because they are tools, not the API: `testlog` (feature `test-log`, a fake
// log for tests and demos) and the hidden `fuzzing` (feature `fuzzing`).

mod check;
mod checkpoint;
#[cfg(feature = "http")]
mod client;
mod der;
mod entry;
mod error;
mod identifiers;
mod loglist;
mod merkle;
#[cfg(feature = "http")]
mod monitor;
// The JSON parsers and tile paths are the HTTP clients' (and the fuzzer's); the core
// only needs the tree shapes.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
mod responses;
mod sct;
mod state;
mod sth;
#[cfg(feature = "http")]
mod telemetry;
mod tls;
mod verify;
mod watch;
mod witness;

/// Fuzz entry points, one per cargo-fuzz target; not part of the API contract.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "test-log")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-log")))]
pub mod testlog;

pub use check::{
    CertificateInfo, Verdict, check_entry, check_log_entry, check_precertificate, check_tile_leaf,
    tbs_hash, tbs_without_ct_extensions,
};
pub use checkpoint::{checkpoint_tree_head, verify_checkpoint};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use client::{ClientConfig, Rfc6962Client, StaticCtClient};
pub use entry::{
    ExtraData, MerkleTreeLeaf, SignedEntry, TileLeaf, TimestampedEntry, parse_data_tile,
};
pub use error::{Error, ProofFailure};
pub use identifiers::Identifiers;
pub use loglist::{LogInfo, LogList, LogProtocol, LogState};
pub use merkle::{CompactRange, Hash, leaf_hash, node_hash, verify_consistency, verify_inclusion};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use monitor::{Event, Health, LogConfig, LogSource, Monitor, MonitorBuilder};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use responses::RawEntry;
pub use sct::{
    CtPolicy, PolicyOutcome, Sct, SctCheck, SctReport, SctSource, SctStatus, SctVerifier,
    SignedEntryData, embedded_scts, parse_sct_list, spki_hash,
};
pub use state::{FileStateStore, MemoryStateStore, State, StateStore};
pub use sth::{DigitallySigned, KeyAlgorithm, LogKey, SignedTreeHead};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use telemetry::Stats;
pub use verify::{
    AppendError, LogMisbehaved, LogVerifier, LogVerifierBuilder, Misbehaviour, TreeHeadUpdate,
};
pub use watch::{Authorizer, SharedWatchlist, WatchItem, WatchMatch, Watchlist};
pub use witness::{Cosignature, Witness, WitnessPolicy, WitnessPolicyBuilder};
