//! Rate limiting a loop of requests, in memory and then — when a Redis URL is given —
//! the same quota shared through Redis.
//!
//! cargo run -p palisade-examples --bin ratelimit-demo
//! cargo run -p palisade-examples --bin ratelimit-demo -- redis://127.0.0.1:6379/

use std::time::Duration;

use palisade_ratelimit::{
    Decision, FailurePolicy, KeyedLimiter, Policy, Quota, RedisLimiter, headers, nz,
};

fn show(i: usize, d: &Decision) {
    let verdict = if d.allowed { "allowed" } else { "DENIED " };
    let retry = headers::retry_after(d)
        .map(|s| format!("  Retry-After: {s}"))
        .unwrap_or_default();
    println!(
        "request {i:2}: {verdict}  RateLimit: {}{retry}",
        headers::ratelimit("login", d).expect("valid policy name")
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Burst of 5, refilled at 1 every 200 ms.
    let quota = Quota::new(nz!(5), nz!(5), Duration::from_secs(1))?;
    println!(
        "RateLimit-Policy: {}\n",
        headers::ratelimit_policy("login", &quota)?
    );

    println!("In memory, 8 requests at once, then one after 200 ms:");
    let limiter = KeyedLimiter::<String>::new(quota);
    let client = "203.0.113.9".to_string();
    for i in 0..8 {
        show(i, &limiter.check(&client, 1)?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    show(8, &limiter.check(&client, 1)?);
    println!("counters: {:?}", limiter.stats());

    let Some(url) = std::env::args().nth(1) else {
        println!("\n(Give a redis:// URL to run the same against Redis.)");
        return Ok(());
    };
    println!("\nOn Redis at {url}: two instances share one quota (per second and per minute):");
    let policies = || -> Result<Vec<Policy>, palisade_ratelimit::Error> {
        Ok(vec![
            Policy::new("sec", quota)?,
            Policy::new("min", Quota::per_minute(nz!(20)))?,
        ])
    };
    let a = RedisLimiter::builder(policies()?)
        .prefix("palisade-demo")
        .failure_policy(FailurePolicy::LocalShare { instances: nz!(2) })
        .connect(&url)
        .await?;
    let b = RedisLimiter::builder(policies()?)
        .prefix("palisade-demo")
        .connect(&url)
        .await?;
    let key = format!("demo-{}", std::process::id());
    for i in 0..8 {
        let instance = if i % 2 == 0 { &a } else { &b };
        show(i, &instance.check(&key, 1).await?);
    }
    println!("\ninstance a: {:?}\ninstance b: {:?}", a.stats(), b.stats());
    Ok(())
}
