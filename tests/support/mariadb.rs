//! A throwaway MariaDB for the tests: `mariadb-install-db` and `mariadbd` in a temp dir, on a
//! free loopback port, started once per test binary; each test gets a database of its own.
//!
//! As root (CI), the server runs as the `mysql` OS user, switched to in the child itself (so
//! the death signal set there survives: the child gets SIGKILL when the test process dies,
//! and no server outlives the tests). The harness administers it as `root` over its Unix
//! socket and hands tests a TCP account, `scim`, that may do everything. When MariaDB is not
//! installed the tests that need it are skipped with a reason, unless
//! `SCIM_SIDECAR_REQUIRE_MARIADB=1` (set by `scripts/test.sh`, which installs it) makes that
//! a failure.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::postgres::{as_user, free_port, start_on_port};

/// A running server.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its data, socket and log directory.
    pub dir: PathBuf,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
    /// Options added to the next [`Server::run`] (TLS files).
    args: Mutex<Vec<String>>,
}

/// A database of one test.
pub struct Db {
    /// `mysql://scim:scim@127.0.0.1:PORT/NAME`.
    pub url: String,
    /// Its name.
    pub name: String,
    /// The server's Unix socket.
    pub socket: PathBuf,
}

static SHARED: OnceLock<Option<Server>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The server binary: `mariadbd` (or `mysqld`) in /usr/sbin or on PATH.
fn server_bin() -> Option<PathBuf> {
    ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The shared server, or `None` (the caller skips) when MariaDB is not installed.
pub fn server() -> Option<&'static Server> {
    SHARED
        .get_or_init(|| match Server::start() {
            Ok(s) => Some(s),
            Err(e) => {
                if std::env::var_os("SCIM_SIDECAR_REQUIRE_MARIADB").is_some() {
                    panic!(
                        "MariaDB is required (SCIM_SIDECAR_REQUIRE_MARIADB) but could not start: {e}"
                    );
                }
                eprintln!("skipping MariaDB tests: {e} (scripts/test.sh installs MariaDB)");
                None
            }
        })
        .as_ref()
}

/// The uid/gid of the `mysql` user when running as root.
fn mysql_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("mysql").ok()?;
    // SAFETY: getpwnam gets a valid C string; the result is read before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-null and points to a static passwd entry.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

impl Server {
    /// `mariadb-install-db` and start a new server in a fresh temp dir.
    pub fn start() -> Result<Server, String> {
        let bin = server_bin().ok_or("MariaDB is not installed (no /usr/sbin/mariadbd)")?;
        let user = mysql_user();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 && user.is_none() {
            return Err("running as root but there is no 'mysql' user to run the server as".into());
        }
        cleanup_stale();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("scim-sidecar-mariadb-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        let install = ["mariadb-install-db", "mysql_install_db"]
            .iter()
            .map(|n| Path::new("/usr/bin").join(n))
            .find(|p| p.exists())
            .ok_or("no mariadb-install-db")?;
        let out = as_user(Command::new(install), user)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .output()
            .map_err(|e| format!("cannot run mariadb-install-db: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mariadb-install-db failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let s = Server {
            port: free_port(),
            dir,
            bin,
            user,
            child: Mutex::new(None),
            args: Mutex::new(Vec::new()),
        };
        s.run()?;
        s.admin_sync(&[
            "CREATE USER 'scim'@'127.0.0.1' IDENTIFIED BY 'scim'",
            "GRANT ALL ON *.* TO 'scim'@'127.0.0.1' WITH GRANT OPTION",
            "CREATE USER 'scim'@'localhost' IDENTIFIED BY 'scim'",
            "GRANT ALL ON *.* TO 'scim'@'localhost' WITH GRANT OPTION",
        ])?;
        Ok(s)
    }

    /// The server's Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// Starts the server (again) and waits until it answers on its socket.
    pub fn run(&self) -> Result<(), String> {
        let command = || {
            let mut cmd = as_user(Command::new(&self.bin), self.user);
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", self.dir.join("data").display()))
                .arg(format!("--socket={}", self.socket().display()))
                .arg(format!(
                    "--pid-file={}",
                    self.dir.join("mysqld.pid").display()
                ))
                .arg(format!(
                    "--log-error={}",
                    self.dir.join("error.log").display()
                ))
                .arg(format!("--port={}", self.port))
                // Its internal temporary tables in its own directory, not the shared /tmp: one
                // vanished from /tmp under a catalog query in a full run ("Error on delete of
                // '/tmp/#sql-temptable-…MAI'").
                .arg(format!("--tmpdir={}", self.dir.display()))
                .args([
                    "--bind-address=127.0.0.1",
                    "--skip-name-resolve",
                    "--skip-log-bin",
                    // Fast and small: nothing here has to survive a power cut.
                    "--innodb-flush-log-at-trx-commit=0",
                    "--innodb-doublewrite=0",
                    "--innodb-buffer-pool-size=64M",
                    "--innodb-log-file-size=32M",
                    "--max-connections=500",
                    "--performance-schema=0",
                ])
                .args(self.args.lock().map(|a| a.clone()).unwrap_or_default())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            cmd
        };
        start_on_port(
            "mariadbd",
            &self.child,
            command,
            || self.admin_sync(&["SELECT 1"]).is_ok(),
            &self.dir.join("error.log"),
            Duration::from_secs(30),
        )
    }

    /// Runs statements as root over the socket, from a thread of its own (the harness calls
    /// it from sync and async code alike).
    fn admin_sync(&self, stmts: &[&str]) -> Result<(), String> {
        let socket = self.socket();
        let stmts: Vec<String> = stmts.iter().map(|s| s.to_string()).collect();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let mut c = mysql_async::Conn::new(root_opts(&socket))
                    .await
                    .map_err(|e| e.to_string())?;
                for s in stmts {
                    c.query_drop(s).await.map_err(|e| e.to_string())?;
                }
                let _ = c.disconnect().await;
                Ok(())
            })
        })
        .join()
        .map_err(|_| "admin thread panicked".to_string())?
    }

    /// Stops the server (SIGTERM: a clean shutdown) and waits for it to exit.
    pub fn stop(&self) {
        if let Ok(mut slot) = self.child.lock() {
            if let Some(mut child) = slot.take() {
                // SAFETY: sending a signal to our own child process.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let _ = child.wait();
            }
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server: a database that neither answers
    /// nor refuses, as a hung host or a stalled disk leaves it.
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self
            .child
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.id()))
        {
            // SAFETY: signalling a process this test started.
            unsafe { libc::kill(pid as i32, signal) };
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.id()))
    }

    /// Runs statements as root over the socket (server settings, as a DBA would).
    pub async fn admin(&self, sql: &str) {
        let mut c = mysql_async::Conn::new(root_opts(&self.socket()))
            .await
            .expect("connect as root");
        c.query_drop(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = c.disconnect().await;
    }

    /// Options for the next start (after [`Server::stop`]).
    pub fn set_args(&self, args: Vec<String>) {
        if let Ok(mut a) = self.args.lock() {
            *a = args;
        }
    }

    /// Hands a file written by the test (a certificate, a key) to the server's OS user.
    pub fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
    }

    /// `mysql://scim:scim@127.0.0.1:PORT/name`.
    pub fn url(&self, db: &str) -> String {
        format!("mysql://scim:scim@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database (utf8mb4, as WordPress and most apps create theirs).
    pub async fn database(&self, hint: &str) -> Db {
        let name = format!(
            "t{}_{}",
            NEXT.fetch_add(1, Ordering::SeqCst),
            hint.to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        let mut c = mysql_async::Conn::new(root_opts(&self.socket()))
            .await
            .expect("connect as root");
        c.query_drop(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .await
        .expect("create database");
        let _ = c.disconnect().await;
        Db {
            url: self.url(&name),
            name,
            socket: self.socket(),
        }
    }
}

/// Root over the socket, the harness's own way in.
fn root_opts(socket: &Path) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .user(Some("root"))
        .socket(Some(socket.display().to_string()))
        .prefer_socket(true)
        .into()
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Db {
    /// A connection to this database. Test queries are written once for every store, so the
    /// session reads `"x"` as an identifier and `||` as concatenation (standard SQL).
    pub async fn conn(&self) -> mysql_async::Conn {
        let mut c = mysql_async::Conn::from_url(&self.url)
            .await
            .expect("connect");
        c.query_drop("SET SESSION sql_mode = 'ANSI_QUOTES,PIPES_AS_CONCAT,STRICT_ALL_TABLES', time_zone = '+00:00'")
            .await
            .expect("session");
        c
    }

    /// Runs SQL (a schema file's content, several statements) in this database.
    pub async fn exec(&self, sql: &str) {
        let mut c = self.conn().await;
        if let Err(e) = c.query_drop(sql).await {
            panic!("SQL failed: {e}\n{sql}");
        }
        let _ = c.disconnect().await;
    }

    /// Rows of a query, every column as text (`NULL` for null). The one spelling of the
    /// tests' shared queries MySQL lacks, `CAST(… AS TEXT)`, is read as `CAST(… AS CHAR)`.
    pub async fn rows(&self, query: &str) -> Vec<Vec<String>> {
        let query = &query.replace(" AS TEXT)", " AS CHAR)");
        let mut c = self.conn().await;
        let rows: Vec<mysql_async::Row> = c
            .query(query)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let _ = c.disconnect().await;
        rows.into_iter()
            .map(|r| {
                r.unwrap()
                    .into_iter()
                    .map(|v| match v {
                        mysql_async::Value::NULL => "NULL".to_string(),
                        mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                        other => other.as_sql(true).trim_matches('\'').to_string(),
                    })
                    .collect()
            })
            .collect()
    }
}

/// Removes servers of earlier test runs whose process is gone.
fn cleanup_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("scim-sidecar-mariadb-") else {
            continue;
        };
        let pid: i32 = rest
            .split('-')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        // SAFETY: kill with signal 0 only checks whether the process exists.
        if pid > 0 && unsafe { libc::kill(pid, 0) } != 0 {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
