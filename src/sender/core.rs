//! One generation of the sender's threads and everything they share. A fork leaves a core
//! without its threads; the sender then starts a new core and takes over what the old one held.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::job::Tracked;
use super::prepare::Preparer;
use super::results::{Results, WakeSocket};
use super::state::{Salvage, State};
use super::{lock, pool, scheduler, Recipe, SenderError};
use crate::clock::Clock;
use crate::encrypt;
use crate::http::HttpClient;

/// How long `close` waits for idle workers to leave before it returns; busy ones leave when
/// their request ends (bounded by the request timeout), without holding up the caller.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Counts that outlive a core.
#[derive(Debug, Default)]
pub struct Counters {
    pub pushed: AtomicU64,
    /// Pushes refused because the queue was full.
    pub refused: AtomicU64,
    /// Pushes that had to wake a sleeping worker (each costs the caller a system call).
    pub wakeups: AtomicU64,
    /// Times the threads were brought back after a fork.
    pub restarts: AtomicU64,
}

pub struct Core {
    pub state: Mutex<State>,
    /// One per worker slot: each waits on its own, so a wake-up reaches the worker it was
    /// meant for.
    pub wake: Vec<Condvar>,
    /// The scheduler waits on this one.
    pub timer: Condvar,
    pub workers_left: Condvar,
    pub results: Results,
    pub socket: Arc<WakeSocket>,
    pub preparer: Preparer,
    pub http: HttpClient,
    pub clock: Arc<dyn Clock>,
    pub counters: Arc<Counters>,
    queue_size: usize,
}

fn spawn_named(name: &str, run: impl FnOnce() + Send + 'static) -> Result<(), SenderError> {
    thread::Builder::new()
        .name(name.into())
        .spawn(run)
        .map(|_| ())
        .map_err(|_| SenderError::Spawn)
}

impl Core {
    /// Starts the threads, with what an earlier core left (nothing, unless after a fork).
    pub fn start(
        recipe: &Recipe,
        counters: Arc<Counters>,
        socket: Arc<WakeSocket>,
        carried: Salvage,
    ) -> Result<Arc<Self>, SenderError> {
        // Looked up now, so no thread is ever the one that initialises them.
        encrypt::warm_up().map_err(|_| SenderError::Crypto)?;
        let config = &recipe.config;
        let preparer = Preparer::new(&config.key, &config.subject, config.policy.clone())?;
        let mut state = State::new(config.workers);
        state.restore(carried.ready, carried.waiting);
        let slots = state.pool.slots();
        let core = Arc::new(Core {
            state: Mutex::new(state),
            wake: (0..slots).map(|_| Condvar::new()).collect(),
            timer: Condvar::new(),
            workers_left: Condvar::new(),
            results: Results::with(carried.finals, &socket),
            socket,
            preparer,
            http: (recipe.http)(),
            clock: Arc::clone(&recipe.clock),
            counters,
            queue_size: config.queue_size,
        });
        // The workers first: the scheduler would otherwise start them itself.
        let slots = lock(&core.state).pool.reserve(0);
        for slot in slots {
            if !pool::spawn(&core, slot) {
                core.close();
                return Err(SenderError::Spawn);
            }
        }
        let signaller = Arc::clone(&core);
        let scheduler = Arc::clone(&core);
        let started = spawn_named("web_push-results", move || {
            signaller.results.signaller(&signaller.socket)
        })
        .and_then(|()| spawn_named("web_push-timer", move || scheduler::run(scheduler)));
        if let Err(error) = started {
            core.close();
            return Err(error);
        }
        Ok(core)
    }

    /// Queues a push for the workers. Runs on the caller's thread: one lock, rarely a wake-up.
    pub fn enqueue(&self, job: Tracked) -> Result<(), SenderError> {
        let mut state = lock(&self.state);
        if state.closed {
            return Err(SenderError::Closed);
        }
        if state.backlog() >= self.queue_size {
            drop(state);
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return Err(SenderError::QueueFull);
        }
        state.ready.push_back(job);
        // Only when no worker is polling or already on its way: a burst of pushes wakes one
        // worker, which wakes the others if the burst needs them.
        let woken = if state.pool.someone_looking() {
            None
        } else {
            state.pool.wake_one()
        };
        drop(state);
        if let Some(slot) = woken {
            self.counters.wakeups.fetch_add(1, Ordering::Relaxed);
            self.wake[slot].notify_one();
        }
        Ok(())
    }

    /// Stops taking jobs, drops the waiting ones and lets the threads go. Returns the number of
    /// workers still finishing a request.
    pub fn close(&self) -> usize {
        self.results.close(&self.socket);
        let mut state = lock(&self.state);
        state.close();
        for wake in &self.wake {
            wake.notify_all();
        }
        self.timer.notify_all();
        let deadline = Instant::now() + CLOSE_GRACE;
        while state.pool.live > state.counts().in_flight {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .workers_left
                .wait_timeout(state, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        state.pool.live
    }
}
