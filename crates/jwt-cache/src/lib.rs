#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod cache;
mod claims;
mod error;
pub mod fuzzing;
mod keys;
mod policy;
mod stats;
mod token;
mod validator;
mod weight;

pub use cache::{
    CacheConfig, DEFAULT_MAX_BYTES, DEFAULT_MAX_CACHED_TOKEN_BYTES, DEFAULT_MAX_ENTRIES,
    DEFAULT_MAX_TTL, TokenCache,
};
pub use error::Error;
pub use keys::KeySet;
pub use policy::Policy;
pub use stats::Stats;
pub use token::ValidatedToken;
pub use validator::{DEFAULT_MAX_TOKEN_BYTES, Validator, ValidatorBuilder};

/// Re-exported so callers name algorithms and keys with the same types.
pub use jsonwebtoken::{Algorithm, DecodingKey};
