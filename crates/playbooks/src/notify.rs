//! HTTP notifiers (feature `http`): a generic JSON webhook, a Slack incoming webhook and
//! the PagerDuty Events API v2, each implementing the core-traits [`Notifier`].
//! `guard.rs` keeps them away from metadata services and secret URLs out of messages;
//! `body.rs` writes the request bodies.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_core_traits::{
    Clock, Error as ActionError, Notification, Notifier, SystemClock, async_trait,
};
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::Error;

mod body;
mod guard;

use body::{pagerduty_body, slack_body};
use guard::{Endpoint, GuardedResolver};

/// The PagerDuty Events API v2 endpoint (US service region).
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// How a notifier retries. The worst case before giving up is about
/// `max_attempts × timeout` plus the waits; give the [`crate::Executor`] a timeout
/// at least that long, or it records the delivery as "outcome unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all.
    pub max_attempts: NonZeroU32,
    /// Wait before the second attempt after a `5xx` or connection failure; doubles.
    pub initial_backoff: Duration,
    /// The backoff never grows beyond this.
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the delivery fails instead.
    pub max_retry_after: Duration,
    /// Timeout of one request (connect, send, response); must not be zero.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms doubling to at most 2 s, `Retry-After` up to 10 s, 5 s per request.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: NonZeroU32::MIN.saturating_add(2), // 3
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy with these attempts and initial backoff, other fields default.
    pub fn new(max_attempts: NonZeroU32, initial_backoff: Duration) -> Self {
        RetryPolicy {
            max_attempts,
            initial_backoff,
            ..RetryPolicy::default()
        }
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the longest `Retry-After` that is waited for.
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }
}

#[derive(Clone)]
enum Flavor {
    Webhook,
    Slack,
    PagerDuty { routing_key: String },
}

impl Flavor {
    fn name(&self) -> &'static str {
        match self {
            Flavor::Webhook => "webhook",
            Flavor::Slack => "slack",
            Flavor::PagerDuty { .. } => "pagerduty",
        }
    }
}

/// Builds an [`HttpNotifier`]; from [`HttpNotifier::webhook`], [`HttpNotifier::slack`]
/// or [`HttpNotifier::pagerduty`]. Setters never fail; [`HttpNotifierBuilder::build`]
/// checks everything and says which setting was wrong without echoing the URL or key.
/// `Debug` shows neither.
#[must_use = "a builder does nothing until build()"]
pub struct HttpNotifierBuilder {
    flavor: Flavor,
    url: String,
    policy: RetryPolicy,
    source: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for HttpNotifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpNotifierBuilder")
            .field("kind", &self.flavor.name())
            .field("policy", &self.policy)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl HttpNotifierBuilder {
    fn new(flavor: Flavor, url: String) -> Self {
        HttpNotifierBuilder {
            flavor,
            url,
            policy: RetryPolicy::default(),
            source: "palisade-playbooks".into(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Sends to another URL (same rules: https, or http on loopback), e.g. PagerDuty's
    /// EU service region.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.url = url.into();
        self
    }

    /// The retry policy (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Names this service in the message (PagerDuty `payload.source`, webhook `source`;
    /// default `palisade-playbooks`).
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// The wall clock an HTTP-date `Retry-After` is measured against (default
    /// [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The notifier. [`Error::InvalidConfig`] for an endpoint that is not https (http
    /// only on loopback), carries credentials, or names a link-local or cloud metadata
    /// host (field `endpoint`); a malformed PagerDuty routing key (`routing_key`); a
    /// zero request timeout (`retry.timeout`).
    pub fn build(self) -> Result<HttpNotifier, Error> {
        if let Flavor::PagerDuty { routing_key } = &self.flavor
            && (routing_key.is_empty() || !routing_key.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            // Never echo the key, even a malformed one.
            return Err(Error::config(
                "routing_key",
                format!(
                    "must be non-empty ASCII letters and digits ({} characters given)",
                    routing_key.chars().count()
                ),
            ));
        }
        if self.policy.timeout.is_zero() {
            return Err(Error::config(
                "retry.timeout",
                "a zero request timeout gives no request a chance",
            ));
        }
        let endpoint = Endpoint::parse(&self.url)?;
        let client = reqwest::Client::builder()
            // A redirect would replay the secret URL's body to another place: refuse.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver)
            .user_agent(concat!("palisade-playbooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::config("http_client", e.without_url().to_string()))?;
        Ok(HttpNotifier {
            client,
            endpoint,
            flavor: self.flavor,
            policy: self.policy,
            source: self.source,
            clock: self.clock,
        })
    }
}

/// Sends [`Notification`]s over HTTPS: JSON webhook, Slack, or PagerDuty Events v2.
///
/// Delivery policy ([`RetryPolicy`]): `429` is retried after its `Retry-After` (either
/// form of RFC 9110: delay-seconds or an HTTP-date, a date in the past meaning now;
/// refused if longer than `max_retry_after`: `Error::NotifyDeferred`, core-traits
/// `Refused`, so the executor does not retry it either), `5xx`, connection failures
/// and requests lost after they were sent (reset or closed before an answer) with
/// doubling backoff, all at most `max_attempts` times in all. Delivery is at least
/// once: a lost request may have arrived, so every attempt carries the
/// notification's id ([`Notification::id`], or one picked per delivery) as the
/// `Idempotency-Key` header (and, for the webhook, as `id` in the body), by which
/// the receiver drops a repeat. Any other
/// `4xx` (and `3xx`: redirects are not followed, so a secret URL is never replayed to
/// another host) is never retried. A request timeout is not retried either: the
/// receiver may have acted on it, and the executor records it as "outcome unknown".
///
/// Secrets: a Slack or webhook URL path and query often *are* the credential, and the
/// PagerDuty routing key is one. `Debug`, `Display`, traces and every error show only
/// `scheme://host:port/…`; the routing key is never printed.
///
/// Server-side request forgery: a notifier never talks to a link-local or cloud
/// metadata address (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200,
/// 168.63.129.16, and these inside IPv4-mapped or NAT64 addresses), whatever the scheme:
/// such a URL is refused by `build()`, a metadata host name (`metadata.google.internal`,
/// …) too, and a name that resolves to such an address is refused when it is resolved,
/// at every connection (so DNS rebinding cannot reach them either).
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use palisade_playbooks::{HttpNotifier, RetryPolicy};
///
/// let pd = HttpNotifier::pagerduty("R0UT1NGKEY0000000000000000000000")
///     .source("auth-gateway-eu1")
///     .retry(RetryPolicy::new(NonZeroU32::new(4).unwrap(), Duration::from_millis(100)))
///     .build()
///     .unwrap();
/// // The routing key never shows up in logs.
/// assert!(!format!("{pd:?}").contains("R0UT1NG"));
///
/// let slack = HttpNotifier::slack("https://hooks.slack.com/services/T0/B0/s3cr3t")
///     .build()
///     .unwrap();
/// assert_eq!(slack.endpoint(), "https://hooks.slack.com/…");
/// assert!(HttpNotifier::webhook("http://example.com/hook").build().is_err()); // https only
/// ```
#[derive(Clone)]
pub struct HttpNotifier {
    client: reqwest::Client,
    endpoint: Endpoint,
    flavor: Flavor,
    policy: RetryPolicy,
    source: String,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for HttpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpNotifier")
            .field("kind", &self.flavor.name())
            .field("endpoint", &self.endpoint)
            .field("policy", &self.policy)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// How one attempt ended, when it did not deliver.
enum Failed {
    /// Retry after this wait (`status` for the message: `None` when connecting failed).
    Retry(Duration, Option<StatusCode>, String),
    /// Stop with this error.
    Stop(Error),
}

impl HttpNotifier {
    /// A generic webhook: the body is the [`Notification`] as JSON (parseable back with
    /// serde into a `Notification`) plus `source`.
    pub fn webhook(url: impl Into<String>) -> HttpNotifierBuilder {
        HttpNotifierBuilder::new(Flavor::Webhook, url.into())
    }

    /// A Slack incoming webhook (`text` plus `blocks`). The URL is the credential.
    /// The summary and incident key appear only in the blocks, as escaped code spans
    /// in `verbatim` text objects (no link, mention or formatting); the top-level
    /// `text`, which Slack still parses, names only the severity and the source.
    pub fn slack(webhook_url: impl Into<String>) -> HttpNotifierBuilder {
        HttpNotifierBuilder::new(Flavor::Slack, webhook_url.into())
    }

    /// PagerDuty Events API v2 with this integration's routing key, sent to
    /// [`PAGERDUTY_EVENTS_URL`] (change it with [`HttpNotifierBuilder::endpoint`], e.g.
    /// for the EU service region).
    pub fn pagerduty(routing_key: impl Into<String>) -> HttpNotifierBuilder {
        let routing_key = routing_key.into();
        HttpNotifierBuilder::new(
            Flavor::PagerDuty { routing_key },
            PAGERDUTY_EVENTS_URL.to_owned(),
        )
    }

    /// The endpoint as it is shown in logs and errors: `scheme://host[:port]/…`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint.shown
    }

    /// The JSON body this notifier sends for `n`.
    pub fn body(&self, n: &Notification) -> Value {
        match &self.flavor {
            Flavor::Webhook => {
                let mut v = serde_json::to_value(n).unwrap_or_else(|_| json!({}));
                if let Value::Object(m) = &mut v {
                    m.insert("source".into(), Value::String(self.source.clone()));
                }
                v
            }
            Flavor::Slack => slack_body(n, &self.source),
            Flavor::PagerDuty { routing_key } => pagerduty_body(n, routing_key, &self.source),
        }
    }

    /// Delivers one notification under the retry policy; returns the attempts it took.
    pub async fn send(&self, n: &Notification) -> Result<u32, Error> {
        let sent = self.deliver(n).await;
        #[cfg(feature = "metrics")]
        {
            use crate::stats::metric;
            let notifier = self.flavor.name();
            match &sent {
                Ok(_) => {
                    metrics::counter!(metric!("notifications_sent_total"), "notifier" => notifier)
                        .increment(1)
                }
                Err(e) => {
                    let error = match e {
                        Error::NotifyRejected { .. } => "rejected",
                        Error::NotifyTimeout { .. } => "timeout",
                        _ => "gave_up",
                    };
                    metrics::counter!(metric!("notifications_failed_total"), "notifier" => notifier, "error" => error)
                        .increment(1);
                }
            }
        }
        sent
    }

    async fn deliver(&self, n: &Notification) -> Result<u32, Error> {
        // One id for every attempt: a request lost after it was sent goes again, and
        // the receiver drops the repeat by its id (delivery is at least once).
        let with_id;
        let n = match n.id {
            Some(_) => n,
            None => {
                with_id = crate::executor::with_random_id(n.clone());
                &with_id
            }
        };
        let key = n.id.as_deref().and_then(idempotency_key);
        let body = self.body(n);
        let p = self.policy;
        let mut backoff = p.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The endpoint as shown: never the secret path or the routing key.
            let span = tracing::info_span!(
                "playbooks.notify",
                notifier = self.flavor.name(),
                endpoint = %self.endpoint.shown,
                attempt,
            );
            let sent = self.attempt(&body, key.as_ref(), attempt, backoff);
            let failed = match sent.instrument(span).await {
                Ok(()) => return Ok(attempt),
                Err(f) => f,
            };
            let (wait, status, reason) = match failed {
                Failed::Stop(e) => return Err(e),
                Failed::Retry(wait, status, reason) => (wait, status, reason),
            };
            if attempt >= p.max_attempts.get() {
                return Err(self.gave_up(attempt, reason));
            }
            tokio::time::sleep(wait).await;
            // A `Retry-After` is the receiver's wait, not a step of our backoff.
            if status != Some(StatusCode::TOO_MANY_REQUESTS) {
                backoff = backoff.saturating_mul(2).min(p.max_backoff);
            }
        }
    }

    /// One request; `backoff` is the wait before the next one unless the receiver
    /// names another.
    async fn attempt(
        &self,
        body: &Value,
        key: Option<&HeaderValue>,
        attempt: u32,
        backoff: Duration,
    ) -> Result<(), Failed> {
        let p = self.policy;
        let mut request = (self.client.post(self.endpoint.url.clone()))
            .timeout(p.timeout)
            .json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key.clone());
        }
        let sent = request.send().await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) if e.is_timeout() => {
                tracing::warn!("notifier: no response in time; delivery unknown");
                return Err(Failed::Stop(Error::NotifyTimeout {
                    endpoint: self.endpoint.shown.clone(),
                    after: p.timeout,
                }));
            }
            // Connecting failed: nothing was sent, a retry cannot duplicate.
            Err(e) if e.is_connect() => {
                tracing::debug!("notifier: connect failed");
                let reason = format!("cannot connect ({})", e.without_url());
                return Err(Failed::Retry(backoff, None, reason));
            }
            // Lost after it was written (reset, closed before an answer): it may have
            // been delivered. Sent again under the same id rather than lost.
            Err(e) if e.is_request() || e.is_body() => {
                tracing::debug!("notifier: no answer after sending; retrying");
                let reason = format!("no answer after sending ({})", e.without_url());
                return Err(Failed::Retry(backoff, None, reason));
            }
            Err(e) => {
                return Err(Failed::Stop(
                    self.gave_up(attempt, e.without_url().to_string()),
                ));
            }
        };
        let status = resp.status();
        tracing::debug!(status = status.as_u16(), "notifier: answered");
        if status.is_success() {
            return Ok(());
        }
        let reason = format!("HTTP {}", status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            let now = self.clock.now().to_system_time();
            let header = resp.headers().get(reqwest::header::RETRY_AFTER);
            return match header.and_then(|v| retry_after(v.to_str().ok()?, now)) {
                Some(w) if w > p.max_retry_after => Err(Failed::Stop(Error::NotifyDeferred {
                    endpoint: self.endpoint.shown.clone(),
                    retry_after: w,
                    max: p.max_retry_after,
                })),
                Some(w) => Err(Failed::Retry(w, Some(status), reason)),
                None => Err(Failed::Retry(backoff, Some(status), reason)),
            };
        }
        if status.is_server_error() {
            return Err(Failed::Retry(backoff, Some(status), reason));
        }
        Err(Failed::Stop(Error::NotifyRejected {
            endpoint: self.endpoint.shown.clone(),
            status: status.as_u16(),
        }))
    }

    fn gave_up(&self, attempts: u32, reason: String) -> Error {
        Error::NotifyGaveUp {
            endpoint: self.endpoint.shown.clone(),
            attempts,
            reason,
        }
    }
}

#[async_trait]
impl Notifier for HttpNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), ActionError> {
        match self.send(n).await {
            Ok(_) => Ok(()),
            Err(Error::NotifyTimeout { after, .. }) => Err(ActionError::Timeout(after)),
            Err(e @ (Error::NotifyRejected { .. } | Error::NotifyDeferred { .. })) => {
                Err(ActionError::Refused(e.to_string()))
            }
            Err(e) => Err(ActionError::Unavailable {
                backend: self.flavor.name(),
                source: Box::new(e),
            }),
        }
    }
}

/// The `Idempotency-Key` header for a notification id: the id itself if it is a
/// short token of visible ASCII, else its SHA-256 (deterministic: every attempt and
/// every retry by the caller carries the same key).
fn idempotency_key(id: &str) -> Option<HeaderValue> {
    let token = !id.is_empty() && id.len() <= 255 && id.bytes().all(|b| b.is_ascii_graphic());
    if token {
        return HeaderValue::from_str(id).ok();
    }
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    HeaderValue::from_str(&format!("sha256:{}", hex::encode(d.as_ref()))).ok()
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date, whose wait
/// is measured from `now` (a date in the past: no wait). `None` if it is neither.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
