//! Compiles a [`Predicate`] into an RFC 4515 LDAP filter string, every value escaped by
//! [`super::escape::filter_value`]. Called by the table for every search and lookup.
//!
//! What LDAP evaluates the way SCIM means it: `eq` (`(a=v)`), `ne` (`(!(a=v))`, which is true
//! for an entry without the attribute, as SCIM wants), `co`/`sw`/`ew` (substring filters),
//! `pr` (`(a=*)`), `and`/`or`/`not`, and conditions on the id attribute. Comparisons follow the
//! attribute's own matching rules in the directory's schema (`uid` and `cn` ignore case).
//! Ordering comparisons (`gt ge lt le`) are refused unless the map entry says the attribute
//! has an ordering rule (`ordering = true`): on an attribute without one the directory answers
//! "undefined", which would silently match nothing. Membership conditions are refused until
//! groups are stored.

use super::escape::filter_value;
use crate::backend::{BackendError, CmpOp, Predicate, Value};

/// What the compiler needs to know of one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldAttr {
    /// The attribute it is stored in.
    pub attr: String,
    /// The attribute has an ORDERING matching rule.
    pub ordering: bool,
}

/// The filter matching no entry.
pub const NOTHING: &str = "(!(objectClass=*))";
/// The filter matching every entry.
pub const EVERYTHING: &str = "(objectClass=*)";

/// Compiles `p`; `key` is the id attribute (`entryUUID`).
pub fn compile(p: &Predicate, fields: &[FieldAttr], key: &str) -> Result<String, BackendError> {
    let mut out = String::new();
    write(p, fields, key, &mut out)?;
    Ok(out)
}

/// The text a value is compared as.
pub fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Null => Vec::new(),
        Value::Bool(b) => {
            if *b {
                b"TRUE".to_vec()
            } else {
                b"FALSE".to_vec()
            }
        }
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Real(f) => f.to_string().into_bytes(),
        Value::Text(s) => s.as_bytes().to_vec(),
        Value::Bytes(b) => b.clone(),
        Value::List(l) => l.first().map(value_bytes).unwrap_or_default(),
    }
}

fn write(
    p: &Predicate,
    fields: &[FieldAttr],
    key: &str,
    out: &mut String,
) -> Result<(), BackendError> {
    match p {
        Predicate::True => out.push_str(EVERYTHING),
        Predicate::False => out.push_str(NOTHING),
        Predicate::And(ps) | Predicate::Or(ps) if ps.is_empty() => {
            out.push_str(if matches!(p, Predicate::And(_)) {
                EVERYTHING
            } else {
                NOTHING
            })
        }
        Predicate::And(ps) | Predicate::Or(ps) => {
            out.push_str(if matches!(p, Predicate::And(_)) {
                "(&"
            } else {
                "(|"
            });
            for p in ps {
                write(p, fields, key, out)?;
            }
            out.push(')');
        }
        Predicate::Not(p) => {
            out.push_str("(!");
            write(p, fields, key, out)?;
            out.push(')');
        }
        Predicate::Present(i) => {
            let f = field(fields, *i)?;
            out.push('(');
            out.push_str(&f.attr);
            out.push_str("=*)");
        }
        Predicate::Cmp {
            field: i,
            op,
            value,
            ..
        } => {
            let f = field(fields, *i)?;
            let v = filter_value(&value_bytes(value));
            let a = &f.attr;
            let ordered = |out: &mut String| -> Result<(), BackendError> {
                if f.ordering {
                    Ok(())
                } else {
                    let _ = out;
                    Err(BackendError::Unsupported {
                        field: Some(*i),
                        detail: format!(
                            "attribute '{a}' is not compared by order in this directory (set ordering = true on its map entry if its schema has an ORDERING rule)"
                        ),
                    })
                }
            };
            match op {
                CmpOp::Eq => out.push_str(&format!("({a}={v})")),
                CmpOp::Ne => out.push_str(&format!("(!({a}={v}))")),
                CmpOp::Contains => out.push_str(&format!("({a}=*{v}*)")),
                CmpOp::StartsWith => out.push_str(&format!("({a}={v}*)")),
                CmpOp::EndsWith => out.push_str(&format!("({a}=*{v})")),
                CmpOp::Ge => {
                    ordered(out)?;
                    out.push_str(&format!("({a}>={v})"))
                }
                CmpOp::Le => {
                    ordered(out)?;
                    out.push_str(&format!("({a}<={v})"))
                }
                CmpOp::Gt => {
                    ordered(out)?;
                    out.push_str(&format!("(&({a}>={v})(!({a}={v})))"))
                }
                CmpOp::Lt => {
                    ordered(out)?;
                    out.push_str(&format!("(&({a}<={v})(!({a}={v})))"))
                }
            }
        }
        Predicate::KeyEq(id) => {
            out.push_str(&format!("({key}={})", filter_value(id.as_bytes())));
        }
        Predicate::KeyIn(ids) if ids.is_empty() => out.push_str(NOTHING),
        Predicate::KeyIn(ids) => {
            out.push_str("(|");
            for id in ids {
                out.push_str(&format!("({key}={})", filter_value(id.as_bytes())));
            }
            out.push(')');
        }
        Predicate::HasMember(_) => {
            return Err(BackendError::Unsupported {
                field: None,
                detail: "members are not stored in this directory".into(),
            });
        }
    }
    Ok(())
}

fn field(fields: &[FieldAttr], i: usize) -> Result<&FieldAttr, BackendError> {
    fields
        .get(i)
        .ok_or_else(|| BackendError::Internal(format!("no field {i} in the directory mapping")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields() -> Vec<FieldAttr> {
        vec![
            FieldAttr {
                attr: "uid".into(),
                ordering: false,
            },
            FieldAttr {
                attr: "employeeNumber".into(),
                ordering: true,
            },
        ]
    }

    fn cmp(field: usize, op: CmpOp, v: &str) -> Predicate {
        Predicate::Cmp {
            field,
            op,
            value: Value::Text(v.into()),
            fold_case: true,
        }
    }

    /// Each predicate kind becomes the filter RFC 4515 writes for it, values escaped.
    #[test]
    fn predicates_compile() {
        let f = fields();
        let c = |p: &Predicate| compile(p, &f, "entryUUID").expect("compiles");
        assert_eq!(c(&cmp(0, CmpOp::Eq, "a*b")), "(uid=a\\2ab)");
        assert_eq!(c(&cmp(0, CmpOp::Ne, "x")), "(!(uid=x))");
        assert_eq!(c(&cmp(0, CmpOp::Contains, "(x)")), "(uid=*\\28x\\29*)");
        assert_eq!(c(&cmp(0, CmpOp::StartsWith, "x\\")), "(uid=x\\5c*)");
        assert_eq!(c(&cmp(0, CmpOp::EndsWith, "x")), "(uid=*x)");
        assert_eq!(
            c(&cmp(1, CmpOp::Gt, "5")),
            "(&(employeeNumber>=5)(!(employeeNumber=5)))"
        );
        assert_eq!(c(&Predicate::Present(1)), "(employeeNumber=*)");
        assert_eq!(
            c(&Predicate::And(vec![
                Predicate::Present(0),
                Predicate::Not(Box::new(cmp(0, CmpOp::Eq, "a")))
            ])),
            "(&(uid=*)(!(uid=a)))"
        );
        assert_eq!(c(&Predicate::Or(vec![])), NOTHING);
        assert_eq!(c(&Predicate::And(vec![])), EVERYTHING);
        assert_eq!(
            c(&Predicate::KeyIn(vec!["a".into(), "b)".into()])),
            "(|(entryUUID=a)(entryUUID=b\\29))"
        );
        assert_eq!(c(&Predicate::KeyIn(vec![])), NOTHING);
    }

    /// What the directory cannot evaluate is refused, naming the field.
    #[test]
    fn unsupported_is_refused_with_the_field() {
        let r = compile(&cmp(0, CmpOp::Lt, "x"), &fields(), "entryUUID");
        assert!(
            matches!(r, Err(BackendError::Unsupported { field: Some(0), .. })),
            "{r:?}"
        );
        let r = compile(&Predicate::HasMember(None), &fields(), "entryUUID");
        assert!(matches!(r, Err(BackendError::Unsupported { .. })), "{r:?}");
    }

    proptest! {
        /// Whatever the value, an equality filter is one balanced assertion on its attribute
        /// whose value unescapes to exactly what was asked for.
        #[test]
        fn eq_never_widens(s in any::<String>()) {
            let f = compile(&cmp(0, CmpOp::Eq, &s), &fields(), "entryUUID").expect("eq");
            let inner = f.strip_prefix("(uid=").and_then(|r| r.strip_suffix(')'));
            let inner = inner.expect("one assertion");
            prop_assert_eq!(super::super::escape::unescape_filter_value(inner), Some(s.into_bytes()));
        }
    }
}
