//! The bounded store shared by validators: quick_cache (S3-FIFO-style, sharded).

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::mem::size_of;
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use palisade_core_traits::Timestamp;
use quick_cache::{DefaultHashBuilder, Equivalent, Lifecycle, Weighter};

use crate::ValidatedToken;
use crate::error::Error;
use crate::stats::Counter;
use crate::telemetry;
use crate::weight;

/// Default longest life of an entry.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(60);
/// Default size above which tokens are validated but never cached: 16 KiB, so an
/// ML-DSA-87 token (6.2 KB of signature alone) with several KB of claims is still
/// cached; memory stays bounded by `max_bytes`, which counts the token bytes.
pub const DEFAULT_MAX_CACHED_TOKEN_BYTES: usize = 16 * 1024;
/// Default cap on entries.
pub const DEFAULT_MAX_ENTRIES: NonZeroUsize = NonZeroUsize::new(100_000).expect("non-zero");
/// Default cap on the bytes held by the cache.
pub const DEFAULT_MAX_BYTES: NonZeroU64 = NonZeroU64::new(256 * 1024 * 1024).expect("non-zero");

/// What one quick_cache slot costs beside the entry's heap: its slab entry (our key
/// and value structs inline, with quick_cache's list links and state) and its
/// hash-table index, doubled because both grow by doubling.
pub(crate) const SLOT_BYTES: u64 = 2 * (size_of::<CacheKey>() + size_of::<Entry>() + 32 + 8) as u64;
/// quick_cache's ghost list (hashes of recently evicted keys, a whole slot each) holds
/// up to this share of the estimated entry count.
const GHOST_ALLOCATION: f64 = 0.5;
/// The least an entry is charged. It bounds the entry count by `max_bytes / 1 KiB`,
/// which sizes the ghost list and the slab slots quick_cache keeps after the count
/// falls from a peak (a real entry with an `exp` claim weighs more anyway).
const MIN_ENTRY_BYTES: u64 = 1024;

/// The sizing a [`TokenCache`] was built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheConfig {
    pub(crate) max_ttl: Duration,
    pub(crate) max_cached_token_bytes: usize,
    pub(crate) max_entries: NonZeroUsize,
    pub(crate) max_bytes: NonZeroU64,
    pub(crate) name: Cow<'static, str>,
}

/// Builds a [`TokenCache`]: every setter is infallible, [`build`](Self::build)
/// checks them all.
#[derive(Debug, Clone)]
#[must_use]
pub struct TokenCacheBuilder {
    config: CacheConfig,
}

impl TokenCacheBuilder {
    /// Longest life of an entry (it also dies at the token's `exp`). Default 60 s;
    /// must be at least one second.
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.config.max_ttl = ttl;
        self
    }

    /// Tokens longer than this are validated but not cached. Default 16 KiB.
    pub fn max_cached_token_bytes(mut self, bytes: NonZeroUsize) -> Self {
        self.config.max_cached_token_bytes = bytes.get();
        self
    }

    /// Hard cap on entries. Default 100 000.
    pub fn max_entries(mut self, entries: NonZeroUsize) -> Self {
        self.config.max_entries = entries;
        self
    }

    /// Hard cap on the bytes the cache holds: every entry weighed by what it owns
    /// (token, decoded claims, identity, key, slot), plus the cache's ghost list.
    /// Default 256 MiB. See `docs/jwt-cache.md` for what is and is not counted.
    pub fn max_bytes(mut self, bytes: NonZeroU64) -> Self {
        self.config.max_bytes = bytes;
        self
    }

    /// The `cache` label of this cache's gauges (feature `metrics`), so several
    /// caches in one process report apart. Default `"default"`.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.config.name = name.into();
        self
    }

    /// The cache. Fails ([`Error::InvalidConfig`] naming the field) if `max_ttl` is
    /// under a second or `max_bytes` is too small for the cache's own tables.
    pub fn build(self) -> Result<Arc<TokenCache>, Error> {
        TokenCache::with_config(self.config)
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

/// Weighs an entry in units of (byte budget / `max_entries`), rounded up, so one
/// weight capacity of `max_entries` units bounds both the entry count and the bytes.
#[derive(Clone)]
pub(crate) struct EntryWeighter {
    unit: u64,
}

impl EntryWeighter {
    /// Everything the entry owns: the token bytes of the key, the validated token
    /// (measured once when it was built) and its slot; at least [`MIN_ENTRY_BYTES`].
    pub(crate) fn bytes(key: &CacheKey, val: &Entry) -> u64 {
        (weight::block(key.token.len()) + val.token.heap_bytes + SLOT_BYTES).max(MIN_ENTRY_BYTES)
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
        telemetry::evicted();
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
    /// Bytes per weight unit (for the `bytes` gauge).
    unit: u64,
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
    /// A builder with the defaults ([`DEFAULT_MAX_TTL`], [`DEFAULT_MAX_ENTRIES`],
    /// [`DEFAULT_MAX_BYTES`], [`DEFAULT_MAX_CACHED_TOKEN_BYTES`]).
    pub fn builder() -> TokenCacheBuilder {
        TokenCacheBuilder {
            config: CacheConfig {
                max_ttl: DEFAULT_MAX_TTL,
                max_cached_token_bytes: DEFAULT_MAX_CACHED_TOKEN_BYTES,
                max_entries: DEFAULT_MAX_ENTRIES,
                max_bytes: DEFAULT_MAX_BYTES,
                name: Cow::Borrowed("default"),
            },
        }
    }

    fn with_config(config: CacheConfig) -> Result<Arc<Self>, Error> {
        if config.max_ttl < Duration::from_secs(1) {
            return Err(Error::config(
                "max_ttl",
                format!(
                    "{:?} is under one second (time claims are whole seconds): nothing would be served",
                    config.max_ttl
                ),
            ));
        }
        let max_bytes = config.max_bytes.get();
        let max_entries = config.max_entries.get() as u64;
        // The ghost list is sized from the estimated count; its slots come out of
        // max_bytes first. Each shard rounds its share of the weight capacity up by
        // less than one unit, and has at least 32 estimated entries: one more unit per
        // 32 estimated entries keeps that rounding inside the budget too.
        let estimated = (max_bytes / MIN_ENTRY_BYTES).clamp(1, max_entries);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small, positive
        let ghosts = (estimated as f64 * GHOST_ALLOCATION).ceil() as u64 + estimated / 64 + 1;
        let budget = max_bytes
            .checked_sub(ghosts * SLOT_BYTES)
            .filter(|b| *b > 0)
            .ok_or_else(|| {
                Error::config(
                    "max_bytes",
                    format!(
                        "{max_bytes} bytes is too small for the cache's own tables (at least {} needed)",
                        ghosts * SLOT_BYTES + 1
                    ),
                )
            })?;
        let unit = (budget / (max_entries + estimated / 32 + 1)).max(1);
        let evictions = Arc::new(Counter::default());
        #[allow(clippy::cast_possible_truncation)] // estimated <= max_entries: a usize
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(estimated as usize)
            .ghost_allocation(GHOST_ALLOCATION)
            .weight_capacity(max_entries)
            .build()
            .map_err(|e| {
                Error::config(
                    "max_entries",
                    format!("quick_cache refused the sizing: {e}"),
                )
            })?;
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
            unit,
        }))
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// The weighed bytes of the entries held (at most `max_bytes` less the ghost
    /// list; an entry is charged in whole units, so this errs high).
    pub fn weighed_bytes(&self) -> u64 {
        self.store.weight().saturating_mul(self.unit)
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
        telemetry::cache_size(self);
        tracing::debug!("jwt cache cleared");
    }

    fn invalidate_where(&self, pred: impl Fn(&ValidatedToken) -> bool) -> usize {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let before = self.store.len();
        self.store.retain(|_, v| !pred(&v.token));
        let dropped = before.saturating_sub(self.store.len());
        telemetry::cache_size(self);
        tracing::debug!(dropped, "jwt cache entries invalidated");
        dropped
    }
}
