//! The SQL stores' part of the mapping file, and its translation into the relational
//! description [`super::model::Model`] compiles.
//!
//! Shared by every SQL dialect. In `[resource.X]`: `table`, `key` (default `id`) and `where`
//! (a discriminator). A `[resource.X.map]` entry: a column name, or `{ column }`, or a value in
//! another table `{ table, link, column, where }`. `members`: a join table `{ table, group,
//! member }` or a column on the member's row `{ column }`. A `[resource.X.set]` key: a column.
//! Identifiers are checked here ([`super::valid_ident`]) and against the live catalog when the
//! store opens the resource.

use std::any::Any;

use indexmap::IndexMap;
use serde::Deserialize;

use super::valid_ident;
use crate::backend::{
    ConstValue, FieldSource, Loc, Location, SpecPart, SpecProblem, TableSpec, Value, When,
};
use crate::config::Cx;
use crate::config::raw::{RawValue, S};
use crate::mapping::Origin;

// === What the mapping file says ===

/// Where a resource lives: `table`, `key`, `where`; and what its writes bring with them in
/// the app's other tables: `cascade` and `hook`.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlResource {
    /// Table name (optionally `schema.table`).
    pub table: String,
    /// Key column: the SCIM `id`.
    pub key: String,
    /// Discriminator: column values that select this resource type's rows in a table shared
    /// with others (users and groups in one table). Written on insert, added to every query.
    pub filter: Vec<(String, Value)>,
    /// Rows of other tables that reference a deleted row: removed, or their reference
    /// cleared, in the delete's transaction.
    pub cascade: Vec<Cascade>,
    /// Statements of the app's own logic, run in the same transaction after a write.
    pub hooks: Vec<Hook>,
}

/// `cascade = [{ table, column, action }]`: what a hard delete does to rows that reference
/// the deleted row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cascade {
    /// The referencing table.
    pub table: String,
    /// Its column holding the deleted row's key.
    pub column: String,
    /// Delete those rows, or set the column to NULL.
    pub null: bool,
    /// Where it is written, for messages.
    pub origin: Origin,
}

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// After a create (`:id` is the new row's key).
    Create,
    /// After a replace or a change (PUT, PATCH) that wrote something.
    Update,
    /// Before a delete removes the row (hard) or after it marks it (soft).
    Delete,
    /// After each member is added to a group (`:member`).
    MemberAdd,
    /// After each member is removed from a group (`:member`).
    MemberRemove,
}

/// `[[resource.X.hook]]`: SQL of the app's own logic, with named parameters bound, never
/// interpolated: `:id` (the resource's key), `:member` (a member's key, in member hooks),
/// and `:<map key>` (a mapped attribute's value after the write, e.g. `:userName`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// When it runs.
    pub on: Vec<Event>,
    /// Its statements, run in order.
    pub sql: Vec<String>,
    /// Where it is written.
    pub origin: Origin,
}

/// Where a mapped value lives.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlField {
    /// A column of the resource's own table.
    Column(String),
    /// A column of a row in another table that points at the resource.
    Child(ChildSpec),
}

/// A value kept in another table: a child table (`user_emails(user_id, address,
/// is_primary)`), an entity–attribute–value table (`wp_usermeta(user_id, meta_key,
/// meta_value)`), or the sidecar's own attribute table. At most one such row per resource
/// and `select`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChildSpec {
    /// The other table.
    pub table: String,
    /// Its column holding the resource's key.
    pub link: String,
    /// Its column holding the value.
    pub column: String,
    /// Fixed column values that pick the row (`meta_key = 'first_name'`, `is_primary = true`);
    /// written when the row is created.
    pub select: Vec<(String, Value)>,
    /// Values written into the row, never read: `created_on = { now = true }` when it is
    /// created, `updated_on = { now = true, on = "always" }` whenever its value changes.
    pub set: Vec<(String, ConstValue, When)>,
}

/// How a group's members are kept.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlMembers {
    /// One row per membership: `{ table, group, member }`.
    Join {
        /// The join table.
        table: String,
        /// Its column holding the group's key.
        group_column: String,
        /// Its column holding the member's key.
        member_column: String,
    },
    /// A column on the member's row holding its one group's key: `{ column }`.
    Column(String),
}

/// A column the sidecar writes by itself (a `[resource.X.set]` key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlColumn(pub String);

impl Location for SqlResource {
    fn describe(&self) -> String {
        format!("table '{}'", self.table)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Location for SqlField {
    fn describe(&self) -> String {
        match self {
            SqlField::Column(c) => format!("column '{c}'"),
            SqlField::Child(c) => format!("column '{}' of table '{}'", c.column, c.table),
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Location for SqlMembers {
    fn describe(&self) -> String {
        match self {
            SqlMembers::Join { table, .. } => format!("join table '{table}'"),
            SqlMembers::Column(c) => format!("column '{c}' of the members' table"),
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Location for SqlColumn {
    fn describe(&self) -> String {
        format!("column '{}'", self.0)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

// === Parsing ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    table: S,
    key: Option<S>,
    #[serde(rename = "where")]
    filter: Option<toml::Spanned<IndexMap<String, toml::Value>>>,
    #[serde(default)]
    cascade: Vec<toml::Spanned<RawCascade>>,
    #[serde(default)]
    hook: Vec<toml::Spanned<RawHook>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCascade {
    table: S,
    column: S,
    action: Option<S>,
}

/// A string or a list of strings. Plain strings: serde's untagged enums cannot carry spans,
/// so errors point at the enclosing hook.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v.iter().collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHook {
    on: OneOrMany,
    sql: OneOrMany,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    column: Option<S>,
    table: Option<S>,
    link: Option<S>,
    #[serde(rename = "where")]
    filter: Option<IndexMap<String, toml::Value>>,
    set: Option<IndexMap<String, RawChildSet>>,
}

/// A value written into a child row: a constant, or `{ now = true, on = "always" }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawChildSet {
    Table {
        value: Option<toml::Value>,
        now: Option<bool>,
        on: Option<String>,
    },
    Value(toml::Value),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMembers {
    table: Option<S>,
    group: Option<S>,
    member: Option<S>,
    column: Option<S>,
}

/// A table or column name: one or two dot-separated SQL identifiers.
fn ident(cx: &mut Cx<'_>, s: &S, what: &str) -> Option<String> {
    let v = cx.string(s, what)?;
    if valid_ident(&v) {
        Some(v)
    } else {
        let o = cx.origin(s.span());
        cx.error(
            &o,
            format!("{what} \"{v}\" is not a valid SQL identifier"),
            Some("use letters, digits and _ (schema.table at most)"),
        );
        None
    }
}

/// A column name (no schema part).
fn column_name(cx: &mut Cx<'_>, s: &S, what: &str) -> Option<String> {
    let c = cx.string(s, what)?;
    if valid_ident(&c) && !c.contains('.') {
        Some(c)
    } else {
        let o = cx.origin(s.span());
        cx.error(
            &o,
            format!("{what} \"{c}\" is not a valid column name"),
            Some("use letters, digits and _"),
        );
        None
    }
}

/// `{ column = value, … }`: fixed column values (a discriminator or a row selector).
fn fixed(
    cx: &mut Cx<'_>,
    map: &IndexMap<String, toml::Value>,
    o: &Origin,
    what: &str,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (c, v) in map {
        if !valid_ident(c) || c.contains('.') {
            cx.error(
                o,
                format!("{what}: \"{c}\" is not a valid column name"),
                None,
            );
            continue;
        }
        if let Some(v) = cx.store_value(v, o, what) {
            out.push((c.clone(), v));
        }
    }
    out
}

/// The addressing every SQL store kind shares (tables and columns): the four
/// [`crate::backend::StoreKind`] methods that parse a resource, a field, members and a `set`
/// target, for an `impl StoreKind` block.
macro_rules! sql_addressing {
    () => {
        fn resource(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
            super::config::parse_resource(raw, what, cx)
        }

        fn field(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
            super::config::parse_field(raw, what, cx)
        }

        fn members(&self, raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
            super::config::parse_members(raw, what, cx)
        }

        fn set_target(&self, key: &S, cx: &mut Cx<'_>) -> Option<Loc> {
            super::config::parse_set_target(key, cx)
        }
    };
}
pub(crate) use sql_addressing;

/// `tls = { ca = "…" }` of a database server's `[backend.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    ca: S,
}

/// What a database server's `[backend.NAME]` says the same way for PostgreSQL and MySQL.
pub struct ServerKeys {
    /// `url`, expanded.
    pub url: String,
    /// `pool_size` (default 16).
    pub pool_size: usize,
    /// `connect_timeout` (default 5 s).
    pub connect_timeout: std::time::Duration,
    /// `statement_timeout` (default 10 s).
    pub statement_timeout: std::time::Duration,
    /// `tls.ca`, when given (a missing file is reported).
    pub ca_file: Option<std::path::PathBuf>,
}

/// The raw values of [`ServerKeys`], as the kind's own raw struct holds them.
pub struct RawServerKeys<'a> {
    /// `url`.
    pub url: Option<&'a S>,
    /// `pool_size`.
    pub pool_size: &'a Option<crate::config::raw::NumOrStr>,
    /// `connect_timeout`.
    pub connect_timeout: &'a Option<S>,
    /// `statement_timeout`.
    pub statement_timeout: &'a Option<S>,
    /// `tls`.
    pub tls: Option<&'a toml::Spanned<RawTls>>,
}

/// Checks the keys every database server's backend has; `None` (reported) without a url.
/// `example` is a url of the kind, for the message.
pub fn server_keys(
    raw: RawServerKeys<'_>,
    o: &Origin,
    name: &str,
    example: &str,
    cx: &mut Cx<'_>,
) -> Option<ServerKeys> {
    use std::time::Duration;
    let Some(url) = raw.url.and_then(|u| cx.string(u, "backend url")) else {
        cx.error(
            o,
            format!("[backend.{name}] needs url = \"${{DATABASE_URL}}\""),
            Some(&format!("e.g. {example}")),
        );
        return None;
    };
    let pool_size = cx.number(raw.pool_size, o, "backend pool_size", (1, 1000), 16) as usize;
    let connect_timeout = cx.duration(
        raw.connect_timeout,
        "backend connect_timeout",
        Duration::from_secs(5),
    );
    let statement_timeout = cx.duration(
        raw.statement_timeout,
        "backend statement_timeout",
        Duration::from_secs(10),
    );
    let ca_file = raw.tls.and_then(|t| {
        let to = cx.origin(t.span());
        let p = cx.path(&t.get_ref().ca, "backend tls.ca")?;
        if !p.exists() {
            cx.error(&to, format!("CA file {} does not exist", p.display()), None);
        }
        Some(p)
    });
    Some(ServerKeys {
        url,
        pool_size,
        connect_timeout,
        statement_timeout,
        ca_file,
    })
}

/// The store's keys of `[resource.X]`.
pub fn parse_resource(raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
    let r: RawResource = cx.deserialize(raw, what)?;
    let table = ident(cx, &r.table, "table");
    let key = match &r.key {
        Some(k) => ident(cx, k, "key"),
        None => Some("id".to_owned()),
    };
    let filter = match &r.filter {
        Some(f) => {
            let fo = cx.origin(f.span());
            fixed(cx, f.get_ref(), &fo, "where")
        }
        None => Vec::new(),
    };
    let mut cascade = Vec::new();
    for c in &r.cascade {
        let co = cx.origin(c.span());
        let c = c.get_ref();
        let table = ident(cx, &c.table, "cascade table");
        let column = column_name(cx, &c.column, "cascade column");
        let null = match c
            .action
            .as_ref()
            .and_then(|a| cx.string(a, "cascade action"))
            .as_deref()
        {
            None | Some("delete") => false,
            Some("null") => true,
            Some(other) => {
                cx.error(
                    &co,
                    format!("{what}: cascade action \"{other}\" is not \"delete\" or \"null\""),
                    Some("\"delete\" removes the referencing rows, \"null\" clears their column"),
                );
                false
            }
        };
        if let (Some(table), Some(column)) = (table, column) {
            cascade.push(Cascade {
                table,
                column,
                null,
                origin: co,
            });
        }
    }
    let mut hooks = Vec::new();
    for h in &r.hook {
        let ho = cx.origin(h.span());
        let h = h.get_ref();
        let mut on = Vec::new();
        for e in h.on.items() {
            match e.as_str() {
                "create" => on.push(Event::Create),
                "update" | "replace" => on.push(Event::Update),
                "delete" => on.push(Event::Delete),
                "member_add" => on.push(Event::MemberAdd),
                "member_remove" => on.push(Event::MemberRemove),
                other => {
                    cx.error(
                        &ho,
                        format!("{what}: hook on \"{other}\" is not an event"),
                        Some("events: create, update, delete, member_add, member_remove"),
                    );
                }
            }
        }
        let sql: Vec<String> = h.sql.items().into_iter().cloned().collect();
        if sql.iter().any(|s| s.trim().is_empty()) {
            cx.error(&ho, format!("{what}: a hook statement is empty"), None);
        }
        hooks.push(Hook {
            on,
            sql,
            origin: ho,
        });
    }
    Some(std::sync::Arc::new(SqlResource {
        table: table?,
        key: key?,
        filter,
        cascade,
        hooks,
    }))
}

/// `set = { column = value | { now = true, on = "insert" | "always" } }` of a child row.
fn child_set(
    cx: &mut Cx<'_>,
    set: &IndexMap<String, RawChildSet>,
    o: &Origin,
    what: &str,
) -> Vec<(String, ConstValue, When)> {
    let mut out = Vec::new();
    for (c, v) in set {
        if !valid_ident(c) || c.contains('.') {
            cx.error(
                o,
                format!("{what}: set \"{c}\" is not a valid column name"),
                None,
            );
            continue;
        }
        let (value, when) = match v {
            RawChildSet::Value(v) => match cx.store_value(v, o, what) {
                Some(v) => (ConstValue::Value(v), When::Insert),
                None => continue,
            },
            RawChildSet::Table { value, now, on } => {
                let when = match on.as_deref() {
                    None | Some("insert") => When::Insert,
                    Some("always") => When::Always,
                    Some(other) => {
                        cx.error(
                            o,
                            format!("{what}: set \"{c}\": on = \"{other}\" is not \"insert\" or \"always\""),
                            None,
                        );
                        continue;
                    }
                };
                match (value, now) {
                    (Some(v), None) => match cx.store_value(v, o, what) {
                        Some(v) => (ConstValue::Value(v), when),
                        None => continue,
                    },
                    (None, Some(true)) => (ConstValue::Now, when),
                    _ => {
                        cx.error(
                            o,
                            format!("{what}: set \"{c}\" needs exactly one of value = …, now = true"),
                            Some("e.g. set = { created_on = { now = true }, updated_on = { now = true, on = \"always\" } }"),
                        );
                        continue;
                    }
                }
            }
        };
        out.push((c.clone(), value, when));
    }
    out
}

/// Where a map entry's value lives.
pub fn parse_field(raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
    let o = cx.origin(raw.span());
    if let Some(s) = raw.get_ref().as_str() {
        let c = column_name(cx, &toml::Spanned::new(raw.span(), s.to_owned()), "column")?;
        return Some(std::sync::Arc::new(SqlField::Column(c)));
    }
    let t: RawField = cx.deserialize(raw, what)?;
    let Some(column) = &t.column else {
        cx.error(
            &o,
            format!("{what} needs a column"),
            Some("write \"column_name\", { column = \"…\" }, or { kept = true } for the sidecar's own table"),
        );
        return None;
    };
    let column = column_name(cx, column, "column")?;
    match (&t.table, &t.link) {
        (None, None) => {
            if t.filter.is_some() {
                cx.error(
                    &o,
                    "`where` picks a row of another `table`; name the table and its `link` column",
                    None,
                );
            }
            Some(std::sync::Arc::new(SqlField::Column(column)))
        }
        (Some(table), Some(link)) => {
            let table = ident(cx, table, "table")?;
            let link = column_name(cx, link, "link")?;
            let select = match &t.filter {
                Some(f) => fixed(cx, f, &o, "where"),
                None => Vec::new(),
            };
            let set = match &t.set {
                Some(set) => child_set(cx, set, &o, what),
                None => Vec::new(),
            };
            Some(std::sync::Arc::new(SqlField::Child(ChildSpec {
                table,
                link,
                column,
                select,
                set,
            })))
        }
        _ => {
            cx.error(
                &o,
                format!("{what}: a value in another table needs both `table` and `link`"),
                Some("e.g. { table = \"user_emails\", link = \"user_id\", column = \"address\", where = { is_primary = true } }"),
            );
            None
        }
    }
}

/// `members = { table, group, member }` or `{ column }`.
pub fn parse_members(raw: &RawValue<'_>, what: &str, cx: &mut Cx<'_>) -> Option<Loc> {
    let mo = cx.origin(raw.span());
    let m: RawMembers = cx.deserialize(raw, what)?;
    let store = match (&m.column, &m.table, &m.group, &m.member) {
        (Some(c), None, None, None) => SqlMembers::Column(ident(cx, c, "members.column")?),
        (None, Some(t), Some(g), Some(mm)) => {
            let table = ident(cx, t, "members.table");
            let group_column = ident(cx, g, "members.group");
            let member_column = ident(cx, mm, "members.member");
            SqlMembers::Join {
                table: table?,
                group_column: group_column?,
                member_column: member_column?,
            }
        }
        _ => {
            cx.error(
                &mo,
                format!("{what} needs either {{ table, group, member }} (a join table) or {{ column }} (a group column on the member's row)"),
                Some("e.g. members = { table = \"account_roles\", group = \"role_id\", member = \"account_id\" }"),
            );
            return None;
        }
    };
    Some(std::sync::Arc::new(store))
}

/// A `[resource.X.set]` key: a column of the resource's table.
pub fn parse_set_target(key: &S, cx: &mut Cx<'_>) -> Option<Loc> {
    column_name(cx, key, "set column").map(|c| std::sync::Arc::new(SqlColumn(c)) as Loc)
}

// === The relational description ===

/// Where a field's value is kept, relationally.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A column of the resource's own table.
    Column(String),
    /// A column of a row in another table.
    Child(ChildSpec),
}

/// A field the mapping reads and writes.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSpec {
    /// The field's name in the mapping (a hook's `:name`).
    pub name: String,
    /// Where the value is kept.
    pub source: Source,
    /// Whether values must be unique in the table.
    pub unique: bool,
    /// Whether comparisons (and uniqueness) ignore case.
    pub fold_case: bool,
    /// Holds field `i`'s value lower-cased ([`crate::backend::FieldSpec::lowered_copy_of`]).
    pub lowered_copy_of: Option<usize>,
}

impl FieldSpec {
    /// The column a field is kept in (in its own table), for messages.
    pub fn column(&self) -> &str {
        match &self.source {
            Source::Column(c) => c,
            Source::Child(c) => &c.column,
        }
    }
}

/// A column the sidecar writes on its own.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstSpec {
    /// The column.
    pub column: String,
    /// What is written.
    pub value: ConstValue,
    /// When.
    pub on: When,
}

/// How a group's members are kept, with the member table resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum MembersSpec {
    /// One row per membership in a join table.
    Join {
        /// The join table.
        table: String,
        /// Its column holding the group's key.
        group_column: String,
        /// Its column holding the member's key.
        member_column: String,
        /// The table members live in.
        member_table: String,
        /// That table's key column.
        member_key: String,
        /// The member resource type's discriminator.
        member_filter: Vec<(String, Value)>,
    },
    /// A column on the member's row holding the key of its one group.
    Column {
        /// The table members live in.
        member_table: String,
        /// That table's key column.
        member_key: String,
        /// The member table's column holding the group's key.
        column: String,
        /// The member resource type's discriminator.
        member_filter: Vec<(String, Value)>,
    },
}

/// A join table that references rows of this table as members.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberOf {
    /// The join table.
    pub table: String,
    /// Its column holding this table's key.
    pub column: String,
    /// Its column holding the group's key.
    pub group_column: String,
    /// The group type's `member_remove` hooks: a row that is deleted leaves its groups as
    /// a member removed by PATCH does, and the app's derived rows follow.
    pub hooks: Vec<Hook>,
    /// The group type's table: a soft-deleted row leaves only the groups SCIM sees (the
    /// app's built-in groups keep it).
    pub group_table: String,
    /// Its key column.
    pub group_key: String,
    /// Its discriminator.
    pub group_filter: Vec<(String, Value)>,
}

/// A resource type's tables and columns, as [`super::model::Model::build`] checks them.
#[derive(Clone, Debug, PartialEq)]
pub struct RelSpec {
    /// Table name (optionally `schema.table`).
    pub table: String,
    /// Key column.
    pub key: String,
    /// Discriminator.
    pub filter: Vec<(String, Value)>,
    /// Fields, by index.
    pub fields: Vec<FieldSpec>,
    /// Columns the sidecar writes by itself.
    pub constants: Vec<ConstSpec>,
    /// Membership.
    pub members: Option<MembersSpec>,
    /// Join tables listing rows of this table as members.
    pub member_of: Vec<MemberOf>,
    /// The most members one read loads ([`TableSpec::max_members`]).
    pub max_members: Option<u64>,
    /// Tombstones of soft-deleted rows: rows of the sidecar's attribute table
    /// ([`tombstone`]); `None` when the resource type deletes for good.
    pub tombstone: Option<ChildSpec>,
    /// The member resource type's tombstones, when it soft-deletes.
    pub member_tombstone: Option<ChildSpec>,
    /// What a hard delete does to rows referencing the deleted one.
    pub cascade: Vec<Cascade>,
    /// Deletes remove the row ([`crate::backend::TableSpec::hard_delete`]).
    pub hard_delete: bool,
    /// Statements of the app's logic run after writes.
    pub hooks: Vec<Hook>,
}

/// The name a tombstone has among a resource's kept values.
pub const TOMBSTONE: &str = "meta.deleted";

/// A resource type's tombstones, as rows of the sidecar's attribute table.
pub fn tombstone(kept_table: &str, resource_type: &str) -> ChildSpec {
    ChildSpec {
        table: kept_table.to_owned(),
        link: "resource_id".into(),
        column: "value".into(),
        select: vec![
            (
                "resource_type".into(),
                Value::Text(resource_type.to_owned()),
            ),
            ("name".into(), Value::Text(TOMBSTONE.into())),
        ],
        set: Vec::new(),
    }
}

/// Reads back a location this module parsed.
fn own<'a, T: 'static>(
    loc: &'a Loc,
    part: SpecPart,
    problems: &mut Vec<SpecProblem>,
) -> Option<&'a T> {
    let found = loc.as_any().downcast_ref::<T>();
    if found.is_none() {
        problems.push(SpecProblem {
            part,
            message: format!(
                "{} is not an SQL location (it belongs to another kind of store)",
                loc.describe()
            ),
            fix: Some(
                "a resource, its map entries and its members must use one SQL backend".into(),
            ),
            warning: false,
        });
    }
    found
}

/// The relational description of a resource type. Kept values become a child row of the
/// sidecar's own attribute table `kept_table`, selected by resource type and attribute name.
pub fn rel_spec(spec: &TableSpec, kept_table: &str) -> Result<RelSpec, Vec<SpecProblem>> {
    let mut problems = Vec::new();
    let res = own::<SqlResource>(&spec.resource, SpecPart::Table, &mut problems).cloned();
    let mut fields = Vec::with_capacity(spec.fields.len());
    for (i, f) in spec.fields.iter().enumerate() {
        let source = match &f.source {
            // A `set` column computed from a template is a field too.
            FieldSource::Store(loc) => match loc.as_any().downcast_ref::<SqlColumn>() {
                Some(SqlColumn(c)) => Source::Column(c.clone()),
                None => match own::<SqlField>(loc, SpecPart::Field(i), &mut problems) {
                    Some(SqlField::Column(c)) => Source::Column(c.clone()),
                    Some(SqlField::Child(c)) => Source::Child(c.clone()),
                    None => continue,
                },
            },
            FieldSource::Kept {
                resource_type,
                name,
            } => Source::Child(ChildSpec {
                select: vec![
                    ("resource_type".into(), Value::Text(resource_type.clone())),
                    ("name".into(), Value::Text(name.clone())),
                ],
                ..tombstone(kept_table, resource_type)
            }),
        };
        fields.push(FieldSpec {
            name: f.name.clone(),
            source,
            unique: f.unique,
            fold_case: f.fold_case,
            lowered_copy_of: f.lowered_copy_of,
        });
    }
    let mut constants = Vec::new();
    for (i, c) in spec.constants.iter().enumerate() {
        if let Some(col) = own::<SqlColumn>(&c.target, SpecPart::Constant(i), &mut problems) {
            constants.push(ConstSpec {
                column: col.0.clone(),
                value: c.value.clone(),
                on: c.on,
            });
        }
    }
    let members = match &spec.members {
        None => None,
        Some(m) => {
            let how = own::<SqlMembers>(&m.loc, SpecPart::Members, &mut problems);
            let target = own::<SqlResource>(&m.member, SpecPart::Members, &mut problems);
            match (how, target) {
                (
                    Some(SqlMembers::Join {
                        table,
                        group_column,
                        member_column,
                    }),
                    Some(t),
                ) => Some(MembersSpec::Join {
                    table: table.clone(),
                    group_column: group_column.clone(),
                    member_column: member_column.clone(),
                    member_table: t.table.clone(),
                    member_key: t.key.clone(),
                    member_filter: t.filter.clone(),
                }),
                (Some(SqlMembers::Column(column)), Some(t)) => Some(MembersSpec::Column {
                    member_table: t.table.clone(),
                    member_key: t.key.clone(),
                    column: column.clone(),
                    member_filter: t.filter.clone(),
                }),
                _ => None,
            }
        }
    };
    // A membership kept as a column on the member's row goes with the row; a join table's
    // rows must be deleted with it.
    let member_of = spec
        .member_of
        .iter()
        .filter_map(|m| match m.loc.as_any().downcast_ref::<SqlMembers>()? {
            SqlMembers::Join {
                table,
                member_column,
                group_column,
            } => {
                let g = m.group.as_any().downcast_ref::<SqlResource>()?;
                Some(MemberOf {
                    table: table.clone(),
                    column: member_column.clone(),
                    group_column: group_column.clone(),
                    hooks: g
                        .hooks
                        .iter()
                        .filter(|h| h.on.contains(&Event::MemberRemove))
                        .cloned()
                        .collect(),
                    group_table: g.table.clone(),
                    group_key: g.key.clone(),
                    group_filter: g.filter.clone(),
                })
            }
            SqlMembers::Column(_) => None,
        })
        .collect();
    let Some(res) = res else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(RelSpec {
        table: res.table,
        key: res.key,
        filter: res.filter,
        fields,
        constants,
        members,
        member_of,
        max_members: spec.max_members,
        tombstone: spec
            .tombstones
            .then(|| tombstone(kept_table, &spec.resource_type)),
        member_tombstone: match &spec.members {
            Some(m) if spec.member_tombstones => Some(tombstone(kept_table, &m.member_type)),
            _ => None,
        },
        cascade: res.cascade,
        hard_delete: spec.hard_delete,
        hooks: res.hooks,
    })
}
