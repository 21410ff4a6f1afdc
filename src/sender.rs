//! The worker pool. Prosody's thread only queues a job and later collects results; encryption,
//! signing and HTTP run here. A socket pair tells Prosody's event loop when results are waiting.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::encrypt::{self, EncryptError};
use crate::endpoint::EndpointPolicy;
use crate::http::{Answer, HttpClient, PushHeaders, Urgency};
use crate::keys::VapidKey;
use crate::outcome::Outcome;
use crate::subscription::SubscriptionKeys;
use crate::vapid::{VapidError, VapidSigner};

pub const MAX_WORKERS: usize = 64;
pub const MAX_QUEUE: usize = 1_000_000;
/// How long `close` waits for idle workers to leave before it returns; busy ones leave when
/// their request ends (bounded by the request timeout), without holding up the caller.
const CLOSE_GRACE: Duration = Duration::from_millis(200);
/// While jobs keep coming, one idle worker looks at the queue this often instead of sleeping
/// until woken: waking a sleeping thread costs the waker (Prosody's thread) a futex call and an
/// inter-processor interrupt, ~11 µs on a VM, which is more than the rest of a push costs it.
/// The price is at most this much latency for a push that finds no worker awake.
const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// How long after the last job the looking goes on; then idle workers sleep until woken, so an
/// idle server has no timer firing for us.
const POLL_LINGER: Duration = Duration::from_millis(100);
/// Results wake Prosody's event loop at most this often while pushes keep coming (the first
/// after a quiet spell at once): each wake-up costs its thread a pass through the loop and
/// the module's drain, and nothing about a result is urgent.
const RESULT_BATCH: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SenderError {
    #[error("workers must be between 1 and {MAX_WORKERS}")]
    Workers,
    #[error("queue_size must be between 1 and {MAX_QUEUE}")]
    QueueSize,
    #[error("timeout must be between 0.1 and 600 seconds")]
    Timeout,
    #[error(transparent)]
    Vapid(#[from] VapidError),
    #[error("could not create the wake-up socket")]
    Wakeup,
    #[error("could not start a worker thread")]
    Spawn,
    #[error("queue full")]
    QueueFull,
    #[error("sender closed")]
    Closed,
}

pub struct SenderConfig {
    pub key: VapidKey,
    pub subject: String,
    pub workers: usize,
    pub queue_size: usize,
    pub timeout: Duration,
    pub policy: EndpointPolicy,
}

/// One notification to deliver.
pub struct Job {
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    pub payload: Vec<u8>,
    pub ttl: u32,
    pub urgency: Option<Urgency>,
    pub topic: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PushResult {
    pub id: u64,
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub retry_after: Option<u64>,
    pub reason: String,
    pub elapsed: Duration,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub queued: usize,
    pub in_flight: usize,
    pub pushed: u64,
    pub refused: u64,
    /// Pushes that had to wake a sleeping worker (each costs the caller a system call).
    pub wakeups: u64,
}

/// Results waiting for `drain`, and whether the wake-up socket already says so. Results that
/// wait while it does not are the signaller thread's to signal when it is time.
struct Results {
    list: Vec<PushResult>,
    signalled: bool,
    last_signal: Option<Instant>,
    closed: bool,
}

impl Results {
    fn held_back(&self) -> bool {
        !self.signalled && !self.list.is_empty()
    }
}

struct Queue {
    jobs: VecDeque<(u64, Instant, Job)>,
    closed: bool,
    in_flight: usize,
    live_workers: usize,
    /// Workers waiting until woken (their index); a waker takes one out and sets its flag in
    /// `woken`, so no wake-up is lost or given twice.
    sleepers: Vec<usize>,
    woken: Vec<bool>,
    /// Woken workers that have not looked at the queue yet: one is already on its way.
    on_their_way: usize,
    /// Whether a worker will look at the queue again within `POLL_INTERVAL` by itself (at most
    /// one does); while one does, nobody needs waking.
    polling: bool,
    last_job: Option<Instant>,
}

/// The part of a push that needs no network: check, encrypt, sign. Public for benchmarks,
/// which measure exactly the work a worker does per push.
pub struct Preparer {
    policy: EndpointPolicy,
    vapid: VapidSigner,
}

struct Shared {
    queue: Mutex<Queue>,
    /// One per worker: each waits on its own, so a wake-up reaches the worker it was meant for.
    wake: Vec<Condvar>,
    workers_left: Condvar,
    results: Mutex<Results>,
    results_deferred: Condvar,
    wake_reader: UnixStream,
    wake_writer: UnixStream,
    preparer: Preparer,
    http: HttpClient,
    queue_size: usize,
    pushed: AtomicU64,
    refused: AtomicU64,
    wakeups: AtomicU64,
}

pub struct Sender {
    shared: Arc<Shared>,
    next_id: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked mid-job must not take the whole sender with it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sender {
    pub fn start(config: SenderConfig) -> Result<Self, SenderError> {
        if !(1..=MAX_WORKERS).contains(&config.workers) {
            return Err(SenderError::Workers);
        }
        if !(1..=MAX_QUEUE).contains(&config.queue_size) {
            return Err(SenderError::QueueSize);
        }
        if config.timeout < Duration::from_millis(100) || config.timeout > Duration::from_secs(600)
        {
            return Err(SenderError::Timeout);
        }
        let http = HttpClient::new(config.timeout, config.policy.allow_insecure);
        Self::start_with_http(config, http)
    }

    /// With a given HTTP client, for tests that resolve names their own way.
    pub fn start_with_http(config: SenderConfig, http: HttpClient) -> Result<Self, SenderError> {
        let preparer = Preparer::new(&config.key, &config.subject, config.policy)?;
        let (wake_reader, wake_writer) = UnixStream::pair().map_err(|_| SenderError::Wakeup)?;
        wake_reader
            .set_nonblocking(true)
            .and_then(|()| wake_writer.set_nonblocking(true))
            .map_err(|_| SenderError::Wakeup)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                closed: false,
                in_flight: 0,
                live_workers: 0,
                sleepers: Vec::with_capacity(config.workers),
                woken: vec![false; config.workers],
                on_their_way: 0,
                polling: false,
                last_job: None,
            }),
            wake: (0..config.workers).map(|_| Condvar::new()).collect(),
            workers_left: Condvar::new(),
            results: Mutex::new(Results {
                list: Vec::new(),
                signalled: false,
                last_signal: None,
                closed: false,
            }),
            results_deferred: Condvar::new(),
            wake_reader,
            wake_writer,
            preparer,
            http,
            queue_size: config.queue_size,
            pushed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            wakeups: AtomicU64::new(0),
        });
        let sender = Sender {
            shared,
            next_id: AtomicU64::new(1),
        };
        let shared = Arc::clone(&sender.shared);
        let spawned = thread::Builder::new()
            .name("web_push-results".into())
            .spawn(move || signaller(shared));
        if spawned.is_err() {
            sender.close();
            return Err(SenderError::Spawn);
        }
        for index in 0..config.workers {
            let shared = Arc::clone(&sender.shared);
            lock(&sender.shared.queue).live_workers += 1;
            let spawned = thread::Builder::new()
                .name(format!("web_push-{index}"))
                .spawn(move || worker(shared, index));
            if spawned.is_err() {
                lock(&sender.shared.queue).live_workers -= 1;
                sender.close();
                return Err(SenderError::Spawn);
            }
        }
        Ok(sender)
    }

    /// Queues a job and returns its id at once.
    pub fn push(&self, job: Job) -> Result<u64, SenderError> {
        let mut queue = lock(&self.shared.queue);
        if queue.closed {
            return Err(SenderError::Closed);
        }
        if queue.jobs.len() >= self.shared.queue_size {
            drop(queue);
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            return Err(SenderError::QueueFull);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        queue.jobs.push_back((id, Instant::now(), job));
        // Only when no worker is polling or already on its way: a burst of pushes wakes one
        // worker, which wakes the others if the burst needs them.
        let woken = if queue.polling || queue.on_their_way > 0 {
            None
        } else {
            wake_one(&mut queue)
        };
        drop(queue);
        self.shared.pushed.fetch_add(1, Ordering::Relaxed);
        if let Some(index) = woken {
            self.shared.wakeups.fetch_add(1, Ordering::Relaxed);
            self.shared.wake[index].notify_one();
        }
        Ok(id)
    }

    /// Takes every waiting result and clears the wake-up socket. Never blocks.
    pub fn drain(&self) -> Vec<PushResult> {
        let mut scratch = [0u8; 256];
        let mut reader = &self.shared.wake_reader;
        loop {
            match reader.read(&mut scratch) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // After reading the socket: a result added from here on writes to it again.
        let mut results = lock(&self.shared.results);
        results.signalled = false;
        std::mem::take(&mut results.list)
    }

    /// Readable while results are waiting.
    pub fn fd(&self) -> RawFd {
        self.shared.wake_reader.as_raw_fd()
    }

    pub fn stats(&self) -> Stats {
        let queue = lock(&self.shared.queue);
        Stats {
            queued: queue.jobs.len(),
            in_flight: queue.in_flight,
            pushed: self.shared.pushed.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            wakeups: self.shared.wakeups.load(Ordering::Relaxed),
        }
    }

    pub fn live_workers(&self) -> usize {
        lock(&self.shared.queue).live_workers
    }

    /// Stops taking jobs, drops the waiting ones and lets the workers go. Returns the number of
    /// workers still finishing a request.
    pub fn close(&self) -> usize {
        {
            // The signaller leaves now: what it was holding back is signalled here.
            let mut results = lock(&self.shared.results);
            results.closed = true;
            if results.held_back() {
                signal(&self.shared, &mut results);
            }
        }
        self.shared.results_deferred.notify_all();
        let mut queue = lock(&self.shared.queue);
        queue.closed = true;
        queue.jobs.clear();
        for wake in &self.shared.wake {
            wake.notify_all();
        }
        let deadline = Instant::now() + CLOSE_GRACE;
        while queue.live_workers > queue.in_flight {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            queue = self
                .shared
                .workers_left
                .wait_timeout(queue, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
        queue.live_workers
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.close();
    }
}

fn worker(shared: Arc<Shared>, index: usize) {
    loop {
        let next = next_job(&shared, index);
        let Some((id, queued_at, job)) = next else {
            break;
        };
        // A panic in a dependency must cost one push, not a worker (and never reach Lua).
        let answer =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver(&shared, &job)))
                .unwrap_or_else(|_| refused("internal error while sending"));
        let result = PushResult {
            id,
            outcome: answer.outcome,
            status: answer.status,
            retry_after: answer.retry_after,
            reason: answer.reason,
            elapsed: queued_at.elapsed(),
        };
        add_result(&shared, result);
        let closed = {
            let mut queue = lock(&shared.queue);
            queue.in_flight -= 1;
            queue.closed
        };
        if closed {
            break;
        }
    }
    let mut queue = lock(&shared.queue);
    queue.live_workers -= 1;
    shared.workers_left.notify_all();
}

/// Makes the wake-up socket readable (one byte is enough; when it is full it already is).
fn signal(shared: &Shared, results: &mut Results) {
    let _ = (&shared.wake_writer).write(&[1]);
    results.signalled = true;
    results.last_signal = Some(Instant::now());
}

/// A result for `drain`: signalled at once after a quiet spell, else left to the signaller,
/// which signals `RESULT_BATCH` after the previous signal.
fn add_result(shared: &Shared, result: PushResult) {
    let mut results = lock(&shared.results);
    // Results already held back mean the signaller already knows.
    let known = results.signalled || !results.list.is_empty();
    results.list.push(result);
    if known {
        return;
    }
    // After close there is no signaller any more.
    let due = results.closed
        || results
            .last_signal
            .is_none_or(|last| last.elapsed() >= RESULT_BATCH);
    if due {
        signal(shared, &mut results);
    } else {
        shared.results_deferred.notify_one();
    }
}

/// The signaller thread: signals deferred results when their time comes, so that they never
/// wait for a worker (which may be busy with a slow request for up to the timeout).
fn signaller(shared: Arc<Shared>) {
    let mut results = lock(&shared.results);
    while !results.closed {
        let due = results
            .last_signal
            .map(|last| last + RESULT_BATCH)
            .filter(|_| results.held_back());
        results = match due {
            Some(due) if Instant::now() >= due => {
                signal(&shared, &mut results);
                continue;
            }
            Some(due) => shared
                .results_deferred
                .wait_timeout(results, due - Instant::now())
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0),
            None => shared
                .results_deferred
                .wait(results)
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
    }
}

/// Takes a sleeping worker off the list and marks it woken; the caller notifies it.
fn wake_one(queue: &mut Queue) -> Option<usize> {
    let index = queue.sleepers.pop()?;
    queue.woken[index] = true;
    queue.on_their_way += 1;
    Some(index)
}

/// Waits for the next job; `None` once the sender is closed.
fn next_job(shared: &Shared, index: usize) -> Option<(u64, Instant, Job)> {
    let mut queue = lock(&shared.queue);
    loop {
        if queue.closed {
            return None;
        }
        if let Some(job) = queue.jobs.pop_front() {
            queue.in_flight += 1;
            queue.last_job = Some(Instant::now());
            // A burst wakes the other workers from here, not from Prosody's thread.
            if !queue.jobs.is_empty() {
                if let Some(other) = wake_one(&mut queue) {
                    shared.wake[other].notify_one();
                }
            }
            return Some(job);
        }
        let recently_busy = queue
            .last_job
            .is_some_and(|last| last.elapsed() < POLL_LINGER);
        if recently_busy && !queue.polling {
            queue.polling = true;
            queue = shared.wake[index]
                .wait_timeout(queue, POLL_INTERVAL)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            queue.polling = false;
            continue;
        }
        queue.sleepers.push(index);
        while !queue.woken[index] && !queue.closed {
            queue = shared.wake[index]
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if queue.woken[index] {
            queue.woken[index] = false;
            queue.on_their_way -= 1;
        }
    }
}

fn refused(reason: impl Into<String>) -> Answer {
    Answer {
        outcome: Outcome::Rejected,
        status: None,
        retry_after: None,
        reason: reason.into(),
    }
}

fn deliver(shared: &Shared, job: &Job) -> Answer {
    let prepared = match shared.preparer.prepare(job) {
        Ok(prepared) => prepared,
        Err(answer) => return answer,
    };
    let headers = PushHeaders {
        authorization: &prepared.authorization,
        ttl: job.ttl,
        urgency: job.urgency,
        topic: job.topic.as_deref(),
    };
    shared.http.post(&job.endpoint, &headers, &prepared.body)
}

pub struct Prepared {
    pub body: Vec<u8>,
    pub authorization: String,
}

impl Preparer {
    pub fn new(key: &VapidKey, subject: &str, policy: EndpointPolicy) -> Result<Self, SenderError> {
        Ok(Self {
            policy,
            vapid: VapidSigner::new(key, subject)?,
        })
    }

    /// The endpoint is checked again here: the policy may have changed since it was stored.
    pub fn prepare(&self, job: &Job) -> Result<Prepared, Answer> {
        let endpoint = self
            .policy
            .check(&job.endpoint)
            .map_err(|error| refused(error.to_string()))?;
        let body = encrypt::encrypt(&job.keys, &job.payload).map_err(|error| match error {
            EncryptError::BadPublicKey => refused("p256dh is not a point on the P-256 curve"),
            other => refused(other.to_string()),
        })?;
        let authorization = self
            .vapid
            .header_for(&endpoint.origin)
            .map_err(|error| refused(error.to_string()))?;
        Ok(Prepared {
            body,
            authorization,
        })
    }
}
