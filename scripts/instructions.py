"""Instructions per SCIM request, counted by callgrind: the driver of scripts/instructions.sh.

Usage: instructions.py drive <port> <token> <phase> <n> <tag>
       instructions.py report <callgrind-file> <n> <top>
       instructions.py app <port-file>

`drive` sends `n` requests of one phase over one keep-alive connection, one at a time, and
exits non-zero on the first answer that is not a success. The phases are the bench's:
`create` (an Entra-shaped user), `filter` (userName eq), `get` (a user by id, of those listed
by `ids`), `patch` (Entra's Replace of title and active on users listed by `ids`), `ids`
(writes the first 100 user ids for `get` and `patch`),
`groups` (creates the empty groups that `n` member adds need, their ids written beside
`ids`), `member` (Entra's PATCH adding one member: request i adds user i mod u to group
i div u, u being the users in `ids`, so each pair once) and `pass` (a GET of the app's own,
passed through; no SCIM credential).

`app` serves as the upstream app on a free loopback port (written to `port-file`): every
GET answered with the load bench's fixed 27-byte JSON, over HTTP/1.1 keep-alive.

`report` prints the instructions of a callgrind dump per request and the functions that
spend most of them by themselves (exclusive cost).
"""

import collections
import http.client
import json
import re
import sys

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def drive(port, token, phase, n, tag, ids_file):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}

    def send(method, path, body=None):
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = conn.getresponse()
        data = r.read()
        if r.status >= 300:
            sys.exit(f"{method} {path}: {r.status} {data[:300]!r}")
        return data

    if phase == "pass":
        for i in range(n):
            conn.request("GET", f"/api/items/{i}?page=1", headers={"Accept": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                sys.exit(f"GET /api/items/{i}: {r.status} {data[:300]!r}")
        return
    ids = json.load(open(ids_file)) if phase in ("get", "patch", "member", "groups") else []
    groups_file = ids_file + ".groups"
    groups = json.load(open(groups_file)) if phase == "member" else []
    if phase == "member" and n > len(ids) * len(groups):
        sys.exit(f"member: {n} adds of {len(ids)} users need more than {len(groups)} groups")
    if phase == "groups":
        made = [json.loads(send("POST", "/scim/v2/Groups", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": f"{tag}-group-{i}",
        }))["id"] for i in range(-(-n // len(ids)))]
        json.dump(made, open(groups_file, "w"))
        return
    for i in range(n):
        name = f"{tag}-{i}@example.com"
        if phase == "create":
            send("POST", "/scim/v2/Users", {
                "schemas": [USER, ENTERPRISE],
                "userName": name,
                "externalId": f"ext-{tag}-{i}",
                "active": True,
                "displayName": "Ada Lovelace",
                "title": "Engineer",
                "name": {"givenName": "Ada", "familyName": "Lovelace"},
                "emails": [{"type": "work", "value": name, "primary": True}],
                "phoneNumbers": [{"type": "work", "value": "+1 555 0100"}],
                ENTERPRISE: {"department": "R&D", "employeeNumber": str(i)},
            })
        elif phase == "filter":
            send("GET", f"/scim/v2/Users?filter=userName%20eq%20%22{name}%22")
        elif phase == "get":
            send("GET", f"/scim/v2/Users/{ids[i % len(ids)]}")
        elif phase == "patch":
            send("PATCH", f"/scim/v2/Users/{ids[i % len(ids)]}", {
                "schemas": [PATCH],
                "Operations": [
                    {"op": "Replace", "path": "title", "value": f"T{i}"},
                    {"op": "Replace", "path": "active", "value": "False"},
                ],
            })
        elif phase == "member":
            send("PATCH", f"/scim/v2/Groups/{groups[i // len(ids)]}", {
                "schemas": [PATCH],
                "Operations": [
                    {"op": "add", "path": "members", "value": [{"value": ids[i % len(ids)]}]},
                ],
            })
        elif phase == "ids":
            page = json.loads(send("GET", "/scim/v2/Users?count=100&attributes=id"))
            json.dump([r["id"] for r in page["Resources"]], open(ids_file, "w"))
            return
        else:
            sys.exit(f"unknown phase {phase}")


def report(path, n, top):
    """Exclusive cost per function of one callgrind dump (names are compressed as `(id)`)."""
    names, cost = {}, collections.Counter()
    fn, after_calls = None, False
    named = re.compile(r"^(c?fn)=\((\d+)\)(?: (.*))?$")
    for line in open(path):
        m = named.match(line.rstrip("\n"))
        if m:
            kind, ident, name = m.groups()
            if name:
                names[ident] = name
            if kind == "fn":
                fn = names[ident]
            continue
        if line.startswith("calls="):
            after_calls = True  # the next cost line is the call's inclusive cost
            continue
        parts = line.split()
        if len(parts) >= 2 and (line[0].isdigit() or line[0] in "+-*"):
            if not after_calls:
                cost[fn] += int(parts[1])
            after_calls = False
    total = sum(cost.values())
    print(f"  {total / n:,.0f} instructions per request")
    for f, c in cost.most_common(top):
        print(f"    {100 * c / total:5.1f} %  {f[:110]}")


def app(port_file):
    """The upstream app for the `pass` phase (see the module doc)."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = b'{"ok":true,"service":"app"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os

    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) >= 7 and sys.argv[1] == "drive":
        port, token, phase, n, tag = sys.argv[2:7]
        ids_file = sys.argv[7] if len(sys.argv) > 7 else "ids.json"
        drive(int(port), token, phase, int(n), tag, ids_file)
    elif len(sys.argv) == 3 and sys.argv[1] == "app":
        app(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "report":
        report(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
