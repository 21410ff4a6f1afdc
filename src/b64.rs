//! Base64url as Web Push uses it: written without padding, read leniently (padding and the
//! standard alphabet are accepted too, because browsers and libraries differ in what they emit).

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine;

/// Encodes bytes as base64url without padding.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url or standard base64, with or without padding. `None` when the text is not
/// base64 at all.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.trim().trim_end_matches('=');
    if trimmed.contains(['+', '/']) {
        STANDARD_NO_PAD.decode(trimmed).ok()
    } else {
        URL_SAFE_NO_PAD.decode(trimmed).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_alphabets_and_padding() {
        let bytes = [0xfb, 0xff, 0x01];
        assert_eq!(encode(&bytes), "-_8B");
        assert_eq!(decode("-_8B"), Some(bytes.to_vec()));
        assert_eq!(decode("+/8B"), Some(bytes.to_vec()));
        assert_eq!(decode("AQ=="), Some(vec![1]));
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode("-+"), None);
    }
}
