//! Property tests over everything a client or a push service controls: no input may panic, and
//! every refusal is a value. `make test` runs 4,000 cases per property; for a longer
//! hunt: `PROPTEST_CASES=200000 cargo test --release --test fuzz`.

use proptest::prelude::*;
use web_push::b64;
use web_push::encrypt::{decrypt, encrypt, MAX_PLAINTEXT};
use web_push::endpoint::{is_public, EndpointPolicy};
use web_push::keys::VapidKey;
use web_push::limits::PAYLOAD;
use web_push::payload::fit;
use web_push::retry_after::parse_retry_after;
use web_push::subscription::SubscriptionKeys;
use web_push::vapid::check_subject;

const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
const UA_PUBLIC: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(4000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Strings shaped like what a client might send as an endpoint, garbage included.
fn endpoint_like() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(https?|ftp|HTTPS|)://[a-zA-Z0-9.\\[\\]:@%_-]{0,40}(/[ -~]{0,60})?",
        "https://[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(:[0-9]{1,6})?/x",
        "https://\\[[0-9a-fA-F:.]{0,45}\\](:[0-9]{1,5})?/",
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn endpoint_checks_never_panic(text in endpoint_like(), insecure in any::<bool>()) {
        let policy = EndpointPolicy { allow_insecure: insecure, hosts: Some(vec!["*.example.net".into()]) };
        if let Ok(endpoint) = policy.check(&text) {
            // Whatever passes has an origin without path and a host on the list.
            prop_assert!(endpoint.origin.starts_with("http"));
            prop_assert!(!endpoint.origin.ends_with('/'));
            prop_assert!(endpoint.host.ends_with(".example.net"));
        }
        let _ = EndpointPolicy::default().check(&text);
    }

    #[test]
    fn subscription_keys_never_panic(p256dh in any::<String>(), auth in any::<String>()) {
        let _ = SubscriptionKeys::decode_and_check(&p256dh, &auth);
    }

    #[test]
    fn base64_shaped_keys_never_panic(p256dh in "[A-Za-z0-9_-]{80,90}", auth in "[A-Za-z0-9_+/=-]{0,30}") {
        let _ = SubscriptionKeys::decode_and_check(&p256dh, &auth);
    }

    #[test]
    fn points_off_the_curve_are_refused(index in 1usize..65, flip in 1u8..=255) {
        let mut raw = b64::decode(UA_PUBLIC).expect("b64");
        raw[index] ^= flip;
        let keys = SubscriptionKeys::decode(&b64::encode(&raw), AUTH).expect("lengths are right");
        // A flipped coordinate byte almost never lands on the curve again; if it does, it is a
        // valid point and encryption must work for it.
        let encrypted = encrypt(&keys, b"payload").is_ok();
        prop_assert_eq!(keys.check_point().is_ok(), encrypted);
    }

    #[test]
    fn encryption_round_trips_any_payload(payload in proptest::collection::vec(any::<u8>(), 0..(MAX_PLAINTEXT + 200))) {
        let keys = SubscriptionKeys::decode(UA_PUBLIC, AUTH).expect("keys");
        match encrypt(&keys, &payload) {
            Ok(body) => {
                prop_assert!(body.len() <= 4096);
                let private = b64::decode(UA_PRIVATE).expect("b64");
                let auth = b64::decode(AUTH).expect("b64");
                let plaintext = decrypt(&private, &auth, &body).expect("decrypts");
                prop_assert_eq!(&plaintext[..payload.len()], &payload[..]);
            }
            Err(_) => prop_assert!(payload.len() > MAX_PLAINTEXT),
        }
    }

    #[test]
    fn decrypt_never_panics(body in proptest::collection::vec(any::<u8>(), 0..600), private in proptest::collection::vec(any::<u8>(), 0..40)) {
        let auth = b64::decode(AUTH).expect("b64");
        let _ = decrypt(&private, &auth, &body);
        let _ = decrypt(&b64::decode(UA_PRIVATE).expect("b64"), &auth, &body);
    }

    #[test]
    fn private_key_import_never_panics(text in any::<String>()) {
        let _ = VapidKey::import(&text);
        let _ = VapidKey::import(&format!("-----BEGIN PRIVATE KEY-----\n{text}\n-----END PRIVATE KEY-----"));
    }

    #[test]
    fn fitted_payloads_are_json_within_the_limit(
        body in any::<String>(),
        sender in proptest::option::of(any::<String>()),
        repeat in 0usize..800,
        declarative in any::<bool>(),
    ) {
        let body = body.repeat(repeat.min(4000 / (body.len() + 1)) + 1);
        let mut value = serde_json::json!({"account": "juliet@capulet.lit", "last-message-body": body});
        if let Some(sender) = sender {
            value["last-message-sender"] = sender.into();
        }
        if declarative {
            value["notification"] = serde_json::json!({"title": "romeo@montague.lit", "body": body});
        }
        let fitted = fit(value, PAYLOAD).expect("only bodies, a sender and a title are long");
        prop_assert!(fitted.len() <= PAYLOAD);
        let parsed: serde_json::Value = serde_json::from_slice(&fitted).expect("json");
        let kept = parsed["last-message-body"].as_str().expect("body");
        let kept = kept.strip_suffix(web_push::payload::ELLIPSIS).unwrap_or(kept);
        prop_assert!(body.starts_with(kept));
    }

    #[test]
    fn small_inputs_never_panic(text in any::<String>(), now in any::<u64>(), octets in any::<[u8; 16]>()) {
        let _ = parse_retry_after(&text, now);
        let _ = check_subject(&text);
        let _ = is_public(std::net::IpAddr::from(octets));
    }
}
