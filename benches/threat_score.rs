//! palisade-threat-score: score latency with every signal on, update throughput, memory.
//!
//! cargo bench -p palisade-benches --bench threat_score
//! The anchor is the cheapest familiarity rule a service could write instead: a
//! `HashMap<String, Vec<String>>` lookup answering "has this user used this IP before?".
//! Before criterion runs, a plain loop prints p50/p99 of single `score` calls, on the
//! global scale and with the per-user scale (`Config::user_scale`) on; then the same
//! from two threads sharing one `Arc<ThreatScorer>` (both scoring; one scoring while
//! the other records), against the same scorer behind a `Mutex` (the anchor: what
//! sharing cost before every method took `&self`).
#![allow(clippy::unwrap_used)] // a benchmark that unwraps stops loudly, like a test

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::Criterion;
use palisade_core_traits::{LoginOutcome, ManualClock, RequestContext, Timestamp};
use palisade_threat_score::eval::{Actor, SynthConfig, generate};
use palisade_threat_score::{
    BehaviourConfig, Config, Signals, SourceKind, ThreatScorer, UserScale,
};

/// A login attempt: the request context and what the caller knows beside it.
type Probe = (RequestContext, Signals);

fn trained(user_scale: Option<UserScale>) -> (Arc<ManualClock>, ThreatScorer, Vec<Probe>) {
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
    let s = ThreatScorer::builder()
        .config(config)
        .clock(clock.clone())
        .build()
        .unwrap();
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
        let ok = l.ctx.clone().with_login(LoginOutcome::Success);
        s.record(&ok, &l.signals.clone().with_numeric(features(i)))
            .unwrap();
        if probes.len() < 10_000 {
            // Every signal on: geo with a location (travel), device familiarity,
            // request features.
            let mut signals = l
                .signals
                .clone()
                .with_device_familiarity(0.5)
                .with_numeric(features(i + 3));
            if let Some(g) = signals.geo.as_mut() {
                g.location = Some((52.5, 13.4));
            }
            probes.push((l.ctx.clone(), signals));
        }
    }
    // Some failures so the velocity windows hold data.
    for (ctx, signals) in probes.iter().take(2_000) {
        s.record(&ctx.clone().with_login(LoginOutcome::Failure), signals)
            .unwrap();
    }
    (clock, s, probes)
}

/// `n` timed `score` calls starting at probe `from`, in nanoseconds.
fn timed_scores(score: impl Fn(&Probe), probes: &[Probe], from: usize, n: usize) -> Vec<u128> {
    let mut ns: Vec<u128> = Vec::with_capacity(n);
    for i in 0..n {
        let a = &probes[(from + i) % probes.len()];
        let t = Instant::now();
        score(a);
        ns.push(t.elapsed().as_nanos());
    }
    ns
}

/// p50, p99 and p99.9 in µs.
fn quantiles(mut ns: Vec<u128>) -> [f64; 3] {
    ns.sort_unstable();
    let p = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)] as f64 / 1_000.0;
    [p(0.5), p(0.99), p(0.999)]
}

fn percentiles(scale: &str, s: &ThreatScorer, probes: &[Probe]) {
    let score = |(ctx, signals): &Probe| {
        black_box(s.score_with(ctx, signals));
    };
    let [p50, p99, p999] = quantiles(timed_scores(score, probes, 0, 100_000));
    println!(
        "{scale}: score latency (all signals, 10k users): p50 {p50:.2} µs, p99 {p99:.2} µs, p99.9 {p999:.2} µs",
    );
    let st = s.stats();
    println!(
        "{scale}: memory: {} users, {} bytes accounted = {:.0} bytes/user (=> {:.2} GiB per 1M users), velocity counters fixed {} bytes",
        st.users,
        st.memory_bytes,
        st.memory_bytes as f64 / st.users as f64,
        st.memory_bytes as f64 / st.users as f64 * 1e6 / (1u64 << 30) as f64,
        st.velocity_memory_bytes
    );
}

/// Two threads, each making 100,000 timed `score` calls on one shared scorer (or, with
/// `writer`, the second thread recording instead); prints the scoring latencies and the
/// calls per second of the whole run. `score` is either the lock-free scorer or the
/// same one behind a `Mutex`.
fn two_threads(
    name: &str,
    score: &(dyn Fn(&Probe) + Sync),
    record: &(dyn Fn(&Probe) + Sync),
    probes: &[Probe],
    writer: bool,
) {
    let n = 100_000;
    let t = Instant::now();
    let (a, b) = std::thread::scope(|sc| {
        let a = sc.spawn(|| timed_scores(score, probes, 0, n));
        let b = sc.spawn(|| {
            if writer {
                timed_scores(record, probes, 5_000, n)
            } else {
                timed_scores(score, probes, 5_000, n)
            }
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let secs = t.elapsed().as_secs_f64();
    let (what, scores) = if writer {
        ("1 scoring + 1 recording", a)
    } else {
        ("2 scoring", a.into_iter().chain(b).collect())
    };
    let [p50, p99, p999] = quantiles(scores);
    println!(
        "2 threads, {what}, {name}: score p50 {p50:.2} µs, p99 {p99:.2} µs, p99.9 {p999:.2} µs; {:.0} calls/s in all",
        2.0 * n as f64 / secs
    );
}

/// Prints latency percentiles, memory and successful-login records per second.
fn report(scale: &str, s: &ThreatScorer, probes: &[Probe]) {
    percentiles(scale, s, probes);
    let t = Instant::now();
    let n = 100_000;
    for i in 0..n {
        let (ctx, signals) = &probes[i % probes.len()];
        s.record(&ctx.clone().with_login(LoginOutcome::Success), signals)
            .unwrap();
    }
    println!(
        "{scale}: updates: {:.0} successful-login records/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
}

fn main() {
    let (_, scaled, scaled_probes) = trained(Some(UserScale::default()));
    report("user scale", &scaled, &scaled_probes);
    let (clock, s, probes) = trained(None);
    report("global scale", &s, &probes);

    // Two threads on one scorer: shared by reference, and behind a Mutex (the anchor).
    let record = |(ctx, signals): &Probe| {
        let outcome = if ctx.peer_ip.is_ipv4() && signals.numeric[0] > 40.0 {
            LoginOutcome::Failure
        } else {
            LoginOutcome::Success
        };
        s.record(&ctx.clone().with_login(outcome), signals).unwrap();
    };
    let score = |(ctx, signals): &Probe| {
        black_box(s.score_with(ctx, signals));
    };
    let locked = Mutex::new(());
    let score_locked = |(ctx, signals): &Probe| {
        let _g = locked.lock().unwrap();
        black_box(s.score_with(ctx, signals));
    };
    let record_locked = |p: &Probe| {
        let _g = locked.lock().unwrap();
        record(p);
    };
    two_threads("shared Arc", &score, &record, &probes, false);
    two_threads(
        "behind a Mutex",
        &score_locked,
        &record_locked,
        &probes,
        false,
    );
    two_threads("shared Arc", &score, &record, &probes, true);
    two_threads(
        "behind a Mutex",
        &score_locked,
        &record_locked,
        &probes,
        true,
    );

    let anchor: HashMap<String, Vec<String>> = probes
        .iter()
        .map(|(ctx, _)| {
            let user = ctx.user_id.clone().unwrap_or_default();
            (user, vec![ctx.peer_ip.to_string()])
        })
        .collect();

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    let mut g = c.benchmark_group("threat_score");
    let mut i = 0;
    g.bench_function("palisade/score_all_signals", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            let (ctx, signals) = &probes[i];
            black_box(s.score_with(ctx, signals).score)
        })
    });
    g.bench_function("palisade/score_all_signals_user_scale", |b| {
        b.iter(|| {
            i = (i + 1) % scaled_probes.len();
            let (ctx, signals) = &scaled_probes[i];
            black_box(scaled.score_with(ctx, signals).score)
        })
    });
    g.bench_function("anchor/hashmap_seen_ip", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            let (ctx, _) = &probes[i];
            let ip = ctx.peer_ip.to_string();
            let user = ctx.user_id.as_deref().unwrap_or_default();
            black_box(anchor.get(user).is_some_and(|v| v.contains(&ip)))
        })
    });
    g.bench_function("palisade/record_failure", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            let (ctx, signals) = &probes[i];
            s.record(&ctx.clone().with_login(LoginOutcome::Failure), signals)
                .unwrap()
        })
    });
    g.bench_function("palisade/top_failing_ips_10min", |b| {
        b.iter(|| black_box(s.top_failing_sources(1, SourceKind::Ip, 10).len()))
    });
    g.bench_function("palisade/record_success", |b| {
        b.iter(|| {
            i = (i + 1) % probes.len();
            clock.advance(Duration::from_millis(1));
            let (ctx, signals) = &probes[i];
            s.record(&ctx.clone().with_login(LoginOutcome::Success), signals)
                .unwrap()
        })
    });
    g.finish();
    c.final_summary();
}
