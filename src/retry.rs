//! When a push that failed for now is tried again: exponential backoff with jitter, at least what
//! the push service asked for, at most `MAX_ATTEMPTS` attempts, and never past the push's expiry.

use std::time::{Duration, Instant};

pub const MAX_ATTEMPTS: u32 = 10;
const FIRST_DELAY: Duration = Duration::from_secs(1);
const MAX_DELAY: Duration = Duration::from_secs(600);
/// A retry is made only if it can still give the push service this much TTL.
pub const MIN_TTL_LEFT: Duration = Duration::from_secs(1);

/// The wait after the `attempts`-th attempt: 1 s doubling up to 10 minutes, times a factor
/// between 0.5 and 1 (`jitter` in [0, 1]) so that pushes failed together do not retry together.
pub fn backoff(attempts: u32, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    let full = (FIRST_DELAY * (1u32 << doublings)).min(MAX_DELAY);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// When to try again after `attempts` attempts, or `None` when the push has had its chances.
pub fn next_attempt(
    attempts: u32,
    retry_after: Option<Duration>,
    now: Instant,
    expires: Instant,
    jitter: f64,
) -> Option<Instant> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let wait = backoff(attempts, jitter).max(retry_after.unwrap_or(Duration::ZERO));
    let at = now.checked_add(wait)?;
    (expires.checked_duration_since(at)? >= MIN_TTL_LEFT).then_some(at)
}

/// A number in [0, 1) for the jitter, from OpenSSL's generator (0.5 if it fails: a retry is
/// still made, just without spreading).
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    match openssl::rand::rand_bytes(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_from_one_second_to_ten_minutes() {
        let full: Vec<u64> = (1..=12).map(|n| backoff(n, 1.0).as_secs()).collect();
        assert_eq!(full, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(40, 0.0), S(300));
    }

    #[test]
    fn honours_retry_after_attempts_and_expiry() {
        let now = Instant::now();
        let day = now + S(86_400);
        assert_eq!(next_attempt(1, None, now, day, 1.0), Some(now + S(1)));
        assert_eq!(
            next_attempt(1, Some(S(120)), now, day, 1.0),
            Some(now + S(120))
        );
        assert_eq!(next_attempt(3, Some(S(1)), now, day, 1.0), Some(now + S(4)));
        assert_eq!(
            next_attempt(MAX_ATTEMPTS - 1, None, now, day, 1.0),
            Some(now + S(256))
        );
        assert_eq!(next_attempt(MAX_ATTEMPTS, None, now, day, 1.0), None);
        // The retry must leave at least a second of TTL.
        assert_eq!(
            next_attempt(1, None, now, now + S(2), 1.0),
            Some(now + S(1))
        );
        assert_eq!(next_attempt(2, None, now, now + S(2), 1.0), None);
        assert_eq!(next_attempt(1, Some(S(60)), now, now + S(30), 0.0), None);
    }

    #[test]
    fn jitter_is_a_fraction() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
