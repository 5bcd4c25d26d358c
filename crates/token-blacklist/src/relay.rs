//! The relay between regions: revocations made in one region's Redis reach another's.
//!
//! A [`Relay`] subscribes to the source region's revocation channel and writes every
//! record it hears to the target region's Redis through the same revocation script
//! the replicas use (so records only widen, the target's replicas get them on their
//! own channel, and their repair after a data loss covers relayed records too). After
//! (re)subscribing it scans the source (a catch-up), and again every `resync_every`.
//!
//! **Freshness across regions.** The target's replicas (built with
//! `relayed_from(region)`) must not call themselves fresh for the source's revocations
//! on the strength of their own heartbeats alone. The relay collects the heartbeats
//! the target's replicas publish (`H <instance> <sent> …`), then publishes a probe on
//! the source (`X <relay> <seq>`). When its probe comes back, every record published
//! on the source before it has been written to the target (in order, awaited), so it
//! publishes on the target `A <region> <instance>=<sent> …` for the heartbeats it had
//! collected before the probe. A replica that reads its own entry knows: every
//! revocation acknowledged in the source region before it sent that heartbeat is now
//! applied in it (relayed records were published on the target before the ack, or
//! were there before it subscribed and were found by its catch-up scan). No clock is
//! compared between machines: `sent` is the replica's own monotonic reading.
//!
//! A relay sends acknowledgements only once its catch-up scan is done; it stops (and
//! target replicas age) whenever it cannot reach either side.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::Error;
use crate::redis_store::{
    Conn, REPAIR_BATCH, REVOKE_LUA, Scan, check_durations, check_prefix, check_region,
    ensure_crypto_provider, key, node, silence_bound, timed, write_records,
};
use crate::wire::decode;

/// Probes awaiting their return; older ones are dropped (their acks are superseded).
const MAX_PENDING_PROBES: usize = 64;

/// Builds a [`Relay`]: infallible setters; checks in `connect*`.
#[derive(Debug)]
pub struct RelayBuilder {
    region: String,
    prefix: String,
    timeout: Duration,
    probe_every: Duration,
    resync_every: Duration,
}

impl Default for RelayBuilder {
    fn default() -> Self {
        RelayBuilder {
            region: String::new(),
            prefix: "palisade:tb".into(),
            timeout: Duration::from_secs(1),
            probe_every: Duration::from_millis(100),
            resync_every: Duration::from_secs(60),
        }
    }
}

/// Counters of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RelayStats {
    /// Records written to the target (from messages and scans).
    pub relayed: u64,
    /// Acknowledgements published on the target (each proves the relay current for
    /// the replicas it names).
    pub acknowledgements: u64,
    /// Scans of the source completed (the catch-up after every (re)subscription, and
    /// the periodic ones).
    pub resyncs: u64,
    /// Sessions that ended in an error (a side unreachable, a write refused).
    pub failures: u64,
}

impl RelayBuilder {
    /// The source region's name, as the target's replicas name it in
    /// `RedisBlacklistBuilder::relayed_from` (required; 1..=64 visible ASCII
    /// characters without `=`).
    pub fn region(mut self, name: &str) -> Self {
        name.clone_into(&mut self.region);
        self
    }

    /// Key prefix and channel, the same in both regions (default `palisade:tb`).
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// Per-call timeout (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often the relay proves itself to the target's replicas (default 100 ms;
    /// keep it well under their `fresh_within`).
    pub fn probe_every(mut self, every: Duration) -> Self {
        self.probe_every = every;
        self
    }

    /// Full scan of the source as a backstop (default 60 s).
    pub fn resync_every(mut self, every: Duration) -> Self {
        self.resync_every = every;
        self
    }

    /// Relays from the standalone Redis at `source` to the one at `target`.
    pub async fn connect(self, source: &str, target: &str) -> Result<Relay, Error> {
        self.validate()?;
        let (source, target) = (redis::Client::open(source)?, redis::Client::open(target)?);
        self.connect_clients(source, target).await
    }

    /// Relays between two standalone Redis servers reached through your clients (TLS
    /// roots, credentials). Returns once both answer; the relay then runs until
    /// dropped, reconnecting with backoff.
    pub async fn connect_clients(
        self,
        source: redis::Client,
        target: redis::Client,
    ) -> Result<Relay, Error> {
        self.validate()?;
        ensure_crypto_provider();
        let manager = |c: redis::Client| {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(200));
            async move { timed(self.timeout, c.get_connection_manager_with_config(config)).await }
        };
        let source_conn = manager(source.clone()).await?;
        let target_conn = manager(target.clone()).await?;
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            std::time::SystemTime::now(),
        );
        let inner = Arc::new(RelayInner {
            channel: format!("{}:events", self.prefix),
            id: format!("{seed:016x}"),
            script: redis::Script::new(REVOKE_LUA),
            source,
            target,
            source_conn,
            target_conn,
            settings: self,
            relayed: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let span = tracing::info_span!("token_blacklist.relay", region = %inner.settings.region);
        let task = tokio::spawn(run(inner.clone()).instrument(span));
        Ok(Relay { inner, task })
    }

    fn validate(&self) -> Result<(), Error> {
        check_region("region", &self.region)?;
        check_prefix(&self.prefix)?;
        check_durations(&[
            ("timeout", self.timeout),
            ("probe_every", self.probe_every),
            ("resync_every", self.resync_every),
        ])
    }
}

/// Carries revocations from one region's Redis to another's, and proves to the
/// target's replicas that it is current (see the crate docs, "Regions"). One direction:
/// run one relay per (source, target) pair. Stops when dropped.
#[derive(Debug)]
pub struct Relay {
    inner: Arc<RelayInner>,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// A builder with the defaults; name the source region with
    /// [`RelayBuilder::region`].
    pub fn builder() -> RelayBuilder {
        RelayBuilder::default()
    }

    /// The counters.
    pub fn stats(&self) -> RelayStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let i = &self.inner;
        RelayStats {
            relayed: g(&i.relayed),
            acknowledgements: g(&i.acks),
            resyncs: g(&i.resyncs),
            failures: g(&i.failures),
        }
    }
}

struct RelayInner {
    settings: RelayBuilder,
    channel: String,
    /// Names this relay's probes on the source channel.
    id: String,
    script: redis::Script,
    source: redis::Client,
    target: redis::Client,
    source_conn: ConnectionManager,
    target_conn: ConnectionManager,
    relayed: AtomicU64,
    acks: AtomicU64,
    resyncs: AtomicU64,
    failures: AtomicU64,
}

// By hand: the clients hold connection info (passwords).
impl std::fmt::Debug for RelayInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayInner")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RelayInner {
    async fn subscribe(&self, client: &redis::Client) -> Result<redis::aio::PubSub, Error> {
        timed(self.settings.timeout, async {
            let mut ps = client.get_async_pubsub().await?;
            ps.subscribe(&self.channel).await?;
            Ok(ps)
        })
        .await
    }

    async fn publish(&self, conn: &ConnectionManager, msg: String) -> Result<(), Error> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(msg);
        let _: i64 = timed(self.settings.timeout, cmd.query_async(&mut conn.clone())).await?;
        Ok(())
    }

    /// Writes one relayed record to the target (widening; announced there if new).
    async fn relay(&self, r: &crate::model::Record) -> Result<(), Error> {
        let mut call = self.script.prepare_invoke();
        call.key(key(&self.settings.prefix, r))
            .arg(&self.channel)
            .arg(crate::wire::encode(r));
        let _: redis::Value = timed(
            self.settings.timeout,
            call.invoke_async(&mut self.target_conn.clone()),
        )
        .await?;
        self.count_relayed(1);
        Ok(())
    }

    fn count_relayed(&self, n: usize) {
        self.relayed.fetch_add(n as u64, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "palisade_token_blacklist_relayed_total",
            "region" => self.settings.region.clone()
        )
        .increment(n as u64);
    }

    /// Scans the source and writes every record to the target, in pipelined batches.
    async fn scan(&self) -> Result<(), Error> {
        let timeout = self.settings.timeout;
        let mut c = node(&self.source, timeout).await?;
        let mut scan = Scan::new(&self.settings.prefix, &self.channel);
        let target = Conn::Standalone(self.target_conn.clone());
        while let Some(page) = scan.next_page(&mut c, timeout).await? {
            for batch in page.chunks(REPAIR_BATCH) {
                let writes: Vec<_> = batch.iter().map(|(k, r)| (k.as_str(), r)).collect();
                write_records(&target, &self.script, &self.channel, &writes, timeout).await?;
                self.count_relayed(writes.len());
            }
        }
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// A scan on its own task, aborted when dropped.
struct ScanJob(JoinHandle<Result<(), Error>>);

impl Drop for ScanJob {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn scanned(job: &mut Option<ScanJob>) -> Result<(), Error> {
    match job {
        Some(j) => match (&mut j.0).await {
            Ok(outcome) => outcome,
            Err(_) => Err(lost("scan task")),
        },
        None => std::future::pending().await,
    }
}

async fn run(inner: Arc<RelayInner>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let started = std::time::Instant::now();
        if let Err(e) = session(&inner).await {
            inner.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "revocation relay interrupted; reconnecting");
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(50);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One subscription to each side, until something fails.
async fn session(inner: &Arc<RelayInner>) -> Result<(), Error> {
    let span = tracing::debug_span!("token_blacklist.subscribe", sides = 2);
    let (mut from, mut to) = async {
        let from = inner.subscribe(&inner.source).await?;
        let to = inner.subscribe(&inner.target).await?;
        Ok::<_, Error>((from, to))
    }
    .instrument(span)
    .await?;
    let (mut from, mut to) = (from.on_message(), to.on_message());
    let spawn_scan = || {
        let inner = inner.clone();
        Some(ScanJob(tokio::spawn(async move {
            inner
                .scan()
                .instrument(tracing::info_span!("token_blacklist.relay_scan"))
                .await
        })))
    };
    // Subscribed first, then the catch-up scan: a record written during it arrives as
    // a message. Acks wait for it.
    let mut job = spawn_scan();
    let mut caught_up = false;
    // Target replicas' heartbeats heard since the last probe: instance -> sent.
    let mut heard: HashMap<String, u64> = HashMap::new();
    let mut pending: VecDeque<(u64, HashMap<String, u64>)> = VecDeque::new();
    let mut seq: u64 = 0;
    let mut probe = tokio::time::interval(inner.settings.probe_every);
    let mut resync = tokio::time::interval(inner.settings.resync_every);
    resync.reset();
    // A source subscription that delivers nothing at all for this long after the
    // source took a probe of ours is dead: a server gone without a reset leaves it
    // open and silent. Any message counts (a burst of revocations, each written to
    // the target in turn, delays our probe's return but not the messages before it).
    let silence = silence_bound(inner.settings.probe_every, inner.settings.timeout);
    let mut unheard_since: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            msg = from.next() => {
                let msg = msg.ok_or_else(|| lost("source"))?;
                unheard_since = None;
                let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
                if let Some(rest) = text.strip_prefix("X ") {
                    let Some((id, n)) = rest.split_once(' ') else { continue };
                    let Ok(n) = n.parse::<u64>() else { continue };
                    if id != inner.id {
                        continue;
                    }
                    while pending.front().is_some_and(|(s, _)| *s < n) {
                        pending.pop_front();
                    }
                    if let Some((_, seen)) = pending.pop_front().filter(|(s, _)| *s == n)
                        && caught_up
                        && !seen.is_empty()
                    {
                        let mut ack = format!("A {}", inner.settings.region);
                        for (instance, sent) in &seen {
                            ack.push_str(&format!(" {instance}={sent}"));
                        }
                        inner.publish(&inner.target_conn, ack).await?;
                        inner.acks.fetch_add(1, Ordering::Relaxed);
                        #[cfg(feature = "metrics")]
                        metrics::counter!(
                            "palisade_token_blacklist_relay_acks_total",
                            "region" => inner.settings.region.clone()
                        )
                        .increment(1);
                    }
                } else if let Some(r) = decode(text) {
                    // In order, awaited: the next probe's ack comes after this write.
                    inner.relay(&r).await?;
                }
                // Heartbeats and acks of the source region are not ours to relay.
            }
            msg = to.next() => {
                let msg = msg.ok_or_else(|| lost("target"))?;
                let Ok(text) = std::str::from_utf8(msg.get_payload_bytes()) else { continue };
                if let Some(rest) = text.strip_prefix("H ") {
                    let mut parts = rest.split(' ');
                    if let (Some(instance), Some(Ok(sent))) =
                        (parts.next(), parts.next().map(str::parse::<u64>))
                    {
                        let e = heard.entry(instance.to_owned()).or_insert(sent);
                        *e = (*e).max(sent);
                    }
                }
            }
            _ = probe.tick() => {
                seq += 1;
                pending.push_back((seq, std::mem::take(&mut heard)));
                if pending.len() > MAX_PENDING_PROBES {
                    pending.pop_front();
                }
                inner
                    .publish(&inner.source_conn, format!("X {} {seq}", inner.id))
                    .await?;
                if unheard_since
                    .get_or_insert_with(tokio::time::Instant::now)
                    .elapsed()
                    > silence
                {
                    return Err(lost("source"));
                }
            }
            _ = resync.tick(), if job.is_none() => job = spawn_scan(),
            outcome = scanned(&mut job) => {
                job = None;
                resync.reset();
                outcome?;
                if !caught_up {
                    tracing::info!("revocation relay caught up");
                }
                caught_up = true;
            }
        }
    }
}

fn lost(side: &'static str) -> Error {
    Error::Redis(redis::RedisError::from((
        redis::ErrorKind::Io,
        "relay subscription lost",
        side.to_owned(),
    )))
}
