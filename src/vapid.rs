//! VAPID (RFC 8292): an ES256 JWT naming the push service's origin, signed with the server's key.
//! Tokens are cached per audience so that signing is paid once per push service every few hours,
//! not once per push.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use std::collections::HashMap;
use std::sync::Mutex;

use crate::b64;
use crate::clock::unix_now;
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

/// The JOSE header of every token, base64url.
fn jose_header() -> &'static str {
    static HEADER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HEADER.get_or_init(|| b64::encode(br#"{"typ":"JWT","alg":"ES256"}"#))
}

/// Signs VAPID tokens for one server key and subject.
pub struct VapidSigner {
    signing_key: SigningKey,
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
        let signing_key = SigningKey::from_slice(&key.scalar()).map_err(|_| VapidError::Signing)?;
        Ok(Self {
            signing_key,
            public_b64: key.public_b64(),
            subject: subject.to_owned(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A fresh `Authorization` header value for `audience` (an origin), valid until `now + 12 h`.
    pub fn sign(&self, audience: &str, now: u64) -> Result<String, VapidError> {
        let claims = serde_json::json!({
            "aud": audience,
            "exp": now.saturating_add(TOKEN_LIFETIME_SECS),
            "sub": self.subject,
        });
        let claims = serde_json::to_vec(&claims).map_err(|_| VapidError::Signing)?;
        let signing_input = format!("{}.{}", jose_header(), b64::encode(&claims));
        // RFC 7518 section 3.4: ES256 is the 64-byte R || S, not DER. Deterministic nonces
        // (RFC 6979), so no random number generator is involved.
        let signature: Signature = self.signing_key.sign(signing_input.as_bytes());
        let token = format!("{signing_input}.{}", b64::encode(&signature.to_bytes()));
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
    fn the_expiry_of_a_far_now_saturates() {
        let key = VapidKey::generate().expect("key");
        let signer = VapidSigner::new(&key, "mailto:admin@example.org").expect("signer");
        let header = signer
            .sign("https://push.example.net", u64::MAX)
            .expect("sign");
        let token = header.strip_prefix("vapid t=").expect("token");
        let claims = token.split('.').nth(1).expect("claims");
        let claims: serde_json::Value =
            serde_json::from_slice(&b64::decode(claims).expect("b64")).expect("json");
        assert_eq!(claims["exp"], u64::MAX);
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
