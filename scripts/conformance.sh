#!/usr/bin/env bash
# SCIM conformance: the public suite scim2-tester (PyPI) against the sidecar running the
# shipped examples: the quickstart (SQLite); examples/postgres, examples/redmine and
# examples/phpbb, each in its own database of one throwaway PostgreSQL; and
# examples/wordpress-mysql (WordPress's own tables) on a throwaway MariaDB; examples/ldap on a
# throwaway slapd started by examples/ldap/slapd.sh; examples/rest through the legacy admin API
# of examples/legacy-admin-api (`cargo run --example legacy-admin-api`);
# examples/active-directory on a throwaway Samba AD domain controller started by
# examples/active-directory/samba.sh.
#
# Installs the pinned suite in a virtualenv under target/conformance-venv (once), takes the
# debug binaries `cargo test` builds (the sidecar and the example API), starts each example
# on free loopback ports with a random token, runs scripts/conformance.py against it, and
# stops everything on exit. Prints the count per status for each example; exits non-zero if
# any check failed. Called by scripts/test.sh after `cargo test`; adds well under a minute
# once the venv exists.
set -euo pipefail
cd "$(dirname "$0")/.."

# scim2-tester and everything it pulls in, exactly (as `pip freeze` spells them), so a new
# release of the suite cannot change the result of an old commit.
PINS=(
    annotated-types==0.8.0
    anyio==4.16.0
    dnspython==2.9.2
    email-validator==2.4.0
    h11==0.16.0
    httpcore2==2.16.2
    httpx2==2.16.2
    idna==3.20
    lark==1.3.1
    pydantic==2.14.3
    pydantic_core==2.50.4
    scim2-client==0.13.2
    scim2-models==0.12.3
    scim2-tester==0.5.2
    truststore==0.10.5
    typing-inspection==0.4.5
    typing_extensions==4.16.0
)

VENV=target/conformance-venv
PY="$VENV/bin/python"
BIN=target/debug/scim-sidecar

# === the suite ===
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
missing=0
for pin in "${PINS[@]}"; do
    grep -qxF "$pin" <<<"$installed" || missing=1
done
if [ "$missing" -eq 1 ]; then
    echo "== installing scim2-tester into $VENV"
    "$PY" -m pip install -q --disable-pip-version-check "${PINS[@]}"
fi

# The binaries `cargo test` builds: target/debug/scim-sidecar and the examples. Not `cargo
# build`: without the dev-dependencies' features (hyper-util's) it would rebuild hyper-util,
# the library and the binary (a minute or two on two cores) right after scripts/test.sh's
# `cargo test`, and `cargo test` would rebuild them back the next time.
echo "== cargo test --locked --no-run"
cargo test --locked --quiet --no-run

# === processes, stopped on exit ===
WORK="$(mktemp -d -t scim-conformance.XXXXXX)"
PIDS=()
PG_DATA=""
MY_PID=""
SLAPD_STOP=""
SAMBA_STOP=""
REDMINE_STOP=""
as_pg=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$MY_PID" ]; then
        kill "$MY_PID" 2>/dev/null || true
        wait "$MY_PID" 2>/dev/null || true
    fi
    if [ -n "$SLAPD_STOP" ]; then
        bash -c "$SLAPD_STOP" >/dev/null 2>&1 || true
    fi
    # Samba's ports are fixed: a DC left running would stop the next one (the tests' own).
    if [ -n "$REDMINE_STOP" ]; then
        bash -c "$REDMINE_STOP" >/dev/null 2>&1 || true
    fi
    if [ -n "$SAMBA_STOP" ]; then
        bash -c "$SAMBA_STOP" >/dev/null 2>&1 || true
    fi
    if [ -n "$PG_DATA" ]; then
        "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_example LABEL CONFIG [VAR=value ...]: starts the sidecar on CONFIG with the given
# environment plus listen addresses and a token, waits for /readyz, runs the suite, stops it.
run_example() {
    local label="$1" config="$2"
    shift 2
    local port admin token log pid
    port="$(free_port)"
    admin="$(free_port)"
    token="$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
    log="$WORK/$label.log"
    env "$@" SCIM_SIDECAR_LISTEN="127.0.0.1:$port" SCIM_SIDECAR_ADMIN_LISTEN="127.0.0.1:$admin" \
        SCIM_TOKEN="$token" RUST_LOG="${RUST_LOG:-warn}" \
        "$BIN" run --config "$config" >"$log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    # Poll readiness every 50 ms for up to 10 s.
    local tries=0
    until curl -fs -o /dev/null "http://127.0.0.1:$admin/readyz"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 200 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "$label: the sidecar did not become ready; its log:" >&2
            tail -n 50 "$log" >&2
            return 1
        fi
        sleep 0.05
    done
    echo "== conformance: $label ($config)"
    local rc=0
    "$PY" scripts/conformance.py "http://127.0.0.1:$port/scim/v2" "$token" --label "$label" || rc=$?
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [ "$rc" -ne 0 ]; then
        echo "$label: the sidecar's log:" >&2
        tail -n 50 "$log" >&2
    fi
    return "$rc"
}

# === PostgreSQL: a throwaway cluster, as in tests/support/postgres.rs ===
start_postgres() {
    PG_BIN="$(compgen -G '/usr/lib/postgresql/*/bin' | sort -V | tail -n 1 || true)"
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        echo "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)" >&2
        return 1
    fi
    local dir="$WORK/pg"
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        # initdb refuses to run as root.
        chown postgres: "$dir"
        chmod 755 "$WORK"
        as_pg=(runuser -u postgres --)
    fi
    PG_PORT="$(free_port)"
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    PG_DATA="$dir/data"
    "${as_pg[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$dir/server.log" -w -t 30 start \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $dir -c fsync=off" >/dev/null || {
        cat "$dir/server.log" >&2
        return 1
    }
}

# run_pg_example NAME: a fresh database holding examples/NAME/schema.sql, `migrate`, then the
# suite against examples/NAME/scim-sidecar.toml.
run_pg_example() {
    local name="$1"
    local db="postgres://postgres@127.0.0.1:$PG_PORT/app_$name"
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "app_$name"
    "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "app_$name" \
        -f "examples/$name/schema.sql" >/dev/null
    if ! env DATABASE_URL="$db" "$BIN" migrate --config "examples/$name/scim-sidecar.toml" \
        >"$WORK/migrate-$name.log" 2>&1; then
        echo "$name: scim-sidecar migrate failed:" >&2
        cat "$WORK/migrate-$name.log" >&2
        return 1
    fi
    run_example "$name" "examples/$name/scim-sidecar.toml" DATABASE_URL="$db"
}

# === MariaDB: a throwaway server, as in tests/support/mariadb.rs ===
start_mariadb() {
    if [ ! -x /usr/sbin/mariadbd ]; then
        echo "MariaDB is not installed (no /usr/sbin/mariadbd)" >&2
        return 1
    fi
    local dir="$WORK/mariadb" user=()
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown mysql: "$dir"
        chmod 755 "$WORK"
        user=(--user=mysql)
    fi
    MY_PORT="$(free_port)"
    MY_SOCK="$dir/mysqld.sock"
    mariadb-install-db --no-defaults "${user[@]}" --datadir="$dir/data" \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 || {
        cat "$dir/install.log" >&2
        return 1
    }
    /usr/sbin/mariadbd --no-defaults "${user[@]}" --datadir="$dir/data" --socket="$MY_SOCK" \
        --pid-file="$dir/mysqld.pid" --log-error="$dir/error.log" --tmpdir="$dir" --bind-address=127.0.0.1 \
        --port="$MY_PORT" --skip-name-resolve --skip-log-bin \
        --innodb-flush-log-at-trx-commit=0 --innodb-buffer-pool-size=64M &
    MY_PID=$!
    local tries=0
    until mariadb --no-defaults -S "$MY_SOCK" -uroot -e 'SELECT 1' >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ "$tries" -ge 200 ] || ! kill -0 "$MY_PID" 2>/dev/null; then
            cat "$dir/error.log" >&2
            return 1
        fi
        sleep 0.05
    done
    mariadb --no-defaults -S "$MY_SOCK" -uroot -e \
        "CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'app'; GRANT ALL ON *.* TO 'app'@'127.0.0.1';"
}

# run_my_example NAME: a fresh utf8mb4 database holding examples/NAME/schema.sql, `migrate`,
# then the suite against examples/NAME/scim-sidecar.toml.
run_my_example() {
    local name="$1" db="app_${1//-/_}"
    mariadb --no-defaults -S "$MY_SOCK" -uroot -e \
        "CREATE DATABASE $db CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci"
    mariadb --no-defaults -S "$MY_SOCK" -uroot "$db" <"examples/$name/schema.sql"
    local url="mysql://app:app@127.0.0.1:$MY_PORT/$db"
    if ! env DATABASE_URL="$url" "$BIN" migrate --config "examples/$name/scim-sidecar.toml" \
        >"$WORK/migrate-$name.log" 2>&1; then
        echo "$name: scim-sidecar migrate failed:" >&2
        cat "$WORK/migrate-$name.log" >&2
        return 1
    fi
    run_example "$name" "examples/$name/scim-sidecar.toml" DATABASE_URL="$url"
}

# run_ldap_example: a throwaway slapd loaded with examples/ldap/base.ldif (the example's own
# script), the state database (SQLite) created by `migrate`, then the suite.
run_ldap_example() {
    local out
    if ! out="$(examples/ldap/slapd.sh)"; then
        echo "ldap: examples/ldap/slapd.sh failed" >&2
        return 1
    fi
    eval "$out"
    local state="$WORK/ldap-state.db"
    if ! env SCIM_SIDECAR_STATE="$state" "$BIN" migrate --config examples/ldap/scim-sidecar.toml \
        >"$WORK/migrate-ldap.log" 2>&1; then
        echo "ldap: scim-sidecar migrate failed:" >&2
        cat "$WORK/migrate-ldap.log" >&2
        return 1
    fi
    run_example ldap examples/ldap/scim-sidecar.toml LDAP_URL="$LDAP_URL" \
        LDAP_BIND_DN="$LDAP_BIND_DN" LDAP_BIND_PASSWORD="$LDAP_BIND_PASSWORD" \
        LDAP_BASE_DN="$LDAP_BASE_DN" SCIM_SIDECAR_STATE="$state"
}

# run_ad_example: a throwaway Samba AD domain controller with the example's OUs (the
# example's own script; stopped in `cleanup`), the state database (SQLite) created by
# `migrate`, then the suite.
run_ad_example() {
    local out
    if ! out="$(examples/active-directory/samba.sh)"; then
        echo "active-directory: examples/active-directory/samba.sh failed" >&2
        return 1
    fi
    eval "$out"
    local state="$WORK/ad-state.db"
    if ! env SCIM_SIDECAR_STATE="$state" LDAP_URL="$LDAP_URL" LDAP_BIND_DN="$LDAP_BIND_DN" \
        LDAP_BIND_PASSWORD="$LDAP_BIND_PASSWORD" LDAP_BASE_DN="$LDAP_BASE_DN" \
        LDAP_CA_FILE="$LDAP_CA_FILE" \
        "$BIN" migrate --config examples/active-directory/scim-sidecar.toml \
        >"$WORK/migrate-ad.log" 2>&1; then
        echo "active-directory: scim-sidecar migrate failed:" >&2
        cat "$WORK/migrate-ad.log" >&2
        return 1
    fi
    run_example active-directory examples/active-directory/scim-sidecar.toml \
        LDAP_URL="$LDAP_URL" LDAP_BIND_DN="$LDAP_BIND_DN" \
        LDAP_BIND_PASSWORD="$LDAP_BIND_PASSWORD" LDAP_BASE_DN="$LDAP_BASE_DN" \
        LDAP_CA_FILE="$LDAP_CA_FILE" SCIM_SIDECAR_STATE="$state"
}

# run_rest_example: the legacy admin API (the example program, its data in memory) on a free
# port with a random key, the state database created by `migrate`, then the suite.
run_rest_example() {
    local port key state
    port="$(free_port)"
    key="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
    LEGACY_API_LISTEN="127.0.0.1:$port" REST_API_KEY="$key" \
        target/debug/examples/legacy-admin-api >"$WORK/legacy-admin-api.log" 2>&1 &
    PIDS+=("$!")
    local tries=0
    until curl -s -o /dev/null "http://127.0.0.1:$port/users.json"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 200 ]; then
            echo "rest: the legacy admin API did not start; its log:" >&2
            cat "$WORK/legacy-admin-api.log" >&2
            return 1
        fi
        sleep 0.05
    done
    state="$WORK/rest-state.db"
    if ! env REST_BASE_URL="http://127.0.0.1:$port" REST_API_KEY="$key" SCIM_SIDECAR_STATE="$state" \
        "$BIN" migrate --config examples/rest/scim-sidecar.toml >"$WORK/migrate-rest.log" 2>&1; then
        echo "rest: scim-sidecar migrate failed:" >&2
        cat "$WORK/migrate-rest.log" >&2
        return 1
    fi
    run_example rest examples/rest/scim-sidecar.toml REST_BASE_URL="http://127.0.0.1:$port" \
        REST_API_KEY="$key" SCIM_SIDECAR_STATE="$state"
}

# run_redmine_rest_example: the real Redmine from Debian's packages (scripts/redmine-rest.sh,
# which installs them when missing; a minute or more), then the suite against
# examples/redmine-rest. Opt-in: not in the default list.
run_redmine_rest_example() {
    local out state
    if ! out="$(scripts/redmine-rest.sh)"; then
        echo "redmine-rest: scripts/redmine-rest.sh failed" >&2
        return 1
    fi
    eval "$out"
    state="$WORK/redmine-rest-state.db"
    if ! env SCIM_SIDECAR_STATE="$state" "$BIN" migrate --config examples/redmine-rest/scim-sidecar.toml \
        >"$WORK/migrate-redmine-rest.log" 2>&1; then
        echo "redmine-rest: scim-sidecar migrate failed:" >&2
        cat "$WORK/migrate-redmine-rest.log" >&2
        return 1
    fi
    run_example redmine-rest examples/redmine-rest/scim-sidecar.toml REST_BASE_URL="$REST_BASE_URL" \
        REST_API_KEY="$REST_API_KEY" SCIM_SIDECAR_STATE="$state"
}

failed=0
# CONFORMANCE_ONLY=phpbb (a space-separated list) runs only those examples, while working on one.
only=" ${CONFORMANCE_ONLY:-quickstart postgres redmine phpbb wordpress-mysql ldap rest active-directory} "

if [[ "$only" == *" quickstart "* ]]; then
    run_example quickstart examples/quickstart/scim-sidecar.toml QUICKSTART_DB="$WORK/app.db" ||
        failed=1
fi

if [[ "$only" == *" postgres "* || "$only" == *" redmine "* || "$only" == *" phpbb "* ]]; then
    if start_postgres; then
        for example in postgres redmine phpbb; do
            if [[ "$only" == *" $example "* ]]; then
                run_pg_example "$example" || failed=1
            fi
        done
    else
        failed=1
    fi
fi

if [[ "$only" == *" wordpress-mysql "* ]]; then
    if start_mariadb; then
        run_my_example wordpress-mysql || failed=1
    else
        failed=1
    fi
fi

if [[ "$only" == *" ldap "* ]]; then
    run_ldap_example || failed=1
fi

if [[ "$only" == *" rest "* ]]; then
    run_rest_example || failed=1
fi

if [[ "$only" == *" active-directory "* ]]; then
    run_ad_example || failed=1
fi

if [[ "$only" == *" redmine-rest "* ]]; then
    run_redmine_rest_example || failed=1
fi

if [ "$failed" -ne 0 ]; then
    echo "== conformance: FAILED" >&2
    exit 1
fi
echo "== conformance: ok"
