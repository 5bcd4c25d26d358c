//! ct-watch: watches domains in Certificate Transparency logs and prints events.
//!
//! ```text
//! cargo run -p palisade-examples --bin ct-watch -- --local
//! cargo run -p palisade-examples --bin ct-watch -- \
//!     --log-list https://www.gstatic.com/ct/log_list/v3/log_list.json \
//!     --watch .example.com --state /var/lib/ct-watch
//! ```
//!
//! `--local` runs the bundled loopback test log (palisade-ct-monitor's `test-log`
//! feature: the real Navigli2025h2 entries, both protocols) in-process, so it works
//! offline; it watches two domains, authorizes one key, makes one log fork, and
//! exits. With `--log-list` (a file or an http(s) URL) it follows every usable log
//! from its current end (`--from-start` to read whole logs) until interrupted or
//! `--max-events` alerts were printed.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use palisade_ct_monitor::testlog::{Protocol, TestLog};
use palisade_ct_monitor::{
    Authorizer, Event, FileStateStore, Health, LogList, MemoryStateStore, Misbehaviour, Monitor,
    StateStore, Watchlist,
};

type Res<T> = Result<T, Box<dyn Error>>;

fn print(monitor: &Monitor, e: &Event) {
    match e {
        Event::Discovered {
            log,
            index,
            info,
            matches,
            ..
        } => {
            let what = if info.is_precert {
                "precertificate"
            } else {
                "certificate"
            };
            println!("DISCOVERED {what} {log} #{index}");
            for m in matches {
                println!(
                    "    watch {} matched {}",
                    m.item,
                    m.identifier.escape_debug()
                );
            }
        }
        Event::Malformed {
            log, index, reason, ..
        } => println!("MALFORMED {log} #{index}: {reason}"),
        Event::LogMisbehaved(m) => {
            let what = match &m.evidence {
                Misbehaviour::BadSignature { sth } => {
                    format!("bad signature on head {}", sth.tree_size)
                }
                Misbehaviour::Fork { trusted, other } => format!(
                    "fork: two signed heads of size {} with roots {} and {}",
                    trusted.tree_size,
                    hex::encode(trusted.root_hash),
                    hex::encode(other.root_hash)
                ),
                Misbehaviour::InconsistentTreeHeads { old, new, .. } => format!(
                    "heads {} and {} are not consistent",
                    old.tree_size, new.tree_size
                ),
                Misbehaviour::RootMismatch { sth, .. } => {
                    format!("entries do not hash to the root of head {}", sth.tree_size)
                }
                Misbehaviour::BadInclusionProof { leaf_index, .. } => {
                    format!("bad inclusion proof for entry {leaf_index}")
                }
                other => format!("{other:?}"),
            };
            println!("LOG MISBEHAVED {}: {what}", m.log);
        }
        Event::Health { log, health } => println!("health {log}: {health:?}"),
        Event::Backlog {
            log,
            verified,
            tree_size,
        } => println!("backlog {log}: {verified}/{tree_size}"),
        _ => println!("{e:?}"),
    }
    if let Ok(Some(sec)) = monitor.security_event(e) {
        println!(
            "    security event {} ({:?}, {:?})",
            sec.id, sec.kind, sec.severity
        );
    }
}

async fn local() -> Res<()> {
    let rfc = TestLog::start(Protocol::Rfc6962, 1024).await?;
    let tiled = TestLog::start(Protocol::StaticCt, 1024).await?;
    println!(
        "test logs: RFC 6962 at {}, static-ct at {}",
        rfc.url(),
        tiled.url()
    );
    let mut authorizer = Authorizer::new();
    // Our own key: entry 413's SubjectPublicKeyInfo hash (a herokuappdev.com name).
    let mut spki = [0u8; 32];
    hex::decode_to_slice(
        "4febbf3d615875f7b5209e78d5f17d966d0f742469ac7504779ba0c83a6801b3",
        &mut spki,
    )?;
    authorizer.allow_spki_hash(spki);
    let (mut rfc_log, mut tiled_log) = (rfc.log_config(), tiled.log_config());
    rfc_log.name = "local-rfc6962".into();
    tiled_log.name = "local-static-ct".into();
    let mut monitor = Monitor::builder()
        .log(rfc_log)
        .log(tiled_log)
        .watchlist(Watchlist::parse(".websrc.fr\n.herokuappdev.com\n")?)
        .authorizer(authorizer)
        .poll_interval(Duration::from_millis(100))
        .spawn()?;
    let mut caught_up = 0;
    while caught_up < 2 {
        let Some(e) = monitor.next_event().await else {
            break;
        };
        print(&monitor, &e);
        if matches!(
            e,
            Event::Health {
                health: Health::Ok,
                ..
            }
        ) {
            caught_up += 1;
        }
    }
    println!("both logs read; now the RFC 6962 log rewrites entry 3 and re-signs its head");
    rfc.rewrite_leaf(3);
    rfc.set_size(1024)?;
    while let Some(e) = monitor.next_event().await {
        print(&monitor, &e);
        if matches!(
            e,
            Event::Health {
                health: Health::Stopped { .. },
                ..
            }
        ) {
            break;
        }
    }
    monitor.shutdown().await;
    Ok(())
}

async fn remote(args: &[String]) -> Res<()> {
    let mut list_src = None;
    let mut watch = String::new();
    let mut state = None;
    let mut from_start = false;
    let mut max_events = usize::MAX;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--log-list" => list_src = it.next().cloned(),
            "--watch" => {
                watch.push_str(it.next().ok_or("--watch needs an item")?);
                watch.push('\n');
            }
            "--state" => state = it.next().cloned(),
            "--from-start" => from_start = true,
            "--max-events" => {
                max_events = it.next().ok_or("--max-events needs a number")?.parse()?
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let src = list_src.ok_or("--log-list (file or URL) or --local is required")?;
    let bytes = if src.starts_with("http://") || src.starts_with("https://") {
        reqwest::get(&src)
            .await?
            .error_for_status()?
            .bytes()
            .await?
            .to_vec()
    } else {
        std::fs::read(&src)?
    };
    let list = LogList::from_json(&bytes)?;
    for p in &list.problems {
        eprintln!("log list: skipped {p}");
    }
    let store: Arc<dyn StateStore> = match state {
        Some(dir) => Arc::new(FileStateStore::new(dir)?),
        None => Arc::new(MemoryStateStore::default()),
    };
    let mut monitor = Monitor::builder()
        .log_list(&list)
        .watchlist(Watchlist::parse(&watch)?)
        .state_store(store)
        .start_at_end(!from_start)
        .spawn()?;
    let mut alerts = 0;
    while let Some(e) = monitor.next_event().await {
        print(&monitor, &e);
        if matches!(e, Event::Discovered { .. } | Event::Malformed { .. }) {
            alerts += 1;
            if alerts >= max_events {
                break;
            }
        }
    }
    monitor.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--local") {
        local().await
    } else {
        remote(&args).await
    }
}
