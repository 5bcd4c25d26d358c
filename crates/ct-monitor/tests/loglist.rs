//! Chrome's v3 log list (v81.14) and certificate-transparency-go's edge-case list.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

mod common;

use std::collections::BTreeMap;

use common::b64;
use palisade_ct_monitor::{Error, LogList, LogProtocol, LogState};

fn state_name(s: &LogState) -> &'static str {
    match s {
        LogState::Usable => "usable",
        LogState::ReadOnly { .. } => "readonly",
        LogState::Retired => "retired",
        LogState::Qualified => "qualified",
        LogState::Unspecified => "none",
        _ => "other",
    }
}

#[test]
fn chrome_v3_list_matches_the_facts() {
    let facts = common::json("loglist/facts.json");
    let want = &facts["files"]["log_list.json"]["expected"];
    let list = LogList::from_json(&common::read("loglist/log_list.json")).unwrap();
    assert_eq!(list.version.as_deref(), Some("81.14"));
    assert!(list.problems.is_empty(), "{:?}", list.problems);
    let mut per_op: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for l in &list.logs {
        let e = per_op.entry(l.operator.clone()).or_default();
        match l.protocol {
            LogProtocol::Rfc6962 { .. } => e.0 += 1,
            LogProtocol::StaticCt { .. } => e.1 += 1,
            _ => panic!(),
        }
        *states.entry(state_name(&l.state)).or_default() += 1;
    }
    for (op, counts) in want["per_operator"].as_object().unwrap() {
        let want = (
            counts["logs"].as_u64().unwrap(),
            counts["tiled_logs"].as_u64().unwrap(),
        );
        assert_eq!(per_op[op], want, "{op}");
    }
    assert_eq!(per_op.len(), 8);
    for (s, n) in want["states"].as_object().unwrap() {
        assert_eq!(states[s.as_str()], n.as_u64().unwrap(), "{s}");
    }
    for head in want["readonly_final_tree_heads"].as_array().unwrap() {
        let l = list
            .logs
            .iter()
            .find(|l| l.description == head["description"].as_str().unwrap())
            .unwrap();
        let fth = &head["final_tree_head"];
        assert_eq!(
            l.state,
            LogState::ReadOnly {
                tree_size: fth["tree_size"].as_u64().unwrap(),
                root_hash: b64(fth["sha256_root_hash"].as_str().unwrap())
                    .try_into()
                    .unwrap(),
            }
        );
    }
    let argon = list
        .logs
        .iter()
        .find(|l| l.description == "Google 'Argon2025h2' log")
        .unwrap();
    let (start, end) = argon.temporal_interval.unwrap();
    assert_eq!(start.as_unix_secs(), 1_751_328_000); // 2025-07-01T00:00:00Z
    assert_eq!(end.as_unix_secs(), 1_767_225_600); // 2026-01-01T00:00:00Z
    assert_eq!(argon.mmd, 86_400);
}

#[test]
fn edge_case_list_reports_the_bad_key_and_keeps_the_rest() {
    let list = LogList::from_json(&common::read("loglist/loglist3.json")).unwrap();
    assert_eq!(list.version.as_deref(), Some("9.4"));
    assert_eq!(list.logs.len(), 5);
    assert_eq!(list.problems.len(), 1);
    assert!(
        list.problems[0].contains("Racketeer"),
        "{:?}",
        list.problems
    );
    let aviator = list
        .logs
        .iter()
        .find(|l| l.description == "Google 'Aviator' log")
        .unwrap();
    assert!(matches!(
        aviator.state,
        LogState::ReadOnly {
            tree_size: 46_466_472,
            ..
        }
    ));
    assert!(aviator.state_since.is_some());
    let bob = list
        .logs
        .iter()
        .find(|l| l.operator == "Bob's CT Log Shop")
        .unwrap();
    assert_eq!(bob.state, LogState::Retired);
    assert!(bob.temporal_interval.is_some());
}

#[test]
fn broken_documents_and_entries() {
    assert!(matches!(
        LogList::from_json(b"{}"),
        Err(Error::BadLogList(_))
    ));
    let text = String::from_utf8(common::read("loglist/loglist3.json")).unwrap();
    // A log_id that is not the key's hash is refused, not trusted.
    let bad = text.replace(
        "aPaY+B9kgr46jO65KB1M/HFRXWeT1ETRCmesu09P+8Q=",
        "AAAA+B9kgr46jO65KB1M/HFRXWeT1ETRCmesu09P+8Q=",
    );
    let list = LogList::from_json(bad.as_bytes()).unwrap();
    assert_eq!(list.logs.len(), 4);
    assert!(
        list.problems
            .iter()
            .any(|p| p.contains("Aviator") && p.contains("log_id"))
    );
}

#[test]
fn monitor_configs_from_the_chrome_list() {
    use palisade_ct_monitor::{LogConfig, LogSource};
    let list = LogList::from_json(&common::read("loglist/log_list.json")).unwrap();
    let find =
        |d: &str| LogConfig::from_log_info(list.logs.iter().find(|l| l.description == d).unwrap());
    // A tiled log's checkpoint origin is its submission prefix without scheme and slash.
    assert_eq!(
        find("Let's Encrypt 'Sycamore2025h2d'").source,
        LogSource::StaticCt {
            monitoring_url: "https://mon.sycamore.ct.letsencrypt.org/2025h2d/".into(),
            origin: "log.sycamore.ct.letsencrypt.org/2025h2d".into(),
        }
    );
    let argon = find("Google 'Argon2025h2' log");
    assert!(matches!(argon.source, LogSource::Rfc6962 { .. }));
    assert_eq!(argon.final_tree_head, None);
    // The list's MMD is what staleness is measured against (24 h here, 60 s for
    // Sycamore); a log made by hand gets the 24 h default.
    assert_eq!(argon.mmd, std::time::Duration::from_secs(86_400));
    assert_eq!(
        find("Let's Encrypt 'Sycamore2025h2d'").mmd,
        std::time::Duration::from_secs(60)
    );
    assert_eq!(
        LogConfig::rfc6962("https://log.example/", argon.key.clone()).mmd,
        LogConfig::DEFAULT_MMD
    );
    // Read-only logs keep the final tree head the facts list.
    let facts = common::json("loglist/facts.json");
    let heads = facts["files"]["log_list.json"]["expected"]["readonly_final_tree_heads"]
        .as_array()
        .unwrap();
    assert_eq!(heads.len(), 9);
    for head in heads {
        let fth = &head["final_tree_head"];
        let want = (
            fth["tree_size"].as_u64().unwrap(),
            b64(fth["sha256_root_hash"].as_str().unwrap())
                .try_into()
                .unwrap(),
        );
        let got = find(head["description"].as_str().unwrap()).final_tree_head;
        assert_eq!(got, Some(want));
    }
}

// Sunlight's per-log `log.v3.json` (cmd/skylight/testdata/tree/log.v3.json, ISC):
// one read-only static-ct log, no operators, `status` and a top-level final head.
const PER_LOG: &str = "loglist/sunlight-rome2026h1.log.v3.json";

fn secs(rfc3339: &str) -> palisade_core_traits::Timestamp {
    let t = humantime::parse_rfc3339(rfc3339).unwrap();
    let s = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    palisade_core_traits::Timestamp::from_unix_secs(s)
}

#[test]
fn a_logs_own_log_v3_json_is_accepted_with_every_field() {
    let raw = common::read(PER_LOG);
    let list = LogList::from_json(&raw).unwrap();
    assert_eq!(list.logs.len(), 1);
    let log = &list.logs[0];
    assert_eq!(log.description, "rome2026h1.example.org");
    assert_eq!(log.operator, "");
    assert_eq!(log.mmd, 60);
    assert_eq!(
        log.protocol,
        LogProtocol::StaticCt {
            submission_url: "https://rome2026h1.example.org/".into(),
            monitoring_url: "https://rome2026h1.example.org/".into(),
        }
    );
    let root: [u8; 32] = b64("lCkHUpkmVBEms2r2T1K6Og69+wUuuN3MIEW1/ezu2v0=")
        .try_into()
        .unwrap();
    assert_eq!(
        log.state,
        LogState::ReadOnly {
            tree_size: 300,
            root_hash: root
        }
    );
    assert_eq!(log.state_since, Some(secs("2026-01-08T00:00:00Z")));
    assert_eq!(
        log.temporal_interval,
        Some((secs("2025-07-01T00:00:00Z"), secs("2026-01-01T00:00:00Z")))
    );
    // Every field of the document is kept, verbatim.
    let doc: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(serde_json::Value::Object(log.json.clone()), doc);
    assert_eq!(
        log.json["final_tree_head"]["timestamp"],
        1_767_139_200_000u64
    );
    assert_eq!(log.json["log_software"]["name"], "sunlight");
    // What could not be applied is said: there is no operator.
    assert_eq!(list.problems.len(), 1, "{:?}", list.problems);
    assert!(list.problems[0].contains("no operator"));
}

#[test]
fn a_per_log_object_wrapped_into_a_list_keeps_its_read_only_state() {
    let log: serde_json::Value = common::json(PER_LOG);
    let wrapped = serde_json::json!({"operators": [{"name": "Geomys", "tiled_logs": [log]}]});
    let list = LogList::from_json(&serde_json::to_vec(&wrapped).unwrap()).unwrap();
    assert!(list.problems.is_empty(), "{:?}", list.problems);
    assert_eq!(list.logs[0].operator, "Geomys");
    assert!(matches!(
        list.logs[0].state,
        LogState::ReadOnly { tree_size: 300, .. }
    ));
}

#[test]
fn per_log_status_that_cannot_be_applied_is_reported() {
    let mut log: serde_json::Value = common::json(PER_LOG);
    log["status"] = "active".into();
    let list = LogList::from_json(&serde_json::to_vec(&log).unwrap()).unwrap();
    assert_eq!(list.logs[0].state, LogState::Unspecified);
    assert!(
        list.problems
            .iter()
            .any(|p| p.contains("final_tree_head") && p.contains("not applied")),
        "{:?}",
        list.problems
    );
    log["status"] = "inactive".into();
    log.as_object_mut().unwrap().remove("final_tree_head");
    let list = LogList::from_json(&serde_json::to_vec(&log).unwrap()).unwrap();
    assert!(list.problems.iter().any(|p| p.contains("\"inactive\"")));
    assert_eq!(list.logs[0].json["status"], "inactive");
    // readonly without its final head is refused, and said.
    log["status"] = "readonly".into();
    let list = LogList::from_json(&serde_json::to_vec(&log).unwrap()).unwrap();
    assert!(list.logs.is_empty());
    assert!(
        list.problems
            .iter()
            .any(|p| p.contains("without final_tree_head"))
    );
    // Neither a list nor a log.
    assert!(matches!(
        LogList::from_json(br#"{"description": "x"}"#),
        Err(Error::BadLogList(_))
    ));
}
