//! PostgreSQL benchmark: the sidecar in front of the `examples/postgres` helpdesk schema, next
//! to the very statements it sends, run straight against PostgreSQL by `pgbench`.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench postgres                        # 1 s warm-up + 5 s measured per phase
//! BENCH_SECS=10 cargo bench --bench postgres          # a longer measured window
//! DATABASE_POOL_SIZE=16 cargo bench --bench postgres  # another sidecar pool size (default 8)
//! ```
//!
//! It needs PostgreSQL's server programs (`initdb`, `postgres` and `pgbench` in
//! `/usr/lib/postgresql/*/bin`, as `apt-get install postgresql` puts them); without them it says
//! so and exits 0. It starts a throwaway cluster (`tests/support/postgres.rs`: fsync off, a free
//! loopback port), loads `examples/postgres/schema.sql` into a fresh database, writes 101,000
//! users and a group with 100,000 of them straight in SQL (`generate_series`: the app has users
//! already, and section 4 needs them), runs `scim-sidecar migrate` and then `scim-sidecar run
//! --config examples/postgres/scim-sidecar.toml` (the release binary) on loopback ports, with a
//! pool of 8 connections (`DATABASE_POOL_SIZE`: at 32 clients on 2 cores, 4, 8 and 16 came out
//! within run-to-run noise of each other; 8 was never the worst, and requests of 5 to 7 round
//! trips need a few connections in flight per core). Then:
//!
//! 1. **Trial**: one request of each kind, checked in full, with `log_min_duration_statement = 0`.
//!    The statements the server logged for each request are printed: that is what the sidecar
//!    sends per request, read back from PostgreSQL rather than assumed.
//! 2. **pgbench scripts** made from those logged statements, printed in full (and written to
//!    `target/tmp/bench-postgres/*.sql`): the same SQL text in the same order (transaction
//!    statements, `SELECT … FOR UPDATE` included), run with `pgbench -M prepared`. The trial's
//!    parameter values become pgbench variables: the ones that must differ per transaction come
//!    from `\set … random(…)` (user and group ids; userNames, built in SQL as
//!    `'bench.user' || :n || '@example.com'` since pgbench draws numbers only), the rest are
//!    constants passed with `-D` (sent as parameters, as the sidecar does). One change: the
//!    `to_char` format `HH24:MI:SS` is written `HH24":"MI":"SS` (same output), because pgbench
//!    would read `:MI` as a variable.
//! 3. **Phases**, each with 1 and with 32 concurrent clients, first through the sidecar (keep-alive
//!    HTTP/1.1 connections sending back to back), then the same statements by pgbench (`-c N -j
//!    min(N,2)`, one connection per client): *create* (`POST /Users`, an Entra-like body with a
//!    work e-mail, which goes to the child table `user_emails`, and an `externalId`, which the
//!    sidecar keeps in its own table), *filter* (`GET /Users?filter=userName eq "…"` over the
//!    users created), *patch* (Entra-style `Replace` of `displayName` and `active`) and *member
//!    add* (`PATCH /Groups/{id}`, `add` of one member, rotating over the users created and over
//!    8 groups created beforehand). Before every run (sidecar or pgbench) the 8 groups are
//!    emptied and the database is vacuumed, analyzed and checkpointed, with autovacuum off, so
//!    that runs start alike and no background work falls into one.
//! 4. **A 100,000-member group**: one `PATCH` through the sidecar adding the other 1,000 users
//!    in one `add` operation, timed (target < 1 s) and checked with `SELECT count(*)` (101,000);
//!    then a `PATCH` removing them again (Entra's shape: `remove`, `path: members`, a `value`
//!    array), timed and checked (100,000). Before those, one single-member add and remove on
//!    that group, timed: what Entra's incremental updates cost on a big group.
//!
//! Figures per phase (one line for the sidecar, one for pgbench):
//!
//! - `req/s`: requests (pgbench: transactions) per second in the measured window; `p50`, `p99`,
//!   `max`: latency in ms (sidecar: sending the request until its whole answer is read; pgbench:
//!   its per-transaction times, from `--log`). `requests`, `secs`, `errors` as in `benches/load.rs`.
//! - `CPU us/req`, `server+bench`: CPU per request of the sidecar and of this process (load
//!   generator); for the pgbench line, `-` and pgbench's own CPU. `db CPU us/req`: CPU of
//!   PostgreSQL (postmaster and backends) per request. `other cores`: what every other process
//!   used meanwhile (noise).
//! - The summary gives per phase the ratio sidecar req/s / pgbench tps, with targets at 32
//!   clients: create ≥ 0.7, filter ≥ 0.4, patch ≥ 0.6 (member add: reported, no target).
//!
//! Targets are reported (PASS/MISS), never asserted: the bench fails only on request errors, on
//! pgbench errors (a script that does not replay) or if the sidecar does not start. Everything
//! shares the machine's cores (2 on the reference VM), so the ratios say how much of what
//! PostgreSQL can do the sidecar delivers on this machine, not what either does alone. Each phase
//! is bounded: `BENCH_SECS` (default 5) seconds plus 1 s warm-up, at most 2,000,000 requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

#[path = "support/mod.rs"]
mod support;

#[path = "../tests/support/postgres.rs"]
mod postgres;

use support::{
    CONNS, CheckResponse, Load, MAX_REQUESTS, MakeRequest, REQUEST_TIMEOUT, Report, RssSampler,
    Sidecar, Stats, Summary, WARMUP, at_least, at_most, connect, create_body, create_load,
    exchange_within, filter_load, filter_path, free_port, host_header, machine_busy_us, mib, ms,
    patch_body, patch_load, percentile, reaped_children_cpu_us, request, run_phase,
    server_tree_cpu_us, unexpected, user_name, verdict,
};

/// The sidecar's pool size unless `DATABASE_POOL_SIZE` says otherwise.
const DEFAULT_POOL_SIZE: usize = 8;
/// Groups the member-add phase rotates over.
const GROUPS: usize = 8;
/// `n` of the trial requests; odd, so that its PATCH turns `active` off and changes every
/// column it names.
const TRIAL: u64 = 999_999_999_999;
/// Memberships written in SQL, and members then added (and removed) in one PATCH.
const BIG_MEMBERS: u64 = 100_000;
const BIG_EXTRA: u64 = 1_000;
/// Deadline of a request on the big group.
const BIG_TIMEOUT: Duration = Duration::from_secs(60);
/// Ids of the bench's rows start above this (a setval on the schema's sequence), so that no id
/// in a trial request looks like a constant parameter (`0`, `100`).
const ID_BASE: u64 = 1_000_000;

/// Target: adding 1,000 members to the big group takes less than this.
const TARGET_BIG_ADD_SECS: f64 = 1.0;

fn main() {
    let Some(bin) = postgres::bin_dir().filter(|b| b.join("pgbench").exists()) else {
        println!("postgres bench skipped: PostgreSQL is not installed (no pgbench next to initdb)");
        return;
    };
    // On this thread: the server dies with the thread that started it.
    let Some(cluster) = postgres::cluster() else {
        println!("postgres bench skipped: the PostgreSQL cluster did not start (see above)");
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
    let postmaster = postmaster_pid(&cluster.dir);
    support::print_intro(
        "scim-sidecar PostgreSQL benchmark",
        &example("scim-sidecar.toml"),
    );
    println!(
        "  server:  {} (port {}, fsync off), pgbench {}",
        bin.display(),
        cluster.port,
        pgbench_version(&bin)
    );
    println!(
        "  cores: {cores} (shared by load generator, sidecar, PostgreSQL, pgbench); pool size \
         {pool} (DATABASE_POOL_SIZE); per phase: {} s warm-up, {secs} s measured (BENCH_SECS), \
         at most {MAX_REQUESTS} requests",
        WARMUP.as_secs()
    );
    println!();

    let rt = support::runtime();
    let (db, big_group) = rt.block_on(async {
        let db = cluster.database("bench").await;
        let schema = std::fs::read_to_string(example("schema.sql")).expect("schema.sql");
        db.exec(&schema).await;
        db.exec(&format!("SELECT setval('principals_id_seq', {ID_BASE})"))
            .await;
        let big = write_big_group(&db).await;
        (db, big)
    });
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("DATABASE_POOL_SIZE", pool.to_string()),
    ];
    migrate(&env);
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens upstream: the bench sends SCIM requests only.
    let upstream = format!("http://{}", free_port());
    let env_os: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_ref())).collect();
    let (mut sidecar, ready) =
        Sidecar::start(dir, &example("scim-sidecar.toml"), &upstream, &env_os);
    let pid = sidecar.proc.pid;
    println!("  sidecar ready in {:.1} ms", ms(ready));
    println!();

    // 1. Trial: what the sidecar sends per request.
    let log = ServerLog(cluster.dir.join("server.log"));
    let logging = "log_min_duration_statement";
    rt.block_on(set_system(&db, logging, Some("0"), "0"));
    let trial = rt.block_on(run_trial(sidecar.addr, &log));
    rt.block_on(set_system(&db, logging, None, "-1"));
    // Autovacuum off: `settle` vacuums and analyzes before each run instead.
    rt.block_on(set_system(&db, "autovacuum", Some("off"), "off"));
    println!("== statements per request (server log, log_min_duration_statement = 0) ==");
    for (what, stmts) in &trial.steps {
        println!("  {what}: {} statement(s)", stmts.len());
        for (i, s) in stmts.iter().enumerate() {
            println!("    {}. {}", i + 1, abbreviate(&s.text, 150));
        }
    }
    println!();

    let pgbench = Pgbench {
        bin: bin.join("pgbench"),
        port: cluster.port,
        db: db.name.clone(),
        logs: tempfile::tempdir().expect("tempdir"),
        postmaster,
    };
    let scripts_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-postgres");
    std::fs::create_dir_all(&scripts_dir).expect("create target/tmp/bench-postgres");

    // Groups for the member-add phase; their ids are below those of the users the phases
    // create, so that `[min, max]` of those ids holds users only.
    let groups: Arc<Vec<String>> = Arc::new(rt.block_on(create_groups(sidecar.addr)));

    // 2. Phases, each through the sidecar and then by pgbench.
    println!("== phases: sidecar, then the same statements by pgbench ==");
    Report::header(true);
    let sampler = RssSampler::start(pid);
    let mut report = Report::default();
    let mut pairs: Vec<Pair> = Vec::new();
    let seq = Arc::new(AtomicU64::new(0));
    let mut scripts: Vec<Script> = Vec::new();
    let mut created: Vec<(u64, String)> = Vec::new();
    for phase in Phase::ALL {
        let script = trial.script(phase, &created, &groups);
        script.write(&scripts_dir);
        let names: Arc<Vec<String>> =
            Arc::new(created.iter().map(|(n, _)| user_name(*n)).collect());
        let ids: Arc<Vec<String>> = Arc::new(created.iter().map(|(_, id)| id.clone()).collect());
        for conns in CONNS {
            let load = match phase {
                Phase::Create => create_load(sidecar.addr, conns, true),
                Phase::Filter => filter_load(sidecar.addr, conns, names.clone()),
                Phase::Patch => patch_load(sidecar.addr, conns, ids.clone()),
                Phase::MemberAdd => {
                    member_add_load(sidecar.addr, conns, groups.clone(), ids.clone())
                }
            };
            rt.block_on(settle(&db, &groups));
            let stats = rt.block_on(run_phase(&load.server(pid).db(postmaster), &seq, window));
            if phase == Phase::Create {
                created.extend(stats.collected.iter().cloned());
            }
            rt.block_on(settle(&db, &groups));
            let raw = pgbench.run(&script, conns, secs);
            Report::line(&raw);
            pairs.push(Pair {
                phase,
                conns,
                sidecar: report.phases.len(),
                raw: report.phases.len() + 1,
            });
            report.add(stats);
            report.add(raw);
        }
        scripts.push(script);
    }
    println!("  ({} users created through the sidecar)", created.len());
    println!();

    println!(
        "== raw: the pgbench scripts (also in {}) ==",
        scripts_dir.display()
    );
    for s in &scripts {
        s.print(&scripts_dir);
    }
    println!();

    // 3. The big group.
    let rss_load = sampler.stop();
    let sampler = RssSampler::start(pid);
    println!("== a {BIG_MEMBERS}-member group ==");
    let big = rt.block_on(patch_big_group(&db, sidecar.addr, &big_group));
    let rss_big = sampler.stop();
    println!();

    println!("== sidecar ==");
    println!(
        "  RSS: sampled peak {:.1} MiB during the phases, {:.1} MiB on the big group, {:.1} MiB \
         after it",
        mib(rss_load),
        mib(rss_big),
        mib(support::proc_status_kib(pid, "VmRSS").unwrap_or(0))
    );
    if let Some(d) = sidecar.proc.stop() {
        println!("  sidecar stopped {:.0} ms after SIGTERM", ms(d));
    }
    sidecar.print_log();
    println!();

    summary(&report, &pairs, &big, pool, [rss_load, rss_big]);
    drop(db);
    rt.shutdown_timeout(Duration::from_secs(2));
    cluster.stop();
    let _ = std::fs::remove_dir_all(&cluster.dir);
}

// ---------------------------------------------------------------------------------------------
// Set-up

/// A file of `examples/postgres`.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/postgres")
        .join(name)
}

/// `scim-sidecar migrate`: the sidecar's own table (where it keeps `externalId`).
fn migrate(env: &[(&str, String)]) {
    let out = Command::new(support::binary())
        .arg("migrate")
        .arg("--config")
        .arg(example("scim-sidecar.toml"))
        .envs(env.iter().map(|(k, v)| (k, v)))
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

/// The postmaster's pid, from `postmaster.pid` in the data directory.
fn postmaster_pid(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("data/postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse().ok())
        .expect("postmaster.pid")
}

fn pgbench_version(bin: &Path) -> String {
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
async fn set_system(db: &postgres::Db, name: &str, value: Option<&str>, shown: &str) {
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

/// Before each measured run, so that runs start alike and no checkpoint or autovacuum falls
/// into one: the bench groups emptied (each member-add run starts on empty groups, and the
/// answers, which list every member, grow alike), dead rows vacuumed, statistics fresh, dirty
/// pages written.
async fn settle(db: &postgres::Db, groups: &[String]) {
    db.exec(&format!(
        "DELETE FROM group_members WHERE group_id IN ({})",
        groups.join(", ")
    ))
    .await;
    db.exec("VACUUM ANALYZE").await;
    db.exec("CHECKPOINT").await;
}

/// Groups for the member-add phase, created through the sidecar; their ids.
async fn create_groups(addr: SocketAddr) -> Vec<String> {
    let host = host_header(addr);
    let mut s = connect(addr).await.expect("connect to the sidecar");
    let mut ids = Vec::new();
    for i in 0..GROUPS {
        let body = group_body(&format!("Bench Group {i}"));
        let req = request(Method::POST, &host, "/scim/v2/Groups", Some(body));
        let v = call_json(&mut s, req, StatusCode::CREATED, "create a group").await;
        ids.push(v["id"].as_str().expect("group id").to_owned());
    }
    ids
}

// ---------------------------------------------------------------------------------------------
// Trial: what the sidecar sends

/// One statement the sidecar sent, as the server logged it.
struct Logged {
    /// The SQL text, with `$n` placeholders.
    text: String,
    /// The values bound to them (`None`: NULL).
    params: Vec<Option<String>>,
}

/// PostgreSQL's log file (the cluster's stderr).
struct ServerLog(PathBuf);

impl ServerLog {
    fn len(&self) -> u64 {
        std::fs::metadata(&self.0).map_or(0, |m| m.len())
    }

    /// The statements executed since offset `from` (`execute` of the extended protocol and
    /// simple `statement`s; `parse` and `bind` are skipped), once the file stopped growing.
    async fn statements_since(&self, from: u64) -> Vec<Logged> {
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
}

/// Statements and their parameters from PostgreSQL log lines (`log_line_prefix` `%m [%p] `).
fn parse_log(text: &str) -> Vec<Logged> {
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
fn parse_params(p: &str) -> Vec<Option<String>> {
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

/// The trial: one request of each kind, and what the server logged for each.
struct Trial {
    steps: Vec<(&'static str, Vec<Logged>)>,
    user_id: String,
    group_id: String,
}

/// Sends one request on `s` once the connection is ready for it, within `timeout`; checks its
/// status. The answer, and the time from sending the request until it was read.
async fn call(
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
async fn call_json(
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

/// One request of each kind, each checked in full, with the statements logged for it.
async fn run_trial(addr: SocketAddr, log: &ServerLog) -> Trial {
    let host = host_header(addr);
    let mut s = connect(addr).await.expect("connect to the sidecar");
    let mut steps = Vec::new();
    let mut traced =
        async |s: &mut SendRequest<Full<Bytes>>, what, method, path: &str, body, want| {
            let from = log.len();
            let v = call_json(s, request(method, &host, path, body), want, what).await;
            let stmts = log.statements_since(from).await;
            assert!(!stmts.is_empty(), "{what}: no statement in the server log");
            steps.push((what, stmts));
            v
        };
    let user = traced(
        &mut s,
        "create  POST /Users",
        Method::POST,
        "/scim/v2/Users",
        Some(create_body(TRIAL, true)),
        StatusCode::CREATED,
    )
    .await;
    let user_id = user["id"].as_str().expect("user id").to_owned();
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
    let list = traced(
        &mut s,
        "filter  GET /Users?filter",
        Method::GET,
        &filter_path(&user_name(TRIAL)),
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], user_id.as_str(), "{list}");
    let patched = traced(
        &mut s,
        "patch   PATCH /Users/{id}",
        Method::PATCH,
        &format!("/scim/v2/Users/{user_id}"),
        Some(patch_body(TRIAL)),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        patched["displayName"],
        format!("Bench User {TRIAL}"),
        "{patched}"
    );
    assert_eq!(patched["active"], false, "{patched}");
    let group = traced(
        &mut s,
        "group   POST /Groups",
        Method::POST,
        "/scim/v2/Groups",
        Some(group_body("Trial Group")),
        StatusCode::CREATED,
    )
    .await;
    let group_id = group["id"].as_str().expect("group id").to_owned();
    let path = format!("/scim/v2/Groups/{group_id}");
    let one = [user_id.clone()];
    // Add the trial user, then remove it: the group lists it, then nobody.
    for (op, what, want) in [
        ("Add", "member  PATCH /Groups/{id} add", &one[..]),
        ("Remove", "member  PATCH /Groups/{id} remove", &[]),
    ] {
        let body = Some(members_body(op, &one));
        // A group's PATCH answers 204; read it back (untraced) to check the change.
        traced(
            &mut s,
            what,
            Method::PATCH,
            &path,
            body,
            StatusCode::NO_CONTENT,
        )
        .await;
        let get = request(Method::GET, &host, &path, None);
        let group = call_json(&mut s, get, StatusCode::OK, "GET /Groups/{id}").await;
        let members: Vec<&str> = group["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|m| m["value"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(members, want, "{group}");
    }
    Trial {
        steps,
        user_id,
        group_id,
    }
}

impl Trial {
    fn statements(&self, prefix: &str) -> &[Logged] {
        self.steps
            .iter()
            .find(|(what, _)| what.starts_with(prefix))
            .map(|(_, s)| s.as_slice())
            .expect("a trial step")
    }

    /// The pgbench script of a phase: its trial statements, with the values that must differ
    /// per transaction drawn at random: `n` (of a userName) among the `created` users (any, to
    /// create one), `uid` among their ids, `gid` among the `groups`.
    fn script(&self, phase: Phase, created: &[(u64, String)], groups: &[String]) -> Script {
        assert!(
            phase == Phase::Create || !created.is_empty(),
            "no user was created; nothing to filter, patch or add"
        );
        let (n0, n1) = span(created.iter().map(|(n, _)| *n));
        let (u0, u1) = span(created.iter().filter_map(|(_, id)| id.parse().ok()));
        let (g0, g1) = span(groups.iter().filter_map(|g| g.parse().ok()));
        let sets = [
            format!("\\set n random({n0}, {n1})"),
            format!("\\set uid random({u0}, {u1})"),
            format!("\\set gid random({g0}, {g1})"),
        ];
        let (stmts, sets, vary): (&[Logged], Vec<String>, Vec<(String, &str)>) = match phase {
            Phase::Create => (
                self.statements("create"),
                vec!["\\set n random(1, 999999999999999)".into()],
                vec![
                    (user_name(TRIAL), "('raw.user' || :n || '@example.com')"),
                    (format!("ext-{TRIAL}"), "('raw-ext-' || :n)"),
                ],
            ),
            Phase::Filter => (
                self.statements("filter"),
                sets[..1].to_vec(),
                vec![(user_name(TRIAL), "('bench.user' || :n || '@example.com')")],
            ),
            Phase::Patch => (
                self.statements("patch"),
                sets[..2].to_vec(),
                vec![
                    (self.user_id.clone(), ":uid"),
                    (format!("Bench User {TRIAL}"), "('Bench User ' || :n)"),
                ],
            ),
            Phase::MemberAdd => (
                self.statements("member  PATCH /Groups/{id} add"),
                sets[1..].to_vec(),
                vec![
                    (self.group_id.clone(), ":gid"),
                    (format!("{{{}}}", self.group_id), "('{' || :gid || '}')"),
                    (self.user_id.clone(), ":uid"),
                    (format!("{{{}}}", self.user_id), "('{' || :uid || '}')"),
                ],
            ),
        };
        let mut defines: Vec<(String, String)> = Vec::new();
        let mut text = String::new();
        for s in &sets {
            text.push_str(s);
            text.push('\n');
        }
        for stmt in stmts {
            text.push_str(&replay(stmt, &vary, &mut defines));
            text.push_str(";\n");
        }
        Script {
            name: phase.file(),
            text,
            defines,
        }
    }
}

/// A logged statement as a pgbench command: each `$n` becomes its `vary` expression (by the
/// trial value bound to it), `NULL`, or a constant variable `:cK` (added to `defines`); `:` in
/// `to_char` formats is quoted so that pgbench does not take `:MI` for a variable.
fn replay(stmt: &Logged, vary: &[(String, &str)], defines: &mut Vec<(String, String)>) -> String {
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
fn abbreviate(text: &str, max: usize) -> String {
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
struct Script {
    name: &'static str,
    text: String,
    defines: Vec<(String, String)>,
}

impl Script {
    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.sql", self.name))
    }

    fn write(&self, dir: &Path) {
        let mut file = String::from("-- pgbench -M prepared -n -f this-file");
        for (k, v) in &self.defines {
            file.push_str(&format!(" -D {k}='{v}'"));
        }
        file.push('\n');
        file.push_str(&self.text);
        std::fs::write(self.path(dir), file).expect("write a pgbench script");
    }

    fn print(&self, dir: &Path) {
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

/// pgbench against the bench database.
struct Pgbench {
    bin: PathBuf,
    port: u16,
    db: String,
    /// Where its per-transaction logs go.
    logs: tempfile::TempDir,
    postmaster: u32,
}

impl Pgbench {
    /// Runs `script` with `conns` clients: 1 s of warm-up, then `secs` measured with a
    /// per-transaction log; prints nothing, returns the figures as a phase's.
    fn run(&self, script: &Script, conns: usize, secs: u64) -> Stats {
        let file = self.logs.path().join(format!("{}.sql", script.name));
        std::fs::write(&file, &script.text).expect("write the pgbench script");
        self.pgbench(&file, script, conns, 1, false);
        let (pg0, bench0, machine0, self0) = (
            server_tree_cpu_us(self.postmaster),
            reaped_children_cpu_us(),
            machine_busy_us(),
            support::cpu_us("self"),
        );
        let t0 = Instant::now();
        let out = self.pgbench(&file, script, conns, secs, true);
        let wall = t0.elapsed().as_secs_f64();
        let delta = |a: Option<u64>, b: Option<u64>| b.unwrap_or(0).saturating_sub(a.unwrap_or(0));
        let pg = delta(pg0, server_tree_cpu_us(self.postmaster));
        let bench = delta(bench0, reaped_children_cpu_us());
        let ours = pg + bench + delta(self0, support::cpu_us("self"));
        let other_cores =
            delta(machine0, machine_busy_us()).saturating_sub(ours) as f64 / 1e6 / wall.max(1e-3);
        let field = |key: &str| -> Option<f64> {
            let line = out.lines().find(|l| l.starts_with(key))?;
            line[key.len()..]
                .split_whitespace()
                .next()?
                .split('/')
                .next()?
                .parse()
                .ok()
        };
        let measured = field("number of transactions actually processed: ").unwrap_or(0.0) as u64;
        let errors = field("number of failed transactions: ").unwrap_or(0.0) as u64;
        let tps = field("tps = ").unwrap_or(0.0);
        let mut lat = self.latencies();
        lat.sort_unstable();
        let per = |us: u64| (measured > 0).then(|| us as f64 / measured as f64);
        Stats {
            name: format!("{:<7} pgbench", script.name.split('_').next().unwrap_or("")),
            conns,
            measured,
            errors,
            total: measured + errors,
            secs: secs as f64,
            rps: tps,
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

    /// One pgbench run; its standard output. Panics with its output if it fails: a script that
    /// does not replay is a bench bug.
    fn pgbench(&self, file: &Path, script: &Script, conns: usize, secs: u64, log: bool) -> String {
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
            .arg(file);
        for (k, v) in &script.defines {
            cmd.arg("-D").arg(format!("{k}={v}"));
        }
        if log {
            cmd.arg("-l").arg(format!(
                "--log-prefix={}",
                self.logs.path().join("tx").display()
            ));
        }
        let out = cmd.arg(&self.db).output().expect("run pgbench");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            panic!(
                "pgbench {} failed ({}):\n{stdout}{}",
                script.name,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        stdout
    }

    /// Per-transaction times (µs) from the logs of the last logged run, which are removed.
    fn latencies(&self) -> Vec<u32> {
        let mut lat = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.logs.path()) else {
            return lat;
        };
        for e in entries.flatten() {
            if !e.file_name().to_string_lossy().starts_with("tx.") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            // client_id transaction_no time script_no time_epoch time_us
            lat.extend(
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u32>().ok()),
            );
            let _ = std::fs::remove_file(e.path());
        }
        lat
    }
}

// ---------------------------------------------------------------------------------------------
// Phases

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Create,
    Filter,
    Patch,
    MemberAdd,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Create, Phase::Filter, Phase::Patch, Phase::MemberAdd];

    /// Its script's file name (and, up to `_`, the pgbench line's name).
    fn file(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Filter => "filter",
            Phase::Patch => "patch",
            Phase::MemberAdd => "member_add",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Filter => "filter by userName",
            Phase::Patch => "patch",
            Phase::MemberAdd => "member add",
        }
    }

    /// Target: the least sidecar req/s over pgbench tps, at 32 connections.
    fn target(self) -> Option<f64> {
        match self {
            Phase::Create => Some(0.7),
            Phase::Filter => Some(0.4),
            Phase::Patch => Some(0.6),
            Phase::MemberAdd => None,
        }
    }
}

/// A phase at one concurrency: indexes of its sidecar and pgbench figures in the report.
struct Pair {
    phase: Phase,
    conns: usize,
    sidecar: usize,
    raw: usize,
}

/// The smallest and largest of some numbers.
fn span(values: impl Iterator<Item = u64>) -> (u64, u64) {
    values.fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// An Entra-like group.
fn group_body(name: &str) -> String {
    format!(
        r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"{name}","externalId":"{name}"}}"#
    )
}

/// An Entra-style members PatchOp: `op` ("Add" or "Remove") with one `value` per id.
fn members_body(op: &str, ids: &[String]) -> String {
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
fn member_add_load(
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

// ---------------------------------------------------------------------------------------------
// The big group

/// What the big-group requests took.
#[derive(Default)]
struct BigTimes {
    /// One member added and removed again (Entra's incremental shape), and the answer's size.
    add_one: Duration,
    remove_one: Duration,
    one_bytes: usize,
    /// The other 1,000 added in one operation, the answer's size, and the count after it.
    add: Duration,
    add_bytes: usize,
    after_add: u64,
    /// Those 1,000 removed in one operation, and the count after it.
    remove: Duration,
    after_remove: u64,
}

/// The big group, written in SQL before the phases.
struct BigGroup {
    id: String,
    /// The users that are not (yet) members.
    extra: Vec<String>,
}

/// Writes 101,000 users and a group with 100,000 of them in SQL (before the phases: the app
/// has users already, and the statistics `settle` gathers describe tables the phases only
/// grow by a fraction).
async fn write_big_group(db: &postgres::Db) -> BigGroup {
    let t0 = Instant::now();
    let total = BIG_MEMBERS + BIG_EXTRA;
    db.exec(&format!(
        "INSERT INTO principals (kind, login, display_name, password_hash)
           SELECT 'U', 'big.user' || g || '@example.com', 'Big User ' || g, '!'
           FROM generate_series(1, {total}) g;
         INSERT INTO principals (kind, display_name, password_hash) VALUES ('G', 'Big Group', '!');"
    ))
    .await;
    let group = first(
        &db.rows("SELECT id FROM principals WHERE kind = 'G' AND display_name = 'Big Group'")
            .await,
    );
    db.exec(&format!(
        "INSERT INTO group_members (group_id, member_id)
           SELECT {group}, id FROM principals WHERE login LIKE 'big.user%' ORDER BY id LIMIT {BIG_MEMBERS};
         ANALYZE;"
    ))
    .await;
    let extra: Vec<String> = db
        .rows(&format!(
            "SELECT id FROM principals WHERE login LIKE 'big.user%' ORDER BY id OFFSET {BIG_MEMBERS}"
        ))
        .await
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    assert_eq!(extra.len() as u64, BIG_EXTRA);
    println!(
        "  {total} users, a group (id {group}) with {} members: written in SQL in {:.1} s",
        members_of(db, &group).await,
        t0.elapsed().as_secs_f64()
    );
    BigGroup { id: group, extra }
}

/// `SELECT count(*)` of a group's memberships.
async fn members_of(db: &postgres::Db, group: &str) -> u64 {
    let query = format!("SELECT count(*) FROM group_members WHERE group_id = {group}");
    first(&db.rows(&query).await).parse().expect("a count")
}

/// Times PATCHes through the sidecar on the big group: one member added and removed, then
/// the other 1,000 added in one operation and removed in one; counts checked in SQL.
async fn patch_big_group(db: &postgres::Db, addr: SocketAddr, target: &BigGroup) -> BigTimes {
    let (group, extra) = (&target.id, &target.extra);
    let host = host_header(addr);
    let mut s = connect(addr).await.expect("connect to the sidecar");
    let path = format!("/scim/v2/Groups/{group}");
    let mut timed = async |op: &str, ids: &[String]| -> (Duration, usize) {
        let req = request(Method::PATCH, &host, &path, Some(members_body(op, ids)));
        let what = format!("{op} {} members", ids.len());
        let (body, took) = call(&mut s, req, StatusCode::NO_CONTENT, &what, BIG_TIMEOUT).await;
        (took, body.len())
    };
    let mut big = BigTimes::default();
    (big.add_one, big.one_bytes) = timed("Add", &extra[..1]).await;
    (big.remove_one, _) = timed("Remove", &extra[..1]).await;
    println!(
        "  add 1 member: {:.0} ms, remove it: {:.0} ms (answer {:.1} MB)",
        ms(big.add_one),
        ms(big.remove_one),
        big.one_bytes as f64 / 1e6
    );
    (big.add, big.add_bytes) = timed("Add", extra).await;
    big.after_add = members_of(db, group).await;
    println!(
        "  add {BIG_EXTRA} members in one operation: {:.0} ms (answer {:.1} MB); members now {}",
        ms(big.add),
        big.add_bytes as f64 / 1e6,
        big.after_add
    );
    (big.remove, _) = timed("Remove", extra).await;
    big.after_remove = members_of(db, group).await;
    println!(
        "  remove them in one operation: {:.0} ms; members now {}",
        ms(big.remove),
        big.after_remove
    );
    big
}

/// The first column of the first row.
fn first(rows: &[Vec<String>]) -> String {
    rows.first()
        .and_then(|r| r.first())
        .cloned()
        .expect("a row")
}

// ---------------------------------------------------------------------------------------------
// Report

/// Prints the summary table: per phase the sidecar/pgbench ratio, then the big group.
fn summary(report: &Report, pairs: &[Pair], big: &BigTimes, pool: usize, rss: [u64; 2]) {
    let mut table = Summary::default();
    table.info("sidecar pool size (DATABASE_POOL_SIZE)", pool.to_string());
    for p in pairs {
        let (s, r) = (&report.phases[p.sidecar], &report.phases[p.raw]);
        let ratio = if r.rps > 0.0 { s.rps / r.rps } else { 0.0 };
        let value = format!(
            "{ratio:.2} ({:.0} / {:.0} req/s), p50 {:.2} / {:.2}, p99 {:.2} / {:.2} ms",
            s.rps,
            r.rps,
            s.p50_us as f64 / 1000.0,
            r.p50_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0,
            r.p99_us as f64 / 1000.0
        );
        let figure = format!("{} @{}: sidecar / pgbench", p.phase.label(), p.conns);
        match p.phase.target() {
            Some(t) if p.conns == 32 => {
                table.row(&figure, value, format!(">= {t:.2}"), at_least(ratio, t))
            }
            _ => table.info(&figure, value),
        }
    }
    let add = big.add.as_secs_f64();
    table.row(
        &format!("add {BIG_EXTRA} members to a {BIG_MEMBERS}-member group"),
        format!("{:.3} s (answer {:.1} MB)", add, big.add_bytes as f64 / 1e6),
        format!("< {TARGET_BIG_ADD_SECS:.0} s"),
        at_most(add, TARGET_BIG_ADD_SECS),
    );
    table.info(
        &format!("remove those {BIG_EXTRA} (Entra's remove shape)"),
        format!("{:.3} s", big.remove.as_secs_f64()),
    );
    for (figure, got, want) in [
        (
            "members after the add (count(*))",
            big.after_add,
            BIG_MEMBERS + BIG_EXTRA,
        ),
        (
            "members after the remove (count(*))",
            big.after_remove,
            BIG_MEMBERS,
        ),
    ] {
        table.row(
            figure,
            got.to_string(),
            want.to_string(),
            verdict(got == want, 0.0),
        );
    }
    table.info(
        &format!("add / remove 1 member, {BIG_MEMBERS}-member group"),
        format!(
            "{:.0} / {:.0} ms (answer {:.1} MB)",
            ms(big.add_one),
            ms(big.remove_one),
            big.one_bytes as f64 / 1e6
        ),
    );
    table.info(
        "sidecar RSS peak: phases / big group",
        format!("{:.1} / {:.1} MiB", mib(rss[0]), mib(rss[1])),
    );
    report.errors_row(&mut table);
    report.noise_row(&mut table);
    table.print();
}
