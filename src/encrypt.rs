//! RFC 8291 message encryption (`aes128gcm`, RFC 8188) for one subscription.
//!
//! The per-push work is one P-256 key generation, one ECDH, HKDF and AES-128-GCM, all through
//! OpenSSL (the fastest P-256 on this platform). The record layer is written here rather than
//! taken from `ece::encrypt` because that function always adds its own padding and picks salt and
//! sender key itself, so it can neither pad to our size buckets nor reproduce RFC 8291 Appendix A.
//! `decrypt` is the receiving side for tools and the Lua tests; the Rust tests check bodies with
//! `ece`, an implementation independent of this one.

use hkdf::Hkdf;
use openssl::bn::{BigNum, BigNumContext};
use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::Private;
use sha2::Sha256;
use std::sync::OnceLock;

use crate::subscription::{SubscriptionKeys, AUTH_LEN, P256DH_LEN};

/// RFC 8030 says push services must accept 4096 bytes of body; nothing we send is larger.
pub const MAX_BODY: usize = 4096;
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// The `rs` header field. Our single record is always shorter, which marks it as the last; 4096
/// is what browsers and RFC 8291's example use.
const RECORD_SIZE: u32 = 4096;
const HEADER_LEN: usize = SALT_LEN + 4 + 1 + P256DH_LEN;
/// Record contents (plaintext, delimiter, padding) are padded up to one of these sizes, so the
/// body's length tells an observer only which bucket the message fell into. The last bucket is
/// the largest record that keeps the body within `MAX_BODY`.
const RECORD_BUCKETS: [usize; 5] = [256, 512, 1024, 2048, MAX_BODY - HEADER_LEN - TAG_LEN];
/// The longest plaintext that fits (one byte of each record is the padding delimiter).
pub const MAX_PLAINTEXT: usize = MAX_BODY - HEADER_LEN - TAG_LEN - 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncryptError {
    #[error("payload too large ({0} bytes, at most {MAX_PLAINTEXT})")]
    TooLarge(usize),
    #[error("p256dh is not a point on the P-256 curve")]
    BadPublicKey,
    #[error("subscriber private key is invalid")]
    BadPrivateKey,
    #[error("body is not a valid aes128gcm message")]
    Decrypt,
    #[error("cryptographic library failure")]
    Crypto,
}

impl From<openssl::error::ErrorStack> for EncryptError {
    fn from(_: openssl::error::ErrorStack) -> Self {
        EncryptError::Crypto
    }
}

fn p256_group() -> Result<&'static EcGroup, EncryptError> {
    static GROUP: OnceLock<Option<EcGroup>> = OnceLock::new();
    GROUP
        .get_or_init(|| EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).ok())
        .as_ref()
        .ok_or(EncryptError::Crypto)
}

/// AES-128-GCM, looked up once: OpenSSL 3 otherwise finds the implementation by name on every
/// call.
fn aes_128_gcm() -> Result<&'static CipherRef, EncryptError> {
    static CIPHER: OnceLock<Option<Cipher>> = OnceLock::new();
    CIPHER
        .get_or_init(|| Cipher::fetch(None, "AES-128-GCM", None).ok())
        .as_deref()
        .ok_or(EncryptError::Crypto)
}

/// Zero padding, encrypted straight from here rather than from a padded copy of the record.
static PADDING: [u8; MAX_BODY] = [0; MAX_BODY];

/// The record size for a plaintext: the smallest bucket that holds it and its delimiter.
fn record_len_for(plaintext_len: usize) -> Result<usize, EncryptError> {
    RECORD_BUCKETS
        .iter()
        .copied()
        .find(|bucket| plaintext_len < *bucket)
        .ok_or(EncryptError::TooLarge(plaintext_len))
}

/// Encrypts `plaintext` for the subscription with a fresh sender key and salt.
pub fn encrypt(keys: &SubscriptionKeys, plaintext: &[u8]) -> Result<Vec<u8>, EncryptError> {
    let record_len = record_len_for(plaintext.len())?;
    let sender = EcKey::generate(p256_group()?)?;
    let mut salt = [0u8; SALT_LEN];
    openssl::rand::rand_bytes(&mut salt)?;
    encrypt_record(&sender, &salt, keys, plaintext, record_len)
}

/// The deterministic core: RFC 8291 section 3.4 key derivation and one RFC 8188 record of
/// `record_len` bytes of content (plaintext, the 0x02 delimiter, zero padding).
pub(crate) fn encrypt_record(
    sender: &EcKey<Private>,
    salt: &[u8; SALT_LEN],
    keys: &SubscriptionKeys,
    plaintext: &[u8],
    record_len: usize,
) -> Result<Vec<u8>, EncryptError> {
    if plaintext.len() + 1 > record_len || HEADER_LEN + record_len + TAG_LEN > MAX_BODY {
        return Err(EncryptError::TooLarge(plaintext.len()));
    }
    let group = p256_group()?;
    let mut ctx = BigNumContext::new()?;
    let ua_point = EcPoint::from_bytes(group, &keys.p256dh, &mut ctx)
        .map_err(|_| EncryptError::BadPublicKey)?;
    let as_public =
        sender
            .public_key()
            .to_bytes(group, PointConversionForm::UNCOMPRESSED, &mut ctx)?;

    // ECDH is the x coordinate of our scalar times their point: the very call OpenSSL's own
    // ECDH makes, without EVP's per-call export of both keys and full re-validation of the peer
    // (which doubled the cost of a push). oct2point has refused points off the curve, and P-256's
    // cofactor is 1, so no other check is needed.
    let ecdh_secret = shared_x(group, &ua_point, sender.private_key(), &mut ctx)?;

    let (cek, nonce) =
        derive_cek_and_nonce(&ecdh_secret, &keys.auth, &keys.p256dh, &as_public, salt)?;

    let mut body = Vec::with_capacity(HEADER_LEN + record_len + TAG_LEN + 16);
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(P256DH_LEN as u8);
    body.extend_from_slice(&as_public);
    // The record: plaintext, the 0x02 delimiter of the last record, zero padding.
    let mut aead = CipherCtx::new()?;
    aead.encrypt_init(Some(aes_128_gcm()?), Some(&cek), Some(&nonce))?;
    aead.cipher_update_vec(plaintext, &mut body)?;
    aead.cipher_update_vec(&[0x02], &mut body)?;
    aead.cipher_update_vec(&PADDING[..record_len - plaintext.len() - 1], &mut body)?;
    aead.cipher_final_vec(&mut body)?;
    let mut tag = [0u8; TAG_LEN];
    aead.tag(&mut tag)?;
    body.extend_from_slice(&tag);
    Ok(body)
}

fn derive_cek_and_nonce(
    ecdh_secret: &[u8],
    auth: &[u8; AUTH_LEN],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8; SALT_LEN],
) -> Result<([u8; 16], [u8; 12]), EncryptError> {
    let mut key_info = Vec::with_capacity(14 + 65 + 65);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public);
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), ecdh_secret)
        .expand(&key_info, &mut ikm)
        .map_err(|_| EncryptError::Crypto)?;

    let content = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    content
        .expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|_| EncryptError::Crypto)?;
    let mut nonce = [0u8; 12];
    content
        .expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|_| EncryptError::Crypto)?;
    Ok((cek, nonce))
}

/// Decrypts a one-record body as the subscriber would. `ua_private` is the subscriber's
/// 32-byte private scalar.
pub fn decrypt(ua_private: &[u8], auth: &[u8], body: &[u8]) -> Result<Vec<u8>, EncryptError> {
    let auth: &[u8; AUTH_LEN] = auth.try_into().map_err(|_| EncryptError::Decrypt)?;
    let ua_key = key_from_scalar(ua_private)?;
    if body.len() < HEADER_LEN + TAG_LEN || usize::from(body[SALT_LEN + 4]) != P256DH_LEN {
        return Err(EncryptError::Decrypt);
    }
    let salt: &[u8; SALT_LEN] = body[..SALT_LEN]
        .try_into()
        .map_err(|_| EncryptError::Decrypt)?;
    let record_size = u32::from_be_bytes(
        body[SALT_LEN..SALT_LEN + 4]
            .try_into()
            .map_err(|_| EncryptError::Decrypt)?,
    );
    let as_public = &body[SALT_LEN + 5..HEADER_LEN];
    let record = &body[HEADER_LEN..];
    if record.len() > record_size as usize {
        return Err(EncryptError::Decrypt);
    }
    let group = p256_group()?;
    let mut ctx = BigNumContext::new()?;
    let as_point =
        EcPoint::from_bytes(group, as_public, &mut ctx).map_err(|_| EncryptError::Decrypt)?;
    let ua_public =
        ua_key
            .public_key()
            .to_bytes(group, PointConversionForm::UNCOMPRESSED, &mut ctx)?;
    let ecdh_secret = shared_x(group, &as_point, ua_key.private_key(), &mut ctx)?;
    let (cek, nonce) = derive_cek_and_nonce(&ecdh_secret, auth, &ua_public, as_public, salt)?;

    let (ciphertext, tag) = record.split_at(record.len() - TAG_LEN);
    let mut aead = CipherCtx::new()?;
    aead.decrypt_init(Some(aes_128_gcm()?), Some(&cek), Some(&nonce))?;
    aead.set_tag(tag)?;
    let mut plain = Vec::with_capacity(ciphertext.len() + 16);
    aead.cipher_update_vec(ciphertext, &mut plain)?;
    aead.cipher_final_vec(&mut plain)
        .map_err(|_| EncryptError::Decrypt)?;
    // RFC 8188 section 2: padding is zeros after the delimiter, 0x02 in the last record.
    let end = plain
        .iter()
        .rposition(|&b| b != 0)
        .ok_or(EncryptError::Decrypt)?;
    if plain[end] != 0x02 {
        return Err(EncryptError::Decrypt);
    }
    plain.truncate(end);
    Ok(plain)
}

/// The x coordinate of `scalar` times `point`: the ECDH secret.
fn shared_x(
    group: &EcGroup,
    point: &EcPoint,
    scalar: &openssl::bn::BigNumRef,
    ctx: &mut BigNumContext,
) -> Result<Vec<u8>, EncryptError> {
    let mut shared = EcPoint::new(group)?;
    shared.mul2(group, point, scalar, ctx)?;
    let mut x = BigNum::new()?;
    let mut y = BigNum::new()?;
    shared.affine_coordinates(group, &mut x, &mut y, ctx)?;
    Ok(x.to_vec_padded(32)?)
}

/// A P-256 key from its private scalar (refused unless in 1..n-1).
pub(crate) fn key_from_scalar(scalar: &[u8]) -> Result<EcKey<Private>, EncryptError> {
    if scalar.len() != 32 || p256::SecretKey::from_slice(scalar).is_err() {
        return Err(EncryptError::BadPrivateKey);
    }
    let group = p256_group()?;
    let d = BigNum::from_slice(scalar)?;
    let mut ctx = BigNumContext::new()?;
    let mut public = EcPoint::new(group)?;
    public.mul_generator2(group, &d, &mut ctx)?;
    Ok(EcKey::from_private_components(group, &d, &public)?)
}

/// Looks up what every push needs once, so no thread ever waits on a first use (a fork could
/// otherwise leave it waiting for a thread that no longer exists).
pub fn warm_up() -> Result<(), EncryptError> {
    p256_group()?;
    aes_128_gcm()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;

    fn subscriber() -> (Vec<u8>, SubscriptionKeys) {
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).expect("scalar");
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let point = secret.public_key().to_encoded_point(false);
        let mut p256dh = [0u8; 65];
        p256dh.copy_from_slice(point.as_bytes());
        (
            secret.to_bytes().to_vec(),
            SubscriptionKeys {
                p256dh,
                auth: [9u8; 16],
            },
        )
    }

    #[test]
    fn round_trips_and_pads_to_buckets() {
        let (private, keys) = subscriber();
        for (len, body_len) in [
            (0, 256),
            (100, 256),
            (255, 256),
            (256, 512),
            (3000, MAX_BODY),
            (MAX_PLAINTEXT, MAX_BODY),
        ] {
            let plaintext = vec![b'x'; len];
            let body = encrypt(&keys, &plaintext).expect("encrypt");
            let expected = if body_len == MAX_BODY {
                MAX_BODY
            } else {
                HEADER_LEN + body_len + TAG_LEN
            };
            assert_eq!(body.len(), expected, "plaintext of {len} bytes");
            assert_eq!(
                decrypt(&private, &keys.auth, &body).expect("decrypt"),
                plaintext
            );
        }
    }

    #[test]
    fn refuses_what_cannot_fit() {
        let (_, keys) = subscriber();
        let err = encrypt(&keys, &vec![0u8; MAX_PLAINTEXT + 1]).unwrap_err();
        assert_eq!(err, EncryptError::TooLarge(MAX_PLAINTEXT + 1));
    }

    #[test]
    fn refuses_a_point_off_the_curve() {
        let (_, mut keys) = subscriber();
        keys.p256dh[64] ^= 1;
        assert_eq!(
            encrypt(&keys, b"{}").unwrap_err(),
            EncryptError::BadPublicKey
        );
    }

    #[test]
    fn decrypt_refuses_garbage_without_panicking() {
        let (private, keys) = subscriber();
        assert_eq!(
            decrypt(&private, &keys.auth, b"short").unwrap_err(),
            EncryptError::Decrypt
        );
        assert_eq!(
            decrypt(&[0u8; 32], &keys.auth, b"").unwrap_err(),
            EncryptError::BadPrivateKey
        );
        assert_eq!(
            decrypt(&[1u8; 5], &keys.auth, b"").unwrap_err(),
            EncryptError::BadPrivateKey
        );
        assert_eq!(
            decrypt(&private, &[0u8; 3], b"").unwrap_err(),
            EncryptError::Decrypt
        );
        let mut body = encrypt(&keys, b"{}").expect("encrypt");
        let last = body.len() - 1;
        body[last] ^= 1;
        assert_eq!(
            decrypt(&private, &keys.auth, &body).unwrap_err(),
            EncryptError::Decrypt
        );
    }

    /// RFC 8291 Appendix A, byte for byte: the same sender key and salt give the same body.
    #[test]
    fn reproduces_rfc8291_appendix_a() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../tests/vectors/rfc8291-appendix-a.json"))
                .expect("json");
        let field = |name: &str| b64::decode(vector[name].as_str().expect(name)).expect(name);
        let sender = key_from_scalar(&field("as_private")).expect("sender key");
        let salt: [u8; SALT_LEN] = field("salt").try_into().expect("salt");
        let keys = SubscriptionKeys {
            p256dh: field("ua_public").try_into().expect("ua_public"),
            auth: field("auth_secret").try_into().expect("auth"),
        };
        let plaintext = vector["plaintext_utf8"]
            .as_str()
            .expect("plaintext")
            .as_bytes();
        let body =
            encrypt_record(&sender, &salt, &keys, plaintext, plaintext.len() + 1).expect("encrypt");
        assert_eq!(b64::encode(&body), vector["body"].as_str().expect("body"));
        assert_eq!(
            decrypt(&field("ua_private"), &keys.auth, &body).expect("decrypt"),
            plaintext
        );
    }

    #[test]
    fn sender_key_helper_matches_public_point() {
        let scalar = b64::decode("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw").expect("b64");
        let key = key_from_scalar(&scalar).expect("key");
        let group = p256_group().expect("group");
        let mut ctx = BigNumContext::new().expect("ctx");
        let public = key
            .public_key()
            .to_bytes(group, PointConversionForm::UNCOMPRESSED, &mut ctx)
            .expect("bytes");
        assert_eq!(
            b64::encode(&public),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
        );
    }
}
