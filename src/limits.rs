//! The bounds of every option and argument, owned here. The Lua module reads them from
//! `web_push.limits` and clamps its options to them; `new_sender` and `push` refuse what is
//! outside (they validate, they do not clamp).

use std::time::Duration;

/// An inclusive range of allowed values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub name: &'static str,
    pub min: f64,
    pub max: f64,
}

impl Bound {
    pub fn contains(&self, value: f64) -> bool {
        (self.min..=self.max).contains(&value)
    }
}

pub const WORKERS: Bound = Bound {
    name: "workers",
    min: 1.0,
    max: 64.0,
};
pub const QUEUE_SIZE: Bound = Bound {
    name: "queue_size",
    min: 1.0,
    max: 1_000_000.0,
};
/// Seconds: the connect and whole-request deadline.
pub const TIMEOUT: Bound = Bound {
    name: "timeout",
    min: 0.1,
    max: 600.0,
};
/// Seconds a push service may keep a message (autopush clips to 30 days).
pub const TTL: Bound = Bound {
    name: "ttl",
    min: 0.0,
    max: 2_592_000.0,
};
/// Bytes of notification JSON: RFC 8030 promises 4096 bytes of body, but Firefox for Android
/// relays through a path of about 3 KB.
pub const PAYLOAD: usize = 3000;

/// When `push` is given no TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_WORKERS: usize = 2;
pub const DEFAULT_QUEUE_SIZE: usize = 1000;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A value outside its bound.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} must be between {} and {}", .0.name, .0.min, .0.max)]
pub struct OutOfBounds(pub Bound);

/// Checks `value` against `bound`.
pub fn check(bound: Bound, value: f64) -> Result<f64, OutOfBounds> {
    if bound.contains(value) {
        Ok(value)
    } else {
        Err(OutOfBounds(bound))
    }
}

/// RFC 8030 section 5.3, and the only spelling of its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    VeryLow,
    Low,
    Normal,
    High,
}

impl Urgency {
    pub const NAMES: &'static str = "very-low, low, normal or high";

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "very-low" => Some(Urgency::VeryLow),
            "low" => Some(Urgency::Low),
            "normal" => Some(Urgency::Normal),
            "high" => Some(Urgency::High),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::VeryLow => "very-low",
            Urgency::Low => "low",
            Urgency::Normal => "normal",
            Urgency::High => "high",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_named() {
        assert!(check(WORKERS, 1.0).is_ok());
        assert!(check(WORKERS, 64.0).is_ok());
        assert_eq!(
            check(WORKERS, 65.0).unwrap_err().to_string(),
            "workers must be between 1 and 64"
        );
        assert_eq!(
            check(TIMEOUT, 0.05).unwrap_err().to_string(),
            "timeout must be between 0.1 and 600"
        );
        assert!(check(TTL, 0.0).is_ok());
        assert!(check(TTL, f64::NAN).is_err());
    }

    #[test]
    fn urgency_names_round_trip() {
        for urgency in [
            Urgency::VeryLow,
            Urgency::Low,
            Urgency::Normal,
            Urgency::High,
        ] {
            assert_eq!(Urgency::parse(urgency.as_str()), Some(urgency));
        }
        assert_eq!(Urgency::parse("urgent"), None);
    }
}
