//! The composition root: everything that derives from a [`Config`], built in one place.
//!
//! [`build`] opens the stores ([`crate::backend::StoreConfig::open`], by kind, through the
//! registry), compiles every resource type's mapping against them, and builds the credential
//! checks, the OAuth endpoint, the pass-through proxy and the TLS acceptor into one [`App`].
//! The server holds the current `App` in a [`Current`] and reads it once per request (and
//! once per connection for TLS): replacing it ([`Current::replace`]) serves new requests from
//! the new config while requests in flight finish on the one they started with. What lives
//! as long as the process — metrics, the drain flag, connections — is in [`Process`] and never
//! swapped. The server knows no kind of store.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::auth::Authenticator;
use crate::auth::oauth::{Signer, TokenEndpoint};
use crate::backend::Backend;
use crate::config::{BackendConfig, Config};
use crate::mapping::{self, MappedResource, Origin, Problem};
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::scim::discovery::Features;
use crate::scim::{self, Service};

/// What lives as long as the process, whatever config is current.
pub struct Process {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Set when shutdown begins: `/readyz` then answers 503.
    pub draining: AtomicBool,
    /// Why the last config reload failed, while the previous config serves (`/readyz` says).
    reload_failure: std::sync::Mutex<Option<String>>,
}

impl Process {
    /// A process with fresh metrics, not draining.
    pub fn new() -> Self {
        Process {
            metrics: Arc::new(Metrics::new()),
            draining: AtomicBool::new(false),
            reload_failure: std::sync::Mutex::new(None),
        }
    }

    /// Records why the last reload failed (`None`: it succeeded).
    pub fn set_reload_failure(&self, why: Option<String>) {
        if let Ok(mut f) = self.reload_failure.lock() {
            *f = why;
        }
    }

    /// Why the last reload failed, if it did.
    pub fn reload_failure(&self) -> Option<String> {
        self.reload_failure.lock().ok().and_then(|f| f.clone())
    }
}

impl Default for Process {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything a request needs that derives from the config; replaced whole on a swap.
pub struct App {
    /// The SCIM service over the mapped resource types.
    pub scim: Service<MappedResource>,
    /// Credential checks.
    pub auth: Authenticator,
    /// The OAuth token endpoint, when `[auth.oauth]` is configured.
    pub oauth: Option<TokenEndpoint>,
    /// The pass-through proxy, when an upstream is configured.
    pub proxy: Option<Proxy>,
    /// The process's metrics (shared by every `App`).
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
    /// TLS termination of the main listener, when `[listen].tls` is configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// What the router checks of each request: the SCIM body deadline, the proxies whose
    /// `X-Forwarded-*` are believed, the `Host` values URLs may be built from.
    pub limits: crate::server::router::Limits,
    /// The audit log of writes, when `[audit]` is configured.
    pub audit: Option<Arc<crate::audit::Sink>>,
}

/// The current [`App`]: read per request, replaced atomically.
pub struct Current(ArcSwap<App>);

impl Current {
    /// Starts with `app`.
    pub fn new(app: App) -> Self {
        Current(ArcSwap::from_pointee(app))
    }

    /// The app new requests are served from. The caller keeps it for the whole request.
    pub fn load(&self) -> Arc<App> {
        self.0.load_full()
    }

    /// Serves new requests from `app`; requests holding the old one finish on it, and it is
    /// dropped (its stores closed) when the last of them ends.
    pub fn replace(&self, app: App) {
        self.0.store(Arc::new(app));
    }
}

/// Opens one store through its kind.
async fn open_backend(b: &BackendConfig) -> Result<Arc<dyn Backend>, Problem> {
    b.store
        .open(&b.name)
        .await
        .map_err(|e| Problem::error(&b.origin, format!("[backend.{}]: {e}", b.name), None))
}

/// Opens every configured store (for `migrate`, and the first step of [`build`]).
pub async fn open_backends(config: &Config) -> Result<Vec<Arc<dyn Backend>>, Vec<Problem>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for b in &config.backends {
        match open_backend(b).await {
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

/// Compiles every resource type's mapping against its opened store (those whose store did
/// not open are left out: their problem is already said).
async fn resources(
    config: &Config,
    backends: &[Arc<dyn Backend>],
    metrics: &Arc<Metrics>,
    warnings: &mut Vec<Problem>,
    problems: &mut Vec<Problem>,
) -> Vec<MappedResource> {
    let settings = mapping::Settings {
        unknown_attributes: config.scim.unknown_attributes,
        retry_after: config.scim.retry_after,
        observer: metrics.clone(),
        max_members: Some(config.scim.max_members),
    };
    let mut providers = Vec::new();
    for spec in &config.resources {
        let Some(backend) = backends.iter().find(|b| b.name() == spec.backend) else {
            continue;
        };
        // Kept values live in the resource's own store, unless [state] names another.
        let holder = config.state_backend(&spec.backend);
        let state = if holder == spec.backend {
            None
        } else {
            match backends.iter().find(|b| b.name() == holder) {
                Some(h) => h.state(),
                None => continue,
            }
        };
        match mapping::build(spec, backend.as_ref(), &config.resources, &settings, state).await {
            Ok((resource, w)) => {
                warnings.extend(w);
                providers.push(resource);
            }
            Err(ps) => problems.extend(ps),
        }
    }
    providers
}

/// What `scim-sidecar migrate --prune` found of one resource type: the ids the sidecar
/// keeps values (or a tombstone) for, whose rows the app has deleted itself.
pub struct Orphans {
    /// The resource type.
    pub resource_type: String,
    /// Where the values are kept, for messages.
    pub kept_in: String,
    /// The ids.
    pub ids: Vec<String>,
}

/// Finds, for each resource type the sidecar keeps state for, the ids whose rows are gone
/// from the app (a row it deleted itself), and removes what is kept for them unless `dry_run`.
pub async fn prune(config: &Config, dry_run: bool) -> Result<Vec<Orphans>, Vec<Problem>> {
    let backends = open_backends(config).await?;
    let mut warnings = Vec::new();
    let mut problems = Vec::new();
    let metrics = Arc::new(Metrics::new());
    let providers = resources(config, &backends, &metrics, &mut warnings, &mut problems).await;
    if !problems.is_empty() {
        return Err(problems);
    }
    let origin = Origin {
        file: config.file.clone(),
        line: 0,
    };
    let failed =
        |e: crate::backend::BackendError| vec![Problem::error(&origin, e.to_string(), None)];
    let mut out = Vec::new();
    for spec in config.resources.iter().filter(|r| r.keeps_state()) {
        let holder = config.state_backend(&spec.backend);
        let (Some(state), Some(resource)) = (
            backends
                .iter()
                .find(|b| b.name() == holder)
                .and_then(|b| b.state()),
            providers
                .iter()
                .find(|p| crate::scim::Provider::resource_type(*p).name == spec.name),
        ) else {
            continue;
        };
        let owners = state.owners(&spec.name).await.map_err(failed)?;
        let present: std::collections::HashSet<String> = resource
            .table()
            .present(&owners)
            .await
            .map_err(failed)?
            .into_iter()
            .collect();
        let ids: Vec<String> = owners
            .into_iter()
            .filter(|id| !present.contains(id))
            .collect();
        if !dry_run {
            for id in &ids {
                state.forget(&spec.name, id).await.map_err(failed)?;
            }
        }
        out.push(Orphans {
            resource_type: spec.name.clone(),
            kept_in: state.describe(),
            ids,
        });
    }
    Ok(out)
}

/// Builds everything `config` derives: opens the stores and compiles the mappings (the
/// checks `run` and `check` share). `Ok` carries warnings; `Err` every problem found.
pub async fn build(
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<(App, Vec<Problem>), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut warnings = config.warnings.clone();
    let mut backends: Vec<Arc<dyn Backend>> = Vec::new();
    for b in &config.backends {
        match open_backend(b).await {
            Ok(backend) => backends.push(backend),
            Err(p) => problems.push(p),
        }
    }
    let providers = resources(config, &backends, &metrics, &mut warnings, &mut problems).await;
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
    let tls = match &config.listen.tls {
        Some(t) => match crate::server::tls::load_server_config(&t.cert, &t.key) {
            Ok(c) => Some(tokio_rustls::TlsAcceptor::from(c)),
            Err(e) => {
                problems.push(Problem::error(
                    &Origin {
                        file: config.file.clone(),
                        line: 0,
                    },
                    format!("[listen.tls]: {e}"),
                    None,
                ));
                None
            }
        },
        None => None,
    };
    let audit = match &config.audit {
        Some(out) => match crate::audit::Sink::open(out) {
            Ok(sink) => Some(Arc::new(sink)),
            Err(e) => {
                problems.push(Problem::error(
                    &Origin {
                        file: config.file.clone(),
                        line: 0,
                    },
                    format!("[audit] output {out:?} cannot be opened: {e}"),
                    Some("name a file the sidecar may append to, or \"stdout\"".into()),
                ));
                None
            }
        },
        None => None,
    };
    let (false, Some(auth)) = (!problems.is_empty(), auth) else {
        problems.extend(warnings);
        return Err(problems);
    };
    auth.prefetch().await;
    let app = App {
        scim: service(config, providers, &metrics),
        auth,
        oauth,
        proxy: config.upstream.clone().map(Proxy::new),
        metrics,
        backends,
        base_path: config.scim.base_path.clone(),
        public_url: config.scim.public_url.clone(),
        max_body_bytes: config.scim.max_body_bytes,
        retry_after: config.scim.retry_after,
        tls,
        limits: crate::server::router::Limits {
            scim_body_timeout: config.scim.body_timeout,
            trusted_proxies: config.listen.trusted_proxies.clone(),
            allowed_hosts: config.scim.allowed_hosts.clone(),
        },
        audit,
    };
    Ok((app, warnings))
}

/// The SCIM service over the compiled mappings.
fn service(
    config: &Config,
    providers: Vec<MappedResource>,
    metrics: &Arc<Metrics>,
) -> Service<MappedResource> {
    let m = metrics.clone();
    let on_ignored: scim::service::IgnoredHook = Arc::new(move |rt: &str, ignored: &[String]| {
        tracing::debug!(resource_type = rt, attributes = ?ignored, "ignored attributes the mapping does not store");
        m.ignored_attributes(rt, ignored.len());
    });
    Service::new(
        providers,
        scim::Settings {
            default_count: config.scim.default_count,
            max_count: config.scim.max_count,
            max_members: config.scim.max_members,
            members_in_flight: config.scim.members_in_flight,
            retry_after: config.scim.retry_after,
            unknown_attributes: config.scim.unknown_attributes,
            features: Features {
                max_results: config.scim.max_count,
                max_payload_bytes: config.scim.max_body_bytes,
                documentation_uri: config.scim.documentation_uri.clone(),
            },
        },
        on_ignored,
    )
}

/// The SCIM service alone, for `explain`: the stores opened and the mappings compiled
/// against them; no credentials, listeners or upstream. `Ok` carries warnings.
pub async fn service_only(
    config: &Config,
) -> Result<(Service<MappedResource>, Vec<Problem>), Vec<Problem>> {
    let metrics = Arc::new(Metrics::new());
    let backends = open_backends(config).await?;
    let mut warnings = config.warnings.clone();
    let mut problems = Vec::new();
    let providers = resources(config, &backends, &metrics, &mut warnings, &mut problems).await;
    if !problems.is_empty() {
        problems.extend(warnings);
        return Err(problems);
    }
    Ok((service(config, providers, &metrics), warnings))
}

/// Pings every store at once under one deadline: `Ok` when all answer, else one line per
/// store that failed or did not answer in time (for `/readyz`, whose probe has its own
/// timeout: a slow store must turn into a 503 with the reason, not a probe timeout).
pub async fn ping_all(
    backends: &[Arc<dyn Backend>],
    deadline: Duration,
) -> Result<(), Vec<String>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, b) in backends.iter().enumerate() {
        let b = b.clone();
        set.spawn(async move { (i, b.ping().await) });
    }
    let mut answered = vec![None; backends.len()];
    let _ = tokio::time::timeout(deadline, async {
        while let Some(done) = set.join_next().await {
            if let Ok((i, r)) = done {
                answered[i] = Some(r.map_err(|e| e.to_string()));
            }
        }
    })
    .await;
    set.abort_all();
    let failures: Vec<String> = backends
        .iter()
        .zip(answered)
        .filter_map(|(b, a)| match a {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(format!("backend {}: {e}", b.name())),
            None => Some(format!(
                "backend {}: no answer within {} ms",
                b.name(),
                deadline.as_millis()
            )),
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}
