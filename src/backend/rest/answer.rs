//! The app's JSON answers, read into a tree that borrows from the body.
//!
//! A `serde_json::Value` copies every key and string into a `String` of its own and files each
//! object's keys in a hash map (an `IndexMap`, this build keeping key order). That was a sixth
//! of the sidecar's work for a get on a REST store: the app's answer was parsed that way
//! only to pick a few fields out of it. Here keys and strings without escapes stay slices of
//! the body, and an object is a list of its entries, searched from the end so that a repeated
//! key reads as its last value, as in `serde_json`.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Number(serde_json::Number),
    /// A string: a slice of the body unless it had escapes.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Doc<'a>>),
    /// An object's entries, in the body's order.
    Object(Vec<(Cow<'a, str>, Doc<'a>)>),
}

impl<'a> Doc<'a> {
    /// The JSON of `body`; `None` when it is empty or not JSON.
    pub fn parse(body: &'a [u8]) -> Option<Doc<'a>> {
        if body.is_empty() {
            return None;
        }
        serde_json::from_slice(body).ok()
    }

    /// The value of `key` in an object (its last, when the key repeats).
    pub fn get(&self, key: &str) -> Option<&Doc<'a>> {
        match self {
            Doc::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|e| &e.1),
            _ => None,
        }
    }

    /// The value at a path of keys (`[]`: this one).
    pub fn at(&self, path: &[String]) -> Option<&Doc<'a>> {
        path.iter().try_fold(self, |j, k| j.get(k))
    }

    /// The items of an array.
    pub fn as_array(&self) -> Option<&[Doc<'a>]> {
        match self {
            Doc::Array(items) => Some(items),
            _ => None,
        }
    }

    /// A number that is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Doc::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Doc::Object(_))
    }

    /// As a `serde_json::Value` (an object's repeated keys: the last value, in the first's
    /// place).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match self {
            Doc::Null => Json::Null,
            Doc::Bool(b) => Json::Bool(*b),
            Doc::Number(n) => Json::Number(n.clone()),
            Doc::String(s) => Json::String(s.clone().into_owned()),
            Doc::Array(items) => Json::Array(items.iter().map(Doc::to_json).collect()),
            Doc::Object(entries) => Json::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone().into_owned(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Doc<'de>, E> {
        Ok(serde_json::Number::from_f64(n).map_or(Doc::Null, Doc::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_none<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Doc<'de>, D::Error> {
        Doc::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Doc::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(Key(k)) = map.next_key()? {
            entries.push((k, map.next_value()?));
        }
        Ok(Doc::Object(entries))
    }
}

/// An object's key, borrowed from the body when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }

            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents with what an app may send: escapes, numbers of every kind, nesting,
    /// repeated keys, empty containers.
    const DOCS: &[&str] = &[
        r#"{"user": {"id": 7, "login": "a\"b\\c\u00e9", "mail": "x@example.com", "admin": false,
            "score": 1.5, "big": 18446744073709551615, "neg": -3, "exp": 1e3, "none": null,
            "tags": ["a", 1, null, {"k": "v"}], "nested": {"a": {"b": [1, 2]}}, "empty": {},
            "list": [], "id": "again"}}"#,
        r#"[1, "two", {"three": 3}]"#,
        r#""just a string""#,
        "42",
        "null",
        r#"{"data": {"items": [{"id": "u1"}, {"id": "u2", "name": "\ud83d\ude00"}]}, "total": 2}"#,
    ];

    #[test]
    fn reads_as_serde_json_does() {
        for text in DOCS {
            let doc = Doc::parse(text.as_bytes()).expect(text);
            let json: serde_json::Value = serde_json::from_str(text).expect(text);
            assert_eq!(doc.to_json(), json, "{text}");
        }
    }

    #[test]
    fn finds_what_serde_json_finds() {
        let text = DOCS[0];
        let doc = Doc::parse(text.as_bytes()).expect("doc");
        let json: serde_json::Value = serde_json::from_str(text).expect("json");
        let paths: &[&[&str]] = &[
            &["user", "id"],
            &["user", "login"],
            &["user", "big"],
            &["user", "nested", "a", "b"],
            &["user", "nested", "a", "c"],
            &["user", "login", "x"],
            &["user", "tags"],
            &["missing"],
            &[],
        ];
        for path in paths {
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            let want = crate::backend::rest::template::at(&json, &path).cloned();
            assert_eq!(doc.at(&path).map(Doc::to_json), want, "{path:?}");
        }
        assert_eq!(
            doc.at(&["user".into(), "id".into()]),
            Some(&Doc::String("again".into()))
        );
        assert_eq!(
            doc.at(&["user".into(), "big".into()]).and_then(Doc::as_u64),
            Some(u64::MAX)
        );
        assert_eq!(
            doc.at(&["user".into(), "tags".into()])
                .and_then(Doc::as_array)
                .map(<[_]>::len),
            Some(4)
        );
        assert!(doc.get("user").is_some_and(Doc::is_object));
    }

    #[test]
    fn keys_and_strings_without_escapes_are_not_copied() {
        let body = br#"{"plain": "text", "esc\u0061ped": "a\nb"}"#;
        let Some(Doc::Object(entries)) = Doc::parse(body) else {
            panic!("an object");
        };
        assert!(matches!(entries[0].0, Cow::Borrowed("plain")));
        assert!(matches!(entries[0].1, Doc::String(Cow::Borrowed("text"))));
        assert!(matches!(&entries[1].0, Cow::Owned(k) if k == "escaped"));
        assert!(matches!(&entries[1].1, Doc::String(Cow::Owned(s)) if s == "a\nb"));
    }

    #[test]
    fn empty_and_broken_bodies_are_none() {
        for body in ["", "{", "{\"a\": }", "nul", "[1,]", "{} {}"] {
            assert_eq!(Doc::parse(body.as_bytes()), None, "{body:?}");
        }
    }
}
