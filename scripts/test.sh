#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, integration tests.
#
# Works on a fresh Debian machine with only the Rust toolchain: everything the tests need is
# either built by cargo (SQLite is compiled in) or installed by this script (PostgreSQL's,
# MariaDB's, OpenLDAP's and Samba's server binaries, with apt-get, when they are missing).
# The tests start their own throwaway PostgreSQL cluster, MariaDB server, slapd and Samba AD
# domain controller on loopback ports; nothing is started system-wide.
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
if [ ! -x /usr/sbin/mariadbd ] || ! command -v mariadb-install-db >/dev/null; then
    echo "== installing MariaDB (the integration tests start a throwaway server)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # The server and its client; Debian's policy-rc.d keeps the package's own server from
    # starting where there is no init system.
    $sudo apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >/dev/null
fi
if [ ! -x /usr/sbin/slapd ] || ! command -v ldapsearch >/dev/null; then
    echo "== installing OpenLDAP (the integration tests start a throwaway slapd)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # slapd and its tools; policy-rc.d keeps the package's own server from starting where
    # there is no init system, and the tests never use its /etc/ldap/slapd.d.
    $sudo apt-get install -y -qq --no-install-recommends slapd ldap-utils >/dev/null
fi
if [ ! -x /usr/sbin/samba ] || ! command -v samba-tool >/dev/null; then
    echo "== installing Samba (the integration tests provision a throwaway AD domain controller)"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # The AD DC and the modules provisioning needs; policy-rc.d keeps the package's own
    # daemons from starting where there is no init system, and the tests never use /etc/samba.
    $sudo apt-get install -y -qq --no-install-recommends samba samba-dsdb-modules samba-ad-provision samba-vfs-modules ldb-tools >/dev/null
fi
# With the servers installed, a test that cannot start one fails instead of skipping.
export SCIM_SIDECAR_REQUIRE_PG=1
export SCIM_SIDECAR_REQUIRE_MARIADB=1
export SCIM_SIDECAR_REQUIRE_LDAP=1
export SCIM_SIDECAR_REQUIRE_SAMBA=1

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
# The image's static binary (a release build with fat LTO, the longest step) builds in the
# background, at a lower priority, while the conformance and Kubernetes checks run: they
# mostly wait on Python, pip and the servers, and leave the cores idle.
static_log="$(mktemp -t scim-static-build.XXXXXX)"
echo "== scripts/static-build.sh --build-only, in the background (its output follows the checks)"
# A session of its own, so that a failed check stops the whole build (cargo and rustc too).
setsid nice -n 10 scripts/static-build.sh --build-only >"$static_log" 2>&1 &
static_pid=$!
trap 'kill -- "-$static_pid" 2>/dev/null || true; rm -f "$static_log"' EXIT
echo "== scripts/conformance.sh (scim2-tester against every example)"
scripts/conformance.sh
echo "== scripts/k8s-validate.sh (examples/kubernetes and inject's output against the Kubernetes schemas)"
scripts/k8s-validate.sh
echo "== scripts/static-build.sh (the image's static binary, smoke-tested as the image runs it)"
static_rc=0
wait "$static_pid" || static_rc=$?
cat "$static_log"
if [ "$static_rc" -ne 0 ]; then
    echo "scripts/static-build.sh --build-only failed (exit $static_rc)" >&2
    exit "$static_rc"
fi
# Built: this run's cargo build finds nothing to do, and checks and smoke-tests the binary.
scripts/static-build.sh
