//! Runnable demos that wire Palisade crates together: see `src/bin/`, one demo per
//! file, run with `cargo run -p palisade-examples --bin <demo>`.
#![forbid(unsafe_code)]

pub mod login_limit;
pub mod protected_api;
