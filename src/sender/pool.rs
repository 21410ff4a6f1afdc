//! The worker threads. Prosody's thread only queues a job; a worker takes it, prepares it, makes
//! the request and settles it. While jobs keep coming, one idle worker looks at the queue every
//! `POLL_INTERVAL` instead of sleeping until woken: waking a sleeping thread costs the waker
//! (Prosody's thread) a futex call and an inter-processor interrupt, more than the rest of a push
//! costs it. A burst wakes one worker, which wakes the others if the burst needs them.
//!
//! A stuck request (in flight longer than `origins::STUCK_AFTER`) stops counting against the
//! configured number of workers: the scheduler starts another thread for it, up to
//! `MAX_EXTRA_WORKERS`, and once the request ends one idle thread too many leaves by itself.
//! No thread is ever abandoned.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::core::Core;
use super::lock;
use super::state::Task;
use crate::http::{Answer, PushHeaders};
use crate::retry;

/// How many threads beyond the configured workers stuck requests may hold.
pub const MAX_EXTRA_WORKERS: usize = 32;
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How long after the last job the looking goes on; then idle workers sleep until woken, so an
/// idle server has no timer firing for us.
const POLL_LINGER: Duration = Duration::from_millis(100);

/// Who is awake, asleep or on the way. Lives in the state, under its lock.
pub struct Pool {
    /// How many threads should be free of stuck requests.
    pub workers: usize,
    /// Threads running now (busy, stuck or idle).
    pub live: usize,
    free_slots: Vec<usize>,
    /// Workers waiting until woken (their slot); a waker takes one out and sets its flag in
    /// `woken`, so no wake-up is lost or given twice.
    sleepers: Vec<usize>,
    woken: Vec<bool>,
    /// Woken workers that have not looked at the queue yet: one is already on its way.
    on_their_way: usize,
    /// Whether a worker will look at the queue again within `POLL_INTERVAL` by itself.
    polling: bool,
    last_job: Option<Instant>,
}

impl Pool {
    pub fn new(workers: usize) -> Self {
        let slots = workers + MAX_EXTRA_WORKERS;
        Self {
            workers,
            live: 0,
            free_slots: (0..slots).rev().collect(),
            sleepers: Vec::with_capacity(slots),
            woken: vec![false; slots],
            on_their_way: 0,
            polling: false,
            last_job: None,
        }
    }

    pub fn slots(&self) -> usize {
        self.woken.len()
    }

    /// Slots for the threads to start so that `workers` are free of the `stuck` requests.
    pub fn reserve(&mut self, stuck: usize) -> Vec<usize> {
        let wanted = (self.workers + stuck).min(self.slots());
        let mut slots = Vec::new();
        while self.live < wanted {
            let Some(slot) = self.free_slots.pop() else {
                break;
            };
            self.live += 1;
            slots.push(slot);
        }
        slots
    }

    /// A thread left, or never started.
    pub fn release(&mut self, slot: usize) {
        self.live -= 1;
        self.free_slots.push(slot);
    }

    /// Whether someone will look at the queue soon without being woken.
    pub fn someone_looking(&self) -> bool {
        self.polling || self.on_their_way > 0
    }

    /// Takes a sleeping worker off the list and marks it woken; the caller notifies it.
    pub fn wake_one(&mut self) -> Option<usize> {
        let slot = self.sleepers.pop()?;
        self.woken[slot] = true;
        self.on_their_way += 1;
        Some(slot)
    }
}

/// Starts a worker in `slot` (reserved with `Pool::reserve`); gives the slot back if the system
/// refuses a thread.
pub fn spawn(core: &Arc<Core>, slot: usize) -> bool {
    let shared = Arc::clone(core);
    let started = thread::Builder::new()
        .name(format!("web_push-{slot}"))
        .spawn(move || worker(shared, slot));
    if started.is_err() {
        lock(&core.state).pool.release(slot);
        core.workers_left.notify_all();
    }
    started.is_ok()
}

fn worker(core: Arc<Core>, slot: usize) {
    while let Some(task) = next_task(&core, slot) {
        // A panic in a dependency must cost one push, not a worker (and never reach Lua).
        let answer =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| attempt(&core, &task)))
                .unwrap_or_else(|_| Answer::not_sent("internal error while sending"));
        let jitter = if answer.attempt.retryable() {
            retry::jitter()
        } else {
            0.5
        };
        let now = core.clock.now();
        let (result, poke) = {
            let mut state = lock(&core.state);
            let result = state.finish(task.id, answer, now, jitter);
            (result, state.take_poke())
        };
        if poke {
            core.timer.notify_one();
        }
        if let Some(result) = result {
            core.results.add(&core.socket, [result]);
        }
    }
    lock(&core.state).pool.release(slot);
    core.workers_left.notify_all();
}

fn attempt(core: &Core, task: &Task) -> Answer {
    let prepared = match core.preparer.prepare(&task.data) {
        Ok(prepared) => prepared,
        Err(answer) => return answer,
    };
    let headers = PushHeaders {
        authorization: &prepared.authorization,
        ttl: task.ttl.as_secs(),
        urgency: task.data.urgency,
        topic: &prepared.topic,
    };
    core.http
        .post(&task.data.endpoint, &headers, &prepared.body)
}

/// Waits for the next job; `None` once the sender is closed or this thread is one too many.
fn next_task(core: &Core, slot: usize) -> Option<Task> {
    let mut state = lock(&core.state);
    loop {
        if state.closed || state.pool.live > state.pool.workers + state.stuck {
            return None;
        }
        let now = core.clock.now();
        let mut finals = Vec::new();
        let task = state.take(now, &mut finals);
        if task.is_some() {
            state.pool.last_job = Some(Instant::now());
            // A burst wakes the other workers from here, not from Prosody's thread.
            if !state.ready.is_empty() {
                if let Some(other) = state.pool.wake_one() {
                    core.wake[other].notify_one();
                }
            }
        }
        let poke = state.take_poke();
        if poke || !finals.is_empty() {
            drop(state);
            if poke {
                core.timer.notify_one();
            }
            core.results.add(&core.socket, finals);
            if task.is_some() {
                return task;
            }
            state = lock(&core.state);
            continue;
        }
        if task.is_some() {
            return task;
        }
        let recently_busy = state
            .pool
            .last_job
            .is_some_and(|last| last.elapsed() < POLL_LINGER);
        if recently_busy && !state.pool.polling {
            state.pool.polling = true;
            state = core.wake[slot]
                .wait_timeout(state, POLL_INTERVAL)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            state.pool.polling = false;
            continue;
        }
        state.pool.sleepers.push(slot);
        while !state.pool.woken[slot] && !state.closed {
            state = core.wake[slot]
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if state.pool.woken[slot] {
            state.pool.woken[slot] = false;
            state.pool.on_their_way -= 1;
        } else {
            state.pool.sleepers.retain(|&s| s != slot);
        }
    }
}
