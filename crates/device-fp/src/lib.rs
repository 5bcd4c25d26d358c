#![forbid(unsafe_code)]
#![doc = include_str!("../README.md")]

mod error;
pub mod fuzz;
pub mod ja4;

pub use error::Error;
pub use ja4::{ClientHello, Ja4, Transport};
