//! Stores: the application's own SQL tables (and, later, LDAP directories and REST APIs).
//!
//! A backend knows its store and nothing of SCIM. The mapping layer describes each mapped
//! resource as a [`TableSpec`] (table, key, the fields it reads and writes, membership); the
//! backend validates it against the live store and returns a [`Table`] handle that speaks in
//! [`Row`]s (one typed [`Value`] per field) and [`Predicate`]s (a filter over fields). Every
//! `Table` method is one store transaction: it fully happens or fails with nothing changed.

pub mod sql;

use std::sync::Arc;

use async_trait::async_trait;

/// A typed value of one field.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// No value (SQL `NULL`).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// The type of a store field, as the live store declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// Text, with the declared maximum length in characters if any (`varchar(64)`).
    Text {
        /// Maximum length in characters.
        max_len: Option<u32>,
    },
    /// A whole number.
    Integer,
    /// A floating-point or decimal number.
    Real,
    /// A boolean.
    Boolean,
    /// A date and time.
    Timestamp,
    /// A PostgreSQL enum: text restricted to these labels.
    Enum(Vec<String>),
}

impl FieldType {
    /// Whether values are text (compared as strings, `co`/`sw`/`ew` apply).
    pub fn is_text(&self) -> bool {
        matches!(self, FieldType::Text { .. } | FieldType::Enum(_))
    }

    /// A short name for messages.
    pub fn describe(&self) -> String {
        match self {
            FieldType::Text { max_len: Some(n) } => format!("text of at most {n} characters"),
            FieldType::Text { max_len: None } => "text".into(),
            FieldType::Integer => "integer".into(),
            FieldType::Real => "number".into(),
            FieldType::Boolean => "boolean".into(),
            FieldType::Timestamp => "timestamp".into(),
            FieldType::Enum(labels) => format!("enum ({})", labels.join(", ")),
        }
    }
}

/// What the store says about a field, learnt at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// Its type.
    pub ty: FieldType,
    /// Whether it may be empty.
    pub nullable: bool,
    /// Whether the store fills it when an insert leaves it out.
    pub has_default: bool,
    /// Whether a unique constraint covers it alone.
    pub unique: bool,
}

/// A comparison operator of a [`Predicate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`; a field without a value is "not equal" too (SCIM `ne`).
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// Substring.
    Contains,
    /// Prefix.
    StartsWith,
    /// Suffix.
    EndsWith,
}

/// A condition over the fields of a table, compiled by the backend into its own query language.
#[derive(Clone, Debug, PartialEq)]
pub enum Predicate {
    /// Every row.
    True,
    /// No row.
    False,
    /// All of these.
    And(Vec<Predicate>),
    /// Any of these.
    Or(Vec<Predicate>),
    /// Not this. A field without a value does not equal anything, so `Not(Cmp{Eq})` matches
    /// rows where the field is empty (SCIM semantics, not SQL's three-valued logic).
    Not(Box<Predicate>),
    /// Compare field `field` with a value; `fold_case` compares text case-insensitively.
    Cmp {
        /// Index into the table's fields.
        field: usize,
        /// Operator.
        op: CmpOp,
        /// Right-hand side (never `Null`).
        value: Value,
        /// Case-insensitive text comparison.
        fold_case: bool,
    },
    /// The field has a value (non-empty for text).
    Present(usize),
    /// The row's key equals this SCIM id.
    KeyEq(String),
    /// The row (a group) has this member id, or any member when `None`.
    HasMember(Option<String>),
}

/// Sort order of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sort {
    /// Field index; `None` sorts by key.
    pub field: Option<usize>,
    /// Case-insensitive ordering of text.
    pub fold_case: bool,
    /// Descending.
    pub descending: bool,
}

/// A search: condition, order and page.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    /// Which rows.
    pub predicate: Predicate,
    /// Their order (ties and the default order are by key, so pages are stable).
    pub sort: Sort,
    /// Rows to skip.
    pub offset: u64,
    /// Rows to return (0: only count).
    pub limit: u64,
    /// Load each row's members.
    pub members: bool,
}

/// One row of a mapped table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The key, as a SCIM id.
    pub key: String,
    /// One value per field of the [`TableSpec`].
    pub values: Vec<Value>,
    /// Member ids, when asked for and the table has membership.
    pub members: Option<Vec<String>>,
}

/// The result of a search.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    /// Rows matching the predicate, in total.
    pub total: u64,
    /// The page.
    pub rows: Vec<Row>,
}

/// A change to a group's membership; ids are the members' SCIM ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    /// Add (existing memberships are kept). Unknown ids reject the whole transaction.
    Add(Vec<String>),
    /// Remove (absent ones are ignored).
    Remove(Vec<String>),
    /// Remove all.
    Clear,
    /// Make the membership exactly this.
    Replace(Vec<String>),
}

/// What an update writes.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Change {
    /// New values of fields, by index.
    pub set: Vec<(usize, Value)>,
    /// Membership changes, in order.
    pub members: Vec<MemberChange>,
}

/// Computes an update from the locked current row, inside the transaction.
pub type EditFn = Box<dyn FnOnce(&Row) -> Result<Change, BackendError> + Send>;
/// Checks the locked current row before a delete.
pub type CheckFn = Box<dyn FnOnce(&Row) -> Result<(), BackendError> + Send>;

/// How a delete is done.
#[derive(Clone, Debug, PartialEq)]
pub enum DeleteMode {
    /// Remove the row (and its memberships).
    Hard,
    /// Keep the row and set these fields (e.g. `status = 'D'`).
    Soft(Vec<(usize, Value)>),
}

/// A store failure, as the layer above needs to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// No row with this key.
    #[error("not found")]
    NotFound,
    /// A unique constraint (or the sidecar's own uniqueness check) refused the write.
    #[error("unique constraint: {detail}")]
    Conflict {
        /// The field at fault, if known.
        field: Option<usize>,
        /// What clashed (no values).
        detail: String,
    },
    /// The store is unreachable, busy or timed out; retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused a value (too long, a NOT NULL or CHECK constraint, a member that does
    /// not exist). `detail` names what was refused and may be shown to the client.
    #[error("rejected: {detail}")]
    Rejected {
        /// The field at fault, if known.
        field: Option<usize>,
        /// Why.
        detail: String,
    },
    /// The caller's edit or check function failed; its error is passed back unchanged.
    #[error("aborted: {0}")]
    Aborted(Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: a fault to log.
    #[error("store error: {0}")]
    Internal(String),
}

/// The store side of one mapped resource. See the module doc for the transaction rule.
#[async_trait]
pub trait Table: Send + Sync {
    /// Inserts a row (fields by index; `Null` leaves a field to its default) and its initial
    /// members, and returns the row as stored.
    async fn insert(
        &self,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError>;
    /// Reads one row; `Ok(None)` when there is no row with this key.
    async fn fetch(&self, key: &str, members: bool) -> Result<Option<Row>, BackendError>;
    /// Runs a search.
    async fn search(&self, search: Search) -> Result<Found, BackendError>;
    /// Locks the row, calls `edit` with it, writes the change, and returns the new row;
    /// [`BackendError::NotFound`] when there is no row with this key.
    async fn update(
        &self,
        key: &str,
        load_members: bool,
        edit: EditFn,
    ) -> Result<Row, BackendError>;
    /// Locks the row, calls `check`, and deletes it as `mode` says.
    async fn delete(&self, key: &str, mode: DeleteMode, check: CheckFn)
    -> Result<(), BackendError>;
}

/// Where a field's value is kept.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A column of the resource's own table.
    Column(String),
    /// A column of a row in another table that points at the resource: a child table
    /// (`user_emails(user_id, address, is_primary)`), an entity–attribute–value table
    /// (`wp_usermeta(user_id, meta_key, meta_value)`), or the sidecar's own attribute table.
    /// There is at most one such row per resource and `select`.
    Child(ChildSpec),
}

/// A value kept in another table; see [`Source::Child`].
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
}

/// A field the mapping reads and writes.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldSpec {
    /// Where the value is kept.
    pub source: Source,
    /// Whether values must be unique in the table (SCIM `uniqueness: server`).
    pub unique: bool,
    /// Whether comparisons (and uniqueness) ignore case.
    pub fold_case: bool,
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

/// A column the sidecar writes on its own: a constant the app needs, or a timestamp.
#[derive(Clone, Debug, PartialEq)]
pub struct ConstSpec {
    /// The column.
    pub column: String,
    /// What is written.
    pub value: ConstValue,
    /// When.
    pub on: When,
}

/// A value the sidecar writes by itself.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstValue {
    /// This value.
    Value(Value),
    /// The current time, in the column's type.
    Now,
}

/// When a [`ConstSpec`] is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// On insert only.
    Insert,
    /// On insert and on every update.
    Always,
}

/// How a group-like resource's members are kept.
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
        /// The member resource type's discriminator, if its table holds other rows too.
        member_filter: Vec<(String, Value)>,
    },
    /// A column on the member's row holding the key of its one group (`users.role_id`).
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

/// A join table that references rows of this table as members: rows there are deleted with a
/// hard-deleted row, so a deleted user leaves no membership behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberOf {
    /// The join table.
    pub table: String,
    /// Its column holding this table's key.
    pub column: String,
}

/// What the mapping needs from a table.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSpec {
    /// Table name (optionally `schema.table`).
    pub table: String,
    /// Key column: the SCIM `id`.
    pub key: String,
    /// Discriminator: column values that select this resource type's rows in a table shared
    /// with others (users and groups in one table). Written on insert, added to every query.
    pub filter: Vec<(String, Value)>,
    /// Fields read and written, by index.
    pub fields: Vec<FieldSpec>,
    /// Columns the sidecar writes by itself.
    pub constants: Vec<ConstSpec>,
    /// Membership, for group-like resources.
    pub members: Option<MembersSpec>,
    /// Join tables listing rows of this table as members.
    pub member_of: Vec<MemberOf>,
}

/// Where in a [`TableSpec`] a problem lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecPart {
    /// The table or its key.
    Table,
    /// Field `i`.
    Field(usize),
    /// The membership description.
    Members,
    /// The discriminator or a constant column.
    Filter,
}

/// A problem found while checking a [`TableSpec`] against the live store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// Where.
    pub part: SpecPart,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: Option<String>,
    /// A warning does not stop start-up.
    pub warning: bool,
}

/// A store the sidecar writes to.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The backend's name in the config (`[backend.NAME]`).
    fn name(&self) -> &str;
    /// Whether the store answers (for `/readyz`).
    async fn ping(&self) -> Result<(), BackendError>;
    /// Validates a table description against the live store and opens it. On success, also
    /// returns what the store says of each field, and any warnings.
    async fn open_table(&self, spec: TableSpec) -> Result<Opened, Refused>;
    /// The sidecar's own attribute table (for attributes the app has no column for), as a
    /// child table: `(table, link column, value column, type column, name column)`.
    fn kept_table(&self) -> KeptTable;
    /// Creates the sidecar's own schema objects when missing; returns what it did. Run only by
    /// `scim-sidecar migrate`, never implicitly.
    async fn migrate(&self) -> Result<Vec<String>, BackendError>;
}

/// Where the sidecar keeps attributes the app has no column for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptTable {
    /// The table (`scim_sidecar.attributes`).
    pub table: String,
    /// Column with the resource's id, as text.
    pub link: String,
    /// Column with the value, as text.
    pub value: String,
    /// Column with the resource type name.
    pub resource_type: String,
    /// Column with the attribute path.
    pub name: String,
}

impl KeptTable {
    /// The sidecar's table `table` with the column names `scim-sidecar migrate` creates.
    pub fn named(table: &str) -> Self {
        KeptTable {
            table: table.into(),
            link: "resource_id".into(),
            value: "value".into(),
            resource_type: "resource_type".into(),
            name: "name".into(),
        }
    }
}

/// An opened table.
pub struct Opened {
    /// The handle.
    pub table: Arc<dyn Table>,
    /// One entry per field of the spec.
    pub fields: Vec<FieldInfo>,
    /// Warnings (problems that do not stop start-up).
    pub warnings: Vec<SpecProblem>,
}

/// Why a table cannot be served: every problem, and what the store says of each field that
/// was found (one per field of the spec, or empty when the table itself is missing), so the
/// caller can report its own problems with them too.
#[derive(Debug, Default)]
pub struct Refused {
    /// The problems.
    pub problems: Vec<SpecProblem>,
    /// Field information, where it could be read.
    pub fields: Vec<FieldInfo>,
}

impl From<Vec<SpecProblem>> for Refused {
    fn from(problems: Vec<SpecProblem>) -> Self {
        Refused {
            problems,
            fields: Vec::new(),
        }
    }
}

/// The current time as a field of type `ty` keeps it: seconds for integers, the canonical text
/// form otherwise (PostgreSQL casts it to its timestamp types).
pub fn now(ty: &FieldType) -> Value {
    let t = time::OffsetDateTime::now_utc();
    match ty {
        FieldType::Integer => Value::Int(t.unix_timestamp()),
        FieldType::Real => Value::Real(t.unix_timestamp_nanos() as f64 / 1e9),
        _ => Value::Text(timestamp_text(t).unwrap_or_default()),
    }
}

/// A timestamp as the sidecar writes it: RFC 3339 in UTC, always three fraction digits
/// (`2024-05-01T10:00:00.050Z`), so that text order is time order. `time`'s own RFC 3339
/// printer trims trailing zeros, which breaks that.
pub fn timestamp_text(t: time::OffsetDateTime) -> Option<String> {
    let t = t.to_offset(time::UtcOffset::UTC);
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    Some(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    ))
}

/// Edit distance between two short names, for "did you mean" hints.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    candidates
        .map(|c| (levenshtein(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hints suggest near names only.
    #[test]
    fn closest_names() {
        let cols = ["login", "email", "first_name"];
        assert_eq!(closest("emial", cols.iter().copied()), Some("email"));
        assert_eq!(
            closest("firstname", cols.iter().copied()),
            Some("first_name")
        );
        assert_eq!(closest("zzz", cols.iter().copied()), None);
    }
}
