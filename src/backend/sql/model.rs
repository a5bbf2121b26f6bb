//! A mapped table compiled against the live schema: every name checked and quoted, every type
//! known, and the SQL that reads and writes it, in either dialect.
//!
//! A dialect's backend introspects the tables a [`RelSpec`] names into a [`Catalog`];
//! [`Model::build`] checks the spec against it (all problems at once) and returns the model the
//! backend executes. The checks and the statement shapes are shared: SQLite and PostgreSQL
//! differ only in introspection, placeholders, casts and a few statement forms.

use std::collections::HashMap;

use super::config::{MembersSpec, RelSpec, Source};
use super::{Dialect, Sql, key_value};
use crate::backend::{
    ConstValue, FieldInfo, FieldType, Refused, SpecPart, SpecProblem, Value, When, closest,
};

/// What the live store says about one table.
#[derive(Clone, Debug, Default)]
pub struct TableInfo {
    /// Columns, in table order.
    pub columns: Vec<ColumnInfo>,
    /// Unique indexes and constraints (the primary key included).
    pub uniques: Vec<UniqueInfo>,
    /// The lower-cased columns of every index (unique or not; `""` for an expression), the
    /// primary key's too.
    pub indexed: Vec<Vec<String>>,
    /// Single-column foreign keys of other tables that point at this one.
    pub referenced_by: Vec<ForeignKey>,
}

/// A foreign key of another table pointing at a [`TableInfo`]'s table.
#[derive(Clone, Debug)]
pub struct ForeignKey {
    /// The referencing table, as the store names it.
    pub table: String,
    /// Its column.
    pub column: String,
    /// The database deletes or nulls the referencing rows itself (`ON DELETE CASCADE`,
    /// `SET NULL`, `SET DEFAULT`).
    pub handled: bool,
}

/// One column of a [`TableInfo`].
#[derive(Clone, Debug)]
pub struct ColumnInfo {
    /// Name as the store spells it.
    pub name: String,
    /// Type.
    pub ty: FieldType,
    /// PostgreSQL: the type text parameters are cast to (`bigint`, `public.status`); `None`
    /// for text types.
    pub cast: Option<String>,
    /// NOT NULL.
    pub notnull: bool,
    /// Has a default (or is generated: identity, serial, rowid).
    pub has_default: bool,
    /// The SQL that writes the column's default in an `UPDATE` (`DEFAULT` in PostgreSQL;
    /// SQLite has no such keyword there, so its declared default expression).
    pub default_sql: Option<String>,
    /// Part of the primary key.
    pub pk: bool,
    /// The store generates it on insert (rowid alias, identity, serial or a key default).
    pub generated: bool,
    /// Compares case-insensitively by itself (`citext`, `COLLATE NOCASE`, a MySQL `_ci`
    /// collation).
    pub ci: bool,
    /// MySQL: the text column's character set (`utf8mb4`, `latin1`), which decides what it
    /// can hold; `None` elsewhere.
    pub charset: Option<String>,
}

/// A unique index or constraint.
#[derive(Clone, Debug)]
pub struct UniqueInfo {
    /// Key columns, lower-cased; `None` for an expression.
    pub columns: Vec<Option<String>>,
    /// Case-insensitive: a NOCASE collation, or an expression on `lower(column)`.
    pub fold: bool,
    /// The lower-cased column inside `lower(…)` for an expression index on it.
    pub lower_of: Option<String>,
    /// Has a WHERE clause.
    pub partial: bool,
    /// A partial index's WHERE clause as `column = literal` conjuncts (lower-cased column,
    /// literal text), when it is that simple; `None` otherwise.
    pub predicate: Option<Vec<(String, String)>>,
}

/// A partial index's condition, from its definition (`… WHERE type = 'User'`; PostgreSQL's
/// `WHERE ((type)::text = 'User'::text)`), as `column = literal` conjuncts; `None` unless it
/// is such a conjunction.
pub fn index_predicate(def: &str) -> Option<Vec<(String, String)>> {
    let lower = def.to_ascii_lowercase();
    let at = lower.rfind(" where ")?;
    let text = strip_casts(&def[at + 7..]);
    let mut out = Vec::new();
    for part in split_and(&text) {
        let (lhs, rhs) = part.split_once('=')?;
        let col = lhs
            .trim()
            .trim_matches(['"', '`', '[', ']'])
            .to_ascii_lowercase();
        if col.is_empty() || !col.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let rhs = rhs.trim();
        let lit = if rhs.len() >= 2 && rhs.starts_with('\'') && rhs.ends_with('\'') {
            rhs[1..rhs.len() - 1].replace("''", "'")
        } else if rhs
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            rhs.to_ascii_lowercase()
        } else {
            return None;
        };
        out.push((col, lit));
    }
    (!out.is_empty()).then_some(out)
}

/// `text` without PostgreSQL casts (`::text`, `::character varying`) and parentheses.
fn strip_casts(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("::") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let skip = if after.to_ascii_lowercase().starts_with("character varying") {
            "character varying".len()
        } else {
            after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '"' || c == '.'))
                .unwrap_or(after.len())
        };
        rest = &after[skip..];
    }
    out.push_str(rest);
    out.replace(['(', ')'], " ")
        .trim()
        .trim_end_matches(';')
        .to_owned()
}

/// Splits on ` AND ` (any case), outside string literals.
fn split_and(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let words: Vec<&str> = text.split(' ').collect();
    for w in words {
        quoted ^= w.matches('\'').count() % 2 == 1;
        if !quoted && w.eq_ignore_ascii_case("and") {
            parts.push(std::mem::take(&mut cur));
            continue;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The `CREATE UNIQUE INDEX` that would make `column` unique among the rows `fixed` picks:
/// partial when a discriminator shares the table, so other types' rows (groups with empty
/// logins) do not stand in its way. MySQL has no partial index: there it is a generated
/// column holding the value for those rows only, under a unique index (which the sidecar
/// reads back as the partial index it stands for).
fn unique_index_fix(
    d: Dialect,
    table: &str,
    column: &str,
    ty: &FieldType,
    fold: bool,
    ci: bool,
    fixed: &[Fixed],
) -> String {
    let expr = match (d, fold) {
        (Dialect::Sqlite, true) => format!("{column} COLLATE NOCASE"),
        (Dialect::Postgres, true) => format!("lower({column})"),
        _ => column.to_owned(),
    };
    if d == Dialect::Mysql {
        return mysql_unique_fix(table, column, ty, fold && !ci, fixed);
    }
    let mut cond = String::new();
    for (i, f) in fixed.iter().enumerate() {
        cond.push_str(if i == 0 { " WHERE " } else { " AND " });
        let lit = match (&f.value, d) {
            (Value::Text(t), _) => format!("'{}'", t.replace('\'', "''")),
            (Value::Bool(b), Dialect::Sqlite) => i64::from(*b).to_string(),
            (v, _) => literal_text(v),
        };
        cond.push_str(&format!("{} = {lit}", f.col.raw));
    }
    match d {
        // Unnamed: PostgreSQL picks a free name. Any name we make up may be taken
        // (WordPress's non-unique index is wp_users_user_login_key).
        Dialect::Postgres => format!("CREATE UNIQUE INDEX ON {table} ({expr}){cond};"),
        Dialect::Sqlite | Dialect::Mysql => format!(
            "CREATE UNIQUE INDEX {}_{column}_key ON {table} ({expr}){cond};",
            table.replace('.', "_")
        ),
    }
}

/// MySQL's [`unique_index_fix`]: a plain unique index (a `_ci` column's folds case), or, for
/// the rows of one type, `ALTER TABLE … ADD COLUMN login_user … AS (CASE WHEN type = 'User'
/// THEN login END) VIRTUAL, ADD UNIQUE INDEX …` — `lower(login)` when a binary collation
/// must be folded.
fn mysql_unique_fix(
    table: &str,
    column: &str,
    ty: &FieldType,
    lower: bool,
    fixed: &[Fixed],
) -> String {
    let t = table.replace('.', "_");
    if fixed.is_empty() && !lower {
        return format!("CREATE UNIQUE INDEX {t}_{column}_key ON {table} ({column});");
    }
    let suffix: Vec<String> = fixed
        .iter()
        .map(|f| {
            literal_text(&f.value)
                .to_ascii_lowercase()
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect()
        })
        .collect();
    let name = if suffix.is_empty() {
        format!("{column}_lower")
    } else {
        format!("{column}_{}", suffix.join("_"))
    };
    let sql_type = match ty {
        FieldType::Text { max_len: Some(n) } => format!("varchar({n})"),
        FieldType::Integer => "bigint".to_owned(),
        _ => "varchar(255)".to_owned(),
    };
    let value = if lower {
        format!("lower({column})")
    } else {
        column.to_owned()
    };
    let expr = if fixed.is_empty() {
        value
    } else {
        let conds: Vec<String> = fixed
            .iter()
            .map(|f| {
                let lit = match &f.value {
                    Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
                    Value::Bool(b) => i64::from(*b).to_string(),
                    v => literal_text(v),
                };
                format!("{} = {lit}", f.col.raw)
            })
            .collect();
        format!("CASE WHEN {} THEN {value} END", conds.join(" AND "))
    };
    format!(
        "ALTER TABLE {table} ADD COLUMN {name} {sql_type} AS ({expr}) VIRTUAL, ADD UNIQUE INDEX {t}_{name}_key ({name});"
    )
}

/// The warning for `n` values held more than once where the sidecar keeps a field unique.
pub fn duplicates_warning(i: usize, name: &str, n: u64) -> SpecProblem {
    SpecProblem {
        part: SpecPart::Field(i),
        message: format!(
            "{n} value(s) of '{name}' are already held by more than one of the app's rows: the sidecar refuses new duplicates, but the unique index cannot be created until these are resolved"
        ),
        fix: None,
        warning: true,
    }
}

/// A fixed value as the literal text an index condition would compare it with.
fn literal_text(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        other => value_text(other),
    }
}

/// Whether a partial index's conjuncts hold for every row the fixed values pick: each of
/// them is one of `fixed` (so the index covers all of this type's rows).
fn covers(predicate: &[(String, String)], fixed: &[Fixed]) -> bool {
    predicate.iter().all(|(col, lit)| {
        fixed.iter().any(|f| {
            f.col.raw.eq_ignore_ascii_case(col)
                && (literal_text(&f.value) == *lit
                    || matches!(
                        (&f.value, lit.as_str()),
                        (Value::Bool(true), "1") | (Value::Bool(false), "0")
                    ))
        })
    })
}

/// The introspected tables a spec needs, by the name the spec uses.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    /// `None` for a table that does not exist.
    pub tables: HashMap<String, Option<TableInfo>>,
    /// Every table of the store, for "did you mean".
    pub all: Vec<String>,
    /// How to name the store in messages (a file, a database).
    pub store: String,
    /// The sidecar's own attribute table: its rows are shared by resource types, so a hard
    /// delete clears them by type, not by the link alone.
    pub kept_table: String,
}

impl TableInfo {
    /// The column named `name`: spelled exactly so, or else in any case.
    fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name).or_else(|| {
            self.columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
        })
    }

    /// Whether an index serves a lookup by `link` with the columns `fixed` also given: its
    /// leading columns are all among them, and `link` is one (Redmine's custom_values index
    /// on (customized_type, customized_id, custom_field_id) serves a lookup by customized_id
    /// with customized_type and custom_field_id fixed).
    fn serves_lookup<'a>(&self, link: &str, fixed: impl Iterator<Item = &'a str>) -> bool {
        let link = link.to_ascii_lowercase();
        let mut given: Vec<String> = fixed.map(str::to_ascii_lowercase).collect();
        given.push(link.clone());
        self.indexed.iter().any(|cols| {
            cols.iter()
                .take_while(|c| given.contains(c))
                .any(|c| *c == link)
        })
    }

    fn pk_columns(&self) -> usize {
        self.columns.iter().filter(|c| c.pk).count()
    }

    /// Whether a unique index (or the primary key) makes `col` unique, case-insensitively when
    /// `fold`, among the rows `fixed` picks: a partial index counts when its condition holds
    /// for all of them (`WHERE type = 'User'` for users told apart by `type`).
    fn unique(&self, col: &ColumnInfo, fold: bool, fixed: &[Fixed]) -> bool {
        let lname = col.name.to_ascii_lowercase();
        if col.pk && self.pk_columns() == 1 && (!fold || col.ci) {
            return true;
        }
        self.uniques
            .iter()
            .filter(|u| {
                u.columns.len() == 1
                    && (!u.partial || u.predicate.as_deref().is_some_and(|p| covers(p, fixed)))
            })
            .any(|u| match &u.columns[0] {
                Some(name) => *name == lname && (!fold || u.fold || col.ci),
                None => fold && u.lower_of.as_deref() == Some(lname.as_str()),
            })
    }
}

/// Every statement of the spec's hooks that compiles, with placeholders for its parameters
/// and where its hook is written: what a store prepares (never runs) against the live
/// database when it opens the table. Independent of the model, so that a hook's mistake is
/// reported together with the rest of the spec's.
pub fn hook_statements(d: Dialect, spec: &RelSpec) -> Vec<(crate::mapping::Origin, Sql, String)> {
    let names: Vec<String> = spec.fields.iter().map(|f| f.name.clone()).collect();
    spec.hooks
        .iter()
        .filter_map(|h| super::hooks::compile(h, &names).ok())
        .flat_map(|h| h.statements)
        .map(|st| (st.origin.clone(), st.placeholders(d), st.shown))
        .collect()
}

/// A hook statement that does not prepare, as a problem at its hook.
pub fn unprepared(origin: crate::mapping::Origin, shown: &str, error: &str) -> SpecProblem {
    SpecProblem {
        part: SpecPart::At(origin),
        message: format!(
            "hook statement `{}` does not prepare: {error}",
            super::shorten(shown)
        ),
        fix: None,
        warning: false,
    }
}

/// The tables a spec refers to (the table itself, child tables, member and join tables).
pub fn tables_needed(spec: &RelSpec) -> Vec<String> {
    let mut out = vec![spec.table.clone()];
    for t in [&spec.tombstone, &spec.member_tombstone]
        .into_iter()
        .flatten()
    {
        out.push(t.table.clone());
    }
    for c in &spec.cascade {
        out.push(c.table.clone());
    }
    for f in &spec.fields {
        if let Source::Child(c) = &f.source {
            out.push(c.table.clone());
        }
    }
    match &spec.members {
        Some(MembersSpec::Join {
            table,
            member_table,
            ..
        }) => {
            out.push(table.clone());
            out.push(member_table.clone());
        }
        Some(MembersSpec::Column { member_table, .. }) => out.push(member_table.clone()),
        None => {}
    }
    out.extend(spec.member_of.iter().map(|m| m.table.clone()));
    out.extend(spec.member_of.iter().map(|m| m.group_table.clone()));
    out.sort();
    out.dedup();
    out
}

/// A column as statements use it.
#[derive(Clone, Debug)]
pub struct Col {
    /// Quoted name.
    pub name: String,
    /// Name as configured, for messages.
    pub raw: String,
    /// Type.
    pub ty: FieldType,
    /// PostgreSQL cast for parameters.
    pub cast: Option<String>,
    /// Compares case-insensitively by itself.
    pub ci: bool,
    /// MySQL: the character set of a text column ([`ColumnInfo::charset`]).
    pub charset: Option<String>,
    /// NOT NULL.
    pub notnull: bool,
    /// How an `UPDATE` writes the column's default ([`ColumnInfo::default_sql`]).
    pub default_sql: Option<String>,
}

impl Col {
    fn from_info(d: Dialect, raw: &str, info: &ColumnInfo) -> Self {
        Col {
            // The store's spelling: the column was found ignoring case, and a quoted name
            // matches only its own case (PostgreSQL: `"ID"` is not `"id"`).
            name: d.quote(&info.name),
            raw: raw.to_owned(),
            ty: info.ty.clone(),
            cast: info.cast.clone(),
            ci: info.ci,
            charset: info.charset.clone(),
            notnull: info.notnull,
            default_sql: info.default_sql.clone(),
        }
    }

    /// Binds `v` as a value for this column (MySQL: a timestamp in the form its `DATETIME`
    /// reads, in UTC like the session).
    pub fn param(&self, d: Dialect, sql: &mut Sql, v: Value) {
        let v = match (d, &self.ty, v) {
            (Dialect::Mysql, FieldType::Timestamp, Value::Text(t)) => {
                Value::Text(mysql_datetime(&t).unwrap_or(t))
            }
            (_, _, v) => v,
        };
        sql.param(d, v);
        if let (Dialect::Postgres, Some(cast)) = (d, &self.cast) {
            sql.push("::").push(cast);
        }
    }
}

/// `2024-05-01T10:00:00.050Z` (how the sidecar writes timestamps) as MySQL's
/// `2024-05-01 10:00:00.050`: MySQL refuses the `T` and `Z` of RFC 3339 in strict mode.
fn mysql_datetime(t: &str) -> Option<String> {
    let parsed = crate::scim::resource::parse_datetime(t)?.to_offset(time::UtcOffset::UTC);
    Some(format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        parsed.year(),
        u8::from(parsed.month()),
        parsed.day(),
        parsed.hour(),
        parsed.minute(),
        parsed.second(),
        parsed.millisecond()
    ))
}

/// A fixed column value: a discriminator, or the selector of a child row.
#[derive(Clone, Debug)]
pub struct Fixed {
    /// The column.
    pub col: Col,
    /// Its value.
    pub value: Value,
}

/// A field of a [`Model`].
#[derive(Clone, Debug)]
pub enum Field {
    /// A column of the table.
    Column(Col),
    /// A value in a row of another table (boxed: a child is several columns).
    Child(Box<Child>),
}

/// A value kept in another table.
#[derive(Clone, Debug)]
pub struct Child {
    /// Quoted table name.
    pub table: String,
    /// The column holding the resource's key.
    pub link: Col,
    /// The column holding the value.
    pub col: Col,
    /// What picks the row.
    pub select: Vec<Fixed>,
    /// Values written into the row by the sidecar (timestamps the app requires).
    pub set: Vec<Constant>,
}

impl Child {
    /// The columns a new child row is written with: link, value, selector, set values.
    pub fn insert_columns(&self) -> String {
        let mut names = vec![self.link.name.as_str(), self.col.name.as_str()];
        names.extend(self.select.iter().map(|f| f.col.name.as_str()));
        names.extend(self.set.iter().map(|k| k.col.name.as_str()));
        names.join(", ")
    }

    /// `, selector…, set value…`: what follows the link and the value in a new row.
    pub fn push_insert_values(&self, d: Dialect, sql: &mut Sql) {
        for f in &self.select {
            sql.push(", ");
            f.col.param(d, sql, f.value.clone());
        }
        for k in &self.set {
            sql.push(", ");
            k.col.param(d, sql, k.value_now());
        }
    }
}

impl Constant {
    /// The value to write now.
    pub fn value_now(&self) -> Value {
        match &self.value {
            ConstValue::Value(v) => v.clone(),
            ConstValue::Now => crate::backend::now(&self.col.ty),
        }
    }
}

/// When a write happens, for the values the sidecar writes by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// A new row (or a revived one).
    Insert,
    /// A change.
    Update,
    /// A soft delete.
    Delete,
}

/// A column the sidecar writes by itself.
#[derive(Clone, Debug)]
pub struct Constant {
    /// The column.
    pub col: Col,
    /// What it writes.
    pub value: ConstValue,
    /// When.
    pub on: When,
}

/// Marks the transaction refused: a setting of the transaction alone, gone at its end
/// (PostgreSQL), evaluated once per row of the statement that selects it.
pub const REFUSE: &str = "set_config('scim_sidecar.refused', 'on', true)";

/// True until [`REFUSE`] runs in the transaction: the condition of a write sent on the
/// wire together with a statement that may refuse the change, and so run whatever that
/// statement finds (PostgreSQL).
pub const NOT_REFUSED: &str = "current_setting('scim_sidecar.refused', true) IS DISTINCT FROM 'on'";

/// Membership, compiled.
#[derive(Clone, Debug)]
pub enum Members {
    /// A join table.
    Join {
        /// Quoted join table.
        table: String,
        /// Its group column.
        group: Col,
        /// Its member column.
        member: Col,
        /// Quoted member table.
        member_table: String,
        /// The member table's key.
        member_key: Col,
        /// The member type's discriminator.
        member_filter: Vec<Fixed>,
        /// A unique index on (group, member) exists: `ON CONFLICT DO NOTHING` is enough.
        unique_pair: bool,
    },
    /// A group column on the member's row.
    Column {
        /// Quoted member table.
        member_table: String,
        /// The member table's key.
        member_key: Col,
        /// The group column.
        column: Col,
        /// The member type's discriminator.
        member_filter: Vec<Fixed>,
    },
}

impl Members {
    /// The member key column.
    pub fn member_key(&self) -> &Col {
        match self {
            Members::Join { member_key, .. } | Members::Column { member_key, .. } => member_key,
        }
    }
}

/// A join table column pointing at this table's rows as members.
#[derive(Clone, Debug)]
pub struct Ref {
    /// Quoted table.
    pub table: String,
    /// The column.
    pub column: Col,
    /// The group's column.
    pub group: Option<Col>,
    /// The group type's `member_remove` hooks (`:id` the group, `:member` this row).
    pub hooks: Vec<super::hooks::Compiled>,
    /// The group type's rows: quoted table, key column, discriminator (`None` when the
    /// table was not found; no discriminator means every row is a group).
    pub groups: Option<(String, Col, Vec<Fixed>)>,
}

/// A mapped table, ready to execute.
#[derive(Clone, Debug)]
pub struct Model {
    /// The dialect statements are built for.
    pub d: Dialect,
    /// Quoted table name.
    pub table: String,
    /// The key column.
    pub key: Col,
    /// The sidecar generates the key (a UUID), because the store does not.
    pub key_uuid: bool,
    /// Discriminator.
    pub filter: Vec<Fixed>,
    /// Fields, by index.
    pub fields: Vec<Field>,
    /// Columns written by the sidecar.
    pub constants: Vec<Constant>,
    /// Membership.
    pub members: Option<Members>,
    /// Join tables pointing at this table's rows.
    pub member_of: Vec<Ref>,
    /// Fields whose uniqueness the sidecar checks itself (no index guarantees it), with their
    /// case folding.
    pub unique_checks: Vec<(usize, bool)>,
    /// Child tables to clear on hard delete: table, link, and the selector columns every
    /// field of that table shares.
    pub child_tables: Vec<(String, Col, Vec<Fixed>)>,
    /// The most members one read loads.
    pub max_members: Option<u64>,
    /// Tombstones of soft-deleted rows (rows of the sidecar's own table).
    pub tomb: Option<Child>,
    /// The member type's tombstones.
    pub member_tomb: Option<Child>,
    /// Every field whose values are unique (by index or declaration), with its case
    /// folding: what an insert may clash with a tombstoned row on.
    pub unique_fields: Vec<(usize, bool)>,
    /// Rows of other tables a hard delete removes (`false`) or detaches (`true`).
    pub cascade: Vec<(String, Col, bool)>,
    /// The app's logic run after writes.
    pub hooks: Vec<super::hooks::Compiled>,
    /// [`Model::select_from`]'s statement, built on first use: every read starts with it, and
    /// it depends only on the mapping.
    select: std::sync::OnceLock<Sql>,
    /// [`Model::insert_returning`]'s text, built on first use (it depends only on the mapping).
    returning: std::sync::OnceLock<InsertReturning>,
    /// [`Model::select_list`], built on first use (likewise).
    select_list: std::sync::OnceLock<Sql>,
    /// [`Model::returning_list`], built on first use (likewise): a PATCH formatted it anew,
    /// 5 % of its instructions.
    returning_list: std::sync::OnceLock<Option<String>>,
}

/// The fixed text of a create that writes its child rows and reads the row back in one
/// statement: `WITH t AS (<insert> RETURNING *), c1 AS (INSERT INTO child …), … SELECT …`.
#[derive(Clone, Debug)]
pub struct InsertReturning {
    /// Per field: for a child field, `, c{i} AS (INSERT INTO child (link, value, …) SELECT
    /// <t's key as the link>, ` (its value and selector values follow); empty otherwise.
    pub child_heads: Vec<String>,
    /// ` SELECT key, column… FROM t`, with `NULL::text` for each child field (the caller
    /// fills those in from the values it wrote).
    pub tail: String,
}

fn problem(part: SpecPart, message: String, fix: Option<String>) -> SpecProblem {
    SpecProblem {
        part,
        message,
        fix,
        warning: false,
    }
}

fn warning(part: SpecPart, message: String, fix: Option<String>) -> SpecProblem {
    SpecProblem {
        part,
        message,
        fix,
        warning: true,
    }
}

/// What a build returns: the model, what the store says of each field, and warnings.
pub type Built = (Model, Vec<FieldInfo>, Vec<SpecProblem>);

impl Model {
    /// Checks `spec` against the catalog and compiles it. Every problem is returned at once.
    pub fn build(d: Dialect, spec: &RelSpec, cat: &Catalog) -> Result<Built, Refused> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let table_of = |name: &str,
                        part: SpecPart,
                        problems: &mut Vec<SpecProblem>|
         -> Option<TableInfo> {
            match cat.tables.get(name) {
                Some(Some(t)) => Some(t.clone()),
                _ => {
                    let hint = if name == cat.kept_table {
                        "create it with `scim-sidecar migrate --config <this file>` (the sidecar never creates it by itself)".to_owned()
                    } else {
                        closest(name, cat.all.iter().map(String::as_str))
                            .map(|t| format!("did you mean \"{t}\"?"))
                            .unwrap_or_else(|| {
                                format!("tables in {}: {}", cat.store, cat.all.join(", "))
                            })
                    };
                    problems.push(problem(
                        part,
                        format!("table '{name}' does not exist in {}", cat.store),
                        Some(hint),
                    ));
                    None
                }
            }
        };
        let column_of = |t: &TableInfo,
                         tname: &str,
                         name: &str,
                         what: &str,
                         part: SpecPart,
                         problems: &mut Vec<SpecProblem>| {
            let found = t.column(name).cloned();
            if found.is_none() {
                let list: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
                let fix = match closest(name, list.iter().copied()) {
                    Some(n) => format!("did you mean \"{n}\"? (columns: {})", list.join(", ")),
                    None => format!("columns of {tname}: {}", list.join(", ")),
                };
                problems.push(problem(
                    part,
                    format!("{what}'{name}' does not exist in table '{tname}'"),
                    Some(fix),
                ));
            }
            found
        };
        let main = table_of(&spec.table, SpecPart::Table, &mut problems);

        // The table's own columns: key, discriminator, constants, mapped columns.
        let mut key = None;
        let mut key_uuid = false;
        let mut filter = Vec::new();
        let mut constants = Vec::new();
        let mut written: Vec<String> = Vec::new();
        if let Some(t) = &main {
            if let Some(k) = column_of(
                t,
                &spec.table,
                &spec.key,
                "key column ",
                SpecPart::Table,
                &mut problems,
            ) {
                if !t.unique(&k, false, &[]) {
                    problems.push(problem(
                        SpecPart::Table,
                        format!("key column '{}' of '{}' is not unique", k.name, spec.table),
                        Some(
                            "use the table's primary key, or a column with a UNIQUE constraint"
                                .into(),
                        ),
                    ));
                }
                if !k.generated && !k.has_default {
                    if k.ty == FieldType::Integer {
                        problems.push(problem(
                            SpecPart::Table,
                            format!("key column '{}' is an integer the database does not generate", k.name),
                            Some("declare it INTEGER PRIMARY KEY (SQLite), identity or serial (PostgreSQL), AUTO_INCREMENT (MySQL), or give it a DEFAULT".into()),
                        ));
                    } else {
                        key_uuid = true;
                    }
                }
                written.push(k.name.to_ascii_lowercase());
                key = Some(Col::from_info(d, &spec.key, &k));
            }
            for (c, v) in &spec.filter {
                if let Some(info) = column_of(
                    t,
                    &spec.table,
                    c,
                    "discriminator column ",
                    SpecPart::Filter,
                    &mut problems,
                ) {
                    written.push(info.name.to_ascii_lowercase());
                    filter.push(Fixed {
                        col: Col::from_info(d, c, &info),
                        value: v.clone(),
                    });
                }
            }
            for (i, k) in spec.constants.iter().enumerate() {
                let mapped = spec.fields.iter().any(
                    |f| matches!(&f.source, Source::Column(c) if c.eq_ignore_ascii_case(&k.column)),
                );
                if mapped {
                    problems.push(problem(
                        SpecPart::Constant(i),
                        format!("column '{}' is both mapped and set", k.column),
                        Some("keep it in one of [resource.….map] and [resource.….set]".into()),
                    ));
                    continue;
                }
                if let Some(info) = column_of(
                    t,
                    &spec.table,
                    &k.column,
                    "column ",
                    SpecPart::Constant(i),
                    &mut problems,
                ) {
                    written.push(info.name.to_ascii_lowercase());
                    constants.push(Constant {
                        col: Col::from_info(d, &k.column, &info),
                        value: k.value.clone(),
                        on: k.on,
                    });
                }
            }
        }

        let mut fields = Vec::with_capacity(spec.fields.len());
        let mut infos = Vec::with_capacity(spec.fields.len());
        let mut unique_checks = Vec::new();
        let mut unique_fields = Vec::new();
        let unknown = FieldInfo {
            ty: FieldType::Text { max_len: None },
            nullable: true,
            has_default: false,
            unique: false,
            multi_valued: false,
        };
        for (i, f) in spec.fields.iter().enumerate() {
            let part = SpecPart::Field(i);
            match &f.source {
                Source::Column(c) => {
                    let Some(t) = &main else {
                        infos.push(unknown.clone());
                        continue;
                    };
                    let Some(info) =
                        column_of(t, &spec.table, c, "column ", part.clone(), &mut problems)
                    else {
                        infos.push(unknown.clone());
                        continue;
                    };
                    written.push(info.name.to_ascii_lowercase());
                    let covered = t.unique(&info, f.fold_case, &filter);
                    if f.unique && !covered {
                        unique_checks.push((i, f.fold_case));
                        warnings.push(warning(
                            part,
                            format!(
                                "no unique index on {}.{}{}: the sidecar checks uniqueness itself inside each write, but the app's own writes are not checked",
                                spec.table,
                                info.name,
                                if f.fold_case { " (case-insensitive)" } else { "" }
                            ),
                            Some(unique_index_fix(d, &spec.table, &info.name, &info.ty, f.fold_case, info.ci, &filter)),
                        ));
                    }
                    if covered || f.unique {
                        unique_fields.push((i, f.fold_case));
                    }
                    infos.push(FieldInfo {
                        ty: info.ty.clone(),
                        nullable: !info.notnull,
                        has_default: info.has_default,
                        unique: covered || f.unique,
                        multi_valued: false,
                    });
                    fields.push(Field::Column(Col::from_info(d, c, &info)));
                }
                Source::Child(c) => {
                    let Some(t) = table_of(&c.table, part.clone(), &mut problems) else {
                        infos.push(unknown.clone());
                        continue;
                    };
                    let link = column_of(
                        &t,
                        &c.table,
                        &c.link,
                        "link column ",
                        part.clone(),
                        &mut problems,
                    );
                    let col = column_of(
                        &t,
                        &c.table,
                        &c.column,
                        "column ",
                        part.clone(),
                        &mut problems,
                    );
                    let mut select = Vec::new();
                    for (sc, v) in &c.select {
                        if let Some(info) =
                            column_of(&t, &c.table, sc, "column ", part.clone(), &mut problems)
                        {
                            select.push(Fixed {
                                col: Col::from_info(d, sc, &info),
                                value: v.clone(),
                            });
                        }
                    }
                    let mut set = Vec::new();
                    for (sc, value, on) in &c.set {
                        let taken = [&c.link, &c.column]
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(sc))
                            || c.select.iter().any(|(n, _)| n.eq_ignore_ascii_case(sc));
                        if taken {
                            problems.push(problem(
                                part.clone(),
                                format!(
                                    "column '{}.{sc}' is both set and read (link, column or where)",
                                    c.table
                                ),
                                None,
                            ));
                            continue;
                        }
                        if let Some(info) =
                            column_of(&t, &c.table, sc, "set column ", part.clone(), &mut problems)
                        {
                            set.push(Constant {
                                col: Col::from_info(d, sc, &info),
                                value: value.clone(),
                                on: *on,
                            });
                        }
                    }
                    // Columns of the child row nobody writes must be nullable or defaulted.
                    for ci in &t.columns {
                        let named = [&c.link, &c.column]
                            .iter()
                            .any(|n| n.eq_ignore_ascii_case(&ci.name))
                            || c.select
                                .iter()
                                .any(|(n, _)| n.eq_ignore_ascii_case(&ci.name))
                            || c.set
                                .iter()
                                .any(|(n, _, _)| n.eq_ignore_ascii_case(&ci.name));
                        if ci.notnull && !ci.has_default && !ci.generated && !named {
                            problems.push(problem(
                                part.clone(),
                                format!("column '{}.{}' is NOT NULL without a default, and the mapping does not write it", c.table, ci.name),
                                Some(format!(
                                    "write it with the row: `set = {{ {0} = {{ now = true }} }}` (a timestamp) or `set = {{ {0} = … }}` (a constant) in the map entry, or give the column a DEFAULT",
                                    ci.name
                                )),
                            ));
                        }
                    }
                    let (Some(link), Some(col)) = (link, col) else {
                        infos.push(unknown.clone());
                        continue;
                    };
                    if !t.serves_lookup(&link.name, select.iter().map(|f| f.col.raw.as_str()))
                        && c.table != cat.kept_table
                    {
                        warnings.push(warning(
                            part.clone(),
                            format!(
                                "no index on {}({}): every read of this value scans the table",
                                c.table, c.link
                            ),
                            Some(format!(
                                "CREATE INDEX {0}_{1} ON {2} ({1});",
                                c.table.replace('.', "_"),
                                c.link,
                                c.table
                            )),
                        ));
                    }
                    // A value declared unique (an app's unique e-mail) is checked like a
                    // column's: by the child table's index, or by the sidecar in the write.
                    let covered = f.unique && t.unique(&col, f.fold_case, &select);
                    if f.unique && !covered {
                        unique_checks.push((i, f.fold_case));
                        warnings.push(warning(
                            part.clone(),
                            format!(
                                "no unique index on {}.{}{}: the sidecar checks uniqueness itself inside each write, but the app's own writes are not checked",
                                c.table,
                                col.name,
                                if f.fold_case { " (case-insensitive)" } else { "" }
                            ),
                            Some(unique_index_fix(d, &c.table, &col.name, &col.ty, f.fold_case, col.ci, &select)),
                        ));
                    }
                    if f.unique {
                        unique_fields.push((i, f.fold_case));
                    }
                    infos.push(FieldInfo {
                        ty: col.ty.clone(),
                        nullable: true,
                        has_default: false,
                        unique: false,
                        multi_valued: false,
                    });
                    fields.push(Field::Child(Box::new(Child {
                        table: d.quote(&c.table),
                        link: Col::from_info(d, &c.link, &link),
                        col: Col::from_info(d, &c.column, &col),
                        select,
                        set,
                    })));
                }
            }
        }

        // A column holding another field lower-cased, under a unique index, makes that field
        // unique case-insensitively: nothing to check or advise for it.
        if let Some(t) = &main {
            for (j, f) in spec.fields.iter().enumerate() {
                let (Some(i), Some(Field::Column(c))) = (f.lowered_copy_of, fields.get(j)) else {
                    continue;
                };
                let unique = t
                    .column(&c.raw)
                    .is_some_and(|info| t.unique(info, false, &filter));
                if !unique {
                    continue;
                }
                unique_checks.retain(|&(k, _)| k != i);
                warnings.retain(|w| {
                    !(w.part == SpecPart::Field(i) && w.message.starts_with("no unique index"))
                });
                if !unique_fields.iter().any(|&(k, _)| k == i) {
                    unique_fields.push((i, true));
                }
                if let Some(info) = infos.get_mut(i) {
                    info.unique = true;
                }
            }
        }

        // A NOT NULL column without default that nothing writes makes every insert fail.
        if let Some(t) = &main {
            for col in &t.columns {
                let lname = col.name.to_ascii_lowercase();
                if col.notnull && !col.has_default && !col.generated && !written.contains(&lname) {
                    problems.push(problem(
                        SpecPart::Table,
                        format!(
                            "column '{}.{}' is NOT NULL without a default, and nothing maps to it: every create would fail",
                            spec.table, col.name
                        ),
                        Some(format!(
                            "map an attribute to \"{0}\", or set it in [resource.….set] (e.g. {0} = \"…\"), or give the column a DEFAULT",
                            col.name
                        )),
                    ));
                }
            }
        }

        let members = match &spec.members {
            None => None,
            Some(m) => Self::members(d, m, cat, &mut problems, &mut warnings),
        };
        let mut member_of = Vec::new();
        for m in &spec.member_of {
            let Some(t) = cat.tables.get(&m.table).and_then(Option::as_ref) else {
                continue;
            };
            let Some(c) = t.column(&m.column) else {
                continue;
            };
            let mut hooks = Vec::new();
            for h in &m.hooks {
                // Run from the member's side, only the group's key and the member's are known.
                match super::hooks::compile(h, &[]) {
                    Ok(c) => hooks.push(c),
                    Err(e) => problems.push(problem(
                        SpecPart::At(h.origin.clone()),
                        format!("hook: {e} — a member_remove hook also runs when a member is deleted, where only :id and :member are known"),
                        None,
                    )),
                }
            }
            let groups = cat
                .tables
                .get(&m.group_table)
                .and_then(Option::as_ref)
                .and_then(|gt| {
                    let key = Col::from_info(d, &m.group_key, gt.column(&m.group_key)?);
                    let filter = m
                        .group_filter
                        .iter()
                        .map(|(name, v)| {
                            Some(Fixed {
                                col: Col::from_info(d, name, gt.column(name)?),
                                value: v.clone(),
                            })
                        })
                        .collect::<Option<Vec<_>>>()?;
                    Some((d.quote(&m.group_table), key, filter))
                });
            member_of.push(Ref {
                table: d.quote(&m.table),
                column: Col::from_info(d, &m.column, c),
                group: t
                    .column(&m.group_column)
                    .map(|g| Col::from_info(d, &m.group_column, g)),
                hooks,
                groups,
            });
        }

        // What points at a hard-deleted row and nothing handles: the database refuses the
        // delete (an enforced key) or keeps rows pointing at nothing.
        if let (true, Some(t)) = (spec.hard_delete, &main) {
            for fk in t.referenced_by.iter().filter(|fk| !fk.handled) {
                let is = |table: &str, column: &str| {
                    table.eq_ignore_ascii_case(&fk.table) && column.eq_ignore_ascii_case(&fk.column)
                };
                let handled = spec.cascade.iter().any(|c| is(&c.table, &c.column))
                    || spec
                        .fields
                        .iter()
                        .any(|f| matches!(&f.source, Source::Child(c) if is(&c.table, &c.link)))
                    || spec.member_of.iter().any(|m| is(&m.table, &m.column))
                    || matches!(&spec.members, Some(MembersSpec::Join { table, group_column, .. }) if is(table, group_column));
                if !handled {
                    warnings.push(warning(
                        SpecPart::Table,
                        format!(
                            "{}.{} references {} (a foreign key) and nothing handles it on delete: deleting a {} fails while such rows exist, or leaves them pointing at nothing",
                            fk.table, fk.column, spec.table, "row"
                        ),
                        Some(format!(
                            "add {{ table = \"{}\", column = \"{}\" }} to `cascade` (action = \"null\" to keep the rows), or delete softly",
                            fk.table, fk.column
                        )),
                    ));
                }
            }
        }

        if !problems.is_empty() {
            // Warnings too: `check` shows everything it found at once.
            problems.extend(warnings);
            return Err(Refused {
                problems,
                fields: infos,
            });
        }
        let Some(key) = key else {
            return Err(Refused::from(vec![problem(
                SpecPart::Table,
                "the key column is missing".into(),
                None,
            )]));
        };
        let child_tables = child_tables(&fields);
        // Tombstones live in the sidecar's own table: missing, it is reported like a kept
        // attribute's (create it with `migrate`).
        let tomb_of = |t: &super::config::ChildSpec, problems: &mut Vec<SpecProblem>| {
            let info = table_of(&t.table, SpecPart::Table, problems)?;
            let link = info.column(&t.link)?;
            let col = info.column(&t.column)?;
            let select = t
                .select
                .iter()
                .filter_map(|(c, v)| {
                    info.column(c).map(|i| Fixed {
                        col: Col::from_info(d, c, i),
                        value: v.clone(),
                    })
                })
                .collect();
            Some(Child {
                table: d.quote(&t.table),
                link: Col::from_info(d, &t.link, link),
                col: Col::from_info(d, &t.column, col),
                select,
                set: Vec::new(),
            })
        };
        let tomb = spec
            .tombstone
            .as_ref()
            .and_then(|t| tomb_of(t, &mut problems));
        let member_tomb = spec
            .member_tombstone
            .as_ref()
            .and_then(|t| tomb_of(t, &mut problems));
        let mut cascade = Vec::new();
        for c in &spec.cascade {
            let part = SpecPart::At(c.origin.clone());
            let Some(t) = table_of(&c.table, part.clone(), &mut problems) else {
                continue;
            };
            if let Some(col) = column_of(&t, &c.table, &c.column, "column ", part, &mut problems) {
                cascade.push((
                    d.quote(&c.table),
                    Col::from_info(d, &c.column, &col),
                    c.null,
                ));
            }
        }
        let names: Vec<String> = spec.fields.iter().map(|f| f.name.clone()).collect();
        let mut hooks = Vec::new();
        for h in &spec.hooks {
            match super::hooks::compile(h, &names) {
                Ok(c) => hooks.push(c),
                Err(e) => problems.push(problem(
                    SpecPart::At(h.origin.clone()),
                    format!("hook: {e}"),
                    None,
                )),
            }
        }
        if !problems.is_empty() {
            problems.extend(warnings);
            return Err(Refused {
                problems,
                fields: Vec::new(),
            });
        }
        let model = Model {
            d,
            table: d.quote(&spec.table),
            key,
            key_uuid,
            filter,
            fields,
            constants,
            members,
            member_of,
            unique_checks,
            child_tables,
            max_members: spec.max_members,
            tomb,
            member_tomb,
            unique_fields,
            cascade,
            hooks,
            select: std::sync::OnceLock::new(),
            returning: std::sync::OnceLock::new(),
            select_list: std::sync::OnceLock::new(),
            returning_list: std::sync::OnceLock::new(),
        };
        Ok((model, infos, warnings))
    }

    fn members(
        d: Dialect,
        m: &MembersSpec,
        cat: &Catalog,
        problems: &mut Vec<SpecProblem>,
        warnings: &mut Vec<SpecProblem>,
    ) -> Option<Members> {
        let part = SpecPart::Members;
        let get = |name: &str, problems: &mut Vec<SpecProblem>| match cat.tables.get(name) {
            Some(Some(t)) => Some(t.clone()),
            _ => {
                let hint = closest(name, cat.all.iter().map(String::as_str))
                    .map(|t| format!("did you mean \"{t}\"?"));
                problems.push(problem(
                    part.clone(),
                    format!("table '{name}' (members) does not exist in {}", cat.store),
                    hint,
                ));
                None
            }
        };
        let col = |t: &TableInfo, tname: &str, name: &str, problems: &mut Vec<SpecProblem>| {
            let c = t.column(name).map(|i| Col::from_info(d, name, i));
            if c.is_none() {
                let list: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
                problems.push(problem(
                    part.clone(),
                    format!("column '{name}' does not exist in table '{tname}'"),
                    Some(format!("columns of {tname}: {}", list.join(", "))),
                ));
            }
            c
        };
        let fixed = |t: &TableInfo,
                     tname: &str,
                     f: &[(String, Value)],
                     problems: &mut Vec<SpecProblem>|
         -> Vec<Fixed> {
            f.iter()
                .filter_map(|(c, v)| {
                    col(t, tname, c, problems).map(|col| Fixed {
                        col,
                        value: v.clone(),
                    })
                })
                .collect()
        };
        match m {
            MembersSpec::Join {
                table,
                group_column,
                member_column,
                member_table,
                member_key,
                member_filter,
            } => {
                let jt = get(table, problems);
                let mt = get(member_table, problems);
                let (jt, mt) = (jt?, mt?);
                let group = col(&jt, table, group_column, problems);
                let member = col(&jt, table, member_column, problems);
                let key = col(&mt, member_table, member_key, problems);
                let member_filter = fixed(&mt, member_table, member_filter, problems);
                let (g, mm) = (
                    group_column.to_ascii_lowercase(),
                    member_column.to_ascii_lowercase(),
                );
                let pair = |cols: &[Option<String>]| {
                    cols.len() == 2
                        && cols.iter().any(|c| c.as_deref() == Some(g.as_str()))
                        && cols.iter().any(|c| c.as_deref() == Some(mm.as_str()))
                };
                let pk: Vec<Option<String>> = jt
                    .columns
                    .iter()
                    .filter(|c| c.pk)
                    .map(|c| Some(c.name.to_ascii_lowercase()))
                    .collect();
                let unique_pair =
                    pair(&pk) || jt.uniques.iter().any(|u| !u.partial && pair(&u.columns));
                if !unique_pair {
                    warnings.push(warning(
                        part.clone(),
                        format!("no unique index on {table}({group_column}, {member_column})"),
                        Some(format!("CREATE UNIQUE INDEX {0}_pair ON {table} ({group_column}, {member_column});", table.replace('.', "_"))),
                    ));
                }
                Some(Members::Join {
                    table: d.quote(table),
                    group: group?,
                    member: member?,
                    member_table: d.quote(member_table),
                    member_key: key?,
                    member_filter,
                    unique_pair,
                })
            }
            MembersSpec::Column {
                member_table,
                member_key,
                column,
                member_filter,
            } => {
                let mt = get(member_table, problems)?;
                let key = col(&mt, member_table, member_key, problems);
                let column = col(&mt, member_table, column, problems);
                let member_filter = fixed(&mt, member_table, member_filter, problems);
                Some(Members::Column {
                    member_table: d.quote(member_table),
                    member_key: key?,
                    column: column?,
                    member_filter,
                })
            }
        }
    }

    /// The key as a parameter value, or `None` when `id` cannot be a key of this table.
    pub fn key_value(&self, id: &str) -> Option<Value> {
        key_value(id, self.key.ty == FieldType::Integer)
    }

    /// `t."key"` as the select list and joins read it (text in PostgreSQL).
    pub fn key_expr(&self, alias: &str) -> String {
        match self.d {
            Dialect::Sqlite | Dialect::Mysql => format!("{alias}.{}", self.key.name),
            Dialect::Postgres => format!("{alias}.{}::text", self.key.name),
        }
    }

    /// The expression reading column `c` of `alias`, as the mapping expects it.
    pub fn read_expr(&self, alias: &str, c: &Col) -> String {
        match (self.d, &c.ty) {
            // MySQL values come typed (a DATETIME as a date the driver formats).
            (Dialect::Sqlite | Dialect::Mysql, _) => format!("{alias}.{}", c.name),
            // One text form for every timestamp, the one the sidecar writes (UTC, ms).
            (Dialect::Postgres, FieldType::Timestamp) => format!(
                "to_char({alias}.{} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                c.name
            ),
            (Dialect::Postgres, _) => format!("{alias}.{}::text", c.name),
        }
    }

    /// The condition linking a child row `c` to the resource row `t`. When the link column's
    /// type differs from the key's (the sidecar's text table), the key is cast.
    pub fn link_cond(&self, child: &Child, c: &str, t: &str) -> String {
        format!("{c}.{} = {}", child.link.name, self.link_from_key(child, t))
    }

    /// Row `t`'s key as the child's link column holds it (cast to text when the link is text
    /// and the key is not: the sidecar's own table).
    pub fn link_from_key(&self, child: &Child, t: &str) -> String {
        match (self.d, child.link.ty != self.key.ty) {
            (_, false) => format!("{t}.{}", self.key.name),
            (Dialect::Sqlite, true) => format!("CAST({t}.{} AS TEXT)", self.key.name),
            (Dialect::Postgres, true) => format!("{t}.{}::text", self.key.name),
            (Dialect::Mysql, true) => format!("CAST({t}.{} AS CHAR)", self.key.name),
        }
    }

    /// The child's link column as a value of the key's type, for `t.key IN (SELECT …)`.
    pub fn link_as_key(&self, child: &Child, c: &str) -> String {
        let link = format!("{c}.{}", child.link.name);
        if child.link.ty == self.key.ty {
            return link;
        }
        match (self.d, &self.key.ty, &self.key.cast) {
            (Dialect::Sqlite, FieldType::Integer, _) => format!("CAST({link} AS INTEGER)"),
            (Dialect::Mysql, FieldType::Integer, _) => format!("CAST({link} AS SIGNED)"),
            (Dialect::Postgres, _, Some(cast)) => format!("{link}::{cast}"),
            _ => link,
        }
    }

    /// Appends `AND col = v …` for fixed values.
    pub fn push_fixed(&self, sql: &mut Sql, alias: &str, fixed: &[Fixed]) {
        for f in fixed {
            sql.push(" AND ")
                .push(alias)
                .push(".")
                .push(&f.col.name)
                .push(" = ");
            f.col.param(self.d, sql, f.value.clone());
        }
    }

    /// [`Self::column_list`] over `t`, built once.
    pub fn returning_list(&self) -> Option<&str> {
        self.returning_list
            .get_or_init(|| self.column_list("t"))
            .as_deref()
    }

    /// `key, column…` over `alias` when every field is a column of the table (for `RETURNING`);
    /// `None` when a field lives in another table.
    fn column_list(&self, alias: &str) -> Option<String> {
        let mut out = self.key_expr(alias);
        for f in &self.fields {
            match f {
                Field::Column(c) => {
                    out.push_str(", ");
                    out.push_str(&self.read_expr(alias, c));
                }
                Field::Child(_) => return None,
            }
        }
        Some(out)
    }

    /// `SELECT key, field… FROM table t` with the discriminator as the start of the WHERE.
    pub fn select_from(&self, sql: &mut Sql) {
        let select = self.select.get_or_init(|| {
            let mut s = Sql::default();
            self.build_select(&mut s);
            s
        });
        if sql.text.is_empty() {
            sql.clone_from(select);
        } else {
            sql.append(select);
        }
    }

    /// The text of a create reading its row back ([`InsertReturning`]), built once: a create
    /// formatted it anew for every request.
    pub fn insert_returning(&self) -> &InsertReturning {
        self.returning.get_or_init(|| {
            let child_heads = self
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| match f {
                    Field::Child(ch) => format!(
                        ", c{i} AS (INSERT INTO {} ({}) SELECT {}, ",
                        ch.table,
                        ch.insert_columns(),
                        self.link_from_key(ch, "t")
                    ),
                    Field::Column(_) => String::new(),
                })
                .collect();
            let mut tail = format!(" SELECT {}", self.key_expr("t"));
            for f in &self.fields {
                tail.push_str(", ");
                match f {
                    Field::Column(col) => tail.push_str(&self.read_expr("t", col)),
                    // Written by the statement from the request's values; read from there.
                    Field::Child(_) => tail.push_str("NULL::text"),
                }
            }
            tail.push_str(" FROM t");
            InsertReturning { child_heads, tail }
        })
    }

    fn build_select(&self, sql: &mut Sql) {
        sql.append(self.select_list());
        sql.push(" FROM ").push(&self.table).push(" t WHERE 1=1");
        self.push_scope(sql, "t");
    }

    /// `WITH t AS (<write> RETURNING t.*) SELECT key, field… FROM t` (PostgreSQL): a write
    /// of rows of this table (aliased `t`) that reads them back in the same statement, child
    /// fields included. Those read as they were before the statement: for a write that
    /// changes none.
    pub fn returning_rows(&self, write: &Sql) -> Sql {
        let mut sql = Sql::default();
        sql.push("WITH t AS (");
        sql.append(write);
        sql.push(" RETURNING t.*) ");
        sql.append(self.select_list());
        sql.push(" FROM t");
        sql
    }

    /// `SELECT key, field…` of the row aliased `t`, built once: a PATCH formatted every
    /// column's read expression anew.
    fn select_list(&self) -> &Sql {
        self.select_list.get_or_init(|| {
            let mut list = Sql::default();
            self.push_select_list(&mut list);
            list
        })
    }

    /// `SELECT key, field…` of the row aliased `t`.
    fn push_select_list(&self, sql: &mut Sql) {
        sql.push("SELECT ").push(&self.key_expr("t"));
        for f in &self.fields {
            sql.push(", ");
            match f {
                Field::Column(c) => {
                    sql.push(&self.read_expr("t", c));
                }
                Field::Child(ch) => {
                    sql.push("(SELECT ")
                        .push(&self.read_expr("c", &ch.col))
                        .push(" FROM ")
                        .push(&ch.table);
                    sql.push(" c WHERE ").push(&self.link_cond(ch, "c", "t"));
                    self.push_fixed(sql, "c", &ch.select);
                    sql.push(" LIMIT 1)");
                }
            }
        }
    }

    /// The statement reading one row by key (`FOR UPDATE` locks it in PostgreSQL and MySQL).
    pub fn fetch(&self, key: &Value, lock: bool) -> Sql {
        let mut sql = Sql::default();
        self.select_from(&mut sql);
        sql.push(" AND t.").push(&self.key.name).push(" = ");
        self.key.param(self.d, &mut sql, key.clone());
        if lock {
            self.push_lock(&mut sql);
        }
        sql
    }

    /// ` FOR UPDATE` of the row aliased `t`, where the store locks rows.
    fn push_lock(&self, sql: &mut Sql) {
        match self.d {
            Dialect::Postgres => {
                sql.push(" FOR UPDATE OF t");
            }
            // MariaDB has no `OF`; the subqueries of the select list lock nothing.
            Dialect::Mysql => {
                sql.push(" FOR UPDATE");
            }
            Dialect::Sqlite => {}
        }
    }

    /// Values for the constants written at this moment (`insert` or an update).
    pub fn constants_for(&self, moment: Moment) -> Vec<(&Col, Value)> {
        self.constants
            .iter()
            .filter(|k| match moment {
                Moment::Insert => k.on != When::Delete,
                Moment::Update => k.on == When::Always,
                Moment::Delete => k.on == When::Always || k.on == When::Delete,
            })
            .map(|k| {
                let v = match &k.value {
                    ConstValue::Value(v) => v.clone(),
                    ConstValue::Now => crate::backend::now(&k.col.ty),
                };
                (&k.col, v)
            })
            .collect()
    }

    /// `INSERT INTO table (…) VALUES (…)`: mapped columns with a value, the discriminator, the
    /// constants and a generated key. The caller adds `RETURNING` as its dialect needs.
    pub fn insert(&self, values: &[Value], uuid: Option<String>) -> Sql {
        self.insert_guarded(values, uuid, None)
    }

    /// [`Model::insert`], inserting nothing when `unless` finds a row.
    fn insert_guarded(&self, values: &[Value], uuid: Option<String>, unless: Option<Sql>) -> Sql {
        // The columns borrowed from the model: a create copies values, not column names.
        let mut cols: Vec<(&Col, Value)> = Vec::new();
        if let Some(u) = uuid {
            cols.push((&self.key, Value::Text(u)));
        }
        for (f, v) in self.fields.iter().zip(values) {
            if let (Field::Column(c), false) = (f, v.is_null()) {
                cols.push((c, v.clone()));
            }
        }
        cols.extend(self.filter.iter().map(|f| (&f.col, f.value.clone())));
        cols.extend(self.constants_for(Moment::Insert));
        let mut sql = Sql::default();
        sql.push("INSERT INTO ").push(&self.table);
        if cols.is_empty() && self.d == Dialect::Mysql {
            sql.push(" () VALUES ()");
        } else if cols.is_empty() {
            sql.push(" DEFAULT VALUES");
        } else {
            let names: Vec<&str> = cols.iter().map(|(c, _)| c.name.as_str()).collect();
            sql.push(" (").push(&names.join(", "));
            sql.push(if unless.is_some() {
                ") SELECT "
            } else {
                ") VALUES ("
            });
            for (i, (c, v)) in cols.into_iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                c.param(self.d, &mut sql, v);
            }
            match unless {
                Some(u) => {
                    sql.push(" WHERE NOT EXISTS (");
                    sql.append_owned(u);
                    sql.push(")");
                }
                None => {
                    sql.push(")");
                }
            }
        }
        sql
    }

    /// `UPDATE table SET … WHERE key = ?` for the table's own columns in `set`, plus the
    /// constants written on every change when `touched` (something changed, maybe only in a
    /// child table or the membership). `None` when there is nothing to write.
    pub fn update(&self, set: &[(usize, Value)], key: &Value, touched: bool) -> Option<Sql> {
        self.update_at(set, key, touched, Moment::Update)
    }

    /// [`Model::update`] at `moment`: a soft delete also writes the values set on delete; a
    /// revival those set on insert.
    pub fn update_at(
        &self,
        set: &[(usize, Value)],
        key: &Value,
        touched: bool,
        moment: Moment,
    ) -> Option<Sql> {
        let mut cols: Vec<(&Col, Value)> = set
            .iter()
            .filter_map(|(i, v)| match self.fields.get(*i) {
                Some(Field::Column(c)) => Some((c, v.clone())),
                _ => None,
            })
            .collect();
        if touched || !cols.is_empty() {
            for (c, v) in self.constants_for(moment) {
                // A value the caller writes wins over a constant of the same column.
                if !cols.iter().any(|(x, _)| x.name == c.name) {
                    cols.push((c, v));
                }
            }
        }
        if cols.is_empty() {
            return None;
        }
        let mut sql = Sql::default();
        // Aliased `t`, so PostgreSQL can append `RETURNING` + [`Model::column_list`].
        sql.push("UPDATE ").push(&self.table).push(" AS t SET ");
        for (i, (c, v)) in cols.into_iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push(&c.name).push(" = ");
            c.param(self.d, &mut sql, v);
        }
        sql.push(" WHERE ").push(&self.key.name).push(" = ");
        self.key.param(self.d, &mut sql, key.clone());
        Some(sql)
    }

    /// The statements that make child field `i` hold `v` for the resource `key`: delete the
    /// row for no value; otherwise update it, or insert it when there is none (PostgreSQL in
    /// one statement; SQLite as update-then-insert, see [`Model::child_insert`]).
    pub fn child_write(&self, i: usize, key: &Value, v: &Value) -> Option<Sql> {
        let Some(Field::Child(ch)) = self.fields.get(i) else {
            return None;
        };
        let d = self.d;
        let mut sql = Sql::default();
        let link_param = |sql: &mut Sql| {
            ch.link.param(d, sql, link_value(key, &ch.link));
        };
        if v.is_null() {
            sql.push("DELETE FROM ")
                .push(&ch.table)
                .push(" WHERE ")
                .push(&ch.link.name)
                .push(" = ");
            link_param(&mut sql);
            for f in &ch.select {
                sql.push(" AND ").push(&f.col.name).push(" = ");
                f.col.param(d, &mut sql, f.value.clone());
            }
            return Some(sql);
        }
        let update = |sql: &mut Sql| {
            sql.push("UPDATE ")
                .push(&ch.table)
                .push(" SET ")
                .push(&ch.col.name)
                .push(" = ");
            ch.col.param(d, sql, v.clone());
            for k in ch.set.iter().filter(|k| k.on == When::Always) {
                sql.push(", ").push(&k.col.name).push(" = ");
                k.col.param(d, sql, k.value_now());
            }
            sql.push(" WHERE ").push(&ch.link.name).push(" = ");
            link_param(sql);
            for f in &ch.select {
                sql.push(" AND ").push(&f.col.name).push(" = ");
                f.col.param(d, sql, f.value.clone());
            }
        };
        match d {
            // Then [`Model::child_insert`] when no row changed (MySQL: rows *found*, the
            // connection counts them so).
            Dialect::Sqlite | Dialect::Mysql => update(&mut sql),
            Dialect::Postgres => {
                sql.push("WITH up AS (");
                update(&mut sql);
                sql.push(" RETURNING 1) ");
                self.child_insert_into(ch, key, v, &mut sql);
                sql.push(" WHERE NOT EXISTS (SELECT 1 FROM up)");
            }
        }
        Some(sql)
    }

    /// The child row of a new row (where statements cannot carry it in a CTE), and the
    /// second step of [`Model::child_write`] there: insert the row when the update changed
    /// none.
    pub fn child_insert(&self, i: usize, key: &Value, v: &Value) -> Option<Sql> {
        let Some(Field::Child(ch)) = self.fields.get(i) else {
            return None;
        };
        let mut sql = Sql::default();
        self.child_insert_into(ch, key, v, &mut sql);
        Some(sql)
    }

    fn child_insert_into(&self, ch: &Child, key: &Value, v: &Value, sql: &mut Sql) {
        sql.push("INSERT INTO ")
            .push(&ch.table)
            .push(" (")
            .push(&ch.insert_columns())
            .push(") SELECT ");
        ch.link.param(self.d, sql, link_value(key, &ch.link));
        sql.push(", ");
        ch.col.param(self.d, sql, v.clone());
        ch.push_insert_values(self.d, sql);
    }

    /// The statements a hard delete runs, in order: rows referencing it (`cascade`), child
    /// rows, its own members, the row. (Leaving its groups is the caller's first step, with
    /// their hooks: [`Model::memberships_clear`].)
    pub fn delete(&self, key: &Value) -> Vec<Sql> {
        let d = self.d;
        let mut out = self.cascade_stmts(key);
        for (table, link, common) in &self.child_tables {
            let mut sql = Sql::default();
            sql.push("DELETE FROM ")
                .push(table)
                .push(" WHERE ")
                .push(&link.name)
                .push(" = ");
            link.param(d, &mut sql, link_value(key, link));
            for f in common {
                sql.push(" AND ").push(&f.col.name).push(" = ");
                f.col.param(d, &mut sql, f.value.clone());
            }
            out.push(sql);
        }
        if let Some(m) = &self.members {
            out.push(self.members_clear(m, key));
        }
        let mut sql = Sql::default();
        sql.push("DELETE FROM ")
            .push(&self.table)
            .push(" WHERE ")
            .push(&self.key.name)
            .push(" = ");
        self.key.param(d, &mut sql, key.clone());
        out.push(sql);
        out
    }

    /// What a hard delete of row `key` does to the rows referencing it (`cascade`).
    pub fn cascade_stmts(&self, key: &Value) -> Vec<Sql> {
        self.cascade
            .iter()
            .map(|(table, col, null)| {
                let mut sql = Sql::default();
                if *null {
                    sql.push("UPDATE ")
                        .push(table)
                        .push(" SET ")
                        .push(&col.name)
                        .push(" = NULL WHERE ");
                } else {
                    sql.push("DELETE FROM ").push(table).push(" WHERE ");
                }
                sql.push(&col.name).push(" = ");
                col.param(self.d, &mut sql, link_value(key, col));
                sql
            })
            .collect()
    }

    /// The hook statements that run on `event`, in order.
    pub fn hooks_on(
        &self,
        event: super::config::Event,
    ) -> impl Iterator<Item = &super::hooks::Statement> {
        self.hooks
            .iter()
            .filter(move |h| h.on.contains(&event))
            .flat_map(|h| h.statements.iter())
    }

    /// The groups row `key` is a member of through join table `r` (their keys as text).
    pub fn groups_of(&self, r: &Ref, key: &Value) -> Option<Sql> {
        let g = r.group.as_ref()?;
        let mut sql = Sql::default();
        sql.push("SELECT ")
            .push(&match self.d {
                Dialect::Sqlite | Dialect::Mysql => format!("j.{}", g.name),
                Dialect::Postgres => format!("j.{}::text", g.name),
            })
            .push(" FROM ")
            .push(&r.table)
            .push(" j WHERE j.")
            .push(&r.column.name)
            .push(" = ");
        r.column.param(self.d, &mut sql, key.clone());
        self.push_group_scope(&mut sql, r);
        Some(sql)
    }

    /// ` AND j.group IN (SELECT key FROM groups WHERE <discriminator>)`: memberships of the
    /// groups the group type serves, not of the app's other rows in its table.
    fn push_group_scope(&self, sql: &mut Sql, r: &Ref) {
        let (Some(g), Some((table, key, filter))) = (&r.group, &r.groups) else {
            return;
        };
        if filter.is_empty() {
            return;
        }
        sql.push(" AND j.")
            .push(&g.name)
            .push(" IN (SELECT g.")
            .push(&key.name)
            .push(" FROM ")
            .push(table)
            .push(" g WHERE 1=1");
        self.push_fixed(sql, "g", filter);
        sql.push(")");
    }

    /// The memberships listing row `key` as a member, removed: every one when the row is
    /// deleted (nothing may point at a row that is gone); when it is soft-deleted (`all`
    /// false; a deleted resource is no SCIM group's member), only those of the groups SCIM
    /// sees: the row stays, and so do its places in the app's own groups.
    pub fn memberships_clear(&self, key: &Value, all: bool) -> Vec<Sql> {
        self.member_of
            .iter()
            .map(|r| {
                let mut sql = Sql::default();
                // MariaDB takes an alias only in the multi-table form.
                match self.d {
                    Dialect::Mysql => sql.push("DELETE j FROM "),
                    _ => sql.push("DELETE FROM "),
                };
                sql.push(&r.table)
                    .push(" AS j WHERE j.")
                    .push(&r.column.name)
                    .push(" = ");
                r.column.param(self.d, &mut sql, key.clone());
                if !all {
                    self.push_group_scope(&mut sql, r);
                }
                sql
            })
            .collect()
    }

    /// ` AND NOT EXISTS (…)`: row `alias` has no tombstone `tomb`.
    fn push_alive(&self, sql: &mut Sql, alias: &str, key_col: &Col, tomb: &Child) {
        sql.push(" AND NOT EXISTS (SELECT 1 FROM ")
            .push(&tomb.table)
            .push(" k WHERE k.")
            .push(&tomb.link.name)
            .push(" = ");
        let key = format!("{alias}.{}", key_col.name);
        sql.push(&match (self.d, tomb.link.ty != key_col.ty) {
            (_, false) => key,
            (Dialect::Sqlite, true) => format!("CAST({key} AS TEXT)"),
            (Dialect::Postgres, true) => format!("{key}::text"),
            (Dialect::Mysql, true) => format!("CAST({key} AS CHAR)"),
        });
        self.push_fixed(sql, "k", &tomb.select);
        sql.push(")");
    }

    /// The rows this resource type reads: ` AND <discriminator> AND <not tombstoned>`.
    pub fn push_scope(&self, sql: &mut Sql, alias: &str) {
        self.push_fixed(sql, alias, &self.filter);
        if let Some(t) = &self.tomb {
            self.push_alive(sql, alias, &self.key, t);
        }
    }

    /// The tombstone of row `key`, written by a soft delete.
    pub fn tombstone_insert(&self, key: &Value) -> Option<Sql> {
        let t = self.tomb.as_ref()?;
        let d = self.d;
        let mut names = vec![t.link.name.as_str(), t.col.name.as_str()];
        names.extend(t.select.iter().map(|f| f.col.name.as_str()));
        let mut sql = Sql::default();
        sql.push("INSERT INTO ")
            .push(&t.table)
            .push(" (")
            .push(&names.join(", "))
            .push(") VALUES (");
        t.link.param(d, &mut sql, link_value(key, &t.link));
        sql.push(", ");
        t.col.param(d, &mut sql, crate::backend::now(&t.col.ty));
        for f in &t.select {
            sql.push(", ");
            f.col.param(d, &mut sql, f.value.clone());
        }
        sql.push(")");
        Some(sql)
    }

    /// Removes the tombstone of row `key` (a revival).
    pub fn tombstone_delete(&self, key: &Value) -> Option<Sql> {
        let t = self.tomb.as_ref()?;
        let mut sql = Sql::default();
        sql.push("DELETE FROM ")
            .push(&t.table)
            .push(" WHERE ")
            .push(&t.link.name)
            .push(" = ");
        t.link.param(self.d, &mut sql, link_value(key, &t.link));
        for f in &t.select {
            sql.push(" AND ").push(&f.col.name).push(" = ");
            f.col.param(self.d, &mut sql, f.value.clone());
        }
        Some(sql)
    }

    /// A tombstoned row an insert of `values` would clash with on a unique field (its key as
    /// text), or `None` when this type keeps no tombstones or has no unique field.
    pub fn tombstoned_clash(&self, values: &[Value]) -> Option<Sql> {
        let mut sql = self.tombstoned_holders(values)?;
        sql.push(" LIMIT 1");
        self.push_lock(&mut sql);
        Some(sql)
    }

    /// `SELECT key FROM table t WHERE …`: the tombstoned rows holding a unique value of
    /// `values` (see [`Model::tombstoned_clash`]).
    fn tombstoned_holders(&self, values: &[Value]) -> Option<Sql> {
        let t = self.tomb.as_ref()?;
        let d = self.d;
        let mut conds = Vec::new();
        for &(i, fold) in &self.unique_fields {
            let (Some(Field::Column(c)), Some(v)) = (self.fields.get(i), values.get(i)) else {
                continue;
            };
            if v.is_null() || matches!(v, Value::Text(t) if t.is_empty()) {
                continue;
            }
            let mut cond = Sql::default();
            super::comparison(
                d,
                &format!("t.{}", c.name),
                c,
                crate::backend::CmpOp::Eq,
                v,
                fold && c.ty.is_text(),
                &mut cond,
            );
            conds.push(cond);
        }
        if conds.is_empty() {
            return None;
        }
        let mut sql = Sql::default();
        sql.push("SELECT ")
            .push(&self.key_expr("t"))
            .push(" FROM ")
            .push(&self.table)
            .push(" t WHERE 1=1");
        self.push_fixed(&mut sql, "t", &self.filter);
        sql.push(" AND EXISTS (SELECT 1 FROM ")
            .push(&t.table)
            .push(" k WHERE ")
            .push(&self.link_cond(t, "k", "t"));
        self.push_fixed(&mut sql, "k", &t.select);
        sql.push(") AND (");
        for (i, c) in conds.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.append(c);
        }
        sql.push(")");
        Some(sql)
    }

    /// [`Model::insert`] that writes nothing when a tombstoned row holds one of the new
    /// row's unique values (`INSERT … SELECT … WHERE NOT EXISTS (…)`), so that one statement
    /// both checks for a resource to revive and inserts. The plain insert when this type
    /// keeps no tombstones or has no unique value to check.
    pub fn insert_unless_tombstoned(&self, values: &[Value], uuid: Option<String>) -> Sql {
        let Some(holders) = self.tombstoned_holders(values) else {
            return self.insert(values, uuid);
        };
        self.insert_guarded(values, uuid, Some(holders))
    }

    /// What reviving row `key` with an insert's `values` writes to the row itself: every
    /// column field (an absent value as an insert would leave it: the column's default,
    /// else `NULL`, else `''` in a NOT NULL text column; a NOT NULL column of another type
    /// without a default keeps its value) and the values set on insert.
    pub fn revive_update(&self, values: &[Value], key: &Value) -> Option<Sql> {
        let d = self.d;
        let mut sql = Sql::default();
        sql.push("UPDATE ").push(&self.table).push(" AS t SET ");
        let mut written: Vec<&str> = Vec::new();
        for (f, v) in self.fields.iter().zip(values) {
            let Field::Column(c) = f else { continue };
            let sep = if written.is_empty() { "" } else { ", " };
            if !v.is_null() {
                sql.push(sep).push(&c.name).push(" = ");
                c.param(d, &mut sql, v.clone());
            } else if let Some(default) = &c.default_sql {
                sql.push(sep).push(&c.name).push(" = ").push(default);
            } else if !c.notnull {
                sql.push(sep).push(&c.name).push(" = NULL");
            } else if matches!(c.ty, FieldType::Text { .. }) {
                sql.push(sep).push(&c.name).push(" = ''");
            } else {
                continue;
            }
            written.push(&c.name);
        }
        for (c, v) in self.constants_for(Moment::Insert) {
            if written.contains(&c.name.as_str()) {
                continue;
            }
            let sep = if written.is_empty() { "" } else { ", " };
            sql.push(sep).push(&c.name).push(" = ");
            c.param(d, &mut sql, v);
            written.push("");
        }
        if written.is_empty() {
            return None;
        }
        sql.push(" WHERE ").push(&self.key.name).push(" = ");
        self.key.param(d, &mut sql, key.clone());
        Some(sql)
    }

    /// Removes every member of group `key`.
    pub fn members_clear(&self, m: &Members, key: &Value) -> Sql {
        let d = self.d;
        let mut sql = Sql::default();
        match m {
            Members::Join { table, group, .. } => {
                sql.push("DELETE FROM ")
                    .push(table)
                    .push(" WHERE ")
                    .push(&group.name)
                    .push(" = ");
                group.param(d, &mut sql, key.clone());
            }
            Members::Column {
                member_table,
                column,
                ..
            } => {
                sql.push("UPDATE ")
                    .push(member_table)
                    .push(" SET ")
                    .push(&column.name)
                    .push(" = NULL WHERE ");
                sql.push(&column.name).push(" = ");
                column.param(d, &mut sql, key.clone());
            }
        }
        sql
    }

    /// Member ids of the groups `keys`: `(group key, member id)` rows, ordered.
    pub fn members_of(&self, m: &Members, keys: &[Value]) -> Sql {
        self.members_of_up_to(m, keys, self.max_members)
    }

    /// [`Model::members_of`] with another limit (`None`: every member, for the hooks of a
    /// membership replaced whole).
    pub fn members_of_up_to(&self, m: &Members, keys: &[Value], max: Option<u64>) -> Sql {
        let d = self.d;
        let mut sql = Sql::default();
        let (source, group, member) = match m {
            Members::Join {
                table,
                group,
                member,
                ..
            } => (table.clone(), group, member),
            Members::Column {
                member_table,
                column,
                member_key,
                ..
            } => (member_table.clone(), column, member_key),
        };
        let text = |c: &Col| match d {
            Dialect::Sqlite | Dialect::Mysql => format!("j.{}", c.name),
            Dialect::Postgres => format!("j.{}::text", c.name),
        };
        sql.push("SELECT ")
            .push(&text(group))
            .push(", ")
            .push(&text(member))
            .push(" FROM ")
            .push(&source)
            .push(" j WHERE ");
        sql.push("j.").push(&group.name);
        self.push_in(&mut sql, group, keys.iter().map(value_text).collect());
        if let Members::Column { member_filter, .. } = m {
            self.push_fixed(&mut sql, "j", member_filter);
        }
        sql.push(" ORDER BY ")
            .push(&format!("j.{}", group.name))
            .push(", ")
            .push(&format!("j.{}", member.name));
        // One more than the limit: enough to know it is exceeded, never the whole group.
        if let Some(max) = max {
            sql.push(&format!(" LIMIT {}", max.saturating_add(1)));
        }
        sql
    }

    /// ` IN (…)` over a list of values, as one parameter: a JSON array in SQLite, a text
    /// array in PostgreSQL. One statement whatever the number of values. MySQL has neither:
    /// one `?` per value, typed as the column is, so its index serves the lookup (callers
    /// cut long lists into chunks, see [`MYSQL_CHUNK`]).
    pub fn push_in(&self, sql: &mut Sql, col: &Col, values: Vec<String>) {
        match self.d {
            Dialect::Mysql if values.is_empty() => {
                sql.push(" IN (NULL)");
            }
            Dialect::Mysql => {
                sql.push(" IN (");
                for (i, v) in values.into_iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    sql.param(self.d, typed_id(col, v));
                }
                sql.push(")");
            }
            Dialect::Sqlite => {
                sql.push(" IN (SELECT value FROM json_each(")
                    .param(self.d, Value::Text(json_ids(col, &values)))
                    .push("))");
            }
            Dialect::Postgres => {
                sql.push(" = ANY(");
                sql.param_array(values);
                match &col.cast {
                    Some(c) => sql.push("::").push(c).push("[])"),
                    None => sql.push(")"),
                };
            }
        }
    }

    /// MySQL: the keys among `ids` that are members-to-be (rows of the member table, with its
    /// discriminator, not soft-deleted). MySQL has no row source for a bound list, so the
    /// caller takes these from `ids` to find the missing ones ([`Model::missing_members`]
    /// elsewhere).
    pub fn existing_members(&self, m: &Members, ids: &[String]) -> Sql {
        let (member_table, key, filter) = match m {
            Members::Join {
                member_table,
                member_key,
                member_filter,
                ..
            }
            | Members::Column {
                member_table,
                member_key,
                member_filter,
                ..
            } => (member_table, member_key, member_filter),
        };
        let mut sql = Sql::default();
        sql.push("SELECT mt.")
            .push(&key.name)
            .push(" FROM ")
            .push(member_table)
            .push(" mt WHERE mt.")
            .push(&key.name);
        self.push_in(&mut sql, key, ids.to_vec());
        self.push_fixed(&mut sql, "mt", filter);
        if let Some(t) = &self.member_tomb {
            self.push_alive(&mut sql, "mt", key, t);
        }
        sql
    }

    /// MySQL: which of `ids` group `key` already has in a join table without a unique index
    /// on the pair (the others are the rows to insert).
    pub fn joined_members(&self, m: &Members, key: &Value, ids: &[String]) -> Option<Sql> {
        let Members::Join {
            table,
            group,
            member,
            unique_pair: false,
            ..
        } = m
        else {
            return None;
        };
        let mut sql = Sql::default();
        sql.push("SELECT j.")
            .push(&member.name)
            .push(" FROM ")
            .push(table)
            .push(" j WHERE j.")
            .push(&group.name)
            .push(" = ");
        group.param(self.d, &mut sql, key.clone());
        sql.push(" AND j.").push(&member.name);
        self.push_in(&mut sql, member, ids.to_vec());
        Some(sql)
    }

    /// The ids of `ids` that are not members-to-be: not rows of the member table (with its
    /// discriminator). `ids` that cannot be keys are left to the caller.
    pub fn missing_members(&self, m: &Members, ids: &[String]) -> Sql {
        let d = self.d;
        let (member_table, key, filter) = match m {
            Members::Join {
                member_table,
                member_key,
                member_filter,
                ..
            }
            | Members::Column {
                member_table,
                member_key,
                member_filter,
                ..
            } => (member_table, member_key, member_filter),
        };
        let mut sql = Sql::default();
        match d {
            // MySQL asks [`Model::existing_members`] instead.
            Dialect::Sqlite | Dialect::Mysql => {
                sql.push("SELECT i.value FROM json_each(");
                sql.param(d, Value::Text(json_ids(key, ids)));
                sql.push(") i WHERE NOT EXISTS (SELECT 1 FROM ")
                    .push(member_table)
                    .push(" mt WHERE mt.")
                    .push(&key.name);
                sql.push(" = i.value");
            }
            Dialect::Postgres => {
                sql.push("SELECT i.v FROM unnest(");
                sql.param_array(ids.to_vec());
                sql.push(") AS i(v) WHERE NOT EXISTS (SELECT 1 FROM ")
                    .push(member_table)
                    .push(" mt WHERE mt.")
                    .push(&key.name);
                sql.push(" = i.v");
                if let Some(c) = &key.cast {
                    sql.push("::").push(c);
                }
            }
        }
        self.push_fixed(&mut sql, "mt", filter);
        // A soft-deleted member is no member to add.
        if let Some(t) = &self.member_tomb {
            self.push_alive(&mut sql, "mt", key, t);
        }
        sql.push(")");
        sql
    }

    /// Adds members `ids` (all known to exist) to group `key`; ones already there are kept.
    /// `only_if`, when given, is a condition (SQL text, no parameters) every inserted row must
    /// also meet: PostgreSQL's one-statement add inserts only when no id is missing.
    pub fn members_add(
        &self,
        m: &Members,
        key: &Value,
        ids: &[String],
        only_if: Option<&str>,
    ) -> Sql {
        let d = self.d;
        let mut sql = Sql::default();
        match m {
            // MySQL: one row per id; a pair already there is left as it is (only a duplicate
            // key is passed over, unlike INSERT IGNORE, which would pass over any refusal).
            Members::Join {
                table,
                group,
                member,
                unique_pair,
                ..
            } if d == Dialect::Mysql => {
                sql.push("INSERT INTO ")
                    .push(table)
                    .push(" (")
                    .push(&group.name)
                    .push(", ")
                    .push(&member.name)
                    .push(") VALUES ");
                for (i, id) in ids.iter().enumerate() {
                    sql.push(if i == 0 { "(" } else { ", (" });
                    group.param(d, &mut sql, key.clone());
                    sql.push(", ");
                    member.param(d, &mut sql, typed_id(member, id.clone()));
                    sql.push(")");
                }
                if *unique_pair {
                    sql.push(" ON DUPLICATE KEY UPDATE ")
                        .push(&group.name)
                        .push(" = ")
                        .push(&group.name);
                }
            }
            Members::Join {
                table,
                group,
                member,
                unique_pair,
                ..
            } => {
                sql.push("INSERT INTO ")
                    .push(table)
                    .push(" (")
                    .push(&group.name)
                    .push(", ")
                    .push(&member.name)
                    .push(") SELECT ");
                group.param(d, &mut sql, key.clone());
                match d {
                    Dialect::Sqlite | Dialect::Mysql => {
                        sql.push(", i.value FROM json_each(");
                        sql.param(d, Value::Text(json_ids(member, ids)));
                        sql.push(") i");
                    }
                    Dialect::Postgres => {
                        sql.push(", i.v");
                        if let Some(c) = &member.cast {
                            sql.push("::").push(c);
                        }
                        sql.push(" FROM unnest(");
                        sql.param_array(ids.to_vec());
                        sql.push(") AS i(v)");
                    }
                }
                let member_value = match d {
                    Dialect::Sqlite | Dialect::Mysql => "i.value".to_owned(),
                    Dialect::Postgres => match &member.cast {
                        Some(c) => format!("i.v::{c}"),
                        None => "i.v".to_owned(),
                    },
                };
                sql.push(" WHERE ");
                if let Some(cond) = only_if {
                    sql.push(cond).push(" AND ");
                }
                if *unique_pair {
                    sql.push("true ON CONFLICT DO NOTHING");
                } else {
                    sql.push("NOT EXISTS (SELECT 1 FROM ")
                        .push(table)
                        .push(" x WHERE x.")
                        .push(&group.name)
                        .push(" = ");
                    group.param(d, &mut sql, key.clone());
                    sql.push(" AND x.")
                        .push(&member.name)
                        .push(" = ")
                        .push(&member_value)
                        .push(")");
                }
            }
            Members::Column {
                member_table,
                member_key,
                column,
                ..
            } => {
                sql.push("UPDATE ")
                    .push(member_table)
                    .push(" SET ")
                    .push(&column.name)
                    .push(" = ");
                column.param(d, &mut sql, key.clone());
                sql.push(" WHERE ");
                if let Some(cond) = only_if {
                    sql.push(cond).push(" AND ");
                }
                sql.push(&member_key.name);
                self.push_in(&mut sql, member_key, ids.to_vec());
            }
        }
        sql
    }

    /// Removes members `ids` from group `key` (absent ones are ignored).
    pub fn members_remove(&self, m: &Members, key: &Value, ids: &[String]) -> Sql {
        let d = self.d;
        let mut sql = Sql::default();
        match m {
            Members::Join {
                table,
                group,
                member,
                ..
            } => {
                sql.push("DELETE FROM ")
                    .push(table)
                    .push(" WHERE ")
                    .push(&group.name)
                    .push(" = ");
                group.param(d, &mut sql, key.clone());
                sql.push(" AND ").push(&member.name);
                self.push_in(&mut sql, member, ids.to_vec());
            }
            Members::Column {
                member_table,
                member_key,
                column,
                ..
            } => {
                sql.push("UPDATE ")
                    .push(member_table)
                    .push(" SET ")
                    .push(&column.name)
                    .push(" = NULL WHERE ");
                sql.push(&column.name).push(" = ");
                column.param(d, &mut sql, key.clone());
                sql.push(" AND ").push(&member_key.name);
                self.push_in(&mut sql, member_key, ids.to_vec());
            }
        }
        sql
    }

    /// `SELECT key FROM table WHERE key IN (…) AND <discriminator>`: which of `ids` have a
    /// row of this type, soft-deleted ones included.
    pub fn present(&self, ids: &[String]) -> Sql {
        let mut sql = Sql::default();
        sql.push("SELECT ")
            .push(&self.key_expr("t"))
            .push(" FROM ")
            .push(&self.table)
            .push(" t WHERE t.")
            .push(&self.key.name);
        self.push_in(&mut sql, &self.key, ids.to_vec());
        self.push_fixed(&mut sql, "t", &self.filter);
        sql
    }

    /// How many values of unique field `i` (case-insensitively when `fold`) the app's rows of
    /// this type already hold more than once, as text: what stands in the way of the unique
    /// index `check` suggests.
    pub fn duplicates(&self, i: usize, fold: bool) -> Option<Sql> {
        let d = self.d;
        let (from, col, fixed, alias) = match self.fields.get(i)? {
            Field::Column(c) => (self.table.clone(), c, &self.filter, "t"),
            Field::Child(ch) => (ch.table.clone(), &ch.col, &ch.select, "c"),
        };
        let e = if fold && col.ty.is_text() {
            format!("lower({alias}.{})", col.name)
        } else {
            format!("{alias}.{}", col.name)
        };
        let mut sql = Sql::default();
        sql.push(match d {
            Dialect::Sqlite => "SELECT CAST(count(*) AS TEXT) FROM (SELECT 1 FROM ",
            Dialect::Postgres => "SELECT count(*)::text FROM (SELECT 1 FROM ",
            Dialect::Mysql => "SELECT count(*) FROM (SELECT 1 FROM ",
        })
        .push(&from)
        .push(" ")
        .push(alias)
        .push(" WHERE ")
        .push(&e)
        .push(" IS NOT NULL");
        self.push_fixed(&mut sql, alias, fixed);
        if alias == "c" {
            if let Some(Field::Child(ch)) = self.fields.get(i) {
                sql.push(" AND ")
                    .push(&self.link_as_key(ch, "c"))
                    .push(" IN (SELECT t.")
                    .push(&self.key.name)
                    .push(" FROM ")
                    .push(&self.table)
                    .push(" t WHERE 1=1");
                self.push_fixed(&mut sql, "t", &self.filter);
                sql.push(")");
            }
        }
        sql.push(" GROUP BY ")
            .push(&e)
            .push(" HAVING count(*) > 1) dup");
        Some(sql)
    }

    /// `SELECT 1 FROM table WHERE col = ? [AND key <> ?] LIMIT 1`: another row has this
    /// value of unique field `i` (case-insensitively when `fold`).
    pub fn unique_taken(
        &self,
        i: usize,
        v: &Value,
        fold: bool,
        except: Option<&Value>,
    ) -> Option<Sql> {
        let d = self.d;
        let c = match self.fields.get(i)? {
            Field::Column(c) => c,
            // A value in a child table: another row of this type holds it there.
            Field::Child(ch) => {
                let mut sql = Sql::default();
                sql.push("SELECT '1' FROM ")
                    .push(&self.table)
                    .push(" t WHERE ");
                super::child_exists(self, ch, false, &mut sql, |sql| {
                    super::comparison(
                        d,
                        &format!("c.{}", ch.col.name),
                        &ch.col,
                        crate::backend::CmpOp::Eq,
                        v,
                        fold && ch.col.ty.is_text(),
                        sql,
                    );
                });
                self.push_fixed(&mut sql, "t", &self.filter);
                if let Some(k) = except {
                    sql.push(" AND t.").push(&self.key.name).push(" <> ");
                    self.key.param(d, &mut sql, k.clone());
                }
                sql.push(" LIMIT 1");
                return Some(sql);
            }
        };
        let mut sql = Sql::default();
        // Text, so every driver reads the answer the same way.
        sql.push("SELECT '1' FROM ")
            .push(&self.table)
            .push(" t WHERE ");
        match (d, fold && (d == Dialect::Sqlite || !c.ci)) {
            // The column's collation decides, once: see [`super::comparison`].
            (Dialect::Mysql, _) => super::comparison(
                d,
                &format!("t.{}", c.name),
                c,
                crate::backend::CmpOp::Eq,
                v,
                fold && c.ty.is_text(),
                &mut sql,
            ),
            (Dialect::Sqlite, true) => {
                sql.push("t.")
                    .push(&c.name)
                    .push(" = ")
                    .param(d, v.clone())
                    .push(" COLLATE NOCASE");
            }
            (Dialect::Postgres, true) => {
                sql.push("lower(t.")
                    .push(&c.name)
                    .push(") = lower(")
                    .param(d, v.clone())
                    .push(")");
            }
            _ => {
                sql.push("t.").push(&c.name).push(" = ");
                c.param(d, &mut sql, v.clone());
            }
        }
        self.push_fixed(&mut sql, "t", &self.filter);
        if let Some(k) = except {
            sql.push(" AND t.").push(&self.key.name).push(" <> ");
            self.key.param(d, &mut sql, k.clone());
        }
        sql.push(" LIMIT 1");
        Some(sql)
    }
}

/// The key as the link column holds it (text when the link is text and the key is not).
fn link_value(key: &Value, link: &Col) -> Value {
    match (key, &link.ty) {
        (Value::Int(i), FieldType::Text { .. }) => Value::Text(i.to_string()),
        (v, _) => v.clone(),
    }
}

/// How many values MySQL statements bind at most in one ` IN (…)` list or one multi-row
/// insert (the protocol's limit is 65,535 placeholders per statement).
pub const MYSQL_CHUNK: usize = 5000;

/// An id as a parameter of `col`'s type: an integer for an integer column, so MySQL compares
/// it with the column's index rather than converting every row.
fn typed_id(col: &Col, id: String) -> Value {
    match (&col.ty, id.parse::<i64>()) {
        (FieldType::Integer, Ok(n)) => Value::Int(n),
        _ => Value::Text(id),
    }
}

/// A value as text (for arrays of ids).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Real(f) => f.to_string(),
        Value::Text(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::List(items) => {
            serde_json::Value::from(items.iter().map(value_text).collect::<Vec<_>>()).to_string()
        }
    }
}

/// Child tables to clear on hard delete: the rows the mapping reads there, picked by the link
/// and by what every map entry on that table selects alike. A table may hold other owners'
/// rows under the same id (Redmine's custom_values holds an issue's and a project's values,
/// told apart by `customized_type`; the sidecar's own table, other resource types'), so the
/// link alone could delete them. Other rows of the resource (a user's non-default e-mails)
/// stay unless `cascade` names the table.
fn child_tables(fields: &[Field]) -> Vec<(String, Col, Vec<Fixed>)> {
    let mut out: Vec<(String, Col, Vec<Fixed>)> = Vec::new();
    for f in fields {
        let Field::Child(ch) = f else { continue };
        let own = ch.select.clone();
        match out
            .iter_mut()
            .find(|(t, l, _)| *t == ch.table && l.name == ch.link.name)
        {
            Some((_, _, common)) => {
                common.retain(|c| {
                    own.iter()
                        .any(|s| s.col.name == c.col.name && s.value == c.value)
                });
            }
            None => out.push((ch.table.clone(), ch.link.clone(), own)),
        }
    }
    out
}

/// A JSON array of ids for SQLite's `json_each`: numbers for integer columns (so comparisons
/// never depend on type affinity), strings otherwise.
pub fn json_ids(col: &Col, ids: &[String]) -> String {
    let items: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| match (&col.ty, id.parse::<i64>()) {
            (FieldType::Integer, Ok(n)) => serde_json::Value::from(n),
            _ => serde_json::Value::String(id.clone()),
        })
        .collect();
    serde_json::Value::Array(items).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str) -> ColumnInfo {
        ColumnInfo {
            default_sql: None,
            name: name.into(),
            ty: FieldType::Integer,
            cast: None,
            notnull: false,
            has_default: false,
            pk: false,
            generated: false,
            ci: false,
            charset: None,
        }
    }

    /// A configured name finds its column in any case, the exact spelling first, and
    /// statements name it as the store spells it (in PostgreSQL a quoted "id" is not "ID").
    #[test]
    fn columns_are_found_ignoring_case_and_named_as_stored() {
        let t = TableInfo {
            columns: ["ID", "user_login", "Mixed", "mixed"].map(column).to_vec(),
            uniques: Vec::new(),
            indexed: Vec::new(),
            referenced_by: Vec::new(),
        };
        let id = t.column("id").expect("id");
        let d = Dialect::Postgres;
        assert_eq!(Col::from_info(d, "id", id).name, "\"ID\"");
        assert_eq!(Col::from_info(d, "id", id).raw, "id");
        assert_eq!(Col::from_info(Dialect::Mysql, "id", id).name, "`ID`");
        let name = |n: &str| t.column(n).map(|c| c.name.clone());
        assert_eq!(name("USER_LOGIN").as_deref(), Some("user_login"));
        assert_eq!(name("mixed").as_deref(), Some("mixed"));
        assert_eq!(name("Mixed").as_deref(), Some("Mixed"));
        assert_eq!(name("nope"), None);
    }
}
