//! A small axum API protected by palisade-jwt-cache, with revocation through
//! palisade-token-blacklist (`src/protected_api.rs` builds it). It serves on a
//! loopback port, calls itself with a few tokens, prints what each request got, and
//! exits.
//!
//! cargo run -p palisade-examples --bin protected-api

use std::sync::Arc;

use palisade_examples::protected_api::{Issuer, app};
use palisade_token_blacklist::MemoryBlacklist;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> Result<()> {
    let issuer = Issuer::generate()?;
    let blacklist = Arc::new(MemoryBlacklist::builder().build()?);
    let router = app(issuer.key_set()?, blacklist)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    println!("serving on {base}\n");

    let client = reqwest::Client::new();
    let alice = issuer.access_token("alice", "t-1", "read", 300)?;
    let root = issuer.access_token("root", "t-2", "read admin", 300)?;
    let expired = issuer.access_token("alice", "t-3", "read", -60)?;
    let requests: [(&str, &str, Option<&str>); 7] = [
        ("GET", "/me", None),
        ("GET", "/me", Some(&alice)),
        ("GET", "/me", Some(&expired)),
        ("GET", "/admin", Some(&alice)),
        ("GET", "/admin", Some(&root)),
        ("POST", "/logout", Some(&alice)),
        ("GET", "/me", Some(&alice)),
    ];
    for (method, path, token) in requests {
        let mut request = match method {
            "POST" => client.post(format!("{base}{path}")),
            _ => client.get(format!("{base}{path}")),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.text().await?;
        let who = match token {
            Some(t) if *t == alice => "alice's token",
            Some(t) if *t == root => "root's token (scope admin)",
            Some(_) => "an expired token",
            None => "no token",
        };
        println!("{method:<4} {path:<8} {who:<28} {status} {body:?} {challenge}");
    }
    server.abort();
    Ok(())
}
