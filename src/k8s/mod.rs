//! Kubernetes: adding the sidecar to an application's pods, ahead of time or at admission.
//!
//! Two front ends share one injector ([`inject::inject_pod`]), so a pod gets the same sidecar
//! whichever way it is added:
//!
//! - `scim-sidecar inject [FILE]` ([`inject::main`]) reads Kubernetes YAML and writes it back
//!   with the sidecar added to every Deployment, StatefulSet, DaemonSet or Pod (and every item
//!   of a `List`) whose pod template asks for it, like `istioctl kube-inject`. Documents that do
//!   not ask are written back byte for byte, comments included.
//! - `scim-sidecar webhook` ([`webhook::main`]) serves a mutating admission webhook
//!   (AdmissionReview v1 over TLS) that answers a pod creation with the JSONPatch adding the
//!   same containers. It always allows the pod: on anything it cannot handle it answers
//!   `allowed: true` without a patch, so a webhook problem never blocks a pod.
//!
//! What is added is driven by the pod's annotations ([`annotations`]); the containers are built
//! by [`inject::sidecar_container`], which the plain manifests in `examples/kubernetes/` are
//! tested against.
//!
//! Called by `main.rs` only; nothing here touches the serving path.

pub mod inject;
pub mod webhook;

/// The pod annotations that drive injection (on a Pod, or on a workload's pod template), and
/// the defaults used when one is absent.
pub mod annotations {
    /// `"true"` adds the sidecar; anything else, or no annotation, leaves the pod as it is.
    pub const INJECT: &str = "scim-sidecar.io/inject";
    /// The ConfigMap holding the sidecar's TOML config under the key `scim-sidecar.toml`,
    /// mounted at `/etc/scim-sidecar`. Default [`DEFAULT_CONFIG`].
    pub const CONFIG: &str = "scim-sidecar.io/config";
    /// The Secret mounted at `/run/secrets/scim-sidecar` (bearer token files, TLS keys); its
    /// optional key `database-url` becomes `DATABASE_URL`. Default [`DEFAULT_SECRET`].
    pub const SECRET: &str = "scim-sidecar.io/secret";
    /// The app's port, a number or the name of a container port, reached on 127.0.0.1.
    /// Default: the first `containerPort` of the pod's containers, else 8080.
    pub const APP_PORT: &str = "scim-sidecar.io/app-port";
    /// The sidecar's port, where the app's Service must point. Default 8443.
    pub const PORT: &str = "scim-sidecar.io/port";
    /// The admin port (`/healthz`, `/readyz`, `/metrics`). Default 9090.
    pub const ADMIN_PORT: &str = "scim-sidecar.io/admin-port";
    /// The sidecar's image. Default: `--image` of `inject` / `webhook`.
    pub const IMAGE: &str = "scim-sidecar.io/image";
    /// `"true"`: a native sidecar, an init container with `restartPolicy: Always`
    /// (Kubernetes 1.29 and later); `"false"`: a second entry of `containers`. Default:
    /// `--native` of `inject` / `webhook` (true).
    pub const NATIVE: &str = "scim-sidecar.io/native";
    /// `"true"` adds an init container running `scim-sidecar migrate` before the sidecar.
    /// Default `"false"`.
    pub const MIGRATE: &str = "scim-sidecar.io/migrate";

    /// Every annotation above, for messages that list them.
    pub const ALL: [&str; 9] = [
        INJECT, CONFIG, SECRET, APP_PORT, PORT, ADMIN_PORT, IMAGE, NATIVE, MIGRATE,
    ];

    /// ConfigMap name when [`CONFIG`] is absent.
    pub const DEFAULT_CONFIG: &str = "scim-sidecar";
    /// Secret name when [`SECRET`] is absent.
    pub const DEFAULT_SECRET: &str = "scim-sidecar";
    /// App port when [`APP_PORT`] is absent and no container declares a port.
    pub const DEFAULT_APP_PORT: u16 = 8080;
    /// Sidecar port when [`PORT`] is absent.
    pub const DEFAULT_PORT: u16 = 8443;
    /// Admin port when [`ADMIN_PORT`] is absent.
    pub const DEFAULT_ADMIN_PORT: u16 = 9090;
}

/// The image `inject` and `webhook` use when neither `--image` nor the pod's annotation names
/// one: this build's version, to be pushed to the cluster's registry under that name.
pub fn default_image() -> String {
    format!("scim-sidecar:{}", env!("CARGO_PKG_VERSION"))
}
