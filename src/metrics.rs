//! Prometheus metrics, rendered by the admin listener's `/metrics`.
//!
//! Names follow `scim_sidecar_<noun>_<unit>`; counters get `_total` from the exposition
//! format. Recorded by the router (requests, latency, auth failures, pass-through) and by the
//! mapping layer through [`crate::mapping::Observer`] (store errors).

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    resource_type: String,
    operation: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    resource_type: String,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    backend: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    resource_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimeoutLabels {
    listener: &'static str,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartialLabels {
    store: &'static str,
    step: &'static str,
}

/// Writes left half-done, process-wide: counted where the store finds out (deep in a backend,
/// which holds no [`Metrics`]), exported by every [`Metrics`] (they share the family).
fn partial_writes() -> &'static Family<PartialLabels, Counter> {
    static FAMILY: std::sync::OnceLock<Family<PartialLabels, Counter>> = std::sync::OnceLock::new();
    FAMILY.get_or_init(Family::default)
}

/// Counts a request whose store could not do one step, nor undo the steps before it (a store
/// without multi-entry transactions, such as LDAP): the store is left as neither the request
/// nor its failure says. `store` is the store's kind, `step` what was left undone
/// (`group_follow`, `undo_create`, …). The caller logs the details.
pub fn partial_write(store: &'static str, step: &'static str) {
    partial_writes()
        .get_or_create(&PartialLabels { store, step })
        .inc();
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabels {
    hash: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … 4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OperationLabels, Histogram, fn() -> Histogram>,
    store_errors: Family<StoreLabels, Counter>,
    ignored: Family<TypeLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    oauth_tokens: Family<OutcomeLabels, Counter>,
    proxied: Family<StatusLabels, Counter>,
    /// `proxied`'s counters by status code, looked up without the family's lock and hash:
    /// they are on every pass-through request's path.
    proxied_by_status: Box<[std::sync::OnceLock<Counter>]>,
    proxy_latency: Histogram,
    open_connections: Family<ListenerLabels, Gauge>,
    connection_timeouts: Family<TimeoutLabels, Counter>,
    connection_limit_waits: Family<ListenerLabels, Counter>,
    accept_errors: Family<ListenerLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    config_info: Family<HashLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let store_errors = Family::<StoreLabels, Counter>::default();
        let ignored = Family::<TypeLabels, Counter>::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let oauth_tokens = Family::<OutcomeLabels, Counter>::default();
        let proxied = Family::<StatusLabels, Counter>::default();
        let proxy_latency = latency_histogram();
        let open_connections = Family::<ListenerLabels, Gauge>::default();
        let connection_timeouts = Family::<TimeoutLabels, Counter>::default();
        let connection_limit_waits = Family::<ListenerLabels, Counter>::default();
        let accept_errors = Family::<ListenerLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let config_info = Family::<HashLabels, Gauge>::default();
        let info = Family::<VersionLabels, Gauge>::default();
        info.get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        registry.register(
            "scim_sidecar_scim_requests",
            "SCIM requests by resource type, operation and HTTP status",
            requests.clone(),
        );
        registry.register(
            "scim_sidecar_scim_request_duration_seconds",
            "Time to answer a SCIM request, by resource type and operation",
            latency.clone(),
        );
        registry.register(
            "scim_sidecar_store_errors",
            "Store operations that failed, by backend and kind (unavailable, internal)",
            store_errors.clone(),
        );
        registry.register(
            "scim_sidecar_ignored_attributes",
            "Attributes in requests that the mapping does not store and that were ignored",
            ignored.clone(),
        );
        registry.register(
            "scim_sidecar_auth_failures",
            "SCIM requests refused for authentication or authorisation, by reason (missing, \
             invalid, expired, bad_signature, wrong_audience, read_only, ...)",
            auth_failures.clone(),
        );
        registry.register(
            "scim_sidecar_oauth_token_requests",
            "Requests to the OAuth token endpoint, by outcome (issued, invalid_client, \
             invalid_request, unsupported_grant_type, rate_limited)",
            oauth_tokens.clone(),
        );
        registry.register(
            "scim_sidecar_proxy_requests",
            "Requests passed through to the upstream app, by status",
            proxied.clone(),
        );
        registry.register(
            "scim_sidecar_proxy_request_duration_seconds",
            "Time until the upstream app's response headers, for passed-through requests",
            proxy_latency.clone(),
        );
        registry.register(
            "scim_sidecar_open_connections",
            "Client connections open now, by listener (main, admin)",
            open_connections.clone(),
        );
        registry.register(
            "scim_sidecar_connection_timeouts",
            "Client connections closed because the client kept the server waiting, by listener \
             and stage (tls_handshake, first_request, between_requests, request_body)",
            connection_timeouts.clone(),
        );
        registry.register(
            "scim_sidecar_connection_limit_waits",
            "Times a listener stopped accepting because max_connections were open, by listener",
            connection_limit_waits.clone(),
        );
        registry.register(
            "scim_sidecar_accept_errors",
            "Failed accepts (out of file descriptors, ...), by listener; each is retried after \
             a pause",
            accept_errors.clone(),
        );
        registry.register(
            "scim_sidecar_config_reloads",
            "Config reloads (a changed file or SIGHUP), by result (success, failure: the \
             previous config stays)",
            reloads.clone(),
        );
        registry.register(
            "scim_sidecar_config_info",
            "The config being served: 1 for the hash of its file (SHA-256, first 16 hex digits)",
            config_info.clone(),
        );
        registry.register(
            "scim_sidecar_store_partial_writes",
            "Requests the store could neither complete nor undo (a store without transactions \
             across entries, such as LDAP), by store and the step left undone; each is logged \
             with what to repair",
            partial_writes().clone(),
        );
        registry.register(
            "scim_sidecar_build_info",
            "Version of the running sidecar",
            info,
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            store_errors,
            ignored,
            auth_failures,
            oauth_tokens,
            proxied,
            proxied_by_status: (100..600).map(|_| std::sync::OnceLock::new()).collect(),
            proxy_latency,
            open_connections,
            connection_timeouts,
            connection_limit_waits,
            accept_errors,
            reloads,
            config_info,
        }
    }

    /// A reload ended: `success` or `failure`.
    pub fn config_reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// The config now served has `hash` (the previous one's series goes).
    pub fn config_loaded(&self, hash: &str) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&HashLabels {
                hash: hash.to_owned(),
            })
            .set(1);
    }

    /// Records the threads serving connections (`--workers`), once, at start-up.
    pub fn runtime_workers(&self, n: usize) {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(n).unwrap_or(i64::MAX));
        if let Ok(mut r) = self.registry.lock() {
            r.register(
                "scim_sidecar_runtime_workers",
                "Threads serving connections (--workers / SCIM_SIDECAR_WORKERS)",
                g,
            );
        }
    }

    /// A connection was accepted.
    pub fn connection_opened(&self, listener: &'static str) {
        self.open_connections
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// A connection was closed (for any reason).
    pub fn connection_closed(&self, listener: &'static str) {
        self.open_connections
            .get_or_create(&ListenerLabels { listener })
            .dec();
    }

    /// A connection was closed by a deadline at `stage`.
    pub fn connection_timeout(&self, listener: &'static str, stage: &'static str) {
        self.connection_timeouts
            .get_or_create(&TimeoutLabels { listener, stage })
            .inc();
    }

    /// A listener stopped accepting at its connection cap.
    pub fn connection_limit_wait(&self, listener: &'static str) {
        self.connection_limit_waits
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// An accept failed.
    pub fn accept_error(&self, listener: &'static str) {
        self.accept_errors
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// One answered SCIM request.
    pub fn scim_request(
        &self,
        resource_type: &str,
        operation: &'static str,
        status: u16,
        took: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                resource_type: resource_type.to_owned(),
                operation,
                status,
            })
            .inc();
        self.latency
            .get_or_create(&OperationLabels {
                resource_type: resource_type.to_owned(),
                operation,
            })
            .observe(took.as_secs_f64());
    }

    /// Attributes ignored in one request.
    pub fn ignored_attributes(&self, resource_type: &str, n: usize) {
        self.ignored
            .get_or_create(&TypeLabels {
                resource_type: resource_type.to_owned(),
            })
            .inc_by(n as u64);
    }

    /// A refused SCIM request.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// One answered token request.
    pub fn oauth_token_request(&self, outcome: &'static str) {
        self.oauth_tokens
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// One passed-through request.
    pub fn proxied(&self, status: u16, took: Duration) {
        match self
            .proxied_by_status
            .get(usize::from(status).wrapping_sub(100))
        {
            Some(slot) => {
                slot.get_or_init(|| self.proxied.get_or_create(&StatusLabels { status }).clone())
                    .inc();
            }
            None => {
                self.proxied.get_or_create(&StatusLabels { status }).inc();
            }
        }
        self.proxy_latency.observe(took.as_secs_f64());
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}

impl crate::mapping::Observer for Metrics {
    fn store_error(&self, backend: &str, kind: &str) {
        self.store_errors
            .get_or_create(&StoreLabels {
                backend: backend.to_owned(),
                kind: kind.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A half-done write counted deep in a store shows in every exposition, by store and step.
    #[test]
    fn partial_writes_are_exported() {
        let m = Metrics::new();
        partial_write("ldap", "group_follow");
        partial_write("ldap", "group_follow");
        let text = m.render();
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("scim_sidecar_store_partial_writes_total{")
                    && l.contains("store=\"ldap\"")
                    && l.contains("step=\"group_follow\"")
            })
            .unwrap_or_else(|| panic!("no partial-write line in:\n{text}"));
        let n: u64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        assert!(n >= 2, "{line}");
    }
}
