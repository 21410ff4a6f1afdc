//! The one place that reads the time. The sender schedules retries, expiries and stuck requests
//! with a `Clock`, so tests can move time by hand; everything else asks `unix_now`.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time as the sender sees it: a monotonic instant for scheduling, the wall clock for what
/// leaves the process (exported expiry times, HTTP dates).
pub trait Clock: Debug + Send + Sync + 'static {
    fn now(&self) -> Instant;
    /// Time since the Unix epoch.
    fn unix(&self) -> Duration;
    /// How long a thread waiting for `wanted` of this clock's time should sleep in real time
    /// before it looks again.
    fn real_wait(&self, wanted: Duration) -> Duration {
        wanted
    }
}

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }
}

/// Whole seconds since the Unix epoch, from the system clock.
pub fn unix_now() -> u64 {
    SystemClock.unix().as_secs()
}

/// A clock that moves only when told to, for tests of timing. Threads waiting on it look again
/// every few milliseconds of real time.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    unix_start: Duration,
    offset: Mutex<Duration>,
}

const MANUAL_CLOCK_POLL: Duration = Duration::from_millis(2);

impl ManualClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            unix_start: SystemClock.unix(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        *offset += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }

    fn unix(&self) -> Duration {
        self.unix_start + self.offset()
    }

    fn real_wait(&self, wanted: Duration) -> Duration {
        wanted.min(MANUAL_CLOCK_POLL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let (now, unix) = (clock.now(), clock.unix());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), now);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now() - now, Duration::from_secs(90));
        assert_eq!(clock.unix() - unix, Duration::from_secs(90));
        assert!(clock.real_wait(Duration::from_secs(60)) <= MANUAL_CLOCK_POLL);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(unix_now() > 1_577_836_800);
    }
}
