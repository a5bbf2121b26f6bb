//! The SQLite backend: the quickstart's embedded store, and a real target for apps that keep
//! their users in an SQLite file.
//!
//! One writer connection and a few reader connections in WAL mode: reads never wait for
//! writes, and writes are serialised by the sidecar (no `SQLITE_BUSY` storms between its own
//! connections). Every write is one `BEGIN IMMEDIATE` transaction, so a check-then-write (a
//! uniqueness check without an index, a member existence check) cannot race another write of
//! the sidecar. rusqlite is synchronous, so each operation runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use tokio::sync::Semaphore;

use super::{Column, Dialect, Shape, Sql, compile_predicate, key_value, order_by, quote_ident};
use crate::backend::{
    Backend, BackendError, Change, CheckFn, DeleteMode, EditFn, FieldInfo, FieldType, Found,
    MemberChange, Opened, Row, Search, SpecPart, SpecProblem, Table, TableSpec, Value, closest,
};

const D: Dialect = Dialect::Sqlite;

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Bool(b) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(i64::from(*b))),
            Value::Int(i) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Owned(rusqlite::types::Value::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        })
    }
}

fn from_ref(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            Value::Text(String::from_utf8_lossy(t).into_owned())
        }
    }
}

fn key_string(v: ValueRef<'_>) -> String {
    match from_ref(v) {
        Value::Int(i) => i.to_string(),
        Value::Text(s) => s,
        Value::Real(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
    }
}

// === Pool ===

/// One writer and `n` readers, each behind a semaphore so waiting is async.
struct Pool {
    writer: Arc<Mutex<Connection>>,
    write_gate: Arc<Semaphore>,
    readers: Arc<Mutex<Vec<Connection>>>,
    read_gate: Arc<Semaphore>,
}

impl Pool {
    async fn write<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    {
        let permit = self
            .write_gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let conn = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut c = conn
                .lock()
                .map_err(|_| BackendError::Internal("writer connection poisoned".into()))?;
            f(&mut c)
        })
        .await
        .map_err(|e| BackendError::Internal(format!("store task failed: {e}")))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    {
        let permit = self
            .read_gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let taken = readers.lock().map_err(|_| poisoned())?.pop();
            let Some(mut conn) = taken else {
                return Err(BackendError::Internal("no reader connection free".into()));
            };
            let out = f(&mut conn);
            readers.lock().map_err(|_| poisoned())?.push(conn);
            out
        })
        .await
        .map_err(|e| BackendError::Internal(format!("store task failed: {e}")))?
    }
}

fn closed() -> BackendError {
    BackendError::Unavailable("the store is shutting down".into())
}

fn poisoned() -> BackendError {
    BackendError::Internal("reader pool poisoned".into())
}

/// Maps an SQLite error to what the layer above must tell apart.
fn error(e: rusqlite::Error, columns: &[String]) -> BackendError {
    use rusqlite::ErrorCode as C;
    let rusqlite::Error::SqliteFailure(f, msg) = &e else {
        return BackendError::Internal(e.to_string());
    };
    let msg = msg.clone().unwrap_or_default();
    // "UNIQUE constraint failed: accounts.login" names the column; find our field.
    let field = msg
        .rsplit(['.', ' '])
        .next()
        .and_then(|col| columns.iter().position(|c| c.eq_ignore_ascii_case(col)));
    match f.code {
        C::ConstraintViolation => match f.extended_code {
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                BackendError::Conflict { field, detail: msg }
            }
            rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL => BackendError::Rejected {
                field,
                detail: format!("a value is required ({msg})"),
            },
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => BackendError::Rejected {
                field: None,
                detail: "a value refers to a row that does not exist in the application (a FOREIGN KEY constraint failed), e.g. a manager id".into(),
            },
            _ => BackendError::Rejected {
                field,
                detail: format!("the store refused the value ({msg})"),
            },
        },
        C::DatabaseBusy | C::DatabaseLocked => {
            BackendError::Unavailable(format!("database busy: {msg}"))
        }
        C::CannotOpen
        | C::SystemIoFailure
        | C::DiskFull
        | C::ReadOnly
        | C::NotADatabase
        | C::DatabaseCorrupt => BackendError::Unavailable(format!("{e}")),
        _ => BackendError::Internal(format!("{e}")),
    }
}

/// A transaction on a pooled connection, with `BEGIN`/`COMMIT`/`ROLLBACK` as cached
/// statements (rusqlite's own `Transaction` re-parses them on every call). Dropped without
/// [`Tx::commit`], it rolls back: an error anywhere leaves the store as it was.
struct Tx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Tx<'c> {
    /// `BEGIN IMMEDIATE` for writes (take the write lock now, so check-then-write cannot race
    /// another writer), `BEGIN` for reads (one snapshot for the page and its count).
    fn begin(conn: &'c Connection, immediate: bool) -> rusqlite::Result<Self> {
        let sql = if immediate {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN"
        };
        conn.prepare_cached(sql)?.execute([])?;
        Ok(Tx { conn, open: true })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self
                .conn
                .prepare_cached("ROLLBACK")
                .and_then(|mut st| st.execute([]));
        }
    }
}

// === impl SqliteBackend ===

/// An SQLite database file.
pub struct SqliteBackend {
    name: String,
    path: PathBuf,
    pool: Arc<Pool>,
}

impl SqliteBackend {
    /// Opens the database at `path`. When the file does not exist and `create_from` names an
    /// SQL file, the database is created from it first (the quickstart's demo app); otherwise
    /// a missing file is an error, never a silently created empty database.
    pub fn open(
        name: &str,
        path: &Path,
        create_from: Option<&Path>,
        readers: usize,
        busy_timeout: Duration,
    ) -> Result<Self, String> {
        // A zero-length file is an empty database too (opening a path with the sqlite3 shell
        // creates one): the schema is applied to it as to a missing file.
        let empty = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        if empty && create_from.is_some() || !path.exists() {
            let Some(schema) = create_from else {
                return Err(format!(
                    "SQLite database {} does not exist (set `path` to the app's database file, or `create_from` to an SQL schema to create it)",
                    path.display()
                ));
            };
            let sql = std::fs::read_to_string(schema)
                .map_err(|e| format!("cannot read schema file {}: {e}", schema.display()))?;
            let mut conn = Connection::open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            let created = conn
                .transaction()
                .and_then(|tx| tx.execute_batch(&sql).and_then(|()| tx.commit()));
            if let Err(e) = created {
                drop(conn);
                let _ = std::fs::remove_file(path);
                return Err(format!("schema file {} failed: {e}", schema.display()));
            }
            tracing::info!(db = %path.display(), schema = %schema.display(), "created SQLite database from schema");
        }
        let open = |flags| {
            connect(path, flags, busy_timeout)
                .map_err(|e| format!("cannot open SQLite database {}: {e}", path.display()))
        };
        let writer = open(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        let mut pool = Vec::new();
        for _ in 0..readers.max(1) {
            pool.push(open(
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?);
        }
        let n = pool.len();
        let pool = Arc::new(Pool {
            writer: Arc::new(Mutex::new(writer)),
            write_gate: Arc::new(Semaphore::new(1)),
            readers: Arc::new(Mutex::new(pool)),
            read_gate: Arc::new(Semaphore::new(n)),
        });
        // SQLite's automatic checkpoint (every 1000 WAL pages) stays: it runs in the commit
        // that crosses the threshold, completes, and lets the WAL restart, so the WAL stays
        // ~4 MiB. (A background PASSIVE checkpointer was measured: it cannot finish while
        // writes keep coming, and tails got no better.) After an unusually large transaction
        // the file is truncated back to this size.
        if let Ok(w) = pool.writer.lock() {
            let _ = w.pragma_update_and_check(None, "journal_size_limit", 64 << 20, |r| {
                r.get::<_, i64>(0)
            });
        }
        Ok(SqliteBackend {
            name: name.to_owned(),
            path: path.to_owned(),
            pool,
        })
    }
}

fn connect(path: &Path, flags: OpenFlags, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(path, flags)?;
    c.busy_timeout(busy_timeout)?;
    if !flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
        // WAL: readers do not block the writer; NORMAL sync is durable across app crashes.
        c.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
    }
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.set_prepared_statement_cache_capacity(128);
    Ok(c)
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.pool
            .read(|c| {
                c.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(|e| error(e, &[]))
            })
            .await
    }

    async fn open_table(&self, spec: TableSpec) -> Result<Opened, Vec<SpecProblem>> {
        let path = self.path.clone();
        let pool = self.pool.clone();
        let checked = self.pool.read(move |c| Ok(check(c, &spec, &path))).await;
        match checked {
            Ok(Ok((sql, fields, warnings))) => Ok(Opened {
                table: Arc::new(SqliteTable {
                    pool,
                    sql: Arc::new(sql),
                }),
                fields,
                warnings,
            }),
            Ok(Err(problems)) => Err(problems),
            Err(e) => Err(vec![problem(
                SpecPart::Table,
                format!("cannot inspect the database: {e}"),
                None,
            )]),
        }
    }
}

// === Start-up checks ===

struct ColInfo {
    name: String,
    decl: String,
    notnull: bool,
    has_default: bool,
    pk: i64,
}

struct IndexInfo {
    unique: bool,
    partial: bool,
    /// Key columns (lower-cased names; `None` for an expression) and their collations.
    cols: Vec<(Option<String>, String)>,
    sql: String,
}

fn problem(part: SpecPart, message: String, fix: Option<String>) -> SpecProblem {
    SpecProblem {
        part,
        message,
        fix,
        warning: false,
    }
}

fn columns_of(c: &Connection, table: &str) -> rusqlite::Result<Vec<ColInfo>> {
    let mut st =
        c.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")?;
    let rows = st.query_map([table], |r| {
        Ok(ColInfo {
            name: r.get(0)?,
            decl: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            notnull: r.get::<_, i64>(2)? != 0,
            has_default: r.get::<_, Option<String>>(3)?.is_some(),
            pk: r.get(4)?,
        })
    })?;
    rows.collect()
}

fn indexes_of(c: &Connection, table: &str) -> rusqlite::Result<Vec<IndexInfo>> {
    let mut st = c.prepare("SELECT name, \"unique\", partial FROM pragma_index_list(?1)")?;
    let list: Vec<(String, bool, bool)> = st
        .query_map([table], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, i64>(1)? != 0,
                r.get::<_, i64>(2)? != 0,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (name, unique, partial) in list {
        let mut st = c.prepare(
            "SELECT name, coll FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno",
        )?;
        let cols = st
            .query_map([&name], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?
                        .map(|n| n.to_ascii_lowercase()),
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let sql: String = c
            .query_row(
                "SELECT coalesce(sql, '') FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [&name],
                |r| r.get(0),
            )
            .unwrap_or_default();
        out.push(IndexInfo {
            unique,
            partial,
            cols,
            sql: sql.to_ascii_lowercase(),
        });
    }
    Ok(out)
}

fn field_type(decl: &str) -> FieldType {
    let t = decl.to_ascii_uppercase();
    let max_len = || {
        let open = t.find('(')?;
        let close = t[open..].find(')')? + open;
        t[open + 1..close].split(',').next()?.trim().parse().ok()
    };
    if t.contains("BOOL") {
        FieldType::Boolean
    } else if t.contains("INT") {
        FieldType::Integer
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        FieldType::Text { max_len: max_len() }
    } else if ["REAL", "FLOA", "DOUB", "NUMERIC", "DECIMAL"]
        .iter()
        .any(|k| t.contains(k))
    {
        FieldType::Real
    } else if t.contains("DATE") || t.contains("TIME") {
        FieldType::Timestamp
    } else {
        FieldType::Text { max_len: None }
    }
}

/// Whether some unique index (or the primary key) makes `col` unique, case-insensitively when
/// `fold` (a NOCASE collation, or an expression index on `lower(col)`).
fn unique_covered(col: &ColInfo, pk_cols: usize, indexes: &[IndexInfo], fold: bool) -> bool {
    let lname = col.name.to_ascii_lowercase();
    if !fold && col.pk == 1 && pk_cols == 1 {
        return true;
    }
    indexes
        .iter()
        .filter(|i| i.unique && !i.partial && i.cols.len() == 1)
        .any(|i| match &i.cols[0] {
            (Some(name), coll) => *name == lname && (!fold || coll.eq_ignore_ascii_case("NOCASE")),
            (None, _) => {
                fold && i.sql.contains(&format!("lower({lname})"))
                    || i.sql.contains(&format!("lower(\"{lname}\")"))
            }
        })
}

type Checked = (TableSql, Vec<FieldInfo>, Vec<SpecProblem>);

/// Checks a spec against the live schema and builds its statements.
fn check(c: &Connection, spec: &TableSpec, path: &Path) -> Result<Checked, Vec<SpecProblem>> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let ioerr = |e: rusqlite::Error| {
        vec![problem(
            SpecPart::Table,
            format!("cannot inspect the database: {e}"),
            None,
        )]
    };
    if spec.table.contains('.') {
        return Err(vec![problem(
            SpecPart::Table,
            format!("SQLite table names have no schema part: '{}'", spec.table),
            Some("name the table alone, e.g. `table = \"accounts\"`".into()),
        )]);
    }
    let cols = columns_of(c, &spec.table).map_err(ioerr)?;
    if cols.is_empty() {
        let tables: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
            .unwrap_or_default();
        let hint = closest(&spec.table, tables.iter().map(String::as_str))
            .map(|t| format!("did you mean `table = \"{t}\"`?"))
            .unwrap_or_else(|| format!("tables in {}: {}", path.display(), tables.join(", ")));
        let mut problems = vec![problem(
            SpecPart::Table,
            format!(
                "table '{}' does not exist in {}",
                spec.table,
                path.display()
            ),
            Some(hint),
        )];
        if let Some(m) = &spec.members {
            problems.extend(check_members(c, m).err().unwrap_or_default());
        }
        return Err(problems);
    }
    let indexes = indexes_of(c, &spec.table).map_err(ioerr)?;
    let pk_cols = cols.iter().filter(|c| c.pk > 0).count();
    let find = |name: &str| cols.iter().find(|c| c.name.eq_ignore_ascii_case(name));
    let names = || cols.iter().map(|c| c.name.as_str());
    let missing = |part: SpecPart,
                   what: &str,
                   name: &str,
                   table: &str,
                   names: &mut dyn Iterator<Item = &str>| {
        let list: Vec<&str> = names.collect();
        let fix = match closest(name, list.iter().copied()) {
            Some(n) => format!("did you mean \"{n}\"? (columns: {})", list.join(", ")),
            None => format!("columns of {table}: {}", list.join(", ")),
        };
        let what = if what.is_empty() {
            "column".to_owned()
        } else {
            format!("{what} column")
        };
        problem(
            part,
            format!("{what} '{name}' does not exist in table '{table}'"),
            Some(fix),
        )
    };

    // The key: unique, and generated by the database or by us.
    let mut key_int = true;
    let mut key_uuid = false;
    match find(&spec.key) {
        None => problems.push(missing(
            SpecPart::Table,
            "key",
            &spec.key,
            &spec.table,
            &mut names(),
        )),
        Some(k) => {
            let ty = field_type(&k.decl);
            key_int = ty == FieldType::Integer;
            let rowid = k.pk == 1 && pk_cols == 1 && k.decl.eq_ignore_ascii_case("INTEGER");
            if !unique_covered(k, pk_cols, &indexes, false) {
                problems.push(problem(
                    SpecPart::Table,
                    format!("key column '{}' of '{}' is not unique", k.name, spec.table),
                    Some(
                        "use the table's primary key, or a column with a UNIQUE constraint".into(),
                    ),
                ));
            }
            if !rowid && !k.has_default {
                if key_int {
                    problems.push(problem(
                        SpecPart::Table,
                        format!(
                            "key column '{}' is an integer the database does not generate",
                            k.name
                        ),
                        Some("declare it INTEGER PRIMARY KEY, or give it a DEFAULT".into()),
                    ));
                } else {
                    // A text key nobody generates: the sidecar makes a UUID.
                    key_uuid = true;
                }
            }
        }
    }

    let mut infos = Vec::with_capacity(spec.fields.len());
    let mut unique_checks = Vec::new();
    for (i, f) in spec.fields.iter().enumerate() {
        let Some(col) = find(&f.column) else {
            problems.push(missing(
                SpecPart::Field(i),
                "",
                &f.column,
                &spec.table,
                &mut names(),
            ));
            infos.push(FieldInfo {
                ty: FieldType::Text { max_len: None },
                nullable: true,
                has_default: false,
                unique: false,
            });
            continue;
        };
        let covered = unique_covered(col, pk_cols, &indexes, f.fold_case);
        if f.unique && !covered {
            unique_checks.push((i, f.fold_case));
            let coll = if f.fold_case { " COLLATE NOCASE" } else { "" };
            warnings.push(SpecProblem {
                part: SpecPart::Field(i),
                message: format!(
                    "no unique index on {}.{}{}: the sidecar checks uniqueness itself on every write, but writes of the app itself are not checked",
                    spec.table,
                    col.name,
                    if f.fold_case { " (case-insensitive)" } else { "" }
                ),
                fix: Some(format!(
                    "CREATE UNIQUE INDEX {t}_{c}_key ON {t} ({c}{coll});",
                    t = spec.table,
                    c = col.name
                )),
                warning: true,
            });
        }
        infos.push(FieldInfo {
            ty: field_type(&col.decl),
            nullable: !col.notnull,
            has_default: col.has_default,
            unique: covered || f.unique,
        });
    }

    // A NOT NULL column without default that nothing writes makes every insert fail.
    for col in &cols {
        let mapped = spec
            .fields
            .iter()
            .any(|f| f.column.eq_ignore_ascii_case(&col.name))
            || col.name.eq_ignore_ascii_case(&spec.key);
        if col.notnull && !col.has_default && !mapped && col.pk == 0 {
            problems.push(problem(
                SpecPart::Table,
                format!(
                    "column '{}.{}' is NOT NULL without a default, and no attribute maps to it: every create would fail",
                    spec.table, col.name
                ),
                Some(format!("map an attribute to \"{}\", or give the column a DEFAULT", col.name)),
            ));
        }
    }

    let members = match &spec.members {
        None => None,
        Some(m) => match check_members(c, m) {
            Ok((sql, unique_pair)) => {
                if !unique_pair {
                    warnings.push(SpecProblem {
                        part: SpecPart::Members,
                        message: format!(
                            "no unique index on {}({}, {})",
                            m.table, m.group_column, m.member_column
                        ),
                        fix: Some(format!(
                            "CREATE UNIQUE INDEX {t}_pair ON {t} ({}, {});",
                            m.group_column,
                            m.member_column,
                            t = m.table
                        )),
                        warning: true,
                    });
                }
                Some(sql)
            }
            Err(mut p) => {
                problems.append(&mut p);
                None
            }
        },
    };
    // Join tables that list this table's rows as members. A missing one is reported by the
    // resource that owns the membership, not here.
    let member_of = spec
        .member_of
        .iter()
        .filter(|mo| {
            columns_of(c, &mo.table)
                .is_ok_and(|cols| cols.iter().any(|c| c.name.eq_ignore_ascii_case(&mo.column)))
        })
        .map(|mo| (quote_ident(&mo.table), quote_ident(&mo.column)))
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    let table = quote_ident(&spec.table);
    let key = quote_ident(&spec.key);
    let raw_cols: Vec<String> = spec.fields.iter().map(|f| quote_ident(&f.column)).collect();
    let columns: Vec<Column> = raw_cols
        .iter()
        .zip(&infos)
        .map(|(c, i)| Column {
            qualified: format!("t.{c}"),
            ty: i.ty.clone(),
        })
        .collect();
    let mut select_list = format!("t.{key}");
    let mut returning = key.clone();
    for c in &raw_cols {
        select_list.push_str(&format!(", t.{c}"));
        returning.push_str(&format!(", {c}"));
    }
    let sql = TableSql {
        select_by_key: format!("SELECT {select_list} FROM {table} t WHERE t.{key} = ?1"),
        table,
        key,
        key_int,
        key_uuid,
        raw_cols,
        col_names: spec.fields.iter().map(|f| f.column.clone()).collect(),
        columns,
        select_list,
        returning,
        unique_checks,
        members,
        member_of,
    };
    Ok((sql, infos, warnings))
}

fn check_members(
    c: &Connection,
    m: &crate::backend::MembersSpec,
) -> Result<(MembersSql, bool), Vec<SpecProblem>> {
    let mut problems = Vec::new();
    let io = |e: rusqlite::Error| {
        vec![problem(
            SpecPart::Members,
            format!("cannot inspect the database: {e}"),
            None,
        )]
    };
    let jcols = columns_of(c, &m.table).map_err(io)?;
    if jcols.is_empty() {
        return Err(vec![problem(
            SpecPart::Members,
            format!("join table '{}' does not exist", m.table),
            None,
        )]);
    }
    for col in [&m.group_column, &m.member_column] {
        if !jcols.iter().any(|c| c.name.eq_ignore_ascii_case(col)) {
            let list: Vec<&str> = jcols.iter().map(|c| c.name.as_str()).collect();
            problems.push(problem(
                SpecPart::Members,
                format!("column '{col}' does not exist in join table '{}'", m.table),
                Some(format!("columns of {}: {}", m.table, list.join(", "))),
            ));
        }
    }
    let mcols = columns_of(c, &m.member_table).map_err(io)?;
    let member_int = match mcols
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(&m.member_key))
    {
        Some(k) => field_type(&k.decl) == FieldType::Integer,
        None => {
            problems.push(problem(
                SpecPart::Members,
                format!(
                    "member table '{}' has no key column '{}'",
                    m.member_table, m.member_key
                ),
                None,
            ));
            true
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let idx = indexes_of(c, &m.table).map_err(io)?;
    let (g, mm) = (
        m.group_column.to_ascii_lowercase(),
        m.member_column.to_ascii_lowercase(),
    );
    let pair = |cols: &[(Option<String>, String)]| {
        cols.len() == 2
            && cols.iter().any(|(n, _)| n.as_deref() == Some(g.as_str()))
            && cols.iter().any(|(n, _)| n.as_deref() == Some(mm.as_str()))
    };
    let pk: Vec<(Option<String>, String)> = jcols
        .iter()
        .filter(|c| c.pk > 0)
        .map(|c| (Some(c.name.to_ascii_lowercase()), String::new()))
        .collect();
    let unique_pair = pair(&pk) || idx.iter().any(|i| i.unique && !i.partial && pair(&i.cols));
    let join = quote_ident(&m.table);
    let (gq, mq) = (quote_ident(&m.group_column), quote_ident(&m.member_column));
    let insert = if unique_pair {
        format!("INSERT OR IGNORE INTO {join} ({gq}, {mq}) VALUES (?1, ?2)")
    } else {
        format!(
            "INSERT INTO {join} ({gq}, {mq}) SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM {join} WHERE {gq} = ?1 AND {mq} = ?2)"
        )
    };
    Ok((
        MembersSql {
            select: format!("SELECT {mq} FROM {join} WHERE {gq} = ?1 ORDER BY {mq}"),
            delete_one: format!("DELETE FROM {join} WHERE {gq} = ?1 AND {mq} = ?2"),
            clear: format!("DELETE FROM {join} WHERE {gq} = ?1"),
            exists: format!(
                "SELECT 1 FROM {} WHERE {} = ?1",
                quote_ident(&m.member_table),
                quote_ident(&m.member_key)
            ),
            insert,
            join,
            group: gq,
            member: mq,
            member_int,
        },
        unique_pair,
    ))
}

// === impl SqliteTable ===

/// Prebuilt SQL of one mapped table.
struct TableSql {
    table: String,
    key: String,
    key_int: bool,
    /// The sidecar generates the key (a UUID) because nothing else does.
    key_uuid: bool,
    raw_cols: Vec<String>,
    col_names: Vec<String>,
    columns: Vec<Column>,
    select_list: String,
    returning: String,
    select_by_key: String,
    /// Fields whose uniqueness no index guarantees: checked inside each write.
    unique_checks: Vec<(usize, bool)>,
    members: Option<MembersSql>,
    member_of: Vec<(String, String)>,
}

struct MembersSql {
    join: String,
    group: String,
    member: String,
    member_int: bool,
    select: String,
    insert: String,
    delete_one: String,
    clear: String,
    exists: String,
}

struct SqliteTable {
    pool: Arc<Pool>,
    sql: Arc<TableSql>,
}

impl TableSql {
    fn shape(&self) -> Shape<'_> {
        Shape {
            table: &self.table,
            key: "t.__key__",
            int_key: self.key_int,
            columns: &self.columns,
            members: self.members.as_ref().map(|m| {
                (
                    m.join.as_str(),
                    m.group.as_str(),
                    m.member.as_str(),
                    m.member_int,
                )
            }),
        }
    }

    fn err(&self, e: rusqlite::Error) -> BackendError {
        error(e, &self.col_names)
    }

    fn read_row(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        let key = key_string(r.get_ref(0)?);
        let mut values = Vec::with_capacity(self.raw_cols.len());
        for i in 0..self.raw_cols.len() {
            values.push(from_ref(r.get_ref(i + 1)?));
        }
        Ok(Row {
            key,
            values,
            members: None,
        })
    }

    fn fetch(&self, c: &Connection, key: &Value) -> Result<Option<Row>, BackendError> {
        let mut st = c
            .prepare_cached(&self.select_by_key)
            .map_err(|e| self.err(e))?;
        let mut rows = st.query([key]).map_err(|e| self.err(e))?;
        match rows.next().map_err(|e| self.err(e))? {
            Some(r) => Ok(Some(self.read_row(r).map_err(|e| self.err(e))?)),
            None => Ok(None),
        }
    }

    /// `UPDATE table SET field = value, … WHERE key = ?`.
    fn set_fields(
        &self,
        c: &Connection,
        set: &[(usize, Value)],
        key: &Value,
    ) -> Result<(), BackendError> {
        let assigns: Vec<String> = set
            .iter()
            .enumerate()
            .map(|(n, (i, _))| format!("{} = ?{}", self.raw_cols[*i], n + 1))
            .collect();
        let text = format!(
            "UPDATE {} SET {} WHERE {} = ?{}",
            self.table,
            assigns.join(", "),
            self.key,
            set.len() + 1
        );
        let mut params: Vec<&dyn ToSql> = set.iter().map(|(_, v)| v as &dyn ToSql).collect();
        params.push(key);
        c.prepare_cached(&text)
            .and_then(|mut st| st.execute(params.as_slice()))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn members_of(&self, c: &Connection, key: &Value) -> Result<Option<Vec<String>>, BackendError> {
        let Some(m) = &self.members else {
            return Ok(None);
        };
        let mut st = c.prepare_cached(&m.select).map_err(|e| self.err(e))?;
        let ids = st
            .query_map([key], |r| Ok(key_string(r.get_ref(0)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(|e| self.err(e))?;
        Ok(Some(ids))
    }

    /// Refuses the write when another row already holds a value that must be unique.
    fn check_unique(
        &self,
        c: &Connection,
        values: &[(usize, &Value)],
        except: Option<&Value>,
    ) -> Result<(), BackendError> {
        for &(i, fold) in &self.unique_checks {
            let Some((_, v)) = values.iter().find(|(j, _)| *j == i) else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            let coll = if fold { " COLLATE NOCASE" } else { "" };
            let mut q = format!(
                "SELECT 1 FROM {} WHERE {} = ?1{coll}",
                self.table, self.raw_cols[i]
            );
            if except.is_some() {
                q.push_str(&format!(" AND {} <> ?2", self.key));
            }
            q.push_str(" LIMIT 1");
            let mut st = c.prepare_cached(&q).map_err(|e| self.err(e))?;
            let taken = match except {
                Some(k) => st.exists(rusqlite::params![v, k]),
                None => st.exists([v]),
            }
            .map_err(|e| self.err(e))?;
            if taken {
                return Err(BackendError::Conflict {
                    field: Some(i),
                    detail: format!("another row has the same {}", self.col_names[i]),
                });
            }
        }
        Ok(())
    }

    fn change_members(
        &self,
        c: &Connection,
        group: &Value,
        changes: &[MemberChange],
    ) -> Result<(), BackendError> {
        let Some(m) = &self.members else {
            return if changes.is_empty() {
                Ok(())
            } else {
                Err(BackendError::Internal(
                    "membership change on a table without members".into(),
                ))
            };
        };
        for change in changes {
            match change {
                MemberChange::Add(ids) => self.add_members(c, m, group, ids)?,
                MemberChange::Replace(ids) => {
                    c.prepare_cached(&m.clear)
                        .and_then(|mut s| s.execute([group]))
                        .map_err(|e| self.err(e))?;
                    self.add_members(c, m, group, ids)?;
                }
                MemberChange::Clear => {
                    c.prepare_cached(&m.clear)
                        .and_then(|mut s| s.execute([group]))
                        .map_err(|e| self.err(e))?;
                }
                MemberChange::Remove(ids) => {
                    let mut st = c.prepare_cached(&m.delete_one).map_err(|e| self.err(e))?;
                    for id in ids {
                        if let Some(v) = key_value(id, m.member_int) {
                            st.execute(rusqlite::params![group, v])
                                .map_err(|e| self.err(e))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn add_members(
        &self,
        c: &Connection,
        m: &MembersSql,
        group: &Value,
        ids: &[String],
    ) -> Result<(), BackendError> {
        let mut exists = c.prepare_cached(&m.exists).map_err(|e| self.err(e))?;
        let mut values = Vec::with_capacity(ids.len());
        let mut unknown = Vec::new();
        for id in ids {
            match key_value(id, m.member_int) {
                Some(v) if exists.exists([&v]).map_err(|e| self.err(e))? => values.push(v),
                _ => unknown.push(id.as_str()),
            }
        }
        if !unknown.is_empty() {
            let shown: Vec<String> = unknown.iter().take(5).map(|s| format!("'{s}'")).collect();
            let more = if unknown.len() > 5 {
                format!(" and {} more", unknown.len() - 5)
            } else {
                String::new()
            };
            return Err(BackendError::Rejected {
                field: None,
                detail: format!("members {}{more} do not exist", shown.join(", ")),
            });
        }
        let mut ins = c.prepare_cached(&m.insert).map_err(|e| self.err(e))?;
        for v in &values {
            ins.execute(rusqlite::params![group, v])
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Table for SqliteTable {
    async fn insert(
        &self,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        let sql = self.sql.clone();
        self.pool
            .write(move |c| {
                let tx = Tx::begin(c, true).map_err(|e| sql.err(e))?;
                let indexed: Vec<(usize, &Value)> = values.iter().enumerate().collect();
                sql.check_unique(&tx, &indexed, None)?;
                let mut cols = Vec::new();
                let mut params = Vec::new();
                if sql.key_uuid {
                    cols.push(sql.key.clone());
                    params.push(Value::Text(uuid_v4()?));
                }
                for (i, v) in values.iter().enumerate() {
                    if !v.is_null() {
                        cols.push(sql.raw_cols[i].clone());
                        params.push(v.clone());
                    }
                }
                let text = if cols.is_empty() {
                    format!(
                        "INSERT INTO {} DEFAULT VALUES RETURNING {}",
                        sql.table, sql.returning
                    )
                } else {
                    let marks: Vec<String> = (1..=cols.len()).map(|n| format!("?{n}")).collect();
                    format!(
                        "INSERT INTO {} ({}) VALUES ({}) RETURNING {}",
                        sql.table,
                        cols.join(", "),
                        marks.join(", "),
                        sql.returning
                    )
                };
                let mut row = {
                    let mut st = tx.prepare_cached(&text).map_err(|e| sql.err(e))?;
                    st.query_row(rusqlite::params_from_iter(params.iter()), |r| {
                        sql.read_row(r)
                    })
                    .map_err(|e| sql.err(e))?
                };
                let key = key_value(&row.key, sql.key_int).unwrap_or(Value::Null);
                if !members.is_empty() {
                    sql.change_members(&tx, &key, &[MemberChange::Add(members)])?;
                }
                if load_members {
                    row.members = sql.members_of(&tx, &key)?;
                }
                tx.commit().map_err(|e| sql.err(e))?;
                Ok(row)
            })
            .await
    }

    async fn fetch(&self, key: &str, members: bool) -> Result<Option<Row>, BackendError> {
        let sql = self.sql.clone();
        let Some(key) = key_value(key, sql.key_int) else {
            return Ok(None);
        };
        self.pool
            .read(move |c| {
                let tx = Tx::begin(c, false).map_err(|e| sql.err(e))?;
                let mut row = sql.fetch(&tx, &key)?;
                if let (Some(r), true) = (row.as_mut(), members) {
                    r.members = sql.members_of(&tx, &key)?;
                }
                Ok(row)
            })
            .await
    }

    async fn search(&self, search: Search) -> Result<Found, BackendError> {
        let sql = self.sql.clone();
        self.pool
            .read(move |c| {
                let tx = Tx::begin(c, false).map_err(|e| sql.err(e))?;
                let key_q = format!("t.{}", sql.key);
                let shape = Shape {
                    key: &key_q,
                    ..sql.shape()
                };
                let mut filter = Sql::default();
                compile_predicate(D, &shape, &search.predicate, &mut filter);
                let count = |tx: &Tx<'_>| -> Result<u64, BackendError> {
                    let q = format!("SELECT count(*) FROM {} t WHERE {}", sql.table, filter.text);
                    let mut st = tx.prepare_cached(&q).map_err(|e| sql.err(e))?;
                    st.query_row(rusqlite::params_from_iter(filter.params.iter()), |r| {
                        r.get::<_, i64>(0)
                    })
                    .map(|n| u64::try_from(n).unwrap_or(0))
                    .map_err(|e| sql.err(e))
                };
                if search.limit == 0 {
                    return Ok(Found {
                        total: count(&tx)?,
                        rows: Vec::new(),
                    });
                }
                let mut q = filter.clone();
                q.text = format!(
                    "SELECT {} FROM {} t WHERE {}",
                    sql.select_list, sql.table, q.text
                );
                order_by(D, &shape, &search.sort, &mut q);
                // LIMIT and OFFSET are integers the sidecar computed, never client text, and
                // are written as literals: bound, they make SQLite re-prepare the statement on
                // every step (the limit can change the plan), a full SQL parse per request.
                q.push(&format!(
                    " LIMIT {} OFFSET {}",
                    i64::try_from(search.limit).unwrap_or(i64::MAX),
                    i64::try_from(search.offset).unwrap_or(i64::MAX)
                ));
                let mut rows = {
                    let mut st = tx.prepare_cached(&q.text).map_err(|e| sql.err(e))?;
                    st.query_map(rusqlite::params_from_iter(q.params.iter()), |r| {
                        sql.read_row(r)
                    })
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Row>>>())
                    .map_err(|e| sql.err(e))?
                };
                // The common case (a lookup by userName, a short list) needs no count query.
                let total = if search.offset == 0 && (rows.len() as u64) < search.limit {
                    rows.len() as u64
                } else {
                    count(&tx)?
                };
                if search.members {
                    for r in &mut rows {
                        let key = key_value(&r.key, sql.key_int).unwrap_or(Value::Null);
                        r.members = sql.members_of(&tx, &key)?;
                    }
                }
                Ok(Found { total, rows })
            })
            .await
    }

    async fn update(
        &self,
        key: &str,
        load_members: bool,
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        let sql = self.sql.clone();
        let Some(key) = key_value(key, sql.key_int) else {
            return Err(BackendError::NotFound);
        };
        self.pool
            .write(move |c| {
                let tx = Tx::begin(c, true).map_err(|e| sql.err(e))?;
                let current = sql.fetch(&tx, &key)?.ok_or(BackendError::NotFound)?;
                let Change { set, members } = edit(&current)?;
                if !set.is_empty() {
                    let refs: Vec<(usize, &Value)> = set.iter().map(|(i, v)| (*i, v)).collect();
                    sql.check_unique(&tx, &refs, Some(&key))?;
                    sql.set_fields(&tx, &set, &key)?;
                }
                sql.change_members(&tx, &key, &members)?;
                let mut row = sql.fetch(&tx, &key)?.ok_or(BackendError::NotFound)?;
                if load_members {
                    row.members = sql.members_of(&tx, &key)?;
                }
                tx.commit().map_err(|e| sql.err(e))?;
                Ok(row)
            })
            .await
    }

    async fn delete(
        &self,
        key: &str,
        mode: DeleteMode,
        check: CheckFn,
    ) -> Result<(), BackendError> {
        let sql = self.sql.clone();
        let Some(key) = key_value(key, sql.key_int) else {
            return Err(BackendError::NotFound);
        };
        self.pool
            .write(move |c| {
                let tx = Tx::begin(c, true).map_err(|e| sql.err(e))?;
                let current = sql.fetch(&tx, &key)?.ok_or(BackendError::NotFound)?;
                check(&current)?;
                match mode {
                    DeleteMode::Hard => {
                        for (t, col) in &sql.member_of {
                            let q = format!("DELETE FROM {t} WHERE {col} = ?1");
                            tx.prepare_cached(&q)
                                .and_then(|mut s| s.execute([&key]))
                                .map_err(|e| sql.err(e))?;
                        }
                        if let Some(m) = &sql.members {
                            tx.prepare_cached(&m.clear)
                                .and_then(|mut s| s.execute([&key]))
                                .map_err(|e| sql.err(e))?;
                        }
                        let q = format!("DELETE FROM {} WHERE {} = ?1", sql.table, sql.key);
                        tx.prepare_cached(&q)
                            .and_then(|mut s| s.execute([&key]))
                            .map_err(|e| sql.err(e))?;
                    }
                    DeleteMode::Soft(set) => sql.set_fields(&tx, &set, &key)?,
                }
                tx.commit().map_err(|e| sql.err(e))?;
                Ok(())
            })
            .await
    }
}

/// A random (version 4) UUID, for text keys nothing else generates.
fn uuid_v4() -> Result<String, BackendError> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| BackendError::Internal("no randomness for a new key".into()))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Declared SQLite types map to field types, with varchar lengths.
    #[test]
    fn types() {
        assert_eq!(
            field_type("VARCHAR(64)"),
            FieldType::Text { max_len: Some(64) }
        );
        assert_eq!(field_type("integer"), FieldType::Integer);
        assert_eq!(field_type("BOOLEAN"), FieldType::Boolean);
        assert_eq!(field_type("DATETIME"), FieldType::Timestamp);
        assert_eq!(field_type("decimal(10,2)"), FieldType::Real);
        assert_eq!(field_type(""), FieldType::Text { max_len: None });
        let u = uuid_v4().expect("uuid");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
