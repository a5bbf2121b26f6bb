#!/usr/bin/env bash
# Starts a throwaway OpenLDAP slapd for the LDAP example: a temp dir holding its config and
# database, the suffix dc=example,dc=test loaded with base.ldif (ou=people, ou=groups), on a
# free port of 127.0.0.1 only. Prints the LDAP_* values examples/ldap/scim-sidecar.toml reads
# and how to stop it:
#
#   eval "$(examples/ldap/slapd.sh)"          # exports LDAP_URL, LDAP_BIND_DN, ...
#   scim-sidecar run --config examples/ldap/scim-sidecar.toml
#   eval "$SLAPD_STOP"                          # kills slapd and removes its temp dir
#
# Needs slapd and slapadd (Debian: apt-get install slapd ldap-utils). Nothing is started
# system-wide and nothing outside the temp dir is written. SLAPD_PORT picks the port.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
slapd=""
for c in /usr/sbin/slapd /usr/local/libexec/slapd "$(command -v slapd 2>/dev/null || true)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then slapd="$c"; break; fi
done
if [ -z "$slapd" ]; then
    echo "slapd is not installed (Debian: apt-get install slapd ldap-utils)" >&2
    exit 1
fi
slapadd="$(dirname "$slapd")/slapadd"
[ -x "$slapadd" ] || slapadd="$(command -v slapadd)"
schema=/etc/ldap/schema
[ -f "$schema/core.schema" ] || schema=/usr/local/etc/openldap/schema

suffix="dc=example,dc=test"
admin="cn=admin,$suffix"
# A fresh random password per directory: the directory is throwaway, the password too.
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)"

# A free port on 127.0.0.1: one nothing answers on, below Linux's ephemeral range (32768 and
# up), so an outgoing connection of another program cannot hold it; slapd is started again on
# another one should it still be taken (below).
free_port() {
    local p
    for _ in $(seq 1 50); do
        p=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
}
port="${SLAPD_PORT:-$(free_port)}"
[ -n "$port" ] || { echo "no free port found on 127.0.0.1" >&2; exit 1; }

dir="$(mktemp -d "${TMPDIR:-/tmp}/scim-sidecar-slapd.XXXXXX")"
mkdir -p "$dir/db"
cat >"$dir/slapd.conf" <<EOF
include         $schema/core.schema
include         $schema/cosine.schema
include         $schema/inetorgperson.schema
include         $schema/nis.schema
pidfile         $dir/slapd.pid
argsfile        $dir/slapd.args
modulepath      /usr/lib/ldap
moduleload      back_mdb
sizelimit       unlimited
database        mdb
maxsize         104857600
suffix          "$suffix"
rootdn          "$admin"
rootpw          $password
directory       $dir/db
index           objectClass eq
index           entryUUID eq
index           uid,cn,mail,displayName eq,sub
EOF
chmod 600 "$dir/slapd.conf"
{
    printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n' "$suffix"
    cat "$here/base.ldif"
} >"$dir/data.ldif"
if ! "$slapadd" -q -f "$dir/slapd.conf" -l "$dir/data.ldif" >"$dir/slapadd.log" 2>&1; then
    echo "slapadd failed:" >&2
    cat "$dir/slapadd.log" >&2
    rm -rf "$dir"
    exit 1
fi

# Without -d slapd forks into the background once it listens; its pid is in slapd.pid. It
# exits non-zero when it cannot listen (the port taken meanwhile): then another port, unless
# SLAPD_PORT chose this one.
started=""
for _ in 1 2 3 4 5; do
    if "$slapd" -f "$dir/slapd.conf" -h "ldap://127.0.0.1:$port/" >"$dir/slapd.log" 2>&1; then
        started=1
        break
    fi
    [ -z "${SLAPD_PORT:-}" ] || break
    port="$(free_port)"
    [ -n "$port" ] || break
done
if [ -z "$started" ]; then
    echo "slapd did not start (on 127.0.0.1:$port):" >&2
    cat "$dir/slapd.log" >&2
    rm -rf "$dir"
    exit 1
fi
# Ready when it accepts connections: every 50 ms for up to 10 s.
for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.05
done

stop="kill \$(cat '$dir/slapd.pid') 2>/dev/null; rm -rf '$dir'"
cat <<EOF
export LDAP_URL='ldap://127.0.0.1:$port'
export LDAP_BIND_DN='$admin'
export LDAP_BIND_PASSWORD='$password'
export LDAP_BASE_DN='$suffix'
export SLAPD_DIR='$dir'
export SLAPD_STOP="$stop"
# stop it with: eval "\$SLAPD_STOP"   (or: $stop)
EOF
