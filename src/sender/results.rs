//! Final results waiting for `drain`, and the socket that tells Prosody's event loop so. Results
//! wake the loop at most every `RESULT_BATCH` while pushes keep coming (the first after a quiet
//! spell at once): each wake-up costs Prosody's thread a pass through its loop and the module's
//! drain, and nothing about a result is urgent. A signaller thread signals what was held back,
//! so a held-back result never waits for a worker that is busy with a slow request.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;
use crate::outcome::Outcome;

const RESULT_BATCH: Duration = Duration::from_millis(5);

/// The one result of a push.
#[derive(Debug, Clone, PartialEq)]
pub struct FinalResult {
    pub id: u64,
    pub outcome: Outcome,
    /// The last HTTP status, if any request got an answer.
    pub status: Option<u16>,
    /// A short text for the log: never a key, the payload or the endpoint.
    pub reason: String,
    /// Requests made.
    pub attempts: u32,
    /// From `push` to this result.
    pub elapsed: Duration,
}

/// The socket pair: readable while results wait. It outlives the threads (it is the same
/// descriptor, with the same registration in Prosody's event loop, after a fork).
#[derive(Debug)]
pub struct WakeSocket {
    reader: UnixStream,
    writer: UnixStream,
}

impl WakeSocket {
    pub fn new() -> std::io::Result<Self> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Self { reader, writer })
    }

    pub fn fd(&self) -> RawFd {
        self.reader.as_raw_fd()
    }

    /// One byte is enough; when the socket is full it is readable already.
    fn raise(&self) {
        let _ = (&self.writer).write(&[1]);
    }

    fn clear(&self) {
        let mut scratch = [0u8; 256];
        loop {
            match (&self.reader).read(&mut scratch) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }
}

/// Results waiting for `drain`, and whether the socket already says so. Results that wait while
/// it does not are the signaller's to signal when their batch is due.
#[derive(Default)]
struct List {
    results: Vec<FinalResult>,
    signalled: bool,
    last_signal: Option<Instant>,
    closed: bool,
}

impl List {
    fn held_back(&self) -> bool {
        !self.signalled && !self.results.is_empty()
    }

    fn signal(&mut self, socket: &WakeSocket) {
        socket.raise();
        self.signalled = true;
        self.last_signal = Some(Instant::now());
    }
}

#[derive(Default)]
pub struct Results {
    list: Mutex<List>,
    held_back: Condvar,
}

impl Results {
    /// Results taken over from before a fork, signalled at once.
    pub fn with(results: Vec<FinalResult>, socket: &WakeSocket) -> Self {
        let this = Self::default();
        if !results.is_empty() {
            let mut list = lock(&this.list);
            list.results = results;
            list.signal(socket);
        }
        this
    }

    pub fn add(&self, socket: &WakeSocket, new: impl IntoIterator<Item = FinalResult>) {
        let mut list = lock(&self.list);
        // Results already held back mean the signaller already knows.
        let known = list.signalled || !list.results.is_empty();
        let before = list.results.len();
        list.results.extend(new);
        if known || list.results.len() == before {
            return;
        }
        // After close there is no signaller any more.
        let due = list.closed
            || list
                .last_signal
                .is_none_or(|last| last.elapsed() >= RESULT_BATCH);
        if due {
            list.signal(socket);
        } else {
            self.held_back.notify_one();
        }
    }

    /// Takes every waiting result and clears the socket. Never blocks.
    pub fn drain(&self, socket: &WakeSocket) -> Vec<FinalResult> {
        socket.clear();
        // After clearing the socket: a result added from here on raises it again.
        let mut list = lock(&self.list);
        list.signalled = false;
        std::mem::take(&mut list.results)
    }

    /// Whatever is waiting, if the lock is free (after a fork it may be held for ever by a
    /// thread that no longer exists).
    pub fn salvage(&self) -> Vec<FinalResult> {
        match self.list.try_lock() {
            Ok(mut list) => std::mem::take(&mut list.results),
            Err(_) => Vec::new(),
        }
    }

    /// The lock, held (for tests of fork safety).
    pub fn hold(&self) -> std::sync::MutexGuard<'_, impl Sized> {
        lock(&self.list)
    }

    /// The signaller leaves; what it was holding back is signalled now.
    pub fn close(&self, socket: &WakeSocket) {
        let mut list = lock(&self.list);
        list.closed = true;
        if list.held_back() {
            list.signal(socket);
        }
        drop(list);
        self.held_back.notify_all();
    }

    /// The signaller thread: signals held-back results when their batch is due.
    pub fn signaller(&self, socket: &WakeSocket) {
        let mut list = lock(&self.list);
        while !list.closed {
            let due = list
                .last_signal
                .map(|last| last + RESULT_BATCH)
                .filter(|_| list.held_back());
            list = match due {
                Some(due) if Instant::now() >= due => {
                    list.signal(socket);
                    continue;
                }
                Some(due) => self
                    .held_back
                    .wait_timeout(list, due.saturating_duration_since(Instant::now()))
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0),
                None => self
                    .held_back
                    .wait(list)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
        }
    }
}
