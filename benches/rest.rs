//! REST benchmark: the sidecar serving `examples/rest` next to the same calls sent straight to
//! the same application, the legacy admin API of `examples/legacy-admin-api/`.
//!
//! ```text
//! cargo bench --bench rest                 # 1 s warm-up + 5 s measured per phase
//! BENCH_SECS=10 cargo bench --bench rest   # a longer measured window
//! eval "$(scripts/redmine-rest.sh)"; BENCH_APP=redmine cargo bench --bench rest
//! ```
//!
//! `BENCH_APP=redmine` runs the same phases against a real Redmine already running on
//! loopback (`REST_BASE_URL`, `REST_API_KEY`: what `scripts/redmine-rest.sh` exports) with
//! `examples/redmine-rest`, the direct calls being Redmine's own (`X-Redmine-API-Key`,
//! `?name=` for the search). Users are named after the clock, so the bench can run again on
//! the same instance. Redmine's WEBrick writes head and body apart without `TCP_NODELAY`; the
//! sidecar acknowledges such answers at once (`http_client::quick_ack`), and so does the
//! bench's client in this mode ([`support::QUICK_ACK`]), or every direct answer would wait
//! 40 ms for the kernel's delayed acknowledgement. It shows what the sidecar costs in front
//! of an app of the kind it is built for, where the fixture's figures show what it costs in
//! front of a very fast one.
//!
//! The app runs in this process on a runtime of its own (one worker thread: it serialises on
//! its SQLite database anyway) on a loopback port; the sidecar is the release binary (`run
//! --config examples/rest/scim-sidecar.toml`, after `migrate` for the state it keeps). Three
//! phases, each with 1 and with 32 concurrent clients, first through the sidecar, then straight
//! to the app with the app's own requests:
//!
//! - **create**: `POST /Users` with an Entra-like body, vs. `POST /users.json` with the same
//!   fields;
//! - **get**: `GET /Users/{id}`, vs. `GET /users/{id}.json`;
//! - **filter**: `GET /Users?filter=userName eq "…"`, vs. `GET /users.json?search=…` (the app
//!   has no exact search; the sidecar sends the same fuzzy search and keeps the exact match).
//!   The app's search scans all its users, so the fixture's filter phase runs on a fresh app
//!   seeded with [`FILTER_USERS`] users (and a sidecar of its own), not on the hundreds of
//!   thousands the create phase leaves.
//!
//! The get phase also sends the app's own `GET /users/{id}.json` through the sidecar's
//! pass-through (the app is its upstream as well), and through nginx as a reverse proxy
//! (one worker, `keepalive 64`) when it is installed: one proxy hop and no SCIM, references
//! for what any translation in front of this app can reach on this machine (no goal).
//!
//! The sidecar's request does more than the one call (a create: the app's create, then the
//! kept `externalId` written to the state store; the app itself refuses a taken login, and
//! with `on_delete = "hard"` there is no soft-deleted user to look for), so the ratio is
//! what an IdP gets of what the app alone does on this machine. Goal: ≥ 0.8 for each phase at
//! 32 clients; reported (PASS/MISS), never asserted. Each phase runs in [`ROUNDS`] rounds,
//! interleaved with its direct counterpart, of half `BENCH_SECS` each (at least 2 s, +1 s
//! warm-up, at most [`support::MAX_REQUESTS`]); the verdict is on the median of the rounds'
//! ratios. Everything shares the machine's cores.

#[path = "support/mod.rs"]
mod support;

#[path = "../examples/legacy-admin-api/api.rs"]
mod api;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::Full;

use support::{CONNS, Load, Sidecar};

const API_KEY: &str = "bench-api-key-0123456789abcdef";

/// The app the phases run against, and how its own requests are written.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    key_header: &'static str,
    key: HeaderValue,
    /// The app's fuzzy search parameter.
    search: &'static str,
    /// Concurrent clients per phase.
    conns: &'static [usize],
}

impl Target {
    /// From `BENCH_APP`: the fixture app (started here, returned to be kept alive) or a
    /// running Redmine; with the mapping file for it.
    fn pick() -> (Target, Option<App>, &'static str) {
        match std::env::var("BENCH_APP").as_deref() {
            Err(_) | Ok("" | "fixture") => {
                let app = App::start();
                let t = Target {
                    addr: app.addr,
                    key_header: "x-api-key",
                    key: HeaderValue::from_static(API_KEY),
                    search: "search",
                    conns: &CONNS,
                };
                (t, Some(app), "examples/rest/scim-sidecar.toml")
            }
            Ok("redmine") => {
                let var = |name: &str| {
                    std::env::var(name).unwrap_or_else(|_| {
                        panic!("BENCH_APP=redmine needs {name}: eval \"$(scripts/redmine-rest.sh)\" first")
                    })
                };
                let url = var("REST_BASE_URL");
                let addr: SocketAddr = url
                    .strip_prefix("http://")
                    .and_then(|a| a.trim_end_matches('/').parse().ok())
                    .filter(|a: &SocketAddr| a.ip().is_loopback())
                    .unwrap_or_else(|| {
                        panic!("REST_BASE_URL must be http://<loopback ip>:<port>, not {url}")
                    });
                let t = Target {
                    addr,
                    key_header: "x-redmine-api-key",
                    key: HeaderValue::from_str(&var("REST_API_KEY")).expect("REST_API_KEY"),
                    search: "name",
                    // One client: Redmine on SQLite (scripts/redmine-rest.sh) deadlocks on
                    // concurrent creates (its log: 500 after 5-20 s waiting for the database
                    // lock, direct as well), so only one-at-a-time figures mean anything.
                    conns: &[1],
                };
                support::QUICK_ACK.store(true, Ordering::Relaxed);
                (t, None, "examples/redmine-rest/scim-sidecar.toml")
            }
            Ok(other) => panic!("BENCH_APP is fixture or redmine, not {other}"),
        }
    }
}

/// The app, served on its own runtime in a thread of its own until dropped.
struct App {
    addr: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl App {
    fn start() -> App {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let (tx, rx) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("app runtime");
            rt.block_on(async move {
                let api = Arc::new(api::Api::open(None, API_KEY).expect("app database"));
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                api::serve(listener, api, rx).await;
            });
        });
        App {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request to the app `t` (or to `addr`, the sidecar passing it through), with its key.
fn app_request(
    method: Method,
    t: &Target,
    addr: SocketAddr,
    path: &str,
    body: Option<String>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, support::host_header(addr))
        .header(t.key_header, t.key.clone());
    if body.is_some() {
        b = b.header(header::CONTENT_TYPE, "application/json");
    }
    b.body(Full::new(body.map(Bytes::from).unwrap_or_default()))
        .expect("request")
}

/// The app's create body for the user the sidecar's bench user `n` becomes.
fn app_create_body(n: u64) -> String {
    app_user_body(&format!("direct.user{n}@example.com"), n)
}

/// The app's create body for user `n` with login and mail `name`.
fn app_user_body(name: &str, n: u64) -> String {
    serde_json::json!({"user": {
        "login": name, "firstname": format!("Given{n}"), "lastname": format!("Family{n}"),
        "mail": name, "status": 1,
    }})
    .to_string()
}

/// A phase straight to the app: `make` builds request `n`, `ok` is its success status.
fn direct(
    name: &str,
    addr: SocketAddr,
    conns: usize,
    make: Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>,
    ok: StatusCode,
    collect_id: bool,
) -> Load {
    let what = name.to_owned();
    Load::new(
        name,
        addr,
        conns,
        make,
        Arc::new(move |_, parts, body| {
            if parts.status != ok {
                return Err(support::unexpected(&what, parts, body));
            }
            if !collect_id {
                return Ok(None);
            }
            let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            Ok(v["user"]["id"].as_i64().map(|id| id.to_string()))
        }),
    )
}

/// Interleaved rounds of each phase: on a shared 2-core VM one window can be a third off the
/// next, the app direct included, so each round's ratio is taken against its own direct
/// window, and the summary shows their median.
const ROUNDS: usize = 3;

/// Each client count of `conns`, ROUNDS times (with the round, from 1), client counts
/// outermost.
fn rounds(conns: &[usize]) -> impl Iterator<Item = (&usize, usize)> {
    conns.iter().flat_map(|c| (1..=ROUNDS).map(move |r| (c, r)))
}

/// Requests per second of the sidecar and of the app direct, by phase, client count and
/// round.
#[derive(Default)]
struct Results {
    rows: Vec<Row>,
}

struct Row {
    phase: &'static str,
    conns: usize,
    /// Sidecar (or reference) and direct req/s of each round.
    rounds: Vec<(f64, f64)>,
    /// Whether the goal applies.
    goal: bool,
}

impl Results {
    fn add(
        &mut self,
        phase: &'static str,
        conns: usize,
        round: usize,
        rps: f64,
        direct: f64,
        goal: bool,
    ) {
        println!(
            "    round {round}: {phase}, {conns} clients: {:.2}",
            ratio(rps, direct)
        );
        match self
            .rows
            .iter_mut()
            .find(|r| r.phase == phase && r.conns == conns)
        {
            Some(row) => row.rounds.push((rps, direct)),
            None => self.rows.push(Row {
                phase,
                conns,
                rounds: vec![(rps, direct)],
                goal,
            }),
        }
    }

    /// The summary: per row, the median ratio over the rounds (each round's next to its own
    /// direct window), the rounds' ratios, and the verdict at `goal_conns` clients.
    fn print(&self, goal_conns: usize) {
        println!();
        println!(
            "summary (goal: sidecar ≥ 0.8 × direct at {goal_conns} clients, median of {ROUNDS} \
             rounds; pass-through and nginx hop: the app's own GET through one proxy hop, for \
             reference)"
        );
        println!(
            "  phase        clients  sidecar req/s  direct req/s  ratio  rounds          verdict"
        );
        for row in &self.rows {
            let mut ratios: Vec<f64> = row.rounds.iter().map(|&(s, d)| ratio(s, d)).collect();
            let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            ratios.sort_by(f64::total_cmp);
            let mid = ratios[ratios.len() / 2];
            let median = |f: fn(&(f64, f64)) -> f64| {
                let mut v: Vec<f64> = row.rounds.iter().map(f).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (rps, direct) = (median(|r| r.0), median(|r| r.1));
            let verdict = match (row.goal && row.conns == goal_conns, mid >= 0.8) {
                (false, _) => "-",
                (true, true) => "PASS",
                (true, false) => "MISS",
            };
            let listed = listed.join(" ");
            println!(
                "  {:<12} {:>7} {rps:>14.0} {direct:>13.0} {mid:>6.2}  {listed:<15} {verdict}",
                row.phase, row.conns
            );
        }
    }
}

fn ratio(rps: f64, direct: f64) -> f64 {
    if direct > 0.0 { rps / direct } else { 0.0 }
}

/// Users in the app of the fixture's filter phase: an organisation of some size, whose every
/// search the app answers by scanning them all.
const FILTER_USERS: u64 = 10_000;

/// Creates users `0..n` in the app `t` (named as the sidecar's bench users, so that a SCIM
/// filter finds each), over one connection.
async fn seed(t: &Target, n: u64) {
    let mut sender = support::connect(t.addr).await.expect("connect to the app");
    for i in 0..n {
        let name = support::user_name(i);
        let body = Some(app_user_body(&name, i));
        let req = app_request(Method::POST, t, t.addr, "/users.json", body);
        let (parts, body) = support::exchange(&mut sender, req).await.expect("seed");
        assert_eq!(
            parts.status,
            StatusCode::CREATED,
            "seeding {name}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// Starts the release binary on `config` in front of the app `t` (its API and its upstream),
/// with a fresh state file it has migrated; returns it and its time to ready.
fn start_sidecar(config: &Path, t: &Target) -> (Sidecar, Duration) {
    let base_url = format!("http://{}", t.addr);
    let key = t.key.to_str().expect("key").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.db");
    std::fs::write(&state, "").expect("state db");
    let vars: Vec<(&str, &OsStr)> = vec![
        ("REST_BASE_URL", OsStr::new(base_url.as_str())),
        ("REST_API_KEY", OsStr::new(key.as_str())),
        ("SCIM_SIDECAR_STATE", state.as_os_str()),
    ];
    let migrate = std::process::Command::new(support::binary())
        .args(["migrate", "--config"])
        .arg(config)
        .envs(vars.iter().copied())
        .env("SCIM_TOKEN", support::TOKEN)
        .output()
        .expect("migrate");
    assert!(
        migrate.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    Sidecar::start(dir, config, &base_url, &vars)
}

fn main() {
    let (target, app, config) = Target::pick();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join(config);
    support::print_intro(
        "scim-sidecar REST bench (vs. the same calls straight to the app)",
        &config,
    );
    // The app is the sidecar's upstream too, for the pass-through reference of the get phase.
    let (s, ready) = start_sidecar(&config, &target);
    println!("  sidecar ready in {:.0} ms", ready.as_secs_f64() * 1e3);
    // ROUNDS interleaved rounds of every phase, each with a share of the window.
    let window = Duration::from_secs(support::bench_secs().div_ceil(2).max(2));
    let rt = support::runtime();
    let mut results = Results::default();

    // === create ===
    let mut created: Vec<(u64, String)> = Vec::new();
    let mut direct_ids: Vec<String> = Vec::new();
    // Names a running app may hold from an earlier run are not taken again.
    let first = if app.is_some() {
        0
    } else {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.expect("clock").as_secs() * 1000
    };
    let (mut seq_base, mut direct_base) = (first, first);
    for (&conns, round) in rounds(target.conns) {
        let seq = Arc::new(AtomicU64::new(seq_base));
        let stats = rt.block_on(support::run_phase(
            &support::create_load(s.addr, conns, true).server(s.proc.pid),
            &seq,
            window,
        ));
        seq_base = seq.load(Ordering::Relaxed) + 1;
        created.extend(stats.collected.iter().cloned());
        let t = target.clone();
        let load = direct(
            "create  POST /users.json (direct)",
            t.addr,
            conns,
            Arc::new(move |n| {
                let body = Some(app_create_body(n));
                app_request(Method::POST, &t, t.addr, "/users.json", body)
            }),
            StatusCode::CREATED,
            true,
        );
        let seq = Arc::new(AtomicU64::new(direct_base));
        let d = rt.block_on(support::run_phase(&load, &seq, window));
        direct_base = seq.load(Ordering::Relaxed) + 1;
        direct_ids.extend(d.collected.iter().map(|(_, id)| id.clone()));
        results.add("create", conns, round, stats.rps, d.rps, true);
    }
    assert!(
        !created.is_empty() && !direct_ids.is_empty(),
        "no user was created"
    );

    // === get ===
    let ids = Arc::new(created.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>());
    let direct_ids = Arc::new(direct_ids);
    let nginx = support::Nginx::start(target.addr, "/");
    for (&conns, round) in rounds(target.conns) {
        let host = support::host_header(s.addr);
        let ids2 = ids.clone();
        let load = Load::new(
            "get     GET /Users/{id}",
            s.addr,
            conns,
            Arc::new(move |n| {
                let id = &ids2[(n % ids2.len() as u64) as usize];
                support::request(Method::GET, &host, &format!("/scim/v2/Users/{id}"), None)
            }),
            Arc::new(|_, parts, body| {
                if parts.status != StatusCode::OK {
                    return Err(support::unexpected("get", parts, body));
                }
                Ok(None)
            }),
        )
        .server(s.proc.pid);
        let stats = rt.block_on(support::run_phase(
            &load,
            &Arc::new(AtomicU64::new(0)),
            window,
        ));
        // The app's own GET, straight to it and through the sidecar's pass-through: what one
        // proxy hop in front of this app costs on this machine, the ceiling of any
        // translation there.
        let app_get = |name: &str, addr: SocketAddr| {
            let (ids, t) = (direct_ids.clone(), target.clone());
            let make: Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync> = Arc::new(move |n| {
                let id = &ids[(n % ids.len() as u64) as usize];
                app_request(Method::GET, &t, addr, &format!("/users/{id}.json"), None)
            });
            let mut load = direct(name, addr, conns, make, StatusCode::OK, false);
            if addr == s.addr {
                load = load.server(s.proc.pid);
            } else if let Some(n) = nginx.as_ref().filter(|n| n.addr == addr) {
                load = load.server(n.proc.pid);
            }
            rt.block_on(support::run_phase(
                &load,
                &Arc::new(AtomicU64::new(0)),
                window,
            ))
        };
        let p = app_get("get     GET /users/{id}.json (passed through)", s.addr);
        let n = nginx
            .as_ref()
            .map(|n| app_get("get     GET /users/{id}.json (through nginx)", n.addr));
        let d = app_get("get     GET /users/{id}.json (direct)", target.addr);
        results.add("get", conns, round, stats.rps, d.rps, true);
        results.add("pass-through", conns, round, p.rps, d.rps, false);
        if let Some(n) = n {
            results.add("nginx hop", conns, round, n.rps, d.rps, false);
        }
    }
    if nginx.is_none() {
        println!("  nginx not installed (apt-get install nginx for the nginx hop's reference)");
    }
    drop(nginx);

    // === filter ===
    // The app's search scans its whole table, so its cost grows with what the create phase
    // left there (hundreds of thousands of users at 32 clients: a scan of 0.1 s, a handful
    // of requests per window, a verdict decided by noise). The fixture's filter phase runs
    // on an app of its own holding FILTER_USERS users, behind a sidecar of its own.
    let (s, app, target, names) = match app {
        Some(_) => {
            s.print_log();
            drop(s);
            drop(app);
            let app = App::start();
            let t = Target {
                addr: app.addr,
                ..target.clone()
            };
            rt.block_on(seed(&t, FILTER_USERS));
            let (s, _) = start_sidecar(&config, &t);
            let names = (0..FILTER_USERS).map(support::user_name).collect();
            (s, Some(app), t, names)
        }
        None => {
            let names = created.iter().map(|(n, _)| support::user_name(*n));
            (s, app, target, names.collect())
        }
    };
    let names: Arc<Vec<String>> = Arc::new(names);
    for (&conns, round) in rounds(target.conns) {
        let stats = rt.block_on(support::run_phase(
            &support::filter_load(s.addr, conns, names.clone()).server(s.proc.pid),
            &Arc::new(AtomicU64::new(0)),
            window,
        ));
        let (t, names2) = (target.clone(), names.clone());
        let load = direct(
            "filter  GET /users.json?search (direct)",
            t.addr,
            conns,
            Arc::new(move |n| {
                let name = &names2[(n % names2.len() as u64) as usize];
                let q: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
                let path = format!("/users.json?{}={q}", t.search);
                app_request(Method::GET, &t, t.addr, &path, None)
            }),
            StatusCode::OK,
            false,
        );
        let d = rt.block_on(support::run_phase(
            &load,
            &Arc::new(AtomicU64::new(0)),
            window,
        ));
        results.add("filter", conns, round, stats.rps, d.rps, true);
    }

    results.print(target.conns[target.conns.len() - 1]);
    s.print_log();
    drop(s);
    drop(app);
}
