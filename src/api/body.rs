//! The one check every JSON request body passes before ruma parses it.
//!
//! ruma's request types are lenient where a homeserver must not be, and in
//! places panic on input they do not expect. So the extractors in
//! [`super::extract`] hand every non-empty body of a `POST`, `PUT` or
//! `DELETE` to [`check_json`] first, which accepts exactly one JSON value and
//! refuses, without writing anything:
//!
//! | input | status | errcode |
//! |-------|-------:|---------|
//! | not JSON, invalid UTF-8, or anything but whitespace after the value (`{"a":1}}`) | 400 | `M_NOT_JSON` |
//! | an object with the same key twice | 400 | `M_BAD_JSON` |
//! | arrays and objects nested deeper than [`MAX_JSON_DEPTH`] | 400 | `M_BAD_JSON` |
//!
//! Why a depth bound: serde_json (and so ruma, and most clients' parsers)
//! refuses documents nested 128 deep. A stored event wraps its content one
//! level deeper, and a `/sync` response wraps events about eight levels
//! deeper, so content accepted at 127 levels could be stored but never read
//! back or served. The spec sets no depth limit; [`MAX_JSON_DEPTH`] keeps
//! every accepted body readable everywhere it travels.
//!
//! Duplicate keys: RFC 8259 leaves their meaning open and parsers disagree
//! (serde_json keeps the last, others the first), so an event with duplicate
//! keys could mean different things to its sender, the server and other
//! clients; canonical JSON (spec appendix "Canonical JSON") has no
//! duplicates, so they are refused.
//!
//! Who may import this: `api` only.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::ApiError;

/// The deepest nesting of arrays and objects a request body may have: the
/// top-level value is depth 1.
pub const MAX_JSON_DEPTH: usize = 100;

/// Accepts `bytes` if they are exactly one JSON value (surrounding whitespace
/// allowed) with no duplicate object keys, nested at most
/// [`MAX_JSON_DEPTH`] deep.
///
/// Errors: [`ApiError::NotJson`] for bytes that are not one JSON value,
/// [`ApiError::BadJson`] for duplicate keys or nesting too deep.
pub fn check_json(bytes: &[u8]) -> Result<(), ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let checked = Checked { depth: 0 }.deserialize(&mut de);
    match checked {
        Ok(()) => de
            .end()
            .map_err(|e| ApiError::NotJson(format!("data after the JSON value: {e}"))),
        Err(e) => Err(match e.classify() {
            serde_json::error::Category::Data => ApiError::BadJson(e.to_string()),
            _ => ApiError::NotJson(e.to_string()),
        }),
    }
}

/// One JSON value at `depth` (the number of arrays and objects around it).
#[derive(Clone, Copy)]
struct Checked {
    depth: usize,
}

impl Checked {
    /// The value one level in, or an error past the bound.
    fn nested<E: de::Error>(self) -> Result<Checked, E> {
        let depth = self.depth + 1;
        if depth > MAX_JSON_DEPTH {
            return Err(E::custom(format_args!(
                "JSON nested deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        Ok(Checked { depth })
    }
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(de::Error::custom("an object has the same key twice"));
            }
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    fn errcode(bytes: &[u8]) -> Option<&'static str> {
        match check_json(bytes) {
            Ok(()) => None,
            Err(ApiError::NotJson(_)) => Some("M_NOT_JSON"),
            Err(ApiError::BadJson(_)) => Some("M_BAD_JSON"),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn one_value_with_whitespace_is_accepted() {
        assert_eq!(
            errcode(br#" {"a": [1, {"b": null}], "c": "\u00e9"} "#),
            None
        );
        assert_eq!(errcode(b"[]"), None);
        assert_eq!(errcode(b"\"s\""), None);
    }

    #[test]
    fn trailing_data_is_not_json() {
        assert_eq!(errcode(br#"{"a":1}}"#), Some("M_NOT_JSON"));
        assert_eq!(errcode(br#"{"a":1} xyz"#), Some("M_NOT_JSON"));
        assert_eq!(errcode(br#"{"a":1}{"a":1}"#), Some("M_NOT_JSON"));
    }

    #[test]
    fn invalid_utf8_anywhere_is_not_json() {
        assert_eq!(errcode(b"{\"a\":\"\xff\"}"), Some("M_NOT_JSON"));
        assert_eq!(errcode(b"{\"\xc3\x28\":1}"), Some("M_NOT_JSON"));
        assert_eq!(errcode(b"\xef\xbb\xbf{}"), Some("M_NOT_JSON"));
    }

    #[test]
    fn duplicate_keys_are_bad_json_at_any_depth() {
        assert_eq!(errcode(br#"{"a":1,"a":2}"#), Some("M_BAD_JSON"));
        assert_eq!(errcode(br#"{"x":[{"b":1,"b":1}]}"#), Some("M_BAD_JSON"));
        // The same key in sibling objects is fine.
        assert_eq!(errcode(br#"[{"a":1},{"a":1}]"#), None);
    }

    #[test]
    fn nesting_is_bounded_at_the_documented_depth() {
        assert_eq!(errcode(nested(MAX_JSON_DEPTH).as_bytes()), None);
        assert_eq!(
            errcode(nested(MAX_JSON_DEPTH + 1).as_bytes()),
            Some("M_BAD_JSON")
        );
        // Far past serde_json's own recursion limit: still a clean error.
        assert_eq!(errcode(nested(100_000).as_bytes()), Some("M_BAD_JSON"));
    }
}
