//! Users end to end against the quickstart: create, read, list, replace, patch, delete, with
//! the rows checked in the app's own `accounts` table.

use serde_json::{Value, json};

use crate::support::client::{patch_body, user};
use crate::support::{Options, Sidecar};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

async fn create(s: &Sidecar, body: Value) -> String {
    let r = s.client.post("/scim/v2/Users", &body).await.expect(201);
    r.json()["id"].as_str().expect("id").to_owned()
}

/// A create answers 201 with Location, ETag and the resource as stored; the row lands in the
/// app's own table with the mapped columns and the value map applied (`active` → `status`).
#[tokio::test]
async fn create_user_writes_the_apps_row() {
    let s = Sidecar::quickstart().await;
    let r = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
                "userName": "bjensen@example.com",
                "externalId": "bjensen",
                "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. Barbara J Jensen III"},
                "emails": [{"type": "work", "value": "bjensen@example.com", "primary": true}],
                "phoneNumbers": [{"type": "mobile", "value": "555-555-8377"}, {"type": "fax", "value": "1"}],
                "active": false,
                ENT: {"department": "Tour Operations", "employeeNumber": "701984"}
            }),
        )
        .await
        .expect(201);
    let body = r.json();
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        r.header("location"),
        Some(format!("http://{}/scim/v2/Users/{id}", s.addr))
    );
    assert_eq!(
        r.header("etag").as_deref(),
        body["meta"]["version"].as_str()
    );
    assert_eq!(
        body["meta"]["location"],
        format!("http://{}/scim/v2/Users/{id}", s.addr)
    );
    assert_eq!(body["meta"]["resourceType"], "User");
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENT])
    );
    assert_eq!(body["userName"], "bjensen@example.com");
    assert_eq!(body["active"], false);
    assert_eq!(body["externalId"], "bjensen");
    assert_eq!(
        body["name"],
        json!({"givenName": "Barbara", "familyName": "Jensen"})
    );
    assert_eq!(
        body["emails"],
        json!([{"type": "work", "value": "bjensen@example.com", "primary": true}])
    );
    assert_eq!(
        body["phoneNumbers"],
        json!([{"type": "mobile", "value": "555-555-8377"}])
    );
    assert_eq!(
        body[ENT],
        json!({"department": "Tour Operations", "employeeNumber": "701984"})
    );
    assert!(
        body["meta"]["created"]
            .as_str()
            .is_some_and(|c| c.ends_with('Z'))
    );
    let rows = s.sql(&format!(
        "SELECT login, first_name, last_name, email, mobile, status, department, employee_no, external_ref FROM accounts WHERE id = {id}"
    ));
    assert_eq!(
        rows,
        vec![vec![
            "bjensen@example.com",
            "Barbara",
            "Jensen",
            "bjensen@example.com",
            "555-555-8377",
            "D",
            "Tour Operations",
            "701984",
            "bjensen"
        ]]
    );
}

/// Users the app already had are served too (the quickstart's seeded administrator), and a
/// GET returns exactly what a list returns for the same user.
#[tokio::test]
async fn existing_rows_are_served() {
    let s = Sidecar::quickstart().await;
    let one = s.client.get("/scim/v2/Users/1").await.expect(200);
    let one = one.json();
    assert_eq!(one["userName"], "app-admin");
    assert_eq!(one["active"], true);
    let list = s
        .client
        .get("/scim/v2/Users?filter=userName+eq+%22app-admin%22")
        .await
        .expect(200)
        .json();
    assert_eq!(list["Resources"][0], one);
}

/// Unknown ids are a SCIM 404, whether they could be a key (99) or not (`abc`).
#[tokio::test]
async fn unknown_ids_are_404() {
    let s = Sidecar::quickstart().await;
    for id in ["99", "abc", "1%20OR%201=1"] {
        let d = s
            .client
            .get(&format!("/scim/v2/Users/{id}"))
            .await
            .scim_error(404, None);
        assert!(d.contains("no User with id"), "{d}");
        s.client
            .delete(&format!("/scim/v2/Users/{id}"))
            .await
            .scim_error(404, None);
        s.client
            .patch(
                &format!("/scim/v2/Users/{id}"),
                &patch_body(json!([{"op": "replace", "path": "title", "value": "x"}])),
            )
            .await
            .scim_error(404, None);
    }
}

/// Paging: startIndex/count pages in a stable order, totalResults counts all, count=0 gives
/// only the total, and a count over the cap is reduced to it (RFC 7644 §3.4.2.4).
#[tokio::test]
async fn paging() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| c.scim.max_count = 4)),
        ..Default::default()
    })
    .await;
    for i in 0..6 {
        create(&s, user(&format!("user{i}"))).await;
    }
    let page = s
        .client
        .get("/scim/v2/Users?startIndex=2&count=3")
        .await
        .expect(200)
        .json();
    assert_eq!(page["totalResults"], 7);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 3);
    let names: Vec<&str> = page["Resources"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["userName"].as_str())
        .collect();
    assert_eq!(names, vec!["user0", "user1", "user2"]);
    let zero = s
        .client
        .get("/scim/v2/Users?count=0")
        .await
        .expect(200)
        .json();
    assert_eq!(
        (zero["totalResults"].clone(), zero["Resources"].clone()),
        (json!(7), json!([]))
    );
    let capped = s
        .client
        .get("/scim/v2/Users?count=1000000")
        .await
        .expect(200)
        .json();
    assert_eq!(capped["itemsPerPage"], 4);
    let past = s
        .client
        .get("/scim/v2/Users?startIndex=50")
        .await
        .expect(200)
        .json();
    assert_eq!(
        (past["totalResults"].clone(), past["itemsPerPage"].clone()),
        (json!(7), json!(0))
    );
    let neg = s
        .client
        .get("/scim/v2/Users?startIndex=-3&count=-1")
        .await
        .expect(200)
        .json();
    assert_eq!(
        (neg["startIndex"].clone(), neg["itemsPerPage"].clone()),
        (json!(1), json!(0))
    );
}

/// sortBy/sortOrder sort in the store; ties and the default order are by id.
#[tokio::test]
async fn sorting() {
    let s = Sidecar::quickstart().await;
    for n in ["carol", "Alice", "bob"] {
        create(&s, user(n)).await;
    }
    let names = |v: Value| -> Vec<String> {
        v["Resources"]
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r["userName"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let asc = s
        .client
        .get("/scim/v2/Users?sortBy=userName")
        .await
        .expect(200)
        .json();
    assert_eq!(names(asc), vec!["Alice", "app-admin", "bob", "carol"]);
    let desc = s
        .client
        .get("/scim/v2/Users?sortBy=USERNAME&sortOrder=descending")
        .await
        .expect(200)
        .json();
    assert_eq!(names(desc), vec!["carol", "bob", "app-admin", "Alice"]);
    let d = s
        .client
        .get("/scim/v2/Users?sortBy=nickName")
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("nickName"), "{d}");
}

/// `attributes` and `excludedAttributes` shape the answer; `id` and `schemas` always stay.
#[tokio::test]
async fn projection() {
    let s = Sidecar::quickstart().await;
    let id = create(&s, json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "p", "title": "T",
        "name": {"givenName": "G", "familyName": "F"}})).await;
    let only = s
        .client
        .get(&format!(
            "/scim/v2/Users/{id}?attributes=userName,name.familyName"
        ))
        .await
        .expect(200)
        .json();
    assert_eq!(
        only,
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": id, "userName": "p", "name": {"familyName": "F"}})
    );
    let without = s
        .client
        .get(&format!(
            "/scim/v2/Users/{id}?excludedAttributes=title,meta"
        ))
        .await
        .expect(200)
        .json();
    assert!(without.get("title").is_none() && without.get("meta").is_none());
    assert_eq!(without["userName"], "p");
    let listed = s
        .client
        .get("/scim/v2/Users?filter=userName+eq+%22p%22&attributes=title")
        .await
        .expect(200)
        .json();
    assert_eq!(
        listed["Resources"][0],
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": id, "title": "T"})
    );
}

/// PUT replaces the resource: attributes left out are cleared, `id` and `meta` in the body
/// are ignored, and the answer is the stored result.
#[tokio::test]
async fn put_replaces() {
    let s = Sidecar::quickstart().await;
    let id = create(&s, json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "r", "title": "Old", "displayName": "R"})).await;
    let r = s
        .client
        .put(
            &format!("/scim/v2/Users/{id}"),
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": "999", "meta": {"created": "1999-01-01T00:00:00Z"},
                    "userName": "r2", "displayName": "R2", "active": false, "groups": []}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(r["id"], id);
    assert_eq!(r["userName"], "r2");
    assert!(r.get("title").is_none());
    assert_ne!(r["meta"]["created"], "1999-01-01T00:00:00Z");
    assert_eq!(
        s.sql(&format!(
            "SELECT login, job_title, display_name, status FROM accounts WHERE id = {id}"
        )),
        vec![vec!["r2", "NULL", "R2", "D"]]
    );
    let e = s
        .client
        .put(
            &format!("/scim/v2/Users/{id}"),
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "title": "x"}),
        )
        .await;
    assert!(
        e.scim_error(400, Some("invalidValue"))
            .contains("'userName' is required")
    );
}

/// PATCH answers 200 with the whole resource; lastModified and the version move.
#[tokio::test]
async fn patch_answers_the_resource() {
    let s = Sidecar::quickstart().await;
    let created = s
        .client
        .post("/scim/v2/Users", &user("pa"))
        .await
        .expect(201)
        .json();
    let id = created["id"].as_str().expect("id");
    let r = s
        .client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "add", "path": "title", "value": "Boss"}])),
        )
        .await
        .expect(200);
    let body = r.json();
    assert_eq!(body["title"], "Boss");
    assert_eq!(body["userName"], "pa");
    assert_ne!(body["meta"]["version"], created["meta"]["version"]);
    assert_eq!(
        r.header("etag").as_deref(),
        body["meta"]["version"].as_str()
    );
    assert!(body["meta"]["lastModified"].as_str() >= created["meta"]["lastModified"].as_str());
}

/// DELETE answers 204, the row is gone, and the user's group memberships with it.
#[tokio::test]
async fn delete_removes_row_and_memberships() {
    let s = Sidecar::quickstart().await;
    let id = create(&s, user("gone")).await;
    s.client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await
        .expect(204);
    assert_eq!(
        s.sql(&format!(
            "SELECT count(*) FROM account_roles WHERE account_id = {id}"
        )),
        vec![vec!["1"]]
    );
    let r = s
        .client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    assert!(r.body.is_empty());
    s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .scim_error(404, None);
    assert_eq!(
        s.sql(&format!("SELECT count(*) FROM accounts WHERE id = {id}")),
        vec![vec!["0"]]
    );
    assert_eq!(
        s.sql(&format!(
            "SELECT count(*) FROM account_roles WHERE account_id = {id}"
        )),
        vec![vec!["0"]]
    );
}

/// `on_delete = "soft"` keeps the row and sets the mapped `active` column, and the user is
/// gone for SCIM (RFC 7644 §3.6): GET is 404 and the filter Entra sends before a create does
/// not find it, so Entra's create that follows brings the same row back (201, same id)
/// instead of a 409 it could not resolve. Its role membership went with the delete. See:
/// issue #9.
#[tokio::test]
async fn soft_delete() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| {
            if let Some(u) = c.resources.iter_mut().find(|r| r.name == "User") {
                u.on_delete = scim_sidecar::mapping::OnDelete::Soft;
            }
        })),
        migrate: true,
        ..Default::default()
    })
    .await;
    let id = create(&s, user("soft")).await;
    s.client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await
        .expect(204);
    s.client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    assert_eq!(
        s.sql(&format!("SELECT status FROM accounts WHERE id = {id}")),
        vec![vec!["D"]]
    );
    assert_eq!(
        s.sql(&format!(
            "SELECT count(*) FROM account_roles WHERE account_id = {id}"
        )),
        vec![vec!["0"]]
    );
    s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .scim_error(404, None);
    let j = s
        .client
        .get("/scim/v2/Users?filter=userName%20eq%20%22soft%22")
        .await
        .expect(200)
        .json();
    assert_eq!(j["totalResults"], 0, "{j}");
    // Adding the deleted user to a group is refused: it is no one.
    s.client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    let back = create(&s, user("soft")).await;
    assert_eq!(back, id);
    assert_eq!(
        s.sql(&format!("SELECT status FROM accounts WHERE id = {id}")),
        vec![vec!["A"]]
    );
}

/// Conditional requests (RFC 7644 §3.14): If-None-Match gives 304, a stale If-Match gives 412
/// and changes nothing, the current ETag lets the change through.
#[tokio::test]
async fn etags() {
    let s = Sidecar::quickstart().await;
    let r = s
        .client
        .post("/scim/v2/Users", &user("etag"))
        .await
        .expect(201);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let tag = r.header("etag").expect("etag");
    let path = format!("/scim/v2/Users/{id}");
    let nm = s
        .client
        .send(http::Method::GET, &path, &[("if-none-match", &tag)], None)
        .await
        .expect(304);
    assert!(nm.body.is_empty());
    let body = patch_body(json!([{"op": "replace", "path": "title", "value": "A"}])).to_string();
    let before = s.snapshot();
    let stale = "W/\"0000000000000000\"";
    s.client
        .send(
            http::Method::PATCH,
            &path,
            &[("if-match", stale)],
            Some(body.clone().into()),
        )
        .await
        .scim_error(412, None);
    s.client
        .send(http::Method::DELETE, &path, &[("if-match", stale)], None)
        .await
        .scim_error(412, None);
    assert_eq!(s.snapshot(), before);
    s.client
        .send(
            http::Method::PATCH,
            &path,
            &[("if-match", &tag)],
            Some(body.into()),
        )
        .await
        .expect(200);
}

/// userName is unique case-insensitively: a second create is 409 `uniqueness` and the table
/// keeps one row; a rename onto a taken name is refused the same way.
#[tokio::test]
async fn duplicate_user_name_is_409() {
    let s = Sidecar::quickstart().await;
    let id = create(&s, user("Dup@Example.com")).await;
    let d = s
        .client
        .post("/scim/v2/Users", &user("dup@example.COM"))
        .await
        .scim_error(409, Some("uniqueness"));
    assert!(d.contains("userName"), "{d}");
    assert_eq!(
        s.sql("SELECT count(*) FROM accounts WHERE login = 'dup@example.com' COLLATE NOCASE"),
        vec![vec!["1"]]
    );
    let other = create(&s, user("other")).await;
    s.client
        .patch(
            &format!("/scim/v2/Users/{other}"),
            &patch_body(json!([{"op": "replace", "path": "userName", "value": "DUP@example.com"}])),
        )
        .await
        .scim_error(409, Some("uniqueness"));
    assert_eq!(
        s.sql(&format!("SELECT login FROM accounts WHERE id = {other}")),
        vec![vec!["other"]]
    );
    let _ = id;
}

/// `POST /Users/.search` runs the same query as GET with a filter.
#[tokio::test]
async fn search_endpoint() {
    let s = Sidecar::quickstart().await;
    create(&s, user("searchme")).await;
    let r = s
        .client
        .post(
            "/scim/v2/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName sw \"search\"", "attributes": ["userName"], "count": 5}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(r["totalResults"], 1);
    assert_eq!(r["Resources"][0]["userName"], "searchme");
    assert!(r["Resources"][0].get("meta").is_none());
}

/// Attributes the app has no column for are ignored (Entra sends its whole attribute set);
/// the answer shows only what is stored, and `password` is never returned.
#[tokio::test]
async fn unstored_attributes_are_ignored() {
    let s = Sidecar::quickstart().await;
    let r = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ign", "password": "Secret!1",
                    "nickName": "Babs", "addresses": [{"type": "work", "streetAddress": "100 Main"}], "roles": [],
                    "urn:example:unknown:2.0:User": {"shoe": 44}, "preferredLanguage": "en-US"}),
        )
        .await
        .expect(201)
        .json();
    for k in [
        "password",
        "nickName",
        "addresses",
        "roles",
        "preferredLanguage",
        "urn:example:unknown:2.0:User",
    ] {
        assert!(r.get(k).is_none(), "{k} returned: {r}");
    }
    assert!(!r.to_string().contains("Secret!1"));
}

/// With `unknown_attributes = "reject"`, the same body is refused naming the attribute, and
/// nothing is written.
#[tokio::test]
async fn unstored_attributes_rejected_by_policy() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| {
            c.scim.unknown_attributes = scim_sidecar::scim::UnknownPolicy::Reject
        })),
        ..Default::default()
    })
    .await;
    let before = s.snapshot();
    let d = s
        .client
        .post("/scim/v2/Users", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "rej", "nickName": "x"}))
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("nickName"), "{d}");
    assert_eq!(s.snapshot(), before);
}

/// Soft delete with the sidecar's state in another database (`[state]`: the path a
/// directory or an API takes): the app's database gets no table of the sidecar's, the
/// tombstone lives in the state database, and the user is gone for SCIM just the same — 404,
/// out of filters, out of its groups, not addable as a member — until a create with its
/// userName brings the same row back. See: issue #9.
#[tokio::test]
async fn soft_delete_with_state_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state_db = dir.path().join("state.db");
    std::fs::write(&state_db, "").expect("state db");
    let text = std::fs::read_to_string(crate::support::quickstart_config())
        .expect("config")
        .replace("on_delete = \"hard\"", "on_delete = \"soft\"")
        + &format!(
            "\n[state]\nbackend = \"state\"\n\n[backend.state]\ntype = \"sqlite\"\npath = \"{}\"\n",
            state_db.display()
        );
    let path = crate::support::quickstart_config()
        .parent()
        .expect("dir")
        .join(format!("soft-state-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    let s = Sidecar::start(Options {
        config: Some(path.clone()),
        migrate: true,
        ..Default::default()
    })
    .await;
    let _ = std::fs::remove_file(&path);
    let id = create(&s, user("elsewhere")).await;
    s.client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await
        .expect(204);
    s.client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .scim_error(404, None);
    let j = s
        .client
        .get("/scim/v2/Users?filter=userName%20eq%20%22elsewhere%22")
        .await
        .expect(200)
        .json();
    assert_eq!(j["totalResults"], 0, "{j}");
    assert_eq!(
        s.sql(&format!("SELECT status FROM accounts WHERE id = {id}")),
        vec![vec!["D"]]
    );
    assert_eq!(
        s.sql(&format!(
            "SELECT count(*) FROM account_roles WHERE account_id = {id}"
        )),
        vec![vec!["0"]]
    );
    s.client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(
        s.sql("SELECT name FROM sqlite_master WHERE name LIKE 'scim_sidecar%'")
            .is_empty(),
        "the app's database got a table of the sidecar's"
    );
    let state = rusqlite::Connection::open(&state_db).expect("state db");
    let tombs: i64 = state
        .query_row(
            "SELECT count(*) FROM scim_sidecar_attributes WHERE name = 'meta.deleted'",
            [],
            |r| r.get(0),
        )
        .expect("tombstones");
    assert_eq!(tombs, 1);
    assert_eq!(create(&s, user("elsewhere")).await, id);
    assert_eq!(
        s.sql(&format!("SELECT status FROM accounts WHERE id = {id}")),
        vec![vec!["A"]]
    );
    s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200);
}
