//! The PostgreSQL backend: the store most legacy apps run on.
//!
//! A pool of connections kept on the threads that opened them ([`super::pg_pool`]; prepared
//! statements cached per connection), TLS through rustls
//! (`verify-full` against a CA file), TCP or Unix-socket hosts. Every session runs with the
//! configured `statement_timeout` and `TimeZone=UTC`. Statements come from the shared
//! [`Model`]; this module adds what is PostgreSQL's own: catalog introspection, one-statement
//! writes (`INSERT … RETURNING` with child rows in a CTE; member changes as one CTE that
//! checks and inserts), `SELECT … FOR UPDATE`, advisory locks where no unique index makes a
//! check-then-write safe, and SQLSTATE mapping.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use serde::Deserialize;

use super::config::{RawServerKeys, RawTls, RelSpec, server_keys};
use super::model::{self, Catalog, ColumnInfo, Model, TableInfo, UniqueInfo};
use super::ops::{self, Conn};
use super::pg_pool::{PgClient, PgPool, PoolError, SharedClient};
use super::state::{Exec, SqlStateStore};
use super::{Dialect, Param, Sql, Tap, quote_ident};
use crate::backend::state::StateStore;
use crate::backend::{
    Backend, BackendError, CheckFn, DeleteMode, EditFn, FieldType, Found, Loc, Opened, Refused,
    Row, Search, SpecPart, SpecProblem, StoreConfig, StoreKind, Table, TableSpec, Value,
};
use crate::config::raw::{NumOrStr, RawValue, S};
use crate::config::{Cx, Secret};

/// The sidecar's own attribute table, in its own schema.
const KEPT_SCHEMA: &str = "scim_sidecar";
const KEPT_TABLE: &str = "scim_sidecar.attributes";

// === The kind ===

/// `type = "postgres"`: a PostgreSQL database.
pub struct Postgres;

/// `[backend.NAME]` of type `postgres`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPg {
    #[serde(rename = "type")]
    _kind: S,
    url: Option<S>,
    pool_size: Option<NumOrStr>,
    connect_timeout: Option<S>,
    statement_timeout: Option<S>,
    tls: Option<toml::Spanned<RawTls>>,
}

impl StoreKind for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn backend(
        &self,
        name: &str,
        raw: &RawValue<'_>,
        cx: &mut Cx<'_>,
    ) -> Option<Arc<dyn StoreConfig>> {
        let o = cx.origin(raw.span());
        let b: RawPg = cx.deserialize(raw, &format!("[backend.{name}]"))?;
        let keys = RawServerKeys {
            url: b.url.as_ref(),
            pool_size: &b.pool_size,
            connect_timeout: &b.connect_timeout,
            statement_timeout: &b.statement_timeout,
            tls: b.tls.as_ref(),
        };
        let k = server_keys(
            keys,
            &o,
            name,
            "postgres://app:secret@127.0.0.1:5432/app",
            cx,
        )?;
        if parse_url(&k.url).is_err() {
            cx.error(
                &o,
                format!("[backend.{name}]: url is not a PostgreSQL connection string"),
                Some("write postgres://user:password@host:5432/dbname (or key=value pairs)"),
            );
        }
        Some(Arc::new(PgOptions {
            url: Secret(k.url),
            pool_size: k.pool_size,
            connect_timeout: k.connect_timeout,
            statement_timeout: k.statement_timeout,
            ca_file: k.ca_file,
        }))
    }

    super::config::sql_addressing!();
}

#[async_trait]
impl StoreConfig for PgOptions {
    fn kind(&self) -> &'static str {
        "postgres"
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
        PgBackend::open(name, self)
            .await
            .map(|b| Arc::new(b) as Arc<dyn Backend>)
    }
}

/// How to reach the database (`[backend.NAME]` of type `postgres`).
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// A `postgres://` URL or a `key=value` connection string (holds the password: never
    /// printed).
    pub url: Secret,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Time to establish a connection (and to wait for a free one).
    pub connect_timeout: Duration,
    /// `statement_timeout` of every session; a statement running longer answers 503.
    pub statement_timeout: Duration,
    /// A CA certificate file: connect with TLS and verify the server's certificate and name
    /// against it (`verify-full`). `None`: plain TCP or a Unix socket.
    pub ca_file: Option<std::path::PathBuf>,
}

impl ToSql for Param {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Param::Value(v) if v.is_null() => Ok(IsNull::Yes),
            Param::Value(Value::Bytes(b)) => {
                // bytea's text input form: `\x` and hex digits.
                out.extend_from_slice(b"\\x");
                for byte in b {
                    out.extend_from_slice(format!("{byte:02x}").as_bytes());
                }
                Ok(IsNull::No)
            }
            Param::Value(v) => {
                // Every placeholder is `$n::text`: the value travels as text and SQL casts it.
                out.extend_from_slice(model::value_text(v).as_bytes());
                Ok(IsNull::No)
            }
            Param::TextArray(items) => items.to_sql(ty, out),
            Param::Inferred(v) => inferred(v, ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A hook parameter, encoded as the type PostgreSQL inferred for its placeholder.
fn inferred(
    v: &Value,
    ty: &Type,
    out: &mut BytesMut,
) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
    if v.is_null() {
        return Ok(IsNull::Yes);
    }
    let text = model::value_text(v.first());
    let number =
        || -> Result<i64, Box<dyn StdError + Sync + Send>> { Ok(text.trim().parse::<i64>()?) };
    match *ty {
        Type::INT2 => i16::try_from(number()?)?.to_sql(ty, out),
        Type::INT4 => i32::try_from(number()?)?.to_sql(ty, out),
        Type::INT8 => number()?.to_sql(ty, out),
        Type::FLOAT4 => text.trim().parse::<f32>()?.to_sql(ty, out),
        Type::FLOAT8 => text.trim().parse::<f64>()?.to_sql(ty, out),
        Type::BOOL => matches!(text.as_str(), "true" | "t" | "1").to_sql(ty, out),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            text.as_str().to_sql(ty, out)
        }
        _ => Err(format!(
            "a hook parameter used as {ty}: cast it in the statement (e.g. :name::text::{ty})"
        )
        .into()),
    }
}

/// A PostgreSQL error as a person reads it: the server's message and detail, or the
/// connection failure and its cause (the driver's own `Display` says only "db error").
fn explain(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_owned(),
        };
    }
    match std::error::Error::source(e) {
        Some(cause) if !e.to_string().contains(&cause.to_string()) => format!("{e}: {cause}"),
        _ => e.to_string(),
    }
}

/// Maps a PostgreSQL error to what the layer above must tell apart.
fn error(e: &tokio_postgres::Error, names: &[String]) -> BackendError {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: connection refused, closed, reset.
        return BackendError::Unavailable(explain(e));
    };
    let code = db.code();
    let field = db
        .column()
        .map(str::to_owned)
        .or_else(|| key_column(db.detail()?))
        .and_then(|c| names.iter().position(|n| n.eq_ignore_ascii_case(&c)));
    let msg = db.message().to_owned();
    if *code == SqlState::UNIQUE_VIOLATION {
        BackendError::Conflict { field, detail: msg }
    } else if *code == SqlState::NOT_NULL_VIOLATION {
        super::refused(field, "a value is required", &msg)
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION
        && db.detail().is_some_and(|d| d.contains("still referenced"))
    {
        super::refused(
            None,
            "the application still has rows that refer to this resource, and its database refuses to delete it (see `cascade` in the mapping)",
            &format!("{msg}: {}", db.detail().unwrap_or("")),
        )
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        super::refused(
            None,
            "a value refers to a row that does not exist in the application (e.g. a manager id)",
            &msg,
        )
    } else if *code == SqlState::CHECK_VIOLATION {
        let named = field.or_else(|| super::field_mentioned(db.constraint().unwrap_or(""), names));
        super::refused(
            named,
            "the application does not accept this value (one of its CHECK constraints refuses it)",
            &msg,
        )
    } else if code.code().starts_with("22") {
        // Class 22, data exception: a value the column cannot hold.
        let why = match code.code() {
            "22001" => "the value is too long for the application's column",
            "22021" | "22P05" => {
                "the value holds a character the application's database cannot store"
            }
            "22P02" | "22003" | "22008" | "22007" => {
                "the value is not of the application's column type (or not one of its labels)"
            }
            _ => "the application's database cannot hold this value",
        };
        super::refused(field, why, &msg)
    } else if *code == SqlState::QUERY_CANCELED {
        BackendError::Unavailable(format!("statement timeout: {msg}"))
    } else if [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::READ_ONLY_SQL_TRANSACTION,
    ]
    .contains(code)
        || code.code().starts_with("08")
        || code.code().starts_with("53")
    {
        BackendError::Unavailable(format!("{}: {msg}", code.code()))
    } else {
        BackendError::Internal(format!("{}: {msg}", code.code()))
    }
}

/// The column a unique violation names: `Key (login)=(x) already exists.`, or for an index
/// on an expression, `Key (lower(login::text))=(x) …`: the identifier inside.
fn key_column(detail: &str) -> Option<String> {
    let inner = detail.strip_prefix("Key (")?;
    let end = inner.find(")=(")?;
    let expr = &inner[..end];
    let expr = expr.trim_start_matches("lower(").trim_start_matches('(');
    let name: String = expr
        .trim_start_matches('"')
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
        .collect();
    (!name.is_empty()).then_some(name)
}

fn pool_error(e: PoolError) -> BackendError {
    match e {
        PoolError::Connect(e) => error(&e, &[]),
        other => BackendError::Unavailable(format!("no database connection: {other}")),
    }
}

// === impl PgBackend ===

/// A PostgreSQL database.
pub struct PgBackend {
    name: String,
    pool: PgPool,
    /// `host:port/db` for messages (never the password).
    shown: String,
    /// `connect_timeout` (for a connection) plus `statement_timeout` (for the work).
    deadline: Duration,
}

impl PgBackend {
    /// Builds the pool and checks that the database answers (a start-up error otherwise).
    pub async fn open(name: &str, o: &PgOptions) -> Result<Self, String> {
        let mut cfg: tokio_postgres::Config = parse_url(&o.url.0).map_err(|e| {
            format!("the url is not a PostgreSQL connection string ({e}); write postgres://user:password@host:5432/dbname")
        })?;
        cfg.application_name("scim-sidecar");
        cfg.connect_timeout(o.connect_timeout);
        cfg.options(format!(
            "-c statement_timeout={} -c TimeZone=UTC",
            o.statement_timeout.as_millis()
        ));
        let shown = describe(&cfg);
        if cfg.get_ssl_mode() == tokio_postgres::config::SslMode::Require && o.ca_file.is_none() {
            return Err(format!(
                "the url asks for TLS (sslmode) but names no CA to verify {shown} against; set \
                 tls = {{ ca = \"/path/to/ca.pem\" }} in [backend.{name}] (the sidecar never \
                 connects with TLS it cannot verify)"
            ));
        }
        let tls = match &o.ca_file {
            Some(ca) => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Require);
                crate::tls::client_config(ca)?
            }
            None => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                crate::tls::no_roots()?
            }
        };
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
        let pool = PgPool::new(cfg, tls, o.pool_size, o.connect_timeout, o.connect_timeout);
        let client = pool
            .get()
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL at {shown}: {}", chain(&e)))?;
        client
            .simple_query("SELECT 1")
            .await
            .map_err(|e| format!("PostgreSQL at {shown} does not answer: {}", chain(&e)))?;
        Ok(PgBackend {
            name: name.to_owned(),
            pool,
            shown,
            deadline: o.connect_timeout + o.statement_timeout,
        })
    }
}

/// Parses a connection URL (or key-value string). libpq's `sslmode=verify-full` and
/// `verify-ca`, which the driver does not know, mean TLS with the server verified — what the
/// sidecar does whenever it uses TLS — so they are read as `require`, and then need `tls.ca`.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    url.replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require")
        .parse()
}

fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

fn describe(cfg: &tokio_postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", cfg.get_dbname().unwrap_or("postgres"))
}

#[async_trait]
impl Backend for PgBackend {
    fn name(&self) -> &str {
        &self.name
    }

    /// `statement_timeout` is enforced by the server, which cannot enforce it while it is
    /// frozen: the client side gives up after a connection wait and a statement's time.
    fn deadline(&self) -> Duration {
        self.deadline
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let c = self.pool.get().await.map_err(pool_error)?;
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| error(&e, &[]))?;
        Ok(())
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
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| fail(format!("cannot connect to {}: {e}", self.shown)))?;
        let spec = super::config::rel_spec(&spec, KEPT_TABLE)?;
        let cat = catalog(&client, &spec, &self.shown)
            .await
            .map_err(|e| fail(format!("cannot inspect the database: {}", explain(&e))))?;
        let names: Vec<String> = spec.fields.iter().map(|f| f.column().to_owned()).collect();
        // Hooks are prepared (never run) against the live database: a wrong table, column or
        // type is a start-up problem at the hook's line, not a failed write.
        let mut problems = Vec::new();
        for (origin, sql, shown) in model::hook_statements(Dialect::Postgres, &spec) {
            if let Err(e) = client.prepare(sql.text()).await {
                problems.push(model::unprepared(origin, &shown, &explain(&e)));
            }
        }
        let (m, fields, warnings) = match Model::build(Dialect::Postgres, &spec, &cat) {
            Ok(built) if problems.is_empty() => built,
            Ok((_, fields, _)) => return Err(Refused { problems, fields }),
            Err(mut refused) => {
                refused.problems.extend(problems);
                return Err(refused);
            }
        };
        let mut warnings = warnings;
        let conn = PgConn {
            c: Session::Client(&client),
            m: &m,
            names: &names,
            tap: None,
        };
        for &(i, fold) in &m.unique_checks {
            let Some(sql) = m.duplicates(i, fold) else {
                continue;
            };
            // Advice only: a failure here (permissions) must not keep the sidecar down.
            if let Ok(rows) = conn.strings(&sql).await {
                let n: u64 = rows
                    .first()
                    .and_then(|r| r.first())
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                if n > 0 {
                    warnings.push(model::duplicates_warning(i, &names[i], n));
                }
            }
        }
        Ok(Opened {
            table: Arc::new(PgTable {
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
            exec: PgExec {
                pool: self.pool.clone(),
                store: Arc::from(self.name.as_str()),
            },
            d: Dialect::Postgres,
            table: quote_ident(KEPT_TABLE),
            shown: format!("[backend.{}] (PostgreSQL {})", self.name, self.shown),
        }))
    }

    async fn migrate(&self) -> Result<Vec<String>, BackendError> {
        let c = self.pool.get().await.map_err(pool_error)?;
        let existed = c
            .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&KEPT_TABLE])
            .await
            .map_err(|e| error(&e, &[]))?
            .get::<_, bool>(0);
        c.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {KEPT_SCHEMA};
             CREATE TABLE IF NOT EXISTS {KEPT_TABLE} (
                 resource_type text NOT NULL,
                 resource_id   text NOT NULL,
                 name          text NOT NULL,
                 value         text,
                 PRIMARY KEY (resource_type, resource_id, name)
             );
             CREATE INDEX IF NOT EXISTS attributes_value ON {KEPT_TABLE} (resource_type, name, value);"
        ))
        .await
        .map_err(|e| error(&e, &[]))?;
        Ok(if existed {
            Vec::new()
        } else {
            vec![format!(
                "created schema {KEPT_SCHEMA} and table {KEPT_TABLE}"
            )]
        })
    }
}

// === Catalog ===

async fn catalog(
    c: &tokio_postgres::Client,
    spec: &RelSpec,
    shown: &str,
) -> Result<Catalog, tokio_postgres::Error> {
    let mut cat = Catalog {
        store: format!("PostgreSQL {shown}"),
        kept_table: KEPT_TABLE.to_owned(),
        ..Default::default()
    };
    let rows = c
        .query(
            "SELECT CASE WHEN n.nspname = ANY(current_schemas(false)) THEN c.relname::text ELSE n.nspname || '.' || c.relname END
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'v', 'p', 'f', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             ORDER BY 1",
            &[],
        )
        .await?;
    cat.all = rows.iter().map(|r| r.get(0)).collect();
    for name in model::tables_needed(spec) {
        let info = table_info(c, &name).await?;
        cat.tables.insert(name, info);
    }
    Ok(cat)
}

async fn table_info(
    c: &tokio_postgres::Client,
    table: &str,
) -> Result<Option<TableInfo>, tokio_postgres::Error> {
    let reg = quote_ident(table);
    let exists: bool = c
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&reg])
        .await?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let cols = c
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, NULL), t.typname::text, t.typtype::text, a.attnotnull,
                    (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''),
                    (a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%'),
                    CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4 THEN a.atttypmod - 4 END,
                    coalesce((SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = a.atttypid), '{}'),
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY(i.indkey)),
                    a.atthasdef
             FROM pg_attribute a
             JOIN pg_type t ON t.oid = a.atttypid
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&reg],
        )
        .await?;
    let columns = cols
        .iter()
        .map(|r| {
            let typname: String = r.get(2);
            let typtype: String = r.get(3);
            let format: String = r.get(1);
            let max_len: Option<i32> = r.get(7);
            let labels: Vec<String> = r.get(8);
            let (ty, cast) = pg_type(&typname, &typtype, &format, max_len, labels);
            ColumnInfo {
                name: r.get(0),
                ty,
                cast,
                notnull: r.get(4),
                has_default: r.get(5),
                default_sql: r.get::<_, bool>(10).then(|| "DEFAULT".to_owned()),
                generated: r.get(6),
                pk: r.get(9),
                ci: typname == "citext",
                charset: None,
            }
        })
        .collect();
    let idx = c
        .query(
            "SELECT i.indisunique, i.indpred IS NOT NULL,
                    array(SELECT (SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = k.k)
                          FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(k, n) ORDER BY k.n),
                    pg_get_indexdef(i.indexrelid)
             FROM pg_index i WHERE i.indrelid = to_regclass($1::text)",
            &[&reg],
        )
        .await?;
    let mut uniques = Vec::new();
    let mut indexed = Vec::new();
    for r in &idx {
        let cols: Vec<Option<String>> = r
            .get::<_, Vec<Option<String>>>(2)
            .into_iter()
            .map(|c| c.map(|c| c.to_ascii_lowercase()))
            .collect();
        let def: String = r.get(3);
        indexed.push(cols.iter().map(|c| c.clone().unwrap_or_default()).collect());
        if r.get::<_, bool>(0) {
            uniques.push(UniqueInfo {
                fold: false,
                lower_of: lower_of(&def),
                columns: cols,
                partial: r.get(1),
                predicate: model::index_predicate(&def),
            });
        }
    }
    // Single-column foreign keys pointing here: what a hard delete must handle or be refused
    // by (confdeltype: a no action, r restrict, c cascade, n set null, d set default).
    let fks = c
        .query(
            "SELECT CASE WHEN n.nspname = ANY(current_schemas(false)) THEN r.relname::text ELSE n.nspname || '.' || r.relname END,
                    a.attname::text, k.confdeltype::text
             FROM pg_constraint k
             JOIN pg_class r ON r.oid = k.conrelid
             JOIN pg_namespace n ON n.oid = r.relnamespace
             JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
             WHERE k.contype = 'f' AND k.confrelid = to_regclass($1::text)
               AND array_length(k.conkey, 1) = 1",
            &[&reg],
        )
        .await?;
    let referenced_by = fks
        .iter()
        .map(|r| model::ForeignKey {
            table: r.get(0),
            column: r.get(1),
            handled: matches!(r.get::<_, String>(2).as_str(), "c" | "n" | "d"),
        })
        .collect();
    Ok(Some(TableInfo {
        columns,
        uniques,
        indexed,
        referenced_by,
    }))
}

/// The field type of a PostgreSQL type, and the cast text parameters need.
fn pg_type(
    typname: &str,
    typtype: &str,
    format: &str,
    max_len: Option<i32>,
    labels: Vec<String>,
) -> (FieldType, Option<String>) {
    let cast = Some(format.to_owned());
    match typname {
        "int2" | "int4" | "int8" => (FieldType::Integer, cast),
        "bool" => (FieldType::Boolean, cast),
        "text" | "varchar" | "bpchar" | "name" => (
            FieldType::Text {
                max_len: max_len.and_then(|n| u32::try_from(n).ok()),
            },
            None,
        ),
        "citext" => (FieldType::Text { max_len: None }, cast),
        "timestamptz" | "timestamp" | "date" => (FieldType::Timestamp, cast),
        "numeric" | "float4" | "float8" => (FieldType::Real, cast),
        _ if typtype == "e" => (FieldType::Enum(labels), cast),
        _ => (FieldType::Text { max_len: None }, cast),
    }
}

/// The column of an index on `lower(column)`: `… USING btree (lower((login)::text))`.
fn lower_of(def: &str) -> Option<String> {
    let l = def.to_ascii_lowercase();
    let i = l.find("lower(")?;
    let rest = l[i + 6..].trim_start_matches(['(', '"']);
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$')
        .collect();
    (!name.is_empty()).then_some(name)
}

// === impl PgTable ===

struct PgTable {
    pool: PgPool,
    m: Arc<Model>,
    names: Arc<Vec<String>>,
    /// The backend's name, for `explain`.
    store: Arc<str>,
}

fn refs(sql: &Sql) -> Vec<&(dyn ToSql + Sync)> {
    sql.params()
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect()
}

/// What a flow's statements run on: a pooled connection, or a transaction on one.
enum Session<'a> {
    Client(&'a deadpool_postgres::ClientWrapper),
    Tx(&'a PgTx<'a>),
}

impl Session<'_> {
    async fn prepare_cached(
        &self,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        match self {
            Session::Client(c) => c.prepare_cached(sql).await,
            Session::Tx(t) => t.c.prepare_cached(sql).await,
        }
    }

    /// Runs a query; as the transaction's `last` statement, it commits with it
    /// ([`PgTx::last`]).
    async fn query(
        &self,
        st: &tokio_postgres::Statement,
        params: &[&(dyn ToSql + Sync)],
        last: bool,
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        match self {
            Session::Client(c) => c.query(st, params).await,
            Session::Tx(t) if last => t.last(t.c.query(st, params)).await,
            Session::Tx(t) => t.begun(t.c.query(st, params)).await,
        }
    }

    async fn execute(
        &self,
        st: &tokio_postgres::Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        match self {
            Session::Client(c) => c.execute(st, params).await,
            Session::Tx(t) => t.begun(t.c.execute(st, params)).await,
        }
    }
}

/// A transaction whose `BEGIN` goes out with its first statement, in one write, and is
/// answered with it: one round trip fewer than tokio-postgres's `transaction()`, which waits
/// for `BEGIN`'s answer before sending anything else (tokio-postgres sends a request when
/// its future is first polled, and the server runs requests in the order they arrive).
///
/// Ends with [`PgTx::commit`] or [`PgTx::rollback`], or with its last statement
/// ([`PgTx::last`]). Dropped unfinished (a statement failed, or the client went away
/// mid-request), it queues a `ROLLBACK` on the connection before the connection goes back to
/// the pool, as tokio-postgres's own `Transaction` does: the next request on the connection
/// is sent after it.
struct PgTx<'a> {
    c: &'a deadpool_postgres::ClientWrapper,
    /// `BEGIN` has been sent.
    begun: std::sync::atomic::AtomicBool,
    /// Ended on the server by [`PgTx::last`]'s `COMMIT` (or by no `BEGIN` at all).
    ended: std::sync::atomic::AtomicBool,
    /// Committed or rolled back.
    finished: bool,
}

impl<'a> PgTx<'a> {
    fn new(c: &'a deadpool_postgres::ClientWrapper) -> PgTx<'a> {
        PgTx {
            c,
            begun: std::sync::atomic::AtomicBool::new(false),
            ended: std::sync::atomic::AtomicBool::new(false),
            finished: false,
        }
    }

    /// Runs the transaction's last statement with `COMMIT` sent right behind it: one round
    /// trip for both (a PATCH: two round trips instead of three). When the statement fails
    /// on the server, the server rolls the transaction back at that `COMMIT` (PostgreSQL
    /// ends a failed transaction's `COMMIT` as a `ROLLBACK`), so nothing it held is written.
    /// When it fails before it is sent (a parameter that cannot be encoded), no `COMMIT` is
    /// sent and the transaction ends as any failed one. As the first statement it runs
    /// alone, atomic by itself. After it, [`PgTx::commit`] sends nothing.
    async fn last<T>(
        &self,
        statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.begun.load(Relaxed) {
            self.ended.store(true, Relaxed);
            return statement.await;
        }
        let mut statement = std::pin::pin!(statement);
        // tokio-postgres sends a request on its first poll and then waits for the answer.
        if let std::task::Poll::Ready(r) = poll_once(statement.as_mut()) {
            return r;
        }
        let mut commit = std::pin::pin!(self.c.batch_execute("COMMIT"));
        let sent = poll_once(commit.as_mut());
        self.ended.store(true, Relaxed);
        let out = statement.await;
        let committed = match sent {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => commit.await,
        };
        // The statement's own error first: the COMMIT's answer is read either way.
        let out = out?;
        committed?;
        Ok(out)
    }

    /// Runs `statement` in the transaction, sending `BEGIN` just before it when it is the
    /// first.
    async fn begun<T>(
        &self,
        statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, tokio_postgres::Error> {
        if self.begun.swap(true, std::sync::atomic::Ordering::Relaxed) {
            return statement.await;
        }
        let mut begin = std::pin::pin!(self.c.batch_execute("BEGIN"));
        let sent = poll_once(begin.as_mut());
        let out = statement.await;
        match sent {
            std::task::Poll::Ready(r) => r?,
            std::task::Poll::Pending => begin.await?,
        }
        out
    }

    /// Whether `BEGIN` was sent and the transaction has not ended on the server.
    fn open(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.begun.load(Relaxed) && !self.ended.load(Relaxed)
    }

    async fn commit(mut self) -> Result<(), tokio_postgres::Error> {
        self.finished = true;
        if self.open() {
            self.c.batch_execute("COMMIT").await?;
        }
        Ok(())
    }

    async fn rollback(mut self) -> Result<(), tokio_postgres::Error> {
        self.finished = true;
        if self.open() {
            self.c.batch_execute("ROLLBACK").await?;
        }
        Ok(())
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if !self.finished && self.open() {
            // Sent on the first poll; its answer is read and dropped by the connection.
            let _ = poll_once(std::pin::pin!(self.c.batch_execute("ROLLBACK")));
        }
    }
}

/// Polls `f` once, without a task to wake: a tokio-postgres request is sent by then.
fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
}

/// A connection (or transaction) as the shared flows use it.
struct PgConn<'a> {
    c: Session<'a>,
    m: &'a Model,
    names: &'a [String],
    /// Set while `explain` runs the request.
    tap: Option<&'a Tap>,
}

impl PgConn<'_> {
    /// `sql`'s prepared statement (shown by `explain`, which records it).
    async fn prepare(&self, sql: &Sql) -> Result<tokio_postgres::Statement, BackendError> {
        if let Some(t) = self.tap {
            t.sql(sql);
        }
        self.c
            .prepare_cached(sql.text())
            .await
            .map_err(|e| error(&e, self.names))
    }

    /// Runs `sql`; as the transaction's `last` statement, it commits with it (never under
    /// `explain`, which rolls back).
    async fn query(&self, sql: &Sql, last: bool) -> Result<Vec<tokio_postgres::Row>, BackendError> {
        let st = self.prepare(sql).await?;
        self.c
            .query(&st, &refs(sql), last && self.tap.is_none())
            .await
            .map_err(|e| error(&e, self.names))
    }

    /// [`Conn::rows`], or [`Conn::rows_last`] when `last`.
    async fn rows_of(&self, sql: &Sql, last: bool) -> Result<Vec<Row>, BackendError> {
        let n = self.m.fields.len();
        Ok(self
            .query(sql, last)
            .await?
            .iter()
            .map(|r| to_row(r, n))
            .collect())
    }
}

impl Conn for PgConn<'_> {
    fn model(&self) -> &Model {
        self.m
    }

    fn names(&self) -> &[String] {
        self.names
    }

    async fn exec(&self, sql: &Sql) -> Result<u64, BackendError> {
        let st = self.prepare(sql).await?;
        self.c
            .execute(&st, &refs(sql))
            .await
            .map_err(|e| error(&e, self.names))
    }

    /// Inserts read their key back with `RETURNING`: nothing to report here.
    async fn exec_insert(&self, sql: &Sql) -> Result<Option<i64>, BackendError> {
        self.exec(sql).await.map(|_| None)
    }

    async fn rows(&self, sql: &Sql) -> Result<Vec<Row>, BackendError> {
        self.rows_of(sql, false).await
    }

    async fn rows_last(&self, sql: &Sql) -> Result<Vec<Row>, BackendError> {
        self.rows_of(sql, true).await
    }

    async fn strings(&self, sql: &Sql) -> Result<Vec<Vec<String>>, BackendError> {
        Ok(self
            .query(sql, false)
            .await?
            .iter()
            .map(row_strings)
            .collect())
    }

    /// Both on the wire together, inside a transaction: `then` (and `COMMIT`, when `last`)
    /// goes out before `first` is answered. When `first` fails, the server refuses `then`
    /// and ends the transaction with a `ROLLBACK` ([`PgTx::last`]); `first`'s error is the
    /// answer. Outside a transaction, one after the other.
    async fn strings_then_rows(
        &self,
        first: &Sql,
        then: &Sql,
        last: bool,
    ) -> Result<(Vec<Vec<String>>, Vec<Row>), BackendError> {
        let together = matches!(self.c, Session::Tx(_));
        let st = self.prepare(first).await?;
        let params = refs(first);
        let mut before = std::pin::pin!(self.c.query(&st, &params, false));
        // Sent on its first poll; answered (or refused) at once only when it was not sent.
        let sent = match together {
            true => poll_once(before.as_mut()),
            false => std::task::Poll::Ready(before.as_mut().await),
        };
        if let std::task::Poll::Ready(r) = sent {
            let before: Vec<Vec<String>> = r
                .map_err(|e| error(&e, self.names))?
                .iter()
                .map(row_strings)
                .collect();
            if !before.is_empty() {
                return Ok((before, Vec::new()));
            }
            return Ok((before, self.rows_of(then, last).await?));
        }
        let mut rows = std::pin::pin!(self.rows_of(then, last));
        let rows_sent = poll_once(rows.as_mut());
        // The first answer is read first: the connection hands each answer over in order.
        let before = before.await;
        let rows = match rows_sent {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => rows.await,
        };
        let before = before.map_err(|e| error(&e, self.names))?;
        Ok((before.iter().map(row_strings).collect(), rows?))
    }

    /// A transaction-scoped advisory lock on the value: concurrent writers of one value
    /// queue instead of racing between their check and their write.
    async fn lock(&self, key: &str) -> Result<(), BackendError> {
        let mut lock = Sql::default();
        lock.push("SELECT pg_advisory_xact_lock(hashtext(")
            .param(Dialect::Postgres, Value::Text(key.to_owned()))
            .push("))::text");
        self.query(&lock, false).await.map(|_| ())
    }
}

/// Column `i` as text. Every statement the model builds selects text (`::text` casts); a
/// column of another type reads as no value rather than failing the request.
fn text_at(r: &tokio_postgres::Row, i: usize) -> Option<String> {
    r.try_get::<_, Option<String>>(i).ok().flatten()
}

fn row_strings(r: &tokio_postgres::Row) -> Vec<String> {
    (0..r.len())
        .map(|i| text_at(r, i).unwrap_or_default())
        .collect()
}

fn to_row(r: &tokio_postgres::Row, n: usize) -> Row {
    let key = text_at(r, 0);
    let values = (1..=n)
        .map(|i| match text_at(r, i) {
            Some(s) => Value::Text(s),
            None => Value::Null,
        })
        .collect();
    Row {
        key: key.unwrap_or_default(),
        values,
        members: None,
    }
}

impl PgTable {
    async fn client(&self) -> Result<PgClient, BackendError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// A connection for statements that each run alone (outside a transaction).
    async fn shared(&self) -> Result<SharedClient, BackendError> {
        self.pool.shared().await.map_err(pool_error)
    }

    fn conn<'a>(&'a self, c: Session<'a>, tap: Option<&'a Tap>) -> PgConn<'a> {
        PgConn {
            c,
            m: &self.m,
            names: &self.names,
            tap,
        }
    }
}

/// Runs a flow in a transaction: committed when it succeeds; rolled back by the driver when
/// it fails or is dropped half-way (the client went away). Under `explain`, recorded and
/// always rolled back.
macro_rules! in_tx {
    ($table:expr, |$conn:ident| $flow:expr) => {{
        let tap = Tap::current(&$table.store);
        let client = $table.client().await?;
        let tx = PgTx::new(&client);
        let out = {
            if let Some(t) = &tap {
                t.text("BEGIN");
            }
            let $conn = $table.conn(Session::Tx(&tx), tap.as_ref());
            $flow.await?
        };
        match &tap {
            Some(t) => {
                t.text("ROLLBACK");
                tx.rollback().await
            }
            None => tx.commit().await,
        }
        .map_err(|e| error(&e, &$table.names))?;
        Ok(out)
    }};
}

/// Runs a read on a pooled connection (recorded under `explain`).
macro_rules! read {
    ($table:expr, |$conn:ident| $flow:expr) => {{
        let tap = Tap::current(&$table.store);
        let client = $table.shared().await?;
        let $conn = $table.conn(Session::Client(&client), tap.as_ref());
        $flow.await
    }};
}

#[async_trait]
impl Table for PgTable {
    async fn insert(
        &self,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        if ops::insert_is_one_statement(&self.m, &members, load_members)
            && crate::explain::current().is_none()
        {
            // Atomic by itself, unless a soft-deleted resource is to be revived.
            let client = self.shared().await?;
            let c = self.conn(Session::Client(&client), None);
            if let Some(row) = ops::insert_unless_tombstoned(&c, &values).await? {
                return Ok(row);
            }
        }
        in_tx!(self, |c| ops::insert(&c, values, members, load_members))
    }

    async fn fetch(&self, key: &str, members: bool) -> Result<Option<Row>, BackendError> {
        let Some(key) = self.m.key_value(key) else {
            return Ok(None);
        };
        read!(self, |c| ops::fetch_with_members(&c, &key, members))
    }

    async fn search(&self, search: Search) -> Result<Found, BackendError> {
        read!(self, |c| ops::search(&c, &search))
    }

    async fn present(&self, keys: &[String]) -> Result<Vec<String>, BackendError> {
        read!(self, |c| ops::present(&c, keys))
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
struct PgExec {
    pool: PgPool,
    /// The backend's name, for `explain`.
    store: Arc<str>,
}

impl Exec for PgExec {
    async fn write(&self, stmts: Vec<Sql>) -> Result<(), BackendError> {
        let tap = Tap::current(&self.store);
        let client = self.pool.get().await.map_err(pool_error)?;
        let tx = PgTx::new(&client);
        let session = Session::Tx(&tx);
        if let Some(t) = &tap {
            t.text("BEGIN");
        }
        for sql in &stmts {
            if let Some(t) = &tap {
                t.sql(sql);
            }
            let st = session
                .prepare_cached(sql.text())
                .await
                .map_err(|e| error(&e, &[]))?;
            session
                .execute(&st, &refs(sql))
                .await
                .map_err(|e| error(&e, &[]))?;
        }
        match &tap {
            Some(t) => {
                t.text("ROLLBACK");
                tx.rollback().await
            }
            None => tx.commit().await,
        }
        .map_err(|e| error(&e, &[]))
    }

    async fn read(&self, sql: Sql) -> Result<Vec<Vec<String>>, BackendError> {
        if let Some(t) = Tap::current(&self.store) {
            t.sql(&sql);
        }
        let client = self.pool.shared().await.map_err(pool_error)?;
        let st = client
            .prepare_cached(sql.text())
            .await
            .map_err(|e| error(&e, &[]))?;
        Ok(client
            .query(&st, &refs(&sql))
            .await
            .map_err(|e| error(&e, &[]))?
            .iter()
            .map(row_strings)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unique violation names its column, also through an index on `lower(column)`.
    #[test]
    fn unique_violation_names_the_column() {
        assert_eq!(
            key_column("Key (login)=(ann) already exists.").as_deref(),
            Some("login")
        );
        assert_eq!(
            key_column("Key (lower(login))=(ann) already exists.").as_deref(),
            Some("login")
        );
        assert_eq!(
            key_column("Key (lower((\"Login\")::text))=(ann) already exists.").as_deref(),
            Some("Login")
        );
        assert_eq!(
            key_column("Key (a, b)=(1, 2) already exists.").as_deref(),
            Some("a")
        );
        assert_eq!(key_column("something else"), None);
    }

    /// PostgreSQL types map to field types and parameter casts.
    #[test]
    fn types() {
        assert_eq!(
            pg_type("int8", "b", "bigint", None, vec![]),
            (FieldType::Integer, Some("bigint".into()))
        );
        assert_eq!(
            pg_type("varchar", "b", "character varying", Some(64), vec![]),
            (FieldType::Text { max_len: Some(64) }, None)
        );
        assert_eq!(
            pg_type("status", "e", "app.status", None, vec!["a".into()]),
            (FieldType::Enum(vec!["a".into()]), Some("app.status".into()))
        );
        assert_eq!(
            pg_type("timestamptz", "b", "timestamp with time zone", None, vec![]).0,
            FieldType::Timestamp
        );
        assert_eq!(
            lower_of("CREATE UNIQUE INDEX u ON public.users USING btree (lower((login)::text))")
                .as_deref(),
            Some("login")
        );
        assert_eq!(
            lower_of("CREATE UNIQUE INDEX u ON t USING btree (lower(\"Login\"))").as_deref(),
            Some("login")
        );
    }
}
