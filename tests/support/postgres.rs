//! A throwaway PostgreSQL for the tests: `initdb` and `postgres` in a temp dir, on a free
//! loopback port, started once per test binary; each test gets a database of its own.
//!
//! As root (CI), the server runs as the `postgres` OS user (initdb refuses root), switched to
//! in the child itself. The child gets SIGQUIT when the test process dies, so no server
//! outlives the tests. When PostgreSQL is not installed the tests that need it are skipped
//! with a reason, unless `SCIM_SIDECAR_REQUIRE_PG=1` (set by `scripts/test.sh`, which installs
//! it) makes that a failure.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A running cluster.
pub struct Cluster {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its data and socket directory.
    pub dir: PathBuf,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    child: Mutex<Option<Child>>,
}

/// A database of one test.
#[derive(Clone)]
pub struct Db {
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub url: String,
    /// Its name.
    pub name: String,
}

static SHARED: OnceLock<Option<Cluster>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The PostgreSQL bin directory: the newest `/usr/lib/postgresql/*/bin`, or `initdb` on PATH.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// The shared cluster, or `None` (the caller skips) when PostgreSQL is not installed.
pub fn cluster() -> Option<&'static Cluster> {
    SHARED
        .get_or_init(|| match Cluster::start() {
            Ok(c) => Some(c),
            Err(e) => {
                if std::env::var_os("SCIM_SIDECAR_REQUIRE_PG").is_some() {
                    panic!(
                        "PostgreSQL is required (SCIM_SIDECAR_REQUIRE_PG) but could not start: {e}"
                    );
                }
                eprintln!("skipping PostgreSQL tests: {e} (scripts/test.sh installs PostgreSQL)");
                None
            }
        })
        .as_ref()
}

/// The uid/gid of the `postgres` user when running as root.
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").ok()?;
    // SAFETY: getpwnam gets a valid C string; the result is read before any other call.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-null and points to a static passwd entry.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

/// A loopback port that was free a moment ago, and that no other caller in this test run has
/// been given: a server stopped for a restart leaves its port free, and the kernel could hand
/// it to the next server started meanwhile.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no loopback port left that this test run has not given out")
}

/// A server's output written to the file `path` (nowhere if it cannot be created), where
/// [`start_on_port`]'s error and a failing test can show it.
pub fn log_file(path: &Path) -> Stdio {
    std::fs::File::create(path)
        .map(Stdio::from)
        .unwrap_or(Stdio::null())
}

/// Starts a server on its fixed loopback port and waits until `ready` says it answers.
///
/// A server started again on its port (a restart) can find it taken for a moment: while it
/// was down, any socket of this test run (an outgoing connection, a listener on port 0) may
/// have been given that port, and a server that cannot bind exits. One that exits is started
/// again until it stays up or `within` has passed; the error then carries its log. `ready`
/// counts only while the server still runs, so another listener on the port is never taken
/// for it.
pub fn start_on_port(
    what: &str,
    slot: &Mutex<Option<Child>>,
    mut command: impl FnMut() -> Command,
    mut ready: impl FnMut() -> bool,
    log: &Path,
    within: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    loop {
        let child = spawn_kept(command()).map_err(|e| format!("cannot start {what}: {e}"))?;
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let exited = loop {
            let exited = slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() {
                break exited;
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{what} did not become ready within {within:?}:\n{}",
                    log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if Instant::now() > deadline {
            return Err(format!(
                "{what} exited ({}) and did not stay up within {within:?}:\n{}",
                exited.map(|s| s.to_string()).unwrap_or_default(),
                log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

impl Cluster {
    /// initdb and start a new cluster in a fresh temp dir.
    pub fn start() -> Result<Cluster, String> {
        let bin =
            bin_dir().ok_or("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")?;
        let user = postgres_user();
        if unsafe { libc::geteuid() } == 0 && user.is_none() {
            return Err(
                "running as root but there is no 'postgres' user to run the server as".into(),
            );
        }
        cleanup_stale();
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("scim-sidecar-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        let out = as_user(Command::new(bin.join("initdb")), user)
            .args(["-D"])
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let c = Cluster {
            port: free_port(),
            dir,
            bin,
            user,
            child: Mutex::new(None),
        };
        c.run()?;
        Ok(c)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn run(&self) -> Result<(), String> {
        let port = self.port.to_string();
        let command = || {
            let mut cmd = as_user(Command::new(self.bin.join("postgres")), self.user);
            cmd.arg("-D")
                .arg(self.dir.join("data"))
                .args(["-c", "listen_addresses=127.0.0.1", "-p", &port, "-k"])
                .arg(&self.dir)
                .args([
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .args(["-c", "max_connections=300", "-c", "shared_buffers=32MB"])
                .stdout(Stdio::null())
                .stderr(log_file(&self.dir.join("server.log")));
            cmd
        };
        let ready = || {
            Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success())
        };
        start_on_port(
            "postgres",
            &self.child,
            command,
            ready,
            &self.dir.join("server.log"),
            Duration::from_secs(30),
        )
    }

    /// Stops the server (fast shutdown: clients are disconnected) and waits for it to exit.
    pub fn stop(&self) {
        if let Ok(mut slot) = self.child.lock() {
            if let Some(mut child) = slot.take() {
                // SAFETY: sending a signal to our own child process.
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                let _ = child.wait();
            }
        }
    }

    /// Freezes (`SIGSTOP`) or thaws (`SIGCONT`) the server and every one of its processes: a
    /// database that neither answers nor refuses, as a hung host or a stalled disk leaves it.
    pub fn signal_all(&self, signal: i32) {
        let Some(pid) = self
            .child
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|c| c.id()))
        else {
            return;
        };
        let mut pids = vec![pid];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
                continue;
            };
            let parent = status
                .lines()
                .find_map(|l| l.strip_prefix("PPid:"))
                .and_then(|p| p.trim().parse::<u32>().ok());
            if parent == Some(pid) {
                if let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                    pids.push(child);
                }
            }
        }
        for p in pids {
            // SAFETY: signalling processes this test started.
            unsafe { libc::kill(p as i32, signal) };
        }
    }

    /// Hands a file written by the test (a certificate, a key) to the server's OS user.
    pub fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.user {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/name`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A new, empty database.
    pub async fn database(&self, hint: &str) -> Db {
        let name = format!(
            "t{}_{}",
            NEXT.fetch_add(1, Ordering::SeqCst),
            hint.to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        let (client, conn) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create database");
        Db {
            url: self.url(&name),
            name,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Db {
    /// Runs SQL (a schema file's content) in this database.
    pub async fn exec(&self, sql: &str) {
        let client = self.client().await;
        if let Err(e) = client.batch_execute(sql).await {
            panic!(
                "SQL failed: {e}: {:?}",
                e.as_db_error().map(|d| d.message().to_owned())
            );
        }
    }

    /// A client on this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    }

    /// Rows of a query, every column as text (`NULL` for null).
    pub async fn rows(&self, query: &str) -> Vec<Vec<String>> {
        let client = self.client().await;
        let wrapped = format!("SELECT row_to_json(q)::text FROM ({query}) q");
        let rows = client
            .query(&wrapped, &[])
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        rows.iter()
            .map(|r| {
                let text: String = r.get(0);
                let v: serde_json::Value = serde_json::from_str(&text).expect("row_to_json");
                v.as_object()
                    .map(|o| {
                        o.values()
                            .map(|x| match x {
                                serde_json::Value::Null => "NULL".to_string(),
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// Spawns a server from one long-lived thread. The death signal set in [`as_user`] fires when
/// the *thread* that forked the child exits, and a test's thread ends with its test: a server
/// forked there would die under the next test.
pub fn spawn_kept(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, std::sync::mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<std::sync::mpsc::Sender<Job>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        });
        tx
    });
    let (tx, rx) = std::sync::mpsc::channel();
    keeper
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("spawner thread gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("spawner thread gone"))?
}

/// Runs the command as the `postgres` user when running as root, and makes it die with us.
pub fn as_user(mut cmd: Command, user: Option<(u32, u32)>) -> Command {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = user {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After setuid (which clears it): the server dies with the test process.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
            Ok(())
        });
    }
    cmd
}

/// Removes clusters of earlier test runs whose process is gone.
fn cleanup_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("scim-sidecar-pg-") else {
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

/// Whether a path exists (for skips with a reason).
pub fn exists(p: &Path) -> bool {
    p.exists()
}
