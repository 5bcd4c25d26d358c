//! The RBA data set reader on a hand-written sample in its schema, and the same
//! evaluation as the synthetic one on it — or on the real CSV when `RBA_DATASET_CSV`
//! names it (`RBA_DATASET_ROWS` limits the rows read; use `--release`).
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io::BufReader;
use std::sync::Arc;

use palisade_threat_score::eval::{
    EvalOptions, RbaOptions, RbaReader, TableUaParser, evaluate_with, logins,
};
use palisade_threat_score::{Error, ThreatScorer};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/rba/sample.csv");

fn open(path: &str) -> RbaReader<BufReader<std::fs::File>> {
    RbaReader::new(BufReader::new(std::fs::File::open(path).unwrap())).unwrap()
}

#[test]
fn reads_the_sample_in_the_rba_schema() {
    let rows: Vec<_> = open(SAMPLE).map(Result::unwrap).collect();
    assert_eq!(rows.len(), 75);
    let first = &rows[0];
    // 2020-02-03 08:00:00 UTC.
    assert_eq!(first.at_secs, 1_580_716_800);
    assert_eq!(first.user, "1001");
    assert_eq!(first.rtt_ms, None);
    assert_eq!(first.ip.to_string(), "84.210.17.20");
    assert_eq!(first.country.as_deref(), Some("NO"));
    assert_eq!(first.asn, Some(2119));
    // The quoted UA keeps its comma.
    assert!(first.user_agent.contains("(KHTML, like Gecko) Chrome/86"));
    assert_eq!(first.ua.browser, "Chrome 86.0.4240");
    assert_eq!(first.ua.os, "Windows 10");
    assert_eq!(first.ua.device, "desktop");
    assert!(first.success && !first.attack_ip && !first.takeover);
    assert_eq!(rows[1].rtt_ms, Some(612.0));
    assert_eq!(rows.iter().filter(|r| r.attack_ip).count(), 3);
    assert_eq!(rows.iter().filter(|r| r.takeover).count(), 1);
    assert_eq!(rows.iter().filter(|r| !r.success).count(), 4);
    assert!(rows.windows(2).all(|w| w[0].at_secs <= w[1].at_secs));
}

#[test]
fn malformed_input_is_refused_with_its_line() {
    let header = std::fs::read_to_string(SAMPLE).unwrap();
    let header = header.lines().next().unwrap();
    let missing = "index,Login Timestamp,User ID\n0,2020-02-03 08:00:00,1\n";
    assert!(matches!(
        RbaReader::new(missing.as_bytes()),
        Err(Error::Dataset { line: 1, .. })
    ));
    let bad_bool = format!(
        "{header}\n0,2020-02-03 08:00:00,7,,192.0.2.1,NO,-,-,2119,ua,b,o,d,True,False,False\n\
         1,2020-02-03 08:00:01,7,,192.0.2.1,NO,-,-,2119,ua,b,o,d,maybe,False,False\n"
    );
    let rows: Vec<_> = RbaReader::new(bad_bool.as_bytes()).unwrap().collect();
    assert!(rows[0].is_ok());
    assert!(
        matches!(rows[1], Err(Error::Dataset { line: 3, .. })),
        "{rows:?}"
    );
    let open_quote = format!("{header}\n0,2020-02-03 08:00:00,7,,192.0.2.1,NO,-,-,2119,\"ua");
    let rows: Vec<_> = RbaReader::new(open_quote.as_bytes()).unwrap().collect();
    assert!(matches!(rows[..], [Err(Error::Dataset { .. })]), "{rows:?}");
}

#[test]
fn rba_csv_evaluation() {
    let path = std::env::var("RBA_DATASET_CSV").ok();
    let sample = path.is_none();
    let path = path.unwrap_or_else(|| SAMPLE.to_owned());
    let max_rows = std::env::var("RBA_DATASET_ROWS")
        .ok()
        .map(|n| n.parse().unwrap());
    let opts = RbaOptions {
        max_rows,
        targeted_every: Some(if sample { 1 } else { 100 }),
        min_prior: 20,
    };
    let ua = Arc::new(TableUaParser::default());
    let mut error = None;
    let stream = logins(open(&path), opts, ua.clone(), &mut error);
    let e = evaluate_with(stream, &EvalOptions::default(), |clock| {
        ThreatScorer::builder()
            .clock(clock)
            .ua_parser(ua)
            .build()
            .unwrap()
    });
    assert!(error.is_none(), "{error:?}");
    println!(
        "{path}: owner logins scored {}, targeted {}, attack-IP {}, takeovers {}",
        e.legit.len(),
        e.targeted.len(),
        e.attack_ip.len(),
        e.takeover.len()
    );
    println!("| attacker | detection | threshold | owners' logins re-auth | median user re-auth |");
    for (name, a) in [
        ("targeted (simulated)", &e.targeted),
        ("attack IP", &e.attack_ip),
        ("takeover", &e.takeover),
    ] {
        for d in [0.5, 0.9, 0.99] {
            let p = e.at_detection(a, d);
            println!(
                "| {name} | {:.1} % | {:.4} | {:.1} % | {:.1} % |",
                100.0 * p.detected,
                p.threshold,
                100.0 * p.reauth_logins,
                100.0 * p.reauth_median_user
            );
        }
    }
    assert!(!e.legit.is_empty());
    assert!(
        e.legit
            .iter()
            .chain(&e.targeted)
            .all(|s| (0.0..=1.0).contains(s))
    );
    if sample {
        // By construction (PROVENANCE.md): 1001's logins 21–24 and 1002's 21–22 have
        // 20 earlier ones; the attack-IP rows and the takeover are scored, not learned.
        assert_eq!(e.legit.len(), 6);
        assert_eq!(e.attack_ip.len(), 3);
        assert_eq!(e.takeover.len(), 1);
        // A simulated attack before each eligible login, except 1001's last one, when
        // the latest other login in NO was 1001's own.
        assert_eq!(e.targeted.len(), 5);
        // The takeover (new country, ASN and device) outscores every owner login.
        let owners_max = e.legit.iter().copied().fold(0.0, f64::max);
        assert!(e.takeover[0] > owners_max, "{e:?}");
        assert!(e.takeover[0] >= 0.5, "{e:?}");
    }
}
