#!/usr/bin/env python3
"""Run the public SCIM conformance suite (scim2-tester) against a running scim-sidecar.

    conformance.py BASE_URL TOKEN [--label NAME]

BASE_URL is the SCIM root (http://127.0.0.1:8080/scim/v2), TOKEN one of the sidecar's bearer
tokens. Prints one line per check (status, resource type, title, reason), then the count per
status, and exits 1 when any check failed. scripts/conformance.sh installs the pinned
scim2-tester in a virtualenv and calls this script for each example configuration.

How each scim2_tester.Status is treated:

- SUCCESS (a MUST holds), COMPLIANT (a SHOULD holds), ACCEPTABLE (an allowed MAY or
  robustness choice): pass.
- DEVIATION (a SHOULD is not followed): failure. The sidecar aims at what identity providers
  expect, and they rely on the SHOULDs too; a deviation we accept must be listed in EXCLUDED.
- ERROR (a MUST is violated) and CRITICAL (a security or protocol violation): failure.
- SKIPPED: pass when the reason says the server does not offer the feature (PATCH or
  multi-type search not advertised/supported) or the schema has no attribute of the kind the
  check needs; any other skip (tag filtering, a missing prerequisite) is a failure, so a
  check cannot silently stop running.

The client is not given a description of the server: check_server queries
/ServiceProviderConfig, /ResourceTypes and /Schemas itself, reports each of them as a check,
and builds the client's description from what they publish (scim2-tester 0.5 replaces the
separate `client.discover()` call). If no resource type could be described, no CRUD check
runs; that is reported as a failure too.

Test data. scim2-tester fills every attribute with a random UUID string (36 characters). Five
adaptations make that data fit what the examples' stores can hold, without skipping or
filtering any check (see adapt_test_data):

- Strings are 30 hexadecimal digits (the first 30 of uuid4().hex, 120 random bits) instead of
  the dashed 36-character form: the examples store employeeNumber in a varchar(32) column
  and Redmine its users' first names in a varchar(30) one (its own limit, 001_setup.rb), and
  the sidecar rightly answers 400 invalidValue to a value that does not fit its column
  rather than truncating it (tests/it/patch.rs all_or_nothing covers that).
- enterprise manager.value is the id of a User the checker creates first, as RFC 7643 §4.3
  defines it ("the id of the SCIM resource representing the User's manager"). scim2-tester
  does this itself only when the schema publishes manager.$ref, which the sidecar does not
  serve; a random UUID is no User's id, and the examples store the manager as an integer
  foreign key, so it is rightly refused with 400 invalidValue (all_or_nothing again).
- `primary` of a multi-valued attribute is true. The examples keep one e-mail (a column, or
  one child row): it is the primary one, published as such and read back `primary: true`
  (RFC 7643 §2.4), as Entra ID and Okta send it. A random `false` cannot be kept by a table
  that holds one address, and reads back true.
- `type` of a multi-valued attribute (emails, phoneNumbers, addresses, …) is one of the
  canonicalValues the server publishes for it in /Schemas, when it publishes any. Entra ID
  and Okta send `work`; a random string is a type no identity provider sends, and a mapping
  keeps only the types it has a column for (`emails[type eq "work"].value`): a value of
  another type is not stored there. examples/redmine-rest requires the e-mail (Redmine
  does), so a random type made a create with every attribute filled a 400 naming
  `emails[type eq "work"].value`.
- `password` gets an upper-case letter and a punctuation mark appended. examples/active-directory
  writes it to unicodePwd, and an Active Directory domain's default password policy wants
  three of four character classes; 30 hexadecimal digits have two, so the domain rightly
  refuses them (400 invalidValue naming password, tests/it/ldap_ad.rs created_with_a_password)
  as it would refuse such a password from any identity provider. examples/ldap's
  userPassword takes any string, so the suffix changes nothing there; the SQL examples do not
  map password.

A check we deliberately do not hold against the sidecar goes in EXCLUDED, keyed by
(example label, resource type, check title, attribute path or None for every result of the
check), with the reason in a comment. Its result is still printed, as EXCLUDED, and does not
fail the run.
"""

import argparse
import collections
import sys
import types
import uuid

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server
from scim2_tester import filling
from scim2_tester.checkers import patch_add, patch_replace

PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}
FAILING = {Status.DEVIATION, Status.ERROR, Status.CRITICAL}

# Reasons scim2-tester 0.5.2 gives when a check does not apply to what the server offers.
NOT_OFFERED = (
    "not supported",  # "PATCH operations not supported by server", "POST /.search: ..."
    "No addable attributes",
    "No removable attributes",
    "No replaceable attributes",
    "No suitable attributes",
)

# (example label, resource type, check title, attribute path or None) -> why it does not apply.
EXCLUDED: dict[tuple[str, str | None, str, str | None], str] = {
    # `remove active` asks for active to become unassigned (RFC 7644 §3.5.2.2). Both legacy
    # tables store it in a NOT NULL column with two values (quickstart: status CHAR(1) NOT
    # NULL CHECK (status IN ('A', 'D')); postgres: state account_state NOT NULL), so "neither
    # true nor false" cannot be stored. The sidecar answers 400 invalidValue and writes
    # nothing, which is what a store that cannot hold the value should do; every other
    # attribute's removal is still checked.
    ("quickstart", "User", "check_remove_attribute", "active"): "status is NOT NULL",
    ("postgres", "User", "check_remove_attribute", "active"): "state is NOT NULL",
    # Redmine's users.status and phpBB's phpbb_users.user_type are NOT NULL integers.
    ("redmine", "User", "check_remove_attribute", "active"): "status is NOT NULL",
    ("phpbb", "User", "check_remove_attribute", "active"): "user_type is NOT NULL",
    # WordPress's wp_users.user_status is a NOT NULL integer (on MariaDB, its own DDL).
    ("wordpress-mysql", "User", "check_remove_attribute", "active"): "user_status is NOT NULL",
    # inetOrgPerson requires sn (a MUST of the object class): an entry cannot exist without a
    # family name, so examples/ldap writes the userName there when none is given (the map
    # entry's default). Removing `name` therefore leaves name.familyName = userName.
    ("ldap", "User", "check_remove_attribute", "name"): "sn is a MUST attribute",
    # The legacy admin API (examples/legacy-admin-api) keeps a user's status as 1 (active) or
    # 3 (locked) and answers 422 "Status is not included in the list" to anything else, so
    # "neither" cannot be stored; the sidecar answers 400 invalidValue with the app's message.
    ("rest", "User", "check_remove_attribute", "active"): "the app's status is 1 or 3",
    # Redmine's users.status is 1 (active), 2 (registered) or 3 (locked): "Status is invalid"
    # for anything else.
    ("redmine-rest", "User", "check_remove_attribute", "active"): "Redmine's status is NOT NULL",
    # Active Directory does not let an account be without a sAMAccountName (externalId) or a
    # userAccountControl (active): Samba answers unwillingToPerform "'samAccountName' can't be
    # deleted/empty!" (and the same of userAccountControl), and the sidecar answers 400
    # invalidValue naming the attribute, writing nothing (tests/it/ldap_ad.rs
    # r10_removing_what_ad_keeps_is_refused_on_its_attribute).
    ("active-directory", "User", "check_remove_attribute", "externalId"): "sAMAccountName is kept by AD",
    ("active-directory", "User", "check_remove_attribute", "active"): "userAccountControl is kept by AD",
}


class _ShortUuid:
    """uuid.uuid4() as scim2_tester.filling uses it, printing as 30 hex digits (no dashes)."""

    def __init__(self) -> None:
        self._uuid = uuid.uuid4()
        self.bytes = self._uuid.bytes

    def __str__(self) -> str:
        return self._uuid.hex[:30]


def canonical_types(http: httpx2.Client) -> dict[str, list[str]]:
    """`attribute.type` -> the canonicalValues /Schemas publishes for that sub-attribute."""
    found: dict[str, list[str]] = {}
    schemas = http.get("/Schemas").json().get("Resources", [])
    for schema in schemas:
        for attr in schema.get("attributes", []):
            for sub in attr.get("subAttributes") or []:
                if sub.get("name") == "type" and sub.get("canonicalValues"):
                    found[f"{attr['name']}.type".lower()] = list(sub["canonicalValues"])
    return found


def adapt_test_data(canonical: dict[str, list[str]]) -> None:
    """Make scim2-tester's random values fit the examples' tables (see the module doc)."""
    filling.uuid = types.SimpleNamespace(uuid4=_ShortUuid)

    original = filling.generate_random_value

    def generate_random_value(context, path, mutability=None, required=None):
        value = original(context, path, mutability=mutability, required=required)
        binding = path.resolve()
        # Discovery builds its own Manager class from /Schemas, so match it by name.
        is_manager_id = (
            binding is not None
            and getattr(binding.target_model, "__name__", "") == "Manager"
            and binding.target_field_name == "value"
        )
        if is_manager_id and isinstance(value, str):
            user = context.client.get_resource_model("User")
            value = context.resource_manager.create_and_register(user).id
        # The examples keep one e-mail (one column or one child row): it is the primary one,
        # and the sidecar reads it back as `primary: true` (RFC 7643 §2.4), which is also what
        # Entra ID and Okta send. A random `false` would come back `true`.
        if binding is not None and binding.target_field_name == "primary":
            value = True
        # A type the server publishes for the attribute (see the module doc).
        if binding is not None and binding.target_field_name == "type" and isinstance(value, str):
            key = ".".join(str(path).split(":")[-1].split(".")[-2:]).lower()
            if key in canonical:
                value = canonical[key][0]
        # A password an AD domain's complexity policy accepts (see the module doc).
        if binding is not None and binding.target_field_name == "password" and isinstance(value, str):
            value = f"{value}A!"
        return value

    # The checkers import the function by name; fill_with_random_values looks it up in filling.
    for module in (filling, patch_add, patch_replace):
        module.generate_random_value = generate_random_value


def verdict(result, label: str) -> str:
    """Classify one CheckResult as "pass", "fail" or "excluded"."""
    urn = result.data.get("urn") if isinstance(result.data, dict) else None
    for path in (None, urn):
        if (label, result.resource_type, result.title, path) in EXCLUDED:
            return "excluded"
    if result.status in PASSING:
        return "pass"
    if result.status == Status.SKIPPED:
        reason = result.reason or ""
        return "pass" if any(marker in reason for marker in NOT_OFFERED) else "fail"
    return "fail"


def one_line(text) -> str:
    """Squeeze a reason (which may hold a multi-line pydantic error) onto one line."""
    return " ".join(str(text or "").split())[:400]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base_url", help="SCIM root, e.g. http://127.0.0.1:8080/scim/v2")
    parser.add_argument("token", help="bearer token")
    parser.add_argument(
        "--label", default="", help="the example's name, for EXCLUDED and the counts"
    )
    args = parser.parse_args()

    http = httpx2.Client(
        base_url=args.base_url,
        headers={"Authorization": f"Bearer {args.token}"},
        timeout=30,
    )
    with http:
        adapt_test_data(canonical_types(http))
        results = check_server(SyncSCIMClient(http))

    counts: collections.Counter[str] = collections.Counter()
    failed = 0
    for result in results:
        kind = verdict(result, args.label)
        status = "EXCLUDED" if kind == "excluded" else result.status.name
        counts[status] += 1
        failed += kind == "fail"
        marker = "FAIL " if kind == "fail" else ""
        print(
            f"{marker}{status:<10} {result.resource_type or '-':<6} {result.title}: "
            f"{one_line(result.reason)}"
        )

    if not any(result.resource_type for result in results):
        print("FAIL no resource type was checked: discovery did not describe the server")
        failed += 1

    summary = ", ".join(f"{name}={n}" for name, n in sorted(counts.items()))
    label = f"{args.label}: " if args.label else ""
    print(f"== conformance {label}{len(results)} checks: {summary}; {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
