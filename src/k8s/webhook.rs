//! `scim-sidecar webhook`: a mutating admission webhook that adds the sidecar at pod creation.
//!
//! The API server POSTs an `AdmissionReview` (admission.k8s.io/v1) for each pod created in the
//! namespaces the `MutatingWebhookConfiguration` selects; [`review`] answers it with the same
//! `uid`, `allowed: true`, and — when the pod asks for the sidecar — a base64 JSONPatch
//! ([`json_patch`]) adding exactly what [`inject_pod`] adds to a manifest.
//!
//! The webhook never refuses a pod. Whatever it cannot handle — a body that is not an
//! AdmissionReview, another kind or operation, a bad annotation — is answered `allowed: true`
//! without a patch (a bad annotation also returns a warning that `kubectl` prints); and the
//! example configuration sets `failurePolicy: Ignore`, so a webhook that is down or slow does
//! not block pods either: they start without the sidecar.
//!
//! Flow: [`start`] binds, then an accept loop: at most [`MAX_CONNECTIONS`] connections →
//! TLS handshake (10 s) with the certificate re-read from its files when they change
//! (cert-manager rotation; [`ReloadingCert`]) → HTTP/1.1 or HTTP/2 → `POST /mutate` →
//! [`review`]; `GET /healthz` answers 200 for the webhook's own probes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::version::{TLS12, TLS13};
use tokio_rustls::rustls::{self, ServerConfig};

use super::inject::{Options, Outcome, inject_pod};

/// The path the `MutatingWebhookConfiguration` calls.
pub const PATH: &str = "/mutate";
/// Connections served at once; more wait in the kernel's queue.
pub const MAX_CONNECTIONS: usize = 256;
/// Largest AdmissionReview read (the API server's own request limit is 3 MiB).
const MAX_BODY: usize = 8 << 20;
/// Time for a TLS handshake, and for a request body to arrive.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const API_VERSION: &str = "admission.k8s.io/v1";

/// Arguments of `scim-sidecar webhook`.
#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Address to listen on (HTTPS).
    #[arg(
        long,
        env = "SCIM_SIDECAR_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub listen: SocketAddr,
    /// The serving certificate chain (PEM, leaf first), e.g. from a cert-manager Secret.
    /// Re-read when the file changes.
    #[arg(
        long,
        env = "SCIM_SIDECAR_WEBHOOK_CERT",
        default_value = "/etc/scim-sidecar-webhook/tls.crt"
    )]
    pub tls_cert: PathBuf,
    /// The certificate's private key (PEM). Re-read when the file changes.
    #[arg(
        long,
        env = "SCIM_SIDECAR_WEBHOOK_KEY",
        default_value = "/etc/scim-sidecar-webhook/tls.key"
    )]
    pub tls_key: PathBuf,
    /// The sidecar image, for pods without a `scim-sidecar.io/image` annotation.
    #[arg(long, env = "SCIM_SIDECAR_IMAGE", default_value_t = super::default_image())]
    pub image: String,
    /// Native sidecars (Kubernetes 1.29 and later) for pods without a
    /// `scim-sidecar.io/native` annotation; `false` on older clusters.
    #[arg(long, env = "SCIM_SIDECAR_NATIVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub native: bool,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
}

/// Log format of the webhook.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How the webhook server is set up.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Certificate chain file (PEM).
    pub cert: PathBuf,
    /// Private key file (PEM).
    pub key: PathBuf,
    /// How often, at most, the certificate files are checked for a change (on a handshake).
    pub reload_every: Duration,
    /// Injection defaults.
    pub inject: Options,
}

/// A running webhook server.
pub struct Webhook {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets open requests finish (at most 10 s), and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Loads the certificate, binds, and serves in the background. `Err` says what is wrong with
/// the certificate files or the address.
pub async fn start(cfg: WebhookConfig) -> Result<Webhook, String> {
    let resolver = Arc::new(ReloadingCert::new(
        cfg.cert.clone(),
        cfg.key.clone(),
        cfg.reload_every,
    )?);
    let mut tls = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(serve(
        listener,
        TlsAcceptor::from(Arc::new(tls)),
        Arc::new(cfg.inject),
        stopped,
    ));
    Ok(Webhook { addr, stop, task })
}

async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    opts: Arc<Options>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while conns.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        let opts = opts.clone();
        let mut stop = stop.clone();
        conns.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(IO_TIMEOUT, acceptor.accept(tcp)).await {
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
            let svc = hyper::service::service_fn(move |req| {
                let opts = opts.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &opts).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(IO_TIMEOUT, conn).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(IO_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}

async fn handle(req: Request<Incoming>, opts: &Options) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::POST, PATH) => {
            let body = Limited::new(req.into_body(), MAX_BODY);
            let bytes = match tokio::time::timeout(IO_TIMEOUT, body.collect()).await {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the AdmissionReview; the pod is allowed without the sidecar");
                    Bytes::new()
                }
                Err(_) => {
                    tracing::warn!(
                        "the AdmissionReview did not arrive in time; the pod is allowed without the sidecar"
                    );
                    Bytes::new()
                }
            };
            let answer = review(&bytes, opts);
            let body = serde_json::to_vec(&answer).unwrap_or_default();
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        (_, PATH | "/healthz") => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Answers one AdmissionReview (the request body, as bytes): always `allowed: true`, with a
/// JSONPatch when a pod being created asks for the sidecar and can have it, and a warning when
/// it asks but cannot. Never fails: a body that is not an AdmissionReview gets an answer with
/// an empty `uid` (the API server then counts a webhook failure, which `failurePolicy:
/// Ignore` turns into admitting the pod).
pub fn review(body: &[u8], opts: &Options) -> Value {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let request = parsed.as_ref().and_then(|v| v.get("request"));
    let uid = request
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut response = json!({"uid": uid, "allowed": true});
    let answer = |response: Value| json!({"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response});
    let Some(request) = request else {
        tracing::warn!("not an AdmissionReview request; answered allowed without a patch");
        return answer(response);
    };
    let kind = request.get("kind");
    let is_pod = kind.and_then(|k| k.get("kind")).and_then(Value::as_str) == Some("Pod")
        && kind
            .and_then(|k| k.get("group"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
        && request.get("subResource").is_none_or(Value::is_null);
    let operation = request.get("operation").and_then(Value::as_str);
    let namespace = request
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(pod) = request.get("object").filter(|o| o.is_object()) else {
        tracing::info!(%uid, "no object in the AdmissionReview; allowed without a patch");
        return answer(response);
    };
    let name = pod
        .get("metadata")
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !is_pod || operation != Some("CREATE") {
        tracing::info!(%uid, namespace, name, ?operation, "not a pod creation; allowed without a patch");
        return answer(response);
    }
    let mut mutated = pod.clone();
    let meta = pod.get("metadata").cloned().unwrap_or(Value::Null);
    let Some(spec) = mutated.get_mut("spec") else {
        tracing::warn!(%uid, namespace, name, "the pod has no spec; allowed without a patch");
        return answer(response);
    };
    match inject_pod(&meta, spec, opts) {
        Ok(Outcome::Injected) => {
            let ops = json_patch(pod, &mutated);
            let patch = serde_json::to_vec(&ops).unwrap_or_default();
            if let Some(r) = response.as_object_mut() {
                r.insert("patchType".into(), json!("JSONPatch"));
                r.insert(
                    "patch".into(),
                    json!(base64::engine::general_purpose::STANDARD.encode(patch)),
                );
            }
            tracing::info!(%uid, namespace, name, "sidecar injected");
        }
        Ok(o) => {
            tracing::debug!(%uid, namespace, name, outcome = ?o, "nothing to inject");
        }
        Err(e) => {
            tracing::warn!(%uid, namespace, name, error = %e, "the pod asks for the sidecar but cannot have it; allowed without it");
            if let Some(r) = response.as_object_mut() {
                r.insert(
                    "warnings".into(),
                    json!([format!("scim-sidecar was not injected: {e}")]),
                );
            }
        }
    }
    answer(response)
}

/// An RFC 6902 JSON Patch turning `old` into `new`: members added or removed one by one,
/// lists that only grew get `add …/-` per new item, anything else that differs is replaced.
pub fn json_patch(old: &Value, new: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    diff("", old, new, &mut ops);
    ops
}

fn diff(path: &str, old: &Value, new: &Value, ops: &mut Vec<Value>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, vb) in b {
                let p = format!("{path}/{}", escape(k));
                match a.get(k) {
                    None => ops.push(json!({"op": "add", "path": p, "value": vb})),
                    Some(va) if va != vb => diff(&p, va, vb, ops),
                    Some(_) => {}
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                ops.push(json!({"op": "remove", "path": format!("{path}/{}", escape(k))}));
            }
        }
        (Value::Array(a), Value::Array(b)) if b.len() >= a.len() && b[..a.len()] == a[..] => {
            for v in &b[a.len()..] {
                ops.push(json!({"op": "add", "path": format!("{path}/-"), "value": v}));
            }
        }
        _ if old == new => {}
        _ => ops.push(json!({"op": "replace", "path": path, "value": new})),
    }
}

/// RFC 6901 §3: `~` is written `~0` and `/` is written `~1` in a reference token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The serving certificate, re-read from its files when their modification time changes
/// (checked on a handshake, at most every `every`): a Secret updated by cert-manager is
/// served without a restart. A file that cannot be read keeps the previous certificate, with
/// a warning.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    current: Arc<CertifiedKey>,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl ReloadingCert {
    /// Reads the certificate chain and key; `Err` names the file and the problem.
    pub fn new(cert: PathBuf, key: PathBuf, every: Duration) -> Result<ReloadingCert, String> {
        let stamp = stamps(&cert, &key);
        let current = load_certified_key(&cert, &key)?;
        Ok(ReloadingCert {
            cert,
            key,
            every,
            state: Mutex::new(CertState {
                current,
                stamp,
                checked: Instant::now(),
            }),
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut st = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if st.checked.elapsed() >= self.every {
            st.checked = Instant::now();
            let stamp = stamps(&self.cert, &self.key);
            if stamp != st.stamp {
                match load_certified_key(&self.cert, &self.key) {
                    Ok(k) => {
                        st.current = k;
                        st.stamp = stamp;
                        tracing::info!(cert = %self.cert.display(), "serving certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the new serving certificate cannot be used; keeping the previous one");
                    }
                }
            }
        }
        Some(st.current.clone())
    }
}

fn stamps(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(cert), m(key))
}

fn load_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no PEM certificate (expected \"-----BEGIN CERTIFICATE-----\")",
            cert.display()
        ));
    }
    let k = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read TLS private key {}: {e}", key.display()))?;
    CertifiedKey::from_der(certs, k, &ring::default_provider())
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "TLS certificate and key do not match: the first certificate in {} must be the one issued for the key in {}",
                cert.display(),
                key.display()
            ),
            other => format!("{}: unusable private key ({other})", key.display()),
        })
}

/// `scim-sidecar webhook`: serves until SIGTERM or Ctrl-C.
pub async fn main(args: WebhookArgs) -> ExitCode {
    init_logging(args.log_format);
    let cfg = WebhookConfig {
        listen: args.listen,
        cert: args.tls_cert,
        key: args.tls_key,
        reload_every: Duration::from_secs(10),
        inject: Options {
            image: args.image,
            native: args.native,
        },
    };
    let image = cfg.inject.image.clone();
    let hook = match start(cfg).await {
        Ok(h) => h,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("{e}");
            eprintln!("scim-sidecar webhook: not started");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(listen = %hook.addr(), path = PATH, %image, "scim-sidecar webhook ready");
    shutdown_signal().await;
    tracing::info!("shutting down");
    hook.shutdown().await;
    ExitCode::SUCCESS
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys with `/` and `~` are escaped; grown lists get `-` appends; changed scalars are
    /// replaced; removed members removed.
    #[test]
    fn patch_shapes() {
        let old = json!({"a/b": 1, "l": [1], "s": "x", "gone": true});
        let new = json!({"a/b": 2, "l": [1, 2], "s": "x", "n~": {}});
        let ops = json_patch(&old, &new);
        assert_eq!(
            ops,
            vec![
                json!({"op": "replace", "path": "/a~1b", "value": 2}),
                json!({"op": "add", "path": "/l/-", "value": 2}),
                json!({"op": "add", "path": "/n~0", "value": {}}),
                json!({"op": "remove", "path": "/gone"}),
            ]
        );
    }
}
