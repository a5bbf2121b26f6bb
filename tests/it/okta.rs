//! Okta, replayed: every request `shared/reference/idp-behaviour.md` section 2 documents, in
//! the order and JSON shape Okta sends it (with the headers of §2.1), with the answers Okta
//! expects, for both client flavours: OIN integrations (PUT for profiles, PATCH to
//! (de)activate and for groups) and AIW integrations (PUT for everything). Each test runs
//! against the quickstart (SQLite), the PostgreSQL helpdesk example, Redmine and phpBB (their
//! own schemas), the LDAP example on slapd, the REST example and the Active Directory example
//! on a Samba DC, and checks the app's own rows as well as the SCIM answer; what an app has no
//! place for (phpBB has no names) is checked to be ignored.

use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::support::Sidecar;
use crate::support::client::{Resp, patch_body};
use crate::support::idp::{Target, group_name, members};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

per_target!(
    test_credentials_probe,
    exists_then_create,
    user_name_lookup_ignores_case,
    get_by_id_and_missing,
    import_pages_are_stable,
    profile_update_by_put,
    deactivate_by_patch,
    deactivate_by_put,
    group_push_with_patch,
    group_push_with_put,
);

/// Sends a request as Okta does, with its User-Agent and the Spec Test's headers (§2.1,
/// lines 303–305).
async fn okta(s: &Sidecar, method: Method, path: &str, body: Option<&Value>) -> Resp {
    let mut headers = vec![
        ("user-agent", "Okta SCIM Client 1.0.0"),
        ("accept", "application/scim+json"),
        ("accept-charset", "utf-8"),
    ];
    if body.is_some() {
        headers.push(("content-type", "application/scim+json; charset=utf-8"));
    }
    let body = body.map(|b| Bytes::from(b.to_string()));
    let r = s.client.send(method, path, &headers, body).await;
    // Okta accepts any JSON type (§2.1, line 309); the sidecar answers SCIM's own.
    if !r.body.is_empty() {
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/scim+json")),
            "{:?}",
            r.headers
        );
    }
    r
}

async fn get(s: &Sidecar, path: &str) -> Value {
    okta(s, Method::GET, path, None).await.expect(200).json()
}

/// The password of Okta's spec-test create (§2.3, line 333).
const SPEC_PASSWORD: &str = "1mz050nq";

/// The user Okta creates (§2.3 create, line 333). On Active Directory two values differ, for
/// what a domain requires of every account rather than for the sidecar: the password is one
/// the domain's default policy accepts (the spec test's has two of the four character
/// classes the policy wants three of, and is refused: [`exists_then_create`] shows it), and
/// `externalId`, which becomes the `sAMAccountName` AD keeps unique in the whole domain, is
/// each user's own, as Okta's user ids are (the spec test sends one id for every user).
fn okta_user(t: Target, user_name: &str, given: &str, family: &str) -> Value {
    let (external_id, password) = if t == Target::ActiveDirectory {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        (
            format!("00u{:017}", NEXT.fetch_add(1, Ordering::SeqCst)),
            "1mz050nQ-x",
        )
    } else {
        ("00ujl29u0le5T6Aj10h7".to_owned(), SPEC_PASSWORD)
    };
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": format!("{given} {family}"),
        "locale": "en-US",
        "externalId": external_id,
        "groups": [],
        "password": password,
        "active": true
    })
}

async fn create(s: &Sidecar, body: &Value) -> Value {
    okta(s, Method::POST, "/scim/v2/Users", Some(body))
        .await
        .expect(201)
        .json()
}

/// `GET …?filter=userName eq "…"&startIndex=1&count=100`, percent-encoded as Okta sends it
/// (§2.1, line 312; §2.3, line 332).
async fn find(s: &Sidecar, user_name: &str) -> Value {
    let enc: String = form_urlencoded::byte_serialize(user_name.as_bytes()).collect();
    let j = get(
        s,
        &format!("/scim/v2/Users?filter=userName%20eq%20%22{enc}%22&startIndex=1&count=100"),
    )
    .await;
    assert_eq!(j["schemas"], json!([LIST]), "{j}");
    j
}

/// The columns of [`user_row`], named as [`Target::stores`] names attributes.
const ROW: [&str; 8] = [
    "userName",
    "name.givenName",
    "name.familyName",
    "displayName",
    "emails.work",
    "phoneNumbers.work",
    "title",
    "active",
];

/// The app's own row for a user, the same columns on every app: login, first name, last
/// name, display name, work e-mail, work phone, job title, whether the account is active;
/// `NULL` where the app has no place for it ([`ROW`]).
async fn user_row(s: &Sidecar, t: Target, id: &str) -> Vec<String> {
    let q = match t {
        Target::Ldap => {
            return crate::support::ldap::row(
                id,
                &[
                    Some("uid"),
                    Some("givenName"),
                    Some("sn"),
                    Some("displayName"),
                    Some("mail"),
                    Some("telephoneNumber"),
                    Some("title"),
                    Some("active"),
                ],
            )
            .await;
        }
        Target::ActiveDirectory => {
            return crate::support::samba::row(
                id,
                &[
                    Some("userPrincipalName"),
                    Some("givenName"),
                    Some("sn"),
                    Some("displayName"),
                    Some("mail"),
                    Some("telephoneNumber"),
                    Some("title"),
                    Some("active"),
                ],
            )
            .await;
        }
        Target::Rest => format!(
            "SELECT login, firstname, lastname, NULL, mail, NULL, NULL, \
             CASE status WHEN 1 THEN 'true' ELSE 'false' END FROM users WHERE id = {id}"
        ),
        Target::Quickstart => format!(
            "SELECT login, first_name, last_name, display_name, email, phone, job_title, \
             CASE status WHEN 'A' THEN 'true' ELSE 'false' END FROM accounts WHERE id = {id}"
        ),
        Target::Helpdesk | Target::HelpdeskMariadb => format!(
            "SELECT login, first_name, last_name, display_name, \
             (SELECT address FROM user_emails e WHERE e.user_id = p.id AND e.is_primary), \
             phone, job_title, CASE state WHEN 'active' THEN 'true' ELSE 'false' END \
             FROM principals p WHERE id = {id} AND kind = 'U'"
        ),
        // Work phone and job title are user custom fields 2 and 1 (examples/redmine).
        Target::Redmine => format!(
            "SELECT login, firstname, lastname, NULL AS display_name, \
             (SELECT address FROM email_addresses e WHERE e.user_id = u.id AND e.is_default) AS email, \
             (SELECT value FROM custom_values c WHERE c.customized_type = 'Principal' \
              AND c.customized_id = u.id AND c.custom_field_id = 2) AS phone, \
             (SELECT value FROM custom_values c WHERE c.customized_type = 'Principal' \
              AND c.customized_id = u.id AND c.custom_field_id = 1) AS title, \
             CASE status WHEN 1 THEN 'true' ELSE 'false' END AS active \
             FROM users u WHERE id = {id} AND type = 'User'"
        ),
        Target::Phpbb => format!(
            "SELECT username::text AS login, NULL AS c1, NULL AS c2, NULL AS c3, \
             NULLIF(user_email, '') AS email, NULL AS c5, NULL AS c6, \
             CASE user_type WHEN 0 THEN 'true' ELSE 'false' END AS active \
             FROM phpbb_users WHERE user_id = {id} AND group_id = 2"
        ),
    };
    s.rows(&q).await.into_iter().next().unwrap_or_default()
}

/// The member ids a group resource lists, in id order.
fn listed(group: &Value) -> Vec<String> {
    let mut v: Vec<String> = group["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // Numeric ids in number order, others (entryUUIDs) as text.
    v.sort_by_key(|v| (v.parse::<u64>().unwrap_or(u64::MAX), v.clone()));
    v
}

/// `200` with the resource, or `204` (§2.3, lines 339 and 345–347). The body, if any.
fn ok(r: Resp) -> Option<Value> {
    assert!(
        matches!(r.status.as_u16(), 200 | 204),
        "answered {}: {}",
        r.status,
        r.text()
    );
    (r.status.as_u16() == 200).then(|| r.json())
}

/// Test credentials (idp-behaviour.md §2.3, line 331): `GET /Users?count=2&startIndex=1` and
/// the suite's `count=1&startIndex=1` are `200` ListResponses with integer `itemsPerPage`,
/// `startIndex` and `totalResults`, non-empty `Resources` no longer than `count`; a user Okta
/// created carries `id`, `name.familyName`, `name.givenName`, `userName`, `active` and
/// `emails[0].value`.
async fn test_credentials_probe(t: Target) {
    let s = start_target!(t);
    // A userName of its own: on Active Directory a UPN is unique in the whole domain, which
    // every test's OU shares, and exists_then_create creates Okta's test user.
    let created = create(&s, &okta_user(t, "probe.user@okta.local", "Test", "User")).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let total = 1 + t.own("Users");
    for count in [2, 1] {
        let j = get(&s, &format!("/scim/v2/Users?count={count}&startIndex=1")).await;
        assert_eq!(j["schemas"], json!([LIST]), "{j}");
        assert_eq!(
            j["totalResults"], total,
            "the app's own users and Okta's: {j}"
        );
        assert_eq!(j["startIndex"], 1, "{j}");
        assert_eq!(j["itemsPerPage"], count.min(total), "{j}");
        let res = j["Resources"].as_array().expect("Resources");
        assert_eq!(res.len(), count.min(total), "{j}");
        for u in res {
            assert!(u["id"].is_string() && u["userName"].is_string(), "{u}");
            assert!(u["active"].is_boolean(), "{u}");
        }
    }
    let j = get(&s, "/scim/v2/Users?count=2&startIndex=1").await;
    let u = j["Resources"]
        .as_array()
        .and_then(|a| a.iter().find(|u| u["id"] == id.as_str()))
        .expect("Okta's user on the first page");
    t.expect(u, "name.familyName", "User");
    t.expect(u, "name.givenName", "Test");
    assert_eq!(u["userName"], "probe.user@okta.local");
    assert_eq!(u["active"], true);
    assert_eq!(u["emails"][0]["value"], "probe.user@okta.local");
}

/// Exists? then create (idp-behaviour.md §2.3, lines 332–334): the percent-encoded userName
/// query with `startIndex=1&count=100` is `200` with `totalResults` 0 (not 404); Okta's create
/// body — `locale`, `groups: []` and `password` included — is `201` with the full user
/// (`active` true, `id`, the name, the core schema, `userName`; never the password); the
/// query then finds it; the same POST again is `409` with an Error body.
async fn exists_then_create(t: Target) {
    let s = start_target!(t);
    let j = find(&s, "test.user@okta.local").await;
    assert_eq!(j["totalResults"], 0, "{j}");
    assert_eq!(j["Resources"], json!([]), "{j}");
    let body = okta_user(t, "test.user@okta.local", "Test", "User");
    if t == Target::ActiveDirectory {
        // The spec test's own password is refused by the domain's policy: 400 naming
        // `password`, and nothing is created.
        let mut spec = body.clone();
        spec["password"] = json!(SPEC_PASSWORD);
        let detail = okta(&s, Method::POST, "/scim/v2/Users", Some(&spec))
            .await
            .scim_error(400, Some("invalidValue"));
        assert!(detail.contains("password"), "{detail}");
        assert_eq!(find(&s, "test.user@okta.local").await["totalResults"], 0);
    }
    let u = create(&s, &body).await;
    let id = u["id"].as_str().expect("id").to_owned();
    assert!(!id.is_empty());
    assert_eq!(u["active"], true);
    assert_eq!(u["userName"], "test.user@okta.local");
    if t.stores("name.givenName") {
        assert_eq!(
            u["name"],
            json!({"givenName": "Test", "familyName": "User"})
        );
    } else {
        assert!(u.get("name").is_none(), "{u}");
    }
    t.expect(&u, "displayName", "Test User");
    assert_eq!(u["externalId"], body["externalId"]);
    assert_eq!(u["emails"][0]["value"], "test.user@okta.local");
    assert!(
        u["schemas"]
            .as_array()
            .expect("schemas")
            .contains(&json!(USER))
    );
    assert!(u.get("password").is_none(), "never returned: {u}");
    assert_eq!(
        user_row(&s, t, &id).await,
        t.row(
            &ROW,
            &[
                "test.user@okta.local",
                "Test",
                "User",
                "Test User",
                "test.user@okta.local",
                "NULL",
                "NULL",
                "true"
            ]
        )
    );
    let j = find(&s, "test.user@okta.local").await;
    assert_eq!(j["totalResults"], 1, "{j}");
    assert_eq!(j["Resources"][0]["id"], id.as_str(), "{j}");
    let r = okta(&s, Method::POST, "/scim/v2/Users", Some(&body)).await;
    assert_eq!(r.json()["schemas"], json!([ERROR]));
    r.scim_error(409, Some("uniqueness"));
}

/// Username case sensitivity check (idp-behaviour.md §2.3, line 335): `userName` is
/// `caseExact: false`, so the upper-cased name finds the user (`200`, `totalResults` 1).
async fn user_name_lookup_ignores_case(t: Target) {
    let s = start_target!(t);
    let u = create(&s, &okta_user(t, "Case.Check@okta.local", "Case", "Check")).await;
    for name in [
        "Case.Check@okta.local",
        "CASE.CHECK@OKTA.LOCAL",
        "case.check@okta.local",
    ] {
        let j = find(&s, name).await;
        assert_eq!(j["totalResults"], 1, "{name}: {j}");
        assert_eq!(j["Resources"][0]["id"], u["id"], "{name}: {j}");
        assert_eq!(
            j["Resources"][0]["userName"], "Case.Check@okta.local",
            "stored as sent"
        );
    }
}

/// Get by id (idp-behaviour.md §2.3, line 336): `200` with the user as created; an unknown
/// id is `404` with the Error schema and a non-empty `detail`.
async fn get_by_id_and_missing(t: Target) {
    let s = start_target!(t);
    let u = create(&s, &okta_user(t, "get@okta.local", "Get", "Me")).await;
    let id = u["id"].as_str().expect("id");
    assert_eq!(get(&s, &format!("/scim/v2/Users/{id}")).await, u);
    for missing in ["987654", "00ujl29u0le5T6Aj10h7"] {
        let r = okta(&s, Method::GET, &format!("/scim/v2/Users/{missing}"), None).await;
        assert_eq!(r.json()["schemas"], json!([ERROR]), "{missing}");
        let detail = r.scim_error(404, None);
        assert!(!detail.is_empty(), "{missing}: detail must not be empty");
    }
}

/// Import (idp-behaviour.md §2.3, line 337): `GET /Users?startIndex=1&count=…`, then
/// `startIndex+count`…, and the same for `/Groups`, page through every resource exactly once
/// with integer paging fields, in a stable order whatever the page size.
async fn import_pages_are_stable(t: Target) {
    let s = start_target!(t);
    for i in 0..5 {
        create(
            &s,
            &okta_user(
                t,
                &format!("import{i}@okta.local"),
                "Import",
                &format!("N{i}"),
            ),
        )
        .await;
        okta(
            &s,
            Method::POST,
            "/scim/v2/Groups",
            Some(&json!({"schemas": [GROUP], "displayName": format!("Import {i}"), "members": []})),
        )
        .await
        .expect(201);
    }
    for resource in ["Users", "Groups"] {
        let all = get(&s, &format!("/scim/v2/{resource}?startIndex=1&count=100")).await;
        let total = all["totalResults"].as_u64().expect("totalResults");
        let own = t.own(resource) as u64;
        assert_eq!(total, 5 + own, "{resource}: the app's own and five: {all}");
        let ids: Vec<Value> = all["Resources"]
            .as_array()
            .expect("Resources")
            .iter()
            .map(|r| r["id"].clone())
            .collect();
        assert_eq!(ids.len() as u64, total);
        for count in [1, 2, 4] {
            let mut paged = Vec::new();
            let mut start = 1;
            while start <= total {
                let j = get(
                    &s,
                    &format!("/scim/v2/{resource}?startIndex={start}&count={count}"),
                )
                .await;
                assert_eq!(j["totalResults"], total, "{j}");
                assert_eq!(j["startIndex"], start, "{j}");
                assert!(
                    j["itemsPerPage"].as_u64().is_some_and(|n| n <= count),
                    "{j}"
                );
                let page = j["Resources"].as_array().expect("Resources");
                assert!(!page.is_empty(), "{j}");
                paged.extend(page.iter().map(|r| r["id"].clone()));
                start += count;
            }
            assert_eq!(paged, ids, "{resource} in pages of {count}");
        }
    }
}

/// Profile update, OIN style (idp-behaviour.md §2.3, line 338): `GET /Users/{id}`, then
/// `PUT /Users/{id}` with the whole object as read — `id`, `meta` and `"groups": []` included
/// — with the changes; `200` with the updated user, which reads back and lands in the app's
/// row exactly as sent.
async fn profile_update_by_put(t: Target) {
    let s = start_target!(t);
    let u = create(&s, &okta_user(t, "put@okta.local", "Put", "Before")).await;
    let id = u["id"].as_str().expect("id").to_owned();
    let mut body = get(&s, &format!("/scim/v2/Users/{id}")).await;
    body["name"]["familyName"] = json!("After");
    body["displayName"] = json!("Put After");
    body["title"] = json!("Agent");
    body["emails"] = json!([{"primary": true, "value": "put.after@okta.local", "type": "work"}]);
    body["phoneNumbers"] = json!([{"value": "+1-555-0100", "type": "work"}]);
    body["groups"] = json!([]);
    body["locale"] = json!("en-US");
    let r = okta(
        &s,
        Method::PUT,
        &format!("/scim/v2/Users/{id}"),
        Some(&body),
    )
    .await
    .expect(200)
    .json();
    assert_eq!(r["id"], id.as_str());
    t.expect(&r, "name.familyName", "After");
    t.expect(&r, "displayName", "Put After");
    t.expect(&r, "title", "Agent");
    assert_eq!(r["emails"][0]["value"], "put.after@okta.local");
    if t.stores("phoneNumbers.work") && t.stores("phoneNumbers.mobile") {
        assert_eq!(
            r["phoneNumbers"],
            json!([{"type": "work", "value": "+1-555-0100"}])
        );
    } else if t.stores("phoneNumbers.work") {
        // The one phone number the app keeps is the primary one (RFC 7643 §2.4).
        assert_eq!(
            r["phoneNumbers"],
            json!([{"type": "work", "value": "+1-555-0100", "primary": true}])
        );
    } else {
        assert!(r.get("phoneNumbers").is_none(), "{r}");
    }
    assert_eq!(r["active"], true);
    assert_eq!(get(&s, &format!("/scim/v2/Users/{id}")).await, r);
    assert_eq!(
        user_row(&s, t, &id).await,
        t.row(
            &ROW,
            &[
                "put@okta.local",
                "Put",
                "After",
                "Put After",
                "put.after@okta.local",
                "+1-555-0100",
                "Agent",
                "true"
            ]
        )
    );
}

/// Deactivate and activate, OIN style (idp-behaviour.md §2.3, lines 339–340, and password
/// sync, line 342): a PATCH whose only op is a path-less `replace` with `{"active": false}`
/// answers `200` with the user (or `204`); the user is still found by GET and by the userName
/// query; `{"active": true}` reactivates; a path-less password replace is accepted.
async fn deactivate_by_patch(t: Target) {
    let s = start_target!(t);
    let u = create(&s, &okta_user(t, "oin@okta.local", "Oin", "User")).await;
    let id = u["id"].as_str().expect("id").to_owned();
    let path = format!("/scim/v2/Users/{id}");
    for active in [false, true, false] {
        let body = patch_body(json!([{"op": "replace", "value": {"active": active}}]));
        let r = ok(okta(&s, Method::PATCH, &path, Some(&body)).await);
        if let Some(r) = r {
            assert_eq!(r["active"], active, "{r}");
        }
        assert_eq!(get(&s, &path).await["active"], active);
        assert_eq!(user_row(&s, t, &id).await[7], active.to_string());
        let j = find(&s, "oin@okta.local").await;
        assert_eq!(j["totalResults"], 1, "{j}");
        assert_eq!(j["Resources"][0]["active"], active, "{j}");
    }
    let body = patch_body(json!([{"op": "replace", "value": {"password": "t1meMa$heen"}}]));
    let r = ok(okta(&s, Method::PATCH, &path, Some(&body)).await);
    assert!(r.is_none_or(|r| r.get("password").is_none()));
    assert_eq!(
        user_row(&s, t, &id).await,
        t.row(
            &ROW,
            &[
                "oin@okta.local",
                "Oin",
                "User",
                "Oin User",
                "oin@okta.local",
                "NULL",
                "NULL",
                "false"
            ]
        )
    );
}

/// Deactivate, AIW style (idp-behaviour.md §2.2, line 320; §2.3, line 341): `PUT /Users/{id}`
/// with the whole user and `"active": false` is `200`; everything else stays as it was; a PUT
/// with `"active": true` reactivates.
async fn deactivate_by_put(t: Target) {
    let s = start_target!(t);
    let u = create(&s, &okta_user(t, "aiw@okta.local", "Aiw", "User")).await;
    let id = u["id"].as_str().expect("id").to_owned();
    let path = format!("/scim/v2/Users/{id}");
    for active in [false, true] {
        let mut body = get(&s, &path).await;
        body["active"] = json!(active);
        body["groups"] = json!([]);
        let r = okta(&s, Method::PUT, &path, Some(&body))
            .await
            .expect(200)
            .json();
        assert_eq!(r["active"], active, "{r}");
        let mut expected = u.clone();
        expected["active"] = json!(active);
        expected["meta"] = r["meta"].clone();
        assert_eq!(r, expected, "only active changed");
        assert_eq!(
            user_row(&s, t, &id).await,
            t.row(
                &ROW,
                &[
                    "aiw@okta.local",
                    "Aiw",
                    "User",
                    "Aiw User",
                    "aiw@okta.local",
                    "NULL",
                    "NULL",
                    &active.to_string()
                ]
            )
        );
    }
}

/// Group push, OIN style (idp-behaviour.md §2.3, lines 343–347, 349–350): the existence
/// query finds nothing; `POST /Groups` with `"members": []` is `201`; GET lists `members`;
/// the rename PATCH with `id` inside a path-less value (line 345) — sent with every
/// membership update — comes with a member remove by filter and an add with `display`
/// (line 346); the full push replaces all members (line 347); each is `200` or `204` and the
/// join table follows; `DELETE /Groups/{id}` is `204`, then GET is `404`.
async fn group_push_with_patch(t: Target) {
    let s = start_target!(t);
    let mut uids = Vec::new();
    for i in 0..4 {
        let u = create(
            &s,
            &okta_user(t, &format!("g{i}@okta.local"), "G", &format!("N{i}")),
        )
        .await;
        uids.push(u["id"].as_str().expect("id").to_owned());
    }
    // In the order the group reads them back (ids that are GUIDs are random).
    uids.sort_by_key(|v| (v.parse::<u64>().unwrap_or(u64::MAX), v.clone()));
    let q = "/scim/v2/Groups?filter=displayName%20eq%20%22Okta%20Push%22";
    assert_eq!(get(&s, q).await["totalResults"], 0);
    let g = okta(
        &s,
        Method::POST,
        "/scim/v2/Groups",
        Some(&json!({"schemas": [GROUP], "displayName": "Okta Push", "members": []})),
    )
    .await
    .expect(201)
    .json();
    let gid = g["id"].as_str().expect("id").to_owned();
    assert_eq!(g["displayName"], "Okta Push");
    let path = format!("/scim/v2/Groups/{gid}");
    assert_eq!(
        get(&s, &path).await,
        g,
        "201 answers the group as GET returns it"
    );
    assert_eq!(get(&s, q).await["totalResults"], 1);
    // Members added, with the rename op Okta sends along.
    let body = patch_body(json!([
        {"op": "replace", "value": {"id": gid, "displayName": "Okta Push"}},
        {"op": "add", "path": "members", "value": [
            {"value": uids[0], "display": "g0@okta.local"},
            {"value": uids[1], "display": "g1@okta.local"}
        ]}
    ]));
    ok(okta(&s, Method::PATCH, &path, Some(&body)).await);
    assert_eq!(members(&s, t, &gid).await, uids[..2].to_vec());
    assert_eq!(listed(&get(&s, &path).await), uids[..2].to_vec());
    // Rename, one member out and one in, in one PATCH.
    let body = patch_body(json!([
        {"op": "replace", "value": {"id": gid, "displayName": "Okta Renamed"}},
        {"op": "remove", "path": format!("members[value eq \"{}\"]", uids[0])},
        {"op": "add", "path": "members", "value": [{"value": uids[2], "display": "g2@okta.local"}]}
    ]));
    if let Some(r) = ok(okta(&s, Method::PATCH, &path, Some(&body)).await) {
        assert_eq!(r["displayName"], "Okta Renamed", "{r}");
    }
    assert_eq!(
        group_name(&s, t, &gid).await.as_deref(),
        Some("Okta Renamed")
    );
    assert_eq!(
        members(&s, t, &gid).await,
        vec![uids[1].clone(), uids[2].clone()]
    );
    // Full push.
    let body = patch_body(json!([
        {"op": "replace", "value": {"id": gid, "displayName": "Okta Renamed"}},
        {"op": "replace", "path": "members", "value": [
            {"value": uids[0], "display": "g0@okta.local"},
            {"value": uids[3], "display": "g3@okta.local"}
        ]}
    ]));
    ok(okta(&s, Method::PATCH, &path, Some(&body)).await);
    assert_eq!(
        members(&s, t, &gid).await,
        vec![uids[0].clone(), uids[3].clone()]
    );
    let r = okta(&s, Method::DELETE, &path, None).await.expect(204);
    assert!(r.body.is_empty());
    okta(&s, Method::GET, &path, None)
        .await
        .scim_error(404, None);
    assert_eq!(group_name(&s, t, &gid).await, None);
    assert!(members(&s, t, &gid).await.is_empty());
    assert_eq!(get(&s, q).await["totalResults"], 0);
}

/// Group push, AIW style (idp-behaviour.md §2.2, line 321; §2.3, line 348): rename and
/// membership go through `PUT /Groups/{id}` with the whole group; each PUT is `200` with the
/// group, replaces the member list entirely, and the app's rows follow; DELETE is `204`
/// (line 349).
async fn group_push_with_put(t: Target) {
    let s = start_target!(t);
    let mut uids = Vec::new();
    for i in 0..3 {
        let u = create(
            &s,
            &okta_user(t, &format!("p{i}@okta.local"), "P", &format!("N{i}")),
        )
        .await;
        uids.push(u["id"].as_str().expect("id").to_owned());
    }
    // In the order `listed` reads them back.
    uids.sort_by_key(|v| (v.parse::<u64>().unwrap_or(u64::MAX), v.clone()));
    let g = okta(
        &s,
        Method::POST,
        "/scim/v2/Groups",
        Some(&json!({"schemas": [GROUP], "displayName": "AIW Group", "members": []})),
    )
    .await
    .expect(201)
    .json();
    let gid = g["id"].as_str().expect("id").to_owned();
    let path = format!("/scim/v2/Groups/{gid}");
    let steps: [(&str, Vec<String>); 3] = [
        ("AIW Group", vec![uids[0].clone(), uids[1].clone()]),
        ("AIW Renamed", vec![uids[1].clone(), uids[2].clone()]),
        ("AIW Renamed", vec![]),
    ];
    for (name, want) in steps {
        let body = json!({
            "schemas": [GROUP],
            "id": gid,
            "displayName": name,
            "members": want.iter().map(|m| json!({"value": m, "display": format!("user {m}")})).collect::<Vec<_>>()
        });
        let r = okta(&s, Method::PUT, &path, Some(&body))
            .await
            .expect(200)
            .json();
        assert_eq!(r["id"], gid.as_str(), "{r}");
        assert_eq!(r["displayName"], name, "{r}");
        assert_eq!(listed(&r), want, "{r}");
        assert_eq!(listed(&get(&s, &path).await), want);
        assert_eq!(group_name(&s, t, &gid).await.as_deref(), Some(name));
        assert_eq!(members(&s, t, &gid).await, want);
    }
    okta(&s, Method::DELETE, &path, None).await.expect(204);
    okta(&s, Method::GET, &path, None)
        .await
        .scim_error(404, None);
    assert_eq!(group_name(&s, t, &gid).await, None);
}
