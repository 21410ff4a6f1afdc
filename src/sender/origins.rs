//! How each push service origin is doing. A slow origin (a request in flight for longer than
//! `STUCK_AFTER`, or one timed out lately) gets one request at a time; its other pushes are
//! parked here until it answers again, so they hold no worker. A healthy origin gets as many
//! concurrent requests as there are workers.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::Tracked;

/// A request in flight for this long is stuck: it stops counting against the workers.
pub const STUCK_AFTER: Duration = Duration::from_millis(750);
/// An origin that timed out is treated as slow for this long, unless it answers before.
pub const SLOW_FOR: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct Origin {
    pub in_flight: usize,
    /// Of those, how many are stuck.
    pub stuck: usize,
    slow_until: Option<Instant>,
    pub parked: VecDeque<Tracked>,
}

impl Origin {
    pub fn is_slow(&self, now: Instant) -> bool {
        self.stuck > 0 || self.slow_until.is_some_and(|until| now < until)
    }

    /// Nothing left to remember about it.
    fn forgettable(&self, now: Instant) -> bool {
        self.in_flight == 0 && self.parked.is_empty() && !self.is_slow(now)
    }
}

/// How a request to an origin ended, as far as its health goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It answered (any HTTP status).
    Answered,
    /// The deadline cut the request off.
    TimedOut,
    /// Anything else (refused, reset, not sent): says nothing about slowness.
    Unknown,
}

#[derive(Default)]
pub struct Origins {
    table: HashMap<Arc<str>, Origin>,
    /// Parked pushes over every origin.
    parked: usize,
}

impl Origins {
    pub fn parked(&self) -> usize {
        self.parked
    }

    /// Whether a push to `origin` must wait for the request already in flight there.
    pub fn must_park(&self, origin: &str, now: Instant) -> bool {
        self.table
            .get(origin)
            .is_some_and(|o| o.in_flight > 0 && o.is_slow(now))
    }

    /// The entry of `origin`, made on first use (the only allocation for an origin).
    fn entry(&mut self, origin: &str) -> &mut Origin {
        let key = match self.table.get_key_value(origin) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(origin),
        };
        self.table.entry(key).or_default()
    }

    pub fn park(&mut self, job: Tracked) {
        self.entry(job.data.origin()).parked.push_back(job);
        self.parked += 1;
    }

    pub fn started(&mut self, origin: &str) {
        self.entry(origin).in_flight += 1;
    }

    pub fn stuck(&mut self, origin: &str) {
        if let Some(o) = self.table.get_mut(origin) {
            o.stuck += 1;
        }
    }

    /// A request to `origin` ended. Returns the parked pushes that may go now: all of them once
    /// the origin is healthy again, else the next single one when nothing is in flight there.
    pub fn finished(
        &mut self,
        origin: &str,
        was_stuck: bool,
        health: Health,
        now: Instant,
    ) -> Vec<Tracked> {
        let Some(o) = self.table.get_mut(origin) else {
            return Vec::new();
        };
        o.in_flight = o.in_flight.saturating_sub(1);
        if was_stuck {
            o.stuck = o.stuck.saturating_sub(1);
        }
        match health {
            Health::Answered => o.slow_until = None,
            Health::TimedOut => o.slow_until = Some(now + SLOW_FOR),
            Health::Unknown => {}
        }
        let released: Vec<Tracked> = if !o.is_slow(now) {
            o.parked.drain(..).collect()
        } else if o.in_flight == 0 {
            o.parked.pop_front().into_iter().collect()
        } else {
            Vec::new()
        };
        self.parked -= released.len();
        if o.forgettable(now) {
            self.table.remove(origin);
        }
        released
    }

    /// Takes out the parked pushes for which `keep` says no.
    pub fn take_parked_unless(&mut self, mut keep: impl FnMut(&Tracked) -> bool) -> Vec<Tracked> {
        let mut taken = Vec::new();
        for origin in self.table.values_mut() {
            let mut index = 0;
            while index < origin.parked.len() {
                if keep(&origin.parked[index]) {
                    index += 1;
                } else if let Some(job) = origin.parked.remove(index) {
                    taken.push(job);
                }
            }
        }
        self.parked -= taken.len();
        taken
    }

    /// Forgets origins with nothing in flight, nothing parked and no recent timeout.
    pub fn forget_idle(&mut self, now: Instant) {
        self.table.retain(|_, origin| !origin.forgettable(now));
    }

    /// The earliest expiry among parked pushes (they must not wait past it unnoticed).
    pub fn first_parked_expiry(&self) -> Option<Instant> {
        self.table
            .values()
            .flat_map(|o| o.parked.iter())
            .filter(|job| !job.data.now_or_never)
            .map(|job| job.data.expires)
            .min()
    }

    /// The next moment a slow origin's memory of a timeout lapses.
    pub fn first_slow_lapse(&self, now: Instant) -> Option<Instant> {
        self.table
            .values()
            .filter_map(|o| o.slow_until)
            .filter(|until| *until > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::job::test_job;

    fn job(id: u64, origin: &str) -> Tracked {
        let endpoint = format!("{origin}/x");
        test_job(
            id,
            "a@b",
            &endpoint,
            Duration::from_secs(60),
            Instant::now(),
        )
    }

    /// `origin` with one request in flight, stuck, and the pushes `ids` parked behind it.
    fn stuck_with_parked(origin: &str, ids: impl IntoIterator<Item = u64>) -> Origins {
        let mut origins = Origins::default();
        origins.started(origin);
        origins.stuck(origin);
        for id in ids {
            origins.park(job(id, origin));
        }
        origins
    }

    fn ids(jobs: &[Tracked]) -> Vec<u64> {
        jobs.iter().map(|job| job.id).collect()
    }

    #[test]
    fn a_healthy_origin_takes_any_number_of_requests() {
        let mut origins = Origins::default();
        let origin = "https://fcm.example";
        let now = Instant::now();
        for _ in 0..5 {
            assert!(!origins.must_park(origin, now));
            origins.started(origin);
        }
        for _ in 0..5 {
            assert!(origins
                .finished(origin, false, Health::Answered, now)
                .is_empty());
        }
        origins.forget_idle(now);
        assert!(origins.table.is_empty());
    }

    #[test]
    fn a_stuck_origin_parks_and_releases_all_once_it_answers() {
        let origin = "https://slow.example";
        let now = Instant::now();
        let mut origins = stuck_with_parked(origin, [2, 3]);
        assert!(origins.must_park(origin, now));
        assert_eq!(origins.parked(), 2);
        let released = origins.finished(origin, true, Health::Answered, now);
        assert_eq!(ids(&released), [2, 3]);
        assert_eq!(origins.parked(), 0);
    }

    #[test]
    fn a_timed_out_origin_gets_one_probe_at_a_time() {
        let origin = "https://dead.example";
        let now = Instant::now();
        let mut origins = stuck_with_parked(origin, [2, 3]);
        let released = origins.finished(origin, true, Health::TimedOut, now);
        assert_eq!(ids(&released), [2]);
        origins.started(origin);
        assert!(origins.must_park(origin, now), "still slow after a timeout");
        assert_eq!(origins.first_slow_lapse(now), Some(now + SLOW_FOR));
        // It answers: the rest may go, and it is healthy again.
        let released = origins.finished(origin, false, Health::Answered, now);
        assert_eq!(ids(&released), [3]);
        assert!(!origins.must_park(origin, now));
        // A timeout is forgotten after a while.
        origins.started(origin);
        origins.finished(origin, false, Health::TimedOut, now);
        origins.started(origin);
        assert!(origins.must_park(origin, now + SLOW_FOR - Duration::from_secs(1)));
        assert!(!origins.must_park(origin, now + SLOW_FOR));
    }

    #[test]
    fn parked_pushes_can_be_taken_out() {
        let mut origins = stuck_with_parked("https://slow.example", 1..=4);
        let taken = origins.take_parked_unless(|job| job.id % 2 == 0);
        assert_eq!(ids(&taken), [1, 3]);
        assert_eq!(origins.parked(), 2);
        assert!(origins.first_parked_expiry().is_some());
    }
}
