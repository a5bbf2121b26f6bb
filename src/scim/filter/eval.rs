//! In-memory evaluation of value filters: the `[...]` of a PATCH path such as
//! `emails[type eq "work"].value`, applied to the values of one multi-valued attribute of one
//! resource that is already loaded.
//!
//! Searches never come here: the mapping layer compiles list filters to store queries.

use std::cmp::Ordering;

use serde_json::Value;

use super::ast::{AttrPath, CompValue, CompareOp, Filter};
use crate::scim::dialect;
use crate::scim::error::ScimError;
use crate::scim::schema::{AttrType, Attribute};

/// Checks that every path inside a value filter names a sub-attribute of `def` (no URN, no
/// nested sub-attribute). The error names the offending path.
pub fn validate(filter: &Filter, def: &Attribute) -> Result<(), ScimError> {
    let check = |p: &AttrPath| -> Result<(), ScimError> {
        if p.urn.is_some() || p.sub.is_some() || def.sub(&p.name).is_none() {
            let valid: Vec<&str> = def.sub_attributes.iter().map(|s| s.name.as_str()).collect();
            return Err(ScimError::invalid_filter(format!(
                "'{p}' is not a sub-attribute of '{}' (it has: {})",
                def.name,
                valid.join(", ")
            )));
        }
        Ok(())
    };
    match filter {
        Filter::Present(p) | Filter::Compare(p, _, _) => check(p),
        Filter::ValuePath(p, _) => Err(ScimError::invalid_filter(format!(
            "value filters cannot be nested ('{p}[...]' inside '{}[...]')",
            def.name
        ))),
        Filter::And(a, b) | Filter::Or(a, b) => {
            validate(a, def)?;
            validate(b, def)
        }
        Filter::Not(f) => validate(f, def),
    }
}

/// Whether one value `elem` of the complex attribute `def` matches `filter` (which
/// [`validate`] accepted). String comparison honours each sub-attribute's `caseExact`.
pub fn matches(filter: &Filter, elem: &Value, def: &Attribute) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, elem, def) && matches(b, elem, def),
        Filter::Or(a, b) => matches(a, elem, def) || matches(b, elem, def),
        Filter::Not(f) => !matches(f, elem, def),
        Filter::ValuePath(..) => false,
        Filter::Present(p) => field(elem, &p.name).is_some_and(present),
        Filter::Compare(p, op, want) => {
            let sub = def.sub(&p.name);
            let case_exact = sub.is_some_and(|s| s.case_exact);
            let ty = sub.map_or(AttrType::String, |s| s.ty);
            compare(field(elem, &p.name), *op, want, ty, case_exact)
        }
    }
}

/// The equality constraints of a filter made only of `sub eq literal` joined by `and`, as
/// `(sub-attribute, value)` pairs: what a new value must hold to match it. `None` when the
/// filter has any other shape (then no value can be created from it).
pub fn equalities(filter: &Filter) -> Option<Vec<(String, Value)>> {
    match filter {
        Filter::Compare(p, CompareOp::Eq, v) => {
            let v = match v {
                CompValue::Null => return None,
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Str(s) => Value::String(s.clone()),
            };
            Some(vec![(p.name.clone(), v)])
        }
        Filter::And(a, b) => {
            let mut out = equalities(a)?;
            out.extend(equalities(b)?);
            Some(out)
        }
        _ => None,
    }
}

/// The string values of a filter that is `value eq "x"` or a disjunction of such: the member
/// ids of `members[value eq "a" or value eq "b"]`.
pub fn value_equalities(filter: &Filter) -> Option<Vec<String>> {
    match filter {
        Filter::Compare(p, CompareOp::Eq, CompValue::Str(s))
            if p.urn.is_none() && p.sub.is_none() && p.name.eq_ignore_ascii_case("value") =>
        {
            Some(vec![s.clone()])
        }
        Filter::Or(a, b) => {
            let mut out = value_equalities(a)?;
            out.extend(value_equalities(b)?);
            Some(out)
        }
        _ => None,
    }
}

fn field<'v>(elem: &'v Value, name: &str) -> Option<&'v Value> {
    match elem {
        Value::Object(o) => o
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v),
        // A value of a multi-valued simple attribute is its own `value`.
        other if name.eq_ignore_ascii_case("value") => Some(other),
        _ => None,
    }
}

/// RFC 7644 §3.4.2.2 `pr`: a non-empty value.
fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(
    have: Option<&Value>,
    op: CompareOp,
    want: &CompValue,
    ty: AttrType,
    case_exact: bool,
) -> bool {
    let have = have.filter(|v| !v.is_null());
    let ord = match (have, want) {
        (None, CompValue::Null) => return op == CompareOp::Eq,
        (Some(_), CompValue::Null) => return op == CompareOp::Ne,
        (None, _) => return op == CompareOp::Ne,
        (Some(h), CompValue::Bool(b)) => match dialect::coerce_bool(h) {
            Some(hb) => hb.cmp(b),
            None => return op == CompareOp::Ne,
        },
        (Some(Value::Number(h)), CompValue::Number(w)) => match (h.as_f64(), w.as_f64()) {
            (Some(h), Some(w)) => h.partial_cmp(&w).unwrap_or(Ordering::Less),
            _ => return op == CompareOp::Ne,
        },
        (Some(Value::String(h)), CompValue::Str(w)) => {
            if ty == AttrType::DateTime {
                if let (Some(h), Some(w)) = (
                    crate::scim::resource::parse_datetime(h),
                    crate::scim::resource::parse_datetime(w),
                ) {
                    return ordered(op, h.cmp(&w));
                }
            }
            let (h, w) = if case_exact {
                (h.clone(), w.clone())
            } else {
                (h.to_lowercase(), w.to_lowercase())
            };
            match op {
                CompareOp::Co => return h.contains(&w),
                CompareOp::Sw => return h.starts_with(&w),
                CompareOp::Ew => return h.ends_with(&w),
                _ => h.cmp(&w),
            }
        }
        _ => return op == CompareOp::Ne,
    };
    ordered(op, ord)
}

fn ordered(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        // Substring operators on non-strings never match.
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::filter::parse_filter;
    use crate::scim::schema;
    use serde_json::json;

    fn emails() -> Attribute {
        schema::builtin(schema::USER_URN)
            .and_then(|s| s.attribute("emails"))
            .cloned()
            .expect("emails")
    }

    fn m(f: &str, elem: Value) -> bool {
        let f = parse_filter(f).expect("parses");
        validate(&f, &emails()).expect("valid");
        matches(&f, &elem, &emails())
    }

    /// Value filters match on sub-attributes with case-insensitive strings (emails are not
    /// caseExact), booleans, `pr`, `and`/`or`/`not`.
    #[test]
    fn matching() {
        let e = json!({"type": "Work", "value": "A@X.org", "primary": true});
        assert!(m(r#"type eq "work""#, e.clone()));
        assert!(m(r#"type eq "work" and value co "@x.ORG""#, e.clone()));
        assert!(!m(r#"type eq "home""#, e.clone()));
        assert!(m(r#"type eq "home" or primary eq true"#, e.clone()));
        assert!(m(r#"not (type eq "home")"#, e.clone()));
        assert!(m("display pr", json!({"display": "d"})));
        assert!(!m("display pr", json!({"display": ""})));
        assert!(m(r#"display ne "x""#, e.clone()));
        assert!(m(r#"value sw "a@" and value ew ".org""#, e));
    }

    /// Paths that are not sub-attributes are refused with the list of valid ones.
    #[test]
    fn validation() {
        let f = parse_filter(r#"kind eq "work""#).expect("parses");
        let err = validate(&f, &emails()).expect_err("unknown");
        assert!(
            err.detail
                .contains("'kind' is not a sub-attribute of 'emails'"),
            "{}",
            err.detail
        );
    }

    /// Equality constraints are what a created value must hold; member filters give ids.
    #[test]
    fn constraints() {
        let f = parse_filter(r#"type eq "work" and primary eq true"#).expect("parses");
        assert_eq!(
            equalities(&f),
            Some(vec![
                ("type".into(), json!("work")),
                ("primary".into(), json!(true))
            ])
        );
        assert_eq!(
            equalities(&parse_filter(r#"type eq "a" or type eq "b""#).expect("p")),
            None
        );
        let f = parse_filter(r#"value eq "1" or value eq "2""#).expect("parses");
        assert_eq!(value_equalities(&f), Some(vec!["1".into(), "2".into()]));
        assert_eq!(
            value_equalities(&parse_filter(r#"display eq "1""#).expect("p")),
            None
        );
    }
}
