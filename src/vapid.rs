//! VAPID (RFC 8292): an ES256 JWT naming the push service's origin, signed with the server's key.
//! Tokens are cached per audience so that signing is paid once per push service every few hours,
//! not once per push.

use jwt_simple::prelude::{
    Audiences, ECDSAP256KeyPairLike, ES256KeyPair, JWTClaims, NoCustomClaims, UnixTimeStamp,
};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::keys::VapidKey;

/// How far ahead `exp` is set. Apple refuses more than a day; half a day leaves room for clock
/// skew on either side.
pub const TOKEN_LIFETIME_SECS: u64 = 12 * 3600;
/// A cached token is replaced once it has this much life left, long before any push service
/// could consider it expired.
const REFRESH_WHEN_LEFT_SECS: u64 = 6 * 3600;
/// Audiences are chosen by whoever subscribes, so the cache is bounded.
const MAX_CACHED_AUDIENCES: usize = 512;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VapidError {
    #[error("subject must be a mailto: or https: URL")]
    BadSubject,
    #[error("signing failed")]
    Signing,
}

/// Checks a VAPID `sub`: push services (Apple's strictly) want a `mailto:` or `https:` URL, and
/// Apple refuses `mailto:` addresses at `localhost`.
pub fn check_subject(subject: &str) -> Result<(), VapidError> {
    let lower = subject.to_ascii_lowercase();
    let valid = if let Some(address) = lower.strip_prefix("mailto:") {
        match address.rsplit_once('@') {
            Some((local, domain)) => {
                !local.is_empty() && !domain.is_empty() && domain != "localhost"
            }
            None => false,
        }
    } else if let Some(rest) = lower.strip_prefix("https://") {
        !rest.is_empty()
    } else {
        false
    };
    if valid && !subject.chars().any(|c| c.is_control() || c == ' ') {
        Ok(())
    } else {
        Err(VapidError::BadSubject)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs VAPID tokens for one server key and subject.
pub struct VapidSigner {
    key_pair: ES256KeyPair,
    public_b64: String,
    subject: String,
    cache: Mutex<HashMap<String, CachedToken>>,
}

#[derive(Clone)]
struct CachedToken {
    header: String,
    expires_at: u64,
}

impl VapidSigner {
    pub fn new(key: &VapidKey, subject: &str) -> Result<Self, VapidError> {
        check_subject(subject)?;
        let key_pair = ES256KeyPair::from_bytes(&key.scalar()).map_err(|_| VapidError::Signing)?;
        Ok(Self {
            key_pair,
            public_b64: key.public_b64(),
            subject: subject.to_owned(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A fresh `Authorization` header value for `audience` (an origin), valid until `now + 12 h`.
    pub fn sign(&self, audience: &str, now: u64) -> Result<String, VapidError> {
        let claims: JWTClaims<NoCustomClaims> = JWTClaims {
            issued_at: None,
            expires_at: Some(UnixTimeStamp::from_secs(now + TOKEN_LIFETIME_SECS)),
            invalid_before: None,
            issuer: None,
            subject: Some(self.subject.clone()),
            audiences: Some(Audiences::AsString(audience.to_owned())),
            jwt_id: None,
            nonce: None,
            custom: NoCustomClaims {},
        };
        let token = self
            .key_pair
            .sign(claims)
            .map_err(|_| VapidError::Signing)?;
        Ok(format!("vapid t={token}, k={}", self.public_b64))
    }

    /// The cached header for `audience`, re-signed when it has less than six hours left.
    pub fn header_for(&self, audience: &str) -> Result<String, VapidError> {
        let now = unix_now();
        if let Some(hit) = self.cached(audience, now) {
            return Ok(hit);
        }
        // Signing happens outside the lock so that workers never wait on each other's ECDSA.
        let header = self.sign(audience, now)?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() >= MAX_CACHED_AUDIENCES {
            cache.retain(|_, token| token.expires_at > now + REFRESH_WHEN_LEFT_SECS);
            if cache.len() >= MAX_CACHED_AUDIENCES {
                cache.clear();
            }
        }
        cache.insert(
            audience.to_owned(),
            CachedToken {
                header: header.clone(),
                expires_at: now + TOKEN_LIFETIME_SECS,
            },
        );
        Ok(header)
    }

    fn cached(&self, audience: &str, now: u64) -> Option<String> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cache
            .get(audience)
            .filter(|token| token.expires_at > now + REFRESH_WHEN_LEFT_SECS)
            .map(|token| token.header.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_that_push_services_accept() {
        assert!(check_subject("mailto:admin@example.org").is_ok());
        assert!(check_subject("https://example.org").is_ok());
        for bad in [
            "admin@example.org",
            "mailto:admin@localhost",
            "mailto:",
            "http://example.org",
            "https://",
            "mailto:a b@example.org",
        ] {
            assert_eq!(check_subject(bad), Err(VapidError::BadSubject), "{bad}");
        }
    }

    #[test]
    fn caches_per_audience() {
        let key = VapidKey::generate().expect("key");
        let signer = VapidSigner::new(&key, "mailto:admin@example.org").expect("signer");
        let first = signer.header_for("https://push.example.net").expect("sign");
        let again = signer.header_for("https://push.example.net").expect("sign");
        let other = signer
            .header_for("https://other.example.net")
            .expect("sign");
        assert_eq!(first, again);
        assert_ne!(first, other);
        assert!(first.starts_with("vapid t="));
        assert!(first.ends_with(&format!(", k={}", key.public_b64())));
    }
}
