//! Kubernetes: `scim-sidecar inject` on real manifests and the admission webhook on the
//! AdmissionReview documents the API server sends (tests/fixtures/kubernetes/), and the plain
//! manifests of examples/kubernetes/ held to what the injector adds.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use scim_sidecar::k8s::inject::{self, Options, Outcome, parse_yaml};
use scim_sidecar::k8s::webhook::{self, Webhook, WebhookConfig};
use serde_json::{Value, json};
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::version::TLS13;

use crate::tls::{Pki, connect};

const BIN: &str = env!("CARGO_BIN_EXE_scim-sidecar");
const IMAGE: &str = "registry.example.com/scim-sidecar:0.1.0";
/// Bound on any single exchange, so that a broken server fails the test instead of hanging it.
const GUARD: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubernetes")
        .join(name)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/kubernetes")
        .join(name)
}

/// Runs `scim-sidecar inject ARGS` with `stdin`; (success, stdout, stderr).
fn run_inject(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .arg("inject")
        .args(args)
        .env_remove("SCIM_SIDECAR_IMAGE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scim-sidecar inject");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("inject output");
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("UTF-8 stdout"),
        String::from_utf8(out.stderr).expect("UTF-8 stderr"),
    )
}

/// The documents of a YAML stream as text, split where `---` lines start them.
fn documents(stream: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in stream.split_inclusive('\n') {
        if line.trim_end() == "---" && !docs.last().expect("doc").is_empty() {
            docs.push(String::new());
        }
        docs.last_mut().expect("doc").push_str(line);
    }
    docs
}

/// The pod spec of a Pod or of a workload's template.
fn pod_spec(obj: &Value) -> &Value {
    if obj["kind"] == "Pod" {
        &obj["spec"]
    } else {
        &obj["spec"]["template"]["spec"]
    }
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|l| l.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default()
}

fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .map(|v| &v["value"])
        .unwrap_or(&Value::Null)
}

/// `obj` with everything the injector adds taken out again: the `scim-sidecar*` containers
/// and volumes, and the lists that only they filled.
fn without_sidecar(mut obj: Value, original: &Value) -> Value {
    let spec = if obj["kind"] == "Pod" {
        &mut obj["spec"]
    } else {
        &mut obj["spec"]["template"]["spec"]
    };
    let orig_spec = pod_spec(original);
    for key in ["initContainers", "containers", "volumes"] {
        if let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) {
            list.retain(|c| {
                !c["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("scim-sidecar"))
            });
            if list.is_empty() && orig_spec.get(key).is_none() {
                spec.as_object_mut().expect("spec").remove(key);
            }
        }
    }
    obj
}

/// The fixtures' stream through `scim-sidecar inject`: the three objects that ask for the
/// sidecar get it as their annotations say, the others are written back byte for byte
/// (comments and all), and read back through a YAML parser the injected objects differ from
/// the originals in nothing but what was added — an octal file mode, quoted numbers and an
/// "on" that Kubernetes would read as a boolean if unquoted all keep their meaning.
#[test]
fn inject_adds_the_sidecar_and_changes_nothing_else() {
    let input = std::fs::read_to_string(fixture("workloads.yaml")).expect("fixture");
    let path = fixture("workloads.yaml");
    let (ok, out, err) = run_inject(&[path.to_str().expect("path"), "--image", IMAGE], "");
    assert!(ok, "{err}");
    assert!(
        err.contains("injected Deployment/helpdesk, StatefulSet/wiki, Pod/debug-shell"),
        "{err}"
    );

    let before = documents(&input);
    let after = documents(&out);
    assert_eq!(before.len(), after.len(), "{out}");
    for (b, a) in before.iter().zip(&after) {
        let orig = parse_yaml(b).expect("input parses");
        let kind = orig["kind"].as_str().unwrap_or_default();
        if matches!(kind, "Service" | "DaemonSet" | "ConfigMap") {
            assert_eq!(
                a, b,
                "a document without the annotation is copied as it was"
            );
            continue;
        }
        let got = parse_yaml(a).expect("output parses");
        assert_eq!(
            without_sidecar(got, &orig),
            orig,
            "{kind}: only the sidecar was added"
        );
    }

    let deploy = parse_yaml(&after[1]).expect("deployment");
    let spec = pod_spec(&deploy);
    assert_eq!(
        names(&spec["initContainers"]),
        ["db-migrate", "scim-sidecar"]
    );
    assert_eq!(names(&spec["containers"]), ["helpdesk"]);
    let sidecar = &spec["initContainers"][1];
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["image"], IMAGE);
    assert_eq!(sidecar["args"], json!(["run", "--log-format", "json"]));
    assert_eq!(
        env_value(sidecar, "UPSTREAM_URL"),
        "http://127.0.0.1:3000",
        "the first declared port is the app's"
    );
    assert_eq!(env_value(sidecar, "SCIM_SIDECAR_LISTEN"), "0.0.0.0:8443");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(sidecar["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        names(&spec["volumes"]),
        [
            "uploads",
            "keys",
            "scim-sidecar-config",
            "scim-sidecar-secret"
        ]
    );
    assert_eq!(spec["volumes"][1]["secret"]["defaultMode"], 0o440);
    assert_eq!(spec["volumes"][2]["configMap"]["name"], "scim-sidecar");
    assert!(
        after[1].contains("value: \"on\""),
        "a string Kubernetes would read as a boolean stays quoted:\n{}",
        after[1]
    );

    let wiki = parse_yaml(&after[3]).expect("statefulset");
    let spec = pod_spec(&wiki);
    assert_eq!(
        names(&spec["initContainers"]),
        ["scim-sidecar-migrate"],
        "native: \"false\" keeps only migrate among the init containers"
    );
    assert_eq!(names(&spec["containers"]), ["wiki", "scim-sidecar"]);
    let sidecar = &spec["containers"][1];
    assert!(sidecar.get("restartPolicy").is_none());
    assert_eq!(
        env_value(sidecar, "UPSTREAM_URL"),
        "http://127.0.0.1:8080",
        "app-port names a port"
    );
    assert_eq!(env_value(sidecar, "SCIM_SIDECAR_LISTEN"), "0.0.0.0:8444");
    assert_eq!(
        env_value(sidecar, "SCIM_SIDECAR_ADMIN_LISTEN"),
        "0.0.0.0:9091"
    );
    assert_eq!(spec["initContainers"][0]["args"], json!(["migrate"]));
    assert_eq!(spec["volumes"][0]["configMap"]["name"], "wiki-scim");
    assert_eq!(
        spec["volumes"][1]["secret"]["secretName"],
        "wiki-scim-secrets"
    );
    assert_eq!(
        sidecar["env"][5]["valueFrom"]["secretKeyRef"],
        json!({"name": "wiki-scim-secrets", "key": "database-url", "optional": true})
    );

    let shell = parse_yaml(&after[5]).expect("pod");
    assert_eq!(names(&pod_spec(&shell)["initContainers"]), ["scim-sidecar"]);
    assert_eq!(pod_spec(&shell)["initContainers"][0]["image"], IMAGE);
}

/// Injecting the output again changes nothing, byte for byte, and says so; standard input
/// works like a file.
#[test]
fn inject_twice_changes_nothing() {
    let input = std::fs::read_to_string(fixture("workloads.yaml")).expect("fixture");
    let (ok, once, err) = run_inject(&["--image", IMAGE], &input);
    assert!(ok, "{err}");
    let (ok, twice, err) = run_inject(&["-", "--image", IMAGE], &once);
    assert!(ok, "{err}");
    assert_eq!(twice, once);
    assert!(
        err.contains("already injected Deployment/helpdesk, StatefulSet/wiki, Pod/debug-shell"),
        "{err}"
    );
}

/// A pod that asks for the sidecar but cannot have it (an app port that names no port; a
/// sidecar port the app already uses) fails the whole run: nothing on standard output, and
/// the message names the document, its line, the object and the annotation.
#[test]
fn inject_refuses_what_it_cannot_do() {
    let bad_port = "kind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    scim-sidecar.io/inject: \"true\"\n    scim-sidecar.io/app-port: htpp\nspec:\n  containers:\n  - name: app\n    ports:\n    - {name: http, containerPort: 80}\n";
    let (ok, out, err) = run_inject(&[], bad_port);
    assert!(!ok);
    assert_eq!(out, "");
    assert!(
        err.contains("document 2 (line 3, Pod/p)") && err.contains("scim-sidecar.io/app-port"),
        "{err}"
    );

    let taken = bad_port
        .replace("    scim-sidecar.io/app-port: htpp\n", "")
        .replace(
            "{name: http, containerPort: 80}",
            "{name: http, containerPort: 80}\n    - {name: metrics, containerPort: 8443}",
        );
    let (ok, out, err) = run_inject(&[], &taken);
    assert!(!ok);
    assert_eq!(out, "");
    assert!(
        err.contains("already uses port 8443") && err.contains("scim-sidecar.io/port"),
        "{err}"
    );

    let (ok, _, err) = run_inject(&[], "kind: Pod\nmetadata: [\n");
    assert!(!ok);
    assert!(err.contains("document 1 (line 1)"), "{err}");
}

/// Nothing to inject is not an error, but it is said (a misspelt annotation shows).
#[test]
fn inject_says_when_nothing_asked() {
    let text = "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    scim-sidecar.io/injcet: \"true\"\nspec:\n  containers: [{name: app}]\n";
    let (ok, out, err) = run_inject(&[], text);
    assert!(ok, "{err}");
    assert_eq!(out, text);
    assert!(err.contains("nothing injected"), "{err}");
}

/// On a cluster before 1.29, `--native false` makes the sidecar a second container of every
/// pod that does not say otherwise; a pod's own `native` annotation still wins.
#[test]
fn inject_for_older_clusters() {
    let text = "kind: Pod\nmetadata:\n  name: p\n  annotations:\n    scim-sidecar.io/inject: \"true\"\nspec:\n  containers: [{name: app}]\n";
    let (ok, out, err) = run_inject(&["--native", "false"], text);
    assert!(ok, "{err}");
    let pod = parse_yaml(&out).expect("output parses");
    assert_eq!(names(&pod["spec"]["containers"]), ["app", "scim-sidecar"]);
    assert!(pod["spec"].get("initContainers").is_none(), "{out}");

    let native = text.replace(
        "inject: \"true\"\n",
        "inject: \"true\"\n    scim-sidecar.io/native: \"true\"\n",
    );
    let (ok, out, err) = run_inject(&["--native", "false"], &native);
    assert!(ok, "{err}");
    let pod = parse_yaml(&out).expect("output parses");
    assert_eq!(names(&pod["spec"]["initContainers"]), ["scim-sidecar"]);
}

/// A `List` (what `kubectl get deploy -o yaml` prints) has each of its items injected.
#[test]
fn inject_goes_into_lists() {
    let mut list = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "a", "annotations": {"scim-sidecar.io/inject": "true"}},
         "spec": {"containers": [{"name": "app"}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b"},
         "spec": {"containers": [{"name": "app"}]}}
    ]});
    let o = inject::inject_object(&mut list, &Options::default()).expect("inject");
    assert_eq!(o, Outcome::Injected);
    assert_eq!(
        names(&list["items"][0]["spec"]["initContainers"]),
        ["scim-sidecar"]
    );
    assert!(list["items"][1]["spec"].get("initContainers").is_none());
}

/// The plain manifests of examples/kubernetes/ are exactly what `inject` adds to the same
/// Deployment annotated for it (native, and classic with `native: "false"`): the hand-written
/// manifests and the injector cannot drift apart.
#[test]
fn plain_manifests_are_what_inject_adds() {
    for (file, native) in [
        ("deployment.yaml", true),
        ("deployment-classic.yaml", false),
    ] {
        let text = std::fs::read_to_string(example(file)).expect("manifest");
        let plain = parse_yaml(&text).expect("manifest parses");
        let mut bare = without_sidecar(plain.clone(), &json!({"kind": "Deployment"}));
        let ann = json!({
            "scim-sidecar.io/inject": "true",
            "scim-sidecar.io/migrate": "true",
            "scim-sidecar.io/native": if native { "true" } else { "false" },
        });
        bare["spec"]["template"]["metadata"]["annotations"] = ann;
        let opts = Options {
            image: IMAGE.into(),
            ..Options::default()
        };
        let o = inject::inject_object(&mut bare, &opts).expect("inject");
        assert_eq!(o, Outcome::Injected, "{file}");
        bare["spec"]["template"]["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("annotations");
        assert_eq!(bare, plain, "{file} differs from what inject adds");
    }
}

/// The config in examples/kubernetes/config.yaml is a valid config as the pod sees it: with
/// the token file of the Secret and the variables the pod sets.
#[test]
fn the_config_map_holds_a_valid_config() {
    let text = std::fs::read_to_string(example("config.yaml")).expect("manifest");
    let cm = parse_yaml(&text).expect("manifest parses");
    let toml = cm["data"]["scim-sidecar.toml"]
        .as_str()
        .expect("the config");
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("scim-token"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .expect("token");
    let toml = toml.replace(
        "/run/secrets/scim-sidecar/",
        &format!("{}/", dir.path().display()),
    );
    let path = dir.path().join("scim-sidecar.toml");
    std::fs::write(&path, toml).expect("config");
    let env: HashMap<String, String> = [
        (
            "DATABASE_URL",
            "postgres://helpdesk_scim:secret@127.0.0.1:5432/helpdesk",
        ),
        ("SCIM_SIDECAR_LISTEN", "0.0.0.0:8443"),
        ("SCIM_SIDECAR_ADMIN_LISTEN", "0.0.0.0:9090"),
        ("UPSTREAM_URL", "http://127.0.0.1:8080"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Err(problems) = scim_sidecar::config::load(&path, &env) {
        panic!("{}", scim_sidecar::config::report(&problems));
    }
}

// === the webhook ===

async fn start_webhook(pki: &Pki) -> Webhook {
    let tls = pki.tls();
    webhook::start(WebhookConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        cert: tls.cert,
        key: tls.key,
        reload_every: Duration::ZERO,
        inject: Options {
            image: IMAGE.into(),
            ..Options::default()
        },
    })
    .await
    .expect("webhook starts")
}

/// One HTTPS request to the webhook, as the API server makes it; (status, body).
async fn call(
    addr: SocketAddr,
    client: Arc<ClientConfig>,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Bytes) {
    tokio::time::timeout(GUARD, async {
        let tls = connect(addr, client).await;
        let (mut sender, conn) = http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "scim-sidecar-webhook.scim-sidecar-system.svc:443")
            .header("content-type", "application/json")
            .header("accept", "application/json, */*")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let status = resp.status();
        (
            status,
            resp.into_body().collect().await.expect("body").to_bytes(),
        )
    })
    .await
    .expect("answer in time")
}

async fn review(hook: &Webhook, pki: &Pki, body: Vec<u8>) -> Value {
    let (status, bytes) = call(
        hook.addr(),
        pki.client(&[&TLS13], &[b"http/1.1"]),
        Method::POST,
        "/mutate",
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&bytes).expect("JSON answer");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(
        v["response"]["allowed"], true,
        "the webhook never refuses: {v}"
    );
    v
}

/// RFC 6902 `add`, `remove` and `replace`, enough to apply the webhook's patch the way the
/// API server does.
fn apply_patch(doc: &mut Value, ops: &Value) {
    for op in ops.as_array().expect("patch is a list") {
        let path = op["path"].as_str().expect("path");
        let tokens: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        let (last, parents) = tokens.split_last().expect("non-empty path");
        let mut target = &mut *doc;
        for t in parents {
            target = match target {
                Value::Array(a) => &mut a[t.parse::<usize>().expect("index")],
                other => other.get_mut(t.as_str()).expect("parent exists"),
            };
        }
        match (op["op"].as_str().expect("op"), target) {
            ("add", Value::Array(a)) if last == "-" => a.push(op["value"].clone()),
            ("add" | "replace", Value::Object(m)) => {
                m.insert(last.clone(), op["value"].clone());
            }
            ("remove", Value::Object(m)) => {
                m.remove(last);
            }
            (other, _) => panic!("unexpected operation {other} at {path}"),
        }
    }
}

/// A pod created by a ReplicaSet with the annotation gets, through the webhook's JSONPatch
/// applied as the API server applies it, the same containers and volumes as `inject` adds,
/// and nothing else changes; the answer carries the request's uid. The patched pod, sent
/// again, gets no patch: the webhook is idempotent too.
#[tokio::test]
async fn webhook_patches_an_annotated_pod() {
    let pki = Pki::new();
    let hook = start_webhook(&pki).await;
    let body = std::fs::read(fixture("admission-pod-create.json")).expect("fixture");
    let request: Value = serde_json::from_slice(&body).expect("fixture JSON");
    let answer = review(&hook, &pki, body).await;
    let resp = &answer["response"];
    assert_eq!(resp["uid"], request["request"]["uid"]);
    assert_eq!(resp["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(resp["patch"].as_str().expect("patch"))
        .expect("base64");
    let ops: Value = serde_json::from_slice(&patch).expect("JSON patch");

    let original = request["request"]["object"].clone();
    let mut pod = original.clone();
    apply_patch(&mut pod, &ops);
    let spec = &pod["spec"];
    assert_eq!(
        names(&spec["initContainers"]),
        ["scim-sidecar-migrate", "scim-sidecar"]
    );
    assert_eq!(spec["initContainers"][1]["restartPolicy"], "Always");
    assert_eq!(spec["initContainers"][1]["image"], IMAGE);
    assert_eq!(
        env_value(&spec["initContainers"][1], "UPSTREAM_URL"),
        "http://127.0.0.1:8080"
    );
    assert_eq!(
        names(&spec["volumes"]),
        [
            "kube-api-access-x7k2p",
            "scim-sidecar-config",
            "scim-sidecar-secret"
        ]
    );
    assert_eq!(without_sidecar(pod.clone(), &original), original);

    let mut by_inject = original.clone();
    inject::inject_object(
        &mut by_inject,
        &Options {
            image: IMAGE.into(),
            ..Options::default()
        },
    )
    .expect("inject");
    assert_eq!(pod, by_inject, "the webhook adds what inject adds");

    let mut again = request.clone();
    again["request"]["object"] = pod;
    let answer = review(&hook, &pki, serde_json::to_vec(&again).expect("JSON")).await;
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    hook.shutdown().await;
}

/// Everything the webhook cannot or should not handle is allowed without a patch: a body
/// that is not JSON, a Deployment, a pod without the annotation; a pod whose annotation is
/// wrong is allowed too, with a warning naming the annotation (kubectl prints it).
#[tokio::test]
async fn webhook_allows_what_it_cannot_handle() {
    let pki = Pki::new();
    let hook = start_webhook(&pki).await;

    let garbage = review(&hook, &pki, b"{\"this is\": not JSON".to_vec()).await;
    assert_eq!(garbage["response"]["uid"], "");
    assert!(garbage["response"].get("patch").is_none(), "{garbage}");

    let empty = review(&hook, &pki, Vec::new()).await;
    assert!(empty["response"].get("patch").is_none(), "{empty}");

    for name in [
        "admission-deployment-create.json",
        "admission-pod-plain.json",
    ] {
        let body = std::fs::read(fixture(name)).expect("fixture");
        let request: Value = serde_json::from_slice(&body).expect("fixture JSON");
        let answer = review(&hook, &pki, body).await;
        assert_eq!(
            answer["response"]["uid"], request["request"]["uid"],
            "{name}"
        );
        assert!(
            answer["response"].get("patch").is_none(),
            "{name}: {answer}"
        );
        assert!(
            answer["response"].get("warnings").is_none(),
            "{name}: {answer}"
        );
    }

    let body = std::fs::read(fixture("admission-pod-bad-annotation.json")).expect("fixture");
    let answer = review(&hook, &pki, body).await;
    assert!(answer["response"].get("patch").is_none(), "{answer}");
    let warning = answer["response"]["warnings"][0]
        .as_str()
        .unwrap_or_default();
    assert!(
        warning.contains("scim-sidecar was not injected") && warning.contains("app-port"),
        "{answer}"
    );
    hook.shutdown().await;
}

/// `/healthz` answers for the webhook's own probes; a renewed certificate written over the
/// old files (as cert-manager updates the Secret) is served to the next connection without
/// a restart.
#[tokio::test]
async fn webhook_serves_a_renewed_certificate() {
    let pki = Pki::new();
    let hook = start_webhook(&pki).await;
    let (status, body) = call(
        hook.addr(),
        pki.client(&[&TLS13], &[b"http/1.1"]),
        Method::GET,
        "/healthz",
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"ok\n");

    let renewed = Pki::new();
    let (old, new) = (pki.tls(), renewed.tls());
    std::fs::copy(&new.key, &old.key).expect("write key");
    std::fs::copy(&new.cert, &old.cert).expect("write cert");
    let (status, _) = call(
        hook.addr(),
        renewed.client(&[&TLS13], &[b"http/1.1"]),
        Method::GET,
        "/healthz",
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the renewed certificate is served");
    hook.shutdown().await;
}
