//! The admin listener (`/healthz`, `/readyz`, `/metrics`) and graceful shutdown, as an
//! orchestrator (probes, Prometheus scrapes) and a client in the middle of a request see them.

use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::client::user;
use crate::support::{Client, Options, Sidecar, TOKEN};

/// Polls `cond` every 20 ms for up to 10 s.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The value of the sample `series` (metric name and labels exactly as exposed), if present.
fn sample<'a>(metrics: &'a str, series: &str) -> Option<&'a str> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
}

/// Asserts that every `(series, value)` is exposed with exactly that value.
#[track_caller]
fn assert_samples(metrics: &str, expected: &[(&str, &str)]) {
    for (series, value) in expected {
        assert_eq!(
            sample(metrics, series),
            Some(*value),
            "{series}\n--- /metrics ---\n{metrics}"
        );
    }
}

/// `/healthz` answers 200 `ok` and `/readyz` 200 `ready` (the SQLite store answers), to GET
/// and to HEAD, without any token.
#[tokio::test]
async fn health_and_readiness_probes_answer_200() {
    let s = Sidecar::quickstart().await;
    let admin = s.admin_client();
    let r = admin.get("/healthz").await.expect(200);
    assert_eq!(r.text(), "ok\n");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain"))
    );
    let r = admin.get("/readyz").await.expect(200);
    assert_eq!(r.text(), "ready\n");
    for path in ["/healthz", "/readyz"] {
        let r = admin.send(Method::HEAD, path, &[], None).await.expect(200);
        assert!(r.body.is_empty(), "HEAD {path} has a body");
    }
}

/// After a known sequence of requests on a fresh sidecar, `/metrics` (OpenMetrics text)
/// counts each SCIM request by resource type, operation and status, observes each in the
/// latency histogram, counts refused tokens by reason, and counts pass-through requests by
/// the app's status, with exactly the expected values.
#[tokio::test]
async fn metrics_count_scim_auth_and_pass_through_requests() {
    let s = Sidecar::quickstart().await;
    let c = &s.client;
    let alice = c
        .post("/scim/v2/Users", &user("alice@example.com"))
        .await
        .expect(201);
    let alice = alice.json()["id"].as_str().expect("id").to_owned();
    let bob = c
        .post("/scim/v2/Users", &user("bob@example.com"))
        .await
        .expect(201);
    let bob = bob.json()["id"].as_str().expect("id").to_owned();
    c.post("/scim/v2/Users", &user("alice@example.com"))
        .await
        .scim_error(409, Some("uniqueness"));
    c.get(&format!("/scim/v2/Users/{alice}")).await.expect(200);
    c.get("/scim/v2/Users/999999").await.scim_error(404, None);
    c.get("/scim/v2/Users").await.expect(200);
    c.delete(&format!("/scim/v2/Users/{bob}")).await.expect(204);
    s.anonymous().get("/scim/v2/Users").await.expect(401);
    let wrong = Client::new(s.addr, Some("not-the-token"));
    wrong.get("/scim/v2/Users").await.expect(401);
    wrong.get("/scim/v2/Groups").await.expect(401);
    for _ in 0..3 {
        s.anonymous().get("/echo").await.expect(200);
    }
    s.anonymous().get("/status/404").await.expect(404);

    let r = s.admin_client().get("/metrics").await.expect(200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let m = r.text();
    assert!(m.ends_with("# EOF\n"), "{m}");
    let req = "scim_sidecar_scim_requests_total";
    let lat = "scim_sidecar_scim_request_duration_seconds";
    assert_samples(
        &m,
        &[
            (
                &format!(r#"{req}{{resource_type="User",operation="create",status="201"}}"#),
                "2",
            ),
            (
                &format!(r#"{req}{{resource_type="User",operation="create",status="409"}}"#),
                "1",
            ),
            (
                &format!(r#"{req}{{resource_type="User",operation="get",status="200"}}"#),
                "1",
            ),
            (
                &format!(r#"{req}{{resource_type="User",operation="get",status="404"}}"#),
                "1",
            ),
            (
                &format!(r#"{req}{{resource_type="User",operation="list",status="200"}}"#),
                "1",
            ),
            (
                &format!(r#"{req}{{resource_type="User",operation="delete",status="204"}}"#),
                "1",
            ),
            (
                &format!(r#"{req}{{resource_type="-",operation="unauthenticated",status="401"}}"#),
                "3",
            ),
            (
                &format!(r#"{lat}_count{{resource_type="User",operation="create"}}"#),
                "3",
            ),
            (
                &format!(r#"{lat}_bucket{{le="+Inf",resource_type="User",operation="create"}}"#),
                "3",
            ),
            (
                &format!(r#"{lat}_count{{resource_type="User",operation="get"}}"#),
                "2",
            ),
            (
                &format!(r#"{lat}_count{{resource_type="User",operation="list"}}"#),
                "1",
            ),
            (
                &format!(r#"{lat}_count{{resource_type="User",operation="delete"}}"#),
                "1",
            ),
            (r#"scim_sidecar_auth_failures_total{reason="invalid"}"#, "2"),
            (r#"scim_sidecar_auth_failures_total{reason="missing"}"#, "1"),
            (r#"scim_sidecar_proxy_requests_total{status="200"}"#, "3"),
            (r#"scim_sidecar_proxy_requests_total{status="404"}"#, "1"),
            ("scim_sidecar_proxy_request_duration_seconds_count", "4"),
            (
                r#"scim_sidecar_proxy_request_duration_seconds_bucket{le="+Inf"}"#,
                "4",
            ),
        ],
    );
    // No request was counted twice or under another label set.
    let scim_total: u64 = m
        .lines()
        .filter(|l| l.starts_with(req))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(scim_total, 10, "{m}");
    assert!(
        m.contains("# TYPE scim_sidecar_scim_request_duration_seconds histogram"),
        "{m}"
    );
}

/// The admin listener serves only its three endpoints: other paths (SCIM's included) get 404
/// with the list of endpoints, other methods get 405; and the main listener does not serve
/// the admin endpoints (its `/healthz` and `/metrics` are the app's).
#[tokio::test]
async fn admin_serves_only_its_endpoints() {
    let s = Sidecar::quickstart().await;
    let admin = s.admin_client();
    for path in ["/nope", "/", "/metrics/x", "/scim/v2/Users"] {
        let r = admin.get(path).await.expect(404);
        assert_eq!(
            r.text(),
            "admin endpoints: /healthz /readyz /metrics\n",
            "{path}"
        );
    }
    let with_token = Client::new(s.admin, Some(TOKEN));
    with_token.get("/scim/v2/Users").await.expect(404);
    for (method, path) in [
        (Method::POST, "/metrics"),
        (Method::PUT, "/healthz"),
        (Method::DELETE, "/readyz"),
        (Method::POST, "/nope"),
    ] {
        let r = admin
            .send(method.clone(), path, &[], Some(Bytes::from_static(b"{}")))
            .await;
        assert_eq!(r.status.as_u16(), 405, "{method} {path}: {}", r.text());
    }
    for path in ["/healthz", "/metrics"] {
        let r = s.anonymous().get(path).await.expect(404);
        assert_eq!(
            r.text(),
            "not found",
            "{path} on the main listener is the app's"
        );
    }
}

/// Graceful shutdown: a pass-through request in flight when shutdown starts still gets the
/// app's full 200 answer, written (with `Connection: close`) before shutdown returns; and
/// afterwards both listeners refuse new connections.
///
/// The client is a raw socket so that "before shutdown returns" is checked without timing:
/// on loopback, bytes the sidecar wrote are already in the client's receive buffer, so a
/// non-blocking read right after `stop()` returns sees the whole answer and the close.
///
/// (`/readyz` answering 503 while draining is not tested: the admin listener stops
/// accepting at the same moment as the main one, so no probe can reach it.)
#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_refuses_connections() {
    let s = Sidecar::quickstart().await;
    let (addr, admin) = (s.addr, s.admin);
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(format!("GET /slow?ms=500 HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("write request");
    // The request is in flight once the sidecar has connected to the app for it.
    wait_until("the slow request reaches the app", || {
        s.upstream.connection_count() >= 1
    })
    .await;

    tokio::time::timeout(Duration::from_secs(30), s.stop())
        .await
        .expect("shutdown completes");

    let mut tcp = tcp.into_std().expect("std socket");
    tcp.set_nonblocking(true).expect("non-blocking");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer)
        .expect("the whole answer and the close were sent before shutdown returned");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nslow done"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{answer}"
    );

    for (what, a) in [("main", addr), ("admin", admin)] {
        let e = TcpStream::connect(a)
            .await
            .expect_err("listener closed after shutdown");
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{what}: {e}"
        );
    }
}

/// Shutdown is bounded by `listen.shutdown_timeout`: a request that outlives it (the app takes
/// ten minutes) does not keep `stop` from returning, and the main listener is closed
/// afterwards.
#[tokio::test]
async fn shutdown_does_not_wait_past_the_shutdown_timeout() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| {
            c.listen.shutdown_timeout = Duration::from_millis(200);
        })),
        ..Options::default()
    })
    .await;
    let addr = s.addr;
    let client = s.client.clone();
    // Ten minutes: far longer than any guard in this test.
    let inflight = tokio::spawn(async move { client.get("/slow?ms=600000").await });
    wait_until("the slow request reaches the app", || {
        s.upstream.connection_count() >= 1
    })
    .await;

    tokio::time::timeout(Duration::from_secs(30), s.stop())
        .await
        .expect("shutdown returns although a request is still in flight");
    // The app answers in ten minutes: returning at all means `stop` did not wait for it.
    inflight.abort();
    let e = TcpStream::connect(addr)
        .await
        .expect_err("listener closed after shutdown");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
}

/// Draining: once shutdown starts, `/readyz` answers 503 (so Kubernetes stops routing here)
/// while the main listener keeps serving SCIM for `drain_delay`, and `/healthz` stays 200.
#[tokio::test]
async fn readiness_turns_503_while_draining() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| c.listen.drain_delay = Duration::from_secs(3))),
        ..Default::default()
    })
    .await;
    let admin = s.admin_client();
    admin.get("/readyz").await.expect(200);
    let client = s.client.clone();
    let stopping = tokio::spawn(s.stop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = admin.get("/readyz").await;
        if r.status == 503 {
            assert_eq!(r.text(), "shutting down\n");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never turned 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin.get("/healthz").await.expect(200);
    client.get("/scim/v2/Users/1").await.expect(200);
    stopping.await.expect("stopped");
}
