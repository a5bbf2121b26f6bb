//! The translator: one resource type's TOML mapping, compiled against its store.
//!
//! [`build`] takes a [`ResourceSpec`] (what the mapping file says), checks it against the SCIM
//! schemas and the live store, and produces a [`MappedResource`] that serves the resource type
//! through [`crate::scim::Provider`]. It converts SCIM JSON to store rows and back
//! ([`convert`]), compiles SCIM filters into store predicates ([`filter`]), and maps store
//! failures to SCIM errors in one place ([`error`]). It knows neither HTTP nor SQL.

pub mod convert;
pub mod error;
pub mod filter;
pub mod paging;
pub mod spec;
pub mod template;

use std::borrow::Cow;
use std::sync::Arc;

use serde_json::Value as Json;

use crate::backend::state::{Overlay, StateStore};
use crate::backend::{
    Backend, BackendError, Change, CheckFn, ConstSpec, ConstValue, DeleteMode, EditFn, FieldInfo,
    FieldSource, FieldSpec, FieldType, MemberChange, MemberOf, MembersSpec, Row, Sort, SpecPart,
    Table, TableSpec, Value,
};
use crate::scim::filter::eval;
use crate::scim::patch::MemberOp;
use crate::scim::resource::{BaseUrl, Member, Object, Stored, UnknownPolicy};
use crate::scim::schema::{
    self, AttrType, Attribute, Extension, Home, Mutability, ResourceType, Returned, Schema,
    Uniqueness,
};
use crate::scim::shape::{self, Entries, JsonPage, Node, Scratch, Shape};
use crate::scim::{Check, Edit, Page, Provider, Query, ScimError};
pub use convert::Conv;
pub use spec::{
    AttrSource, AttrSpec, MemberMap, OnDelete, Origin, Problem, ResourceSpec, SetSpec, SetValue,
};

/// Receives store failures, for metrics (the mapping layer knows nothing of Prometheus).
pub trait Observer: Send + Sync {
    /// A store operation failed with an error of this kind (`unavailable`, `internal`, …).
    fn store_error(&self, backend: &str, kind: &str);
}

/// An observer that ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {
    fn store_error(&self, _: &str, _: &str) {}
}

/// Settings that apply to every mapped resource.
#[derive(Clone)]
pub struct Settings {
    /// What to do with values the mapping cannot store (e.g. an email of an unmapped type).
    pub unknown_attributes: UnknownPolicy,
    /// `Retry-After` seconds on 503.
    pub retry_after: u32,
    /// Where store failures are reported.
    pub observer: Arc<dyn Observer>,
    /// The most members one response may carry (`[scim].max_members`); `None`: no limit.
    pub max_members: Option<u64>,
}

/// Where in a resource's JSON a binding's value lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A single-valued attribute, or a sub-attribute of a single-valued complex one.
    Attr {
        /// Extension URN, or `None` for core and common attributes.
        ext: Option<String>,
        /// Attribute name (canonical).
        attr: String,
        /// Sub-attribute name (canonical).
        sub: Option<String>,
    },
    /// A sub-attribute of the value with this `type` of a multi-valued attribute.
    Typed {
        /// Extension URN, or `None`.
        ext: Option<String>,
        /// Attribute name.
        attr: String,
        /// The `type` value selecting the element.
        type_value: String,
        /// Sub-attribute name.
        sub: String,
    },
    /// `meta.created`, written by the sidecar on create.
    Created,
    /// `meta.lastModified`, written by the sidecar on every change.
    LastModified,
    /// A computed column (`[resource.X.set]` template): written from the attributes, never
    /// read back.
    Template(template::Template),
}

/// One attribute ⇄ field binding; its index is the field index in the [`TableSpec`].
#[derive(Clone, Debug)]
pub(crate) struct Binding {
    pub(crate) target: Target,
    pub(crate) conv: Conv,
    /// Never returned (write-only attributes).
    pub(crate) hidden: bool,
    /// What clearing the attribute writes: `''` for a NOT NULL text column of the row (legacy
    /// apps such as WordPress keep "nothing" as an empty string and refuse NULL); `Null`
    /// otherwise (a child row is deleted).
    pub(crate) blank: Value,
    /// Required on create and replace: the mapping says so, or the store cannot do without
    /// it (a NOT NULL column without a default, where the mapping gives none).
    pub(crate) required: bool,
    /// Written when a create or replace leaves the attribute absent (`default`).
    pub(crate) default: Option<Fill>,
    /// A replace that leaves the attribute absent keeps the stored value: its column cannot
    /// be empty (NOT NULL, not text) and the mapping gives no `default`. Writing the column's
    /// own default instead could re-enable a disabled account (`status DEFAULT 1`).
    pub(crate) keep_when_absent: bool,
    /// The binding whose value this one holds in another form (a `{userName|lower}` column):
    /// what a conflict on it is reported as.
    pub(crate) stands_for: Option<usize>,
}

/// A `default`: a store value, or a template rendered from the resource.
#[derive(Clone, Debug)]
pub(crate) enum Fill {
    Value(Value),
    Template(template::Template),
}

/// A read-only attribute computed on every read (`{ template = "…" }` in the map).
#[derive(Clone, Debug)]
pub(crate) struct Derived {
    pub(crate) target: Target,
    pub(crate) template: template::Template,
}

/// A served resource type: its schema, its table, and the bindings between them.
#[derive(Clone)]
pub struct MappedResource {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) rt: ResourceType,
    table: Arc<dyn Table>,
    backend: String,
    pub(crate) bindings: Vec<Binding>,
    created: Option<usize>,
    modified: Option<usize>,
    soft_delete: Option<Vec<(usize, Value)>>,
    member_type: Option<Arc<str>>,
    policy: UnknownPolicy,
    retry_after: u32,
    observer: Arc<dyn Observer>,
    /// The longest a store operation may take ([`Backend::deadline`]).
    deadline: std::time::Duration,
    /// Attributes computed on read.
    pub(crate) derived: Vec<Derived>,
    /// Multi-valued attributes stored as one value, which is therefore the primary one
    /// (`emails` kept in one column): (extension, attribute).
    primary: Vec<(Option<String>, String)>,
}

/// The full (unfiltered) schemas a spec can refer to, plus the common attributes.
fn full_type(spec: &ResourceSpec, custom: &[Schema]) -> ResourceType {
    let core = schema::builtin(&spec.schema)
        .cloned()
        .or_else(|| {
            custom
                .iter()
                .find(|s| s.id.eq_ignore_ascii_case(&spec.schema))
                .cloned()
        })
        .unwrap_or(Schema {
            id: spec.schema.clone(),
            name: spec.name.clone(),
            description: String::new(),
            attributes: vec![],
        });
    let mut extensions: Vec<Extension> = Vec::new();
    for a in &spec.attrs {
        let Some(urn) = &a.path.attr.urn else {
            continue;
        };
        if urn.eq_ignore_ascii_case(&core.id)
            || extensions
                .iter()
                .any(|e| e.schema.id.eq_ignore_ascii_case(urn))
        {
            continue;
        }
        let s = schema::builtin(urn).cloned().or_else(|| {
            custom
                .iter()
                .find(|s| s.id.eq_ignore_ascii_case(urn))
                .cloned()
        });
        if let Some(s) = s {
            extensions.push(Extension {
                schema: s,
                required: false,
            });
        }
    }
    let known = std::iter::once(core.clone())
        .chain(extensions.iter().map(|e| e.schema.clone()))
        .collect();
    let mut members_attr = None;
    if spec.members.is_some() {
        members_attr = Some("members".to_owned());
    }
    ResourceType {
        name: spec.name.clone(),
        endpoint: spec.endpoint.clone(),
        description: spec.description.clone(),
        schema: core,
        extensions,
        common: schema::common_attributes(true),
        membership: members_attr,
        groups_from: spec.groups.as_ref().map(|(g, _)| g.clone()),
        known,
    }
}

/// Schemas for URNs that are not built in, generated from the mapping entries that use them:
/// each entry declares its attribute (`type`, `description`, characteristics).
fn custom_schemas(spec: &ResourceSpec) -> Vec<Schema> {
    let mut out: Vec<Schema> = Vec::new();
    let core_builtin = schema::builtin(&spec.schema).is_some();
    for a in &spec.attrs {
        let urn = a
            .path
            .attr
            .urn
            .clone()
            .unwrap_or_else(|| spec.schema.clone());
        if schema::builtin(&urn).is_some() || (a.path.attr.urn.is_none() && core_builtin) {
            continue;
        }
        let name = &a.path.attr.name;
        if ["externalId", "id", "meta"]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let s = match out.iter_mut().position(|s| s.id.eq_ignore_ascii_case(&urn)) {
            Some(i) => &mut out[i],
            None => {
                let short = urn.rsplit(':').next().unwrap_or(&urn).to_owned();
                out.push(Schema {
                    id: urn.clone(),
                    name: short,
                    description: String::new(),
                    attributes: vec![],
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        let leaf = |n: &str| {
            let mut at = Attribute::new(n, a.ty.unwrap_or(AttrType::String));
            at.description = a.description.clone().unwrap_or_default();
            at.case_exact = a.case_exact.unwrap_or(false);
            at
        };
        let sub = a.path.sub.as_deref().or(a.path.attr.sub.as_deref());
        let typed = a.path.filter.is_some();
        let pos = s
            .attributes
            .iter()
            .position(|x| x.name.eq_ignore_ascii_case(name));
        match (sub, pos) {
            (None, None) => s.attributes.push(leaf(name)),
            (None, Some(_)) => {}
            (Some(sub), pos) => {
                let parent = match pos {
                    Some(i) => &mut s.attributes[i],
                    None => {
                        let mut p = Attribute::new(name, AttrType::Complex);
                        p.multi_valued = typed;
                        if typed {
                            let mut t = Attribute::new("type", AttrType::String);
                            t.description = "A label indicating the value's function.".into();
                            p.sub_attributes.push(t);
                        }
                        s.attributes.push(p);
                        let last = s.attributes.len() - 1;
                        &mut s.attributes[last]
                    }
                };
                if parent.sub(sub).is_none() {
                    parent.sub_attributes.push(leaf(sub));
                }
            }
        }
    }
    out
}

/// One planned binding before the store is consulted.
struct Plan<'a> {
    target: Target,
    ty: AttrType,
    source: PlanSource,
    origin: &'a Origin,
    shown: String,
    values: Vec<(Json, Value)>,
    case_exact: Option<bool>,
    uniqueness: Option<Uniqueness>,
    returned: Option<Returned>,
    /// The template text, for computed columns.
    template: Option<&'a str>,
    /// The map entry's `required`, `default`, `fallback` and `overflow`.
    required: Option<bool>,
    default: Option<&'a spec::AttrDefault>,
    fallback: Option<Json>,
    truncate: bool,
}

/// The name a kept attribute has in the sidecar's table: its canonical path.
fn kept_name(t: &Target) -> String {
    match t {
        Target::Attr { ext, attr, sub } => {
            let base = match ext {
                Some(u) => format!("{u}:{attr}"),
                None => attr.clone(),
            };
            match sub {
                Some(s) => format!("{base}.{s}"),
                None => base,
            }
        }
        Target::Typed {
            ext,
            attr,
            type_value,
            sub,
        } => {
            let base = match ext {
                Some(u) => format!("{u}:{attr}"),
                None => attr.clone(),
            };
            format!("{base}[type eq \"{type_value}\"].{sub}")
        }
        Target::Created => "meta.created".into(),
        Target::LastModified => "meta.lastModified".into(),
        Target::Template(_) => String::new(),
    }
}

/// Where a planned binding's value lives.
#[derive(Clone, Debug)]
enum PlanSource {
    /// In the resource's store (or its kept values held by that store).
    Field(FieldSource),
    /// Kept in another store's state, through [`crate::backend::state::Overlay`].
    Overlay(String),
}

/// The state store of another backend, for resource types whose own store cannot keep
/// values the sidecar keeps.
pub type ExternalState = Option<Arc<dyn StateStore>>;

/// Compiles one resource type against its store. `all` are every resource spec of the config
/// (to find member resources); `state` is the state store holding this type's kept values
/// when that is not its own store. Errors carry the file and line of the setting at fault;
/// warnings come back with the resource.
pub async fn build(
    spec: &ResourceSpec,
    backend: &dyn Backend,
    all: &[ResourceSpec],
    settings: &Settings,
    state: ExternalState,
) -> Result<(MappedResource, Vec<Problem>), Vec<Problem>> {
    let custom = custom_schemas(spec);
    let full = full_type(spec, &custom);
    let mut problems = Vec::new();

    // 1. Each map entry names an attribute the schemas define, in a shape a field can hold.
    let mut plans: Vec<Plan<'_>> = Vec::new();
    let mut derived: Vec<(Target, &str, &Origin, &str)> = Vec::new();
    for a in &spec.attrs {
        match target_of(&full, a) {
            Ok((t, ty, _)) => {
                if plans.iter().any(|p| p.target == t) || derived.iter().any(|d| d.0 == t) {
                    problems.push(Problem::error(
                        &a.origin,
                        format!("'{}' is mapped twice", a.key),
                        Some("keep one of the two entries".into()),
                    ));
                    continue;
                }
                let source = match (&a.source, &state) {
                    (AttrSource::Derived(text), _) => {
                        if ty != AttrType::String && ty != AttrType::Reference {
                            problems.push(Problem::error(
                                &a.origin,
                                format!(
                                    "'{}' is a {} attribute; a template makes text",
                                    a.key,
                                    ty.as_str()
                                ),
                                None,
                            ));
                        }
                        derived.push((t, text, &a.origin, &a.key));
                        continue;
                    }
                    (AttrSource::Store(loc), _) => {
                        PlanSource::Field(FieldSource::Store(loc.clone()))
                    }
                    (AttrSource::Kept, None) => PlanSource::Field(FieldSource::Kept {
                        resource_type: spec.name.clone(),
                        name: kept_name(&t),
                    }),
                    (AttrSource::Kept, Some(_)) => PlanSource::Overlay(kept_name(&t)),
                };
                let returned = a.returned.or(leaf_def(&full, &t).map(|d| d.returned));
                plans.push(Plan {
                    target: t,
                    ty,
                    source,
                    origin: &a.origin,
                    shown: a.key.clone(),
                    values: a.values.clone(),
                    case_exact: a.case_exact,
                    uniqueness: a.uniqueness,
                    returned,
                    template: None,
                    required: a.required,
                    default: a.default.as_ref(),
                    fallback: a.fallback.clone(),
                    truncate: a.truncate,
                });
            }
            Err(p) => problems.push(p),
        }
    }
    // Values written by the sidecar: constants and timestamps go to the store as such;
    // templates become write-only bindings rendered from the resource.
    let mut constants = Vec::new();
    let mut constant_origins = Vec::new();
    for e in &spec.set {
        match &e.value {
            SetValue::Value(v) => {
                constants.push(ConstSpec {
                    target: e.target.clone(),
                    value: ConstValue::Value(v.clone()),
                    on: e.on,
                });
                constant_origins.push(&e.origin);
            }
            SetValue::Now => {
                constants.push(ConstSpec {
                    target: e.target.clone(),
                    value: ConstValue::Now,
                    on: e.on,
                });
                constant_origins.push(&e.origin);
            }
            SetValue::Template(text) => plans.push(Plan {
                target: Target::Template(
                    template::Template::parse("{id}", &full)
                        .unwrap_or_else(|_| placeholder_template()),
                ),
                ty: AttrType::String,
                source: PlanSource::Field(FieldSource::Store(e.target.clone())),
                origin: &e.origin,
                shown: e.shown.clone(),
                values: Vec::new(),
                case_exact: Some(true),
                uniqueness: None,
                returned: Some(Returned::Never),
                template: Some(text),
                required: Some(false),
                default: None,
                fallback: None,
                truncate: true,
            }),
        }
    }

    // 2. Members are resources of another type, in the same store.
    let member_spec = match &spec.members {
        None => None,
        Some(m) => match all
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(&m.member_type))
        {
            Some(target) if target.backend != spec.backend => {
                problems.push(Problem::error(
                    &m.origin,
                    format!(
                        "members are of type '{}', which lives in [backend.{}]; a group's members must be in its own store ([backend.{}])",
                        target.name, target.backend, spec.backend
                    ),
                    None,
                ));
                None
            }
            Some(target) => Some(MembersSpec {
                loc: m.loc.clone(),
                member: target.store.clone(),
                member_type: target.name.clone(),
            }),
            None => {
                problems.push(Problem::error(
                    &m.origin,
                    format!(
                        "members are of type '{}', which no [resource.*] defines",
                        m.member_type
                    ),
                    Some(format!(
                        "set `members.type` to one of: {}",
                        all.iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                ));
                None
            }
        },
    };
    // `groups = "Group"`: a type whose members are of this type.
    if let Some((g, origin)) = &spec.groups {
        let listing = all.iter().find(|r| r.name.eq_ignore_ascii_case(g));
        let fits = listing
            .and_then(|r| r.members.as_ref())
            .is_some_and(|m| m.member_type.eq_ignore_ascii_case(&spec.name));
        if !fits {
            let candidates: Vec<&str> = all
                .iter()
                .filter(|r| {
                    r.members
                        .as_ref()
                        .is_some_and(|m| m.member_type.eq_ignore_ascii_case(&spec.name))
                })
                .map(|r| r.name.as_str())
                .collect();
            problems.push(Problem::error(
                origin,
                match listing {
                    None => format!("groups = \"{g}\": no [resource.{g}] is defined"),
                    Some(_) => format!(
                        "groups = \"{g}\": [resource.{g}] has no members of type '{}'",
                        spec.name
                    ),
                },
                Some(if candidates.is_empty() {
                    format!(
                        "map a group type with members = {{ …, type = \"{}\" }} first, or remove the key",
                        spec.name
                    )
                } else {
                    format!("name one of: {}", candidates.join(", "))
                }),
            ));
        }
    }
    // Problems so far do not stop the store check: `check` reports everything at once.
    let member_of = all
        .iter()
        .filter(|r| r.backend == spec.backend)
        .filter_map(|r| Some((r, r.members.as_ref()?)))
        .filter(|(_, m)| m.member_type.eq_ignore_ascii_case(&spec.name))
        .map(|(r, m)| MemberOf {
            loc: m.loc.clone(),
            group: r.store.clone(),
        })
        .collect();

    // 3. The store confirms where every value lives, and their types.
    let mut fields = Vec::new();
    // The plan each field of the store's table spec belongs to.
    let mut field_plan = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let PlanSource::Field(source) = &p.source else {
            continue;
        };
        let def = leaf_def(&full, &p.target);
        let case_exact = p.case_exact.or(def.map(|d| d.case_exact)).unwrap_or(false);
        let uniqueness = p
            .uniqueness
            .or(def.map(|d| d.uniqueness))
            .unwrap_or(Uniqueness::None);
        fields.push(FieldSpec {
            name: p.shown.clone(),
            source: source.clone(),
            unique: uniqueness != Uniqueness::None,
            fold_case: !case_exact,
            lowered_copy_of: None,
        });
        field_plan.push(i);
    }
    // A column written `{attr|lower}` holds that attribute lower-cased (phpBB's
    // username_clean): a unique index on it is the attribute's.
    for (f, &i) in field_plan.iter().enumerate() {
        let Some(text) = plans[i].template else {
            continue;
        };
        let inner = text
            .trim()
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'));
        let Some((path, "lower")) = inner.and_then(|t| {
            let (a, b) = t.split_once('|')?;
            Some((a.trim(), b.trim()))
        }) else {
            continue;
        };
        fields[f].lowered_copy_of = field_plan.iter().position(|&j| {
            plans[j].template.is_none() && plans[j].shown.eq_ignore_ascii_case(path)
        });
    }
    let copies: Vec<(usize, usize)> = fields
        .iter()
        .enumerate()
        .filter_map(|(f, spec)| Some((f, spec.lowered_copy_of?)))
        .collect();
    let member_soft = spec.members.as_ref().is_some_and(|m| {
        all.iter()
            .any(|r| r.name.eq_ignore_ascii_case(&m.member_type) && r.on_delete == OnDelete::Soft)
    });
    let table_spec = TableSpec {
        // Tombstones are the store's own when it keeps this type's state; another store's
        // state keeps them through the overlay.
        tombstones: spec.on_delete == OnDelete::Soft && state.is_none(),
        member_tombstones: member_soft && state.is_none(),
        hard_delete: spec.on_delete == OnDelete::Hard,
        resource_type: spec.name.clone(),
        resource: spec.store.clone(),
        fields,
        constants,
        members: member_spec,
        member_of,
        max_members: settings.max_members,
    };
    let locate = |part: &SpecPart| match part {
        SpecPart::Table | SpecPart::Filter => spec.origin.clone(),
        SpecPart::Field(i) => field_plan
            .get(*i)
            .and_then(|p| plans.get(*p))
            .map_or(spec.origin.clone(), |p| p.origin.clone()),
        SpecPart::Constant(i) => constant_origins
            .get(*i)
            .map_or(spec.origin.clone(), |o| (*o).clone()),
        SpecPart::Members => spec
            .members
            .as_ref()
            .map_or(spec.origin.clone(), |m| m.origin.clone()),
        SpecPart::At(o) => o.clone(),
    };
    // What the store says of each plan: its own fields', and plain text for values kept in
    // another store's state.
    let infos_of = |store: &[FieldInfo]| -> Option<Vec<FieldInfo>> {
        if store.len() != field_plan.len() {
            return None;
        }
        let mut out = vec![kept_info(); plans.len()];
        for (f, info) in field_plan.iter().zip(store) {
            out[*f] = info.clone();
        }
        Some(out)
    };
    let opened = match backend.open_table(table_spec).await {
        Ok(o) if problems.is_empty() => o,
        Ok(o) => {
            // Still check the types of what was found, so every problem shows at once, and
            // say what the store warned about.
            if let Some(infos) = infos_of(&o.fields) {
                fit_types(&full, &plans, &infos, &mut problems);
            }
            problems.extend(o.warnings.into_iter().map(|p| Problem {
                origin: locate(&p.part),
                message: p.message,
                fix: p.fix,
                warning: true,
            }));
            return Err(problems);
        }
        Err(refused) => {
            problems.extend(refused.problems.into_iter().map(|p| Problem {
                origin: locate(&p.part),
                message: p.message,
                fix: p.fix,
                warning: p.warning,
            }));
            if let Some(infos) = infos_of(&refused.fields) {
                fit_types(&full, &plans, &infos, &mut problems);
            }
            return Err(problems);
        }
    };
    let mut warnings: Vec<Problem> = opened
        .warnings
        .into_iter()
        .map(|p| Problem {
            origin: locate(&p.part),
            message: p.message,
            fix: p.fix,
            warning: true,
        })
        .collect();
    let Some(infos) = infos_of(&opened.fields) else {
        problems.push(Problem::error(
            &spec.origin,
            "the store described a different number of fields than were mapped",
            None,
        ));
        return Err(problems);
    };
    let table: Arc<dyn Table> = match &state {
        Some(state)
            if plans
                .iter()
                .any(|p| matches!(p.source, PlanSource::Overlay(_))) =>
        {
            for p in &plans {
                if matches!(p.source, PlanSource::Overlay(_))
                    && p.uniqueness.is_some_and(|u| u != Uniqueness::None)
                {
                    warnings.push(Problem {
                        warning: true,
                        ..Problem::error(
                            p.origin,
                            format!(
                                "uniqueness of '{}' is not checked: it is kept in {}",
                                p.shown,
                                state.describe()
                            ),
                            None,
                        )
                    });
                }
            }
            Arc::new(overlay(
                opened.table,
                state.clone(),
                spec,
                all,
                &plans,
                &infos,
            ))
        }
        Some(state) if spec.on_delete == OnDelete::Soft || member_soft => Arc::new(overlay(
            opened.table,
            state.clone(),
            spec,
            all,
            &plans,
            &infos,
        )),
        _ => opened.table,
    };

    // 4. Each SCIM type fits its store type.
    let mut compiled = fit_types(&full, &plans, &infos, &mut problems);
    if !problems.is_empty() {
        problems.extend(warnings);
        return Err(problems);
    }
    for (f, copy) in copies {
        if let (Some(b), Some(&of)) = (compiled.get_mut(field_plan[f]), field_plan.get(copy)) {
            b.stands_for = Some(of);
        }
    }

    let derived_targets: Vec<Target> = derived.iter().map(|d| d.0.clone()).collect();
    let rt = publish(&full, spec, &compiled, &infos, &derived_targets);
    // Templates read the published (stored) attributes: an attribute that is not stored is
    // dropped from requests, so a template could never see it.
    let parse = |text: &str, shown: &str, origin: &Origin, problems: &mut Vec<Problem>| {
        template::Template::parse(text, &rt)
            .map_err(|e| {
                problems.push(Problem::error(
                    origin,
                    format!("template of '{shown}': {e}"),
                    Some("templates may use attributes this resource type maps".into()),
                ))
            })
            .ok()
    };
    for (p, b) in plans.iter().zip(compiled.iter_mut()) {
        if let Some(t) = p
            .template
            .and_then(|t| parse(t, &p.shown, p.origin, &mut problems))
        {
            b.target = Target::Template(t);
        }
        match p.default {
            Some(spec::AttrDefault::Template(text)) => {
                b.default = parse(text, &p.shown, p.origin, &mut problems).map(Fill::Template);
            }
            Some(spec::AttrDefault::Value(v)) => match b.conv.to_store(v) {
                Ok(v) => b.default = Some(Fill::Value(v)),
                Err(e) => problems.push(Problem::error(
                    p.origin,
                    format!("default of '{}': {}", p.shown, e.detail),
                    None,
                )),
            },
            None => {}
        }
    }
    let mut computed = Vec::new();
    for (target, text, origin, shown) in derived {
        if let Some(template) = parse(text, shown, origin, &mut problems) {
            computed.push(Derived { target, template });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let created = compiled.iter().position(|b| b.target == Target::Created);
    let modified = compiled
        .iter()
        .position(|b| b.target == Target::LastModified);
    // A soft delete writes `active = false` when it is mapped (and the `set` values written
    // on delete); the tombstone is what makes the resource gone (RFC 7644 §3.6).
    let soft_delete = match spec.on_delete {
        OnDelete::Hard => None,
        OnDelete::Soft => Some(
            compiled
                .iter()
                .position(|b| matches!(&b.target, Target::Attr { attr, ext: None, sub: None } if attr == "active"))
                .and_then(|i| compiled[i].conv.to_store(&Json::Bool(false)).ok().map(|v| vec![(i, v)]))
                .unwrap_or_default(),
        ),
    };
    let primary = primary_of(&full, &compiled);
    let inner = Inner {
        rt,
        table,
        backend: backend.name().to_owned(),
        bindings: compiled,
        created,
        modified,
        soft_delete,
        member_type: spec.members.as_ref().map(|m| {
            Arc::from(
                all.iter()
                    .find(|r| r.name.eq_ignore_ascii_case(&m.member_type))
                    .map_or(m.member_type.as_str(), |r| r.name.as_str()),
            )
        }),
        policy: settings.unknown_attributes,
        retry_after: settings.retry_after,
        observer: settings.observer.clone(),
        deadline: backend.deadline(),
        derived: computed,
        primary,
    };
    Ok((
        MappedResource {
            inner: Arc::new(inner),
        },
        warnings,
    ))
}

/// The resource's own table with what the sidecar keeps for it in another store's state:
/// kept values, and the tombstones of soft deletes (its own and its members').
fn overlay(
    table: Arc<dyn Table>,
    state: Arc<dyn StateStore>,
    spec: &ResourceSpec,
    all: &[ResourceSpec],
    plans: &[Plan<'_>],
    infos: &[FieldInfo],
) -> Overlay {
    let mut o = Overlay::new(
        table,
        state,
        &spec.name,
        plans
            .iter()
            .map(|p| match &p.source {
                PlanSource::Overlay(name) => Some(name.clone()),
                PlanSource::Field(_) => None,
            })
            .collect(),
    );
    if spec.on_delete == OnDelete::Soft {
        let unique = plans
            .iter()
            .zip(infos)
            .enumerate()
            .filter(|(_, (p, info))| {
                info.unique || p.uniqueness.is_some_and(|u| u != Uniqueness::None)
            })
            .map(|(i, (p, _))| (i, p.case_exact != Some(true)))
            .collect();
        o = o.with_tombstones(unique);
    }
    if let Some(m) = &spec.members {
        let soft = all
            .iter()
            .find(|r| r.name.eq_ignore_ascii_case(&m.member_type))
            .filter(|r| r.on_delete == OnDelete::Soft)
            .map(|r| r.name.clone());
        o = o.with_members(soft);
    }
    o
}

/// What a value kept in another store's state is, to the mapping: text of any length.
fn kept_info() -> FieldInfo {
    FieldInfo {
        ty: FieldType::Text { max_len: None },
        nullable: true,
        has_default: false,
        unique: false,
        multi_valued: false,
    }
}

impl Plan<'_> {
    /// Where the value lives, for messages.
    fn describe_source(&self) -> String {
        match &self.source {
            PlanSource::Field(FieldSource::Store(loc)) => loc.describe(),
            PlanSource::Field(FieldSource::Kept { .. }) | PlanSource::Overlay(_) => {
                "the sidecar's own state".into()
            }
        }
    }
}

/// A template that renders nothing, until the real one is parsed against the published
/// schema.
fn placeholder_template() -> template::Template {
    template::Template::empty()
}

/// Where a map entry points, with its SCIM type and whether it is part of a multi-valued
/// attribute.
fn target_of(full: &ResourceType, a: &AttrSpec) -> Result<(Target, AttrType, bool), Problem> {
    let err = |msg: String, fix: Option<String>| Err(Problem::error(&a.origin, msg, fix));
    let p = &a.path;
    let name = p.attr.name.as_str();
    if p.attr.urn.is_none() && name.eq_ignore_ascii_case("meta") {
        return match p.attr.sub.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("created") => {
                Ok((Target::Created, AttrType::DateTime, false))
            }
            Some(s) if s.eq_ignore_ascii_case("lastModified") => {
                Ok((Target::LastModified, AttrType::DateTime, false))
            }
            _ => err(
                format!(
                    "'{}' cannot be mapped: only meta.created and meta.lastModified are stored",
                    a.key
                ),
                None,
            ),
        };
    }
    if p.attr.urn.is_none() && name.eq_ignore_ascii_case("id") {
        return err(
            "'id' is the table's key, not a mapped attribute".into(),
            Some("set `key = \"<column>\"` in the [resource] table instead".into()),
        );
    }
    let r = full.resolve(&p.attr).map_err(|e| {
        let known: Vec<&str> = full
            .schema
            .attributes
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        Problem::error(
            &a.origin,
            format!("'{}': {e}", a.key),
            Some(format!(
                "attributes of {}: {}",
                full.schema.id,
                known.join(", ")
            )),
        )
    })?;
    let attr = r.attr;
    let ext = match r.home {
        Home::Extension(u) => Some(u.to_owned()),
        _ => None,
    };
    if full.membership.as_deref() == Some(attr.name.as_str()) || attr.name == "members" {
        return err(
            format!(
                "'{}' is the membership: describe it with `members = {{ table, group, member }}`",
                a.key
            ),
            None,
        );
    }
    if attr.name == "password"
        && ext.is_none()
        && !matches!(&a.source, AttrSource::Store(l) if l.takes_password())
    {
        return err(
            "mapping 'password' is not supported yet: the sidecar would have to know the app's password hash format".into(),
            Some("remove the entry; passwords sent by the identity provider are ignored".into()),
        );
    }
    if attr.mutability == Mutability::ReadOnly {
        return err(
            format!(
                "'{}' is read-only in SCIM and computed by the server; it cannot be mapped",
                a.key
            ),
            None,
        );
    }
    let ty_of = |d: &Attribute| a.ty.unwrap_or(d.ty);
    match &p.filter {
        None => {
            if attr.multi_valued {
                return err(
                    format!(
                        "'{}' holds several values; map one value by its type",
                        a.key
                    ),
                    Some(format!(
                        "e.g. '{}[type eq \"work\"].value' = … ({})",
                        attr.name,
                        a.source.describe()
                    )),
                );
            }
            match r.sub {
                Some(sub) => Ok((
                    Target::Attr {
                        ext,
                        attr: attr.name.clone(),
                        sub: Some(sub.name.clone()),
                    },
                    ty_of(sub),
                    false,
                )),
                None if attr.is_complex() => match attr.sub("value") {
                    // `manager` = column: the manager's id.
                    Some(v) => Ok((
                        Target::Attr {
                            ext,
                            attr: attr.name.clone(),
                            sub: Some(v.name.clone()),
                        },
                        v.ty,
                        false,
                    )),
                    None => err(
                        format!("'{}' is complex; map its sub-attributes one by one", a.key),
                        Some(format!(
                            "e.g. '{}.{}'",
                            attr.name,
                            attr.sub_attributes
                                .first()
                                .map_or("givenName", |s| s.name.as_str())
                        )),
                    ),
                },
                None => Ok((
                    Target::Attr {
                        ext,
                        attr: attr.name.clone(),
                        sub: None,
                    },
                    ty_of(attr),
                    false,
                )),
            }
        }
        Some(f) => {
            let type_value = match eval::equalities(f).as_deref() {
                Some([(k, Json::String(v))]) if k.eq_ignore_ascii_case("type") => v.clone(),
                _ => {
                    return err(
                        format!(
                            "'{}': only a filter on the type selects a mapped value",
                            a.key
                        ),
                        Some(format!("write '{}[type eq \"work\"].value'", attr.name)),
                    );
                }
            };
            if !attr.multi_valued || !attr.is_complex() {
                return err(
                    format!(
                        "'{}' is not multi-valued, so it takes no [type eq …]",
                        attr.name
                    ),
                    None,
                );
            }
            let sub_name = p.sub.as_deref().unwrap_or("value");
            let Some(sub) = attr.sub(sub_name) else {
                return err(
                    format!("'{}' has no sub-attribute '{sub_name}'", attr.name),
                    None,
                );
            };
            if sub.name == "type" {
                return err(
                    format!(
                        "'{}': the type is fixed by the filter and needs no column",
                        a.key
                    ),
                    None,
                );
            }
            Ok((
                Target::Typed {
                    ext,
                    attr: attr.name.clone(),
                    type_value,
                    sub: sub.name.clone(),
                },
                ty_of(sub),
                true,
            ))
        }
    }
}

/// The definition of the leaf a target points at.
fn leaf_def<'a>(full: &'a ResourceType, t: &Target) -> Option<&'a Attribute> {
    let (ext, attr, sub) = match t {
        Target::Attr { ext, attr, sub } => (ext, attr, sub.as_deref()),
        Target::Typed { ext, attr, sub, .. } => (ext, attr, Some(sub.as_str())),
        Target::Created | Target::LastModified | Target::Template(_) => return None,
    };
    let r = full.resolve_parts(ext.as_deref(), attr, sub).ok()?;
    Some(r.leaf())
}

/// Whether a SCIM type can be kept in a store type.
fn compatible(scim: AttrType, field: &FieldType, value_map: bool) -> Result<(), String> {
    if value_map {
        return Ok(());
    }
    let ok = match scim {
        AttrType::String | AttrType::Reference | AttrType::Binary => {
            matches!(
                field,
                FieldType::Text { .. } | FieldType::Integer | FieldType::Enum(_)
            )
        }
        AttrType::Boolean => matches!(
            field,
            FieldType::Boolean | FieldType::Integer | FieldType::Text { .. }
        ),
        AttrType::Integer | AttrType::Decimal => {
            matches!(
                field,
                FieldType::Integer | FieldType::Real | FieldType::Text { .. }
            )
        }
        AttrType::DateTime => matches!(
            field,
            FieldType::Timestamp | FieldType::Text { .. } | FieldType::Integer
        ),
        AttrType::Complex => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a SCIM {} cannot be kept in a {} column (add a value map `values = {{ … }}` if the column codes it)",
            scim.as_str(),
            field.describe()
        ))
    }
}

fn json_fits(ty: AttrType, v: &Json) -> bool {
    match ty {
        AttrType::Boolean => v.is_boolean(),
        AttrType::Integer | AttrType::Decimal => v.is_number(),
        _ => v.is_string(),
    }
}

/// The multi-valued attributes whose values are all kept in one typed slot (`emails` in one
/// column): the value stored is the primary one, so `primary` is published and read back as
/// `true` (RFC 7643 §2.4), and accepted from clients that send it.
fn primary_of(full: &ResourceType, bindings: &[Binding]) -> Vec<(Option<String>, String)> {
    let mut slots: Vec<(Option<String>, String, Vec<&str>)> = Vec::new();
    for b in bindings {
        if let Target::Typed {
            ext,
            attr,
            type_value,
            ..
        } = &b.target
        {
            match slots.iter_mut().find(|(e, a, _)| e == ext && a == attr) {
                Some((_, _, types)) if !types.contains(&type_value.as_str()) => {
                    types.push(type_value)
                }
                Some(_) => {}
                None => slots.push((ext.clone(), attr.clone(), vec![type_value])),
            }
        }
    }
    slots
        .into_iter()
        .filter(|(ext, attr, types)| {
            let home = match ext {
                Some(u) => full.extension(u).map(|e| &e.schema),
                None => Some(&full.schema),
            };
            types.len() == 1
                && home
                    .and_then(|s| s.attribute(attr))
                    .is_some_and(|a| a.sub("primary").is_some())
        })
        .map(|(ext, attr, _)| (ext, attr))
        .collect()
}

/// The resource type as served: only the attributes (and sub-attributes) that are mapped,
/// with the characteristics the mapping and the store give them.
fn publish(
    full: &ResourceType,
    spec: &ResourceSpec,
    bindings: &[Binding],
    infos: &[FieldInfo],
    derived: &[Target],
) -> ResourceType {
    let primary = primary_of(full, bindings);
    let spec_for = |t: &Target| {
        spec.attrs
            .iter()
            .find(|a| target_of(full, a).map(|x| x.0).as_ref() == Ok(t))
    };
    let filter_schema = |s: &Schema, ext: Option<&str>| -> Schema {
        let mut out = Schema {
            attributes: Vec::new(),
            ..s.clone()
        };
        for attr in &s.attributes {
            let mine: Vec<(usize, &Binding)> = bindings
                .iter()
                .enumerate()
                .filter(|(_, b)| match &b.target {
                    Target::Attr {
                        ext: e, attr: a, ..
                    }
                    | Target::Typed {
                        ext: e, attr: a, ..
                    } => e.as_deref() == ext && *a == attr.name,
                    _ => false,
                })
                .collect();
            let computed: Vec<&Target> = derived
                .iter()
                .filter(|t| matches!(t, Target::Attr { ext: e, attr: a, .. } if e.as_deref() == ext && *a == attr.name))
                .collect();
            if mine.is_empty() && computed.is_empty() {
                continue;
            }
            let mut a = attr.clone();
            let mut types: Vec<String> = Vec::new();
            let mut subs: Vec<String> = Vec::new();
            let mut required_subs: Vec<String> = Vec::new();
            for (i, b) in &mine {
                let info = &infos[*i];
                let over = spec_for(&b.target);
                match &b.target {
                    Target::Attr { sub: None, .. } => {
                        apply_overrides(&mut a, over, info, b.required)
                    }
                    Target::Attr { sub: Some(s), .. } => {
                        subs.push(s.clone());
                        if let Some(d) = a.sub_attributes.iter_mut().find(|d| &d.name == s) {
                            apply_overrides(d, over, info, b.required);
                        }
                        // A required part makes the whole required: a client must send it.
                        a.required |= b.required;
                    }
                    Target::Typed {
                        type_value, sub, ..
                    } => {
                        subs.push(sub.clone());
                        if !types.contains(type_value) {
                            types.push(type_value.clone());
                        }
                        if let Some(d) = a.sub_attributes.iter_mut().find(|d| &d.name == sub) {
                            apply_overrides(d, over, info, false);
                        }
                        a.required |= b.required;
                        if b.required && !required_subs.contains(sub) {
                            required_subs.push(sub.clone());
                        }
                    }
                    _ => {}
                }
            }
            // A required typed value (`emails[type eq "work"].value`) makes its sub-attribute
            // required in every element: a client that sends only what /Schemas marks
            // required must not send `emails: [{}]`, which would fill no slot.
            for d in &mut a.sub_attributes {
                if required_subs.contains(&d.name) {
                    d.required = true;
                }
            }
            for t in computed {
                let Target::Attr { sub, .. } = t else {
                    continue;
                };
                let d = match sub {
                    None => Some(&mut a),
                    Some(s) => {
                        subs.push(s.clone());
                        a.sub_attributes.iter_mut().find(|d| &d.name == s)
                    }
                };
                if let Some(d) = d {
                    d.mutability = Mutability::ReadOnly;
                    d.required = false;
                }
            }
            if !types.is_empty() {
                subs.push("type".into());
            }
            if primary
                .iter()
                .any(|(e, n)| e.as_deref() == ext && *n == attr.name)
            {
                subs.push("primary".into());
            }
            if a.is_complex() {
                a.sub_attributes.retain(|d| subs.contains(&d.name));
                if let Some(t) = a.sub_attributes.iter_mut().find(|d| d.name == "type") {
                    t.canonical_values = types;
                }
            }
            out.attributes.push(a);
        }
        out
    };
    let mut core = filter_schema(&full.schema, None);
    if full.groups_from.is_some() {
        if let Some(g) = schema::builtin(schema::USER_URN).and_then(|u| u.attribute("groups")) {
            let mut g = g.clone();
            g.mutability = Mutability::ReadOnly;
            core.attributes.push(g);
        }
    }
    if full.membership.is_some() {
        if let Some(m) = schema::builtin(schema::GROUP_URN).and_then(|g| g.attribute("members")) {
            let mut m = m.clone();
            m.sub_attributes.retain(|s| s.name != "display");
            core.attributes.push(m);
        }
    }
    let extensions = full
        .extensions
        .iter()
        .map(|e| Extension {
            schema: filter_schema(&e.schema, Some(&e.schema.id)),
            required: false,
        })
        .filter(|e| !e.schema.attributes.is_empty())
        .collect();
    let external_id = bindings
        .iter()
        .any(|b| matches!(&b.target, Target::Attr { ext: None, attr, .. } if attr == "externalId"));
    ResourceType {
        common: schema::common_attributes(external_id),
        schema: core,
        extensions,
        ..full.clone()
    }
}

/// Characteristics from the mapping entry and the store: `required` as the binding has it
/// (see [`Binding::required`]); a unique index makes it unique.
fn apply_overrides(d: &mut Attribute, over: Option<&AttrSpec>, info: &FieldInfo, required: bool) {
    d.required = required;
    if info.unique && d.uniqueness == Uniqueness::None {
        d.uniqueness = Uniqueness::Server;
    }
    let Some(o) = over else { return };
    if let Some(v) = o.case_exact {
        d.case_exact = v;
    }
    if let Some(v) = o.mutability {
        d.mutability = v;
    }
    if let Some(v) = o.returned {
        d.returned = v;
    }
    if let Some(v) = o.uniqueness {
        d.uniqueness = v;
    }
    if let Some(v) = &o.description {
        d.description = v.clone();
    }
}

// === impl Inner: records ⇄ resources ===

impl Inner {
    /// The field values for a resource's attributes (`Null` where it has none). Typed values
    /// go to their slot; a value without `type` fills the first slot no typed value claims.
    fn to_record(&self, attrs: &Object) -> Result<Vec<Value>, ScimError> {
        let mut out = vec![Value::Null; self.bindings.len()];
        for (i, b) in self.bindings.iter().enumerate() {
            let v = match &b.target {
                Target::Attr { ext, attr, sub } => {
                    let container = container(attrs, ext.as_deref());
                    let v = container.and_then(|c| c.get(attr));
                    match sub {
                        Some(s) => v.and_then(|v| v.get(s)),
                        None => v,
                    }
                }
                Target::Typed {
                    ext,
                    attr,
                    type_value,
                    sub,
                } => {
                    let list = container(attrs, ext.as_deref())
                        .and_then(|c| c.get(attr))
                        .and_then(Json::as_array);
                    match list {
                        Some(list) => self
                            .slot_element(ext.as_deref(), attr, type_value, list)?
                            .and_then(|e| e.get(sub)),
                        None => None,
                    }
                }
                Target::Template(t) => {
                    let mut text = t.render(attrs);
                    // A derived column is cut to fit, as apps do themselves (WordPress cuts
                    // user_nicename to 50 characters): its source was already checked.
                    if let FieldType::Text { max_len: Some(n) } = b.conv.field {
                        if let Some((cut, _)) = text.char_indices().nth(n as usize) {
                            text.truncate(cut);
                        }
                    }
                    out[i] = Value::Text(text);
                    continue;
                }
                Target::Created | Target::LastModified => None,
            };
            if let Some(v) = v {
                out[i] = b.conv.to_store(v)?;
            }
        }
        Ok(out)
    }

    /// Completes a record for a create (`old` is `None`) or a replace of row `old`: an absent
    /// attribute gets its `default`; a required one still absent is refused, naming it. A
    /// replace lets be a required value the row already lacks (a legacy row stays editable),
    /// and a write-only one it does not send (it keeps what is stored).
    fn complete(
        &self,
        attrs: &Object,
        values: &mut [Value],
        old: Option<&[Value]>,
    ) -> Result<(), ScimError> {
        for (i, b) in self.bindings.iter().enumerate() {
            if !values[i].is_null() || old.is_some() && b.hidden {
                continue;
            }
            match &b.default {
                Some(Fill::Value(v)) => values[i] = v.clone(),
                Some(Fill::Template(t)) => {
                    values[i] = b.conv.to_store(&Json::String(t.render(attrs)))?;
                }
                None => {}
            }
            let had = old.is_none_or(|o| o.get(i).is_some_and(|v| !v.first().is_null()));
            if values[i].is_null() && b.required && had {
                return Err(ScimError::invalid_value(format!(
                    "attribute '{}' is required",
                    b.conv.shown
                )));
            }
        }
        Ok(())
    }

    /// The element of a multi-valued attribute that the slot with `type_value` stores.
    fn slot_element<'v>(
        &self,
        ext: Option<&str>,
        attr: &str,
        type_value: &str,
        list: &'v [Json],
    ) -> Result<Option<&'v Json>, ScimError> {
        let slots: Vec<&str> = self
            .bindings
            .iter()
            .filter_map(|b| match &b.target {
                Target::Typed {
                    ext: e,
                    attr: a,
                    type_value: t,
                    ..
                } if e.as_deref() == ext && a == attr => Some(t.as_str()),
                _ => None,
            })
            .fold(Vec::new(), |mut v, t| {
                if !v.iter().any(|x: &&str| x.eq_ignore_ascii_case(t)) {
                    v.push(t);
                }
                v
            });
        let type_of = |e: &Json| e.get("type").and_then(Json::as_str).map(str::to_owned);
        if self.policy == UnknownPolicy::Reject {
            if let Some(t) = list
                .iter()
                .filter_map(type_of)
                .find(|t| !slots.iter().any(|s| s.eq_ignore_ascii_case(t)))
            {
                return Err(ScimError::invalid_value(format!(
                    "{attr} of type '{t}' are not stored here (stored types: {})",
                    slots.join(", ")
                )));
            }
        }
        if let Some(e) = list
            .iter()
            .find(|e| type_of(e).is_some_and(|t| t.eq_ignore_ascii_case(type_value)))
        {
            return Ok(Some(e));
        }
        // Untyped values fill the slots no typed value claims, in mapping order.
        let free: Vec<&str> = slots
            .iter()
            .copied()
            .filter(|s| {
                !list
                    .iter()
                    .any(|e| type_of(e).is_some_and(|t| t.eq_ignore_ascii_case(s)))
            })
            .collect();
        let k = free.iter().position(|s| s.eq_ignore_ascii_case(type_value));
        Ok(k.and_then(|k| list.iter().filter(|e| type_of(e).is_none()).nth(k)))
    }

    /// Puts the values of a row's fields into `sink`, as the attributes they are bound to.
    fn fill<'m>(&'m self, values: Vec<Value>, sink: &mut impl Sink<'m>) {
        for (b, v) in self.bindings.iter().zip(values) {
            if b.hidden {
                continue;
            }
            let Some(json) = b.conv.from_store(v) else {
                continue;
            };
            match &b.target {
                Target::Attr { ext, attr, sub } => {
                    let at = At {
                        ext: ext.as_deref(),
                        attr,
                    };
                    sink.attr(at, sub.as_deref(), json);
                }
                Target::Typed {
                    ext,
                    attr,
                    type_value,
                    sub,
                } => {
                    let at = At {
                        ext: ext.as_deref(),
                        attr,
                    };
                    sink.typed(at, type_value, sub, json);
                }
                Target::Created => sink.meta("created", json),
                Target::LastModified => sink.meta("lastModified", json),
                // Computed columns are written, never read back.
                Target::Template(_) => {}
            }
        }
    }

    /// Marks the values of the multi-valued attributes kept in one field as primary.
    fn mark_primary<'m>(&'m self, sink: &mut impl Sink<'m>) {
        for (ext, attr) in &self.primary {
            sink.primary(At {
                ext: ext.as_deref(),
                attr,
            });
        }
    }

    /// A row's attributes as a [`Shape`], to be written straight to a list response. For a
    /// mapping without attributes computed on read (a template reads the [`Object`]).
    fn shape(&self, values: Vec<Value>) -> Shape<'_> {
        let mut shape = Shape::with_capacity(self.bindings.len());
        self.fill(values, &mut shape);
        self.mark_primary(&mut shape);
        shape
    }

    /// Adds the resource of `row` to a response `page`; its version.
    fn push(&self, page: &mut JsonPage, row: Row, base: &BaseUrl, scratch: &mut Scratch) -> String {
        // A template reads the attributes as an object.
        if self.derived.is_empty() {
            let shape = self.shape(row.values);
            page.push_shape(&self.rt, &row.key, shape, base, scratch)
        } else {
            let stored = self.stored(row);
            page.push_stored(&self.rt, &stored.id, stored.attrs, base, scratch)
        }
    }

    /// The resource for a row.
    fn stored(&self, row: Row) -> Stored {
        // At most one top-level attribute per binding (sub-attributes share their parent's),
        // and room for the `schemas` and `id` the rendering adds to this same map.
        let mut attrs = Object::with_capacity(self.bindings.len() + 2);
        self.fill(row.values, &mut attrs);
        for d in &self.derived {
            let text = d.template.render(&attrs);
            let Target::Attr { ext, attr, sub } = &d.target else {
                continue;
            };
            let Some(c) = container_mut(&mut attrs, ext.as_deref()).filter(|_| !text.is_empty())
            else {
                continue;
            };
            match sub {
                None => {
                    c.insert(attr.clone(), Json::String(text));
                }
                Some(s) => {
                    if let Some(o) = c
                        .entry(attr.clone())
                        .or_insert_with(|| Json::Object(Object::new()))
                        .as_object_mut()
                    {
                        o.insert(s.clone(), Json::String(text));
                    }
                }
            }
        }
        self.mark_primary(&mut attrs);
        let members = row.members.map(|ids| {
            ids.into_iter()
                .map(|value| Member {
                    value,
                    resource_type: self.member_type.clone(),
                    display: None,
                })
                .collect()
        });
        Stored {
            id: row.key,
            attrs,
            members,
        }
    }

    /// The SCIM error for a store error; store failures are also counted and logged here.
    fn fail(&self, e: BackendError, id: Option<&str>) -> ScimError {
        error::to_scim(self, e, id)
    }

    /// Runs one store operation under the store's deadline ([`Backend::deadline`]): a store
    /// that neither answers nor fails (a frozen database, a hung host) becomes `Unavailable`
    /// (503 with `Retry-After`) instead of holding the request. A write may still complete
    /// in the store after its deadline; the identity provider's retry then finds it done.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        match tokio::time::timeout(self.deadline, op).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Unavailable(format!(
                "no answer from the store within {} ms",
                self.deadline.as_millis()
            ))),
        }
    }
}

fn container<'a>(attrs: &'a Object, ext: Option<&str>) -> Option<&'a Object> {
    match ext {
        None => Some(attrs),
        Some(u) => attrs.get(u).and_then(Json::as_object),
    }
}

/// Where [`Inner::fill`] puts a row's values: an [`Object`], or a [`Shape`] written straight
/// to a list response. Both hold the same entries in the same order.
trait Sink<'m> {
    /// Attribute `at` (or its sub-attribute `sub`).
    fn attr(&mut self, at: At<'m>, sub: Option<&'m str>, v: Json);
    /// Sub-attribute `sub` of the value of `at` whose `type` is `type_value`.
    fn typed(&mut self, at: At<'m>, type_value: &'m str, sub: &'m str, v: Json);
    /// `meta.created` or `meta.lastModified`.
    fn meta(&mut self, key: &'static str, v: Json);
    /// Marks each value of `at` as primary.
    fn primary(&mut self, at: At<'m>);
}

/// A top-level attribute: its extension's URN (`None` for the core schema) and its name.
#[derive(Clone, Copy)]
struct At<'m> {
    ext: Option<&'m str>,
    attr: &'m str,
}

impl<'m> Sink<'m> for Object {
    fn attr(&mut self, At { ext, attr }: At<'m>, sub: Option<&'m str>, v: Json) {
        let Some(c) = container_mut(self, ext) else {
            return;
        };
        match sub {
            None => {
                c.insert(attr.to_owned(), v);
            }
            Some(s) => {
                if let Some(o) = c
                    .entry(attr)
                    .or_insert_with(|| Json::Object(Object::new()))
                    .as_object_mut()
                {
                    o.insert(s.to_owned(), v);
                }
            }
        }
    }

    fn typed(&mut self, At { ext, attr }: At<'m>, type_value: &'m str, sub: &'m str, v: Json) {
        let Some(list) = container_mut(self, ext).and_then(|c| {
            c.entry(attr)
                .or_insert_with(|| Json::Array(vec![]))
                .as_array_mut()
        }) else {
            return;
        };
        let pos = list
            .iter()
            .position(|e| e.get("type").and_then(Json::as_str) == Some(type_value));
        let i = pos.unwrap_or_else(|| {
            let mut o = Object::new();
            o.insert("type".into(), Json::String(type_value.to_owned()));
            list.push(Json::Object(o));
            list.len() - 1
        });
        if let Some(o) = list[i].as_object_mut() {
            o.insert(sub.to_owned(), v);
        }
    }

    fn meta(&mut self, key: &'static str, v: Json) {
        // Sized for the three attributes the rendering adds.
        if let Some(m) = self
            .entry("meta")
            .or_insert_with(|| Json::Object(Object::with_capacity(5)))
            .as_object_mut()
        {
            m.insert(key.into(), v);
        }
    }

    fn primary(&mut self, At { ext, attr }: At<'m>) {
        let list = container_mut(self, ext)
            .and_then(|c| c.get_mut(attr))
            .and_then(Json::as_array_mut);
        for e in list.into_iter().flatten() {
            if let Some(o) = e.as_object_mut() {
                o.insert("primary".into(), Json::Bool(true));
            }
        }
    }
}

/// [`container_mut`] of a [`Shape`].
fn shape_container<'e, 'm>(
    entries: &'e mut Entries<'m>,
    ext: Option<&'m str>,
) -> Option<&'e mut Entries<'m>> {
    match ext {
        None => Some(entries),
        Some(u) => {
            let slot = shape::slot(entries, u, || Node::Object(Vec::with_capacity(4)));
            if slot.as_object_mut().is_none() {
                *slot = Node::Object(Vec::with_capacity(4));
            }
            slot.as_object_mut()
        }
    }
}

impl<'m> Sink<'m> for Shape<'m> {
    fn attr(&mut self, At { ext, attr }: At<'m>, sub: Option<&'m str>, v: Json) {
        let Some(c) = shape_container(&mut self.entries, ext) else {
            return;
        };
        match sub {
            None => shape::insert(c, attr, Node::Value(v)),
            Some(s) => {
                if let Some(o) =
                    shape::slot(c, attr, || Node::Object(Vec::with_capacity(4))).as_object_mut()
                {
                    shape::insert(o, s, Node::Value(v));
                }
            }
        }
    }

    fn typed(&mut self, At { ext, attr }: At<'m>, type_value: &'m str, sub: &'m str, v: Json) {
        let Some(list) = shape_container(&mut self.entries, ext)
            .and_then(|c| shape::slot(c, attr, || Node::List(Vec::with_capacity(2))).as_list_mut())
        else {
            return;
        };
        let pos = list
            .iter()
            .position(|e| e.str_of("type") == Some(type_value));
        let i = pos.unwrap_or_else(|| {
            let t = Node::Value(Json::String(type_value.to_owned()));
            list.push(Node::Object(vec![(Cow::Borrowed("type"), t)]));
            list.len() - 1
        });
        if let Some(o) = list[i].as_object_mut() {
            shape::insert(o, sub, Node::Value(v));
        }
    }

    fn meta(&mut self, key: &'static str, v: Json) {
        let meta = shape::slot(&mut self.entries, "meta", || {
            Node::Object(Vec::with_capacity(4))
        });
        if let Some(m) = meta.as_object_mut() {
            shape::insert(m, key, Node::Value(v));
        }
    }

    fn primary(&mut self, At { ext, attr }: At<'m>) {
        let list = shape_container(&mut self.entries, ext)
            .and_then(|c| c.iter_mut().find(|(k, _)| k == attr))
            .and_then(|(_, n)| n.as_list_mut());
        for e in list.into_iter().flatten() {
            if let Some(o) = e.as_object_mut() {
                shape::insert(o, "primary", Node::Value(Json::Bool(true)));
            }
        }
    }
}

fn container_mut<'a>(attrs: &'a mut Object, ext: Option<&str>) -> Option<&'a mut Object> {
    match ext {
        None => Some(attrs),
        Some(u) => {
            let slot = attrs
                .entry(u.to_owned())
                .or_insert_with(|| Json::Object(Object::new()));
            if !slot.is_object() {
                *slot = Json::Object(Object::new());
            }
            slot.as_object_mut()
        }
    }
}

fn member_changes(ops: Vec<MemberOp>) -> Vec<MemberChange> {
    ops.into_iter()
        .map(|op| match op {
            MemberOp::Add(ids) => MemberChange::Add(ids),
            MemberOp::Remove(ids) => MemberChange::Remove(ids),
            MemberOp::RemoveAll => MemberChange::Clear,
            MemberOp::Replace(ids) => MemberChange::Replace(ids),
        })
        .collect()
}

// === impl Provider ===

impl MappedResource {
    /// The backend this resource type is stored in.
    pub fn backend(&self) -> &str {
        &self.inner.backend
    }

    /// The store's table behind this resource type: what the store contract tests exercise
    /// without HTTP.
    pub fn table(&self) -> Arc<dyn Table> {
        self.inner.table.clone()
    }

    /// The field index of a `[resource.X.map]` entry, by its key as written (`userName`),
    /// in the table's rows.
    pub fn field(&self, key: &str) -> Option<usize> {
        self.inner.bindings.iter().position(|b| b.conv.shown == key)
    }

    /// The row of resource `id`; 404 when there is none.
    async fn row(&self, id: &str, load_members: bool) -> Result<Row, ScimError> {
        let inner = &self.inner;
        match inner.bounded(inner.table.fetch(id, load_members)).await {
            Ok(Some(row)) => Ok(row),
            Ok(None) => Err(inner.fail(BackendError::NotFound, Some(id))),
            Err(e) => Err(inner.fail(e, Some(id))),
        }
    }

    /// The rows of a list query: the total and the page.
    async fn rows(&self, q: Query) -> Result<(u64, Vec<Row>), ScimError> {
        let inner = &self.inner;
        let predicate = match &q.filter {
            Some(f) => inner.compile(f)?,
            None => crate::backend::Predicate::True,
        };
        let sort = match &q.sort_by {
            Some(p) => inner.sort_for(p, q.descending)?,
            None => Sort {
                field: None,
                fold_case: false,
                descending: q.descending,
                ranks: Vec::new(),
            },
        };
        inner
            .bounded(paging::page(
                inner.table.as_ref(),
                predicate,
                sort,
                q.offset,
                q.limit,
                q.members,
            ))
            .await
            .map_err(|e| inner.fail(e, None))
    }
}

impl Provider for MappedResource {
    fn resource_type(&self) -> &ResourceType {
        &self.inner.rt
    }

    async fn create(
        &self,
        attrs: Object,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Stored, ScimError> {
        let inner = &self.inner;
        let mut values = inner.to_record(&attrs)?;
        inner.complete(&attrs, &mut values, None)?;
        for f in [inner.created, inner.modified].into_iter().flatten() {
            values[f] = convert::now_value(&inner.bindings[f].conv.field);
        }
        let row = inner
            .bounded(inner.table.insert(values, members, load_members))
            .await
            .map_err(|e| inner.fail(e, None))?;
        Ok(inner.stored(row))
    }

    async fn get(&self, id: &str, load_members: bool) -> Result<Stored, ScimError> {
        Ok(self.inner.stored(self.row(id, load_members).await?))
    }

    async fn list(&self, q: Query) -> Result<Page, ScimError> {
        let inner = &self.inner;
        let (total, rows) = self.rows(q).await?;
        Ok(Page {
            total,
            resources: rows.into_iter().map(|r| inner.stored(r)).collect(),
        })
    }

    async fn get_json(&self, id: &str, base: &BaseUrl) -> Result<(Vec<u8>, String), ScimError> {
        let row = self.row(id, false).await?;
        let mut page = JsonPage::new(1);
        let version = self
            .inner
            .push(&mut page, row, base, &mut Scratch::default());
        Ok((page.json, version))
    }

    async fn list_json(&self, q: Query, base: &BaseUrl) -> Result<JsonPage, ScimError> {
        let inner = &self.inner;
        let (total, rows) = self.rows(q).await?;
        let mut page = JsonPage::new(total);
        let mut scratch = Scratch::default();
        for row in rows {
            inner.push(&mut page, row, base, &mut scratch);
        }
        Ok(page)
    }

    async fn update(
        &self,
        id: &str,
        load_members: bool,
        named: &[String],
        edit: Edit,
    ) -> Result<Stored, ScimError> {
        let inner = self.inner.clone();
        let f: EditFn = Box::new(move |row: &Row| {
            let abort = |e: ScimError| BackendError::Aborted(Box::new(e));
            let current = inner.stored(row.clone());
            let update = edit(current, &inner.rt).map_err(abort)?;
            let mut new = inner.to_record(&update.attrs).map_err(abort)?;
            inner
                .complete(&update.attrs, &mut new, Some(&row.values))
                .map_err(abort)?;
            let mut set: Vec<(usize, Value)> = Vec::new();
            for (i, (old, new)) in row.values.iter().zip(new).enumerate() {
                let b = &inner.bindings[i];
                if matches!(b.target, Target::Created | Target::LastModified)
                    || b.hidden && new.is_null()
                {
                    continue;
                }
                if new.is_null() && b.keep_when_absent {
                    continue;
                }
                let new = if new.is_null() { b.blank.clone() } else { new };
                if !convert::same_store(old, &new) {
                    set.push((i, new));
                }
            }
            let members = member_changes(update.members);
            if let Some(m) = inner.modified {
                if !set.is_empty() || !members.is_empty() {
                    set.push((m, convert::now_value(&inner.bindings[m].conv.field)));
                }
            }
            Ok(Change { set, members })
        });
        let row = self
            .inner
            .bounded(self.inner.table.update_named(id, load_members, named, f))
            .await
            .map_err(|e| self.inner.fail(e, Some(id)))?;
        Ok(self.inner.stored(row))
    }

    async fn delete(&self, id: &str, check: Check) -> Result<(), ScimError> {
        let inner = self.inner.clone();
        let mode = match &inner.soft_delete {
            None => DeleteMode::Hard,
            Some(set) => {
                let mut set = set.clone();
                if let Some(m) = inner.modified {
                    set.push((m, convert::now_value(&inner.bindings[m].conv.field)));
                }
                DeleteMode::Soft(set)
            }
        };
        let c = inner.clone();
        let f: CheckFn = Box::new(move |row: &Row| {
            check(&c.stored(row.clone())).map_err(|e| BackendError::Aborted(Box::new(e)))
        });
        inner
            .bounded(inner.table.delete(id, mode, f))
            .await
            .map_err(|e| inner.fail(e, Some(id)))
    }
}
/// Step 4 of [`build`]: each SCIM type fits the store type of its field (`infos`, one per
/// plan); the bindings of those that do.
fn fit_types(
    full: &ResourceType,
    plans: &[Plan<'_>],
    infos: &[FieldInfo],
    problems: &mut Vec<Problem>,
) -> Vec<Binding> {
    let mut compiled = Vec::with_capacity(plans.len());
    for (p, info) in plans.iter().zip(infos) {
        if let Err(msg) = compatible(p.ty, &info.ty, !p.values.is_empty()) {
            problems.push(Problem::error(
                p.origin,
                format!("'{}' → {}: {msg}", p.shown, p.describe_source()),
                None,
            ));
            continue;
        }
        for (scim_value, store_value) in &p.values {
            if !json_fits(p.ty, scim_value) {
                problems.push(Problem::error(
                    p.origin,
                    format!(
                        "value map of '{}' has key {scim_value}, which is not a SCIM {} value",
                        p.shown,
                        p.ty.as_str()
                    ),
                    Some(match p.ty {
                        AttrType::Boolean => "use the keys `true` and `false`".into(),
                        _ => "use keys of the attribute's type".into(),
                    }),
                ));
            }
            if let (FieldType::Enum(labels), Value::Text(v)) = (&info.ty, store_value) {
                if !labels.contains(v) {
                    problems.push(Problem::error(
                        p.origin,
                        format!("value map of '{}' stores '{v}', which is not a label of the column's enum", p.shown),
                        Some(format!("labels: {}", labels.join(", "))),
                    ));
                }
            }
        }
        let def = leaf_def(full, &p.target);
        let case_exact = p.case_exact.or(def.map(|d| d.case_exact)).unwrap_or(false);
        let value_slot = matches!(p.target, Target::Attr { .. } | Target::Typed { .. });
        compiled.push(Binding {
            target: p.target.clone(),
            conv: Conv {
                scim: p.ty,
                field: info.ty.clone(),
                values: p.values.clone(),
                fold_case: !case_exact,
                shown: p.shown.clone(),
                fallback: p.fallback.clone(),
                truncate: p.truncate,
            },
            // The schema's own `required` (userName), or a column that cannot do without a
            // value; a `default` fills it, and the mapping's `required` has the last word.
            required: value_slot
                && p.required.unwrap_or(
                    (def.is_some_and(|d| d.required) || !info.nullable && !info.has_default)
                        && p.default.is_none(),
                ),
            default: None,
            keep_when_absent: value_slot
                && !info.nullable
                && p.default.is_none()
                && !matches!(info.ty, FieldType::Text { .. }),
            stands_for: None,
            hidden: p.returned == Some(Returned::Never),
            // A field of the resource's own row that may not be empty (a child row or a kept
            // value is deleted instead, and reads as nullable).
            blank: match &info.ty {
                FieldType::Text { .. } if !info.nullable => Value::Text(String::new()),
                _ => Value::Null,
            },
        });
    }
    compiled
}
