//! `--demo`: a bounded, seeded traffic and attack scenario sent to the gateway itself
//! over HTTP, beside real traffic, so the dashboard is alive on first start. It stops
//! by itself after one pass (about three minutes).
//!
//! The gateway trusts loopback as its proxy in demo mode, so the scenario names its
//! clients with `X-Forwarded-For`: MaxMind's test addresses, which the bundled GeoIP
//! databases locate on the map.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

/// Home addresses of the demo users (London, Linköping, Milton WA, Boxford).
const HOMES: [(&str, &str); 3] = [
    ("alice", "81.2.69.142"),
    ("bob", "89.160.20.112"),
    ("carol", "216.160.83.56"),
];
/// Attackers: a brute-forcer, a credential stuffer, a traveller.
const BRUTE: &str = "2.125.160.216";
const STUFFER: &str = "12.81.92.1";
const FAR_AWAY: &str = "175.16.199.0";

/// A tiny deterministic generator (xorshift64*): the same scenario every run.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn login(
        &self,
        user: &str,
        password: &str,
        from: &str,
        key: Option<&str>,
    ) -> Option<Value> {
        let mut r = self
            .http
            .post(format!("{}/login", self.base))
            .header("x-forwarded-for", from)
            .header(
                "user-agent",
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
            )
            .json(&json!({"username": user, "password": password}));
        if let Some(k) = key {
            r = r.header("idempotency-key", k);
        }
        let resp = r.send().await.ok()?;
        resp.json().await.ok()
    }

    async fn api(&self, token: &str, from: &str) {
        let _ = self
            .http
            .get(format!("{}/api/me", self.base))
            .header("x-forwarded-for", from)
            .bearer_auth(token)
            .send()
            .await;
    }

    async fn logout(&self, token: &str, from: &str) {
        let _ = self
            .http
            .post(format!("{}/logout", self.base))
            .header("x-forwarded-for", from)
            .bearer_auth(token)
            .send()
            .await;
    }
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// The scenario, once.
pub async fn run(addr: SocketAddr) {
    let c = Client {
        http: reqwest::Client::new(),
        base: format!("http://{addr}"),
    };
    let mut rng = Seeded(0x5eed_7a11_5ade);
    tracing::info!("demo: ordinary traffic");
    // Four rounds: the per-account limit allows five logins a minute.
    for round in 0..4 {
        for (user, home) in HOMES {
            if let Some(t) = c
                .login(user, &format!("{user}-demo-password"), home, None)
                .await
                && let Some(token) = t["access_token"].as_str()
            {
                for _ in 0..1 + rng.below(3) {
                    c.api(token, home).await;
                }
                if round == 3 && user == "carol" {
                    c.logout(token, home).await;
                }
            }
            pause(300 + rng.below(700)).await;
        }
    }
    tracing::info!("demo: a brute force from one address");
    for i in 0..40 {
        let user = HOMES[(i % 3) as usize].0;
        c.login(user, &format!("guess-{}", rng.below(10_000)), BRUTE, None)
            .await;
        pause(150).await;
    }
    // The brute-forcer comes back once the playbooks blocked it: 403.
    pause(1_000).await;
    for _ in 0..3 {
        c.login("alice", "one-more-guess", BRUTE, None).await;
        pause(200).await;
    }
    tracing::info!("demo: credential stuffing across many accounts");
    for i in 0..40 {
        c.login(&format!("customer{i:03}"), "Summer2026!", STUFFER, None)
            .await;
        pause(120).await;
    }
    tracing::info!("demo: a wrong password for alice from the other side of the world");
    c.login("alice", "not-her-password", FAR_AWAY, None).await;
    pause(1_000).await;
    tracing::info!("demo: a client retrying one login with an Idempotency-Key");
    let retries: Vec<_> = (0..10)
        .map(|_| {
            c.login(
                "bob",
                "bob-demo-password",
                HOMES[1].1,
                Some("\"demo-retry\""),
            )
        })
        .collect();
    for r in retries {
        r.await;
    }
    tracing::info!("demo: done; the gateway keeps serving real traffic");
}

/// Starts the scenario in the background.
pub fn spawn(addr: SocketAddr) {
    tokio::spawn(run(addr));
}
