//! The sender: Prosody's thread queues a push and later collects its one final result; checks,
//! encryption, signing, HTTP and retries happen on the sender's own threads. A socket pair tells
//! Prosody's event loop when results are waiting.
//!
//! Parts: `state` (every push held, under one lock), `pool` (worker threads), `scheduler`
//! (retries, stuck requests, expiry), `origins` (slow push services), `results` (the result
//! list, its socket and signaller), `prepare` (encrypt and sign), `core` (one generation of
//! threads), `fork` (noticing that this process is a fork's child), `types` (what goes in and
//! out).

mod core;
mod fork;
mod job;
mod origins;
mod pool;
mod prepare;
mod results;
mod scheduler;
mod state;
mod types;

use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use self::core::{Core, Counters};
use self::results::WakeSocket;
use self::state::{Salvage, Selection};
use crate::clock::{Clock, SystemClock};
use crate::http::HttpClient;
use crate::limits;
use crate::payload::PayloadError;

pub use self::job::JobData;
pub use self::origins::STUCK_AFTER;
pub use self::pool::MAX_EXTRA_WORKERS;
pub use self::prepare::{Prepared, Preparer};
pub use self::results::FinalResult;
pub use self::types::{
    Counts, ExportedJob, HttpFactory, NewJob, Recipe, SenderConfig, SenderError, Stats,
};
pub use crate::payload::Payload;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked mid-job must not take the whole sender with it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct Sender {
    recipe: Recipe,
    /// Only the callers' threads touch this lock, never the sender's own threads.
    core: Mutex<Arc<Core>>,
    socket: Arc<WakeSocket>,
    counters: Arc<Counters>,
    next_id: AtomicU64,
    closed: AtomicBool,
    /// The process the threads run in, and how many forks it took to get there.
    pid: AtomicU32,
    forks_seen: AtomicU64,
    /// Whether the current core's threads run in this process (false only after a fork, until
    /// they are started again).
    native: AtomicBool,
}

fn check_config(config: &SenderConfig) -> Result<(), SenderError> {
    limits::check(limits::WORKERS, config.workers as f64)?;
    limits::check(limits::QUEUE_SIZE, config.queue_size as f64)?;
    limits::check(limits::TIMEOUT, config.timeout.as_secs_f64())?;
    Ok(())
}

impl Sender {
    pub fn start(config: SenderConfig) -> Result<Self, SenderError> {
        let (timeout, insecure) = (config.timeout, config.policy.allow_insecure);
        Self::start_with(
            config,
            Arc::new(SystemClock),
            Arc::new(move || HttpClient::new(timeout, insecure)),
        )
    }

    /// With another clock or HTTP client, for tests.
    pub fn start_with(
        config: SenderConfig,
        clock: Arc<dyn Clock>,
        http: HttpFactory,
    ) -> Result<Self, SenderError> {
        check_config(&config)?;
        fork::watch();
        let socket = Arc::new(WakeSocket::new().map_err(|_| SenderError::Wakeup)?);
        let counters = Arc::new(Counters::default());
        let recipe = Recipe {
            config,
            clock,
            http,
        };
        let core = Core::start(
            &recipe,
            Arc::clone(&counters),
            Arc::clone(&socket),
            Salvage::default(),
        )?;
        Ok(Self {
            recipe,
            core: Mutex::new(core),
            socket,
            counters,
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            pid: AtomicU32::new(std::process::id()),
            forks_seen: AtomicU64::new(fork::generation()),
            native: AtomicBool::new(true),
        })
    }

    /// The core whose threads run in this process: after a fork, a new one that took over what
    /// the old one held, as far as its locks were free. One atomic load unless there was a fork.
    fn core(&self) -> MutexGuard<'_, Arc<Core>> {
        let mut core = lock(&self.core);
        let generation = fork::generation();
        if generation != self.forks_seen.load(Ordering::Relaxed) {
            self.forks_seen.store(generation, Ordering::Relaxed);
            let pid = std::process::id();
            if pid != self.pid.load(Ordering::Relaxed) {
                self.pid.store(pid, Ordering::Relaxed);
                let restarted = !self.closed.load(Ordering::Relaxed) && self.restart(&mut core);
                self.native.store(restarted, Ordering::Relaxed);
            }
        }
        core
    }

    /// Whether the current core's threads run in this process.
    fn native(&self) -> bool {
        self.native.load(Ordering::Relaxed)
    }

    fn restart(&self, core: &mut Arc<Core>) -> bool {
        // A lock held at the fork by a thread that is gone stays held: never wait for one.
        let mut carried = match core.state.try_lock() {
            Ok(mut state) => state.salvage(self.recipe.clock.now()),
            Err(_) => Salvage::default(),
        };
        let mut finals = core.results.salvage();
        finals.append(&mut carried.finals);
        carried.finals = finals;
        match Core::start(
            &self.recipe,
            Arc::clone(&self.counters),
            Arc::clone(&self.socket),
            carried,
        ) {
            Ok(new) => {
                // The old core is never dropped for good: its vanished threads hold references.
                *core = new;
                self.counters.restarts.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }

    fn open_core(&self) -> Result<MutexGuard<'_, Arc<Core>>, SenderError> {
        let core = self.core();
        if self.closed.load(Ordering::Relaxed) {
            return Err(SenderError::Closed);
        }
        if !self.native() {
            return Err(SenderError::Spawn);
        }
        Ok(core)
    }

    /// Queues a push and returns its id at once; an endpoint the policy refuses gets its
    /// `refused` result.
    pub fn push(&self, job: NewJob) -> Result<u64, SenderError> {
        let core = self.open_core()?;
        limits::check(limits::TTL, job.ttl.as_secs_f64())?;
        // Text is checked now; a table is tagged and fitted by the worker that sends it.
        if let Payload::Json(json) = &job.payload {
            check_json_len(json)?;
        }
        self.accept(&core, job, 0)
    }

    /// Queues an exported push again, with the TTL it has left.
    pub fn resume(&self, job: ExportedJob) -> Result<u64, SenderError> {
        let core = self.open_core()?;
        check_json_len(&job.payload)?;
        let left = Duration::from_secs(job.expires).saturating_sub(self.recipe.clock.unix());
        if left.is_zero() {
            return Err(SenderError::Expired);
        }
        // No push has more left than the longest TTL: a job that says so (a hand-made one, a
        // clock set back) gets that much, and its expiry stays within what an Instant can hold.
        let left = left.min(Duration::from_secs_f64(limits::TTL.max));
        let again = NewJob {
            account: job.account,
            endpoint: job.endpoint,
            keys: job.keys,
            payload: Payload::Json(job.payload),
            ttl: left,
            urgency: job.urgency,
            conversation: job.conversation,
        };
        self.accept(&core, again, job.attempts)
    }

    fn accept(&self, core: &Core, job: NewJob, attempts: u32) -> Result<u64, SenderError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = JobData::new(job, self.recipe.clock.now());
        core.enqueue(job::Tracked::new(id, data, attempts))?;
        self.counters.pushed.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Drops every push of `account` (of that endpoint, of that conversation) that is not in
    /// flight; each gets its `cancelled` result. Those in flight are not retried. Returns how
    /// many were dropped.
    pub fn cancel(
        &self,
        account: &str,
        endpoint: Option<&str>,
        conversation: Option<&str>,
    ) -> usize {
        let Ok(core) = self.open_core() else {
            return 0;
        };
        let selection = Selection {
            account,
            endpoint,
            conversation,
        };
        let now = self.recipe.clock.now();
        let dropped = lock(&core.state).cancel(&selection, now);
        let count = dropped.len();
        core.results.add(&core.socket, dropped);
        count
    }

    /// Takes every waiting result and clears the wake-up socket. Never blocks.
    pub fn drain(&self) -> Vec<FinalResult> {
        let core = self.core();
        if !self.native() {
            return Vec::new();
        }
        core.results.drain(&self.socket)
    }

    /// Takes every push that is not finished and forgets it (results of those in flight are
    /// discarded).
    pub fn export(&self) -> Vec<ExportedJob> {
        let Ok(core) = self.open_core() else {
            return Vec::new();
        };
        let jobs = lock(&core.state).export();
        let (now, unix) = (self.recipe.clock.now(), self.recipe.clock.unix());
        jobs.into_iter()
            .filter_map(|job| {
                let data = &job.data;
                // A table that cannot be fitted would only ever be refused: it is not handed on.
                let payload = core.preparer.payload(data).ok()?.into_owned();
                let left = data.expires.saturating_duration_since(now);
                Some(ExportedJob {
                    account: data.account.clone(),
                    endpoint: data.endpoint.clone(),
                    keys: data.keys.clone(),
                    payload,
                    expires: (unix + left).as_secs(),
                    urgency: data.urgency,
                    conversation: data.conversation.clone(),
                    attempts: job.attempts,
                })
            })
            .collect()
    }

    /// Readable while results are waiting. The same descriptor for the sender's whole life.
    pub fn fd(&self) -> RawFd {
        let _core = self.core();
        self.socket.fd()
    }

    pub fn stats(&self) -> Stats {
        let core = self.core();
        let counts = if self.native() {
            lock(&core.state).counts()
        } else {
            Counts::default()
        };
        Stats {
            counts,
            pushed: self.counters.pushed.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
            wakeups: self.counters.wakeups.load(Ordering::Relaxed),
            restarts: self.counters.restarts.load(Ordering::Relaxed),
        }
    }

    /// Threads running now.
    pub fn live_workers(&self) -> usize {
        self.stats().counts.workers
    }

    /// Stops taking pushes, drops the waiting ones and lets the threads go. Returns the number
    /// of workers still finishing a request. Idempotent.
    pub fn close(&self) -> usize {
        // Marked closed first, so that a fork since the threads started does not start them
        // again just to stop them.
        let was_closed = self.closed.swap(true, Ordering::Relaxed);
        let core = self.core();
        if !self.native() {
            // This process has none of the threads, and the locks they held may stay held.
            return 0;
        }
        if was_closed {
            return lock(&core.state).pool.live;
        }
        core.close()
    }
}

impl Sender {
    /// For tests of fork safety only: holds the sender's locks from another thread for
    /// `duration`, as a worker would if a fork came at that moment.
    #[doc(hidden)]
    pub fn hold_locks_for_test(&self, duration: Duration) {
        let core = Arc::clone(&self.core());
        let (held, taken) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _state = lock(&core.state);
            let _results = core.results.hold();
            let _ = held.send(());
            std::thread::sleep(duration);
        });
        let _ = taken.recv();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.close();
    }
}

fn check_json_len(json: &[u8]) -> Result<(), SenderError> {
    if json.len() > limits::PAYLOAD {
        return Err(PayloadError::TooLarge(json.len()).into());
    }
    Ok(())
}
