#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]

mod builder;
mod config;
mod error;
mod freeman;
mod hst;
#[cfg(feature = "maxmind")]
mod maxmind;
#[cfg(feature = "eval")]
mod rba;
mod scorer;
mod signals;
mod state;
mod sync;
#[cfg(feature = "eval")]
mod synth;
mod telemetry;
mod ua;
mod velocity;
mod verdict;

pub use builder::ThreatScorerBuilder;
pub use config::{BehaviourConfig, Calibration, Config, Thresholds, UserScale};
pub use error::Error;
pub use freeman::{FreemanScore, HierarchyTerms, IP_WEIGHTS, LEVELS, UA_WEIGHTS};
pub use hst::{HalfSpaceTrees, HstConfig};
#[cfg(feature = "maxmind")]
#[cfg_attr(docsrs, doc(cfg(feature = "maxmind")))]
pub use maxmind::MaxMindLookup;
pub use scorer::{Stats, ThreatScorer, haversine_km};
pub use signals::{DeviceSignal, GeoInfo, GeoLookup, Signals};
pub use state::State;
pub use ua::{SimpleUaParser, UaInfo, UaParser};
pub use velocity::{
    FailureSource, HeavyHitter, SourceKind, VelocityConfig, VelocityRisk, WINDOWS, WindowThresholds,
};
pub use verdict::{Contribution, Signal, ThreatScore, Verdict};

/// The `source` of the security events this crate emits.
pub const EVENT_SOURCE: &str = "palisade-threat-score";

/// Evaluation tooling, not needed to score: the seeded synthetic login generator with
/// Wiefling et al.'s attackers, the RBA data set reader, the replay that scores a
/// stream and the operating-point arithmetic, and the Half-Space Trees detector on its
/// own ROC AUC helper.
#[cfg(feature = "eval")]
#[cfg_attr(docsrs, doc(cfg(feature = "eval")))]
pub mod eval {
    pub use crate::hst::roc_auc;
    pub use crate::rba::{RbaOptions, RbaReader, RbaRow, TableUaParser, logins};
    pub use crate::synth::{
        Actor, EvalOptions, Evaluation, OperatingPoint, Rng, SynthConfig, SynthLogin, evaluate,
        evaluate_with, generate, share_at_or_above, threshold_for_detection,
    };
}

/// Entry points of the cargo-fuzz targets in `fuzz/`, also replayed on stable by
/// `tests/fuzz_corpus.rs`.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;
