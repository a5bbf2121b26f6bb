//! The admin listener: `/healthz`, `/readyz`, `/metrics`, on its own port so that probes and
//! scrapes never share a listener (or auth) with SCIM and the app.
//!
//! - `/healthz`: 200 while the process serves requests (liveness).
//! - `/readyz`: 200 when every store answers, 503 otherwise or while shutting down
//!   (readiness: Kubernetes stops routing to a draining pod). After a failed config reload
//!   it stays 200 (the previous config serves) and says so in its body. The stores are pinged at once,
//!   under one deadline of [`READY_DEADLINE`]: below the 1 s a probe's `timeoutSeconds` allows
//!   at least, so a slow store is a 503 naming it, never a probe timeout.
//! - `/metrics`: Prometheus/OpenMetrics text.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{Current, Process};
use crate::proxy::{Body, full};
use crate::server::conn::{self, Deadlines, Gate, Listener};

/// How long `/readyz` waits for the stores, all of them at once.
pub const READY_DEADLINE: Duration = Duration::from_millis(800);

/// Connections the admin listener keeps open at once: its own budget, apart from the main
/// listener's, so probes answer while the main port is flooded. Probes and scrapes need few.
pub const MAX_CONNECTIONS: usize = 64;
/// Every stage of an admin connection (request head, keep-alive idle) gets this long.
const DEADLINE: Duration = Duration::from_secs(10);

/// Serves the admin listener until `stop` changes.
pub async fn serve(
    listener: TcpListener,
    current: Arc<Current>,
    process: Arc<Process>,
    mut stop: watch::Receiver<bool>,
) {
    let gate = Gate::new(MAX_CONNECTIONS, Listener::Admin, process.metrics.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(DEADLINE);
    let deadlines = Deadlines {
        first_request: DEADLINE,
        idle: DEADLINE,
        close_grace: Duration::from_secs(1),
    };
    while let Some((tcp, _, activity)) = gate.accept(&listener, &mut stop).await {
        let (current, process) = (current.clone(), process.clone());
        let act = activity.clone();
        let svc = hyper::service::service_fn(move |req| {
            let guard = act.begin();
            let (current, process) = (current.clone(), process.clone());
            async move {
                let resp = handle(current, process, req).await?;
                Ok::<_, Infallible>(resp.map(|b| conn::Tracked::new(b, guard)))
            }
        });
        let conn = builder.serve_connection(TokioIo::new(tcp), svc);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let since = Instant::now();
            let ended = conn::drive(
                conn,
                |c| c.graceful_shutdown(),
                &activity,
                &deadlines,
                since,
                &mut stop,
            )
            .await;
            if let Some(Err(e)) = ended {
                if e.is_timeout() {
                    activity.timed_out_waiting();
                }
            }
        });
    }
    drop(listener);
    gate.closed(Duration::from_secs(2)).await;
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
        // Still ready after a failed reload: the previous config serves.
        Ok(()) => match process.reload_failure() {
            Some(why) => text(StatusCode::OK, &format!("ready\n{why}\n")),
            None => text(StatusCode::OK, "ready\n"),
        },
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
