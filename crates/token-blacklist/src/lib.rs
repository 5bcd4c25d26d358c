#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
mod memory;
mod model;

pub use error::Error;
pub use memory::MemoryBlacklist;
pub use model::{Config, MAX_ID_LEN, StatsSnapshot};
