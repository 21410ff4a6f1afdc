//! A browser's push subscription keys (`p256dh` and `auth` of `PushSubscription.getKey`), checked
//! before anything is stored or encrypted for them.

use crate::b64;

pub const P256DH_LEN: usize = 65;
pub const AUTH_LEN: usize = 16;

/// What is wrong with a subscription key. `field` is `"p256dh"` or `"auth"`.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum KeyMaterialError {
    #[error("{field} is missing")]
    Missing { field: &'static str },
    #[error("{field} is not base64url")]
    NotBase64 { field: &'static str },
    #[error("{field} has {got} bytes, expected {want}")]
    WrongLength {
        field: &'static str,
        got: usize,
        want: usize,
    },
    #[error("p256dh is not an uncompressed P-256 point")]
    NotUncompressed,
    #[error("p256dh is not a point on the P-256 curve")]
    NotOnCurve,
}

/// Decoded subscription keys. Holding one means the lengths are right; whether `p256dh` is on
/// the curve is checked by `check_point` (cheap to skip where it was checked before).
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriptionKeys {
    pub p256dh: [u8; P256DH_LEN],
    pub auth: [u8; AUTH_LEN],
}

impl std::fmt::Debug for SubscriptionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubscriptionKeys { .. }")
    }
}

fn decode_exact<const N: usize>(
    field: &'static str,
    text: &str,
) -> Result<[u8; N], KeyMaterialError> {
    if text.trim().is_empty() {
        return Err(KeyMaterialError::Missing { field });
    }
    // A base64 text far longer than the key cannot be right; refuse before decoding it.
    if text.len() > N * 2 + 8 {
        return Err(KeyMaterialError::WrongLength {
            field,
            got: text.len() * 3 / 4,
            want: N,
        });
    }
    let raw = b64::decode(text).ok_or(KeyMaterialError::NotBase64 { field })?;
    raw.as_slice()
        .try_into()
        .map_err(|_| KeyMaterialError::WrongLength {
            field,
            got: raw.len(),
            want: N,
        })
}

impl SubscriptionKeys {
    /// Decodes and checks lengths only: what the Lua thread can afford per push.
    pub fn decode(p256dh: &str, auth: &str) -> Result<Self, KeyMaterialError> {
        let p256dh = decode_exact::<P256DH_LEN>("p256dh", p256dh)?;
        let auth = decode_exact::<AUTH_LEN>("auth", auth)?;
        if p256dh[0] != 0x04 {
            return Err(KeyMaterialError::NotUncompressed);
        }
        Ok(Self { p256dh, auth })
    }

    /// Decodes and checks that `p256dh` is a point on P-256 (done once, at enable time).
    pub fn decode_and_check(p256dh: &str, auth: &str) -> Result<Self, KeyMaterialError> {
        let keys = Self::decode(p256dh, auth)?;
        keys.check_point()?;
        Ok(keys)
    }

    pub fn check_point(&self) -> Result<(), KeyMaterialError> {
        p256::PublicKey::from_sec1_bytes(&self.p256dh)
            .map(|_| ())
            .map_err(|_| KeyMaterialError::NotOnCurve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn accepts_a_real_subscription() {
        assert!(SubscriptionKeys::decode_and_check(UA_PUBLIC, AUTH).is_ok());
    }

    #[test]
    fn names_what_is_wrong() {
        let err = |p: &str, a: &str| {
            SubscriptionKeys::decode_and_check(p, a)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err("", AUTH), "p256dh is missing");
        assert_eq!(err("%%%", AUTH), "p256dh is not base64url");
        assert_eq!(err("AAAA", AUTH), "p256dh has 3 bytes, expected 65");
        assert_eq!(err(UA_PUBLIC, "AAAA"), "auth has 3 bytes, expected 16");
        assert_eq!(
            err(&"A".repeat(100_000), AUTH),
            "p256dh has 75000 bytes, expected 65"
        );
        let mut off_curve = b64::decode(UA_PUBLIC).unwrap();
        off_curve[40] ^= 1;
        assert_eq!(
            err(&b64::encode(&off_curve), AUTH),
            "p256dh is not a point on the P-256 curve"
        );
        let mut compressed_tag = b64::decode(UA_PUBLIC).unwrap();
        compressed_tag[0] = 2;
        assert_eq!(
            err(&b64::encode(&compressed_tag), AUTH),
            "p256dh is not an uncompressed P-256 point"
        );
    }
}
