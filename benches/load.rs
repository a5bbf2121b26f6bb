//! Load benchmark of the quickstart setup (SQLite), against the release binary.
//!
//! Run it with
//!
//! ```text
//! cargo bench --bench load                 # 1 s warm-up + 5 s measured per phase
//! BENCH_SECS=10 cargo bench --bench load   # a longer measured window
//! ```
//!
//! It starts the real `scim-sidecar` binary (`run --config examples/quickstart/scim-sidecar.toml`)
//! on loopback ports, with a fresh database per start, in front of a minimal hyper app started
//! inside this process (`GET` anything → `200 hello, world\n`, 13 bytes). It prints:
//!
//! - **Start to ready**: from spawning the process until `GET /readyz` on the admin listener
//!   answers 200 (polled every 2 ms), median of 5 starts, each on a fresh database file that the
//!   sidecar creates from `schema.sql`.
//! - **RSS idle**: `VmRSS` of the sidecar once ready, before any load.
//! - **RSS under load**: the highest `VmRSS` sampled every 50 ms during every load phase, and
//!   `VmHWM` (the kernel's own peak) read at the end; the larger of the two is the figure.
//! - **SCIM phases**, each with 1 and with 32 concurrent keep-alive HTTP/1.1 connections sending
//!   back to back: *create* (`POST /scim/v2/Users`, unique userNames, an Entra-like body),
//!   *filter* (`GET /scim/v2/Users?filter=userName eq "…"`, rotating over created users) and
//!   *patch* (`PATCH /scim/v2/Users/{id}`, Entra-style `Replace` of `displayName` and `active`).
//!   For each: requests per second over the measured window, and p50/p99/max latency (time from
//!   sending the request until its whole body is read). Every response must have the expected
//!   status (201/200/200) and shape; errors are counted, and a phase with more than 1% errors
//!   aborts the bench.
//! - Per phase, also: `secs`, the measured window (shorter than `BENCH_SECS` when the cap of
//!   2,000,000 requests is reached first), and `CPU us/req` as `server+bench`: CPU time (user +
//!   system, from `/proc/PID/stat`, 10 ms ticks) per request of the server under test (the
//!   sidecar, or nginx and its workers; `-` for the app itself) and of this process (load
//!   generator and app), warm-up included; and `other cores`, the CPU every other process on
//!   the machine used meanwhile (a busy neighbour makes the figures noisy). Together they show
//!   where the time goes on a shared machine.
//! - **Pass-through**: the same small `GET /hello` against the app directly and through the
//!   sidecar (and through nginx as a reverse proxy, if `nginx` is on `PATH`), with 1 and 32
//!   connections, in three interleaved rounds (direct, sidecar, nginx, direct, …) of half the
//!   window each; the summary gives the median over the rounds of the ratio of requests per
//!   second sidecar/direct (and nginx/direct), each round against its own direct. The target
//!   applies at 32 connections; with 1 connection every request waits for the process wake-ups of
//!   a second hop, so that ratio is a latency figure. nginx (one worker, `keepalive 64` to the
//!   app, no per-connection request limits) is a reference for what any proxy costs here.
//!
//! A summary table puts each headline figure next to its target. Timing targets are reported
//! (PASS/MISS), never asserted: the bench fails only on request errors or if the sidecar does not
//! start. Load generator, sidecar and app share the machine's cores, so the figures are a
//! relative picture of this machine, not of the sidecar alone.

use std::convert::Infallible;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

/// The bearer token the benchmarked sidecar accepts (long enough not to draw a warning).
const TOKEN: &str = "bench-token-0123456789abcdef0123456789abcdef";
/// What the app answers to every request.
const HELLO: &[u8] = b"hello, world\n";
/// Starts measured for "start to ready".
const STARTS: usize = 5;
/// How often readiness is polled, and how long a start may take at most.
const READY_POLL: Duration = Duration::from_millis(2);
const READY_DEADLINE: Duration = Duration::from_secs(10);
/// Warm-up before each measured window (not counted).
const WARMUP: Duration = Duration::from_secs(1);
/// Measured window per phase unless `BENCH_SECS` says otherwise.
const DEFAULT_SECS: u64 = 5;
/// Hard cap on requests per phase (warm-up and measured window each).
const MAX_REQUESTS: u64 = 2_000_000;
/// Per-request and per-connect deadlines.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a stopped process may take to exit on SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// RSS sampling period.
const RSS_PERIOD: Duration = Duration::from_millis(50);
/// Concurrency levels of every phase.
const CONNS: [usize; 2] = [1, 32];
/// Interleaved rounds of the pass-through phases (the summary shows medians).
const PASS_ROUNDS: usize = 3;
/// A phase aborts the bench above this share of failed requests.
const MAX_ERROR_RATE: f64 = 0.01;

// Targets.
const TARGET_READY_MS: f64 = 100.0;
const TARGET_RSS_IDLE_MIB: f64 = 15.0;
const TARGET_RSS_LOAD_MIB: f64 = 50.0;
const TARGET_SCIM_RPS: f64 = 3_000.0;
const TARGET_PASS_RATIO: f64 = 0.45;

fn main() {
    let secs = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_SECS);
    let window = Duration::from_secs(secs);
    // Pass-through runs PASS_ROUNDS interleaved rounds; each phase gets a share of the window.
    let pass_window = Duration::from_secs(secs.div_ceil(2).max(2));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("scim-sidecar load benchmark");
    println!("  binary:  {}", env!("CARGO_BIN_EXE_scim-sidecar"));
    println!("  config:  {}", quickstart_config().display());
    println!(
        "  cores: {cores} (shared by load generator, sidecar and app); per phase: {} s warm-up, \
         {secs} s measured (BENCH_SECS), at most {MAX_REQUESTS} requests",
        WARMUP.as_secs()
    );
    println!();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let app_connections = Arc::new(AtomicU64::new(0));
    let app = rt.block_on(start_app(app_connections.clone()));

    // 1. Start to ready, on a fresh database each time; the last start stays up for the load.
    println!("== start to ready ({STARTS} starts, fresh database each) ==");
    let mut starts = Vec::new();
    let mut sidecar = None;
    for i in 0..STARTS {
        let (s, ready) = Sidecar::start(app);
        println!("  start {}: {:.1} ms", i + 1, ms(ready));
        starts.push(ready);
        if i + 1 < STARTS {
            let mut s = s;
            s.proc.stop();
        } else {
            sidecar = Some(s);
        }
    }
    let mut sidecar = sidecar.expect("at least one start");
    starts.sort();
    let ready_median = starts[starts.len() / 2];
    println!("  median: {:.1} ms", ms(ready_median));
    println!();

    // 2. RSS idle.
    std::thread::sleep(Duration::from_millis(200));
    let pid = sidecar.proc.pid;
    let rss_idle = proc_status_kib(pid, "VmRSS").expect("VmRSS of the sidecar");
    println!("== memory ==");
    println!("  RSS idle: {:.1} MiB", mib(rss_idle));
    println!();

    rt.block_on(sanity_check(sidecar.addr));

    let sampler = RssSampler::start(pid);
    let mut report = Report::default();
    let seq = Arc::new(AtomicU64::new(0));

    // 3. SCIM phases.
    println!("== SCIM ==");
    Report::header();
    let mut created: Vec<(u64, String)> = Vec::new();
    for conns in CONNS {
        let stats = rt.block_on(run_phase(
            &create_load(sidecar.addr, conns).server(pid),
            &seq,
            window,
        ));
        created.extend(stats.collected.iter().cloned());
        report.add(stats);
    }
    assert!(
        !created.is_empty(),
        "no user was created; nothing to filter or patch"
    );
    let names: Arc<Vec<String>> = Arc::new(created.iter().map(|(n, _)| user_name(*n)).collect());
    let ids: Arc<Vec<String>> = Arc::new(created.iter().map(|(_, id)| id.clone()).collect());
    for conns in CONNS {
        let load = filter_load(sidecar.addr, conns, names.clone()).server(pid);
        report.add(rt.block_on(run_phase(&load, &seq, window)));
    }
    for conns in CONNS {
        let load = patch_load(sidecar.addr, conns, ids.clone()).server(pid);
        report.add(rt.block_on(run_phase(&load, &seq, window)));
    }
    println!("  ({} users created)", created.len());
    println!();

    // 4. Pass-through: direct, through the sidecar, through nginx.
    println!("== pass-through (GET /hello, {} byte body) ==", HELLO.len());
    Report::header();
    let mut targets = vec![("direct", app, None), ("sidecar", sidecar.addr, Some(pid))];
    let nginx = Nginx::start(app);
    if let Some(n) = &nginx {
        targets.push(("nginx", n.addr, Some(n.proc.pid)));
    }
    // Interleaved rounds, medians in the summary: on a shared 2-core VM one phase can be
    // 15% off the next, and alternating the targets spreads that noise over all of them.
    for round in 1..=PASS_ROUNDS {
        for conns in CONNS {
            for (name, addr, server) in &targets {
                let mut load = hello_load(name, *addr, conns);
                load.server_pid = *server;
                let opened = app_connections.load(Ordering::Relaxed);
                let mut stats = rt.block_on(run_phase(&load, &seq, pass_window));
                stats.round = round;
                report.add(stats);
                let opened = app_connections.load(Ordering::Relaxed) - opened;
                if *name != "direct" && opened > conns as u64 {
                    println!(
                        "    the app saw {opened} new connections for {conns} client connections"
                    );
                }
            }
        }
    }
    if nginx.is_none() {
        println!("  nginx not installed (apt-get install nginx to compare)");
    }
    drop(nginx);
    println!();

    // RSS under load: the sampled peak, and the kernel's high-water mark.
    let sampled = sampler.stop();
    let hwm = proc_status_kib(pid, "VmHWM").unwrap_or(0);
    let rss_load = sampled.max(hwm);
    println!("== memory ==");
    println!(
        "  RSS under load: sampled peak {:.1} MiB, VmHWM {:.1} MiB",
        mib(sampled),
        mib(hwm)
    );
    let stopped = sidecar.proc.stop();
    if let Some(d) = stopped {
        println!("  sidecar stopped {:.0} ms after SIGTERM", ms(d));
    }
    sidecar.print_log();
    println!();

    report.summary(ready_median, rss_idle, rss_load, nginx_present());
    rt.shutdown_timeout(Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process that is stopped (SIGTERM, then SIGKILL after a deadline) when dropped, so a
/// panic anywhere in the bench does not leave it running.
struct Proc {
    child: Option<Child>,
    pid: u32,
    name: &'static str,
}

impl Proc {
    fn new(child: Child, name: &'static str) -> Proc {
        Proc {
            pid: child.id(),
            child: Some(child),
            name,
        }
    }

    /// Whether the process has exited.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, wait up to [`STOP_DEADLINE`], then SIGKILL. Returns how long the exit took.
    fn stop(&mut self) -> Option<Duration> {
        let mut child = self.child.take()?;
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        let t0 = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        while t0.elapsed() < STOP_DEADLINE {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!(
            "{} (pid {}) did not exit within {:?} of SIGTERM; killing it",
            self.name, self.pid, STOP_DEADLINE
        );
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running sidecar on a fresh database.
struct Sidecar {
    proc: Proc,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// Spawns the release binary and waits for `/readyz`; returns it and the time to ready.
    fn start(app: SocketAddr) -> (Sidecar, Duration) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.db");
        let log = dir.path().join("sidecar.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let addr = free_port();
        let admin = free_port();
        let t0 = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_scim-sidecar"))
            .arg("run")
            .arg("--config")
            .arg(quickstart_config())
            .env("SCIM_SIDECAR_LISTEN", addr.to_string())
            .env("SCIM_SIDECAR_ADMIN_LISTEN", admin.to_string())
            .env("SCIM_TOKEN", TOKEN)
            .env("QUICKSTART_DB", &db)
            .env("UPSTREAM_URL", format!("http://{app}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn scim-sidecar");
        let mut s = Sidecar {
            proc: Proc::new(child, "scim-sidecar"),
            addr,
            log,
            _dir: dir,
        };
        loop {
            if let Some(status) = s.proc.exited() {
                s.print_log();
                panic!("scim-sidecar exited before it was ready: {status}");
            }
            if get_status(admin, "/readyz") == Some(200) {
                return (s, t0.elapsed());
            }
            if t0.elapsed() > READY_DEADLINE {
                s.print_log();
                panic!("scim-sidecar was not ready within {READY_DEADLINE:?}");
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// Prints what the sidecar logged (at `RUST_LOG=warn`: warnings and errors only).
    fn print_log(&self) {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            println!("  sidecar log (RUST_LOG=warn): empty");
            return;
        }
        println!("  sidecar log (RUST_LOG=warn): {} lines", lines.len());
        for l in lines.iter().take(10) {
            println!("    {l}");
        }
        if lines.len() > 10 {
            println!("    … {} more", lines.len() - 10);
        }
    }
}

/// nginx as a reverse proxy to the same app, if it is installed.
struct Nginx {
    proc: Proc,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn nginx_present() -> bool {
    nginx_path().is_some()
}

fn nginx_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

impl Nginx {
    fn start(app: SocketAddr) -> Option<Nginx> {
        let bin = nginx_path()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let tmp = dir.path().display().to_string();
        let addr = free_port();
        let conf = dir.path().join("nginx.conf");
        let text = format!(
            "daemon off;\n\
             worker_processes 1;\n\
             error_log stderr;\n\
             pid {tmp}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \x20   access_log off;\n\
             \x20   keepalive_requests 1000000;\n\
             \x20   client_body_temp_path {tmp}/client_body;\n\
             \x20   proxy_temp_path {tmp}/proxy;\n\
             \x20   fastcgi_temp_path {tmp}/fastcgi;\n\
             \x20   uwsgi_temp_path {tmp}/uwsgi;\n\
             \x20   scgi_temp_path {tmp}/scgi;\n\
             \x20   upstream app {{ server {app}; keepalive 64; keepalive_requests 1000000; }}\n\
             \x20   server {{\n\
             \x20       listen {addr};\n\
             \x20       location / {{\n\
             \x20           proxy_pass http://app;\n\
             \x20           proxy_http_version 1.1;\n\
             \x20           proxy_set_header Connection \"\";\n\
             \x20       }}\n\
             \x20   }}\n\
             }}\n"
        );
        std::fs::write(&conf, text).expect("write nginx.conf");
        let log = File::create(dir.path().join("nginx.log")).expect("nginx log");
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(format!("{tmp}/"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("nginx log"))
            .stderr(log)
            .spawn()
            .expect("spawn nginx");
        let mut n = Nginx {
            proc: Proc::new(child, "nginx"),
            addr,
            _dir: dir,
        };
        let t0 = Instant::now();
        loop {
            if let Some(status) = n.proc.exited() {
                let log = std::fs::read_to_string(n._dir.path().join("nginx.log"));
                panic!(
                    "nginx exited at start ({status}): {}",
                    log.unwrap_or_default()
                );
            }
            if get_status(addr, "/hello") == Some(200) {
                return Some(n);
            }
            assert!(
                t0.elapsed() < READY_DEADLINE,
                "nginx did not answer within {READY_DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The quickstart config file.
fn quickstart_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/scim-sidecar.toml")
}

/// A loopback port that was free a moment ago (bound, read, released).
fn free_port() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr")
}

/// One blocking `GET` with `Connection: close`; the status, or `None` if there is no answer.
fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = StdStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    s.set_nodelay(true).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => return None,
            Ok(k) => n += k,
        }
    }
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

/// A field of `/proc/PID/status`, in KiB.
fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// CPU time (user + system) a process has used so far, in microseconds; `pid` may be "self".
fn cpu_us(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / clock_ticks())
}

/// Busy CPU time of the whole machine so far (all cores; everything but idle and iowait), in
/// microseconds.
fn machine_busy_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let v: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy = v.iter().sum::<u64>().checked_sub(v.get(3)? + v.get(4)?)?;
    Some(busy * 1_000_000 / clock_ticks())
}

/// CPU time of a process and its direct children (nginx's workers), in microseconds.
fn tree_cpu_us(pid: u32) -> Option<u64> {
    let own = cpu_us(&pid.to_string())?;
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let kids: u64 = children.split_whitespace().filter_map(cpu_us).sum();
    Some(own + kids)
}

/// `sysconf(_SC_CLK_TCK)`, via `getconf` (100 on Linux in practice).
fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Samples `VmRSS` of a process every [`RSS_PERIOD`] until stopped; keeps the peak.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                // Bounded even if never told to stop: one hour of samples.
                for _ in 0..(3600 * 1000 / RSS_PERIOD.as_millis() as u64) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(kib) = proc_status_kib(pid, "VmRSS") {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(RSS_PERIOD);
                }
            })
        };
        RssSampler { stop, peak, thread }
    }

    /// Stops sampling; the peak in KiB.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// The app

/// The "legacy app": a minimal hyper HTTP/1.1 server answering `200 hello, world\n` to anything;
/// counts the connections it accepts (a proxy should reuse its upstream connections).
async fn start_app(connections: Arc<AtomicU64>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    tokio::spawn(async move {
        // Ends with the runtime.
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                    let mut resp = Response::new(Full::new(Bytes::from_static(HELLO)));
                    resp.headers_mut()
                        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// Load generator

/// Builds request number `n` (a bench-wide sequence number).
type MakeRequest = Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>;
/// Checks the answer to request `n`; `Ok(Some(x))` keeps `(n, x)` for later phases.
type CheckResponse = Arc<
    dyn Fn(u64, &http::response::Parts, &Bytes) -> Result<Option<String>, String> + Send + Sync,
>;

/// One phase: `conns` connections sending `make` requests back to back to `addr`.
struct Load {
    name: String,
    addr: SocketAddr,
    conns: usize,
    make: MakeRequest,
    check: CheckResponse,
    /// The process (and its children) answering, when it is not this one: its CPU is reported.
    server_pid: Option<u32>,
}

impl Load {
    fn server(mut self, pid: u32) -> Load {
        self.server_pid = Some(pid);
        self
    }
}

/// What a phase measured.
struct Stats {
    name: String,
    conns: usize,
    /// Requests started in the measured window (and answered).
    measured: u64,
    /// Failed requests, warm-up included (wrong status or shape, transport errors).
    errors: u64,
    /// All requests, warm-up included.
    total: u64,
    /// Length of the measured window (shorter than asked if the cap was reached).
    secs: f64,
    rps: f64,
    /// CPU time per request (warm-up included) of the server process, and of this process
    /// (load generator and app).
    server_cpu_us: Option<f64>,
    bench_cpu_us: f64,
    /// CPU used meanwhile by every other process on the machine, in cores (noise).
    other_cores: f64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    collected: Vec<(u64, String)>,
    /// Round of an interleaved series (pass-through), 0 otherwise.
    round: usize,
}

/// State shared by a phase's connection tasks.
struct Shared {
    seq: Arc<AtomicU64>,
    warm_end: Instant,
    end: Instant,
    warm_issued: AtomicU64,
    issued: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

#[derive(Default)]
struct TaskOut {
    latencies_us: Vec<u32>,
    last_done: Option<Instant>,
    errors: u64,
    total: u64,
    reconnects: u64,
    collected: Vec<(u64, String)>,
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    let (sender, conn) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)),
    )
    .await
    .map_err(|_| "handshake timed out".to_string())?
    .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer, within [`REQUEST_TIMEOUT`].
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(http::response::Parts, Bytes), String> {
    let fut = async {
        let resp = sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, hyper::Error>((parts, body))
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("transport: {e}")),
        Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
    }
}

fn note_error(shared: &Shared, out: &mut TaskOut, e: String) {
    out.errors += 1;
    let mut first = shared.first_error.lock().expect("lock");
    if first.is_none() {
        *first = Some(e);
    }
}

/// One connection: requests back to back until the window closes or the cap is reached;
/// reconnects after a transport error.
async fn connection_task(
    addr: SocketAddr,
    shared: Arc<Shared>,
    make: MakeRequest,
    check: CheckResponse,
) -> TaskOut {
    let mut out = TaskOut {
        latencies_us: Vec::with_capacity(16 * 1024),
        ..TaskOut::default()
    };
    'connection: while Instant::now() < shared.end {
        let mut sender = match connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                out.total += 1;
                note_error(&shared, &mut out, e);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            // A keep-alive connection the server closed (e.g. `Connection: close` after its
            // per-connection request limit) is replaced; no request was lost, so it is counted
            // apart from errors.
            match tokio::time::timeout(REQUEST_TIMEOUT, sender.ready()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    out.reconnects += 1;
                    continue 'connection;
                }
                Err(_) => {
                    out.total += 1;
                    note_error(&shared, &mut out, "connection never ready".into());
                    continue 'connection;
                }
            }
            let start = Instant::now();
            if start >= shared.end {
                break 'connection;
            }
            let measured = start >= shared.warm_end;
            let counter = if measured {
                &shared.issued
            } else {
                &shared.warm_issued
            };
            if counter.fetch_add(1, Ordering::Relaxed) >= MAX_REQUESTS {
                if measured {
                    break 'connection;
                }
                // Warm-up cap reached: wait for the measured window.
                tokio::time::sleep_until(shared.warm_end.into()).await;
                continue;
            }
            let n = shared.seq.fetch_add(1, Ordering::Relaxed);
            let result = exchange(&mut sender, make(n)).await;
            let done = Instant::now();
            out.total += 1;
            let broken = match result {
                Ok((parts, body)) => {
                    match check(n, &parts, &body) {
                        Ok(Some(x)) => out.collected.push((n, x)),
                        Ok(None) => {}
                        Err(e) => note_error(&shared, &mut out, e),
                    }
                    false
                }
                Err(e) => {
                    note_error(&shared, &mut out, e);
                    true
                }
            };
            if measured {
                let us = (done - start).as_micros();
                out.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                out.last_done = Some(done);
            }
            if broken {
                continue 'connection;
            }
        }
    }
    out
}

/// Runs one phase: warm-up, then the measured window; prints its line.
async fn run_phase(load: &Load, seq: &Arc<AtomicU64>, window: Duration) -> Stats {
    let server_cpu0 = load.server_pid.and_then(tree_cpu_us);
    let bench_cpu0 = cpu_us("self");
    let machine0 = machine_busy_us();
    let begin = Instant::now();
    let warm_end = begin + WARMUP;
    let shared = Arc::new(Shared {
        seq: seq.clone(),
        warm_end,
        end: warm_end + window,
        warm_issued: AtomicU64::new(0),
        issued: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
    });
    let handles: Vec<_> = (0..load.conns)
        .map(|_| {
            tokio::spawn(connection_task(
                load.addr,
                shared.clone(),
                load.make.clone(),
                load.check.clone(),
            ))
        })
        .collect();
    let deadline = tokio::time::Instant::from(shared.end + REQUEST_TIMEOUT + CONNECT_TIMEOUT);
    let mut outs = Vec::with_capacity(handles.len());
    let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
    for h in handles {
        match tokio::time::timeout_at(deadline, h).await {
            Ok(Ok(o)) => outs.push(o),
            Ok(Err(e)) => panic!("{}: a connection task failed: {e}", load.name),
            Err(_) => {
                aborts.iter().for_each(|a| a.abort());
                panic!("{}: the phase did not end by its deadline", load.name);
            }
        }
    }

    let mut lat: Vec<u32> = Vec::new();
    let (mut errors, mut total, mut reconnects, mut last) = (0, 0, 0, warm_end);
    let mut collected = Vec::new();
    for o in outs {
        lat.extend_from_slice(&o.latencies_us);
        errors += o.errors;
        total += o.total;
        reconnects += o.reconnects;
        if let Some(d) = o.last_done {
            last = last.max(d);
        }
        collected.extend(o.collected);
    }
    let per_request = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if total > 0 => Some(b.saturating_sub(a) as f64 / total as f64),
        _ => None,
    };
    let (server_cpu1, bench_cpu1) = (load.server_pid.and_then(tree_cpu_us), cpu_us("self"));
    let wall = begin.elapsed().as_secs_f64();
    let delta = |a: Option<u64>, b: Option<u64>| b.unwrap_or(0).saturating_sub(a.unwrap_or(0));
    let ours = delta(server_cpu0, server_cpu1) + delta(bench_cpu0, bench_cpu1);
    let other_cores =
        delta(machine0, machine_busy_us()).saturating_sub(ours) as f64 / 1e6 / wall.max(1e-3);
    let server_cpu_us = per_request(server_cpu0, server_cpu1);
    let bench_cpu_us = per_request(bench_cpu0, bench_cpu1).unwrap_or(0.0);
    lat.sort_unstable();
    let measured = lat.len() as u64;
    let elapsed = (last - warm_end).as_secs_f64();
    let stats = Stats {
        name: load.name.clone(),
        conns: load.conns,
        measured,
        errors,
        total,
        secs: elapsed,
        server_cpu_us,
        bench_cpu_us,
        other_cores,
        rps: if elapsed > 0.0 {
            measured as f64 / elapsed
        } else {
            0.0
        },
        p50_us: percentile(&lat, 0.50),
        p99_us: percentile(&lat, 0.99),
        max_us: lat.last().copied().map_or(0, u64::from),
        collected,
        round: 0,
    };
    Report::line(&stats);
    let first = shared.first_error.lock().expect("lock").take();
    if let Some(e) = &first {
        println!("    first error: {e}");
    }
    if reconnects > 0 {
        println!("    {reconnects} keep-alive connections closed by the server and reopened");
    }
    if total == 0 || errors as f64 > MAX_ERROR_RATE * total as f64 {
        panic!(
            "{} with {} connections: {errors} of {total} requests failed (more than {}%); \
             first error: {}",
            load.name,
            load.conns,
            MAX_ERROR_RATE * 100.0,
            first.unwrap_or_else(|| "none".into())
        );
    }
    stats
}

fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    u64::from(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

// ---------------------------------------------------------------------------------------------
// Requests

fn user_name(n: u64) -> String {
    format!("bench.user{n}@example.com")
}

/// A request with the sidecar's usual headers.
fn request(
    method: Method,
    host: &HeaderValue,
    path: &str,
    body: Option<String>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host.clone())
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    if body.is_some() {
        b = b.header(header::CONTENT_TYPE, "application/scim+json");
    }
    b.body(Full::new(body.map(Bytes::from).unwrap_or_default()))
        .expect("request")
}

fn host_header(addr: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.to_string()).expect("host header")
}

fn unexpected(what: &str, parts: &http::response::Parts, body: &Bytes) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    format!("{what}: status {}, body {text}", parts.status)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An Entra-like create body for user `n`.
fn create_body(n: u64) -> String {
    let name = user_name(n);
    format!(
        concat!(
            r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"#,
            r#""externalId":"ext-{n}","userName":"{name}","active":true,"#,
            r#""name":{{"givenName":"Given{n}","familyName":"Family{n}"}},"#,
            r#""emails":[{{"primary":true,"type":"work","value":"{name}"}}]}}"#
        ),
        n = n,
        name = name
    )
}

/// An Entra-style PatchOp: replace `displayName` and `active`.
fn patch_body(n: u64) -> String {
    format!(
        concat!(
            r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":["#,
            r#"{{"op":"Replace","path":"displayName","value":"Bench User {n}"}},"#,
            r#"{{"op":"Replace","path":"active","value":{active}}}]}}"#
        ),
        n = n,
        active = n % 2 == 0
    )
}

fn filter_path(name: &str) -> String {
    format!(
        "/scim/v2/Users?filter=userName+eq+%22{}%22",
        name.replace('@', "%40")
    )
}

fn create_load(addr: SocketAddr, conns: usize) -> Load {
    let host = host_header(addr);
    Load {
        name: "create  POST /Users".into(),
        addr,
        conns,
        make: Arc::new(move |n| {
            request(Method::POST, &host, "/scim/v2/Users", Some(create_body(n)))
        }),
        server_pid: None,
        check: Arc::new(|_, parts, body| {
            if parts.status != StatusCode::CREATED {
                return Err(unexpected("create", parts, body));
            }
            let id = parts
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.rsplit('/').next())
                .filter(|id| !id.is_empty())
                .ok_or_else(|| unexpected("create without Location", parts, body))?;
            Ok(Some(id.to_owned()))
        }),
    }
}

fn filter_load(addr: SocketAddr, conns: usize, names: Arc<Vec<String>>) -> Load {
    let host = host_header(addr);
    let paths: Arc<Vec<String>> = Arc::new(names.iter().map(|n| filter_path(n)).collect());
    Load {
        name: "filter  GET /Users?filter".into(),
        addr,
        conns,
        make: Arc::new(move |n| {
            let path = &paths[(n % paths.len() as u64) as usize];
            request(Method::GET, &host, path, None)
        }),
        server_pid: None,
        check: Arc::new(|_, parts, body| {
            if parts.status != StatusCode::OK || !contains(body, br#""totalResults":1,"#) {
                return Err(unexpected(
                    "filter (expected exactly one match)",
                    parts,
                    body,
                ));
            }
            Ok(None)
        }),
    }
}

fn patch_load(addr: SocketAddr, conns: usize, ids: Arc<Vec<String>>) -> Load {
    let host = host_header(addr);
    Load {
        name: "patch   PATCH /Users/{id}".into(),
        addr,
        conns,
        make: Arc::new(move |n| {
            let id = &ids[(n % ids.len() as u64) as usize];
            request(
                Method::PATCH,
                &host,
                &format!("/scim/v2/Users/{id}"),
                Some(patch_body(n)),
            )
        }),
        server_pid: None,
        check: Arc::new(|n, parts, body| {
            let display = format!(r#""displayName":"Bench User {n}""#);
            if parts.status != StatusCode::OK || !contains(body, display.as_bytes()) {
                return Err(unexpected("patch", parts, body));
            }
            Ok(None)
        }),
    }
}

fn hello_load(target: &str, addr: SocketAddr, conns: usize) -> Load {
    let host = host_header(addr);
    Load {
        name: format!("{target:<7} GET /hello"),
        addr,
        conns,
        make: Arc::new(move |_| {
            Request::builder()
                .uri("/hello")
                .header(header::HOST, host.clone())
                .body(Full::new(Bytes::new()))
                .expect("request")
        }),
        server_pid: None,
        check: Arc::new(|_, parts, body| {
            if parts.status != StatusCode::OK || body.as_ref() != HELLO {
                return Err(unexpected("hello", parts, body));
            }
            Ok(None)
        }),
    }
}

/// One create, filter and patch, checked in full, before any load: the phases' cheap checks
/// rely on the shape seen here.
async fn sanity_check(addr: SocketAddr) {
    let host = host_header(addr);
    let mut s = connect(addr).await.expect("connect to the sidecar");
    let n = u64::MAX;
    let json = |body: &Bytes| -> serde_json::Value {
        serde_json::from_slice(body).expect("a JSON answer")
    };
    let (parts, body) = exchange(
        &mut s,
        request(Method::POST, &host, "/scim/v2/Users", Some(create_body(n))),
    )
    .await
    .expect("create");
    assert_eq!(
        parts.status,
        StatusCode::CREATED,
        "{}",
        unexpected("create", &parts, &body)
    );
    let created = json(&body);
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["userName"], user_name(n).as_str(), "{created}");
    let (parts, body) = exchange(
        &mut s,
        request(Method::GET, &host, &filter_path(&user_name(n)), None),
    )
    .await
    .expect("filter");
    let list = json(&body);
    assert_eq!(parts.status, StatusCode::OK, "{list}");
    assert_eq!(list["totalResults"], 1, "{list}");
    assert_eq!(list["Resources"][0]["id"], id.as_str(), "{list}");
    let (parts, body) = exchange(
        &mut s,
        request(
            Method::PATCH,
            &host,
            &format!("/scim/v2/Users/{id}"),
            Some(patch_body(n)),
        ),
    )
    .await
    .expect("patch");
    let patched = json(&body);
    assert_eq!(parts.status, StatusCode::OK, "{patched}");
    assert_eq!(
        patched["displayName"],
        format!("Bench User {n}"),
        "{patched}"
    );
    assert_eq!(patched["active"], n % 2 == 0, "{patched}");
}

// ---------------------------------------------------------------------------------------------
// Report

#[derive(Default)]
struct Report {
    phases: Vec<Stats>,
}

impl Report {
    fn header() {
        println!(
            "  {:<26} {:>5} {:>8} {:>6} {:>6} {:>8} {:>7} {:>7} {:>7} {:>13} {:>6}",
            "phase",
            "conns",
            "requests",
            "secs",
            "errors",
            "req/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "CPU us/req",
            "other"
        );
        println!(
            "  {:<26} {:>5} {:>8} {:>6} {:>6} {:>8} {:>7} {:>7} {:>7} {:>13} {:>6}",
            "", "", "", "", "", "", "", "", "", "server+bench", "cores"
        );
    }

    fn line(s: &Stats) {
        println!(
            "  {:<26} {:>5} {:>8} {:>6.2} {:>6} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>13} {:>6.2}",
            s.name,
            s.conns,
            s.measured,
            s.secs,
            s.errors,
            s.rps,
            s.p50_us as f64 / 1000.0,
            s.p99_us as f64 / 1000.0,
            s.max_us as f64 / 1000.0,
            format!(
                "{}+{:.0}",
                s.server_cpu_us.map_or("-".into(), |c| format!("{c:.0}")),
                s.bench_cpu_us
            ),
            s.other_cores,
        );
    }

    fn add(&mut self, s: Stats) {
        self.phases.push(s);
    }

    fn find_all(&self, prefix: &str, conns: usize) -> Vec<&Stats> {
        self.phases
            .iter()
            .filter(|s| s.name.starts_with(prefix) && s.conns == conns)
            .collect()
    }

    fn find(&self, prefix: &str, conns: usize) -> Option<&Stats> {
        self.phases
            .iter()
            .find(|s| s.name.starts_with(prefix) && s.conns == conns)
    }

    fn summary(&self, ready: Duration, rss_idle: u64, rss_load: u64, nginx: bool) {
        let mut rows: Vec<[String; 4]> = Vec::new();
        let mut row = |figure: &str, value: String, target: String, verdict: String| {
            rows.push([figure.to_owned(), value, target, verdict]);
        };
        let at_most = |v: f64, t: f64| verdict(v <= t, (v - t) / t);
        let at_least = |v: f64, t: f64| verdict(v >= t, (v - t) / t);

        let r = ms(ready);
        row(
            "start to ready (median of 5)",
            format!("{r:.1} ms"),
            format!("<= {TARGET_READY_MS:.0} ms"),
            at_most(r, TARGET_READY_MS),
        );
        let (i, l) = (mib(rss_idle), mib(rss_load));
        row(
            "RSS idle",
            format!("{i:.1} MiB"),
            format!("<= {TARGET_RSS_IDLE_MIB:.0} MiB"),
            at_most(i, TARGET_RSS_IDLE_MIB),
        );
        row(
            "RSS under load (peak)",
            format!("{l:.1} MiB"),
            format!("<= {TARGET_RSS_LOAD_MIB:.0} MiB"),
            at_most(l, TARGET_RSS_LOAD_MIB),
        );
        for (prefix, label, target) in [
            ("create", "create", Some(TARGET_SCIM_RPS)),
            ("filter", "filter by userName", Some(TARGET_SCIM_RPS)),
            ("patch", "patch", None),
        ] {
            for conns in CONNS {
                let Some(s) = self.find(prefix, conns) else {
                    continue;
                };
                let value = format!(
                    "{:.0} req/s, p50 {:.2} / p99 {:.2} ms",
                    s.rps,
                    s.p50_us as f64 / 1000.0,
                    s.p99_us as f64 / 1000.0
                );
                match target {
                    Some(t) if conns == 32 => row(
                        &format!("{label} @{conns}"),
                        value,
                        format!(">= {t:.0} req/s"),
                        at_least(s.rps, t),
                    ),
                    _ => row(
                        &format!("{label} @{conns}"),
                        value,
                        "-".into(),
                        String::new(),
                    ),
                }
            }
        }
        let errors: u64 = self.phases.iter().map(|s| s.errors).sum();
        let total: u64 = self.phases.iter().map(|s| s.total).sum();
        row(
            "request errors (all phases)",
            format!("{errors} of {total}"),
            "0".into(),
            verdict(errors == 0, 0.0),
        );
        for conns in CONNS {
            // Medians over the interleaved rounds; each round's ratio uses that round's direct.
            let series = |prefix: &str| -> Vec<&Stats> { self.find_all(prefix, conns) };
            let (direct, sidecar, nginx) = (series("direct"), series("sidecar"), series("nginx"));
            if direct.is_empty() || sidecar.is_empty() {
                continue;
            }
            let ratios = |proxy: &[&Stats]| -> Vec<f64> {
                proxy
                    .iter()
                    .zip(&direct)
                    .map(|(p, d)| p.rps / d.rps)
                    .collect()
            };
            let med = |mut v: Vec<f64>| -> f64 {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let rps = |v: &[&Stats]| med(v.iter().map(|s| s.rps).collect());
            let p99 = |v: &[&Stats]| med(v.iter().map(|s| s.p99_us as f64 / 1000.0).collect());
            let ratio = med(ratios(&sidecar));
            let value = format!(
                "{ratio:.2} ({:.0} / {:.0} req/s), p99 {:.2} vs {:.2} ms [median of {}]",
                rps(&sidecar),
                rps(&direct),
                p99(&sidecar),
                p99(&direct),
                sidecar.len()
            );
            let (target, verdict_text) = if conns == 32 {
                (
                    format!(">= {TARGET_PASS_RATIO:.2}"),
                    at_least(ratio, TARGET_PASS_RATIO),
                )
            } else {
                ("-".into(), String::new())
            };
            row(
                &format!("pass-through sidecar/direct @{conns}"),
                value,
                target,
                verdict_text,
            );
            if !nginx.is_empty() {
                row(
                    &format!("pass-through nginx/direct @{conns}"),
                    format!(
                        "{:.2} ({:.0} req/s), p99 {:.2} ms [median of {}]",
                        med(ratios(&nginx)),
                        rps(&nginx),
                        p99(&nginx),
                        nginx.len()
                    ),
                    "(reference)".into(),
                    String::new(),
                );
            }
        }
        if let Some(noisy) = self
            .phases
            .iter()
            .max_by(|a, b| a.other_cores.total_cmp(&b.other_cores))
        {
            row(
                "CPU of other processes (max)",
                format!(
                    "{:.2} cores ({} @{})",
                    noisy.other_cores,
                    noisy.name.split_whitespace().next().unwrap_or(""),
                    noisy.conns
                ),
                "~0 (quiet machine)".into(),
                if noisy.other_cores > 0.1 {
                    "NOISY: rerun on a quiet machine".into()
                } else {
                    String::new()
                },
            );
        }
        if !nginx {
            row(
                "pass-through nginx/direct",
                "nginx not installed (apt-get install nginx to compare)".into(),
                "(reference)".into(),
                String::new(),
            );
        }

        println!("== summary ==");
        let w: Vec<usize> = (0..4)
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let heading = ["figure", "value", "target", "result"];
        let line = |r: [&str; 4]| {
            println!(
                "  {:<w0$}  {:<w1$}  {:<w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = w[0].max(6),
                w1 = w[1].max(5),
                w2 = w[2].max(6)
            );
        };
        line(heading);
        for r in &rows {
            line([&r[0], &r[1], &r[2], &r[3]]);
        }
    }
}

/// `PASS`, or `MISS` with the relative gap (`by` is (value - target) / target).
fn verdict(pass: bool, by: f64) -> String {
    if pass {
        "PASS".into()
    } else if by == 0.0 {
        "MISS".into()
    } else {
        format!("MISS ({:+.0}%)", by * 100.0)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
