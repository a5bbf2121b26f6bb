#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, integration tests.
#
# Works on a fresh Debian machine with only the Rust toolchain: everything the tests need is
# either built by cargo (SQLite is compiled in) or installed by this script (PostgreSQL's
# server binaries, with apt-get, when no initdb is found). The tests start their own
# throwaway PostgreSQL cluster on a loopback port; nothing is started system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    echo "== installing PostgreSQL (the integration tests start a throwaway cluster)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # The server binaries only; the package's own cluster is not needed (and not started
    # where there is no init system).
    $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
# With PostgreSQL installed, a test that cannot start it fails instead of skipping.
export SCIM_SIDECAR_REQUIRE_PG=1

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
echo "== scripts/conformance.sh (scim2-tester against the quickstart and the PostgreSQL examples)"
scripts/conformance.sh
echo "== scripts/k8s-validate.sh (examples/kubernetes and inject's output against the Kubernetes schemas)"
scripts/k8s-validate.sh
