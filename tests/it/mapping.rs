//! Real legacy schemas, on both stores: the `examples/postgres` helpdesk app's mapping, run
//! unchanged against PostgreSQL (its `schema.sql`) and SQLite (the same schema in
//! `tests/fixtures/postgres.sqlite.sql`). Users and groups share one `principals` table told
//! apart by `kind`; e-mails live in a child table; the state is an enum; a NOT NULL password
//! column gets a constant; externalId is kept by the sidecar; members are a join table.
//! Every test runs once per store and checks the app's own rows.

use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::{Sidecar, Store};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

both!(
    create_writes_the_apps_rows,
    discriminator_separates_users_and_groups,
    child_table_follows_patch_and_put,
    filters_reach_every_kind_of_column,
    kept_attribute_round_trips,
    members_are_checked_and_atomic,
    too_long_value_names_the_attribute,
    soft_delete_disables,
    a_patch_the_database_refuses_writes_nothing,
    injection_payloads_are_data,
    concurrent_creates_of_one_user_name,
);

fn barbara() -> Value {
    json!({
        "schemas": [USER, ENT],
        "userName": "BJensen@example.com",
        "externalId": "0b6f5c1e-entra-object-id",
        "displayName": "Barbara Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "title": "Tour Guide",
        "emails": [{"type": "work", "value": "bjensen@example.com", "primary": true}],
        "phoneNumbers": [{"type": "mobile", "value": "+1 555 555 8377"}],
        "active": true,
        ENT: {"department": "Tours", "employeeNumber": "701984"}
    })
}

fn named(user_name: &str) -> Value {
    json!({"schemas": [USER], "userName": user_name, "displayName": user_name})
}

async fn create(s: &Sidecar, body: &Value) -> String {
    let r = s.client.post("/scim/v2/Users", body).await.expect(201);
    r.json()["id"].as_str().expect("id").to_owned()
}

async fn create_group(s: &Sidecar, name: &str, members: &[&str]) -> String {
    let members: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    let body = json!({"schemas": [GROUP], "displayName": name, "members": members});
    let r = s.client.post("/scim/v2/Groups", &body).await.expect(201);
    r.json()["id"].as_str().expect("id").to_owned()
}

/// Every table of the app, to prove a refused request changed nothing.
async fn snapshot(s: &Sidecar) -> Vec<Vec<String>> {
    let mut all = s
        .rows("SELECT id, kind, login, display_name, first_name, last_name, job_title, state, password_hash, updated_at FROM principals ORDER BY id")
        .await;
    all.extend(
        s.rows("SELECT user_id, address, is_primary FROM user_emails ORDER BY user_id, address")
            .await,
    );
    all.extend(
        s.rows("SELECT group_id, member_id FROM group_members ORDER BY group_id, member_id")
            .await,
    );
    all
}

/// `true`/`false` as the store prints a boolean column.
fn truth(store: Store, b: bool) -> &'static str {
    match (store, b) {
        (Store::Postgres, true) => "true",
        (Store::Postgres, false) => "false",
        (Store::Sqlite | Store::Mariadb, true) => "1",
        (Store::Sqlite | Store::Mariadb, false) => "0",
    }
}

/// A create lands in the app's own rows: the discriminator written, the e-mail in the child
/// table as the primary address, the NOT NULL password column set to its constant, the enum
/// state from the value map, externalId in the sidecar's table; it reads back exactly as sent.
async fn create_writes_the_apps_rows(store: Store) {
    let s = example!("postgres", store);
    let r = s
        .client
        .post("/scim/v2/Users", &barbara())
        .await
        .expect(201);
    let body = r.json();
    let id = body["id"].as_str().expect("id").to_owned();
    for (k, v) in [
        ("userName", json!("BJensen@example.com")),
        ("externalId", json!("0b6f5c1e-entra-object-id")),
        ("displayName", json!("Barbara Jensen")),
        (
            "name",
            json!({"givenName": "Barbara", "familyName": "Jensen"}),
        ),
        ("title", json!("Tour Guide")),
        (
            "emails",
            json!([{"type": "work", "value": "bjensen@example.com", "primary": true}]),
        ),
        (
            "phoneNumbers",
            json!([{"type": "mobile", "value": "+1 555 555 8377"}]),
        ),
        ("active", json!(true)),
        (
            ENT,
            json!({"department": "Tours", "employeeNumber": "701984"}),
        ),
    ] {
        assert_eq!(body[k], v, "{k} in {body}");
    }
    let rows = s
        .rows(&format!(
            "SELECT kind, login, display_name, first_name, last_name, job_title, mobile, state, password_hash FROM principals WHERE id = {id}"
        ))
        .await;
    assert_eq!(
        rows,
        vec![vec![
            "U",
            "BJensen@example.com",
            "Barbara Jensen",
            "Barbara",
            "Jensen",
            "Tour Guide",
            "+1 555 555 8377",
            "active",
            "!"
        ]]
    );
    let emails = s
        .rows(&format!(
            "SELECT address, is_primary FROM user_emails WHERE user_id = {id}"
        ))
        .await;
    assert_eq!(
        emails,
        vec![vec!["bjensen@example.com", truth(store, true)]]
    );
    let got = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["externalId"], "0b6f5c1e-entra-object-id");
    assert_eq!(got["emails"], body["emails"]);
    assert_eq!(got["meta"]["version"], body["meta"]["version"]);
}

/// Users and groups share `principals`: each endpoint sees only its own kind, whether listing,
/// reading by id, filtering or deleting.
async fn discriminator_separates_users_and_groups(store: Store) {
    let s = example!("postgres", store);
    // The app's own rows: user 1 (helpdesk-admin) and group 2 (Agents).
    let users = s.client.get("/scim/v2/Users").await.expect(200).json();
    assert_eq!(users["totalResults"], 1, "{users}");
    assert_eq!(users["Resources"][0]["userName"], "helpdesk-admin");
    assert_eq!(
        users["Resources"][0]["emails"],
        json!([{"type": "work", "value": "admin@helpdesk.example", "primary": true}])
    );
    let groups = s.client.get("/scim/v2/Groups").await.expect(200).json();
    assert_eq!(groups["totalResults"], 1, "{groups}");
    assert_eq!(groups["Resources"][0]["displayName"], "Agents");
    assert_eq!(
        groups["Resources"][0]["members"],
        json!([{"value": "1", "$ref": format!("http://{}/scim/v2/Users/1", s.addr), "type": "User"}])
    );
    s.client.get("/scim/v2/Users/2").await.scim_error(404, None);
    s.client
        .get("/scim/v2/Groups/1")
        .await
        .scim_error(404, None);
    let f = s
        .client
        .get("/scim/v2/Users?filter=displayName%20eq%20%22Agents%22")
        .await
        .expect(200)
        .json();
    assert_eq!(f["totalResults"], 0);
    let before = snapshot(&s).await;
    s.client
        .delete("/scim/v2/Users/2")
        .await
        .scim_error(404, None);
    s.client
        .delete("/scim/v2/Groups/1")
        .await
        .scim_error(404, None);
    s.client
        .patch(
            "/scim/v2/Users/2",
            &patch_body(json!([{"op": "replace", "path": "displayName", "value": "x"}])),
        )
        .await
        .scim_error(404, None);
    assert_eq!(snapshot(&s).await, before);
    // A new group is written with its kind; a group name may repeat a user's display name.
    let g = create_group(&s, "Barbara Jensen", &[]).await;
    create(&s, &barbara()).await;
    assert_eq!(
        s.rows(&format!("SELECT kind FROM principals WHERE id = {g}"))
            .await,
        vec![vec!["G"]]
    );
    assert_eq!(
        s.client.get("/scim/v2/Users").await.expect(200).json()["totalResults"],
        2
    );
    assert_eq!(
        s.client.get("/scim/v2/Groups").await.expect(200).json()["totalResults"],
        2
    );
}

/// The work e-mail lives in `user_emails`: PATCH replace updates the row in place, remove
/// deletes it, add creates it again; PUT without e-mails removes it.
async fn child_table_follows_patch_and_put(store: Store) {
    let s = example!("postgres", store);
    let id = create(&s, &barbara()).await;
    let path = format!("/scim/v2/Users/{id}");
    let emails = format!("SELECT address, is_primary FROM user_emails WHERE user_id = {id}");
    // A PATCH of the row's own columns answers with the child rows and the kept externalId
    // as they stand (on PostgreSQL the update reads them back in the same statement).
    let r = s
        .client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "displayName", "value": "Babs"}])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(r["displayName"], "Babs");
    assert_eq!(
        r["emails"],
        json!([{"type": "work", "value": "bjensen@example.com", "primary": true}])
    );
    assert_eq!(r["externalId"], "0b6f5c1e-entra-object-id");
    assert_eq!(r, s.client.get(&path).await.expect(200).json());
    let r = s
        .client
        .patch(&path, &patch_body(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "barbara@example.org"}])))
        .await
        .expect(200)
        .json();
    assert_eq!(
        r["emails"],
        json!([{"type": "work", "value": "barbara@example.org", "primary": true}])
    );
    assert_eq!(
        s.rows(&emails).await,
        vec![vec!["barbara@example.org", truth(store, true)]]
    );
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])),
        )
        .await
        .expect(200);
    assert!(s.rows(&emails).await.is_empty());
    let r = s.client.get(&path).await.expect(200).json();
    assert!(r.get("emails").is_none(), "{r}");
    // Entra adds a value the user does not have yet with a filtered path (idp-behaviour §U4).
    s.client
        .patch(&path, &patch_body(json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "b@example.net"}])))
        .await
        .expect(200);
    assert_eq!(
        s.rows(&emails).await,
        vec![vec!["b@example.net", truth(store, true)]]
    );
    // The same change without a path: the value's key carries the filter (issue #9: it was
    // answered 200 and ignored).
    let r = s
        .client
        .patch(&path, &patch_body(json!([{"op": "replace", "value": {"emails[type eq \"work\"].value": "c@example.net", "title": "CTO"}}])))
        .await
        .expect(200)
        .json();
    assert_eq!(
        r["emails"],
        json!([{"type": "work", "value": "c@example.net", "primary": true}])
    );
    assert_eq!(
        s.rows(&emails).await,
        vec![vec!["c@example.net", truth(store, true)]]
    );
    let mut put = barbara();
    put.as_object_mut().expect("object").remove("emails");
    s.client.put(&path, &put).await.expect(200);
    assert!(s.rows(&emails).await.is_empty());
    // Updated by the sidecar on each write.
    let r = s.client.get(&path).await.expect(200).json();
    assert!(
        r["meta"]["lastModified"].as_str() >= r["meta"]["created"].as_str(),
        "{r}"
    );
}

/// Filters reach the row's columns, the child table, the enum through its value map and the
/// sidecar's own table; sorting and paging are pushed down.
async fn filters_reach_every_kind_of_column(store: Store) {
    let s = example!("postgres", store);
    let a = create(&s, &barbara()).await;
    let mut other = named("zed@example.com");
    other["emails"] = json!([{"type": "work", "value": "zed@corp.example"}]);
    other["externalId"] = json!("zed-ext");
    other["active"] = json!(false);
    let z = create(&s, &other).await;
    let q = |f: &str| {
        format!(
            "/scim/v2/Users?filter={}",
            f.replace(' ', "%20").replace('"', "%22")
        )
    };
    for (filter, want) in [
        (r#"userName eq "bjensen@EXAMPLE.com""#, vec![a.as_str()]),
        (r#"externalId eq "zed-ext""#, vec![z.as_str()]),
        (r#"emails.value co "corp""#, vec![z.as_str()]),
        (
            r#"emails[type eq "work" and value ew "@example.com"]"#,
            vec![a.as_str()],
        ),
        (r#"active eq false"#, vec![z.as_str()]),
        (r#"active eq true and emails pr"#, vec!["1", a.as_str()]),
        (r#"not (externalId pr)"#, vec!["1"]),
        (
            r#"title sw "tour" or externalId eq "zed-ext""#,
            vec![a.as_str(), z.as_str()],
        ),
    ] {
        let r = s.client.get(&q(filter)).await.expect(200).json();
        let mut got: Vec<&str> = r["Resources"]
            .as_array()
            .map(|v| v.iter().filter_map(|u| u["id"].as_str()).collect())
            .unwrap_or_default();
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "{filter}: {r}");
        assert_eq!(r["totalResults"], want.len(), "{filter}");
    }
    let page = s
        .client
        .get("/scim/v2/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=1")
        .await
        .expect(200)
        .json();
    assert_eq!(page["totalResults"], 3);
    assert_eq!(page["itemsPerPage"], 1);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["Resources"][0]["userName"], "helpdesk-admin");
    let count = s
        .client
        .get("/scim/v2/Users?count=0")
        .await
        .expect(200)
        .json();
    assert_eq!(count["totalResults"], 3);
    assert!(
        count.get("Resources").is_none_or(|r| r == &json!([])),
        "{count}"
    );
}

/// externalId has no column in the app: it is kept in the sidecar's own table, changes with
/// PATCH, is filterable, and goes when its resource is deleted.
async fn kept_attribute_round_trips(store: Store) {
    let s = example!("postgres", store);
    let kept = match store {
        Store::Postgres => "scim_sidecar.attributes",
        Store::Sqlite | Store::Mariadb => "scim_sidecar_attributes",
    };
    let g = create_group(&s, "Support", &[]).await;
    let path = format!("/scim/v2/Groups/{g}");
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "add", "path": "externalId", "value": "grp-1"}])),
        )
        .await
        .expect(204);
    let r = s
        .client
        .get("/scim/v2/Groups?filter=externalId%20eq%20%22grp-1%22")
        .await
        .expect(200)
        .json();
    assert_eq!(r["Resources"][0]["id"], g.as_str());
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "externalId", "value": "grp-2"}])),
        )
        .await
        .expect(204);
    let r = s
        .client
        .get("/scim/v2/Groups?filter=externalId%20eq%20%22grp-1%22")
        .await
        .expect(200)
        .json();
    assert_eq!(r["totalResults"], 0);
    assert_eq!(
        s.client.get(&path).await.expect(200).json()["externalId"],
        "grp-2"
    );
    assert_eq!(
        s.rows(&format!("SELECT value FROM {kept}")).await,
        vec![vec!["grp-2"]]
    );
    s.client.delete(&path).await.expect(204);
    assert!(
        s.rows(&format!("SELECT value FROM {kept}"))
            .await
            .is_empty()
    );
    assert!(
        s.rows(&format!("SELECT id FROM principals WHERE id = {g}"))
            .await
            .is_empty()
    );
}

/// Members must be existing users: an unknown id or a group's id among valid ones is 400
/// naming it and changes nothing; adds are idempotent; removal takes Entra's value array.
async fn members_are_checked_and_atomic(store: Store) {
    let s = example!("postgres", store);
    let u = create(&s, &barbara()).await;
    let g = create_group(&s, "Support", &[&u]).await;
    let path = format!("/scim/v2/Groups/{g}");
    let members =
        format!("SELECT member_id FROM group_members WHERE group_id = {g} ORDER BY member_id");
    assert_eq!(s.rows(&members).await, vec![vec![u.clone()]]);
    let before = snapshot(&s).await;
    for bad in ["999999", "2", "not-a-number"] {
        let d = s
            .client
            .patch(&path, &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": "1"}, {"value": bad}]}])))
            .await
            .scim_error(400, Some("invalidValue"));
        assert!(d.contains(bad), "{bad}: {d}");
        assert_eq!(snapshot(&s).await, before, "{bad}");
    }
    // The second op fails: the first one's member is not kept either.
    s.client
        .patch(
            &path,
            &patch_body(json!([
                {"op": "add", "path": "members", "value": [{"value": "1"}]},
                {"op": "add", "path": "members", "value": [{"value": "424242"}]}
            ])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert_eq!(snapshot(&s).await, before);
    for _ in 0..2 {
        s.client
            .patch(&path, &patch_body(json!([{"op": "Add", "path": "members", "value": [{"value": "1"}, {"value": u}]}])))
            .await
            .expect(204);
    }
    assert_eq!(
        s.rows(&members).await,
        vec![vec!["1".to_string()], vec![u.clone()]]
    );
    s.client
        .patch(&path, &patch_body(json!([{"op": "Remove", "path": "members", "value": [{"value": "1"}, {"value": u}]}])))
        .await
        .expect(204);
    assert!(s.rows(&members).await.is_empty());
}

/// A value longer than its varchar column is 400 invalidValue naming the attribute, on create
/// and on PATCH; nothing is written.
async fn too_long_value_names_the_attribute(store: Store) {
    let s = example!("postgres", store);
    let id = create(&s, &barbara()).await;
    let before = snapshot(&s).await;
    let long = "x".repeat(129);
    let mut body = named("long@example.com");
    body["title"] = json!(long);
    let d = s
        .client
        .post("/scim/v2/Users", &body)
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("title"), "{d}");
    let d = s
        .client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([
                {"op": "replace", "path": "displayName", "value": "fine"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": format!("{}@example.com", "e".repeat(250))}
            ])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("emails"), "{d}");
    assert_eq!(snapshot(&s).await, before);
}

/// A PATCH the database itself refuses (the unique index on `lower(login)`, which the sidecar
/// leaves to it) is 409 uniqueness and writes none of its changes; the PATCHes after it, on
/// the same connections, are answered and kept. On PostgreSQL the refused UPDATE is the
/// transaction's last statement, its `COMMIT` sent behind it: the server must roll back.
async fn a_patch_the_database_refuses_writes_nothing(store: Store) {
    let s = example!("postgres", store);
    create(&s, &barbara()).await;
    let id = create(&s, &named("kim@example.com")).await;
    let path = format!("/scim/v2/Users/{id}");
    let before = snapshot(&s).await;
    for _ in 0..3 {
        s.client
            .patch(
                &path,
                &patch_body(json!([
                    {"op": "replace", "path": "displayName", "value": "Not Kim"},
                    {"op": "replace", "path": "userName", "value": "bjensen@EXAMPLE.com"}
                ])),
            )
            .await
            .scim_error(409, Some("uniqueness"));
        assert_eq!(snapshot(&s).await, before);
    }
    for name in ["Kim", "Kim Park"] {
        let r = s
            .client
            .patch(
                &path,
                &patch_body(json!([{"op": "replace", "path": "displayName", "value": name}])),
            )
            .await
            .expect(200)
            .json();
        assert_eq!(r["displayName"], name);
        assert_eq!(
            s.rows(&format!(
                "SELECT display_name, login FROM principals WHERE id = {id}"
            ))
            .await,
            vec![vec![name, "kim@example.com"]]
        );
    }
}

/// `on_delete = "soft"`: the row and its e-mail stay in the app, the enum state becomes
/// 'disabled', and for SCIM the user is gone (RFC 7644 §3.6): GET, PATCH and DELETE answer
/// 404 and filters do not find it. A later create with the same userName brings the same row
/// back, active and with the new values, under its old id (201). See: issue #9.
async fn soft_delete_disables(store: Store) {
    let s = example!("postgres", store);
    let id = create(&s, &barbara()).await;
    s.client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    assert_eq!(
        s.rows(&format!("SELECT state FROM principals WHERE id = {id}"))
            .await,
        vec![vec!["disabled"]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT count(*) FROM user_emails WHERE user_id = {id}"
        ))
        .await,
        vec![vec!["1"]]
    );
    let path = format!("/scim/v2/Users/{id}");
    s.client.get(&path).await.scim_error(404, None);
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "active", "value": "True"}])),
        )
        .await
        .scim_error(404, None);
    s.client.delete(&path).await.scim_error(404, None);
    let found = s
        .client
        .get("/scim/v2/Users?filter=userName%20eq%20%22bjensen@example.com%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 0, "{found}");
    assert_eq!(
        s.rows(&format!("SELECT state FROM principals WHERE id = {id}"))
            .await,
        vec![vec!["disabled"]]
    );

    let users = "SELECT count(*) FROM principals WHERE kind = 'U'";
    let before = s.rows(users).await;
    let mut again = barbara();
    again["title"] = json!("Head of Tours");
    again["emails"] = json!([{"type": "work", "value": "barbara@example.org", "primary": true}]);
    let r = s.client.post("/scim/v2/Users", &again).await.expect(201);
    let back = r.json();
    assert_eq!(back["id"], id.as_str(), "the same row comes back");
    assert_eq!(back["active"], true);
    assert_eq!(back["title"], "Head of Tours");
    // No second row and no stray child row: the revival rewrote the old ones.
    assert_eq!(s.rows(users).await, before);
    assert_eq!(
        s.rows(&format!(
            "SELECT address FROM user_emails WHERE user_id = {id}"
        ))
        .await,
        vec![vec!["barbara@example.org"]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT state, job_title FROM principals WHERE id = {id}"
        ))
        .await,
        vec![vec!["active", "Head of Tours"]]
    );
    s.client.get(&path).await.expect(200);
}

const PAYLOADS: [&str; 6] = [
    "x'); DROP TABLE principals; --",
    "\" OR 1=1 --",
    "' OR '1'='1",
    "\\'; DELETE FROM user_emails; --",
    "%' OR login LIKE '%",
    "a\u{0}b",
];

/// SQL goes out with bound parameters only: injection payloads in every attribute are stored
/// and read back verbatim, and in filter values they match nothing but themselves.
async fn injection_payloads_are_data(store: Store) {
    let s = example!("postgres", store);
    let mut made = Vec::new();
    for (i, p) in PAYLOADS.iter().enumerate() {
        let body = json!({
            "schemas": [USER, ENT],
            "userName": format!("{p}{i}"),
            "externalId": p,
            "displayName": p,
            "name": {"givenName": p, "familyName": p},
            "title": p,
            "emails": [{"type": "work", "value": p}],
            "phoneNumbers": [{"type": "work", "value": p}],
            ENT: {"department": p, "employeeNumber": p}
        });
        let r = s.client.post("/scim/v2/Users", &body).await;
        if p.contains('\u{0}') {
            // A control character is refused before any store sees it (issue #14), on
            // SQLite as on PostgreSQL (whose text cannot hold NUL anyway).
            r.scim_error(400, Some("invalidValue"));
            continue;
        }
        let got = r.expect(201).json();
        for k in ["externalId", "displayName", "title"] {
            assert_eq!(got[k], json!(p), "{k}");
        }
        assert_eq!(got["emails"][0]["value"], json!(p));
        made.push((p.to_string(), got["id"].as_str().expect("id").to_owned()));
    }
    for (p, id) in &made {
        let enc: String = format!(
            "userName eq {}",
            serde_json::to_string(&format!(
                "{p}{}",
                PAYLOADS.iter().position(|x| x == p).unwrap_or(0)
            ))
            .expect("json")
        )
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
        let r = s
            .client
            .get(&format!("/scim/v2/Users?filter={enc}"))
            .await
            .expect(200)
            .json();
        assert_eq!(r["totalResults"], 1, "{p}: {r}");
        assert_eq!(r["Resources"][0]["id"], id.as_str());
        for attr in [
            "displayName",
            "title",
            "emails.value",
            "externalId",
            "name.givenName",
        ] {
            let enc: String = format!("{attr} eq {}", serde_json::to_string(p).expect("json"))
                .bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b == b'.' {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect();
            let r = s
                .client
                .get(&format!("/scim/v2/Users?filter={enc}"))
                .await
                .expect(200)
                .json();
            assert_eq!(r["totalResults"], 1, "{attr} eq {p}: {r}");
        }
    }
    // The app's tables are intact: the seeded admin, the payload users, their e-mails.
    let n = s
        .rows("SELECT count(*) FROM principals WHERE kind = 'U'")
        .await;
    assert_eq!(n, vec![vec![(made.len() + 1).to_string()]]);
    let e = s.rows("SELECT count(*) FROM user_emails").await;
    assert_eq!(e, vec![vec![(made.len() + 1).to_string()]]);
}

/// Twenty identity-provider workers creating one person at once, in differing case: exactly
/// one 201, nineteen 409 uniqueness, one row.
async fn concurrent_creates_of_one_user_name(store: Store) {
    let s = example!("postgres", store);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = s.client.clone();
        let name = if i % 2 == 0 {
            "Race@Example.com"
        } else {
            "race@example.COM"
        };
        tasks.push(tokio::spawn(async move {
            let mut body = named(name);
            body["emails"] = json!([{"type": "work", "value": format!("race{i}@example.com")}]);
            client.post("/scim/v2/Users", &body).await
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status.as_u16() {
            201 => created += 1,
            409 => {
                r.scim_error(409, Some("uniqueness"));
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {}", r.text()),
        }
    }
    assert_eq!((created, conflicts), (1, 19));
    assert_eq!(
        s.rows("SELECT count(*) FROM principals WHERE lower(login) = 'race@example.com'")
            .await,
        vec![vec!["1"]]
    );
    // Only the winner's e-mail row exists: no half-written user.
    assert_eq!(
        s.rows("SELECT count(*) FROM user_emails e JOIN principals p ON p.id = e.user_id WHERE lower(p.login) = 'race@example.com'").await,
        vec![vec!["1"]]
    );
    assert_eq!(
        s.rows("SELECT count(*) FROM user_emails").await,
        vec![vec!["2"]]
    );
}

both!(membership_as_a_column_on_the_member);

/// Membership kept as a group column on the member's row (`members = { column = "team_id" }`):
/// adding sets the column, removing clears it, an agent added to another team moves there,
/// unknown ids change nothing, deleting the team leaves its agents without one.
async fn membership_as_a_column_on_the_member(store: Store) {
    let Some(s) = Sidecar::example("teams", store, None).await else {
        return;
    };
    let mut ids = Vec::new();
    for n in ["ann", "bob", "cy"] {
        ids.push(create(&s, &named(n)).await);
    }
    let red = create_group(&s, "Red", &[&ids[0], &ids[1]]).await;
    let blue = create_group(&s, "Blue", &[]).await;
    let teams = "SELECT username, coalesce(CAST(team_id AS TEXT), '-') FROM agents ORDER BY id";
    assert_eq!(
        s.rows(teams).await,
        vec![
            vec!["ann".to_string(), red.clone()],
            vec!["bob".into(), red.clone()],
            vec!["cy".into(), "-".into()]
        ]
    );
    let g = s
        .client
        .get(&format!("/scim/v2/Groups/{red}"))
        .await
        .expect(200)
        .json();
    let mut members: Vec<&str> = g["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    members.sort();
    assert_eq!(members, vec![ids[0].as_str(), ids[1].as_str()]);
    let before = s.rows(teams).await;
    s.client
        .patch(&format!("/scim/v2/Groups/{blue}"), &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": ids[2]}, {"value": "4040"}]}])))
        .await
        .scim_error(400, Some("invalidValue"));
    assert_eq!(s.rows(teams).await, before);
    s.client
        .patch(&format!("/scim/v2/Groups/{blue}"), &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": ids[2]}, {"value": ids[1]}]}])))
        .await
        .expect(204);
    s.client
        .patch(
            &format!("/scim/v2/Groups/{red}"),
            &patch_body(
                json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}]),
            ),
        )
        .await
        .expect(204);
    assert_eq!(
        s.rows(teams).await,
        vec![
            vec!["ann".to_string(), "-".into()],
            vec!["bob".into(), blue.clone()],
            vec!["cy".into(), blue.clone()]
        ]
    );
    let f = s
        .client
        .get(&format!(
            "/scim/v2/Groups?filter=members.value%20eq%20%22{}%22",
            ids[1]
        ))
        .await
        .expect(200)
        .json();
    assert_eq!(f["Resources"][0]["id"], blue.as_str(), "{f}");
    s.client
        .delete(&format!("/scim/v2/Groups/{blue}"))
        .await
        .expect(204);
    assert_eq!(
        s.rows("SELECT count(*) FROM agents WHERE team_id IS NOT NULL")
            .await,
        vec![vec!["0"]]
    );
    assert_eq!(s.rows("SELECT count(*) FROM agents").await, vec![vec!["3"]]);
}

both!(entity_attribute_value_rows_and_templates);

/// The WordPress mapping on both stores: names as `wp_usermeta` rows (entity–attribute–value),
/// the author slug from a template, a value map onto an integer column, no unique index on
/// the login (the sidecar's own check keeps it unique).
async fn entity_attribute_value_rows_and_templates(store: Store) {
    let Some(s) = Sidecar::example("wordpress", store, None).await else {
        return;
    };
    let body = json!({
        "schemas": [USER], "userName": "BJensen", "displayName": "Barbara Jensen", "nickName": "Babs",
        "name": {"givenName": "Barbara", "familyName": "Jensen"}, "active": true
    });
    let id = create(&s, &body).await;
    let meta = format!(
        "SELECT meta_key, meta_value FROM wp_usermeta WHERE user_id = {id} ORDER BY meta_key"
    );
    assert_eq!(
        s.rows(&meta).await,
        vec![
            vec!["first_name", "Barbara"],
            vec!["last_name", "Jensen"],
            vec!["nickname", "Babs"]
        ]
    );
    let user = format!("SELECT user_nicename, user_status FROM wp_users WHERE \"ID\" = {id}");
    assert_eq!(s.rows(&user).await, vec![vec!["bjensen", "0"]]);
    let path = format!("/scim/v2/Users/{id}");
    s.client
        .patch(
            &path,
            &patch_body(json!([
                {"op": "replace", "path": "name.givenName", "value": "Babs"},
                {"op": "remove", "path": "nickName"},
                {"op": "replace", "path": "userName", "value": "BarbaraJ"},
                {"op": "replace", "path": "active", "value": false}
            ])),
        )
        .await
        .expect(200);
    assert_eq!(
        s.rows(&meta).await,
        vec![vec!["first_name", "Babs"], vec!["last_name", "Jensen"]]
    );
    assert_eq!(s.rows(&user).await, vec![vec!["barbaraj", "1"]]);
    let f = s
        .client
        .get("/scim/v2/Users?filter=name.givenName%20eq%20%22Babs%22")
        .await
        .expect(200)
        .json();
    assert_eq!(f["totalResults"], 1, "{f}");
    s.client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "barbaraJ"}),
        )
        .await
        .scim_error(409, Some("uniqueness"));
    s.client.delete(&path).await.expect(204);
    assert!(s.rows(&meta).await.is_empty());
}
