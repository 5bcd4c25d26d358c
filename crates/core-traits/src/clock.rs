//! Time: [`Timestamp`], the [`Clock`] trait, [`SystemClock`] and [`ManualClock`].
//!
//! A clock answers two questions: what time it is on the wall ([`Clock::now`], for
//! decisions other hosts must agree on: quotas, token lifetimes, audit records) and
//! how much time has passed ([`Clock::monotonic`], for durations that are not quota
//! decisions: freshness, breakers, timeouts). Wall time can step; monotonic time
//! cannot, so a wall-clock step never makes stale state look fresh.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A point in wall-clock time: nanoseconds since the Unix epoch, UTC.
///
/// `u64` nanoseconds reach the year 2554; times before 1970 are not representable,
/// which no security decision here needs. Serialized as an RFC 3339 string in UTC
/// (`"2026-11-28T14:50:08.123456789Z"`), the form logs and SIEMs read.
///
/// ```
/// use palisade_core_traits::Timestamp;
/// use std::time::Duration;
///
/// let t = Timestamp::from_unix_secs(1_700_000_000);
/// let later = t.saturating_add(Duration::from_millis(1500));
/// assert_eq!(later.as_unix_micros(), 1_700_000_001_500_000);
/// assert_eq!(later.saturating_duration_since(t), Duration::from_millis(1500));
/// assert_eq!(t.to_string(), "2023-11-14T22:13:20Z");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);
    /// The latest representable instant.
    pub const MAX: Timestamp = Timestamp(u64::MAX);

    /// From nanoseconds since the Unix epoch.
    pub const fn from_unix_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }

    /// From microseconds since the Unix epoch, saturating at [`Timestamp::MAX`].
    pub const fn from_unix_micros(micros: u64) -> Self {
        Timestamp(micros.saturating_mul(1_000))
    }

    /// From whole seconds since the Unix epoch (a JWT `iat`/`exp`), saturating.
    pub const fn from_unix_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_unix_nanos(self) -> u64 {
        self.0
    }

    /// Whole microseconds since the Unix epoch (truncated).
    pub const fn as_unix_micros(self) -> u64 {
        self.0 / 1_000
    }

    /// Whole seconds since the Unix epoch (truncated), as JWT `NumericDate`s count.
    pub const fn as_unix_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }

    /// `self + d`, or `None` past [`Timestamp::MAX`].
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let nanos = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(nanos).map(Timestamp)
    }

    /// `self + d`, saturating at [`Timestamp::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(Timestamp::MAX)
    }

    /// `self - d`, or `None` before the epoch.
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        let nanos = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_sub(nanos).map(Timestamp)
    }

    /// `self - d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Self {
        self.checked_sub(d).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// The time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Timestamp) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// The time from `earlier` to `self`, zero if `earlier` is later (clocks can step back).
    pub fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        self.checked_duration_since(earlier)
            .unwrap_or(Duration::ZERO)
    }

    /// From a [`SystemTime`]; `None` before the epoch or after [`Timestamp::MAX`].
    pub fn from_system_time(t: SystemTime) -> Option<Self> {
        let since = t.duration_since(UNIX_EPOCH).ok()?;
        u64::try_from(since.as_nanos()).ok().map(Timestamp)
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, with as many fractional digits as needed (none for whole seconds).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.to_system_time();
        let (secs, nanos) = (self.0 / 1_000_000_000, self.0 % 1_000_000_000);
        let whole = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
        if nanos == 0 {
            return write!(f, "{whole}");
        }
        // humantime always prints 9 digits; trim trailing zeros for readability.
        let full = humantime::format_rfc3339_nanos(t).to_string();
        let (head, tail) = full.split_at(full.len() - 1); // tail is "Z"
        write!(f, "{}{tail}", head.trim_end_matches('0'))
    }
}

impl FromStr for Timestamp {
    type Err = Error;

    /// Parses RFC 3339 in UTC (`Z`), e.g. `2026-11-28T14:50:08.5Z`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::InvalidValue {
            field: "timestamp",
            reason: format!("{reason}: {s:?}"),
        };
        let t = humantime::parse_rfc3339(s)
            .map_err(|e| invalid(&format!("not an RFC 3339 UTC time ({e})")))?;
        Timestamp::from_system_time(t).ok_or_else(|| invalid("outside 1970..2554"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A source of wall-clock and monotonic time.
///
/// Every time-dependent decision in Palisade takes its time from a `Clock`, so tests
/// can drive time with a [`ManualClock`] and production uses [`SystemClock`].
/// Wall time can step backwards or forwards (NTP, an operator); implementations of
/// decisions must tolerate it, and measure elapsed time with [`Clock::monotonic`].
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current wall time, with at least microsecond resolution.
    fn now(&self) -> Timestamp;

    /// Time elapsed since an origin fixed for this clock, on a clock that never steps
    /// backwards or jumps when the wall clock is set.
    ///
    /// Only differences between two readings of the same clock mean anything. Use it
    /// for every duration that is not a quota decision: freshness, circuit breakers,
    /// timeouts.
    fn monotonic(&self) -> Duration;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn monotonic(&self) -> Duration {
        (**self).monotonic()
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Timestamp {
        (**self).now()
    }

    fn monotonic(&self) -> Duration {
        (**self).monotonic()
    }
}

/// The operating system's clocks: the wall clock for [`Clock::now`] and
/// [`std::time::Instant`] for [`Clock::monotonic`] (origin: the first monotonic
/// reading in the process, so every `SystemClock` shares it).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The process-wide origin of [`SystemClock::monotonic`].
fn process_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // A system clock set before 1970 or after 2554 is a broken host; pin it to the
        // nearest representable end rather than panic in a security path.
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            Err(_) => Timestamp::UNIX_EPOCH,
        }
    }

    fn monotonic(&self) -> Duration {
        process_origin().elapsed()
    }
}

/// A clock that moves only when told to: for tests and simulations.
///
/// Clones share the same time, so a test can hand one clone to the code under test
/// and move time with another. [`ManualClock::advance`] lets time pass (both
/// readings move); [`ManualClock::set`] steps the wall clock only, as NTP or an
/// operator would, leaving the monotonic reading where it was.
///
/// ```
/// use palisade_core_traits::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Timestamp::from_unix_secs(100));
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(shared.now(), Timestamp::from_unix_secs(105));
/// assert_eq!(shared.monotonic(), Duration::from_secs(5));
///
/// clock.set(Timestamp::from_unix_secs(3_600)); // a wall-clock step: no time passed
/// assert_eq!(shared.monotonic(), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
    monotonic_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `start` (and a monotonic reading of zero) until moved.
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            nanos: Arc::new(AtomicU64::new(start.as_unix_nanos())),
            monotonic_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Lets `d` pass: both the wall and the monotonic reading move forward,
    /// saturating at their maximum.
    pub fn advance(&self, d: Duration) {
        let step = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        for counter in [&self.nanos, &self.monotonic_nanos] {
            // fetch_update cannot fail here: the closure always returns Some.
            let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(step))
            });
        }
    }

    /// Steps the wall clock to `t`, forwards or backwards, without letting time pass
    /// on the monotonic reading (to test clock steps).
    pub fn set(&self, t: Timestamp) {
        self.nanos.store(t.as_unix_nanos(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.nanos.load(Ordering::SeqCst))
    }

    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.monotonic_nanos.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Timestamp::from_unix_nanos(u64::MAX - 5);
        assert_eq!(t.saturating_add(Duration::from_nanos(10)), Timestamp::MAX);
        assert_eq!(t.checked_add(Duration::from_nanos(10)), None);
        assert_eq!(
            Timestamp::from_unix_nanos(3).saturating_sub(Duration::from_nanos(10)),
            Timestamp::UNIX_EPOCH
        );
        assert_eq!(
            Timestamp::from_unix_nanos(3).checked_sub(Duration::from_nanos(4)),
            None
        );
        assert_eq!(Timestamp::from_unix_secs(u64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::from_unix_micros(u64::MAX), Timestamp::MAX);
        assert_eq!(t.checked_add(Duration::MAX), None);
    }

    #[test]
    fn durations_between_timestamps() {
        let a = Timestamp::from_unix_micros(1_000_001);
        let b = Timestamp::from_unix_secs(3);
        assert_eq!(
            b.checked_duration_since(a),
            Some(Duration::from_micros(1_999_999))
        );
        assert_eq!(a.checked_duration_since(b), None);
        assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
        assert_eq!(b.as_unix_secs(), 3);
        assert_eq!(a.as_unix_secs(), 1);
        assert_eq!(a.as_unix_micros(), 1_000_001);
    }

    #[test]
    fn display_and_parse_round_trip() {
        for (nanos, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_500_000_000, "1970-01-01T00:00:01.5Z"),
            (1_764_341_408_000_001_000, "2025-11-28T14:50:08.000001Z"),
            (1_764_341_408_123_456_789, "2025-11-28T14:50:08.123456789Z"),
        ] {
            let t = Timestamp::from_unix_nanos(nanos);
            assert_eq!(t.to_string(), text);
            assert_eq!(text.parse::<Timestamp>().unwrap(), t);
        }
    }

    #[test]
    fn parse_rejects_non_utc_and_garbage_naming_the_input() {
        for bad in [
            "",
            "yesterday",
            "2025-11-28 14:50:08",
            "2025-13-01T00:00:00Z",
        ] {
            let err = bad.parse::<Timestamp>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("timestamp"), "{msg}");
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_time() {
        let c = ManualClock::new(Timestamp::from_unix_secs(10));
        let other = c.clone();
        assert_eq!(c.now(), Timestamp::from_unix_secs(10));
        c.advance(Duration::from_micros(7));
        assert_eq!(other.now().as_unix_micros(), 10_000_007);
        other.set(Timestamp::from_unix_secs(2));
        assert_eq!(c.now(), Timestamp::from_unix_secs(2));
        c.set(Timestamp::MAX);
        c.advance(Duration::from_secs(1));
        assert_eq!(c.now(), Timestamp::MAX);
    }

    #[test]
    fn manual_clock_steps_move_wall_time_only() {
        let c = ManualClock::new(Timestamp::from_unix_secs(1_000));
        assert_eq!(c.monotonic(), Duration::ZERO);
        c.advance(Duration::from_secs(2));
        c.set(Timestamp::from_unix_secs(10)); // back
        c.set(Timestamp::from_unix_secs(99_999)); // forward
        assert_eq!(c.monotonic(), Duration::from_secs(2));
        c.advance(Duration::from_millis(1));
        assert_eq!(c.monotonic(), Duration::from_millis(2_001));
        assert_eq!(c.clone().monotonic(), Duration::from_millis(2_001));
    }

    #[test]
    fn system_clock_monotonic_never_goes_back_and_is_shared() {
        let first = SystemClock.monotonic();
        let mut last = first;
        for _ in 0..1_000 {
            let t = SystemClock.monotonic();
            assert!(t >= last);
            last = t;
        }
        std::thread::sleep(Duration::from_millis(5));
        let other: &dyn Clock = &SystemClock;
        assert!(other.monotonic() >= first + Duration::from_millis(5));
    }

    #[test]
    fn system_clock_is_close_to_std_and_usable_through_dyn() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ours = clock.now();
        let std_now = Timestamp::from_system_time(SystemTime::now()).unwrap();
        assert!(std_now.saturating_duration_since(ours) < Duration::from_secs(1));
        assert!(ours > Timestamp::from_unix_secs(1_700_000_000));
    }
}
