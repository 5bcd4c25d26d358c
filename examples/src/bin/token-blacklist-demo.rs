//! Revoke a token on one instance and see it refused on another.
//!
//! cargo run -p palisade-examples --bin token-blacklist-demo -- redis://127.0.0.1:6379/
//! Without a URL, one in-memory instance shows the same calls (nothing is shared).

use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core_traits::{
    Clock, RevocationCheck, RevocationStatus, SystemClock, TokenIdentity, TokenRevoker,
};
use palisade_token_blacklist::{FailurePolicy, MemoryBlacklist, RedisBlacklist};

fn token(jti: &str) -> TokenIdentity {
    let now = SystemClock.now().as_unix_secs();
    TokenIdentity::new("https://idp.example")
        .with_subject("alice")
        .with_jti(jti)
        .with_issued_at(now)
        .with_expires_at(now + 900)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(url) = std::env::args().nth(1) else {
        let bl = Arc::new(MemoryBlacklist::builder().build()?);
        // The same object seen through the core-traits contracts (what jwt-cache and
        // playbooks hold).
        let check: Arc<dyn RevocationCheck> = bl.clone();
        let revoker: Arc<dyn TokenRevoker> = bl.clone();
        let t = token("demo-1");
        println!("before: {:?}", check.check_local(&t));
        revoker.revoke_token(&t).await?;
        println!("after revoke_token: {:?}", check.check_local(&t));
        println!("(in memory: pass a redis:// URL to share revocations between instances)");
        return Ok(());
    };
    let a = RedisBlacklist::builder().connect(&url).await?;
    let b = RedisBlacklist::builder().connect(&url).await?;
    let jti = format!("demo-{}", SystemClock.now().as_unix_nanos());
    let t = token(&jti);
    println!(
        "instance B before: {:?}",
        b.check(&t, FailurePolicy::Closed)
    );
    a.revoke_token(&t).await?;
    let revoked_at = Instant::now();
    while b.check(&t, FailurePolicy::Closed) != RevocationStatus::Revoked {
        if revoked_at.elapsed() > Duration::from_secs(5) {
            return Err("instance B did not see the revocation within 5 s".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "revoked on instance A; instance B refuses it {:?} after A's revoke() returned",
        revoked_at.elapsed()
    );
    println!("instance B stats: {:?}", b.stats());
    Ok(())
}
