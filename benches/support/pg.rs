//! What the PostgreSQL benches share: the sidecar's `migrate`, server settings, the trial
//! (the statements a request makes, read back from the server log with
//! `log_min_duration_statement = 0`), their replay as pgbench scripts, and pgbench runs
//! measured like a sidecar phase.
//!
//! Included by `benches/postgres.rs` (the helpdesk example) and `benches/hooks.rs` (Redmine:
//! hooks and cascades) with `#[path = "support/pg.rs"] mod pg;`, next to `support` and
//! `postgres` (`tests/support/postgres.rs`), which it reaches as `crate::support` and
//! `crate::postgres`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

use crate::postgres;
use crate::support::{
    CheckResponse, Load, MakeRequest, REQUEST_TIMEOUT, Report, Stats, WARMUP, exchange_within,
    host_header, machine_busy_us, percentile, reaped_children_cpu_us, request, server_tree_cpu_us,
    unexpected,
};

// ---------------------------------------------------------------------------------------------
// Set-up

/// What every PostgreSQL bench starts with: the cluster, pgbench, the measured window and the
/// sidecar's pool size.
pub struct Setup {
    /// PostgreSQL's bin directory (`pgbench` is in it).
    pub bin: PathBuf,
    pub cluster: &'static postgres::Cluster,
    /// The measured window per phase, in seconds (`BENCH_SECS`).
    pub secs: u64,
    /// The sidecar's pool size (`DATABASE_POOL_SIZE`, else the bench's default).
    pub pool: usize,
    pub postmaster: u32,
}

impl Setup {
    /// Starts the throwaway cluster and prints the bench's intro; `None`, having said why,
    /// when PostgreSQL is not installed or does not start (the bench is then skipped).
    pub fn start(bench: &str, title: &str, config: &Path, default_pool: usize) -> Option<Setup> {
        let Some(bin) = postgres::bin_dir().filter(|b| b.join("pgbench").exists()) else {
            println!(
                "{bench} bench skipped: PostgreSQL is not installed (no pgbench next to initdb)"
            );
            return None;
        };
        // On this thread: the server dies with the thread that started it.
        let Some(cluster) = postgres::cluster() else {
            println!("{bench} bench skipped: the PostgreSQL cluster did not start (see above)");
            return None;
        };
        let secs = crate::support::bench_secs();
        let pool = std::env::var("DATABASE_POOL_SIZE")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(default_pool);
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        crate::support::print_intro(title, config);
        println!(
            "  server:  {} (port {}, fsync off), pgbench {}",
            bin.display(),
            cluster.port,
            pgbench_version(&bin)
        );
        println!(
            "  cores: {cores} (shared by load generator, sidecar, PostgreSQL, pgbench); pool size \
             {pool} (DATABASE_POOL_SIZE); per phase: {} s warm-up, {secs} s measured (BENCH_SECS), \
             at most {} requests",
            crate::support::WARMUP.as_secs(),
            crate::support::MAX_REQUESTS
        );
        println!();
        Some(Setup {
            postmaster: postmaster_pid(&cluster.dir),
            bin,
            cluster,
            secs,
            pool,
        })
    }

    /// A fresh database holding `schema` (an example's `schema.sql`), the ids its
    /// `sequence` gives next above `id_base`: so that no id in a trial request looks like a
    /// constant parameter.
    pub async fn database(
        &self,
        name: &str,
        schema: &Path,
        sequence: &str,
        id_base: u64,
    ) -> postgres::Db {
        let db = self.cluster.database(name).await;
        let sql = std::fs::read_to_string(schema)
            .unwrap_or_else(|e| panic!("read {}: {e}", schema.display()));
        db.exec(&sql).await;
        db.exec(&format!("SELECT setval('{sequence}', {id_base})"))
            .await;
        db
    }

    /// The measured window per phase.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.secs)
    }

    /// `scim-sidecar migrate`, then the sidecar (`run --config config`) in front of `db` with
    /// the bench's pool size, ready; nothing listens upstream (the benches send SCIM only).
    pub fn sidecar(&self, db: &postgres::Db, config: &Path) -> crate::support::Sidecar {
        let env = [
            ("DATABASE_URL", db.url.clone()),
            ("DATABASE_POOL_SIZE", self.pool.to_string()),
        ];
        migrate(config, &env);
        let dir = tempfile::tempdir().expect("tempdir");
        let upstream = format!("http://{}", crate::support::free_port());
        let env_os: Vec<(&str, &std::ffi::OsStr)> =
            env.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        let (sidecar, ready) = crate::support::Sidecar::start(dir, config, &upstream, &env_os);
        println!("  sidecar ready in {:.1} ms", crate::support::ms(ready));
        println!();
        sidecar
    }

    /// The server's log, where the trial reads what the sidecar sent.
    pub fn log(&self) -> ServerLog {
        ServerLog(self.cluster.dir.join("server.log"))
    }

    /// pgbench against `db`.
    pub fn pgbench(&self, db: &postgres::Db) -> Pgbench {
        Pgbench {
            bin: self.bin.join("pgbench"),
            port: self.cluster.port,
            db: db.name.clone(),
            logs: tempfile::tempdir().expect("tempdir"),
            postmaster: self.postmaster,
        }
    }

    /// Stops the cluster and removes its files.
    pub fn stop(self) {
        self.cluster.stop();
        let _ = std::fs::remove_dir_all(&self.cluster.dir);
    }
}

/// `target/tmp/<name>`, created: where a bench writes its pgbench scripts.
pub fn scripts_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Every statement logged from here on (`log_min_duration_statement = 0`) while `on`; off
/// again, autovacuum goes off too: the benches vacuum and analyze before each run instead
/// ([`quiesce`]), so that no background work falls into one.
pub async fn log_statements(db: &postgres::Db, on: bool) {
    let logging = "log_min_duration_statement";
    if on {
        set_system(db, logging, Some("0"), "0").await;
    } else {
        set_system(db, logging, None, "-1").await;
        set_system(db, "autovacuum", Some("off"), "off").await;
    }
}

/// Before a measured run, once the bench has reset its rows: dead rows vacuumed, statistics
/// fresh, dirty pages written, so that runs start alike.
pub async fn quiesce(db: &postgres::Db) {
    db.exec("VACUUM ANALYZE").await;
    db.exec("CHECKPOINT").await;
}

/// `scim-sidecar migrate`: the sidecar's own table (where it keeps `externalId`).
pub fn migrate(config: &Path, env: &[(&str, String)]) {
    let out = Command::new(crate::support::binary())
        .arg("migrate")
        .arg("--config")
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("SCIM_TOKEN", crate::support::TOKEN)
        .output()
        .expect("run scim-sidecar migrate");
    assert!(
        out.status.success(),
        "scim-sidecar migrate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The postmaster's pid, from `postmaster.pid` in the data directory.
pub fn postmaster_pid(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("data/postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse().ok())
        .expect("postmaster.pid")
}

/// pgbench's version, from `pgbench --version`.
pub fn pgbench_version(bin: &Path) -> String {
    Command::new(bin.join("pgbench"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(2).map(str::to_owned))
        .unwrap_or_default()
}

/// Sets a server setting for every session (`ALTER SYSTEM`, then a reload; `None` resets it)
/// and returns once a new session shows `shown`. Sessions already open (the sidecar's pool)
/// apply it before their next statement: the postmaster has signalled them by then.
pub async fn set_system(db: &postgres::Db, name: &str, value: Option<&str>, shown: &str) {
    db.exec(&match value {
        Some(v) => format!("ALTER SYSTEM SET {name} = {v}"),
        None => format!("ALTER SYSTEM RESET {name}"),
    })
    .await;
    db.exec("SELECT pg_reload_conf()").await;
    let t0 = Instant::now();
    loop {
        let rows = db
            .rows(&format!("SELECT current_setting('{name}') AS v"))
            .await;
        if rows.first().and_then(|r| r.first()).map(String::as_str) == Some(shown) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{name} did not become {shown}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One statement the sidecar sent, as the server logged it.
pub struct Logged {
    /// The SQL text, with `$n` placeholders.
    pub text: String,
    /// The values bound to them (`None`: NULL).
    pub params: Vec<Option<String>>,
}

/// PostgreSQL's log file (the cluster's stderr).
pub struct ServerLog(pub PathBuf);

impl ServerLog {
    pub fn len(&self) -> u64 {
        std::fs::metadata(&self.0).map_or(0, |m| m.len())
    }

    /// The statements executed since offset `from` (`execute` of the extended protocol and
    /// simple `statement`s; `parse` and `bind` are skipped), once the file stopped growing.
    pub async fn statements_since(&self, from: u64) -> Vec<Logged> {
        let mut size = self.len();
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let now = self.len();
            if now == size {
                break;
            }
            size = now;
        }
        let bytes = std::fs::read(&self.0).expect("read server.log");
        let text = String::from_utf8_lossy(&bytes[(from as usize).min(bytes.len())..]).into_owned();
        parse_log(&text)
    }

    /// Sends one request on `s` (as [`call_json`]) and reads back the statements the server
    /// logged meanwhile; there must be some.
    pub async fn trace(
        &self,
        s: &mut SendRequest<Full<Bytes>>,
        req: http::Request<Full<Bytes>>,
        want: StatusCode,
        what: &str,
    ) -> (serde_json::Value, Vec<Logged>) {
        let from = self.len();
        let v = call_json(s, req, want, what).await;
        let stmts = self.statements_since(from).await;
        assert!(!stmts.is_empty(), "{what}: no statement in the server log");
        (v, stmts)
    }
}

/// Prints what the trial logged: per request, its statements, abbreviated.
pub fn print_statements(steps: &[(&str, Vec<Logged>)]) {
    println!("== statements per request (server log, log_min_duration_statement = 0) ==");
    for (what, stmts) in steps {
        println!("  {what}: {} statement(s)", stmts.len());
        for (i, s) in stmts.iter().enumerate() {
            println!("    {}. {}", i + 1, abbreviate(&s.text, 150));
        }
    }
    println!();
}

/// Statements and their parameters from PostgreSQL log lines (`log_line_prefix` `%m [%p] `).
pub fn parse_log(text: &str) -> Vec<Logged> {
    let mut out: Vec<Logged> = Vec::new();
    // Whether the last LOG line was a statement kept in `out` (continuation lines and its
    // DETAIL belong to it).
    let mut open = false;
    for line in text.lines() {
        if !line.starts_with(|c: char| c.is_ascii_digit()) {
            // A continuation of a multi-line statement.
            if open {
                if let Some(last) = out.last_mut() {
                    last.text.push('\n');
                    last.text.push_str(line.trim_start_matches('\t'));
                }
            }
            continue;
        }
        if let Some(rest) = line.split_once("LOG:  duration: ").map(|(_, r)| r) {
            let body = rest.split_once(" ms  ").map_or("", |(_, b)| b);
            let sql = if let Some(s) = body.strip_prefix("statement: ") {
                Some(s)
            } else if body.starts_with("execute ") {
                body.split_once(": ").map(|(_, s)| s)
            } else {
                None
            };
            open = sql.is_some();
            if let Some(sql) = sql {
                out.push(Logged {
                    text: sql.to_owned(),
                    params: Vec::new(),
                });
            }
        } else if let Some((_, p)) = line.split_once("DETAIL:  parameters: ") {
            if open {
                if let Some(last) = out.last_mut() {
                    last.params = parse_params(p);
                }
            }
        } else {
            open = false;
        }
    }
    out
}

/// `$1 = 'a', $2 = NULL, $3 = 'it''s'` → `[Some("a"), None, Some("it's")]`.
pub fn parse_params(p: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let mut chars = p.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '=' {
            continue;
        }
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        break;
                    }
                }
                v.push(c);
            }
            out.push(Some(v));
        } else {
            out.push(None);
        }
    }
    out
}

/// Sends one request on `s` once the connection is ready for it, within `timeout`; checks its
/// status. The answer, and the time from sending the request until it was read.
pub async fn call(
    s: &mut SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
    want: StatusCode,
    what: &str,
    timeout: Duration,
) -> (Bytes, Duration) {
    s.ready()
        .await
        .unwrap_or_else(|e| panic!("{what}: connection lost: {e}"));
    let t0 = Instant::now();
    let (parts, body) = exchange_within(s, req, timeout)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = t0.elapsed();
    assert_eq!(parts.status, want, "{}", unexpected(what, &parts, &body));
    (body, took)
}

/// [`call`] for a JSON answer, within [`REQUEST_TIMEOUT`].
pub async fn call_json(
    s: &mut SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
    want: StatusCode,
    what: &str,
) -> serde_json::Value {
    let (body, _) = call(s, req, want, what, REQUEST_TIMEOUT).await;
    if body.is_empty() {
        return serde_json::Value::Null; // 204
    }
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

/// A logged statement as a pgbench command: each `$n` becomes its `vary` expression (by the
/// trial value bound to it), `NULL`, or a constant variable `:cK` (added to `defines`); `:` in
/// `to_char` formats is quoted so that pgbench does not take `:MI` for a variable.
pub fn replay(
    stmt: &Logged,
    vary: &[(String, &str)],
    defines: &mut Vec<(String, String)>,
) -> String {
    let mut out = String::with_capacity(stmt.text.len());
    let mut chars = stmt.text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                let mut k = 0usize;
                while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                    k = k * 10 + d as usize;
                    chars.next();
                }
                let value = stmt
                    .params
                    .get(k.wrapping_sub(1))
                    .unwrap_or_else(|| panic!("${k} has no logged value in: {}", stmt.text));
                let Some(v) = value else {
                    out.push_str("NULL");
                    continue;
                };
                if let Some((_, expr)) = vary.iter().find(|(t, _)| t == v) {
                    out.push_str(expr);
                    continue;
                }
                // A value that differs per request must not become a constant ('{1000002}').
                if let Some((t, _)) = vary.iter().find(|(t, _)| v.contains(t.as_str())) {
                    panic!("${k} = '{v}' holds the per-request value '{t}' but has no variable");
                }
                let i = match defines.iter().position(|(_, d)| d == v) {
                    Some(i) => i,
                    None => {
                        defines.push((format!("c{}", defines.len() + 1), v.clone()));
                        defines.len() - 1
                    }
                };
                out.push(':');
                out.push_str(&defines[i].0);
            }
            '\'' => {
                let mut lit = String::from('\'');
                while let Some(c) = chars.next() {
                    lit.push(c);
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            lit.push('\'');
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                if lit.contains(":MI") || lit.contains(":SS") {
                    assert!(
                        lit.contains("HH24"),
                        "a literal pgbench would misread: {lit}"
                    );
                    lit = lit.replace(":MI", "\":\"MI").replace(":SS", "\":\"SS");
                }
                out.push_str(&lit);
            }
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `max` characters.
pub fn abbreviate(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max).collect();
    format!("{cut}…")
}

// ---------------------------------------------------------------------------------------------
// pgbench

/// A pgbench script and the constants it needs (`-D cK=value`).
pub struct Script {
    /// Its file name; up to `_`, the name of its pgbench line.
    pub name: &'static str,
    pub text: String,
    pub defines: Vec<(String, String)>,
}

impl Script {
    /// The name of its pgbench line: its name up to `_`.
    fn line(&self) -> String {
        format!("{:<7} pgbench", self.name.split('_').next().unwrap_or(""))
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.sql", self.name))
    }

    pub fn write(&self, dir: &Path) {
        let mut file = String::from("-- pgbench -M prepared -n -f this-file");
        for (k, v) in &self.defines {
            file.push_str(&format!(" -D {k}='{v}'"));
        }
        file.push('\n');
        file.push_str(&self.text);
        std::fs::write(self.path(dir), file).expect("write a pgbench script");
    }

    pub fn print(&self, dir: &Path) {
        println!("  {}:", self.path(dir).display());
        let defines: Vec<String> = self
            .defines
            .iter()
            .map(|(k, v)| format!("{k}='{v}'"))
            .collect();
        println!("    -D {}", defines.join(" "));
        for line in self.text.lines() {
            println!("    {line}");
        }
    }
}

/// How long a pgbench run may take past its `-T` before it is killed and the bench fails.
pub const PGBENCH_GRACE: Duration = Duration::from_secs(60);

/// pgbench against the bench database.
pub struct Pgbench {
    pub bin: PathBuf,
    pub port: u16,
    pub db: String,
    /// Where its per-transaction logs, scripts and output go.
    pub logs: tempfile::TempDir,
    pub postmaster: u32,
}

/// One line of pgbench's per-transaction log.
struct Logline {
    client: u64,
    /// Counted from 1 for each client.
    number: u64,
    latency_us: u64,
    /// When it ended, in µs since the epoch.
    end_us: u64,
}

/// CPU times around a run: PostgreSQL, the reaped pgbench, this process, the machine.
struct Cpu {
    pg: Option<u64>,
    bench: Option<u64>,
    own: Option<u64>,
    machine: Option<u64>,
    at: Instant,
}

impl Cpu {
    fn now(postmaster: u32) -> Cpu {
        Cpu {
            pg: server_tree_cpu_us(postmaster),
            bench: reaped_children_cpu_us(),
            own: crate::support::cpu_us("self"),
            machine: machine_busy_us(),
            at: Instant::now(),
        }
    }

    /// PostgreSQL's and pgbench's CPU since `self` (µs), and the cores other processes used.
    fn since(&self, postmaster: u32) -> (u64, u64, f64) {
        let now = Cpu::now(postmaster);
        let delta = |a: Option<u64>, b: Option<u64>| b.unwrap_or(0).saturating_sub(a.unwrap_or(0));
        let pg = delta(self.pg, now.pg);
        let bench = delta(self.bench, now.bench);
        let ours = pg + bench + delta(self.own, now.own);
        let wall = (now.at - self.at).as_secs_f64().max(1e-3);
        let other = delta(self.machine, now.machine).saturating_sub(ours) as f64 / 1e6 / wall;
        (pg, bench, other)
    }
}

impl Pgbench {
    /// Runs `script` with `conns` clients: 1 s of warm-up, then `secs` measured with a
    /// per-transaction log, each its own pgbench run; prints nothing, returns the figures as a
    /// phase's.
    pub fn run(&self, script: &Script, conns: usize, secs: u64) -> Stats {
        self.pgbench(script, conns, 1, &[], false);
        let cpu = Cpu::now(self.postmaster);
        let out = self.pgbench(script, conns, secs, &[], true);
        let cpu = cpu.since(self.postmaster);
        let measured =
            field(&out, "number of transactions actually processed: ").unwrap_or(0.0) as u64;
        let errors = field(&out, "number of failed transactions: ").unwrap_or(0.0) as u64;
        let lat: Vec<u32> = self.transactions().iter().map(|t| t.latency()).collect();
        Stats {
            measured,
            errors,
            total: measured + errors,
            secs: secs as f64,
            rps: field(&out, "tps = ").unwrap_or(0.0),
            ..figures(script, conns, lat, measured, cpu)
        }
    }

    /// Runs `script` with `conns` clients for [`WARMUP`] plus `secs` in one pgbench run, with
    /// `vars` defined (`-D`) besides the script's constants, and measures it as a sidecar
    /// phase is measured, from the per-transaction log: on the same connections, the
    /// transactions started in the first [`WARMUP`] warm up, the rest are measured, their
    /// window ends with the last one. Transactions for which `counts(client, number)` is false
    /// did nothing (the script ran out of rows) and are left out; `total` counts the others,
    /// warm-up included, and CPU figures are per transaction of those.
    pub fn run_warm(
        &self,
        script: &Script,
        conns: usize,
        secs: u64,
        vars: &[(&str, String)],
        counts: &dyn Fn(u64, u64) -> bool,
    ) -> Stats {
        let cpu = Cpu::now(self.postmaster);
        let out = self.pgbench(script, conns, WARMUP.as_secs() + secs, vars, true);
        let cpu = cpu.since(self.postmaster);
        let all = self.transactions();
        let start = all.iter().map(Logline::start_us).min().unwrap_or(0);
        let warm_end = start + WARMUP.as_micros() as u64;
        let done: Vec<&Logline> = all.iter().filter(|t| counts(t.client, t.number)).collect();
        let measured: Vec<&&Logline> = done.iter().filter(|t| t.start_us() >= warm_end).collect();
        let last = measured.iter().map(|t| t.end_us).max().unwrap_or(warm_end);
        let window = last.saturating_sub(warm_end) as f64 / 1e6;
        let lat: Vec<u32> = measured.iter().map(|t| t.latency()).collect();
        let stats = figures(script, conns, lat, done.len() as u64, cpu);
        Stats {
            errors: field(&out, "number of failed transactions: ").unwrap_or(0.0) as u64,
            secs: window,
            rps: if window > 0.0 {
                stats.measured as f64 / window
            } else {
                0.0
            },
            ..stats
        }
    }

    /// One pgbench run of `secs` (`-T`); its standard output. Panics with its output if it
    /// fails or outlives its time by [`PGBENCH_GRACE`]: a script that does not replay is a
    /// bench bug.
    fn pgbench(
        &self,
        script: &Script,
        conns: usize,
        secs: u64,
        vars: &[(&str, String)],
        log: bool,
    ) -> String {
        let dir = self.logs.path();
        let file = dir.join(format!("{}.sql", script.name));
        std::fs::write(&file, &script.text).expect("write the pgbench script");
        let (stdout, stderr) = (dir.join("pgbench.out"), dir.join("pgbench.err"));
        let mut cmd = Command::new(&self.bin);
        cmd.args(["-h", "127.0.0.1", "-U", "postgres", "-n", "-M", "prepared"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(conns.to_string())
            .arg("-j")
            .arg(conns.min(2).to_string())
            .arg("-T")
            .arg(secs.to_string())
            .arg("-f")
            .arg(&file);
        let defines = script.defines.iter().map(|(k, v)| (k.as_str(), v));
        for (k, v) in defines.chain(vars.iter().map(|(k, v)| (*k, v))) {
            cmd.arg("-D").arg(format!("{k}={v}"));
        }
        if log {
            cmd.arg("-l")
                .arg(format!("--log-prefix={}", dir.join("tx").display()));
        }
        let mut child = crate::support::Proc::new(
            cmd.arg(&self.db)
                .stdout(std::fs::File::create(&stdout).expect("pgbench.out"))
                .stderr(std::fs::File::create(&stderr).expect("pgbench.err"))
                .spawn()
                .expect("run pgbench"),
            "pgbench",
        );
        let deadline = Duration::from_secs(secs) + PGBENCH_GRACE;
        let t0 = Instant::now();
        let status = loop {
            if let Some(status) = child.exited() {
                break Some(status);
            }
            if t0.elapsed() > deadline {
                child.stop();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::fs::read_to_string(&stdout).unwrap_or_default();
        match status {
            Some(s) if s.success() => out,
            _ => panic!(
                "pgbench {} failed ({}):\n{out}{}",
                script.name,
                status.map_or(format!("still running after {deadline:?}"), |s| s
                    .to_string()),
                std::fs::read_to_string(&stderr).unwrap_or_default()
            ),
        }
    }

    /// The per-transaction logs of the last logged run, which are removed.
    fn transactions(&self) -> Vec<Logline> {
        let mut all = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.logs.path()) else {
            return all;
        };
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with("tx.") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            // client_id transaction_no time script_no time_epoch time_us
            all.extend(text.lines().filter_map(|l| {
                let f: Vec<u64> = l
                    .split_whitespace()
                    .take(6)
                    .map(|x| x.parse().ok())
                    .collect::<Option<_>>()?;
                (f.len() == 6).then(|| Logline {
                    client: f[0],
                    number: f[1],
                    latency_us: f[2],
                    end_us: f[4] * 1_000_000 + f[5],
                })
            }));
            let _ = std::fs::remove_file(e.path());
        }
        all
    }
}

/// A pgbench run's figures as a phase's, but for its errors, window and rate: `lat` the
/// latencies measured, `cpu` (PostgreSQL's and pgbench's µs, other processes' cores) spread
/// over `total` transactions.
fn figures(
    script: &Script,
    conns: usize,
    mut lat: Vec<u32>,
    total: u64,
    cpu: (u64, u64, f64),
) -> Stats {
    lat.sort_unstable();
    let (pg, bench, other_cores) = cpu;
    let per = |us: u64| (total > 0).then(|| us as f64 / total as f64);
    Stats {
        name: script.line(),
        conns,
        measured: lat.len() as u64,
        errors: 0,
        total,
        secs: 0.0,
        rps: 0.0,
        server_cpu_us: None,
        bench_cpu_us: per(bench).unwrap_or(0.0),
        other_cores,
        db_cpu_us: per(pg),
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        max_us: lat.last().copied().map_or(0, u64::from),
        collected: Vec::new(),
        round: 0,
    }
}

impl Logline {
    fn start_us(&self) -> u64 {
        self.end_us.saturating_sub(self.latency_us)
    }

    fn latency(&self) -> u32 {
        u32::try_from(self.latency_us).unwrap_or(u32::MAX)
    }
}

/// A number in pgbench's output: the first word after `key` on the line that starts with it
/// (`12/34` gives 12).
fn field(out: &str, key: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .split_whitespace()
        .next()?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// The smallest and largest of some numbers.
pub fn span(values: impl Iterator<Item = u64>) -> (u64, u64) {
    values.fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// An Entra-style members PatchOp: `op` ("Add" or "Remove") with one `value` per id.
pub fn members_body(op: &str, ids: &[String]) -> String {
    let values: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"value":"{id}"}}"#))
        .collect();
    format!(
        concat!(
            r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"#,
            r#""Operations":[{{"op":"{op}","path":"members","value":[{values}]}}]}}"#
        ),
        op = op,
        values = values.join(",")
    )
}

/// Adds one member per request: user `n` (rotating over `users`) to group `n` (rotating over
/// `groups`); the answer must list it.
pub fn member_add_load(
    addr: SocketAddr,
    conns: usize,
    groups: Arc<Vec<String>>,
    users: Arc<Vec<String>>,
) -> Load {
    let host = host_header(addr);
    let pick = move |n: u64| {
        let user = users[(n % users.len() as u64) as usize].clone();
        let group = groups[(n % groups.len() as u64) as usize].clone();
        (group, user)
    };
    let check_pick = pick.clone();
    let check: CheckResponse = Arc::new(move |n, parts, body| {
        // 204 with the group's new ETag; the trial run checked the membership itself.
        let _ = check_pick(n);
        if parts.status != StatusCode::NO_CONTENT || !parts.headers.contains_key(http::header::ETAG)
        {
            return Err(unexpected("member add", parts, body));
        }
        Ok(None)
    });
    let make: MakeRequest = Arc::new(move |n| {
        let (group, user) = pick(n);
        let path = format!("/scim/v2/Groups/{group}");
        request(
            Method::PATCH,
            &host,
            &path,
            Some(members_body("Add", &[user])),
        )
    });
    Load::new("member  PATCH /Groups/{id}", addr, conns, make, check)
}

/// The first column of the first row.
pub fn first(rows: &[Vec<String>]) -> String {
    rows.first()
        .and_then(|r| r.first())
        .cloned()
        .expect("a row")
}

/// A phase at one concurrency: indexes of its sidecar and pgbench figures in the report.
pub struct Pair<P> {
    pub phase: P,
    pub conns: usize,
    pub sidecar: usize,
    pub raw: usize,
}

impl<P> Pair<P> {
    /// Prints the pgbench line (the sidecar's was printed as it ran) and keeps both runs in
    /// `report`, as the pair of `phase` at `conns`.
    pub fn record(
        report: &mut Report,
        phase: P,
        conns: usize,
        sidecar: Stats,
        raw: Stats,
    ) -> Pair<P> {
        Report::line(&raw);
        let pair = Pair {
            phase,
            conns,
            sidecar: report.phases.len(),
            raw: report.phases.len() + 1,
        };
        report.add(sidecar);
        report.add(raw);
        pair
    }

    /// Its sidecar/pgbench ratio and the figure that says it (see [`versus`]).
    pub fn versus(&self, report: &Report) -> (f64, String) {
        versus(&report.phases[self.sidecar], &report.phases[self.raw])
    }
}

/// Prints the scripts and where they were written.
pub fn print_scripts(scripts: &[Script], dir: &Path) {
    println!("== raw: the pgbench scripts (also in {}) ==", dir.display());
    for s in scripts {
        s.print(dir);
    }
    println!();
}

/// A sidecar phase next to its pgbench run: the ratio of their rates, and the figure that
/// says it with the rates, p50 and p99 of both.
pub fn versus(sidecar: &Stats, raw: &Stats) -> (f64, String) {
    let ratio = if raw.rps > 0.0 {
        sidecar.rps / raw.rps
    } else {
        0.0
    };
    let value = format!(
        "{ratio:.2} ({:.0} / {:.0} req/s), p50 {:.2} / {:.2}, p99 {:.2} / {:.2} ms",
        sidecar.rps,
        raw.rps,
        sidecar.p50_us as f64 / 1000.0,
        raw.p50_us as f64 / 1000.0,
        sidecar.p99_us as f64 / 1000.0,
        raw.p99_us as f64 / 1000.0
    );
    (ratio, value)
}
