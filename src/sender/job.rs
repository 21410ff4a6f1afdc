//! A push as the sender keeps it: what does not change between attempts, shared with the
//! in-flight table, and the count of attempts so far.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::types::NewJob;
use crate::limits::Urgency;
use crate::payload::Payload;
use crate::subscription::SubscriptionKeys;

/// What a push is, fixed when it is accepted.
pub struct JobData {
    pub account: String,
    pub endpoint: String,
    pub keys: SubscriptionKeys,
    /// The notification: JSON text within the size limit, or a table's value to tag and fit.
    pub payload: Payload,
    pub urgency: Option<Urgency>,
    pub conversation: Option<String>,
    pub expires: Instant,
    /// A TTL of 0 asks for delivery now or never: one attempt, whenever a worker takes it,
    /// with `TTL: 0`.
    pub now_or_never: bool,
    pub accepted: Instant,
}

impl JobData {
    /// A push accepted at `now`, expiring when its TTL runs out.
    pub fn new(job: NewJob, now: Instant) -> Self {
        Self {
            account: job.account,
            endpoint: job.endpoint,
            keys: job.keys,
            payload: job.payload,
            urgency: job.urgency,
            conversation: job.conversation,
            expires: now + job.ttl,
            now_or_never: job.ttl.is_zero(),
            accepted: now,
        }
    }

    /// What slowness is counted per: the endpoint up to the end of its authority, as written
    /// (the policy, which parses it properly, runs when it is sent).
    pub fn origin(&self) -> &str {
        let endpoint = self.endpoint.as_str();
        let start = endpoint.find("://").map_or(0, |i| i + 3);
        let end = endpoint[start..]
            .find(['/', '?', '#'])
            .map_or(endpoint.len(), |i| start + i);
        &endpoint[..end]
    }
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

/// A push for the sender's unit tests: a `{}` payload to `endpoint`, accepted at `now`.
#[cfg(test)]
pub(crate) fn test_job(
    id: u64,
    account: &str,
    endpoint: &str,
    ttl: Duration,
    now: Instant,
) -> Tracked {
    let job = NewJob {
        account: account.into(),
        endpoint: endpoint.into(),
        keys: SubscriptionKeys {
            p256dh: [4; 65],
            auth: [0; 16],
        },
        payload: Payload::Json(b"{}".to_vec()),
        ttl,
        urgency: None,
        conversation: None,
    };
    Tracked::new(id, JobData::new(job, now), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(ttl: Duration) -> Tracked {
        test_job(1, "a@b", "https://p.example/x", ttl, Instant::now())
    }

    #[test]
    fn ttl_left_runs_out() {
        let mut tracked = job(Duration::from_secs(10));
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
    fn the_origin_is_the_endpoint_up_to_its_authority() {
        let mut tracked = job(Duration::from_secs(1));
        let data = Arc::get_mut(&mut tracked.data).expect("only owner");
        for (endpoint, origin) in [
            (
                "https://p.example:8443/wpush/v2/x",
                "https://p.example:8443",
            ),
            ("https://p.example?x", "https://p.example"),
            ("https://p.example", "https://p.example"),
            ("nonsense", "nonsense"),
        ] {
            data.endpoint = endpoint.into();
            assert_eq!(data.origin(), origin);
        }
    }

    #[test]
    fn a_zero_ttl_gets_one_attempt() {
        let mut tracked = job(Duration::ZERO);
        let later = tracked.data.accepted + Duration::from_secs(1);
        assert_eq!(tracked.ttl_left(later), Some(Duration::ZERO));
        tracked.attempts = 1;
        assert_eq!(tracked.ttl_left(later), None);
    }
}
