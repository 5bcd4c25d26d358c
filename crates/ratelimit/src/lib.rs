#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod clock;
mod error;
pub mod headers;
mod key;
mod memory;
mod quota;
#[cfg(feature = "redis")]
mod redis_limiter;
mod table;

pub use clock::MonotonicClock;
pub use error::Error;
pub use key::Key;
pub use memory::{DEFAULT_MAX_KEYS, KeyedLimiter, MAX_BLOCK, MemoryStatsSnapshot};
pub use quota::{Decision, Denial, Quota};
#[cfg(feature = "redis")]
pub use redis_limiter::MAX_KEY_LEN;
#[cfg(feature = "redis")]
pub use redis_limiter::{
    FailurePolicy, Policy, RedisLimiter, RedisLimiterBuilder, RedisStatsSnapshot,
};
