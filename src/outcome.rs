//! What became of a request, and of a push: the classes the sender and the Prosody module act on.

/// What one request to the push service gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx: the push service took it.
    Delivered,
    /// 404 or 410: the subscription no longer exists.
    Gone,
    /// 429, 5xx or WNS's throttling 406: try again later.
    Later,
    /// Any other answer: the push service refused this push.
    Refused,
    /// No answer: name lookup, connect, TLS, reset. `timed_out` when the deadline cut it off.
    Network { timed_out: bool },
    /// Not sent: the policy, the resolved address or the keys refused it.
    NotSent,
}

impl Attempt {
    pub fn from_status(status: u16) -> Self {
        match status {
            200..=299 => Attempt::Delivered,
            404 | 410 => Attempt::Gone,
            // WNS answers 406 when it throttles a sender: a "later", not a "never".
            406 | 429 | 500..=599 => Attempt::Later,
            // A redirect is not followed (it could point anywhere), so it is a refusal too.
            _ => Attempt::Refused,
        }
    }

    /// Whether another attempt may succeed where this one did not.
    pub fn retryable(self) -> bool {
        matches!(self, Attempt::Later | Attempt::Network { .. })
    }
}

/// The one result each push gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 404 or 410: forget the subscription.
    Gone,
    /// Refused by the push service, or every attempt failed until attempts or TTL ran out: an
    /// error of the subscription.
    Failed,
    /// The TTL ran out before any attempt was made: a backlog, not the subscription's fault.
    Expired,
    /// Refused before sending (policy, address, keys).
    Refused,
    /// Dropped by `cancel`.
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Gone => "gone",
            Outcome::Failed => "failed",
            Outcome::Expired => "expired",
            Outcome::Refused => "refused",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// The final outcome of a push whose last attempt gave `attempt` and which is not retried.
    pub fn of_last(attempt: Attempt) -> Self {
        match attempt {
            Attempt::Delivered => Outcome::Delivered,
            Attempt::Gone => Outcome::Gone,
            Attempt::NotSent => Outcome::Refused,
            Attempt::Later | Attempt::Refused | Attempt::Network { .. } => Outcome::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(Attempt::from_status(201), Attempt::Delivered);
        assert_eq!(Attempt::from_status(410), Attempt::Gone);
        assert_eq!(Attempt::from_status(404), Attempt::Gone);
        assert_eq!(Attempt::from_status(429), Attempt::Later);
        assert_eq!(Attempt::from_status(406), Attempt::Later);
        assert_eq!(Attempt::from_status(503), Attempt::Later);
        assert_eq!(Attempt::from_status(413), Attempt::Refused);
        assert_eq!(Attempt::from_status(301), Attempt::Refused);
        assert!(Attempt::Network { timed_out: true }.retryable());
        assert!(!Attempt::Refused.retryable());
        assert_eq!(Outcome::of_last(Attempt::Later), Outcome::Failed);
        assert_eq!(Outcome::of_last(Attempt::NotSent), Outcome::Refused);
    }
}
