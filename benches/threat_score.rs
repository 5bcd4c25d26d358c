//! palisade-threat-score: score latency with every signal on, update throughput, memory.
//!
//! cargo bench -p palisade-benches --bench threat_score
//! The anchor is the cheapest familiarity rule a service could write instead: a
//! `HashMap<String, Vec<String>>` lookup answering "has this user used this IP before?".
//! Before criterion runs, a plain loop prints p50/p99 of single `score` calls, on the
//! global scale and with the per-user scale (`Config::user_scale`) on.
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use palisade_core_traits::{LoginOutcome, ManualClock, Timestamp};
use palisade_threat_score::synth::{Actor, SynthConfig, generate};
use palisade_threat_score::{
    BehaviourConfig, Config, LoginAttempt, SourceKind, ThreatScorer, UserScale,
};

fn trained(user_scale: Option<UserScale>) -> (Arc<ManualClock>, ThreatScorer, Vec<LoginAttempt>) {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    // Every signal on, including the behavioural one over three request features.
    let config = Config {
        behaviour: Some(BehaviourConfig {
            features: 3,
            ..BehaviourConfig::default()
        }),
        user_scale,
        ..Config::default()
    };
    let mut s = ThreatScorer::new(config, clock.clone()).unwrap();
    let features = |i: usize| {
        [
            20.0 + (i % 40) as f64,
            900.0 + (i % 7) as f64,
            (i % 30) as f64,
        ]
    };
    let stream = generate(&SynthConfig::new(1, 10_000, 60, 0));
    let mut probes = Vec::new();
    for (i, l) in stream
        .iter()
        .filter(|l| l.actor == Actor::Legit)
        .enumerate()
    {
        clock.set(Timestamp::from_unix_secs(1_700_000_000 + l.at_secs));
        s.record(
            &l.attempt.clone().with_numeric(features(i)),
            LoginOutcome::Success,
        );
        if probes.len() < 10_000 {
            // Every signal on: geo with a location (travel), device familiarity,
            // request features.
            let mut a = l
                .attempt
                .clone()
                .with_device_familiarity(0.5)
                .with_numeric(features(i + 3));
            if let Some(g) = a.geo.as_mut() {
                g.location = Some((52.5, 13.4));
            }
            probes.push(a);
        }
    }
    // Some failures so the velocity windows hold data.
    for a in probes.iter().take(2_000) {
        s.record(a, LoginOutcome::Failure);
    }
    (clock, s, probes)
}

fn percentiles(scale: &str, s: &ThreatScorer, probes: &[LoginAttempt]) {
    let mut ns: Vec<u128> = Vec::with_capacity(100_000);
    for i in 0..100_000 {
        let a = &probes[i % probes.len()];
        let t = Instant::now();
        black_box(s.score(a));
        ns.push(t.elapsed().as_nanos());
    }
    ns.sort_unstable();
    let p = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)] as f64 / 1_000.0;
    println!(
        "{scale}: score latency (all signals, 10k users): p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs",
        p(0.5),
        p(0.99),
        p(0.999)
    );
    println!(
        "{scale}: memory: {} users, {} bytes accounted = {:.0} bytes/user (=> {:.2} GiB per 1M users), velocity counters fixed {} bytes",
        s.users(),
        s.memory_bytes(),
        s.memory_bytes() as f64 / s.users() as f64,
        s.memory_bytes() as f64 / s.users() as f64 * 1e6 / (1u64 << 30) as f64,
        s.velocity_memory_bytes()
    );
}

/// Prints latency percentiles, memory and successful-login records per second.
fn report(scale: &str, s: &mut ThreatScorer, probes: &[LoginAttempt]) {
    percentiles(scale, s, probes);
    let t = Instant::now();
    let n = 100_000;
    for i in 0..n {
        s.record(&probes[i % probes.len()], LoginOutcome::Success);
    }
    println!(
        "{scale}: updates: {:.0} successful-login records/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
}

fn main() {
    let (_, mut scaled, scaled_probes) = trained(Some(UserScale::default()));
    report("user scale", &mut scaled, &scaled_probes);
    let (clock, mut s, probes) = trained(None);
    report("global scale", &mut s, &probes);
    let anchor: HashMap<String, Vec<String>> = probes
        .iter()
        .map(|a| (a.user.clone(), vec![a.ip.to_string()]))
        .collect();

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let mut g = c.benchmark_group("threat_score");
    let mut i = 0;
    g.bench_function("palisade/score_all_signals", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            black_box(s.score(&probes[i]).score)
        })
    });
    g.bench_function("palisade/score_all_signals_user_scale", |b| {
        b.iter(|| {
            i = (i + 1) % scaled_probes.len();
            black_box(scaled.score(&scaled_probes[i]).score)
        })
    });
    g.bench_function("anchor/hashmap_seen_ip", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            let a = &probes[i];
            let ip = a.ip.to_string();
            black_box(anchor.get(&a.user).is_some_and(|v| v.contains(&ip)))
        })
    });
    g.bench_function("palisade/record_failure", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            s.record(&probes[i], LoginOutcome::Failure)
        })
    });
    g.bench_function("palisade/top_failing_ips_10min", |b| {
        b.iter(|| black_box(s.top_failing_sources(1, SourceKind::Ip, 10).len()))
    });
    g.bench_function("palisade/record_success", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            clock.advance(Duration::from_millis(1));
            s.record(&probes[i], LoginOutcome::Success)
        })
    });
    g.finish();
    c.final_summary();
}
