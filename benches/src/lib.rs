//! Shared helpers for Palisade's criterion benchmarks (the benchmarks are the
//! `[[bench]]` targets of this package, one file per subject in `benches/`).
#![forbid(unsafe_code)]
