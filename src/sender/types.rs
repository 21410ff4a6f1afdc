//! What the sender takes and gives: its configuration, new and exported pushes, statistics
//! and errors.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::endpoint::EndpointPolicy;
use crate::http::HttpClient;
use crate::keys::VapidKey;
use crate::limits::{OutOfBounds, Urgency};
use crate::payload::{Payload, PayloadError};
use crate::subscription::SubscriptionKeys;
use crate::vapid::VapidError;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SenderError {
    #[error(transparent)]
    Bounds(#[from] OutOfBounds),
    #[error(transparent)]
    Vapid(#[from] VapidError),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("could not create the wake-up socket")]
    Wakeup,
    #[error("could not start a thread")]
    Spawn,
    #[error("cryptographic library failure")]
    Crypto,
    #[error("queue full")]
    QueueFull,
    #[error("sender closed")]
    Closed,
    #[error("expired")]
    Expired,
}

/// What `new_sender` is given.
#[derive(Clone)]
pub struct SenderConfig {
    pub key: VapidKey,
    pub subject: String,
    pub workers: usize,
    pub queue_size: usize,
    /// The deadline of each request, from connect to the last byte of the answer.
    pub timeout: Duration,
    pub policy: EndpointPolicy,
}

/// Makes the HTTP client of each core (a fork needs a new one: the old one's locks may be held
/// by threads that no longer exist).
pub type HttpFactory = Arc<dyn Fn() -> HttpClient + Send + Sync>;

/// Everything needed to start (and after a fork, start again) the threads.
pub struct Recipe {
    pub config: SenderConfig,
    pub clock: Arc<dyn Clock>,
    pub http: HttpFactory,
}

/// A new push.
pub struct NewJob {
    pub account: String,
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    pub payload: Payload,
    pub ttl: Duration,
    pub urgency: Option<Urgency>,
    pub conversation: Option<String>,
}

/// A push handed over by `export`, for `resume` in this or another sender.
#[derive(Clone, PartialEq, Eq)]
pub struct ExportedJob {
    pub account: String,
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// The notification JSON as it would have been sent.
    pub payload: Vec<u8>,
    /// Unix seconds.
    pub expires: u64,
    pub urgency: Option<Urgency>,
    pub conversation: Option<String>,
    pub attempts: u32,
}

impl std::fmt::Debug for ExportedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedJob")
            .field("expires", &self.expires)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The pushes the sender holds and the threads it runs, now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Ready for a worker.
    pub queued: usize,
    /// Parked behind a slow origin's request.
    pub parked: usize,
    /// Waiting for a retry.
    pub waiting: usize,
    pub in_flight: usize,
    /// Of those in flight, the stuck ones.
    pub stuck: usize,
    /// Threads running now.
    pub workers: usize,
}

/// What `stats` tells: the counts now, and totals since the sender started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub counts: Counts,
    /// Pushes accepted.
    pub pushed: u64,
    /// Pushes refused because the queue was full.
    pub refused: u64,
    /// Pushes that had to wake a sleeping worker.
    pub wakeups: u64,
    /// Times the threads were brought back after a fork.
    pub restarts: u64,
}
