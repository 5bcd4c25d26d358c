#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
mod memory;
mod model;
#[cfg(feature = "redis")]
mod redis_store;
mod wire;

pub use error::Error;
pub use memory::MemoryBlacklist;
pub use model::{Config, MAX_ID_LEN, StatsSnapshot};
#[cfg(feature = "redis")]
pub use redis_store::{FailurePolicy, RedisBlacklist, RedisBlacklistBuilder};
pub use wire::parse_record;
