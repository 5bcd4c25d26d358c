use super::body::{clip, pagerduty_dedup_key};
use super::guard::forbidden_destination;
use super::*;
use palisade_core_traits::Severity;

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
        let err = HttpNotifier::webhook(bad).build().unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidConfig {
                    field: "endpoint",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
    let err = HttpNotifier::pagerduty("bad key s3cr3t")
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "routing_key",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
    // Nor does the builder's Debug show the URL or the key.
    let b = HttpNotifier::slack("https://hooks.slack.com/services/T0/B0/s3cr3t");
    assert!(!format!("{b:?}").contains("s3cr3t"), "{b:?}");
    let b = HttpNotifier::pagerduty("R0UT1NGs3cr3t").endpoint("https://x.example/s3cr3t");
    assert!(!format!("{b:?}").contains("s3cr3t"), "{b:?}");
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
        let err = HttpNotifier::webhook(bad).build().unwrap_err();
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
        assert!(HttpNotifier::webhook(good).build().is_ok(), "{good}");
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
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        "[HIGH] `user &lt;!channel&gt; &amp; &lt;http://x|y&gt;`"
    );
}

#[test]
fn slack_text_objects_are_verbatim() {
    let n = Notification::trigger(
        Severity::Medium,
        "brute-force-user: BruteForce about https://sso-reset.example/verify (Medium)",
        "brute-force-user:https://sso-reset.example/verify",
    );
    let body = slack_body(&n, "svc");
    for t in [
        &body["blocks"][0]["text"],
        &body["blocks"][1]["elements"][0],
    ] {
        assert_eq!(t["type"], "mrkdwn", "{t}");
        assert_eq!(t["verbatim"], serde_json::Value::Bool(true), "{t}");
    }
}

#[test]
fn attacker_text_stays_inside_its_code_span_and_out_of_the_fallback() {
    // A user id that tries to close the code span, format, break the line and link.
    let user = "a` *bold* _it_ ~st~ https://sso-reset.example/verify\n`b";
    let n = Notification::trigger(
        Severity::Medium,
        format!("brute-force-user: BruteForce about {user} (Medium)"),
        format!("brute-force-user:{user}"),
    );
    let body = slack_body(&n, "gw-eu1");
    assert_eq!(
        body["blocks"][0]["text"]["text"],
        "[MEDIUM] `brute-force-user: BruteForce about a\u{2cb} *bold* _it_ ~st~ \
         https://sso-reset.example/verify \u{2cb}b (Medium)`"
    );
    assert_eq!(
        body["blocks"][1]["elements"][0]["text"],
        "incident `brute-force-user:a\u{2cb} *bold* _it_ ~st~ \
         https://sso-reset.example/verify \u{2cb}b` · gw-eu1"
    );
    // The top-level text (Slack's notification fallback, which `verbatim` does not
    // cover) carries nothing the attacker chose.
    assert_eq!(body["text"], "[MEDIUM] security notification from gw-eu1");
    let resolve = slack_body(
        &Notification::resolve(n.dedup_key.clone(), "over"),
        "gw-eu1",
    );
    assert_eq!(
        resolve["text"],
        "[RESOLVED] security notification from gw-eu1"
    );
    assert_eq!(resolve["blocks"][0]["text"]["text"], "[RESOLVED] `over`");
}

#[test]
fn a_zero_request_timeout_is_refused_by_name() {
    let policy = RetryPolicy::default().with_timeout(Duration::ZERO);
    let err = HttpNotifier::webhook("https://hooks.example.com/x")
        .retry(policy)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidConfig {
                field: "retry.timeout",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn retry_after_reads_delay_seconds_and_all_three_http_date_forms() {
    // Sun, 06 Nov 1994 08:49:37 GMT, the example date of RFC 9110 §5.6.7.
    let date = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    let before = date - Duration::from_secs(30);
    assert_eq!(retry_after("120", before), Some(Duration::from_secs(120)));
    assert_eq!(retry_after(" 0 ", before), Some(Duration::ZERO));
    for form in [
        "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT", // obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",       // obsolete asctime
    ] {
        assert_eq!(
            retry_after(form, before),
            Some(Duration::from_secs(30)),
            "{form}"
        );
        // A date in the past means: now.
        let after = date + Duration::from_secs(3600);
        assert_eq!(retry_after(form, after), Some(Duration::ZERO), "{form}");
    }
    for bad in ["", "soon", "-5", "1.5", "Sun, 06 Nov 1994 25:00:00 GMT"] {
        assert_eq!(retry_after(bad, before), None, "{bad:?}");
    }
}

#[test]
fn an_idempotency_key_is_the_id_or_its_digest_never_a_bad_header() {
    assert_eq!(idempotency_key("n-42").unwrap(), "n-42");
    // Not a header token (a space, a line break, non-ASCII, too long): its SHA-256,
    // the same every time, different for another id.
    for odd in ["n 1", "n\r\nx: y", "ünï", &"k".repeat(256), ""] {
        let key = idempotency_key(odd).unwrap();
        let key = key.to_str().unwrap();
        assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
        assert_eq!(idempotency_key(odd).unwrap(), key);
    }
    assert_ne!(idempotency_key("n 1"), idempotency_key("n 2"));
}
