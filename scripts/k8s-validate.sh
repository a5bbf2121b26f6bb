#!/usr/bin/env bash
# The Kubernetes manifests against the Kubernetes API schemas, offline: examples/kubernetes/
# and what `scim-sidecar inject` writes for tests/fixtures/kubernetes/workloads.yaml.
#
# - kubernetes-validate (PyPI; it ships the API's JSON schemas) in strict mode, so an unknown
#   or misspelt field fails: the native-sidecar manifests against 1.29 (the first release with
#   native sidecars on by default) and the latest it knows, the classic variant against 1.25
#   (the oldest it knows) too.
# - The ServiceMonitor (a CRD, no API schema) against prometheus-operator's v1 models
#   (cloudcoil-models-prometheus-operator, generated from the CRD's schema), with every field
#   required to survive the round trip, so an unknown field fails there too.
# - webhook-certificate.yaml (cert-manager's CRDs) is not validated: no schema for them is
#   available offline.
#
# Installs the pinned tools in a virtualenv under target/k8s-validate-venv (once). Called by
# scripts/test.sh; takes a few seconds once the venv exists.
set -euo pipefail
cd "$(dirname "$0")/.."

# Exactly (as `pip freeze` spells them), so a new release cannot change an old commit's result.
PINS=(
    annotated-types==0.8.0
    anyio==4.16.0
    attrs==26.1.0
    certifi==2026.10.19.post1
    cloudcoil==0.6.0
    cloudcoil.models.prometheus_operator==0.80.1.0
    h11==0.16.0
    httpcore==1.0.9
    httpx==0.28.1
    idna==3.20
    importlib_resources==7.1.0
    jsonschema==4.26.0
    jsonschema-specifications==2025.9.1
    kubernetes-validate==1.37.0
    packaging==26.4
    pydantic==2.14.4
    pydantic_core==2.50.5
    PyYAML==6.0.4
    referencing==0.37.0
    rpds-py==2026.9.1
    typing-inspection==0.4.5
    typing_extensions==4.16.0
)
VENV=target/k8s-validate-venv
PY="$VENV/bin/python"
KV="$VENV/bin/kubernetes-validate"
BIN=target/debug/scim-sidecar
DIR=examples/kubernetes

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "== installing python3-venv"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
installed="$("$PY" -m pip freeze --all 2>/dev/null || true)"
for pin in "${PINS[@]}"; do
    if ! grep -qxF "$pin" <<<"$installed"; then
        echo "== installing kubernetes-validate and the prometheus-operator models into $VENV"
        "$PY" -m pip install -q --disable-pip-version-check "${PINS[@]}"
        break
    fi
done
[ -x "$BIN" ] || cargo build --locked -q

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$BIN" inject --image registry.example.com/scim-sidecar:0.1.0 \
    tests/fixtures/kubernetes/workloads.yaml >"$work/injected.yaml" 2>/dev/null

failed=0
# validate VERSION FILE...: strict; a kind without a schema is a failure, not a warning.
validate() {
    local version="$1"
    shift
    local out
    if ! out="$("$KV" --strict --kubernetes-version "$version" "$@" 2>&1)"; then
        failed=1
    fi
    if grep -q "Couldn't find schema" <<<"$out"; then
        failed=1
    fi
    grep -v '^INFO' <<<"$out" || true
    echo "Kubernetes $version: $(grep -c '^INFO.*passed' <<<"$out") object(s) passed in $*"
}

native=("$DIR/config.yaml" "$DIR/deployment.yaml" "$DIR/service.yaml" "$DIR/webhook.yaml" "$work/injected.yaml")
echo "== kubernetes-validate --strict"
validate 1.29 "${native[@]}"
validate 1.37 "${native[@]}" "$DIR/deployment-classic.yaml"
validate 1.25 "$DIR/config.yaml" "$DIR/deployment-classic.yaml" "$DIR/service.yaml"

echo "== ServiceMonitor against prometheus-operator's monitoring.coreos.com/v1 models"
if ! "$PY" - "$DIR/servicemonitor.yaml" <<'EOF'; then
import sys
import yaml
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

def dropped(sent, kept, path=""):
    """Fields of `sent` the model did not keep: unknown to the CRD (or misspelt)."""
    out = []
    if isinstance(sent, dict):
        for k, v in sent.items():
            if not isinstance(kept, dict) or k not in kept:
                out.append(f"{path}.{k}")
            else:
                out += dropped(v, kept[k], f"{path}.{k}")
    elif isinstance(sent, list):
        for i, v in enumerate(sent):
            out += dropped(v, kept[i] if isinstance(kept, list) and i < len(kept) else None, f"{path}[{i}]")
    return out

bad = False
for doc in yaml.safe_load_all(open(sys.argv[1])):
    m = ServiceMonitor.model_validate(doc)
    back = m.model_dump(mode="json", by_alias=True, exclude_none=True)
    unknown = dropped(doc, back)
    name = doc["metadata"]["name"]
    if unknown:
        print(f"ERROR {sys.argv[1]} ServiceMonitor/{name}: unknown field(s) {', '.join(unknown)}")
        bad = True
    else:
        print(f"ServiceMonitor/{name} passed")
sys.exit(1 if bad else 0)
EOF
    failed=1
fi
echo "(not validated: $DIR/webhook-certificate.yaml, cert-manager CRDs without an offline schema)"

if [ "$failed" -ne 0 ]; then
    echo "k8s-validate: FAILED"
    exit 1
fi
echo "k8s-validate: all manifests passed"
