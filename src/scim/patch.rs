//! PATCH (RFC 7644 §3.5.2): parsing a PatchOp body and applying its operations to a loaded
//! resource in SCIM space.
//!
//! The mapping layer calls [`apply`] inside the store transaction, on the resource it just
//! loaded, then writes only what changed. The membership attribute (`members` of a Group) is
//! never applied to the loaded resource: its operations come back as [`MemberOp`]s that the
//! store runs as inserts and deletes, so a group with 100,000 members is never loaded to add one.
//!
//! Beyond the RFC, following what Entra ID needs (`shared/reference/idp-behaviour.md` §4): an
//! `add` or `replace` through a value filter that matches nothing creates the value the filter
//! describes (`emails[type eq "work"].value`), and `remove` that matches nothing succeeds.

use serde_json::Value;

use super::dialect;
use super::error::{ScimError, ScimType};
use super::filter::{PatchPath, eval, parse_patch_path};
use super::resource::{self, Entry, Normalizer, Object, UnknownPolicy, member_ids, put};
use super::schema::{Attribute, Extension, Home, Mutability, Resolved, ResourceType};

/// The PatchOp message URN.
pub const PATCH_URN: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A PATCH operation kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `add`
    Add,
    /// `remove`
    Remove,
    /// `replace`
    Replace,
}

impl OpKind {
    fn as_str(self) -> &'static str {
        match self {
            OpKind::Add => "add",
            OpKind::Remove => "remove",
            OpKind::Replace => "replace",
        }
    }
}

/// One parsed operation.
#[derive(Clone, Debug)]
pub struct PatchOp {
    /// The operation.
    pub op: OpKind,
    /// The target path, if given.
    pub path: Option<PatchPath>,
    /// The path as sent, for messages.
    pub raw_path: Option<String>,
    /// The value member, if present (`Some(Value::Null)` when sent as `null`).
    pub value: Option<Value>,
}

/// A change to the membership attribute, run by the store without loading the member list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberOp {
    /// Add these member ids (already present ones are kept).
    Add(Vec<String>),
    /// Remove these member ids (absent ones are ignored).
    Remove(Vec<String>),
    /// Remove every member.
    RemoveAll,
    /// Make the members exactly these ids.
    Replace(Vec<String>),
}

/// The outcome of [`apply`] besides the edited attributes.
#[derive(Debug, Default)]
pub struct Applied {
    /// Membership changes, in order.
    pub members: Vec<MemberOp>,
    /// Attributes that were ignored because they are not stored.
    pub ignored: Vec<String>,
}

/// Parses a PatchOp body (RFC 7644 §3.5.2). Op names are matched case-insensitively (Entra);
/// paths are parsed with the filter grammar.
pub fn parse(body: Value) -> Result<Vec<PatchOp>, ScimError> {
    let obj = resource::message(body, PATCH_URN, "a PATCH body")?;
    let field = |name: &str| resource::field(&obj, name);
    let ops = match field("Operations") {
        Some(Value::Array(ops)) if !ops.is_empty() => ops,
        _ => {
            return Err(ScimError::invalid_syntax(
                "a PATCH body needs a non-empty \"Operations\" array",
            ));
        }
    };
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let Value::Object(op) = op else {
            return Err(ScimError::invalid_syntax(format!(
                "Operations[{i}] must be an object"
            )));
        };
        let get = |name: &str| {
            op.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        let kind = match get("op") {
            Some(Value::String(s)) => dialect::op_kind(s).ok_or_else(|| {
                ScimError::invalid_syntax(format!(
                    "Operations[{i}].op must be \"add\", \"remove\" or \"replace\", got \"{s}\""
                ))
            })?,
            _ => {
                return Err(ScimError::invalid_syntax(format!(
                    "Operations[{i}] needs an \"op\" string"
                )));
            }
        };
        let (path, raw_path) = match get("path") {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(p)) => {
                let parsed = parse_patch_path(p).map_err(|e| {
                    ScimError::invalid_path(format!("Operations[{i}].path \"{p}\": {e}"))
                })?;
                (Some(parsed), Some(p.clone()))
            }
            Some(_) => {
                return Err(ScimError::invalid_path(format!(
                    "Operations[{i}].path must be a string"
                )));
            }
        };
        let value = get("value").cloned();
        match kind {
            OpKind::Add | OpKind::Replace if value.is_none() => {
                return Err(ScimError::invalid_syntax(format!(
                    "Operations[{i}] ({}) needs a \"value\"",
                    kind.as_str()
                )));
            }
            // RFC 7644 §3.5.2.2: remove without a path fails with noTarget.
            OpKind::Remove if path.is_none() => {
                return Err(ScimError::bad_request(
                    ScimType::NoTarget,
                    format!("Operations[{i}] (remove) needs a \"path\""),
                ));
            }
            _ => {}
        }
        out.push(PatchOp {
            op: kind,
            path,
            raw_path,
            value,
        });
    }
    Ok(out)
}

/// Applies `ops` to `attrs` (the resource as loaded), in order. Either every operation applies
/// or an error is returned; the caller discards `attrs` on error, so nothing is half-done.
pub fn apply(
    rt: &ResourceType,
    attrs: &mut Object,
    ops: &[PatchOp],
    policy: UnknownPolicy,
) -> Result<Applied, ScimError> {
    let before = watched(rt, attrs);
    let mut n = Normalizer::new(rt, policy);
    let mut members = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let res = match &op.path {
            None => apply_pathless(rt, attrs, op, &mut n, &mut members),
            Some(p) => apply_path(rt, attrs, op, p, &mut n, &mut members),
        };
        res.map_err(|mut e| {
            let path = op
                .raw_path
                .as_deref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default();
            e.detail = format!("Operations[{i}] ({}{path}): {}", op.op.as_str(), e.detail);
            e
        })?;
    }
    check_immutable(rt, &before, attrs)?;
    resource::check_required_kept(rt, &before, attrs)?;
    Ok(Applied {
        members,
        ignored: n.ignored,
    })
}

/// An operation without `path`: its value is an object of attributes (RFC 7644 §3.5.2.1 and
/// §3.5.2.3), whose keys may be dotted or URN-qualified (Entra). A key with a value filter
/// (`"emails[type eq \"work\"].value"`) is a path: it applies as the same operation with
/// that path would, never silently ignored.
fn apply_pathless(
    rt: &ResourceType,
    attrs: &mut Object,
    op: &PatchOp,
    n: &mut Normalizer<'_>,
    members: &mut Vec<MemberOp>,
) -> Result<(), ScimError> {
    let Some(Value::Object(mut obj)) = op.value.clone() else {
        return Err(ScimError::invalid_value(
            "an operation without \"path\" needs an object \"value\" of attributes",
        ));
    };
    let filtered: Vec<String> = obj.keys().filter(|k| k.contains('[')).cloned().collect();
    for key in filtered {
        let value = obj.remove(&key);
        let path = parse_patch_path(&key)
            .map_err(|e| ScimError::invalid_path(format!("value key \"{key}\": {e}")))?;
        let keyed = PatchOp {
            op: op.op,
            path: Some(path.clone()),
            raw_path: Some(key),
            value,
        };
        apply_path(rt, attrs, &keyed, &path, n, members)?;
    }
    for entry in n.entries(obj)? {
        match entry {
            Entry::Members(ids) => members.push(match op.op {
                OpKind::Add => MemberOp::Add(ids),
                _ => MemberOp::Replace(ids),
            }),
            Entry::Attr(r, v) => set(attrs, &r, v, op.op),
        }
    }
    Ok(())
}

/// Sets an attribute for `add` (multi-valued: append new values) or `replace` (set; `None`
/// clears). Complex single-valued values merge with what is there, as RFC 7644 §3.5.2.3 asks.
fn set(attrs: &mut Object, r: &Resolved<'_>, v: Option<Value>, kind: OpKind) {
    match (kind, v) {
        (OpKind::Add, None) => {}
        (OpKind::Add, Some(Value::Array(new))) if r.sub.is_none() && r.attr.multi_valued => {
            let mut list = match resource::get(attrs, r) {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            for item in new {
                if !list.contains(&item) {
                    list.push(item);
                }
            }
            put(attrs, r, Some(Value::Array(list)));
        }
        (_, v) => put(attrs, r, v),
    }
}

/// An operation with a path.
fn apply_path(
    rt: &ResourceType,
    attrs: &mut Object,
    op: &PatchOp,
    p: &PatchPath,
    n: &mut Normalizer<'_>,
    members: &mut Vec<MemberOp>,
) -> Result<(), ScimError> {
    if let Some(ext) = extension_target(rt, p) {
        return extension_path(rt, attrs, op, ext, n, members);
    }
    let r = match rt.resolve(&p.attr) {
        Ok(r) => r,
        // Not stored here: ignored (or rejected) like an unstored attribute in a body. Entra
        // patches its whole mapped attribute set.
        Err(why) => return n.skip(p.attr.to_string(), why),
    };
    if r.attr.mutability == Mutability::ReadOnly
        || r.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
    {
        return Err(ScimError::mutability(format!(
            "attribute '{}' is read-only",
            r
        )));
    }
    if rt.membership.as_deref() == Some(r.attr.name.as_str()) && r.home != Home::Common {
        members.push(member_op(op, p)?);
        return Ok(());
    }
    match &p.filter {
        None => plain_path(attrs, op, &r, n),
        Some(filter) => value_path(rt, attrs, op, &r, filter, p.sub.as_deref(), n),
    }
}

/// The extension a path names as a whole (`"path": "urn:…:enterprise:2.0:User"`), if it does.
/// The path grammar reads such a URN as an attribute (`User`) of the schema `urn:…:2.0`, which
/// does not resolve.
fn extension_target<'r>(rt: &'r ResourceType, p: &PatchPath) -> Option<&'r Extension> {
    let urn = p.attr.urn.as_deref()?;
    if p.filter.is_some() || p.sub.is_some() || p.attr.sub.is_some() {
        return None;
    }
    rt.extension(&format!("{urn}:{}", p.attr.name))
}

/// An operation on a whole extension (RFC 7644 §3.5.2.1, §3.5.2.3: the target is complex, so
/// the value is an object of its sub-attributes, merged with what is there): `add` and
/// `replace` apply as a body `{"<urn>": value}` would; `remove` clears every writable
/// attribute of the extension.
fn extension_path(
    rt: &ResourceType,
    attrs: &mut Object,
    op: &PatchOp,
    ext: &Extension,
    n: &mut Normalizer<'_>,
    members: &mut Vec<MemberOp>,
) -> Result<(), ScimError> {
    let urn = ext.schema.id.as_str();
    if op.op == OpKind::Remove {
        for attr in &ext.schema.attributes {
            if attr.mutability != Mutability::ReadOnly {
                let r = Resolved {
                    home: Home::Extension(urn),
                    attr,
                    sub: None,
                };
                put(attrs, &r, None);
            }
        }
        return Ok(());
    }
    let mut body = Object::new();
    body.insert(urn.to_owned(), op.value.clone().unwrap_or(Value::Null));
    let whole = PatchOp {
        value: Some(Value::Object(body)),
        ..op.clone()
    };
    apply_pathless(rt, attrs, &whole, n, members)
}

/// Every string in the values of the `add` and `replace` operations: a superset of the member
/// ids they can add or set, whatever form names them (`members` with a path, in a path-less
/// value, as objects or bare strings), known before the operations run.
pub fn named_ids(ops: &[PatchOp]) -> Vec<String> {
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
            Value::Object(o) => o.values().for_each(|i| strings(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for op in ops {
        if matches!(op.op, OpKind::Add | OpKind::Replace) {
            if let Some(v) = &op.value {
                strings(v, &mut out);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The membership attribute: `members` (add, replace, remove all, or remove a value array as
/// Entra does) or `members[value eq "id" or …]` (remove).
fn member_op(op: &PatchOp, p: &PatchPath) -> Result<MemberOp, ScimError> {
    let name = &p.attr.name;
    if p.attr.sub.is_some() || p.sub.is_some() {
        return Err(ScimError::invalid_path(format!(
            "sub-attributes of '{name}' cannot be changed; add or remove whole members"
        )));
    }
    match (&p.filter, op.op) {
        (None, OpKind::Add) => Ok(MemberOp::Add(member_ids(name, op.value.clone().unwrap_or(Value::Null))?)),
        (None, OpKind::Replace) => {
            Ok(MemberOp::Replace(member_ids(name, op.value.clone().unwrap_or(Value::Null))?))
        }
        (None, OpKind::Remove) => match &op.value {
            None | Some(Value::Null) => Ok(MemberOp::RemoveAll),
            Some(v) => Ok(MemberOp::Remove(member_ids(name, v.clone())?)),
        },
        (Some(f), OpKind::Remove) => eval::value_equalities(f).map(MemberOp::Remove).ok_or_else(|| {
            ScimError::invalid_filter(format!(
                "members can be selected only by id: {name}[value eq \"id\"] (or several joined with \"or\")"
            ))
        }),
        (Some(_), _) => Err(ScimError::invalid_path(format!(
            "a value filter on '{name}' is only valid with \"remove\""
        ))),
    }
}

/// A path without a value filter: an attribute or a sub-attribute.
fn plain_path(
    attrs: &mut Object,
    op: &PatchOp,
    r: &Resolved<'_>,
    n: &mut Normalizer<'_>,
) -> Result<(), ScimError> {
    let value = op.value.clone().unwrap_or(Value::Null);
    // `emails.value` without a filter: the sub-attribute of every value (RFC 7644 §3.5.2.3).
    if r.attr.multi_valued && r.sub.is_some() {
        let whole = Resolved { sub: None, ..*r };
        let sub = r.leaf();
        let mut list = current_list(attrs, &whole);
        match op.op {
            OpKind::Remove => list.iter_mut().for_each(|e| remove_sub(e, &sub.name)),
            OpKind::Add | OpKind::Replace => {
                let v = n.value(r, value)?;
                if list.is_empty() {
                    list.push(Value::Object(Object::new()));
                }
                for e in &mut list {
                    set_sub(e, &sub.name, v.clone());
                }
            }
        }
        list.retain(|e| !is_empty_value(e, r.attr));
        put(
            attrs,
            &whole,
            (!list.is_empty()).then_some(Value::Array(list)),
        );
        return Ok(());
    }
    match op.op {
        OpKind::Remove => match op.value.as_ref().filter(|v| !v.is_null()) {
            // `remove` with a value on a multi-valued attribute: drop the values that match
            // what was given (a generalisation of Entra's member-removal shape).
            Some(v) if r.attr.multi_valued => {
                let gone = match n.value(r, v.clone())? {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                };
                let mut list = current_list(attrs, r);
                list.retain(|e| !gone.iter().any(|g| subset(g, e)));
                put(attrs, r, (!list.is_empty()).then_some(Value::Array(list)));
            }
            _ => put(attrs, r, None),
        },
        kind => {
            let v = n.value(r, value)?;
            set(attrs, r, v, kind);
        }
    }
    Ok(())
}

/// A path with a value filter: `emails[type eq "work"]` or `emails[type eq "work"].value`.
fn value_path(
    rt: &ResourceType,
    attrs: &mut Object,
    op: &PatchOp,
    r: &Resolved<'_>,
    filter: &super::filter::Filter,
    sub: Option<&str>,
    n: &mut Normalizer<'_>,
) -> Result<(), ScimError> {
    if !r.attr.is_complex() {
        return Err(ScimError::invalid_path(format!(
            "'{}' is not a complex attribute, so it takes no value filter",
            r
        )));
    }
    // Filters may name sub-attributes the schema defines even if they are not stored (Entra's
    // validator sends `emails[type eq "home"].primary`); stored values simply lack them.
    let known = known_definition(rt, r).unwrap_or(r.attr);
    eval::validate(filter, known)?;
    let sub_def = match sub {
        None => None,
        Some(s) => match r.attr.sub(s) {
            Some(d) => Some(d),
            None => {
                let why = match known.sub(s) {
                    Some(_) => super::schema::ResolveError::NotStored(format!("{}.{s}", r)),
                    None => super::schema::ResolveError::Unknown(format!("{}.{s}", r)),
                };
                return n.skip(format!("{}.{s}", r), why);
            }
        },
    };
    let whole = Resolved { sub: None, ..*r };
    let mut list = current_list(attrs, &whole);
    let hits: Vec<usize> = (0..list.len())
        .filter(|&i| eval::matches(filter, &list[i], known))
        .collect();
    match op.op {
        OpKind::Remove => {
            if let Some(sd) = sub_def {
                for &i in &hits {
                    remove_sub(&mut list[i], &sd.name);
                }
            } else {
                let mut i = 0;
                list.retain(|_| {
                    i += 1;
                    !hits.contains(&(i - 1))
                });
            }
        }
        kind => {
            let raw = op.value.clone().unwrap_or(Value::Null);
            let new = match sub_def {
                Some(sd) => n.value(
                    &Resolved {
                        sub: Some(sd),
                        ..whole
                    },
                    raw,
                )?,
                None => match n.value(&whole, Value::Array(vec![raw]))? {
                    Some(Value::Array(mut items)) if !items.is_empty() => Some(items.remove(0)),
                    Some(v) if !r.attr.multi_valued => Some(v),
                    _ => None,
                },
            };
            if hits.is_empty() {
                // Entra sends add and replace on typed values the resource does not have yet
                // and breaks on noTarget: create the value the filter describes.
                let Some(fields) = eval::equalities(filter) else {
                    return Err(ScimError::bad_request(
                        ScimType::NoTarget,
                        format!("no value of '{}' matches the filter", r),
                    ));
                };
                let mut elem = Object::new();
                for (name, v) in fields {
                    if let Some(d) = r.attr.sub(&name) {
                        elem.insert(d.name.clone(), v);
                    }
                }
                let mut elem = Value::Object(elem);
                match (sub_def, new) {
                    (Some(sd), v) => set_sub(&mut elem, &sd.name, v),
                    (None, Some(Value::Object(v))) => merge(&mut elem, v),
                    (None, _) => {}
                }
                if !is_empty_value(&elem, r.attr) {
                    list.push(elem);
                }
            } else {
                for &i in &hits {
                    match (sub_def, &new, kind) {
                        (Some(sd), v, _) => set_sub(&mut list[i], &sd.name, v.clone()),
                        (None, Some(Value::Object(v)), OpKind::Add) => {
                            merge(&mut list[i], v.clone())
                        }
                        (None, Some(v), _) => list[i] = v.clone(),
                        (None, None, _) => list[i] = Value::Null,
                    }
                }
            }
        }
    }
    list.retain(|e| !is_empty_value(e, r.attr));
    let value = if r.attr.multi_valued {
        (!list.is_empty()).then_some(Value::Array(list))
    } else {
        list.into_iter().next()
    };
    put(attrs, &whole, value);
    Ok(())
}

/// The full (unfiltered) definition of an attribute, for validating filters.
fn known_definition<'a>(rt: &'a ResourceType, r: &Resolved<'_>) -> Option<&'a Attribute> {
    let urn = match r.home {
        Home::Extension(u) => u,
        _ => rt.schema.id.as_str(),
    };
    rt.known
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(urn))
        .and_then(|s| s.attribute(&r.attr.name))
}

/// The values of a complex attribute as a list (a single-valued one is a list of one).
fn current_list(attrs: &Object, r: &Resolved<'_>) -> Vec<Value> {
    match resource::get(attrs, r) {
        Some(Value::Array(items)) => items.clone(),
        Some(v @ Value::Object(_)) => vec![v.clone()],
        _ => Vec::new(),
    }
}

fn set_sub(elem: &mut Value, name: &str, v: Option<Value>) {
    if !elem.is_object() {
        *elem = Value::Object(Object::new());
    }
    if let Some(o) = elem.as_object_mut() {
        match v {
            Some(v) => {
                o.insert(name.to_owned(), v);
            }
            None => {
                o.remove(name);
            }
        }
    }
}

fn remove_sub(elem: &mut Value, name: &str) {
    if let Some(o) = elem.as_object_mut() {
        o.remove(name);
    }
}

fn merge(elem: &mut Value, v: Object) {
    match elem.as_object_mut() {
        Some(o) => o.extend(v),
        None => *elem = Value::Object(v),
    }
}

/// A value that carries nothing but labels (`type`, `primary`, `display`) once its `value` is
/// gone is dropped: `{"type": "work"}` alone is not an email.
fn is_empty_value(elem: &Value, attr: &Attribute) -> bool {
    match elem {
        Value::Null => true,
        Value::Object(o) => {
            o.is_empty()
                || (attr.sub("value").is_some()
                    && !o.contains_key("value")
                    && o.keys()
                        .all(|k| matches!(k.as_str(), "type" | "primary" | "display")))
        }
        _ => false,
    }
}

/// Whether every field of `want` is in `have` with an equal value.
fn subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w.iter().all(|(k, v)| h.get(k) == Some(v)),
        (w, h) => w == h,
    }
}

/// The values of `attrs` that [`check_immutable`] and [`resource::check_required_kept`]
/// compare with the patched resource (immutable and required attributes), placed as in
/// `attrs`: a PATCH copies those, not the whole resource.
fn watched(rt: &ResourceType, attrs: &Object) -> Object {
    let mut out = Object::new();
    for (home, attr) in rt.attributes_with_home(true) {
        if attr.mutability != Mutability::Immutable && !attr.required {
            continue;
        }
        let r = Resolved {
            home,
            attr,
            sub: None,
        };
        if let Some(v) = resource::get(attrs, &r) {
            resource::put(&mut out, &r, Some(v.clone()));
        }
    }
    out
}

/// RFC 7643 §2.2 `immutable`: once it has a value, an attribute cannot change.
pub fn check_immutable(
    rt: &ResourceType,
    before: &Object,
    after: &Object,
) -> Result<(), ScimError> {
    for (home, attr) in rt.attributes_with_home(true) {
        let r = Resolved {
            home,
            attr,
            sub: None,
        };
        if attr.mutability == Mutability::Immutable {
            if let Some(old) = resource::get(before, &r) {
                if resource::get(after, &r) != Some(old) {
                    return Err(ScimError::mutability(format!(
                        "attribute '{}' is immutable and already has a value",
                        r
                    )));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::schema::{self, ENTERPRISE_USER_URN as ENT};
    use serde_json::json;

    fn user_type() -> ResourceType {
        crate::scim::resource::tests::user_type()
    }

    fn group_type() -> ResourceType {
        let full = schema::builtin(schema::GROUP_URN).cloned().expect("group");
        ResourceType {
            name: "Group".into(),
            endpoint: "/Groups".into(),
            description: String::new(),
            schema: full.clone(),
            extensions: vec![],
            common: schema::common_attributes(true),
            membership: Some("members".into()),
            groups_from: None,
            known: vec![full],
        }
    }

    fn body(ops: Value) -> Value {
        json!({"schemas": [PATCH_URN], "Operations": ops})
    }

    fn run(rt: &ResourceType, attrs: Value, ops: Value) -> Result<(Object, Applied), ScimError> {
        let Value::Object(mut attrs) = attrs else {
            panic!("object")
        };
        let ops = parse(body(ops))?;
        let applied = apply(rt, &mut attrs, &ops, UnknownPolicy::Ignore)?;
        Ok((attrs, applied))
    }

    /// Entra's default dialect: capitalised ops, a string boolean, filtered paths that create
    /// the typed email, an enterprise attribute by URN path, and an unstored attribute ignored.
    #[test]
    fn entra_default_dialect() {
        let rt = user_type();
        let (a, applied) = run(
            &rt,
            json!({"userName": "a", "active": true}),
            json!([
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@x.org"},
                {"op": "Replace", "path": "name.familyName", "value": "Doe"},
                {"op": "Replace", "path": format!("{ENT}:department"), "value": "Ops"},
                {"op": "Add", "path": "title", "value": "Boss"},
                {"op": "Add", "path": format!("{ENT}:manager"), "value": "m-9"}
            ]),
        )
        .expect("applies");
        assert_eq!(a["active"], false);
        assert_eq!(a["emails"], json!([{"type": "work", "value": "a@x.org"}]));
        assert_eq!(a["name"], json!({"familyName": "Doe"}));
        assert_eq!(
            a[ENT],
            json!({"department": "Ops", "manager": {"value": "m-9"}})
        );
        assert_eq!(applied.ignored, vec!["title"]);
    }

    /// Entra's `aadOptscim062020` dialect: one path-less replace whose value has dotted and
    /// URN-qualified keys; Okta's path-less deactivate.
    #[test]
    fn pathless_values() {
        let rt = user_type();
        let (a, _) = run(
            &rt,
            json!({"userName": "a", "name": {"givenName": "G", "familyName": "F"}}),
            json!([{"op": "replace", "value": {
                "name.givenName": "Barbara", format!("{ENT}:department"): "Retail", "active": false
            }}]),
        )
        .expect("applies");
        assert_eq!(
            a["name"],
            json!({"givenName": "Barbara", "familyName": "F"})
        );
        assert_eq!(a[ENT]["department"], "Retail");
        assert_eq!(a["active"], false);
    }

    /// A path-less value whose keys carry a value filter applies each key as a path (issue
    /// #9: it answered 200 and changed nothing), with or without the core schema's URN, and
    /// next to plain keys; a malformed filtered key is a 400 naming it.
    #[test]
    fn pathless_values_with_filtered_keys() {
        let rt = user_type();
        let start = json!({"userName": "a", "emails": [{"type": "work", "value": "w@x"}]});
        let (a, _) = run(
            &rt,
            start.clone(),
            json!([{"op": "replace", "value": {
                "emails[type eq \"work\"].value": "w2@x",
                "urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq \"home\"].value": "h@x",
                "active": false
            }}]),
        )
        .expect("applies");
        assert_eq!(
            a["emails"],
            json!([{"type": "work", "value": "w2@x"}, {"type": "home", "value": "h@x"}])
        );
        assert_eq!(a["active"], false);
        let e = run(
            &rt,
            start,
            json!([{"op": "replace", "value": {"emails[type eq].value": "x"}}]),
        )
        .expect_err("malformed");
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath), "{}", e.detail);
        assert!(e.detail.contains("emails[type eq].value"), "{}", e.detail);
    }

    /// Replacing and removing through value filters; removing what is not there is fine.
    #[test]
    fn value_filters() {
        let rt = user_type();
        let start = json!({"userName": "a", "emails": [
            {"type": "work", "value": "w@x"}, {"type": "home", "value": "h@x"}]});
        let (a, _) = run(
            &rt,
            start.clone(),
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w2@x"}]),
        )
        .expect("replace");
        assert_eq!(a["emails"][0], json!({"type": "work", "value": "w2@x"}));
        let (a, _) = run(
            &rt,
            start.clone(),
            json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]),
        )
        .expect("remove");
        assert_eq!(a["emails"], json!([{"type": "work", "value": "w@x"}]));
        let (a, _) = run(
            &rt,
            start.clone(),
            json!([{"op": "remove", "path": "emails[type eq \"work\"].value"}]),
        )
        .expect("remove sub");
        assert_eq!(a["emails"], json!([{"type": "home", "value": "h@x"}]));
        let (a, _) = run(
            &rt,
            start.clone(),
            json!([{"op": "remove", "path": "emails[type eq \"other\"]"}]),
        )
        .expect("no-op");
        assert_eq!(a["emails"].as_array().map(Vec::len), Some(2));
        let e = run(
            &rt,
            start,
            json!([{"op": "replace", "path": "emails[type eq \"a\" or type eq \"b\"].value", "value": "x"}]),
        )
        .expect_err("cannot create from or");
        assert_eq!(e.scim_type, Some(ScimType::NoTarget));
    }

    /// Group membership in every shape Entra and Okta send comes back as member operations,
    /// never applied to the loaded attributes.
    #[test]
    fn membership_ops() {
        let rt = group_type();
        let (a, applied) = run(
            &rt,
            json!({"displayName": "G"}),
            json!([
                {"op": "Add", "path": "members", "value": [{"$ref": null, "value": "1"}, {"value": "2"}]},
                {"op": "Remove", "path": "members", "value": [{"$ref": null, "value": "1"}]},
                {"op": "remove", "path": "members[value eq \"2\"]"},
                {"op": "replace", "path": "members", "value": [{"value": "3", "display": "c"}]},
                {"op": "remove", "path": "members"},
                {"op": "replace", "value": {"id": "ignored", "displayName": "G2"}}
            ]),
        )
        .expect("applies");
        assert_eq!(
            a,
            json!({"displayName": "G2"})
                .as_object()
                .cloned()
                .expect("obj")
        );
        assert_eq!(
            applied.members,
            vec![
                MemberOp::Add(vec!["1".into(), "2".into()]),
                MemberOp::Remove(vec!["1".into()]),
                MemberOp::Remove(vec!["2".into()]),
                MemberOp::Replace(vec!["3".into()]),
                MemberOp::RemoveAll,
            ]
        );
        let e = run(
            &rt,
            json!({}),
            json!([{"op": "remove", "path": "members[display eq \"x\"]"}]),
        )
        .expect_err("only by value");
        assert_eq!(e.scim_type, Some(ScimType::InvalidFilter));
    }

    /// Every member id an `add` or `replace` can set, in each shape it can be sent in, is
    /// among the ids named before the operations run.
    #[test]
    fn named_ids_hold_every_member_added_or_set() {
        let rt = group_type();
        for ops in [
            json!([{"op": "Add", "path": "members", "value": [{"value": "1"}, {"value": "2", "display": "b"}]}]),
            json!([{"op": "replace", "path": "members", "value": [{"value": "3"}]}]),
            json!([{"op": "add", "path": "members", "value": ["4", "5"]}]),
            json!([{"op": "add", "value": {"members": [{"value": "6"}], "displayName": "G"}}]),
            json!([{"op": "replace", "value": {"members": ["7"]}}]),
            json!([{"op": "remove", "path": "members[value eq \"8\"]"},
                   {"op": "add", "path": "members", "value": {"value": "9"}}]),
        ] {
            let named = named_ids(&parse(body(ops.clone())).expect("parses"));
            let (_, applied) = run(&rt, json!({"displayName": "G"}), ops.clone()).expect("applies");
            let set: Vec<&String> = applied
                .members
                .iter()
                .flat_map(|m| match m {
                    MemberOp::Add(ids) | MemberOp::Replace(ids) => ids.iter().collect(),
                    _ => vec![],
                })
                .collect();
            assert!(!set.is_empty(), "{ops}");
            for id in set {
                assert!(named.contains(id), "{id} not named in {named:?} for {ops}");
            }
        }
        // A removal names nothing to check.
        let ops = parse(body(
            json!([{"op": "remove", "path": "members", "value": [{"value": "1"}]}]),
        ))
        .expect("parses");
        assert!(named_ids(&ops).is_empty());
    }

    /// Malformed PATCH bodies get precise errors.
    #[test]
    fn bad_patches() {
        let e = parse(json!({"Operations": []})).expect_err("no urn");
        assert!(e.detail.contains(PATCH_URN));
        let e = parse(body(json!([]))).expect_err("empty");
        assert!(e.detail.contains("non-empty"));
        let e = parse(body(json!([{"op": "move", "path": "a"}]))).expect_err("op");
        assert!(e.detail.contains("\"move\""));
        let e = parse(body(json!([{"op": "add", "path": "userName"}]))).expect_err("value");
        assert!(e.detail.contains("needs a \"value\""));
        let e = parse(body(json!([{"op": "remove"}]))).expect_err("path");
        assert_eq!(e.scim_type, Some(ScimType::NoTarget));
        let e = parse(body(
            json!([{"op": "add", "path": "emails[type eq", "value": 1}]),
        ))
        .expect_err("path");
        assert_eq!(e.scim_type, Some(ScimType::InvalidPath));
        let rt = user_type();
        let e = run(
            &rt,
            json!({"userName": "a"}),
            json!([{"op": "replace", "path": "id", "value": "9"}]),
        )
        .expect_err("read-only");
        assert_eq!(e.scim_type, Some(ScimType::Mutability));
        let e = run(
            &rt,
            json!({"userName": "a"}),
            json!([
                {"op": "replace", "path": "userName", "value": "b"},
                {"op": "replace", "path": "active", "value": "perhaps"}
            ]),
        )
        .expect_err("second op fails");
        assert!(
            e.detail.starts_with("Operations[1] (replace active)"),
            "{}",
            e.detail
        );
    }

    /// Immutable attributes keep their value once set.
    #[test]
    fn immutable() {
        let mut rt = user_type();
        for a in &mut rt.schema.attributes {
            if a.name == "userName" {
                a.mutability = Mutability::Immutable;
            }
        }
        let e = run(
            &rt,
            json!({"userName": "a"}),
            json!([{"op": "replace", "path": "userName", "value": "b"}]),
        )
        .expect_err("immutable");
        assert_eq!(e.scim_type, Some(ScimType::Mutability));
        run(
            &rt,
            json!({}),
            json!([{"op": "add", "path": "userName", "value": "b"}]),
        )
        .expect("first set");
    }
}
