//! The live security dashboard's server side: the aggregates, the recent activity,
//! the incidents, and one broadcast stream the WebSocket clients follow.
//!
//! Protocol (server → browser, JSON text frames):
//! - `{"type":"snapshot","seq":N,"stats":{…},"recent":[…],"incidents":[…],"ct":[…]}`
//!   on connect, and again whenever the client fell behind the stream (it lagged: the
//!   messages it missed are gone, the snapshot replaces them);
//! - `{"type":"activity",…}` for each [`Activity`], with its `seq` (a client ignores
//!   any `seq` at or below its snapshot's);
//! - `{"type":"incident","incident":{…}}` when an incident opens or changes;
//! - `{"type":"stats","seq":N,"stats":{…}}` at most once a second, when they changed.
//!
//! Memory is bounded whatever the clients do: the stream keeps [`STREAM_CAPACITY`]
//! messages shared by every client (a slow client lags and is resynced, it never
//! makes the server buffer for it), the aggregates are fixed-size.
//!
//! With `--redis` the instances share their activities and incidents ([`fleet`]):
//! each shows the whole fleet's, the others' marked with their `instance`.

pub mod fleet;
mod stats;
mod ws;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

pub use stats::{Counters, Minute, SERIES_MINUTES, Stats, StatsView};
pub use ws::serve_socket;

use crate::activity::{Activity, What};
use crate::incident::{Incident, LOCAL_ONLY_IDS, merge};

/// Messages kept for clients that are behind; a client further behind is resynced.
pub const STREAM_CAPACITY: usize = 512;
/// Activities kept for a new client's map and feed.
const RECENT: usize = 100;
/// Incidents and CT alerts in a snapshot.
const SHOWN: usize = 20;
/// Instances' parts kept per incident shown (a fleet larger than this shows the
/// parts that changed last).
const MAX_PARTS: usize = 16;

/// An incident shown: its parts (`None`: this instance's) and their merge.
#[derive(Debug)]
struct Shown {
    parts: Vec<(Option<String>, Incident)>,
    merged: Incident,
}

#[derive(Debug)]
struct State {
    seq: u64,
    stats: Stats,
    /// `seq` of the last activity the last stats message included.
    stats_sent: u64,
    /// Stats changed by an activity that was only counted, since the last message.
    counted_unsent: bool,
    recent: VecDeque<Arc<Activity>>,
    incidents: VecDeque<Shown>,
    ct: VecDeque<Arc<Activity>>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message<'a> {
    Snapshot {
        seq: u64,
        stats: StatsView,
        recent: Vec<&'a Activity>,
        incidents: Vec<&'a Incident>,
        ct: Vec<&'a Activity>,
    },
    Activity(&'a Activity),
    Incident {
        incident: &'a Incident,
    },
    Stats {
        seq: u64,
        stats: StatsView,
    },
}

/// A message, serialized once and shared by every client (clones are a reference count).
fn encode(m: &Message<'_>) -> Utf8Bytes {
    // Plain data: serializing cannot fail.
    Utf8Bytes::from(
        serde_json::to_string(m).unwrap_or_else(|e| unreachable!("dashboard JSON: {e}")),
    )
}

/// The dashboard's state and stream. Cheap to share (`Arc<Dashboard>`).
#[derive(Debug)]
pub struct Dashboard {
    state: Mutex<State>,
    stream: broadcast::Sender<Utf8Bytes>,
    /// Where this instance's activities go to be shared with the fleet (`--redis`).
    outbox: OnceLock<tokio::sync::mpsc::Sender<fleet::Shared>>,
}

impl Default for Dashboard {
    fn default() -> Self {
        Dashboard {
            state: Mutex::new(State {
                seq: 0,
                stats: Stats::default(),
                stats_sent: 0,
                counted_unsent: false,
                recent: VecDeque::with_capacity(RECENT),
                incidents: VecDeque::with_capacity(SHOWN),
                ct: VecDeque::with_capacity(SHOWN),
            }),
            stream: broadcast::channel(STREAM_CAPACITY).0,
            outbox: OnceLock::new(),
        }
    }
}

impl Dashboard {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `activity`, keeps it for new clients, and sends it to every client;
    /// returns its `seq`. Serialized once, whatever the number of clients. In a fleet
    /// it is shared with the other instances too (never waiting: a full outbox drops
    /// it there, counted).
    pub fn publish(&self, activity: Activity) -> u64 {
        let (seq, activity) = self.show(activity);
        self.share(fleet::Shared::Activity(activity));
        seq
    }

    /// Hands `item` to the fleet (with `--redis`), never waiting.
    fn share(&self, item: fleet::Shared) {
        if let Some(outbox) = self.outbox.get()
            && outbox.try_send(item).is_err()
        {
            metrics::counter!("palisade_gateway_dashboard_shared_dropped_total").increment(1);
        }
    }

    /// Counts an activity in the aggregates (sent with the next [`tick`](Self::tick))
    /// without showing it on the feed or sharing it: for floods of refusals.
    pub fn count(&self, activity: &Activity) {
        let mut s = self.lock();
        s.stats.apply(activity);
        s.counted_unsent = true;
    }

    /// An activity another instance of the fleet shared: shown, not shared again.
    pub fn publish_shared(&self, instance: String, mut activity: Activity) -> u64 {
        activity.instance = Some(instance);
        self.show(activity).0
    }

    fn show(&self, mut activity: Activity) -> (u64, Arc<Activity>) {
        let mut s = self.lock();
        s.seq += 1;
        activity.seq = s.seq;
        s.stats.apply(&activity);
        let activity = Arc::new(activity);
        if matches!(activity.what, What::CtAlert { .. }) {
            s.ct.push_back(activity.clone());
            if s.ct.len() > SHOWN {
                s.ct.pop_front();
            }
        }
        s.recent.push_back(activity.clone());
        if s.recent.len() > RECENT {
            s.recent.pop_front();
        }
        // Sent under the lock, so the stream's order is the seq order and a new
        // client's snapshot (taken under the same lock) is exactly before it.
        let _ = self.stream.send(encode(&Message::Activity(&activity)));
        (s.seq, activity)
    }

    /// This instance's part of an incident opened or changed: shown, and in a fleet
    /// shared with the other instances (never waiting, like activities; not an
    /// incident opened while the fleet's Redis was out of reach, whose id is this
    /// instance's alone).
    pub fn publish_incident(&self, incident: Incident) {
        if self.outbox.get().is_some() && incident.id < LOCAL_ONLY_IDS {
            self.share(fleet::Shared::Incident(Box::new(incident.clone())));
        }
        self.show_incident(None, incident);
    }

    /// Another instance's part of an incident (ids are the fleet's): shown merged
    /// with the other parts, not shared again.
    pub fn publish_shared_incident(&self, instance: String, incident: Incident) {
        if incident.id < LOCAL_ONLY_IDS {
            self.show_incident(Some(instance), incident);
        }
    }

    fn show_incident(&self, instance: Option<String>, part: Incident) {
        let mut s = self.lock();
        let window = crate::incident::WINDOW;
        let mut shown = match s.incidents.iter().position(|i| i.merged.id == part.id) {
            Some(i) => s.incidents.remove(i),
            None => None,
        }
        // A part that opened a window after everything shown under its id is another
        // incident (the fleet's counter restarted with its Redis): it replaces them.
        .filter(|i| part.opened.saturating_duration_since(i.merged.last) <= window)
        .map_or_else(Vec::new, |i| i.parts);
        shown.retain(|(name, _)| *name != instance);
        shown.push((instance, part));
        if shown.len() > MAX_PARTS {
            shown.remove(0);
        }
        let merged = merge(&shown);
        let _ = self
            .stream
            .send(encode(&Message::Incident { incident: &merged }));
        s.incidents.push_back(Shown {
            parts: shown,
            merged,
        });
        if s.incidents.len() > SHOWN {
            s.incidents.pop_front();
        }
    }

    /// Sends the aggregates if anything changed since the last time (call it about
    /// once a second).
    pub fn tick(&self) {
        let mut s = self.lock();
        if s.stats_sent == s.seq && !s.counted_unsent {
            return;
        }
        s.stats_sent = s.seq;
        s.counted_unsent = false;
        let m = Message::Stats {
            seq: s.seq,
            stats: s.stats.view(),
        };
        let _ = self.stream.send(encode(&m));
    }

    /// A snapshot for a new (or lagging) client, and the stream from just after it.
    pub fn subscribe(&self) -> (Utf8Bytes, broadcast::Receiver<Utf8Bytes>) {
        let s = self.lock();
        let rx = self.stream.subscribe();
        (Self::snapshot_of(&s), rx)
    }

    /// The snapshot a client would get now.
    pub fn snapshot(&self) -> Utf8Bytes {
        Self::snapshot_of(&self.lock())
    }

    fn snapshot_of(s: &State) -> Utf8Bytes {
        let mut incidents: Vec<&Incident> = s.incidents.iter().map(|i| &i.merged).collect();
        incidents.sort_by(|a, b| b.last.cmp(&a.last).then(b.id.cmp(&a.id)));
        encode(&Message::Snapshot {
            seq: s.seq,
            stats: s.stats.view(),
            recent: s.recent.iter().map(|a| a.as_ref()).collect(),
            incidents,
            ct: s.ct.iter().map(|a| a.as_ref()).collect(),
        })
    }

    /// Totals since start (for `/metrics`).
    pub fn counters(&self) -> Counters {
        self.lock().stats.counters()
    }

    /// How many clients follow the stream.
    pub fn clients(&self) -> usize {
        self.stream.receiver_count()
    }
}
