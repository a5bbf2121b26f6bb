//! Compiles a [`Predicate`] into an RFC 4515 LDAP filter string, every value escaped by
//! [`super::escape::filter_value`]. Called by the table for every search and lookup.
//!
//! What LDAP evaluates the way SCIM means it: `eq` (`(a=v)`), `ne` (`(!(a=v))`, which is true
//! for an entry without the attribute, as SCIM wants), `co`/`sw`/`ew` (substring filters),
//! `pr` (`(a=*)`), `and`/`or`/`not`, and conditions on the id attribute. Comparisons follow the
//! attribute's own matching rules in the directory's schema (`uid` and `cn` ignore case),
//! except a case-exact `eq`/`ne`, which names `caseExactMatch` in an extensible match
//! (`(a:caseExactMatch:=v)`, RFC 4515 §3). Ordering comparisons (`gt ge lt le`) also use
//! extensible matches, with `caseIgnoreOrderingMatch` (or `caseExactOrderingMatch`): most
//! directory-string attributes (`uid`, `cn`, `displayName`) have no ORDERING rule of their
//! own, so `(uid>=b)` would be "undefined" and silently match nothing, while
//! `(uid:caseIgnoreOrderingMatch:=b)` is "uid < b" (checked on slapd 2.5). A map entry with
//! `ordering = false` (an attribute of another syntax) refuses them, naming the field; binary
//! attributes refuse them always. Substring filters (`co sw ew`) use the attribute's own
//! substring rule even when the comparison asks for exact case. Membership conditions
//! (`HasMember`) name member DNs the caller resolved ([`Members`]).

use std::collections::HashMap;

use super::escape::filter_value;
use crate::backend::{BackendError, CmpOp, Predicate, Value};

/// What the compiler needs to know of one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldAttr {
    /// The attribute it is stored in.
    pub attr: String,
    /// Ordering comparisons may use the directory-string ordering rules on it.
    pub ordering: bool,
    /// Values are bytes: no case rules apply.
    pub binary: bool,
    /// The directory is Active Directory, whose comparisons differ ([`super::ad::cmp_filter`]).
    pub ad: bool,
    /// Written only, never read (`userPassword`): no filter may test it.
    pub secret: bool,
}

/// What membership conditions compile to: the group's member attribute, the placeholder DN
/// an empty group holds, and the DNs of the member ids the predicate names (an id missing
/// here has no entry, so no group has it as a member).
#[derive(Clone, Debug, Default)]
pub struct Members<'a> {
    /// The member attribute (`member`).
    pub attr: &'a str,
    /// The placeholder of an empty group.
    pub empty: Option<&'a str>,
    /// Member id -> DN.
    pub dns: HashMap<String, String>,
}

/// The filter matching no entry.
pub const NOTHING: &str = "(!(objectClass=*))";
/// The filter matching every entry.
pub const EVERYTHING: &str = "(objectClass=*)";

/// Compiles `p`; `key` is the id attribute (`entryUUID`).
pub fn compile(p: &Predicate, fields: &[FieldAttr], key: &str) -> Result<String, BackendError> {
    compile_with(p, fields, key, None)
}

/// Compiles `p`, whose membership conditions name members as `members` resolved them.
pub fn compile_with(
    p: &Predicate,
    fields: &[FieldAttr],
    key: &str,
    members: Option<&Members<'_>>,
) -> Result<String, BackendError> {
    let mut out = String::new();
    write(p, fields, key, members, &mut out)?;
    Ok(out)
}

/// The member ids a predicate names in membership conditions.
pub fn member_ids(p: &Predicate, out: &mut Vec<String>) {
    match p {
        Predicate::And(ps) | Predicate::Or(ps) => ps.iter().for_each(|p| member_ids(p, out)),
        Predicate::Not(p) => member_ids(p, out),
        Predicate::HasMember(Some(id)) => out.push(id.clone()),
        _ => {}
    }
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

/// "The id attribute `key` is `id`": the text escaped, or an AD `objectGUID`'s bytes.
fn key_eq(key: &str, id: &str) -> String {
    super::ad::key_filter(key, id)
        .unwrap_or_else(|| format!("({key}={})", filter_value(id.as_bytes())))
}

fn write(
    p: &Predicate,
    fields: &[FieldAttr],
    key: &str,
    members: Option<&Members<'_>>,
    out: &mut String,
) -> Result<(), BackendError> {
    match p {
        Predicate::True => out.push_str(EVERYTHING),
        Predicate::False => out.push_str(NOTHING),
        Predicate::And(ps) if ps.is_empty() => out.push_str(EVERYTHING),
        Predicate::Or(ps) if ps.is_empty() => out.push_str(NOTHING),
        Predicate::And(ps) | Predicate::Or(ps) => {
            out.push_str(if matches!(p, Predicate::And(_)) {
                "(&"
            } else {
                "(|"
            });
            for p in ps {
                write(p, fields, key, members, out)?;
            }
            out.push(')');
        }
        Predicate::Not(p) => {
            out.push_str("(!");
            write(p, fields, key, members, out)?;
            out.push(')');
        }
        Predicate::Present(i) => {
            let f = field(fields, *i)?;
            push_all(out, &["(", &f.attr, "=*)"]);
        }
        Predicate::Cmp {
            field: i,
            op,
            value,
            fold_case,
        } => {
            let f = field(fields, *i)?;
            // Active Directory: `active` is a bit of userAccountControl.
            if let Some(flag) = super::ad::flag_filter(&f.attr, *i, *op, value) {
                out.push_str(&flag?);
                return Ok(());
            }
            let v = filter_value(&value_bytes(value));
            let a = &f.attr;
            if matches!(op, CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le)
                && (!f.ordering || f.binary)
            {
                return Err(BackendError::Unsupported {
                    field: Some(*i),
                    detail: format!(
                        "attribute '{a}' is not compared by order (its map entry says ordering = false, or it is binary)"
                    ),
                });
            }
            if f.ad {
                if let Some(ad) = super::ad::cmp_filter(a, *i, *op, &v, *fold_case) {
                    out.push_str(&ad?);
                    return Ok(());
                }
            }
            // Written straight into `out` (a filter is compiled for every search).
            // Equality: the attribute's own rule, or caseExactMatch when asked to.
            let exact = !fold_case && !f.binary;
            let eq = |out: &mut String| {
                let rule = if exact { ":caseExactMatch:=" } else { "=" };
                push_all(out, &["(", a, rule, &v, ")"]);
            };
            // "a < v" by the directory-string ordering rules.
            let rule = if *fold_case {
                ":caseIgnoreOrderingMatch:="
            } else {
                ":caseExactOrderingMatch:="
            };
            let lt = |out: &mut String| push_all(out, &["(", a, rule, &v, ")"]);
            match op {
                CmpOp::Eq => eq(out),
                CmpOp::Ne => {
                    out.push_str("(!");
                    eq(out);
                    out.push(')');
                }
                CmpOp::Contains => push_all(out, &["(", a, "=*", &v, "*)"]),
                CmpOp::StartsWith => push_all(out, &["(", a, "=", &v, "*)"]),
                CmpOp::EndsWith => push_all(out, &["(", a, "=*", &v, ")"]),
                CmpOp::Lt => lt(out),
                CmpOp::Le => {
                    out.push_str("(|");
                    lt(out);
                    eq(out);
                    out.push(')');
                }
                CmpOp::Ge => {
                    push_all(out, &["(&(", a, "=*)(!"]);
                    lt(out);
                    out.push_str("))");
                }
                CmpOp::Gt => {
                    push_all(out, &["(&(", a, "=*)(!"]);
                    lt(out);
                    out.push_str(")(!");
                    eq(out);
                    out.push_str("))");
                }
            }
        }
        Predicate::KeyEq(id) => out.push_str(&key_eq(key, id)),
        Predicate::KeyIn(ids) if ids.is_empty() => out.push_str(NOTHING),
        Predicate::KeyIn(ids) => {
            out.push_str("(|");
            for id in ids {
                out.push_str(&key_eq(key, id));
            }
            out.push(')');
        }
        Predicate::HasMember(id) => {
            let Some(m) = members else {
                return Err(BackendError::Unsupported {
                    field: None,
                    detail: "this resource has no members".into(),
                });
            };
            let a = m.attr;
            match (id, m.empty) {
                (Some(id), _) => match m.dns.get(id) {
                    Some(dn) => out.push_str(&format!("({a}={})", filter_value(dn.as_bytes()))),
                    None => out.push_str(NOTHING),
                },
                (None, Some(empty)) => out.push_str(&format!(
                    "(&({a}=*)(!({a}={})))",
                    filter_value(empty.as_bytes())
                )),
                (None, None) => out.push_str(&format!("({a}=*)")),
            }
        }
    }
    Ok(())
}

/// Appends `parts` to `out`, one after another.
fn push_all(out: &mut String, parts: &[&str]) {
    for p in parts {
        out.push_str(p);
    }
}

fn field(fields: &[FieldAttr], i: usize) -> Result<&FieldAttr, BackendError> {
    let f = fields
        .get(i)
        .ok_or_else(|| BackendError::Internal(format!("no field {i} in the directory mapping")))?;
    if f.secret {
        // A filter on a password would let a client probe it.
        return Err(BackendError::Unsupported {
            field: Some(i),
            detail: format!("attribute '{}' is write-only", f.attr),
        });
    }
    Ok(f)
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
                binary: false,
                ad: false,
                secret: false,
            },
            FieldAttr {
                attr: "cn".into(),
                ordering: true,
                binary: false,
                ad: false,
                secret: false,
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
            c(&cmp(1, CmpOp::Gt, "b")),
            "(&(cn=*)(!(cn:caseIgnoreOrderingMatch:=b))(!(cn=b)))"
        );
        assert_eq!(
            c(&cmp(1, CmpOp::Lt, "b")),
            "(cn:caseIgnoreOrderingMatch:=b)"
        );
        let exact = Predicate::Cmp {
            field: 1,
            op: CmpOp::Le,
            value: Value::Text("b".into()),
            fold_case: false,
        };
        assert_eq!(
            c(&exact),
            "(|(cn:caseExactOrderingMatch:=b)(cn:caseExactMatch:=b))"
        );
        assert_eq!(c(&Predicate::Present(1)), "(cn=*)");
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

    /// Membership conditions name the member's DN, escaped; an empty group's placeholder is
    /// no member.
    #[test]
    fn membership_conditions() {
        let mut m = Members {
            attr: "member",
            empty: Some("cn=nobody"),
            dns: HashMap::new(),
        };
        m.dns.insert("id-1".into(), "uid=a(1),ou=p".into());
        let c =
            |p: &Predicate| compile_with(p, &fields(), "entryUUID", Some(&m)).expect("compiles");
        assert_eq!(
            c(&Predicate::HasMember(Some("id-1".into()))),
            "(member=uid=a\\281\\29,ou=p)"
        );
        assert_eq!(c(&Predicate::HasMember(Some("id-2".into()))), NOTHING);
        assert_eq!(
            c(&Predicate::HasMember(None)),
            "(&(member=*)(!(member=cn=nobody)))"
        );
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
