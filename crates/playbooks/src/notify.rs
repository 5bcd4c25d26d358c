//! HTTP notifiers (feature `http`): a generic JSON webhook, a Slack incoming webhook and
//! the PagerDuty Events API v2, each implementing the core-traits [`Notifier`].
//!
//! Delivery policy ([`RetryPolicy`]): `429` is retried after its `Retry-After` (seconds
//! form; refused if longer than `max_retry_after`), `5xx` and connection failures (nothing
//! was sent) with doubling backoff, both at most `max_attempts` times in all. Any other
//! `4xx` (and `3xx`: redirects are not followed, so a secret URL is never replayed to
//! another host) is never retried. A request timeout is not retried either: the
//! receiver may have acted on it, and the executor records it as "outcome unknown".
//!
//! Secrets: a Slack or webhook URL path and query often *are* the credential, and the
//! PagerDuty routing key is one. `Debug`, `Display` and every error show only
//! `scheme://host:port/…`; the routing key is never printed.
//!
//! Server-side request forgery: a notifier never talks to a link-local or cloud
//! metadata address (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200,
//! 168.63.129.16, and these inside IPv4-mapped or NAT64 addresses), whatever the scheme:
//! such a URL is refused when the notifier is built, a metadata host name
//! (`metadata.google.internal`, …) too, and a name that resolves to such an address
//! is refused when it is resolved, at every connection (so DNS rebinding cannot reach
//! them either).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use palisade_core_traits::{
    Error as ActionError, Notification, NotificationAction, Notifier, Severity, async_trait,
    canonical_ip,
};
use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use crate::Error;

/// The PagerDuty Events API v2 endpoint (US service region).
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// PagerDuty's limits on `dedup_key` and `payload.summary` (characters).
const PD_MAX_DEDUP_KEY: usize = 255;
const PD_MAX_SUMMARY: usize = 1024;

/// How a notifier retries. The worst case before giving up is about
/// `max_attempts × timeout` plus the waits; give the [`crate::Executor`] a timeout
/// at least that long, or it records the delivery as "outcome unknown".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, at least 1.
    pub max_attempts: u32,
    /// Wait before the second attempt after a `5xx` or connection failure; doubles.
    pub initial_backoff: Duration,
    /// The backoff never grows beyond this.
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for: the delivery fails instead.
    pub max_retry_after: Duration,
    /// Timeout of one request (connect, send, response).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, 200 ms doubling to at most 2 s, `Retry-After` up to 10 s, 5 s per request.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy with these attempts and initial backoff, other fields default.
    pub fn new(max_attempts: u32, initial_backoff: Duration) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
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

/// Host names that only ever mean a cloud provider's instance metadata service.
const METADATA_HOSTS: [&str; 5] = [
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Whether a notifier must never connect to `ip`: link-local addresses (where cloud
/// metadata services live), the known metadata addresses outside that range, and the
/// unspecified address; IPv4 inside IPv4-mapped or NAT64 (64:ff9b::/96) addresses is
/// judged as IPv4.
fn forbidden_destination(ip: IpAddr) -> bool {
    let v4_forbidden = |v4: Ipv4Addr| {
        v4.is_link_local()
            || v4.is_unspecified()
            || v4 == Ipv4Addr::new(100, 100, 100, 200) // Alibaba Cloud metadata
            || v4 == Ipv4Addr::new(168, 63, 129, 16) // Azure WireServer
    };
    match canonical_ip(ip) {
        IpAddr::V4(v4) => v4_forbidden(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
            (nat64 && v4_forbidden(Ipv4Addr::from(u128::from(v6) as u32)))
                || s[0] & 0xffc0 == 0xfe80 // link-local fe80::/10
                || v6.is_unspecified()
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) // AWS IMDS IPv6
        }
    }
}

/// The system resolver, minus the addresses a notifier must never reach: checked at
/// every resolution, so a name that later resolves to a metadata address (DNS
/// rebinding) is refused too.
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = (found.iter())
                .filter(|a| !forbidden_destination(a.ip()))
                .copied()
                .collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(format!(
                    "{host} resolves only to link-local or cloud metadata addresses; refused"
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An endpoint URL that prints without its path and query (they may hold a secret).
#[derive(Clone)]
struct Endpoint {
    url: Url,
    shown: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, Error> {
        // The URL itself is secret: errors describe it, never echo it.
        let url = Url::parse(url)
            .map_err(|e| Error::NotifierConfig(format!("endpoint is not a valid URL ({e})")))?;
        let host = url
            .host_str()
            .ok_or_else(|| Error::NotifierConfig("endpoint URL has no host".into()))?
            .to_owned();
        let literal = (host.trim_start_matches('[').trim_end_matches(']'))
            .parse::<IpAddr>()
            .ok();
        let bare = host.trim_end_matches('.').to_ascii_lowercase();
        if literal.is_some_and(forbidden_destination) || METADATA_HOSTS.contains(&bare.as_str()) {
            // Whatever the scheme: this is where cloud credentials are served.
            return Err(Error::NotifierConfig(format!(
                "endpoint host {host} is a link-local or cloud metadata address; refused"
            )));
        }
        let loopback =
            host == "localhost" || literal.is_some_and(|ip| canonical_ip(ip).is_loopback());
        match url.scheme() {
            "https" => {}
            // Plain HTTP would send the secret in clear: only for a local receiver.
            "http" if loopback => {}
            other => {
                return Err(Error::NotifierConfig(format!(
                    "endpoint {other}://{host}/… must use https (http only on loopback)"
                )));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::NotifierConfig(format!(
                "endpoint {}://{host}/… must not carry credentials in the URL",
                url.scheme()
            )));
        }
        let shown = match url.port() {
            Some(p) => format!("{}://{host}:{p}/…", url.scheme()),
            None => format!("{}://{host}/…", url.scheme()),
        };
        Ok(Endpoint { url, shown })
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
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

/// Sends [`Notification`]s over HTTPS: JSON webhook, Slack, or PagerDuty Events v2.
///
/// ```
/// use palisade_playbooks::notify::{HttpNotifier, RetryPolicy};
/// use std::time::Duration;
///
/// let pd = HttpNotifier::pagerduty("R0UT1NGKEY0000000000000000000000")
///     .unwrap()
///     .with_source("auth-gateway-eu1")
///     .with_retry(RetryPolicy::new(4, Duration::from_millis(100)));
/// // The routing key never shows up in logs.
/// assert!(!format!("{pd:?}").contains("R0UT1NG"));
///
/// let slack = HttpNotifier::slack("https://hooks.slack.com/services/T0/B0/s3cr3t").unwrap();
/// assert_eq!(slack.endpoint(), "https://hooks.slack.com/…");
/// assert!(HttpNotifier::webhook("http://example.com/hook").is_err()); // https only
/// ```
#[derive(Clone)]
pub struct HttpNotifier {
    client: reqwest::Client,
    endpoint: Endpoint,
    flavor: Flavor,
    policy: RetryPolicy,
    source: String,
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

impl HttpNotifier {
    fn new(url: &str, flavor: Flavor) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            // A redirect would replay the secret URL's body to another place: refuse.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(GuardedResolver)
            .user_agent(concat!("palisade-playbooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::NotifierConfig(format!("HTTP client: {}", e.without_url())))?;
        Ok(HttpNotifier {
            client,
            endpoint: Endpoint::parse(url)?,
            flavor,
            policy: RetryPolicy::default(),
            source: "palisade-playbooks".into(),
        })
    }

    /// A generic webhook: the body is the [`Notification`] as JSON (parseable back with
    /// serde into a `Notification`).
    pub fn webhook(url: &str) -> Result<Self, Error> {
        HttpNotifier::new(url, Flavor::Webhook)
    }

    /// A Slack incoming webhook (`text` plus `blocks`). The URL is the credential.
    pub fn slack(webhook_url: &str) -> Result<Self, Error> {
        HttpNotifier::new(webhook_url, Flavor::Slack)
    }

    /// PagerDuty Events API v2 with this integration's routing key, sent to
    /// [`PAGERDUTY_EVENTS_URL`] (change it with [`HttpNotifier::with_endpoint`], e.g. for
    /// the EU service region).
    pub fn pagerduty(routing_key: &str) -> Result<Self, Error> {
        if routing_key.is_empty() || routing_key.chars().any(|c| !c.is_ascii_alphanumeric()) {
            // Never echo the key, even a malformed one.
            return Err(Error::NotifierConfig(format!(
                "PagerDuty routing key must be non-empty ASCII letters and digits ({} characters given)",
                routing_key.chars().count()
            )));
        }
        HttpNotifier::new(
            PAGERDUTY_EVENTS_URL,
            Flavor::PagerDuty {
                routing_key: routing_key.to_owned(),
            },
        )
    }

    /// Sends to another URL (same rules: https, or http on loopback).
    pub fn with_endpoint(mut self, url: &str) -> Result<Self, Error> {
        self.endpoint = Endpoint::parse(url)?;
        Ok(self)
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.policy = RetryPolicy {
            max_attempts: policy.max_attempts.max(1),
            ..policy
        };
        self
    }

    /// Names this service in the message (PagerDuty `payload.source`, webhook `source`).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
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
        let body = self.body(n);
        let endpoint = self.endpoint.shown.clone();
        let p = self.policy;
        let mut backoff = p.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .post(self.endpoint.url.clone())
                .timeout(p.timeout)
                .json(&body)
                .send()
                .await;
            let (wait, status) = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        return Ok(attempt);
                    }
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        match retry_after(&resp) {
                            Some(w) if w > p.max_retry_after => {
                                return Err(Error::NotifyGaveUp {
                                    endpoint,
                                    attempts: attempt,
                                    reason: format!(
                                        "HTTP 429 with Retry-After {}s, longer than the {}s allowed",
                                        w.as_secs(),
                                        p.max_retry_after.as_secs()
                                    ),
                                });
                            }
                            Some(w) => (w, status),
                            None => (backoff, status),
                        }
                    } else if status.is_server_error() {
                        (backoff, status)
                    } else {
                        return Err(Error::NotifyRejected {
                            endpoint,
                            status: status.as_u16(),
                        });
                    }
                }
                Err(e) if e.is_timeout() => {
                    return Err(Error::NotifyTimeout {
                        endpoint,
                        after: p.timeout,
                    });
                }
                // Connecting failed: nothing was sent, a retry cannot duplicate.
                Err(e) if e.is_connect() => {
                    if attempt >= p.max_attempts {
                        return Err(Error::NotifyGaveUp {
                            endpoint,
                            attempts: attempt,
                            reason: format!("cannot connect ({})", e.without_url()),
                        });
                    }
                    tracing::debug!(%endpoint, attempt, "notifier: connect failed, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(p.max_backoff);
                    continue;
                }
                Err(e) => {
                    return Err(Error::NotifyGaveUp {
                        endpoint,
                        attempts: attempt,
                        reason: e.without_url().to_string(),
                    });
                }
            };
            if attempt >= p.max_attempts {
                return Err(Error::NotifyGaveUp {
                    endpoint,
                    attempts: attempt,
                    reason: format!("HTTP {}", status.as_u16()),
                });
            }
            tracing::debug!(%endpoint, attempt, status = status.as_u16(), "notifier: retrying");
            tokio::time::sleep(wait).await;
            if status != StatusCode::TOO_MANY_REQUESTS {
                backoff = backoff.saturating_mul(2).min(p.max_backoff);
            }
        }
    }
}

#[async_trait]
impl Notifier for HttpNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), ActionError> {
        match self.send(n).await {
            Ok(_) => Ok(()),
            Err(Error::NotifyTimeout { after, .. }) => Err(ActionError::Timeout(after)),
            Err(e @ Error::NotifyRejected { .. }) => Err(ActionError::Refused(e.to_string())),
            Err(e) => Err(ActionError::Unavailable {
                backend: self.flavor.name(),
                source: Box::new(e),
            }),
        }
    }
}

/// `Retry-After` in its delay-seconds form (the HTTP-date form falls back to our backoff).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    v.to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// Slack mrkdwn control characters; escaping them keeps attacker-chosen text (a user
/// name in a summary) from becoming `<!channel>` mentions or links.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_body(n: &Notification, source: &str) -> Value {
    let summary = slack_escape(&n.summary);
    let key = slack_escape(&n.dedup_key);
    let text = match n.action {
        NotificationAction::Trigger => {
            format!("[{}] {summary}", severity_name(n.severity).to_uppercase())
        }
        NotificationAction::Resolve => format!("[RESOLVED] {summary}"),
    };
    json!({
        "text": text,
        "blocks": [
            { "type": "section", "text": { "type": "mrkdwn", "text": text } },
            { "type": "context", "elements": [
                { "type": "mrkdwn", "text": format!("incident `{key}` · {}", slack_escape(source)) }
            ] }
        ]
    })
}

/// Truncates to at most `max` characters, on a character boundary.
fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// PagerDuty keeps `dedup_key` ≤ 255 characters. A longer key is replaced by its
/// SHA-256 (deterministic, so trigger and resolve still match; truncation could merge
/// two incidents).
fn pagerduty_dedup_key(key: &str) -> String {
    if key.chars().count() <= PD_MAX_DEDUP_KEY {
        key.to_owned()
    } else {
        let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        format!("sha256:{}", hex::encode(d.as_ref()))
    }
}

fn pagerduty_body(n: &Notification, routing_key: &str, source: &str) -> Value {
    let dedup_key = pagerduty_dedup_key(&n.dedup_key);
    match n.action {
        NotificationAction::Resolve => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        }),
        NotificationAction::Trigger => {
            // PagerDuty's four severities.
            let severity = match n.severity {
                Severity::Critical => "critical",
                Severity::High => "error",
                Severity::Medium => "warning",
                Severity::Low | Severity::Info => "info",
            };
            let mut payload = json!({
                "summary": clip(&n.summary, PD_MAX_SUMMARY),
                "source": source,
                "severity": severity,
            });
            if let (Some(ev), Value::Object(m)) = (&n.event, &mut payload) {
                m.insert("timestamp".into(), Value::String(ev.time.to_string()));
                m.insert("class".into(), json!(ev.kind));
                m.insert(
                    "custom_details".into(),
                    serde_json::to_value(ev).unwrap_or(Value::Null),
                );
            }
            json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": payload,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_print_without_path_or_query() {
        let e = Endpoint::parse("https://hooks.slack.com/services/T0/B0/XyZ?token=abc").unwrap();
        assert_eq!(e.to_string(), "https://hooks.slack.com/…");
        assert_eq!(format!("{e:?}"), "https://hooks.slack.com/…");
        let e = Endpoint::parse("http://127.0.0.1:8080/secret").unwrap();
        assert_eq!(e.to_string(), "http://127.0.0.1:8080/…");
    }

    #[test]
    fn bad_endpoints_are_refused_without_echoing_them() {
        for bad in [
            "http://hooks.example.com/s3cr3t",
            "ftp://127.0.0.1/s3cr3t",
            "https://user:s3cr3t@example.com/x",
            "not a url s3cr3t",
        ] {
            let err = HttpNotifier::webhook(bad).unwrap_err();
            assert!(matches!(err, Error::NotifierConfig(_)), "{bad}: {err:?}");
            assert!(!err.to_string().contains("s3cr3t"), "{err}");
        }
        let err = HttpNotifier::pagerduty("bad key s3cr3t").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }

    #[test]
    fn link_local_and_metadata_endpoints_are_refused_whatever_the_scheme() {
        for bad in [
            "https://169.254.169.254/latest/meta-data/",
            "http://169.254.169.254/",
            "https://169.254.170.2/v2/credentials",
            "https://[fe80::1]/hook",
            "https://[fd00:ec2::254]/",
            "https://[::ffff:169.254.169.254]/",
            "https://[64:ff9b::a9fe:a9fe]/",
            "https://100.100.100.200/latest/meta-data",
            "https://168.63.129.16/machine",
            "https://0.0.0.0/hook",
            "https://metadata.google.internal/computeMetadata/v1/",
            "https://METADATA.google.internal./x",
            "https://instance-data/latest",
        ] {
            let err = HttpNotifier::webhook(bad).unwrap_err();
            assert!(
                err.to_string().contains("link-local or cloud metadata"),
                "{bad}: {err}"
            );
        }
        // Ordinary and loopback receivers are still fine.
        for good in [
            "https://hooks.example.com/x",
            "https://198.51.100.7/x",
            "http://127.0.0.1:9/x",
            "http://[::1]:9/x",
        ] {
            assert!(HttpNotifier::webhook(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn forbidden_destinations_cover_ranges_not_just_one_address() {
        for ip in [
            "169.254.0.1",
            "169.254.255.255",
            "fe80::abcd",
            "febf::1",
            "::",
        ] {
            assert!(forbidden_destination(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "169.253.255.255",
            "169.255.0.0",
            "fec0::1",
            "10.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!forbidden_destination(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn names_resolving_to_metadata_addresses_are_refused_at_connect() {
        use reqwest::dns::Resolve;
        // `localhost` resolves to loopback: allowed.
        let ok: Vec<_> = GuardedResolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(ok.iter().all(|a| a.ip().is_loopback()) && !ok.is_empty());
        // A literal link-local address as a "name" (what a rebinding DNS answer gives).
        let Err(err) = GuardedResolver
            .resolve("169.254.169.254".parse().unwrap())
            .await
        else {
            panic!("a metadata address was resolved");
        };
        assert!(err.to_string().contains("cloud metadata"), "{err}");
    }

    #[test]
    fn long_dedup_keys_are_hashed_not_truncated() {
        let a = "k".repeat(300);
        let b = format!("{}x", "k".repeat(299));
        assert_eq!(pagerduty_dedup_key("short"), "short");
        let (ha, hb) = (pagerduty_dedup_key(&a), pagerduty_dedup_key(&b));
        assert_ne!(ha, hb);
        assert_eq!(ha, pagerduty_dedup_key(&a));
        assert_eq!(ha.len(), "sha256:".len() + 64);
        assert_eq!(clip("ééé", 2), "éé");
    }

    #[test]
    fn slack_text_cannot_mention_the_channel() {
        let n = Notification::trigger(Severity::High, "user <!channel> & <http://x|y>", "k");
        let body = slack_body(&n, "svc");
        let text = body["text"].as_str().unwrap();
        assert_eq!(
            text,
            "[HIGH] user &lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
    }
}
