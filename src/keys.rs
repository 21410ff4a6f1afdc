//! The VAPID key pair (RFC 8292): a P-256 key kept by the server, whose public half browsers
//! receive as `applicationServerKey`.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use p256::SecretKey;

use crate::b64;

/// Why key material was refused. Never carries the key itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("private key is not base64url")]
    NotBase64,
    #[error("private key has {0} bytes, expected 32")]
    WrongLength(usize),
    #[error("private key is not a valid P-256 scalar")]
    InvalidScalar,
    #[error("private key PEM could not be parsed (expected PKCS#8 or SEC1 P-256)")]
    InvalidPem,
    #[error("could not encode the private key")]
    Encoding,
    #[error("the system's random number generator failed")]
    Random,
}

/// A VAPID private key with its public point precomputed.
#[derive(Clone)]
pub struct VapidKey {
    secret: SecretKey,
    public_uncompressed: [u8; 65],
}

impl VapidKey {
    pub fn generate() -> Result<Self, KeyError> {
        // A random 32-byte string is a valid scalar except with negligible probability (zero or
        // above the group order); draw again in that case rather than bias the result.
        for _ in 0..8 {
            let mut raw = [0u8; 32];
            openssl::rand::rand_bytes(&mut raw).map_err(|_| KeyError::Random)?;
            if let Ok(key) = Self::from_scalar(&raw) {
                return Ok(key);
            }
        }
        Err(KeyError::Random)
    }

    pub fn from_scalar(raw: &[u8]) -> Result<Self, KeyError> {
        if raw.len() != 32 {
            return Err(KeyError::WrongLength(raw.len()));
        }
        let secret = SecretKey::from_slice(raw).map_err(|_| KeyError::InvalidScalar)?;
        Ok(Self::from_secret(secret))
    }

    /// Reads a PKCS#8 PEM, a SEC1 PEM or the base64url scalar.
    pub fn import(text: &str) -> Result<Self, KeyError> {
        let trimmed = text.trim();
        if trimmed.starts_with("-----BEGIN") {
            let secret = SecretKey::from_pkcs8_pem(trimmed)
                .or_else(|_| SecretKey::from_sec1_pem(trimmed))
                .map_err(|_| KeyError::InvalidPem)?;
            return Ok(Self::from_secret(secret));
        }
        let raw = b64::decode(trimmed).ok_or(KeyError::NotBase64)?;
        Self::from_scalar(&raw)
    }

    fn from_secret(secret: SecretKey) -> Self {
        let point = secret.public_key().to_encoded_point(false);
        let mut public_uncompressed = [0u8; 65];
        public_uncompressed.copy_from_slice(point.as_bytes());
        Self {
            secret,
            public_uncompressed,
        }
    }

    pub fn scalar(&self) -> [u8; 32] {
        self.secret.to_bytes().into()
    }

    pub fn scalar_b64(&self) -> String {
        b64::encode(&self.scalar())
    }

    pub fn public_uncompressed(&self) -> &[u8; 65] {
        &self.public_uncompressed
    }

    pub fn public_b64(&self) -> String {
        b64::encode(&self.public_uncompressed)
    }

    pub fn to_pkcs8_pem(&self) -> Result<String, KeyError> {
        self.secret
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|_| KeyError::Encoding)
    }
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public_b64())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_every_format() {
        let key = VapidKey::generate().expect("key");
        assert_eq!(key.public_uncompressed()[0], 4);
        let pem = key.to_pkcs8_pem().expect("pem");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let from_pem = VapidKey::import(&pem).expect("import pem");
        assert_eq!(from_pem.public_b64(), key.public_b64());
        let from_raw = VapidKey::import(&key.scalar_b64()).expect("import raw");
        assert_eq!(from_raw.scalar(), key.scalar());
    }

    #[test]
    fn refuses_bad_material() {
        assert_eq!(VapidKey::import("!!").unwrap_err(), KeyError::NotBase64);
        assert_eq!(
            VapidKey::import("AAEC").unwrap_err(),
            KeyError::WrongLength(3)
        );
        let zero = b64::encode(&[0u8; 32]);
        assert_eq!(
            VapidKey::import(&zero).unwrap_err(),
            KeyError::InvalidScalar
        );
        let above_order = b64::encode(&[0xffu8; 32]);
        assert_eq!(
            VapidKey::import(&above_order).unwrap_err(),
            KeyError::InvalidScalar
        );
        assert_eq!(
            VapidKey::import("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .unwrap_err(),
            KeyError::InvalidPem
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let key = VapidKey::generate().expect("key");
        let shown = format!("{key:?}");
        assert!(!shown.contains(&key.scalar_b64()));
    }
}
