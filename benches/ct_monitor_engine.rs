//! ct-monitor engine: a `Monitor` reading all 1,024 entries of the loopback test log
//! (real Navigli2025h2 entries) from entry 0 until it has caught up, over HTTP, with
//! every check (signatures, compact-range root, precertificate vs TBS, leaf index,
//! 1,000 watch items). Anchor in the same run: the same entries parsed, checked and
//! appended to a compact range in memory, without HTTP or the engine.
//!
//! Run: cargo bench -p palisade-benches --bench ct_monitor_engine -- --measurement-time 2
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_ct_monitor::testlog::{Protocol, TestLog};
use palisade_ct_monitor::{
    Authorizer, ClientConfig, CompactRange, Event, Health, MemoryStateStore, Monitor, WatchItem,
    Watchlist, check_tile_leaf, parse_data_tile,
};

fn watchlist() -> Watchlist {
    let mut items: Vec<WatchItem> = (0..998)
        .map(|i| WatchItem::DomainAndSubdomains(format!("svc{i}.brand{}.example", i % 97)))
        .collect();
    items.push(WatchItem::DomainAndSubdomains("websrc.fr".into()));
    items.push(WatchItem::DomainAndSubdomains("herokuappdev.com".into()));
    Watchlist::new(items)
}

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let logs = rt.block_on(async {
        [
            TestLog::start(Protocol::Rfc6962, 1024).await.unwrap(),
            TestLog::start(Protocol::StaticCt, 1024).await.unwrap(),
        ]
    });
    let list = watchlist();
    let mut g = c.benchmark_group("ct_engine_1024_entries");
    g.throughput(Throughput::Elements(1024));
    g.sample_size(10);
    for log in &logs {
        let name = format!("palisade_monitor_loopback_{:?}", log.protocol());
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut m = Monitor::builder()
                        .log(log.log_config())
                        .watchlist(list.clone())
                        .state_store(Arc::new(MemoryStateStore::default()))
                        .batch_size(std::num::NonZeroU64::new(256).unwrap())
                        .client_config({
                            let mut c = ClientConfig::default();
                            c.min_interval = Duration::ZERO;
                            c
                        })
                        .spawn()
                        .unwrap();
                    let mut alerts = 0;
                    while let Some(e) = m.next_event().await {
                        match e {
                            Event::Discovered { .. } => alerts += 1,
                            Event::Health {
                                health: Health::Ok, ..
                            } => break,
                            Event::Health { health, .. } => panic!("{health:?}"),
                            _ => {}
                        }
                    }
                    assert_eq!(alerts, 8);
                    m.shutdown().await;
                })
            })
        });
    }
    let tiles: Vec<Vec<u8>> = ["000", "001", "002", "003"]
        .iter()
        .map(|n| {
            let p = format!(
                "{}/../crates/ct-monitor/tests/data/static-ct/navigli2025h2/tile/data/{n}",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read(p).unwrap()
        })
        .collect();
    let auth = Authorizer::new();
    g.bench_function("anchor_in_memory_check_and_compact_range", |b| {
        b.iter(|| {
            let mut range = CompactRange::new();
            let mut alerts = 0;
            for (k, t) in tiles.iter().enumerate() {
                for (i, leaf) in parse_data_tile(t).unwrap().iter().enumerate() {
                    let index = (k * 256 + i) as u64;
                    alerts += usize::from(check_tile_leaf(leaf, index, &list, &auth).is_alert());
                    range.append(leaf.leaf_hash());
                }
            }
            assert_eq!(alerts, 8);
            black_box(range.root())
        })
    });
    g.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
