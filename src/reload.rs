//! Hot reload: a changed config file (or a file it reads: token files, the TLS certificate
//! and key, JWK sets), or SIGHUP, builds a complete new configuration, validates it against
//! the live stores and swaps it in atomically ([`Running::replace`]); requests in flight
//! finish on the one they started with.
//!
//! Files are compared by content, polled every second: a Kubernetes ConfigMap volume updates
//! by swapping its `..data` symlink, which changes no watched path's own metadata reliably,
//! and cert-manager rewrites a Secret the same way. A file that does not load (or a store
//! that refuses the new mapping) keeps the previous config serving, with every problem
//! logged with its file and line, counted (`scim_sidecar_config_reloads{result="failure"}`)
//! and said in `/readyz`'s body, which stays 200: the pod still serves, from the previous
//! config, and a bad rollout must not take every replica out of its Service.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, Config, Env};
use crate::server::Running;

/// How often watched files are compared.
pub const POLL: Duration = Duration::from_secs(1);

/// The files a config is made of, and a fingerprint of their contents.
pub struct Watched {
    files: Vec<PathBuf>,
    fingerprint: u64,
}

impl Watched {
    /// The config file at `path` and the files `config` reads, as they are now.
    pub fn new(path: &Path, config: &Config) -> Self {
        let mut files = vec![path.to_path_buf()];
        files.extend(config.files.iter().cloned());
        let fingerprint = fingerprint(&files);
        Watched { files, fingerprint }
    }

    /// Whether any of the files changed (content, or appeared or vanished) since the last
    /// call or since [`Watched::new`].
    pub fn changed(&mut self) -> bool {
        let now = fingerprint(&self.files);
        let changed = now != self.fingerprint;
        self.fingerprint = now;
        changed
    }
}

/// A hash of the files' contents (a missing file hashes as missing). In memory only.
fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for f in files {
        std::fs::read(f).ok().hash(&mut h);
    }
    h.finish()
}

/// The config file's SHA-256, its first 16 hex digits: which config is served, for the
/// `scim_sidecar_config_info` metric and the log. Only the config file: the files it reads
/// hold secrets.
pub fn config_hash(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, &text);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Loads the config at `path` again and, when it loads and its stores accept it, serves it.
/// Returns the new config (to watch its files) or `None` when the previous one stays.
pub async fn reload(running: &Running, path: &Path, env: &dyn Env) -> Option<Config> {
    let metrics = &running.process.metrics;
    let problems = match config::load(path, env) {
        Ok(config) => match running.replace(&config).await {
            Ok(warnings) => {
                for w in &warnings {
                    tracing::warn!(origin = %w.origin, fix = w.fix.as_deref().unwrap_or(""), "{}", w.message);
                }
                let hash = config_hash(path);
                metrics.config_reload("success");
                metrics.config_loaded(&hash);
                running.process.set_reload_failure(None);
                tracing::info!(config = %path.display(), %hash, "config reloaded: new requests are served from it");
                return Some(config);
            }
            Err(problems) => problems,
        },
        Err(problems) => problems,
    };
    for p in problems.iter().filter(|p| !p.warning) {
        tracing::error!(origin = %p.origin, fix = p.fix.as_deref().unwrap_or(""), "{}", p.message);
    }
    let n = config::error_count(&problems);
    metrics.config_reload("failure");
    running.process.set_reload_failure(Some(format!(
        "the config reload failed with {n} problem(s) (see the log); serving the previous config"
    )));
    tracing::error!(config = %path.display(), problems = n, "config reload failed: the previous config keeps serving");
    None
}

/// Settings a running server cannot take from a new config: they keep their start-up
/// values until a restart. Named in a warning when a reload changes them.
pub fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.listen.addr != new.listen.addr {
        out.push("listen.addr");
    }
    if old.admin != new.admin {
        out.push("admin.addr");
    }
    if old.listen.max_connections != new.listen.max_connections {
        out.push("listen.max_connections");
    }
    if old.listen.tls.is_some() != new.listen.tls.is_some() {
        out.push("listen.tls (on or off)");
    }
    out
}
