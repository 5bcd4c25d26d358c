//! [`MonotonicClock`]: the in-memory limiter's default clock.

use palisade_core_traits::{Clock, SystemClock, Timestamp};

/// Wall time read once at creation, then advanced by a monotonic CPU counter
/// (`quanta`, TSC-based where available, calibrated against the OS clock).
///
/// Why not [`SystemClock`]: reading the OS wall clock costs about as much as the
/// whole GCRA check (measured in `docs/ratelimit.md`), and it can step backwards under
/// NTP. A rate limiter needs steady elapsed time, not calendar time: this clock
/// never steps back, and drifts from the wall clock only by the counter's calibration
/// error (parts per million). Use [`SystemClock`] or any other [`Clock`] through
/// `KeyedLimiter::with_clock` when readings must match other hosts' wall clocks.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    start_wall: u64,
    start_raw: u64,
    clock: quanta::Clock,
}

impl MonotonicClock {
    /// Anchors a new clock at the current wall time.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        MonotonicClock {
            start_wall: SystemClock.now().as_unix_nanos(),
            start_raw: clock.raw(),
            clock,
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now(&self) -> Timestamp {
        // Raw counter delta scaled to nanoseconds: no Duration round trip on the hot path.
        let elapsed = self.clock.delta_as_nanos(self.start_raw, self.clock.raw());
        Timestamp::from_unix_nanos(self.start_wall.saturating_add(elapsed))
    }

    fn monotonic(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.clock.delta_as_nanos(self.start_raw, self.clock.raw()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn follows_wall_time_and_never_steps_back() {
        let c = MonotonicClock::new();
        let wall = SystemClock.now();
        let mut last = c.now();
        assert!(last.saturating_duration_since(wall) < Duration::from_millis(100));
        assert!(wall.saturating_duration_since(last) < Duration::from_millis(100));
        for _ in 0..10_000 {
            let t = c.now();
            assert!(t >= last);
            last = t;
        }
        std::thread::sleep(Duration::from_millis(20));
        let slept = c.now().saturating_duration_since(last);
        assert!(slept >= Duration::from_millis(19), "{slept:?}");
    }
}
