//! The mapping part of the file: `[backend.*]`, `[resource.*]` and `[state]`.
//!
//! This module reads what every store kind shares (a resource's schema, endpoint and delete
//! mode; each map entry's SCIM side: `case_exact`, `values`, `kept`, …; what `set` entries
//! write) and hands each store-specific part, with its position in the file, to the kind of
//! the backend the resource uses ([`crate::backend::StoreKind`]): `[backend.NAME]` whole, the
//! resource's other keys, a map entry's string or its other keys, `members` without `type`,
//! and each `set` key. It never interprets those itself.

use serde_json::Value as Json;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::raw::{
    RawAttrCommon, RawConfig, RawMembersCommon, RawResource, RawSet, RawState, RawValue, S,
};
use super::validate::Cx;
use super::{BackendConfig, StateConfig};
use crate::backend::{self, StoreKind, Value, When};
use crate::mapping::spec::AttrDefault;
use crate::mapping::{
    AttrSource, AttrSpec, MemberMap, OnDelete, Origin, ResourceSpec, SetSpec, SetValue,
};
use crate::scim::filter::parse_patch_path;
use crate::scim::schema::{self, AttrType, Mutability, Returned, Uniqueness};

/// Keys of `[resource.X]` that every kind of store shares; every other key is the store's.
const RESOURCE_KEYS: [&str; 9] = [
    "backend",
    "schema",
    "endpoint",
    "description",
    "on_delete",
    "groups",
    "map",
    "set",
    "members",
];

/// Keys of a `[resource.X.map]` entry that describe the SCIM attribute; every other key says
/// where the store keeps the value.
const ATTR_KEYS: [&str; 13] = [
    "kept",
    "default",
    "fallback",
    "overflow",
    "template",
    "case_exact",
    "required",
    "mutability",
    "returned",
    "uniqueness",
    "type",
    "description",
    "values",
];

/// A TOML scalar as the SCIM (JSON) value it stands for; `None` for tables, arrays and dates.
fn toml_json(v: &toml::Value) -> Option<Json> {
    match v {
        toml::Value::String(s) => Some(Json::String(s.clone())),
        toml::Value::Integer(i) => Some(Json::from(*i)),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map(Json::Number),
        toml::Value::Boolean(b) => Some(Json::Bool(*b)),
        _ => None,
    }
}

/// A table's entries split in two: those whose key is in `keys`, and the others, each as a
/// table spanning the original.
fn split<'a>(
    table: &DeTable<'a>,
    span: std::ops::Range<usize>,
    keys: &[&str],
) -> (RawValue<'a>, RawValue<'a>) {
    let mut mine = DeTable::new();
    let mut rest = DeTable::new();
    for (k, v) in table.iter() {
        if keys.contains(&k.get_ref().as_ref()) {
            mine.insert(k.clone(), v.clone());
        } else {
            rest.insert(k.clone(), v.clone());
        }
    }
    (
        Spanned::new(span.clone(), DeValue::Table(mine)),
        Spanned::new(span, DeValue::Table(rest)),
    )
}

/// The entry `key` of a table.
fn entry<'t, 'a>(table: &'t DeTable<'a>, key: &str) -> Option<&'t RawValue<'a>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

/// Whether a raw table has no entries.
fn is_empty(v: &RawValue<'_>) -> bool {
    v.get_ref().as_table().is_some_and(DeTable::is_empty)
}

impl Cx<'_> {
    /// Deserialises a part of the file into a typed raw struct (unknown keys refused), each
    /// problem reported with its line. `what` names the part in messages.
    pub fn deserialize<T: serde::de::DeserializeOwned>(
        &mut self,
        raw: &RawValue<'_>,
        what: &str,
    ) -> Option<T> {
        match T::deserialize(toml::de::ValueDeserializer::from(raw.clone())) {
            Ok(t) => Some(t),
            Err(e) => {
                let o = self.origin(e.span().unwrap_or_else(|| raw.span()));
                let message = e.message().trim_end().to_owned();
                self.error(
                    &o,
                    format!("{what}: {message}"),
                    Some("see config/scim-sidecar.toml for every key and its meaning"),
                );
                None
            }
        }
    }

    /// A store's "unknown field" problems (since `before`) list only the store's own keys:
    /// add the keys every store shares, which are just as valid there.
    fn mention_shared_keys(&mut self, before: usize, shared: &[&str]) {
        for p in self.problems.iter_mut().skip(before) {
            if p.message.contains("unknown field") {
                p.message
                    .push_str(&format!(", or one of {}", shared.join(", ")));
            }
        }
    }

    /// A TOML scalar as a store value (strings with `${VAR}` expanded).
    pub fn store_value(&mut self, v: &toml::Value, o: &Origin, what: &str) -> Option<Value> {
        Some(match v {
            toml::Value::String(s) => match super::interpolate::expand(s, self.env) {
                Ok(t) => Value::Text(t),
                Err(e) => {
                    self.error(o, format!("{what}: {e}"), None);
                    return None;
                }
            },
            toml::Value::Integer(i) => Value::Int(*i),
            toml::Value::Boolean(b) => Value::Bool(*b),
            toml::Value::Float(f) => Value::Real(*f),
            other => {
                self.error(
                    o,
                    format!("{what}: {other} cannot be stored"),
                    Some("use strings, numbers or booleans"),
                );
                return None;
            }
        })
    }

    /// The kind of the backend called `name`, as its `type` says (even when the rest of the
    /// backend's table has problems, so that its resources are still checked).
    fn kind_of(&self, doc: &DeTable<'_>, name: &str) -> Option<&'static dyn StoreKind> {
        let backends = entry(doc, "backend")?.get_ref().as_table()?;
        let b = entry(backends, name)?.get_ref().as_table()?;
        let ty = entry(b, "type")?.get_ref().as_str()?;
        let ty = super::interpolate::expand(ty, self.env).ok()?;
        backend::kind::find(&ty)
    }

    /// Every `[backend.NAME]`, each parsed by its kind.
    pub(super) fn backends(&mut self, doc: &DeTable<'_>, top: &Origin) -> Vec<BackendConfig> {
        let tables = entry(doc, "backend").and_then(|b| b.get_ref().as_table());
        if tables.is_none_or(DeTable::is_empty) {
            self.error(
                top,
                "no [backend.*] configured",
                Some("add e.g. [backend.app] with type = \"sqlite\" and path = \"app.db\""),
            );
        }
        let mut out = Vec::new();
        for (name, b) in tables.into_iter().flat_map(DeTable::iter) {
            let name = name.get_ref().to_string();
            let o = self.origin(b.span());
            let Some(table) = b.get_ref().as_table() else {
                self.error(&o, format!("[backend.{name}] must be a table"), None);
                continue;
            };
            let ty = match entry(table, "type").map(|t| (t.span(), t.get_ref().as_str())) {
                Some((span, Some(t))) => {
                    self.string(&Spanned::new(span, t.to_owned()), "backend type")
                }
                Some((span, None)) => {
                    let to = self.origin(span);
                    self.error(
                        &to,
                        format!("[backend.{name}]: type must be a string"),
                        None,
                    );
                    None
                }
                None => {
                    self.error(
                        &o,
                        format!("[backend.{name}] needs type = \"…\""),
                        Some(&format!("one of: {}", backend::kind::names().join(", "))),
                    );
                    None
                }
            };
            let Some(ty) = ty else { continue };
            let Some(kind) = backend::kind::find(&ty) else {
                self.error(
                    &o,
                    format!(
                        "[backend.{name}] has type \"{ty}\", which this build does not support"
                    ),
                    Some(&format!(
                        "use type = {}",
                        backend::kind::names()
                            .iter()
                            .map(|n| format!("\"{n}\""))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    )),
                );
                continue;
            };
            if let Some(store) = kind.backend(&name, b, self) {
                out.push(BackendConfig {
                    name,
                    origin: o,
                    store,
                });
            }
        }
        out
    }

    /// Every `[resource.NAME]`.
    pub(super) fn resources(&mut self, doc: &DeTable<'_>, top: &Origin) -> Vec<ResourceSpec> {
        let tables = entry(doc, "resource").and_then(|r| r.get_ref().as_table());
        if tables.is_none_or(DeTable::is_empty) {
            self.error(
                top,
                "no [resource.*] configured: nothing would be served",
                Some("add [resource.User] (see config/scim-sidecar.toml)"),
            );
        }
        let mut out: Vec<ResourceSpec> = Vec::new();
        for (name, r) in tables.into_iter().flat_map(DeTable::iter) {
            let name = name.get_ref().to_string();
            let o = self.origin(r.span());
            if let Some(spec) = self.resource(&name, r, &o, doc) {
                if out
                    .iter()
                    .any(|x| x.endpoint.eq_ignore_ascii_case(&spec.endpoint))
                {
                    self.error(
                        &o,
                        format!("endpoint {} is served twice", spec.endpoint),
                        None,
                    );
                }
                out.push(spec);
            }
        }
        out
    }

    fn resource(
        &mut self,
        name: &str,
        r: &RawValue<'_>,
        o: &Origin,
        doc: &DeTable<'_>,
    ) -> Option<ResourceSpec> {
        let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name {
            self.error(
                o,
                format!("resource name \"{name}\" must be letters and digits (e.g. User)"),
                None,
            );
        }
        let Some(table) = r.get_ref().as_table() else {
            self.error(o, format!("[resource.{name}] must be a table"), None);
            return None;
        };
        let (common_raw, store_raw) = split(table, r.span(), &RESOURCE_KEYS);
        let common_table = common_raw.get_ref().as_table()?;
        let (scalars, _) = split(common_table, r.span(), &RESOURCE_KEYS[..6]);
        let common: RawResource = self.deserialize(&scalars, &format!("[resource.{name}]"))?;
        let at = |v: &Option<S>| v.as_ref().map_or(o.clone(), |s| self.origin(s.span()));
        let (delete_at, endpoint_at) = (at(&common.on_delete), at(&common.endpoint));
        let backend = self.string(&common.backend, "backend")?;
        let kind = self.kind_of(doc, &backend);
        let declared = entry(doc, "backend")
            .and_then(|b| b.get_ref().as_table())
            .is_some_and(|t| entry(t, &backend).is_some());
        if !declared {
            let bo = self.origin(common.backend.span());
            let known: Vec<String> = entry(doc, "backend")
                .and_then(|b| b.get_ref().as_table())
                .map(|t| t.iter().map(|(k, _)| k.get_ref().to_string()).collect())
                .unwrap_or_default();
            self.error(
                &bo,
                format!("[resource.{name}] uses backend \"{backend}\", which is not configured"),
                Some(&format!("configured backends: {}", known.join(", "))),
            );
        }
        // Without its backend's kind, nothing store-specific can be checked; the problem is
        // reported where the backend is (or is not) declared.
        let kind = kind?;
        let before = self.problems.len();
        let store = kind.resource(&store_raw, &format!("[resource.{name}]"), self);
        self.mention_shared_keys(before, &RESOURCE_KEYS);
        let schema = match self.opt_string(&common.schema, "schema") {
            Some(s) => s,
            None => match name {
                "User" => schema::USER_URN.to_owned(),
                "Group" => schema::GROUP_URN.to_owned(),
                _ => {
                    self.error(o, format!("[resource.{name}] needs schema = \"urn:…\" (only User and Group have a default)"), None);
                    return None;
                }
            },
        };
        let endpoint = self
            .opt_string(&common.endpoint, "endpoint")
            .unwrap_or_else(|| format!("/{name}s"));
        if !endpoint.starts_with('/') || endpoint.len() < 2 || endpoint[1..].contains('/') {
            self.error(
                &endpoint_at,
                format!("endpoint \"{endpoint}\" must be one path segment like \"/Users\""),
                None,
            );
        }
        let on_delete = match self.opt_string(&common.on_delete, "on_delete").as_deref() {
            None | Some("hard") => OnDelete::Hard,
            Some("soft") => OnDelete::Soft,
            Some(other) => {
                self.error(&delete_at, format!("on_delete \"{other}\" is not \"hard\" or \"soft\""), Some("write on_delete = \"hard\" (delete the row) or \"soft\" (set active = false)"));
                OnDelete::Hard
            }
        };
        let members = entry(common_table, "members")
            .and_then(|m| self.members(m, kind, &format!("[resource.{name}] members")));
        let groups = common.groups.as_ref().and_then(|g| {
            let go = self.origin(g.span());
            self.opt_string(&common.groups, "groups").map(|t| (t, go))
        });
        let mut set = Vec::new();
        if let Some(s) = entry(common_table, "set") {
            match s.get_ref().as_table() {
                Some(t) => {
                    for (key, value) in t.iter() {
                        let key = Spanned::new(key.span(), key.get_ref().to_string());
                        if let Some(e) = self.set_entry(&key, value, kind) {
                            set.push(e);
                        }
                    }
                }
                None => {
                    let so = self.origin(s.span());
                    self.error(&so, format!("[resource.{name}.set] must be a table"), None);
                }
            }
        }
        let mut attrs = Vec::new();
        let mut entries = 0;
        match entry(common_table, "map").map(|m| (m, m.get_ref().as_table())) {
            Some((_, Some(t))) => {
                for (key, value) in t.iter() {
                    entries += 1;
                    let key = Spanned::new(key.span(), key.get_ref().to_string());
                    let what = format!("\"{}\" in [resource.{name}.map]", key.get_ref());
                    if let Some(a) = self.attr(&key, value, kind, &what) {
                        attrs.push(a);
                    }
                }
            }
            Some((m, None)) => {
                let mo = self.origin(m.span());
                self.error(&mo, format!("[resource.{name}.map] must be a table"), None);
            }
            None => {}
        }
        if entries == 0 {
            self.error(
                o,
                format!("[resource.{name}.map] maps no attribute"),
                Some("map at least the attributes the app needs, e.g. userName = \"login\""),
            );
        }
        Some(ResourceSpec {
            name: name.to_owned(),
            description: self
                .opt_string(&common.description, "description")
                .unwrap_or_else(|| name.to_owned()),
            endpoint,
            schema,
            backend,
            store: store?,
            on_delete,
            attrs,
            set,
            members,
            groups,
            origin: o.clone(),
        })
    }

    /// `members = { …, type = "User" }`: the member type here, the rest to the store.
    fn members(&mut self, m: &RawValue<'_>, kind: &dyn StoreKind, what: &str) -> Option<MemberMap> {
        let mo = self.origin(m.span());
        let Some(t) = m.get_ref().as_table() else {
            self.error(
                &mo,
                "members must be a table such as { table = \"…\", group = \"…\", member = \"…\" }",
                None,
            );
            return None;
        };
        let (mine, rest) = split(t, m.span(), &["type"]);
        let common: RawMembersCommon = self.deserialize(&mine, what)?;
        let before = self.problems.len();
        let loc = kind.members(&rest, what, self);
        self.mention_shared_keys(before, &["type"]);
        let loc = loc?;
        Some(MemberMap {
            loc,
            member_type: common
                .kind
                .as_ref()
                .and_then(|k| self.string(k, "members.type"))
                .unwrap_or_else(|| "User".into()),
            origin: mo,
        })
    }

    /// One `[resource.X.set]` entry: the key is the store's, the value says what is written.
    fn set_entry(
        &mut self,
        key: &S,
        value: &RawValue<'_>,
        kind: &dyn StoreKind,
    ) -> Option<SetSpec> {
        let o = self.origin(key.span());
        let target = kind.set_target(key, self);
        let RawSet(t) = self.deserialize(value, &format!("set \"{}\"", key.get_ref()))?;
        let shown = key.get_ref().clone();
        let value = match (&t.value, t.now, &t.template) {
            (Some(v), None, None) => SetValue::Value(self.store_value(v, &o, "set value")?),
            (None, Some(true), None) => SetValue::Now,
            (None, None, Some(tpl)) => SetValue::Template(self.string(tpl, "template")?),
            _ => {
                self.error(
                    &o,
                    format!("set \"{shown}\" needs exactly one of: a value, now = true, template = \"…\""),
                    Some("e.g. password_hash = \"!\", updated_at = { now = true, on = \"always\" }, display_name = { template = \"{name.givenName} {name.familyName}\" }"),
                );
                return None;
            }
        };
        let default = match value {
            SetValue::Template(_) => When::Always,
            _ => When::Insert,
        };
        let on = match self.opt_string(&t.on, "on").as_deref() {
            None => default,
            Some("insert") => When::Insert,
            Some("always") => When::Always,
            Some("delete") => When::Delete,
            Some(other) => {
                self.error(
                    &o,
                    format!("set \"{shown}\": on = \"{other}\" is not \"insert\", \"always\" or \"delete\""),
                    None,
                );
                default
            }
        };
        Some(SetSpec {
            target: target?,
            shown,
            value,
            on,
            origin: o,
        })
    }

    /// One `[resource.X.map]` entry.
    fn attr(
        &mut self,
        key: &S,
        value: &RawValue<'_>,
        kind: &dyn StoreKind,
        what: &str,
    ) -> Option<AttrSpec> {
        let k = key.get_ref();
        let o = self.origin(key.span());
        let path = match parse_patch_path(k) {
            Ok(p) => Some(p),
            Err(e) => {
                self.error(
                    &o,
                    format!("map key \"{k}\" is not a SCIM attribute path: {e}"),
                    Some("write e.g. userName, name.givenName, 'emails[type eq \"work\"].value'"),
                );
                None
            }
        };
        let (t, store_raw) = match value.get_ref() {
            DeValue::Table(table) => {
                let (mine, rest) = split(table, value.span(), &ATTR_KEYS);
                let t: RawAttrCommon = self.deserialize(&mine, what)?;
                (t, rest)
            }
            _ => (RawAttrCommon::default(), value.clone()),
        };
        let source = if let Some(tpl) = &t.template {
            let text = self.string(tpl, "template")?;
            if t.kept.is_some() || !is_empty(&store_raw) || t.default.is_some() {
                self.error(&o, format!("\"{k}\": `template` computes the attribute on every read and stores it nowhere; drop column/table/kept/default"), Some("to write a computed value into a column, use [resource.X.set] with { template = \"…\" }"));
                return None;
            }
            AttrSource::Derived(text)
        } else if t.kept == Some(true) {
            if !is_empty(&store_raw) {
                self.error(&o, format!("\"{k}\": `kept = true` keeps the value in the sidecar's own table; drop column/table/link/where"), None);
                return None;
            }
            AttrSource::Kept
        } else if is_empty(&store_raw) {
            self.error(&o, format!("\"{k}\" needs a column"), Some("write \"column_name\", { column = \"…\" }, or { kept = true } for the sidecar's own table"));
            return None;
        } else {
            let before = self.problems.len();
            let loc = kind.field(&store_raw, what, self);
            self.mention_shared_keys(before, &ATTR_KEYS);
            AttrSource::Store(loc?)
        };
        let path = path?;
        let mut pick = |v: &Option<S>, what: &str, allowed: &[&str]| -> Option<String> {
            let text = self.opt_string(v, what)?;
            if allowed.contains(&text.as_str()) {
                Some(text)
            } else {
                self.error(
                    &o,
                    format!(
                        "{what} \"{text}\" of \"{k}\" is not one of: {}",
                        allowed.join(", ")
                    ),
                    None,
                );
                None
            }
        };
        let mutability = pick(
            &t.mutability,
            "mutability",
            &["readWrite", "immutable", "writeOnly", "readOnly"],
        )
        .map(|m| match m.as_str() {
            "immutable" => Mutability::Immutable,
            "writeOnly" => Mutability::WriteOnly,
            "readOnly" => Mutability::ReadOnly,
            _ => Mutability::ReadWrite,
        });
        let returned = pick(
            &t.returned,
            "returned",
            &["default", "always", "request", "never"],
        )
        .map(|m| match m.as_str() {
            "always" => Returned::Always,
            "request" => Returned::Request,
            "never" => Returned::Never,
            _ => Returned::Default,
        });
        let uniqueness =
            pick(&t.uniqueness, "uniqueness", &["none", "server", "global"]).map(|m| {
                match m.as_str() {
                    "server" => Uniqueness::Server,
                    "global" => Uniqueness::Global,
                    _ => Uniqueness::None,
                }
            });
        let ty = pick(
            &t.ty,
            "type",
            &[
                "string",
                "boolean",
                "integer",
                "decimal",
                "dateTime",
                "reference",
                "binary",
            ],
        )
        .map(|m| match m.as_str() {
            "boolean" => AttrType::Boolean,
            "integer" => AttrType::Integer,
            "decimal" => AttrType::Decimal,
            "dateTime" => AttrType::DateTime,
            "reference" => AttrType::Reference,
            "binary" => AttrType::Binary,
            _ => AttrType::String,
        });
        let truncate =
            pick(&t.overflow, "overflow", &["reject", "truncate"]).as_deref() == Some("truncate");
        let mut values = Vec::new();
        for (scim, store) in t.values.iter().flatten() {
            let scim = match scim.as_str() {
                "true" => Json::Bool(true),
                "false" => Json::Bool(false),
                s => s
                    .parse::<i64>()
                    .map(Json::from)
                    .unwrap_or_else(|_| Json::String(s.to_owned())),
            };
            // `false = [3, 2]`: several stored values read as one SCIM value; the first is
            // the one written.
            let stored = match store {
                toml::Value::Array(list) if !list.is_empty() => list.iter().collect(),
                toml::Value::Array(_) => {
                    self.error(
                        &o,
                        format!("value map of \"{k}\": {scim} lists no stored value"),
                        None,
                    );
                    continue;
                }
                one => vec![one],
            };
            for store in stored {
                let Some(store) = self.store_value(store, &o, &format!("value map of \"{k}\""))
                else {
                    continue;
                };
                values.push((scim.clone(), store));
            }
        }
        let fallback = t.fallback.as_ref().and_then(|f| {
            if values.is_empty() {
                self.error(&o, format!("\"{k}\": `fallback` is what a stored value the value map does not list reads as, but there is no `values` map"), Some("add values = { … } or drop fallback"));
            }
            toml_json(f).or_else(|| {
                self.error(&o, format!("\"{k}\": fallback must be a SCIM value (text, number or boolean)"), None);
                None
            })
        });
        let default = match &t.default {
            None => None,
            Some(toml::Value::Table(tbl)) => {
                match (tbl.get("template"), tbl.len()) {
                    (Some(toml::Value::String(text)), 1) => {
                        Some(AttrDefault::Template(text.clone()))
                    }
                    _ => {
                        self.error(&o, format!("\"{k}\": default must be a value or {{ template = \"…\" }}"), Some("e.g. default = { template = \"{name.givenName} {name.familyName}\" }"));
                        None
                    }
                }
            }
            Some(v) => match toml_json(v) {
                Some(j) => Some(AttrDefault::Value(j)),
                None => {
                    self.error(&o, format!("\"{k}\": default must be a SCIM value (text, number or boolean) or {{ template = \"…\" }}"), None);
                    None
                }
            },
        };
        Some(AttrSpec {
            key: k.clone(),
            path,
            source,
            case_exact: t.case_exact,
            required: t.required,
            mutability,
            returned,
            uniqueness,
            ty,
            description: self.opt_string(&t.description, "description"),
            values,
            fallback,
            default,
            truncate,
            origin: o,
        })
    }

    /// `[state]`: where attributes mapped with `kept = true` are kept, checked against the
    /// backends and the resources that keep something.
    pub(super) fn state(
        &mut self,
        raw: &RawConfig,
        backends: &[BackendConfig],
        resources: &[ResourceSpec],
    ) -> Option<StateConfig> {
        let state = raw.state.as_ref().and_then(|s| {
            let so = self.origin(s.span());
            let RawState { backend } = s.get_ref();
            let name = self.string(backend, "state.backend")?;
            let bo = self.origin(backend.span());
            match backends.iter().find(|b| b.name == name) {
                Some(b) if !b.store.holds_state() => {
                    self.error(
                        &bo,
                        format!(
                            "state.backend \"{name}\" is a {} store, which cannot hold the sidecar's state",
                            b.store.kind()
                        ),
                        Some("name an SQL backend (type = \"postgres\" or \"sqlite\")"),
                    );
                    None
                }
                Some(_) => Some(StateConfig {
                    backend: name,
                    origin: so,
                }),
                None => {
                    self.error(
                        &bo,
                        format!("state.backend \"{name}\" is not a configured backend"),
                        Some("add a [backend.NAME] of type \"postgres\" or \"sqlite\" for it"),
                    );
                    None
                }
            }
        });
        for r in resources {
            if !r.keeps_state() {
                continue;
            }
            let (what, at) = match r.attrs.iter().find(|a| a.source.is_kept()) {
                Some(kept) => (
                    format!("'{}' is kept by the sidecar", kept.key),
                    &kept.origin,
                ),
                None => (
                    format!(
                        "[resource.{}] deletes softly (the sidecar keeps its tombstones)",
                        r.name
                    ),
                    &r.origin,
                ),
            };
            let holder = state
                .as_ref()
                .map_or(r.backend.as_str(), |s| s.backend.as_str());
            if let Some(b) = backends.iter().find(|b| b.name == holder) {
                if !b.store.holds_state() {
                    self.error(
                        at,
                        format!(
                            "{what}, but [backend.{holder}] is a {} store, which cannot hold the sidecar's state",
                            b.store.kind()
                        ),
                        Some("add [state] with backend = \"<an SQL backend>\" (a PostgreSQL database shared by every replica, or an SQLite file)"),
                    );
                }
            }
        }
        state
    }
}
