//! What `check` says about a table several types share, and what it enforces there
//! (tests/fixtures/derived: users and groups in `principals`, told apart by `type`; e-mails
//! in `email_addresses`; issues pointing at principals with a foreign key). A partial unique
//! index on the discriminator counts as the uniqueness it is; without it, the advice is a
//! partial index the app's rows already satisfy, which runs as printed; an e-mail declared
//! unique is refused with 409 like a userName; a foreign key nothing handles on a hard
//! delete is named, with the cascade that handles it. Every test runs on SQLite, PostgreSQL
//! and MariaDB, which has no partial index: there the index is a unique generated column
//! that holds the login for users only, and the advice is that column. See: issue #9.

use std::sync::Arc;

use scim_sidecar::config::{self, Config};
use scim_sidecar::mapping::Problem;
use scim_sidecar::metrics::Metrics;
use serde_json::json;

use crate::support::{Sidecar, Store};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

both!(
    a_partial_index_on_the_discriminator_counts,
    the_advice_is_a_partial_index_the_data_satisfies,
    a_unique_email_in_a_child_table_is_a_409,
    a_foreign_key_nothing_handles_is_named,
);

/// The warnings `scim-sidecar check` prints for `config`.
async fn warnings(config: &Config) -> Vec<Problem> {
    let (_, warnings) = scim_sidecar::app::build(config, Arc::new(Metrics::new()))
        .await
        .unwrap_or_else(|p| panic!("{}", config::report(&p)));
    warnings
}

fn about<'a>(warnings: &'a [Problem], what: &str) -> Vec<&'a Problem> {
    warnings
        .iter()
        .filter(|w| w.message.contains(what))
        .collect()
}

/// `principals_login` is unique on the login only `WHERE type = 'User'`: for users that is
/// a unique index, so there is nothing to warn about, and the database itself refuses a
/// second user with the same login in other case.
async fn a_partial_index_on_the_discriminator_counts(store: Store) {
    let s = example!("derived", store);
    let w = warnings(&s.example_config("derived")).await;
    assert!(about(&w, "login").is_empty(), "{w:?}");
    let user = |name: &str| {
        json!({"schemas": [USER], "userName": name, "name": {"familyName": name},
               "emails": [{"type": "work", "value": format!("{}@example.com", name.to_lowercase())}]})
    };
    s.client
        .post("/scim/v2/Users", &user("alice"))
        .await
        .expect(201);
    s.client
        .post("/scim/v2/Users", &user("ALICE"))
        .await
        .scim_error(409, Some("uniqueness"));
}

/// Without the partial index, the warning's fix is one: `… WHERE type = 'User'`, which the
/// app's rows satisfy although its built-in rows and its groups all have an empty login. It
/// runs as printed, and the warning is gone.
async fn the_advice_is_a_partial_index_the_data_satisfies(store: Store) {
    let s = example!("derived", store);
    s.exec("INSERT INTO principals (type, login, lastname) VALUES ('Group', '', 'a'), ('Group', '', 'b');")
        .await;
    s.exec(match store {
        Store::Mariadb => "DROP INDEX principals_login ON principals;",
        _ => "DROP INDEX principals_login;",
    })
    .await;
    let config = s.example_config("derived");
    let w = warnings(&config).await;
    let login = about(&w, "login");
    assert_eq!(login.len(), 1, "{w:?}");
    let fix = login[0].fix.clone().expect("a fix");
    let partial = match store {
        Store::Mariadb => "AS (CASE WHEN type = 'User' THEN login END) VIRTUAL",
        _ => "WHERE type = 'User'",
    };
    assert!(fix.contains(partial), "{fix}");

    // Duplicates the app already holds are counted, so the integrator knows why the index
    // would not create.
    s.exec(
        "INSERT INTO principals (type, login, lastname) VALUES ('User', 'dup', 'a'), ('User', 'DUP', 'b');",
    )
    .await;
    let w = warnings(&config).await;
    assert!(
        about(&w, "login")
            .iter()
            .any(|p| p.message.contains("1 value(s)")),
        "{w:?}"
    );
    s.exec("DELETE FROM principals WHERE login = 'DUP';").await;

    s.exec(&fix).await;
    assert!(about(&warnings(&config).await, "login").is_empty());
}

/// `emails[type eq "work"].value` declared `uniqueness = "server"`: a second user with the
/// same address (in other case) is 409 `uniqueness`, for a create and for a PATCH, and
/// nothing is written; the same user may keep its own address.
async fn a_unique_email_in_a_child_table_is_a_409(store: Store) {
    let s = example!("derived", store);
    let alice = json!({"schemas": [USER], "userName": "alice", "name": {"familyName": "A"},
                       "emails": [{"type": "work", "value": "alice@example.com"}]});
    let r = s
        .client
        .post("/scim/v2/Users", &alice)
        .await
        .expect(201)
        .json();
    let alice_id = r["id"].as_str().expect("id").to_owned();
    let before = s.rows("SELECT count(*) FROM principals").await;
    let copy = json!({"schemas": [USER], "userName": "mallory", "name": {"familyName": "M"},
                      "emails": [{"type": "work", "value": "Alice@Example.com"}]});
    let d = s
        .client
        .post("/scim/v2/Users", &copy)
        .await
        .scim_error(409, Some("uniqueness"));
    assert!(d.contains("emails"), "{d}");
    assert_eq!(s.rows("SELECT count(*) FROM principals").await, before);

    let bob = json!({"schemas": [USER], "userName": "bob", "name": {"familyName": "B"},
                     "emails": [{"type": "work", "value": "bob@example.com"}]});
    let r = s
        .client
        .post("/scim/v2/Users", &bob)
        .await
        .expect(201)
        .json();
    let bob_id = r["id"].as_str().expect("id").to_owned();
    s.client
        .patch(
            &format!("/scim/v2/Users/{bob_id}"),
            &crate::support::client::patch_body(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "ALICE@example.com"}])),
        )
        .await
        .scim_error(409, Some("uniqueness"));
    assert_eq!(
        s.rows(&format!(
            "SELECT address FROM email_addresses WHERE user_id = {bob_id}"
        ))
        .await,
        vec![vec!["bob@example.com"]]
    );
    s.client
        .put(&format!("/scim/v2/Users/{alice_id}"), &alice)
        .await
        .expect(200);
}

/// `issues.assigned_to_id` references `principals`. Groups are deleted for good, so `check`
/// names the key with the `cascade` entry that handles it; users are deleted softly (the row
/// stays), so nothing is said of them. With the cascade, the warning is gone, and deleting
/// the group leaves its issues unassigned.
async fn a_foreign_key_nothing_handles_is_named(store: Store) {
    let s = example!("derived", store);
    let w = warnings(&s.example_config("derived")).await;
    let fk = about(&w, "issues.assigned_to_id");
    assert_eq!(fk.len(), 1, "once, for the groups:\n{w:?}");
    let fix = fk[0].fix.clone().expect("a fix");
    assert!(
        fix.contains("table = \"issues\", column = \"assigned_to_id\""),
        "{fix}"
    );

    let tweak: crate::support::Tweak = Box::new(|c: &mut Config| {
        use scim_sidecar::backend::sql::config::{Cascade, SqlResource};
        let groups = c
            .resources
            .iter_mut()
            .find(|r| r.name == "Group")
            .expect("groups");
        let mut store = groups
            .store
            .as_any()
            .downcast_ref::<SqlResource>()
            .expect("an SQL resource")
            .clone();
        store.cascade.push(Cascade {
            table: "issues".into(),
            column: "assigned_to_id".into(),
            null: true,
            origin: groups.origin.clone(),
        });
        groups.store = Arc::new(store);
    });
    let Some(s) = Sidecar::example("derived", store, Some(tweak)).await else {
        return;
    };
    let r = s
        .client
        .post("/scim/v2/Groups", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "ops"}))
        .await
        .expect(201)
        .json();
    let ops = r["id"].as_str().expect("id").to_owned();
    s.exec(&format!(
        "INSERT INTO issues (id, subject, assigned_to_id) VALUES (1, 'disk full', {ops});"
    ))
    .await;
    s.client
        .delete(&format!("/scim/v2/Groups/{ops}"))
        .await
        .expect(204);
    assert_eq!(
        s.rows("SELECT subject, coalesce(CAST(assigned_to_id AS TEXT), '-') FROM issues")
            .await,
        vec![vec!["disk full", "-"]]
    );
}
