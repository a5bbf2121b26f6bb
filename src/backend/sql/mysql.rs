//! The MySQL and MariaDB backend: the database most self-hosted web apps run on (WordPress,
//! Moodle, MediaWiki, Nextcloud, phpBB, Redmine, Mantis).
//!
//! A mysql_async pool (prepared statements cached per connection, binary protocol: every
//! value a bound, typed parameter), TLS through rustls verified against a CA file, TCP or a
//! Unix socket. Statements come from the shared [`Model`] in the [`Dialect::Mysql`] dialect;
//! this module adds what is MySQL's own:
//!
//! - **Sessions** are set up once per connection: UTC, strict SQL mode (a value a column
//!   cannot hold is an error, never a silently truncated or `?`-mangled row), `READ
//!   COMMITTED` (a uniqueness check sees what a writer committed before it took the lock),
//!   and the statement timeout (`max_statement_time` in MariaDB, `max_execution_time` for
//!   MySQL's reads) with the lock waits bounded by it too.
//! - **Keys**: no `RETURNING`; an insert reports its `AUTO_INCREMENT` key in its answer
//!   (`LAST_INSERT_ID()`), and the row is read back in the same transaction.
//! - **Advisory locks** (`GET_LOCK`) where no unique index makes a check-then-write safe.
//!   They belong to the session, not the transaction: released after the commit, and a
//!   connection abandoned while holding one is reset by the pool before anyone reuses it.
//! - **Catalog** from `information_schema`: types (`TINYINT(1)` is a boolean, `ENUM` labels,
//!   varchar lengths), each text column's character set and collation (a `_ci` collation
//!   compares case-insensitively by itself), unique indexes, foreign keys pointing at a
//!   table, and each table's engine (MyISAM has no transactions: `check` says what can then
//!   be left half-written).
//! - **Values**: a text a column's character set cannot hold (an emoji in a legacy `utf8`
//!   column, Cyrillic in `latin1`) is refused with a 400 naming the attribute before anything
//!   is written; zero dates (`0000-00-00`) read as no value.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, SslOpts, TxOpts};
use serde::Deserialize;

use super::config::{RawServerKeys, RawTls, RelSpec, server_keys};
use super::model::{self, Catalog, ColumnInfo, Field, Model, TableInfo, UniqueInfo};
use super::ops::{self, Conn};
use super::state::{Exec, SqlStateStore};
use super::{Dialect, Param, Sql, Tap};
use crate::backend::state::StateStore;
use crate::backend::{
    Backend, BackendError, Change, CheckFn, DeleteMode, EditFn, FieldType, Found, Loc, Opened,
    Refused, Row, Search, SpecPart, SpecProblem, StoreConfig, StoreKind, Table, TableSpec, Value,
};
use crate::config::raw::{NumOrStr, RawValue, S};
use crate::config::{Cx, Secret};

/// The sidecar's own attribute table, in the app's database (MySQL has no schemas apart from
/// databases, and the sidecar's account may create tables only there).
const KEPT_TABLE: &str = "scim_sidecar_attributes";

// === The kind ===

/// `type = "mysql"`: a MySQL or MariaDB database.
pub struct Mysql;

/// `[backend.NAME]` of type `mysql`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMy {
    #[serde(rename = "type")]
    _kind: S,
    url: Option<S>,
    socket: Option<S>,
    pool_size: Option<NumOrStr>,
    connect_timeout: Option<S>,
    statement_timeout: Option<S>,
    tls: Option<toml::Spanned<RawTls>>,
}

impl StoreKind for Mysql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn backend(
        &self,
        name: &str,
        raw: &RawValue<'_>,
        cx: &mut Cx<'_>,
    ) -> Option<Arc<dyn StoreConfig>> {
        let o = cx.origin(raw.span());
        let b: RawMy = cx.deserialize(raw, &format!("[backend.{name}]"))?;
        let keys = RawServerKeys {
            url: b.url.as_ref(),
            pool_size: &b.pool_size,
            connect_timeout: &b.connect_timeout,
            statement_timeout: &b.statement_timeout,
            tls: b.tls.as_ref(),
        };
        let k = server_keys(keys, &o, name, "mysql://app:secret@127.0.0.1:3306/app", cx)?;
        if let Err(e) = parse_url(&k.url) {
            cx.error(
                &o,
                format!("[backend.{name}]: url is not a MySQL connection URL ({e})"),
                Some("write mysql://user:password@host:3306/dbname"),
            );
        }
        let socket = b.socket.as_ref().and_then(|s| cx.path(s, "backend socket"));
        Some(Arc::new(MyOptions {
            url: Secret(k.url),
            socket,
            pool_size: k.pool_size,
            connect_timeout: k.connect_timeout,
            statement_timeout: k.statement_timeout,
            ca_file: k.ca_file,
        }))
    }

    super::config::sql_addressing!();
}

/// How to reach the database (`[backend.NAME]` of type `mysql`).
#[derive(Clone, Debug)]
pub struct MyOptions {
    /// A `mysql://user:password@host:port/db` URL (holds the password: never printed).
    pub url: Secret,
    /// A Unix socket to connect through instead of the URL's host and port.
    pub socket: Option<std::path::PathBuf>,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Time to establish a connection (and to wait for a free one).
    pub connect_timeout: Duration,
    /// The longest one statement may run (lock waits included); longer answers 503.
    pub statement_timeout: Duration,
    /// A CA certificate file: connect with TLS and verify the server's certificate and name
    /// against it. `None`: plain TCP or a Unix socket.
    pub ca_file: Option<std::path::PathBuf>,
}

#[async_trait]
impl StoreConfig for MyOptions {
    fn kind(&self) -> &'static str {
        "mysql"
    }

    fn holds_state(&self) -> bool {
        true
    }

    fn rolls_back(&self) -> bool {
        true
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn Backend>, String> {
        MyBackend::open(name, self)
            .await
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
    }
}

/// Parses a connection URL; `mariadb://` is taken as `mysql://`.
pub fn parse_url(url: &str) -> Result<Opts, mysql_async::UrlError> {
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    Opts::from_url(&url)
}

// === Values ===

/// A parameter as the binary protocol sends it: typed, never spliced into the text.
fn my_value(p: &Param) -> mysql_async::Value {
    use mysql_async::Value as V;
    let v = match p {
        Param::Value(v) | Param::Inferred(v) => v,
        Param::TextArray(items) => {
            return V::Bytes(
                serde_json::to_string(items)
                    .unwrap_or_default()
                    .into_bytes(),
            );
        }
    };
    match v {
        Value::Null => V::NULL,
        Value::Bool(b) => V::Int(i64::from(*b)),
        Value::Int(i) => V::Int(*i),
        Value::Real(f) => V::Double(*f),
        Value::Text(s) => V::Bytes(s.as_bytes().to_vec()),
        Value::Bytes(b) => V::Bytes(b.clone()),
        Value::List(items) => V::Bytes(
            serde_json::Value::from(items.iter().map(model::value_text).collect::<Vec<_>>())
                .to_string()
                .into_bytes(),
        ),
    }
}

fn params(sql: &Sql) -> Params {
    if sql.params().is_empty() {
        Params::Empty
    } else {
        Params::Positional(sql.params().iter().map(my_value).collect())
    }
}

/// A column value as the mapping reads it. A zero date (`0000-00-00`, what MySQL apps keep
/// for "never") is no value; a date is the sidecar's RFC 3339 text; bytes are text unless
/// the column is a binary string.
fn from_my(v: mysql_async::Value, binary: bool) -> Value {
    use mysql_async::Value as V;
    match v {
        V::NULL => Value::Null,
        V::Bytes(b) if binary => Value::Bytes(b),
        V::Bytes(b) => Value::Text(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        V::Int(i) => Value::Int(i),
        V::UInt(u) => i64::try_from(u).map_or_else(|_| Value::Text(u.to_string()), Value::Int),
        V::Float(f) => Value::Real(f64::from(f)),
        V::Double(f) => Value::Real(f),
        V::Date(0, 0, 0, ..) => Value::Null,
        V::Date(y, mo, d, h, mi, s, us) => Value::Text(format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
            us / 1000
        )),
        V::Time(neg, days, h, mi, s, _) => Value::Text(format!(
            "{}{:02}:{mi:02}:{s:02}",
            if neg { "-" } else { "" },
            u32::from(h) + days * 24
        )),
    }
}

/// Whether result column `c` is a binary string (bytes, not text).
fn is_binary(c: &mysql_async::Column) -> bool {
    use mysql_async::consts::ColumnType as T;
    c.character_set() == 63
        && matches!(
            c.column_type(),
            T::MYSQL_TYPE_BLOB
                | T::MYSQL_TYPE_TINY_BLOB
                | T::MYSQL_TYPE_MEDIUM_BLOB
                | T::MYSQL_TYPE_LONG_BLOB
                | T::MYSQL_TYPE_VAR_STRING
                | T::MYSQL_TYPE_STRING
                | T::MYSQL_TYPE_VARCHAR
        )
}

fn text_of(v: Value) -> String {
    match v {
        Value::Null => String::new(),
        other => model::value_text(&other),
    }
}

fn row_strings(r: mysql_async::Row) -> Vec<String> {
    let binary: Vec<bool> = r.columns_ref().iter().map(is_binary).collect();
    r.unwrap()
        .into_iter()
        .zip(binary)
        .map(|(v, b)| text_of(from_my(v, b)))
        .collect()
}

fn to_row(r: mysql_async::Row, n: usize) -> Row {
    let binary: Vec<bool> = r.columns_ref().iter().map(is_binary).collect();
    let mut values = r.unwrap().into_iter().zip(binary);
    let key = values
        .next()
        .map(|(v, b)| text_of(from_my(v, b)))
        .unwrap_or_default();
    let mut out: Vec<Value> = values.map(|(v, b)| from_my(v, b)).collect();
    out.resize(n, Value::Null);
    Row {
        key,
        values: out,
        members: None,
    }
}

// === Errors ===

/// What a duplicate-key error names (`… for key 'principals_login'`): the unique indexes of
/// the tables a resource writes, lower-cased, with their one column.
type UniqueKeys = Vec<(String, String)>;

/// A MySQL error as a person reads it.
fn explain(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => format!("{} ({})", s.message, s.code),
        other => {
            let mut out = other.to_string();
            let mut cur = std::error::Error::source(other);
            while let Some(s) = cur {
                let t = s.to_string();
                if !out.contains(&t) {
                    out.push_str(": ");
                    out.push_str(&t);
                }
                cur = s.source();
            }
            out
        }
    }
}

/// The last `'…'` of a message (`for key 'principals_login'`, `for column 'login'`).
fn quoted_last(msg: &str) -> Option<String> {
    let end = msg.rfind('\'')?;
    let start = msg[..end].rfind('\'')?;
    Some(msg[start + 1..end].to_owned())
}

/// The column a MariaDB or MySQL message names (`for column 'x'`, ``for column `db`.`t`.`x` ``,
/// `Column 'x' cannot be null`, `Field 'x' doesn't have a default value`).
fn column_named(msg: &str) -> Option<String> {
    let lower = msg.to_ascii_lowercase();
    let at = ["column ", "field "]
        .iter()
        .filter_map(|w| lower.find(w).map(|i| i + w.len()))
        .min()?;
    let rest = &msg[at..];
    let word: String = rest
        .trim_start_matches(['\'', '`'])
        .chars()
        .take_while(|c| !matches!(c, '\'' | ' '))
        .collect();
    // `db`.`t`.`x`: the last part.
    let last = word.rsplit('.').next().unwrap_or(&word);
    let name = last.trim_matches('`').to_owned();
    (!name.is_empty()).then_some(name)
}

/// Maps a MySQL error to what the layer above must tell apart.
fn error(e: &mysql_async::Error, names: &[String], keys: &UniqueKeys) -> BackendError {
    let mysql_async::Error::Server(s) = e else {
        return match e {
            mysql_async::Error::Url(_) => BackendError::Internal(explain(e)),
            // No answer, a closed or reset connection, TLS: the store is unreachable.
            _ => BackendError::Unavailable(explain(e)),
        };
    };
    let msg = s.message.clone();
    let field_of = |col: Option<String>| {
        col.and_then(|c| names.iter().position(|n| n.eq_ignore_ascii_case(&c)))
    };
    let column = field_of(column_named(&msg));
    match s.code {
        // ER_DUP_ENTRY: `Duplicate entry 'x' for key 'principals_login'` (MySQL 8:
        // 'principals.principals_login').
        1062 | 1586 => {
            let key =
                quoted_last(&msg).map(|k| k.rsplit('.').next().unwrap_or(&k).to_ascii_lowercase());
            let field = key.and_then(|k| {
                let col = keys.iter().find(|(i, _)| *i == k).map(|(_, c)| c.clone());
                field_of(col)
            });
            BackendError::Conflict {
                field,
                detail: "duplicate entry".into(),
            }
        }
        // Column cannot be null; field has no default.
        1048 | 1364 => super::refused(column, "a value is required", &msg),
        // Data too long.
        1406 => super::refused(
            column,
            "the value is too long for the application's column",
            &msg,
        ),
        // Incorrect string value (a character the column's character set cannot hold), or
        // a value of another type.
        1366 if msg.contains("string value") => super::refused(
            column,
            "the value holds a character the application's database cannot store",
            &msg,
        ),
        1366 | 1265 | 1264 | 1292 | 1367 | 1411 => super::refused(
            column,
            "the value is not of the application's column type (or not one of its labels)",
            &msg,
        ),
        // Illegal mix of collations: a value the column's character set cannot hold.
        1267 | 1270 | 1271 => super::refused(
            None,
            "the value holds a character the application's database cannot store",
            &msg,
        ),
        // Cannot delete or update a parent row.
        1451 | 1217 => super::refused(
            None,
            "the application still has rows that refer to this resource, and its database refuses to delete it (see `cascade` in the mapping)",
            &msg,
        ),
        // Cannot add or update a child row.
        1452 | 1216 => super::refused(
            None,
            "a value refers to a row that does not exist in the application (e.g. a manager id)",
            &msg,
        ),
        // MariaDB's CHECK (`CONSTRAINT `x` failed for …`), MySQL's (`Check constraint 'x' is
        // violated.`).
        4025 | 3819 => super::refused(
            column.or_else(|| super::field_mentioned(&msg, names)),
            "the application does not accept this value (one of its CHECK constraints refuses it)",
            &msg,
        ),
        // max_statement_time (MariaDB), max_execution_time (MySQL), query interrupted.
        1969 | 3024 | 1317 | 1028 => BackendError::Unavailable(format!("statement timeout: {msg}")),
        // Lock wait timeout, deadlock, too many connections, shutting down, read-only,
        // connection killed, server gone.
        1205 | 1213 | 1040 | 1053 | 1290 | 1836 | 1927 | 2006 | 2013 | 1152 | 1153 | 1158
        | 1159 | 1160 | 1161 => BackendError::Unavailable(format!("{}: {msg}", s.code)),
        code => BackendError::Internal(format!("{code}: {msg}")),
    }
}

// === impl MyBackend ===

/// Which server answers: the statement timeout is spelled differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    MariaDb,
    MySql,
}

/// A MySQL or MariaDB database.
pub struct MyBackend {
    name: String,
    pool: Pool,
    /// `host:port/db` for messages (never the password).
    shown: String,
    /// The database the URL names.
    db: String,
    /// `connect_timeout` (for a connection) plus `statement_timeout` (for the work).
    deadline: Duration,
    connect_timeout: Duration,
    /// Seconds a `GET_LOCK` waits.
    lock_wait: u64,
}

/// The statements that set up every session (run again after the pool resets one).
fn session_setup(flavor: Flavor, timeout: Duration) -> Vec<String> {
    let secs = timeout.as_secs_f64().max(0.001);
    let whole = timeout.as_secs().max(1);
    let statement = match flavor {
        Flavor::MariaDb => format!("max_statement_time = {secs:.3}"),
        // MySQL bounds only SELECTs by time; writes are bounded by the lock waits below and
        // by the client-side deadline.
        Flavor::MySql => format!("max_execution_time = {}", timeout.as_millis().max(1)),
    };
    vec![
        "SET NAMES utf8mb4".to_owned(),
        "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_owned(),
        // Strict: too long, wrong type or an unstorable character is an error, not a
        // truncated or `?`-filled value. No NO_ZERO_DATE: apps (WordPress) default their
        // dates to '0000-00-00 00:00:00' and inserts that leave them out must work.
        format!(
            "SET SESSION time_zone = '+00:00', \
             sql_mode = 'STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', \
             innodb_lock_wait_timeout = {whole}, lock_wait_timeout = {whole}, {statement}"
        ),
    ]
}

impl MyBackend {
    /// Builds the pool and checks that the database answers (a start-up error otherwise).
    pub async fn open(name: &str, o: &MyOptions) -> Result<Self, String> {
        let base = parse_url(&o.url.0).map_err(|e| {
            format!("the url is not a MySQL connection URL ({e}); write mysql://user:password@host:3306/dbname")
        })?;
        let db = base.db_name().unwrap_or_default().to_owned();
        let shown = match &o.socket {
            Some(s) => format!("{}/{db}", s.display()),
            None => format!("{}:{}/{db}", base.ip_or_hostname(), base.tcp_port()),
        };
        if db.is_empty() {
            return Err(format!(
                "the url names no database ({shown}); write mysql://user:password@host:3306/dbname"
            ));
        }
        if base.ssl_opts().is_some() && o.ca_file.is_none() {
            return Err(format!(
                "the url asks for TLS but names no CA to verify {shown} against; set tls = {{ ca = \"/path/to/ca.pem\" }} in [backend.{name}] (the sidecar never connects with TLS it cannot verify)"
            ));
        }
        let mut b = OptsBuilder::from_opts(base)
            // An UPDATE reports the rows it found, not only those it changed: a child row
            // written with its current value exists and must not be inserted again.
            .client_found_rows(true)
            // Never switch a TCP connection to the server's socket behind the config's back.
            .prefer_socket(false)
            .stmt_cache_size(256)
            .tcp_keepalive(Some(Duration::from_secs(60)));
        b = match &o.ca_file {
            Some(ca) => b.ssl_opts(Some(
                SslOpts::default()
                    .with_root_certs(vec![ca.clone().into()])
                    .with_disable_built_in_roots(true),
            )),
            None => b.ssl_opts(None::<SslOpts>),
        };
        if let Some(s) = &o.socket {
            b = b.socket(Some(s.display().to_string()));
        }
        // One connection first, to learn which server this is.
        let probe = tokio::time::timeout(o.connect_timeout, mysql_async::Conn::new(b.clone()))
            .await
            .map_err(|_| {
                format!(
                    "cannot connect to MySQL at {shown}: no answer within {:?}",
                    o.connect_timeout
                )
            })?
            .map_err(|e| format!("cannot connect to MySQL at {shown}: {}", explain(&e)))?;
        let mut probe = probe;
        let version: Option<String> = probe
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| format!("MySQL at {shown} does not answer: {}", explain(&e)))?;
        let _ = probe.disconnect().await;
        let flavor = if version
            .as_deref()
            .is_some_and(|v| v.to_ascii_lowercase().contains("mariadb"))
        {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        };
        let pool_opts = PoolOpts::default()
            .with_constraints(
                PoolConstraints::new(0, o.pool_size.max(1))
                    .ok_or("pool_size must be at least 1")?,
            )
            // Connections are not reset between uses (a reset costs a round trip and every
            // prepared statement); only one abandoned holding a lock is (see `in_tx!`).
            .with_reset_connection(false);
        let b = b
            .pool_opts(pool_opts)
            .setup(session_setup(flavor, o.statement_timeout));
        let pool = Pool::new(b);
        let mut c = tokio::time::timeout(o.connect_timeout, pool.get_conn())
            .await
            .map_err(|_| format!("cannot connect to MySQL at {shown}: no answer"))?
            .map_err(|e| {
                format!(
                    "cannot set up a session on MySQL at {shown}: {}",
                    explain(&e)
                )
            })?;
        c.ping()
            .await
            .map_err(|e| format!("MySQL at {shown} does not answer: {}", explain(&e)))?;
        drop(c);
        Ok(MyBackend {
            name: name.to_owned(),
            pool,
            shown,
            db,
            deadline: o.connect_timeout + o.statement_timeout,
            connect_timeout: o.connect_timeout,
            lock_wait: o.statement_timeout.as_secs().max(1),
        })
    }

    async fn conn(&self) -> Result<mysql_async::Conn, BackendError> {
        get_conn(&self.pool, self.connect_timeout).await
    }
}

/// A pooled connection, waiting at most `wait` for one.
async fn get_conn(pool: &Pool, wait: Duration) -> Result<mysql_async::Conn, BackendError> {
    match tokio::time::timeout(wait, pool.get_conn()).await {
        Ok(Ok(mut c)) => {
            c.reset_connection(false);
            Ok(c)
        }
        Ok(Err(e)) => Err(BackendError::Unavailable(format!(
            "no database connection: {}",
            explain(&e)
        ))),
        Err(_) => Err(BackendError::Unavailable(
            "no database connection within the connect timeout".into(),
        )),
    }
}

#[async_trait]
impl Backend for MyBackend {
    fn name(&self) -> &str {
        &self.name
    }

    /// The server bounds each statement; it cannot while it is frozen, so the client side
    /// gives up after a connection wait and a statement's time.
    fn deadline(&self) -> Duration {
        self.deadline
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let mut c = self.conn().await?;
        c.ping().await.map_err(|e| error(&e, &[], &Vec::new()))
    }

    async fn open_table(&self, spec: TableSpec) -> Result<Opened, Refused> {
        let fail = |e: String| {
            vec![SpecProblem {
                part: SpecPart::Table,
                message: e,
                fix: None,
                warning: false,
            }]
        };
        let mut c = self
            .conn()
            .await
            .map_err(|e| fail(format!("cannot connect to {}: {e}", self.shown)))?;
        let spec = super::config::rel_spec(&spec, KEPT_TABLE)?;
        let (cat, extra) = catalog(&mut c, &spec, &self.db, &self.shown)
            .await
            .map_err(|e| fail(format!("cannot inspect the database: {}", explain(&e))))?;
        let names: Vec<String> = spec.fields.iter().map(|f| f.column().to_owned()).collect();
        // Hooks are prepared (never run) against the live database: a wrong table or column
        // is a start-up problem at the hook's line, not a failed write.
        let mut problems = Vec::new();
        for (origin, sql, shown) in model::hook_statements(Dialect::Mysql, &spec) {
            match c.prep(sql.text()).await {
                Ok(st) => {
                    let _ = c.close(st).await;
                }
                Err(e) => problems.push(model::unprepared(origin, &shown, &explain(&e))),
            }
        }
        let (m, fields, warnings) = match Model::build(Dialect::Mysql, &spec, &cat) {
            Ok(built) if problems.is_empty() => built,
            Ok((_, fields, _)) => return Err(Refused { problems, fields }),
            Err(mut refused) => {
                refused.problems.extend(problems);
                return Err(refused);
            }
        };
        let mut warnings = warnings;
        warnings.extend(extra.engine_warnings());
        for &(i, fold) in &m.unique_checks {
            let Some(sql) = m.duplicates(i, fold) else {
                continue;
            };
            // Advice only: a failure here (permissions) must not keep the sidecar down.
            if let Ok(rows) = c
                .exec::<mysql_async::Row, _, _>(sql.text(), params(&sql))
                .await
            {
                let n: u64 = rows
                    .into_iter()
                    .next()
                    .and_then(|r| row_strings(r).first().and_then(|t| t.parse().ok()))
                    .unwrap_or(0);
                if n > 0 {
                    warnings.push(model::duplicates_warning(i, &names[i], n));
                }
            }
        }
        Ok(Opened {
            table: Arc::new(MyTable {
                pool: self.pool.clone(),
                m: Arc::new(m),
                names: Arc::new(names),
                keys: Arc::new(extra.unique_keys),
                wait: self.connect_timeout,
                lock_wait: self.lock_wait,
                store: Arc::from(self.name.as_str()),
            }),
            fields,
            warnings,
        })
    }

    fn state(&self) -> Option<Arc<dyn StateStore>> {
        Some(Arc::new(SqlStateStore {
            exec: MyExec {
                pool: self.pool.clone(),
                wait: self.connect_timeout,
                store: Arc::from(self.name.as_str()),
            },
            d: Dialect::Mysql,
            table: Dialect::Mysql.quote(KEPT_TABLE),
            shown: format!("[backend.{}] (MySQL {})", self.name, self.shown),
        }))
    }

    async fn migrate(&self) -> Result<Vec<String>, BackendError> {
        let mut c = self.conn().await?;
        let none = Vec::new();
        let existed: Option<i64> = c
            .exec_first(
                "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                (KEPT_TABLE,),
            )
            .await
            .map_err(|e| error(&e, &[], &none))?;
        // utf8mb4 with a binary collation: ids and values compare exactly (a folded filter
        // lowers both sides); the value index is on a prefix, as InnoDB's key length needs.
        c.query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {KEPT_TABLE} (
                 resource_type varchar(64)  NOT NULL,
                 resource_id   varchar(191) NOT NULL,
                 name          varchar(191) NOT NULL,
                 value         text,
                 PRIMARY KEY (resource_type, resource_id, name),
                 KEY {KEPT_TABLE}_value (resource_type, name, value(191))
             ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        ))
        .await
        .map_err(|e| error(&e, &[], &none))?;
        Ok(if existed.unwrap_or(0) > 0 {
            Vec::new()
        } else {
            vec![format!(
                "created table {KEPT_TABLE} in database {}",
                self.db
            )]
        })
    }
}

// === Catalog ===

/// What the catalog says beyond [`Catalog`]: how duplicate-key errors name their columns,
/// and the tables whose engine has no transactions.
#[derive(Default)]
struct Extra {
    unique_keys: UniqueKeys,
    /// `(table, engine)` of every table the resource writes whose engine is not
    /// transactional.
    no_tx: Vec<(String, String)>,
}

impl Extra {
    fn engine_warnings(&self) -> Vec<SpecProblem> {
        self.no_tx
            .iter()
            .map(|(table, engine)| SpecProblem {
                part: SpecPart::Table,
                message: format!(
                    "table '{table}' uses the {engine} engine, which has no transactions: a write that fails half-way keeps what it wrote before the failure (a user without its child rows or with some of its members, a group without some members), a rolled-back create can leave its row, and concurrent writes are not isolated"
                ),
                fix: Some(format!("ALTER TABLE {table} ENGINE=InnoDB;")),
                warning: true,
            })
            .collect()
    }
}

/// `db.table` or `table` as (schema, table) in the connection's database.
fn split_name<'a>(name: &'a str, db: &'a str) -> (&'a str, &'a str) {
    match name.split_once('.') {
        Some((s, t)) => (s, t),
        None => (db, name),
    }
}

async fn catalog(
    c: &mut mysql_async::Conn,
    spec: &RelSpec,
    db: &str,
    shown: &str,
) -> Result<(Catalog, Extra), mysql_async::Error> {
    let mut cat = Catalog {
        store: format!("MySQL {shown}"),
        kept_table: KEPT_TABLE.to_owned(),
        ..Default::default()
    };
    cat.all = c
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? ORDER BY 1",
            (db,),
        )
        .await?;
    let mut extra = Extra::default();
    for name in model::tables_needed(spec) {
        let (schema, table) = split_name(&name, db);
        let info = table_info(c, schema, table, &mut extra).await?;
        if info.is_some() {
            let engine: Option<(Option<String>, Option<String>)> = c
                .exec_first(
                    "SELECT t.ENGINE, e.TRANSACTIONS FROM information_schema.TABLES t
                     LEFT JOIN information_schema.ENGINES e ON e.ENGINE = t.ENGINE
                     WHERE t.TABLE_SCHEMA = ? AND t.TABLE_NAME = ? AND t.TABLE_TYPE = 'BASE TABLE'",
                    (schema, table),
                )
                .await?;
            if let Some((Some(engine), tx)) = engine {
                if tx.as_deref() != Some("YES") {
                    extra.no_tx.push((name.clone(), engine));
                }
            }
        }
        cat.tables.insert(name, info);
    }
    Ok((cat, extra))
}

/// One column of `information_schema.COLUMNS`.
type ColumnRow = (
    String,         // COLUMN_NAME
    String,         // DATA_TYPE
    String,         // COLUMN_TYPE
    String,         // IS_NULLABLE
    Option<String>, // COLUMN_DEFAULT
    String,         // EXTRA
    Option<u64>,    // CHARACTER_MAXIMUM_LENGTH
    Option<String>, // CHARACTER_SET_NAME
    Option<String>, // COLLATION_NAME
    String,         // COLUMN_KEY
    Option<String>, // GENERATION_EXPRESSION
);

async fn table_info(
    c: &mut mysql_async::Conn,
    schema: &str,
    table: &str,
    extra: &mut Extra,
) -> Result<Option<TableInfo>, mysql_async::Error> {
    let cols: Vec<ColumnRow> = c
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA,
                    CHARACTER_MAXIMUM_LENGTH, CHARACTER_SET_NAME, COLLATION_NAME, COLUMN_KEY,
                    GENERATION_EXPRESSION
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
             ORDER BY ORDINAL_POSITION",
            (schema, table),
        )
        .await?;
    if cols.is_empty() {
        return Ok(None);
    }
    // Generated columns that stand for a partial index: `CASE WHEN type = 'User' THEN login
    // END` under a unique index is MySQL's `UNIQUE (login) WHERE type = 'User'`.
    let partials: Vec<(String, Partial)> = cols
        .iter()
        .filter_map(|c| Some((c.0.to_ascii_lowercase(), partial_of(c.10.as_deref()?)?)))
        .collect();
    let columns: Vec<ColumnInfo> = cols
        .into_iter()
        .map(
            |(
                name,
                data_type,
                column_type,
                nullable,
                default,
                extra,
                max_len,
                charset,
                collation,
                key,
                _,
            )| {
                let extra = extra.to_ascii_lowercase();
                let auto = extra.contains("auto_increment");
                let computed = extra.contains("generated")
                    || extra.contains("virtual")
                    || extra.contains("persistent")
                    || extra.contains("stored");
                let pk = key == "PRI";
                let ty = my_type(&data_type, &column_type, max_len);
                // A key the sidecar writes: generated only by AUTO_INCREMENT (an insert
                // reports no other default); a text key without one gets the sidecar's UUID.
                let has_default = if pk {
                    auto
                } else {
                    // MariaDB spells "no default" NULL and "DEFAULT NULL" 'NULL'; MySQL NULL
                    // for both (a nullable column defaults to NULL anyway).
                    default.is_some() || auto || computed
                };
                ColumnInfo {
                    ci: ty.is_text()
                        && collation
                            .as_deref()
                            .is_some_and(|c| c.to_ascii_lowercase().ends_with("_ci")),
                    charset: charset.filter(|_| ty.is_text()),
                    ty,
                    cast: None,
                    notnull: nullable == "NO",
                    has_default,
                    default_sql: has_default.then(|| "DEFAULT".to_owned()),
                    pk,
                    generated: auto,
                    name,
                }
            },
        )
        .collect();
    let idx: Vec<(String, i64, Option<String>)> = c
        .exec(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            (schema, table),
        )
        .await?;
    let mut grouped: Vec<(String, bool, Vec<Option<String>>)> = Vec::new();
    for (index, non_unique, column) in idx {
        let column = column.map(|c| c.to_ascii_lowercase());
        match grouped.last_mut() {
            Some((name, _, cols)) if *name == index => cols.push(column),
            _ => grouped.push((index, non_unique == 0, vec![column])),
        }
    }
    let mut uniques = Vec::new();
    let mut indexed = Vec::new();
    for (index, unique, cols) in grouped {
        indexed.push(cols.iter().map(|c| c.clone().unwrap_or_default()).collect());
        if unique {
            if let [Some(col)] = cols.as_slice() {
                extra
                    .unique_keys
                    .push((index.to_ascii_lowercase(), col.clone()));
            }
            // A single column's index folds case when the column's collation does.
            let fold = match cols.as_slice() {
                [Some(col)] => columns
                    .iter()
                    .any(|c| c.name.eq_ignore_ascii_case(col) && c.ci),
                _ => false,
            };
            let partial = match cols.as_slice() {
                [Some(col)] => partials.iter().find(|(g, _)| g == col).map(|(_, p)| p),
                _ => None,
            };
            if let Some(p) = partial {
                uniques.push(UniqueInfo {
                    columns: vec![(!p.lowered).then(|| p.column.clone())],
                    fold: fold || p.lowered,
                    lower_of: p.lowered.then(|| p.column.clone()),
                    partial: !p.conds.is_empty(),
                    predicate: Some(p.conds.clone()),
                });
                continue;
            }
            uniques.push(UniqueInfo {
                columns: cols,
                fold,
                lower_of: None,
                // MySQL and MariaDB have no partial indexes.
                partial: false,
                predicate: None,
            });
        }
    }
    // Single-column foreign keys of other tables pointing here. Every column of a foreign
    // key references this table, so a key of one column is one row here; they are counted
    // here, not in SQL: MariaDB 10.11 crashed (signal 11) on a correlated count over
    // KEY_COLUMN_USAGE inside this query while other sessions created tables.
    let fks: Vec<(String, String, String, String, String)> = c
        .exec(
            "SELECT k.TABLE_SCHEMA, k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, r.DELETE_RULE
             FROM information_schema.KEY_COLUMN_USAGE k
             JOIN information_schema.REFERENTIAL_CONSTRAINTS r
               ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME
              AND r.TABLE_NAME = k.TABLE_NAME
             WHERE k.REFERENCED_TABLE_SCHEMA = ? AND k.REFERENCED_TABLE_NAME = ?",
            (schema, table),
        )
        .await?;
    let columns_of = |s: &str, t: &str, name: &str| {
        fks.iter()
            .filter(|f| f.0 == s && f.1 == t && f.2 == name)
            .count()
    };
    let referenced_by = fks
        .iter()
        .filter(|f| columns_of(&f.0, &f.1, &f.2) == 1)
        .map(|(s, t, _, column, rule)| model::ForeignKey {
            table: if s == schema {
                t.clone()
            } else {
                format!("{s}.{t}")
            },
            column: column.clone(),
            handled: matches!(rule.as_str(), "CASCADE" | "SET NULL" | "SET DEFAULT"),
        })
        .collect();
    Ok(Some(TableInfo {
        columns,
        uniques,
        indexed,
        referenced_by,
    }))
}

/// What a generated column under a unique index stands for.
#[derive(Clone, Debug, PartialEq)]
struct Partial {
    /// The column whose values it holds (lower-cased name).
    column: String,
    /// It holds them lower-cased.
    lowered: bool,
    /// For the rows where these `column = literal` hold (none: every row).
    conds: Vec<(String, String)>,
}

/// Reads a generation expression as MariaDB and MySQL print it back (``case when `type` =
/// 'User' then `login` end``, ``(case when (`type` = _utf8mb4'User') then lcase(`login`)
/// end)``): the value of one column, maybe lowered, for the rows some `column = literal`
/// conjuncts pick. `None` for any other expression.
fn partial_of(expr: &str) -> Option<Partial> {
    let mut e = expr.replace('`', "");
    for intro in ["_utf8mb4'", "_utf8mb3'", "_utf8'", "_latin1'", "_binary'"] {
        e = e.replace(intro, "'");
    }
    let lower = e.to_ascii_lowercase();
    let (conds, value) = match (
        lower.find("case when "),
        lower.find(" then "),
        lower.rfind(" end"),
    ) {
        (Some(start), Some(then), Some(end)) if start < then && then < end => (
            Some(e[start + 10..then].to_owned()),
            lower[then + 6..end].trim().to_owned(),
        ),
        _ => (None, lower.trim().to_owned()),
    };
    let (lowered, column) = match value
        .strip_prefix("lower(")
        .or_else(|| value.strip_prefix("lcase("))
    {
        Some(inner) => (true, inner.trim_end_matches(')').trim().to_owned()),
        None => (false, value.trim_matches(['(', ')']).trim().to_owned()),
    };
    if column.is_empty()
        || !column
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    let conds = match conds {
        Some(c) => model::index_predicate(&format!("x where {c}"))?,
        None if lowered => Vec::new(),
        None => return None,
    };
    Some(Partial {
        column,
        lowered,
        conds,
    })
}

/// The field type of a MySQL column (`DATA_TYPE`, `COLUMN_TYPE`, character length).
fn my_type(data_type: &str, column_type: &str, max_len: Option<u64>) -> FieldType {
    let ct = column_type.to_ascii_lowercase();
    match data_type.to_ascii_lowercase().as_str() {
        // MySQL's BOOLEAN is TINYINT(1).
        "tinyint" if ct.starts_with("tinyint(1)") => FieldType::Boolean,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            FieldType::Integer
        }
        "decimal" | "numeric" | "float" | "double" | "real" => FieldType::Real,
        "char" | "varchar" => FieldType::Text {
            max_len: max_len.and_then(|n| u32::try_from(n).ok()),
        },
        "datetime" | "timestamp" | "date" => FieldType::Timestamp,
        "enum" => FieldType::Enum(enum_labels(column_type)),
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            FieldType::Binary
        }
        _ => FieldType::Text { max_len: None },
    }
}

/// The labels of `enum('a','b''c')`.
fn enum_labels(column_type: &str) -> Vec<String> {
    let Some(inner) = column_type
        .find('(')
        .and_then(|i| column_type.rfind(')').map(|j| &column_type[i + 1..j]))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        match (ch, quoted) {
            ('\'', false) => quoted = true,
            ('\'', true) if chars.get(i + 1) == Some(&'\'') => {
                cur.push('\'');
                i += 1;
            }
            ('\'', true) => {
                quoted = false;
                out.push(std::mem::take(&mut cur));
            }
            (c, true) => cur.push(c),
            _ => {}
        }
        i += 1;
    }
    out
}

// === impl MyTable ===

struct MyTable {
    pool: Pool,
    m: Arc<Model>,
    names: Arc<Vec<String>>,
    keys: Arc<UniqueKeys>,
    /// How long to wait for a pooled connection.
    wait: Duration,
    /// Seconds a `GET_LOCK` waits.
    lock_wait: u64,
    /// The backend's name, for `explain`.
    store: Arc<str>,
}

/// A connection (or transaction) as the shared flows use it. Statements need the connection
/// mutably, the flows share it: an uncontended async mutex hands it to one at a time.
struct MyConn<'a, Q: Queryable> {
    q: tokio::sync::Mutex<&'a mut Q>,
    m: &'a Model,
    names: &'a [String],
    keys: &'a UniqueKeys,
    lock_wait: u64,
    /// A `GET_LOCK` was taken: release it after the transaction.
    locked: &'a AtomicBool,
    /// Set while `explain` runs the request.
    tap: Option<&'a Tap>,
}

impl<Q: Queryable + Send> MyConn<'_, Q> {
    fn error(&self, e: &mysql_async::Error) -> BackendError {
        error(e, self.names, self.keys)
    }

    async fn query(&self, sql: &Sql) -> Result<Vec<mysql_async::Row>, BackendError> {
        if let Some(t) = self.tap {
            t.sql(sql);
        }
        let mut q = self.q.lock().await;
        q.exec(sql.text(), params(sql))
            .await
            .map_err(|e| self.error(&e))
    }

    /// Runs a statement; rows found (the connection counts found rows) and the generated key.
    async fn run(&self, sql: &Sql) -> Result<(u64, Option<u64>), BackendError> {
        if let Some(t) = self.tap {
            t.sql(sql);
        }
        let mut q = self.q.lock().await;
        let r = q
            .exec_iter(sql.text(), params(sql))
            .await
            .map_err(|e| self.error(&e))?;
        let out = (r.affected_rows(), r.last_insert_id());
        r.drop_result().await.map_err(|e| self.error(&e))?;
        Ok(out)
    }
}

impl<Q: Queryable + Send> Conn for MyConn<'_, Q> {
    fn model(&self) -> &Model {
        self.m
    }

    fn names(&self) -> &[String] {
        self.names
    }

    async fn exec(&self, sql: &Sql) -> Result<u64, BackendError> {
        self.run(sql).await.map(|(n, _)| n)
    }

    async fn exec_insert(&self, sql: &Sql) -> Result<Option<i64>, BackendError> {
        let (_, id) = self.run(sql).await?;
        Ok(id.filter(|&n| n > 0).and_then(|n| i64::try_from(n).ok()))
    }

    async fn rows(&self, sql: &Sql) -> Result<Vec<Row>, BackendError> {
        let n = self.m.fields.len();
        Ok(self
            .query(sql)
            .await?
            .into_iter()
            .map(|r| to_row(r, n))
            .collect())
    }

    async fn strings(&self, sql: &Sql) -> Result<Vec<Vec<String>>, BackendError> {
        Ok(self
            .query(sql)
            .await?
            .into_iter()
            .map(row_strings)
            .collect())
    }

    /// `GET_LOCK` on the value (a name of at most 64 characters: a digest of it), waiting at
    /// most the statement timeout: concurrent writers of one value queue instead of racing
    /// between their check and their write. It is the session's: released after the
    /// transaction ends (see `in_tx!`).
    async fn lock(&self, key: &str) -> Result<(), BackendError> {
        let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
        let hex: String = digest.as_ref()[..20]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut sql = Sql::default();
        sql.push("SELECT GET_LOCK(")
            .param(Dialect::Mysql, Value::Text(format!("scim-sidecar:{hex}")))
            .push(", ")
            .param(
                Dialect::Mysql,
                Value::Int(i64::try_from(self.lock_wait).unwrap_or(10)),
            )
            .push(")");
        self.locked.store(true, Ordering::SeqCst);
        let got = self.strings(&sql).await?;
        match got.first().and_then(|r| r.first()).map(String::as_str) {
            Some("1") => Ok(()),
            Some("0") => Err(BackendError::Unavailable(
                "another write of the same value held its lock for the whole statement timeout"
                    .into(),
            )),
            _ => Err(BackendError::Internal("GET_LOCK failed".into())),
        }
    }
}

/// Runs a flow in a transaction: committed when it succeeds, rolled back when it fails
/// (always, under `explain`). A connection that took an advisory lock releases it after the
/// transaction; one abandoned half-way (the request's deadline passed) is rolled back and
/// reset by the pool before it is used again, which also frees its locks.
macro_rules! in_tx {
    ($table:expr, |$conn:ident| $flow:expr) => {{
        let table = $table;
        let tap = Tap::current(&table.store);
        let mut conn = table.conn().await?;
        conn.reset_connection(!table.m.unique_checks.is_empty());
        let locked = AtomicBool::new(false);
        let out = {
            let mut tx = conn
                .start_transaction(TxOpts::default())
                .await
                .map_err(|e| table.error(&e))?;
            if let Some(t) = &tap {
                t.text("START TRANSACTION");
            }
            let out = {
                let $conn = table.my_conn(&mut tx, &locked, tap.as_ref());
                $flow.await
            };
            match out {
                Ok(v) if tap.is_some() => {
                    if let Some(t) = &tap {
                        t.text("ROLLBACK");
                    }
                    tx.rollback().await.map(|()| v).map_err(|e| table.error(&e))
                }
                Ok(v) => tx.commit().await.map(|()| v).map_err(|e| table.error(&e)),
                Err(e) => {
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        };
        if locked.load(Ordering::SeqCst) {
            conn.query_drop("DO RELEASE_ALL_LOCKS()")
                .await
                .map_err(|e| table.error(&e))?;
        }
        conn.reset_connection(false);
        out
    }};
}

impl MyTable {
    async fn conn(&self) -> Result<mysql_async::Conn, BackendError> {
        get_conn(&self.pool, self.wait).await
    }

    fn error(&self, e: &mysql_async::Error) -> BackendError {
        error(e, &self.names, &self.keys)
    }

    fn my_conn<'a, Q: Queryable>(
        &'a self,
        q: &'a mut Q,
        locked: &'a AtomicBool,
        tap: Option<&'a Tap>,
    ) -> MyConn<'a, Q> {
        MyConn {
            q: tokio::sync::Mutex::new(q),
            m: &self.m,
            names: &self.names,
            keys: &self.keys,
            lock_wait: self.lock_wait,
            locked,
            tap,
        }
    }

    /// Refuses values a column's character set cannot hold, before anything is written:
    /// MySQL would refuse them too (strict mode), but a check first names the attribute and
    /// keeps a value that is only compared (a uniqueness check) from failing as an
    /// "illegal mix of collations".
    fn check_charsets<'v>(
        &self,
        values: impl Iterator<Item = (usize, &'v Value)>,
    ) -> Result<(), BackendError> {
        check_charsets(&self.m, values)
    }
}

fn check_charsets<'v>(
    m: &Model,
    values: impl Iterator<Item = (usize, &'v Value)>,
) -> Result<(), BackendError> {
    for (i, v) in values {
        let col = match m.fields.get(i) {
            Some(Field::Column(c)) => c,
            Some(Field::Child(ch)) => &ch.col,
            None => continue,
        };
        if !super::column_holds(Dialect::Mysql, col, v.first()) {
            return Err(BackendError::Rejected {
                field: Some(i),
                detail: format!(
                    "the value holds a character the application's column cannot store (its character set is {})",
                    col.charset.as_deref().unwrap_or("?")
                ),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl Table for MyTable {
    async fn insert(
        &self,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        self.check_charsets(values.iter().enumerate())?;
        in_tx!(self, |c| ops::insert(&c, values, members, load_members))
    }

    async fn fetch(&self, key: &str, members: bool) -> Result<Option<Row>, BackendError> {
        let Some(key) = self.m.key_value(key) else {
            return Ok(None);
        };
        let tap = Tap::current(&self.store);
        let mut conn = self.conn().await?;
        let locked = AtomicBool::new(false);
        ops::fetch_with_members(
            &self.my_conn(&mut conn, &locked, tap.as_ref()),
            &key,
            members,
        )
        .await
    }

    async fn search(&self, search: Search) -> Result<Found, BackendError> {
        let tap = Tap::current(&self.store);
        let mut conn = self.conn().await?;
        let locked = AtomicBool::new(false);
        ops::search(&self.my_conn(&mut conn, &locked, tap.as_ref()), &search).await
    }

    async fn present(&self, keys: &[String]) -> Result<Vec<String>, BackendError> {
        let tap = Tap::current(&self.store);
        let mut conn = self.conn().await?;
        let locked = AtomicBool::new(false);
        ops::present(&self.my_conn(&mut conn, &locked, tap.as_ref()), keys).await
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
        let m = self.m.clone();
        let edit: EditFn = Box::new(move |row| {
            let change: Change = edit(row)?;
            check_charsets(&m, change.set.iter().map(|(i, v)| (*i, v)))?;
            Ok(change)
        });
        in_tx!(self, |c| ops::update(&c, &key, load_members, edit))
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
        in_tx!(self, |c| ops::delete(&c, &key, mode, check))
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
        self.check_charsets(values.iter().enumerate())?;
        in_tx!(self, |c| ops::revive(
            &c,
            &key,
            values,
            members,
            load_members
        ))
    }
}

/// The state store's statements on the pool.
struct MyExec {
    pool: Pool,
    wait: Duration,
    /// The backend's name, for `explain`.
    store: Arc<str>,
}

impl Exec for MyExec {
    async fn write(&self, stmts: Vec<Sql>) -> Result<(), BackendError> {
        let none = Vec::new();
        let tap = Tap::current(&self.store);
        let mut conn = get_conn(&self.pool, self.wait).await?;
        let mut tx = conn
            .start_transaction(TxOpts::default())
            .await
            .map_err(|e| error(&e, &[], &none))?;
        if let Some(t) = &tap {
            t.text("START TRANSACTION");
        }
        for sql in &stmts {
            if let Some(t) = &tap {
                t.sql(sql);
            }
            tx.exec_drop(sql.text(), params(sql))
                .await
                .map_err(|e| error(&e, &[], &none))?;
        }
        match &tap {
            Some(t) => {
                t.text("ROLLBACK");
                tx.rollback().await
            }
            None => tx.commit().await,
        }
        .map_err(|e| error(&e, &[], &none))
    }

    async fn read(&self, sql: Sql) -> Result<Vec<Vec<String>>, BackendError> {
        if let Some(t) = Tap::current(&self.store) {
            t.sql(&sql);
        }
        let none = Vec::new();
        let mut conn = get_conn(&self.pool, self.wait).await?;
        let rows: Vec<mysql_async::Row> = conn
            .exec(sql.text(), params(&sql))
            .await
            .map_err(|e| error(&e, &[], &none))?;
        Ok(rows.into_iter().map(row_strings).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MySQL column types map to field types: TINYINT(1) is a boolean, ENUM keeps its labels
    /// (quotes doubled inside), varchar its length.
    #[test]
    fn types() {
        assert_eq!(my_type("tinyint", "tinyint(1)", None), FieldType::Boolean);
        assert_eq!(my_type("tinyint", "tinyint(4)", None), FieldType::Integer);
        assert_eq!(
            my_type("bigint", "bigint(20) unsigned", None),
            FieldType::Integer
        );
        assert_eq!(
            my_type("varchar", "varchar(60)", Some(60)),
            FieldType::Text { max_len: Some(60) }
        );
        assert_eq!(
            my_type("enum", "enum('active','it''s','x,y')", None),
            FieldType::Enum(vec!["active".into(), "it's".into(), "x,y".into()])
        );
        assert_eq!(my_type("datetime", "datetime", None), FieldType::Timestamp);
        assert_eq!(
            my_type("longtext", "longtext", None),
            FieldType::Text { max_len: None }
        );
        assert_eq!(
            my_type("varbinary", "varbinary(16)", None),
            FieldType::Binary
        );
    }

    /// Messages name their columns and keys in both servers' spellings.
    #[test]
    fn messages_name_columns_and_keys() {
        assert_eq!(
            column_named("Incorrect string value: '\\xF0\\x9F' for column `app`.`a`.`u3` at row 1")
                .as_deref(),
            Some("u3")
        );
        assert_eq!(
            column_named("Data too long for column 'login' at row 1").as_deref(),
            Some("login")
        );
        assert_eq!(
            column_named("Column 'display_name' cannot be null").as_deref(),
            Some("display_name")
        );
        assert_eq!(
            column_named("Field 'password_hash' doesn't have a default value").as_deref(),
            Some("password_hash")
        );
        assert_eq!(
            quoted_last("Duplicate entry 'ann' for key 'principals.principals_login'").as_deref(),
            Some("principals.principals_login")
        );
        let keys = vec![("principals_login".to_string(), "login".to_string())];
        let e = mysql_async::Error::Server(mysql_async::ServerError {
            code: 1062,
            message: "Duplicate entry 'ann' for key 'principals_login'".into(),
            state: "23000".into(),
        });
        assert!(matches!(
            error(&e, &["login".into()], &keys),
            BackendError::Conflict { field: Some(0), .. }
        ));
    }

    /// What each character set can hold: latin1 is Windows-1252, utf8 (utf8mb3) stops at the
    /// Basic Multilingual Plane.
    #[test]
    fn charsets() {
        use super::super::charset_holds;
        assert!(charset_holds("latin1", "Zoë €uro Š"));
        assert!(!charset_holds("latin1", "Жанна"));
        assert!(charset_holds("utf8mb3", "Жанна 日本"));
        assert!(!charset_holds("utf8", "party 🎉"));
        assert!(charset_holds("utf8mb4", "party 🎉"));
        assert!(!charset_holds("ascii", "é"));
    }

    /// A generated column under a unique index reads as the partial index it stands for, in
    /// both servers' spellings; any other expression is no index on a mapped column.
    #[test]
    fn generated_partial_indexes() {
        assert_eq!(
            partial_of("case when `type` = 'User' then `login` end"),
            Some(Partial {
                column: "login".into(),
                lowered: false,
                conds: vec![("type".into(), "User".into())]
            })
        );
        assert_eq!(
            partial_of(
                "(case when ((`type` = _utf8mb4'User') and (`status` = 1)) then lower(`login`) end)"
            ),
            Some(Partial {
                column: "login".into(),
                lowered: true,
                conds: vec![
                    ("type".into(), "User".into()),
                    ("status".into(), "1".into())
                ]
            })
        );
        assert_eq!(
            partial_of("lcase(`login`)").map(|p| (p.column, p.lowered)),
            Some(("login".into(), true))
        );
        assert_eq!(partial_of("`a` + `b`"), None);
        assert_eq!(partial_of("concat(`a`,`b`)"), None);
    }

    /// Zero dates are no value; dates read as the sidecar's RFC 3339 text.
    #[test]
    fn dates() {
        use mysql_async::Value as V;
        assert_eq!(from_my(V::Date(0, 0, 0, 0, 0, 0, 0), false), Value::Null);
        assert_eq!(
            from_my(V::Date(2024, 5, 1, 10, 0, 0, 50_000), false),
            Value::Text("2024-05-01T10:00:00.050Z".into())
        );
    }
}
