#!/usr/bin/env bash
# Starts a throwaway Samba Active Directory domain controller for the Active Directory
# example, as the tests do (tests/support/samba.rs): the domain EXAMPLE.TEST
# (DC=example,DC=test) provisioned in a temp dir, LDAPS with a certificate signed by a CA of
# its own, listening on 127.0.0.1 only, with the OUs the example writes to
# (OU=SCIM,DC=example,DC=test holding OU=Users and OU=Groups). Prints the LDAP_* values
# examples/active-directory/scim-sidecar.toml reads and how to stop it:
#
#   eval "$(examples/active-directory/samba.sh)"     # exports LDAP_URL, LDAP_BIND_DN, ...
#   scim-sidecar migrate --config examples/active-directory/scim-sidecar.toml
#   scim-sidecar run --config examples/active-directory/scim-sidecar.toml
#   eval "$SAMBA_STOP"                                 # stops samba and removes its temp dir
#
# Needs samba and samba-tool (Debian: apt-get install samba samba-dsdb-modules
# samba-ad-provision; scripts/test.sh installs them) and openssl. Samba's ports are fixed
# (389, 636, 88, ...): nothing else may listen on them on 127.0.0.1, so one such DC runs at a
# time (the tests' own included). Nothing is started system-wide and nothing outside the temp
# dir is written. Provisioning takes several seconds.
set -euo pipefail

fail() {
    echo "samba.sh: $*" >&2
    exit 1
}

find_bin() {
    local d
    for d in /usr/sbin /usr/bin /usr/local/sbin /usr/local/bin; do
        if [ -x "$d/$1" ]; then
            echo "$d/$1"
            return 0
        fi
    done
    return 1
}
samba="$(find_bin samba)" && tool="$(find_bin samba-tool)" ||
    fail "Samba is not installed (no samba, samba-tool; Debian: apt-get install samba samba-dsdb-modules samba-ad-provision)"
command -v openssl >/dev/null || fail "openssl is not installed (it makes the DC's certificate)"

ip=127.0.0.1
for port in 389 636; do
    if (exec 3<>"/dev/tcp/$ip/$port") 2>/dev/null; then
        fail "$ip:$port is taken; a Samba DC needs its fixed ports (is another one running?)"
    fi
done

suffix="DC=example,DC=test"
admin="CN=Administrator,CN=Users,$suffix"
# A fresh random password per domain (the domain is throwaway, the password too), with the
# four character classes the domain's complexity policy asks three of.
password="Sc1m-$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 16)"

dir="$(mktemp -d "${TMPDIR:-/tmp}/scim-sidecar-samba.XXXXXX")"
started=0
cleanup_failed() {
    if [ "$started" -eq 0 ]; then
        local pid
        if pid="$(cat "$dir/run/samba.pid" 2>/dev/null)"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
        fi
        rm -rf "$dir"
    fi
}
trap cleanup_failed EXIT
mkdir -p "$dir/run"

# `-s /dev/null`: not seeded from the system's own smb.conf.
if ! "$tool" domain provision -s /dev/null --targetdir="$dir/dc" \
    --realm=EXAMPLE.TEST --domain=EXAMPLE --server-role=dc --host-name=dc1 \
    --dns-backend=NONE --use-rfc2307 --adminpass="$password" \
    --option="interfaces=$ip" --option="bind interfaces only=yes" \
    --option="pid directory=$dir/run" --option="ncalrpc dir=$dir/run/ncalrpc" \
    --option="winbindd socket directory=$dir/run/winbindd" \
    --option="ntp signd socket directory=$dir/run/ntp_signd" \
    --option="usershare path=$dir/run/usershares" \
    --option="log file=$dir/samba.log" >"$dir/provision.log" 2>&1; then
    echo "samba.sh: samba-tool domain provision failed:" >&2
    tail -n 20 "$dir/provision.log" >&2
    exit 1
fi

# A CA and the DC's certificate signed by it, for dc1.example.test, localhost and 127.0.0.1
# (Samba's own has no subjectAltName, which rustls refuses). Samba refuses a key others can
# read.
(
    umask 077
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 30 \
        -subj "/CN=scim-sidecar example CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -keyout key.pem -out cert.csr \
        -subj "/CN=dc1.example.test" >/dev/null 2>&1
    printf '%s\n' "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" \
        "subjectAltName=DNS:dc1.example.test,DNS:localhost,IP:$ip" >cert.ext
    openssl x509 -req -in cert.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
        -out cert.pem -days 30 -extfile cert.ext >/dev/null 2>&1
) || fail "openssl could not make the DC's certificate"

# Only the services LDAP needs, and TLS with that certificate.
conf="$dir/dc/etc/smb.conf"
awk -v d="$dir" '
    /^[ \t]*server services/ {
        print "\tserver services = ldap, cldap, kdc"
        print "\ttls enabled = yes"
        print "\ttls keyfile = " d "/key.pem"
        print "\ttls certfile = " d "/cert.pem"
        print "\ttls cafile = " d "/ca.pem"
        print "\tload printers = no"
        next
    }
    { print }
' "$conf" >"$conf.new" && mv "$conf.new" "$conf"

# The OUs the example writes to, added to the database before the DC starts.
for ou in "OU=SCIM,$suffix" "OU=Users,OU=SCIM,$suffix" "OU=Groups,OU=SCIM,$suffix"; do
    "$tool" ou create "$ou" -s "$conf" -H "$dir/dc/private/sam.ldb" >>"$dir/ou.log" 2>&1 || {
        echo "samba.sh: creating $ou failed:" >&2
        cat "$dir/ou.log" >&2
        exit 1
    }
done

# Without --foreground samba goes to the background once started; its pid is in
# run/samba.pid, and SIGTERM stops it and its workers.
"$samba" -s "$conf" >"$dir/samba.out" 2>&1 || {
    echo "samba.sh: samba did not start:" >&2
    tail -n 20 "$dir/samba.out" "$dir/samba.log" >&2 2>/dev/null
    exit 1
}

# Ready when an authenticated LDAPS search answers (its databases load after the ports
# open): polled for up to 60 s.
answers() {
    if command -v ldapsearch >/dev/null; then
        # A simple bind over LDAPS, trusting only the new CA: what the sidecar does.
        LDAPTLS_CACERT="$dir/ca.pem" ldapsearch -x -H "ldaps://$ip:636" -D "$admin" \
            -w "$password" -b "$suffix" -s base 1.1
    else
        "$tool" ou list -s "$conf" -H "ldap://$ip" -U "Administrator%$password"
    fi
}
deadline=$((SECONDS + 60))
until answers >"$dir/ready.log" 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "samba.sh: the DC did not answer LDAPS within 60 s:" >&2
        tail -n 5 "$dir/ready.log" "$dir/samba.out" >&2
        exit 1
    fi
    sleep 0.2
done
started=1

# SIGTERM, then up to 10 s for samba to exit (its ports free again), then the temp dir goes.
stop="pid=\$(cat \"$dir/run/samba.pid\" 2>/dev/null) && kill \$pid 2>/dev/null; \
for _ in \$(seq 1 100); do kill -0 \$pid 2>/dev/null || break; sleep 0.1; done; \
rm -rf \"$dir\""
cat <<EOF
export LDAP_URL='ldaps://$ip:636'
export LDAP_BIND_DN='$admin'
export LDAP_BIND_PASSWORD='$password'
export LDAP_BASE_DN='OU=SCIM,$suffix'
export LDAP_CA_FILE='$dir/ca.pem'
export SAMBA_DIR='$dir'
export SAMBA_STOP='$stop'
# stop it with: eval "\$SAMBA_STOP"   (or: $stop)
EOF
