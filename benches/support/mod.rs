//! What the benches share: child processes (the sidecar under test), `/proc` readings (CPU,
//! RSS), a hand-written hyper load generator (phases of back-to-back requests on keep-alive
//! connections; warm-up, measured window, p50/p99) and the report table.
//!
//! Included by `benches/load.rs` (SQLite quickstart), `benches/members.rs`,
//! `benches/postgres.rs` (PostgreSQL example) and `benches/hooks.rs` (Redmine example) with
//! `#[path = "support/mod.rs"] mod support;`. Each bench uses part of it; what the PostgreSQL
//! benches alone share is in `support/pg.rs`.
#![allow(dead_code)]

use std::ffi::OsStr;
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
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The bearer token the benchmarked sidecar accepts (long enough not to draw a warning).
pub const TOKEN: &str = "bench-token-0123456789abcdef0123456789abcdef";
/// How often readiness is polled, and how long a start may take at most.
pub const READY_POLL: Duration = Duration::from_millis(2);
pub const READY_DEADLINE: Duration = Duration::from_secs(10);
/// Warm-up before each measured window (not counted).
pub const WARMUP: Duration = Duration::from_secs(1);
/// Measured window per phase unless `BENCH_SECS` says otherwise.
pub const DEFAULT_SECS: u64 = 5;
/// Hard cap on requests per phase (warm-up and measured window each).
pub const MAX_REQUESTS: u64 = 2_000_000;
/// Per-request and per-connect deadlines.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a stopped process may take to exit on SIGTERM before it is killed.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);
/// RSS sampling period.
pub const RSS_PERIOD: Duration = Duration::from_millis(50);
/// A phase aborts the bench above this share of failed requests.
pub const MAX_ERROR_RATE: f64 = 0.01;
/// Concurrency levels of every phase.
pub const CONNS: [usize; 2] = [1, 32];

/// The binary under test: `BENCH_BINARY` when set (to measure an older build with this same
/// bench, back to back on the same machine), else the release binary cargo built.
pub fn binary() -> PathBuf {
    std::env::var_os("BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_scim-sidecar")))
}

/// Prints the bench's title, the binary under test and its config file.
pub fn print_intro(title: &str, config: &Path) {
    println!("{title}");
    println!("  binary:  {}", binary().display());
    println!("  config:  {}", config.display());
}

/// The load generator's runtime: two worker threads (the reference machine has two cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The measured window per phase, in seconds: `BENCH_SECS`, or [`DEFAULT_SECS`].
pub fn bench_secs() -> u64 {
    std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_SECS)
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process that is stopped (SIGTERM, then SIGKILL after a deadline) when dropped, so a
/// panic anywhere in the bench does not leave it running.
pub struct Proc {
    child: Option<Child>,
    pub pid: u32,
    name: &'static str,
}

impl Proc {
    /// Takes charge of `child`; `name` is for messages.
    pub fn new(child: Child, name: &'static str) -> Proc {
        Proc {
            pid: child.id(),
            child: Some(child),
            name,
        }
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, wait up to [`STOP_DEADLINE`], then SIGKILL. Returns how long the exit took.
    pub fn stop(&mut self) -> Option<Duration> {
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

/// A running sidecar.
pub struct Sidecar {
    pub proc: Proc,
    pub addr: SocketAddr,
    log: PathBuf,
    /// Its log file, and whatever the bench keeps next to it (a database file).
    pub dir: tempfile::TempDir,
}

impl Sidecar {
    /// Spawns the release binary (`run --config config`, listening on free loopback ports, in
    /// front of `upstream`, with `env` added) and waits for `/readyz`; returns it and the time
    /// from spawning to ready. Its output goes to a log file in `dir`.
    pub fn start(
        dir: tempfile::TempDir,
        config: &Path,
        upstream: &str,
        env: &[(&str, &OsStr)],
    ) -> (Sidecar, Duration) {
        let log = dir.path().join("sidecar.log");
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let addr = free_port();
        let admin = free_port();
        let t0 = Instant::now();
        let child = Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("SCIM_SIDECAR_LISTEN", addr.to_string())
            .env("SCIM_SIDECAR_ADMIN_LISTEN", admin.to_string())
            .env("SCIM_TOKEN", TOKEN)
            .envs(env.iter().copied())
            .env("UPSTREAM_URL", upstream)
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
            dir,
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

    /// Stops it (SIGTERM), then prints how long that took and what it logged.
    pub fn stop(&mut self) {
        if let Some(d) = self.proc.stop() {
            println!("  sidecar stopped {:.0} ms after SIGTERM", ms(d));
        }
        self.print_log();
    }

    /// Prints what the sidecar logged (at `RUST_LOG=warn`: warnings and errors only).
    pub fn print_log(&self) {
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

/// A loopback port that was free a moment ago (bound, read, released), and not given out
/// before in this run: the kernel may hand a just-released port out again, and the sidecar's
/// listen and admin addresses once came out the same ("admin.addr and listen.addr are the
/// same address").
pub fn free_port() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<SocketAddr>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let l = StdListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = l.local_addr().expect("local_addr");
        if !given.contains(&addr) {
            given.push(addr);
            return addr;
        }
    }
}

/// One blocking `GET` with `Connection: close`; the status, or `None` if there is no answer.
pub fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
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
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// CPU time (user + system) a process has used so far, in microseconds; `pid` may be "self".
pub fn cpu_us(pid: &str) -> Option<u64> {
    cpu_times_us(pid).map(|[user, system, _, _]| user + system)
}

/// `utime`, `stime`, `cutime` and `cstime` of `/proc/PID/stat` (the last two: children that
/// exited and were waited for), in microseconds.
fn cpu_times_us(pid: &str) -> Option<[u64; 4]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let mut times = [0u64; 4];
    for t in &mut times {
        *t = fields.next()?.parse::<u64>().ok()? * 1_000_000 / clock_ticks();
    }
    Some(times)
}

/// CPU time of this process's children that exited and were waited for (a `pgbench` run),
/// in microseconds.
pub fn reaped_children_cpu_us() -> Option<u64> {
    cpu_times_us("self").map(|[_, _, cuser, csystem]| cuser + csystem)
}

/// Busy CPU time of the whole machine so far (all cores; everything but idle and iowait), in
/// microseconds.
pub fn machine_busy_us() -> Option<u64> {
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
pub fn tree_cpu_us(pid: u32) -> Option<u64> {
    let own = cpu_us(&pid.to_string())?;
    Some(own + children_cpu_us(pid))
}

/// CPU time of a process, its direct children and the children it reaped (a PostgreSQL
/// postmaster: the backends of connections closed meanwhile count too), in microseconds.
pub fn server_tree_cpu_us(pid: u32) -> Option<u64> {
    let own: u64 = cpu_times_us(&pid.to_string())?.iter().sum();
    Some(own + children_cpu_us(pid))
}

/// CPU time of the live direct children of a process, in microseconds.
fn children_cpu_us(pid: u32) -> u64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children.split_whitespace().filter_map(cpu_us).sum()
}

/// `sysconf(_SC_CLK_TCK)`, via `getconf` (100 on Linux in practice).
pub fn clock_ticks() -> u64 {
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
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl RssSampler {
    /// Starts sampling process `pid` on a thread of its own.
    pub fn start(pid: u32) -> RssSampler {
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
    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// Load generator

/// Builds request number `n` (a bench-wide sequence number).
pub type MakeRequest = Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>;
/// Checks the answer to request `n`; `Ok(Some(x))` keeps `(n, x)` for later phases.
pub type CheckResponse = Arc<
    dyn Fn(u64, &http::response::Parts, &Bytes) -> Result<Option<String>, String> + Send + Sync,
>;

/// One phase: `conns` connections sending `make` requests back to back to `addr`.
pub struct Load {
    pub name: String,
    pub addr: SocketAddr,
    pub conns: usize,
    pub make: MakeRequest,
    pub check: CheckResponse,
    /// The process (and its children) answering, when it is not this one: its CPU is reported.
    pub server_pid: Option<u32>,
    /// A database server behind it (a PostgreSQL postmaster): its CPU is reported apart.
    pub db_pid: Option<u32>,
    /// How many requests it can make in all (warm-up included), when each uses up a row made
    /// for it (a group to delete): the phase ends early once they are made.
    pub supply: Option<u64>,
}

impl Load {
    /// A phase named `name`; no process's CPU is reported until [`Load::server`].
    pub fn new(
        name: impl Into<String>,
        addr: SocketAddr,
        conns: usize,
        make: MakeRequest,
        check: CheckResponse,
    ) -> Load {
        Load {
            name: name.into(),
            addr,
            conns,
            make,
            check,
            server_pid: None,
            db_pid: None,
            supply: None,
        }
    }

    /// Reports the CPU of process `pid` and its children as the server's.
    pub fn server(mut self, pid: u32) -> Load {
        self.server_pid = Some(pid);
        self
    }

    /// Reports the CPU of database server `pid` (and its backends) in a column of its own.
    pub fn db(mut self, pid: u32) -> Load {
        self.db_pid = Some(pid);
        self
    }

    /// Makes at most `n` requests in all, warm-up included (see [`Load::supply`]).
    pub fn supply(mut self, n: u64) -> Load {
        self.supply = Some(n);
        self
    }
}

/// What a phase measured.
pub struct Stats {
    pub name: String,
    pub conns: usize,
    /// Requests started in the measured window (and answered).
    pub measured: u64,
    /// Failed requests, warm-up included (wrong status or shape, transport errors).
    pub errors: u64,
    /// All requests, warm-up included.
    pub total: u64,
    /// Length of the measured window (shorter than asked if the cap was reached).
    pub secs: f64,
    pub rps: f64,
    /// CPU time per request (warm-up included) of the server process, and of this process
    /// (load generator and app).
    pub server_cpu_us: Option<f64>,
    pub bench_cpu_us: f64,
    /// CPU used meanwhile by every other process on the machine, in cores (noise).
    pub other_cores: f64,
    /// CPU time per request (warm-up included) of the database server, when there is one.
    pub db_cpu_us: Option<f64>,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub collected: Vec<(u64, String)>,
    /// Round of an interleaved series (pass-through), 0 otherwise.
    pub round: usize,
}

/// State shared by a phase's connection tasks.
struct Shared {
    seq: Arc<AtomicU64>,
    warm_end: Instant,
    end: Instant,
    warm_issued: AtomicU64,
    issued: AtomicU64,
    /// Requests left of the load's supply, when it has one.
    supply: Option<AtomicU64>,
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

/// Set by a bench whose app writes its answers in pieces (Redmine's WEBrick): the load's
/// connections then acknowledge every read at once, as the sidecar does with such an app
/// (`http_client::quick_ack`), so that the direct figures are the app's and not the
/// kernel's delayed acknowledgement (40 ms per answer).
pub static QUICK_ACK: AtomicBool = AtomicBool::new(false);

/// A TCP stream that sets `TCP_QUICKACK` after every read (see [`QUICK_ACK`]).
struct AckEveryRead(TcpStream);

impl tokio::io::AsyncRead for AckEveryRead {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if r.is_ready() {
            scim_sidecar::http_client::quick_ack(std::os::fd::AsRawFd::as_raw_fd(&self.0));
        }
        r
    }
}

impl tokio::io::AsyncWrite for AckEveryRead {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// An HTTP/1.1 connection (`TCP_NODELAY`) to `addr`, within [`CONNECT_TIMEOUT`].
pub async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
    if QUICK_ACK.load(Ordering::Relaxed) {
        return handshake(AckEveryRead(tcp)).await;
    }
    handshake(tcp).await
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = tokio::time::timeout(
        CONNECT_TIMEOUT,
        hyper::client::conn::http1::handshake(TokioIo::new(io)),
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
pub async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(http::response::Parts, Bytes), String> {
    exchange_within(sender, req, REQUEST_TIMEOUT).await
}

/// Sends one request and reads the whole answer, within `timeout`.
pub async fn exchange_within(
    sender: &mut SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(http::response::Parts, Bytes), String> {
    let fut = async {
        // The previous answer being read does not make the connection ready at once: hyper's
        // dispatcher task has to see it finished first.
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, hyper::Error>((parts, body))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => match std::error::Error::source(&e) {
            Some(cause) => Err(format!("transport: {e}: {cause}")),
            None => Err(format!("transport: {e}")),
        },
        Err(_) => Err(format!("no answer within {timeout:?}")),
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
            if let Some(left) = &shared.supply {
                let take =
                    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1));
                if take.is_err() {
                    break 'connection;
                }
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
pub async fn run_phase(load: &Load, seq: &Arc<AtomicU64>, window: Duration) -> Stats {
    let server_cpu0 = load.server_pid.and_then(tree_cpu_us);
    let db_cpu0 = load.db_pid.and_then(server_tree_cpu_us);
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
        supply: load.supply.map(AtomicU64::new),
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
    let db_cpu1 = load.db_pid.and_then(server_tree_cpu_us);
    let ours =
        delta(server_cpu0, server_cpu1) + delta(bench_cpu0, bench_cpu1) + delta(db_cpu0, db_cpu1);
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
        db_cpu_us: per_request(db_cpu0, db_cpu1),
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

/// The `p` quantile (0..1) of sorted samples (nearest rank); 0 for none.
pub fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() as f64 * p).ceil() as usize;
    u64::from(sorted[rank.saturating_sub(1).min(sorted.len() - 1)])
}

// ---------------------------------------------------------------------------------------------
// Requests

/// The userName of bench user `n`.
pub fn user_name(n: u64) -> String {
    format!("bench.user{n}@example.com")
}

/// A request with the sidecar's usual headers.
pub fn request(
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

/// `Host: addr`.
pub fn host_header(addr: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&addr.to_string()).expect("host header")
}

/// What a failed check reports: the status and the start of the body.
pub fn unexpected(what: &str, parts: &http::response::Parts, body: &Bytes) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    format!("{what}: status {}, body {text}", parts.status)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// An Entra-like create body for user `n`; with `display_name`, also a `displayName` (which an
/// app whose display-name column is `NOT NULL` requires).
pub fn create_body(n: u64, display_name: bool) -> String {
    let name = user_name(n);
    let display = if display_name {
        format!(r#""displayName":"Given{n} Family{n}","#)
    } else {
        String::new()
    };
    format!(
        concat!(
            r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"#,
            r#""externalId":"ext-{n}","userName":"{name}",{display}"active":true,"#,
            r#""name":{{"givenName":"Given{n}","familyName":"Family{n}"}},"#,
            r#""emails":[{{"primary":true,"type":"work","value":"{name}"}}]}}"#
        ),
        n = n,
        name = name,
        display = display
    )
}

/// An Entra-style PatchOp: replace `displayName` and `active`.
pub fn patch_body(n: u64) -> String {
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

/// `GET /Users?filter=userName eq "name"`.
pub fn filter_path(name: &str) -> String {
    format!(
        "/scim/v2/Users?filter=userName+eq+%22{}%22",
        name.replace('@', "%40")
    )
}

/// Creates users (`POST /Users`), keeping each new id (from `Location`).
pub fn create_load(addr: SocketAddr, conns: usize, display_name: bool) -> Load {
    let host = host_header(addr);
    Load::new(
        "create  POST /Users",
        addr,
        conns,
        Arc::new(move |n| {
            let body = create_body(n, display_name);
            request(Method::POST, &host, "/scim/v2/Users", Some(body))
        }),
        Arc::new(|_, parts, body| {
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
    )
}

/// Looks users up by `userName`, rotating over `names`; exactly one must match.
pub fn filter_load(addr: SocketAddr, conns: usize, names: Arc<Vec<String>>) -> Load {
    let host = host_header(addr);
    let paths: Arc<Vec<String>> = Arc::new(names.iter().map(|n| filter_path(n)).collect());
    Load::new(
        "filter  GET /Users?filter",
        addr,
        conns,
        Arc::new(move |n| {
            let path = &paths[(n % paths.len() as u64) as usize];
            request(Method::GET, &host, path, None)
        }),
        Arc::new(|_, parts, body| {
            if parts.status != StatusCode::OK || !contains(body, br#""totalResults":1,"#) {
                return Err(unexpected(
                    "filter (expected exactly one match)",
                    parts,
                    body,
                ));
            }
            Ok(None)
        }),
    )
}

/// Entra-style `PATCH`es, rotating over the user `ids`.
pub fn patch_load(addr: SocketAddr, conns: usize, ids: Arc<Vec<String>>) -> Load {
    let host = host_header(addr);
    Load::new(
        "patch   PATCH /Users/{id}",
        addr,
        conns,
        Arc::new(move |n| {
            let id = &ids[(n % ids.len() as u64) as usize];
            request(
                Method::PATCH,
                &host,
                &format!("/scim/v2/Users/{id}"),
                Some(patch_body(n)),
            )
        }),
        Arc::new(|n, parts, body| {
            let display = format!(r#""displayName":"Bench User {n}""#);
            if parts.status != StatusCode::OK || !contains(body, display.as_bytes()) {
                return Err(unexpected("patch", parts, body));
            }
            Ok(None)
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Report

/// The phases measured so far, for the summary.
#[derive(Default)]
pub struct Report {
    pub phases: Vec<Stats>,
}

impl Report {
    /// Prints the column headings of [`Report::line`]; with `db`, also the database server's
    /// CPU column.
    pub fn header(db: bool) {
        let (db1, db2) = if db {
            (format!(" {:>9}", "db CPU"), format!(" {:>9}", "us/req"))
        } else {
            (String::new(), String::new())
        };
        println!(
            "  {:<26} {:>5} {:>8} {:>6} {:>6} {:>8} {:>7} {:>7} {:>7} {:>13} {:>6}{db1}",
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
            "  {:<26} {:>5} {:>8} {:>6} {:>6} {:>8} {:>7} {:>7} {:>7} {:>13} {:>6}{db2}",
            "", "", "", "", "", "", "", "", "", "server+bench", "cores"
        );
    }

    /// Prints one phase's figures.
    pub fn line(s: &Stats) {
        let db = s.db_cpu_us.map_or(String::new(), |c| format!(" {c:>9.0}"));
        println!(
            "  {:<26} {:>5} {:>8} {:>6.2} {:>6} {:>8.0} {:>7.2} {:>7.2} {:>7.2} {:>13} {:>6.2}{db}",
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

    /// Keeps a phase for the summary.
    pub fn add(&mut self, s: Stats) {
        self.phases.push(s);
    }

    /// The phases whose name starts with `prefix`, at `conns` connections, in order.
    pub fn find_all(&self, prefix: &str, conns: usize) -> Vec<&Stats> {
        self.phases
            .iter()
            .filter(|s| s.name.starts_with(prefix) && s.conns == conns)
            .collect()
    }

    /// The first phase whose name starts with `prefix`, at `conns` connections.
    pub fn find(&self, prefix: &str, conns: usize) -> Option<&Stats> {
        self.phases
            .iter()
            .find(|s| s.name.starts_with(prefix) && s.conns == conns)
    }

    /// Adds the row of request errors over all phases (target: none).
    pub fn errors_row(&self, summary: &mut Summary) {
        let errors: u64 = self.phases.iter().map(|s| s.errors).sum();
        let total: u64 = self.phases.iter().map(|s| s.total).sum();
        summary.row(
            "request errors (all phases)",
            format!("{errors} of {total}"),
            "0".into(),
            verdict(errors == 0, 0.0),
        );
    }

    /// Adds the row of the most CPU other processes used during a phase (noise).
    pub fn noise_row(&self, summary: &mut Summary) {
        if let Some(noisy) = self
            .phases
            .iter()
            .max_by(|a, b| a.other_cores.total_cmp(&b.other_cores))
        {
            summary.row(
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
    }
}

/// The summary table: one row per headline figure, with its target and verdict.
#[derive(Default)]
pub struct Summary {
    rows: Vec<[String; 4]>,
}

impl Summary {
    /// Adds a row: figure, value, target (`-` for none) and verdict (empty for none).
    pub fn row(&mut self, figure: &str, value: String, target: String, verdict: String) {
        self.rows.push([figure.to_owned(), value, target, verdict]);
    }

    /// Adds a row without target or verdict.
    pub fn info(&mut self, figure: &str, value: String) {
        self.row(figure, value, "-".into(), String::new());
    }

    /// Prints the table under `== summary ==`, columns aligned.
    pub fn print(&self) {
        let rows = &self.rows;
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
        for r in rows {
            line([&r[0], &r[1], &r[2], &r[3]]);
        }
    }
}

/// The verdict on a figure that must not exceed its target.
pub fn at_most(v: f64, t: f64) -> String {
    verdict(v <= t, (v - t) / t)
}

/// The verdict on a figure that must reach its target.
pub fn at_least(v: f64, t: f64) -> String {
    verdict(v >= t, (v - t) / t)
}

/// `PASS`, or `MISS` with the relative gap (`by` is (value - target) / target).
pub fn verdict(pass: bool, by: f64) -> String {
    if pass {
        "PASS".into()
    } else if by == 0.0 {
        "MISS".into()
    } else {
        format!("MISS ({:+.0}%)", by * 100.0)
    }
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// KiB in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// nginx as a reverse proxy to the same app, if it is installed.
pub struct Nginx {
    pub proc: Proc,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// nginx on `PATH`, if it is installed.
pub fn nginx_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

impl Nginx {
    /// Starts nginx (one worker, `keepalive 64` to `app`) on a free loopback port and waits
    /// until it answers `probe` with any status; `None` if nginx is not installed.
    pub fn start(app: SocketAddr, probe: &str) -> Option<Nginx> {
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
            dir,
        };
        let t0 = Instant::now();
        loop {
            if let Some(status) = n.proc.exited() {
                let log = std::fs::read_to_string(n.dir.path().join("nginx.log"));
                panic!(
                    "nginx exited at start ({status}): {}",
                    log.unwrap_or_default()
                );
            }
            if get_status(addr, probe).is_some() {
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
