//! [`RedisBlacklistBuilder`]: settings, and the ways to reach Redis (a URL, your own
//! `Client`, `ConnectionManager` or cluster connection).

use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{Clock, SystemClock};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;

use super::replica::{Inner, Settings};
use super::{Conn, FailurePolicy, RedisBlacklist, resync};
use crate::model::Local;
use crate::{Config, Error};

/// Longest region name (`relayed_from`, [`crate::RelayBuilder::region`]).
pub(crate) const MAX_REGION_LEN: usize = 64;

/// A region name goes into pub/sub messages between spaces: 1..=64 visible ASCII
/// characters, no `=`.
pub(crate) fn check_region(field: &'static str, name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() > MAX_REGION_LEN
        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
    {
        return Err(Error::config(
            field,
            format!(
                "region {name:?} must be 1..={MAX_REGION_LEN} visible ASCII characters without '='"
            ),
        ));
    }
    Ok(())
}

/// A key prefix (also the channel name): non-empty, no hash-tag braces, and none of
/// `SCAN MATCH`'s pattern characters: a resync scans `prefix:*`, and a `[` or a backslash in
/// the prefix would match none of its keys (a new replica would settle empty).
pub(crate) fn check_prefix(prefix: &str) -> Result<(), Error> {
    if prefix.is_empty() || prefix.contains(['{', '}', '*', '?', '[', ']', '\\']) {
        return Err(Error::config(
            "prefix",
            format!("{prefix:?} must be non-empty and free of {{ }} * ? [ ] \\"),
        ));
    }
    Ok(())
}

/// The longest a duration setting may be: the replica multiplies some (a lock's lease
/// is ten timeouts), and no heartbeat, timeout or window of a day makes sense.
const MAX_SETTING: Duration = Duration::from_secs(24 * 3600);

/// Zero durations and durations over a day are refused by name.
pub(crate) fn check_durations(durations: &[(&'static str, Duration)]) -> Result<(), Error> {
    for &(name, d) in durations {
        if d.is_zero() {
            return Err(Error::config(name, "must be above zero"));
        }
        if d > MAX_SETTING {
            return Err(Error::config(name, "must be at most 24 h"));
        }
    }
    Ok(())
}

/// With `tls`: redis-rs builds its rustls config with the process's default
/// `CryptoProvider`, and rustls cannot pick one when a build enables both ring and
/// aws-lc-rs (a workspace with reqwest's default rustls does). If the process has
/// chosen none, install ring's (the workspace's crypto); install your own before
/// connecting to choose another.
pub(crate) fn ensure_crypto_provider() {
    #[cfg(feature = "tls")]
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Builds a [`RedisBlacklist`]: infallible setters; every check happens in the
/// `connect*` method, which names the field that was wrong.
///
/// Ways to reach Redis, each with what the replica's pub/sub subscription uses (it
/// needs a connection of its own, which a `ConnectionManager` or a cluster connection
/// cannot give):
///
/// | you have | call | commands | subscription and resync scans |
/// |---|---|---|---|
/// | a URL (`redis://`, `rediss://` with feature `tls`) | [`connect`](Self::connect) | a `ConnectionManager` we open | the same URL |
/// | a `redis::Client` (your TLS roots, auth, RESP3) | [`connect_client`](Self::connect_client) | a `ConnectionManager` from it | the same client |
/// | a `ConnectionManager` | [`connect_manager`](Self::connect_manager) | yours | the `Client` you pass beside it |
/// | cluster seed URLs | [`connect_cluster`](Self::connect_cluster) | a `ClusterConnection` we open | one client per URL (every primary) |
/// | a `ClusterConnection` (from your `ClusterClient`) | [`connect_cluster_connection`](Self::connect_cluster_connection) | yours | the `Client` of every primary you pass |
#[derive(Debug)]
pub struct RedisBlacklistBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
    settings: Settings,
}

impl Default for RedisBlacklistBuilder {
    fn default() -> Self {
        RedisBlacklistBuilder {
            config: Config::default(),
            clock: Arc::new(SystemClock),
            settings: Settings {
                prefix: "palisade:tb".into(),
                timeout: Duration::from_secs(1),
                heartbeat: Duration::from_millis(100),
                resync_every: Duration::from_secs(60),
                fresh_within: Duration::from_secs(1),
                repair_window: Duration::from_secs(5),
                failure_policy: FailurePolicy::Closed,
                allow_eviction_policy: false,
                relayed_from: Vec::new(),
            },
        }
    }
}

impl RedisBlacklistBuilder {
    /// The revocation model (lifetimes, local capacity).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Key prefix and pub/sub channel name (default `palisade:tb`); none of
    /// `{ } * ? [ ]` or a backslash (refused by `connect`).
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.settings.prefix);
        self
    }

    /// Per-call timeout for revocations and resync reads (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// How often the replica proves it is in sync (default 100 ms): it checks that
    /// Redis still holds the epoch it synced under and publishes a heartbeat; when its
    /// own heartbeat comes back on the subscription, every revocation acknowledged
    /// before it was sent has been applied.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.settings.heartbeat = every;
        self
    }

    /// Full resync as a backstop even without a reconnect (default 60 s).
    pub fn resync_every(mut self, every: Duration) -> Self {
        self.settings.resync_every = every;
        self
    }

    /// The freshness [`FailurePolicy::Closed`] requires (default 1 s).
    pub fn fresh_within(mut self, bound: Duration) -> Self {
        self.settings.fresh_within = bound;
        self
    }

    /// How long a replica that finds no epoch in Redis (a new deployment, or Redis
    /// lost its data) keeps every replica from calling itself fresh, so that live
    /// replicas can notice and restore the revocations they hold (default 5 s,
    /// measured on the clock's monotonic reading). It must exceed the time a live
    /// replica needs to notice: a heartbeat, or after a Redis restart its reconnect
    /// (backoff up to 2 s) plus `timeout`.
    pub fn repair_window(mut self, window: Duration) -> Self {
        self.settings.repair_window = window;
        self
    }

    /// What [`RevocationCheck::check_local`](palisade_core_traits::RevocationCheck::check_local)
    /// (the core-traits contract) answers when the replica cannot prove it is fresh
    /// (default [`FailurePolicy::Closed`]). [`RedisBlacklist::check`] takes its policy
    /// per call instead.
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.settings.failure_policy = policy;
        self
    }

    /// Accept a Redis whose `maxmemory-policy` is not `noeviction` (default: refuse,
    /// [`Error::UnsafeEvictionPolicy`]). Every revocation key has a TTL, so every
    /// `volatile-*` and `allkeys-*` policy can evict one: a replica started later, and
    /// `check_remote`, would not see it until a live replica re-writes it at its next
    /// resync. Each check that goes on anyway is counted (`eviction_policy_allowed`)
    /// and logged at `warn`.
    pub fn allow_eviction_policy(mut self, allow: bool) -> Self {
        self.settings.allow_eviction_policy = allow;
        self
    }

    /// Revocations made in `region` reach this Redis through a [`crate::Relay`]: the
    /// replica calls itself fresh only while a relay from `region` has proven, within
    /// `fresh_within`, that everything revoked there before this replica's heartbeat
    /// has been applied here. Call once per upstream region. Without a relay running
    /// (a partition between regions), checks answer by policy: `Unknown` under
    /// `Closed`. 1..=64 visible ASCII characters without `=`.
    pub fn relayed_from(mut self, region: &str) -> Self {
        self.settings.relayed_from.push(region.to_owned());
        self
    }

    /// The clock for lifetimes (wall time) and for freshness and the repair window
    /// (its monotonic reading). Default [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        let s = &self.settings;
        check_prefix(&s.prefix)?;
        check_durations(&[
            ("timeout", s.timeout),
            ("heartbeat", s.heartbeat),
            ("resync_every", s.resync_every),
            ("fresh_within", s.fresh_within),
            ("repair_window", s.repair_window),
        ])?;
        for (i, region) in s.relayed_from.iter().enumerate() {
            check_region("relayed_from", region)?;
            if s.relayed_from[..i].contains(region) {
                return Err(Error::config(
                    "relayed_from",
                    format!("region {region:?} named twice"),
                ));
            }
        }
        self.config.validate()
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        let timeout = self.settings.timeout;
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200))
    }

    /// Connects to a standalone Redis by URL (`rediss://` needs feature `tls`; the
    /// system's roots then verify the server). See [`connect_client`](Self::connect_client).
    pub async fn connect(self, url: &str) -> Result<RedisBlacklist, Error> {
        self.validate()?;
        let client = redis::Client::open(url)?;
        self.connect_client(client).await
    }

    /// Connects to a standalone Redis through your `Client` (built with
    /// `redis::Client::build_with_tls` for your own CA, with credentials, …): commands
    /// go through a `ConnectionManager` made from it, the subscription and the resync
    /// scans through connections of their own from it. Checks the server's
    /// `maxmemory-policy`, starts the replica, and returns once its first resync has
    /// settled (or the wait passes: then checks answer by policy until it does).
    pub async fn connect_client(self, client: redis::Client) -> Result<RedisBlacklist, Error> {
        self.validate()?;
        ensure_crypto_provider();
        let timeout = self.settings.timeout;
        let manager = tokio::time::timeout(
            timeout,
            client.get_connection_manager_with_config(self.manager_config()),
        )
        .await
        .map_err(|_| Error::Timeout(timeout))??;
        self.start(Conn::Standalone(manager), vec![client]).await
    }

    /// Uses your `ConnectionManager` for commands; `client` (same server) gives the
    /// subscription and the resync scans their own connections, which a
    /// `ConnectionManager` cannot.
    pub async fn connect_manager(
        self,
        manager: ConnectionManager,
        client: redis::Client,
    ) -> Result<RedisBlacklist, Error> {
        self.validate()?;
        ensure_crypto_provider();
        self.start(Conn::Standalone(manager), vec![client]).await
    }

    /// Connects to a Redis Cluster. `urls` must name every primary: the resync
    /// SCANs each of them, and each holds an epoch key; the subscription uses the
    /// first that answers (Redis Cluster forwards every PUBLISH to every node).
    pub async fn connect_cluster(self, urls: &[String]) -> Result<RedisBlacklist, Error> {
        self.validate()?;
        ensure_crypto_provider();
        let timeout = self.settings.timeout;
        let client = redis::cluster::ClusterClient::builder(urls.to_vec())
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .build()?;
        let conn = tokio::time::timeout(timeout, client.get_async_connection())
            .await
            .map_err(|_| Error::Timeout(timeout))??;
        let primaries = urls
            .iter()
            .map(|u| redis::Client::open(u.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        self.start(Conn::Cluster(conn), primaries).await
    }

    /// Uses your cluster connection (`ClusterClient::get_async_connection`) for
    /// commands; `primaries` holds a `Client` for every primary (same TLS settings and
    /// credentials): each is SCANned by the resync and holds an epoch key, and the
    /// subscription uses the first that answers.
    pub async fn connect_cluster_connection(
        self,
        conn: ClusterConnection,
        primaries: Vec<redis::Client>,
    ) -> Result<RedisBlacklist, Error> {
        self.validate()?;
        if primaries.is_empty() {
            return Err(Error::config(
                "primaries",
                "a Client for every primary is needed (resync scans, epochs, subscription)",
            ));
        }
        ensure_crypto_provider();
        self.start(Conn::Cluster(conn), primaries).await
    }

    async fn start(self, conn: Conn, nodes: Vec<redis::Client>) -> Result<RedisBlacklist, Error> {
        let local = Local::new(self.config, self.clock.clone())?;
        let s = &self.settings;
        let mut tags = Vec::with_capacity(nodes.len());
        for client in &nodes {
            let mut c = resync::node(client, s.timeout).await?;
            resync::check_eviction_policy(&mut c, s, &local).await?;
            tags.push(resync::probe_tag(&mut c, &s.prefix, s.timeout).await?);
        }
        let wait = s.timeout * 5 + s.repair_window;
        let inner = Arc::new(Inner::new(local, conn, nodes, self.settings, &tags));
        let task = tokio::spawn(super::replica::replicate(inner.clone()));
        let bl = RedisBlacklist { inner, task };
        let _ = tokio::time::timeout(wait, bl.inner.wait_synced()).await;
        Ok(bl)
    }
}
