//! [`Quota`], [`Decision`] and the GCRA arithmetic both backends share.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::Error;

/// Emission intervals are whole microseconds, so the in-memory limiter (nanoseconds)
/// and the Redis script (microseconds) compute exactly the same decisions.
const MICRO: u64 = 1_000;
/// The longest burst window we accept (burst × interval): 100 years. Keeps every
/// time in the Redis script below 2^53 µs, where Lua's doubles are exact integers.
const MAX_TAU_NANOS: u64 = 100 * 365 * 24 * 3600 * 1_000_000_000;

/// `period_ns / rate` rounded up to a whole microsecond, and at least one; `u64::MAX`
/// where that does not fit (a period within a microsecond of `u64::MAX` ns, which
/// [`Quota::new`] then refuses as longer than 100 years: it wrapped to a tiny interval).
const fn interval_nanos(period_ns: u64, rate: NonZeroU32) -> u64 {
    let interval = period_ns
        .div_ceil(rate.get() as u64 * MICRO)
        .saturating_mul(MICRO);
    if interval < MICRO { MICRO } else { interval }
}

/// A non-zero integer from a constant, checked at compile time: `nz!(10)` is a
/// [`NonZeroU32`] (or any `NonZero<T>` the context asks for), and `nz!(0)` does not
/// compile. For a value known only at run time use `NonZeroU32::new(n)`.
///
/// ```
/// use palisade_ratelimit::{Quota, nz};
/// let q = Quota::per_second(nz!(5));
/// assert_eq!(q.burst(), 5);
/// ```
///
/// ```compile_fail
/// let zero: std::num::NonZeroU32 = palisade_ratelimit::nz!(0);
/// ```
#[macro_export]
macro_rules! nz {
    ($n:expr) => {
        const { ::core::num::NonZero::new($n).expect("nz!: zero is not allowed here") }
    };
}

/// How much a key may do: a burst, refilled at `rate` per `period`.
///
/// A quota with burst `b` and rate `r` per `p` admits **at most `b + r·w/p` units of
/// cost in any window of length `w`**, and a request arriving when a unit has been
/// refilled is admitted. The refill interval `p / r` is rounded *up* to a whole
/// microsecond, so the real rate is never above the one asked for.
///
/// Burst and rate are [`NonZeroU32`]: write literals with [`nz!`](crate::nz), which
/// refuses zero at compile time.
///
/// ```
/// use palisade_ratelimit::{Quota, nz};
/// use std::time::Duration;
///
/// let q = Quota::new(nz!(10), nz!(5), Duration::from_secs(1)).unwrap(); // burst 10, 5/s
/// assert_eq!(q.burst(), 10);
/// assert_eq!(q.emission_interval(), Duration::from_millis(200));
/// assert!(Quota::new(nz!(10), nz!(5), Duration::ZERO).is_err());
/// // Rate and burst from one number, usable in a `const`:
/// const LOGIN: Quota = Quota::per_minute(nz!(10));
/// assert_eq!(LOGIN.emission_interval(), Duration::from_secs(6));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    burst: u32,
    /// Emission interval T in nanoseconds, a multiple of 1000.
    interval: u64,
    /// Burst window tau = burst × T, in nanoseconds.
    tau: u64,
    /// `floor(x / interval)` by multiply and shift (see `Quota::per_interval`); a
    /// function of `interval`, so equality and hashing are unchanged.
    magic: u64,
    shift: u32,
}

impl Quota {
    /// `burst` requests at once, refilled at `rate` per `period`.
    ///
    /// Refused: a zero period, a rate above one per microsecond (the resolution of
    /// the limiter), and a burst window (`burst × period / rate`) over 100 years.
    pub fn new(burst: NonZeroU32, rate: NonZeroU32, period: Duration) -> Result<Quota, Error> {
        let bad = |why: String| Err(Error::InvalidQuota(why));
        let Ok(period_ns) = u64::try_from(period.as_nanos()) else {
            return bad(format!("period {period:?} is too long"));
        };
        if period_ns == 0 {
            return bad("period must be longer than zero".into());
        }
        if period_ns < u64::from(rate.get()) * MICRO {
            return bad(format!(
                "{rate} per {period:?} is faster than one per microsecond, the resolution of the limiter"
            ));
        }
        let interval = interval_nanos(period_ns, rate);
        match interval.checked_mul(u64::from(burst.get())) {
            Some(tau) if tau <= MAX_TAU_NANOS => Ok(Quota::from_parts(burst.get(), interval, tau)),
            _ => bad(format!(
                "burst {burst} at {rate} per {period:?} spans more than 100 years"
            )),
        }
    }

    /// `rate` per second with a burst of `rate`.
    ///
    /// Above 1,000,000 per second the interval is the limiter's resolution, one
    /// microsecond: such a quota refills 1,000,000 per second (never more than asked).
    pub const fn per_second(rate: NonZeroU32) -> Quota {
        Quota::per_period(rate, 1_000_000_000)
    }

    /// `rate` per minute with a burst of `rate`.
    ///
    /// Above 60,000,000 per minute the interval is one microsecond, as for
    /// [`Quota::per_second`].
    pub const fn per_minute(rate: NonZeroU32) -> Quota {
        Quota::per_period(rate, 60_000_000_000)
    }

    /// `rate` per `period_ns` (at most a minute) with a burst of `rate`: the interval
    /// is at most a minute and the burst window at most `period + rate` µs, far below
    /// 100 years, so nothing can be refused.
    const fn per_period(rate: NonZeroU32, period_ns: u64) -> Quota {
        let interval = interval_nanos(period_ns, rate);
        Quota::from_parts(rate.get(), interval, interval * rate.get() as u64)
    }

    /// The same refill rate with another burst.
    ///
    /// Refused: a burst window (`burst × interval`) over 100 years.
    pub fn with_burst(self, burst: NonZeroU32) -> Result<Quota, Error> {
        match self.interval.checked_mul(u64::from(burst.get())) {
            Some(tau) if tau <= MAX_TAU_NANOS => Ok(Quota {
                burst: burst.get(),
                tau,
                ..self
            }),
            _ => Err(Error::InvalidQuota(format!(
                "burst {burst} spans more than 100 years"
            ))),
        }
    }

    /// The most cost admitted at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time to refill one unit (rounded up to a whole microsecond).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// Time for an empty bucket to refill completely (`burst × interval`).
    pub fn burst_window(&self) -> Duration {
        Duration::from_nanos(self.tau)
    }

    /// The quota's parts with its precomputed divisor, for a reader that must not
    /// divide ([`Quota::from_raw`]).
    pub(crate) fn to_raw(self) -> [u64; 4] {
        [
            u64::from(self.burst) | (u64::from(self.shift) << 32),
            self.interval,
            self.tau,
            self.magic,
        ]
    }

    /// Rebuilds a quota from [`Quota::to_raw`].
    pub(crate) fn from_raw(raw: [u64; 4]) -> Quota {
        #[allow(clippy::cast_possible_truncation)] // packed by to_raw
        Quota {
            burst: raw[0] as u32,
            shift: (raw[0] >> 32) as u32,
            interval: raw[1],
            tau: raw[2],
            magic: raw[3],
        }
    }

    /// A quota from validated parts, with its divisor precomputed.
    pub(crate) const fn from_parts(burst: u32, interval: u64, tau: u64) -> Quota {
        // interval >= 1 µs for every quota that passed validation; this keeps the
        // function total.
        let interval = if interval == 0 { 1 } else { interval };
        // Granlund–Montgomery: with l = ceil(log2 d), k = 63 + l and
        // m = floor(2^k / d) + 1 (< 2^64), floor(x·m / 2^k) = floor(x / d) for every
        // x < 2^63, because the error m·d − 2^k is at most d <= 2^l and x·2^l < 2^k.
        let l = u64::BITS - (interval - 1).leading_zeros();
        let shift = 63 + l;
        #[allow(clippy::cast_possible_truncation)] // < 2^64, shown above
        let magic = ((1u128 << shift) / interval as u128 + 1) as u64;
        Quota {
            burst,
            interval,
            tau,
            magic,
            shift,
        }
    }

    /// `floor(x / interval)` for `remaining` on every check. A 64-bit hardware divide
    /// costs tens of cycles (35–90 on Skylake-class cores) and governor's check does
    /// none; a multiply and a shift cost a few.
    #[inline]
    fn per_interval(&self, x: u64) -> u64 {
        if x >> 63 == 0 {
            #[allow(clippy::cast_possible_truncation)] // the quotient is <= x
            let q = ((u128::from(x) * u128::from(self.magic)) >> self.shift) as u64;
            q
        } else {
            x / self.interval
        }
    }

    /// The emission interval in whole microseconds (for the Redis script).
    #[cfg(feature = "redis")]
    pub(crate) fn interval_micros(&self) -> u64 {
        self.interval / MICRO
    }

    /// What each of `instances` limiters may admit so that together they stay within
    /// this quota: `floor(burst / instances)` at `rate / instances`.
    ///
    /// `None` when the burst does not divide into a whole unit per instance (more
    /// instances than burst units): such a share admits nothing. Rounding it up to one
    /// unit would let the instances together admit more than the quota.
    ///
    /// ```
    /// use palisade_ratelimit::{Quota, nz};
    /// let q = Quota::per_second(nz!(10));
    /// assert_eq!(q.share(nz!(4)).map(|s| s.burst()), Some(2));
    /// assert_eq!(q.share(nz!(11)), None);
    /// ```
    pub fn share(&self, instances: NonZeroU32) -> Option<Quota> {
        let n = instances.get();
        let burst = self.burst / n;
        if burst == 0 {
            return None;
        }
        // The share's interval is n times this one's (rate / n, still whole µs), and
        // its burst window (burst / n)·n·T is at most this one's: no overflow.
        let interval = self.interval * u64::from(n);
        Some(Quota::from_parts(
            burst,
            interval,
            interval * u64::from(burst),
        ))
    }

    /// The GCRA decision for a request of `cost` at `now` against theoretical arrival
    /// time `tat` (all in nanoseconds; `tat <= now` is a fresh key). Returns the
    /// decision and, when the state must change, the new TAT.
    ///
    /// Cost 0 is a peek: it answers for a cost-1 request and never changes state.
    /// The caller has checked `cost <= burst` (a larger cost is answered by
    /// [`Decision::cost_exceeds_burst`] on a peek).
    ///
    /// Always inlined: the compiler had made it a call on the new-key path, where
    /// first-touch inserts then took about 6 % longer (paired bench; see `check_new`).
    #[inline(always)]
    pub(crate) fn decide(&self, tat: u64, now: u64, cost: u32) -> (Decision, Option<u64>) {
        let base = tat.max(now);
        let limit = now.saturating_add(self.tau);
        let new_tat = base.saturating_add(u64::from(cost.max(1)) * self.interval);
        let remaining = |from: u64| {
            u32::try_from(self.per_interval(limit.saturating_sub(from))).unwrap_or(u32::MAX)
        };
        if new_tat <= limit {
            let after = if cost == 0 { base } else { new_tat };
            let decision = Decision {
                allowed: true,
                limit: self.burst,
                remaining: remaining(after),
                reset_after: Duration::from_nanos(after - now),
                retry_after: Duration::ZERO,
                denial: None,
                failed_open: false,
                local_share: false,
            };
            (decision, (cost > 0).then_some(new_tat))
        } else {
            let decision = Decision {
                allowed: false,
                limit: self.burst,
                remaining: remaining(base),
                reset_after: Duration::from_nanos(base - now),
                retry_after: Duration::from_nanos(new_tat - limit),
                denial: Some(Denial::Limited),
                failed_open: false,
                local_share: false,
            };
            (decision, None)
        }
    }
}

/// The answer to one check: flat, so a caller reads it without matching.
///
/// For a request denied by its quota ([`Denial::Limited`]), retrying at exactly
/// `retry_after` from the check is admitted (if nothing else consumed the key in
/// between) and any earlier retry is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The quota's burst (the `limit` a client is told).
    pub limit: u32,
    /// How many more unit-cost requests would be admitted right now.
    pub remaining: u32,
    /// Time until the key is back to a full burst.
    pub reset_after: Duration,
    /// When denied: how long until this request would be admitted. Zero when allowed;
    /// `Duration::MAX` (never) for [`Denial::CostExceedsBurst`]: add it to a time with
    /// `checked_add`.
    pub retry_after: Duration,
    /// Why the request was denied; `None` when it was admitted.
    pub denial: Option<Denial>,
    /// Admitted by `FailurePolicy::Open` (feature `redis`) while Redis could not
    /// answer: no limit held for this request. Always false in memory.
    pub failed_open: bool,
    /// Decided by `FailurePolicy::LocalShare` (feature `redis`) while Redis could not
    /// answer: only this instance's share of the quota held. Always false in memory.
    pub local_share: bool,
}

/// Why a request was denied. Every denial is an answer, not an error: answer a spent
/// quota with HTTP 429 (and `Retry-After` from
/// [`headers::retry_after`](crate::headers::retry_after), which is `None` for a request
/// that can never pass). `TableFull` and `Unavailable` are the server's condition, not
/// the client's (`RateLimitLayer` answers them `503`, a block `403`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Denial {
    /// The quota is spent for now; `retry_after` is exact.
    Limited,
    /// The request's cost is above the burst: it can never be admitted, and
    /// `retry_after` is `Duration::MAX`. `remaining` and `reset_after` describe the
    /// key as a peek would.
    CostExceedsBurst,
    /// The key is blocked; `retry_after` is when the block ends.
    Blocked,
    /// In memory: a new key, refused because the table is full of live keys;
    /// `retry_after` is one emission interval. The client spent no quota: the
    /// limiter ran out of room (fail closed).
    TableFull,
    /// On Redis: the key's state is unknown (Redis is unreachable, or lost its data
    /// less than a burst window ago) and the failure policy denies.
    Unavailable,
}

impl Decision {
    /// A denial that is not a GCRA outcome (a block, an outage under a closed
    /// policy): nothing remains, retry after `retry_after`.
    pub(crate) fn denied(limit: u32, retry_after: Duration, denial: Denial) -> Decision {
        Decision {
            allowed: false,
            limit,
            remaining: 0,
            reset_after: retry_after,
            retry_after,
            denial: Some(denial),
            failed_open: false,
            local_share: false,
        }
    }

    /// This decision, taken on a peek, turned into the answer to a request of a cost
    /// above `burst`: denied, never to be admitted.
    pub(crate) fn cost_exceeds_burst(self, burst: u32) -> Decision {
        Decision {
            allowed: false,
            limit: burst,
            retry_after: Duration::MAX,
            denial: Some(Denial::CostExceedsBurst),
            failed_open: false,
            local_share: false,
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn quotas_are_validated() {
        assert!(Quota::new(nz!(1), nz!(1), Duration::ZERO).is_err());
        // 2 million per second is faster than the microsecond resolution.
        let err = Quota::new(nz!(1), nz!(2_000_000), Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string().contains("faster than one per microsecond"),
            "{err}"
        );
        assert!(Quota::new(nz!(1), nz!(1_000_000), Duration::from_secs(1)).is_ok());
        let err = Quota::new(NonZeroU32::MAX, nz!(1), Duration::from_secs(3600)).unwrap_err();
        assert!(err.to_string().contains("100 years"), "{err}");
        assert!(Quota::new(nz!(1), nz!(1), Duration::MAX).is_err());
        // Just under u64::MAX ns: the interval once wrapped to 384 ns (clamped to
        // 1 µs), one per 584 years taken as a million per second.
        for ns in [u64::MAX, u64::MAX - 1, 18_446_744_073_709_551_001] {
            let err = Quota::new(nz!(1), nz!(1), Duration::from_nanos(ns)).unwrap_err();
            assert!(err.to_string().contains("100 years"), "{ns}: {err}");
        }
        let err = Quota::per_minute(nz!(1))
            .with_burst(NonZeroU32::MAX)
            .unwrap_err();
        assert!(err.to_string().contains("100 years"), "{err}");
    }

    #[test]
    fn per_second_and_per_minute_match_new_and_cap_at_the_resolution() {
        for rate in [1, 3, 7, 1_000, 999_999, 1_000_000] {
            let r = NonZeroU32::new(rate).unwrap();
            let s = Quota::new(r, r, Duration::from_secs(1)).unwrap();
            assert_eq!(Quota::per_second(r), s, "{rate}/s");
            let m = Quota::new(r, r, Duration::from_secs(60)).unwrap();
            assert_eq!(Quota::per_minute(r), m, "{rate}/min");
        }
        // Faster than the resolution: one per microsecond, the burst kept.
        for q in [
            Quota::per_second(NonZeroU32::MAX),
            Quota::per_second(nz!(1_000_001)),
            Quota::per_minute(NonZeroU32::MAX),
        ] {
            assert_eq!(q.emission_interval(), Duration::from_micros(1));
            assert_eq!(
                q.burst_window(),
                Duration::from_micros(u64::from(q.burst()))
            );
        }
        assert_eq!(Quota::per_second(NonZeroU32::MAX).burst(), u32::MAX);
    }

    #[test]
    fn interval_rounds_up_to_a_microsecond() {
        let q = Quota::new(nz!(3), nz!(3), Duration::from_secs(1)).unwrap();
        assert_eq!(q.emission_interval(), Duration::from_micros(333_334));
        assert_eq!(q.burst_window(), Duration::from_micros(1_000_002));
    }

    #[test]
    fn burst_then_one_per_interval() {
        let q = Quota::new(nz!(2), nz!(1), Duration::from_secs(1)).unwrap();
        let now = 100 * S;
        let (d1, t1) = q.decide(0, now, 1);
        assert!(d1.allowed);
        assert_eq!((d1.remaining, d1.reset_after), (1, Duration::from_secs(1)));
        let (d2, t2) = q.decide(t1.unwrap(), now, 1);
        assert!(d2.allowed);
        assert_eq!((d2.remaining, d2.reset_after), (0, Duration::from_secs(2)));
        let tat = t2.unwrap();
        let (d3, t3) = q.decide(tat, now, 1);
        assert!(!d3.allowed);
        assert_eq!(t3, None);
        assert_eq!(d3.retry_after, Duration::from_secs(1));
        assert_eq!(d3.reset_after, Duration::from_secs(2));
        // Exactly at retry_after: admitted; a nanosecond earlier: denied.
        assert!(q.decide(tat, now + S, 1).0.allowed);
        assert!(!q.decide(tat, now + S - 1, 1).0.allowed);
    }

    #[test]
    fn cost_and_peek() {
        let q = Quota::new(nz!(5), nz!(5), Duration::from_secs(1)).unwrap();
        let (d, t) = q.decide(0, S, 5);
        assert!(d.allowed && d.remaining == 0);
        let tat = t.unwrap();
        let (peek, none) = q.decide(tat, S, 0);
        assert_eq!(none, None);
        assert!(!peek.allowed);
        assert_eq!(peek.retry_after, Duration::from_millis(200));
        let (peek, none) = q.decide(0, S, 0);
        assert_eq!((peek.allowed, peek.remaining, none), (true, 5, None));
    }

    #[test]
    fn share_divides_burst_and_rate() {
        let q = Quota::new(nz!(10), nz!(100), Duration::from_secs(1)).unwrap();
        let s = q.share(nz!(4)).unwrap();
        assert_eq!(s.burst(), 2);
        assert_eq!(s.emission_interval(), Duration::from_millis(40));
        assert_eq!(s.burst_window(), Duration::from_millis(80));
        assert_eq!(q.share(nz!(10)).unwrap().burst(), 1);
        // More instances than burst units: a share that admits nothing.
        assert_eq!(q.share(nz!(11)), None);
        assert_eq!(q.share(nz!(100)), None);
        assert_eq!(q.share(nz!(1)), Some(q));
    }

    fn divides_like_hardware(d: u64, x: u64) -> Result<(), TestCaseError> {
        let q = Quota::from_parts(1, d, d);
        prop_assert_eq!(q.per_interval(x), x / d, "x {} d {}", x, d);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The multiply-and-shift quotient equals the hardware one for every divisor
        /// and dividend, including the neighbours of exact multiples and powers of 2.
        #[test]
        fn per_interval_is_floor_division(
            d in prop_oneof![1..=u64::MAX, 1..=(1u64 << 40), (0u32..64).prop_map(|k| 1u64 << k)],
            x in any::<u64>(),
            q in 0..=u64::MAX,
            shape in 0..4u8,
        ) {
            let x = match shape {
                0 => x,
                1 => x >> 1, // the fast path's whole range
                _ => {
                    // Around an exact multiple of d: q·d − 1, q·d, q·d + 1.
                    let m = (q % (u64::MAX / d).max(1)).saturating_mul(d);
                    m.saturating_add(u64::from(shape)).saturating_sub(2)
                }
            };
            divides_like_hardware(d, x)?;
            divides_like_hardware(d, (1 << 63) - 1)?;
            divides_like_hardware(d, 1 << 63)?;
            divides_like_hardware(d, u64::MAX)?;
            divides_like_hardware(d, 0)?;
        }
    }
}
