//! Hooks and cascades benchmark: the sidecar in front of the `examples/redmine` schema, whose
//! mapping runs derived writes (hooks) on a membership change and removes a deleted group's
//! rows in other tables (cascades), next to the very statements it sends, run straight against
//! PostgreSQL by `pgbench`. Issue 9's figure: what a derived write and a cascade cost through
//! the sidecar, against the statements alone.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench hooks                        # 1 s warm-up + 5 s measured per phase
//! BENCH_SECS=10 cargo bench --bench hooks          # a longer measured window
//! DATABASE_POOL_SIZE=16 cargo bench --bench hooks  # another sidecar pool size (default 8)
//! ```
//!
//! It needs what `benches/postgres.rs` needs (PostgreSQL's server programs and `pgbench`;
//! without them it says so and exits 0), and works the same way (`support/pg.rs`): a
//! throwaway cluster, `examples/redmine/schema.sql` in a fresh database, `scim-sidecar migrate`
//! and `scim-sidecar run --config examples/redmine/scim-sidecar.toml` (the release binary) on
//! loopback ports with a pool of 8. Before the sidecar starts, what the app holds is written
//! straight in SQL: 20,000 users (with their e-mail rows) and 50 projects. Then:
//!
//! 1. **Trial**: one request of each kind, checked in full (in SQL: the rows the hooks wrote
//!    or removed), with `log_min_duration_statement = 0`; the statements the server logged for
//!    each are printed: what the sidecar sends per request, read back from PostgreSQL.
//! 2. **pgbench scripts** made from those statements, printed in full and written to
//!    `target/tmp/bench-hooks/*.sql`: the same SQL text in the same order, run with `pgbench
//!    -M prepared`, constants passed with `-D`, as `benches/postgres.rs` does. The ids that
//!    differ per transaction come from a sequence of each pgbench client (a variable that
//!    keeps its value from one transaction to the next: `\set k :k + 1`), interleaved over
//!    the clients by `:client_id` (index `i = (k - 1) * clients + client_id`), so that no two
//!    transactions of a run use the same index, as no two requests of a sidecar run do.
//! 3. **Phases**, each with 1 and with 32 concurrent clients, first through the sidecar, then
//!    the same statements by pgbench (`-c N -j min(N,2)`). Unlike `benches/postgres.rs`,
//!    pgbench warms up on the connections it is measured on, as the sidecar's pool does: one
//!    run of 1 s + `BENCH_SECS` (`-T`), whose per-transaction log is read as a sidecar phase
//!    is measured (transactions started in the first second warm up; the window ends with the
//!    last one). Before every run (sidecar or
//!    pgbench) the memberships, project memberships, role rows and watchers are emptied
//!    (`TRUNCATE`), the bench's groups deleted, the run's groups written anew in SQL, and the
//!    database vacuumed, analyzed and checkpointed with autovacuum off, so that runs start
//!    alike:
//!    - *member add (hooks)*: `PATCH /Groups/{id}`, `add` of one member, rotating over the
//!      users and over 8 groups, each a member of 3 projects (Developer on each, Reporter too
//!      on the first) and without members at the start of a run. The `member_add` hooks give
//!      the new member a project membership in each of the 3 projects and the group's 4 roles
//!      there, marked inherited: 2 statements that insert 3 + 4 rows. Request `n` of a run
//!      adds user `n` to group `n mod 8` (pgbench: index `i` of its sequence, the same way).
//!    - *group delete (cascade)*: `DELETE /Groups/{id}` of a group with 5 members, 3 projects
//!      with 4 roles, and 2 watcher rows; each user is in 5 such groups (group `k` has users
//!      `5k..5k+4` modulo the 20,000), so its project memberships are shared with other
//!      groups. One delete runs the `member_remove` hooks once for each member leaving
//!      (removing its roles inherited from the group, then its project memberships left
//!      without a role), the group's `delete` hooks, and the cascades (`members`,
//!      `watchers`). Each request needs a group of its own: the run's groups (20,000, or
//!      `BENCH_GROUPS`) are written in SQL before it, as the app would hold them, and a run
//!      deletes them in id order (request `n` of a sidecar run the `n`-th group); a sidecar
//!      run stops early if it has used them all (the summary says how many were deleted).
//!      pgbench gets a fresh set of the same groups, and its client `c` deletes group
//!      `first + i` at its `k`-th transaction, with the members `m1..m5` that group was
//!      written with; it cannot stop a `-T` run, so a client whose index is past the groups
//!      sleeps 100 ms instead (`\if :i < :count`), and those transactions are left out of
//!      the figures. After every delete run the bench checks in SQL that as many groups are
//!      gone as were deleted, that no role row points to a deleted group's role and that no
//!      project membership is left without a role.
//!
//! Figures per phase as in `benches/postgres.rs` (`req/s`, `p50`/`p99`/`max` latency, CPU per
//! request of the sidecar, this process, PostgreSQL, and of other processes). The summary gives
//! per phase, at 1 and 32 clients, the sidecar's req/s, pgbench's tps, their ratio and p50/p99,
//! and the statements per request read from the trial log. No targets: figures are printed, not
//! asserted; the bench fails only on request errors, on pgbench errors (a script that does not
//! replay, or one that outlives its deadline), or if the rows the deletes leave are not what
//! the app would have. Each phase is bounded: `BENCH_SECS` (default 5) seconds plus 1 s
//! warm-up, at most 2,000,000 requests (and, for deletes, the groups written for the run); a
//! pgbench run is killed 60 s past its time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Method, StatusCode};

#[path = "support/mod.rs"]
mod support;

#[path = "../tests/support/postgres.rs"]
mod postgres;

#[path = "support/pg.rs"]
mod pg;

use pg::{
    Logged, Pair, Pgbench, Script, Setup, call_json, first, log_statements, member_add_load,
    members_body, print_scripts, print_statements, quiesce, replay, scripts_dir,
};
use support::{
    CONNS, CheckResponse, Load, MakeRequest, Report, RssSampler, Stats, Summary, connect,
    host_header, mib, request, run_phase, unexpected, verdict,
};

/// The sidecar's pool size unless `DATABASE_POOL_SIZE` says otherwise (as `benches/postgres.rs`).
const DEFAULT_POOL_SIZE: usize = 8;
/// Users and projects the app holds, written in SQL.
const USERS: u64 = 20_000;
const PROJECTS: u64 = 50;
/// Projects each bench group is a member of (Developer on each, Reporter too on the first).
const GROUP_PROJECTS: u64 = 3;
/// Role rows of a group, which each of its members inherits.
const GROUP_ROLES: u64 = GROUP_PROJECTS + 1;
/// Members of each group a delete removes, and its watcher rows.
const MEMBERS: u64 = 5;
const WATCHERS: u64 = 2;
/// Groups the member-add phase rotates over.
const ADD_GROUPS: u64 = 8;
/// Groups written for one delete run unless `BENCH_GROUPS` says otherwise, and at most.
const DELETE_GROUPS: u64 = 20_000;
/// The fewest groups a delete run may have (`BENCH_GROUPS`): some must be left for the
/// measured window after the warm-up.
const MIN_GROUPS: u64 = 2_000;
/// Ids of the bench's rows start above this (a setval on the schema's sequence), so that no id
/// in a trial request looks like a constant parameter.
const ID_BASE: u64 = 1_000_000;

fn main() {
    let config = example("scim-sidecar.toml");
    let Some(setup) = Setup::start(
        "hooks",
        "scim-sidecar hooks and cascades benchmark (Redmine)",
        &config,
        DEFAULT_POOL_SIZE,
    ) else {
        return;
    };
    let delete_groups = std::env::var("BENCH_GROUPS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .map_or(DELETE_GROUPS, |n| n.clamp(MIN_GROUPS, DELETE_GROUPS));
    println!(
        "  app rows written in SQL: {USERS} users, {PROJECTS} projects; groups of {MEMBERS} \
         members in {GROUP_PROJECTS} projects ({GROUP_ROLES} roles); {delete_groups} groups per \
         delete run (BENCH_GROUPS, {MIN_GROUPS} to {DELETE_GROUPS})"
    );

    let rt = support::runtime();
    let (db, app) = rt.block_on(async {
        let db = setup
            .database("hooks", &example("schema.sql"), "users_id_seq", ID_BASE)
            .await;
        let app = App::write(&db).await;
        (db, app)
    });
    let mut sidecar = setup.sidecar(&db, &config);
    let pid = sidecar.proc.pid;

    // 1. Trial: what the sidecar sends per request.
    rt.block_on(log_statements(&db, true));
    let trial = rt.block_on(run_trial(&db, &app, sidecar.addr, &setup.log()));
    rt.block_on(log_statements(&db, false));
    print_statements(&trial.steps);

    let pgbench = setup.pgbench(&db);
    let scripts_dir = scripts_dir("bench-hooks");

    // 2. Phases, each through the sidecar and then by pgbench.
    println!("== phases: sidecar, then the same statements by pgbench ==");
    Report::header(true);
    let sampler = RssSampler::start(pid);
    let mut report = Report::default();
    let mut pairs: Vec<Pair<Phase>> = Vec::new();
    let mut checks: Vec<Check> = Vec::new();
    let seq = Arc::new(AtomicU64::new(0));
    let mut scripts: Vec<Script> = Vec::new();
    let run = Run {
        db: &db,
        app: &app,
        addr: sidecar.addr,
        pid,
        setup: &setup,
        pgbench: &pgbench,
        seq: &seq,
    };
    for phase in Phase::ALL {
        let script = trial.script(phase, &app);
        script.write(&scripts_dir);
        for conns in CONNS {
            let checked = checks.len();
            let (stats, raw) = match phase {
                Phase::MemberAdd => rt.block_on(run.member_add(&script, conns)),
                Phase::GroupDelete => {
                    rt.block_on(run.group_delete(&script, conns, delete_groups, &mut checks))
                }
            };
            pairs.push(Pair::record(&mut report, phase, conns, stats, raw));
            checks[checked..].iter().for_each(Check::note);
        }
        scripts.push(script);
    }
    println!();

    print_scripts(&scripts, &scripts_dir);

    let rss = sampler.stop();
    println!("== sidecar ==");
    println!(
        "  RSS: sampled peak {:.1} MiB during the phases, {:.1} MiB after them",
        mib(rss),
        mib(support::proc_status_kib(pid, "VmRSS").unwrap_or(0))
    );
    sidecar.stop();
    println!();

    summary(&report, &pairs, &trial, &checks, setup.pool, rss);
    drop(db);
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    setup.stop();
    let wrong: Vec<&Check> = checks.iter().filter(|c| !c.ok()).collect();
    assert!(
        wrong.is_empty(),
        "the deletes left rows the app would not have: {}",
        wrong
            .iter()
            .map(|c| format!(
                "{} @{}: {} deleted, {} gone {}",
                c.who, c.conns, c.deleted, c.gone, c.what
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
}

/// A file of `examples/redmine`.
fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/redmine")
        .join(name)
}

// ---------------------------------------------------------------------------------------------
// What the app holds

/// The rows written in SQL before the sidecar starts.
struct App {
    /// Id of the first of the [`USERS`] users (theirs are consecutive).
    user0: u64,
    /// Id of the first of the [`PROJECTS`] projects.
    project0: u64,
}

/// Groups written in SQL for a run (consecutive ids).
struct Groups {
    first: u64,
    count: u64,
}

impl Groups {
    fn ids(&self) -> Vec<String> {
        (self.first..self.first + self.count)
            .map(|id| id.to_string())
            .collect()
    }

    fn last(&self) -> u64 {
        self.first + self.count - 1
    }

    /// What a pgbench run on these groups defines (`-D`) besides the script's constants: the
    /// clients' sequences start at 0, `first` is the first group and `count` says how many.
    fn vars(&self, conns: usize) -> Vec<(&'static str, String)> {
        vec![
            ("k", "0".into()),
            ("nc", conns.to_string()),
            ("first", self.first.to_string()),
            ("count", self.count.to_string()),
        ]
    }

    /// Whether transaction `number` (from 1) of pgbench client `client` had a group of these
    /// (see the script's `\if`).
    fn had_one(&self, conns: usize, client: u64, number: u64) -> bool {
        (number - 1) * conns as u64 + client < self.count
    }
}

impl App {
    /// Writes the users (each with its default e-mail row) and the projects.
    async fn write(db: &postgres::Db) -> App {
        let t0 = std::time::Instant::now();
        db.exec(&format!(
            "INSERT INTO users (login, firstname, lastname, status, created_on, updated_on, type,
                                mail_notification)
               SELECT 'bench.user' || g || '@example.com', 'Given' || g, 'Family' || g, 1,
                      now(), now(), 'User', 'only_my_events'
               FROM generate_series(0, {last}) g;
             INSERT INTO email_addresses (user_id, address, is_default, notify, created_on, updated_on)
               SELECT id, login, true, true, created_on, updated_on FROM users
               WHERE login LIKE 'bench.user%';
             INSERT INTO projects (name, identifier, is_public, created_on, updated_on, lft, rgt)
               SELECT 'Project ' || p, 'project-' || p, true, now(), now(), 2 * p + 1, 2 * p + 2
               FROM generate_series(0, {projects}) p;",
            last = USERS - 1,
            projects = PROJECTS - 1,
        ))
        .await;
        let users = db
            .rows(
                "SELECT min(id), max(id), count(*) FROM users WHERE login LIKE 'bench.user%'
                 UNION ALL SELECT min(id), max(id), count(*) FROM projects",
            )
            .await;
        let num = |r: usize, c: usize| -> u64 { users[r][c].parse().expect("a number") };
        assert_eq!(
            num(0, 1) - num(0, 0) + 1,
            USERS,
            "user ids are not consecutive"
        );
        assert_eq!(
            num(1, 1) - num(1, 0) + 1,
            PROJECTS,
            "project ids are not consecutive"
        );
        println!(
            "  {USERS} users (ids {}..{}) and {PROJECTS} projects written in SQL in {:.1} s",
            num(0, 0),
            num(0, 1),
            t0.elapsed().as_secs_f64()
        );
        App {
            user0: num(0, 0),
            project0: num(1, 0),
        }
    }

    /// Empties what the phases write (memberships, project memberships, role rows, watchers)
    /// and deletes the bench's groups: every run starts from the app's users and projects.
    async fn reset(&self, db: &postgres::Db) {
        db.exec(
            "TRUNCATE groups_users, members, member_roles, watchers;
             DELETE FROM users WHERE type = 'Group' AND lastname LIKE 'Bench Group %';",
        )
        .await;
    }

    /// Writes `count` groups as Redmine holds them: group `k` a member of projects
    /// `k..k+2` (mod [`PROJECTS`]) with Developer on each and Reporter too on the first, with
    /// [`WATCHERS`] watcher rows, and with `members` users (`members * k ..`, modulo
    /// [`USERS`]), each of whom holds what the `member_add` hooks give (a project
    /// membership in the group's projects, the group's roles there marked inherited), as set
    /// operations over all the groups at once.
    async fn write_groups(&self, db: &postgres::Db, count: u64, members: u64) -> Groups {
        // Ids given here, so that they are consecutive whatever the sequence's cache.
        let first: u64 = first(&db.rows("SELECT nextval('users_id_seq')").await)
            .parse()
            .expect("an id");
        let g = Groups { first, count };
        let (g0, g1, p0, u0) = (g.first, g.last(), self.project0, self.user0);
        let blocks = USERS.checked_div(members).unwrap_or(1);
        db.exec(&format!(
            "SELECT setval('users_id_seq', {g1});
             INSERT INTO users (id, login, firstname, lastname, status, created_on, updated_on,
                                type, mail_notification)
               SELECT {g0} + k, '', '', 'Bench Group ' || ({g0} + k), 1, now(), now(), 'Group', ''
               FROM generate_series(0, {count} - 1) k;
             INSERT INTO members (user_id, project_id, created_on)
               SELECT {g0} + k, {p0} + (k + i) % {PROJECTS}, now()
               FROM generate_series(0, {count} - 1) k, generate_series(0, {GROUP_PROJECTS} - 1) i;
             INSERT INTO member_roles (member_id, role_id)
               SELECT m.id, r.id FROM members m JOIN roles r ON r.name = 'Developer'
               WHERE m.user_id BETWEEN {g0} AND {g1}
               UNION ALL
               SELECT m.id, r.id FROM members m JOIN roles r ON r.name = 'Reporter'
               WHERE m.user_id BETWEEN {g0} AND {g1}
                 AND m.project_id = {p0} + (m.user_id - {g0}) % {PROJECTS};
             INSERT INTO watchers (watchable_type, watchable_id, user_id)
               SELECT 'Issue', k * {WATCHERS} + i + 1, {g0} + k
               FROM generate_series(0, {count} - 1) k, generate_series(0, {WATCHERS} - 1) i;
             INSERT INTO groups_users (group_id, user_id)
               SELECT {g0} + k, {u0} + (k % {blocks}) * {members} + j
               FROM generate_series(0, {count} - 1) k, generate_series(0, {members} - 1) j;
             INSERT INTO members (user_id, project_id, created_on)
               SELECT DISTINCT gu.user_id, gm.project_id, now()
               FROM groups_users gu JOIN members gm ON gm.user_id = gu.group_id
               WHERE gu.group_id BETWEEN {g0} AND {g1}
               ON CONFLICT (user_id, project_id) DO NOTHING;
             INSERT INTO member_roles (member_id, role_id, inherited_from)
               SELECT um.id, gr.role_id, gr.id
               FROM groups_users gu
               JOIN members gm ON gm.user_id = gu.group_id
               JOIN member_roles gr ON gr.member_id = gm.id
               JOIN members um ON um.user_id = gu.user_id AND um.project_id = gm.project_id
               WHERE gu.group_id BETWEEN {g0} AND {g1};"
        ))
        .await;
        g
    }

    /// The first id of the members of the group written `k`-th, which has `MEMBERS`
    /// consecutive ones.
    fn member0(&self, k: u64) -> u64 {
        self.user0 + (k % (USERS / MEMBERS)) * MEMBERS
    }
}

/// `SELECT count(*) …`.
async fn count(db: &postgres::Db, query: &str) -> u64 {
    first(&db.rows(query).await).parse().expect("a count")
}

/// What is wrong with the derived rows as Redmine keeps them, if anything: a role row
/// inherited from a role row that is gone, a project membership left without a role, a
/// membership, project membership or watcher row of a group that is gone.
async fn inconsistencies(db: &postgres::Db) -> Vec<String> {
    let mut wrong = Vec::new();
    for (what, query) in [
        (
            "role rows inherited from a role that is gone",
            "SELECT count(*) FROM member_roles r WHERE r.inherited_from IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM member_roles g WHERE g.id = r.inherited_from)",
        ),
        (
            "project memberships without a role",
            "SELECT count(*) FROM members m
               WHERE NOT EXISTS (SELECT 1 FROM member_roles r WHERE r.member_id = m.id)",
        ),
        (
            "rows of a deleted group (groups_users, members, watchers)",
            "SELECT (SELECT count(*) FROM groups_users x
                       WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = x.group_id))
                  + (SELECT count(*) FROM members x
                       WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = x.user_id))
                  + (SELECT count(*) FROM watchers x
                       WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = x.user_id))",
        ),
    ] {
        let n = count(db, query).await;
        if n > 0 {
            wrong.push(format!("{n} {what}"));
        }
    }
    wrong
}

// ---------------------------------------------------------------------------------------------
// Trial: what the sidecar sends

/// The trial: one request of each kind, and what the server logged for each.
struct Trial {
    steps: Vec<(&'static str, Vec<Logged>)>,
    /// The member added, and the group it was added to.
    add_user: String,
    add_group: String,
    /// The group deleted, and the id of its first member.
    delete_group: String,
    delete_member0: u64,
}

/// The request kinds, as the trial names them.
const MEMBER_ADD: &str = "member  PATCH /Groups/{id} add, with hooks";
const GROUP_DELETE: &str = "delete  DELETE /Groups/{id}, with hooks and cascades";

/// One request of each kind, each checked in full (in SQL: the rows the hooks and cascades
/// wrote and removed), with the statements logged for it.
async fn run_trial(db: &postgres::Db, app: &App, addr: SocketAddr, log: &pg::ServerLog) -> Trial {
    app.reset(db).await;
    let add = app.write_groups(db, 1, 0).await;
    let del = app.write_groups(db, 1, MEMBERS).await;
    // A user that is in no group.
    let user = (app.user0 + USERS - 1).to_string();
    let (add_group, delete_group) = (add.first.to_string(), del.first.to_string());
    let host = host_header(addr);
    let mut s = connect(addr).await.expect("connect to the sidecar");
    let mut steps = Vec::new();

    // Member add: the user gets a project membership in each of the group's projects, and
    // the group's roles there, inherited.
    let path = format!("/scim/v2/Groups/{add_group}");
    let body = members_body("Add", std::slice::from_ref(&user));
    let req = request(Method::PATCH, &host, &path, Some(body));
    let (_, stmts) = log
        .trace(&mut s, req, StatusCode::NO_CONTENT, MEMBER_ADD)
        .await;
    steps.push((MEMBER_ADD, stmts));
    let get = request(Method::GET, &host, &path, None);
    let group = call_json(&mut s, get, StatusCode::OK, "GET /Groups/{id}").await;
    assert_eq!(group["members"][0]["value"], user.as_str(), "{group}");
    let derived = [
        format!("SELECT count(*) FROM members WHERE user_id = {user}"),
        format!(
            "SELECT count(*) FROM member_roles r JOIN members m ON m.id = r.member_id
             WHERE m.user_id = {user} AND r.inherited_from IS NOT NULL"
        ),
    ];
    assert_eq!(
        count(db, &derived[0]).await,
        GROUP_PROJECTS,
        "project memberships of the member added"
    );
    assert_eq!(
        count(db, &derived[1]).await,
        GROUP_ROLES,
        "roles the member added inherits"
    );

    // Group delete: its members leave (and lose what they inherited), its project
    // memberships, roles and watcher rows go.
    let members: Vec<String> = (0..MEMBERS)
        .map(|j| (app.member0(0) + j).to_string())
        .collect();
    let owned = format!(
        "SELECT (SELECT count(*) FROM groups_users WHERE group_id = {delete_group})
              + (SELECT count(*) FROM watchers WHERE user_id = {delete_group})
              + (SELECT count(*) FROM members WHERE user_id IN ({delete_group}, {ids}))
              + (SELECT count(*) FROM member_roles r JOIN members m ON m.id = r.member_id
                   WHERE m.user_id IN ({delete_group}, {ids}))",
        ids = members.join(", ")
    );
    let before = count(db, &owned).await;
    // Its memberships and watcher rows, 3 project memberships of the group and of each
    // member, 4 roles in them.
    let expected = MEMBERS + WATCHERS + (MEMBERS + 1) * (GROUP_PROJECTS + GROUP_ROLES);
    assert_eq!(before, expected, "rows of the group to delete");
    let path = format!("/scim/v2/Groups/{delete_group}");
    let req = request(Method::DELETE, &host, &path, None);
    let (_, stmts) = log
        .trace(&mut s, req, StatusCode::NO_CONTENT, GROUP_DELETE)
        .await;
    steps.push((GROUP_DELETE, stmts));
    let get = request(Method::GET, &host, &path, None);
    call_json(
        &mut s,
        get,
        StatusCode::NOT_FOUND,
        "GET /Groups/{id} deleted",
    )
    .await;
    let row = format!("SELECT count(*) FROM users WHERE id = {delete_group}");
    assert_eq!(count(db, &row).await, 0, "the deleted group's row");
    assert_eq!(count(db, &owned).await, 0, "rows the deleted group left");
    let wrong = inconsistencies(db).await;
    assert!(wrong.is_empty(), "after the trial's delete: {wrong:?}");
    println!(
        "  trial: member add wrote {GROUP_PROJECTS} project memberships and {GROUP_ROLES} \
         inherited roles; group delete removed {before} rows besides the group's own"
    );
    println!();
    Trial {
        steps,
        add_user: user,
        add_group,
        delete_group,
        delete_member0: app.member0(0),
    }
}

impl Trial {
    fn statements(&self, what: &str) -> &[Logged] {
        self.steps
            .iter()
            .find(|(w, _)| *w == what)
            .map(|(_, s)| s.as_slice())
            .expect("a trial step")
    }

    /// The pgbench script of a phase: its trial statements, with the ids that differ per
    /// transaction drawn from the client's sequence (`k`, counted from 1; `off`, `nc` (the
    /// clients) and `first` (the run's first group) given per run with `-D`).
    fn script(&self, phase: Phase, app: &App) -> Script {
        let index = "\\set k :k + 1\n\\set i (:k - 1) * :nc + :client_id\n";
        // Transaction `k` of client `c` has index `i`; a delete finds no group past `count`.
        let (name, stmts, sets, vary, guard) = match phase {
            Phase::MemberAdd => (
                "member_add_hooks",
                self.statements(MEMBER_ADD),
                format!(
                    "\\set uid {} + :i % {USERS}\n\\set gid :first + :i % {ADD_GROUPS}\n",
                    app.user0
                ),
                vec![
                    (self.add_group.clone(), ":gid".into()),
                    (
                        format!("{{{}}}", self.add_group),
                        "('{' || :gid || '}')".into(),
                    ),
                    (self.add_user.clone(), ":uid".into()),
                    (
                        format!("{{{}}}", self.add_user),
                        "('{' || :uid || '}')".into(),
                    ),
                ],
                false,
            ),
            Phase::GroupDelete => {
                // Group `first + i` has members `m1..m5`, consecutive from `member0(i)`.
                let mut sets = format!(
                    "\\set gid :first + :i\n\\set m0 {} + (:i % {}) * {MEMBERS}\n",
                    app.user0,
                    USERS / MEMBERS
                );
                let mut vary = vec![
                    (self.delete_group.clone(), ":gid".to_string()),
                    (
                        format!("{{{}}}", self.delete_group),
                        "('{' || :gid || '}')".into(),
                    ),
                ];
                for j in 0..MEMBERS {
                    sets.push_str(&format!("\\set m{} :m0 + {j}\n", j + 1));
                    vary.push((
                        (self.delete_member0 + j).to_string(),
                        format!(":m{}", j + 1),
                    ));
                }
                (
                    "delete_group",
                    self.statements(GROUP_DELETE),
                    sets,
                    vary,
                    true,
                )
            }
        };
        let vary: Vec<(String, &str)> = vary.iter().map(|(v, e)| (v.clone(), e.as_str())).collect();
        let mut defines: Vec<(String, String)> = Vec::new();
        let mut text = format!(
            "-- per run: -D k=0 -D nc=<clients> -D first=<first group id> -D count=<groups>\n\
             {index}{sets}"
        );
        if guard {
            text.push_str("\\if :i < :count\n");
        }
        for stmt in stmts {
            text.push_str(&replay(stmt, &vary, &mut defines));
            text.push_str(";\n");
        }
        if guard {
            // Out of groups: the client idles until the run ends; these transactions are
            // left out of the figures.
            text.push_str("\\else\n\\sleep 100 ms\n\\endif\n");
        }
        Script {
            name,
            text,
            defines,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phases

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    MemberAdd,
    GroupDelete,
}

impl Phase {
    const ALL: [Phase; 2] = [Phase::MemberAdd, Phase::GroupDelete];

    fn label(self) -> &'static str {
        match self {
            Phase::MemberAdd => "member add (hooks)",
            Phase::GroupDelete => "group delete (cascade)",
        }
    }

    /// The trial step whose statements the phase sends.
    fn step(self) -> &'static str {
        match self {
            Phase::MemberAdd => MEMBER_ADD,
            Phase::GroupDelete => GROUP_DELETE,
        }
    }
}

/// What a delete run left, checked in SQL.
struct Check {
    who: &'static str,
    conns: usize,
    /// Groups deleted (answered 204; pgbench: transactions), and groups gone.
    deleted: u64,
    gone: u64,
    /// Groups written for the run.
    supply: u64,
    /// What is wrong with the rows left (see [`inconsistencies`]).
    what: String,
}

impl Check {
    fn ok(&self) -> bool {
        self.deleted == self.gone && self.what.is_empty()
    }

    /// Prints what is worth a line under the phase's figures: that the groups ran out (the
    /// window ended early), or what is wrong.
    fn note(&self) {
        if self.deleted >= self.supply {
            println!(
                "    ({}: ran out of groups, all {} deleted)",
                self.who, self.supply
            );
        }
        if !self.ok() {
            println!(
                "    {} @{}: {} deleted, {} groups gone; {}",
                self.who, self.conns, self.deleted, self.gone, self.what
            );
        }
    }
}

/// What every run needs.
struct Run<'a> {
    db: &'a postgres::Db,
    app: &'a App,
    addr: SocketAddr,
    /// The sidecar's pid.
    pid: u32,
    setup: &'a Setup,
    pgbench: &'a Pgbench,
    /// The bench-wide request sequence.
    seq: &'a Arc<AtomicU64>,
}

impl Run<'_> {
    /// Member add at `conns`: through the sidecar, then `script` by pgbench, each on 8 groups
    /// written anew.
    async fn member_add(&self, script: &Script, conns: usize) -> (Stats, Stats) {
        let groups = self.fresh(ADD_GROUPS, 0).await;
        let users: Vec<String> = (0..USERS)
            .map(|u| (self.app.user0 + u).to_string())
            .collect();
        let load = member_add_load(self.addr, conns, Arc::new(groups.ids()), Arc::new(users));
        let stats = self.sidecar(load).await;
        let groups = self.fresh(ADD_GROUPS, 0).await;
        let raw = self.pgbench.run_warm(
            script,
            conns,
            self.setup.secs,
            &groups.vars(conns),
            &|_, _| true,
        );
        (stats, raw)
    }

    /// Group delete at `conns`: through the sidecar, then `script` by pgbench, each on
    /// `supply` groups written anew; what each run left is checked into `checks`.
    async fn group_delete(
        &self,
        script: &Script,
        conns: usize,
        supply: u64,
        checks: &mut Vec<Check>,
    ) -> (Stats, Stats) {
        let groups = self.fresh(supply, MEMBERS).await;
        let base = self.seq.load(Ordering::Relaxed);
        let load = group_delete_load(self.addr, conns, groups.first, base).supply(supply);
        let stats = self.sidecar(load).await;
        checks.push(
            self.check("sidecar", conns, &groups, stats.total - stats.errors)
                .await,
        );
        let groups = self.fresh(supply, MEMBERS).await;
        let raw = self.pgbench.run_warm(
            script,
            conns,
            self.setup.secs,
            &groups.vars(conns),
            &|client, number| groups.had_one(conns, client, number),
        );
        checks.push(self.check("pgbench", conns, &groups, raw.total).await);
        (stats, raw)
    }

    /// Empties what the last run wrote, writes `count` groups of `members` and settles.
    async fn fresh(&self, count: u64, members: u64) -> Groups {
        self.app.reset(self.db).await;
        let groups = self.app.write_groups(self.db, count, members).await;
        quiesce(self.db).await;
        groups
    }

    /// A sidecar run of `load`.
    async fn sidecar(&self, load: Load) -> Stats {
        let load = load.server(self.pid).db(self.setup.postmaster);
        run_phase(&load, self.seq, self.setup.window()).await
    }

    /// What a delete run by `who` left: as many of `groups` gone as were `deleted`, and the
    /// derived rows as Redmine keeps them.
    async fn check(&self, who: &'static str, conns: usize, groups: &Groups, deleted: u64) -> Check {
        let remaining = count(
            self.db,
            &format!(
                "SELECT count(*) FROM users WHERE id BETWEEN {} AND {}",
                groups.first,
                groups.last()
            ),
        )
        .await;
        Check {
            who,
            conns,
            deleted,
            gone: groups.count - remaining,
            supply: groups.count,
            what: inconsistencies(self.db).await.join(", "),
        }
    }
}

/// Deletes one group per request: request `n` the group `first + n - base` (`base`: the
/// sequence number of the run's first request); the answer must be 204.
fn group_delete_load(addr: SocketAddr, conns: usize, first: u64, base: u64) -> Load {
    let host = host_header(addr);
    let make: MakeRequest = Arc::new(move |n| {
        let path = format!("/scim/v2/Groups/{}", first + (n - base));
        request(Method::DELETE, &host, &path, None)
    });
    let check: CheckResponse = Arc::new(|_, parts, body| {
        if parts.status != StatusCode::NO_CONTENT {
            return Err(unexpected("group delete", parts, body));
        }
        Ok(None)
    });
    Load::new("delete  DELETE /Groups/{id}", addr, conns, make, check)
}

// ---------------------------------------------------------------------------------------------
// Report

/// Prints the summary table: per phase and concurrency the sidecar/pgbench ratio and the
/// statements per request, then what the deletes left.
fn summary(
    report: &Report,
    pairs: &[Pair<Phase>],
    trial: &Trial,
    checks: &[Check],
    pool: usize,
    rss: u64,
) {
    let mut table = Summary::default();
    table.info("sidecar pool size (DATABASE_POOL_SIZE)", pool.to_string());
    for p in pairs {
        let (_, value) = p.versus(report);
        let figure = format!("{} @{}: sidecar / pgbench", p.phase.label(), p.conns);
        table.info(&figure, value);
    }
    for phase in Phase::ALL {
        table.info(
            &format!("{}: statements per request", phase.label()),
            trial.statements(phase.step()).len().to_string(),
        );
    }
    for c in checks {
        table.row(
            &format!("group delete @{} by {}: groups gone", c.conns, c.who),
            format!(
                "{} of {} deleted ({} written){}",
                c.gone,
                c.deleted,
                c.supply,
                if c.what.is_empty() {
                    String::new()
                } else {
                    format!("; {}", c.what)
                }
            ),
            "all, rows consistent".into(),
            verdict(c.ok(), 0.0),
        );
    }
    table.info("sidecar RSS peak", format!("{:.1} MiB", mib(rss)));
    report.errors_row(&mut table);
    report.noise_row(&mut table);
    table.print();
}
