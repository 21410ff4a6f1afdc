//! VAPID tokens checked the way a push service checks them, by two verifiers that are not the
//! code that signs them: jwt-simple's ES256 and p256's ECDSA on the raw JWS.

use jwt_simple::prelude::{
    ECDSAP256PublicKeyLike, ES256PublicKey, NoCustomClaims, VerificationOptions,
};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use std::collections::HashSet;
use web_push::b64;
use web_push::clock::unix_now;
use web_push::keys::VapidKey;
use web_push::vapid::{VapidSigner, TOKEN_LIFETIME_SECS};

fn split(header: &str, public_b64: &str) -> (String, String) {
    let rest = header.strip_prefix("vapid t=").expect("scheme");
    let (token, key) = rest.split_once(", k=").expect("k parameter");
    assert_eq!(key, public_b64);
    (token.to_owned(), key.to_owned())
}

/// Verifies with p256 directly and returns the claims.
fn verify(header: &str, public_b64: &str) -> Result<serde_json::Value, &'static str> {
    let (token, key) = split(header, public_b64);
    let mut parts = token.split('.');
    let (head, claims, signature) = (
        parts.next().expect("header"),
        parts.next().expect("claims"),
        parts.next().expect("signature"),
    );
    assert!(parts.next().is_none());
    let jose: serde_json::Value =
        serde_json::from_slice(&b64::decode(head).expect("b64")).expect("json");
    assert_eq!(jose, serde_json::json!({"typ": "JWT", "alg": "ES256"}));
    let verifying_key =
        VerifyingKey::from_sec1_bytes(&b64::decode(&key).expect("b64")).expect("public key");
    let signature =
        Signature::from_slice(&b64::decode(signature).expect("b64")).expect("raw r||s signature");
    verifying_key
        .verify(format!("{head}.{claims}").as_bytes(), &signature)
        .map_err(|_| "bad signature")?;
    Ok(serde_json::from_slice(&b64::decode(claims).expect("b64")).expect("json"))
}

#[test]
fn token_verifies_with_the_right_claims() {
    let key = VapidKey::generate().expect("key");
    let signer = VapidSigner::new(&key, "mailto:admin@example.org").expect("signer");
    let before = unix_now();
    let header = signer
        .header_for("https://updates.push.services.mozilla.com")
        .expect("header");
    let claims = verify(&header, &key.public_b64()).expect("verifies");
    assert_eq!(claims["aud"], "https://updates.push.services.mozilla.com");
    assert_eq!(claims["sub"], "mailto:admin@example.org");
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp >= before + TOKEN_LIFETIME_SECS && exp <= unix_now() + TOKEN_LIFETIME_SECS);
    assert!(exp - before <= 24 * 3600, "Apple refuses more than a day");
}

#[test]
fn jwt_simple_accepts_the_token() {
    let key = VapidKey::generate().expect("key");
    let signer = VapidSigner::new(&key, "https://example.org").expect("signer");
    let header = signer
        .header_for("https://fcm.googleapis.com")
        .expect("header");
    let (token, public) = split(&header, &key.public_b64());
    let verifier =
        ES256PublicKey::from_bytes(&b64::decode(&public).expect("b64")).expect("public key");
    let options = VerificationOptions {
        allowed_audiences: Some(HashSet::from(["https://fcm.googleapis.com".to_owned()])),
        ..VerificationOptions::default()
    };
    let claims = verifier
        .verify_token::<NoCustomClaims>(&token, Some(options))
        .expect("jwt-simple verifies it");
    assert_eq!(claims.subject.as_deref(), Some("https://example.org"));
    let other = VapidKey::generate().expect("key");
    let wrong = ES256PublicKey::from_bytes(other.public_uncompressed()).expect("public key");
    assert!(wrong.verify_token::<NoCustomClaims>(&token, None).is_err());
}

#[test]
fn a_tampered_token_does_not_verify() {
    let key = VapidKey::generate().expect("key");
    let signer = VapidSigner::new(&key, "https://example.org").expect("signer");
    let header = signer
        .sign("https://fcm.googleapis.com", 1_000)
        .expect("header");
    assert!(verify(&header, &key.public_b64()).is_ok());
    // Another audience in the claims, the original signature: what a replay elsewhere would be.
    let (head, rest) = header.split_once('.').expect("dot");
    let (claims, signature) = rest.split_once('.').expect("dot");
    let decoded = String::from_utf8(b64::decode(claims).expect("b64")).expect("utf8");
    let forged = b64::encode(
        decoded
            .replace("fcm.googleapis.com", "evil.example")
            .as_bytes(),
    );
    let tampered = format!("{head}.{forged}.{signature}");
    assert_eq!(verify(&tampered, &key.public_b64()), Err("bad signature"));
}

#[test]
fn odd_subjects_are_escaped_as_json() {
    let key = VapidKey::generate().expect("key");
    let signer = VapidSigner::new(&key, "https://example.org/\"quoted\"").expect("signer");
    let header = signer
        .sign("https://push.example.net", 1_000)
        .expect("header");
    let claims = verify(&header, &key.public_b64()).expect("verifies");
    assert_eq!(claims["sub"], "https://example.org/\"quoted\"");
    assert_eq!(claims["exp"], 1_000 + TOKEN_LIFETIME_SECS);
}
