//! Configuration: one TOML file, read in two phases.
//!
//! [`raw`] deserialises the file as written (unknown keys refused, positions kept);
//! [`validate`] expands `${VAR}` references ([`interpolate`]), checks every value and returns
//! either a [`Config`] or *every* problem found, each with file, line and fix. `main` calls
//! [`load`]; the store-side checks (tables, columns) run later, when backends are opened.

pub mod interpolate;
pub mod mapping;
pub mod raw;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use interpolate::{Env, ProcessEnv};
pub use validate::Cx;

use crate::backend::StoreConfig;
use crate::mapping::{Origin, Problem, ResourceSpec};
use crate::proxy::UpstreamConfig;
use crate::scim::UnknownPolicy;

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    /// The file it came from.
    pub file: Arc<str>,
    /// `[listen]`
    pub listen: Listen,
    /// `[upstream]`: the application non-SCIM traffic goes to.
    pub upstream: Option<UpstreamConfig>,
    /// `[scim]`
    pub scim: Scim,
    /// `[auth]`: accepted credentials.
    pub auth: Auth,
    /// `[admin]`: address of the admin listener.
    pub admin: Option<String>,
    /// `[log]`
    pub log: Log,
    /// `[backend.*]`
    pub backends: Vec<BackendConfig>,
    /// `[resource.*]`
    pub resources: Vec<ResourceSpec>,
    /// `[state]`: where kept attributes live, when not in each resource's own store.
    pub state: Option<StateConfig>,
    /// `[audit]`: where the audit log of writes goes; `None`: no audit log.
    pub audit: Option<crate::audit::Output>,
    /// Things worth fixing that do not stop start-up.
    pub warnings: Vec<Problem>,
    /// Every file the config reads besides itself (token files, TLS certificate and key,
    /// JWK sets): what a reload watches with it.
    pub files: Vec<PathBuf>,
}

/// `[listen]`
#[derive(Clone, Debug)]
pub struct Listen {
    /// `host:port` to bind.
    pub addr: String,
    /// TLS termination, when configured.
    pub tls: Option<Tls>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
    /// How long to keep accepting after SIGTERM, with `/readyz` already answering 503.
    pub drain_delay: Duration,
    /// How long a client may take to send its first request head, from accept (or the end
    /// of the TLS handshake).
    pub header_read_timeout: Duration,
    /// How long a kept-alive connection may sit with no request in progress (until the next
    /// request head is complete).
    pub idle_timeout: Duration,
    /// How long the TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// How long a client may pause in the middle of a request body.
    pub body_idle_timeout: Duration,
    /// Interval of HTTP/2 keep-alive pings (a peer that does not answer is dropped).
    pub http2_keepalive_interval: Duration,
    /// Connections open at once; accept pauses at the cap.
    pub max_connections: usize,
    /// Peers whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed.
    pub trusted_proxies: Vec<crate::server::forwarded::Cidr>,
}

impl Listen {
    /// The defaults of every key but `addr`.
    pub fn defaults(addr: String) -> Listen {
        Listen {
            addr,
            tls: None,
            shutdown_timeout: Duration::from_secs(25),
            drain_delay: Duration::ZERO,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            http2_keepalive_interval: Duration::from_secs(30),
            max_connections: 4096,
            trusted_proxies: Vec::new(),
        }
    }
}

/// PEM files for TLS termination.
#[derive(Clone, Debug)]
pub struct Tls {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// `[scim]`
#[derive(Clone, Debug)]
pub struct Scim {
    /// Path prefix of SCIM requests (`/scim/v2`).
    pub base_path: String,
    /// Absolute base URL used in `meta.location`, when the sidecar cannot see it (behind a
    /// TLS-terminating load balancer).
    pub public_url: Option<String>,
    /// Request body limit.
    pub max_body_bytes: u64,
    /// Page size when `count` is absent.
    pub default_count: u64,
    /// Page size cap.
    pub max_count: u64,
    /// The most members one response carries (a group's, or a page of groups'); a read
    /// that would carry more is 400 `tooMany`.
    pub max_members: u64,
    /// The most members held by responses being built or sent at once, across requests:
    /// what bounds the memory large groups can take, whatever their size and the number of
    /// readers. A request over the budget waits for it.
    pub members_in_flight: u64,
    /// What to do with attributes the mapping does not store.
    pub unknown_attributes: UnknownPolicy,
    /// `Retry-After` seconds on 503.
    pub retry_after: u32,
    /// Published in `/ServiceProviderConfig`.
    pub documentation_uri: Option<String>,
    /// How long a client may take to send a whole SCIM request body.
    pub body_timeout: Duration,
    /// `Host` values (lower case, `host` or `host:port`) that absolute URLs may be built
    /// from when `public_url` is not set.
    pub allowed_hosts: Vec<String>,
}

/// `[auth]`: every way a client may authenticate.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    /// `bearer_tokens` and `bearer_token_files`.
    pub tokens: Vec<StaticToken>,
    /// `[[auth.jwt]]`: external token issuers.
    pub jwt: Vec<JwtIssuer>,
    /// `[auth.oauth]`: the sidecar's own token endpoint.
    pub oauth: Option<OAuth>,
}

/// One accepted static bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticToken {
    /// The token.
    pub secret: Secret,
    /// May read and search, never write.
    pub read_only: bool,
}

/// One `[[auth.jwt]]` issuer.
#[derive(Clone, Debug)]
pub struct JwtIssuer {
    /// Exact `iss` value.
    pub issuer: String,
    /// Accepted `aud` values (one must be in the token).
    pub audiences: Vec<String>,
    /// Accepted `alg` values.
    pub algorithms: Vec<crate::auth::jwt::Alg>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Where the signing keys come from.
    pub keys: KeySource,
    /// Least time between two fetches of `jwks_url`.
    pub refresh_min: Duration,
    /// A scope (in `scope`, `scp` or `roles`) a token needs to write; without it the token is
    /// read-only. `None`: every valid token may write.
    pub write_scope: Option<String>,
    /// Every token of this issuer is read-only.
    pub read_only: bool,
}

/// Where an issuer's JWK set comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Fetched over HTTP(S).
    Url {
        /// `jwks_url`.
        url: http::Uri,
        /// CA bundle for `https` (PEM).
        ca: Option<PathBuf>,
    },
    /// Read once from a file.
    File(PathBuf),
}

/// `[auth.oauth]`: the client-credentials token endpoint.
#[derive(Clone, Debug)]
pub struct OAuth {
    /// Absolute path of the endpoint.
    pub path: String,
    /// Accepted clients.
    pub clients: Vec<OAuthClient>,
    /// HMAC key of issued tokens; `None`: a random key per process.
    pub signing_key: Option<Secret>,
    /// Lifetime of issued tokens.
    pub token_lifetime: Duration,
    /// Failed attempts one client IP may make at once.
    pub failed_attempts_burst: u32,
    /// Failed attempts per minute one client IP regains.
    pub failed_attempts_per_minute: u32,
    /// Longest delay of a request whose buckets are empty.
    pub max_delay: Duration,
}

/// One OAuth client.
#[derive(Clone, Debug)]
pub struct OAuthClient {
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub secret: Secret,
    /// Its tokens may read and search, never write.
    pub read_only: bool,
}

/// A secret value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Clone, Debug)]
pub struct Log {
    /// Format.
    pub format: LogFormat,
    /// Default filter when `RUST_LOG` is unset.
    pub level: String,
}

/// `[backend.NAME]`
#[derive(Clone, Debug)]
pub struct BackendConfig {
    /// Its name.
    pub name: String,
    /// Where it is configured.
    pub origin: Origin,
    /// The store, as its kind parsed it.
    pub store: Arc<dyn StoreConfig>,
}

/// `[state]`: the backend holding the sidecar's own state for every resource type.
#[derive(Clone, Debug)]
pub struct StateConfig {
    /// The `[backend.NAME]`.
    pub backend: String,
    /// Where it is configured.
    pub origin: Origin,
}

impl Config {
    /// The backend that keeps the sidecar's state for resources of `backend`: `[state]`'s,
    /// else the resource's own.
    pub fn state_backend<'a>(&'a self, backend: &'a str) -> &'a str {
        self.state.as_ref().map_or(backend, |s| s.backend.as_str())
    }

    /// `read` (files the checker read) plus the files the config names and the app reads
    /// when it is built: the TLS certificate and key, JWK set files.
    fn with_files(mut self, read: Vec<PathBuf>) -> Self {
        let mut files = read;
        if let Some(t) = &self.listen.tls {
            files.push(t.cert.clone());
            files.push(t.key.clone());
        }
        for j in &self.auth.jwt {
            if let KeySource::File(f) = &j.keys {
                files.push(f.clone());
            }
        }
        files.dedup();
        self.files = files;
        self
    }
}

/// [`load`] for `scim-sidecar migrate`, which reads only the stores (`[backend.*]`, `[state]`,
/// `[resource.*]`): a problem anywhere else (a token variable an init container does not
/// have, an upstream it does not reach) does not stop it. The sections it does not read are
/// left at their defaults.
pub fn load_stores(path: &Path, env: &dyn Env) -> Result<Config, Vec<Problem>> {
    load_sections(path, env, &["backend", "state", "resource"])
}

/// Reads what `explain` needs: the stores' sections and `[scim]` (paging, unknown
/// attributes), as [`load_stores`] does.
pub fn load_service(path: &Path, env: &dyn Env) -> Result<Config, Vec<Problem>> {
    load_sections(path, env, &["backend", "state", "resource", "scim"])
}

/// Reads a config file, reporting only the problems within the named top-level sections.
fn load_sections(path: &Path, env: &dyn Env, sections: &[&str]) -> Result<Config, Vec<Problem>> {
    let (src, file, dir) = read(path)?;
    let lines = section_lines(&src, sections);
    let inside = |p: &Problem| lines.get(p.origin.line).copied().unwrap_or(false);
    validate::from_str_filtered(&src, file, &dir, env, &inside)
}

/// For each 1-based line of a config file (index 0 unused), whether it belongs to one of
/// `sections` (`backend` covers `[backend.*]` and its subtables).
fn section_lines(src: &str, sections: &[&str]) -> Vec<bool> {
    let mut out = vec![false];
    let mut inside = false;
    for line in src.lines() {
        let t = line.trim_start();
        if let Some(header) = t.strip_prefix('[') {
            let name = header.trim_start_matches('[').trim_start();
            let top = name
                .split(['.', ']'])
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            inside = sections.contains(&top);
        }
        out.push(inside);
    }
    out
}

/// Reads and validates a config file. `Err` holds every problem found (warnings included).
pub fn load(path: &Path, env: &dyn Env) -> Result<Config, Vec<Problem>> {
    let (src, file, dir) = read(path)?;
    validate::from_str(&src, file, &dir, env)
}

/// A config file's text, its name for messages, and the directory relative paths start from.
fn read(path: &Path) -> Result<(String, Arc<str>, PathBuf), Vec<Problem>> {
    let file: Arc<str> = Arc::from(path.display().to_string());
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem::error(
            &Origin {
                file: file.clone(),
                line: 0,
            },
            format!("cannot read the config file: {e}"),
            Some("pass the path of a TOML file with --config".into()),
        )]
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((src, file, dir))
}

/// Prints problems for a human, errors first.
pub fn report(problems: &[Problem]) -> String {
    let mut out = String::new();
    for (p, also) in merged(problems) {
        out.push_str(&p.to_string());
        if !also.is_empty() {
            let lines: Vec<String> = also.iter().map(usize::to_string).collect();
            out.push_str(&format!("\n    (also at line {})", lines.join(", ")));
        }
        out.push('\n');
    }
    out
}

/// How many errors [`report`] lists (a problem found at several places counts once).
pub fn error_count(problems: &[Problem]) -> usize {
    merged(problems).iter().filter(|(p, _)| !p.warning).count()
}

/// Problems in report order, one problem found at several places (the sidecar's missing
/// table, for every attribute it keeps) merged into its first, with the other lines.
fn merged(problems: &[Problem]) -> Vec<(&Problem, Vec<usize>)> {
    let mut sorted: Vec<&Problem> = problems.iter().collect();
    sorted.sort_by_key(|p| (p.warning, p.origin.line));
    let mut merged: Vec<(&Problem, Vec<usize>)> = Vec::new();
    for p in sorted {
        match merged.iter_mut().find(|(q, _)| {
            q.message == p.message
                && q.fix == p.fix
                && q.warning == p.warning
                && q.origin.file == p.origin.file
        }) {
            Some((q, also)) => {
                if q.origin.line != p.origin.line && !also.contains(&p.origin.line) {
                    also.push(p.origin.line);
                }
            }
            None => merged.push((p, Vec::new())),
        }
    }
    merged
}
