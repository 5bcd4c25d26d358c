//! The fleet's dashboard (`--redis`): every instance publishes its activities and
//! incidents on one Redis channel ([`CHANNEL`]) and shows the other instances' beside
//! its own, so an operator behind a load balancer sees the whole fleet, whichever
//! instance answers. Incidents are the fleet's (correlated on its Redis, see
//! [`crate::incident`]): each instance shares its part of one (its events, its
//! playbooks' actions) and every dashboard shows the parts merged, each event and
//! action marked with the instance it happened on. The playbooks' state (cool-downs,
//! escalation history) stays per instance.
//!
//! - Classic Pub/Sub, on one node: in a Redis Cluster a `PUBLISH` reaches the
//!   subscribers of every node, so one node serves (the next one when it fails).
//! - At most once, best effort: a live view, not a record (the audit log is each
//!   instance's).
//!   Activities published while an instance is disconnected are not shown there; an
//!   outbox of [`OUTBOX`] activities never makes a request wait (a full one drops,
//!   counted in `palisade_gateway_dashboard_shared_dropped_total`).
//! - What arrives is bounded ([`MAX_MESSAGE`] bytes) and must parse as an activity;
//!   anything else is dropped (`palisade_gateway_dashboard_shared_invalid_total`).
//!   Incidents shared by others take places in the dashboard's bounded list like
//!   its own (at most 16 instances' parts each).
//!   The channel is the fleet's own Redis: whoever can publish there is trusted as
//!   much as whoever can write revocations there.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use palisade_token_blacklist::redis::{self, AsyncCommands};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Dashboard;
use crate::activity::Activity;
use crate::incident::Incident;
use crate::shared::RedisAccess;

/// The channel (under the gateway's Redis prefix).
pub const CHANNEL: &str = "palisade:gateway:dashboard";
/// Activities waiting to be published.
pub const OUTBOX: usize = 4096;
/// The largest message read from the channel.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// What an instance shares: `{"instance":…,"activity":{…}}` or
/// `{"instance":…,"incident":{…}}` on the channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Shared {
    /// An activity.
    Activity(Arc<Activity>),
    /// An incident, opened or changed.
    Incident(Box<Incident>),
}

#[derive(Serialize)]
struct Outgoing<'a> {
    instance: &'a str,
    #[serde(flatten)]
    item: &'a Shared,
}

#[derive(Deserialize)]
struct Incoming {
    instance: String,
    #[serde(flatten)]
    item: Shared,
}

/// Shares `dashboard`'s activities with the fleet on `access` as `instance`, and shows
/// the others': the publishing and the subscribing task.
pub fn start(
    dashboard: &Arc<Dashboard>,
    access: RedisAccess,
    instance: String,
) -> [JoinHandle<()>; 2] {
    let (outbox, pending) = mpsc::channel(OUTBOX);
    if dashboard.outbox.set(outbox).is_err() {
        tracing::error!("the dashboard is shared already; sharing it once");
    }
    [
        tokio::spawn(publish(pending, access.clone(), instance.clone())),
        tokio::spawn(subscribe(dashboard.clone(), access, instance)),
    ]
}

/// The node to use after `failures` failed connections (the next one each time).
fn node(access: &RedisAccess, failures: usize) -> &str {
    &access.urls[failures % access.urls.len()]
}

async fn publish(mut pending: mpsc::Receiver<Shared>, access: RedisAccess, instance: String) {
    let mut conn: Option<redis::aio::ConnectionManager> = None;
    let mut failures = 0;
    while let Some(item) = pending.recv().await {
        let message = serde_json::to_string(&Outgoing {
            instance: &instance,
            item: &item,
        })
        .unwrap_or_else(|e| unreachable!("activity or incident JSON: {e}"));
        if conn.is_none() {
            let client = access.client(node(&access, failures));
            match client {
                Ok(c) => match c.get_connection_manager().await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "the fleet's dashboard channel is out of reach; activity not shared");
                    }
                },
                Err(e) => tracing::error!(error = %e, "the fleet's dashboard channel: no client"),
            }
        }
        let Some(c) = conn.as_mut() else {
            metrics::counter!("palisade_gateway_dashboard_shared_dropped_total").increment(1);
            continue;
        };
        if let Err(e) = c.publish::<_, _, ()>(CHANNEL, message).await {
            metrics::counter!("palisade_gateway_dashboard_shared_dropped_total").increment(1);
            tracing::warn!(error = %e, "an activity could not be shared with the fleet");
            failures += 1;
            conn = None;
        }
    }
}

async fn subscribe(dashboard: Arc<Dashboard>, access: RedisAccess, instance: String) {
    let mut failures = 0;
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen(&dashboard, &access, node(&access, failures), &instance).await {
            Ok(()) => backoff = Duration::from_millis(200), // it ran, then ended
            Err(e) => {
                tracing::warn!(error = %e, "the fleet's dashboard channel is out of reach; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        failures += 1;
        tokio::time::sleep(backoff).await;
    }
}

/// Shows the fleet's activities from `url` until the subscription ends.
async fn listen(
    dashboard: &Dashboard,
    access: &RedisAccess,
    url: &str,
    instance: &str,
) -> Result<(), redis::RedisError> {
    let mut pubsub = access.client(url)?.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let payload = message.get_payload_bytes();
        let shared = (payload.len() <= MAX_MESSAGE)
            .then(|| serde_json::from_slice::<Incoming>(payload).ok())
            .flatten();
        match shared {
            Some(s) if s.instance != instance => match s.item {
                Shared::Activity(a) => {
                    dashboard.publish_shared(s.instance, Arc::unwrap_or_clone(a));
                }
                Shared::Incident(i) => dashboard.publish_shared_incident(s.instance, *i),
            },
            Some(_) => {} // our own, shown already
            None => {
                metrics::counter!("palisade_gateway_dashboard_shared_invalid_total").increment(1);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::REDIS_PREFIX;

    #[test]
    fn the_channel_is_under_the_gateways_prefix() {
        assert_eq!(CHANNEL, format!("{REDIS_PREFIX}:dashboard"));
    }

    #[tokio::test]
    async fn a_message_is_an_activity_or_an_incident_named_by_its_key() {
        let mut correlator = crate::incident::Correlator::new(std::time::Duration::from_secs(60));
        let event = palisade_core_traits::SecurityEvent::new(
            palisade_core_traits::EventId::new("e1").unwrap(),
            palisade_core_traits::Timestamp::from_unix_secs(1_700_000_000),
            palisade_core_traits::EventKind::BruteForce,
            palisade_core_traits::Severity::High,
            palisade_core_traits::Subject::ip("198.51.100.7".parse().unwrap()),
            "test",
        );
        let incident = correlator.correlate(&event).await.clone();
        let item = Shared::Incident(Box::new(incident.clone()));
        let text = serde_json::to_string(&Outgoing {
            instance: "eu-1",
            item: &item,
        })
        .unwrap();
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["instance"], "eu-1");
        assert_eq!(back["incident"]["id"], incident.id);
        let parsed: Incoming = serde_json::from_str(&text).unwrap();
        match parsed.item {
            Shared::Incident(i) => assert_eq!(*i, incident),
            Shared::Activity(_) => panic!("an incident read as an activity"),
        }
        // Neither, or an unknown kind: refused (dropped and counted by `listen`).
        for bad in [
            r#"{"instance":"eu-1"}"#,
            r#"{"instance":"eu-1","other":{}}"#,
        ] {
            assert!(serde_json::from_str::<Incoming>(bad).is_err(), "{bad}");
        }
    }
}
