//! The server: start-up checks, listeners, and graceful shutdown.
//!
//! [`build`] opens every store and compiles every mapping (the checks `run` and `check`
//! share). [`start`] binds the SCIM/proxy listener (optionally TLS) and the admin listener and
//! runs their accept loops; each connection is served by hyper-util's auto builder (HTTP/1.1
//! and HTTP/2, upgrades allowed) and every request goes through [`router::handle`].
//! [`Running::shutdown`] stops accepting, lets in-flight requests finish within
//! `listen.shutdown_timeout`, and returns.

pub mod conn;
pub mod forwarded;
pub mod router;
pub mod shard;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin;
use crate::auth::Authenticator;
use crate::auth::oauth::{Signer, TokenEndpoint};
use crate::backend::Backend;
use crate::config::{BackendKind, Config, Listen};
use crate::mapping::{self, MappedResource, Origin, Problem};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::scim::discovery::Features;
use crate::scim::{self, Service};

/// Everything a request needs, shared by all connections.
pub struct App {
    /// The SCIM service over the mapped resource types.
    pub scim: Service<MappedResource>,
    /// Credential checks.
    pub auth: Authenticator,
    /// The OAuth token endpoint, when `[auth.oauth]` is configured.
    pub oauth: Option<TokenEndpoint>,
    /// The pass-through proxy, when an upstream is configured.
    pub proxy: Option<Proxy>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The opened stores (for readiness).
    pub backends: Vec<Arc<dyn Backend>>,
    /// `[scim].base_path`.
    pub base_path: String,
    /// `[scim].public_url`.
    pub public_url: Option<String>,
    /// Request body limit for SCIM requests.
    pub max_body_bytes: u64,
    /// `Retry-After` seconds on 503.
    pub retry_after: u32,
    /// Set when shutdown begins: `/readyz` then answers 503.
    pub draining: AtomicBool,
}

/// Opens the stores and compiles the mappings. `Ok` carries warnings; `Err` every problem.
pub async fn build(
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<(App, Vec<Problem>), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut warnings = config.warnings.clone();
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    for b in &config.backends {
        match open_backend(&b.name, &b.kind, &b.origin).await {
            Ok(backend) => backends.push(backend),
            Err(p) => problems.push(p),
        }
    }
    let settings = mapping::Settings {
        unknown_attributes: config.scim.unknown_attributes,
        retry_after: config.scim.retry_after,
        observer: metrics.clone(),
    };
    let mut providers = Vec::new();
    for spec in &config.resources {
        let Some(backend) = backends.iter().find(|b| b.name() == spec.backend) else {
            continue;
        };
        match mapping::build(spec, backend.as_ref(), &config.resources, &settings).await {
            Ok((resource, w)) => {
                warnings.extend(w);
                providers.push(resource);
            }
            Err(ps) => problems.extend(ps),
        }
    }
    let auth_origin = Origin {
        file: config.file.clone(),
        line: 0,
    };
    let signer = match &config.auth.oauth {
        Some(o) => match Signer::new(
            o.signing_key.as_ref().map(|k| k.0.as_bytes()),
            o.token_lifetime,
        ) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                problems.push(Problem::error(
                    &auth_origin,
                    format!("[auth.oauth]: {e}"),
                    None,
                ));
                None
            }
        },
        None => None,
    };
    let auth = match Authenticator::new(&config.auth, signer.clone()) {
        Ok(a) => Some(a),
        Err((i, e)) => {
            problems.push(Problem::error(
                &auth_origin,
                format!(
                    "[[auth.jwt]] #{} ({}): {e}",
                    i + 1,
                    config.auth.jwt[i].issuer
                ),
                None,
            ));
            None
        }
    };
    let oauth = match (&config.auth.oauth, signer) {
        (Some(o), Some(s)) => Some(TokenEndpoint::new(o, s)),
        _ => None,
    };
    let (false, Some(auth)) = (!problems.is_empty(), auth) else {
        problems.extend(warnings);
        return Err(problems);
    };
    auth.prefetch().await;
    let m = metrics.clone();
    let on_ignored: scim::service::IgnoredHook = Arc::new(move |rt: &str, ignored: &[String]| {
        tracing::debug!(resource_type = rt, attributes = ?ignored, "ignored attributes the mapping does not store");
        m.ignored_attributes(rt, ignored.len());
    });
    let service = Service::new(
        providers,
        scim::Settings {
            default_count: config.scim.default_count,
            max_count: config.scim.max_count,
            unknown_attributes: config.scim.unknown_attributes,
            features: Features {
                max_results: config.scim.max_count,
                max_payload_bytes: config.scim.max_body_bytes,
                documentation_uri: config.scim.documentation_uri.clone(),
            },
        },
        on_ignored,
    );
    let app = App {
        scim: service,
        auth,
        oauth,
        proxy: config.upstream.clone().map(Proxy::new),
        metrics,
        backends,
        base_path: config.scim.base_path.clone(),
        public_url: config.scim.public_url.clone(),
        max_body_bytes: config.scim.max_body_bytes,
        retry_after: config.scim.retry_after,
        draining: AtomicBool::new(false),
    };
    Ok((app, warnings))
}

async fn open_backend(
    name: &str,
    kind: &BackendKind,
    origin: &Origin,
) -> Result<Arc<dyn Backend>, Problem> {
    let fail = |e: String| Problem::error(origin, format!("[backend.{name}]: {e}"), None);
    match kind {
        #[cfg(feature = "sqlite")]
        BackendKind::Sqlite {
            path,
            create_from,
            readers,
            busy_timeout,
        } => crate::backend::sql::sqlite::SqliteBackend::open(
            name,
            path,
            create_from.as_deref(),
            *readers,
            *busy_timeout,
        )
        .map(|b| Arc::new(b) as Arc<dyn Backend>)
        .map_err(fail),
        #[cfg(feature = "postgres")]
        BackendKind::Postgres {
            url,
            pool_size,
            connect_timeout,
            statement_timeout,
            ca_file,
        } => {
            let options = crate::backend::sql::postgres::PgOptions {
                url: url.0.clone(),
                pool_size: *pool_size,
                connect_timeout: *connect_timeout,
                statement_timeout: *statement_timeout,
                ca_file: ca_file.clone(),
            };
            crate::backend::sql::postgres::PgBackend::open(name, &options)
                .await
                .map(|b| Arc::new(b) as Arc<dyn Backend>)
                .map_err(fail)
        }
        #[allow(unreachable_patterns)] // reason: reachable only in builds without a store
        _ => Err(Problem::error(
            origin,
            format!("[backend.{name}]: this build does not include this kind of store"),
            Some("build with the default features".into()),
        )),
    }
}

/// Opens every configured store (for `migrate`).
pub async fn open_backends(config: &Config) -> Result<Vec<Arc<dyn Backend>>, Vec<Problem>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for b in &config.backends {
        match open_backend(&b.name, &b.kind, &b.origin).await {
            Ok(x) => out.push(x),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

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
    /// The shared state.
    pub app: Arc<App>,
    drain_delay: Duration,
    stop_main: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    main: JoinHandle<()>,
    admin: Option<JoinHandle<()>>,
}

impl Running {
    /// Shuts down in order: `/readyz` turns 503 (so Kubernetes stops routing here) while the
    /// listener keeps serving for `drain_delay`; then the listener stops accepting and
    /// in-flight requests finish (bounded by the shutdown timeout); the admin listener closes
    /// last, so probes see the drain.
    pub async fn shutdown(self) {
        self.app.draining.store(true, Ordering::SeqCst);
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
    let metrics = Arc::new(Metrics::new());
    let (app, warnings) = build(config, metrics).await.map_err(StartError::Problems)?;
    for w in &warnings {
        tracing::warn!(origin = %w.origin, fix = w.fix.as_deref().unwrap_or(""), "{}", w.message);
    }
    let app = Arc::new(app);
    let tls = match &config.listen.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            tls::load_server_config(&t.cert, &t.key).map_err(StartError::Listen)?,
        )),
        None => None,
    };
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
    let cap = main_connection_cap(config);
    if let Some(p) = &app.proxy {
        p.limit_connections(cap);
    }
    let gate = Arc::new(conn::Gate::new(
        cap,
        conn::Listener::Main,
        app.metrics.clone(),
    ));
    let limits = router::Limits {
        scim_body_timeout: config.scim.body_timeout,
        trusted_proxies: config.listen.trusted_proxies.clone(),
        allowed_hosts: config.scim.allowed_hosts.clone(),
    };
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
        tls,
        app.clone(),
        gate,
        main_rx,
        Serving {
            listen: config.listen.clone(),
            limits,
            shards,
        },
    ));
    let admin = admin_listener.map(|l| tokio::spawn(admin::serve(l, app.clone(), admin_rx)));
    Ok(Running {
        addr,
        admin_addr,
        app,
        drain_delay: config.listen.drain_delay,
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
    let cap = conn::fit_to_fd_limit(wanted, limit, per_connection, admin::MAX_CONNECTIONS as u64);
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

/// How the main listener serves: its `[listen]` settings, what the router needs of them,
/// and the shard threads connections run on (`None`: the caller's runtime).
struct Serving {
    listen: Listen,
    limits: router::Limits,
    shards: Option<shard::Shards>,
}

/// The accept loop of the SCIM/proxy listener: one task per connection, at most `gate.cap()`
/// at once, each bounded by the deadlines of [`conn`]; on `stop`, in-flight requests get
/// `listen.shutdown_timeout` to finish.
async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Arc<App>,
    gate: Arc<conn::Gate>,
    mut stop: watch::Receiver<bool>,
    serving: Serving,
) {
    let Serving {
        listen,
        limits,
        shards,
    } = serving;
    let limits = Arc::new(limits);
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
        let client = Arc::new(
            crate::proxy::ClientInfo::new(peer, tls.is_some())
                .at(tcp.local_addr().ok())
                .held_by(activity.clone()),
        );
        let app = app.clone();
        let act = activity.clone();
        let limits = limits.clone();
        let svc = hyper::service::service_fn(move |req| {
            let guard = act.begin();
            let answer = router::handle(app.clone(), req, client.clone(), limits.clone());
            async move {
                let resp = answer.await?;
                Ok::<_, std::convert::Infallible>(resp.map(|b| conn::Tracked::new(b, guard)))
            }
        });
        let builder = builder.clone();
        let mut stop = stop.clone();
        let tls = tls.clone();
        let task = move |tcp: tokio::net::TcpStream| async move {
            match tls {
                None => {
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
