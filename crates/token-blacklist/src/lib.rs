#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod memory;
mod model;
mod obs;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(feature = "redis")]
mod relay;
#[cfg(any(feature = "redis", feature = "fuzzing"))]
mod wire;

pub use error::Error;
pub use memory::{MemoryBlacklist, MemoryBlacklistBuilder};
pub use model::{Config, MAX_ID_LEN};
pub use obs::Stats;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_store::{FailurePolicy, RedisBlacklist, RedisBlacklistBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use relay::{Relay, RelayBuilder, RelayStats};

/// The redis-rs this crate is built against: build the `Client`,
/// `ConnectionManager` or cluster connection you hand to
/// [`RedisBlacklistBuilder`] with this one, so the types match.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis;

/// Entry points of the cargo-fuzz targets (one `pub fn` per target); not part of the
/// API contract.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// `token_blacklist_record`: parses a revocation record as read from Redis or a
    /// pub/sub message; never panics, and a record that parses re-encodes to the same
    /// bytes. Returns whether it parsed.
    pub fn token_blacklist_record(data: &[u8]) -> bool {
        crate::wire::parse_record(data)
    }
}
