//! WordPress on PostgreSQL, through `examples/wordpress`: the sidecar in front of WordPress's
//! own `wp_users` and `wp_usermeta`, as an integrator would map them. Names and nickname are
//! entity–attribute–value rows of `wp_usermeta`; `user_login` has no unique index, so the
//! sidecar's own check keeps user names unique; every assertion reads the rows WordPress
//! itself would read.

use std::sync::Arc;

use scim_sidecar::backend::sql::config::{SqlField, SqlResource};
use scim_sidecar::config::{self, Config};
use scim_sidecar::mapping::{AttrSource, Problem};
use scim_sidecar::metrics::Metrics;
use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::{Client, Sidecar};

/// The WordPress example's sidecar, or a skip (with the reason printed) without PostgreSQL.
macro_rules! wordpress {
    () => {
        match Sidecar::postgres("wordpress", None).await {
            Some(s) => s,
            None => return,
        }
    };
}

fn barbara() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "BJensen",
        "externalId": "0b6f5c1e-entra-object-id",
        "displayName": "Barbara Jensen",
        "nickName": "Babs",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"type": "work", "value": "bjensen@example.com", "primary": true}],
        "active": true
    })
}

/// `GET /Users?filter=…`, the filter form-encoded.
fn filtered(filter: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
    format!("/scim/v2/Users?filter={encoded}")
}

/// Creates Barbara and returns her id.
async fn create_barbara(c: &Client) -> String {
    let body = c
        .post("/scim/v2/Users", &barbara())
        .await
        .expect(201)
        .json();
    body["id"].as_str().expect("id").to_owned()
}

/// A user's `wp_usermeta` rows the mapping writes, as (meta_key, meta_value), by key.
async fn names_meta(s: &Sidecar, id: &str) -> Vec<Vec<String>> {
    s.rows(&format!(
        "SELECT meta_key, meta_value FROM wp_usermeta WHERE user_id = {id}
         AND meta_key IN ('first_name', 'last_name', 'nickname') ORDER BY meta_key, umeta_id"
    ))
    .await
}

/// A create writes what WordPress's own `wp_insert_user()` would: the `wp_users` row with
/// the author slug (`user_nicename`) lower-cased from the login and a password column that
/// matches no password, and the name and nickname as `wp_usermeta` rows. The user reads back
/// exactly as sent, externalId (kept by the sidecar) included.
#[tokio::test]
async fn create_writes_wp_users_and_usermeta() {
    let s = wordpress!();
    let body = s
        .client
        .post("/scim/v2/Users", &barbara())
        .await
        .expect(201)
        .json();
    let id = body["id"].as_str().expect("id").to_owned();
    for attr in [
        "userName",
        "externalId",
        "displayName",
        "nickName",
        "name",
        "emails",
        "active",
    ] {
        assert_eq!(body[attr], barbara()[attr], "{attr} in the create response");
    }
    let user = s
        .rows(&format!(
            "SELECT user_login, user_nicename, user_email, display_name, user_status, user_pass
             FROM wp_users WHERE \"ID\" = {id}"
        ))
        .await;
    assert_eq!(
        user,
        vec![vec![
            "BJensen",
            "bjensen",
            "bjensen@example.com",
            "Barbara Jensen",
            "0",
            "!"
        ]]
    );
    assert_eq!(
        names_meta(&s, &id).await,
        vec![
            vec!["first_name", "Barbara"],
            vec!["last_name", "Jensen"],
            vec!["nickname", "Babs"]
        ]
    );
    let registered = s
        .rows(&format!(
            "SELECT user_registered > now() - interval '1 hour' FROM wp_users WHERE \"ID\" = {id}"
        ))
        .await;
    assert_eq!(
        registered,
        vec![vec!["true"]],
        "meta.created is written to user_registered"
    );
    let got = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    for attr in [
        "userName",
        "externalId",
        "displayName",
        "nickName",
        "name",
        "emails",
        "active",
    ] {
        assert_eq!(got[attr], barbara()[attr], "{attr} read back");
    }
    assert_eq!(got["meta"]["created"], body["meta"]["created"]);
}

/// Filters reach every place a value is kept: `userName` compares case-insensitively
/// (RFC 7643 §4.1.1: userName is caseExact false) against `user_login`, `name.givenName`
/// against the `first_name` meta row, `externalId` against the sidecar's own table.
#[tokio::test]
async fn filters_find_users_by_login_meta_and_external_id() {
    let s = wordpress!();
    let id = create_barbara(&s.client).await;
    for filter in [
        r#"userName eq "bjensen""#,
        r#"userName eq "BJENSEN""#,
        r#"name.givenName eq "Barbara""#,
        r#"externalId eq "0b6f5c1e-entra-object-id""#,
    ] {
        let list = s.client.get(&filtered(filter)).await.expect(200).json();
        assert_eq!(list["totalResults"], 1, "{filter}: {list}");
        assert_eq!(list["Resources"][0]["id"], id.as_str(), "{filter}");
    }
    let none = s
        .client
        .get(&filtered(r#"name.givenName eq "Babs""#))
        .await
        .expect(200)
        .json();
    assert_eq!(
        none["totalResults"], 0,
        "the nickname row is not the first_name row"
    );
}

/// PATCH edits the meta rows WordPress reads: replacing `name.givenName` updates the existing
/// `first_name` row in place (same `umeta_id`, no second row, which `get_user_meta(…, true)`
/// would silently ignore), removing `nickName` deletes its row, and `active = false` is
/// `user_status = 1` through the value map.
#[tokio::test]
async fn patch_edits_usermeta_rows_in_place() {
    let s = wordpress!();
    let id = create_barbara(&s.client).await;
    let first_name_row = format!(
        "SELECT umeta_id, meta_value FROM wp_usermeta WHERE user_id = {id} AND meta_key = 'first_name'"
    );
    let before = s.rows(&first_name_row).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let patched = s
        .client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([
                {"op": "replace", "path": "name.givenName", "value": "Babs"},
                {"op": "remove", "path": "nickName"},
                {"op": "replace", "path": "active", "value": false}
            ])),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        patched["name"],
        json!({"givenName": "Babs", "familyName": "Jensen"})
    );
    assert_eq!(patched.get("nickName"), None, "{patched}");
    assert_eq!(patched["active"], false);
    assert_eq!(
        s.rows(&first_name_row).await,
        vec![vec![before[0][0].clone(), "Babs".to_owned()]],
        "the first_name row is updated, not replaced or duplicated"
    );
    assert_eq!(
        names_meta(&s, &id).await,
        vec![vec!["first_name", "Babs"], vec!["last_name", "Jensen"]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT user_status FROM wp_users WHERE \"ID\" = {id}"
        ))
        .await,
        vec![vec!["1"]]
    );
    let got = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["name"], patched["name"]);
    assert_eq!(got.get("nickName"), None, "{got}");
    assert_eq!(got["active"], false);
}

/// WordPress has no unique index on `user_login`, so nothing in the database stops two
/// creates of one name. Twenty identity-provider retries of one user, racing with the name
/// in different case, must still give exactly one user: one 201, nineteen 409 `uniqueness`,
/// one `wp_users` row — the sidecar's own check, serialised by an advisory lock, is all
/// that keeps them apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_login_make_one_user() {
    let s = wordpress!();
    // raceuser, Raceuser, rAceuser, RAceuser, …: twenty spellings of one name.
    let names: Vec<String> = (0..20)
        .map(|i: u32| {
            "raceuser"
                .chars()
                .enumerate()
                .map(|(j, c)| {
                    if (i >> (j % 5)) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        })
        .collect();
    // Open the pool's connections first, so the creates start together instead of one by
    // one behind connection set-up.
    let warm: Vec<_> = (0..20)
        .map(|_| {
            let client = s.client.clone();
            tokio::spawn(async move { client.get(&filtered(r#"userName eq "raceuser""#)).await })
        })
        .collect();
    for t in warm {
        t.await.expect("task").expect(200);
    }
    let tasks: Vec<_> = names
        .iter()
        .map(|name| {
            let client = s.client.clone();
            let mut body = barbara();
            body["userName"] = json!(name);
            tokio::spawn(async move { client.post("/scim/v2/Users", &body).await })
        })
        .collect();
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
        s.rows("SELECT count(*) FROM wp_users WHERE lower(user_login) = 'raceuser'")
            .await,
        vec![vec!["1"]]
    );
    assert_eq!(
        s.rows(
            "SELECT (SELECT count(*) FROM wp_usermeta WHERE meta_key = 'first_name') AS first_names,
                    (SELECT count(*) FROM wp_usermeta WHERE user_id NOT IN (SELECT \"ID\" FROM wp_users)) AS orphans,
                    (SELECT count(*) FROM scim_sidecar.attributes) AS kept"
        )
        .await,
        vec![vec!["2", "0", "1"]],
        "the admin's and the one new user's first_name rows, one kept externalId: the refused creates wrote nothing"
    );
}

/// DELETE removes the user as `wp_delete_user()` does: the `wp_users` row and every
/// `wp_usermeta` row of the user, the ones the mapping does not know (capabilities, plugin
/// settings) included, and the externalId the sidecar kept. The user is gone for SCIM too.
#[tokio::test]
async fn delete_removes_the_user_and_its_usermeta() {
    let s = wordpress!();
    let id = create_barbara(&s.client).await;
    // What WordPress adds by itself when a user is created: the role.
    s.pg.as_ref()
        .expect("PostgreSQL")
        .exec(&format!(
            "INSERT INTO wp_usermeta (user_id, meta_key, meta_value)
             VALUES ({id}, 'wp_capabilities', 'a:1:{{s:10:\"subscriber\";b:1;}}')"
        ))
        .await;
    s.client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    assert_eq!(
        s.rows(&format!(
            "SELECT count(*) FROM wp_users WHERE \"ID\" = {id}"
        ))
        .await,
        vec![vec!["0"]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT meta_key FROM wp_usermeta WHERE user_id = {id}"
        ))
        .await,
        Vec::<Vec<String>>::new(),
        "every wp_usermeta row of the user is deleted"
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT count(*) FROM scim_sidecar.attributes WHERE resource_id = '{id}'"
        ))
        .await,
        vec![vec!["0"]],
        "the kept externalId is deleted"
    );
    assert_eq!(
        s.rows("SELECT count(*) FROM wp_usermeta WHERE user_id = 1")
            .await,
        vec![vec!["15"]],
        "the admin's meta rows are untouched"
    );
    s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .scim_error(404, None);
}

/// `user_login` is `varchar(60)`: a longer userName is refused before anything is written,
/// with 400 invalidValue naming the attribute (not PostgreSQL's "value too long"), and no
/// `wp_users`, `wp_usermeta` or kept row appears.
#[tokio::test]
async fn too_long_user_name_is_refused_and_nothing_is_written() {
    let s = wordpress!();
    let count = "SELECT (SELECT count(*) FROM wp_users) AS users,
                        (SELECT count(*) FROM wp_usermeta) AS meta,
                        (SELECT count(*) FROM scim_sidecar.attributes) AS kept";
    let before = s.rows(count).await;
    let mut body = barbara();
    body["userName"] = json!("x".repeat(61));
    let detail = s
        .client
        .post("/scim/v2/Users", &body)
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(detail.contains("userName"), "{detail}");
    assert_eq!(s.rows(count).await, before);
    // 60 characters fit user_login; the derived author slug is cut to its 50, as WordPress
    // cuts it.
    body["userName"] = json!(format!("{}Z", "x".repeat(59)));
    let id = s
        .client
        .post("/scim/v2/Users", &body)
        .await
        .expect(201)
        .json()["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        s.rows(&format!(
            "SELECT user_nicename FROM wp_users WHERE \"ID\" = {id}"
        ))
        .await,
        vec![vec!["x".repeat(50)]]
    );
}

/// The administrator a fresh WordPress install created, before the sidecar existed, is a
/// SCIM user like any other: listed, with its login, e-mail, nickname and active state.
#[tokio::test]
async fn seeded_admin_is_listed() {
    let s = wordpress!();
    let list = s.client.get("/scim/v2/Users").await.expect(200).json();
    assert_eq!(list["totalResults"], 1, "{list}");
    let admin = &list["Resources"][0];
    assert_eq!(admin["id"], "1");
    assert_eq!(admin["userName"], "admin");
    assert_eq!(admin["displayName"], "admin");
    assert_eq!(admin["nickName"], "admin");
    assert_eq!(
        admin["emails"],
        json!([{"type": "work", "value": "admin@wordpress.example", "primary": true}])
    );
    assert_eq!(admin["active"], true);
    assert_eq!(admin["meta"]["created"], "2024-01-15T09:30:00.000Z");
}

/// The example's config, loaded against the test sidecar's database.
fn wordpress_config(s: &Sidecar) -> Config {
    let mut env = crate::support::quickstart_env(&s.db, s.upstream.addr);
    let url = s.pg.as_ref().expect("PostgreSQL").url.clone();
    env.insert("DATABASE_URL".into(), url);
    config::load(&crate::support::example_config("wordpress"), &env)
        .unwrap_or_else(|p| panic!("config:\n{}", config::report(&p)))
}

/// What `scim-sidecar check` prints about `wp_users.user_login`.
async fn user_login_warnings(config: &Config) -> Vec<Problem> {
    let (_, warnings) = scim_sidecar::app::build(config, Arc::new(Metrics::new()))
        .await
        .unwrap_or_else(|p| panic!("{}", config::report(&p)));
    warnings
        .into_iter()
        .filter(|w| w.message.contains("user_login"))
        .collect()
}

/// Without a unique index on `user_login`, start-up warns and prints the SQL that adds one.
/// That SQL must run as printed on WordPress's schema, whose non-unique index is already
/// called `wp_users_user_login_key`; once it has run, the warning is gone and PostgreSQL
/// itself refuses a second user with the same name in other case.
#[tokio::test]
async fn unique_index_advice_runs_on_wordpress() {
    let s = wordpress!();
    let config = wordpress_config(&s);
    let warnings = user_login_warnings(&config).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let fix = warnings[0]
        .fix
        .clone()
        .expect("the warning says how to fix it");
    let client = s.pg.as_ref().expect("PostgreSQL").client().await;
    if let Err(e) = client.batch_execute(&fix).await {
        panic!(
            "the advice `{fix}` does not run on WordPress's schema: {:?}",
            e.as_db_error().map(|d| d.message().to_owned())
        );
    }
    assert_eq!(user_login_warnings(&config).await.len(), 0);
    let err = client
        .batch_execute("INSERT INTO wp_users (user_login) VALUES ('ADMIN')")
        .await
        .expect_err("the index refuses a second 'admin'");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
}

/// An integrator who writes WordPress's upper-case `ID` as `id`, or a column in upper case,
/// gets what `check` promised: names are matched to the database's columns ignoring case
/// (as `check` matches them), and the statements use the database's own spelling, so the
/// sidecar serves instead of failing every request.
#[tokio::test]
async fn column_names_are_matched_to_the_database_ignoring_case() {
    let tweak: crate::support::Tweak = Box::new(|c: &mut Config| {
        let users = &mut c.resources[0];
        let mut store = users
            .store
            .as_any()
            .downcast_ref::<SqlResource>()
            .expect("an SQL resource")
            .clone();
        store.key = "id".into();
        users.store = Arc::new(store);
        for a in &mut users.attrs {
            let AttrSource::Store(loc) = &a.source else {
                continue;
            };
            if loc.as_any().downcast_ref::<SqlField>()
                == Some(&SqlField::Column("user_login".into()))
            {
                a.source = AttrSource::Store(Arc::new(SqlField::Column("USER_LOGIN".into())));
            }
        }
    });
    let Some(s) = Sidecar::postgres("wordpress", Some(tweak)).await else {
        return;
    };
    let id = create_barbara(&s.client).await;
    let got = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["userName"], "BJensen");
    let list = s
        .client
        .get(&filtered(r#"userName eq "admin""#))
        .await
        .expect(200)
        .json();
    assert_eq!(list["Resources"][0]["id"], "1", "{list}");
}

/// WordPress keeps "nothing" as `''` in NOT NULL columns. The seeded admin's empty names read
/// as absent; clearing an attribute (Okta's PUT without it, a PATCH remove) writes `''`
/// instead of a NULL the column refuses; the user reads back without it.
#[tokio::test]
async fn empty_strings_are_no_value() {
    let s = wordpress!();
    let admin = s
        .client
        .get(&filtered("userName eq \"admin\""))
        .await
        .expect(200)
        .json();
    assert!(admin["Resources"][0].get("name").is_none(), "{admin}");
    let id = create_barbara(&s.client).await;
    let path = format!("/scim/v2/Users/{id}");
    let mut put = barbara();
    let o = put.as_object_mut().expect("object");
    o.remove("displayName");
    o.remove("emails");
    let r = s.client.put(&path, &put).await.expect(200).json();
    assert!(
        r.get("displayName").is_none() && r.get("emails").is_none(),
        "{r}"
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT display_name, user_email FROM wp_users WHERE \"ID\" = {id}"
        ))
        .await,
        vec![vec!["", ""]]
    );
    s.client
        .patch(&path, &patch_body(json!([{"op": "remove", "path": "nickName"}, {"op": "remove", "path": "name.givenName"}])))
        .await
        .expect(200);
    let r = s.client.get(&path).await.expect(200).json();
    assert_eq!(r["name"], json!({"familyName": "Jensen"}));
    assert!(r.get("nickName").is_none(), "{r}");
    let gone = s
        .client
        .get(&filtered("displayName pr and userName eq \"bjensen\""))
        .await
        .expect(200)
        .json();
    assert_eq!(gone["totalResults"], 0, "{gone}");
}
