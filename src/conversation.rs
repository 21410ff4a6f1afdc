//! The Topic header and the payload's `tag`: keyed hashes of (endpoint, conversation). The same
//! for every push about one conversation to one subscription, so a newer notification replaces
//! an older one; different across subscriptions, so neither a push service nor a service worker
//! can link an account's subscriptions or learn who the conversation is with.

use std::fmt::Write;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::b64;
use crate::keys::VapidKey;

const KEY_INFO: &[u8] = b"mod_web_push conversation key";
const TOPIC_LABEL: &[u8] = b"topic\0";
const TAG_LABEL: &[u8] = b"tag\0";

/// Keyed by a key derived from the VAPID private key, so the hashes stay the same across
/// restarts and change when the key is rotated.
#[derive(Clone)]
pub struct ConversationHasher {
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for ConversationHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConversationHasher { .. }")
    }
}

impl ConversationHasher {
    pub fn new(key: &VapidKey) -> Self {
        let mut derived = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 8160, so expand cannot fail.
        let _ = Hkdf::<Sha256>::new(None, &key.scalar()).expand(KEY_INFO, &mut derived);
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(&derived)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { keyed }
    }

    fn digest(&self, label: &[u8], endpoint: &str, conversation: Option<&str>) -> [u8; 32] {
        // The keyed state is computed once; each hash starts from a copy of it.
        let mut mac = self.keyed.clone();
        mac.update(label);
        mac.update(&(endpoint.len() as u64).to_be_bytes());
        mac.update(endpoint.as_bytes());
        mac.update(conversation.unwrap_or("").as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// 32 characters of `[0-9a-f]`: what every push service accepts as a Topic.
    pub fn topic(&self, endpoint: &str, conversation: Option<&str>) -> String {
        let digest = self.digest(TOPIC_LABEL, endpoint, conversation);
        let mut topic = String::with_capacity(32);
        for byte in &digest[..16] {
            // Writing to a String cannot fail.
            let _ = write!(topic, "{byte:02x}");
        }
        topic
    }

    /// 22 characters of base64url.
    pub fn tag(&self, endpoint: &str, conversation: Option<&str>) -> String {
        let digest = self.digest(TAG_LABEL, endpoint, conversation);
        b64::encode(&digest[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_conversation_same_hash_and_nothing_shared_across_subscriptions() {
        let key = VapidKey::generate().expect("key");
        let hasher = ConversationHasher::new(&key);
        let (a, b) = ("https://push.example.net/a", "https://push.example.net/b");
        let topic = hasher.topic(a, Some("romeo@montague.lit"));
        assert_eq!(topic.len(), 32);
        assert!(topic.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(topic, hasher.topic(a, Some("romeo@montague.lit")));
        assert_ne!(topic, hasher.topic(b, Some("romeo@montague.lit")));
        assert_ne!(topic, hasher.topic(a, Some("tybalt@capulet.lit")));
        assert_eq!(hasher.topic(a, None), hasher.topic(a, Some("")));
        let tag = hasher.tag(a, Some("romeo@montague.lit"));
        assert_eq!(tag.len(), 22);
        assert!(!topic.starts_with(&tag[..8]));
        // Another key, other hashes; the same key again, the same hashes.
        let other = ConversationHasher::new(&VapidKey::generate().expect("key"));
        assert_ne!(topic, other.topic(a, Some("romeo@montague.lit")));
        let again = ConversationHasher::new(&VapidKey::from_scalar(&key.scalar()).expect("key"));
        assert_eq!(topic, again.topic(a, Some("romeo@montague.lit")));
    }

    #[test]
    fn the_boundary_between_endpoint_and_conversation_is_kept() {
        let hasher = ConversationHasher::new(&VapidKey::generate().expect("key"));
        assert_ne!(
            hasher.topic("https://p.example/ab", Some("c")),
            hasher.topic("https://p.example/a", Some("bc"))
        );
    }
}
