//! The server: listeners, connections and graceful shutdown.
//!
//! [`start`] builds the [`App`] for a config ([`crate::app::build`]: the checks `run` and
//! `check` share), binds the SCIM/proxy listener and the admin listener and runs their
//! accept loops. Each connection is served by hyper-util's auto builder (HTTP/1.1 and HTTP/2,
//! upgrades allowed), TLS-terminated with the current app's acceptor when configured, and
//! every request goes through [`router::handle`] with the app current when it arrived.
//! [`Running::replace`] swaps in an app built from another config; [`Running::shutdown`]
//! stops accepting, lets in-flight requests finish within `listen.shutdown_timeout`, and
//! returns.

pub mod router;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::app::App;
use crate::app::{Current, Process};
use crate::config::Config;
use crate::mapping::Problem;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or the stores have problems.
    #[error("{}", crate::config::report(.0))]
    Problems(Vec<Problem>),
    /// A listener could not be bound or TLS could not be loaded.
    #[error("{0}")]
    Listen(String),
}

/// A running server.
pub struct Running {
    /// The SCIM/proxy listener's address.
    pub addr: SocketAddr,
    /// The admin listener's address.
    pub admin_addr: Option<SocketAddr>,
    /// What lives as long as the process (metrics, drain state).
    pub process: Arc<Process>,
    /// The config-derived state new requests are served from.
    pub current: Arc<Current>,
    drain_delay: Duration,
    stop_main: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    main: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
}

impl Running {
    /// The app new requests are served from.
    pub fn app(&self) -> Arc<App> {
        self.current.load()
    }

    /// Builds everything `config` derives and serves new requests from it; requests in
    /// flight finish on the app they started with. `Err` (every problem) keeps the current
    /// app. The listeners' addresses and deadlines are those the server started with.
    pub async fn replace(&self, config: &Config) -> Result<Vec<Problem>, Vec<Problem>> {
        let (app, warnings) = crate::app::build(config, self.process.metrics.clone()).await?;
        self.current.replace(app);
        Ok(warnings)
    }

    /// Shuts down in order: `/readyz` turns 503 (so Kubernetes stops routing here) while the
    /// listener keeps serving for `drain_delay`; then the listener stops accepting and
    /// in-flight requests finish (bounded by the shutdown timeout); the admin listener closes
    /// last, so probes see the drain.
    pub async fn shutdown(self) {
        self.process.draining.store(true, Ordering::SeqCst);
        if !self.drain_delay.is_zero() {
            tokio::time::sleep(self.drain_delay).await;
        }
        let _ = self.stop_main.send(true);
        let _ = self.main.await;
        let _ = self.stop_admin.send(true);
        if let Some(a) = self.admin {
            let _ = a.await;
        }
    }
}

/// Checks, binds and serves. Returns once both listeners accept connections.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let process = Arc::new(Process::new());
    let (app, warnings) = crate::app::build(config, process.metrics.clone())
        .await
        .map_err(StartError::Problems)?;
    for w in &warnings {
        tracing::warn!(origin = %w.origin, fix = w.fix.as_deref().unwrap_or(""), "{}", w.message);
    }
    let current = Arc::new(Current::new(app));
    crate::memory::spawn_trimmer();
    let listener = TcpListener::bind(&config.listen.addr)
        .await
        .map_err(|e| StartError::Listen(format!("cannot listen on {}: {e}", config.listen.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| StartError::Listen(e.to_string()))?;
    let admin_listener = match &config.admin {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| StartError::Listen(format!("cannot listen on {a} (admin): {e}")))?,
        ),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let (stop_main, main_rx) = watch::channel(false);
    let (stop_admin, admin_rx) = watch::channel(false);
    let main = tokio::spawn(serve(
        listener,
        current.clone(),
        main_rx,
        config.listen.shutdown_timeout,
        config.listen.header_read_timeout,
    ));
    let admin = admin_listener.map(|l| {
        tokio::spawn(crate::admin::serve(
            l,
            current.clone(),
            process.clone(),
            admin_rx,
        ))
    });
    Ok(Running {
        addr,
        admin_addr,
        process,
        current,
        drain_delay: config.listen.drain_delay,
        stop_main,
        stop_admin,
        main,
        admin,
    })
}

/// The accept loop of the SCIM/proxy listener.
async fn serve(
    listener: TcpListener,
    current: Arc<Current>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    header_read_timeout: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        // TLS as configured when the connection arrived; each request is served by the app
        // current when it arrives.
        let tls = current.load().tls.clone();
        let requests = current.clone();
        // Formatted once per connection, not per request (X-Forwarded-For).
        let client = Arc::new(crate::proxy::ClientInfo::new(peer, tls.is_some()));
        let svc = hyper::service::service_fn(move |req| {
            router::handle(requests.load(), req, client.clone())
        });
        match &tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), svc);
                let fut = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(e) = fut.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!(seconds = grace.as_secs(), "in-flight requests did not finish within the shutdown timeout"),
    }
}
