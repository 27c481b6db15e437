//! `requestsPerMinute`: a token bucket that caps how many generation requests start per
//! minute. Time comes from a [`Clock`] so tests can drive it without sleeping.

use std::time::{Duration, Instant};

/// Slowest rate a bucket runs at: one request every 16 h 40 min (recipes accept no less).
pub const MIN_REQUESTS_PER_MINUTE: f64 = 0.001;
/// Fastest rate a bucket runs at: about 16,700 a second (recipes accept no more).
pub const MAX_REQUESTS_PER_MINUTE: f64 = 1_000_000.0;

pub trait Clock {
    /// Time since an arbitrary fixed origin.
    fn now(&self) -> Duration;
    fn sleep(&self, duration: Duration);
}

/// The real clock.
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration)
    }
}

/// Refills at `rpm / 60` tokens per second up to a burst of one second's worth (at least 1),
/// so no 60-second window starts more than `rpm + ceil(rpm / 60)` requests.
///
/// Recipes only accept `rpm` in [`MIN_REQUESTS_PER_MINUTE`, `MAX_REQUESTS_PER_MINUTE`]; the
/// bucket clamps any other value (NaN to the minimum) into that range, so no `f64` can make a
/// wait overflow a [`Duration`].
#[derive(Debug, Clone)]
pub struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    last: Duration,
}

impl TokenBucket {
    pub fn new(requests_per_minute: f64, now: Duration) -> Self {
        let rpm = if requests_per_minute.is_nan() {
            MIN_REQUESTS_PER_MINUTE
        } else {
            requests_per_minute.clamp(MIN_REQUESTS_PER_MINUTE, MAX_REQUESTS_PER_MINUTE)
        };
        let per_second = rpm / 60.0;
        let capacity = per_second.ceil().max(1.0);
        Self { per_second, capacity, tokens: capacity, last: now }
    }

    fn refill(&mut self, now: Duration) {
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
    }

    /// Takes one start if available.
    pub fn try_take(&mut self, now: Duration) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next start is available.
    pub fn wait_time(&mut self, now: Duration) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            // At most 60 000 s with a clamped rate; saturate rather than panic all the same.
            Duration::try_from_secs_f64((1.0 - self.tokens) / self.per_second).unwrap_or(Duration::MAX)
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::Cell;

    /// A clock that only moves when told to (or when something "sleeps" on it).
    #[derive(Default)]
    pub struct FakeClock(pub Cell<Duration>);

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            self.0.get()
        }
        fn sleep(&self, duration: Duration) {
            self.0.set(self.0.get() + duration);
        }
    }

    #[test]
    fn sixty_per_minute_is_one_per_second() {
        let clock = FakeClock::default();
        let mut bucket = TokenBucket::new(60.0, clock.now());
        assert!(bucket.try_take(clock.now()));
        assert!(!bucket.try_take(clock.now()));
        assert_eq!(bucket.wait_time(clock.now()), Duration::from_secs(1));
        clock.sleep(Duration::from_millis(999));
        assert!(!bucket.try_take(clock.now()));
        clock.sleep(Duration::from_millis(1));
        assert!(bucket.try_take(clock.now()));
    }

    #[test]
    fn starts_in_any_minute_stay_under_the_cap() {
        for rpm in [1.0, 7.0, 50.0, 60.0, 600.0] {
            let clock = FakeClock::default();
            let mut bucket = TokenBucket::new(rpm, clock.now());
            let mut starts = Vec::new();
            // Greedy caller: takes whenever it can, polling every 10 ms for 5 minutes.
            while clock.now() < Duration::from_secs(300) {
                while bucket.try_take(clock.now()) {
                    starts.push(clock.now());
                }
                clock.sleep(Duration::from_millis(10));
            }
            let burst = (rpm / 60.0_f64).ceil().max(1.0) as usize;
            for (i, t) in starts.iter().enumerate() {
                let in_window = starts[i..].iter().take_while(|s| **s < *t + Duration::from_secs(60)).count();
                assert!(in_window <= rpm as usize + burst, "rpm {rpm}: {in_window} starts in one minute");
            }
            let total = starts.len() as f64;
            assert!((total - rpm * 5.0).abs() <= burst as f64 + 1.0, "rpm {rpm}: {total} starts in 5 minutes");
        }
    }

    /// Issue 16: `1e-300` requests per minute panicked converting the wait to a `Duration`.
    #[test]
    fn requests_per_minute_of_any_f64_never_panics() {
        let day = Duration::from_secs(86_400);
        let values = [
            1e-300,
            5e-324,
            0.0,
            -0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            MIN_REQUESTS_PER_MINUTE,
            MAX_REQUESTS_PER_MINUTE,
        ];
        for rpm in values {
            let clock = FakeClock::default();
            let mut bucket = TokenBucket::new(rpm, clock.now());
            assert!(bucket.try_take(clock.now()), "rpm {rpm}: the first request starts at once");
            while bucket.try_take(clock.now()) {}
            let wait = bucket.wait_time(clock.now());
            assert!(wait > Duration::ZERO && wait <= day, "rpm {rpm}: wait {wait:?}");
            clock.sleep(wait);
            assert!(bucket.try_take(clock.now()), "rpm {rpm}: a start after the wait");
            // Far-future and backwards clocks are fine too.
            assert_eq!(bucket.wait_time(Duration::MAX), Duration::ZERO, "rpm {rpm}");
            let _ = bucket.wait_time(Duration::ZERO);
        }
        let clock = FakeClock::default();
        let mut slowest = TokenBucket::new(MIN_REQUESTS_PER_MINUTE, clock.now());
        assert!(slowest.try_take(clock.now()));
        let wait = slowest.wait_time(clock.now()).as_secs_f64();
        assert!((wait - 60_000.0).abs() < 1e-6, "{wait}");
    }
}
