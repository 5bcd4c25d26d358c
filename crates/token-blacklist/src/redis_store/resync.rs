//! Resyncs and the store's bookkeeping: per-node connections, the eviction-policy
//! check, epochs and settle markers, the scan, and the repair under its lock.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{ErrorKind, RedisResult, ServerErrorKind};
use tracing::Instrument;

use super::replica::{Inner, Settings, as_read};
use super::{Conn, key};
use crate::Error;
use crate::model::{Local, Record};
use crate::wire::{decode, encode};

/// Records re-written per pipeline (and per renewal of the repair lock).
pub(crate) const REPAIR_BATCH: usize = 1000;
/// A settle marker's TTL, in repair windows.
const MARKER_BACKSTOP: u32 = 10;
/// Hash tags tried per node to find one the node serves (cluster).
const PROBE_LIMIT: u32 = 1 << 17;

/// What a completed resync found.
#[derive(Debug)]
pub(super) struct Synced {
    pub(super) read: usize,
    pub(super) repaired: usize,
    /// Every record read is held (the local store was not full).
    pub(super) complete: bool,
    /// Monotonic ns when it started: every revocation acknowledged before is applied.
    pub(super) started: u64,
    /// `Inner::drops` when it started.
    pub(super) drops: u64,
    /// `SyncState::losses` after it read the epochs.
    pub(super) losses: u64,
    pub(super) epochs: Vec<String>,
    /// It found records Redis lacks and could not write them (the lock was taken).
    pub(super) unrepaired: bool,
    /// At its end a settle marker or the repair lock existed.
    pub(super) unsettled_store: bool,
}

/// A connection of its own to one node (resync scans and probes run per node).
pub(crate) async fn node(
    client: &redis::Client,
    timeout: Duration,
) -> Result<MultiplexedConnection, Error> {
    timed(timeout, client.get_multiplexed_async_connection()).await
}

pub(crate) async fn timed<T>(
    timeout: Duration,
    f: impl Future<Output = RedisResult<T>>,
) -> Result<T, Error> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| Error::Timeout(timeout))?
        .map_err(Error::from)
}

/// The node's `maxmemory-policy`: `CONFIG GET`, or `INFO memory` where an ACL denies
/// CONFIG (or it is renamed).
async fn eviction_policy(
    c: &mut MultiplexedConnection,
    timeout: Duration,
) -> Result<String, Error> {
    let mut config = redis::cmd("CONFIG");
    config.arg("GET").arg("maxmemory-policy");
    if let Ok(Ok(pair)) = tokio::time::timeout(timeout, config.query_async::<Vec<String>>(c)).await
        && let Some(policy) = pair.into_iter().nth(1)
    {
        return Ok(policy);
    }
    let mut info = redis::cmd("INFO");
    info.arg("memory");
    let text: String = timed(timeout, info.query_async(c)).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("maxmemory_policy:"))
        .map(|p| p.trim().to_owned())
        .ok_or_else(|| Error::UnsafeEvictionPolicy {
            policy: "not reported by CONFIG GET or INFO memory".into(),
        })
}

/// Refuses a node whose policy can evict revocation keys, unless allowed (counted).
/// Every revocation key has a TTL, so every `volatile-*` and `allkeys-*` policy may
/// evict one; only `noeviction` keeps them until they expire.
pub(super) async fn check_eviction_policy(
    c: &mut MultiplexedConnection,
    settings: &Settings,
    local: &Local,
) -> Result<(), Error> {
    let policy = match eviction_policy(c, settings.timeout).await {
        Ok(policy) if policy == "noeviction" => return Ok(()),
        Ok(policy) => policy,
        Err(e) if !settings.allow_eviction_policy => return Err(e),
        Err(_) => "unreadable".to_owned(),
    };
    if !settings.allow_eviction_policy {
        return Err(Error::UnsafeEvictionPolicy { policy });
    }
    local.stats.eviction_policy_allowed();
    tracing::warn!(
        %policy,
        "redis may evict revocation keys (maxmemory-policy is not noeviction); allowed by the builder"
    );
    Ok(())
}

/// The first meta-key hash tag `{e<i>}` that the node behind `c` serves: a cluster
/// node answers MOVED for the others; a standalone server takes `{e0}`.
pub(super) async fn probe_tag(
    c: &mut MultiplexedConnection,
    prefix: &str,
    timeout: Duration,
) -> Result<u32, Error> {
    for i in 0..PROBE_LIMIT {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(meta_key(prefix, i, "epoch"));
        match timed(timeout, cmd.query_async::<i64>(c)).await {
            Ok(_) => return Ok(i),
            Err(Error::Redis(e))
                if matches!(
                    e.kind(),
                    ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Err(Error::config(
        "primaries",
        format!(
            "a cluster node serves none of {PROBE_LIMIT} hash tags: is every one a primary with slots?"
        ),
    ))
}

/// `prefix:{e<i>}:<what>`: the epoch, settle marker and repair lock keys.
pub(super) fn meta_key(prefix: &str, tag: u32, what: &str) -> String {
    format!("{prefix}:{{e{tag}}}:{what}")
}

/// One node's revocation records, a `SCAN` page at a time (`GET`s pipelined), without
/// the bookkeeping keys. Used by the replica's resync and by the relay.
pub(crate) struct Scan {
    cursor: u64,
    done: bool,
    pattern: String,
    meta: String,
    channel: String,
}

impl Scan {
    pub(crate) fn new(prefix: &str, channel: &str) -> Scan {
        Scan {
            cursor: 0,
            done: false,
            pattern: format!("{prefix}:*"),
            meta: format!("{prefix}:{{e"),
            channel: channel.to_owned(),
        }
    }

    /// Whether `k` is one of the [`meta_key`]s: `prefix:{e<decimal>}:…`. Records' hash
    /// tags are 16 hex digits, which may begin with `e` too (one in sixteen): the
    /// digits after it tell them apart, so no record is skipped.
    fn is_meta(&self, k: &str) -> bool {
        (k.strip_prefix(&self.meta))
            .and_then(|rest| rest.split_once("}:"))
            .is_some_and(|(tag, _)| {
                (1..=10).contains(&tag.len()) && tag.bytes().all(|b| b.is_ascii_digit())
            })
    }

    /// The next page's (key, record) pairs; `None` once the scan is complete. Values
    /// that do not parse (or vanished) are skipped.
    pub(crate) async fn next_page(
        &mut self,
        c: &mut MultiplexedConnection,
        timeout: Duration,
    ) -> Result<Option<Vec<(String, Record)>>, Error> {
        if self.done {
            return Ok(None);
        }
        let mut scan = redis::cmd("SCAN");
        scan.arg(self.cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, keys): (u64, Vec<String>) = timed(timeout, scan.query_async(c)).await?;
        self.cursor = next;
        self.done = next == 0;
        let keys: Vec<String> = keys
            .into_iter()
            .filter(|k| !self.is_meta(k) && *k != self.channel)
            .collect();
        if keys.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.get(k);
        }
        let values: Vec<Option<String>> = timed(timeout, pipe.query_async(c)).await?;
        Ok(Some(
            keys.into_iter()
                .zip(values)
                .filter_map(|(k, v)| Some((k, v.as_deref().and_then(decode)?)))
                .collect(),
        ))
    }
}

/// Writes `records` with the revocation script in one pipeline (standalone) or
/// concurrently (cluster). Pipelined, so not through `Script::invoke_async` (one
/// command, its own NOSCRIPT fallback): the script is loaded first and the pipeline
/// runs `EVALSHA` (a `NOSCRIPT` then fails the batch; the caller retries the resync).
pub(crate) async fn write_records(
    conn: &Conn,
    script: &redis::Script,
    channel: &str,
    records: &[(&str, &Record)],
    timeout: Duration,
) -> Result<(), Error> {
    if records.is_empty() {
        return Ok(());
    }
    let _: String = timed(timeout, async {
        let load = script.prepare_invoke();
        match conn {
            Conn::Standalone(c) => load.load_async(&mut c.clone()).await,
            Conn::Cluster(c) => load.load_async(&mut c.clone()).await,
        }
    })
    .await?;
    let writes = records
        .iter()
        .map(|(k, r)| {
            let mut eval = redis::cmd("EVALSHA");
            eval.arg(script.get_hash())
                .arg(1)
                .arg(*k)
                .arg(channel)
                .arg(encode(r));
            eval
        })
        .collect();
    timed(timeout, conn.many(writes, false)).await?;
    Ok(())
}

impl Inner {
    pub(super) async fn read_epochs(&self) -> Result<Vec<Option<String>>, Error> {
        let mut ids = Vec::with_capacity(self.epoch_keys.len());
        for k in &self.epoch_keys {
            let mut get = redis::cmd("GET");
            get.arg(k);
            ids.push(timed(self.settings.timeout, self.conn.query(&get)).await?);
        }
        Ok(ids)
    }

    /// Reads the epoch ids, creating (with a settle marker) any that is missing.
    async fn ensure_epochs(&self) -> Result<Vec<String>, Error> {
        // The creator deletes its marker when the window has passed on its monotonic
        // clock; the TTL (on Redis's clock) only frees the others if the creator dies.
        let marker_ms = (self.settings.repair_window * MARKER_BACKSTOP)
            .as_millis()
            .max(1)
            .to_string();
        let mut ids = Vec::with_capacity(self.epoch_keys.len());
        for (ek, mk) in self.epoch_keys.iter().zip(&self.marker_keys) {
            let n = self.ids.fetch_add(1, Ordering::Relaxed);
            let proposal = format!(
                "{}-{:016x}",
                self.instance,
                std::hash::BuildHasher::hash_one(
                    &std::collections::hash_map::RandomState::new(),
                    (n, self.mono_nanos()),
                )
            );
            let id: String = self
                .eval(&self.epoch, &[ek, mk], &[&proposal, &marker_ms])
                .await?;
            if id == proposal {
                tracing::warn!(
                    window = ?self.settings.repair_window,
                    "no revocation epoch in redis (a new deployment, or redis lost its data): no replica is fresh until the repair window has passed"
                );
                self.state()
                    .markers
                    .push((mk.clone(), id.clone(), self.mono_nanos()));
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// Releases the settle markers we created whose repair window has passed (on our
    /// monotonic clock; the marker's own TTL is only a backstop if we die).
    pub(super) async fn release_markers(&self) {
        let window = u64::try_from(self.settings.repair_window.as_nanos()).unwrap_or(u64::MAX);
        let now = self.mono_nanos();
        let due: Vec<(String, String)> = self
            .state()
            .markers
            .iter()
            .filter(|(_, _, at)| now.saturating_sub(*at) >= window)
            .map(|(k, id, _)| (k.clone(), id.clone()))
            .collect();
        for (k, id) in due {
            if self
                .eval::<i64>(&self.lease, &[&k], &[&id, "0"])
                .await
                .is_ok()
            {
                self.state().markers.retain(|(mk, _, _)| *mk != k);
            }
        }
    }

    /// Whether a resync could settle now: no repair lock held, and (unless the next
    /// resync must repair first) no settle marker.
    pub(super) async fn quiet(&self) -> bool {
        let repair_first = self.state().repair_first;
        let mut keys = vec![&self.lock_key];
        if !repair_first {
            keys.extend(&self.marker_keys);
        }
        self.count_existing(&keys).await.is_ok_and(|n| n == 0)
    }

    async fn count_existing(&self, keys: &[&String]) -> Result<usize, Error> {
        let mut n = 0;
        for k in keys {
            let mut exists = redis::cmd("EXISTS");
            exists.arg(*k);
            let found: i64 = timed(self.settings.timeout, self.conn.query(&exists)).await?;
            n += usize::from(found > 0);
        }
        Ok(n)
    }

    /// [`resync`](Self::resync) in a span that records what it read and re-wrote.
    pub(super) async fn resync_traced(&self) -> Result<Synced, Error> {
        let span = tracing::info_span!(
            "token_blacklist.resync",
            nodes = self.nodes.len(),
            read = tracing::field::Empty,
            repaired = tracing::field::Empty
        );
        let synced = self.resync().instrument(span.clone()).await?;
        span.record("read", synced.read);
        span.record("repaired", synced.repaired);
        Ok(synced)
    }

    /// Reads every record from every node and applies them; re-writes (once, under
    /// the repair lock) the live local records Redis no longer has; checks the epochs
    /// before and after. The caller settles the outcome.
    async fn resync(&self) -> Result<Synced, Error> {
        let started = self.mono_nanos();
        let drops = self.drops.load(Ordering::Acquire);
        let before = self.ensure_epochs().await?;
        let known = self.state().epochs.clone();
        if known.is_some_and(|k| k != before) {
            self.lost("a resync");
        }
        let (losses, held_data) = {
            let st = self.state();
            (st.losses, st.epochs.is_some() && !st.settled)
        };
        // A replica that held data when Redis lost it takes the lock before it scans:
        // no replica settles while it restores what it holds.
        let mut locked = held_data && self.try_lock().await?;
        let scanned = self.scan_and_repair(&mut locked).await;
        if locked {
            // If the release fails, the lease runs out.
            let _ = self
                .eval::<i64>(&self.lease, &[&self.lock_key], &[&self.instance, "0"])
                .await;
        }
        let (read, complete, repaired, unrepaired) = scanned?;
        if self.read_epochs().await? != as_read(&before) {
            self.lost("a resync");
        }
        let mut store_keys = vec![&self.lock_key];
        store_keys.extend(&self.marker_keys);
        let unsettled_store = self.count_existing(&store_keys).await? > 0;
        self.local.stats.resync();
        Ok(Synced {
            read,
            repaired,
            complete,
            started,
            drops,
            losses,
            epochs: before,
            unrepaired,
            unsettled_store,
        })
    }

    /// The scan and the repair: (records read, all held, re-written, left unrepaired
    /// because another replica holds the lock). Takes the lock if it must write and
    /// does not hold it yet; renews it while it holds it.
    async fn scan_and_repair(
        &self,
        locked: &mut bool,
    ) -> Result<(usize, bool, usize, bool), Error> {
        let timeout = self.settings.timeout;
        let prefix = &self.settings.prefix;
        let mut complete = true;
        // What Redis holds, by key: a record it holds narrower than ours (an old
        // snapshot, a failover that missed a write) needs repair as much as a missing one.
        let mut seen: HashMap<String, Record> = HashMap::new();
        for client in &self.nodes {
            let mut c = node(client, timeout).await?;
            check_eviction_policy(&mut c, &self.settings, &self.local).await?;
            let mut scan = Scan::new(prefix, &self.channel);
            while let Some(page) = scan.next_page(&mut c, timeout).await? {
                for (k, r) in page {
                    complete &= self.hold(&r);
                    seen.insert(k, r);
                }
                if *locked {
                    self.renew().await?;
                }
            }
        }
        let now_ms = self.local.now().as_unix_nanos() / 1_000_000;
        let missing: Vec<(String, Record)> = self
            .local
            .records()
            .into_iter()
            .filter(|r| r.expires_ms() > now_ms)
            .map(|r| (key(prefix, &r), r))
            .filter(|(k, r)| !seen.get(k).is_some_and(|held| held.covers(r)))
            .collect();
        if missing.is_empty() {
            return Ok((seen.len(), complete, 0, false));
        }
        if !*locked {
            *locked = self.try_lock().await?;
        }
        if !*locked {
            return Ok((seen.len(), complete, 0, true));
        }
        let written = self
            .repair_locked(&missing)
            .instrument(tracing::info_span!(
                "token_blacklist.repair",
                missing = missing.len()
            ))
            .await?;
        if written > 0 {
            tracing::warn!(
                repaired = written,
                "redis had lost revocations this replica holds; re-written"
            );
            self.local.stats.repaired(written);
        }
        Ok((seen.len(), complete, written, false))
    }

    /// The repair lock's lease (renewed while it is held).
    fn lease_ms(&self) -> String {
        (self.settings.timeout * 10).as_millis().to_string()
    }

    /// Takes the repair lock if no one holds it.
    async fn try_lock(&self) -> Result<bool, Error> {
        let mut lock = redis::cmd("SET");
        lock.arg(&self.lock_key)
            .arg(&self.instance)
            .arg("NX")
            .arg("PX")
            .arg(self.lease_ms());
        let taken: Option<String> = timed(self.settings.timeout, self.conn.query(&lock)).await?;
        Ok(taken.is_some())
    }

    /// Renews our lease on the repair lock; an error if it ran out (another replica
    /// may be repairing now).
    async fn renew(&self) -> Result<(), Error> {
        let lease = self.lease_ms();
        let held: i64 = self
            .eval(&self.lease, &[&self.lock_key], &[&self.instance, &lease])
            .await?;
        if held == 0 {
            return Err(Error::Timeout(self.settings.timeout * 10));
        }
        Ok(())
    }

    /// Under the lock: writes the records Redis still misses or holds narrower (a
    /// previous holder may have written them since our scan), in pipelined batches.
    /// The write widens what is there (revoke.lua), never narrows it.
    async fn repair_locked(&self, missing: &[(String, Record)]) -> Result<usize, Error> {
        let timeout = self.settings.timeout;
        let mut written = 0;
        for batch in missing.chunks(REPAIR_BATCH) {
            let gets = batch.iter().map(|(k, _)| {
                let mut c = redis::cmd("GET");
                c.arg(k);
                c
            });
            let replies = timed(timeout, self.conn.many(gets.collect(), false)).await?;
            let mut writes = Vec::new();
            for ((k, r), held) in batch.iter().zip(replies) {
                let held: Option<String> =
                    redis::from_redis_value(held).map_err(redis::RedisError::from)?;
                if !held
                    .as_deref()
                    .and_then(decode)
                    .is_some_and(|h| h.covers(r))
                {
                    writes.push((k.as_str(), r));
                }
            }
            write_records(&self.conn, &self.revoke, &self.channel, &writes, timeout).await?;
            written += writes.len();
            self.renew().await?;
        }
        Ok(written)
    }
}
