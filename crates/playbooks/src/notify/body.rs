//! The request bodies: Slack incoming-webhook blocks and PagerDuty Events API v2
//! (the webhook's body is the `Notification` itself).

use palisade_core_traits::{Notification, NotificationAction, Severity};
use serde_json::{Value, json};

/// PagerDuty's limits on `dedup_key` and `payload.summary` (characters).
const PD_MAX_DEDUP_KEY: usize = 255;
const PD_MAX_SUMMARY: usize = 1024;

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// Slack's control characters, escaped as Slack asks: text can never form
/// `<!channel>`, `<@user>` or `<url|label>`.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Text we did not choose (a summary naming a user id, an incident key) as one mrkdwn
/// code span, escaped: no formatting applies inside it, a backtick (which would close
/// it) becomes U+02CB `ˋ` and a line break (which would end it) a space.
fn slack_code(s: &str) -> String {
    let plain: String = (s.chars())
        .map(|c| match c {
            '`' => '\u{2cb}',
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => ' ',
            c => c,
        })
        .collect();
    format!("`{}`", slack_escape(&plain))
}

/// A mrkdwn text object that Slack shows as sent: `verbatim` turns off its automatic
/// parsing (bare URLs and channel names into links, mentions).
fn slack_mrkdwn(text: String) -> Value {
    json!({ "type": "mrkdwn", "text": text, "verbatim": true })
}

pub(super) fn slack_body(n: &Notification, source: &str) -> Value {
    let source = slack_escape(source);
    let label = match n.action {
        NotificationAction::Trigger => severity_name(n.severity).to_uppercase(),
        NotificationAction::Resolve => "RESOLVED".to_owned(),
    };
    let text = format!("[{label}] {}", slack_code(&n.summary));
    let context = format!("incident {} · {source}", slack_code(&n.dedup_key));
    json!({
        // The notification fallback, which `verbatim` does not cover (Slack still
        // links URLs in it): nothing in it comes from the notification's text.
        "text": format!("[{label}] security notification from {source}"),
        "blocks": [
            { "type": "section", "text": slack_mrkdwn(text) },
            { "type": "context", "elements": [slack_mrkdwn(context)] }
        ]
    })
}

/// Truncates to at most `max` characters, on a character boundary.
pub(super) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// PagerDuty keeps `dedup_key` ≤ 255 characters. A longer key is replaced by its
/// SHA-256 (deterministic, so trigger and resolve still match; truncation could merge
/// two incidents).
pub(super) fn pagerduty_dedup_key(key: &str) -> String {
    if key.chars().count() <= PD_MAX_DEDUP_KEY {
        key.to_owned()
    } else {
        let d = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        format!("sha256:{}", hex::encode(d.as_ref()))
    }
}

pub(super) fn pagerduty_body(n: &Notification, routing_key: &str, source: &str) -> Value {
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
