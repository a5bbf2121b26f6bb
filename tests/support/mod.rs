//! The integration-test harness: the real sidecar, started in-process on `127.0.0.1:0` from
//! the quickstart's own config file, in front of a real HTTP app, with a fresh SQLite database
//! per test. Nothing is mocked.
#![allow(dead_code)]

/// One test per store: `both!(name, …)` runs `async fn name(store: Store)` as `name::sqlite`,
/// `name::postgres` and `name::mariadb` (each server store skipped with a reason when it is
/// not installed).
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(crate::support::Store::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(crate::support::Store::Postgres).await
            }
            #[tokio::test]
            async fn mariadb() {
                super::$name(crate::support::Store::Mariadb).await
            }
        }
    )*};
}

/// The sidecar of example `$name` on `$store` (`Sidecar::example`), or returns from the
/// test when the store's server is not installed.
macro_rules! example {
    ($name:expr, $store:expr) => {
        match crate::support::Sidecar::example($name, $store, None).await {
            Some(s) => s,
            None => return,
        }
    };
}

pub mod client;
#[macro_use]
pub mod idp;
pub mod jwks;
pub mod ldap;
pub mod mariadb;
pub mod postgres;
pub mod rest_app;
pub mod samba;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use scim_sidecar::backend::sql::mysql::MyOptions;
use scim_sidecar::backend::sql::postgres::PgOptions;
use scim_sidecar::backend::sql::sqlite::SqliteConfig;
use scim_sidecar::config::{self, Config};
use scim_sidecar::server::{self, Running};

pub use client::Client;
pub use upstream::Upstream;

/// The token every test sidecar accepts.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// The quickstart config file.
pub fn quickstart_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/scim-sidecar.toml")
}

/// A running sidecar and everything it uses.
pub struct Sidecar {
    /// SCIM and pass-through listener.
    pub addr: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// The app behind it.
    pub upstream: Upstream,
    /// The SQLite database file (unused by PostgreSQL sidecars).
    pub db: PathBuf,
    /// The PostgreSQL database, for sidecars started with [`Sidecar::postgres`].
    pub pg: Option<postgres::Db>,
    /// The MariaDB database, for sidecars on [`Store::Mariadb`].
    pub my: Option<mariadb::Db>,
    /// The legacy admin API, for sidecars on `examples/rest` ([`rest_app::example`]).
    pub rest: Option<rest_app::RestApp>,
    /// A client with the right token, talking to `addr`.
    pub client: Client,
    running: Option<Running>,
    _dir: tempfile::TempDir,
    kept: Vec<Box<dyn std::any::Any + Send>>,
}

/// A change to a loaded config, applied before the sidecar starts.
pub type Tweak = Box<dyn FnOnce(&mut Config)>;

/// How to start a sidecar.
#[derive(Default)]
pub struct Options {
    /// Extra environment for the config file.
    pub env: Vec<(&'static str, String)>,
    /// A config file other than the quickstart's.
    pub config: Option<PathBuf>,
    /// Changes to apply to the loaded config.
    pub tweak: Option<Tweak>,
    /// Run `scim-sidecar migrate` (the sidecar's own table) before starting.
    pub migrate: bool,
}

/// The environment the quickstart config reads, pointing at test resources.
pub fn quickstart_env(db: &Path, upstream: SocketAddr) -> HashMap<String, String> {
    [
        ("SCIM_SIDECAR_LISTEN", "127.0.0.1:0".to_string()),
        ("SCIM_SIDECAR_ADMIN_LISTEN", "127.0.0.1:0".to_string()),
        ("SCIM_TOKEN", TOKEN.to_string()),
        ("QUICKSTART_DB", db.display().to_string()),
        ("UPSTREAM_URL", format!("http://{upstream}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

impl Sidecar {
    /// The quickstart, as a user would run it, on test ports and a fresh database.
    pub async fn quickstart() -> Sidecar {
        Self::start(Options::default()).await
    }

    /// A sidecar with options.
    pub async fn start(opts: Options) -> Sidecar {
        init();
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.db");
        let upstream = Upstream::start().await;
        let mut env = quickstart_env(&db, upstream.addr);
        for (k, v) in opts.env {
            env.insert(k.to_string(), v);
        }
        let path = opts.config.unwrap_or_else(quickstart_config);
        let mut config = load(&path, &env);
        if let Some(t) = opts.tweak {
            t(&mut config);
        }
        if opts.migrate {
            migrate_config(&config).await;
        }
        Self::launch(config, dir, db, upstream, None, None).await
    }

    async fn launch(
        config: Config,
        dir: tempfile::TempDir,
        db: PathBuf,
        upstream: Upstream,
        pg: Option<postgres::Db>,
        my: Option<mariadb::Db>,
    ) -> Sidecar {
        let running = match server::start(&config).await {
            Ok(r) => r,
            Err(e) => panic!("sidecar does not start: {e}"),
        };
        let addr = running.addr;
        let admin = running.admin_addr.expect("admin listener");
        Sidecar {
            addr,
            admin,
            upstream,
            db,
            pg,
            my,
            rest: None,
            client: Client::new(addr, Some(TOKEN)),
            running: Some(running),
            _dir: dir,
            kept: Vec::new(),
        }
    }

    /// An example's sidecar (`examples/<example>/scim-sidecar.toml`, unchanged) on a fresh
    /// store holding the example's app schema, after `migrate` as a user would run it before
    /// the first start.
    ///
    /// On PostgreSQL the store is a new database on the shared test cluster with
    /// `examples/<example>/schema.sql`; `None` when PostgreSQL is not installed (the caller
    /// skips; `scripts/test.sh` installs it and makes that a failure). On SQLite the same
    /// mapping runs against `tests/fixtures/<example>.sqlite.sql`, the same app schema in
    /// SQLite's dialect: every mapping shape must work on both stores.
    ///
    /// On MariaDB the store is a new database on the shared test server holding
    /// `tests/fixtures/<example>.mysql.sql`, the app's schema as a MySQL app has it.
    pub async fn example(example: &str, store: Store, tweak: Option<Tweak>) -> Option<Sidecar> {
        match store {
            Store::Postgres => {
                let pg = pg_database(example).await?;
                Some(Self::example_on(example, Some(pg), tweak).await)
            }
            Store::Sqlite => Some(Self::example_on(example, None, tweak).await),
            Store::Mariadb => {
                let my = my_database(example).await?;
                Some(Self::example_on_mariadb(example, my, tweak).await)
            }
        }
    }

    /// [`Sidecar::example`] on a given MariaDB database (one of a private server, say).
    pub async fn example_on_mariadb(
        example: &str,
        my: mariadb::Db,
        tweak: Option<Tweak>,
    ) -> Sidecar {
        init();
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.db");
        let upstream = Upstream::start().await;
        let mut config = example_loaded_on(example, Target::Mariadb(&my), &db, upstream.addr);
        if let Some(t) = tweak {
            t(&mut config);
        }
        migrate_config(&config).await;
        Self::launch(config, dir, db, upstream, None, Some(my)).await
    }

    /// [`Sidecar::example`] on a given PostgreSQL database (one of a private cluster, say),
    /// or on SQLite when `pg` is `None`.
    pub async fn example_on(
        example: &str,
        pg: Option<postgres::Db>,
        tweak: Option<Tweak>,
    ) -> Sidecar {
        init();
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.db");
        let upstream = Upstream::start().await;
        let mut config = example_loaded(example, pg.as_ref(), &db, upstream.addr, true);
        if let Some(t) = tweak {
            t(&mut config);
        }
        migrate_config(&config).await;
        Self::launch(config, dir, db, upstream, pg, None).await
    }

    /// The example's config as this sidecar loaded it (same database), without tweaks: what
    /// `scim-sidecar check` would read.
    pub fn example_config(&self, example: &str) -> Config {
        if let Some(my) = &self.my {
            return example_loaded_on(example, Target::Mariadb(my), &self.db, self.upstream.addr);
        }
        example_loaded(
            example,
            self.pg.as_ref(),
            &self.db,
            self.upstream.addr,
            false,
        )
    }

    /// Which store this sidecar runs on.
    pub fn store(&self) -> Store {
        match (&self.pg, &self.my) {
            (Some(_), _) => Store::Postgres,
            (_, Some(_)) => Store::Mariadb,
            _ => Store::Sqlite,
        }
    }

    /// [`Sidecar::example`] on PostgreSQL.
    pub async fn postgres(example: &str, tweak: Option<Tweak>) -> Option<Sidecar> {
        Self::example(example, Store::Postgres, tweak).await
    }

    /// Keeps `thing` (a temporary file) alive as long as the sidecar.
    pub fn keep(&mut self, thing: impl std::any::Any + Send) {
        self.kept.push(Box::new(thing));
    }

    /// Rows of a query against the app's own database (SQLite, PostgreSQL, MariaDB, or the
    /// legacy admin API's SQLite), every column as text, `NULL` for null.
    pub async fn rows(&self, query: &str) -> Vec<Vec<String>> {
        match (&self.pg, &self.my, &self.rest) {
            (Some(db), _, _) => db.rows(query).await,
            (_, Some(db), _) => db.rows(query).await,
            (_, _, Some(app)) => app.sql(query),
            _ => self.sql(query),
        }
    }

    /// The first column of the first row of a query against the app's database (a count).
    pub async fn one(&self, query: &str) -> String {
        self.rows(query).await[0][0].clone()
    }

    /// POSTs `body` to `path`, expects 201, and returns the new resource's id.
    pub async fn created(&self, path: &str, body: &serde_json::Value) -> String {
        self.client.post(path, body).await.expect(201).json()["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// Creates a group named `name` (no members); its id.
    pub async fn group(&self, name: &str) -> String {
        self.created(
            "/scim/v2/Groups",
            &serde_json::json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}),
        )
        .await
    }

    /// PATCHes group `group`'s members with `op` ("add", "remove") of `user`, as Entra does
    /// one membership at a time; expects 204.
    pub async fn patch_members(&self, group: &str, op: &str, user: &str) {
        self.client
            .patch(
                &format!("/scim/v2/Groups/{group}"),
                &client::patch_body(
                    serde_json::json!([{"op": op, "path": "members", "value": [{"value": user}]}]),
                ),
            )
            .await
            .expect(204);
    }

    /// Runs statements against the app's own database, as the app itself would write.
    pub async fn exec(&self, sql: &str) {
        match (&self.pg, &self.my) {
            (Some(db), _) => db.exec(sql).await,
            (_, Some(db)) => db.exec(sql).await,
            _ => rusqlite::Connection::open(&self.db)
                .expect("open db")
                .execute_batch(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
        }
    }

    /// The running server (to swap its config).
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// A client without a token.
    pub fn anonymous(&self) -> Client {
        Client::new(self.addr, None)
    }

    /// A client for the admin listener.
    pub fn admin_client(&self) -> Client {
        Client::new(self.admin, None)
    }

    /// Runs a query on the database directly, as the app would see its data.
    pub fn sql(&self, query: &str) -> Vec<Vec<String>> {
        let conn = rusqlite::Connection::open(&self.db).expect("open db");
        let mut st = conn.prepare(query).expect("prepare");
        let n = st.column_count();
        st.query_map([], |r| {
            (0..n)
                .map(|i| {
                    Ok(match r.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                        rusqlite::types::ValueRef::Real(f) => f.to_string(),
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                    })
                })
                .collect()
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    }

    /// A full dump of the app's tables, to prove a failed request changed nothing.
    pub fn snapshot(&self) -> Vec<Vec<String>> {
        let mut all = Vec::new();
        for t in ["accounts", "roles", "account_roles"] {
            all.extend(self.sql(&format!("SELECT '{t}', * FROM {t} ORDER BY 2, 3")));
        }
        all
    }

    /// Stops the sidecar gracefully.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Where an example lives, and its app schema in SQLite's dialect: `examples/<name>/` with
/// `tests/fixtures/<name>.sqlite.sql`, or a test-only one in `tests/fixtures/<name>/` with
/// its `schema.sqlite.sql` beside `schema.sql`.
pub fn example_dir(name: &str) -> (PathBuf, PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("examples").join(name);
    if example.is_dir() {
        (
            example,
            root.join(format!("tests/fixtures/{name}.sqlite.sql")),
        )
    } else {
        let dir = root.join("tests/fixtures").join(name);
        let sqlite = dir.join("schema.sqlite.sql");
        (dir, sqlite)
    }
}

/// `examples/<name>/scim-sidecar.toml` (or the test-only example's).
pub fn example_config(name: &str) -> PathBuf {
    example_dir(name).0.join("scim-sidecar.toml")
}

/// The example's app schema in MySQL's dialect: `tests/fixtures/<name>.mysql.sql`; the
/// schema of the example's MySQL sibling (`examples/<name>-mysql/schema.sql`, WordPress's
/// own DDL) or of a MySQL example itself; or a test-only example's
/// `tests/fixtures/<name>/schema.mysql.sql`.
pub fn mysql_schema(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        root.join(format!("tests/fixtures/{name}.mysql.sql")),
        root.join(format!("examples/{name}-mysql/schema.sql")),
        root.join("tests/fixtures")
            .join(name)
            .join("schema.mysql.sql"),
    ];
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| root.join("examples").join(name).join("schema.sql"))
}

/// A fresh database on the shared MariaDB server holding the example's MySQL schema, or
/// `None` when MariaDB is not installed.
pub async fn my_database(example: &str) -> Option<mariadb::Db> {
    Some(example_my_database(mariadb::server()?, example).await)
}

/// A fresh database on `server` holding the example's MySQL schema.
pub async fn example_my_database(server: &mariadb::Server, example: &str) -> mariadb::Db {
    let db = server.database(example).await;
    let schema = mysql_schema(example);
    db.exec(
        &std::fs::read_to_string(&schema).unwrap_or_else(|e| panic!("{}: {e}", schema.display())),
    )
    .await;
    db
}

/// Where [`example_loaded_on`] points the example's backends.
enum Target<'a> {
    Mariadb(&'a mariadb::Db),
}

/// `examples/<example>/scim-sidecar.toml` loaded with the test environment, every backend
/// pointed at `target` (its resources' tables and columns are the same in every store).
fn example_loaded_on(example: &str, target: Target<'_>, db: &Path, upstream: SocketAddr) -> Config {
    let Target::Mariadb(my) = target;
    let mut env = quickstart_env(db, upstream);
    // A MySQL example reads the database's own URL; another reads one its kind parses, and
    // its backends are pointed at the database below.
    let path = example_config(example);
    let mysql = std::fs::read_to_string(&path).is_ok_and(|t| t.contains("type = \"mysql\""));
    let url = if mysql {
        my.url.clone()
    } else {
        "postgres://unused@127.0.0.1:1/unused".into()
    };
    env.insert("DATABASE_URL".into(), url);
    let mut config = load(&path, &env);
    for b in &mut config.backends {
        b.store = std::sync::Arc::new(MyOptions {
            url: scim_sidecar::config::Secret(my.url.clone()),
            socket: None,
            pool_size: 16,
            connect_timeout: std::time::Duration::from_secs(5),
            statement_timeout: std::time::Duration::from_secs(10),
            ca_file: None,
        });
    }
    config
}

/// A fresh database on the shared test cluster holding `examples/<example>/schema.sql`, or
/// `None` when PostgreSQL is not installed.
pub async fn pg_database(example: &str) -> Option<postgres::Db> {
    Some(example_database(postgres::cluster()?, example).await)
}

/// `examples/<example>/scim-sidecar.toml` loaded with the test environment, on `pg` (or on
/// the SQLite file `db` when `None`, created from the example's SQLite schema if `create`).
fn example_loaded(
    example: &str,
    pg: Option<&postgres::Db>,
    db: &Path,
    upstream: SocketAddr,
    create: bool,
) -> Config {
    let mut env = quickstart_env(db, upstream);
    let url = pg.map_or("postgres://unused@127.0.0.1:1/unused".into(), |d| {
        d.url.clone()
    });
    env.insert("DATABASE_URL".into(), url);
    let mut config = load(&example_config(example), &env);
    if pg.is_none() {
        for b in &mut config.backends {
            b.store = std::sync::Arc::new(SqliteConfig {
                path: db.to_path_buf(),
                create_from: create.then(|| example_dir(example).1),
                readers: 4,
                busy_timeout: std::time::Duration::from_secs(5),
            });
        }
    }
    config
}

/// A fresh database on `cluster` holding `examples/<example>/schema.sql`.
pub async fn example_database(cluster: &postgres::Cluster, example: &str) -> postgres::Db {
    let db = cluster.database(example).await;
    let schema = example_dir(example).0.join("schema.sql");
    db.exec(&std::fs::read_to_string(&schema).expect("schema.sql"))
        .await;
    db
}

/// Which store an example runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// SQLite, from `tests/fixtures/<example>.sqlite.sql`.
    Sqlite,
    /// PostgreSQL, from `examples/<example>/schema.sql` on the shared test cluster.
    Postgres,
    /// MariaDB, from `tests/fixtures/<example>.mysql.sql` on the shared test server.
    Mariadb,
}

/// Loads a config file or fails the test with the problems.
pub fn load(path: &Path, env: &HashMap<String, String>) -> Config {
    match config::load(path, env) {
        Ok(c) => c,
        Err(p) => panic!("config does not load:\n{}", config::report(&p)),
    }
}

/// What `scim-sidecar migrate` does, through the library: the sidecar's own table, in the
/// stores that keep state for some resource type.
pub async fn migrate_config(config: &Config) -> Vec<String> {
    let needed: Vec<&str> = config
        .resources
        .iter()
        .filter(|r| r.keeps_state())
        .map(|r| config.state_backend(&r.backend))
        .collect();
    let mut done = Vec::new();
    for b in scim_sidecar::app::open_backends(config)
        .await
        .unwrap_or_else(|p| panic!("{}", config::report(&p)))
    {
        if needed.contains(&b.name()) {
            done.extend(b.migrate().await.expect("migrate"));
        }
    }
    done
}

/// Changes the settings of every SQLite backend of a loaded config.
pub fn with_sqlite(c: &mut Config, f: impl Fn(&mut SqliteConfig)) {
    for b in &mut c.backends {
        if let Some(s) = b.store.as_any().downcast_ref::<SqliteConfig>() {
            let mut s = s.clone();
            f(&mut s);
            b.store = std::sync::Arc::new(s);
        }
    }
}

/// Changes the settings of every PostgreSQL backend of a loaded config.
pub fn with_postgres(c: &mut Config, f: impl Fn(&mut PgOptions)) {
    for b in &mut c.backends {
        if let Some(s) = b.store.as_any().downcast_ref::<PgOptions>() {
            let mut s = s.clone();
            f(&mut s);
            b.store = std::sync::Arc::new(s);
        }
    }
}

/// Changes the settings of every MySQL backend of a loaded config.
pub fn with_mysql(c: &mut Config, f: impl Fn(&mut MyOptions)) {
    for b in &mut c.backends {
        if let Some(s) = b.store.as_any().downcast_ref::<MyOptions>() {
            let mut s = s.clone();
            f(&mut s);
            b.store = std::sync::Arc::new(s);
        }
    }
}

/// Process-wide set-up: the TLS crypto provider, and logs when `RUST_LOG` asks for them.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        }
    });
}
