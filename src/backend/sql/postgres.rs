//! The PostgreSQL backend: the store most legacy apps run on.
//!
//! A deadpool-postgres pool (prepared statements cached per connection), TLS through rustls
//! (`verify-full` against a CA file), TCP or Unix-socket hosts. Every session runs with the
//! configured `statement_timeout` and `TimeZone=UTC`. Statements come from the shared
//! [`Model`]; this module adds what is PostgreSQL's own: catalog introspection, one-statement
//! writes (`INSERT … RETURNING` with child rows in a CTE; member changes as one CTE that
//! checks and inserts), `SELECT … FOR UPDATE`, advisory locks where no unique index makes a
//! check-then-write safe, and SQLSTATE mapping.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::model::{self, Catalog, ColumnInfo, Field, Members, Model, TableInfo, UniqueInfo};
use super::{Dialect, Param, Sql, compile_predicate, order_by, quote_ident};
use crate::backend::{
    Backend, BackendError, Change, CheckFn, DeleteMode, EditFn, FieldType, Found, KeptTable,
    MemberChange, Opened, Refused, Row, Search, SpecPart, SpecProblem, Table, TableSpec, Value,
};

/// The sidecar's own attribute table, in its own schema.
const KEPT_SCHEMA: &str = "scim_sidecar";
const KEPT_TABLE: &str = "scim_sidecar.attributes";

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// A `postgres://` URL or a `key=value` connection string.
    pub url: String,
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
            Param::Value(Value::Null) => Ok(IsNull::Yes),
            Param::Value(v) => {
                // Every placeholder is `$n::text`: the value travels as text and SQL casts it.
                out.extend_from_slice(model::value_text(v).as_bytes());
                Ok(IsNull::No)
            }
            Param::TextArray(items) => items.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
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
        .or_else(|| {
            // "Key (login)=(x) already exists." names the column.
            let d = db.detail()?;
            let start = d.find('(')? + 1;
            let end = d[start..].find(')')? + start;
            Some(d[start..end].trim_matches('"').to_owned())
        })
        .and_then(|c| names.iter().position(|n| n.eq_ignore_ascii_case(&c)));
    let msg = db.message().to_owned();
    if *code == SqlState::UNIQUE_VIOLATION {
        BackendError::Conflict { field, detail: msg }
    } else if *code == SqlState::NOT_NULL_VIOLATION {
        BackendError::Rejected {
            field,
            detail: format!("a value is required ({msg})"),
        }
    } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
        BackendError::Rejected {
            field: None,
            detail: "a value refers to a row that does not exist in the application (a FOREIGN KEY constraint failed), e.g. a manager id".into(),
        }
    } else if *code == SqlState::CHECK_VIOLATION || code.code().starts_with("22") {
        // Class 22, data exception: too long for varchar(n), not an integer, a NUL byte, an
        // unknown enum label, any other value the column cannot hold.
        BackendError::Rejected {
            field,
            detail: format!("the store refused the value ({msg})"),
        }
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

fn pool_error(e: deadpool_postgres::PoolError) -> BackendError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => error(&e, &[]),
        other => BackendError::Unavailable(format!("no database connection: {other}")),
    }
}

// === impl PgBackend ===

/// A PostgreSQL database.
pub struct PgBackend {
    name: String,
    pool: Pool,
    /// `host:port/db` for messages (never the password).
    shown: String,
}

impl PgBackend {
    /// Builds the pool and checks that the database answers (a start-up error otherwise).
    pub async fn open(name: &str, o: &PgOptions) -> Result<Self, String> {
        let mut cfg: tokio_postgres::Config = parse_url(&o.url).map_err(|e| {
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
                tls_config(ca)?
            }
            None => {
                cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                    tokio_rustls::rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS set-up failed: {e}"))?
                .with_root_certificates(tokio_rustls::rustls::RootCertStore::empty())
                .with_no_client_auth()
            }
        };
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
        let mgr = Manager::from_config(
            cfg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(o.pool_size.max(1))
            .wait_timeout(Some(o.connect_timeout))
            .create_timeout(Some(o.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| format!("cannot build the connection pool: {e}"))?;
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

fn tls_config(ca: &Path) -> Result<tokio_rustls::rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {} is not PEM: {e}", ca.display()))?;
    if certs.is_empty() {
        return Err(format!("CA file {} holds no certificate", ca.display()));
    }
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
    }
    Ok(
        tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

#[async_trait]
impl Backend for PgBackend {
    fn name(&self) -> &str {
        &self.name
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
        let cat = catalog(&client, &spec, &self.shown)
            .await
            .map_err(|e| fail(format!("cannot inspect the database: {}", explain(&e))))?;
        let names: Vec<String> = spec.fields.iter().map(|f| f.column().to_owned()).collect();
        let (m, fields, warnings) = Model::build(Dialect::Postgres, &spec, &cat)?;
        Ok(Opened {
            table: Arc::new(PgTable {
                pool: self.pool.clone(),
                m: Arc::new(m),
                names: Arc::new(names),
            }),
            fields,
            warnings,
        })
    }

    fn kept_table(&self) -> KeptTable {
        KeptTable::named(KEPT_TABLE)
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
    c: &deadpool_postgres::Client,
    spec: &TableSpec,
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
    c: &deadpool_postgres::Client,
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
                    EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY(i.indkey))
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
                generated: r.get(6),
                pk: r.get(9),
                ci: typname == "citext",
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
        if let Some(Some(first)) = cols.first() {
            indexed.push(first.clone());
        }
        if r.get::<_, bool>(0) {
            uniques.push(UniqueInfo {
                fold: false,
                lower_of: lower_of(&def),
                columns: cols,
                partial: r.get(1),
            });
        }
    }
    Ok(Some(TableInfo {
        columns,
        uniques,
        indexed,
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
    pool: Pool,
    m: Arc<Model>,
    names: Arc<Vec<String>>,
}

fn refs(sql: &Sql) -> Vec<&(dyn ToSql + Sync)> {
    sql.params
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect()
}

/// Statements on one connection (or transaction), with errors mapped.
struct Run<'a, C: deadpool_postgres::GenericClient> {
    c: &'a C,
    m: &'a Model,
    names: &'a [String],
}

impl<C: deadpool_postgres::GenericClient + Sync> Run<'_, C> {
    fn err(&self, e: tokio_postgres::Error) -> BackendError {
        error(&e, self.names)
    }

    async fn query(&self, sql: &Sql) -> Result<Vec<tokio_postgres::Row>, BackendError> {
        let st = self
            .c
            .prepare_cached(&sql.text)
            .await
            .map_err(|e| self.err(e))?;
        self.c.query(&st, &refs(sql)).await.map_err(|e| self.err(e))
    }

    async fn exec(&self, sql: &Sql) -> Result<u64, BackendError> {
        let st = self
            .c
            .prepare_cached(&sql.text)
            .await
            .map_err(|e| self.err(e))?;
        self.c
            .execute(&st, &refs(sql))
            .await
            .map_err(|e| self.err(e))
    }

    async fn strings(&self, sql: &Sql) -> Result<Vec<Vec<String>>, BackendError> {
        Ok(self
            .query(sql)
            .await?
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<_, Option<String>>(i).unwrap_or_default())
                    .collect()
            })
            .collect())
    }

    async fn rows(&self, sql: &Sql) -> Result<Vec<Row>, BackendError> {
        let n = self.m.fields.len();
        Ok(self
            .query(sql)
            .await?
            .iter()
            .map(|r| to_row(r, n))
            .collect())
    }

    async fn fetch(&self, key: &Value, lock: bool) -> Result<Option<Row>, BackendError> {
        Ok(self
            .rows(&self.m.fetch(key, lock))
            .await?
            .into_iter()
            .next())
    }

    async fn load_members(&self, rows: &mut [Row]) -> Result<(), BackendError> {
        let Some(mm) = &self.m.members else {
            return Ok(());
        };
        if rows.is_empty() {
            return Ok(());
        }
        let keys: Vec<Value> = rows
            .iter()
            .filter_map(|r| self.m.key_value(&r.key))
            .collect();
        let pairs = self.strings(&self.m.members_of(mm, &keys)).await?;
        for r in rows.iter_mut() {
            r.members = Some(
                pairs
                    .iter()
                    .filter(|p| p[0] == r.key)
                    .map(|p| p[1].clone())
                    .collect(),
            );
        }
        Ok(())
    }

    /// Where no unique index guarantees uniqueness: a transaction-scoped advisory lock on the
    /// value, then a check, so concurrent writers of one value queue instead of racing.
    async fn check_unique(
        &self,
        values: &[(usize, &Value)],
        except: Option<&Value>,
    ) -> Result<(), BackendError> {
        for &(i, fold) in &self.m.unique_checks {
            let Some((_, v)) = values.iter().find(|(j, _)| *j == i) else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            let text = model::value_text(v);
            let lock_key = format!(
                "{}:{}:{}",
                self.m.table,
                self.names[i],
                if fold { text.to_lowercase() } else { text }
            );
            let mut lock = Sql::default();
            lock.push("SELECT pg_advisory_xact_lock(hashtext(")
                .param(Dialect::Postgres, Value::Text(lock_key))
                .push("))::text");
            self.query(&lock).await?;
            if let Some(sql) = self.m.unique_taken(i, v, fold, except) {
                if !self.query(&sql).await?.is_empty() {
                    return Err(BackendError::Conflict {
                        field: Some(i),
                        detail: format!("another row has the same {}", self.names[i]),
                    });
                }
            }
        }
        Ok(())
    }

    async fn write_child(&self, i: usize, key: &Value, v: &Value) -> Result<(), BackendError> {
        if let Some(sql) = self.m.child_write(i, key, v) {
            self.exec(&sql).await?;
        }
        Ok(())
    }

    async fn change_members(
        &self,
        key: &Value,
        changes: &[MemberChange],
    ) -> Result<(), BackendError> {
        let Some(mm) = &self.m.members else {
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
                MemberChange::Add(ids) => self.add_members(mm, key, ids).await?,
                MemberChange::Replace(ids) => {
                    self.exec(&self.m.members_clear(mm, key)).await?;
                    self.add_members(mm, key, ids).await?;
                }
                MemberChange::Clear => {
                    self.exec(&self.m.members_clear(mm, key)).await?;
                }
                MemberChange::Remove(ids) => {
                    let (valid, _) = super::split_ids(mm.member_key(), ids);
                    if !valid.is_empty() {
                        self.exec(&self.m.members_remove(mm, key, &valid)).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// One statement: which ids do not exist, and insert them all only if none is missing.
    async fn add_members(
        &self,
        mm: &Members,
        key: &Value,
        ids: &[String],
    ) -> Result<(), BackendError> {
        let (valid, mut missing) = super::split_ids(mm.member_key(), ids);
        if !valid.is_empty() {
            let mut sql = Sql::default();
            sql.push("WITH missing AS (");
            sql.append(&self.m.missing_members(mm, &valid));
            sql.push("), ins AS (");
            sql.append(&self.m.members_add(mm, key, &valid));
            sql.push(" RETURNING 1) SELECT * FROM missing");
            let guarded = guard_insert(sql);
            missing.extend(
                self.strings(&guarded)
                    .await?
                    .into_iter()
                    .filter_map(|r| r.into_iter().next()),
            );
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(super::missing_members(&missing))
        }
    }
}

/// Makes the `ins` CTE of a member add conditional on `missing` being empty: the insert's own
/// WHERE gets `NOT EXISTS (SELECT 1 FROM missing)`.
fn guard_insert(mut sql: Sql) -> Sql {
    if let Some(ins) = sql.text.find("), ins AS (") {
        let tail = &sql.text[ins..];
        if let Some(w) = tail.find(" WHERE ") {
            let at = ins + w + " WHERE ".len();
            sql.text
                .insert_str(at, "NOT EXISTS (SELECT 1 FROM missing) AND ");
        }
    }
    sql
}

fn to_row(r: &tokio_postgres::Row, n: usize) -> Row {
    let key: Option<String> = r.get(0);
    let values = (1..=n)
        .map(|i| match r.get::<_, Option<String>>(i) {
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
    async fn client(&self) -> Result<deadpool_postgres::Object, BackendError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// `INSERT … RETURNING` the whole row in one statement; child rows in CTEs of the same
    /// statement, their values read back from what was written.
    fn insert_statement(&self, values: &[Value], uuid: Option<String>) -> Sql {
        let m = &self.m;
        let insert = m.insert(values, uuid);
        let mut sql = Sql::default();
        sql.push("WITH t AS (");
        sql.append(&insert);
        // RETURNING the key only; replace it by the row's columns.
        if let Some(pos) = sql.text.rfind(" RETURNING ") {
            sql.text.truncate(pos);
        }
        sql.push(" RETURNING *)");
        for (i, (f, v)) in m.fields.iter().zip(values).enumerate() {
            if let (Field::Child(ch), false) = (f, v.is_null()) {
                let mut names = vec![ch.link.name.as_str(), ch.col.name.as_str()];
                names.extend(ch.select.iter().map(|s| s.col.name.as_str()));
                sql.push(&format!(
                    ", c{i} AS (INSERT INTO {} ({}) SELECT ",
                    ch.table,
                    names.join(", ")
                ));
                let link = if ch.link.ty == m.key.ty {
                    format!("t.{}", m.key.name)
                } else {
                    format!("t.{}::text", m.key.name)
                };
                sql.push(&link).push(", ");
                ch.col.param(Dialect::Postgres, &mut sql, v.clone());
                for s in &ch.select {
                    sql.push(", ");
                    s.col.param(Dialect::Postgres, &mut sql, s.value.clone());
                }
                sql.push(" FROM t)");
            }
        }
        sql.push(" SELECT ").push(&m.key_expr("t"));
        for f in &m.fields {
            sql.push(", ");
            match f {
                Field::Column(c) => sql.push(&m.read_expr("t", c)),
                // Written above from `values`; filled in from them after the statement.
                Field::Child(_) => sql.push("NULL::text"),
            };
        }
        sql.push(" FROM t");
        sql
    }
}

#[async_trait]
impl Table for PgTable {
    async fn insert(
        &self,
        values: Vec<Value>,
        members: Vec<String>,
        load_members: bool,
    ) -> Result<Row, BackendError> {
        let m = &self.m;
        let mut client = self.client().await?;
        let uuid = if m.key_uuid {
            Some(super::uuid_v4()?)
        } else {
            None
        };
        let stmt = self.insert_statement(&values, uuid);
        let fill = |mut row: Row| {
            for (i, f) in m.fields.iter().enumerate() {
                if matches!(f, Field::Child(_)) {
                    row.values[i] = values[i].clone();
                }
            }
            row
        };
        // The fast path: one statement, atomic by itself.
        if members.is_empty() && m.unique_checks.is_empty() && !load_members {
            let run = Run {
                c: &client,
                m,
                names: &self.names,
            };
            let row = run
                .rows(&stmt)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| BackendError::Internal("insert returned no row".into()))?;
            return Ok(fill(row));
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| error(&e, &self.names))?;
        let run = Run {
            c: &tx,
            m,
            names: &self.names,
        };
        let indexed: Vec<(usize, &Value)> = values.iter().enumerate().collect();
        run.check_unique(&indexed, None).await?;
        let row = run
            .rows(&stmt)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::Internal("insert returned no row".into()))?;
        let mut rows = vec![fill(row)];
        if !members.is_empty() {
            let key = m
                .key_value(&rows[0].key)
                .ok_or_else(|| BackendError::Internal("bad key".into()))?;
            run.change_members(&key, &[MemberChange::Add(members)])
                .await?;
        }
        if load_members {
            run.load_members(&mut rows).await?;
        }
        tx.commit().await.map_err(|e| error(&e, &self.names))?;
        rows.pop()
            .ok_or_else(|| BackendError::Internal("insert returned no row".into()))
    }

    async fn fetch(&self, key: &str, members: bool) -> Result<Option<Row>, BackendError> {
        let Some(key) = self.m.key_value(key) else {
            return Ok(None);
        };
        let client = self.client().await?;
        let run = Run {
            c: &client,
            m: &self.m,
            names: &self.names,
        };
        let mut rows: Vec<Row> = run.fetch(&key, false).await?.into_iter().collect();
        if members {
            run.load_members(&mut rows).await?;
        }
        Ok(rows.pop())
    }

    async fn search(&self, search: Search) -> Result<Found, BackendError> {
        let m = &self.m;
        let client = self.client().await?;
        let run = Run {
            c: &client,
            m,
            names: &self.names,
        };
        let mut filter = Sql::default();
        compile_predicate(m, &search.predicate, &mut filter);
        let count = || async {
            let mut q = Sql::default();
            q.push("SELECT count(*)::text FROM ")
                .push(&m.table)
                .push(" t WHERE 1=1");
            m.push_fixed(&mut q, "t", &m.filter);
            q.push(" AND ");
            q.append(&filter);
            let n = run
                .strings(&q)
                .await?
                .into_iter()
                .next()
                .and_then(|r| r.into_iter().next());
            Ok::<u64, BackendError>(n.and_then(|n| n.parse().ok()).unwrap_or(0))
        };
        if search.limit == 0 {
            return Ok(Found {
                total: count().await?,
                rows: Vec::new(),
            });
        }
        let mut q = Sql::default();
        m.select_from(&mut q);
        q.push(" AND ");
        q.append(&filter);
        order_by(m, &search.sort, &mut q);
        // Bound, so paging reuses one prepared statement.
        q.push(" LIMIT ")
            .param(
                Dialect::Postgres,
                Value::Int(i64::try_from(search.limit).unwrap_or(i64::MAX)),
            )
            .push("::bigint");
        q.push(" OFFSET ")
            .param(
                Dialect::Postgres,
                Value::Int(i64::try_from(search.offset).unwrap_or(i64::MAX)),
            )
            .push("::bigint");
        let mut rows = run.rows(&q).await?;
        let total = if search.offset == 0 && (rows.len() as u64) < search.limit {
            rows.len() as u64
        } else {
            count().await?
        };
        if search.members {
            run.load_members(&mut rows).await?;
        }
        Ok(Found { total, rows })
    }

    async fn update(
        &self,
        key: &str,
        load_members: bool,
        edit: EditFn,
    ) -> Result<Row, BackendError> {
        let m = &self.m;
        let Some(key) = m.key_value(key) else {
            return Err(BackendError::NotFound);
        };
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| error(&e, &self.names))?;
        let run = Run {
            c: &tx,
            m,
            names: &self.names,
        };
        let current = run.fetch(&key, true).await?.ok_or(BackendError::NotFound)?;
        let Change { set, members } = edit(&current)?;
        let refs: Vec<(usize, &Value)> = set.iter().map(|(i, v)| (*i, v)).collect();
        run.check_unique(&refs, Some(&key)).await?;
        let children = set
            .iter()
            .any(|(i, _)| matches!(m.fields.get(*i), Some(Field::Child(_))));
        for (i, v) in &set {
            if matches!(m.fields.get(*i), Some(Field::Child(_))) {
                run.write_child(*i, &key, v).await?;
            }
        }
        run.change_members(&key, &members).await?;
        let touched = !set.is_empty() || !members.is_empty();
        let row = match m.update(&set, &key, touched) {
            // One UPDATE that returns the row as it now reads, when every field is a column
            // of the table (otherwise the row is read again after the child writes).
            Some(mut upd) => match m.column_list("t") {
                Some(list) if !children => {
                    upd.push(" RETURNING ").push(&list);
                    run.rows(&upd).await?.into_iter().next()
                }
                _ => {
                    run.exec(&upd).await?;
                    run.fetch(&key, false).await?
                }
            },
            None => run.fetch(&key, false).await?,
        };
        let mut rows: Vec<Row> = row.into_iter().collect();
        if load_members {
            run.load_members(&mut rows).await?;
        }
        tx.commit().await.map_err(|e| error(&e, &self.names))?;
        rows.pop().ok_or(BackendError::NotFound)
    }

    async fn delete(
        &self,
        key: &str,
        mode: DeleteMode,
        check: CheckFn,
    ) -> Result<(), BackendError> {
        let m = &self.m;
        let Some(key) = m.key_value(key) else {
            return Err(BackendError::NotFound);
        };
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| error(&e, &self.names))?;
        let run = Run {
            c: &tx,
            m,
            names: &self.names,
        };
        let current = run.fetch(&key, true).await?.ok_or(BackendError::NotFound)?;
        check(&current)?;
        match mode {
            DeleteMode::Hard => {
                for sql in m.delete(&key) {
                    run.exec(&sql).await?;
                }
            }
            DeleteMode::Soft(set) => {
                for (i, v) in &set {
                    if matches!(m.fields.get(*i), Some(Field::Child(_))) {
                        run.write_child(*i, &key, v).await?;
                    }
                }
                if let Some(sql) = m.update(&set, &key, true) {
                    run.exec(&sql).await?;
                }
            }
        }
        tx.commit().await.map_err(|e| error(&e, &self.names))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The member-add CTE inserts only when no id is missing.
    #[test]
    fn guarded_member_insert() {
        let mut sql = Sql::default();
        sql.push("WITH missing AS (SELECT 1 WHERE false), ins AS (INSERT INTO j (g, m) SELECT 1, 2 WHERE true ON CONFLICT DO NOTHING");
        let g = guard_insert(sql);
        assert!(g.text.contains("ins AS (INSERT INTO j (g, m) SELECT 1, 2 WHERE NOT EXISTS (SELECT 1 FROM missing) AND true"), "{}", g.text);
    }
}
