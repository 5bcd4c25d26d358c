//! The builder: infallible setters, one fallible `build()`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use palisade_core_traits::{Clock, SystemClock};

use crate::Error;
use crate::config::Config;
use crate::freeman::Model;
use crate::hst::HalfSpaceTrees;
use crate::scorer::ThreatScorer;
use crate::signals::{DeviceSignal, GeoLookup};
use crate::state::State;
use crate::ua::{SimpleUaParser, UaParser};
use crate::velocity::Velocity;

/// Builds a [`ThreatScorer`]; from [`ThreatScorer::builder`].
///
/// ```
/// # use std::sync::Arc;
/// # use palisade_core_traits::{ManualClock, Timestamp};
/// use palisade_threat_score::{Config, Error, Thresholds, ThreatScorer};
///
/// let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
/// let scorer = ThreatScorer::builder().clock(clock.clone()).build()?;
/// assert_eq!(scorer.stats().users, 0);
///
/// // Every check happens in `build()`, which names the field.
/// let bad = Config {
///     thresholds: Thresholds { monitor: 0.8, step_up: 0.7, block: 0.9 },
///     ..Config::default()
/// };
/// let err = ThreatScorer::builder().config(bad).build().unwrap_err();
/// assert!(matches!(err, Error::InvalidConfig { field: "thresholds", .. }));
/// # Ok::<(), Error>(())
/// ```
#[must_use]
pub struct ThreatScorerBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    geo: Option<Arc<dyn GeoLookup>>,
    device: Option<Arc<dyn DeviceSignal>>,
    ua: Arc<dyn UaParser>,
    state: Option<State>,
}

impl Default for ThreatScorerBuilder {
    fn default() -> Self {
        ThreatScorerBuilder {
            config: Config::default(),
            clock: Arc::new(SystemClock),
            geo: None,
            device: None,
            ua: Arc::new(SimpleUaParser),
            state: None,
        }
    }
}

impl std::fmt::Debug for ThreatScorerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreatScorerBuilder")
            .field("config", &self.config)
            .field("geo", &self.geo)
            .field("device", &self.device)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ThreatScorerBuilder {
    /// The configuration (checked by [`build`](Self::build)); default [`Config::default`].
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The clock that dates logins and windows; default the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The geo lookup for attempts without [`Signals::geo`](crate::Signals::geo).
    pub fn geo(mut self, geo: Arc<dyn GeoLookup>) -> Self {
        self.geo = Some(geo);
        self
    }

    /// The device signal for attempts without
    /// [`Signals::device_familiarity`](crate::Signals::device_familiarity).
    pub fn device_signal(mut self, device: Arc<dyn DeviceSignal>) -> Self {
        self.device = Some(device);
        self
    }

    /// The user-agent parser; default [`SimpleUaParser`].
    pub fn ua_parser(mut self, ua: Arc<dyn UaParser>) -> Self {
        self.ua = ua;
        self
    }

    /// Starts from a saved [`State`] (from [`ThreatScorer::state`]) instead of empty
    /// histories; velocity counters start empty.
    pub fn state(mut self, state: State) -> Self {
        self.state = Some(state);
        self
    }

    /// The scorer, or [`Error::InvalidConfig`] naming the field that is wrong, or
    /// [`Error::StateVersion`] / [`Error::InvalidState`] for a state that cannot load.
    pub fn build(self) -> Result<ThreatScorer, Error> {
        self.config.validate()?;
        if let Some(s) = &self.state {
            s.validate()?;
        }
        let key = match &self.state {
            Some(s) => s.key(),
            None => {
                let s = std::collections::hash_map::RandomState::new();
                (
                    std::hash::BuildHasher::hash_one(&s, 0x5eed_u64),
                    std::hash::BuildHasher::hash_one(&s, 0xfeed_u64),
                )
            }
        };
        let model = Model::default();
        let saved = self.state.and_then(|s| {
            s.load(
                &model,
                self.config.history_cap.get(),
                self.config.history_max_age_secs,
            )
        });
        // A saved detector only fits the same feature count; otherwise start fresh.
        let behaviour = match (self.config.behaviour, saved) {
            (Some(b), Some(h)) if h.features() == b.features => Some(h),
            (Some(b), _) => Some(HalfSpaceTrees::new(b.features, b.hst)),
            (None, _) => None,
        };
        let scorer = ThreatScorer {
            velocity: Velocity::new(&self.config.velocity),
            behaviour: behaviour.map(RwLock::new),
            key,
            model,
            ua: self.ua,
            geo: self.geo,
            device: self.device,
            clock: self.clock,
            evicted: AtomicU64::new(0),
            config: self.config,
        };
        // A state saved under a larger budget is trimmed to this one.
        let evicted = scorer.model.evict(0, scorer.config.memory_budget_bytes);
        scorer
            .evicted
            .fetch_add(evicted, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(
            users = scorer.model.users(),
            logins = scorer.model.total(),
            evicted,
            "threat-score: scorer built"
        );
        Ok(scorer)
    }
}
