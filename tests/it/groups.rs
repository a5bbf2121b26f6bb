//! Groups and memberships against the quickstart's `roles` and `account_roles` join table.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::client::{patch_body, user};
use crate::support::{Options, Sidecar};

const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

async fn users(s: &Sidecar, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = s
            .client
            .post("/scim/v2/Users", &user(&format!("member{i}")))
            .await
            .expect(201);
        ids.push(r.json()["id"].as_str().expect("id").to_owned());
    }
    ids
}

fn members(s: &Sidecar, group: &str) -> Vec<String> {
    s.sql(&format!(
        "SELECT account_id FROM account_roles WHERE role_id = {group} ORDER BY account_id"
    ))
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

fn member_values(v: &Value) -> Vec<String> {
    v["members"].as_array().map_or(Vec::new(), |m| {
        m.iter()
            .map(|m| m["value"].as_str().unwrap_or("").to_owned())
            .collect()
    })
}

/// A group created with members (Okta's group push) lands in `roles` and `account_roles`;
/// its members come back with `$ref` and `type`. Entra's extra schema URI is accepted.
#[tokio::test]
async fn create_group_with_members() {
    let s = Sidecar::quickstart().await;
    let ids = users(&s, 2).await;
    let r = s
        .client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
                    "displayName": "Engineering", "externalId": "aad-1",
                    "members": [{"value": ids[0], "display": "member0"}, {"value": ids[1]}]}),
        )
        .await
        .expect(201)
        .json();
    let gid = r["id"].as_str().expect("id").to_owned();
    assert_eq!(r["displayName"], "Engineering");
    assert_eq!(r["externalId"], "aad-1");
    assert_eq!(
        r["members"][0],
        json!({"value": ids[0], "$ref": format!("http://{}/scim/v2/Users/{}", s.addr, ids[0]), "type": "User"})
    );
    assert_eq!(members(&s, &gid), ids);
    assert_eq!(
        s.sql(&format!(
            "SELECT name, external_ref FROM roles WHERE id = {gid}"
        )),
        vec![vec!["Engineering", "aad-1"]]
    );
}

/// Entra's group probe and reads: `excludedAttributes=members` leaves members out (and they
/// are not loaded); the plain GET lists them.
#[tokio::test]
async fn excluded_members() {
    let s = Sidecar::quickstart().await;
    let q = s
        .client
        .get(
            "/scim/v2/Groups?excludedAttributes=members&filter=displayName+eq+%22administrators%22",
        )
        .await
        .expect(200)
        .json();
    assert_eq!(q["totalResults"], 1);
    assert!(q["Resources"][0].get("members").is_none());
    let g = s
        .client
        .get("/scim/v2/Groups/1?excludedAttributes=members")
        .await
        .expect(200)
        .json();
    assert!(g.get("members").is_none());
    let g = s.client.get("/scim/v2/Groups/1").await.expect(200).json();
    assert_eq!(member_values(&g), vec!["1"]);
}

/// A group's version leaves its members out (it is known without reading them), so a member
/// the app adds itself does not move it. A GET that returns the members is then never
/// answered 304, which would tell the client the old list still holds; one without them is.
#[tokio::test]
async fn a_conditional_get_with_members_is_never_answered_stale() {
    let s = Sidecar::quickstart().await;
    let ids = users(&s, 1).await;
    let r = s
        .client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "Conditional"}),
        )
        .await
        .expect(201);
    let gid = r.json()["id"].as_str().expect("id").to_owned();
    let tag = r.header("etag").expect("etag");
    rusqlite::Connection::open(&s.db)
        .expect("db")
        .execute(
            "INSERT INTO account_roles (role_id, account_id) VALUES (?1, ?2)",
            [&gid, &ids[0]],
        )
        .expect("the app adds a member");
    let path = format!("/scim/v2/Groups/{gid}");
    let g = s
        .client
        .send(http::Method::GET, &path, &[("if-none-match", &tag)], None)
        .await
        .expect(200);
    assert_eq!(member_values(&g.json()), ids);
    let without = format!("{path}?excludedAttributes=members");
    s.client
        .send(
            http::Method::GET,
            &without,
            &[("if-none-match", &tag)],
            None,
        )
        .await
        .expect(304);
}

/// Membership PATCH in every shape the identity providers send: Entra add with `$ref: null`,
/// Entra removal by value array, removal by `members[value eq …]`, Okta's full replace,
/// remove all; adding an existing member and removing an absent one are no-ops.
#[tokio::test]
async fn membership_patches() {
    let s = Sidecar::quickstart().await;
    let ids = users(&s, 4).await;
    let add = json!([{"op": "Add", "path": "members", "value": [
        {"$ref": null, "value": ids[0]}, {"$ref": null, "value": ids[1]}, {"$ref": null, "value": ids[2]}, {"value": "1"}]}]);
    s.client
        .patch("/scim/v2/Groups/1", &patch_body(add.clone()))
        .await
        .expect(204);
    assert_eq!(
        members(&s, "1"),
        vec![
            "1".to_string(),
            ids[0].clone(),
            ids[1].clone(),
            ids[2].clone()
        ]
    );
    s.client
        .patch("/scim/v2/Groups/1", &patch_body(add))
        .await
        .expect(204);
    assert_eq!(members(&s, "1").len(), 4, "adding again changes nothing");
    s.client
        .patch("/scim/v2/Groups/1", &patch_body(json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": ids[0]}]}])))
        .await
        .expect(204);
    s.client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(
                json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[1])}]),
            ),
        )
        .await
        .expect(204);
    assert_eq!(members(&s, "1"), vec!["1".to_string(), ids[2].clone()]);
    s.client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([{"op": "remove", "path": "members[value eq \"424242\"]"}])),
        )
        .await
        .expect(204);
    let r = s
        .client
        // Asking for attributes gets the group back (200) instead of 204.
        .patch("/scim/v2/Groups/1?attributes=members", &patch_body(json!([{"op": "replace", "path": "members", "value": [{"value": ids[3], "display": "m3"}]}])))
        .await
        .expect(200)
        .json();
    assert_eq!(member_values(&r), vec![ids[3].clone()]);
    s.client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([{"op": "remove", "path": "members"}])),
        )
        .await
        .expect(204);
    assert!(members(&s, "1").is_empty());
}

/// Okta sends a rename together with membership changes, with `id` inside a path-less value.
/// A group's PATCH answers 204 with its new ETag (RFC 7644 §3.5.2), so a large group is never
/// rendered just to be thrown away.
#[tokio::test]
async fn okta_rename_with_members() {
    let s = Sidecar::quickstart().await;
    let ids = users(&s, 1).await;
    let r = s
        .client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([
                {"op": "replace", "value": {"id": "1", "displayName": "admins"}},
                {"op": "remove", "path": "members[value eq \"1\"]"},
                {"op": "add", "path": "members", "value": [{"value": ids[0], "display": "member0"}]}
            ])),
        )
        .await
        .expect(204);
    assert!(r.header("etag").is_some());
    let r = s.client.get("/scim/v2/Groups/1").await.expect(200).json();
    assert_eq!(r["displayName"], "admins");
    assert_eq!(member_values(&r), vec![ids[0].clone()]);
}

/// A member id that does not exist is 400 `invalidValue` naming it, and nothing of the PATCH
/// is kept: not the rename, not the other member.
#[tokio::test]
async fn unknown_member_changes_nothing() {
    let s = Sidecar::quickstart().await;
    let ids = users(&s, 1).await;
    let before = s.snapshot();
    let d = s
        .client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([
                {"op": "replace", "path": "displayName", "value": "renamed"},
                {"op": "add", "path": "members", "value": [{"value": ids[0]}, {"value": "777"}, {"value": "not-a-number"}]}
            ])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("'777'") && d.contains("'not-a-number'"), "{d}");
    assert_eq!(s.snapshot(), before);
    let d = s
        .client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "new", "members": [{"value": "555"}]}),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("'555'"), "{d}");
    assert_eq!(s.snapshot(), before);
}

/// Filters on membership: `members eq`, `members[value eq]`, combined with `and` (Entra's
/// membership check) and with `not`.
#[tokio::test]
async fn membership_filters() {
    let s = Sidecar::quickstart().await;
    let ids = users(&s, 1).await;
    let g2 = s
        .client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "two", "members": [{"value": ids[0]}]}),
        )
        .await
        .expect(201);
    let g2 = g2.json()["id"].as_str().expect("id").to_owned();
    let q = |f: &str| {
        let path = format!(
            "/scim/v2/Groups?attributes=displayName&filter={}",
            f.replace(' ', "+").replace('"', "%22")
        );
        let c = s.client.clone();
        async move { c.get(&path).await.expect(200).json() }
    };
    let names = |v: Value| -> Vec<String> {
        v["Resources"]
            .as_array()
            .expect("list")
            .iter()
            .map(|r| r["displayName"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(
        names(q(&format!("members eq \"{}\"", ids[0])).await),
        vec!["two"]
    );
    assert_eq!(
        names(q(&format!("members[value eq \"{}\"]", ids[0])).await),
        vec!["two"]
    );
    assert_eq!(
        names(
            q(&format!(
                "id eq \"{g2}\" and members.value eq \"{}\"",
                ids[0]
            ))
            .await
        ),
        vec!["two"]
    );
    assert_eq!(
        names(q(&format!("id eq \"1\" and members eq \"{}\"", ids[0])).await),
        Vec::<String>::new()
    );
    assert_eq!(names(q("not (members eq \"1\")").await), vec!["two"]);
    assert_eq!(names(q("members pr").await), vec!["administrators", "two"]);
}

/// Group names are unique in the app (a unique index): a clash is 409.
#[tokio::test]
async fn duplicate_group_is_409() {
    let s = Sidecar::quickstart().await;
    s.client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "ADMINISTRATORS"}),
        )
        .await
        .scim_error(409, Some("uniqueness"));
}

/// PUT of a group replaces its members when the body lists them, and leaves them alone when
/// it does not (RFC 7644 §3.5.1 allows either; emptying a large group by accident is worse).
#[tokio::test]
async fn put_group() {
    let s = Sidecar::quickstart().await;
    let ids = users(&s, 2).await;
    s.client.put("/scim/v2/Groups/1", &json!({"schemas": [GROUP], "displayName": "a", "members": [{"value": ids[0]}, {"value": ids[1]}]})).await.expect(200);
    assert_eq!(members(&s, "1"), ids);
    let r = s
        .client
        .put(
            "/scim/v2/Groups/1",
            &json!({"schemas": [GROUP], "displayName": "b"}),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(r["displayName"], "b");
    assert_eq!(members(&s, "1"), ids);
}

/// Deleting a group removes its memberships, not its members.
#[tokio::test]
async fn delete_group() {
    let s = Sidecar::quickstart().await;
    s.client.delete("/scim/v2/Groups/1").await.expect(204);
    assert_eq!(s.sql("SELECT count(*) FROM account_roles"), vec![vec!["0"]]);
    assert_eq!(s.sql("SELECT count(*) FROM accounts"), vec![vec!["1"]]);
    s.client
        .get("/scim/v2/Groups/1")
        .await
        .scim_error(404, None);
}

/// A thousand members in one PATCH land in one transaction, and read back.
#[tokio::test]
async fn many_members_in_one_patch() {
    let s = Sidecar::quickstart().await;
    let conn = rusqlite::Connection::open(&s.db).expect("db");
    conn.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
         INSERT INTO accounts (login) SELECT 'bulk' || i FROM n;",
    )
    .expect("seed");
    let ids: Vec<String> = s
        .sql("SELECT id FROM accounts WHERE login LIKE 'bulk%'")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let value: Vec<Value> = ids.iter().map(|i| json!({"value": i})).collect();
    let r = s
        .client
        .patch(
            "/scim/v2/Groups/1?excludedAttributes=members",
            &patch_body(json!([{"op": "add", "path": "members", "value": value}])),
        )
        .await
        .expect(200)
        .json();
    assert!(r.get("members").is_none());
    assert_eq!(
        s.sql("SELECT count(*) FROM account_roles WHERE role_id = 1"),
        vec![vec!["1001"]]
    );
}

/// A group with more members than one response carries (`[scim].max_members`, here 5) is
/// read with `excludedAttributes=members`, as Entra ID reads groups, and changed with PATCH;
/// asked for whole, alone or in a page, it is 400 `tooMany` saying so, having loaded at most
/// one member more than the limit. A group within the limit reads whole. See: issue #14.
#[tokio::test]
async fn r014_groups_larger_than_a_response_are_refused_whole_and_read_without_members() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| {
            c.scim.max_members = 5;
            c.scim.members_in_flight = 20;
        })),
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = s
            .client
            .post("/scim/v2/Users", &user(&format!("m{i}")))
            .await
            .expect(201);
        ids.push(r.json()["id"].as_str().expect("id").to_owned());
    }
    let members = |ids: &[String]| ids.iter().map(|i| json!({"value": i})).collect::<Vec<_>>();
    // The create stands; its answer leaves out the members it cannot carry.
    let big = s
        .client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "big", "members": members(&ids[..6])}),
        )
        .await
        .expect(201)
        .json();
    assert!(big.get("members").is_none(), "{big}");
    let id = big["id"].as_str().expect("id").to_owned();
    let path = format!("/scim/v2/Groups/{id}");
    let d = s.client.get(&path).await.scim_error(400, Some("tooMany"));
    assert!(d.contains("excludedAttributes=members"), "{d}");
    s.client
        .get("/scim/v2/Groups")
        .await
        .scim_error(400, Some("tooMany"));
    let g = s
        .client
        .get(&format!("{path}?excludedAttributes=members"))
        .await
        .expect(200)
        .json();
    assert_eq!(g["displayName"], "big");
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": ids[6]}]}])),
        )
        .await
        .expect(204);
    assert_eq!(
        s.sql(&format!(
            "SELECT count(*) FROM account_roles WHERE role_id = {id}"
        )),
        vec![vec!["7"]]
    );
    let small = s
        .client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP], "displayName": "small", "members": members(&ids[..3])}),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(small["members"].as_array().map(Vec::len), Some(3));
}

/// The quickstart's config with `groups = "<group_type>"` added to `[resource.User]`, written
/// in `dir` next to a copy of its schema (which it names relatively); its path and text.
fn quickstart_with_groups(dir: &tempfile::TempDir, group_type: &str) -> (PathBuf, String) {
    let text = std::fs::read_to_string(crate::support::quickstart_config()).expect("quickstart");
    let text = text.replacen(
        "[resource.User]\n",
        &format!("[resource.User]\ngroups = \"{group_type}\"\n"),
        1,
    );
    let path = dir.path().join("scim-sidecar.toml");
    std::fs::write(&path, &text).expect("config");
    std::fs::copy(
        crate::support::quickstart_config().with_file_name("schema.sql"),
        dir.path().join("schema.sql"),
    )
    .expect("schema.sql");
    (path, text)
}

/// The quickstart with `groups = "Group"` on its users, written where an integrator writes it.
async fn with_user_groups(dir: &tempfile::TempDir) -> Sidecar {
    let (path, _) = quickstart_with_groups(dir, "Group");
    Sidecar::start(Options {
        config: Some(path),
        ..Default::default()
    })
    .await
}

/// `groups = "Group"`: a user reads back with the groups that list it — `value`, `$ref`,
/// `display`, `type` "direct" — by id and in lists, computed from the group store, so a
/// membership change shows at once; discovery publishes `groups` read-only; `groups` sent in a
/// body is ignored (RFC 7644 §3.5.1); projection leaves it out like any attribute; the user's
/// ETag does not move with its groups (a membership is the group's state).
#[tokio::test]
async fn users_show_their_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = with_user_groups(&dir).await;
    let ids = users(&s, 2).await;
    let g1 = s.group("Readers").await;
    let g2 = s.group("Writers").await;
    let add =
        |id: &str| patch_body(json!([{"op": "add", "path": "members", "value": [{"value": id}]}]));
    s.client
        .patch(&format!("/scim/v2/Groups/{g1}"), &add(&ids[0]))
        .await
        .expect(204);
    let before = s
        .client
        .get(&format!("/scim/v2/Users/{}", ids[0]))
        .await
        .expect(200);
    let etag = before.header("etag").expect("etag");
    s.client
        .patch(&format!("/scim/v2/Groups/{g2}"), &add(&ids[0]))
        .await
        .expect(204);
    let u = s
        .client
        .get(&format!("/scim/v2/Users/{}", ids[0]))
        .await
        .expect(200);
    assert_eq!(u.header("etag"), Some(etag));
    let u = u.json();
    let groups = u["groups"].as_array().expect("groups");
    let mut got: Vec<(String, String)> = groups
        .iter()
        .map(|g| {
            assert_eq!(g["type"], "direct", "{g}");
            let v = g["value"].as_str().expect("value").to_owned();
            assert!(
                g["$ref"]
                    .as_str()
                    .expect("$ref")
                    .ends_with(&format!("/scim/v2/Groups/{v}")),
                "{g}"
            );
            (v, g["display"].as_str().expect("display").to_owned())
        })
        .collect();
    got.sort();
    let mut want = vec![
        (g1.clone(), "Readers".to_owned()),
        (g2.clone(), "Writers".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    // The other user is in no group: no `groups` at all.
    let other = s
        .client
        .get(&format!("/scim/v2/Users/{}", ids[1]))
        .await
        .expect(200)
        .json();
    assert!(other.get("groups").is_none(), "{other}");
    // Lists show each user's own.
    let list = s
        .client
        .get("/scim/v2/Users?filter=userName%20sw%20%22member%22")
        .await
        .expect(200)
        .json();
    let shown: Vec<usize> = list["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .map(|u| u["groups"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(shown.iter().sum::<usize>(), 2, "{list}");
    // Projection.
    let p = s
        .client
        .get(&format!(
            "/scim/v2/Users/{}?excludedAttributes=groups",
            ids[0]
        ))
        .await
        .expect(200)
        .json();
    assert!(p.get("groups").is_none(), "{p}");
    let p = s
        .client
        .get(&format!(
            "/scim/v2/Users/{}?attributes=groups.display",
            ids[0]
        ))
        .await
        .expect(200)
        .json();
    assert!(p["groups"][0].get("value").is_none(), "{p}");
    assert!(p["groups"][0]["display"].is_string(), "{p}");
    // A membership removed is gone from the user at once.
    s.client
        .patch(
            &format!("/scim/v2/Groups/{g1}"),
            &patch_body(
                json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[0])}]),
            ),
        )
        .await
        .expect(204);
    let u = s
        .client
        .get(&format!("/scim/v2/Users/{}", ids[0]))
        .await
        .expect(200)
        .json();
    assert_eq!(u["groups"].as_array().map(Vec::len), Some(1), "{u}");
    // Sent in a body, it is ignored: read-only.
    let mut body = user("member0");
    body["active"] = json!(true);
    body["groups"] = json!([{"value": g1}]);
    s.client
        .put(&format!("/scim/v2/Users/{}", ids[0]), &body)
        .await
        .expect(200);
    assert_eq!(members(&s, &g1), Vec::<String>::new());
    // Discovery publishes it read-only.
    let schema = s
        .client
        .get("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
        .await
        .expect(200)
        .json();
    let attr = schema["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .find(|a| a["name"] == "groups")
        .cloned()
        .expect("groups published");
    assert_eq!(attr["mutability"], "readOnly");
}

/// `groups` naming a type that does not list users is a start-up problem at its line, with
/// the types that would do.
#[tokio::test]
async fn user_groups_must_name_a_group_type_of_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, text) = quickstart_with_groups(&dir, "Teams");
    let line = text
        .lines()
        .position(|l| l.starts_with("groups = "))
        .expect("line")
        + 1;
    let env = crate::support::quickstart_env(
        &dir.path().join("app.db"),
        "127.0.0.1:9".parse().expect("addr"),
    );
    let config = crate::support::load(&path, &env);
    let metrics = std::sync::Arc::new(scim_sidecar::metrics::Metrics::new());
    let report = match scim_sidecar::app::build(&config, metrics).await {
        Ok(_) => panic!("accepted groups = \"Teams\""),
        Err(problems) => scim_sidecar::config::report(&problems),
    };
    assert!(
        report.contains("groups = \"Teams\": no [resource.Teams] is defined"),
        "{report}"
    );
    assert!(report.contains(&format!(":{line}:")), "{report}");
    assert!(report.contains("name one of: Group"), "{report}");
}
