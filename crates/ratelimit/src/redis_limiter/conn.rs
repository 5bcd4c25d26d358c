//! Connections (standalone or cluster), the circuit breaker, and the epoch keys by
//! which the limiter sees that Redis lost its data.

use std::hash::{BuildHasher, RandomState};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, FromRedisValue, RedisResult, ScriptInvocation, Value};
use tracing::Instrument;

/// Redis Cluster's hash slots.
pub(super) const SLOTS: usize = 16_384;
/// Epoch ids stay below 2^53, exact in the script's numbers.
const EPOCH_ID_MASK: u64 = (1 << 53) - 1;

/// A circuit breaker on the clock's monotonic reading (a wall-clock step must not
/// hold it open): after `threshold` consecutive failures, Redis is not called for
/// `cooldown`; then one probe call decides.
#[derive(Debug)]
pub(super) struct Breaker {
    /// 0 = closed; otherwise calls are skipped until this monotonic time (ns).
    pub(super) open_until: AtomicU64,
    pub(super) failures: AtomicU32,
    pub(super) threshold: u32,
    pub(super) cooldown: Duration,
}

impl Breaker {
    /// Whether this caller may call Redis now. After the cooldown exactly one caller
    /// wins the probe; the others keep using the failure policy until it succeeds.
    pub(super) fn try_acquire(&self, now: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        self.open_until
            .compare_exchange(until, self.reopen(now), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Until when an opening circuit stays open: never 0, which means closed.
    fn reopen(&self, now: u64) -> u64 {
        let cooldown = u64::try_from(self.cooldown.as_nanos()).unwrap_or(u64::MAX);
        now.saturating_add(cooldown).max(1)
    }

    /// A call succeeded; true if that closed an open circuit.
    pub(super) fn success(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        let closed = self.open_until.swap(0, Ordering::AcqRel) != 0;
        if closed {
            tracing::info!("redis is back: rate limiter circuit closed");
        }
        closed
    }

    /// A call failed; true if that opened the circuit.
    pub(super) fn failure(&self, now: u64) -> bool {
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let opened = failures >= self.threshold
            && self.open_until.swap(self.reopen(now), Ordering::AcqRel) == 0;
        if opened {
            tracing::warn!(failures, cooldown = ?self.cooldown, "rate limiter circuit opened");
        }
        opened
    }

    pub(super) fn is_open(&self) -> bool {
        self.open_until.load(Ordering::Acquire) != 0
    }
}

#[derive(Clone)]
pub(super) enum Conn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Standalone(_) => "Standalone",
            Conn::Cluster(_) => "Cluster",
        })
    }
}

impl Conn {
    /// Runs a script: `EVALSHA`, and after `NOSCRIPT` `SCRIPT LOAD` and `EVALSHA`
    /// again (redis-rs's `Script`; on a cluster the load goes to the key's node).
    pub(super) async fn invoke<T: FromRedisValue>(
        &self,
        script: &ScriptInvocation<'_>,
        op: &'static str,
    ) -> RedisResult<T> {
        async {
            match self.clone() {
                Conn::Standalone(mut c) => script.invoke_async(&mut c).await,
                Conn::Cluster(mut c) => script.invoke_async(&mut c).await,
            }
        }
        .instrument(tracing::debug_span!("redis", op))
        .await
    }

    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> RedisResult<T> {
        async {
            match self.clone() {
                Conn::Standalone(mut c) => cmd.query_async(&mut c).await,
                Conn::Cluster(mut c) => cmd.query_async(&mut c).await,
            }
        }
        .instrument(tracing::debug_span!("redis", op = "command"))
        .await
    }

    /// Runs a command without keys on the server, or on every primary of a cluster:
    /// one reply per server.
    pub(super) async fn query_each(&self, cmd: &Cmd) -> RedisResult<Vec<Value>> {
        self.each(cmd)
            .instrument(tracing::debug_span!("redis", op = "each_primary"))
            .await
    }

    async fn each(&self, cmd: &Cmd) -> RedisResult<Vec<Value>> {
        match self.clone() {
            Conn::Standalone(mut c) => Ok(vec![cmd.query_async(&mut c).await?]),
            Conn::Cluster(mut c) => {
                let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                match c.route_command(cmd.clone(), all).await? {
                    Value::Map(per_node) => per_node
                        .into_iter()
                        .map(|(_, reply)| match reply {
                            Value::ServerError(e) => Err(e.into()),
                            reply => Ok(reply),
                        })
                        .collect(),
                    reply => Ok(vec![reply]),
                }
            }
        }
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

/// CRC16-XMODEM, Redis Cluster's key hash (cluster specification, appendix A).
pub(super) fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc
}

/// The hash slot of a key whose hash tag is `tag`.
pub(super) fn slot_of(tag: &str) -> usize {
    usize::from(crc16(tag.as_bytes())) % SLOTS
}

/// For each hash slot, the smallest number whose decimal form hashes to it: the hash
/// tag of that slot's epoch key (a script may only touch keys of one slot).
pub(super) fn slot_tags() -> &'static [u32] {
    static TAGS: OnceLock<Box<[u32]>> = OnceLock::new();
    TAGS.get_or_init(|| {
        let mut tags = vec![u32::MAX; SLOTS];
        let mut missing = SLOTS;
        // About 170,000 numbers cover every slot (a test checks the table).
        let mut n = 0u32;
        while missing > 0 {
            let slot = slot_of(&n.to_string());
            if tags[slot] == u32::MAX {
                tags[slot] = n;
                missing -= 1;
            }
            n += 1;
        }
        tags.into_boxed_slice()
    })
}

/// What this limiter knows of Redis' epoch keys: one on a standalone server, one per
/// hash slot on a cluster, each holding `"<id> <lost_at µs>"`. An epoch is re-created,
/// with a new id, only after Redis lost it: a missing or changed epoch means Redis lost
/// data.
pub(super) struct Epochs {
    /// The id last seen, per slot (one entry when standalone); 0 = none yet.
    pub(super) known: Box<[AtomicU64]>,
    /// Ids for epochs this limiter creates: from a random start, one per call.
    pub(super) next_id: AtomicU64,
}

impl std::fmt::Debug for Epochs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the 16,384 ids of a cluster.
        f.debug_struct("Epochs")
            .field("slots", &self.known.len())
            .finish_non_exhaustive()
    }
}

impl Epochs {
    pub(super) fn new(cluster: bool) -> Epochs {
        let slots = if cluster { SLOTS } else { 1 };
        Epochs {
            known: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            next_id: AtomicU64::new(RandomState::new().hash_one(std::process::id())),
        }
    }

    /// A fresh non-zero id below 2^53.
    pub(super) fn fresh_id(&self) -> u64 {
        (self.next_id.fetch_add(1, Ordering::Relaxed) & EPOCH_ID_MASK).max(1)
    }

    pub(super) fn slot(&self, tag: &str) -> usize {
        if self.known.len() == 1 {
            0
        } else {
            slot_of(tag)
        }
    }

    /// Records the epoch a call saw. True if it replaced a known one the call sent:
    /// Redis lost data (true once per replacement, however many calls see it).
    pub(super) fn observe(&self, slot: usize, sent: u64, seen: u64) -> bool {
        sent != seen
            && self.known[slot]
                .compare_exchange(sent, seen, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            && sent != 0
    }
}

/// The id of an epoch value `"<id> <lost_at>"`.
pub(super) fn epoch_id(value: &str) -> Option<u64> {
    let (id, lost) = value.split_once(' ')?;
    lost.parse::<u64>().ok()?;
    id.parse().ok()
}
