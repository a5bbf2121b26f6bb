//! The SQLite backend: the quickstart's embedded store, and a real target for apps that keep
//! their users in an SQLite file.
//!
//! One writer connection and a few reader connections in WAL mode: reads never wait for
//! writes, and writes are serialised by the sidecar (no `SQLITE_BUSY` storms between its own
//! connections). Every write runs inside a `BEGIN IMMEDIATE` transaction, so a
//! check-then-write (a uniqueness check without an index, a member existence check) cannot
//! race another write of the sidecar; writes queued together share one, each in a savepoint
//! of its own ([`Writer`]). rusqlite is synchronous: writes run on the writer's own thread,
//! in order; reads run on the request's own thread while they stay quick, else on tokio's
//! blocking pool ([`Pool::read`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use tokio::sync::Semaphore;

use serde::Deserialize;

use super::config::RelSpec;
use super::model::{self, Catalog, ColumnInfo, Model, TableInfo, UniqueInfo};
use super::ops::{self, Conn, run_ready};
use super::state::{Exec, SqlStateStore};
use super::{Dialect, Param, Sql, Tap};
use crate::backend::state::StateStore;
use crate::backend::{
    Backend, BackendError, CheckFn, DeleteMode, EditFn, FieldType, Found, Loc, Opened, Refused,
    Row, Search, SpecPart, SpecProblem, StoreConfig, StoreKind, Table, TableSpec, Value,
};
use crate::config::Cx;
use crate::config::raw::{NumOrStr, RawValue, S};

// === The kind ===

/// `type = "sqlite"`: an SQLite database file.
pub struct Sqlite;

/// `[backend.NAME]` of type `sqlite`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSqlite {
    #[serde(rename = "type")]
    _kind: S,
    path: Option<S>,
    create_from: Option<S>,
    readers: Option<NumOrStr>,
    busy_timeout: Option<S>,
}

/// An SQLite backend's settings.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// The database file.
    pub path: PathBuf,
    /// Schema to create it from when it does not exist.
    pub create_from: Option<PathBuf>,
    /// Reader connections.
    pub readers: usize,
    /// How long a write waits for a lock held by another process before it fails (503).
    pub busy_timeout: Duration,
}

impl StoreKind for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn backend(
        &self,
        name: &str,
        raw: &RawValue<'_>,
        cx: &mut Cx<'_>,
    ) -> Option<Arc<dyn StoreConfig>> {
        let o = cx.origin(raw.span());
        let b: RawSqlite = cx.deserialize(raw, &format!("[backend.{name}]"))?;
        let Some(path) = b.path.as_ref().and_then(|p| cx.path(p, "backend path")) else {
            cx.error(
                &o,
                format!("[backend.{name}] needs path = \"<database file>\""),
                None,
            );
            return None;
        };
        let create_from = b
            .create_from
            .as_ref()
            .and_then(|p| cx.path(p, "backend create_from"));
        if let (Some(c), Some(s)) = (&create_from, &b.create_from) {
            if !c.exists() {
                let so = cx.origin(s.span());
                cx.error(
                    &so,
                    format!("schema file {} does not exist", c.display()),
                    None,
                );
            }
        }
        let readers = cx.number(&b.readers, &o, "backend readers", (1, 64), 4) as usize;
        let busy_timeout = cx.duration(
            &b.busy_timeout,
            "backend busy_timeout",
            Duration::from_secs(5),
        );
        Some(Arc::new(SqliteConfig {
            path,
            create_from,
            readers,
            busy_timeout,
        }))
    }

    super::config::sql_addressing!();
}

#[async_trait]
impl StoreConfig for SqliteConfig {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn holds_state(&self) -> bool {
        true
    }

    fn rolls_back(&self) -> bool {
        true
    }

    fn shared(&self) -> Result<(), String> {
        Err(format!(
            "SQLite file {} is local to one machine",
            self.path.display()
        ))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn create_for_state(&self) -> Result<Option<String>, String> {
        if self.create_from.is_some() {
            // Made from its schema when it is opened.
            return Ok(None);
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
        {
            Ok(_) => Ok(Some(format!(
                "created the empty database {}",
                self.path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(format!("cannot create {}: {e}", self.path.display())),
        }
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Backend>, String> {
        let c = self.clone();
        let name = name.to_owned();
        // Opening reads (and may create) the file: blocking work.
        tokio::task::spawn_blocking(move || {
            SqliteBackend::open(
                &name,
                &c.path,
                c.create_from.as_deref(),
                c.readers,
                c.busy_timeout,
            )
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
        })
        .await
        .map_err(|e| format!("opening the database failed: {e}"))?
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Bool(b) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(i64::from(*b))),
            Value::Int(i) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Owned(rusqlite::types::Value::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
            // A column holds one value: several are stored as their JSON array.
            Value::List(items) => ToSqlOutput::Owned(rusqlite::types::Value::Text(
                serde_json::Value::from(
                    items.iter().map(model::value_text).collect::<Vec<String>>(),
                )
                .to_string(),
            )),
        })
    }
}

fn from_ref(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(text(t)),
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    }
}

/// SQLite text as a `String`; bytes that are not UTF-8 (SQLite does not check) become U+FFFD.
/// Checked with `from_utf8` first: `from_utf8_lossy`'s chunked walk cost 2 % of a filter.
fn text(t: &[u8]) -> String {
    match std::str::from_utf8(t) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(t).into_owned(),
    }
}

fn key_string(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => String::new(),
        ValueRef::Text(t) | ValueRef::Blob(t) => text(t),
        other => model::value_text(&from_ref(other)),
    }
}

// === Pool ===

/// One writer thread and `n` reader connections (behind a semaphore, so waiting is async).
struct Pool {
    writer: Writer,
    readers: Arc<Mutex<Vec<Connection>>>,
    read_gate: Arc<Semaphore>,
}

/// A write: runs on the writer thread with its connection.
type WriteJob = Box<dyn FnOnce(&mut Connection) -> Done + Send>;

/// What a write leaves the writer: whether it succeeded (a failed one's changes are undone
/// before the next write runs), and how to answer its caller once the transaction it ran in
/// has committed, or failed to (`Err` says why).
struct Done {
    ok: bool,
    answer: Answer,
}

/// Answers a write's caller, given whether its transaction committed (`Err` says why not).
type Answer = Box<dyn FnOnce(Result<(), &str>) + Send>;

/// At most this many queued writes share one transaction.
const BATCH: usize = 32;

/// The savepoint each write of a shared transaction runs in ([`Writer`]): begun, released,
/// and rolled back to.
macro_rules! savepoint {
    ($verb:literal) => {
        concat!($verb, " scim_sidecar_write")
    };
}

/// The thread that owns the writer connection and runs the writes in the order they were
/// queued, back to back.
///
/// Why a thread of its own: writes are serialised, so the next one can only start when the
/// one before it has finished. With the connection behind a semaphore and each write on
/// tokio's blocking pool, the gap between two writes was a wake-up of the next writer's
/// request on its shard, which had to wait its turn among that shard's connections before
/// it handed its write to a blocking thread: on one busy shard that gap cost PATCH a fifth
/// of its throughput (`benches/load.rs`). Here the next write is already queued when the
/// last one commits. The thread ends when the pool is dropped, after the queued writes.
///
/// A write found alone in the queue runs in its own transaction ([`Tx`]). Writes queued
/// together (up to [`BATCH`]) share one: `BEGIN IMMEDIATE`, each write in a savepoint of its
/// own, released when it succeeds and rolled back when it fails or panics, then one
/// `COMMIT`, and only then are their callers answered. Each write still sees the ones before
/// it and is refused or kept on its own: a failed write undoes only itself, and [`Tx::commit`]
/// checks the deferred foreign keys a `COMMIT` of its own would have. Under load most
/// commits were of one row's few pages, each a WAL append with its checksums, a wal-index
/// update and a wake-up of this thread: shared, they cost the writer a fraction of that per
/// write (`benches/load.rs`). A batch whose `COMMIT` fails (a full disk) answers each of its
/// writes with that error, and nothing of any of them is kept.
struct Writer {
    jobs: std::sync::mpsc::Sender<WriteJob>,
}

impl Writer {
    fn start(mut conn: Connection) -> std::io::Result<Writer> {
        let (jobs, queue) = std::sync::mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name("scim-sidecar-sqlite-writer".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(&mut conn, batch);
                }
            })?;
        Ok(Writer { jobs })
    }
}

/// Runs queued writes, in one transaction when there are several ([`Writer`]). When that
/// transaction cannot start (another process holds the write lock past the busy timeout),
/// each write runs in its own, and reports its own error.
fn run_batch(conn: &mut Connection, jobs: Vec<WriteJob>) {
    let shared = jobs.len() > 1 && run(conn, "BEGIN IMMEDIATE").is_ok();
    let mut answers = Vec::with_capacity(if shared { jobs.len() } else { 0 });
    for job in jobs {
        if shared && run(conn, savepoint!("SAVEPOINT")).is_err() {
            // Cannot happen with the transaction open; the job's sender drops: an error.
            continue;
        }
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn)));
        let ok = matches!(&ran, Ok(done) if done.ok);
        if shared {
            // A write that failed or panicked (its caller gets an error) is undone alone.
            if !ok {
                let _ = run(conn, savepoint!("ROLLBACK TO"));
            }
            let _ = run(conn, savepoint!("RELEASE"));
        } else if ran.is_err() && !conn.is_autocommit() {
            // It panicked inside its own transaction: end it, so the next write starts clean.
            let _ = run(conn, "ROLLBACK");
        }
        match ran {
            Ok(done) if shared => answers.push(done.answer),
            Ok(done) => (done.answer)(Ok(())),
            Err(_) => {}
        }
    }
    if shared {
        let committed = run(conn, "COMMIT").map_err(|e| {
            let _ = run(conn, "ROLLBACK");
            e.to_string()
        });
        for answer in answers {
            answer(committed.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
}

/// Runs one of the writer's own statements (cached: the same few, on every batch).
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

impl Pool {
    async fn write<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |c| {
            // A request that stopped waiting while its write was queued (its deadline passed
            // and it answered 503, or its client went away) has its write skipped: what the
            // client was told failed is not written after all.
            if tx.is_closed() {
                return Done {
                    ok: true,
                    answer: Box::new(|_| {}),
                };
            }
            let out = f(c);
            Done {
                ok: out.is_ok(),
                answer: Box::new(move |committed| {
                    let out = match committed {
                        Err(why) if out.is_ok() => Err(BackendError::Unavailable(format!(
                            "the write was not committed: {why}"
                        ))),
                        _ => out,
                    };
                    let _ = tx.send(out);
                }),
            }
        });
        self.writer.jobs.send(job).map_err(|_| closed())?;
        rx.await
            .map_err(|_| BackendError::Internal("store task failed: the write panicked".into()))?
    }

    /// Runs a read on the caller's thread when a reader connection is free, and stops it
    /// there once it has run about [`INLINE_BUDGET`] SQLite instructions (its statement
    /// fails with `SQLITE_INTERRUPT`, and is rolled back): then it runs again, from the
    /// start, on tokio's blocking pool, without a limit. A read answered from an index (a
    /// filter by userName, a read by id) costs less than the hand-off to another thread,
    /// which is a wake-up and two context switches: that hand-off was a fifth of the
    /// quickstart filter's CPU (`benches/load.rs`). A scan or a large group is stopped after
    /// a fraction of a millisecond, so the shard's other connections never wait longer.
    async fn read<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&mut Connection) -> Result<T, BackendError> + Send + 'static,
    {
        if let Ok(permit) = self.read_gate.clone().try_acquire_owned() {
            let taken = self.readers.lock().map_err(|_| poisoned())?.pop();
            if let Some(mut conn) = taken {
                let (out, stopped) = Budget::run(|| f(&mut conn));
                // A stop may have come in the ROLLBACK that ended the read, too.
                if stopped && !conn.is_autocommit() {
                    let _ = run(&conn, "ROLLBACK");
                }
                self.readers.lock().map_err(|_| poisoned())?.push(conn);
                drop(permit);
                if !stopped {
                    return out;
                }
            }
        }
        self.read_elsewhere(f).await
    }

    /// Runs a read on tokio's blocking pool, without an instruction budget.
    async fn read_elsewhere<T, F>(&self, f: F) -> Result<T, BackendError>
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

/// How many SQLite virtual-machine instructions a read may run on the request's own thread
/// ([`Pool::read`]): a lookup by an index runs a few hundred; this many take 0.1–0.3 ms.
const INLINE_BUDGET: u32 = 20_000;

/// Every reader connection calls [`Budget::check`] every this many instructions of a
/// statement. SQLite counts a cached statement's instructions across its runs, so a quick
/// statement calls it now and then too: the budget counts the calls of the whole read, and
/// one such call does not stop it.
const CHECK_EVERY: u32 = 1_000;

thread_local! {
    /// The read on this thread under [`INLINE_BUDGET`]: the checks it has made (`None`: no
    /// budget). Past [`INLINE_BUDGET`] / [`CHECK_EVERY`], every check stops its statement.
    static CHECKS: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// The instruction budget of reads run on the request's thread. Only on a thread inside
/// [`Budget::run`] does [`Budget::check`] stop a statement.
struct Budget;

impl Budget {
    /// Runs `f` under the budget: its result, and whether a statement was stopped.
    fn run<T>(f: impl FnOnce() -> T) -> (T, bool) {
        struct Off;
        impl Drop for Off {
            fn drop(&mut self) {
                CHECKS.set(None);
            }
        }
        CHECKS.set(Some(0));
        let off = Off;
        let out = f();
        let stopped = CHECKS.get().is_some_and(Self::over);
        drop(off);
        (out, stopped)
    }

    /// SQLite's progress handler: `true` stops the statement.
    fn check() -> bool {
        let Some(n) = CHECKS.get() else {
            return false;
        };
        CHECKS.set(Some(n + 1));
        Self::over(n + 1)
    }

    fn over(checks: u32) -> bool {
        checks > INLINE_BUDGET / CHECK_EVERY
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
            rusqlite::ffi::SQLITE_CONSTRAINT_NOTNULL => {
                super::refused(field, "a value is required", &msg)
            }
            rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => super::refused(
                None,
                "a value refers to a row that does not exist in the application (e.g. a manager id)",
                &msg,
            ),
            rusqlite::ffi::SQLITE_CONSTRAINT_CHECK => super::refused(
                field.or_else(|| super::field_mentioned(&msg, columns)),
                "the application does not accept this value (one of its CHECK constraints refuses it)",
                &msg,
            ),
            _ => super::refused(field, "the application's database refused the value", &msg),
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
///
/// Begun inside the writer's shared transaction ([`Writer`]), it is the write's savepoint
/// there: committing it checks what a `COMMIT` would, and dropping it uncommitted rolls the
/// write back to its savepoint.
struct Tx<'c> {
    conn: &'c Connection,
    open: bool,
    /// In the writer's shared transaction, not a transaction of its own.
    shared: bool,
}

impl<'c> Tx<'c> {
    /// `BEGIN IMMEDIATE` for writes (take the write lock now, so check-then-write cannot race
    /// another writer), `BEGIN` for reads (one snapshot for the page and its count).
    fn begin(conn: &'c Connection, immediate: bool) -> rusqlite::Result<Self> {
        let shared = !conn.is_autocommit();
        if !shared {
            run(
                conn,
                if immediate {
                    "BEGIN IMMEDIATE"
                } else {
                    "BEGIN"
                },
            )?;
        }
        Ok(Tx {
            conn,
            open: true,
            shared,
        })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        if !self.shared {
            run(self.conn, "COMMIT")?;
        } else if deferred_violations(self.conn) > 0 {
            // What this write's own COMMIT would have refused (the count was 0 before it).
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some("FOREIGN KEY constraint failed".into()),
            ));
        }
        self.open = false;
        Ok(())
    }
}

/// The open transaction's deferred foreign-key violations: what its `COMMIT` would refuse.
fn deferred_violations(conn: &Connection) -> i32 {
    let (mut now, mut high) = (0, 0);
    // SAFETY: the handle is `conn`'s open database, used on this thread only for the call;
    // sqlite3_db_status reads a counter into the two integers it is given.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_DEFERRED_FKS,
            &mut now,
            &mut high,
            0,
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        now
    } else {
        0
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
            let _ = if self.shared {
                run(self.conn, savepoint!("ROLLBACK TO"))
            } else {
                run(self.conn, "ROLLBACK")
            };
        }
    }
}

// === impl SqliteBackend ===

/// An SQLite database file.
pub struct SqliteBackend {
    name: String,
    path: PathBuf,
    pool: Arc<Pool>,
    /// How long a write waits for another process's lock, plus time for the work.
    deadline: Duration,
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
                    "SQLite database {} does not exist (set `path` to the app's database file, or `create_from` to an SQL schema to create it; for one that holds only the sidecar's own state, `scim-sidecar migrate` creates it)",
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
        // SQLite's automatic checkpoint (every 1000 WAL pages) stays: it runs in the commit
        // that crosses the threshold, completes, and lets the WAL restart, so the WAL stays
        // ~4 MiB. (A background PASSIVE checkpointer was measured: it cannot finish while
        // writes keep coming, and tails got no better.) After an unusually large transaction
        // the file is truncated back to this size.
        let _ = writer
            .pragma_update_and_check(None, "journal_size_limit", 64 << 20, |r| r.get::<_, i64>(0));
        let writer = Writer::start(writer)
            .map_err(|e| format!("cannot start the SQLite writer thread: {e}"))?;
        let pool = Arc::new(Pool {
            writer,
            readers: Arc::new(Mutex::new(pool)),
            read_gate: Arc::new(Semaphore::new(n)),
        });
        Ok(SqliteBackend {
            name: name.to_owned(),
            path: path.to_owned(),
            pool,
            deadline: busy_timeout + Duration::from_secs(5),
        })
    }
}

fn connect(path: &Path, flags: OpenFlags, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let mut c = Connection::open_with_flags(path, flags)?;
    c.busy_timeout(busy_timeout)?;
    if flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY) {
        c.progress_handler(CHECK_EVERY as std::ffi::c_int, Some(Budget::check))?;
    } else {
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

    /// A write may wait `busy_timeout` for the app's own lock; a few seconds more for a disk
    /// that stalls.
    fn deadline(&self) -> Duration {
        self.deadline
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.pool
            .read(|c| {
                c.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(|e| error(e, &[]))
            })
            .await
    }

    async fn open_table(&self, spec: TableSpec) -> Result<Opened, Refused> {
        let spec = super::config::rel_spec(&spec, KEPT_TABLE)?;
        let path = self.path.clone();
        let names: Vec<String> = spec.fields.iter().map(|f| f.column().to_owned()).collect();
        let cat = self
            .pool
            .read_elsewhere(move |c| {
                catalog(c, &spec, &path)
                    .map(|cat| (cat, spec))
                    .map_err(|e| error(e, &[]))
            })
            .await;
        let (cat, spec) = cat.map_err(|e| {
            vec![SpecProblem {
                part: SpecPart::Table,
                message: format!("cannot inspect the database: {e}"),
                fix: None,
                warning: false,
            }]
        })?;
        // Hooks are prepared (never run) against the live database.
        let stmts = model::hook_statements(Dialect::Sqlite, &spec);
        let problems = self
            .pool
            .read_elsewhere(move |c| {
                Ok(stmts
                    .into_iter()
                    .filter_map(|(origin, sql, shown)| {
                        let e = c.prepare(sql.text()).err()?;
                        Some(model::unprepared(origin, &shown, &e.to_string()))
                    })
                    .collect::<Vec<_>>())
            })
            .await
            .unwrap_or_default();
        let (m, fields, warnings) = match Model::build(Dialect::Sqlite, &spec, &cat) {
            Ok(built) if problems.is_empty() => built,
            Ok((_, fields, _)) => return Err(Refused { problems, fields }),
            Err(mut refused) => {
                refused.problems.extend(problems);
                return Err(refused);
            }
        };
        let mut warnings = warnings;
        let checks: Vec<(usize, Sql)> = m
            .unique_checks
            .iter()
            .filter_map(|&(i, fold)| Some((i, m.duplicates(i, fold)?)))
            .collect();
        // Advice only: a failure here must not keep the sidecar down.
        let counts = self
            .pool
            .read_elsewhere(move |c| {
                Ok(checks
                    .into_iter()
                    .map(|(i, sql)| {
                        let n: u64 = strings(c, &sql, &[])
                            .ok()
                            .and_then(|r| r.first()?.first()?.parse().ok())
                            .unwrap_or(0);
                        (i, n)
                    })
                    .collect::<Vec<_>>())
            })
            .await
            .unwrap_or_default();
        for (i, n) in counts {
            if n > 0 {
                warnings.push(model::duplicates_warning(i, &names[i], n));
            }
        }
        Ok(Opened {
            table: Arc::new(SqliteTable {
                pool: self.pool.clone(),
                m: Arc::new(m),
                names: Arc::new(names),
                store: Arc::from(self.name.as_str()),
            }),
            fields,
            warnings,
        })
    }

    fn state(&self) -> Option<Arc<dyn StateStore>> {
        Some(Arc::new(SqlStateStore {
            exec: SqliteExec {
                pool: self.pool.clone(),
                store: Arc::from(self.name.as_str()),
            },
            d: Dialect::Sqlite,
            table: super::quote_ident(KEPT_TABLE),
            shown: format!("[backend.{}] ({})", self.name, self.path.display()),
        }))
    }

    async fn migrate(&self) -> Result<Vec<String>, BackendError> {
        self.pool
            .write(|c| {
                let existed: bool = c
                    .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1", [KEPT_TABLE], |r| r.get::<_, i64>(0))
                    .map(|n| n > 0)
                    .map_err(|e| error(e, &[]))?;
                c.execute_batch(&format!(
                    "CREATE TABLE IF NOT EXISTS {KEPT_TABLE} (
                        resource_type TEXT NOT NULL,
                        resource_id   TEXT NOT NULL,
                        name          TEXT NOT NULL,
                        value         TEXT,
                        PRIMARY KEY (resource_type, resource_id, name)
                    );
                    CREATE INDEX IF NOT EXISTS {KEPT_TABLE}_value ON {KEPT_TABLE} (resource_type, name, value);"
                ))
                .map_err(|e| error(e, &[]))?;
                Ok(if existed { Vec::new() } else { vec![format!("created table {KEPT_TABLE}")] })
            })
            .await
    }
}

/// The state store's statements on the pool.
struct SqliteExec {
    pool: Arc<Pool>,
    /// The backend's name, for `explain`.
    store: Arc<str>,
}

impl Exec for SqliteExec {
    async fn write(&self, stmts: Vec<Sql>) -> Result<(), BackendError> {
        let tap = Tap::current(&self.store);
        self.pool
            .write(move |c| {
                let tx = Tx::begin(c, true).map_err(|e| error(e, &[]))?;
                if let Some(t) = &tap {
                    t.text("BEGIN IMMEDIATE");
                }
                for sql in &stmts {
                    if let Some(t) = &tap {
                        t.sql(sql);
                    }
                    let mut st = tx.prepare_cached(sql.text()).map_err(|e| error(e, &[]))?;
                    st.execute(rusqlite::params_from_iter(sql.params()))
                        .map_err(|e| error(e, &[]))?;
                }
                match &tap {
                    // Dropped uncommitted: rolled back.
                    Some(t) => {
                        t.text("ROLLBACK");
                        Ok(())
                    }
                    None => tx.commit().map_err(|e| error(e, &[])),
                }
            })
            .await
    }

    async fn read(&self, sql: Sql) -> Result<Vec<Vec<String>>, BackendError> {
        if let Some(t) = Tap::current(&self.store) {
            t.sql(&sql);
        }
        self.pool.read(move |c| strings(c, &sql, &[])).await
    }

    async fn read_by_key(&self, sql: Sql) -> Result<Vec<Vec<String>>, BackendError> {
        if let Some(t) = Tap::current(&self.store) {
            t.sql(&sql);
        }
        self.pool.read(move |c| strings(c, &sql, &[])).await
    }
}

// === Start-up checks ===

/// Reads what SQLite says about each table a spec needs.
fn catalog(c: &Connection, spec: &RelSpec, path: &Path) -> rusqlite::Result<Catalog> {
    let mut cat = Catalog {
        store: path.display().to_string(),
        kept_table: KEPT_TABLE.to_owned(),
        ..Default::default()
    };
    cat.all = c
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in model::tables_needed(spec) {
        let info = if name.contains('.') {
            None
        } else {
            table_info(c, &name)?
        };
        cat.tables.insert(name, info);
    }
    Ok(cat)
}

fn table_info(c: &Connection, table: &str) -> rusqlite::Result<Option<TableInfo>> {
    let create_sql: String = c
        .query_row(
            "SELECT coalesce(sql, '') FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE",
            [table],
            |r| r.get(0),
        )
        .unwrap_or_default();
    let mut st =
        c.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")?;
    let raw: Vec<(String, String, bool, Option<String>, i64)> = st
        .query_map([table], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                r.get::<_, i64>(2)? != 0,
                r.get::<_, Option<String>>(3)?,
                r.get(4)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if raw.is_empty() {
        return Ok(None);
    }
    let pks = raw.iter().filter(|c| c.4 > 0).count();
    let columns = raw
        .into_iter()
        .map(|(name, decl, notnull, default, pk)| {
            // INTEGER PRIMARY KEY is the rowid: SQLite generates it.
            let rowid = pk == 1 && pks == 1 && decl.eq_ignore_ascii_case("INTEGER");
            ColumnInfo {
                ci: declared_nocase(&create_sql, &name),
                charset: None,
                ty: field_type(&decl),
                cast: None,
                notnull: notnull && !rowid,
                has_default: default.is_some(),
                // The app's own schema text (never client data), bracketed.
                default_sql: default.map(|d| format!("({d})")),
                pk: pk > 0,
                generated: rowid,
                name,
            }
        })
        .collect();
    let mut uniques = Vec::new();
    let mut indexed = Vec::new();
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
    for (name, unique, partial) in list {
        let mut st = c.prepare(
            "SELECT name, coll FROM pragma_index_xinfo(?1) WHERE key = 1 ORDER BY seqno",
        )?;
        let cols: Vec<(Option<String>, String)> = st
            .query_map([&name], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?
                        .map(|n| n.to_ascii_lowercase()),
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let sql: String = c
            .query_row(
                "SELECT coalesce(sql, '') FROM sqlite_master WHERE type = 'index' AND name = ?1",
                [&name],
                |r| r.get(0),
            )
            .unwrap_or_default();
        indexed.push(
            cols.iter()
                .map(|c| c.0.clone().unwrap_or_default())
                .collect(),
        );
        if unique {
            uniques.push(UniqueInfo {
                fold: cols.len() == 1 && cols[0].1.eq_ignore_ascii_case("NOCASE"),
                lower_of: lower_of(&sql),
                columns: cols.into_iter().map(|(n, _)| n).collect(),
                partial,
                predicate: model::index_predicate(&sql),
            });
        }
    }
    // Single-column foreign keys of other tables pointing here.
    let mut st = c.prepare(
        "SELECT m.name, f.\"from\", upper(f.on_delete) FROM sqlite_master m
         JOIN pragma_foreign_key_list(m.name) f
         WHERE m.type = 'table' AND lower(f.\"table\") = lower(?1)
           AND (SELECT count(*) FROM pragma_foreign_key_list(m.name) g WHERE g.id = f.id) = 1",
    )?;
    let referenced_by = st
        .query_map([table], |r| {
            Ok(model::ForeignKey {
                table: r.get(0)?,
                column: r.get(1)?,
                handled: matches!(
                    r.get::<_, String>(2)?.as_str(),
                    "CASCADE" | "SET NULL" | "SET DEFAULT"
                ),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let info = TableInfo {
        columns,
        uniques,
        indexed,
        referenced_by,
    };
    let mut info = info;
    if let Some(pk) = info.columns.iter().find(|c| c.pk) {
        info.indexed.push(vec![pk.name.to_ascii_lowercase()]);
    }
    Ok(Some(info))
}

/// Whether `CREATE TABLE` declares column `name` with `COLLATE NOCASE`.
fn declared_nocase(create_sql: &str, name: &str) -> bool {
    let lower = create_sql.to_ascii_lowercase();
    let Some(body) = lower.find('(').map(|i| &lower[i + 1..]) else {
        return false;
    };
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, ch) in body.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' if depth == 0 => {
                parts.push(&body[start..i]);
                break;
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    let name = name.to_ascii_lowercase();
    parts.iter().any(|p| {
        let p = p.trim();
        let first = p
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_matches(['"', '`', '[', ']']);
        first == name && p.contains("collate nocase")
    })
}

/// The column of an expression index on `lower(column)`.
fn lower_of(index_sql: &str) -> Option<String> {
    let l = index_sql.to_ascii_lowercase();
    let i = l.find("lower(")?;
    let rest = &l[i + 6..];
    let end = rest.find(')')?;
    Some(
        rest[..end]
            .trim()
            .trim_matches(['"', '`', '[', ']'])
            .to_owned(),
    )
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

// === impl SqliteTable ===

/// The sidecar's own attribute table in SQLite (no schemas there).
const KEPT_TABLE: &str = "scim_sidecar_attributes";

struct SqliteTable {
    pool: Arc<Pool>,
    m: Arc<Model>,
    names: Arc<Vec<String>>,
    /// The backend's name, for `explain`.
    store: Arc<str>,
}

impl ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        match self {
            Param::Value(v) | Param::Inferred(v) => v.to_sql(),
            Param::TextArray(items) => Ok(ToSqlOutput::Owned(rusqlite::types::Value::Text(
                serde_json::to_string(items).unwrap_or_default(),
            ))),
        }
    }
}

/// Every row of a query, each column as text.
fn strings(c: &Connection, sql: &Sql, names: &[String]) -> Result<Vec<Vec<String>>, BackendError> {
    let mut st = c.prepare_cached(sql.text()).map_err(|e| error(e, names))?;
    let n = st.column_count();
    st.query_map(rusqlite::params_from_iter(sql.params()), |r| {
        (0..n).map(|i| Ok(key_string(r.get_ref(i)?))).collect()
    })
    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Vec<String>>>>())
    .map_err(|e| error(e, names))
}

/// A connection inside a transaction, as the shared flows use it. Every call blocks this
/// thread until SQLite answers, so the flows' futures are always ready ([`run_ready`]).
struct SqliteConn<'a> {
    c: &'a Connection,
    m: &'a Model,
    names: &'a [String],
    /// Set while `explain` runs the request.
    tap: Option<&'a Tap>,
}

impl SqliteConn<'_> {
    fn tap(&self, sql: &Sql) {
        if let Some(t) = self.tap {
            t.sql(sql);
        }
    }
}

impl Conn for SqliteConn<'_> {
    fn model(&self) -> &Model {
        self.m
    }

    fn names(&self) -> &[String] {
        self.names
    }

    async fn exec(&self, sql: &Sql) -> Result<u64, BackendError> {
        self.tap(sql);
        let mut st = self
            .c
            .prepare_cached(sql.text())
            .map_err(|e| error(e, self.names))?;
        st.execute(rusqlite::params_from_iter(sql.params()))
            .map(|n| n as u64)
            .map_err(|e| error(e, self.names))
    }

    async fn exec_insert(&self, sql: &Sql) -> Result<Option<i64>, BackendError> {
        self.exec(sql).await?;
        Ok(Some(self.c.last_insert_rowid()))
    }

    async fn rows(&self, sql: &Sql) -> Result<Vec<Row>, BackendError> {
        self.tap(sql);
        let mut st = self
            .c
            .prepare_cached(sql.text())
            .map_err(|e| error(e, self.names))?;
        let n = self.m.fields.len();
        st.query_map(rusqlite::params_from_iter(sql.params()), |r| {
            let key = key_string(r.get_ref(0)?);
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(from_ref(r.get_ref(i + 1)?));
            }
            Ok(Row {
                key,
                values,
                members: None,
            })
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<Row>>>())
        .map_err(|e| error(e, self.names))
    }

    async fn strings(&self, sql: &Sql) -> Result<Vec<Vec<String>>, BackendError> {
        self.tap(sql);
        strings(self.c, sql, self.names)
    }

    /// Every write holds SQLite's write lock (`BEGIN IMMEDIATE`): nothing to add.
    async fn lock(&self, _key: &str) -> Result<(), BackendError> {
        Ok(())
    }
}

impl SqliteTable {
    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`: check-then-write cannot race).
    async fn write<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&SqliteConn<'_>) -> Result<T, BackendError> + Send + 'static,
    {
        let (m, names) = (self.m.clone(), self.names.clone());
        let tap = Tap::current(&self.store);
        self.pool
            .write(move |c| {
                let tx = Tx::begin(c, true).map_err(|e| error(e, &names))?;
                if let Some(t) = &tap {
                    t.text("BEGIN IMMEDIATE");
                }
                let out = f(&SqliteConn {
                    c: &tx,
                    m: &m,
                    names: &names,
                    tap: tap.as_ref(),
                })?;
                match &tap {
                    // Dropped uncommitted: rolled back.
                    Some(t) => t.text("ROLLBACK"),
                    None => tx.commit().map_err(|e| error(e, &names))?,
                }
                Ok(out)
            })
            .await
    }

    /// Runs `f` in a read transaction (one snapshot for a page and its count), maybe twice
    /// ([`Pool::read`]).
    async fn read<T, F>(&self, f: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: Fn(&SqliteConn<'_>) -> Result<T, BackendError> + Send + 'static,
    {
        let (m, names) = (self.m.clone(), self.names.clone());
        let tap = Tap::current(&self.store);
        // Under `explain`, run once: a read stopped and run again would show twice.
        let recorded = tap.is_some();
        let read = move |c: &mut Connection| {
            let tx = Tx::begin(c, false).map_err(|e| error(e, &names))?;
            f(&SqliteConn {
                c: &tx,
                m: &m,
                names: &names,
                tap: tap.as_ref(),
            })
        };
        match recorded {
            true => self.pool.read_elsewhere(read).await,
            false => self.pool.read(read).await,
        }
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
        self.write(move |c| run_ready(ops::insert(c, values, members, load_members)))
            .await
    }

    async fn fetch(&self, key: &str, members: bool) -> Result<Option<Row>, BackendError> {
        let Some(key) = self.m.key_value(key) else {
            return Ok(None);
        };
        self.read(move |c| run_ready(ops::fetch_with_members(c, &key, members)))
            .await
    }

    async fn search(&self, search: Search) -> Result<Found, BackendError> {
        self.read(move |c| run_ready(ops::search(c, &search))).await
    }

    async fn present(&self, keys: &[String]) -> Result<Vec<String>, BackendError> {
        let keys = keys.to_vec();
        self.read(move |c| run_ready(ops::present(c, &keys))).await
    }

    async fn update(
        &self,
        key: &str,
        load_members: bool,
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        let Some(key) = self.m.key_value(key) else {
            return Err(BackendError::NotFound);
        };
        self.write(move |c| run_ready(ops::update(c, &key, load_members, edit)))
            .await
    }

    async fn delete(
        &self,
        key: &str,
        mode: DeleteMode,
        check: CheckFn,
    ) -> Result<(), BackendError> {
        let Some(key) = self.m.key_value(key) else {
            return Err(BackendError::NotFound);
        };
        self.write(move |c| run_ready(ops::delete(c, &key, mode, check)))
            .await
    }

    async fn revive(
        &self,
        key: &str,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        let Some(key) = self.m.key_value(key) else {
            return Err(BackendError::NotFound);
        };
        self.write(move |c| run_ready(ops::revive(c, &key, values, members, load_members)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool on an in-memory database with a table `t (n)`, and no readers.
    fn writer_pool() -> Arc<Pool> {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch("CREATE TABLE t (n INTEGER)")
            .expect("table");
        pool_on(conn)
    }

    /// A pool whose writer is `conn`, and no readers.
    fn pool_on(conn: Connection) -> Arc<Pool> {
        Arc::new(Pool {
            writer: Writer::start(conn).expect("writer"),
            readers: Arc::new(Mutex::new(Vec::new())),
            read_gate: Arc::new(Semaphore::new(0)),
        })
    }

    /// Starts a write that inserts 1 into `t` and holds the writer until the sender is used,
    /// so that the writes after it queue up behind it.
    async fn hold_writer(
        pool: &Arc<Pool>,
    ) -> (
        tokio::task::JoinHandle<Result<usize, BackendError>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.write(move |c| {
                    let _ = started_tx.send(());
                    let _ = release_rx.recv();
                    c.execute("INSERT INTO t VALUES (1)", [])
                        .map_err(|e| BackendError::Internal(e.to_string()))
                })
                .await
            }
        });
        started_rx.await.expect("the first write runs");
        (first, release_tx)
    }

    /// A read answered from an index runs on the caller's thread; a scan is stopped there
    /// at the instruction budget and runs again on another thread, with the whole answer.
    #[tokio::test(flavor = "current_thread")]
    async fn reads_over_the_budget_run_on_another_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .and_then(|c| {
                c.execute_batch(
                    "CREATE TABLE t (n INTEGER PRIMARY KEY);
                     WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 50000)
                     INSERT INTO t SELECT n FROM s;",
                )
            })
            .expect("database");
        let db = SqliteBackend::open("t", &path, None, 2, Duration::from_secs(1)).expect("open");
        let here = std::thread::current().id();
        let read = |sql: &'static str| {
            db.pool.read(move |c| {
                let n = c
                    .query_row(sql, [], |r| r.get::<_, i64>(0))
                    .map_err(|e| error(e, &[]))?;
                Ok((std::thread::current().id() == here, n))
            })
        };
        let lookup = read("SELECT n FROM t WHERE n = 4242").await;
        assert_eq!(lookup.expect("lookup"), (true, 4242));
        let scan = read("SELECT sum(n % 7) FROM t").await;
        let sum = (1..=50_000i64).map(|n| n % 7).sum::<i64>();
        assert_eq!(scan.expect("scan"), (false, sum));
        // The reader connection that was stopped serves the next read as before.
        let again = read("SELECT n FROM t WHERE n = 7").await;
        assert_eq!(again.expect("lookup after a stop"), (true, 7));

        // Reads in a transaction, quick and stopped ones mixed. A stopped read whose
        // transaction is still open (its ROLLBACK may be stopped too; here it has none) does
        // not leave it open on the connection: the next read's BEGIN would fail.
        for i in 0..60i64 {
            let upto = if i % 3 == 0 { 50_000 } else { 10 + i };
            let sum = db
                .pool
                .read(move |c| {
                    let sql = |e| error(e, &[]);
                    c.execute_batch("BEGIN").map_err(sql)?;
                    let sum = c
                        .prepare_cached("SELECT sum(n % 7) FROM t WHERE n <= ?1")
                        .and_then(|mut st| st.query_row([upto], |r| r.get::<_, i64>(0)))
                        .map_err(sql)?;
                    c.execute_batch("COMMIT").map_err(sql)?;
                    Ok(sum)
                })
                .await
                .unwrap_or_else(|e| panic!("read {i}: {e}"));
            assert_eq!(sum, (1..=upto).map(|n| n % 7).sum::<i64>(), "read {i}");
        }
    }

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count")
    }

    /// A write queued behind a slow one, whose request stops waiting (a deadline passed, the
    /// client went away), is never run: what the client was told failed is not written
    /// later. The writes before and after it run, in order.
    #[tokio::test]
    async fn a_write_whose_request_stopped_waiting_is_skipped() {
        let pool = writer_pool();
        let (first, release_tx) = hold_writer(&pool).await;
        let queued = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.write(|c| {
                    c.execute("INSERT INTO t VALUES (2)", [])
                        .map_err(|e| BackendError::Internal(e.to_string()))
                })
                .await
            }
        });
        // Queued behind the first; then its request gives up.
        tokio::time::sleep(Duration::from_millis(50)).await;
        queued.abort();
        assert!(queued.await.expect_err("aborted").is_cancelled());
        release_tx.send(()).expect("release");
        assert_eq!(first.await.expect("task").expect("written"), 1);
        let rows = pool
            .write(|c| {
                c.execute("INSERT INTO t VALUES (3)", [])
                    .map_err(|e| BackendError::Internal(e.to_string()))?;
                let ns: Vec<i64> = c
                    .prepare("SELECT n FROM t ORDER BY rowid")
                    .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                    .map_err(|e| BackendError::Internal(e.to_string()))?;
                Ok(ns)
            })
            .await
            .expect("written");
        assert_eq!(rows, vec![1, 3], "the abandoned write (2) was skipped");
    }

    /// Writes queued behind a running one share one transaction: one `COMMIT` for all of
    /// them, after which each is answered. Each is still kept or refused on its own: one
    /// that fails (an error, a deferred foreign key its own `COMMIT` would have refused, a
    /// panic) is undone alone, and the writes around it are kept.
    #[tokio::test(flavor = "current_thread")]
    async fn queued_writes_share_one_commit_and_fail_alone() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let mut conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE t (n INTEGER);
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .expect("tables");
        let commits = Arc::new(AtomicUsize::new(0));
        conn.commit_hook(Some({
            let commits = commits.clone();
            move || {
                commits.fetch_add(1, Ordering::SeqCst);
                false
            }
        }))
        .expect("commit hook");
        let pool = pool_on(conn);
        let sql = |e| error(e, &[]);
        let (first, release_tx) = hold_writer(&pool).await;

        type Write = Box<dyn FnOnce(&mut Connection) -> Result<(), BackendError> + Send>;
        let writes: Vec<Write> = vec![
            // Kept.
            Box::new(move |c| {
                let tx = Tx::begin(c, true).map_err(sql)?;
                tx.execute("INSERT INTO t VALUES (2)", []).map_err(sql)?;
                tx.commit().map_err(sql)
            }),
            // Refused after a change, in a transaction: its change is undone.
            Box::new(move |c| {
                let tx = Tx::begin(c, true).map_err(sql)?;
                tx.execute("INSERT INTO t VALUES (3)", []).map_err(sql)?;
                Err(BackendError::NotFound)
            }),
            // Refused after a change made outside one: undone all the same.
            Box::new(move |c| {
                c.execute("INSERT INTO t VALUES (4)", []).map_err(sql)?;
                Err(BackendError::NotFound)
            }),
            // A row that refers to no parent, under a deferred foreign key.
            Box::new(move |c| {
                let tx = Tx::begin(c, true).map_err(sql)?;
                tx.execute("INSERT INTO t VALUES (5)", []).map_err(sql)?;
                tx.execute("INSERT INTO child VALUES (99)", [])
                    .map_err(sql)?;
                tx.commit().map_err(sql)
            }),
            // A bug.
            Box::new(move |c| {
                c.execute("INSERT INTO t VALUES (6)", []).map_err(sql)?;
                panic!("a bug in a write");
            }),
            // Kept, with a parent and its child.
            Box::new(move |c| {
                let tx = Tx::begin(c, true).map_err(sql)?;
                tx.execute("INSERT INTO t VALUES (7)", []).map_err(sql)?;
                tx.execute("INSERT INTO child VALUES (1)", [])
                    .map_err(sql)?;
                tx.execute("INSERT INTO parent VALUES (1)", [])
                    .map_err(sql)?;
                tx.commit().map_err(sql)
            }),
        ];
        let mut queued = Vec::new();
        for w in writes {
            let pool = pool.clone();
            queued.push(tokio::spawn(async move { pool.write(w).await }));
            // Let it queue its write, in this order.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        release_tx.send(()).expect("release");
        assert_eq!(first.await.expect("task").expect("written"), 1);
        let mut answers = Vec::new();
        for q in queued {
            answers.push(q.await.expect("task"));
        }
        let shown: Vec<String> = answers
            .iter()
            .map(|a| match a {
                Ok(()) => "ok".to_owned(),
                Err(BackendError::NotFound) => "not found".to_owned(),
                Err(BackendError::Rejected { detail, .. }) => format!("rejected: {detail}"),
                Err(BackendError::Internal(m)) => format!("internal: {m}"),
                Err(e) => format!("{e:?}"),
            })
            .collect();
        assert_eq!(shown[..3], ["ok", "not found", "not found"]);
        assert!(
            shown[3].starts_with("rejected: ") && shown[3].contains("does not exist"),
            "{}",
            shown[3]
        );
        assert!(shown[4].contains("panicked"), "{}", shown[4]);
        assert_eq!(shown[5], "ok");
        assert_eq!(
            commits.load(Ordering::SeqCst),
            2,
            "the first write alone, then the six queued behind it together"
        );

        let kept = pool
            .write(move |c| {
                let ns: Vec<i64> = c
                    .prepare("SELECT n FROM t ORDER BY rowid")
                    .and_then(|mut st| st.query_map([], |r| r.get(0))?.collect())
                    .map_err(sql)?;
                let children: i64 = c
                    .query_row("SELECT count(*) FROM child", [], |r| r.get(0))
                    .map_err(sql)?;
                Ok((ns, children))
            })
            .await
            .expect("read back");
        assert_eq!(kept, (vec![1, 2, 7], 1), "only the writes that succeeded");
    }

    /// A write that panics mid-transaction answers its request with an error, its
    /// transaction is rolled back, and the writer goes on with the next write.
    #[tokio::test]
    async fn a_panicking_write_is_an_error_and_leaves_nothing_behind() {
        let pool = writer_pool();
        let err = pool
            .write(|c| -> Result<(), BackendError> {
                c.execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
                    .expect("insert");
                panic!("a bug in a write");
            })
            .await
            .expect_err("the panic is an error");
        assert!(matches!(err, BackendError::Internal(_)), "{err:?}");
        let n = pool
            .write(|c| {
                c.execute("INSERT INTO t VALUES (2)", [])
                    .map_err(|e| BackendError::Internal(e.to_string()))?;
                Ok(count(c))
            })
            .await
            .expect("the next write runs");
        assert_eq!(n, 1, "the panicked write's row was rolled back");
    }

    /// A loaded config's SQLite settings (the config layer's own test file): a relative
    /// `path` is read from the config file's directory, and a table's key is `id` unless the
    /// mapping names another.
    #[test]
    fn config_file_path_and_key() {
        use crate::config::validate::tests::{GOOD, load};
        let c = load(GOOD).expect("valid");
        let store = c.backends[0].store.as_any().downcast_ref::<SqliteConfig>();
        assert_eq!(
            store.map(|s| s.path.as_path()),
            Some(Path::new("/tmp/app.db"))
        );
        let table = c.resources[0]
            .store
            .as_any()
            .downcast_ref::<super::super::config::SqlResource>();
        assert_eq!(table.map(|t| t.key.as_str()), Some("id"));
    }

    /// Text reads as stored; bytes SQLite let in that are not UTF-8 read as U+FFFD.
    #[test]
    fn text_values() {
        assert_eq!(text("Zoë".as_bytes()), "Zoë");
        assert_eq!(text(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(key_string(ValueRef::Text(b"k\xc3")), "k\u{FFFD}");
    }

    /// Declared SQLite types map to field types, with varchar lengths; NOCASE columns and
    /// lower() indexes are recognised.
    #[test]
    fn types_and_collations() {
        assert_eq!(
            field_type("VARCHAR(64)"),
            FieldType::Text { max_len: Some(64) }
        );
        assert_eq!(field_type("integer"), FieldType::Integer);
        assert_eq!(field_type("BOOLEAN"), FieldType::Boolean);
        assert_eq!(field_type("DATETIME"), FieldType::Timestamp);
        assert_eq!(field_type("decimal(10,2)"), FieldType::Real);
        assert_eq!(field_type(""), FieldType::Text { max_len: None });
        let create = "CREATE TABLE a (id INTEGER PRIMARY KEY, \"login\" VARCHAR(64) NOT NULL COLLATE NOCASE, b TEXT CHECK (b IN ('x', 'y')))";
        assert!(declared_nocase(create, "login"));
        assert!(!declared_nocase(create, "b"));
        assert_eq!(
            lower_of("CREATE UNIQUE INDEX x ON a (lower(\"Login\"))").as_deref(),
            Some("login")
        );
        let u = crate::backend::sql::uuid_v4().expect("uuid");
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
