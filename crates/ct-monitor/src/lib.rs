#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod check;
pub mod checkpoint;
#[cfg(feature = "http")]
pub mod client;
mod der;
pub mod entry;
mod error;
pub mod fuzz;
pub mod identifiers;
pub mod loglist;
pub mod merkle;
#[cfg(feature = "http")]
pub mod monitor;
pub mod responses;
mod sct;
pub mod state;
pub mod sth;
#[cfg(feature = "test-log")]
pub mod testlog;
mod tls;
pub mod verify;
pub mod watch;
mod witness;

pub use check::{
    CertificateInfo, Verdict, certificate_info, check_entry, check_log_entry, check_precertificate,
    check_tile_leaf,
};
pub use checkpoint::{Checkpoint, SignedNote, checkpoint_tree_head, verify_checkpoint};
pub use entry::{ExtraData, MerkleTreeLeaf, SignedEntry, TileLeaf, TimestampedEntry};
pub use error::{Error, ProofFailure};
pub use identifiers::Identifiers;
pub use loglist::{LogInfo, LogList, LogProtocol, LogState};
pub use merkle::{CompactRange, Hash};
pub use sct::{
    CtPolicy, MAX_SCT_LIST_LEN, PolicyOutcome, Sct, SctCheck, SctReport, SctSource, SctStatus,
    SctVerifier, SignedEntryData, embedded_scts, parse_sct_list, spki_hash,
};
pub use state::{FileStateStore, LogProgress, MemoryStateStore, StateStore};
pub use sth::{DigitallySigned, KeyAlgorithm, LogKey, SignedTreeHead};
pub use watch::{Authorizer, SharedWatchlist, WatchItem, WatchMatch, Watchlist};
pub use witness::{Cosignature, Witness, WitnessPolicy, cosignature_key_id, cosigned_message};

/// A `TBSCertificate` without the poison and SCT-list extensions: what a log records
/// for a precertificate, and what a final certificate's TBS reduces to.
pub fn tbs_without_ct_extensions(tbs_der: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(der::strip_ct_extensions(tbs_der)?.into_owned())
}

/// Hash of a `TBSCertificate` without the poison and SCT-list extensions (the
/// [`CertificateInfo::tbs_hash`] of its log entries).
pub fn tbs_hash(tbs_der: &[u8]) -> Result<Hash, Error> {
    Ok(merkle::sha256(&der::strip_ct_extensions(tbs_der)?))
}
pub use verify::{
    AppendError, LogMisbehaved, LogVerifier, Misbehaviour, TreeHeadUpdate, verdict_security_event,
};
