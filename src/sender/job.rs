//! A push as the sender keeps it: what does not change between attempts, shared with the
//! in-flight table, and the count of attempts so far.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limits::Urgency;
use crate::subscription::SubscriptionKeys;

/// What a push is, fixed when it is accepted.
pub struct JobData {
    pub account: String,
    pub endpoint: String,
    /// `scheme://host[:port]`: what slowness and parking are counted per.
    pub origin: Arc<str>,
    pub keys: SubscriptionKeys,
    /// The notification JSON, already within the size limit.
    pub payload: Vec<u8>,
    pub urgency: Option<Urgency>,
    pub conversation: Option<String>,
    pub expires: Instant,
    /// A TTL of 0 asks for delivery now or never: one attempt, whenever a worker takes it,
    /// with `TTL: 0`.
    pub now_or_never: bool,
    pub accepted: Instant,
}

/// A push waiting for its next attempt.
#[derive(Clone)]
pub struct Tracked {
    pub id: u64,
    pub data: Arc<JobData>,
    /// Requests made so far.
    pub attempts: u32,
    /// The last request's HTTP status and reason, for the final result.
    pub last_status: Option<u16>,
    pub last_reason: Option<String>,
}

impl Tracked {
    pub fn new(id: u64, data: JobData, attempts: u32) -> Self {
        Self {
            id,
            data: Arc::new(data),
            attempts,
            last_status: None,
            last_reason: None,
        }
    }

    /// The TTL to send if an attempt is made at `now`, or `None` when none may be made.
    pub fn ttl_left(&self, now: Instant) -> Option<Duration> {
        if self.data.now_or_never {
            return (self.attempts == 0).then_some(Duration::ZERO);
        }
        let left = self.data.expires.checked_duration_since(now)?;
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ttl: Duration, now_or_never: bool) -> Tracked {
        let now = Instant::now();
        let keys = SubscriptionKeys {
            p256dh: [4; 65],
            auth: [0; 16],
        };
        Tracked::new(
            1,
            JobData {
                account: "a@b".into(),
                endpoint: "https://p.example/x".into(),
                origin: Arc::from("https://p.example"),
                keys,
                payload: b"{}".to_vec(),
                urgency: None,
                conversation: None,
                expires: now + ttl,
                now_or_never,
                accepted: now,
            },
            0,
        )
    }

    #[test]
    fn ttl_left_runs_out() {
        let mut tracked = job(Duration::from_secs(10), false);
        let start = tracked.data.accepted;
        assert_eq!(tracked.ttl_left(start), Some(Duration::from_secs(10)));
        assert_eq!(
            tracked.ttl_left(start + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(tracked.ttl_left(start + Duration::from_secs(10)), None);
        tracked.attempts = 3;
        assert_eq!(tracked.ttl_left(start + Duration::from_secs(11)), None);
    }

    #[test]
    fn a_zero_ttl_gets_one_attempt() {
        let mut tracked = job(Duration::ZERO, true);
        let later = tracked.data.accepted + Duration::from_secs(1);
        assert_eq!(tracked.ttl_left(later), Some(Duration::ZERO));
        tracked.attempts = 1;
        assert_eq!(tracked.ttl_left(later), None);
    }
}
