//! End to end over HTTP on loopback: the monitor against the bundled test log
//! (`testlog`, a real Merkle tree over the 1,024 real Navigli2025h2 entries, heads
//! signed with a fresh P-256 key), for both protocols.
//!
//! Expected indices were found with Python's `cryptography` over the vendored tiles,
//! not with this crate: `.websrc.fr` names are in entries 86, 163, 492 and 1002;
//! `.herokuappdev.com` names in 66, 413, 747 and 748; entry 413's SubjectPublicKeyInfo
//! has SHA-256 4febbf3d…a6801b3.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use palisade_core_traits::{EventKind, ManualClock, Timestamp};
use palisade_ct_monitor::testlog::{Faults, Protocol, RetryAfter, TestLog};
use palisade_ct_monitor::{
    Authorizer, ClientConfig, Error, Event, FileStateStore, Health, LogConfig, MemoryStateStore,
    Misbehaviour, Monitor, MonitorBuilder, ProofFailure, Rfc6962Client, StateStore, StaticCtClient,
    WatchItem, Watchlist,
};

const EXPECTED: [u64; 7] = [66, 86, 163, 492, 747, 748, 1002];
const AUTHORIZED_SPKI: &str = "4febbf3d615875f7b5209e78d5f17d966d0f742469ac7504779ba0c83a6801b3";
const BOTH: [Protocol; 2] = [Protocol::Rfc6962, Protocol::StaticCt];

fn watchlist() -> Watchlist {
    Watchlist::parse(".websrc.fr\n.herokuappdev.com\n").unwrap()
}

fn authorizer() -> Authorizer {
    let mut a = Authorizer::new();
    a.allow_spki_hash(common::hex32(AUTHORIZED_SPKI));
    a
}

fn fast_client() -> ClientConfig {
    let mut c = ClientConfig::default();
    c.timeout = Duration::from_secs(10);
    c.backoff = Duration::from_millis(10);
    c.min_interval = Duration::ZERO;
    c
}

fn builder(log: &TestLog, store: Arc<dyn StateStore>) -> MonitorBuilder {
    Monitor::builder()
        .log(log.log_config())
        .watchlist(watchlist())
        .authorizer(authorizer())
        .state_store(store)
        .poll_interval(Duration::from_millis(20))
        .batch_size(NonZeroU64::new(100).unwrap())
        .client_config(fast_client())
}

/// The next event if one comes within 300 ms.
async fn quiet(m: &mut Monitor) -> Result<Option<Event>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_millis(300), m.next_event()).await
}

/// Events until `done` holds for the last one (bounded so a bug fails instead of hanging).
async fn until(m: &mut Monitor, done: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(e) = m.next_event().await {
            let stop = done(&e);
            out.push(e);
            if stop {
                return;
            }
        }
    })
    .await;
    assert!(r.is_ok(), "timed out; events so far: {out:#?}");
    out
}

fn discovered(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Discovered { index, .. } => Some(*index),
            _ => None,
        })
        .collect()
}

fn is_ok(e: &Event) -> bool {
    matches!(
        e,
        Event::Health {
            health: Health::Ok,
            ..
        }
    )
}

fn is_misbehaved(e: &Event) -> bool {
    matches!(e, Event::LogMisbehaved(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_watched_domains_ignores_authorized_and_pages_get_entries() {
    for protocol in BOTH {
        let log = TestLog::start(protocol, 1024).await.unwrap();
        // A log that returns fewer entries than asked (37 of 100).
        log.set_faults(Faults {
            max_entries: 37,
            ..Faults::default()
        });
        let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
            .spawn()
            .unwrap();
        let events = until(&mut m, is_ok).await;
        assert_eq!(discovered(&events), EXPECTED, "{protocol:?}");
        assert!(!events.iter().any(|e| matches!(e, Event::Malformed { .. })));
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Backlog {
                tree_size: 1024,
                ..
            }
        )));

        // Each event names what matched.
        let first = events
            .iter()
            .find(|e| matches!(e, Event::Discovered { .. }))
            .unwrap();
        let Event::Discovered { matches, info, .. } = first else {
            unreachable!()
        };
        assert_eq!(matches.len(), 1);
        assert_eq!(
            matches[0].item,
            WatchItem::DomainAndSubdomains("herokuappdev.com".into())
        );
        assert_eq!(
            matches[0].identifier,
            "direwolf-10fdc48383-01152eff0517.redbud-virginia.herokuappdev.com"
        );
        assert!(info.is_precert);
        let sec = m.security_event(first).unwrap().unwrap();
        assert_eq!(sec.kind, EventKind::UnauthorizedCertificate);
        // The counters: every entry checked once, eight matched (413 is authorized).
        let stats = m.stats();
        assert_eq!(
            (
                stats.entries,
                stats.matches,
                stats.discovered,
                stats.malformed
            ),
            (1024, 8, 7, 0),
            "{protocol:?}"
        );
        assert_eq!((stats.misbehaviour, stats.duplicates), (0, 0));
        assert!(stats.polls >= 1 && stats.requests >= 5, "{stats:?}");

        let reqs = log.requests();
        if protocol == Protocol::Rfc6962 {
            // Asked again from where each short answer ended.
            let starts: Vec<u64> = reqs
                .iter()
                .filter(|r| r.path.contains("get-entries"))
                .map(|r| {
                    let q = r.path.split("start=").nth(1).unwrap();
                    q.split('&').next().unwrap().parse().unwrap()
                })
                .collect();
            let want: Vec<u64> = (0..1024).step_by(37).collect();
            assert_eq!(starts, want);
        } else {
            let data: Vec<&str> = reqs
                .iter()
                .map(|r| r.path.as_str())
                .filter(|p| p.starts_with("/tile/data/"))
                .collect();
            assert_eq!(
                data,
                [
                    "/tile/data/000",
                    "/tile/data/001",
                    "/tile/data/002",
                    "/tile/data/003"
                ]
            );
        }
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_neither_loses_nor_repeats_events() {
    for protocol in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let log = TestLog::start(protocol, 778).await.unwrap();
        // Tiles already at 1,024: the partial data tile 003.p/10 has vanished.
        log.set_tiles_size(1024);
        let store =
            || -> Arc<dyn StateStore> { Arc::new(FileStateStore::new(dir.path()).unwrap()) };

        let mut a = builder(&log, store()).spawn().unwrap();
        let mut got = Vec::new();
        // Stop after the first event; the next one (86, same batch) is already
        // waiting in the channel but was not handed over.
        let first = until(&mut a, |e| matches!(e, Event::Discovered { .. })).await;
        got.extend(discovered(&first));
        a.shutdown().await;
        assert_eq!(got, [66], "{protocol:?}");

        let mut b = builder(&log, store()).spawn().unwrap();
        let second = until(&mut b, is_ok).await;
        got.extend(discovered(&second));
        log.set_size(1024).unwrap();
        let third = until(&mut b, |e| {
            matches!(e, Event::Discovered { index: 1002, .. })
        })
        .await;
        got.extend(discovered(&third));
        b.shutdown().await;
        assert_eq!(got, EXPECTED, "{protocol:?}");

        let saved = FileStateStore::new(dir.path())
            .unwrap()
            .load(log.key().log_id())
            .unwrap()
            .unwrap();
        assert!(saved.range.size() > 1002);
        if protocol == Protocol::StaticCt {
            let paths: Vec<String> = log.requests().into_iter().map(|r| r.path).collect();
            let p = paths
                .iter()
                .position(|p| p == "/tile/data/003.p/10")
                .unwrap();
            assert_eq!(
                paths[p + 1],
                "/tile/data/003",
                "falls back to the full tile"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_and_rewritten_history_raise_log_misbehaved() {
    for protocol in BOTH {
        for fork in [true, false] {
            let log = TestLog::start(protocol, 500).await.unwrap();
            let store = Arc::new(MemoryStateStore::default());
            let mut m = builder(&log, store.clone()).spawn().unwrap();
            until(&mut m, is_ok).await;
            let trusted = log.head();
            log.rewrite_leaf(3);
            log.set_size(if fork { 500 } else { 700 }).unwrap();
            let forged = log.head();
            let events = until(&mut m, is_misbehaved).await;
            let Some(Event::LogMisbehaved(mis)) = events.last() else {
                unreachable!()
            };
            match (&mis.evidence, fork) {
                (Misbehaviour::Fork { trusted: t, other }, true) => {
                    assert_eq!((t, other), (&trusted, &forged));
                }
                (
                    Misbehaviour::InconsistentTreeHeads {
                        old, new, proof, ..
                    },
                    false,
                ) => {
                    assert_eq!((old, new), (&trusted, &forged));
                    assert!(!proof.is_empty());
                }
                (e, _) => panic!("{protocol:?} fork={fork}: {e:?}"),
            }
            assert_eq!(mis.log_id, *log.key().log_id());
            let sec = m
                .security_event(&events[events.len() - 1])
                .unwrap()
                .unwrap();
            assert_eq!(sec.kind, EventKind::LogMisbehaviour);
            // The task stops, and the stored state never moved past the trusted head.
            let stop = until(&mut m, |e| matches!(e, Event::Health { .. })).await;
            assert!(matches!(
                stop.last(),
                Some(Event::Health {
                    health: Health::Stopped { .. },
                    ..
                })
            ));
            let saved = store.load(log.key().log_id()).unwrap().unwrap();
            assert_eq!(saved.trusted, trusted);
            assert_eq!(saved.range.size(), 500);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proofs_raise_log_misbehaved() {
    // A bad inclusion proof when starting at the end of the log.
    let log = TestLog::start(Protocol::Rfc6962, 900).await.unwrap();
    log.set_faults(Faults {
        bad_inclusion_proofs: true,
        ..Faults::default()
    });
    let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
        .start_at_end(true)
        .spawn()
        .unwrap();
    let events = until(&mut m, is_misbehaved).await;
    let Some(Event::LogMisbehaved(mis)) = events.last() else {
        unreachable!()
    };
    match &mis.evidence {
        Misbehaviour::BadInclusionProof {
            sth,
            leaf_index,
            proof,
            ..
        } => {
            assert_eq!(*sth, log.head());
            assert_eq!(*leaf_index, 899);
            assert!(!proof.is_empty());
        }
        e => panic!("{e:?}"),
    }
    m.shutdown().await;

    // A bad consistency proof when the log grows.
    let log = TestLog::start(Protocol::Rfc6962, 300).await.unwrap();
    let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
        .spawn()
        .unwrap();
    until(&mut m, is_ok).await;
    let old = log.head();
    log.set_faults(Faults {
        bad_consistency_proofs: true,
        ..Faults::default()
    });
    log.set_size(600).unwrap();
    let events = until(&mut m, is_misbehaved).await;
    let Some(Event::LogMisbehaved(mis)) = events.last() else {
        unreachable!()
    };
    assert!(matches!(
        &mis.evidence,
        Misbehaviour::InconsistentTreeHeads { old: o, new, .. } if *o == old && *new == log.head()
    ));
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_and_replace_the_watchlist_while_running() {
    for protocol in BOTH {
        let log = TestLog::start(protocol, 1000).await.unwrap();
        let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
            .watchlist(Watchlist::default())
            .start_at_end(true)
            .spawn()
            .unwrap();
        let events = until(&mut m, is_ok).await;
        assert!(discovered(&events).is_empty());
        m.replace_watchlist(watchlist());
        log.set_size(1024).unwrap();
        let events = until(&mut m, |e| matches!(e, Event::Discovered { .. })).await;
        assert_eq!(discovered(&events), [1002], "{protocol:?}");
        if protocol == Protocol::StaticCt {
            // The compact range at 1,000 came from Merkle tiles, not from entries.
            assert!(!log.requests().iter().any(|r| r.path == "/tile/data/000"));
        }
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_429_retry_after() {
    for protocol in BOTH {
        let log = TestLog::start(protocol, 200).await.unwrap();
        log.set_faults(Faults {
            rate_limit: Some((1, RetryAfter::Seconds(1))),
            ..Faults::default()
        });
        let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
            .spawn()
            .unwrap();
        let events = until(&mut m, is_ok).await;
        assert_eq!(discovered(&events), [66, 86, 163], "{protocol:?}");
        // Server-side arrival times: the retry came no sooner than Retry-After.
        let reqs = log.requests();
        assert_eq!(reqs[0].path, reqs[1].path);
        assert!(reqs[1].at.duration_since(reqs[0].at) >= Duration::from_secs(1));
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6962_client_reads_roots_and_proofs() {
    let log = TestLog::start(Protocol::Rfc6962, 10).await.unwrap();
    let mut c = Rfc6962Client::new("test", &log.url(), fast_client()).unwrap();
    let roots = c.get_roots().await.unwrap();
    let pem = String::from_utf8(common::read("testlog/ca-cert.pem")).unwrap();
    assert_eq!(roots, common::pem_blocks(&pem, "CERTIFICATE"));
    let sth = c.get_sth().await.unwrap();
    sth.verify(&log.key()).unwrap();
    assert_eq!(sth.tree_size, 10);
    let entries = c.get_entries(0, 9).await.unwrap();
    let leaves: Vec<_> = entries
        .iter()
        .map(|e| common::naive::leaf(&e.leaf_input))
        .collect();
    assert_eq!(common::naive::root(&leaves), sth.root_hash);
    let (index, path) = c.get_proof_by_hash(&leaves[6], 10).await.unwrap();
    assert_eq!(index, 6);
    assert_eq!(path, common::naive::path(6, &leaves));
    let err = c.get_entries(10, 12).await.unwrap_err().to_string();
    assert!(
        err.contains("get-entries?start=10&end=12") && err.contains("400"),
        "{err}"
    );
    // 2^64 entries cannot be counted in a u64: a typed error, not an overflow.
    let n = log.requests().len();
    match c.get_entries(0, u64::MAX).await {
        Err(Error::Http {
            status: None,
            reason,
            ..
        }) => assert!(reason.contains("2^64"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(log.requests().len(), n, "refused before asking the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_ct_client_reads_issuers_and_tiles() {
    let log = TestLog::start(Protocol::StaticCt, 300).await.unwrap();
    let mut c = StaticCtClient::new("test", &log.url(), fast_client()).unwrap();
    let pem = String::from_utf8(common::read("testlog/ca-cert.pem")).unwrap();
    let der = common::pem_blocks(&pem, "CERTIFICATE").remove(0);
    let fp: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &der)
        .as_ref()
        .try_into()
        .unwrap();
    assert_eq!(c.issuer(&fp).await.unwrap(), der);
    let mut other = fp;
    other[0] ^= 1;
    let err = c.issuer(&other).await.unwrap_err();
    assert!(
        matches!(
            &err,
            palisade_ct_monitor::Error::Http { status: Some(404), url, log, .. }
                if url.ends_with(&hex::encode(other)) && log == "test"
        ),
        "{err}"
    );
    // Level-0 tile 0 is the real Navigli leaf hashes (facts.json: leaf 0).
    let tile = c.hash_tile(0, 0, 256).await.unwrap();
    assert_eq!(
        tile[0],
        common::hex32("c853d5121104135a85f8a66a9d16d62234d541473ed78424032622564baddddf")
    );
    // The partial tile of the current size, and a vanished one that falls back.
    assert_eq!(c.hash_tile(0, 1, 44).await.unwrap(), tile_hashes(256, 44));
    log.set_size(600).unwrap();
    assert_eq!(c.hash_tile(0, 1, 44).await.unwrap(), tile_hashes(256, 44));
    assert!(c.hash_tile(0, 3, 5).await.is_err(), "beyond the tree");
}

/// Leaf hashes `[start, start + n)` as read from the vendored level-0 tiles.
fn tile_hashes(start: usize, n: usize) -> Vec<[u8; 32]> {
    let tile = common::read(&format!(
        "static-ct/navigli2025h2/tile/0/{:03}",
        start / 256
    ));
    tile[(start % 256) * 32..]
        .chunks(32)
        .take(n)
        .map(|c| c.try_into().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_polls_report_health_with_the_url_and_recover() {
    let log = TestLog::start(Protocol::Rfc6962, 100).await.unwrap();
    // Six 429s with Retry-After 0: the first poll (1 try + 2 retries) fails, the
    // second fails too, the third gets through.
    log.set_faults(Faults {
        rate_limit: Some((6, RetryAfter::Seconds(0))),
        ..Faults::default()
    });
    let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
        .client_config({
            let mut c = fast_client();
            c.max_retries = 2;
            c
        })
        .spawn()
        .unwrap();
    let events = until(&mut m, is_ok).await;
    let failing: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Health {
                health: Health::Failing { error },
                ..
            } => Some(error.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(failing.len(), 2, "{events:#?}");
    let url = format!("{}ct/v1/get-sth", log.url());
    assert!(
        failing
            .iter()
            .all(|e| e.contains(&url) && e.contains("rate limited")),
        "{failing:?}"
    );
    assert_eq!(discovered(&events), [66, 86]);
    assert_eq!(
        log.requests()
            .iter()
            .filter(|r| r.path.ends_with("get-sth"))
            .count(),
        7
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_per_issuance_across_logs() {
    // The same 1,024 entries in an RFC 6962 log and a static-ct log.
    let rfc = TestLog::start(Protocol::Rfc6962, 1024).await.unwrap();
    let tiled = TestLog::start(Protocol::StaticCt, 1024).await.unwrap();
    for (capacity, per_index) in [(100_000, 1), (0, 2)] {
        let mut m = builder(&rfc, Arc::new(MemoryStateStore::default()))
            .log(tiled.log_config())
            .dedupe_capacity(capacity)
            .spawn()
            .unwrap();
        let mut events = Vec::new();
        let mut caught_up = 0;
        while caught_up < 2 {
            let e = until(&mut m, is_ok).await;
            events.extend(e);
            caught_up += 1;
        }
        let mut found = discovered(&events);
        found.sort_unstable();
        let want: Vec<u64> = EXPECTED
            .iter()
            .flat_map(|i| std::iter::repeat_n(*i, per_index))
            .collect();
        assert_eq!(found, want, "capacity {capacity}");
        m.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_without_shutdown_repeats_at_most_the_last_event() {
    for protocol in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let log = TestLog::start(protocol, 1024).await.unwrap();
        let store =
            || -> Arc<dyn StateStore> { Arc::new(FileStateStore::new(dir.path()).unwrap()) };
        let mut a = builder(&log, store()).spawn().unwrap();
        let first = until(&mut a, |e| matches!(e, Event::Discovered { index: 86, .. })).await;
        assert_eq!(discovered(&first), [66, 86]);
        drop(a); // like a crash: the save after handing over 86 may not have happened
        let mut b = builder(&log, store()).spawn().unwrap();
        let rest = discovered(&until(&mut b, is_ok).await);
        // At least once: nothing lost; the only possible repeat is 86.
        let tail = if rest.first() == Some(&86) {
            &rest[1..]
        } else {
            &rest[..]
        };
        assert_eq!(tail, &EXPECTED[2..], "{protocol:?}: {rest:?}");
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_logs_stop_at_their_final_tree_head() {
    let log = TestLog::start(Protocol::StaticCt, 500).await.unwrap();
    let head = log.head();
    let mut config = log.log_config();
    config.final_tree_head = Some((500, head.root_hash));
    let mut m = Monitor::builder()
        .log(config.clone())
        .watchlist(watchlist())
        .poll_interval(Duration::from_millis(20))
        .client_config(fast_client())
        .spawn()
        .unwrap();
    let events = until(&mut m, |e| {
        matches!(
            e,
            Event::Health {
                health: Health::Stopped { .. },
                ..
            }
        )
    })
    .await;
    assert_eq!(discovered(&events), [66, 86, 163, 413, 492]);
    let Some(Event::Health {
        health: Health::Stopped { reason },
        ..
    }) = events.last()
    else {
        unreachable!()
    };
    assert!(reason.contains("final tree head (500 entries)"), "{reason}");
    m.shutdown().await;

    // A signed head past the final one, or of its size with another root, is
    // misbehaviour against the final head (as against a pin), raised once: the
    // task stops, nothing is trusted or saved.
    let other_root = [7u8; 32];
    for (final_head, failure) in [
        (
            (400, head.root_hash),
            ProofFailure::SizesReversed {
                size1: 500,
                size2: 400,
            },
        ),
        ((500, other_root), ProofFailure::RootMismatch),
    ] {
        config.final_tree_head = Some(final_head);
        let store = Arc::new(MemoryStateStore::default());
        let mut m = Monitor::builder()
            .log(config.clone())
            .state_store(store.clone())
            .poll_interval(Duration::from_millis(20))
            .client_config(fast_client())
            .spawn()
            .unwrap();
        let events = until(&mut m, |e| matches!(e, Event::Health { .. })).await;
        let [
            Event::LogMisbehaved(m0),
            Event::Health {
                health: Health::Stopped { reason },
                ..
            },
        ] = &events[..]
        else {
            panic!("{events:#?}")
        };
        assert_eq!(
            m0.evidence,
            Misbehaviour::InconsistentWithPinned {
                pinned_size: final_head.0,
                pinned_root: final_head.1,
                sth: head.clone(),
                proof: Vec::new(),
                failure,
            }
        );
        assert!(reason.contains("inconsistent_with_pinned"), "{reason}");
        assert!(!matches!(quiet(&mut m).await, Ok(Some(_))));
        assert_eq!(m.stats().misbehaviour, 1);
        assert!(store.load(log.key().log_id()).unwrap().is_none());
        m.shutdown().await;
    }

    // Its signature is checked first: a head that does not verify (here an RFC 6962
    // head under another key) is a bad signature, whatever it says about the final head.
    let rfc = TestLog::start(Protocol::Rfc6962, 500).await.unwrap();
    let mut config = rfc.log_config();
    config.final_tree_head = Some((400, rfc.head().root_hash));
    config.key = common::TestLog::new().key;
    let mut m = Monitor::builder()
        .log(config)
        .poll_interval(Duration::from_millis(20))
        .client_config(fast_client())
        .spawn()
        .unwrap();
    let events = until(&mut m, |e| matches!(e, Event::Health { .. })).await;
    assert!(
        matches!(
            &events[..],
            [Event::LogMisbehaved(m0), Event::Health { health: Health::Stopped { .. }, .. }]
                if matches!(m0.evidence, Misbehaviour::BadSignature { .. })
        ),
        "{events:#?}"
    );
    m.shutdown().await;
}

/// A read-only log whose final tree head is smaller than a head this monitor trusted
/// before the log was frozen: the saved head contradicts the final one, and that is
/// misbehaviour whatever the log serves now (here its final head, which alone passes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_head_past_a_read_only_logs_final_head_is_misbehaviour() {
    let log = TestLog::start(Protocol::Rfc6962, 500).await.unwrap();
    let store = Arc::new(MemoryStateStore::default());
    let mut m = builder(&log, store.clone()).spawn().unwrap();
    until(&mut m, is_ok).await;
    m.shutdown().await;
    log.set_size(400).unwrap();
    let final_head = (400, log.head().root_hash);
    let mut config = log.log_config();
    config.final_tree_head = Some(final_head);
    let mut m = Monitor::builder()
        .log(config)
        .state_store(store.clone())
        .poll_interval(Duration::from_millis(20))
        .client_config(fast_client())
        .spawn()
        .unwrap();
    let events = until(&mut m, |e| matches!(e, Event::Health { .. })).await;
    let [
        Event::LogMisbehaved(m0),
        Event::Health {
            health: Health::Stopped { reason },
            ..
        },
    ] = &events[..]
    else {
        panic!("{events:#?}")
    };
    let Misbehaviour::InconsistentWithPinned {
        pinned_size,
        sth,
        failure,
        ..
    } = &m0.evidence
    else {
        panic!("{:?}", m0.evidence)
    };
    assert_eq!((*pinned_size, sth.tree_size), (400, 500));
    assert_eq!(
        *failure,
        ProofFailure::SizesReversed {
            size1: 500,
            size2: 400
        }
    );
    assert!(reason.contains("inconsistent_with_pinned"), "{reason}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honours_429_retry_after_as_an_http_date() {
    // The monitor's wall clock stands still at 2030-01-01T00:00:00Z; the log asks to
    // come back at 00:00:02 (RFC 9110 IMF-fixdate), i.e. two seconds later.
    let now = Timestamp::from_unix_secs(1_893_456_000);
    let clock = Arc::new(ManualClock::new(now));
    let log = TestLog::start(Protocol::Rfc6962, 200).await.unwrap();
    // The log signs on the same clock, or its head would be years old in 2030.
    log.set_clock(clock.clone());
    log.set_size(200).unwrap();
    let at = now.to_system_time() + Duration::from_secs(2);
    log.set_faults(Faults {
        rate_limit: Some((1, RetryAfter::Date(at))),
        ..Faults::default()
    });
    let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
        .clock(clock)
        .spawn()
        .unwrap();
    let events = until(&mut m, is_ok).await;
    assert_eq!(discovered(&events), [66, 86, 163]);
    // Server-side arrival times: the retry came no sooner than the date asked.
    let reqs = log.requests();
    assert_eq!(reqs[0].path, reqs[1].path);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_secs(2), "{gap:?}");
    let stats = m.stats();
    assert_eq!((stats.rate_limited, stats.retries), (1, 1));
    m.shutdown().await;
}

#[test]
fn spawn_names_what_cannot_work() {
    let key = common::TestLog::new().key;
    let other_key = common::TestLog::new().key;
    let rfc = || LogConfig::rfc6962("https://log.example/", key.clone());
    let field = |b: MonitorBuilder| match b.spawn() {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(Monitor::builder()), "logs");
    assert_eq!(
        field(Monitor::builder().log(rfc()).poll_interval(Duration::ZERO)),
        "poll_interval"
    );
    let mut zero_timeout = ClientConfig::default();
    zero_timeout.timeout = Duration::ZERO;
    assert_eq!(
        field(Monitor::builder().log(rfc()).client_config(zero_timeout)),
        "client_config.timeout"
    );
    let mut zero_body = ClientConfig::default();
    zero_body.max_body = 0;
    assert_eq!(
        field(Monitor::builder().log(rfc()).client_config(zero_body)),
        "client_config.max_body"
    );
    // Two logs with one key would share one state.
    let twin = LogConfig::static_ct("https://twin.example/", "twin.example", key.clone());
    assert_eq!(field(Monitor::builder().log(rfc()).log(twin)), "logs");
    let mut unnamed = rfc();
    unnamed.name = String::new();
    assert_eq!(field(Monitor::builder().log(unnamed)), "logs.name");
    let mut no_mmd = rfc();
    no_mmd.mmd = Duration::ZERO;
    assert_eq!(field(Monitor::builder().log(no_mmd)), "logs.mmd");
    let no_origin = LogConfig::static_ct("https://t.example/", "", other_key.clone());
    assert_eq!(field(Monitor::builder().log(no_origin)), "logs.origin");
    for url in [
        "log.example/ct",
        "ftp://log.example/",
        "https://log.example/?key=1",
    ] {
        let bad = LogConfig::rfc6962(url, other_key.clone());
        assert_eq!(field(Monitor::builder().log(bad)), "logs.url", "{url}");
    }
    // Credentials in a URL never reach a name, Debug or an error.
    let secret = LogConfig::rfc6962("https://user:hunter2@log.example/", other_key.clone());
    assert_eq!(secret.name, "https://log.example/");
    assert!(!format!("{secret:?}").contains("hunter2"));
    // A configuration that works, but no Tokio runtime to run it on.
    assert_eq!(field(Monitor::builder().log(rfc())), "runtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_intervals_wait_instead_of_overflowing() {
    // Duration::MAX as the poll interval, then as the pacing interval: the task
    // waits (a task that panicked would close the stream at once).
    let log = TestLog::start(Protocol::Rfc6962, 10).await.unwrap();
    let mut m = Monitor::builder()
        .log(log.log_config())
        .poll_interval(Duration::MAX)
        .client_config(fast_client())
        .spawn()
        .unwrap();
    until(&mut m, is_ok).await;
    let next = quiet(&mut m).await;
    assert!(next.is_err(), "poll interval: {next:?}");
    m.shutdown().await;

    let mut client = fast_client();
    client.min_interval = Duration::MAX;
    let mut m = Monitor::builder()
        .log(log.log_config())
        .client_config(client)
        .spawn()
        .unwrap();
    // get-sth went out; get-entries waits for the pacing interval.
    until(&mut m, |e| matches!(e, Event::Backlog { .. })).await;
    let next = quiet(&mut m).await;
    assert!(next.is_err(), "pacing interval: {next:?}");
    m.shutdown().await;
}

fn failing(e: &Event) -> bool {
    matches!(
        e,
        Event::Health {
            health: Health::Failing { .. },
            ..
        }
    )
}

fn failing_with(e: &Event, text: &str) -> bool {
    matches!(
        e,
        Event::Health { health: Health::Failing { error }, .. } if error.contains(text)
    )
}

/// The next `n` health events.
async fn health_events(m: &mut Monitor, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let events = until(m, |e| matches!(e, Event::Health { .. })).await;
        out.extend(
            events
                .into_iter()
                .filter(|e| matches!(e, Event::Health { .. })),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_keeps_serving_one_head_is_stale_after_its_mmd() {
    // 2030-01-01T00:00:00Z on the monitor's and the log's clock.
    let t0 = Timestamp::from_unix_secs(1_893_456_000);
    let clock = Arc::new(ManualClock::new(t0));
    let log = TestLog::start(Protocol::Rfc6962, 200).await.unwrap();
    log.set_clock(clock.clone());
    log.set_size(200).unwrap();
    let mut config = log.log_config();
    config.mmd = Duration::from_secs(3600);
    let store = Arc::new(MemoryStateStore::default());
    let mut m = Monitor::builder()
        .log(config)
        .state_store(store.clone())
        .clock(clock.clone())
        .poll_interval(Duration::from_millis(20))
        .client_config(fast_client())
        .spawn()
        .unwrap();
    until(&mut m, is_ok).await;
    // The MMD has passed but not the poll interval after it: still healthy.
    clock.advance(Duration::from_secs(3600));
    assert!(
        quiet(&mut m).await.is_err(),
        "no event while within MMD + poll"
    );
    // The same signed head, a second later: every poll says the log is stale.
    clock.advance(Duration::from_secs(1));
    let events = until(&mut m, |e| matches!(e, Event::Health { .. })).await;
    assert!(
        failing_with(events.last().unwrap(), "more than the 3600.02s allowed"),
        "{events:?}"
    );
    // The log re-signs the same tree now: it is fresh again, and that head is kept.
    log.set_size(200).unwrap();
    until(&mut m, is_ok).await;
    let saved = store.load(log.key().log_id()).unwrap().unwrap();
    assert_eq!(saved.trusted.timestamp, (1_893_456_000 + 3601) * 1_000);
    // Stale again; then the wall clock steps back to when the head was signed.
    // The monotonic deadline still says stale: a clock step never makes it fresh.
    clock.advance(Duration::from_secs(3601));
    until(&mut m, failing).await;
    clock.set(Timestamp::from_unix_secs(1_893_456_000 + 3601));
    for e in health_events(&mut m, 3).await {
        assert!(failing_with(&e, "old, more than"), "{e:?}");
    }
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_from_the_future_is_refused_and_a_back_dated_larger_head_is_misbehaviour() {
    let t0 = Timestamp::from_unix_secs(1_893_456_000);
    let clock = Arc::new(ManualClock::new(t0));
    // The log's clock runs ten minutes ahead of the monitor's.
    let log_clock = Arc::new(ManualClock::new(
        t0.saturating_add(Duration::from_secs(600)),
    ));
    let log = TestLog::start(Protocol::StaticCt, 200).await.unwrap();
    log.set_clock(log_clock.clone());
    log.set_size(200).unwrap();
    let store = Arc::new(MemoryStateStore::default());
    let mut m = builder(&log, store.clone())
        .clock(clock.clone())
        .spawn()
        .unwrap();
    let events = until(&mut m, |e| matches!(e, Event::Health { .. })).await;
    assert!(
        failing_with(events.last().unwrap(), "ahead of our clock"),
        "{events:?}"
    );
    assert!(
        discovered(&events).is_empty(),
        "nothing trusted: {events:?}"
    );
    assert!(store.load(log.key().log_id()).unwrap().is_none());
    // Four minutes ahead is inside the skew: trusted.
    log_clock.set(t0.saturating_add(Duration::from_secs(240)));
    log.set_size(200).unwrap();
    let events = until(&mut m, is_ok).await;
    assert_eq!(discovered(&events), [66, 86, 163]);
    // A larger head stamped an hour before the trusted one: both heads are the
    // evidence, the task stops, and the store keeps the trusted head.
    let trusted = log.head();
    log_clock.set(t0.saturating_sub(Duration::from_secs(3600)));
    log.set_size(500).unwrap();
    let events = until(&mut m, is_misbehaved).await;
    let Some(Event::LogMisbehaved(e)) = events.last() else {
        unreachable!()
    };
    match &e.evidence {
        Misbehaviour::TimestampRegression { trusted: t, other } => {
            assert_eq!(t, &trusted);
            assert_eq!(other, &log.head());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.load(log.key().log_id()).unwrap().unwrap().trusted,
        trusted
    );
    m.shutdown().await;
}

/// `(start, end)` of every `get-entries` request, in order.
fn entries_asked(log: &TestLog) -> Vec<(u64, u64)> {
    let num = |path: &str, name: &str| -> u64 {
        let v = path.split(&format!("{name}=")).nth(1).unwrap();
        v.split('&').next().unwrap().parse().unwrap()
    };
    log.requests()
        .iter()
        .filter(|r| r.path.contains("get-entries"))
        .map(|r| (num(&r.path, "start"), num(&r.path, "end")))
        .collect()
}

fn small_body_client() -> ClientConfig {
    let mut c = fast_client();
    // 256 Navigli entries are about 1 MiB of JSON; a few dozen fit in 64 KiB.
    c.max_body = 64 << 10;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_entries_reply_over_the_body_limit_halves_the_batch() {
    let log = TestLog::start(Protocol::Rfc6962, 1024).await.unwrap();
    let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
        .batch_size(NonZeroU64::new(256).unwrap())
        .client_config(small_body_client())
        .spawn()
        .unwrap();
    let events = until(&mut m, |e| is_ok(e) || failing(e)).await;
    assert!(events.last().is_some_and(is_ok), "{events:#?}");
    assert_eq!(discovered(&events), EXPECTED);
    // A body over the limit is not retried as such: only halved.
    assert_eq!(m.stats().retries, 0);

    let asked = entries_asked(&log);
    let size = |(a, b): (u64, u64)| b - a + 1;
    // Each range of 256 is first asked in full (the batch size comes back after it).
    for start in [0, 256, 512, 768] {
        assert!(asked.contains(&(start, start + 255)), "{asked:?}");
    }
    let mut halvings = 0;
    for pair in asked.windows(2) {
        let (prev, next) = (pair[0], pair[1]);
        if next.0 == prev.0 {
            // Too large: the same start, half as many.
            assert_eq!(size(next), size(prev) / 2, "{asked:?}");
            halvings += 1;
        } else if next.0 % 256 != 0 {
            // Inside a range that was too large, the smaller batch is kept.
            assert_eq!(next.0, prev.1 + 1, "{asked:?}");
            assert_eq!(size(next), size(prev), "{asked:?}");
        }
    }
    assert!(halvings >= 4, "{asked:?}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_entry_over_the_body_limit_fails_the_log_naming_it() {
    let log = TestLog::start(Protocol::Rfc6962, 1024).await.unwrap();
    // Entry 500 alone is larger than the limit, as a huge precertificate would be.
    log.set_faults(Faults {
        large_entry: Some((500, 128 << 10)),
        ..Faults::default()
    });
    let mut client = Rfc6962Client::new("big", &log.url(), small_body_client()).unwrap();
    let e = client.get_entries(500, 500).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::BodyTooLarge {
                entries: Some((500, 500)),
                limit: 65_536,
                tile: None,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("entry 500 alone"), "{e}");

    let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
        .batch_size(NonZeroU64::new(256).unwrap())
        .client_config(small_body_client())
        .spawn()
        .unwrap();
    let events = until(&mut m, failing).await;
    assert!(
        events
            .last()
            .is_some_and(|e| failing_with(e, "entry 500 alone")),
        "{events:#?}"
    );
    // Everything before it was read and checked; nothing after it is skipped to.
    assert_eq!(discovered(&events), [66, 86, 163, 492]);
    assert_eq!(m.stats().entries, 500);
    // The next poll asks for entry 500 alone again, and fails again.
    let events = until(&mut m, failing).await;
    assert!(
        events
            .last()
            .is_some_and(|e| failing_with(e, "entry 500 alone"))
    );
    // The monitor's requests (the client's own came first).
    let asked = &entries_asked(&log)[1..];
    let first = asked.iter().position(|&r| r == (500, 500)).unwrap();
    assert!(asked[first..].iter().all(|&r| r == (500, 500)), "{asked:?}");
    assert!(asked[first..].len() >= 2, "{asked:?}");
    assert!(!asked.iter().any(|&(start, _)| start > 500), "{asked:?}");
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tile_over_the_body_limit_fails_naming_the_tile() {
    let log = TestLog::start(Protocol::StaticCt, 1024).await.unwrap();
    let mut config = fast_client();
    config.max_body = 4 << 10;
    let mut client = StaticCtClient::new("tiles", &log.url(), config.clone()).unwrap();
    let e = client.data_tile(1, 256).await.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::BodyTooLarge { tile: Some(t), entries: None, limit: 4096, .. } if t == "tile/data/001"
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("(tile tile/data/001)"), "{e}");
    // Not retried: a tile cannot be asked for in parts, and the same one is as large.
    let asked: Vec<_> = log
        .requests()
        .into_iter()
        .filter(|r| r.path == "/tile/data/001")
        .collect();
    assert_eq!(asked.len(), 1);

    let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
        .client_config(config)
        .spawn()
        .unwrap();
    let events = until(&mut m, failing).await;
    assert!(
        events
            .last()
            .is_some_and(|e| failing_with(e, "(tile tile/data/000)")),
        "{events:#?}"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_head_signed_later_is_a_rollback_and_stops_the_log() {
    let t0 = Timestamp::from_unix_secs(1_893_456_000);
    for protocol in BOTH {
        // To a smaller tree the log can still prove, to the empty tree, and to a
        // smaller tree it can no longer prove (no proof is needed: both heads are
        // signed).
        for (back_to, can_prove) in [(300, true), (0, true), (300, false)] {
            let clock = Arc::new(ManualClock::new(t0));
            let log = TestLog::start(protocol, 500).await.unwrap();
            log.set_clock(clock.clone());
            log.set_size(500).unwrap();
            let store = Arc::new(MemoryStateStore::default());
            let mut m = builder(&log, store.clone())
                .clock(clock.clone())
                .spawn()
                .unwrap();
            until(&mut m, is_ok).await;
            let trusted = log.head();
            clock.advance(Duration::from_secs(1));
            if can_prove {
                log.roll_back_head(back_to).unwrap();
            } else {
                log.set_size(back_to).unwrap();
            }
            let rolled = log.head();
            assert_eq!(rolled.tree_size, back_to);
            let events = until(&mut m, |e| is_misbehaved(e) || failing(e)).await;
            let last = events.last().unwrap();
            let Event::LogMisbehaved(mis) = last else {
                panic!("{protocol:?} back to {back_to}, can prove: {can_prove}: {events:?}")
            };
            assert_eq!(
                mis.evidence,
                Misbehaviour::Rollback {
                    trusted: trusted.clone(),
                    other: rolled
                },
                "{protocol:?} back to {back_to}, can prove: {can_prove}"
            );
            let sec = m.security_event(last).unwrap().unwrap();
            assert_eq!(sec.kind, EventKind::LogMisbehaviour);
            let size = |p: &str| sec.evidence(&format!("{p}_tree_size")).map(str::to_owned);
            assert_eq!(size("trusted"), Some("500".into()));
            assert_eq!(size("other"), Some(back_to.to_string()));
            // The task stops and the store keeps the trusted head and its leaves.
            let stop = until(&mut m, |e| matches!(e, Event::Health { .. })).await;
            assert!(
                matches!(
                    stop.last(),
                    Some(Event::Health { health: Health::Stopped { reason }, .. })
                        if reason == "log misbehaved: rollback"
                ),
                "{stop:?}"
            );
            let saved = store.load(log.key().log_id()).unwrap().unwrap();
            assert_eq!(saved.trusted, trusted);
            assert_eq!(saved.range.size(), 500);
            m.shutdown().await;
        }
    }
}

/// Runs a monitor on `store` that reads and confirms the first 500 entries, then
/// one that, with the log at 1,024 serving entry 746 in place of 747
/// (`Faults::wrong_entry`, a CDN or replica serving a wrong object), reads up to
/// 748 and is shut down before the root check at 1,024 (the alert for 1002 is
/// never handed over): the saved state holds the wrong leaf and the last
/// confirmed range (500). The fault stays set.
async fn poison_the_state(log: &TestLog, store: &dyn Fn() -> Arc<dyn StateStore>) {
    poison_the_state_at(log, store, 1024).await;
}

/// [`poison_the_state`] with the log grown to `size` (above 1002).
async fn poison_the_state_at(log: &TestLog, store: &dyn Fn() -> Arc<dyn StateStore>, size: u64) {
    let mut a = builder(log, store()).spawn().unwrap();
    until(&mut a, is_ok).await;
    a.shutdown().await;
    log.set_size(size).unwrap();
    log.set_faults(Faults {
        wrong_entry: Some(747),
        ..Faults::default()
    });
    let mut b = builder(log, store()).spawn().unwrap();
    let events = until(&mut b, |e| {
        matches!(e, Event::Discovered { index: 748, .. })
    })
    .await;
    b.shutdown().await;
    // The wrong entry hid 747 (static-ct: its `leaf_index` says 746, `Malformed`).
    assert_eq!(discovered(&events), [748], "{:?}", log.protocol());
    let saved = store().load(log.key().log_id()).unwrap().unwrap();
    assert_eq!(saved.trusted.tree_size, size);
    assert!((749..=1002).contains(&saved.range.size()), "{saved:?}");
}

/// The paths of the requests since the `since`-th that fetched entries.
fn entries_fetched(log: &TestLog, since: usize) -> Vec<String> {
    log.requests()[since..]
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| p.contains("get-entries") || p.starts_with("/tile/data/"))
        .collect()
}

/// The first fetch of entries from index 500.
fn fetches_500(path: &str) -> bool {
    path.contains("start=500&") || path == "/tile/data/001"
}

/// Review finding 4: a wrong entry saved before the root check no longer poisons
/// the state. The next monitor, with the log serving the right entries, fails the
/// root check over leaves read before the restart, reads again from the last
/// confirmed range (500), passes the check, stays healthy, and alerts on the
/// right entry 747 that the wrong one hid; 748 is delivered again (at least once
/// in this case). On the old code it reported `LogMisbehaved` and stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_entry_saved_before_the_root_check_is_read_again_after_a_restart() {
    for protocol in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let store =
            || -> Arc<dyn StateStore> { Arc::new(FileStateStore::new(dir.path()).unwrap()) };
        let log = TestLog::start(protocol, 500).await.unwrap();
        poison_the_state(&log, &store).await;
        log.set_faults(Faults::default());
        let since = log.requests().len();
        let mut c = builder(&log, store()).spawn().unwrap();
        let events = until(&mut c, |e| is_ok(e) || is_misbehaved(e)).await;
        assert!(is_ok(events.last().unwrap()), "{protocol:?}: {events:#?}");
        assert!(!events.iter().any(failing), "{protocol:?}: {events:#?}");
        // 1002 before the root check; 747 and 748 after reading again from 500
        // (1002 again is a duplicate within this run).
        assert_eq!(discovered(&events), [1002, 747, 748], "{protocol:?}");
        assert_eq!(c.stats().duplicates, 1);
        let fetched = entries_fetched(&log, since);
        assert!(
            !fetches_500(&fetched[0]) && fetched.iter().any(|p| fetches_500(p)),
            "{protocol:?}: {fetched:?}"
        );
        // Healthy at the next polls too (no event), and the saved range is the log's.
        assert!(quiet(&mut c).await.is_err());
        c.shutdown().await;
        let saved = store().load(log.key().log_id()).unwrap().unwrap();
        assert_eq!(saved.range.root(), log.head().root_hash);
        assert_eq!(saved.range.size(), 1024);
    }
}

/// The entry whose leaf completes the failed root check (the head's last) is
/// alerted on when it is read again: its alert, built before the check, was not
/// handed over, and its certificate must not count as seen (it was then taken for a
/// duplicate and never reported: a log could hide its last entry this way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entry_that_fails_the_root_check_is_alerted_on_when_read_again() {
    for protocol in BOTH {
        let dir = tempfile::tempdir().unwrap();
        let store =
            || -> Arc<dyn StateStore> { Arc::new(FileStateStore::new(dir.path()).unwrap()) };
        let log = TestLog::start(protocol, 500).await.unwrap();
        // 1002, a match, is the head's last entry.
        poison_the_state_at(&log, &store, 1003).await;
        log.set_faults(Faults::default());
        let mut c = builder(&log, store()).spawn().unwrap();
        let events = until(&mut c, |e| is_ok(e) || is_misbehaved(e)).await;
        assert!(is_ok(events.last().unwrap()), "{protocol:?}: {events:#?}");
        assert_eq!(discovered(&events), [747, 748, 1002], "{protocol:?}");
        assert_eq!(c.stats().duplicates, 0, "{protocol:?}");
        c.shutdown().await;
        let saved = store().load(log.key().log_id()).unwrap().unwrap();
        assert_eq!(saved.range.root(), log.head().root_hash);
    }
}

/// No regression: a log that serves a wrong entry to this run is caught, with
/// its signed head and the root of what it served as evidence; after a restart
/// over a poisoned state, a log that still serves the wrong entry is caught once
/// the entries from the confirmed range were read again in this run. (On the old
/// code the restarted monitor reported at once, without reading 500.. again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_entry_served_to_this_run_is_misbehaviour() {
    for protocol in BOTH {
        let root_mismatch = |events: &[Event]| match events.last() {
            Some(Event::LogMisbehaved(m)) => match &m.evidence {
                Misbehaviour::RootMismatch { sth, computed } => (sth.clone(), *computed),
                e => panic!("{protocol:?}: {e:?}"),
            },
            e => panic!("{protocol:?}: {e:?}"),
        };
        // One run: the wrong entry is read and checked in it.
        let log = TestLog::start(protocol, 1024).await.unwrap();
        log.set_faults(Faults {
            wrong_entry: Some(747),
            ..Faults::default()
        });
        let mut m = builder(&log, Arc::new(MemoryStateStore::default()))
            .spawn()
            .unwrap();
        let events = until(&mut m, |e| is_ok(e) || is_misbehaved(e)).await;
        let (sth, computed) = root_mismatch(&events);
        assert_eq!(sth, log.head());
        assert_ne!(computed, sth.root_hash);
        assert!(!discovered(&events).contains(&747));
        let stop = until(&mut m, |e| matches!(e, Event::Health { .. })).await;
        assert!(matches!(
            stop.last(),
            Some(Event::Health {
                health: Health::Stopped { .. },
                ..
            })
        ));
        m.shutdown().await;

        // Restarted over a poisoned state while the log still serves the wrong entry.
        let dir = tempfile::tempdir().unwrap();
        let store =
            || -> Arc<dyn StateStore> { Arc::new(FileStateStore::new(dir.path()).unwrap()) };
        let log = TestLog::start(protocol, 500).await.unwrap();
        poison_the_state(&log, &store).await;
        let since = log.requests().len();
        let mut c = builder(&log, store()).spawn().unwrap();
        let events = until(&mut c, |e| is_ok(e) || is_misbehaved(e)).await;
        let (again, again_computed) = root_mismatch(&events);
        assert_eq!((again, again_computed), (log.head(), computed));
        assert_eq!(discovered(&events), [1002, 748], "{protocol:?}");
        assert!(
            entries_fetched(&log, since).iter().any(|p| fetches_500(p)),
            "{protocol:?}"
        );
        c.shutdown().await;
        // Never past the failed check: the next restart reads again and reports again.
        let saved = store().load(log.key().log_id()).unwrap().unwrap();
        assert_eq!(saved.trusted, log.head());
        assert!(saved.range.size() < 1024, "{protocol:?}");
    }
}

/// The log signs 500 at t0 and re-signs it at t0 + 10 s, each seen by a monitor
/// on one store (restarted in between, so the first signing must survive a
/// save and a load). A head of 300 stamped at t0 + 5 s, between the two, is a
/// rollback proven by the first signing; one stamped at t0 − 5 s is an older
/// copy and reports nothing. (On the old code the first was an older copy too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_head_signed_between_two_signings_of_the_trusted_tree_is_a_rollback() {
    let t0_secs = 1_893_456_000;
    let t0 = Timestamp::from_unix_secs(t0_secs);
    for protocol in BOTH {
        for (at, rollback) in [(t0_secs + 5, true), (t0_secs - 5, false)] {
            let clock = Arc::new(ManualClock::new(t0));
            let log_clock = Arc::new(ManualClock::new(t0));
            let log = TestLog::start(protocol, 500).await.unwrap();
            log.set_clock(log_clock.clone());
            log.set_size(500).unwrap();
            let first = log.head();
            let store = Arc::new(MemoryStateStore::default());
            let run = || builder(&log, store.clone()).clock(clock.clone()).spawn();
            let mut m = run().unwrap();
            until(&mut m, is_ok).await;
            m.shutdown().await;
            clock.advance(Duration::from_secs(10));
            log_clock.advance(Duration::from_secs(10));
            log.set_size(500).unwrap();
            let mut m = run().unwrap();
            until(&mut m, is_ok).await;
            m.shutdown().await;
            let saved = store.load(log.key().log_id()).unwrap().unwrap();
            assert_eq!(saved.trusted, log.head(), "the re-signed head is trusted");
            log_clock.set(Timestamp::from_unix_secs(at));
            log.roll_back_head(300).unwrap();
            let rolled = log.head();
            let mut m = run().unwrap();
            let events = until(&mut m, |e| is_misbehaved(e) || is_ok(e) || failing(e)).await;
            let case = format!(
                "{protocol:?} stamped t0 {:+} s: {events:?}",
                at as i64 - t0_secs as i64
            );
            match events.last().unwrap() {
                Event::LogMisbehaved(mis) if rollback => assert_eq!(
                    mis.evidence,
                    Misbehaviour::Rollback {
                        trusted: first.clone(),
                        other: rolled
                    },
                    "{case}"
                ),
                e => assert!(!rollback && is_ok(e), "{case}"),
            }
            m.shutdown().await;
        }
    }
}
