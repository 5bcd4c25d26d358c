//! Detection against re-authentication on the seeded synthetic generator.
#![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

use palisade_threat_score::synth::{Actor, SynthConfig, evaluate, generate, share_at_or_above};
use palisade_threat_score::{Config, ThreatScorer};

#[test]
fn synthetic_detection_vs_reauthentication() {
    let cfg = SynthConfig {
        seed: 7,
        users: 300,
        days: 90,
        attacks: 300,
    };
    let stream = generate(&cfg);
    assert_eq!(
        stream.iter().filter(|l| l.actor == Actor::Targeted).count(),
        300
    );
    let e = evaluate(&stream, 20, |clock| {
        ThreatScorer::new(Config::default(), clock).unwrap()
    });
    println!("legit logins scored: {}", e.legit.len());
    for t in [0.5, 0.7, 0.9] {
        println!(
            "t={t}: legit {:.3} naive {:.3} vpn {:.3} targeted {:.3}",
            share_at_or_above(&e.legit, t),
            share_at_or_above(&e.naive, t),
            share_at_or_above(&e.vpn, t),
            share_at_or_above(&e.targeted, t)
        );
    }
    let mut reauth = Vec::new();
    for (name, a) in [
        ("naive", &e.naive),
        ("vpn", &e.vpn),
        ("targeted", &e.targeted),
    ] {
        let (t, r) = e.reauth_at_detection(a, 0.99);
        println!("{name}: 99% detected at t={t:.4}, legit re-auth {r:.3}");
        reauth.push(r);
    }
    // Naive attackers: 99% caught with at most 10% of owners' logins re-authenticating.
    assert!(reauth[0] <= 0.10, "{reauth:?}");
    // Stronger attackers cost more re-authentication (the model's known limit).
    assert!(reauth[0] < reauth[1] && reauth[1] < reauth[2], "{reauth:?}");
    // At the default thresholds almost no owner login is stepped up.
    assert!(share_at_or_above(&e.legit, 0.7) <= 0.01);
    assert!(share_at_or_above(&e.naive, 0.5) >= 0.75);
}

#[test]
fn generator_is_seeded() {
    let cfg = SynthConfig {
        seed: 3,
        users: 20,
        days: 30,
        attacks: 5,
    };
    assert_eq!(generate(&cfg), generate(&cfg));
    assert_ne!(generate(&cfg), generate(&SynthConfig { seed: 4, ..cfg }));
}
