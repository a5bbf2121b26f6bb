//! The `scim-sidecar` command: `run` serves, `check` validates a config against its stores.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use scim_sidecar::config::{self, Config, LogFormat, ProcessEnv};
use scim_sidecar::{app, reload, server};

/// mimalloc, not glibc's malloc: see the README, "Memory allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A reverse-proxy sidecar that adds SCIM 2.0 provisioning to applications that have none.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve SCIM under [scim].base_path and pass everything else to [upstream].url.
    Run {
        /// The config file.
        #[arg(short, long, env = "SCIM_SIDECAR_CONFIG")]
        config: PathBuf,
        /// Log format (overrides [log].format).
        #[arg(long, value_enum)]
        log_format: Option<Format>,
        /// Threads serving connections, each with its own event loop (default: 1). One
        /// loop costs the least CPU per request while the sidecar is not what limits its
        /// app; more pass through more than one core's worth of traffic.
        #[arg(long, env = "SCIM_SIDECAR_WORKERS")]
        workers: Option<usize>,
    },
    /// Validate the config file and the live stores (tables, columns, types, indexes), print
    /// every problem with file, line and fix, and exit non-zero if there is any.
    Check {
        /// The config file.
        #[arg(short, long, env = "SCIM_SIDECAR_CONFIG")]
        config: PathBuf,
    },
    /// Create the sidecar's own table for attributes the app has no column for (those mapped
    /// with `kept = true`) and for soft deletes, in the store that keeps them (each
    /// resource's own, or `[state] backend`). Safe to run again; never run implicitly. Reads
    /// only the stores' sections: the token's variables need not be set.
    Migrate {
        /// The config file.
        #[arg(short, long, env = "SCIM_SIDECAR_CONFIG")]
        config: PathBuf,
        /// Then remove what the sidecar keeps for rows the app has deleted itself, printing
        /// each resource type's ids first.
        #[arg(long)]
        prune: bool,
        /// With --prune: print what would be removed, and remove nothing.
        #[arg(long, requires = "prune")]
        dry_run: bool,
    },
    /// Show what one SCIM request would do — the statements sent to the stores, with their
    /// values, and the answer — without writing anything: every transaction is rolled back.
    /// A write to an LDAP or REST store, which cannot be taken back, is refused; reads of
    /// them run. Reads only the stores' sections and [scim]: the token's variables need not
    /// be set.
    ///
    /// Example: scim-sidecar explain -c scim-sidecar.toml POST /Users --body user.json
    Explain {
        /// The config file.
        #[arg(short, long, env = "SCIM_SIDECAR_CONFIG")]
        config: PathBuf,
        /// The request's method: GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// The path, below [scim].base_path or with it, query included:
        /// /Users, /Groups/42, '/Users?filter=userName eq "a@example.com"'.
        path: String,
        /// The request's JSON body: a file, or - for standard input.
        #[arg(long)]
        body: Option<PathBuf>,
    },
    /// Add the sidecar to Kubernetes YAML (Deployment, StatefulSet, DaemonSet, Pod) whose pod
    /// template has the annotation scim-sidecar.io/inject: "true", and write it to stdout.
    Inject(scim_sidecar::k8s::inject::InjectArgs),
    /// Serve the mutating admission webhook that adds the sidecar at pod creation.
    Webhook(scim_sidecar::k8s::webhook::WebhookArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS crypto provider for the whole process (ring); see reference/crates-and-test-servers.md.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    scim_sidecar::memory::tune();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let mut shards = 0;
    if let Command::Run { workers, .. } = &cli.command {
        if *workers == Some(0) {
            eprintln!("--workers (SCIM_SIDECAR_WORKERS) must be at least 1");
            return ExitCode::FAILURE;
        }
        // Connections are served on shard threads (server::shard); this runtime only
        // accepts, serves the admin port and runs background work. One shard unless told
        // otherwise: a sidecar's load is its app's, and two loops on the cores the app and
        // its database use each wake up for less work (README, "Threads").
        shards = workers.unwrap_or(1);
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check { config } => runtime.block_on(check(config)),
        Command::Migrate {
            config,
            prune,
            dry_run,
        } => runtime.block_on(migrate(config, prune, dry_run)),
        Command::Run {
            config, log_format, ..
        } => runtime.block_on(run(config, log_format, shards)),
        Command::Explain {
            config,
            method,
            path,
            body,
        } => runtime.block_on(explain(config, method, path, body)),
        Command::Inject(args) => scim_sidecar::k8s::inject::main(args),
        Command::Webhook(args) => runtime.block_on(scim_sidecar::k8s::webhook::main(args)),
    }
}

fn load(path: &std::path::Path) -> Option<Config> {
    match config::load(path, &ProcessEnv) {
        Ok(c) => Some(c),
        Err(problems) => {
            eprint!("{}", config::report(&problems));
            eprintln!(
                "{}: the configuration has problems; nothing was started",
                path.display()
            );
            None
        }
    }
}

async fn check(path: PathBuf) -> ExitCode {
    let Some(config) = load(&path) else {
        return ExitCode::FAILURE;
    };
    let metrics = std::sync::Arc::new(scim_sidecar::metrics::Metrics::new());
    match app::build(&config, metrics).await {
        Ok((app, mut warnings)) => {
            warnings.extend(replica_warnings(&config));
            eprint!("{}", config::report(&warnings));
            let served: Vec<String> = app
                .scim
                .resource_types()
                .map(|rt| {
                    format!(
                        "{} ({} attributes)",
                        rt.endpoint,
                        rt.schema.attributes.len()
                            + rt.extensions
                                .iter()
                                .map(|e| e.schema.attributes.len())
                                .sum::<usize>()
                    )
                })
                .collect();
            println!("{}: OK — serves {}", path.display(), served.join(", "));
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprint!("{}", config::report(&problems));
            let n = config::error_count(&problems);
            eprintln!("{}: {n} problem(s)", path.display());
            ExitCode::FAILURE
        }
    }
}

async fn migrate(path: PathBuf, prune: bool, dry_run: bool) -> ExitCode {
    // Only the stores are read: an init container needs the database's variables, not the
    // token's.
    let config = match config::load_stores(&path, &ProcessEnv) {
        Ok(c) => c,
        Err(problems) => {
            eprint!("{}", config::report(&problems));
            eprintln!(
                "{}: the stores' configuration has problems; nothing was changed",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let needed: Vec<&str> = config
        .resources
        .iter()
        .filter(|r| r.keeps_state())
        .map(|r| config.state_backend(&r.backend))
        .collect();
    if needed.is_empty() {
        println!(
            "{}: the sidecar keeps nothing (no kept = true, no on_delete = \"soft\"); nothing to create",
            path.display()
        );
        return ExitCode::SUCCESS;
    }
    // A store that holds only the sidecar's state is the sidecar's to create (a local
    // SQLite file); one the app's resources are in is the app's.
    for b in config.backends.iter().filter(|b| {
        needed.contains(&b.name.as_str()) && !config.resources.iter().any(|r| r.backend == b.name)
    }) {
        match b.store.create_for_state() {
            Ok(None) => {}
            Ok(Some(done)) => println!("[backend.{}]: {done}", b.name),
            Err(e) => {
                let p = scim_sidecar::mapping::Problem::error(
                    &b.origin,
                    format!("[backend.{}]: {e}", b.name),
                    None,
                );
                eprint!("{}", config::report(&[p]));
                return ExitCode::FAILURE;
            }
        }
    }
    let backends = match app::open_backends(&config).await {
        Ok(b) => b,
        Err(problems) => {
            eprint!("{}", config::report(&problems));
            return ExitCode::FAILURE;
        }
    };
    for b in backends.iter().filter(|b| needed.contains(&b.name())) {
        match b.migrate().await {
            Ok(done) if done.is_empty() => println!("[backend.{}]: up to date", b.name()),
            Ok(done) => {
                for d in done {
                    println!("[backend.{}]: {d}", b.name());
                }
            }
            Err(e) => {
                eprintln!("[backend.{}]: migration failed: {e}", b.name());
                return ExitCode::FAILURE;
            }
        }
    }
    if prune {
        return prune_orphans(&config, dry_run).await;
    }
    ExitCode::SUCCESS
}

/// `explain`: one request through the service with the stores recording and rolling back.
async fn explain(path: PathBuf, method: String, target: String, body: Option<PathBuf>) -> ExitCode {
    let Ok(method) = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
        eprintln!("explain: {method:?} is not an HTTP method (GET, POST, PUT, PATCH or DELETE)");
        return ExitCode::FAILURE;
    };
    let body = match body.as_deref() {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut b = Vec::new();
            if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut b) {
                eprintln!("explain: cannot read the body from standard input: {e}");
                return ExitCode::FAILURE;
            }
            b
        }
        Some(p) => match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("explain: cannot read the body from {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        },
    };
    let config = match config::load_service(&path, &ProcessEnv) {
        Ok(c) => c,
        Err(problems) => {
            eprint!("{}", config::report(&problems));
            eprintln!("{}: the configuration has problems", path.display());
            return ExitCode::FAILURE;
        }
    };
    let base_path = config.scim.base_path.trim_end_matches('/');
    let rest = match target.strip_prefix(base_path) {
        Some(r) if !base_path.is_empty() && (r.is_empty() || r.starts_with(['/', '?'])) => r,
        _ => target.as_str(),
    };
    if let Some(why) = scim_sidecar::explain::refusal(&config, &method, rest) {
        eprintln!("explain: {why}");
        return ExitCode::FAILURE;
    }
    let (service, warnings) = match app::service_only(&config).await {
        Ok(s) => s,
        Err(problems) => {
            eprint!("{}", config::report(&problems));
            let n = config::error_count(&problems);
            eprintln!("{}: {n} problem(s)", path.display());
            return ExitCode::FAILURE;
        }
    };
    eprint!("{}", config::report(&warnings));
    let base = config
        .scim
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://localhost{base_path}"));
    let done = scim_sidecar::explain::run(&service, &base, &method, rest, body.into()).await;
    print!("{}", scim_sidecar::explain::report(&done));
    if done.response.status.as_u16() < 400 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `migrate --prune`: what the sidecar keeps for rows the app deleted itself, listed first,
/// then removed (unless `dry_run`).
async fn prune_orphans(config: &Config, dry_run: bool) -> ExitCode {
    let report = |problems: Vec<scim_sidecar::mapping::Problem>| {
        eprint!("{}", config::report(&problems));
        eprintln!("prune: nothing was removed");
        ExitCode::FAILURE
    };
    let found = match app::prune(config, true).await {
        Ok(f) => f,
        Err(problems) => return report(problems),
    };
    for o in &found {
        if o.ids.is_empty() {
            println!("{}: nothing kept for rows that are gone", o.resource_type);
            continue;
        }
        let shown: Vec<&str> = o.ids.iter().take(50).map(String::as_str).collect();
        let more = o.ids.len() - shown.len();
        println!(
            "{}: {} keeps values for {} id(s) whose rows are gone: {}{}",
            o.resource_type,
            o.kept_in,
            o.ids.len(),
            shown.join(", "),
            if more > 0 {
                format!(" (and {more} more)")
            } else {
                String::new()
            }
        );
    }
    if dry_run || found.iter().all(|o| o.ids.is_empty()) {
        return ExitCode::SUCCESS;
    }
    match app::prune(config, false).await {
        Ok(done) => {
            for o in done.iter().filter(|o| !o.ids.is_empty()) {
                println!(
                    "{}: removed what was kept for {} id(s)",
                    o.resource_type,
                    o.ids.len()
                );
            }
            ExitCode::SUCCESS
        }
        Err(problems) => report(problems),
    }
}

/// Where the config cannot be shared by several sidecar replicas: state the sidecar keeps in
/// a store local to one machine would differ from replica to replica.
fn replica_warnings(config: &Config) -> Vec<scim_sidecar::mapping::Problem> {
    let mut out = Vec::new();
    for r in &config.resources {
        if !r.keeps_state() {
            continue;
        }
        let holder = config.state_backend(&r.backend);
        let Some(b) = config.backends.iter().find(|b| b.name == holder) else {
            continue;
        };
        if let Err(why) = b.store.shared() {
            let mut p = scim_sidecar::mapping::Problem::error(
                &b.origin,
                format!(
                    "[resource.{}] keeps attributes or soft-delete state in [backend.{holder}]: {why}, so several sidecar replicas would each keep their own (run one replica, or keep them in PostgreSQL)",
                    r.name
                ),
                Some("add [state] with backend = \"<a PostgreSQL backend>\" before running more than one replica".into()),
            );
            p.warning = true;
            if !out
                .iter()
                .any(|x: &scim_sidecar::mapping::Problem| x.message == p.message)
            {
                out.push(p);
            }
        }
    }
    out
}

async fn run(path: PathBuf, format: Option<Format>, shards: usize) -> ExitCode {
    let started = Instant::now();
    let Some(config) = load(&path) else {
        return ExitCode::FAILURE;
    };
    init_logging(&config, format);
    let running = match server::start_sharded(&config, shards.max(1)).await {
        Ok(r) => {
            r.process.metrics.runtime_workers(shards.max(1));
            r
        }
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            eprintln!("{}: not started", path.display());
            return ExitCode::FAILURE;
        }
    };
    let hash = reload::config_hash(&path);
    running.process.metrics.config_loaded(&hash);
    tracing::info!(
        listen = %running.addr,
        scim = %config.scim.base_path,
        upstream = config.upstream.as_ref().map(|u| u.url.to_string()).unwrap_or_else(|| "none".into()),
        admin = running.admin_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        tls = config.listen.tls.is_some(),
        config = %hash,
        startup_ms = started.elapsed().as_secs_f64() * 1e3,
        "scim-sidecar ready"
    );
    serve_until_stopped(&running, &path, &config).await;
    tracing::info!(
        timeout_s = config.listen.shutdown_timeout.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

fn init_logging(config: &Config, format: Option<Format>) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let json = match format {
        Some(Format::Json) => true,
        Some(Format::Text) => false,
        None => config.log.format == LogFormat::Json,
    };
    // Colour only for a person at a terminal: a log file or `kubectl logs` gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    log_panics();
}

/// A panic goes to the log as one error event, with the thread, where and what: the default
/// hook writes a line of its own to stderr, outside the log's format (a JSON log would hold
/// a line that is not JSON). The SCIM request it happened in is answered 500
/// (`server::router`).
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let what = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("-"),
            at,
            panic = what,
            "panicked"
        );
    }));
}

/// Serves until SIGTERM or Ctrl-C, reloading the config when one of its files changes or on
/// SIGHUP ([`reload`]).
async fn serve_until_stopped(running: &server::Running, path: &std::path::Path, config: &Config) {
    let mut watched = reload::Watched::new(path, config);
    let mut poll = tokio::time::interval(reload::POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut hangup = hangup_signal();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut served: Option<Config> = None;
    loop {
        let asked = tokio::select! {
            () = &mut stop => return,
            _ = poll.tick() => false,
            _ = hangup.recv() => true,
        };
        if !asked && !watched.changed() {
            continue;
        }
        tracing::info!(
            reason = if asked {
                "SIGHUP"
            } else {
                "a watched file changed"
            },
            "reloading the config"
        );
        if let Some(new) = reload::reload(running, path, &ProcessEnv).await {
            let old = served.as_ref().unwrap_or(config);
            for setting in reload::restart_only(old, &new) {
                tracing::warn!(
                    setting,
                    "changed in the config: takes effect at the next restart"
                );
            }
            watched = reload::Watched::new(path, &new);
            served = Some(new);
        }
    }
}

/// SIGHUP, as a stream of notices (none where the platform has no such signal; the stream
/// then stays open and silent).
fn hangup_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut hup) = signal(SignalKind::hangup()) {
                while hup.recv().await.is_some() {
                    let _ = tx.try_send(());
                }
            }
        }
        std::future::pending::<()>().await;
        drop(tx);
    });
    rx
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
