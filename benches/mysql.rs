//! MariaDB benchmark: the sidecar in front of the helpdesk app (`examples/postgres`' mapping,
//! unchanged but for `type = "mysql"`, on `tests/fixtures/postgres.mysql.sql`), next to the
//! very statements it sends, replayed straight against MariaDB by a small mysql_async client
//! of this bench's own.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench mysql                        # 1 s warm-up + 5 s measured per phase
//! BENCH_SECS=10 cargo bench --bench mysql          # a longer measured window
//! DATABASE_POOL_SIZE=16 cargo bench --bench mysql  # another pool size (default 8), both sides
//! ```
//!
//! It needs MariaDB's server (`mariadbd` and `mariadb-install-db`, as `apt-get install
//! mariadb-server` puts them); without it, it says so and exits 0. It starts a throwaway
//! server (`tests/support/mariadb.rs`: a free loopback port, no flush at commit), loads the
//! schema into a fresh database, gives the sidecar an account of its own (`sidecar`, so that
//! the server's log tells its statements apart), runs `scim-sidecar migrate` and then
//! `scim-sidecar run` (the release binary) on loopback ports with a pool of 8 connections.
//! Then:
//!
//! 1. **Trial**: with MariaDB's general log on from before the sidecar starts, one request of
//!    each kind, checked in full. Every statement the sidecar's account sent for each request
//!    is read back from `mysql.general_log` and printed: what the sidecar sends per request,
//!    read from the server rather than assumed. A statement is prepared once per connection,
//!    so the log holds its text with `?` (`Prepare`) and, per request, its values
//!    (`Execute`); the session set-up each new connection runs is read from the log too.
//! 2. **Replay scripts**, one per request kind: the logged statements in order, transaction
//!    statements (`START TRANSACTION`, `COMMIT`) and `SELECT … FOR UPDATE` included, sent
//!    the way the sidecar sent them: prepared statements (binary protocol, mysql_async's
//!    statement cache) with the trial's values as parameters, transaction statements as text.
//!    The values that must differ per request are replaced per request: the user number in
//!    names and addresses, the user's id (an insert's generated key, in a create), and the
//!    name of an advisory lock, if one is taken. Statements the sidecar ran on another
//!    pooled connection would run on another checkout from the pool; with this mapping each
//!    request runs on one (the kept `externalId` is written in the row's transaction).
//! 3. **Phases** with 1, 8 and 32 concurrent clients, first through the sidecar (keep-alive
//!    HTTP/1.1 connections sending back to back), then the replay: as many tasks as clients,
//!    each running its script back to back on connections taken from one mysql_async pool of
//!    the sidecar's size, set up with the sidecar's session statements (as the sidecar's
//!    pool: no reset between uses, found rows counted). *create* (`POST /Users`, an
//!    Entra-like body whose work e-mail goes to the child table `user_emails` and whose
//!    `externalId` to the sidecar's own table), *filter* (`GET /Users?filter=userName eq
//!    "…"` over the users created) and *patch* (Entra-style `Replace` of `displayName` and
//!    `active`). Each replayed request is checked too: a create reads back its new user, a
//!    filter finds its user, a patch's `UPDATE` finds its row. Before every run the tables'
//!    statistics are refreshed (`ANALYZE TABLE`), so runs start alike.
//!
//! Figures per run (one line for the sidecar, one for the direct replay), as in
//! `benches/postgres.rs`: `req/s` in the measured window, latencies (sidecar: request sent
//! until its answer is read; direct: a script's first statement sent until its last answer),
//! `CPU us/req` of the sidecar and of this process (load generator, or the direct client),
//! `db CPU us/req` of `mariadbd`, and the CPU every other process used meanwhile (noise).
//!
//! The summary gives per phase and client count the ratio sidecar req/s / direct req/s
//! against the goal ≥ 0.7 (PASS/MISS) and the sidecar's CPU per request. Figures are reported,
//! never asserted: the bench fails only on request errors (more than 1%, either side) or if
//! the sidecar does not start. Everything shares the machine's cores (2 on the reference VM),
//! so the ratio says how much of what MariaDB can do with these statements the sidecar
//! delivers on this machine, not what either does alone. Each run is bounded: `BENCH_SECS`
//! (default 5) seconds plus 1 s warm-up, at most 2,000,000 requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use mysql_async::prelude::Queryable;
use mysql_async::{OptsBuilder, Params, Pool, PoolConstraints, PoolOpts, Row, Value};

#[path = "support/mod.rs"]
mod support;

// The MariaDB harness borrows process helpers from the PostgreSQL one.
#[path = "../tests/support/postgres.rs"]
mod postgres;

#[path = "../tests/support/mariadb.rs"]
mod mariadb;

use support::{
    CONNECT_TIMEOUT, MAX_ERROR_RATE, MAX_REQUESTS, REQUEST_TIMEOUT, Report, Sidecar, Stats,
    Summary, WARMUP, at_least, connect, contains, create_body, create_load, exchange, filter_load,
    filter_path, free_port, host_header, machine_busy_us, patch_body, patch_load, percentile,
    request, run_phase, server_tree_cpu_us, unexpected, user_name,
};

/// Concurrency levels of every phase.
const CLIENTS: [usize; 3] = [1, 8, 32];
/// The pool size of the sidecar and of the direct client unless `DATABASE_POOL_SIZE` says
/// otherwise (as in `benches/postgres.rs`).
const DEFAULT_POOL_SIZE: usize = 8;
/// `n` of the trial requests; odd, so that its PATCH turns `active` off and changes every
/// column it names.
const TRIAL: u64 = 999_999_999;
/// The bench's users have ids from here on (`AUTO_INCREMENT`), so that no id in a trial
/// statement looks like a constant (`0`, `1`, a `LIMIT`).
const FIRST_ID: u64 = 1_000_000_000;
/// The goal: the sidecar delivers at least this share of the direct replay's req/s.
const TARGET_RATIO: f64 = 0.7;
/// The sidecar's database account (user and password): one of its own, so that the general
/// log tells its statements from the bench's.
const ACCOUNT: &str = "sidecar";
/// An advisory lock's name starts with this (`GET_LOCK` in `src/backend/sql/mysql.rs`).
const LOCK_PREFIX: &str = "scim-sidecar:";

fn main() {
    let Some(server) = mariadb::server() else {
        println!("mysql bench skipped: MariaDB is not installed or did not start (see above)");
        return;
    };
    let secs = support::bench_secs();
    let window = Duration::from_secs(secs);
    let pool = std::env::var("DATABASE_POOL_SIZE")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_POOL_SIZE);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let db_pid = server.pid().expect("mariadbd runs");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    support::print_intro("scim-sidecar MariaDB benchmark", &config);

    let rt = support::runtime();
    let (url, version) = rt.block_on(create_database(server));
    println!(
        "  server:  MariaDB {version} (port {}, no flush at commit), pid {db_pid}",
        server.port
    );
    println!(
        "  cores: {cores} (shared by load generator, sidecar, MariaDB); pool size {pool} \
         (DATABASE_POOL_SIZE) for the sidecar and the direct client; per run: {} s warm-up, \
         {secs} s measured (BENCH_SECS), at most {MAX_REQUESTS} requests",
        WARMUP.as_secs()
    );
    println!();
    migrate(&config, &url);

    // 1. Trial. The log is on before the sidecar starts: every statement it will prepare is
    // logged with its text, and every new connection's set-up.
    let mut log = rt.block_on(GeneralLog::start(server));
    let env = [
        ("DATABASE_URL", url.clone()),
        ("DATABASE_POOL_SIZE", pool.to_string()),
    ];
    let env_os: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    // Nothing listens upstream: the bench sends SCIM requests only.
    let upstream = format!("http://{}", free_port());
    let (mut sidecar, ready) = Sidecar::start(
        tempfile::tempdir().expect("tempdir"),
        &config,
        &upstream,
        &env_os,
    );
    let pid = sidecar.proc.pid;
    println!("  sidecar ready in {:.1} ms", support::ms(ready));
    println!();
    let trial = rt.block_on(run_trial(&mut log, sidecar.addr));
    rt.block_on(log.stop(server));
    trial.print();

    // 2. and 3. Phases, each through the sidecar and then replayed direct.
    let direct = Direct::new(&url, &trial.setup, pool);
    println!("== phases: sidecar, then the same statements straight to MariaDB ==");
    Report::header(true);
    let seq = Arc::new(AtomicU64::new(0));
    let mut report = Report::default();
    let mut pairs: Vec<Pair> = Vec::new();
    let mut created: Vec<(u64, String)> = Vec::new();
    for phase in Phase::ALL {
        let script = Arc::new(trial.script(phase));
        let names: Arc<Vec<String>> =
            Arc::new(created.iter().map(|(n, _)| user_name(*n)).collect());
        let ids: Arc<Vec<String>> = Arc::new(created.iter().map(|(_, id)| id.clone()).collect());
        let users: Arc<Vec<(u64, u64)>> = Arc::new(
            created
                .iter()
                .map(|(n, id)| (*n, id.parse().expect("a numeric id")))
                .collect(),
        );
        for clients in CLIENTS {
            let load = match phase {
                Phase::Create => create_load(sidecar.addr, clients, true),
                Phase::Filter => filter_load(sidecar.addr, clients, names.clone()),
                Phase::Patch => patch_load(sidecar.addr, clients, ids.clone()),
            };
            rt.block_on(settle(&url));
            let stats = rt.block_on(run_phase(&load.server(pid).db(db_pid), &seq, window));
            if phase == Phase::Create {
                created.extend(stats.collected.iter().cloned());
            }
            rt.block_on(settle(&url));
            let run = Run {
                phase,
                clients,
                script: script.clone(),
                users: users.clone(),
                trial_id: trial.user_id,
            };
            let raw = rt.block_on(direct.run(run, &seq, window, db_pid));
            pairs.push(Pair {
                phase,
                clients,
                sidecar: report.phases.len(),
                direct: report.phases.len() + 1,
            });
            report.add(stats);
            report.add(raw);
        }
    }
    println!("  ({} users created through the sidecar)", created.len());
    println!();

    println!("== sidecar ==");
    if let Some(d) = sidecar.proc.stop() {
        println!("  sidecar stopped {:.0} ms after SIGTERM", support::ms(d));
    }
    sidecar.print_log();
    println!();

    summary(&report, &pairs, pool);
    let _ = rt.block_on(direct.pool.disconnect());
    rt.shutdown_timeout(Duration::from_secs(2));
    server.stop();
    let _ = std::fs::remove_dir_all(&server.dir);
}

// ---------------------------------------------------------------------------------------------
// Set-up

/// `examples/postgres/scim-sidecar.toml` with its store's type changed to `mysql`, in `dir`.
fn write_config(dir: &Path) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/postgres/scim-sidecar.toml");
    let text = std::fs::read_to_string(&example).expect("examples/postgres/scim-sidecar.toml");
    let from = "type = \"postgres\"";
    assert!(
        text.contains(from),
        "the example's store is no longer postgres"
    );
    let config = dir.join("scim-sidecar.toml");
    std::fs::write(&config, text.replace(from, "type = \"mysql\"")).expect("write the config");
    config
}

/// A fresh database with the helpdesk schema (ids from [`FIRST_ID`] on) and the sidecar's
/// account, which may use that database only; its URL and the server's version.
async fn create_database(server: &mariadb::Server) -> (String, String) {
    let db = server.database("bench").await;
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postgres.mysql.sql");
    db.exec(&std::fs::read_to_string(schema).expect("tests/fixtures/postgres.mysql.sql"))
        .await;
    db.exec(&format!(
        "ALTER TABLE principals AUTO_INCREMENT = {FIRST_ID}"
    ))
    .await;
    server
        .admin(&format!(
            "CREATE USER '{ACCOUNT}'@'127.0.0.1' IDENTIFIED BY '{ACCOUNT}'; \
             GRANT ALL ON `{}`.* TO '{ACCOUNT}'@'127.0.0.1'",
            db.name
        ))
        .await;
    let version = db.rows("SELECT VERSION()").await;
    let url = format!(
        "mysql://{ACCOUNT}:{ACCOUNT}@127.0.0.1:{}/{}",
        server.port, db.name
    );
    (url, first(&version))
}

/// `scim-sidecar migrate`: the sidecar's own table (where it keeps `externalId`).
fn migrate(config: &Path, url: &str) {
    let out = std::process::Command::new(support::binary())
        .arg("migrate")
        .arg("--config")
        .arg(config)
        .env("DATABASE_URL", url)
        .env("SCIM_TOKEN", support::TOKEN)
        .output()
        .expect("run scim-sidecar migrate");
    assert!(
        out.status.success(),
        "scim-sidecar migrate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Before each run, so that runs start alike: fresh statistics of the tables the phases grow.
async fn settle(url: &str) {
    let mut c = mysql_async::Conn::from_url(url)
        .await
        .expect("connect to MariaDB");
    let _: Vec<Row> = c
        .query("ANALYZE TABLE principals, user_emails, scim_sidecar_attributes")
        .await
        .expect("ANALYZE TABLE");
    let _ = c.disconnect().await;
}

/// The first column of the first row.
fn first(rows: &[Vec<String>]) -> String {
    rows.first()
        .and_then(|r| r.first())
        .cloned()
        .expect("a row")
}

// ---------------------------------------------------------------------------------------------
// Trial: what the sidecar sends

/// One line of the general log.
struct Entry {
    /// The connection (`CONNECTION_ID()`) it came on.
    thread: u64,
    /// `Prepare`, `Execute`, `Query`, `Connect`, …
    command: String,
    text: String,
}

/// MariaDB's general log (`log_output = 'TABLE'`), as far as the sidecar's account is
/// concerned.
struct GeneralLog {
    conn: mysql_async::Conn,
    /// Every statement text the sidecar prepared so far, to tell what an `Execute` ran.
    prepared: Vec<String>,
}

impl GeneralLog {
    /// Empties the log and turns it on.
    async fn start(server: &mariadb::Server) -> GeneralLog {
        server
            .admin(
                "SET GLOBAL log_output = 'TABLE'; TRUNCATE mysql.general_log; \
                 SET GLOBAL general_log = 1",
            )
            .await;
        let conn = mysql_async::Conn::from_url(server.url("mysql"))
            .await
            .expect("connect to MariaDB");
        GeneralLog {
            conn,
            prepared: Vec::new(),
        }
    }

    /// Turns the log off and empties it.
    async fn stop(self, server: &mariadb::Server) {
        let _ = self.conn.disconnect().await;
        server
            .admin("SET GLOBAL general_log = 0; TRUNCATE mysql.general_log")
            .await;
    }

    /// The sidecar's entries since the last call, oldest first (the log is emptied).
    async fn take(&mut self) -> Vec<Entry> {
        let rows: Vec<(u64, String, String)> = self
            .conn
            .query(format!(
                "SELECT thread_id, command_type, CONVERT(argument USING utf8mb4) \
                 FROM mysql.general_log WHERE user_host LIKE '{ACCOUNT}[{ACCOUNT}]%' \
                 ORDER BY event_time"
            ))
            .await
            .expect("read mysql.general_log");
        self.conn
            .query_drop("TRUNCATE mysql.general_log")
            .await
            .expect("empty mysql.general_log");
        let entries: Vec<Entry> = rows
            .into_iter()
            .map(|(thread, command, text)| Entry {
                thread,
                command,
                text,
            })
            .collect();
        self.prepared.extend(
            entries
                .iter()
                .filter(|e| e.command == "Prepare")
                .map(|e| e.text.clone()),
        );
        entries
    }

    /// The statements of one request, from its entries: each `Execute` matched with the
    /// `Prepare` it ran (its values read off the logged text), each text `Query` kept as
    /// it is, a connection's set-up (`setup`, and mysql_async's `SELECT @@…` at connect)
    /// left out. A new checkout begins where the connection changes.
    fn steps(&self, entries: &[Entry], setup: &[String]) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::new();
        let mut checkout = 0;
        let mut thread = None;
        for e in entries {
            let params = match e.command.as_str() {
                "Query" if setup.contains(&e.text) || e.text.starts_with("SELECT @@") => continue,
                "Query" => None,
                "Execute" => Some(
                    self.prepared
                        .iter()
                        .rev()
                        .find_map(|p| Some((p, split_values(p, &e.text)?))),
                ),
                _ => continue,
            };
            if thread.is_some_and(|t| t != e.thread) {
                checkout += 1;
            }
            thread = Some(e.thread);
            steps.push(match params {
                None => Step {
                    text: e.text.clone(),
                    params: None,
                    checkout,
                    makes_id: false,
                },
                Some(Some((text, values))) => Step {
                    text: text.clone(),
                    params: Some(values),
                    checkout,
                    makes_id: false,
                },
                Some(None) => panic!("an executed statement was never prepared: {}", e.text),
            });
        }
        steps
    }
}

/// The values an `Execute` line holds where its `Prepare` text has `?`, or `None` when the
/// two are not the same statement.
fn split_values(prepared: &str, executed: &str) -> Option<Vec<Value>> {
    let mut parts = prepared.split('?');
    let mut rest = executed.strip_prefix(parts.next()?)?;
    let mut values = Vec::new();
    for next in parts {
        let (value, after) = literal(rest)?;
        values.push(value);
        rest = after.strip_prefix(next)?;
    }
    rest.is_empty().then_some(values)
}

/// One SQL literal at the start of `s` as MariaDB writes an `Execute`'s values into its log
/// (`'text'` with backslash escapes, a number, `NULL`), and what follows it.
fn literal(s: &str) -> Option<(Value, &str)> {
    if let Some(rest) = s.strip_prefix("NULL") {
        return Some((Value::NULL, rest));
    }
    if let Some(body) = s.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, e) = chars.next()?;
                    out.push(match e {
                        'n' => '\n',
                        'r' => '\r',
                        '0' => '\0',
                        'Z' => '\x1a',
                        other => other,
                    });
                }
                '\'' => return Some((Value::Bytes(out.into_bytes()), &body[i + 1..])),
                other => out.push(other),
            }
        }
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '-' | '.' | 'e' | 'E' | '+')))
        .unwrap_or(s.len());
    let num = &s[..end];
    let v = match num.parse::<i64>() {
        Ok(i) => Value::Int(i),
        Err(_) => Value::Double(num.parse().ok()?),
    };
    Some((v, &s[end..]))
}

/// One statement of a request, as the sidecar sent it.
#[derive(Clone, Debug)]
struct Step {
    /// Its text (`?` for each parameter).
    text: String,
    /// The trial's values, for a prepared statement; `None` for a text query
    /// (`START TRANSACTION`, `COMMIT`).
    params: Option<Vec<Value>>,
    /// Which of the request's connection checkouts it ran on (0, 1, …).
    checkout: usize,
    /// The insert that generates the request's id (a create's first insert, before any
    /// statement names the new id).
    makes_id: bool,
}

/// The trial: the sidecar's session set-up, and what one request of each kind sent.
struct Trial {
    setup: Vec<String>,
    steps: Vec<(Phase, Vec<Step>)>,
    /// The trial user's id, which the statements of its filter and patch name.
    user_id: u64,
}

impl Trial {
    /// A phase's replay script.
    fn script(&self, phase: Phase) -> Script {
        let steps = self
            .steps
            .iter()
            .find(|(p, _)| *p == phase)
            .map(|(_, s)| s.clone())
            .expect("a trial step");
        Script { phase, steps }
    }

    fn print(&self) {
        println!("== the sidecar's session set-up (general log, at connect) ==");
        for s in &self.setup {
            println!("    {s}");
        }
        println!();
        println!("== statements per request (general log) ==");
        for (phase, steps) in &self.steps {
            let checkouts = steps.iter().map(|s| s.checkout).max().map_or(0, |c| c + 1);
            println!(
                "  {}: {} statement(s) on {checkouts} connection checkout(s)",
                phase.label(),
                steps.len()
            );
            for (i, s) in steps.iter().enumerate() {
                let values = match &s.params {
                    Some(p) => format!(
                        "  <- ({})",
                        p.iter()
                            .map(|v| abbreviate(&v.as_sql(false), 40))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => "  (text query)".into(),
                };
                println!("    {}. [{}] {}{values}", i + 1, s.checkout, s.text);
            }
        }
        println!();
    }
}

/// `text` on one line, cut to `max` characters.
fn abbreviate(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max).collect();
    format!("{cut}…")
}

/// Sends one request on `s` and checks its status; its JSON answer.
async fn call(
    s: &mut SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
    want: StatusCode,
    what: &str,
) -> serde_json::Value {
    let (parts, body) = exchange(s, req)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(parts.status, want, "{}", unexpected(what, &parts, &body));
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

/// One request of each kind, each checked in full, with the statements logged for it.
async fn run_trial(log: &mut GeneralLog, addr: SocketAddr) -> Trial {
    // What the sidecar sent before the first request: the set-up of its first connection
    // (its text queries up to the first other statement), and the statements it prepared.
    let start = log.take().await;
    let is_set = |e: &Entry| e.command == "Query" && e.text.starts_with("SET ");
    let pooled = start.iter().find(|e| is_set(e)).map(|e| e.thread);
    let setup: Vec<String> = start
        .iter()
        .filter(|e| Some(e.thread) == pooled)
        .skip_while(|e| !is_set(e))
        .take_while(|e| is_set(e))
        .map(|e| e.text.clone())
        .collect();
    assert!(
        !setup.is_empty(),
        "no session set-up (SET …) in the general log"
    );

    let host = host_header(addr);
    let mut s = connect(addr).await.expect("connect to the sidecar");
    let mut steps = Vec::new();
    let user = call(
        &mut s,
        request(
            Method::POST,
            &host,
            "/scim/v2/Users",
            Some(create_body(TRIAL, true)),
        ),
        StatusCode::CREATED,
        "create",
    )
    .await;
    let entries = log.take().await;
    let mut create = log.steps(&entries, &setup);
    let user_id: u64 = user["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("a numeric user id");
    // The user's id comes from the first insert; no statement before it names the id.
    let names_id = |s: &Step| {
        s.params.iter().flatten().any(|v| match v {
            Value::Int(i) => *i as u64 == user_id,
            Value::Bytes(b) => contains(b, user_id.to_string().as_bytes()),
            _ => false,
        })
    };
    let insert = create
        .iter()
        .position(|s| s.text.starts_with("INSERT"))
        .expect("create: no INSERT in the general log");
    assert!(
        !create[..=insert].iter().any(names_id),
        "create: a statement names the new id before the insert that generates it"
    );
    create[insert].makes_id = true;
    steps.push((Phase::Create, create));
    assert_eq!(user["userName"], user_name(TRIAL).as_str(), "{user}");
    assert_eq!(
        user["emails"][0]["value"],
        user_name(TRIAL).as_str(),
        "{user}"
    );
    assert_eq!(
        user["externalId"],
        format!("ext-{TRIAL}").as_str(),
        "{user}"
    );

    let list = call(
        &mut s,
        request(Method::GET, &host, &filter_path(&user_name(TRIAL)), None),
        StatusCode::OK,
        "filter",
    )
    .await;
    let entries = log.take().await;
    steps.push((Phase::Filter, log.steps(&entries, &setup)));
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(
        list["Resources"][0]["id"],
        user_id.to_string().as_str(),
        "{list}"
    );

    let patched = call(
        &mut s,
        request(
            Method::PATCH,
            &host,
            &format!("/scim/v2/Users/{user_id}"),
            Some(patch_body(TRIAL)),
        ),
        StatusCode::OK,
        "patch",
    )
    .await;
    let entries = log.take().await;
    steps.push((Phase::Patch, log.steps(&entries, &setup)));
    assert_eq!(
        patched["displayName"],
        format!("Bench User {TRIAL}"),
        "{patched}"
    );
    assert_eq!(patched["active"], false, "{patched}");

    for (phase, stmts) in &steps {
        assert!(
            !stmts.is_empty(),
            "{}: no statement in the general log",
            phase.label()
        );
        // Per-request values are parameters, never part of a statement's text: a text that
        // held one would replay the trial's value every time.
        for s in stmts {
            for v in [TRIAL, user_id] {
                assert!(
                    !s.text.contains(&v.to_string()),
                    "{}: a per-request value in a statement's text: {}",
                    phase.label(),
                    s.text
                );
            }
        }
    }
    Trial {
        setup,
        steps,
        user_id,
    }
}

// ---------------------------------------------------------------------------------------------
// The direct client

/// A phase's statements, to replay.
struct Script {
    phase: Phase,
    steps: Vec<Step>,
}

/// What a replayed request is about: the user number (in names and addresses) and the
/// user's id (`None` in a create until its insert generated one).
#[derive(Clone, Copy)]
struct Pick {
    n: u64,
    id: Option<u64>,
}

/// One direct run: a phase at a client count.
struct Run {
    phase: Phase,
    clients: usize,
    script: Arc<Script>,
    /// `(n, id)` of the users the sidecar created, for filter and patch.
    users: Arc<Vec<(u64, u64)>>,
    trial_id: u64,
}

/// The bench's own client: one mysql_async pool as the sidecar's is made.
struct Direct {
    pool: Pool,
}

impl Direct {
    /// A pool of `size` connections to `url`, each set up with `setup` (the sidecar's session
    /// statements), with the sidecar's options: found rows counted, prepared statements
    /// cached, no reset when a connection goes back to the pool.
    fn new(url: &str, setup: &[String], size: usize) -> Direct {
        let opts = mysql_async::Opts::from_url(url).expect("a MySQL URL");
        let pool_opts = PoolOpts::default()
            .with_constraints(PoolConstraints::new(0, size).expect("pool size"))
            .with_reset_connection(false);
        let opts = OptsBuilder::from_opts(opts)
            .client_found_rows(true)
            .prefer_socket(false)
            .stmt_cache_size(256)
            .setup(setup.to_vec())
            .pool_opts(pool_opts);
        Direct {
            pool: Pool::new(opts),
        }
    }

    /// Runs `run.script` on `run.clients` tasks, back to back: warm-up, then `window`;
    /// prints and returns the figures as a phase's. Panics when more than
    /// [`MAX_ERROR_RATE`] of the requests failed: a script that does not replay is a bench bug.
    async fn run(&self, run: Run, seq: &Arc<AtomicU64>, window: Duration, db_pid: u32) -> Stats {
        let (db0, self0, machine0) = (
            server_tree_cpu_us(db_pid),
            support::cpu_us("self"),
            machine_busy_us(),
        );
        let rows0 = count_users(&self.pool).await;
        let begin = Instant::now();
        let warm_end = begin + WARMUP;
        let end = warm_end + window;
        let run = Arc::new(run);
        let issued = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..run.clients)
            .map(|_| {
                let (pool, run, seq, issued) =
                    (self.pool.clone(), run.clone(), seq.clone(), issued.clone());
                tokio::spawn(async move {
                    let mut out = TaskOut::default();
                    loop {
                        let start = Instant::now();
                        if start >= end {
                            break;
                        }
                        let measured = start >= warm_end;
                        if measured && issued.fetch_add(1, Ordering::Relaxed) >= MAX_REQUESTS {
                            break;
                        }
                        let k = seq.fetch_add(1, Ordering::Relaxed);
                        let pick = run.pick(k);
                        let result = tokio::time::timeout(
                            REQUEST_TIMEOUT,
                            replay(&pool, &run.script, run.trial_id, pick),
                        )
                        .await
                        .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
                        let done = Instant::now();
                        out.total += 1;
                        if let Err(e) = result {
                            out.errors += 1;
                            out.first_error.get_or_insert(e);
                        }
                        if measured {
                            let us = (done - start).as_micros();
                            out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                            out.last_done = Some(done);
                        }
                    }
                    out
                })
            })
            .collect();
        let deadline = tokio::time::Instant::from(end + REQUEST_TIMEOUT + CONNECT_TIMEOUT);
        let mut outs = Vec::new();
        for t in tasks {
            match tokio::time::timeout_at(deadline, t).await {
                Ok(Ok(o)) => outs.push(o),
                Ok(Err(e)) => panic!("direct {}: a client task failed: {e}", run.phase.label()),
                Err(_) => panic!(
                    "direct {}: the run did not end by its deadline",
                    run.phase.label()
                ),
            }
        }
        let wall = begin.elapsed().as_secs_f64();
        let delta = |a: Option<u64>, b: Option<u64>| b.unwrap_or(0).saturating_sub(a.unwrap_or(0));
        let db = delta(db0, server_tree_cpu_us(db_pid));
        let own = delta(self0, support::cpu_us("self"));
        let other_cores =
            delta(machine0, machine_busy_us()).saturating_sub(db + own) as f64 / 1e6 / wall;
        let (mut lat, mut errors, mut total, mut last) = (Vec::new(), 0, 0, warm_end);
        let mut first_error = None;
        for o in outs {
            lat.extend_from_slice(&o.latencies_us);
            errors += o.errors;
            total += o.total;
            last = last.max(o.last_done.unwrap_or(warm_end));
            first_error = first_error.or(o.first_error);
        }
        lat.sort_unstable();
        let measured = lat.len() as u64;
        let elapsed = (last - warm_end).as_secs_f64();
        let per = |us: u64| (total > 0).then(|| us as f64 / total as f64);
        let stats = Stats {
            name: format!("{:<7} direct", run.phase.short()),
            conns: run.clients,
            measured,
            errors,
            total,
            secs: elapsed,
            rps: if elapsed > 0.0 {
                measured as f64 / elapsed
            } else {
                0.0
            },
            server_cpu_us: None,
            bench_cpu_us: per(own).unwrap_or(0.0),
            other_cores,
            db_cpu_us: per(db),
            p50_us: percentile(&lat, 0.50),
            p99_us: percentile(&lat, 0.99),
            max_us: lat.last().copied().map_or(0, u64::from),
            collected: Vec::new(),
            round: 0,
        };
        Report::line(&stats);
        if let Some(e) = &first_error {
            println!("    first error: {e}");
        }
        if total == 0 || errors as f64 > MAX_ERROR_RATE * total as f64 {
            panic!(
                "direct {} with {} clients: {errors} of {total} requests failed; first error: {}",
                run.phase.label(),
                run.clients,
                first_error.unwrap_or_else(|| "none".into())
            );
        }
        if run.phase == Phase::Create && errors == 0 {
            // Every replayed create wrote its user.
            let rows = count_users(&self.pool).await - rows0;
            assert_eq!(rows, total - errors, "users written by the direct creates");
        }
        stats
    }
}

impl Run {
    /// Request `k`'s subject, as the sidecar's loads pick theirs (`benches/support`): a new
    /// user `k`; the user `k` rotates to; that user's id with number `k` (its new name).
    fn pick(&self, k: u64) -> Pick {
        let user = || self.users[(k % self.users.len() as u64) as usize];
        match self.phase {
            Phase::Create => Pick { n: k, id: None },
            Phase::Filter => {
                let (n, id) = user();
                Pick { n, id: Some(id) }
            }
            Phase::Patch => Pick {
                n: k,
                id: Some(user().1),
            },
        }
    }
}

/// What one client task measured.
#[derive(Default)]
struct TaskOut {
    latencies_us: Vec<u32>,
    last_done: Option<Instant>,
    errors: u64,
    total: u64,
    first_error: Option<String>,
}

/// `SELECT count(*)` of the users.
async fn count_users(pool: &Pool) -> u64 {
    let mut c = pool.get_conn().await.expect("a pooled connection");
    c.query_first("SELECT count(*) FROM principals WHERE kind = 'U'")
        .await
        .expect("count users")
        .expect("a count")
}

/// One request's statements for `pick`, in order, each on its checkout of a pooled
/// connection, checked as the phase needs (a create reads back its user, a filter finds its
/// user, a patch's `UPDATE` finds its row).
async fn replay(pool: &Pool, script: &Script, trial_id: u64, pick: Pick) -> Result<(), String> {
    let mut id = pick.id;
    let mut conn: Option<(usize, mysql_async::Conn)> = None;
    let want = user_name(pick.n).into_bytes();
    let mut checked = false;
    for step in &script.steps {
        let c = match &mut conn {
            Some((k, c)) if *k == step.checkout => c,
            _ => {
                // The previous checkout goes back to the pool first, as in the sidecar.
                conn = None;
                let c = pool.get_conn().await.map_err(|e| format!("connect: {e}"))?;
                &mut conn.insert((step.checkout, c)).1
            }
        };
        let result = match &step.params {
            None => c
                .query_drop(step.text.as_str())
                .await
                .map(|()| (0, None, Vec::new())),
            Some(values) => {
                let values = bind(values, trial_id, pick.n, id)?;
                run_prepared(c, &step.text, values).await
            }
        };
        let (found, new_id, rows) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = c.query_drop("ROLLBACK").await;
                return Err(format!("{}: {e}", abbreviate(&step.text, 100)));
            }
        };
        if step.makes_id {
            id = Some(new_id.ok_or("the insert generated no id")?);
        }
        checked |= match script.phase {
            Phase::Create | Phase::Filter => rows.iter().any(|r| holds(r, &want)),
            Phase::Patch => step.text.starts_with("UPDATE") && found > 0,
        };
    }
    if !checked {
        return Err(format!(
            "{} of user {}: not done (no row read back, found or updated)",
            script.phase.label(),
            pick.n
        ));
    }
    Ok(())
}

/// A prepared statement (cached per connection): rows found, the generated key, the rows.
async fn run_prepared(
    c: &mut mysql_async::Conn,
    text: &str,
    values: Vec<Value>,
) -> Result<(u64, Option<u64>, Vec<Row>), mysql_async::Error> {
    let mut r = c.exec_iter(text, Params::Positional(values)).await?;
    let (found, new_id) = (r.affected_rows(), r.last_insert_id().filter(|&k| k > 0));
    let rows: Vec<Row> = r.collect().await?;
    Ok((found, new_id, rows))
}

/// Whether a row holds `value` in one of its columns.
fn holds(row: &Row, value: &[u8]) -> bool {
    (0..row.len()).any(|i| matches!(row.as_ref(i), Some(Value::Bytes(b)) if b == value))
}

/// A statement's trial values made request `n`'s about user `id`: the trial's user number
/// and id replaced wherever they occur (in names, addresses, keys), an advisory lock given a
/// name of this request's own. An id before the request has one is a bench bug.
fn bind(values: &[Value], trial_id: u64, n: u64, id: Option<u64>) -> Result<Vec<Value>, String> {
    let (trial_n, trial_id_text) = (TRIAL.to_string(), trial_id.to_string());
    let no_id = || format!("a statement names the user's id {trial_id} before it has one");
    values
        .iter()
        .map(|v| {
            Ok(match v {
                Value::Int(i) if *i as u64 == trial_id => Value::Int(id.ok_or_else(no_id)? as i64),
                Value::Bytes(b) => {
                    let text = String::from_utf8_lossy(b);
                    if text.starts_with(LOCK_PREFIX) {
                        let width = text.len() - LOCK_PREFIX.len();
                        Value::Bytes(format!("{LOCK_PREFIX}{n:0width$x}").into_bytes())
                    } else {
                        let mut text = text.replace(&trial_n, &n.to_string());
                        if text.contains(&trial_id_text) {
                            text = text.replace(&trial_id_text, &id.ok_or_else(no_id)?.to_string());
                        }
                        Value::Bytes(text.into_bytes())
                    }
                }
                other => other.clone(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Phases and report

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Create,
    Filter,
    Patch,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Create, Phase::Filter, Phase::Patch];

    /// Its name in the phase table (the first word of a line).
    fn short(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Filter => "filter",
            Phase::Patch => "patch",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Filter => "filter by userName",
            Phase::Patch => "patch",
        }
    }
}

/// A phase at one client count: indexes of its sidecar and direct figures in the report.
struct Pair {
    phase: Phase,
    clients: usize,
    sidecar: usize,
    direct: usize,
}

/// Prints the summary: per phase and client count the sidecar/direct ratio against the goal,
/// with the sidecar's CPU per request.
fn summary(report: &Report, pairs: &[Pair], pool: usize) {
    let mut table = Summary::default();
    table.info(
        "pool size, sidecar and direct (DATABASE_POOL_SIZE)",
        pool.to_string(),
    );
    for p in pairs {
        let (s, d) = (&report.phases[p.sidecar], &report.phases[p.direct]);
        let ratio = if d.rps > 0.0 { s.rps / d.rps } else { 0.0 };
        let value = format!(
            "{ratio:.2} ({:.0} / {:.0} req/s), sidecar CPU {} us/req, p99 {:.2} / {:.2} ms",
            s.rps,
            d.rps,
            s.server_cpu_us.map_or("-".into(), |c| format!("{c:.0}")),
            s.p99_us as f64 / 1000.0,
            d.p99_us as f64 / 1000.0
        );
        table.row(
            &format!("{} @{}: sidecar / direct", p.phase.label(), p.clients),
            value,
            format!(">= {TARGET_RATIO:.2}"),
            at_least(ratio, TARGET_RATIO),
        );
    }
    report.errors_row(&mut table);
    report.noise_row(&mut table);
    table.print();
}
