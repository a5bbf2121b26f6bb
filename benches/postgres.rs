//! PostgreSQL benchmark: the sidecar in front of the `examples/postgres` helpdesk schema, next
//! to the very statements it sends, run straight against PostgreSQL by `pgbench`.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench postgres                        # 1 s warm-up + 5 s measured per phase
//! BENCH_SECS=10 cargo bench --bench postgres          # a longer measured window
//! DATABASE_POOL_SIZE=8 cargo bench --bench postgres   # another sidecar pool size (default 16)
//! ```
//!
//! It needs PostgreSQL's server programs (`initdb`, `postgres` and `pgbench` in
//! `/usr/lib/postgresql/*/bin`, as `apt-get install postgresql` puts them); without them it says
//! so and exits 0. It starts a throwaway cluster (`tests/support/postgres.rs`: fsync off, a free
//! loopback port), loads `examples/postgres/schema.sql` into a fresh database, writes 101,000
//! users and a group with 100,000 of them straight in SQL (`generate_series`: the app has users
//! already, and section 4 needs them), runs `scim-sidecar migrate` and then `scim-sidecar run
//! --config examples/postgres/scim-sidecar.toml` (the release binary) on loopback ports, with a
//! pool of 16 connections, the example's default (`DATABASE_POOL_SIZE`). Reads and creates use
//! at most half of it (`pg_pool::alone_limit`), so they run as they did on the pool of 8 this
//! bench used before, while PATCHes and member adds may use all 16: at 8 they waited for
//! connections (PATCH 0.76–0.84× pgbench, member add 101–103 µs of sidecar CPU, against
//! 0.83–0.90× and 85–98 µs on 16, four runs each). Then:
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
//!    that runs start alike and no background work falls into one. At 32 clients, where the
//!    targets apply, each phase runs in three rounds (sidecar, pgbench, sidecar, pgbench, …),
//!    and the summary judges the median round: PostgreSQL's own CPU per request drifts by up
//!    to a fifth within one bench on a shared VM, and one round's ratio moved with it by as
//!    much as the margin it was judged on (PATCH 0.93, 0.92, 0.75 in one run).
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
//! - The summary gives per phase the ratio sidecar req/s / pgbench tps (at 32 clients: the
//!   median round's, every round's ratio after it), with targets at 32
//!   clients: create ≥ 0.8, filter ≥ 0.9, patch ≥ 0.8 (member add: reported, no target); and
//!   the sidecar's CPU per request at 32 clients, with targets: create ≤ 60 µs, filter ≤ 40,
//!   patch and member add ≤ 90 (issue #15), as the median of the rounds. pgbench replays the
//!   statements the sidecar sends, so a request made of fewer statements lowers the sidecar's
//!   CPU and pgbench's time alike.
//!
//! Targets are reported (PASS/MISS), never asserted: the bench fails only on request errors, on
//! pgbench errors (a script that does not replay) or if the sidecar does not start. Everything
//! shares the machine's cores (2 on the reference VM), so the ratios say how much of what
//! PostgreSQL can do the sidecar delivers on this machine, not what either does alone. Each run
//! is bounded: `BENCH_SECS` (default 5) seconds plus 1 s warm-up, at most 2,000,000 requests;
//! the whole bench takes about 3.5 minutes on the reference VM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

#[path = "support/pg.rs"]
mod pg;

use pg::{
    Logged, Pair, Script, ServerLog, Setup, call, call_json, first, log_statements,
    member_add_load, members_body, print_scripts, print_statements, quiesce, replay, scripts_dir,
    span,
};
use support::{
    CONNS, Report, RssSampler, Stats, Summary, at_least, at_most, connect, create_body,
    create_load, filter_load, filter_path, host_header, mib, ms, patch_body, patch_load, request,
    run_phase, user_name, verdict,
};

/// The sidecar's pool size unless `DATABASE_POOL_SIZE` says otherwise.
const DEFAULT_POOL_SIZE: usize = 16;
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
/// Rounds (sidecar, then pgbench) of each phase at 32 clients, where the targets apply; the
/// summary judges the median round. On a shared 2-core VM PostgreSQL's own CPU per request
/// drifts by a fifth between runs a minute apart, which moved a single round's ratio by as
/// much as the margin it was judged on.
const ROUNDS: usize = 3;

/// How many rounds a phase runs with `conns` clients.
fn rounds_at(conns: usize) -> usize {
    if conns == 32 { ROUNDS } else { 1 }
}

fn main() {
    let Some(setup) = Setup::start(
        "postgres",
        "scim-sidecar PostgreSQL benchmark",
        &example("scim-sidecar.toml"),
        DEFAULT_POOL_SIZE,
    ) else {
        return;
    };
    let (secs, window, pool, postmaster) =
        (setup.secs, setup.window(), setup.pool, setup.postmaster);

    let rt = support::runtime();
    let (db, big_group) = rt.block_on(async {
        let db = setup
            .database(
                "bench",
                &example("schema.sql"),
                "principals_id_seq",
                ID_BASE,
            )
            .await;
        let big = write_big_group(&db).await;
        (db, big)
    });
    let mut sidecar = setup.sidecar(&db, &example("scim-sidecar.toml"));
    let pid = sidecar.proc.pid;

    // 1. Trial: what the sidecar sends per request.
    rt.block_on(log_statements(&db, true));
    let trial = rt.block_on(run_trial(sidecar.addr, &setup.log()));
    rt.block_on(log_statements(&db, false));
    print_statements(&trial.steps);

    let pgbench = setup.pgbench(&db);
    let scripts_dir = scripts_dir("bench-postgres");

    // Groups for the member-add phase; their ids are below those of the users the phases
    // create, so that `[min, max]` of those ids holds users only.
    let groups: Arc<Vec<String>> = Arc::new(rt.block_on(create_groups(sidecar.addr)));

    // 2. Phases, each through the sidecar and then by pgbench.
    println!("== phases: sidecar, then the same statements by pgbench ==");
    Report::header(true);
    let sampler = RssSampler::start(pid);
    let mut report = Report::default();
    let mut pairs: Vec<Pair<Phase>> = Vec::new();
    let seq = Arc::new(AtomicU64::new(0));
    let mut scripts: Vec<Script> = Vec::new();
    let mut created: Vec<(u64, String)> = Vec::new();
    for phase in Phase::ALL {
        let script = trial.script(phase, &created, &groups);
        script.write(&scripts_dir);
        let names: Arc<Vec<String>> =
            Arc::new(created.iter().map(|(n, _)| user_name(*n)).collect());
        let ids: Arc<Vec<String>> = Arc::new(created.iter().map(|(_, id)| id.clone()).collect());
        for (conns, round) in CONNS
            .into_iter()
            .flat_map(|c| (0..rounds_at(c)).map(move |r| (c, r)))
        {
            if round > 0 {
                println!("  (round {} of {ROUNDS})", round + 1);
            }
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
            pairs.push(Pair::record(&mut report, phase, conns, stats, raw));
        }
        scripts.push(script);
    }
    println!("  ({} users created through the sidecar)", created.len());
    println!();

    print_scripts(&scripts, &scripts_dir);

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
    sidecar.stop();
    println!();

    summary(&report, &pairs, &big, pool, [rss_load, rss_big]);
    drop(db);
    rt.shutdown_timeout(Duration::from_secs(2));
    setup.stop();
}

/// The rounds of one phase at one client count, judged by their median.
struct Rounds {
    phase: Phase,
    conns: usize,
    /// The median round's ratio, and its figure with every round's ratio after it.
    ratio: f64,
    value: String,
    /// The median of the rounds' sidecar CPU and PostgreSQL CPU per request.
    cpu_us: Option<f64>,
    db_cpu_us: Option<f64>,
    /// ` [median of N]`, or nothing for a single round.
    of: String,
}

/// `pairs` grouped by phase and client count, in the order they ran.
fn median_rounds(report: &Report, pairs: &[Pair<Phase>]) -> Vec<Rounds> {
    let mut out: Vec<Rounds> = Vec::new();
    for p in pairs {
        if out.iter().any(|r| r.phase == p.phase && r.conns == p.conns) {
            continue;
        }
        let same: Vec<&Pair<Phase>> = pairs
            .iter()
            .filter(|q| q.phase == p.phase && q.conns == p.conns)
            .collect();
        let mut judged: Vec<(f64, String)> = same.iter().map(|q| q.versus(report)).collect();
        let ratios: Vec<String> = judged.iter().map(|(r, _)| format!("{r:.2}")).collect();
        judged.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (ratio, value) = judged.swap_remove(judged.len() / 2);
        let median = |f: &dyn Fn(&Stats) -> Option<f64>| {
            let mut v: Vec<f64> = same
                .iter()
                .filter_map(|q| f(&report.phases[q.sidecar]))
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied()
        };
        let (value, of) = match same.len() {
            1 => (value, String::new()),
            n => (
                format!("{value} [median of {n}: {}]", ratios.join(", ")),
                format!(" [median of {n}]"),
            ),
        };
        out.push(Rounds {
            phase: p.phase,
            conns: p.conns,
            ratio,
            value,
            cpu_us: median(&|s| s.server_cpu_us),
            db_cpu_us: median(&|s| s.db_cpu_us),
            of,
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Set-up

/// A file of `examples/postgres`.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/postgres")
        .join(name)
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
    quiesce(db).await;
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

/// The trial: one request of each kind, and what the server logged for each.
struct Trial {
    steps: Vec<(&'static str, Vec<Logged>)>,
    user_id: String,
    group_id: String,
}

/// One request of each kind, each checked in full, with the statements logged for it.
async fn run_trial(addr: SocketAddr, log: &ServerLog) -> Trial {
    let host = host_header(addr);
    let mut s = connect(addr).await.expect("connect to the sidecar");
    let mut steps = Vec::new();
    let mut traced =
        async |s: &mut SendRequest<Full<Bytes>>, what, method, path: &str, body, want| {
            let (v, stmts) = log
                .trace(s, request(method, &host, path, body), want, what)
                .await;
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
            Phase::Create => Some(0.8),
            Phase::Filter => Some(0.9),
            Phase::Patch => Some(0.8),
            Phase::MemberAdd => None,
        }
    }

    /// Target: the most sidecar CPU per request, in µs, at 32 connections.
    fn cpu_target(self) -> f64 {
        match self {
            Phase::Create => 60.0,
            Phase::Filter => 40.0,
            Phase::Patch | Phase::MemberAdd => 90.0,
        }
    }
}

/// An Entra-like group.
fn group_body(name: &str) -> String {
    format!(
        r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"{name}","externalId":"{name}"}}"#
    )
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

// ---------------------------------------------------------------------------------------------
// Report

/// Prints the summary table: per phase the sidecar/pgbench ratio, then the big group.
fn summary(report: &Report, pairs: &[Pair<Phase>], big: &BigTimes, pool: usize, rss: [u64; 2]) {
    let mut table = Summary::default();
    table.info("sidecar pool size (DATABASE_POOL_SIZE)", pool.to_string());
    let rounds = median_rounds(report, pairs);
    for r in &rounds {
        let figure = format!("{} @{}: sidecar / pgbench", r.phase.label(), r.conns);
        match r.phase.target() {
            Some(t) if r.conns == 32 => table.row(
                &figure,
                r.value.clone(),
                format!(">= {t:.2}"),
                at_least(r.ratio, t),
            ),
            _ => table.info(&figure, r.value.clone()),
        }
    }
    for r in rounds.iter().filter(|r| r.conns == 32) {
        let (Some(us), t) = (r.cpu_us, r.phase.cpu_target()) else {
            continue;
        };
        let db = r
            .db_cpu_us
            .map_or(String::new(), |d| format!(" (PostgreSQL {d:.0} us)"));
        table.row(
            &format!("{} @32: sidecar CPU per request", r.phase.label()),
            format!("{us:.0} us{db}{}", r.of),
            format!("<= {t:.0} us"),
            at_most(us, t),
        );
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
