#!/usr/bin/env bash
# Builds the static binary the image holds (the Dockerfile runs the same cargo command) and
# smoke-tests it the way the image runs it, without a container engine.
#
#   scripts/static-build.sh               build, check it is static, smoke-test it
#   scripts/static-build.sh --build-only  build and check only
#
# The binary: target/static/scim-sidecar (stripped). The smoke test lays out a directory like
# the image (the binary alone in /usr/local/bin, /etc/passwd with "nonroot", /etc/hosts, no
# shell, no libc) and, when run as root, runs the binary chrooted in it as UID 65532 (else
# directly, and says so). With the quickstart config it checks: start, /healthz, /readyz, a
# SCIM create (201), a pass-through request to an app reached as "localhost" (name
# resolution in a static binary), then SIGTERM and a clean exit.
#
# scripts/test.sh runs it last (a clean release build of the static target takes a few
# minutes on two cores), so every CI run checks the binary the image would ship.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-unknown-linux-gnu
OUT=target/static/scim-sidecar

echo "== cargo build --release --target $TARGET (static glibc: -C target-feature=+crt-static)"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$TARGET"
mkdir -p target/static
strip -o "$OUT" "target/$TARGET/release/scim-sidecar"

fail() {
    echo "static-build: FAILED: $*" >&2
    exit 1
}
# The image's build stage copies only some of the checkout: cargo must resolve the build
# from those paths alone (a path dependency, such as vendor/, missing from its COPY lines
# would fail `docker build` and nothing else). After the build, so the registry is fetched.
ctx="$(mktemp -d)"
sed -n '/^FROM .* AS build/,/^FROM /p' Dockerfile |
    awk '/^COPY / && !/--from/ { for (i = 2; i < NF; i++) print $i }' |
    while read -r path; do cp -r "$path" "$ctx/"; done
if ! (cd "$ctx" && cargo tree --locked --offline --target "$TARGET" -e normal >/dev/null); then
    rm -rf "$ctx"
    fail "cargo cannot resolve the build from the paths the Dockerfile copies (its COPY lines)"
fi
rm -rf "$ctx"
echo "the Dockerfile's build context resolves"

kind="$(file -b "$OUT")"
echo "$OUT: $kind"
case "$kind" in
*"statically linked"* | *"static-pie linked"*) ;;
*) fail "$OUT is not statically linked" ;;
esac
if ldd "$OUT" >/dev/null 2>&1; then
    ldd "$OUT" 2>&1 | grep -q "not a dynamic executable\|statically linked" ||
        fail "ldd finds shared libraries in $OUT"
fi
echo "size: $(du -h "$OUT" | cut -f1) stripped ($(stat -c %s "$OUT") bytes)"
[ "${1:-}" = "--build-only" ] && exit 0

# === smoke test ===
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PORT="$(free_port)"
ADMIN="$(free_port)"
APP="$(free_port)"
TOKEN="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"

# The image's filesystem: nothing but the binary, users, hosts; the quickstart config under
# /etc/scim-sidecar (read-only for the sidecar) and its database in /data (the only
# directory UID 65532 may write, as a volume would be).
root="$work/root"
mkdir -p "$root/usr/local/bin" "$root/etc/scim-sidecar" "$root/data"
cp "$OUT" "$root/usr/local/bin/scim-sidecar"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root/etc/hosts"
cp examples/quickstart/scim-sidecar.toml examples/quickstart/schema.sql "$root/etc/scim-sidecar/"

# The app: a static file server on loopback.
mkdir -p "$work/app"
echo "hello from the app" >"$work/app/hello.txt"
python3 -m http.server "$APP" --bind 127.0.0.1 --directory "$work/app" >"$work/app.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$APP/hello.txt" && break
    sleep 0.05
done

export SCIM_SIDECAR_LISTEN="127.0.0.1:$PORT"
export SCIM_SIDECAR_ADMIN_LISTEN="127.0.0.1:$ADMIN"
export UPSTREAM_URL="http://localhost:$APP"
export QUICKSTART_DB=/data/app.db
export SCIM_TOKEN="$TOKEN"
args=(run --config /etc/scim-sidecar/scim-sidecar.toml --log-format json --workers 1)
if [ "$(id -u)" -eq 0 ] && chown 65532:65532 "$root/data" &&
    chroot --userspec=65532:65532 "$root" /usr/local/bin/scim-sidecar --version >/dev/null 2>&1; then
    how="chrooted in an image-like root as UID 65532"
    chroot --userspec=65532:65532 "$root" /usr/local/bin/scim-sidecar "${args[@]}" 2>"$work/sidecar.log" &
else
    how="directly (not root: no chroot; the config and database paths are the same)"
    export QUICKSTART_DB="$root/data/app.db"
    args[2]="$root/etc/scim-sidecar/scim-sidecar.toml"
    "$root/usr/local/bin/scim-sidecar" "${args[@]}" 2>"$work/sidecar.log" &
fi
sidecar=$!
pids+=("$sidecar")
echo "== smoke test: $OUT $how"

code() { curl -s -o "$work/body" -w '%{http_code}' --max-time 10 "$@"; }
# Ready within 10 s (polled every 50 ms).
for _ in $(seq 200); do
    [ "$(code "http://127.0.0.1:$ADMIN/healthz" || true)" = 200 ] && break
    kill -0 "$sidecar" 2>/dev/null || { cat "$work/sidecar.log" >&2; fail "the sidecar exited at start"; }
    sleep 0.05
done
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then echo "ok   $1 ($3)"; else
        echo "FAIL $1: expected $2, got $3" >&2
        cat "$work/body" >&2 || true
        cat "$work/sidecar.log" >&2
        fail "$1"
    fi
}
check "/healthz" 200 "$(code "http://127.0.0.1:$ADMIN/healthz")"
check "/readyz" 200 "$(code "http://127.0.0.1:$ADMIN/readyz")"
check "SCIM create" 201 "$(code -X POST "http://127.0.0.1:$PORT/scim/v2/Users" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/scim+json' \
    -d '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"smoke@example.com","active":true}')"
grep -q '"userName":"smoke@example.com"' "$work/body" || fail "the create's answer has no userName"
check "pass-through to the app" 200 "$(code "http://127.0.0.1:$PORT/hello.txt")"
grep -q "hello from the app" "$work/body" || fail "the pass-through answer is not the app's"
kill -TERM "$sidecar"
status=0
wait "$sidecar" || status=$?
check "exit status after SIGTERM" 0 "$status"
grep -q '"message":"stopped"' "$work/sidecar.log" || {
    cat "$work/sidecar.log" >&2
    fail "no \"stopped\" line in the JSON log"
}
echo "ok   JSON log: $(wc -l <"$work/sidecar.log") lines, the last: $(tail -1 "$work/sidecar.log" | cut -c1-120)"
echo "static-build: OK"
