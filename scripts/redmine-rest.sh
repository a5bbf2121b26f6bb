#!/usr/bin/env bash
# Starts the real Redmine (Debian's `redmine` package, 5.0.x on bookworm) on a free port of
# 127.0.0.1 with its REST API enabled, so the REST store can be tried against a real
# application's admin API (/users.json, /groups.json, ...) instead of only against
# examples/legacy-admin-api (examples/redmine-rest maps it). Opt-in: nothing in scripts/test.sh
# runs it; `CONFORMANCE_ONLY=redmine-rest bash scripts/conformance.sh` runs scim2-tester on it.
#
#   eval "$(scripts/redmine-rest.sh)"        # exports REST_BASE_URL, REST_API_KEY, ...
#   curl -H "X-Redmine-API-Key: $REST_API_KEY" "$REST_BASE_URL/users.json"
#   eval "$REDMINE_STOP"                       # stops it (and removes a throwaway dir)
#
#   scripts/redmine-rest.sh [DIR]              # start; DIR keeps the instance between runs
#   scripts/redmine-rest.sh stop DIR           # stop the Redmine started in DIR
#
# Without DIR the instance lives in a fresh temp dir that `stop` removes. With DIR, a second
# start reuses its database and API key and only boots the server again; starting a DIR whose
# Redmine still answers just prints its values again.
#
# Installs (apt-get, with sudo when not root) only what is missing: redmine, redmine-sqlite
# and ruby-webrick, without recommends (no Passenger, no Apache). The package's own "default"
# instance is left unconfigured (dbconfig-install preseeded to false); nothing is started
# system-wide. Each instance is private to its dir: its config/database.yml (SQLite),
# secret_key.txt, log/, tmp/, files/ and its own Gemfile (Debian's, plus sqlite3 and webrick)
# with its own Gemfile.lock, so no file under /etc/redmine or /var/lib/redmine is touched.
# Debian's Redmine finds an instance at /usr/share/redmine/instances/$REDMINE_INSTANCE; the
# script points that at DIR with a relative path that climbs to / first.
#
# The admin user is Redmine's default one (login admin, password admin, id 1): loopback only,
# throwaway. REDMINE_PORT picks the port; REDMINE_START_TIMEOUT (seconds, default 300) bounds
# the wait for the first answer (a Rails boot takes a while on a busy machine). Measured on 2
# busy cores: ~95 s the first time (apt included), ~35-40 s for a fresh dir, ~9 s to restart
# an existing dir.
set -euo pipefail

redmine_root=/usr/share/redmine
self="$(cd "$(dirname "$0")" && pwd -P)/$(basename "$0")"

usage() {
    echo "usage: $self [DIR]        start Redmine (in DIR, or in a throwaway temp dir)" >&2
    echo "       $self stop DIR     stop the Redmine started in DIR" >&2
    exit 2
}

alive() { [ -f "$1/redmine.pid" ] && kill -0 "$(cat "$1/redmine.pid")" 2>/dev/null; }

stop() {
    local dir="$1"
    [ -d "$dir" ] || { echo "no such dir: $dir" >&2; exit 1; }
    if alive "$dir"; then
        local pid
        pid="$(cat "$dir/redmine.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/redmine.pid"
    if [ -f "$dir/.throwaway" ]; then rm -rf "$dir"; fi
}

case "${1:-}" in
    stop) [ $# -eq 2 ] || usage; stop "$2"; exit 0 ;;
    -h | --help) usage ;;
esac
[ $# -le 1 ] || usage

# --- install what is missing ---------------------------------------------------------------
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
missing=()
for p in redmine redmine-sqlite ruby-webrick sqlite3 curl; do
    installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} (Debian packages; once)" >&2
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    # The package's "default" instance would get its own SQLite database and a migration at
    # install time; this script never uses it, so dbconfig-common is told not to set it up.
    echo "redmine redmine/instances/default/dbconfig-install boolean false" | $sudo debconf-set-selections
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- the instance dir ----------------------------------------------------------------------
if [ $# -eq 1 ]; then
    mkdir -p "$1"
    dir="$(cd "$1" && pwd -P)"
else
    dir="$(mktemp -d "${TMPDIR:-/tmp}/scim-sidecar-redmine.XXXXXX")"
    dir="$(cd "$dir" && pwd -P)"
    touch "$dir/.throwaway"
fi

# Debian's Redmine keeps an instance in /usr/share/redmine/instances/$REDMINE_INSTANCE (a
# symlink to /var/lib/redmine): climbing to / first puts it in $dir, lexically and physically.
export REDMINE_INSTANCE="../../../../../../../../../../../..$dir"
export RAILS_ENV=production
export BUNDLE_GEMFILE="$dir/Gemfile"
export BUNDLE_APP_CONFIG="$dir/.bundle"
unset BUNDLE_PATH BUNDLE_WITHOUT 2>/dev/null || true

print_values() {
    local stop_cmd
    stop_cmd="'$self' stop '$dir'"
    cat <<EOF
export REST_BASE_URL='http://127.0.0.1:$(cat "$dir/port")'
export REST_API_KEY='$(cat "$dir/api_key")'
export REDMINE_DIR='$dir'
export REDMINE_PID='$(cat "$dir/redmine.pid")'
export REDMINE_STOP="$stop_cmd"
# stop it with: eval "\$REDMINE_STOP"   (or: kill \$(cat '$dir/redmine.pid'))
EOF
}

answers() {
    curl -fsS -o /dev/null --max-time 10 -H "X-Redmine-API-Key: $(cat "$dir/api_key")" \
        "http://127.0.0.1:$(cat "$dir/port")/users/current.json" 2>/dev/null
}

if alive "$dir" && [ -f "$dir/port" ] && [ -f "$dir/api_key" ] && answers; then
    print_values
    exit 0
fi
rm -f "$dir/redmine.pid"

fail() {
    echo "$1" >&2
    shift
    for f in "$@"; do [ -f "$f" ] && tail -n 40 "$f" >&2; done
    if [ -f "$dir/.throwaway" ]; then rm -rf "$dir"; fi
    exit 1
}

mkdir -p "$dir/config" "$dir/log" "$dir/tmp/pids" "$dir/tmp/cache" "$dir/files" \
    "$dir/public/plugin_assets" "$dir/db"
if [ ! -f "$dir/config/database.yml" ]; then
    cat >"$dir/config/database.yml" <<EOF
production:
  adapter: sqlite3
  database: $dir/db/redmine.sqlite3
  timeout: 5000
  encoding: utf8
EOF
fi
if [ ! -s "$dir/config/secret_key.txt" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/config/secret_key.txt")
fi

# Debian's Gemfile picks database gems from the database.yml files it finds under
# /usr/share/redmine, which do not include this one; webrick is no default gem in Ruby 3.1.
# Both are Debian packages (ruby-sqlite3, ruby-webrick): the bundle resolves locally only.
cat >"$dir/Gemfile.new" <<'EOF'
eval_gemfile '/usr/share/redmine/Gemfile'
%w[sqlite3 webrick].each do |name|
  gem name unless dependencies.any? { |d| d.name == name }
end
EOF
if ! cmp -s "$dir/Gemfile.new" "$dir/Gemfile"; then
    mv "$dir/Gemfile.new" "$dir/Gemfile"
    rm -f "$dir/Gemfile.lock"
else
    rm -f "$dir/Gemfile.new"
fi
# Debian's postinst regenerates its own lock on every upgrade; so does this dir.
if [ ! -f "$dir/Gemfile.lock" ] || [ /var/lib/redmine/Gemfile.lock -nt "$dir/Gemfile.lock" ]; then
    rm -f "$dir/Gemfile.lock"
    (cd "$redmine_root" && bundle install --local --quiet) >"$dir/log/bundle.log" 2>&1 ||
        fail "bundle install --local failed:" "$dir/log/bundle.log"
fi

db="$dir/db/redmine.sqlite3"
if [ ! -f "$dir/api_key" ]; then
    echo "== creating the Redmine database in $dir (migrations and default data; once per dir)" >&2
    # Two processes, as Debian's postinst does: in the migrating one, the models' column
    # lists predate the migrations and the default data does not load.
    # SCHEMA: the schema dump after migrating goes to this dir, not to /usr/share/redmine/db.
    (cd "$redmine_root" && SCHEMA="$dir/db/schema.rb" bundle exec rake db:migrate) >"$dir/log/setup.log" 2>&1 ||
        fail "rake db:migrate failed:" "$dir/log/setup.log"
    (cd "$redmine_root" && REDMINE_LANG=en bundle exec rake redmine:load_default_data) \
        >>"$dir/log/setup.log" 2>&1 || fail "rake redmine:load_default_data failed:" "$dir/log/setup.log"
    # The task prints an error and still exits 0 when the data was not loaded.
    grep -q "Default configuration data loaded" "$dir/log/setup.log" ||
        fail "redmine:load_default_data did not load the default data:" "$dir/log/setup.log"
    # The REST API on, and an API key for the admin user: what Administration > Settings > API
    # and My account > API access key do, written straight into Redmine's tables (a Token row
    # with action 'api' is what User#api_key creates; the key is 40 hex digits like Redmine's).
    key="$(head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    sqlite3 "$db" <<EOF || fail "could not enable the REST API in $db"
DELETE FROM settings WHERE name = 'rest_api_enabled';
INSERT INTO settings (name, value, updated_on) VALUES ('rest_api_enabled', '1', datetime('now', 'localtime'));
DELETE FROM tokens WHERE action = 'api' AND user_id = (SELECT id FROM users WHERE login = 'admin');
INSERT INTO tokens (user_id, action, value, created_on, updated_on)
  SELECT id, 'api', '$key', datetime('now', 'localtime'), datetime('now', 'localtime') FROM users WHERE login = 'admin';
EOF
    echo "$key" >"$dir/api_key"
fi

# --- start ---------------------------------------------------------------------------------
port="${REDMINE_PORT:-}"
if [ -z "$port" ] && [ -f "$dir/port" ]; then
    p="$(cat "$dir/port")"
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; fi
fi
if [ -z "$port" ]; then
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
    done
fi
[ -n "$port" ] || fail "no free port found on 127.0.0.1"
echo "$port" >"$dir/port"

# rackup (ruby-rack) with WEBrick, as README.Debian's "Quick launch using WEBrick"; in its own
# session so it outlives this script and the shell that ran it.
cd "$redmine_root"
setsid rackup -E production -s webrick -o 127.0.0.1 -p "$port" config.ru \
    </dev/null >"$dir/log/server.log" 2>&1 &
echo $! >"$dir/redmine.pid"
cd - >/dev/null

timeout="${REDMINE_START_TIMEOUT:-300}"
deadline=$((SECONDS + timeout))
until answers; do
    alive "$dir" || fail "Redmine exited before answering:" "$dir/log/server.log" "$dir/log/production.log"
    if [ $SECONDS -ge $deadline ]; then
        kill "$(cat "$dir/redmine.pid")" 2>/dev/null || true
        fail "Redmine did not answer on 127.0.0.1:$port within ${timeout}s:" "$dir/log/server.log" "$dir/log/production.log"
    fi
    sleep 0.5
done
print_values
