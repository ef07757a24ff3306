//! Serde adapter for a JSON value stored as its JSON text inside a
//! MessagePack record (`#[serde(with = "crate::db::json_text")]`).
//!
//! The record holds the text as a MessagePack string, so the stored bytes
//! are those of a `String` field; decoding parses it, and text that is not
//! JSON fails the record's decode, which the database reports as its
//! `Corrupt` error. Readers above `db` get a [`serde_json::Value`] and never
//! parse stored text themselves.
//!
//! Who may import this: the databases (`db::*`).

use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;

/// Writes `value` as its compact JSON text.
///
/// Errors: none of its own (the serializer's).
pub fn serialize<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_string())
}

/// Reads JSON text back into a value.
///
/// Errors: the deserializer's, or a custom error if the text is not JSON.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    serde_json::from_str(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::{Value, json};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Typed {
        #[serde(with = "super")]
        content: Value,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Text {
        content: String,
    }

    #[test]
    fn stores_the_bytes_of_the_json_text() {
        let content = json!({"a": [1, "x"]});
        let typed = rmp_serde::to_vec_named(&Typed {
            content: content.clone(),
        })
        .unwrap();
        let text = rmp_serde::to_vec_named(&Text {
            content: content.to_string(),
        })
        .unwrap();
        assert_eq!(typed, text);
        let back: Typed = rmp_serde::from_slice(&typed).unwrap();
        assert_eq!(back.content, content);
    }

    #[test]
    fn text_that_is_not_json_fails_the_decode() {
        let bytes = rmp_serde::to_vec_named(&Text {
            content: "{not json".into(),
        })
        .unwrap();
        assert!(rmp_serde::from_slice::<Typed>(&bytes).is_err());
    }
}
