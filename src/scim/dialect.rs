//! Identity-provider dialects: the one place where non-standard request shapes become RFC 7644.
//!
//! Entra ID and Okta send requests that bend the RFCs (see `shared/reference/idp-behaviour.md`
//! §4). Rather than special-casing them across the code, the body normaliser
//! ([`super::resource`]) and the PATCH parser ([`super::patch`]) call these functions at the
//! edge, so everything past them sees standard SCIM:
//!
//! | shape sent | source | becomes |
//! |---|---|---|
//! | `"op": "Replace"` (capitalised) | Entra default dialect | `replace` |
//! | `"value": "False"` for a boolean | Entra default dialect | `false` |
//! | path-less PATCH value with `"name.givenName"` keys | Entra `aadOptscim062020` | nested `name.givenName` |
//! | path-less PATCH value with `"urn:…:User:employeeNumber"` keys | Entra | the extension attribute |
//! | `remove` of `members` with a `value` array | Entra default dialect | remove those members |
//! | `manager` as a bare string, or a one-element array | Entra (F-6, F-7, example 5) | `{"value": …}` |
//! | members given as bare id strings | lenient clients | `{"value": …}` |

use serde_json::Value;

use super::patch::OpKind;

/// A PATCH `op`, matched case-insensitively: Entra's default dialect sends `Add`, `Replace`,
/// `Remove` (RFC 7644 §3.5.2 spells them in lower case).
pub fn op_kind(op: &str) -> Option<OpKind> {
    if op.eq_ignore_ascii_case("add") {
        Some(OpKind::Add)
    } else if op.eq_ignore_ascii_case("replace") {
        Some(OpKind::Replace)
    } else if op.eq_ignore_ascii_case("remove") {
        Some(OpKind::Remove)
    } else {
        None
    }
}

/// A boolean, also accepted as the strings `"true"`/`"false"` in any case: Entra sends
/// `{"op":"Replace","path":"active","value":"False"}`.
pub fn coerce_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A value for a single-valued complex attribute: a bare string becomes `{"value": s}` (Entra
/// sends the enterprise `manager` as its id), and a one-element array is unwrapped (Entra's
/// documented example sends `[{"$ref": …, "value": …}]`). Other shapes are returned unchanged
/// for the type check to reject.
pub fn coerce_single_complex(v: Value, has_value_sub: bool) -> Value {
    match v {
        Value::String(s) if has_value_sub => serde_json::json!({ "value": s }),
        Value::Array(mut items) if items.len() == 1 => {
            let item = items.pop().unwrap_or(Value::Null);
            coerce_single_complex(item, has_value_sub)
        }
        other => other,
    }
}

/// An element of a multi-valued complex attribute: a bare string becomes `{"value": s}`
/// (some clients send member ids without the object around them).
pub fn coerce_multi_complex_item(v: Value, has_value_sub: bool) -> Value {
    match v {
        Value::String(s) if has_value_sub => serde_json::json!({ "value": s }),
        other => other,
    }
}

/// How a key of a body object, or of a path-less PATCH value, addresses an attribute.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyPath<'a> {
    /// An extension object: `"urn:…:enterprise:2.0:User": { … }` (standard), or an object
    /// under a URN the caller must look up.
    Urn(&'a str),
    /// A URN-qualified attribute: `"urn:…:enterprise:2.0:User:employeeNumber"` (Entra),
    /// possibly with a sub-attribute (`…:manager.value`).
    Qualified {
        /// The schema URN.
        urn: &'a str,
        /// The attribute name.
        name: &'a str,
        /// The sub-attribute name.
        sub: Option<&'a str>,
    },
    /// A plain attribute, possibly dotted: `"name.givenName"` (Entra `aadOptscim062020`).
    Plain {
        /// The attribute name.
        name: &'a str,
        /// The sub-attribute name.
        sub: Option<&'a str>,
    },
}

/// Classifies a body key. `is_schema` tells whether a whole key is a schema URN of the resource
/// type (then it is an extension object, not a qualified attribute).
pub fn split_key<'a>(key: &'a str, is_schema: impl Fn(&str) -> bool) -> KeyPath<'a> {
    // Bytes, not `key[..4]`: byte 4 may fall inside a character ("urnƜ…"), and slicing a
    // str there panics (found by fuzz/patch).
    let is_urn = key.len() > 4 && key.as_bytes()[..4].eq_ignore_ascii_case(b"urn:");
    if is_urn {
        if is_schema(key) {
            return KeyPath::Urn(key);
        }
        if let Some(colon) = key.rfind(':') {
            let (urn, rest) = (&key[..colon], &key[colon + 1..]);
            if is_schema(urn) {
                let (name, sub) = split_dot(rest);
                return KeyPath::Qualified { urn, name, sub };
            }
        }
        return KeyPath::Urn(key);
    }
    let (name, sub) = split_dot(key);
    KeyPath::Plain { name, sub }
}

fn split_dot(s: &str) -> (&str, Option<&str>) {
    match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    /// Entra's capitalised ops and string booleans are read as RFC values.
    #[test]
    fn ops_and_booleans() {
        assert_eq!(op_kind("Replace"), Some(OpKind::Replace));
        assert_eq!(op_kind("ADD"), Some(OpKind::Add));
        assert_eq!(op_kind("remove"), Some(OpKind::Remove));
        assert_eq!(op_kind("move"), None);
        assert_eq!(coerce_bool(&json!("False")), Some(false));
        assert_eq!(coerce_bool(&json!("TRUE")), Some(true));
        assert_eq!(coerce_bool(&json!(true)), Some(true));
        assert_eq!(coerce_bool(&json!("yes")), None);
        assert_eq!(coerce_bool(&json!(1)), None);
    }

    /// Entra's manager shapes (bare string, one-element array) become `{value}`.
    #[test]
    fn manager_shapes() {
        assert_eq!(
            coerce_single_complex(json!("m1"), true),
            json!({"value": "m1"})
        );
        assert_eq!(
            coerce_single_complex(json!([{"$ref": null, "value": "m1"}]), true),
            json!({"$ref": null, "value": "m1"})
        );
        assert_eq!(coerce_single_complex(json!("m1"), false), json!("m1"));
    }

    /// Keys split into extension objects, qualified attributes and dotted attributes.
    #[test]
    fn keys() {
        let is_schema = |s: &str| s.eq_ignore_ascii_case(ENT);
        assert_eq!(split_key(ENT, is_schema), KeyPath::Urn(ENT));
        let q = format!("{ENT}:employeeNumber");
        assert_eq!(
            split_key(&q, is_schema),
            KeyPath::Qualified {
                urn: ENT,
                name: "employeeNumber",
                sub: None
            }
        );
        let m = format!("{ENT}:manager.value");
        assert_eq!(
            split_key(&m, is_schema),
            KeyPath::Qualified {
                urn: ENT,
                name: "manager",
                sub: Some("value")
            }
        );
        assert_eq!(
            split_key("name.givenName", is_schema),
            KeyPath::Plain {
                name: "name",
                sub: Some("givenName")
            }
        );
        assert_eq!(
            split_key("urn:unknown:thing", is_schema),
            KeyPath::Urn("urn:unknown:thing")
        );
    }

    /// A key whose fourth byte is inside a multi-byte character is a plain name, not a
    /// panic. See: issue #14 (found by the `patch` fuzz target).
    #[test]
    fn r14_multibyte_key_prefix() {
        let key = "urn\u{19c}etf:params:x";
        assert_eq!(
            split_key(key, |_| false),
            KeyPath::Plain {
                name: key,
                sub: None
            }
        );
    }
}
