//! `scim-sidecar inject`: the sidecar added to Kubernetes objects, and the injector itself.
//!
//! [`inject_pod`] is the one place that decides what a pod gets; [`inject_object`] finds the
//! pod template of a workload; [`inject_yaml`] does it for a YAML stream, re-writing only the
//! documents it changes. The admission webhook ([`super::webhook`]) calls [`inject_pod`] too.
//!
//! What a pod that asks for injection gets (names fixed, so a second pass recognises them):
//!
//! - container `scim-sidecar` (`run --log-format json`), as a native sidecar (the end of
//!   `initContainers`, `restartPolicy: Always`) or at the end of `containers`: ports
//!   `scim-sidecar` and `scim-admin`, startup/liveness probes on `/healthz` and a readiness
//!   probe on `/readyz` of the admin port, non-root with a read-only root filesystem and no
//!   capabilities, resources sized from the benchmark;
//! - with `migrate`, init container `scim-sidecar-migrate` (`migrate`) just before it;
//! - volumes `scim-sidecar-config` (the ConfigMap, at `/etc/scim-sidecar`) and
//!   `scim-sidecar-secret` (the Secret, at `/run/secrets/scim-sidecar`).
//!
//! Injected containers go after the pod's own init containers, so the app's own schema
//! migrations run before the sidecar checks its mapping against the tables.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Map, Value, json};

use super::annotations as a;

/// Name of the sidecar container; its presence marks a pod as injected.
pub const CONTAINER: &str = "scim-sidecar";
/// Name of the migrate init container.
pub const MIGRATE_CONTAINER: &str = "scim-sidecar-migrate";
/// Volume holding the ConfigMap.
pub const CONFIG_VOLUME: &str = "scim-sidecar-config";
/// Volume holding the Secret.
pub const SECRET_VOLUME: &str = "scim-sidecar-secret";
/// Where the ConfigMap is mounted.
pub const CONFIG_DIR: &str = "/etc/scim-sidecar";
/// The config file the sidecar reads (the ConfigMap's key `scim-sidecar.toml`).
pub const CONFIG_FILE: &str = "/etc/scim-sidecar/scim-sidecar.toml";
/// Where the Secret is mounted.
pub const SECRET_DIR: &str = "/run/secrets/scim-sidecar";
/// The Secret's key whose value becomes `DATABASE_URL` (optional).
pub const DATABASE_URL_KEY: &str = "database-url";
/// The non-root user and group the image and the container run as (distroless "nonroot").
pub const UID: u64 = 65532;

/// Arguments of `scim-sidecar inject`.
#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// The YAML to read (one or many documents); standard input when absent or `-`.
    pub file: Option<PathBuf>,
    /// The sidecar image, for pods without a `scim-sidecar.io/image` annotation.
    #[arg(long, env = "SCIM_SIDECAR_IMAGE", default_value_t = super::default_image())]
    pub image: String,
    /// Native sidecars (Kubernetes 1.29 and later) for pods without a
    /// `scim-sidecar.io/native` annotation; `false` on older clusters.
    #[arg(long, env = "SCIM_SIDECAR_NATIVE", default_value_t = true, action = clap::ArgAction::Set)]
    pub native: bool,
}

/// What the injector needs besides the pod: the defaults the command line sets.
#[derive(Debug, Clone)]
pub struct Options {
    /// Image for pods without a `scim-sidecar.io/image` annotation.
    pub image: String,
    /// Native sidecar for pods without a `scim-sidecar.io/native` annotation. A cluster before
    /// 1.29 would keep a native sidecar as an init container that never ends, so the pod
    /// would never start: set it false there.
    pub native: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            image: super::default_image(),
            native: true,
        }
    }
}

/// What [`inject_pod`] did to one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The sidecar was added.
    Injected,
    /// The pod already has container `scim-sidecar`: nothing changed.
    AlreadyInjected,
    /// The pod does not carry `scim-sidecar.io/inject: "true"`: nothing changed.
    NotRequested,
    /// Not a kind that has a pod template (a Service, a ConfigMap…): nothing changed.
    NotAWorkload,
}

/// Why a pod that asked for the sidecar could not get it. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    /// An annotation holds a value the injector cannot use.
    #[error("annotation {name}: {value:?} {reason}")]
    Annotation {
        /// The annotation.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it, and what is expected.
        reason: String,
    },
    /// The pod already uses a name or port the sidecar needs.
    #[error("{0}")]
    Conflict(String),
    /// The object is not shaped as Kubernetes writes it (a `containers` that is not a list…).
    #[error("{0}")]
    Malformed(String),
}

/// Where a workload keeps its pod template's metadata and spec, by `kind`; `None` for kinds
/// without one. CronJob and Job are left out on purpose: a classic sidecar never ends, so a
/// Job would never complete.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => Some(&["spec", "template"]),
        _ => None,
    }
}

/// Adds the sidecar to one Kubernetes object: a Pod, the pod template of a Deployment,
/// StatefulSet, DaemonSet or ReplicaSet, or each item of a `List`. Any other kind is left as it
/// is (`NotAWorkload`). `Err` leaves `obj` unchanged.
pub fn inject_object(obj: &mut Value, opts: &Options) -> Result<Outcome, InjectError> {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let kind = kind.as_str();
    if kind == "List" || (kind.ends_with("List") && obj.get("items").is_some()) {
        let Some(items) = obj.get_mut("items").and_then(Value::as_array_mut) else {
            return Ok(Outcome::NotAWorkload);
        };
        let mut copy = items.clone();
        let mut any = Outcome::NotAWorkload;
        for (i, item) in copy.iter_mut().enumerate() {
            let o = inject_object(item, opts).map_err(|e| in_item(i, e))?;
            any = merge(any, o);
        }
        *items = copy;
        return Ok(any);
    }
    let Some(path) = template_path(kind) else {
        return Ok(Outcome::NotAWorkload);
    };
    // A document without a pod template (a patch for kustomize, say) asks for nothing.
    let mut template = &mut *obj;
    for key in path {
        match template.get_mut(*key) {
            Some(t) => template = t,
            None => return Ok(Outcome::NotRequested),
        }
    }
    let Some(t) = template.as_object_mut() else {
        return Ok(Outcome::NotRequested);
    };
    let meta = t.get("metadata").cloned().unwrap_or(Value::Null);
    match t.get_mut("spec") {
        Some(spec) => inject_pod(&meta, spec, opts),
        None if asks(&meta) => Err(InjectError::Malformed(format!(
            "{kind} asks for the sidecar but has no pod spec"
        ))),
        None => Ok(Outcome::NotRequested),
    }
}

/// Whether pod metadata carries `scim-sidecar.io/inject: "true"`.
fn asks(meta: &Value) -> bool {
    meta.get("annotations")
        .and_then(|m| m.get(a::INJECT))
        .and_then(Value::as_str)
        .map(str::trim)
        == Some("true")
}

fn in_item(i: usize, e: InjectError) -> InjectError {
    match e {
        InjectError::Conflict(m) => InjectError::Conflict(format!("items[{i}]: {m}")),
        InjectError::Malformed(m) => InjectError::Malformed(format!("items[{i}]: {m}")),
        other => other,
    }
}

/// The most telling outcome of several: injected, else already injected, else not requested.
fn merge(a: Outcome, b: Outcome) -> Outcome {
    use Outcome::*;
    match (a, b) {
        (Injected, _) | (_, Injected) => Injected,
        (AlreadyInjected, _) | (_, AlreadyInjected) => AlreadyInjected,
        (NotRequested, _) | (_, NotRequested) => NotRequested,
        _ => NotAWorkload,
    }
}

/// The settings one pod asks for, read from its annotations with their defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// ConfigMap name.
    pub config: String,
    /// Secret name.
    pub secret: String,
    /// The app's port on 127.0.0.1.
    pub app_port: u16,
    /// The sidecar's port.
    pub port: u16,
    /// The admin port.
    pub admin_port: u16,
    /// The image.
    pub image: String,
    /// Native sidecar (init container with `restartPolicy: Always`) or a classic container.
    pub native: bool,
    /// Run `migrate` in an init container first.
    pub migrate: bool,
}

impl Settings {
    /// The settings of a pod with no annotation but `inject`, whose app listens on
    /// `app_port`.
    pub fn defaults(app_port: u16, opts: &Options) -> Settings {
        Settings {
            config: a::DEFAULT_CONFIG.into(),
            secret: a::DEFAULT_SECRET.into(),
            app_port,
            port: a::DEFAULT_PORT,
            admin_port: a::DEFAULT_ADMIN_PORT,
            image: opts.image.clone(),
            native: true,
            migrate: false,
        }
    }
}

/// Adds the sidecar to the pod whose metadata is `meta` and whose spec is `spec`, when the
/// metadata carries `scim-sidecar.io/inject: "true"` and the pod has no `scim-sidecar`
/// container yet. `Err` (a bad annotation, a name or port already taken) leaves `spec`
/// unchanged.
pub fn inject_pod(meta: &Value, spec: &mut Value, opts: &Options) -> Result<Outcome, InjectError> {
    let ann = meta.get("annotations").and_then(Value::as_object);
    let get = |name: &str| ann.and_then(|m| m.get(name)).and_then(Value::as_str);
    if !asks(meta) {
        return Ok(Outcome::NotRequested);
    }
    let Some(spec_map) = spec.as_object() else {
        return Err(InjectError::Malformed(
            "the pod spec is not a mapping".into(),
        ));
    };
    let containers = list(spec_map, "containers")?;
    let inits = list(spec_map, "initContainers")?;
    let volumes = list(spec_map, "volumes")?;
    let name_of = |c: &Value| c.get("name").and_then(Value::as_str).map(str::to_owned);
    if containers
        .iter()
        .chain(inits.iter())
        .any(|c| name_of(c).as_deref() == Some(CONTAINER))
    {
        return Ok(Outcome::AlreadyInjected);
    }

    let settings = read_settings(&get, &containers, opts)?;
    check_conflicts(&settings, &containers, &inits, &volumes)?;

    let mut new_inits = inits;
    let mut new_containers = containers;
    let mut new_volumes = volumes;
    if settings.migrate {
        new_inits.push(migrate_container(&settings));
    }
    if settings.native {
        new_inits.push(sidecar_container(&settings));
    } else {
        new_containers.push(sidecar_container(&settings));
    }
    new_volumes.extend(sidecar_volumes(&settings));

    let Some(m) = spec.as_object_mut() else {
        return Err(InjectError::Malformed(
            "the pod spec is not a mapping".into(),
        ));
    };
    // Only the lists that changed are written, so a key the pod did not have stays absent.
    if settings.migrate || settings.native {
        m.insert("initContainers".into(), Value::Array(new_inits));
    }
    if !settings.native {
        m.insert("containers".into(), Value::Array(new_containers));
    }
    m.insert("volumes".into(), Value::Array(new_volumes));
    Ok(Outcome::Injected)
}

/// `spec[key]` as a list; absent or null is empty.
fn list(spec: &Map<String, Value>, key: &str) -> Result<Vec<Value>, InjectError> {
    match spec.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(v)) => Ok(v.clone()),
        Some(_) => Err(InjectError::Malformed(format!(
            "the pod spec's {key} is not a list"
        ))),
    }
}

fn read_settings<'a>(
    get: &dyn Fn(&str) -> Option<&'a str>,
    containers: &[Value],
    opts: &Options,
) -> Result<Settings, InjectError> {
    let declared = declared_ports(containers);
    let app_port = match get(a::APP_PORT).map(str::trim) {
        None => declared
            .first()
            .map(|(_, p)| *p)
            .unwrap_or(a::DEFAULT_APP_PORT),
        Some(v) => match v.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => declared
                .iter()
                .find(|(name, _)| name.as_deref() == Some(v))
                .map(|(_, p)| *p)
                .ok_or_else(|| InjectError::Annotation {
                    name: a::APP_PORT,
                    value: v.into(),
                    reason: "is neither a port number (1-65535) nor the name of a port of the pod's containers".into(),
                })?,
        },
    };
    let port = |name: &'static str, default: u16| -> Result<u16, InjectError> {
        match get(name).map(str::trim) {
            None => Ok(default),
            Some(v) => match v.parse::<u16>() {
                Ok(p) if p > 0 => Ok(p),
                _ => Err(InjectError::Annotation {
                    name,
                    value: v.into(),
                    reason: "is not a port number (1-65535)".into(),
                }),
            },
        }
    };
    let flag = |name: &'static str, default: bool| -> Result<bool, InjectError> {
        match get(name).map(str::trim) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(InjectError::Annotation {
                name,
                value: v.into(),
                reason: "is neither \"true\" nor \"false\"".into(),
            }),
        }
    };
    let object_name = |name: &'static str, default: &str| -> Result<String, InjectError> {
        match get(name).map(str::trim) {
            None => Ok(default.into()),
            Some(v) if is_dns_subdomain(v) => Ok(v.into()),
            Some(v) => Err(InjectError::Annotation {
                name,
                value: v.into(),
                reason: "is not a valid object name (lower-case letters, digits, '-' and '.', at most 253)".into(),
            }),
        }
    };
    let image = match get(a::IMAGE).map(str::trim) {
        None => opts.image.clone(),
        Some(v) if !v.is_empty() && !v.chars().any(char::is_whitespace) => v.into(),
        Some(v) => {
            return Err(InjectError::Annotation {
                name: a::IMAGE,
                value: v.into(),
                reason: "is not an image reference".into(),
            });
        }
    };
    Ok(Settings {
        config: object_name(a::CONFIG, a::DEFAULT_CONFIG)?,
        secret: object_name(a::SECRET, a::DEFAULT_SECRET)?,
        app_port,
        port: port(a::PORT, a::DEFAULT_PORT)?,
        admin_port: port(a::ADMIN_PORT, a::DEFAULT_ADMIN_PORT)?,
        image,
        native: flag(a::NATIVE, opts.native)?,
        migrate: flag(a::MIGRATE, false)?,
    })
}

/// Every `containerPort` of `containers`, in order, with its name.
fn declared_ports(containers: &[Value]) -> Vec<(Option<String>, u16)> {
    containers
        .iter()
        .filter_map(|c| c.get("ports").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| {
            let n = p.get("containerPort").and_then(Value::as_u64)?;
            let n = u16::try_from(n).ok()?;
            Some((p.get("name").and_then(Value::as_str).map(str::to_owned), n))
        })
        .collect()
}

/// RFC 1123 subdomain, as Kubernetes requires of ConfigMap and Secret names.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn check_conflicts(
    s: &Settings,
    containers: &[Value],
    inits: &[Value],
    volumes: &[Value],
) -> Result<(), InjectError> {
    if s.port == s.admin_port {
        return Err(InjectError::Conflict(format!(
            "{} and {} are both {}: the sidecar needs two ports",
            a::PORT,
            a::ADMIN_PORT,
            s.port
        )));
    }
    if s.app_port == s.port || s.app_port == s.admin_port {
        return Err(InjectError::Conflict(format!(
            "the app's port {} is also the sidecar's: set {} or {} to a free port",
            s.app_port,
            a::PORT,
            a::ADMIN_PORT
        )));
    }
    let all: Vec<&Value> = containers.iter().chain(inits.iter()).collect();
    for c in &all {
        let cname = c.get("name").and_then(Value::as_str).unwrap_or("?");
        if cname == MIGRATE_CONTAINER {
            return Err(InjectError::Conflict(format!(
                "the pod already has a container named {MIGRATE_CONTAINER}"
            )));
        }
        for (pname, p) in declared_ports(std::slice::from_ref(*c)) {
            if p == s.port || p == s.admin_port {
                let which = if p == s.port { a::PORT } else { a::ADMIN_PORT };
                return Err(InjectError::Conflict(format!(
                    "container {cname} already uses port {p}: set {which} to a free port"
                )));
            }
            if matches!(pname.as_deref(), Some("scim-sidecar" | "scim-admin")) {
                return Err(InjectError::Conflict(format!(
                    "container {cname} already has a port named {}",
                    pname.unwrap_or_default()
                )));
            }
        }
    }
    let taken: BTreeSet<&str> = volumes
        .iter()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .collect();
    for v in [CONFIG_VOLUME, SECRET_VOLUME] {
        if taken.contains(v) {
            return Err(InjectError::Conflict(format!(
                "the pod already has a volume named {v}"
            )));
        }
    }
    Ok(())
}

/// The environment both injected containers get: where the config is, where to listen, the
/// app's address, and `DATABASE_URL` from the Secret (optional: a config without it still
/// starts).
fn env(s: &Settings) -> Value {
    json!([
        {"name": "SCIM_SIDECAR_CONFIG", "value": CONFIG_FILE},
        {"name": "SCIM_SIDECAR_LISTEN", "value": format!("0.0.0.0:{}", s.port)},
        {"name": "SCIM_SIDECAR_ADMIN_LISTEN", "value": format!("0.0.0.0:{}", s.admin_port)},
        {"name": "UPSTREAM_URL", "value": format!("http://127.0.0.1:{}", s.app_port)},
        {"name": "SCIM_SIDECAR_WORKERS", "value": "1"},
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {
            "name": s.secret, "key": DATABASE_URL_KEY, "optional": true}}}
    ])
}

fn mounts() -> Value {
    json!([
        {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": true},
        {"name": SECRET_VOLUME, "mountPath": SECRET_DIR, "readOnly": true}
    ])
}

/// Non-root, no privilege escalation, no capabilities, read-only root filesystem: the
/// sidecar writes nothing but its logs (stderr).
fn security_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": UID,
        "runAsGroup": UID,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}
    })
}

/// The sidecar container. Resources come from the benchmark (README, "Performance"): about
/// 11 MiB resident idle, 26-30 MiB at 32 busy clients, 48 MiB while 16 clients read a
/// 55,000-member group; about 25 µs of CPU per pass-through request and 100 µs per SCIM
/// create. So 64 MiB and 0.1 CPU requested; a 256 MiB limit bounds a runaway; no CPU limit,
/// since throttling would add latency to every request of the app.
pub fn sidecar_container(s: &Settings) -> Value {
    let mut c = json!({
        "name": CONTAINER,
        "image": s.image,
        "args": ["run", "--log-format", "json"],
        "env": env(s),
        "ports": [
            {"name": "scim-sidecar", "containerPort": s.port, "protocol": "TCP"},
            {"name": "scim-admin", "containerPort": s.admin_port, "protocol": "TCP"}
        ],
        "startupProbe": {
            "httpGet": {"path": "/healthz", "port": "scim-admin"},
            "periodSeconds": 1,
            "failureThreshold": 60
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "scim-admin"},
            "periodSeconds": 10,
            "failureThreshold": 3
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "scim-admin"},
            "periodSeconds": 5,
            "failureThreshold": 2
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"}
        },
        "securityContext": security_context(),
        "volumeMounts": mounts()
    });
    if s.native
        && let Some(m) = c.as_object_mut()
    {
        // Kubernetes 1.29+: an init container that keeps running is a sidecar; it starts
        // before the app and stops after it.
        m.insert("restartPolicy".into(), json!("Always"));
    }
    c
}

/// The init container that runs `scim-sidecar migrate` (idempotent) before the sidecar.
pub fn migrate_container(s: &Settings) -> Value {
    json!({
        "name": MIGRATE_CONTAINER,
        "image": s.image,
        "args": ["migrate"],
        "env": env(s),
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"memory": "128Mi"}
        },
        "securityContext": security_context(),
        "volumeMounts": mounts()
    })
}

/// The ConfigMap and Secret volumes.
pub fn sidecar_volumes(s: &Settings) -> [Value; 2] {
    [
        json!({"name": CONFIG_VOLUME, "configMap": {"name": s.config}}),
        json!({"name": SECRET_VOLUME, "secret": {"secretName": s.secret}}),
    ]
}

/// One document of a YAML stream, as read.
struct Document<'a> {
    /// Its text, its `---` line included.
    text: &'a str,
    /// The `---` line (with its line break), when the document has one.
    marker: &'a str,
    /// 1-based line of its first line in the stream.
    line: usize,
}

/// Splits a YAML stream at its document markers (`---` at the start of a line; YAML 1.2
/// §9.1: such a line can never be part of a scalar, so the split is exact).
fn split_documents(input: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut pos = 0;
    for (line_no, line) in (1..).zip(input.split_inclusive('\n')) {
        let bare = line.trim_end_matches(['\n', '\r']);
        let is_marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if is_marker && pos > start {
            docs.push((start, pos, start_line));
            start = pos;
            start_line = line_no;
        }
        pos += line.len();
    }
    if pos > start || docs.is_empty() {
        docs.push((start, pos, start_line));
    }
    docs.into_iter()
        .map(|(s, e, line)| {
            let text = &input[s..e];
            let first = text.split_inclusive('\n').next().unwrap_or("");
            let bare = first.trim_end_matches(['\n', '\r']);
            let marker = if bare == "---" { first } else { "" };
            Document { text, marker, line }
        })
        .collect()
}

/// Parses YAML as Kubernetes does (YAML 1.1 scalars: `0644` is octal, `yes`/`on` are
/// booleans).
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut o = serde_saphyr::options::Options::default();
    o.legacy_octal_numbers = true;
    serde_saphyr::from_str_with_options::<Value>(text, o).map_err(|e| e.to_string())
}

/// Writes a value as YAML, quoting every string Kubernetes would read as something else.
pub fn to_yaml(v: &Value) -> Result<String, String> {
    serde_saphyr::to_string(v).map_err(|e| e.to_string())
}

/// Whether a document holds nothing but comments and blank lines (and markers).
fn is_empty_document(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// A problem with one document of a stream: which one, where it starts, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document} (line {line}{}): {message}", name.as_deref().map(|n| format!(", {n}")).unwrap_or_default())]
pub struct DocumentError {
    /// 1-based index of the document in the stream.
    pub document: usize,
    /// 1-based line where it starts.
    pub line: usize,
    /// `Kind/name` when the document could be read that far.
    pub name: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// What [`inject_yaml`] did, for the summary line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `Kind/name` of each object the sidecar was added to.
    pub injected: Vec<String>,
    /// `Kind/name` of each object that already had it.
    pub already: Vec<String>,
}

/// Adds the sidecar to every object of a YAML stream that asks for it. Documents that are
/// changed are written back from their parsed form (their comments are lost); every other
/// document is copied byte for byte. Injecting the output again changes nothing.
pub fn inject_yaml(input: &str, opts: &Options) -> Result<(String, Summary), DocumentError> {
    let mut out = String::with_capacity(input.len() + 2048);
    let mut summary = Summary::default();
    for (i, doc) in split_documents(input).into_iter().enumerate() {
        if is_empty_document(doc.text) {
            out.push_str(doc.text);
            continue;
        }
        let err = |name: Option<String>, message: String| DocumentError {
            document: i + 1,
            line: doc.line,
            name,
            message,
        };
        let mut value = parse_yaml(doc.text).map_err(|e| err(None, e))?;
        let name = object_name(&value);
        match inject_object(&mut value, opts) {
            Ok(Outcome::Injected) => {
                let text = to_yaml(&value).map_err(|e| err(Some(name.clone()), e))?;
                out.push_str(doc.marker);
                out.push_str(&text);
                summary.injected.push(name);
            }
            Ok(o) => {
                if o == Outcome::AlreadyInjected {
                    summary.already.push(name);
                }
                out.push_str(doc.text);
            }
            Err(e) => return Err(err(Some(name), e.to_string())),
        }
    }
    Ok((out, summary))
}

/// `Kind/name` of an object, for messages.
fn object_name(v: &Value) -> String {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("object");
    let meta = v.get("metadata");
    let name = meta
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("{kind}/{name}")
}

/// `scim-sidecar inject`: reads the file (or standard input), writes the result to standard
/// output, and a one-line summary to standard error. Exits non-zero, writing nothing to
/// standard output, when a document cannot be read or a pod that asks for the sidecar cannot
/// get it.
pub fn main(args: InjectArgs) -> ExitCode {
    let (source, input) = match args.file.as_deref() {
        None => ("<stdin>".to_owned(), read_stdin()),
        Some(p) if p.as_os_str() == "-" => ("<stdin>".to_owned(), read_stdin()),
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|e| e.to_string()),
        ),
    };
    let input = match input {
        Ok(i) => i,
        Err(e) => {
            eprintln!("{source}: cannot read: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = Options {
        image: args.image,
        native: args.native,
    };
    match inject_yaml(&input, &opts) {
        Ok((out, summary)) => {
            print!("{out}");
            if summary.injected.is_empty() && summary.already.is_empty() {
                eprintln!(
                    "{source}: nothing injected: no Pod, Deployment, StatefulSet, DaemonSet or ReplicaSet has the annotation {}: \"true\"",
                    a::INJECT
                );
            } else {
                let mut parts = Vec::new();
                if !summary.injected.is_empty() {
                    parts.push(format!("injected {}", summary.injected.join(", ")));
                }
                if !summary.already.is_empty() {
                    parts.push(format!("already injected {}", summary.already.join(", ")));
                }
                eprintln!("{source}: {}", parts.join("; "));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{source}: {e}");
            eprintln!("{source}: nothing was written");
            ExitCode::FAILURE
        }
    }
}

fn read_stdin() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .map_err(|e| e.to_string())?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(annotations: Value, spec: Value) -> (Value, Value) {
        (json!({"name": "p", "annotations": annotations}), spec)
    }

    /// Without the annotation, or with anything but "true", nothing changes.
    #[test]
    fn only_pods_that_ask_are_injected() {
        for ann in [json!({}), json!({"scim-sidecar.io/inject": "false"})] {
            let (meta, mut spec) = pod(ann, json!({"containers": [{"name": "app"}]}));
            let before = spec.clone();
            let o = inject_pod(&meta, &mut spec, &Options::default()).expect("ok");
            assert_eq!(o, Outcome::NotRequested);
            assert_eq!(spec, before);
        }
    }

    /// A document without a pod template (a kustomize patch) passes, whatever its kind.
    #[test]
    fn partial_documents_pass() {
        let mut patch = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                               "metadata": {"name": "d"}, "spec": {"replicas": 3}});
        let before = patch.clone();
        let o = inject_object(&mut patch, &Options::default()).expect("passes");
        assert_eq!(o, Outcome::NotRequested);
        assert_eq!(patch, before);
    }

    /// The app port defaults to the first declared port; a name resolves to its number.
    #[test]
    fn app_port_from_the_pod() {
        let containers =
            json!([{"name": "app", "ports": [{"name": "web", "containerPort": 3000}]}]);
        let opts = Options::default();
        let (meta, mut spec) = pod(
            json!({"scim-sidecar.io/inject": "true"}),
            json!({"containers": containers}),
        );
        inject_pod(&meta, &mut spec, &opts).expect("inject");
        let env = &spec["initContainers"][0]["env"];
        assert!(env.to_string().contains("http://127.0.0.1:3000"), "{env}");

        let (meta, mut spec) = pod(
            json!({"scim-sidecar.io/inject": "true", "scim-sidecar.io/app-port": "nope"}),
            json!({"containers": containers}),
        );
        let e = inject_pod(&meta, &mut spec, &opts).expect_err("bad port");
        assert!(e.to_string().contains("scim-sidecar.io/app-port"), "{e}");
    }

    /// The splitter keeps every byte, and cuts only at `---` lines.
    #[test]
    fn split_keeps_every_byte() {
        let text = "# head\n---\na: 1\n--- # c\nb: |\n  ---x\n---\n";
        let docs = split_documents(text);
        let joined: String = docs.iter().map(|d| d.text).collect();
        assert_eq!(joined, text);
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[2].line, 4);
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_subdomain("scim-sidecar.v1"));
        assert!(!is_dns_subdomain("Scim"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
    }
}
