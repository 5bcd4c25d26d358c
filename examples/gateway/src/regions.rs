//! The gateway across regions (`--peer-region NAME=URL`, with `--redis`): each region
//! runs its own Redis, and for every peer region the gateway
//!
//! - runs a token-blacklist [`Relay`] from the peer's Redis into its own, named after
//!   the peer, and builds its revocation replica with `relayed_from(peer)`: the replica
//!   is fresh only while every relay proves itself, so a peer region out of reach
//!   fails closed (tokens answered `Unknown`, `/readyz` 503). Every instance runs its
//!   own relays: the relay's writes only widen a record and announce it only when new,
//!   so duplicates cost a few messages, never a wrong answer;
//! - reads the peer's fleet hash on the fleet's cadence (no key is ever written in a
//!   peer's Redis; the relay only publishes its probes on its channel), so every
//!   region verifies with, and publishes at `/.well-known/jwks.json`, the keys of every
//!   region. A hash that was read is the peer's truth (an entry it removed is dropped
//!   here too); a peer out of reach keeps its last read entries until their own keep
//!   time (the longest token lifetime plus a minute after their last write), then they
//!   drop.
//!
//! The relay connects standalone Redis servers only, so both this region's `--redis`
//! and every peer's URL must name one server.

use std::sync::Mutex;
use std::time::Duration;

use palisade_jwt_cache::KeySet;
use palisade_token_blacklist::Relay;
use palisade_token_blacklist::redis::{self, AsyncCommands, aio::ConnectionManager};
use serde_json::Value;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

use crate::service::{REDIS_PREFIX, StartError};
use crate::shared::RedisAccess;

/// Bound on each read of a peer's keys (and on connecting to it): a peer out of reach
/// must not hold up this region's own key refresh.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);

/// A peer region as configured: its name and its Redis URL (a secret: never printed).
pub struct PeerSpec {
    /// The peer region's name (its gateways' `--region`).
    pub name: String,
    pub(crate) url: String,
}

impl std::fmt::Debug for PeerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The region name part of a `NAME=URL` flag value (for `Debug`, which hides URLs).
pub fn spec_name(spec: &str) -> &str {
    spec.split_once('=').map_or("<malformed>", |(name, _)| name)
}

fn invalid(message: String) -> StartError {
    StartError::Part {
        part: "peer-region",
        message,
    }
}

/// Region names travel in token-blacklist's pub/sub messages: 1..=64 visible ASCII
/// characters without `=` (the crate checks again; this names the flag).
fn check_name(what: &str, name: &str) -> Result<(), StartError> {
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
    {
        return Err(invalid(format!(
            "{what} {name:?} must be 1..=64 visible ASCII characters without '='"
        )));
    }
    Ok(())
}

/// Parses `--peer-region` values (`NAME=URL`) against this region's name and Redis.
/// Errors name the region, never the URL.
pub fn parse(
    specs: &[String],
    region: &str,
    redis: &[String],
) -> Result<Vec<PeerSpec>, StartError> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    if redis.len() != 1 {
        return Err(invalid(format!(
            "the revocation relay needs this region's Redis to be one standalone server \
             (--redis names {} URLs)",
            redis.len()
        )));
    }
    check_name("--region", region)?;
    let mut peers: Vec<PeerSpec> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let Some((name, url)) = spec.split_once('=') else {
            return Err(invalid(format!(
                "value {} must be NAME=REDIS_URL (no '=' found)",
                i + 1
            )));
        };
        check_name("peer region", name)?;
        if name == region {
            return Err(invalid(format!("{name:?} is this region (--region)")));
        }
        if peers.iter().any(|p| p.name == name) {
            return Err(invalid(format!("{name:?} named twice")));
        }
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(invalid(format!(
                "{name:?}: the URL must be one redis:// or rediss:// URL"
            )));
        }
        peers.push(PeerSpec {
            name: name.to_owned(),
            url: url.to_owned(),
        });
    }
    Ok(peers)
}

/// One peer region: the relay from it, and its keys as last read.
struct Peer {
    name: String,
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    /// Entries of the peer's fleet hash as last read: `(until, keys)`.
    entries: Mutex<Vec<(u64, Vec<Value>)>>,
    /// Connects the relay, then holds it (it stops when this task is aborted).
    relay: JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

impl Peer {
    /// The peer's fleet entries still in use, each checked as a key set on its own (an
    /// entry that does not load is skipped and logged, so one bad entry cannot stop
    /// this region's key refresh). Read-only: expired entries are the peer's to remove.
    async fn read(&self, now_secs: u64) -> Result<Vec<(u64, Vec<Value>)>, redis::RedisError> {
        let conn = self
            .conn
            .get_or_try_init(|| {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(PEER_TIMEOUT))
                    .set_response_timeout(Some(PEER_TIMEOUT))
                    .set_number_of_retries(1);
                self.client.get_connection_manager_with_config(config)
            })
            .await?;
        let all: Vec<(String, String)> =
            conn.clone().hgetall(format!("{REDIS_PREFIX}:jwks")).await?;
        let mut entries = Vec::with_capacity(all.len());
        for (instance, entry) in all {
            match crate::shared::fleet_entry(&entry) {
                Some((until, _)) if until < now_secs => {}
                Some((until, keys))
                    if KeySet::from_jwks(
                        serde_json::json!({ "keys": keys }).to_string().as_bytes(),
                    )
                    .is_ok() =>
                {
                    entries.push((until, keys));
                }
                _ => {
                    tracing::warn!(region = %self.name, %instance, "unusable key entry of a peer region skipped")
                }
            }
        }
        Ok(entries)
    }
}

/// The peer regions of this gateway.
pub struct Regions {
    peers: Vec<Peer>,
}

impl std::fmt::Debug for Regions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.peers.iter().map(|p| p.name.as_str()).collect();
        f.debug_struct("Regions").field("peers", &names).finish()
    }
}

impl Regions {
    /// Starts a relay from every peer into this region's Redis (`access`, one server).
    /// A peer out of reach does not stop the start: its relay keeps trying (this region
    /// stays unready meanwhile, by its replica's freshness).
    pub fn start(peers: Vec<PeerSpec>, access: RedisAccess) -> Result<Regions, StartError> {
        let [own] = access.urls.as_slice() else {
            return Err(invalid("peer regions need one --redis server".into()));
        };
        let own = own.clone();
        let mut started = Vec::with_capacity(peers.len());
        for spec in peers {
            // The error is not shown: it could quote the URL.
            let client = access
                .client(&spec.url)
                .map_err(|_| invalid(format!("{:?}: the URL does not parse", spec.name)))?;
            let relay = tokio::spawn(relay(
                spec.name.clone(),
                spec.url,
                own.clone(),
                access.clone(),
            ));
            started.push(Peer {
                name: spec.name,
                client,
                conn: OnceCell::new(),
                entries: Mutex::new(Vec::new()),
                relay,
            });
        }
        Ok(Regions { peers: started })
    }

    /// Every peer region's keys still in use at `now_secs`: read now where the peer
    /// answers within a second, else as last read (until each entry's keep time).
    pub async fn keys(&self, now_secs: u64) -> Vec<Value> {
        let mut all = Vec::new();
        for peer in &self.peers {
            match tokio::time::timeout(PEER_TIMEOUT, peer.read(now_secs)).await {
                Ok(Ok(read)) => {
                    *peer.entries.lock().unwrap_or_else(|e| e.into_inner()) = read;
                }
                Ok(Err(e)) => {
                    tracing::warn!(region = %peer.name, error = %e, "a peer region's keys could not be read; keeping the last read")
                }
                Err(_) => {
                    tracing::warn!(region = %peer.name, "a peer region's keys timed out; keeping the last read")
                }
            }
            let mut kept = peer.entries.lock().unwrap_or_else(|e| e.into_inner());
            kept.retain(|(until, _)| *until >= now_secs);
            all.extend(kept.iter().flat_map(|(_, keys)| keys.iter().cloned()));
        }
        all
    }
}

/// Runs the relay from `region` (at `source`) into `target`: connects, retrying with
/// backoff until both answer, then holds it (it reconnects by itself) until aborted.
async fn relay(region: String, source: String, target: String, access: RedisAccess) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let clients = access
            .client(&source)
            .and_then(|s| Ok((s, access.client(&target)?)));
        let relay = match clients {
            Ok((source, target)) => {
                Relay::builder()
                    .region(&region)
                    .prefix(&format!("{REDIS_PREFIX}:revoked"))
                    .connect_clients(source, target)
                    .await
            }
            Err(e) => Err(e.into()),
        };
        match relay {
            Ok(relay) => {
                tracing::info!(%region, "revocation relay from a peer region started");
                let _running = relay;
                return std::future::pending().await;
            }
            Err(e) => {
                tracing::warn!(%region, error = %e, "revocation relay from a peer region cannot connect; retrying")
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(specs: &[&str], region: &str, redis: &[&str]) -> String {
        let specs: Vec<String> = specs.iter().map(|s| (*s).to_owned()).collect();
        let redis: Vec<String> = redis.iter().map(|s| (*s).to_owned()).collect();
        parse(&specs, region, &redis).unwrap_err().to_string()
    }

    #[test]
    fn peer_regions_parse_and_bad_ones_are_named_without_their_url() {
        let own = ["redis://10.0.0.5/"];
        let ok = parse(
            &[
                "us=redis://:s3cret@10.1.0.5/".into(),
                "ap=rediss://h:6380/0?x=1".into(),
            ],
            "eu",
            &own.map(String::from),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!((ok[0].name.as_str(), ok[1].name.as_str()), ("us", "ap"));
        assert_eq!(ok[1].url, "rediss://h:6380/0?x=1", "split at the first '='");
        assert!(!format!("{ok:?}").contains("s3cret"));
        assert!(parse(&[], "eu", &[]).unwrap().is_empty());

        let secret = "us=redis://:s3cret@10.1.0.5/";
        for (specs, region, redis, says) in [
            (
                vec![secret],
                "eu",
                vec!["redis://a/", "redis://b/"],
                "one standalone server",
            ),
            (
                vec!["redis://:s3cret@h/"],
                "eu",
                vec!["redis://a/"],
                "NAME=REDIS_URL",
            ),
            (vec![secret], "us", vec!["redis://a/"], "is this region"),
            (
                vec![secret, secret],
                "eu",
                vec!["redis://a/"],
                "named twice",
            ),
            (
                vec!["=redis://:s3cret@h/"],
                "eu",
                vec!["redis://a/"],
                "peer region \"\"",
            ),
            (
                vec!["u s=redis://:s3cret@h/"],
                "eu",
                vec!["redis://a/"],
                "visible ASCII",
            ),
            (
                vec!["us=http://:s3cret@h/"],
                "eu",
                vec!["redis://a/"],
                "redis://",
            ),
            (vec![secret], "e=u", vec!["redis://a/"], "--region"),
        ] {
            let err = error(&specs, region, &redis);
            assert!(
                err.starts_with("peer-region: ") && err.contains(says),
                "{err}"
            );
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}
