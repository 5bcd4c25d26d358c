//! The in-memory blacklist: one process, no I/O.

use std::sync::Arc;

use palisade_core_traits::{
    Clock, RevocationCheck, RevocationStatus, SystemClock, Timestamp, TokenIdentity, TokenRevoker,
    async_trait,
};

use crate::model::{Local, Scope};
use crate::{Config, Error, Stats};

/// Builds a [`MemoryBlacklist`]: infallible setters, one fallible [`build`](Self::build).
#[derive(Debug)]
pub struct MemoryBlacklistBuilder {
    config: Config,
    clock: Arc<dyn Clock>,
}

impl Default for MemoryBlacklistBuilder {
    fn default() -> Self {
        MemoryBlacklistBuilder {
            config: Config::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl MemoryBlacklistBuilder {
    /// The revocation model (lifetimes, capacity).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The clock for lifetimes (default [`SystemClock`]; a `ManualClock` in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the configuration ([`Error::InvalidConfig`] names the field).
    pub fn build(self) -> Result<MemoryBlacklist, Error> {
        Ok(MemoryBlacklist {
            local: Local::new(self.config, self.clock)?,
        })
    }
}

/// Revocations held in this process only: for a single instance, or for tests.
/// Bounded by [`Config::capacity`]; entries are swept after their lifetime.
#[derive(Debug)]
pub struct MemoryBlacklist {
    local: Local,
}

impl MemoryBlacklist {
    /// A builder with the defaults (system clock, [`Config::default`]).
    pub fn builder() -> MemoryBlacklistBuilder {
        MemoryBlacklistBuilder::default()
    }

    /// Revokes one token by `(iss, jti)` until `exp + leeway + skew`. A token already
    /// past that point is refused by every validator, so nothing is stored.
    pub fn revoke_token(&self, token: &TokenIdentity) -> Result<(), Error> {
        if let Some(r) = self.local.config.token_record(token, self.local.now())? {
            self.local.apply(&r)?;
            self.local.stats.revocation("token");
            tracing::debug!("token revoked");
        }
        Ok(())
    }

    /// Revokes every token of `(issuer, subject)` with `iat <= issued_before` (whole
    /// seconds: a token minted in the same second is revoked too).
    pub fn revoke_user(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: Timestamp,
    ) -> Result<(), Error> {
        let scope = Scope::User {
            issuer: issuer.into(),
            subject: subject.into(),
        };
        self.revoke_scope(scope, issued_before)
    }

    /// Revokes every token of `issuer` with `iat <= issued_before`.
    pub fn revoke_issuer(&self, issuer: &str, issued_before: Timestamp) -> Result<(), Error> {
        self.revoke_scope(
            Scope::Issuer {
                issuer: issuer.into(),
            },
            issued_before,
        )
    }

    /// Revokes every token with `iat <= issued_before`, whoever issued it.
    pub fn revoke_all(&self, issued_before: Timestamp) -> Result<(), Error> {
        self.revoke_scope(Scope::Global, issued_before)
    }

    fn revoke_scope(&self, scope: Scope, t: Timestamp) -> Result<(), Error> {
        let name = scope.name();
        let r = self.local.config.mark_record(scope, t, self.local.now())?;
        self.local.apply(&r)?;
        self.local.stats.revocation(name);
        Ok(())
    }

    /// Whether `token` is revoked: `Revoked` or `NotRevoked`, from memory.
    pub fn check(&self, token: &TokenIdentity) -> RevocationStatus {
        let status = self.local.lookup(token);
        self.local.stats.check(status);
        status
    }

    /// Live entries (tokens and watermarks), including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.local.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes the entries whose lifetime has ended; returns how many.
    pub fn sweep(&self) -> usize {
        self.local.sweep()
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.local.stats.snapshot()
    }
}

impl RevocationCheck for MemoryBlacklist {
    fn check_local(&self, token: &TokenIdentity) -> Option<RevocationStatus> {
        Some(self.check(token))
    }
}

#[async_trait]
impl TokenRevoker for MemoryBlacklist {
    async fn revoke_token(&self, token: &TokenIdentity) -> Result<(), palisade_core_traits::Error> {
        Ok(MemoryBlacklist::revoke_token(self, token)?)
    }

    async fn revoke_user(
        &self,
        issuer: &str,
        subject: &str,
        issued_before: Timestamp,
    ) -> Result<(), palisade_core_traits::Error> {
        Ok(MemoryBlacklist::revoke_user(
            self,
            issuer,
            subject,
            issued_before,
        )?)
    }
}
