//! Every push the sender holds, under one lock: queued (ready for a worker), parked (behind a
//! slow origin's request), waiting (for a retry) and in flight. Each push leaves it with exactly
//! one final result, unless `export` takes it or `close` drops it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::job::{JobData, Tracked};
use super::origins::{Health, Origins, STUCK_AFTER};
use super::pool::Pool;
use super::results::FinalResult;
use super::types::Counts;
use crate::http::Answer;
use crate::outcome::{Attempt, Outcome};
use crate::retry;

/// What a worker needs for one attempt.
pub struct Task {
    pub id: u64,
    pub data: Arc<JobData>,
    /// The TTL to send.
    pub ttl: Duration,
}

/// What becomes of an in-flight push when its request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Its result, or a retry.
    Settle,
    /// Its result, but no retry (`cancel` came while it was in flight).
    NoRetry,
    /// Nothing: `export` handed it over.
    Forget,
}

struct Flight {
    job: Tracked,
    started: Instant,
    stuck: bool,
    fate: Fate,
}

/// A push waiting for its retry, ordered so the heap's top is the earliest.
struct Waiting {
    due: Instant,
    seq: u64,
    job: Tracked,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// Which pushes `cancel` drops.
pub struct Selection<'a> {
    pub account: &'a str,
    pub endpoint: Option<&'a str>,
    pub conversation: Option<&'a str>,
}

impl Selection<'_> {
    fn matches(&self, data: &JobData) -> bool {
        data.account == self.account
            && self.endpoint.is_none_or(|e| data.endpoint == e)
            && self
                .conversation
                .is_none_or(|c| data.conversation.as_deref().unwrap_or("") == c)
    }
}

/// Pushes taken over from before a fork.
#[derive(Default)]
pub struct Salvage {
    pub ready: Vec<Tracked>,
    pub waiting: Vec<(Instant, Tracked)>,
    pub finals: Vec<FinalResult>,
}

pub struct State {
    pub ready: VecDeque<Tracked>,
    waiting: BinaryHeap<Waiting>,
    origins: Origins,
    in_flight: HashMap<u64, Flight>,
    /// In-flight requests that are stuck.
    pub stuck: usize,
    pub closed: bool,
    pub pool: Pool,
    seq: u64,
    /// When the scheduler looks next at the latest; `None` while it sleeps until told.
    timer_at: Option<Instant>,
    /// Whether the scheduler must be told to look earlier than it meant to.
    poke: bool,
}

fn result(job: &Tracked, outcome: Outcome, reason: Option<&str>, now: Instant) -> FinalResult {
    FinalResult {
        id: job.id,
        outcome,
        status: job.last_status,
        reason: reason
            .or(job.last_reason.as_deref())
            .unwrap_or_default()
            .to_owned(),
        attempts: job.attempts,
        elapsed: now.saturating_duration_since(job.data.accepted),
    }
}

/// The result of a push whose time ran out before its next attempt.
fn ran_out(job: &Tracked, now: Instant) -> FinalResult {
    if job.attempts == 0 {
        result(
            job,
            Outcome::Expired,
            Some("TTL ran out before it was sent"),
            now,
        )
    } else {
        result(job, Outcome::Failed, None, now)
    }
}

fn cancelled(job: &Tracked, now: Instant) -> FinalResult {
    result(job, Outcome::Cancelled, Some("cancelled"), now)
}

impl State {
    pub fn new(workers: usize) -> Self {
        Self {
            ready: VecDeque::new(),
            waiting: BinaryHeap::new(),
            origins: Origins::default(),
            in_flight: HashMap::new(),
            stuck: 0,
            closed: false,
            pool: Pool::new(workers),
            seq: 0,
            timer_at: None,
            poke: false,
        }
    }

    /// Pushes held and not in flight: what `queue_size` bounds.
    pub fn backlog(&self) -> usize {
        self.ready.len() + self.origins.parked() + self.waiting.len()
    }

    pub fn counts(&self) -> Counts {
        Counts {
            queued: self.ready.len(),
            parked: self.origins.parked(),
            waiting: self.waiting.len(),
            in_flight: self.in_flight.len(),
            stuck: self.stuck,
            workers: self.pool.live,
        }
    }

    /// Asks the scheduler to look at `at` at the latest.
    fn look_at(&mut self, at: Instant) {
        if self.timer_at.is_none_or(|t| t > at) {
            self.timer_at = Some(at);
            self.poke = true;
        }
    }

    /// Whether the scheduler must be notified (once).
    pub fn take_poke(&mut self) -> bool {
        std::mem::take(&mut self.poke)
    }

    /// The next push a worker may try now, if any. Pushes whose time ran out go to `finals`;
    /// pushes to a slow origin that is busy are parked.
    pub fn take(&mut self, now: Instant, finals: &mut Vec<FinalResult>) -> Option<Task> {
        while let Some(job) = self.ready.pop_front() {
            let Some(ttl) = job.ttl_left(now) else {
                finals.push(ran_out(&job, now));
                continue;
            };
            if self.origins.must_park(job.data.origin(), now) {
                if !job.data.now_or_never {
                    self.look_at(job.data.expires);
                }
                self.origins.park(job);
                continue;
            }
            self.origins.started(job.data.origin());
            let task = Task {
                id: job.id,
                data: Arc::clone(&job.data),
                ttl,
            };
            self.in_flight.insert(
                job.id,
                Flight {
                    job,
                    started: now,
                    stuck: false,
                    fate: Fate::Settle,
                },
            );
            self.look_at(now + STUCK_AFTER);
            return Some(task);
        }
        None
    }

    /// Settles an attempt: its final result, or a retry (`None` then, and when the push was
    /// exported or the sender closed meanwhile).
    pub fn finish(
        &mut self,
        id: u64,
        answer: Answer,
        now: Instant,
        jitter: f64,
    ) -> Option<FinalResult> {
        let Flight {
            mut job,
            stuck,
            fate,
            ..
        } = self.in_flight.remove(&id)?;
        if stuck {
            self.stuck -= 1;
        }
        let health = match answer.attempt {
            _ if answer.status.is_some() => Health::Answered,
            Attempt::Network { timed_out: true } => Health::TimedOut,
            _ => Health::Unknown,
        };
        let released = self.origins.finished(job.data.origin(), stuck, health, now);
        for parked in released.into_iter().rev() {
            self.ready.push_front(parked);
        }
        if answer.attempt != Attempt::NotSent {
            job.attempts = job.attempts.saturating_add(1);
        }
        job.last_status = answer.status;
        job.last_reason = Some(answer.reason);
        let retryable = answer.attempt.retryable();
        match fate {
            Fate::Forget => None,
            _ if retryable && self.closed => None,
            Fate::NoRetry if retryable => Some(cancelled(&job, now)),
            Fate::Settle if retryable => {
                let next = (!job.data.now_or_never)
                    .then(|| {
                        retry::next_attempt(
                            job.attempts,
                            answer.retry_after,
                            now,
                            job.data.expires,
                            jitter,
                        )
                    })
                    .flatten();
                match next {
                    Some(due) => {
                        self.wait(due, job);
                        None
                    }
                    None => Some(result(&job, Outcome::Failed, None, now)),
                }
            }
            _ => Some(result(&job, Outcome::of_last(answer.attempt), None, now)),
        }
    }

    fn wait(&mut self, due: Instant, job: Tracked) {
        self.seq += 1;
        self.look_at(due);
        self.waiting.push(Waiting {
            due,
            seq: self.seq,
            job,
        });
    }

    /// Moves the retries that are due to the queue; returns how many.
    pub fn due(&mut self, now: Instant) -> usize {
        let mut moved = 0;
        while self.waiting.peek().is_some_and(|w| w.due <= now) {
            if let Some(waiting) = self.waiting.pop() {
                self.ready.push_back(waiting.job);
                moved += 1;
            }
        }
        moved
    }

    /// Marks requests in flight for `STUCK_AFTER` as stuck, and their origins as slow.
    pub fn mark_stuck(&mut self, now: Instant) {
        for flight in self.in_flight.values_mut() {
            if !flight.stuck && now.saturating_duration_since(flight.started) >= STUCK_AFTER {
                flight.stuck = true;
                self.stuck += 1;
                self.origins.stuck(flight.job.data.origin());
            }
        }
    }

    /// Parked pushes whose time ran out, and origins with nothing left to remember.
    pub fn expire_parked(&mut self, now: Instant) -> Vec<FinalResult> {
        let expired = self
            .origins
            .take_parked_unless(|job| job.ttl_left(now).is_some());
        self.origins.forget_idle(now);
        expired.iter().map(|job| ran_out(job, now)).collect()
    }

    /// When the scheduler must look next: a retry due, a request becoming stuck, a parked push
    /// expiring, a slow origin's timeout lapsing.
    pub fn plan(&mut self, now: Instant) -> Option<Instant> {
        let retry = self.waiting.peek().map(|w| w.due);
        let stuck = self
            .in_flight
            .values()
            .filter(|f| !f.stuck)
            .map(|f| f.started + STUCK_AFTER)
            .min();
        let next = [
            retry,
            stuck,
            self.origins.first_parked_expiry(),
            self.origins.first_slow_lapse(now),
        ]
        .into_iter()
        .flatten()
        .min();
        self.timer_at = next;
        self.poke = false;
        next
    }

    /// Drops the selected pushes that are not in flight (each gets its `cancelled` result) and
    /// keeps those in flight from being retried. Returns the results.
    pub fn cancel(&mut self, selection: &Selection<'_>, now: Instant) -> Vec<FinalResult> {
        let mut dropped = Vec::new();
        let (gone, kept): (Vec<Tracked>, Vec<Tracked>) = self
            .ready
            .drain(..)
            .partition(|job| selection.matches(&job.data));
        self.ready = kept.into();
        dropped.extend(gone);
        let (gone, kept): (Vec<Waiting>, Vec<Waiting>) = std::mem::take(&mut self.waiting)
            .into_vec()
            .into_iter()
            .partition(|w| selection.matches(&w.job.data));
        self.waiting = kept.into();
        dropped.extend(gone.into_iter().map(|w| w.job));
        dropped.extend(
            self.origins
                .take_parked_unless(|job| !selection.matches(&job.data)),
        );
        for flight in self.in_flight.values_mut() {
            if flight.fate == Fate::Settle && selection.matches(&flight.job.data) {
                flight.fate = Fate::NoRetry;
            }
        }
        dropped.iter().map(|job| cancelled(job, now)).collect()
    }

    /// Takes every push that is not finished, in-flight ones included (their results will be
    /// discarded), for another sender to resume.
    pub fn export(&mut self) -> Vec<Tracked> {
        let mut jobs: Vec<Tracked> = self.ready.drain(..).collect();
        jobs.extend(self.origins.take_parked_unless(|_| false));
        jobs.extend(
            std::mem::take(&mut self.waiting)
                .into_sorted_vec()
                .into_iter()
                .rev()
                .map(|w| w.job),
        );
        for flight in self.in_flight.values_mut() {
            if flight.fate == Fate::Settle {
                flight.fate = Fate::Forget;
                jobs.push(flight.job.clone());
            }
        }
        jobs
    }

    /// Stops: drops what is not in flight, without results.
    pub fn close(&mut self) {
        self.closed = true;
        self.ready.clear();
        self.waiting.clear();
        self.origins.take_parked_unless(|_| false);
    }

    /// Everything this state held, for the sender that replaces it after a fork. Requests in
    /// flight died with their threads: those pushes are queued again.
    pub fn salvage(&mut self, now: Instant) -> Salvage {
        let mut salvage = Salvage::default();
        for (_, flight) in self.in_flight.drain() {
            match flight.fate {
                Fate::Settle => salvage.ready.push(flight.job),
                Fate::NoRetry => salvage.finals.push(cancelled(&flight.job, now)),
                Fate::Forget => {}
            }
        }
        salvage.ready.extend(self.ready.drain(..));
        salvage
            .ready
            .extend(self.origins.take_parked_unless(|_| false));
        salvage.waiting = std::mem::take(&mut self.waiting)
            .into_vec()
            .into_iter()
            .map(|w| (w.due, w.job))
            .collect();
        salvage
    }

    /// Takes over what `salvage` gave.
    pub fn restore(&mut self, ready: Vec<Tracked>, waiting: Vec<(Instant, Tracked)>) {
        self.ready.extend(ready);
        for (due, job) in waiting {
            self.wait(due, job);
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
