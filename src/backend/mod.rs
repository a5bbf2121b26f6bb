//! Stores: the application's own SQL tables (and, next, LDAP directories and REST APIs).
//!
//! A backend knows its store and nothing of SCIM. It has two faces:
//!
//! - **Configuration** ([`kind`]): each kind of store ([`StoreKind`], registered in
//!   [`kind::KINDS`]) parses its own `[backend.NAME]` table and, through the [`StoreConfig`] it
//!   returns, its own part of every `[resource.X]` that uses it: where the resource, each
//!   mapped value and the membership live (tables and columns; DNs; URL templates). The layers
//!   above hold those as opaque [`Loc`]s: a location is something the store handed back, not a
//!   column name.
//! - **Requests**: an opened [`Backend`] turns a [`TableSpec`] (the locations of one resource
//!   type's fields) into a [`Table`] handle that speaks in [`Row`]s (one typed [`Value`] per
//!   field) and [`Predicate`]s (a filter over fields). Every `Table` method is one store
//!   transaction: it fully happens or fails with nothing changed.
//!
//! Attributes the app has no place for are kept in the sidecar's own [`state`] store, which
//! an SQL store can hold (in the same transaction as the app's rows) for any kind of store.

pub mod kind;
#[cfg(feature = "ldap")]
pub mod ldap;
#[cfg(feature = "rest")]
pub mod rest;
pub mod sql;
pub mod state;

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

pub use kind::{StoreConfig, StoreKind};

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
    /// Bytes (a binary LDAP attribute such as `objectGUID`, an SQL `BLOB`/`bytea`).
    Bytes(Vec<u8>),
    /// Several values of one field (a multi-valued LDAP attribute such as `mail`), in the
    /// store's order. Never nested, never holding `Null`.
    List(Vec<Value>),
}

impl Value {
    /// Whether this is [`Value::Null`] (or an empty list: a field with no values).
    pub fn is_null(&self) -> bool {
        match self {
            Value::Null => true,
            Value::List(l) => l.is_empty(),
            _ => false,
        }
    }

    /// The single value a single-valued reader sees: the first of a list, or the value itself.
    pub fn first(&self) -> &Value {
        match self {
            Value::List(l) => l.first().unwrap_or(&Value::Null),
            v => v,
        }
    }

    /// [`Self::first`], taken out of the value.
    pub fn into_first(self) -> Value {
        match self {
            Value::List(l) => l.into_iter().next().unwrap_or(Value::Null),
            v => v,
        }
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
    /// Bytes.
    Binary,
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
            FieldType::Binary => "binary".into(),
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
    /// Whether it holds several values (a multi-valued directory attribute).
    pub multi_valued: bool,
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
    /// The row's key is one of these SCIM ids (resolved elsewhere, e.g. from values the
    /// sidecar keeps in its own state store).
    KeyIn(Vec<String>),
    /// The row (a group) has this member id, or any member when `None`.
    HasMember(Option<String>),
}

/// Sort order of a search.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Sort {
    /// Field index; `None` sorts by key.
    pub field: Option<usize>,
    /// Case-insensitive ordering of text.
    pub fold_case: bool,
    /// Descending.
    pub descending: bool,
    /// When not empty, the field's values sort by their position in this list rather than
    /// by the store's own order (a value map's stored codes, in the order of the SCIM values
    /// they stand for: `'D'` before `'A'` when they mean `false` and `true`); values not in
    /// the list sort after those that are.
    pub ranks: Vec<Value>,
}

/// How a store pages through search results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paging {
    /// By position: any page can be asked for directly (SQL `OFFSET`).
    Offset,
    /// By an opaque cursor the store returned with the previous page (LDAP paged results,
    /// REST APIs with a `next` link): pages are read in order from the first.
    Cursor,
}

/// Which page of a search to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageRequest {
    /// `limit` rows after skipping `offset` (0-based); `limit` 0 asks only for the total.
    Offset {
        /// Rows to skip.
        offset: u64,
        /// Rows to return.
        limit: u64,
    },
    /// `limit` rows following the page that returned `after` (the first page when `None`).
    Cursor {
        /// The cursor the previous page returned.
        after: Option<String>,
        /// Rows to return.
        limit: u64,
    },
}

impl PageRequest {
    /// The page as an offset and a limit, for stores that page by position. A cursor of such
    /// a store is the decimal offset it handed out.
    pub fn offset_limit(&self) -> (u64, u64) {
        match self {
            PageRequest::Offset { offset, limit } => (*offset, *limit),
            PageRequest::Cursor { after, limit } => (
                after.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0),
                *limit,
            ),
        }
    }
}

/// A search: condition, order and page.
#[derive(Clone, Debug, PartialEq)]
pub struct Search {
    /// Which rows.
    pub predicate: Predicate,
    /// Their order (ties and the default order are by key, so pages are stable).
    pub sort: Sort,
    /// Which page.
    pub page: PageRequest,
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
    /// Rows matching the predicate, in total, when the store knows it without reading them
    /// all (`None`: it does not; the mapping layer then answers `totalResults` as documented
    /// in [`crate::mapping`]).
    pub total: Option<u64>,
    /// The page.
    pub rows: Vec<Row>,
    /// The cursor of the next page, for a [`PageRequest::Cursor`] search with more rows.
    pub next: Option<String>,
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
    /// Keep the row, set these fields (e.g. `status = 'D'`) and the values written on
    /// delete ([`When::Delete`]), remove its memberships, and leave a tombstone when the
    /// table keeps them ([`TableSpec::tombstones`]).
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
    /// The store cannot evaluate this part of a search (a filter operator or a sort on a field
    /// it cannot compare): the request is refused, never answered by scanning. `detail` says
    /// what, in the store's terms and without values.
    #[error("unsupported: {detail}")]
    Unsupported {
        /// The field at fault, if known.
        field: Option<usize>,
        /// What the store cannot do.
        detail: String,
    },
    /// What a read would return is larger than the configured limit (members of a group, or
    /// for a store that cannot page by offset, the entries a search matches). `detail` says
    /// what and how large, without values.
    #[error("too large: {detail}")]
    TooLarge {
        /// What.
        detail: String,
        /// Whether it is a member list (over `[scim].max_members`), which the client can
        /// avoid reading; otherwise the entries a search matches.
        members: bool,
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
    /// [`Table::update`] for a request that names, before `edit` runs, every member id its
    /// change may add or set (`named`, possibly more): a table that checks members ahead of
    /// the write (the state store's tombstones, [`state::Overlay`]) reads those only.
    async fn update_named(
        &self,
        key: &str,
        load_members: bool,
        named: &[String],
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        let _ = named;
        self.update(key, load_members, edit).await
    }
    /// Locks the row, calls `check`, and deletes it as `mode` says.
    async fn delete(&self, key: &str, mode: DeleteMode, check: CheckFn)
    -> Result<(), BackendError>;
    /// How this table pages; [`Search::page`] must be of that kind.
    fn paging(&self) -> Paging {
        Paging::Offset
    }
    /// Which of `keys` the store still holds a row for, soft-deleted ones included (what
    /// `scim-sidecar migrate --prune` keeps the kept values of). The default: every key,
    /// for a store that cannot tell, so nothing is pruned.
    async fn present(&self, keys: &[String]) -> Result<Vec<String>, BackendError> {
        Ok(keys.to_vec())
    }
    /// Rewrites existing row `key` as an [`Table::insert`] of `values` and `members` would
    /// have written it (a soft-deleted resource brought back by a create): given fields
    /// written, absent ones as an insert leaves them (cleared, or the store's default).
    /// The default is [`rewrite`].
    async fn revive(
        &self,
        key: &str,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        rewrite(self, key, values, members, load_members).await
    }
    /// [`Table::search`] over the rows a soft delete took out of the resource's place too
    /// (an LDAP entry moved to its `disabled_base`): where a create finds the soft-deleted
    /// resource of the same name to bring back. The default: [`Table::search`], for a store
    /// that leaves soft-deleted rows where they were.
    async fn search_retired(&self, search: Search) -> Result<Found, BackendError> {
        self.search(search).await
    }
}

/// [`Table::revive`] as an update: writes every field (`Null` for absent ones) and replaces
/// the members when there are some to set (a store without membership takes no member
/// change).
pub async fn rewrite<T: Table + ?Sized>(
    table: &T,
    key: &str,
    values: Vec<Value>,
    members: Vec<String>,
    load_members: bool,
) -> Result<Row, BackendError> {
    let set: Vec<(usize, Value)> = values.into_iter().enumerate().collect();
    let members = if members.is_empty() {
        Vec::new()
    } else {
        vec![MemberChange::Replace(members)]
    };
    table
        .update(
            key,
            load_members,
            Box::new(move |_| Ok(Change { set, members })),
        )
        .await
}

/// Where something lives in a store, as that store's kind parsed it from the mapping file: a
/// resource's table (or base DN, or URL), a mapped value's column (or attribute, or JSON
/// field), a membership. Created by the store's [`StoreConfig`], read back only by the same
/// kind of store (by downcasting [`Location::as_any`]); every layer above passes it along
/// unread.
pub trait Location: Any + fmt::Debug + Send + Sync {
    /// How to name it in messages (`column 'login'`).
    fn describe(&self) -> String;
    /// For the store's own downcast.
    fn as_any(&self) -> &dyn Any;
    /// Whether a SCIM `password` may be mapped here: the store turns a clear-text password
    /// into its own hashed form when it is written (LDAP `userPassword`, set through the
    /// Password Modify operation), and it is never read back. `false` by default: a column
    /// cannot know the app's hash format.
    fn takes_password(&self) -> bool {
        false
    }
}

/// A shared [`Location`].
pub type Loc = Arc<dyn Location>;

/// Where a field's value is kept.
#[derive(Clone, Debug)]
pub enum FieldSource {
    /// Where the store's kind said (a column, a child table row, …).
    Store(Loc),
    /// In the sidecar's own state, held by this store (see [`Backend::holds_state`]) in the
    /// same transactions as the resource's own rows.
    Kept {
        /// The resource type.
        resource_type: String,
        /// The attribute's canonical path (`externalId`).
        name: String,
    },
}

/// A field the mapping reads and writes.
#[derive(Clone, Debug)]
pub struct FieldSpec {
    /// The field's name in the mapping file (the map key, `userName`, or a `set` key), for
    /// the store's own templates and parameters (an SQL hook's `:userName`).
    pub name: String,
    /// Where the value is kept.
    pub source: FieldSource,
    /// Whether values must be unique among the resource's rows (SCIM `uniqueness: server`).
    pub unique: bool,
    /// Whether comparisons (and uniqueness) ignore case.
    pub fold_case: bool,
    /// The field holds field `i`'s value lower-cased (a `set` template `{userName|lower}`):
    /// a unique index on it makes field `i` unique case-insensitively (phpBB's
    /// `username_clean`).
    pub lowered_copy_of: Option<usize>,
}

/// A value the store writes on its own: a constant the app needs, or a timestamp.
#[derive(Clone, Debug)]
pub struct ConstSpec {
    /// Where (a `[resource.X.set]` key, as the store parsed it).
    pub target: Loc,
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
    /// The current time, in the field's type.
    Now,
}

/// When a [`ConstSpec`] is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// On insert only.
    Insert,
    /// On insert and on every update.
    Always,
    /// When the row is soft-deleted ([`DeleteMode::Soft`]).
    Delete,
}

/// How a group-like resource's members are kept.
#[derive(Clone, Debug)]
pub struct MembersSpec {
    /// The membership, as the store parsed `members = { … }`.
    pub loc: Loc,
    /// Where the member resource type lives (its own resource location, in the same store).
    pub member: Loc,
    /// The member resource type's name (for its tombstones).
    pub member_type: String,
}

/// Another resource type whose membership lists rows of this one: the store removes those
/// memberships with a hard-deleted row, so a deleted user leaves none behind.
#[derive(Clone, Debug)]
pub struct MemberOf {
    /// That type's membership.
    pub loc: Loc,
    /// That type's resource location.
    pub group: Loc,
}

/// What the mapping needs from one resource type's store.
#[derive(Clone, Debug)]
pub struct TableSpec {
    /// The resource type's name, for the store's messages and its kept rows.
    pub resource_type: String,
    /// Where the resource lives (its `[resource.X]` keys, as the store parsed them).
    pub resource: Loc,
    /// Fields read and written, by index.
    pub fields: Vec<FieldSpec>,
    /// Values the store writes by itself.
    pub constants: Vec<ConstSpec>,
    /// Membership, for group-like resources.
    pub members: Option<MembersSpec>,
    /// Memberships listing rows of this resource type.
    pub member_of: Vec<MemberOf>,
    /// The most members one read may load, over every row it returns: a read that would load
    /// more fails with [`BackendError::TooLarge`] having loaded at most one more. `None`: no
    /// limit.
    pub max_members: Option<u64>,
    /// Soft deletes leave a tombstone in the sidecar's state (RFC 7644 §3.6): a tombstoned
    /// row is absent from every read, write and membership, though it stays in the app; an
    /// insert that would clash with one on a unique field brings that row back instead (its
    /// key unchanged, its fields rewritten, the tombstone removed).
    pub tombstones: bool,
    /// The member resource type soft-deletes too: tombstoned rows are not members to add
    /// and not listed as members.
    pub member_tombstones: bool,
    /// `DELETE` removes the row for good (`on_delete = "hard"`): the store checks what else
    /// points at it.
    pub hard_delete: bool,
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
    /// The discriminator (or another part of the resource's own location).
    Filter,
    /// Value `i` the store writes by itself ([`TableSpec::constants`]).
    Constant(usize),
    /// A part of the store's own location with a position of its own (an SQL hook).
    At(crate::mapping::Origin),
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

/// A store the sidecar writes to, opened.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The backend's name in the config (`[backend.NAME]`).
    fn name(&self) -> &str;
    /// Whether the store answers (for `/readyz`). The caller bounds the wait.
    async fn ping(&self) -> Result<(), BackendError>;
    /// The longest one [`Table`] operation may take, waiting for a connection included. The
    /// mapping layer enforces it on the client side, so a store that stops answering (a
    /// frozen server, which no server-side timeout can stop) costs a request no more than
    /// this before it is a 503.
    fn deadline(&self) -> std::time::Duration {
        std::time::Duration::from_secs(30)
    }
    /// Validates a resource type's locations against the live store and opens it. On
    /// success, also returns what the store says of each field, and any warnings.
    async fn open_table(&self, spec: TableSpec) -> Result<Opened, Refused>;
    /// The sidecar's own state (attributes the app has no place for), when this store can
    /// hold it: resource types of this store keep theirs in the same transactions as their
    /// rows ([`FieldSource::Kept`]); other stores use it through [`state::Overlay`].
    fn state(&self) -> Option<Arc<dyn state::StateStore>> {
        None
    }
    /// Creates the sidecar's own schema objects when missing; returns what it did. Run only by
    /// `scim-sidecar migrate`, never implicitly.
    async fn migrate(&self) -> Result<Vec<String>, BackendError> {
        Ok(Vec::new())
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

/// The 400 for member ids that do not exist (the first five named).
pub fn missing_members(missing: &[String]) -> BackendError {
    let shown: Vec<String> = missing.iter().take(5).map(|s| format!("'{s}'")).collect();
    let more = if missing.len() > 5 {
        format!(" and {} more", missing.len() - 5)
    } else {
        String::new()
    };
    BackendError::Rejected {
        field: None,
        detail: if missing.len() == 1 {
            format!("member {} does not exist", shown.join(", "))
        } else {
            format!("members {}{more} do not exist", shown.join(", "))
        },
    }
}

/// The caller's thread when its runtime is single-threaded (a server shard), `None` otherwise:
/// the home of a connection whose I/O task is spawned now. Pools hand a request a connection
/// of its own thread first (the PostgreSQL pool, the REST client), since one driven from
/// another thread costs a wake-up and a context switch per message each way.
pub fn home_thread() -> Option<std::thread::ThreadId> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread)
        .then(|| std::thread::current().id())
}

/// Shard threads serving connections in this process (0 until the server starts them).
static SHARD_THREADS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Records how many shard threads the server started (`server::shard`).
pub fn set_shard_threads(n: usize) {
    SHARD_THREADS.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// How many threads [`home_thread`] can return: what a pool shares its connections out
/// between (at least 1; 1 when the server runs on the caller's runtime).
pub fn shard_threads() -> usize {
    SHARD_THREADS
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(1)
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
    let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
    // Digits written in place: this runs for every timestamp of every resource read.
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, u32::from(u8::from(t.month())));
    put(8, 2, u32::from(t.day()));
    put(11, 2, u32::from(t.hour()));
    put(14, 2, u32::from(t.minute()));
    put(17, 2, u32::from(t.second()));
    put(20, 3, u32::from(t.millisecond()));
    String::from_utf8(out.to_vec()).ok()
}

/// Whether `s` is already what [`timestamp_text`] writes (`2024-05-01T10:00:00.050Z`), with
/// every part in range.
pub fn is_timestamp_text(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 24 {
        return false;
    }
    let num = |at: usize, width: usize| -> Option<u32> {
        b[at..at + width].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let shape = b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z';
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec), Some(_)) = (
        num(0, 4),
        num(5, 2),
        num(8, 2),
        num(11, 2),
        num(14, 2),
        num(17, 2),
        num(20, 3),
    ) else {
        return false;
    };
    let date = time::Month::try_from(mo as u8)
        .ok()
        .and_then(|m| time::Date::from_calendar_date(y as i32, m, d as u8).ok());
    shape && date.is_some() && h < 24 && mi < 60 && sec < 60
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

    #[test]
    fn timestamps_print_and_are_recognised() {
        let t = time::macros::datetime!(2024-05-01 10:00:00.05 +02:00);
        let text = timestamp_text(t).expect("in range");
        assert_eq!(text, "2024-05-01T08:00:00.050Z");
        assert!(is_timestamp_text(&text));
        assert_eq!(
            timestamp_text(time::macros::datetime!(0001-01-01 00:00:00 UTC)).as_deref(),
            Some("0001-01-01T00:00:00.000Z")
        );
        for bad in [
            "2024-04-31T08:00:00.050Z",
            "2024-13-01T08:00:00.050Z",
            "2024-05-01T24:00:00.050Z",
            "2024-05-01 08:00:00.050Z",
            "2024-05-01T08:00:00.05Z",
            "2024-05-01T08:00:00.050+00:00",
            "2024-05-01T08:0a:00.050Z",
        ] {
            assert!(!is_timestamp_text(bad), "{bad}");
        }
    }

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
