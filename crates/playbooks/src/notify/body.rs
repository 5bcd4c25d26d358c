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

/// Slack mrkdwn control characters; escaping them keeps attacker-chosen text (a user
/// name in a summary) from becoming `<!channel>` mentions or links.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

pub(super) fn slack_body(n: &Notification, source: &str) -> Value {
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
