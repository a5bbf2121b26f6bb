//! The admin listener: `/healthz`, `/readyz`, `/metrics`, on its own port so that probes and
//! scrapes never share a listener (or auth) with SCIM and the app.
//!
//! - `/healthz`: 200 while the process serves requests (liveness).
//! - `/readyz`: 200 when every store answers, 503 otherwise or while shutting down
//!   (readiness: Kubernetes stops routing to a draining pod). The stores are pinged at once,
//!   under one deadline of [`READY_DEADLINE`]: below the 1 s a probe's `timeoutSeconds` allows
//!   at least, so a slow store is a 503 naming it, never a probe timeout.
//! - `/metrics`: Prometheus/OpenMetrics text.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{Current, Process};
use crate::proxy::{Body, full};

/// How long `/readyz` waits for the stores, all of them at once.
pub const READY_DEADLINE: Duration = Duration::from_millis(800);

/// Serves the admin listener until `stop` changes.
pub async fn serve(
    listener: TcpListener,
    current: Arc<Current>,
    process: Arc<Process>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let (current, process) = (current.clone(), process.clone());
        let svc =
            hyper::service::service_fn(move |req| handle(current.clone(), process.clone(), req));
        let conn = builder.serve_connection(TokioIo::new(tcp), svc);
        let fut = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = fut.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

async fn handle(
    current: Arc<Current>,
    process: Arc<Process>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    Ok(match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => ready(&current, &process).await,
        "/metrics" => {
            let mut r = Response::new(full(process.metrics.render()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "admin endpoints: /healthz /readyz /metrics\n",
        ),
    })
}

/// Every store answers, and the server is not shutting down.
async fn ready(current: &Current, process: &Process) -> Response<Body> {
    if process.draining.load(Ordering::SeqCst) {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match crate::app::ping_all(&current.load().backends, READY_DEADLINE).await {
        Ok(()) => text(StatusCode::OK, "ready\n"),
        Err(failures) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &(failures.join("\n") + "\n"),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_owned()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
