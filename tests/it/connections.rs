//! Connection deadlines and the connection cap, as a client holding sockets open and an
//! operator watching `/metrics` see them: a connection ends at every stage where it keeps the
//! server waiting, accept pauses at the cap instead of failing, and the admin listener keeps
//! answering while the main one is flooded. See: issue #14 (item 1).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use scim_sidecar::proxy::{Body, full};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::version::TLS13;

use crate::support::{Client, Options, Sidecar, Upstream};
use crate::tls::{Pki, connect};

/// Bound on anything a test waits for, so that a missing deadline fails the test instead of
/// hanging it.
const GUARD: Duration = Duration::from_secs(20);
/// The deadlines the tests configure: short, so the suite stays fast.
const SHORT: Duration = Duration::from_millis(300);

/// The quickstart with short connection deadlines, and `tweak` on top.
async fn sidecar(tweak: impl FnOnce(&mut scim_sidecar::config::Config) + 'static) -> Sidecar {
    Sidecar::start(Options {
        tweak: Some(Box::new(move |c| {
            c.listen.header_read_timeout = SHORT;
            c.listen.idle_timeout = SHORT;
            c.listen.tls_handshake_timeout = SHORT;
            tweak(c);
        })),
        ..Options::default()
    })
    .await
}

/// Reads until the server closes the connection (EOF or reset); panics if it stays open
/// past the guard.
async fn closed_by_server(io: &mut (impl AsyncRead + Unpin)) {
    let mut buf = vec![0u8; 16 * 1024];
    let read_all = async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(GUARD, read_all)
        .await
        .expect("the server closes the connection");
}

/// The value of a counter sample on the admin listener's `/metrics` (0 when absent).
async fn counter(admin: &Client, series: &str) -> u64 {
    let text = admin.get("/metrics").await.expect(200).text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn timeouts(stage: &str) -> String {
    format!("scim_sidecar_connection_timeouts_total{{listener=\"main\",stage=\"{stage}\"}}")
}

/// A TCP connection that never sends a byte is closed by the server (before, it stayed open
/// for ever: hyper-util's HTTP/1-or-2 sniffing has no timer), and counted as a
/// `first_request` timeout. See: issue #14.
#[tokio::test]
async fn r14_silent_connection_is_closed() {
    let s = sidecar(|_| {}).await;
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    closed_by_server(&mut tcp).await;
    assert!(counter(&s.admin_client(), &timeouts("first_request")).await >= 1);
}

/// A client that sends part of a request head and then nothing (slowloris) is closed too.
#[tokio::test]
async fn r14_slow_request_head_is_closed() {
    let s = sidecar(|_| {}).await;
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    tcp.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow:")
        .await
        .expect("write");
    closed_by_server(&mut tcp).await;
    assert!(counter(&s.admin_client(), &timeouts("first_request")).await >= 1);
}

/// An HTTP/2 (h2c) connection that sends its preface and SETTINGS and then no request is
/// closed (before, it stayed open for ever).
#[tokio::test]
async fn r14_h2c_connection_idle_after_preface_is_closed() {
    let s = sidecar(|_| {}).await;
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    // RFC 9113 §3.4: the preface, then an empty SETTINGS frame.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    closed_by_server(&mut tcp).await;
    assert!(counter(&s.admin_client(), &timeouts("first_request")).await >= 1);
}

/// A kept-alive HTTP/1.1 connection is closed once it has been idle after a response, and a
/// kept-alive HTTP/2 one likewise (with GOAWAY); both are counted as `between_requests`.
#[tokio::test]
async fn r14_idle_keep_alive_connections_are_closed() {
    let s = sidecar(|_| {}).await;
    let get = || {
        Request::get(format!("http://{}/echo", s.addr))
            .body(full(Bytes::new()))
            .expect("request")
    };

    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let (mut h1, conn) = http1::handshake::<_, Body>(TokioIo::new(tcp))
        .await
        .expect("h1");
    let h1_conn = tokio::spawn(conn);
    let resp = h1.send_request(get()).await.expect("h1 response");
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.expect("body");
    tokio::time::timeout(GUARD, h1_conn)
        .await
        .expect("the server closes the idle HTTP/1.1 connection")
        .expect("join")
        .expect("a clean close");

    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let (mut h2, conn) = http2::handshake::<_, _, Body>(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("h2");
    let h2_conn = tokio::spawn(conn);
    let resp = h2.send_request(get()).await.expect("h2 response");
    assert_eq!(resp.status(), 200);
    resp.into_body().collect().await.expect("body");
    tokio::time::timeout(GUARD, h2_conn)
        .await
        .expect("the server closes the idle HTTP/2 connection")
        .expect("join")
        .expect("a clean close (GOAWAY)");

    assert!(counter(&s.admin_client(), &timeouts("between_requests")).await >= 2);
}

/// A TLS client that connects and never sends its ClientHello is dropped after the
/// handshake timeout; one that completes the handshake and then sends no request is closed
/// like a plain one. See: issue #14.
#[tokio::test]
async fn r14_tls_connections_that_wait_are_closed() {
    let pki = Pki::new();
    let tls = pki.tls();
    let s = sidecar(move |c| c.listen.tls = Some(tls)).await;
    let admin = s.admin_client();

    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    closed_by_server(&mut tcp).await;
    assert!(counter(&admin, &timeouts("tls_handshake")).await >= 1);

    let mut stream = connect(s.addr, pki.client(&[&TLS13], &[b"http/1.1"])).await;
    closed_by_server(&mut stream).await;
    assert!(counter(&admin, &timeouts("first_request")).await >= 1);
}

/// With `max_connections` open and idle, the listener stops accepting instead of failing:
/// the admin listener still answers its probes, a new client is served as soon as the
/// deadlines have closed the idle ones, and `/metrics` counts the pause.
#[tokio::test]
async fn r14_connection_cap_pauses_accept_and_admin_keeps_answering() {
    let s = sidecar(|c| {
        c.listen.max_connections = 4;
        c.listen.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..12 {
        flood.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    let admin = s.admin_client();
    admin.get("/healthz").await.expect(200);
    let r = tokio::time::timeout(GUARD, s.anonymous().get("/echo"))
        .await
        .expect("a new client is served once the idle connections are closed");
    r.expect(200);
    assert!(
        counter(
            &admin,
            "scim_sidecar_connection_limit_waits_total{listener=\"main\"}"
        )
        .await
            >= 1
    );
    drop(flood);
}

/// A child process that is killed when the test ends, passed or failed.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address a `scim-sidecar run` child logs in its "ready" line for `key` (`listen=`,
/// `admin=`).
fn logged_addr(line: &str, key: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split_whitespace()
        .next()?
        .trim_matches('"')
        .parse()
        .ok()
}

/// The real binary, started by `sh` with `prefix` (e.g. a `ulimit`) on a copy of the
/// quickstart whose config `edit` changes, in front of `upstream`; returns it (killed on
/// drop), its log so far, and its main and admin addresses from its "ready" line.
fn spawn_binary(
    dir: &Path,
    prefix: &str,
    edit: impl Fn(String) -> String,
    upstream: &Upstream,
) -> (Killed, Vec<String>, SocketAddr, SocketAddr) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    std::fs::copy(src.join("schema.sql"), dir.join("schema.sql")).expect("schema");
    let text = std::fs::read_to_string(src.join("scim-sidecar.toml")).expect("config");
    let config = dir.join("scim-sidecar.toml");
    std::fs::write(&config, edit(text)).expect("write config");
    let mut child = Killed(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{prefix} exec \"$0\" run --config \"$1\""))
            .arg(env!("CARGO_BIN_EXE_scim-sidecar"))
            .arg(&config)
            .env("SCIM_SIDECAR_LISTEN", "127.0.0.1:0")
            .env("SCIM_SIDECAR_ADMIN_LISTEN", "127.0.0.1:0")
            .env("SCIM_TOKEN", crate::support::TOKEN)
            .env("UPSTREAM_URL", format!("http://{}", upstream.addr))
            .env("QUICKSTART_DB", dir.join("app.db"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn the sidecar"),
    );
    let stderr = child.0.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        // Read to the end even once nobody listens: a closed pipe would fail the child's
        // log writes.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    loop {
        let line = rx
            .recv_timeout(GUARD)
            .unwrap_or_else(|_| panic!("no ready line:\n{}", log.join("\n")));
        let ready = line.contains("scim-sidecar ready");
        log.push(line);
        if ready {
            let line = log.last().map(String::as_str).unwrap_or_default();
            let a = logged_addr(line, "listen=").expect("listen address");
            let b = logged_addr(line, "admin=").expect("admin address");
            return (child, log, a, b);
        }
    }
}

/// The real binary, run with an open-file limit of 256, holds off 400 idle connections:
/// it lowers its connection cap to what the limit allows (and says so), never runs out of
/// descriptors, keeps answering `/healthz` on the admin port during the flood, and serves
/// pass-through traffic once the idle connections time out. Before, such a flood exhausted
/// the descriptors and every listener stopped answering. See: issue #14.
#[tokio::test]
async fn r14_idle_flood_under_a_low_fd_limit_keeps_the_sidecar_answering() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    // `ulimit -n` sets both limits, so the sidecar cannot raise its own.
    let (child, log, addr, admin) = spawn_binary(
        dir.path(),
        "ulimit -n 256 &&",
        |t| {
            t.replace(
                "[listen]\n",
                "[listen]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"300ms\"\n",
            )
        },
        &upstream,
    );
    assert!(
        log.iter()
            .any(|l| l.contains("does not fit the open-file limit")),
        "the lowered cap is announced:\n{}",
        log.join("\n")
    );

    let mut flood = Vec::new();
    for _ in 0..400 {
        flood.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let admin = Client::new(admin, None);
    let health = tokio::time::timeout(GUARD, admin.get("/healthz"))
        .await
        .expect("/healthz answers during the flood");
    health.expect(200);
    let r = tokio::time::timeout(GUARD, Client::new(addr, None).get("/echo"))
        .await
        .expect("pass-through answers once the idle connections time out");
    r.expect(200);
    assert_eq!(
        counter(
            &admin,
            "scim_sidecar_accept_errors_total{listener=\"main\"}"
        )
        .await,
        0,
        "never out of descriptors"
    );
    assert!(counter(&admin, &timeouts("first_request")).await >= 1);
    drop(flood);
    drop(child);
}

/// The real binary serves connections on shard threads of their own (`server::shard`),
/// and everything still works there: SCIM writes and reads (the store's blocking calls run
/// on the shard's runtime), pass-through over pooled connections, an upload, and HTTP/2
/// through one connection, with two shards (`--workers 2`).
#[tokio::test]
async fn sharded_binary_serves_scim_and_pass_through() {
    let upstream = Upstream::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let (_child, _log, addr, _admin) =
        spawn_binary(dir.path(), "SCIM_SIDECAR_WORKERS=2", |t| t, &upstream);
    let scim = Client::new(addr, Some(crate::support::TOKEN));
    let created = scim
        .post(
            "/scim/v2/Users",
            &crate::support::client::user("shard@example.com"),
        )
        .await
        .expect(201)
        .json();
    let id = created["id"].as_str().expect("id");
    let got = scim
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["userName"], "shard@example.com");
    let plain = Client::new(addr, None);
    for i in 0..20 {
        let r = plain.get(&format!("/echo?i={i}")).await.expect(200);
        assert_eq!(r.json()["path"], format!("/echo?i={i}"));
    }
    let r = plain
        .send(
            http::Method::POST,
            "/upload",
            &[("content-type", "application/octet-stream")],
            Some(Bytes::from(vec![b'x'; 300_000])),
        )
        .await
        .expect(200);
    assert_eq!(r.text(), "300000");
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut h2, conn) = http2::handshake::<_, _, Body>(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("h2");
    tokio::spawn(conn);
    for i in 0..5 {
        let resp = h2
            .send_request(
                Request::get(format!("http://{addr}/echo?h2={i}"))
                    .body(full(Bytes::new()))
                    .expect("request"),
            )
            .await
            .expect("h2 response");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.expect("body");
    }
}
