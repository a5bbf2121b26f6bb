//! `scim-sidecar explain`: one SCIM request through the real service and stores, showing the
//! statements sent (with their values) and the answer, and leaving the store exactly as it
//! was: every transaction is rolled back. Each test runs on SQLite and PostgreSQL and reads
//! the app's tables after the explained request. See: issue #12 (dry run).

use http::Method;
use scim_sidecar::explain::{self, Explained};
use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::{Sidecar, Store};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

both!(
    a_create_is_shown_and_not_written,
    a_membership_change_shows_its_hooks_and_grants_nothing,
    a_clash_is_answered_as_the_client_would_see_it,
);

/// Runs `method path body` through `explain` on the example the sidecar serves, with its
/// config as `scim-sidecar explain` reads it.
async fn explained(
    s: &Sidecar,
    example: &str,
    method: Method,
    path: &str,
    body: Value,
) -> Explained {
    let config = s.example_config(example);
    let (service, _warnings) = match scim_sidecar::app::service_only(&config).await {
        Ok(x) => x,
        Err(p) => panic!("{}", scim_sidecar::config::report(&p)),
    };
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    explain::run(
        &service,
        "http://localhost/scim/v2",
        &method,
        path,
        body.into(),
    )
    .await
}

fn texts(e: &Explained) -> Vec<&str> {
    e.steps.iter().map(|s| s.text.as_str()).collect()
}

/// A create shows the INSERT of the row and of its e-mail child row with the values the
/// client sent, and the 201 the client would get, id included; afterwards neither row
/// exists, and a real create of the same userName succeeds.
async fn a_create_is_shown_and_not_written(store: Store) {
    let s = example!("postgres", store);
    let before = s.one("SELECT count(*) FROM principals").await;
    let user = json!({"schemas": [USER], "userName": "ann@example.com",
                      "displayName": "Ann O'Hara",
                      "name": {"givenName": "Ann", "familyName": "O'Hara"},
                      "emails": [{"type": "work", "value": "ann.ohara@example.com", "primary": true}],
                      "active": true});
    let e = explained(&s, "postgres", Method::POST, "/Users", user.clone()).await;

    assert_eq!(e.response.status, 201, "{}", explain::report(&e));
    let report = explain::report(&e);
    let insert = e
        .steps
        .iter()
        .find(|s| s.text.starts_with("INSERT INTO") || s.text.starts_with("WITH"))
        .unwrap_or_else(|| panic!("no INSERT: {report}"));
    assert!(insert.text.contains("principals"), "{report}");
    assert!(
        insert.params.contains(&"'ann@example.com'".to_owned()),
        "the userName is shown as a bound value: {report}"
    );
    assert!(
        e.steps.iter().any(|s| s.text.contains("user_emails")
            && s.params.contains(&"'ann.ohara@example.com'".to_owned())),
        "the e-mail's child row is shown: {report}"
    );
    assert_eq!(texts(&e).last(), Some(&"ROLLBACK"), "{report}");
    assert!(
        report.contains("\"userName\": \"ann@example.com\""),
        "{report}"
    );
    assert!(report.contains("nothing was written"), "{report}");

    assert_eq!(s.one("SELECT count(*) FROM principals").await, before);
    assert_eq!(
        s.one("SELECT count(*) FROM user_emails WHERE address = 'ann.ohara@example.com'")
            .await,
        "0"
    );
    s.client.post("/scim/v2/Users", &user).await.expect(201);
}

/// Adding a member to a Redmine group shows the join-table row and the hooks that derive
/// project roles from it; after it the group has no member and the user no role.
async fn a_membership_change_shows_its_hooks_and_grants_nothing(store: Store) {
    let s = example!("redmine", store);
    s.exec(
        "INSERT INTO projects (name, identifier, is_public, status, lft, rgt, created_on, updated_on)
             VALUES ('Apollo', 'apollo', false, 1, 1, 2, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    )
    .await;
    let user = s
        .created(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "dora",
                    "name": {"givenName": "Dora", "familyName": "Tester"},
                    "emails": [{"type": "work", "value": "dora@example.com"}]}),
        )
        .await;
    let group = s.group("Engineering").await;
    let project = s
        .one("SELECT id FROM projects WHERE identifier = 'apollo'")
        .await;
    s.exec(&format!(
        "INSERT INTO members (user_id, project_id, created_on, mail_notification)
             VALUES ({group}, {project}, CURRENT_TIMESTAMP, false);
         INSERT INTO member_roles (member_id, role_id)
             SELECT id, 4 FROM members WHERE user_id = {group} AND project_id = {project};"
    ))
    .await;
    let counts = async || {
        let mut out = Vec::new();
        for table in ["groups_users", "members", "member_roles"] {
            out.push(s.one(&format!("SELECT count(*) FROM {table}")).await);
        }
        out
    };
    let before = counts().await;
    assert_eq!(before, ["0", "1", "1"]);

    let add = patch_body(json!([{"op": "add", "path": "members", "value": [{"value": user}]}]));
    let e = explained(
        &s,
        "redmine",
        Method::PATCH,
        &format!("/Groups/{group}"),
        add,
    )
    .await;
    let report = explain::report(&e);
    assert!(e.response.status.is_success(), "{report}");
    assert!(
        e.steps.iter().any(|s| s.text.contains("INSERT INTO")
            && s.text.contains("groups_users")
            && s.params.iter().any(|p| p.contains(user.as_str()))),
        "the join-table row: {report}"
    );
    assert!(
        e.steps
            .iter()
            .any(|s| s.text.contains("member_roles") && s.text.contains("INSERT")),
        "the hook that grants the group's roles: {report}"
    );
    assert_eq!(texts(&e).last(), Some(&"ROLLBACK"), "{report}");

    assert_eq!(counts().await, before, "{report}");
    let g = s
        .client
        .get(&format!("/scim/v2/Groups/{group}"))
        .await
        .expect(200)
        .json();
    assert!(g["members"].as_array().is_none_or(|m| m.is_empty()), "{g}");
}

/// A create whose userName is taken shows the statements up to the clash and the 409 the
/// client would get; nothing changes.
async fn a_clash_is_answered_as_the_client_would_see_it(store: Store) {
    let s = example!("postgres", store);
    let user = json!({"schemas": [USER], "userName": "bob@example.com", "displayName": "Bob", "active": true});
    s.client.post("/scim/v2/Users", &user).await.expect(201);
    let before = s.rows("SELECT * FROM principals ORDER BY id").await;

    let e = explained(&s, "postgres", Method::POST, "/Users", user).await;
    let report = explain::report(&e);
    assert_eq!(e.response.status, 409, "{report}");
    assert!(report.contains("uniqueness"), "{report}");
    assert!(!e.steps.is_empty(), "{report}");
    assert_eq!(s.rows("SELECT * FROM principals ORDER BY id").await, before);
}
