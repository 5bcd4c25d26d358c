#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "tower")]
mod bearer;
mod cache;
mod claims;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod keys;
#[cfg(feature = "tower")]
mod layer;
mod mldsa;
mod policy;
#[cfg(feature = "tower")]
mod reject;
mod stats;
mod telemetry;
mod token;
mod validator;
mod weight;

#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use bearer::bearer_token;
pub use cache::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_CACHED_TOKEN_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_TTL,
    TokenCache, TokenCacheBuilder,
};
pub use error::{Error, ErrorClass};
pub use keys::KeySet;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use layer::{
    Claims, DEFAULT_MAX_FORM_BYTES, JwtAuth, JwtAuthBuilder, JwtService, ResponseFuture,
};
pub use mldsa::{MlDsa, TokenAlgorithm};
pub use policy::{Policy, PolicyBuilder};
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use reject::AuthRejection;
pub use stats::Stats;
pub use token::ValidatedToken;
pub use validator::{DEFAULT_MAX_TOKEN_BYTES, Validator, ValidatorBuilder};

/// Re-exported so callers name algorithms and keys with the same types.
pub use jsonwebtoken::{Algorithm, DecodingKey};

/// Fuzz entry points, one per cargo-fuzz target; not part of the API contract.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
