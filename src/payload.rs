//! The notification JSON, kept within `limits::PAYLOAD` bytes. A long message body is cut at a
//! character boundary with an ellipsis rather than refused: the subscriber still learns that a
//! message came and how it starts.

use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::limits::PAYLOAD;

pub const ELLIPSIS: &str = "\u{2026}";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload too large ({0} bytes, at most {PAYLOAD})")]
    TooLarge(usize),
}

/// A notification as `push` takes it: JSON text, sent as it is, or a table's JSON value, which
/// gets its `tag` and is fitted when it is sent (by a worker, not on Prosody's thread).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Json(Vec<u8>),
    Value(Value),
}

impl Payload {
    /// The JSON to encrypt. `tag` is asked for only for a table.
    pub fn encode(&self, tag: impl FnOnce() -> String) -> Result<Cow<'_, [u8]>, PayloadError> {
        match self {
            Payload::Json(json) if json.len() <= PAYLOAD => Ok(Cow::Borrowed(json)),
            Payload::Json(json) => Err(PayloadError::TooLarge(json.len())),
            Payload::Value(value) => {
                let mut value = value.clone();
                set_tag(&mut value, &tag());
                fit(value, PAYLOAD).map(Cow::Owned)
            }
        }
    }
}

/// Where a cuttable string sits: a member of the top object, or of its `notification` object.
#[derive(Debug, Clone, Copy)]
enum Field {
    Top(&'static str),
    Notification(&'static str),
}

/// Cut first: the bodies (the same text twice when a declarative notification is sent).
const BODIES: [Field; 2] = [Field::Top("last-message-body"), Field::Notification("body")];
/// Cut as well when the bodies alone cannot make it fit: the title.
const BODIES_AND_TITLE: [Field; 3] = [
    Field::Top("last-message-body"),
    Field::Notification("body"),
    Field::Notification("title"),
];
/// Dropped when the bodies alone cannot make it fit.
const SENDER: &str = "last-message-sender";

fn slot(object: &mut Map<String, Value>, field: Field) -> Option<&mut Value> {
    match field {
        Field::Top(name) => object.get_mut(name),
        Field::Notification(name) => object.get_mut("notification")?.get_mut(name),
    }
}

/// Sets the opaque `tag` a service worker gives the notification (and the declarative
/// notification's own `tag`), so a newer push about a conversation replaces the older one.
pub fn set_tag(value: &mut Value, tag: &str) {
    if let Value::Object(object) = value {
        if let Some(Value::Object(notification)) = object.get_mut("notification") {
            notification.insert("tag".into(), Value::String(tag.into()));
        }
        object.insert("tag".into(), Value::String(tag.into()));
    }
}

/// The JSON encoding of `value` within `limit` bytes: bodies cut, then the sender dropped and
/// the title cut too; refused only when what remains is still too long.
pub fn fit(mut value: Value, limit: usize) -> Result<Vec<u8>, PayloadError> {
    let encoded = encode(&value);
    if encoded.len() <= limit {
        return Ok(encoded);
    }
    let full = encoded.len();
    let Value::Object(object) = &mut value else {
        return Err(PayloadError::TooLarge(full));
    };
    if let Some(fitted) = cut_to_fit(object, &BODIES, limit) {
        return Ok(fitted);
    }
    let had_sender = object.remove(SENDER).is_some();
    let has_title = slot(object, Field::Notification("title")).is_some_and(|v| v.is_string());
    if had_sender || has_title {
        if let Some(fitted) = cut_to_fit(object, &BODIES_AND_TITLE, limit) {
            return Ok(fitted);
        }
    }
    Err(PayloadError::TooLarge(full))
}

fn encode(value: &Value) -> Vec<u8> {
    // A `Value` always serialises: its map keys are strings and its numbers finite.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Cuts the strings at `fields` to one common length so the whole fits `limit`, longest kept
/// first. `None` (and `object` unchanged) when even cutting them to nothing is not enough.
fn cut_to_fit(object: &mut Map<String, Value>, fields: &[Field], limit: usize) -> Option<Vec<u8>> {
    let texts: Vec<(Field, String)> = fields
        .iter()
        .filter_map(|field| match slot(object, *field) {
            Some(Value::String(text)) => Some((*field, text.clone())),
            _ => None,
        })
        .collect();
    if texts.is_empty() {
        return None;
    }
    let full = encode(&Value::Object(object.clone())).len();
    let size_with = |keep: usize| -> usize {
        texts.iter().fold(full, |size, (_, text)| {
            size - escaped_len(text) + escaped_len(&cut(text, keep))
        })
    };
    if size_with(0) > limit {
        return None;
    }
    // The largest length that fits. The size is not quite monotonic in `keep` (an uncut short
    // text has no ellipsis), so only lengths that were tried and fit are kept.
    let (mut best, mut high) = (0, texts.iter().map(|(_, t)| t.len()).max().unwrap_or(0));
    let mut low = 1;
    while low <= high {
        let middle = low + (high - low) / 2;
        if size_with(middle) <= limit {
            best = middle;
            low = middle + 1;
        } else {
            high = middle - 1;
        }
    }
    for (field, text) in &texts {
        if let Some(value) = slot(object, *field) {
            *value = Value::String(cut(text, best));
        }
    }
    let fitted = encode(&Value::Object(object.clone()));
    (fitted.len() <= limit).then_some(fitted)
}

/// `text` itself when it is at most `keep` bytes long, else its longest prefix of at most
/// `keep` bytes that ends on a character boundary, and an ellipsis.
fn cut(text: &str, keep: usize) -> String {
    if text.len() <= keep {
        return text.to_owned();
    }
    let mut end = keep;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + ELLIPSIS.len());
    out.push_str(&text[..end]);
    out.push_str(ELLIPSIS);
    out
}

/// Bytes of `text` inside a JSON string as serde_json writes it (quotes not counted).
fn escaped_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c {
            '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fitted(value: Value) -> Value {
        let bytes = fit(value, PAYLOAD).expect("fits");
        assert!(bytes.len() <= PAYLOAD, "{} bytes", bytes.len());
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn escaped_length_matches_serde_json() {
        for text in [
            "plain",
            "quote \" backslash \\ slash /",
            "\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            "é😀…",
        ] {
            let encoded = serde_json::to_string(text).expect("json");
            assert_eq!(escaped_len(text) + 2, encoded.len(), "{text:?}");
        }
    }

    #[test]
    fn a_short_payload_is_left_alone() {
        let value = json!({"account": "juliet@capulet.lit", "last-message-body": "hi"});
        assert_eq!(fitted(value.clone()), value);
    }

    #[test]
    fn a_long_body_is_cut_at_a_character_boundary() {
        let body = "é".repeat(3000);
        let out = fitted(json!({"account": "a@b", "last-message-body": body}));
        let cut = out["last-message-body"].as_str().expect("body");
        assert!(cut.ends_with(ELLIPSIS));
        assert!(cut.trim_end_matches(ELLIPSIS).chars().all(|c| c == 'é'));
        // As long as it can be: one more character would not fit.
        let size = serde_json::to_vec(&out).expect("json").len();
        assert!(size > PAYLOAD - 2, "{size}");
    }

    #[test]
    fn escaped_characters_are_counted_as_written() {
        let body = "\"\u{1}".repeat(1000);
        let out = fitted(json!({"account": "a@b", "last-message-body": body}));
        assert!(out["last-message-body"]
            .as_str()
            .expect("body")
            .ends_with(ELLIPSIS));
    }

    #[test]
    fn the_declarative_body_is_cut_too() {
        let body = "x".repeat(2000);
        let out = fitted(json!({
            "account": "a@b", "last-message-body": body,
            "notification": {"title": "romeo@montague.lit", "body": body, "navigate": "https://chat.example/"}
        }));
        let top = out["last-message-body"].as_str().expect("body");
        let nested = out["notification"]["body"].as_str().expect("nested");
        assert_eq!(top, nested);
        assert!(top.ends_with(ELLIPSIS));
        assert_eq!(out["notification"]["title"], "romeo@montague.lit");
    }

    #[test]
    fn a_huge_sender_is_dropped_and_the_body_kept_as_far_as_it_fits() {
        let out = fitted(json!({
            "account": "a@b", "last-message-sender": "s".repeat(2990), "last-message-body": "hello"
        }));
        assert!(out.get(SENDER).is_none());
        assert_eq!(out["last-message-body"], "hello");
        let out = fitted(json!({
            "account": "a@b", "notification": {"title": "t".repeat(4000), "body": "b"}
        }));
        assert!(out["notification"]["title"]
            .as_str()
            .expect("title")
            .ends_with(ELLIPSIS));
    }

    #[test]
    fn refused_when_what_cannot_be_cut_is_too_long() {
        let account = "a".repeat(3100);
        assert!(matches!(
            fit(
                json!({"account": account, "last-message-body": "x"}),
                PAYLOAD
            ),
            Err(PayloadError::TooLarge(_))
        ));
        assert!(fit(json!("x".repeat(4000)), PAYLOAD).is_err());
    }

    #[test]
    fn the_tag_goes_to_both_levels() {
        let mut value = json!({"account": "a@b", "notification": {"title": "t"}});
        set_tag(&mut value, "T");
        assert_eq!(value["tag"], "T");
        assert_eq!(value["notification"]["tag"], "T");
        let mut value = json!({"account": "a@b"});
        set_tag(&mut value, "T");
        assert_eq!(value, json!({"account": "a@b", "tag": "T"}));
    }
}
