#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]

// Modules are private; the public API is re-exported below, deliberately.
mod error;
mod flags;
mod identity;
mod inputs;
mod ja4;
mod limits;
mod metrics;
mod store;
mod trust;
mod ua;

#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "axum")]
mod listener;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use error::Error;
pub use flags::{ConsistencyFlag, consistency_flags};
pub use identity::{
    Attribute, DeviceFingerprint, FingerprintKey, MAX_DRIFT, MAX_MAJOR_STEP, MatchResult, Tier,
};
pub use inputs::{ClientHints, FingerprintInputs, parse_sec_ch_ua};
pub use ja4::{
    AlpnFallback, ClientHello, Ja4, MAX_CLIENT_HELLO_LEN, MAX_CLIENT_HELLO_RECORDS, Transport,
    is_grease,
};
pub use limits::{MAX_HEADER_VALUE, MAX_HEADERS};
pub use store::{
    DEFAULT_MAX_DEVICES_PER_USER, DEFAULT_MAX_USERS, InMemoryDeviceStore,
    InMemoryDeviceStoreBuilder, Stats,
};
pub use trust::{DeviceId, DeviceRecord, DeviceStore, Observation, TrustPolicy, TrustScore};
pub use ua::{UA_CACHE_BYTES, UAP_CORE_VERSION, UserAgent};

#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{
    AcceptorStats, DEFAULT_CLIENT_HELLO_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, Ja4Acceptor,
    Ja4AcceptorBuilder, Ja4Stream,
};

/// The rustls this crate's TLS acceptor is built on (configure the server with it).
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tokio_rustls::rustls;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use listener::{DEFAULT_MAX_HANDSHAKES, Ja4ConnectInfo, Ja4Listener, Ja4ListenerBuilder};
