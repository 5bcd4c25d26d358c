#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod actions;
mod clock;
mod context;
mod error;
mod event;
mod net;
mod normalize;

pub use actions::{
    IpBlocker, JwsAlgorithm, JwsSigner, Notification, NotificationAction, Notifier,
    RevocationCheck, RevocationStatus, SessionTerminator, SignedJws, StepUpRequirer, TokenIdentity,
    TokenRevoker,
};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use context::{AuthenticatedSubject, ClientDeviceInfo, LoginOutcome, RequestContext, TlsInfo};
pub use error::{BoxError, Error};
pub use event::{
    EventId, EventKind, EvidenceBasis, MAX_LABEL_LEN, Score, SecurityEvent, Severity, Subject,
};
pub use net::{ForwardedHeader, IpNetwork, TrustedProxies};
pub use normalize::{canonical_ip, client_net, normalize_user_id};

/// Entry points of the cargo-fuzz targets in `fuzz/`, also replayed on stable by
/// `tests/fuzz_corpus.rs`.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

/// Re-exported so implementors use the same `async_trait` as the trait definitions.
pub use async_trait::async_trait;
