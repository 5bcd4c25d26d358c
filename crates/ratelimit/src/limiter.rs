//! [`Limiter`]: one async interface over the in-memory and the Redis limiter.

use std::future::Future;

use palisade_core_traits::Clock;

use crate::{Decision, Error, Key, KeyedLimiter};

/// A rate limiter that answers a [`Decision`] for `cost` units of `key`.
///
/// [`KeyedLimiter`] answers at once (its future is ready on the first poll and
/// allocates nothing); `RedisLimiter` (feature `redis`, keys `str`) waits for Redis.
/// Code written against this trait takes either, with the same decisions.
///
/// ```
/// use palisade_ratelimit::{KeyedLimiter, Limiter, Quota, nz};
///
/// // Generic over the backend: memory here, `RedisLimiter` (a `Limiter<str>`) alike.
/// async fn admit<K: ?Sized, L: Limiter<K>>(limiter: &L, key: &K) -> bool {
///     limiter.check(key, 1).await.is_ok_and(|d| d.allowed)
/// }
///
/// let limiter = KeyedLimiter::<&str>::new(Quota::per_second(nz!(1)));
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// assert!(rt.block_on(admit(&limiter, &"alice")));
/// assert!(!rt.block_on(admit(&limiter, &"alice")));
/// ```
pub trait Limiter<K: ?Sized>: Send + Sync {
    /// True when [`check_now`](Self::check_now) always answers for this limiter (it
    /// never waits): callers may then skip the future altogether. Asked once per
    /// limiter (a layer asks when it is built), so a limiter that picks its backend
    /// at start (memory or Redis) answers for the one it picked.
    fn answers_at_once(&self) -> bool {
        false
    }

    /// The decision without waiting, when the limiter can give it (`None`: await
    /// [`check`](Self::check)). Consumes like `check`.
    fn check_now(&self, key: &K, cost: u32) -> Option<Result<Decision, Error>> {
        let _ = (key, cost);
        None
    }

    /// Checks (and, if admitted, consumes) `cost` units for `key`. A refusal is a
    /// denied decision, never an error.
    fn check(&self, key: &K, cost: u32) -> impl Future<Output = Result<Decision, Error>> + Send;
}

/// Synchronous underneath: the future is `std::future::Ready`, nothing is allocated.
impl<K, C> Limiter<K> for KeyedLimiter<K, C>
where
    K: Key + Send + Sync,
    C: Clock + Send + Sync,
{
    fn answers_at_once(&self) -> bool {
        true
    }

    #[inline]
    fn check_now(&self, key: &K, cost: u32) -> Option<Result<Decision, Error>> {
        Some(KeyedLimiter::check(self, key, cost))
    }

    #[inline]
    fn check(&self, key: &K, cost: u32) -> impl Future<Output = Result<Decision, Error>> + Send {
        std::future::ready(KeyedLimiter::check(self, key, cost))
    }
}

#[cfg(feature = "redis")]
impl Limiter<str> for crate::RedisLimiter {
    fn check(&self, key: &str, cost: u32) -> impl Future<Output = Result<Decision, Error>> + Send {
        crate::RedisLimiter::check(self, key, cost)
    }
}
