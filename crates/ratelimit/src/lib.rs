#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod error;
pub mod headers;
mod key;
#[cfg(feature = "tower")]
mod layer;
mod limiter;
mod memory;
mod quota;
#[cfg(feature = "redis")]
mod redis_limiter;
mod stats;
mod table;

pub use clock::MonotonicClock;
pub use error::Error;
pub use key::Key;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use layer::{
    AuthenticatedSubject, DEGRADED_HEADER, HttpKey, KeySource, RateLimit, RateLimitLayer,
    RateLimitPolicy, ResponseFuture,
};
pub use limiter::Limiter;
pub use memory::{DEFAULT_MAX_KEYS, KeyedLimiter, MAX_BLOCK};
/// Re-exported: the form every client address is limited and blocked by.
pub use palisade_core_traits::client_net;
pub use quota::{Decision, Denial, Quota};
/// The redis-rs this crate is built against (for `Client`, `ConnectionManager`,
/// `TlsCertificates`, …).
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis;
#[cfg(feature = "redis")]
pub use redis_limiter::MAX_KEY_LEN;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_limiter::{FailurePolicy, Policy, RedisLimiter, RedisLimiterBuilder};
pub use stats::Stats;
