//! Half-Space Trees on River's Shuttle benchmark, with River's protocol.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use std::io::Read;

use palisade_threat_score::eval::roc_auc;
use palisade_threat_score::{HalfSpaceTrees, HstConfig};

fn rows() -> Vec<(Vec<f64>, bool)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/anomaly/shuttle.csv.gz"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("f1,f2,f3,f4,f5,f6,f7,f8,f9,anomaly"));
    lines
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            (v[..9].to_vec(), v[9] == 1.0)
        })
        .collect()
}

/// Scores each row before learning it; AUC over the last `window` scores.
fn rolling_auc(rows: &[(Vec<f64>, bool)], seed: u64, window: usize) -> f64 {
    let mut h = HalfSpaceTrees::new(
        9,
        HstConfig {
            seed,
            ..HstConfig::default()
        },
    );
    let mut pairs = Vec::with_capacity(rows.len());
    for (x, y) in rows {
        pairs.push((h.score(x), *y));
        h.learn(x);
    }
    roc_auc(&pairs[pairs.len().saturating_sub(window)..]).unwrap()
}

#[test]
fn shuttle_rolling_roc_auc_matches_river() {
    let rows = rows();
    assert_eq!(rows.len(), 49_097);
    assert_eq!(rows.iter().filter(|r| r.1).count(), 3_511);
    let first = &rows[..10_000];
    assert_eq!(first.iter().filter(|r| r.1).count(), 712);
    // River: MinMaxScaler | HalfSpaceTrees(seed=42), RollingROCAUC(10_000) = 0.9007.
    let auc = rolling_auc(first, 42, 10_000);
    println!("shuttle first 10,000 rows, seed 42: rolling ROC AUC {auc:.4}");
    assert!(auc >= 0.88, "{auc}");
    // Seeds vary (as River's do): the mean over 20 seeds must reach the goal too.
    let aucs: Vec<f64> = (1..=20)
        .map(|seed| rolling_auc(first, seed, 10_000))
        .collect();
    let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
    let min = aucs.iter().copied().fold(1.0, f64::min);
    let max = aucs.iter().copied().fold(0.0, f64::max);
    println!("seeds 1..=20: mean {mean:.4}, min {min:.4}, max {max:.4}");
    assert!(mean >= 0.88, "{aucs:?}");
}

#[test]
fn shuttle_full_stream_rolling_auc() {
    // River, same pipeline over all 49,097 rows: RollingROCAUC (last 10,000) 0.9862.
    let auc = rolling_auc(&rows(), 42, 10_000);
    println!("shuttle full stream, seed 42: rolling ROC AUC {auc:.4}");
    assert!(auc >= 0.95, "{auc}");
}
