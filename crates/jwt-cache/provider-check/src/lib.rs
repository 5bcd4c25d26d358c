//! Test-only package: see `Cargo.toml` and `tests/both_backends.rs`.
#![forbid(unsafe_code)]
