//! Value conversion between a SCIM attribute and the store field it is kept in: type
//! coercion, value maps (`active` ⇄ `status` `'A'`/`'D'`), length limits and timestamps.

use serde_json::Value as Json;
use time::OffsetDateTime;

use crate::backend::{FieldType, Value};
use crate::scim::ScimError;
use crate::scim::filter::CompValue;
use crate::scim::schema::AttrType;

/// How one SCIM leaf attribute converts to and from one store field.
#[derive(Clone, Debug)]
pub struct Conv {
    /// The SCIM type of the attribute.
    pub scim: AttrType,
    /// The store type of the field.
    pub field: FieldType,
    /// Value map, when configured: SCIM value and store value pairs.
    pub values: Vec<(Json, Value)>,
    /// Case-insensitive attribute (SCIM `caseExact: false`).
    pub fold_case: bool,
    /// The attribute as shown in messages.
    pub shown: String,
    /// What a stored value outside the value map reads as (`None`: it reads as absent).
    pub fallback: Option<Json>,
    /// A text longer than its field is cut to fit instead of refused.
    pub truncate: bool,
}

/// The stored values a value-mapped attribute's SCIM value stands for, for a filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Matches {
    /// Any of these (none: no stored value).
    AnyOf(Vec<Value>),
    /// Any value but these: the fallback, which every unlisted stored value reads as.
    NoneOf(Vec<Value>),
}

impl Conv {
    /// The store value for a (normalised) SCIM value. Errors are 400 `invalidValue` naming the
    /// attribute: a value outside the value map, too long for its column, or of a shape the
    /// column cannot hold.
    pub fn to_store(&self, v: &Json) -> Result<Value, ScimError> {
        if v.is_null() {
            return Ok(Value::Null);
        }
        if !self.values.is_empty() {
            return self
                .values
                .iter()
                .find(|(scim, _)| self.same_scim(scim, v))
                .map(|(_, store)| store.clone())
                .ok_or_else(|| {
                    let allowed: Vec<String> =
                        self.values.iter().map(|(s, _)| s.to_string()).collect();
                    ScimError::invalid_value(format!(
                        "attribute '{}' cannot be {v} here; allowed values: {}",
                        self.shown,
                        allowed.join(", ")
                    ))
                });
        }
        let bad = |want: &str| {
            ScimError::invalid_value(format!(
                "attribute '{}' must be {want} to fit its store field, got {v}",
                self.shown
            ))
        };
        match &self.field {
            FieldType::Text { max_len } => {
                let s = match v {
                    Json::String(s) => match self.scim {
                        AttrType::DateTime => canonical_datetime(s).unwrap_or_else(|| s.clone()),
                        _ => s.clone(),
                    },
                    Json::Bool(b) => b.to_string(),
                    Json::Number(n) => n.to_string(),
                    _ => return Err(bad("text")),
                };
                let mut s = s;
                if let Some(max) = max_len {
                    let n = s.chars().count();
                    if n > *max as usize && self.truncate {
                        if let Some((cut, _)) = s.char_indices().nth(*max as usize) {
                            s.truncate(cut);
                        }
                    } else if n > *max as usize {
                        return Err(ScimError::invalid_value(format!(
                            "attribute '{}' is {n} characters long; its store field holds at most {max}",
                            self.shown
                        )));
                    }
                }
                Ok(Value::Text(s))
            }
            FieldType::Enum(labels) => match v {
                Json::String(s) if labels.contains(s) => Ok(Value::Text(s.clone())),
                Json::String(s) => Err(ScimError::invalid_value(format!(
                    "attribute '{}' cannot be \"{s}\" here; allowed values: {}",
                    self.shown,
                    labels.join(", ")
                ))),
                _ => Err(bad("text")),
            },
            FieldType::Integer => match v {
                Json::Bool(b) => Ok(Value::Int(i64::from(*b))),
                Json::Number(n) => n
                    .as_i64()
                    .map(Value::Int)
                    .ok_or_else(|| bad("a whole number")),
                Json::String(s) if self.scim == AttrType::DateTime => {
                    crate::scim::resource::parse_datetime(s)
                        .map(|t| Value::Int(t.unix_timestamp()))
                        .ok_or_else(|| bad("a dateTime"))
                }
                Json::String(s) => s
                    .trim()
                    .parse()
                    .map(Value::Int)
                    .map_err(|_| bad("a whole number")),
                _ => Err(bad("a whole number")),
            },
            FieldType::Real => match v {
                Json::Number(n) => n.as_f64().map(Value::Real).ok_or_else(|| bad("a number")),
                Json::String(s) => s
                    .trim()
                    .parse()
                    .map(Value::Real)
                    .map_err(|_| bad("a number")),
                _ => Err(bad("a number")),
            },
            FieldType::Boolean => match v {
                Json::Bool(b) => Ok(Value::Bool(*b)),
                other => crate::scim::dialect::coerce_bool(other)
                    .map(Value::Bool)
                    .ok_or_else(|| bad("true or false")),
            },
            FieldType::Timestamp => match v {
                Json::String(s) => canonical_datetime(s)
                    .map(Value::Text)
                    .ok_or_else(|| bad("a dateTime")),
                _ => Err(bad("a dateTime")),
            },
            // RFC 7643 §2.3.6: a SCIM binary is base64; other attributes are kept as their
            // UTF-8 bytes.
            FieldType::Binary => match (v, self.scim) {
                (Json::String(s), AttrType::Binary) => base64_decode(s)
                    .map(Value::Bytes)
                    .ok_or_else(|| bad("base64 (a SCIM binary value)")),
                (Json::String(s), _) => Ok(Value::Bytes(s.as_bytes().to_vec())),
                _ => Err(bad("text")),
            },
        }
    }

    /// The SCIM value of a store value; `None` when the field is empty or holds something the
    /// attribute cannot show (a status outside the value map).
    /// An empty string is no value too: legacy apps keep "nothing" as `''` in NOT NULL
    /// columns, and `pr` treats it as absent (RFC 7643 §2.5: unassigned and null are one).
    pub fn from_store(&self, v: Value) -> Option<Json> {
        // Every mapped attribute is single-valued: of several stored values, the first. Taken
        // by value: a row's text moves into the resource instead of being copied.
        let v = v.into_first();
        if v.is_null() || matches!(&v, Value::Text(t) if t.is_empty()) && self.values.is_empty() {
            return None;
        }
        if !self.values.is_empty() {
            let found = self
                .values
                .iter()
                .find(|(_, store)| same_store(store, &v))
                .map(|(scim, _)| scim.clone());
            if found.is_none() && self.fallback.is_none() {
                tracing::debug!(attribute = %self.shown, "stored value is outside the value map; not returned");
            }
            return found.or_else(|| self.fallback.clone());
        }
        match self.scim {
            AttrType::String | AttrType::Reference | AttrType::Binary => {
                Some(Json::String(match v {
                    Value::Text(s) => s,
                    Value::Int(i) => i.to_string(),
                    Value::Real(f) => f.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Bytes(b) if self.scim == AttrType::Binary => base64_encode(&b),
                    Value::Bytes(b) => String::from_utf8(b)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    Value::Null | Value::List(_) => return None,
                }))
            }
            AttrType::Boolean => match v {
                Value::Bool(b) => Some(Json::Bool(b)),
                Value::Int(i) => Some(Json::Bool(i != 0)),
                Value::Text(t) => match t.to_ascii_lowercase().as_str() {
                    "1" | "true" | "t" | "yes" | "y" => Some(Json::Bool(true)),
                    "0" | "false" | "f" | "no" | "n" => Some(Json::Bool(false)),
                    _ => None,
                },
                _ => None,
            },
            AttrType::Integer => match v {
                Value::Int(i) => Some(Json::from(i)),
                Value::Real(f) if f.fract() == 0.0 => Some(Json::from(f as i64)),
                Value::Text(t) => t.trim().parse::<i64>().ok().map(Json::from),
                Value::Bool(b) => Some(Json::from(i64::from(b))),
                _ => None,
            },
            AttrType::Decimal => match v {
                Value::Int(i) => Some(Json::from(i)),
                Value::Real(f) => serde_json::Number::from_f64(f).map(Json::Number),
                Value::Text(t) => t
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Json::Number),
                _ => None,
            },
            AttrType::DateTime => match v {
                Value::Text(t) => canonical_datetime(&t)
                    .or_else(|| legacy_datetime(&t))
                    .map(Json::String),
                Value::Int(secs) => OffsetDateTime::from_unix_timestamp(secs)
                    .ok()
                    .and_then(format)
                    .map(Json::String),
                _ => None,
            },
            AttrType::Complex => None,
        }
    }

    /// The store value to compare a field with, for a filter. `Ok(None)` means no stored value
    /// can equal it (a value outside the value map), so `eq` matches nothing.
    pub fn filter_value(&self, v: &CompValue) -> Result<Option<Value>, ScimError> {
        let json = match v {
            CompValue::Null => Json::Null,
            CompValue::Bool(b) => Json::Bool(*b),
            CompValue::Number(n) => Json::Number(n.clone()),
            CompValue::Str(s) => Json::String(s.clone()),
        };
        let type_ok = match self.scim {
            AttrType::String | AttrType::Reference | AttrType::Binary | AttrType::DateTime => {
                json.is_string()
            }
            AttrType::Boolean => json.is_boolean(),
            AttrType::Integer | AttrType::Decimal => json.is_number(),
            AttrType::Complex => false,
        };
        if !type_ok {
            return Err(ScimError::invalid_filter(format!(
                "'{}' is a {} attribute; compare it with a {} value, not {v}",
                self.shown,
                self.scim.as_str(),
                match self.scim {
                    AttrType::Boolean => "true/false",
                    AttrType::Integer | AttrType::Decimal => "numeric",
                    _ => "quoted string",
                }
            )));
        }
        if self.scim == AttrType::DateTime
            && crate::scim::resource::parse_datetime(json.as_str().unwrap_or("")).is_none()
        {
            return Err(ScimError::invalid_filter(format!(
                "'{}' is a dateTime; compare it with a value such as \"2024-05-01T00:00:00Z\"",
                self.shown
            )));
        }
        if !self.values.is_empty() {
            return Ok(self
                .values
                .iter()
                .find(|(scim, _)| self.same_scim(scim, &json))
                .map(|(_, s)| s.clone()));
        }
        match self.to_store(&json) {
            Ok(v) => Ok(Some(v)),
            // A value the column cannot hold (too long, not a number) equals no stored value.
            Err(_) => Ok(None),
        }
    }

    /// The stored values a value-mapped attribute's SCIM value `v` stands for: those the map
    /// lists for it, or, for the fallback, every value but those listed for other values.
    pub fn matches(&self, v: &Json) -> Matches {
        let listed: Vec<Value> = self
            .values
            .iter()
            .filter(|(scim, _)| self.same_scim(scim, v))
            .map(|(_, s)| s.clone())
            .collect();
        match &self.fallback {
            Some(f) if self.same_scim(f, v) => Matches::NoneOf(
                self.values
                    .iter()
                    .filter(|(scim, _)| !self.same_scim(scim, v))
                    .map(|(_, s)| s.clone())
                    .collect(),
            ),
            _ => Matches::AnyOf(listed),
        }
    }

    /// The stored values of the value map in the order of the SCIM values they stand for,
    /// so a sort follows SCIM's order (`false` before `true`), not the store's codes. Empty
    /// without a value map.
    pub fn ranks(&self) -> Vec<Value> {
        let mut pairs: Vec<&(Json, Value)> = self.values.iter().collect();
        pairs.sort_by(|(a, _), (b, _)| match (a, b) {
            (Json::Bool(x), Json::Bool(y)) => x.cmp(y),
            (Json::Number(x), Json::Number(y)) => x
                .as_f64()
                .partial_cmp(&y.as_f64())
                .unwrap_or(std::cmp::Ordering::Equal),
            (Json::String(x), Json::String(y)) if self.fold_case => {
                x.to_lowercase().cmp(&y.to_lowercase())
            }
            (Json::String(x), Json::String(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
        pairs.into_iter().map(|(_, v)| v.clone()).collect()
    }

    fn same_scim(&self, a: &Json, b: &Json) -> bool {
        match (a, b) {
            (Json::String(x), Json::String(y)) if self.fold_case => x.eq_ignore_ascii_case(y),
            (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
            _ => a == b,
        }
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

/// Store values compared loosely across SQLite's storage classes (`1` and `true`, `'1'`).
pub fn same_store(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Bytes(x), Value::Text(t)) | (Value::Text(t), Value::Bytes(x)) => {
            x.as_slice() == t.as_bytes()
        }
        (Value::List(l), v) | (v, Value::List(l)) if !matches!(v, Value::List(_)) => {
            l.len() == 1 && same_store(&l[0], v)
        }
        // PostgreSQL values come back as text.
        (Value::Bool(x), Value::Text(t)) | (Value::Text(t), Value::Bool(x)) => {
            matches!(
                (x, t.as_str()),
                (true, "true" | "t" | "1") | (false, "false" | "f" | "0")
            )
        }
        (Value::Real(x), Value::Text(t)) | (Value::Text(t), Value::Real(x)) => {
            t.trim().parse::<f64>().ok() == Some(*x)
        }
        (Value::Bool(x), Value::Int(y)) | (Value::Int(y), Value::Bool(x)) => i64::from(*x) == *y,
        (Value::Int(x), Value::Real(y)) | (Value::Real(y), Value::Int(x)) => (*x as f64) == *y,
        (Value::Text(t), Value::Int(i)) | (Value::Int(i), Value::Text(t)) => {
            t.trim().parse::<i64>().ok() == Some(*i)
        }
        _ => a == b,
    }
}

/// The timestamp the sidecar writes for `meta.created`/`meta.lastModified`, in the field's
/// type.
pub fn now_value(field: &FieldType) -> Value {
    crate::backend::now(field)
}

fn format(t: OffsetDateTime) -> Option<String> {
    crate::backend::timestamp_text(t)
}

fn canonical_datetime(s: &str) -> Option<String> {
    if crate::backend::is_timestamp_text(s) {
        // What the sidecar writes reads back unchanged: no parse and print per row.
        return Some(s.to_owned());
    }
    crate::scim::resource::parse_datetime(s).and_then(format)
}

/// `YYYY-MM-DD HH:MM:SS` (what many apps and SQLite's `CURRENT_TIMESTAMP` store), as UTC.
fn legacy_datetime(s: &str) -> Option<String> {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let base = s.get(..19)?;
    time::PrimitiveDateTime::parse(base, &fmt)
        .ok()
        .and_then(|t| format(t.assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conv(scim: AttrType, field: FieldType) -> Conv {
        Conv {
            fallback: None,
            truncate: false,
            scim,
            field,
            values: vec![],
            fold_case: true,
            shown: "attr".into(),
        }
    }

    /// Value maps convert both ways and refuse values outside the map.
    #[test]
    fn value_maps() {
        let mut c = conv(AttrType::Boolean, FieldType::Text { max_len: Some(1) });
        c.values = vec![
            (json!(true), Value::Text("A".into())),
            (json!(false), Value::Text("D".into())),
        ];
        assert_eq!(
            c.to_store(&json!(false)).expect("maps"),
            Value::Text("D".into())
        );
        assert_eq!(c.from_store(Value::Text("A".into())), Some(json!(true)));
        assert_eq!(c.from_store(Value::Text("X".into())), None);
        let mut s = conv(AttrType::String, FieldType::Text { max_len: None });
        s.values = vec![(json!("Employee"), Value::Int(1))];
        assert!(s.to_store(&json!("Contractor")).is_err());
        assert_eq!(
            s.filter_value(&CompValue::Str("employee".into()))
                .expect("ok"),
            Some(Value::Int(1))
        );
        assert_eq!(
            s.filter_value(&CompValue::Str("x".into())).expect("ok"),
            None
        );
    }

    /// Lengths are enforced in characters, not bytes.
    #[test]
    fn lengths() {
        let c = conv(AttrType::String, FieldType::Text { max_len: Some(3) });
        assert!(c.to_store(&json!("äöü")).is_ok());
        let e = c.to_store(&json!("abcd")).expect_err("too long");
        assert!(e.detail.contains("at most 3"), "{}", e.detail);
    }

    /// Booleans in integer columns, strings in integer columns, and timestamps.
    #[test]
    fn coercions() {
        let b = conv(AttrType::Boolean, FieldType::Integer);
        assert_eq!(b.to_store(&json!(true)).expect("ok"), Value::Int(1));
        assert_eq!(b.from_store(Value::Int(0)), Some(json!(false)));
        let n = conv(AttrType::String, FieldType::Integer);
        assert_eq!(n.to_store(&json!("42")).expect("ok"), Value::Int(42));
        assert!(n.to_store(&json!("4x")).is_err());
        assert_eq!(n.from_store(Value::Int(42)), Some(json!("42")));
        let t = conv(AttrType::DateTime, FieldType::Text { max_len: None });
        assert_eq!(
            t.to_store(&json!("2024-05-01T12:00:00+02:00")).expect("ok"),
            Value::Text("2024-05-01T10:00:00.000Z".into())
        );
        assert_eq!(
            t.from_store(Value::Text("2024-05-01 10:00:00".into())),
            Some(json!("2024-05-01T10:00:00.000Z"))
        );
        assert!(t.filter_value(&CompValue::Str("yesterday".into())).is_err());
        assert!(
            matches!(now_value(&FieldType::Text { max_len: None }), Value::Text(s) if s.ends_with('Z'))
        );
        assert!(same_store(&Value::Bool(true), &Value::Int(1)));
    }
}
