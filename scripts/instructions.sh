#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: the sidecar's user-space cost
# of a create, a filter by userName, an Entra PATCH and a member add on the quickstart
# (SQLite), and of a GET passed through to the app (a small Python server the script
# starts), as a count that does not move with the machine's load.
#
# Why: on a shared 2-core VM the benches' req/s and CPU per request drift by 20-50 % between
# runs, so a change worth 5 % cannot be seen in them. An instruction count repeats within
# about 0.5 %. It covers user space only (the kernel's share, about 45 % of the sidecar's
# CPU per request, is not in it) and says nothing about waiting; the benches stay the
# measure of throughput. Opt-in, not part of the test suite.
#
# Usage: scripts/instructions.sh [N]        N requests per phase (default 300)
#        BINARY=path scripts/instructions.sh   measure another build (e.g. an older commit)
#        TOP=K                               the K functions that cost most (default 12)
#        EXAMPLE=ldap scripts/instructions.sh  examples/ldap instead, against a throwaway
#                                            slapd (examples/ldap/slapd.sh; needs slapd)
#        EXAMPLE=rest scripts/instructions.sh  examples/rest instead, against the legacy admin
#                                            API of examples/legacy-admin-api (built here)
#
# Starts the binary under callgrind with one shard (SCIM_SIDECAR_WORKERS=1) on free loopback
# ports and a database in a temp dir, warms it up with 50 requests per phase, then counts
# each phase on its own (callgrind_control zeroes the counters and dumps after it). A get by
# id is counted too, on the users the create phase made. Installs valgrind with apt-get when
# it is missing. Needs python3 (standard library only).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
n=${1:-300}
top=${TOP:-12}
example=${EXAMPLE:-quickstart}
case "$example" in
quickstart | ldap | rest) ;;
*) echo "instructions: EXAMPLE is quickstart, ldap or rest, not $example" >&2; exit 2 ;;
esac

if ! command -v valgrind >/dev/null || ! command -v callgrind_control >/dev/null; then
    echo "== installing valgrind (apt-get)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y -qq valgrind >/dev/null
fi
if [ -z "${BINARY:-}" ]; then
    cargo build --release --quiet --bin scim-sidecar
    BINARY=$root/target/release/scim-sidecar
fi

if [ "$example" = rest ]; then
    cargo build --release --quiet --example legacy-admin-api
fi

dir=$(mktemp -d)
pid=""
app=""
api=""
SLAPD_STOP=""
cleanup() {
    if [ -n "$SLAPD_STOP" ]; then eval "$SLAPD_STOP" || true; fi
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    if [ -n "$app" ]; then kill "$app" 2>/dev/null || true; wait "$app" 2>/dev/null || true; fi
    if [ -n "$api" ]; then kill "$api" 2>/dev/null || true; wait "$api" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')

# The app behind the sidecar, for the pass-through phase.
python3 scripts/instructions.py app "$dir/app.port" &
app=$!
for _ in $(seq 100); do [ -s "$dir/app.port" ] && break; sleep 0.1; done
[ -s "$dir/app.port" ] || { echo "instructions: the upstream app did not start" >&2; exit 1; }

config=examples/$example/scim-sidecar.toml
export SCIM_SIDECAR_LISTEN=127.0.0.1:$port SCIM_SIDECAR_ADMIN_LISTEN=127.0.0.1:$admin \
    UPSTREAM_URL=http://127.0.0.1:$(cat "$dir/app.port") QUICKSTART_DB=$dir/app.db \
    SCIM_SIDECAR_STATE=$dir/state.db SCIM_TOKEN=$token RUST_LOG=warn SCIM_SIDECAR_WORKERS=1
if [ "$example" = rest ]; then
    api_port=$(free_port)
    export REST_API_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    export REST_BASE_URL=http://127.0.0.1:$api_port
    LEGACY_API_LISTEN=127.0.0.1:$api_port target/release/examples/legacy-admin-api \
        >"$dir/api.log" 2>&1 &
    api=$!
    for _ in $(seq 100); do
        curl -fsS -o /dev/null -H "X-API-Key: $REST_API_KEY" "$REST_BASE_URL/users.json" && break
        sleep 0.1
    done
fi
if [ "$example" = ldap ]; then
    eval "$(examples/ldap/slapd.sh)"
fi
if [ "$example" != quickstart ]; then
    "$BINARY" migrate --config "$config" >"$dir/migrate.log" 2>&1 ||
        { cat "$dir/migrate.log" >&2; exit 1; }
fi
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" --dump-instr=no \
    "$BINARY" run --config "$config" >"$dir/sidecar.log" 2>&1 &
pid=$!

ready=""
for _ in $(seq 240); do # 2 minutes: the start-up under callgrind takes a few seconds
    if curl -fsS -o /dev/null "http://127.0.0.1:$admin/readyz" 2>/dev/null; then ready=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
if [ -z "$ready" ]; then
    echo "instructions: the sidecar did not become ready; its log:" >&2
    cat "$dir/sidecar.log" >&2
    exit 1
fi

drive() { python3 scripts/instructions.py drive "$port" "$token" "$1" "$2" "$3" "$dir/ids.json"; }
drive create 50 warm
drive filter 50 warm
drive ids 1 warm
drive get 50 warm
drive patch 50 warm
drive groups 50 warm
drive member 50 warm
drive pass 50 warm

echo "== $BINARY, $n requests per phase, $example, one shard"
for phase in create filter get patch member pass; do
    # The member phase's groups are made before the count starts.
    if [ "$phase" = member ]; then drive groups "$n" run; fi
    callgrind_control -z "$pid" >/dev/null 2>&1
    drive "$phase" "$n" run
    callgrind_control -d "$phase" "$pid" >/dev/null 2>&1
    dump=$(grep -l "^desc: Trigger: dump $phase\$" "$dir"/cg.out.* | head -1)
    echo "$phase:"
    python3 scripts/instructions.py report "$dump" "$n" "$top"
done
