//! Persisted state: the hash key, every user's retained history and the behavioural
//! detector, saved with [`ThreatScorer::state`] and given back to the builder.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::freeman::{Entry, Fix, LEVELS, Model, entry_secs};
use crate::hst::HalfSpaceTrees;
use crate::scorer::ThreatScorer;
use crate::sync::read;

/// The format version written and read (unchanged since 0.1.0's `Snapshot`, so those
/// still load).
pub(crate) const STATE_VERSION: u32 = 1;

/// A saved model: the hash key and every user's retained history (each login with its
/// stored score for the per-user scale, and the last location on the login it came
/// from), plus the behavioural detector. The global history is rebuilt from it when
/// loaded, so a state cannot hold inconsistent counts. Velocity windows and
/// heavy-hitter lists are not saved.
///
/// It is as sensitive as the histories themselves (the key links hashes to values);
/// its `Debug` shows neither the key nor the histories.
#[derive(Clone, Serialize, Deserialize)]
pub struct State {
    version: u32,
    key: (u64, u64),
    users: Vec<(u64, Vec<StateEntry>)>,
    /// The behavioural detector, when enabled (absent in older states).
    #[serde(default)]
    behaviour: Option<HalfSpaceTrees>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("version", &self.version)
            .field("users", &self.users.len())
            .field("behaviour", &self.behaviour.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateEntry {
    at: u64,
    v: [u64; LEVELS],
    loc: Option<(f32, f32)>,
    /// The login's raw score for the per-user scale (absent in older states).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<f32>,
}

impl State {
    /// Checks what does not depend on the configuration.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.version != STATE_VERSION {
            return Err(Error::StateVersion {
                found: self.version,
                expected: STATE_VERSION,
            });
        }
        if self.behaviour.as_ref().is_some_and(|h| !h.is_consistent()) {
            return Err(Error::InvalidState {
                reason: "behaviour detector does not have the shape of its configuration",
            });
        }
        // Scores are stored as at least f32::MIN_POSITIVE: a 0 or subnormal one would
        // make a user's typical score 0 and every later login infinitely unusual.
        if self
            .users
            .iter()
            .flat_map(|(_, entries)| entries)
            .any(|e| e.s.is_some_and(|s| !(s.is_normal() && s > 0.0)))
        {
            return Err(Error::InvalidState {
                reason: "a login's stored score is not a positive normal number",
            });
        }
        Ok(())
    }

    /// The hash key.
    pub(crate) fn key(&self) -> (u64, u64) {
        self.key
    }

    /// Loads the histories into `model` (history bounds of `cap` and `max_age_secs`
    /// apply as when learning); returns the saved detector.
    pub(crate) fn load(
        self,
        model: &Model,
        cap: usize,
        max_age_secs: u64,
    ) -> Option<HalfSpaceTrees> {
        for (u, entries) in self.users {
            let mut shard = crate::sync::write(model.shard(u));
            for e in entries {
                model.learn_in(
                    &mut shard,
                    u,
                    Entry {
                        at_secs: entry_secs(e.at),
                        values: e.v,
                        raw: e.s.unwrap_or(f32::NAN),
                    },
                    cap,
                    max_age_secs,
                );
                if let (Some((lat, lon)), Some(user)) = (e.loc, shard.get_mut(&u)) {
                    user.fix = Some(Fix {
                        at_secs: e.at,
                        lat,
                        lon,
                    });
                }
            }
        }
        self.behaviour
    }
}

impl ThreatScorer {
    /// The learned histories and detector, to give to
    /// [`ThreatScorerBuilder::state`](crate::ThreatScorerBuilder::state) after a restart.
    ///
    /// Each user's history is saved as it was at one instant; users recorded while the
    /// state is being taken may be saved before or after that record.
    pub fn state(&self) -> State {
        let mut users = Vec::with_capacity(self.model.users());
        for shard in self.model.shards() {
            let shard = read(shard);
            for (u, user) in shard.iter() {
                // The last known location rides on the entry of the login it came from.
                let at = user.fix.and_then(|f| {
                    user.history
                        .iter()
                        .rposition(|e| e.at_secs == entry_secs(f.at_secs))
                });
                let entries = user
                    .history
                    .iter()
                    .enumerate()
                    .map(|(i, e)| StateEntry {
                        at: u64::from(e.at_secs),
                        v: e.values,
                        loc: user.fix.filter(|_| Some(i) == at).map(|f| (f.lat, f.lon)),
                        s: Some(e.raw).filter(|r| r.is_finite()),
                    })
                    .collect();
                users.push((*u, entries));
            }
        }
        State {
            version: STATE_VERSION,
            key: self.key,
            users,
            behaviour: self.behaviour.as_ref().map(|h| read(h).clone()),
        }
    }
}
