//! Scores a stream of synthetic logins and prints verdicts with their reasons.
//!
//! cargo run -p palisade-examples --bin threat-score-demo
#![allow(clippy::unwrap_used)] // a demo that unwraps stops loudly

use std::sync::Arc;

use palisade_core_traits::{LoginOutcome, ManualClock, Timestamp};
use palisade_threat_score::eval::{Actor, SynthConfig, generate};
use palisade_threat_score::{SourceKind, ThreatScorer, Verdict};

fn main() {
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_700_000_000)));
    let scorer = ThreatScorer::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let stream = generate(&SynthConfig::new(1, 200, 60, 5));
    let mut shown = 0;
    for l in &stream {
        clock.set(Timestamp::from_unix_secs(1_700_000_000 + l.at_secs));
        // Only the account's owner knows the password in this stream.
        let outcome = if l.actor == Actor::Legit {
            LoginOutcome::Success
        } else {
            LoginOutcome::Failure
        };
        let ctx = l.ctx.clone().with_login(outcome);
        let t = scorer.score_with(&ctx, &l.signals);
        if l.actor != Actor::Legit || (t.verdict > Verdict::Allow && shown < 5) {
            if l.actor == Actor::Legit {
                shown += 1;
            }
            println!(
                "{:?} login for {} from {} ({:?}): score {:.3}, confidence {:.2} -> {:?}",
                l.actor,
                ctx.user_id.as_deref().unwrap_or_default(),
                ctx.peer_ip,
                l.signals.geo.as_ref().and_then(|g| g.country.clone()),
                t.score,
                t.confidence,
                t.verdict
            );
            for c in &t.contributions {
                println!(
                    "    {:>24} {:>5.1}%  {}",
                    c.signal.name(),
                    c.share * 100.0,
                    c.reason
                );
            }
            if let Some(ev) = scorer.event(&ctx, &t) {
                println!("    event: {:?} {:?}", ev.kind, ev.severity);
            }
        }
        if l.actor == Actor::Legit {
            scorer.record(&ctx, &l.signals).unwrap();
        }
    }
    // A brute-force burst on one account.
    let victim = stream.iter().find(|l| l.actor == Actor::Legit).unwrap();
    let mut burst = victim.ctx.clone().with_login(LoginOutcome::Failure);
    burst.peer_ip = "203.0.113.66".parse().unwrap();
    for _ in 0..30 {
        scorer.record(&burst, &victim.signals).unwrap();
    }
    let t = scorer.score_with(&burst, &victim.signals);
    println!(
        "after 30 failures on {}: score {:.3} -> {:?}",
        burst.user_id.as_deref().unwrap_or_default(),
        t.score,
        t.verdict
    );
    for c in &t.contributions {
        println!(
            "    {:>24} {:>5.1}%  {}",
            c.signal.name(),
            c.share * 100.0,
            c.reason
        );
    }
    // The top failing sources of the last minute (heavy hitters, fixed memory).
    for kind in [SourceKind::Ip, SourceKind::Prefix, SourceKind::Asn] {
        for h in scorer.top_failing_sources(0, kind, 3) {
            println!(
                "top failing {kind:?}: {} with {} failures (over-estimate at most {})",
                h.source, h.count, h.error
            );
        }
    }
}
