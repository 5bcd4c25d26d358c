//! Handing events to the consumer: the channel, the acknowledgement that an
//! alerting event was taken, and the memory of issuances already discovered.

use std::collections::{HashSet, VecDeque};

use tokio::sync::{mpsc, oneshot, watch};

use super::Event;
use crate::merkle::Hash;

/// What the consumer receives: an event, and for an alert the way to say it was taken.
pub(super) struct Envelope {
    event: Event,
    ack: Option<oneshot::Sender<()>>,
}

/// The monitor is stopping (or its consumer is gone).
pub(super) struct Stopped;

/// Runs `fut` unless the monitor is stopping.
pub(super) async fn or_stop<T>(
    stop: &mut watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Result<T, Stopped> {
    if *stop.borrow() {
        return Err(Stopped);
    }
    tokio::select! {
        biased;
        _ = stop.changed() => Err(Stopped),
        v = fut => Ok(v),
    }
}

/// A log task's end of the event channel.
pub(super) struct Outbox {
    tx: mpsc::Sender<Envelope>,
    stop: watch::Receiver<bool>,
}

impl Outbox {
    pub(super) fn new(tx: mpsc::Sender<Envelope>, stop: watch::Receiver<bool>) -> Self {
        Self { tx, stop }
    }

    /// A receiver of the stop signal, for the task's own waits.
    pub(super) fn stop(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    /// Queues an informational event (or an alert that is not tracked).
    pub(super) async fn send(&self, event: Event) -> Result<(), Stopped> {
        let mut stop = self.stop.clone();
        or_stop(&mut stop, self.tx.send(Envelope { event, ack: None }))
            .await?
            .map_err(|_| Stopped)
    }

    /// Queues an alerting event and waits until the consumer has taken it.
    pub(super) async fn hand_over(&self, event: Event) -> Result<(), Stopped> {
        let (ack, mut taken) = oneshot::channel();
        let mut stop = self.stop.clone();
        let envelope = Envelope {
            event,
            ack: Some(ack),
        };
        or_stop(&mut stop, self.tx.send(envelope))
            .await?
            .map_err(|_| Stopped)?;
        // A stop that races with the consumer taking the event must not lose the
        // save: the ack is checked first, and again after the stop.
        tokio::select! {
            biased;
            r = &mut taken => r.map_err(|_| Stopped),
            _ = stop.changed() => taken.try_recv().map_err(|_| Stopped),
        }
    }
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

    /// Takes back the sighting [`first_sighting`](Self::first_sighting) just
    /// recorded, for an entry whose event was not handed over (it is read again).
    pub(super) fn forget(&mut self, tbs_hash: Hash) {
        if self.set.remove(&tbs_hash)
            && let Some(i) = self.order.iter().rposition(|h| *h == tbs_hash)
        {
            self.order.remove(i);
        }
    }
}
