//! palisade-playbooks: `evaluate` latency (p50/p99) with 100 playbooks, events/s on one
//! core, a flood of 1M events from 10K addresses (actions per distinct target), and
//! bytes per active decision (counting allocator), and event-to-executor-call latency
//! (from the event's arrival to the `IpBlocker::block_ip` call; anchor: the same
//! boxed async call made directly). The anchor of `evaluate` is the least any
//! responder must do: a `HashMap<IpAddr, expiry>` check-and-insert per event, no
//! matching, allowlist, cool-down, budget or explanation. Prints tables.
//!
//! cargo bench -p palisade-benches --bench playbooks
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::alloc::System;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cap::Cap;
use palisade_core_traits::{
    Error as ActionError, EventId, EventKind, IpBlocker, SecurityEvent, Severity, Subject,
    Timestamp, async_trait,
};
use palisade_playbooks::{ActionKind, Definition, Engine, Executor, Target};

/// Notes the instant of each call: where the event-to-executor latency ends.
#[derive(Debug, Default)]
struct Stamp(Mutex<Option<Instant>>);

#[async_trait]
impl IpBlocker for Stamp {
    async fn block_ip(&self, ip: IpAddr, d: Duration, _: &str) -> Result<(), ActionError> {
        *self.0.lock().unwrap() = Some(Instant::now());
        black_box((ip, d));
        Ok(())
    }
    async fn unblock_ip(&self, _: IpAddr) -> Result<(), ActionError> {
        Ok(())
    }
}

/// Event arrival → `block_ip` called, through `evaluate` and `Executor::execute`, for
/// `n` distinct addresses (each one a new block); anchor: `block_ip` called directly.
fn event_to_executor(n: u32) -> (Vec<u64>, Vec<u64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let stamp = Arc::new(Stamp::default());
    let exec = Executor::builder()
        .ip_blocker(stamp.clone())
        .build()
        .unwrap();
    let blocker: Arc<dyn IpBlocker> = stamp.clone();
    let mut engine = Engine::new(hundred_playbooks(u32::MAX));
    let t0 = Timestamp::from_unix_secs(1_800_000_000);
    let events: Vec<SecurityEvent> = (0..n).map(|i| event(i, n)).collect();
    let (mut ours, mut anchor) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for (i, ev) in events.iter().enumerate() {
            let now = t0.saturating_add(Duration::from_micros(i as u64));
            let arrived = Instant::now();
            let plan = engine.evaluate(ev, now);
            black_box(exec.execute(&plan).await);
            let called = stamp.0.lock().unwrap().take().unwrap();
            ours.push(called.duration_since(arrived).as_nanos() as u64);

            let Subject::Ip { ip } = ev.subject else {
                unreachable!()
            };
            let arrived = Instant::now();
            blocker
                .block_ip(ip, Duration::from_secs(900), "anchor")
                .await
                .unwrap();
            let called = stamp.0.lock().unwrap().take().unwrap();
            anchor.push(called.duration_since(arrived).as_nanos() as u64);
        }
    });
    ours.sort_unstable();
    anchor.sort_unstable();
    (ours, anchor)
}

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const KINDS: [&str; 10] = [
    "credential_stuffing",
    "password_spray",
    "account_takeover",
    "anomalous_login",
    "impossible_travel",
    "rate_limit_exceeded",
    "token_misuse",
    "unauthorized_certificate",
    "log_misbehaviour",
    "device_anomaly",
];

/// 100 playbooks; only the first matches a high-severity brute force about an address.
fn hundred_playbooks(budget: u32) -> Definition {
    let mut src = format!(
        "[engine]\nmax_actions_per_minute = {budget}\n[allowlist]\nnetworks = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n"
    );
    src.push_str(
        "[[playbook]]\nname = \"bf\"\nkinds = [\"brute_force\"]\nsubject = \"ip\"\nmin_severity = \"high\"\ncooldown = \"5m\"\n\
         [[playbook.action]]\ntype = \"block_ip\"\nduration = \"15m\"\nescalation = { factor = 2, max = \"1d\", decay_after = \"7d\" }\n\
         [[playbook.action]]\ntype = \"notify\"\n",
    );
    for i in 1..100 {
        let kind = KINDS[i % KINDS.len()];
        let subject = if kind.contains("takeover")
            || kind.contains("login")
            || kind.contains("travel")
            || kind.contains("device")
        {
            "user"
        } else {
            "ip"
        };
        let action = if subject == "user" {
            "type = \"require_step_up\"\nvalid_for = \"1h\""
        } else {
            "type = \"block_ip\"\nduration = \"1h\""
        };
        write!(
            src,
            "[[playbook]]\nname = \"p{i}\"\nkinds = [\"{kind}\"]\nsubject = \"{subject}\"\nmin_severity = \"medium\"\ncooldown = \"10m\"\n[[playbook.action]]\n{action}\n"
        )
        .unwrap();
    }
    let def = Definition::from_toml("bench", &src).unwrap();
    assert_eq!(def.playbooks.len(), 100);
    def
}

fn event(i: u32, addrs: u32) -> SecurityEvent {
    let a = i % addrs;
    let ip = IpAddr::from([198, 18, (a >> 8) as u8, a as u8]);
    SecurityEvent::new(
        EventId::new(format!("e{i}")).unwrap(),
        Timestamp::from_unix_secs(1_800_000_000),
        EventKind::BruteForce,
        Severity::High,
        Subject::Ip { ip },
        "bench",
    )
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    const N: u32 = 1_000_000;
    const ADDRS: u32 = 10_000;
    let t0 = Timestamp::from_unix_secs(1_800_000_000);
    // Events are built up front so only evaluation is timed.
    let events: Vec<SecurityEvent> = (0..N).map(|i| event(i, ADDRS)).collect();

    println!(
        "| measure (1M events, 10K addresses, 100 playbooks) | palisade | anchor (HashMap check) | ratio |"
    );
    println!("|---|---:|---:|---:|");
    let mut engine = Engine::new(hundred_playbooks(1_000_000));
    let mut lat = Vec::with_capacity(N as usize);
    // Split: events that created decisions (1 % here) and those fully suppressed.
    let (mut lat_new, mut lat_dup) = (Vec::new(), Vec::with_capacity(N as usize));
    let mut actions: HashMap<(ActionKind, Target), u32> = HashMap::new();
    let start = Instant::now();
    for (i, ev) in events.iter().enumerate() {
        let now = t0.saturating_add(Duration::from_micros(i as u64));
        let s = Instant::now();
        let plan = engine.evaluate(ev, now);
        let ns = s.elapsed().as_nanos() as u64;
        lat.push(ns);
        if plan.steps.iter().any(|s| s.decision.is_some()) {
            lat_new.push(ns);
        } else {
            lat_dup.push(ns);
        }
        for step in plan.steps.iter().filter(|s| s.decision.is_some()) {
            *actions
                .entry((step.action.kind(), step.target.clone()))
                .or_default() += 1;
        }
    }
    let ours_total = start.elapsed();

    let mut anchor: HashMap<IpAddr, Timestamp> = HashMap::new();
    let mut alat = Vec::with_capacity(N as usize);
    let start = Instant::now();
    for (i, ev) in events.iter().enumerate() {
        let now = t0.saturating_add(Duration::from_micros(i as u64));
        let s = Instant::now();
        if let Subject::Ip { ip } = &ev.subject {
            let until = anchor.entry(*ip).or_insert(Timestamp::UNIX_EPOCH);
            if *until <= now {
                *until = now.saturating_add(Duration::from_secs(900));
                black_box(ip);
            }
        }
        alat.push(s.elapsed().as_nanos() as u64);
    }
    let anchor_total = start.elapsed();
    lat.sort_unstable();
    alat.sort_unstable();
    lat_new.sort_unstable();
    lat_dup.sort_unstable();
    for (name, p) in [
        ("evaluate p50 (ns)", 0.5),
        ("evaluate p99 (ns)", 0.99),
        ("evaluate p99.9 (ns)", 0.999),
    ] {
        let (o, a) = (percentile(&lat, p), percentile(&alat, p));
        println!("| {name} | {o} | {a} | {:.1} |", o as f64 / a.max(1) as f64);
    }
    for (name, v) in [
        ("events creating decisions", &lat_new),
        ("suppressed events", &lat_dup),
    ] {
        println!(
            "| evaluate p50 / p99 (ns), {} {name} | {} / {} | | |",
            v.len(),
            percentile(v, 0.5),
            percentile(v, 0.99)
        );
    }
    let (o, a) = (
        f64::from(N) / ours_total.as_secs_f64(),
        f64::from(N) / anchor_total.as_secs_f64(),
    );
    println!(
        "| events/s, one core (incl. timer) | {o:.0} | {a:.0} | {:.2} |",
        o / a
    );
    // Throughput without the per-call timer: a fresh engine (and map), the same events.
    let mut engine2 = Engine::new(hundred_playbooks(1_000_000));
    let start = Instant::now();
    for (i, ev) in events.iter().enumerate() {
        let now = t0.saturating_add(Duration::from_micros(i as u64));
        black_box(engine2.evaluate(ev, now));
    }
    let ours_tp = f64::from(N) / start.elapsed().as_secs_f64();
    let mut anchor2: HashMap<IpAddr, Timestamp> = HashMap::new();
    let start = Instant::now();
    for (i, ev) in events.iter().enumerate() {
        let now = t0.saturating_add(Duration::from_micros(i as u64));
        if let Subject::Ip { ip } = &ev.subject {
            let until = anchor2.entry(*ip).or_insert(Timestamp::UNIX_EPOCH);
            if *until <= now {
                *until = now.saturating_add(Duration::from_secs(900));
                black_box(ip);
            }
        }
    }
    let anchor_tp = f64::from(N) / start.elapsed().as_secs_f64();
    println!(
        "| events/s, one core (no per-call timer) | {ours_tp:.0} | {anchor_tp:.0} | {:.2} |",
        ours_tp / anchor_tp
    );
    let blocks: Vec<u32> = actions
        .iter()
        .filter(|((k, _), _)| *k == ActionKind::BlockIp)
        .map(|(_, n)| *n)
        .collect();
    println!(
        "| distinct blocked targets / block actions per target (min–max) | {} / {}–{} | {} / 1–1 | |",
        blocks.len(),
        blocks.iter().min().unwrap(),
        blocks.iter().max().unwrap(),
        anchor.len()
    );
    println!(
        "| active decisions after the flood | {} | | |",
        engine.active_count()
    );

    // The same flood under the default-sized budget: what a flood is allowed to do.
    let mut engine = Engine::new(hundred_playbooks(120));
    let (mut blocks, mut notices) = (0usize, 0usize);
    for (i, ev) in events.iter().enumerate() {
        let now = t0.saturating_add(Duration::from_micros(i as u64));
        for s in engine.evaluate(ev, now).steps.iter() {
            match (s.decision, s.action.kind()) {
                (Some(_), ActionKind::BlockIp) => blocks += 1,
                (Some(_), ActionKind::Notify) => notices += 1,
                _ => {}
            }
        }
    }
    // Budgets are per action kind, and high-severity notifications are never budgeted
    // (one per distinct address here: de-duplicated, not silenced).
    println!(
        "| blocks / high-severity notifications issued with budget 120/min per kind (1M events in 1 s) | {blocks} / {notices} | | |"
    );

    println!();
    let (ours, anchor) = event_to_executor(20_000);
    println!(
        "| event → executor call (20K new blocks) | palisade (evaluate + execute) | anchor (direct block_ip call) | ratio |"
    );
    println!("|---|---:|---:|---:|");
    for (name, p) in [("p50 (ns)", 0.5), ("p99 (ns)", 0.99), ("p99.9 (ns)", 0.999)] {
        let (o, a) = (percentile(&ours, p), percentile(&anchor, p));
        println!("| {name} | {o} | {a} | {:.1} |", o as f64 / a.max(1) as f64);
    }

    println!();
    println!(
        "| active decisions | bytes per decision (engine state: decision, expiry index, offence, cool-down, budget) |"
    );
    println!("|---:|---:|");
    for n in [10_000u32, 100_000] {
        let before = ALLOCATOR.allocated();
        let mut engine = Engine::new(hundred_playbooks(u32::MAX));
        let base = ALLOCATOR.allocated() - before;
        for i in 0..n {
            let ev = event(i, n);
            let now = t0.saturating_add(Duration::from_micros(u64::from(i)));
            black_box(engine.evaluate(&ev, now));
        }
        let used = ALLOCATOR.allocated() - before - base;
        let active = engine.active_count();
        println!("| {active} | {:.0} |", used as f64 / active as f64);
    }
}
