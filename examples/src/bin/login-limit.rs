//! `POST /login` rate-limited per client address and per account
//! (`src/login_limit.rs` builds it). Serves on a loopback port, tries one account
//! five times, prints each answer, and exits.
//!
//! cargo run -p palisade-examples --bin login-limit

use std::net::SocketAddr;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let app = palisade_examples::login_limit::app()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/login", listener.local_addr()?);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    println!("serving on {url}\n");
    let client = reqwest::Client::new();
    for attempt in 1..=5 {
        let res = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("username=alice&password=guess")
            .send()
            .await?;
        let field = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        let (policy, retry) = (field("ratelimit-policy"), field("retry-after"));
        println!(
            "attempt {attempt}: {} (RateLimit-Policy: {policy}, Retry-After: {retry})",
            res.status()
        );
    }
    server.abort();
    Ok(())
}
