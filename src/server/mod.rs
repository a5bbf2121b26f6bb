//! The server: listeners, connections and graceful shutdown.
//!
//! [`start`] builds the [`App`] for a config ([`crate::app::build`]: the checks `run` and
//! `check` share), binds the SCIM/proxy listener and the admin listener and runs their
//! accept loops. Each listener accepts through a [`conn::Gate`] (a cap on open connections)
//! and every connection is bounded by the deadlines of [`conn`]. Each connection is served by
//! hyper-util's auto builder (HTTP/1.1 and HTTP/2, upgrades allowed), TLS-terminated with the
//! current app's acceptor when configured, on the caller's runtime or on shard threads of
//! its own ([`shard`]); every request goes through [`router::handle`] with the app current
//! when it arrived. [`Running::replace`] swaps in an app built from another config;
//! [`Running::shutdown`] stops accepting, lets in-flight requests finish within
//! `listen.shutdown_timeout`, and returns.

pub mod conn;
pub mod fast;
pub mod forwarded;
pub mod router;
pub mod shard;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use crate::app::App;
use crate::app::{Current, Process};
use crate::config::{Config, Listen};
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
    /// The main listener's connection cap, which every app's proxy honours too.
    cap: usize,
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
        if let Some(p) = &app.proxy {
            p.limit_connections(self.cap);
        }
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

/// Checks, binds and serves on the caller's runtime. Returns once both listeners accept
/// connections.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    start_sharded(config, 0).await
}

/// [`start`], serving the main listener's connections on `shards` threads of their own
/// ([`shard`]); 0 serves them on the caller's runtime.
pub async fn start_sharded(config: &Config, shards: usize) -> Result<Running, StartError> {
    let process = Arc::new(Process::new());
    let (app, warnings) = crate::app::build(config, process.metrics.clone())
        .await
        .map_err(StartError::Problems)?;
    for w in &warnings {
        tracing::warn!(origin = %w.origin, fix = w.fix.as_deref().unwrap_or(""), "{}", w.message);
    }
    let cap = main_connection_cap(config);
    if let Some(p) = &app.proxy {
        p.limit_connections(cap);
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
    let gate = Arc::new(conn::Gate::new(
        cap,
        conn::Listener::Main,
        process.metrics.clone(),
    ));
    let (stop_main, main_rx) = watch::channel(false);
    let (stop_admin, admin_rx) = watch::channel(false);
    let shards =
        match shards {
            0 => None,
            n => Some(shard::Shards::start(n).map_err(|e| {
                StartError::Listen(format!("cannot start the serving threads: {e}"))
            })?),
        };
    let main = tokio::spawn(serve(
        listener,
        current.clone(),
        gate,
        main_rx,
        Serving {
            listen: config.listen.clone(),
            shards,
        },
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
        cap,
        stop_main,
        stop_admin,
        main,
        admin,
    })
}

/// `listen.max_connections`, lowered when the open-file limit could not honour it: running
/// out of descriptors stops every listener, the admin probes included, so the cap must bind
/// first. Each connection may hold two (its socket, and its connection to the app).
fn main_connection_cap(config: &Config) -> usize {
    let wanted = config.listen.max_connections;
    let Some(limit) = conn::raise_fd_limit() else {
        return wanted;
    };
    let per_connection = if config.upstream.is_some() { 2 } else { 1 };
    let cap = conn::fit_to_fd_limit(
        wanted,
        limit,
        per_connection,
        crate::admin::MAX_CONNECTIONS as u64,
    );
    if cap < wanted {
        tracing::warn!(
            max_connections = wanted,
            open_file_limit = limit,
            using = cap,
            "listen.max_connections does not fit the open-file limit (each connection may use \
             {per_connection} descriptors); raise `ulimit -n` (LimitNOFILE) to allow more"
        );
    }
    cap
}

/// How the main listener serves: its `[listen]` settings, and the shard threads connections
/// run on (`None`: the caller's runtime).
struct Serving {
    listen: Listen,
    shards: Option<shard::Shards>,
}

/// The accept loop of the SCIM/proxy listener: one task per connection, at most `gate.cap()`
/// at once, each bounded by the deadlines of [`conn`]; on `stop`, in-flight requests get
/// `listen.shutdown_timeout` to finish.
async fn serve(
    listener: TcpListener,
    current: Arc<Current>,
    gate: Arc<conn::Gate>,
    mut stop: watch::Receiver<bool>,
    serving: Serving,
) {
    let Serving { listen, shards } = serving;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // No hyper header-read timer: `conn::drive` already bounds the wait for every request
    // head (the first by header_read_timeout, later ones by idle_timeout), and hyper's
    // timer costs an allocation and a timer registration per request.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None);
    // RFC 9113 §6.7: pings find peers that vanished during a long response; an unanswered one
    // closes the connection.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(listen.http2_keepalive_interval))
        .keep_alive_timeout(listen.http2_keepalive_interval.min(Duration::from_secs(20)));
    let deadlines = conn::Deadlines {
        first_request: listen.header_read_timeout,
        idle: listen.idle_timeout,
        close_grace: CLOSE_GRACE,
    };
    let handshake = listen.tls_handshake_timeout;
    while let Some((tcp, peer, activity)) = gate.accept(&listener, &mut stop).await {
        // TLS as configured when the connection arrived; each request is served by the app
        // current when it arrives.
        let tls = current.load().tls.clone();
        // Formatted once per connection, not per request (X-Forwarded-For).
        let client = Arc::new(
            crate::proxy::ClientInfo::new(peer, tls.is_some())
                .at(tcp.local_addr().ok())
                .held_by(activity.clone()),
        );
        let (fast_current, fast_client) = (current.clone(), client.clone());
        let requests = current.clone();
        let act = activity.clone();
        let svc = hyper::service::service_fn(move |req| {
            let guard = act.begin();
            let answer = router::handle(requests.load(), req, client.clone());
            async move {
                let resp = answer.await?;
                Ok::<_, std::convert::Infallible>(resp.map(|b| conn::Tracked::new(b, guard)))
            }
        });
        let builder = builder.clone();
        let mut stop = stop.clone();
        let task = move |tcp: tokio::net::TcpStream| async move {
            match tls {
                None => {
                    // Plain HTTP/1.1 pass-through is relayed without hyper until a request
                    // needs it (fast.rs); hyper serves the connection from there on.
                    let Some(tcp) = fast::serve(
                        tcp,
                        &fast_current,
                        &fast_client,
                        &activity,
                        &deadlines,
                        &mut stop,
                    )
                    .await
                    else {
                        return;
                    };
                    serve_io(
                        tcp,
                        &builder,
                        svc,
                        &activity,
                        &deadlines,
                        Instant::now(),
                        &mut stop,
                    )
                    .await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            activity.timed_out(conn::Stage::TlsHandshake);
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    serve_io(
                        stream,
                        &builder,
                        svc,
                        &activity,
                        &deadlines,
                        Instant::now(),
                        &mut stop,
                    )
                    .await
                }
            }
        };
        match &shards {
            Some(shards) => shards.spawn(tcp, task),
            None => {
                tokio::spawn(task(tcp));
            }
        }
    }
    drop(listener);
    if gate.closed(listen.shutdown_timeout).await {
        tracing::info!("all connections closed");
    } else {
        tracing::warn!(
            seconds = listen.shutdown_timeout.as_secs(),
            "in-flight requests did not finish within the shutdown timeout"
        );
    }
}

/// How long a connection closed by a deadline may take to say goodbye (an HTTP/2 `GOAWAY`
/// waits for the peer's acknowledgement) before its socket is simply closed.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves one connection (plain or TLS) with HTTP/1.1 or HTTP/2 until it ends.
async fn serve_io<IO, S, B>(
    io: IO,
    builder: &auto::Builder<TokioExecutor>,
    svc: S,
    activity: &conn::Activity,
    deadlines: &conn::Deadlines,
    since: Instant,
    stop: &mut watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    let ended = conn::drive(
        conn,
        |c| c.graceful_shutdown(),
        activity,
        deadlines,
        since,
        stop,
    )
    .await;
    if let Some(Err(e)) = ended {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            // hyper's own header-read timer fired (HTTP/1.1).
            activity.timed_out_waiting();
        }
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
