//! Handing events to the consumer: the channel, the acknowledgement that an
//! alerting event was taken, and the memory of issuances already discovered.

use std::collections::{HashSet, VecDeque};

use tokio::sync::oneshot;

use super::Event;
use crate::merkle::Hash;

pub(super) struct Envelope {
    pub(super) event: Event,
    pub(super) ack: Option<oneshot::Sender<()>>,
}

impl Envelope {
    pub(super) fn hand_over(self) -> Event {
        if let Some(ack) = self.ack {
            let _ = ack.send(());
        }
        self.event
    }
}

/// Recently discovered issuances, oldest first out.
pub(super) struct Seen {
    capacity: usize,
    set: HashSet<Hash>,
    order: VecDeque<Hash>,
}

impl Seen {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            set: HashSet::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `tbs_hash`; `false` if it was already there.
    pub(super) fn first_sighting(&mut self, tbs_hash: Hash) -> bool {
        if self.capacity == 0 {
            return true;
        }
        if !self.set.insert(tbs_hash) {
            return false;
        }
        self.order.push_back(tbs_hash);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}
