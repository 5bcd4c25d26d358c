//! The bounded store shared by validators: quick_cache (S3-FIFO-style, sharded).

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_core_traits::Timestamp;
use quick_cache::{DefaultHashBuilder, Equivalent, Lifecycle, Weighter};

use crate::ValidatedToken;
use crate::error::Error;
use crate::stats::Counter;

/// Default longest life of an entry.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(60);
/// Default size above which tokens are validated but never cached.
pub const DEFAULT_MAX_CACHED_TOKEN_BYTES: usize = 8 * 1024;
/// Default cap on entries.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
/// Default cap on (estimated) bytes held by entries.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Fixed per-entry cost on top of the token bytes and the claims, in bytes (key,
/// entry, `Arc`, `ValidatedToken`, identity strings, quick_cache slot), measured
/// with a counting allocator (`benches/jwt_cache_memory.rs`).
pub(crate) const ENTRY_OVERHEAD_BYTES: u64 = 512;

/// Sizing of a [`TokenCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Longest life of an entry (it also dies at the token's `exp`). Default 60 s.
    pub max_ttl: Duration,
    /// Tokens longer than this are validated but not cached. Default 8 KiB.
    pub max_cached_token_bytes: usize,
    /// Hard cap on entries. Default 100 000.
    pub max_entries: usize,
    /// Hard cap on the estimated bytes of all entries. Default 256 MiB.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_ttl: DEFAULT_MAX_TTL,
            max_cached_token_bytes: DEFAULT_MAX_CACHED_TOKEN_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// The cache key: the token bytes themselves (so no collision is possible), the
/// policy fingerprint and the key-set epoch of the validator that verified it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CacheKey {
    pub(crate) epoch: u64,
    pub(crate) policy: [u8; 32],
    pub(crate) token: Box<[u8]>,
}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        KeyRef {
            epoch: self.epoch,
            policy: &self.policy,
            token: &self.token,
        }
        .hash(state);
    }
}

/// A borrowed key, so a hit allocates nothing.
pub(crate) struct KeyRef<'a> {
    pub(crate) epoch: u64,
    pub(crate) policy: &'a [u8; 32],
    pub(crate) token: &'a [u8],
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.epoch);
        state.write(self.policy);
        self.token.hash(state);
    }
}

impl Equivalent<CacheKey> for KeyRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        key.epoch == self.epoch && &key.policy == self.policy && &*key.token == self.token
    }
}

/// A cached success.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) token: Arc<ValidatedToken>,
    /// Served only while `now < cache_until` = min(verified_at + max_ttl, exp).
    pub(crate) cache_until: Timestamp,
}

/// Weighs an entry in units of `max_bytes / max_entries`, so one weight capacity
/// of `max_entries` units bounds both the entry count and the bytes.
#[derive(Clone)]
pub(crate) struct EntryWeighter {
    unit: u64,
}

impl EntryWeighter {
    pub(crate) fn bytes(key: &CacheKey, val: &Entry) -> u64 {
        key.token.len() as u64 + val.token.heap_estimate() + ENTRY_OVERHEAD_BYTES
    }
}

impl Weighter<CacheKey, Entry> for EntryWeighter {
    fn weight(&self, key: &CacheKey, val: &Entry) -> u64 {
        Self::bytes(key, val).div_ceil(self.unit).max(1)
    }
}

/// Counts evictions.
#[derive(Clone)]
pub(crate) struct EvictionCounter(Arc<Counter>);

impl Lifecycle<CacheKey, Entry> for EvictionCounter {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: CacheKey, _val: Entry) {
        self.0.add(1);
    }
}

pub(crate) type Store =
    quick_cache::sync::Cache<CacheKey, Entry, EntryWeighter, DefaultHashBuilder, EvictionCounter>;

/// A bounded cache of validation successes, shareable by several [`crate::Validator`]s
/// (entries of one never serve another unless policy and key-set epoch both match).
pub struct TokenCache {
    pub(crate) store: Store,
    pub(crate) config: CacheConfig,
    pub(crate) evictions: Arc<Counter>,
    /// Bumped by every invalidation: a miss that started before one does not insert.
    pub(crate) generation: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("config", &self.config)
            .field("len", &self.store.len())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache with the given bounds.
    pub fn new(config: CacheConfig) -> Result<Arc<Self>, Error> {
        if config.max_entries == 0 || config.max_bytes == 0 {
            return Err(Error::InvalidConfig(
                "max_entries and max_bytes must be positive",
            ));
        }
        let unit = (config.max_bytes / config.max_entries as u64).max(1);
        let evictions = Arc::new(Counter::default());
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(config.max_entries)
            .weight_capacity(config.max_entries as u64)
            .build()
            .map_err(|_| Error::InvalidConfig("cache options rejected"))?;
        let store = Store::with_options(
            options,
            EntryWeighter { unit },
            DefaultHashBuilder::default(),
            EvictionCounter(evictions.clone()),
        );
        Ok(Arc::new(TokenCache {
            store,
            config,
            evictions,
            generation: AtomicU64::new(0),
        }))
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// Drops every entry of the token `(iss, jti)`; the next use re-validates it
    /// (signature, claims and revocation) from scratch. Returns how many went.
    pub fn invalidate_token(&self, issuer: &str, jti: &str) -> usize {
        self.invalidate_where(|t| {
            t.identity().issuer == issuer && t.identity().jti.as_deref() == Some(jti)
        })
    }

    /// Drops every entry whose `sub` is `subject` (any issuer). Returns how many went.
    pub fn invalidate_subject(&self, subject: &str) -> usize {
        self.invalidate_where(|t| t.identity().subject.as_deref() == Some(subject))
    }

    /// Drops everything.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.store.clear();
    }

    fn invalidate_where(&self, pred: impl Fn(&ValidatedToken) -> bool) -> usize {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let before = self.store.len();
        self.store.retain(|_, v| !pred(&v.token));
        before.saturating_sub(self.store.len())
    }
}
