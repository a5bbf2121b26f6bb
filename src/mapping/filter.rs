//! SCIM filters compiled into store predicates (RFC 7644 §3.4.2.2).
//!
//! Every attribute a filter names must resolve to a binding; otherwise the filter is 400
//! `invalidFilter` naming the attribute. Nothing is ever evaluated by scanning rows in the
//! sidecar: the store runs the whole predicate.

use serde_json::Value as Json;

use crate::backend::{CmpOp, Predicate, Sort, Value};
use crate::scim::ScimError;
use crate::scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use crate::scim::schema::{Home, ResolveError, Resolved};

use super::convert::Matches;
use super::{Binding, Inner, Target};

impl Inner {
    /// Compiles a list filter.
    pub(crate) fn compile(&self, f: &Filter) -> Result<Predicate, ScimError> {
        Ok(simplify(self.node(f)?))
    }

    fn node(&self, f: &Filter) -> Result<Predicate, ScimError> {
        match f {
            Filter::And(a, b) => Ok(Predicate::And(vec![self.node(a)?, self.node(b)?])),
            Filter::Or(a, b) => Ok(Predicate::Or(vec![self.node(a)?, self.node(b)?])),
            Filter::Not(a) => Ok(Predicate::Not(Box::new(self.node(a)?))),
            Filter::Present(p) => self.present(p),
            Filter::Compare(p, op, v) => self.compare(p, *op, v),
            Filter::ValuePath(p, inner) => self.value_path(p, inner),
        }
    }

    fn resolve<'a>(&'a self, p: &AttrPath) -> Result<Resolved<'a>, ScimError> {
        self.rt.resolve(p).map_err(|e| {
            ScimError::invalid_filter(match e {
                ResolveError::NotStored(a) => {
                    format!("attribute '{a}' is not stored by this service provider, so it cannot be filtered on")
                }
                ResolveError::Unknown(a) => format!("unknown attribute '{a}' in filter"),
                ResolveError::UnknownSchema(u) => format!("unknown schema '{u}' in filter"),
            })
        })
    }

    /// Bindings of attribute `attr` (in `ext`), restricted to sub-attribute `sub` when given.
    fn bindings_of(
        &self,
        ext: Option<&str>,
        attr: &str,
        sub: Option<&str>,
    ) -> Vec<(usize, &Binding)> {
        self.bindings
            .iter()
            .enumerate()
            .filter(|(_, b)| match &b.target {
                Target::Attr {
                    ext: e,
                    attr: a,
                    sub: s,
                } => e.as_deref() == ext && a == attr && (sub.is_none() || s.as_deref() == sub),
                Target::Typed {
                    ext: e,
                    attr: a,
                    sub: s,
                    ..
                } => e.as_deref() == ext && a == attr && (sub.is_none() || Some(s.as_str()) == sub),
                _ => false,
            })
            .collect()
    }

    fn meta_field(&self, sub: &str) -> Option<usize> {
        match sub {
            "created" => self.created,
            "lastModified" => self.modified,
            _ => None,
        }
    }

    fn present(&self, p: &AttrPath) -> Result<Predicate, ScimError> {
        let r = self.resolve(p)?;
        if r.home == Home::Common {
            return match (r.attr.name.as_str(), r.sub.map(|s| s.name.as_str())) {
                ("id", _)
                | ("meta", None)
                | ("meta", Some("resourceType" | "location" | "version")) => Ok(Predicate::True),
                ("meta", Some(s)) => self
                    .meta_field(s)
                    .map(Predicate::Present)
                    .ok_or_else(|| self.unfilterable(&r)),
                _ => self.fields_present(&r),
            };
        }
        if self.rt.membership.as_deref() == Some(r.attr.name.as_str()) {
            return Ok(Predicate::HasMember(None));
        }
        self.fields_present(&r)
    }

    fn fields_present(&self, r: &Resolved<'_>) -> Result<Predicate, ScimError> {
        let ext = ext_of(r);
        let found = self.bindings_of(ext, &r.attr.name, r.sub.map(|s| s.name.as_str()));
        if found.is_empty() {
            // `emails.type pr`: every typed value has its type.
            if r.sub.is_some_and(|s| s.name == "type") {
                return self.fields_present(&Resolved { sub: None, ..*r });
            }
            return Err(self.unfilterable(r));
        }
        Ok(Predicate::Or(
            found
                .into_iter()
                .map(|(i, _)| Predicate::Present(i))
                .collect(),
        ))
    }

    fn compare(&self, p: &AttrPath, op: CompareOp, v: &CompValue) -> Result<Predicate, ScimError> {
        let r = self.resolve(p)?;
        let shown = r.to_string();
        if r.home == Home::Common {
            match (r.attr.name.as_str(), r.sub.map(|s| s.name.as_str())) {
                ("id", _) => {
                    let CompValue::Str(id) = v else {
                        return Err(ScimError::invalid_filter(
                            "'id' is a string; compare it with a quoted value",
                        ));
                    };
                    return match op {
                        CompareOp::Eq => Ok(Predicate::KeyEq(id.clone())),
                        CompareOp::Ne => Ok(Predicate::Not(Box::new(Predicate::KeyEq(id.clone())))),
                        _ => Err(ScimError::invalid_filter("'id' supports only eq and ne")),
                    };
                }
                ("meta", Some("resourceType")) => {
                    let hit = matches!(v, CompValue::Str(s) if text_op(op, &self.rt.name, s));
                    return Ok(if hit {
                        Predicate::True
                    } else {
                        Predicate::False
                    });
                }
                ("meta", Some(s @ ("created" | "lastModified"))) => {
                    let i = self.meta_field(s).ok_or_else(|| self.unfilterable(&r))?;
                    return self.cmp(i, &self.bindings[i], op, v, &shown);
                }
                ("meta", _) => {
                    return Err(ScimError::invalid_filter(format!(
                        "'{shown}' cannot be filtered on"
                    )));
                }
                _ => {}
            }
        }
        if self.rt.membership.as_deref() == Some(r.attr.name.as_str()) {
            return member_compare(&r, op, v);
        }
        let sub = match (r.sub, r.attr.is_complex()) {
            (Some(s), _) => s.name.as_str(),
            // RFC 7644 §3.4.2.2: a multi-valued complex attribute compares its `value`.
            (None, true) if r.attr.multi_valued => "value",
            (None, true) => {
                return Err(ScimError::invalid_filter(format!(
                    "'{shown}' is complex: filter on one of its sub-attributes, e.g. {shown}.{}",
                    r.attr
                        .sub_attributes
                        .first()
                        .map_or("value", |s| s.name.as_str())
                )));
            }
            (None, false) => "",
        };
        let ext = ext_of(&r);
        if sub == "type" {
            // `emails.type eq "work"`: the typed slots whose type compares true, if they hold a
            // value.
            return Ok(Predicate::Or(
                self.bindings_of(ext, &r.attr.name, None)
                    .into_iter()
                    .filter(|(_, b)| match (&b.target, v) {
                        (Target::Typed { type_value, .. }, CompValue::Str(s)) => {
                            text_op(op, type_value, s)
                        }
                        _ => false,
                    })
                    .map(|(i, _)| Predicate::Present(i))
                    .collect(),
            ));
        }
        let found = self.bindings_of(ext, &r.attr.name, (!sub.is_empty()).then_some(sub));
        if found.is_empty() {
            return Err(self.unfilterable(&r));
        }
        let mut out = Vec::with_capacity(found.len());
        for (i, b) in found {
            out.push(self.cmp(i, b, op, v, &shown)?);
        }
        Ok(Predicate::Or(out))
    }

    /// One comparison on field `i`.
    fn cmp(
        &self,
        i: usize,
        b: &Binding,
        op: CompareOp,
        v: &CompValue,
        shown: &str,
    ) -> Result<Predicate, ScimError> {
        if matches!(v, CompValue::Null) {
            return match op {
                CompareOp::Eq => Ok(Predicate::Not(Box::new(Predicate::Present(i)))),
                CompareOp::Ne => Ok(Predicate::Present(i)),
                _ => Err(ScimError::invalid_filter(format!(
                    "'{shown}' can be compared with null only by eq and ne"
                ))),
            };
        }
        let textual = b.conv.scim.is_textual();
        let bool_like = b.conv.scim == crate::scim::schema::AttrType::Boolean;
        let mapped = !b.conv.values.is_empty();
        let cmp_op = match op {
            CompareOp::Eq => CmpOp::Eq,
            CompareOp::Ne => CmpOp::Ne,
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => {
                if !textual
                    || mapped
                    || !matches!(b.conv.field, crate::backend::FieldType::Text { .. })
                {
                    return Err(ScimError::invalid_filter(format!(
                        "'{shown}' supports eq, ne and pr; '{op}' needs a text attribute"
                    )));
                }
                match op {
                    CompareOp::Co => CmpOp::Contains,
                    CompareOp::Sw => CmpOp::StartsWith,
                    _ => CmpOp::EndsWith,
                }
            }
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => {
                // RFC 7644 §3.4.2.2: ordering a boolean is an invalid filter.
                if bool_like || mapped {
                    return Err(ScimError::invalid_filter(format!(
                        "'{shown}' cannot be ordered; use eq or ne"
                    )));
                }
                match op {
                    CompareOp::Gt => CmpOp::Gt,
                    CompareOp::Ge => CmpOp::Ge,
                    CompareOp::Lt => CmpOp::Lt,
                    _ => CmpOp::Le,
                }
            }
        };
        if mapped {
            // Validates the value's type, as for any attribute.
            b.conv.filter_value(v)?;
            let json = match v {
                CompValue::Null => Json::Null,
                CompValue::Bool(x) => Json::Bool(*x),
                CompValue::Number(n) => Json::Number(n.clone()),
                CompValue::Str(s) => Json::String(s.clone()),
            };
            let cmp = |op: CmpOp, value: Value| Predicate::Cmp {
                field: i,
                op,
                value,
                fold_case: b.conv.fold_case && textual,
            };
            let eq = cmp_op == CmpOp::Eq;
            return Ok(match b.conv.matches(&json) {
                // A value no stored value stands for.
                Matches::AnyOf(vs) if vs.is_empty() && eq => Predicate::False,
                Matches::AnyOf(vs) if vs.is_empty() => Predicate::True,
                Matches::AnyOf(mut vs) if vs.len() == 1 => cmp(cmp_op, vs.remove(0)),
                Matches::AnyOf(vs) if eq => {
                    Predicate::Or(vs.into_iter().map(|v| cmp(CmpOp::Eq, v)).collect())
                }
                Matches::AnyOf(vs) => {
                    Predicate::And(vs.into_iter().map(|v| cmp(CmpOp::Ne, v)).collect())
                }
                // The fallback: a value, but none the map lists for another SCIM value.
                Matches::NoneOf(others) if eq => Predicate::And(
                    std::iter::once(Predicate::Present(i))
                        .chain(others.into_iter().map(|v| cmp(CmpOp::Ne, v)))
                        .collect(),
                ),
                Matches::NoneOf(others) => {
                    Predicate::Or(others.into_iter().map(|v| cmp(CmpOp::Eq, v)).collect())
                }
            });
        }
        match b.conv.filter_value(v)? {
            Some(value) => Ok(Predicate::Cmp {
                field: i,
                op: cmp_op,
                value,
                fold_case: b.conv.fold_case && textual,
            }),
            // A value no stored value can equal.
            None => Ok(if cmp_op == CmpOp::Ne {
                Predicate::True
            } else {
                Predicate::False
            }),
        }
    }

    fn value_path(&self, p: &AttrPath, inner: &Filter) -> Result<Predicate, ScimError> {
        let r = self.resolve(p)?;
        if !r.attr.is_complex() {
            return Err(ScimError::invalid_filter(format!(
                "'{}' is not complex, so it takes no [filter]",
                r
            )));
        }
        if self.rt.membership.as_deref() == Some(r.attr.name.as_str()) {
            return self.member_filter(&r, inner);
        }
        let ext = ext_of(&r);
        if !r.attr.multi_valued {
            // `name[givenName eq "x"]`: the sub-attributes of the one value.
            return self.slot(&r, None, inner);
        }
        let mut slots: Vec<&str> = Vec::new();
        for (_, b) in self.bindings_of(ext, &r.attr.name, None) {
            if let Target::Typed { type_value, .. } = &b.target {
                if !slots.contains(&type_value.as_str()) {
                    slots.push(type_value);
                }
            }
        }
        let mut any = Vec::with_capacity(slots.len());
        for t in slots {
            // A value exists only if some of its fields hold something.
            let exists = Predicate::Or(
                self.bindings_of(ext, &r.attr.name, None)
                    .into_iter()
                    .filter(|(_, b)| matches!(&b.target, Target::Typed { type_value, .. } if type_value == t))
                    .map(|(i, _)| Predicate::Present(i))
                    .collect(),
            );
            any.push(Predicate::And(vec![exists, self.slot(&r, Some(t), inner)?]));
        }
        Ok(Predicate::Or(any))
    }

    /// The inner filter of a value path, over one value: the typed slot `type_value`, or the
    /// single value of a complex attribute.
    fn slot(
        &self,
        r: &Resolved<'_>,
        type_value: Option<&str>,
        f: &Filter,
    ) -> Result<Predicate, ScimError> {
        let sub_path = |p: &AttrPath| -> Result<String, ScimError> {
            match r.attr.sub(&p.name) {
                Some(s) if p.urn.is_none() && p.sub.is_none() => Ok(s.name.clone()),
                _ => Err(ScimError::invalid_filter(format!(
                    "'{}' is not a stored sub-attribute of '{}'",
                    p, r
                ))),
            }
        };
        let ext = ext_of(r);
        let field = |sub: &str| {
            self.bindings_of(ext, &r.attr.name, Some(sub))
                .into_iter()
                .find(|(_, b)| match (&b.target, type_value) {
                    (Target::Typed { type_value: t, .. }, Some(want)) => t == want,
                    (Target::Attr { .. }, None) => true,
                    _ => false,
                })
        };
        match f {
            Filter::And(a, b) => Ok(Predicate::And(vec![
                self.slot(r, type_value, a)?,
                self.slot(r, type_value, b)?,
            ])),
            Filter::Or(a, b) => Ok(Predicate::Or(vec![
                self.slot(r, type_value, a)?,
                self.slot(r, type_value, b)?,
            ])),
            Filter::Not(a) => Ok(Predicate::Not(Box::new(self.slot(r, type_value, a)?))),
            Filter::ValuePath(p, _) => Err(ScimError::invalid_filter(format!(
                "value filters cannot be nested ('{p}')"
            ))),
            Filter::Present(p) => {
                let sub = sub_path(p)?;
                match (sub.as_str(), type_value) {
                    ("type", Some(_)) => Ok(Predicate::True),
                    _ => Ok(field(&sub).map_or(Predicate::False, |(i, _)| Predicate::Present(i))),
                }
            }
            Filter::Compare(p, op, v) => {
                let sub = sub_path(p)?;
                if let (Some(t), "type") = (type_value, sub.as_str()) {
                    let hit = matches!(v, CompValue::Str(s) if text_op(*op, t, s));
                    return Ok(if hit {
                        Predicate::True
                    } else {
                        Predicate::False
                    });
                }
                match field(&sub) {
                    Some((i, b)) => self.cmp(i, b, *op, v, &format!("{}.{sub}", r)),
                    // This value keeps no such field: it equals nothing (and `ne` anything).
                    None => Ok(if *op == CompareOp::Ne {
                        Predicate::True
                    } else {
                        Predicate::False
                    }),
                }
            }
        }
    }

    /// `members[value eq "id"]` and friends.
    fn member_filter(&self, r: &Resolved<'_>, f: &Filter) -> Result<Predicate, ScimError> {
        match f {
            Filter::And(a, b) => Ok(Predicate::And(vec![
                self.member_filter(r, a)?,
                self.member_filter(r, b)?,
            ])),
            Filter::Or(a, b) => Ok(Predicate::Or(vec![
                self.member_filter(r, a)?,
                self.member_filter(r, b)?,
            ])),
            Filter::Not(a) => Ok(Predicate::Not(Box::new(self.member_filter(r, a)?))),
            Filter::Present(p) if p.name.eq_ignore_ascii_case("value") => {
                Ok(Predicate::HasMember(None))
            }
            Filter::Compare(p, op, v) if p.name.eq_ignore_ascii_case("value") => {
                member_compare(r, *op, v)
            }
            _ => Err(ScimError::invalid_filter(format!(
                "members can be filtered only by id: {}[value eq \"<id>\"]",
                r.attr.name
            ))),
        }
    }

    /// The sort order for `sortBy`.
    pub(crate) fn sort_for(&self, p: &AttrPath, descending: bool) -> Result<Sort, ScimError> {
        let r = self
            .rt
            .resolve(p)
            .map_err(|e| ScimError::invalid_value(format!("sortBy: {e}")))?;
        if r.home == Home::Common {
            match (r.attr.name.as_str(), r.sub.map(|s| s.name.as_str())) {
                ("id", _) => {
                    return Ok(Sort {
                        field: None,
                        fold_case: false,
                        descending,
                        ranks: Vec::new(),
                    });
                }
                ("meta", Some(s)) => {
                    if let Some(i) = self.meta_field(s) {
                        return Ok(Sort {
                            field: Some(i),
                            fold_case: false,
                            descending,
                            ranks: Vec::new(),
                        });
                    }
                }
                _ => {}
            }
        }
        let sub = r
            .sub
            .map(|s| s.name.as_str())
            .or(r.attr.is_complex().then_some("value"));
        // RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its (first mapped) value.
        match self.bindings_of(ext_of(&r), &r.attr.name, sub).first() {
            Some((i, b)) => Ok(Sort {
                field: Some(*i),
                fold_case: b.conv.fold_case,
                descending,
                ranks: b.conv.ranks(),
            }),
            None if self.is_derived(&r) => Err(ScimError::invalid_value(format!(
                "cannot sort by '{}': it is computed on every read; sort by an attribute it is made of",
                r
            ))),
            None => Err(ScimError::invalid_value(format!(
                "cannot sort by '{}': it is not stored",
                r
            ))),
        }
    }
}

fn ext_of<'a>(r: &Resolved<'a>) -> Option<&'a str> {
    match r.home {
        Home::Extension(u) => Some(u),
        _ => None,
    }
}

impl Inner {
    /// The error for an attribute no field holds: computed ones say so (a filter or a sort
    /// cannot reach what is stored nowhere).
    fn unfilterable(&self, r: &Resolved<'_>) -> ScimError {
        if self.is_derived(r) {
            return ScimError::invalid_filter(format!(
                "attribute '{}' is computed from other attributes on every read, so it cannot be filtered on; filter on the attributes it is made of",
                r
            ));
        }
        not_stored(r)
    }

    /// Whether `r` is an attribute computed on read.
    fn is_derived(&self, r: &Resolved<'_>) -> bool {
        let ext = ext_of(r);
        self.derived.iter().any(|d| {
            matches!(&d.target, Target::Attr { ext: e, attr, sub }
                if e.as_deref() == ext && *attr == r.attr.name
                    && sub.as_deref() == r.sub.map(|s| s.name.as_str()))
        })
    }
}

fn not_stored(r: &Resolved<'_>) -> ScimError {
    ScimError::invalid_filter(format!(
        "attribute '{}' is not stored by this service provider, so it cannot be filtered on",
        r
    ))
}

fn member_compare(r: &Resolved<'_>, op: CompareOp, v: &CompValue) -> Result<Predicate, ScimError> {
    if r.sub.is_some_and(|s| s.name != "value") {
        return Err(ScimError::invalid_filter(format!(
            "members can be filtered only by id ({}.value)",
            r.attr.name
        )));
    }
    let CompValue::Str(id) = v else {
        return Err(ScimError::invalid_filter(
            "member ids are strings; compare them with a quoted value",
        ));
    };
    match op {
        CompareOp::Eq => Ok(Predicate::HasMember(Some(id.clone()))),
        CompareOp::Ne => Ok(Predicate::Not(Box::new(Predicate::HasMember(Some(
            id.clone(),
        ))))),
        _ => Err(ScimError::invalid_filter("members support only eq and ne")),
    }
}

/// A string operator on two constants (types and resource type names are not case-exact).
fn text_op(op: CompareOp, have: &str, want: &str) -> bool {
    let (h, w) = (have.to_lowercase(), want.to_lowercase());
    match op {
        CompareOp::Eq => h == w,
        CompareOp::Ne => h != w,
        CompareOp::Co => h.contains(&w),
        CompareOp::Sw => h.starts_with(&w),
        CompareOp::Ew => h.ends_with(&w),
        CompareOp::Gt => h > w,
        CompareOp::Ge => h >= w,
        CompareOp::Lt => h < w,
        CompareOp::Le => h <= w,
    }
}

/// Folds constants and flattens nesting, so the store sees the simplest equivalent condition.
pub(crate) fn simplify(p: Predicate) -> Predicate {
    match p {
        Predicate::And(items) => {
            let mut out = Vec::new();
            for i in items.into_iter().map(simplify) {
                match i {
                    Predicate::True => {}
                    Predicate::False => return Predicate::False,
                    Predicate::And(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => Predicate::True,
                1 => out.pop().unwrap_or(Predicate::True),
                _ => Predicate::And(out),
            }
        }
        Predicate::Or(items) => {
            let mut out = Vec::new();
            for i in items.into_iter().map(simplify) {
                match i {
                    Predicate::False => {}
                    Predicate::True => return Predicate::True,
                    Predicate::Or(inner) => out.extend(inner),
                    other => out.push(other),
                }
            }
            match out.len() {
                0 => Predicate::False,
                1 => out.pop().unwrap_or(Predicate::False),
                _ => Predicate::Or(out),
            }
        }
        Predicate::Not(inner) => match simplify(*inner) {
            Predicate::True => Predicate::False,
            Predicate::False => Predicate::True,
            Predicate::Not(x) => *x,
            other => Predicate::Not(Box::new(other)),
        },
        other => other,
    }
}
