//! An app that derives rows from group membership (tests/fixtures/derived: a user in a group
//! becomes a member of the group's projects, with the group's roles marked inherited, as
//! Redmine does). Hooks in the mapping keep those rows in step with SCIM's memberships in the
//! same transaction; cascades and hooks clean up what a deleted group leaves; a child table's
//! NOT NULL timestamps are written by the sidecar; built-in rows are never touched. Every test
//! runs on SQLite and PostgreSQL and reads the app's own tables. See: issue #9.

use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::{Sidecar, Store};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

both!(
    membership_grants_and_revokes_derived_rows,
    deleting_a_group_leaves_no_orphans,
    deleting_a_user_leaves_its_groups_and_their_grants,
    child_rows_get_their_timestamps,
    a_refused_hook_undoes_the_whole_write,
    a_put_without_active_keeps_the_account_locked,
);

async fn user(s: &Sidecar, name: &str) -> String {
    s.created(
        "/scim/v2/Users",
        &json!({"schemas": [USER], "userName": name, "name": {"familyName": name},
                "emails": [{"type": "work", "value": format!("{name}@example.com")}]}),
    )
    .await
}

/// A group that is a member of project 1 with role 3 (set up in the app, as its admin UI
/// would).
async fn group_in_project(s: &Sidecar, name: &str) -> String {
    let id = s.group(name).await;
    s.exec(&format!(
        "INSERT INTO members (user_id, project_id) VALUES ({id}, 1);
         INSERT INTO member_roles (member_id, role_id) SELECT id, 3 FROM members WHERE user_id = {id};"
    ))
    .await;
    id
}

/// The roles a user has in project 1, and from where (`-` when not inherited).
async fn roles(s: &Sidecar, user: &str) -> Vec<Vec<String>> {
    s.rows(&format!(
        "SELECT mr.role_id, CASE WHEN mr.inherited_from IS NULL THEN '-' ELSE 'inherited' END
         FROM members m JOIN member_roles mr ON mr.member_id = m.id
         WHERE m.user_id = {user} AND m.project_id = 1 ORDER BY 1"
    ))
    .await
}

/// The built-in rows, as the app created them.
async fn built_in(s: &Sidecar) -> Vec<Vec<String>> {
    s.rows("SELECT id, type, login, lastname, status FROM principals WHERE type NOT IN ('User', 'Group') ORDER BY id")
        .await
}

/// Adding a user to a group grants it the group's project roles, marked inherited; removing
/// it takes them away and drops the project membership it no longer needs. Built-in rows are
/// never listed or touched.
async fn membership_grants_and_revokes_derived_rows(store: Store) {
    let s = example!("derived", store);
    let before = built_in(&s).await;
    let devs = group_in_project(&s, "devs").await;
    let alice = user(&s, "alice").await;
    assert!(roles(&s, &alice).await.is_empty());

    s.patch_members(&devs, "add", &alice).await;
    assert_eq!(roles(&s, &alice).await, vec![vec!["3", "inherited"]]);
    // Adding again changes nothing (hooks are idempotent).
    s.patch_members(&devs, "add", &alice).await;
    assert_eq!(roles(&s, &alice).await, vec![vec!["3", "inherited"]]);

    s.patch_members(&devs, "remove", &alice).await;
    assert!(roles(&s, &alice).await.is_empty());
    assert_eq!(
        s.one(&format!(
            "SELECT count(*) FROM members WHERE user_id = {alice}"
        ))
        .await,
        "0"
    );

    // A whole replacement (Okta's push) grants and revokes by the difference.
    let bob = user(&s, "bob").await;
    s.patch_members(&devs, "add", &alice).await;
    s.client
        .patch(
            &format!("/scim/v2/Groups/{devs}"),
            &patch_body(json!([{"op": "replace", "path": "members", "value": [{"value": bob}]}])),
        )
        .await
        .expect(204);
    assert!(roles(&s, &alice).await.is_empty());
    assert_eq!(roles(&s, &bob).await, vec![vec!["3", "inherited"]]);

    let listed = s.client.get("/scim/v2/Groups").await.expect(200).json();
    assert_eq!(listed["totalResults"], 1, "{listed}");
    let users = s.client.get("/scim/v2/Users").await.expect(200).json();
    assert_eq!(users["totalResults"], 2, "{users}");
    assert_eq!(built_in(&s).await, before);
}

/// Deleting a group revokes what its members inherited from it, removes its own project
/// memberships (hook and cascade) and its member list: nothing in the app points at it.
async fn deleting_a_group_leaves_no_orphans(store: Store) {
    let s = example!("derived", store);
    let devs = group_in_project(&s, "devs").await;
    let alice = user(&s, "alice").await;
    s.patch_members(&devs, "add", &alice).await;
    s.client
        .delete(&format!("/scim/v2/Groups/{devs}"))
        .await
        .expect(204);
    assert!(roles(&s, &alice).await.is_empty());
    for q in [
        format!("SELECT count(*) FROM principals WHERE id = {devs}"),
        format!("SELECT count(*) FROM members WHERE user_id = {devs}"),
        format!("SELECT count(*) FROM groups_users WHERE group_id = {devs}"),
        "SELECT count(*) FROM member_roles mr WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.id = mr.member_id)".to_owned(),
        "SELECT count(*) FROM member_roles mr WHERE mr.inherited_from IS NOT NULL AND NOT EXISTS (SELECT 1 FROM member_roles g WHERE g.id = mr.inherited_from)".to_owned(),
    ] {
        assert_eq!(s.one(&q).await, "0", "{q}");
    }
}

/// Deleting a user (softly: the row stays, locked) takes it out of its groups the way a
/// PATCH would, so what it inherited is revoked too; its watcher rows stay, as the row does.
/// A create with its userName brings it back under the same id, unlocked, in no group.
async fn deleting_a_user_leaves_its_groups_and_their_grants(store: Store) {
    let s = example!("derived", store);
    let devs = group_in_project(&s, "devs").await;
    let alice = user(&s, "alice").await;
    s.exec(&format!(
        "INSERT INTO watchers (user_id, item) VALUES ({alice}, 'issue 1')"
    ))
    .await;
    s.patch_members(&devs, "add", &alice).await;
    s.client
        .delete(&format!("/scim/v2/Users/{alice}"))
        .await
        .expect(204);
    assert_eq!(
        s.rows(&format!("SELECT status FROM principals WHERE id = {alice}"))
            .await,
        vec![vec!["3"]]
    );
    assert!(roles(&s, &alice).await.is_empty());
    assert_eq!(
        s.one(&format!(
            "SELECT count(*) FROM groups_users WHERE user_id = {alice}"
        ))
        .await,
        "0"
    );
    assert_eq!(
        s.one(&format!(
            "SELECT count(*) FROM watchers WHERE user_id = {alice}"
        ))
        .await,
        "1"
    );
    let g = s
        .client
        .get(&format!("/scim/v2/Groups/{devs}"))
        .await
        .expect(200)
        .json();
    assert!(g["members"].as_array().is_none_or(Vec::is_empty), "{g}");
    assert_eq!(user(&s, "alice").await, alice);
    assert_eq!(
        s.rows(&format!("SELECT status FROM principals WHERE id = {alice}"))
            .await,
        vec![vec!["1"]]
    );
}

/// The e-mail rows' NOT NULL timestamps are written by the sidecar (`set` in the map entry):
/// both when the row is created, `updated_on` again when the address changes.
async fn child_rows_get_their_timestamps(store: Store) {
    let s = example!("derived", store);
    let alice = user(&s, "alice").await;
    let first = s
        .rows(&format!(
            "SELECT address, created_on IS NOT NULL, updated_on FROM email_addresses WHERE user_id = {alice}"
        ))
        .await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0][0], "alice@example.com");
    let before_update = first[0][2].clone();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    s.client
        .patch(
            &format!("/scim/v2/Users/{alice}"),
            &patch_body(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "alice@corp.example"}])),
        )
        .await
        .expect(200);
    let after = s
        .rows(&format!(
            "SELECT address, updated_on FROM email_addresses WHERE user_id = {alice}"
        ))
        .await;
    assert_eq!(after[0][0], "alice@corp.example");
    assert_ne!(after[0][1], before_update, "updated_on follows the change");
    let u: Value = s
        .client
        .get(&format!("/scim/v2/Users/{alice}"))
        .await
        .expect(200)
        .json();
    assert_eq!(u["emails"][0]["value"], "alice@corp.example");
}

/// A hook's statement that the app's own rule refuses (the audit table's CHECK) undoes the
/// whole write: the create leaves no row, no e-mail, no audit line; the rename leaves the
/// user as it was. The client is told the application refused the change, not which column.
async fn a_refused_hook_undoes_the_whole_write(store: Store) {
    let s = example!("derived", store);
    let alice = user(&s, "alice").await;
    let audit = format!("SELECT login FROM audit WHERE user_id = {alice}");
    assert_eq!(s.rows(&audit).await, vec![vec!["alice"]]);
    let tables = "SELECT (SELECT count(*) FROM principals) || '/' || (SELECT count(*) FROM email_addresses) || '/' || (SELECT count(*) FROM audit)";
    let before = s.rows(tables).await;

    let r = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "root", "name": {"familyName": "root"},
                    "emails": [{"type": "work", "value": "root@example.com"}]}),
        )
        .await
        .expect(400)
        .json();
    assert_eq!(r["scimType"], "invalidValue", "{r}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap_or("")
            .contains("the application refused the change"),
        "{r}"
    );
    assert_eq!(s.rows(tables).await, before);

    s.client
        .patch(
            &format!("/scim/v2/Users/{alice}"),
            &patch_body(json!([{"op": "replace", "path": "userName", "value": "root"}])),
        )
        .await
        .expect(400);
    assert_eq!(s.rows(tables).await, before);
    assert_eq!(
        s.rows(&format!("SELECT login FROM principals WHERE id = {alice}"))
            .await,
        vec![vec!["alice"]]
    );
}

/// Okta's PUT carries no `active` when the profile changes; `status` is NOT NULL with the
/// app's default 1 (active). The PUT keeps the stored state, so a locked account stays
/// locked (writing the column's default would unlock it; writing NULL was a raw 400).
async fn a_put_without_active_keeps_the_account_locked(store: Store) {
    let s = example!("derived", store);
    let alice = user(&s, "alice").await;
    let path = format!("/scim/v2/Users/{alice}");
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await
        .expect(200);
    let status = format!("SELECT status, lastname FROM principals WHERE id = {alice}");
    assert_eq!(s.rows(&status).await, vec![vec!["3", "alice"]]);
    let put = json!({"schemas": [USER], "userName": "alice", "name": {"familyName": "Smith"},
                     "emails": [{"type": "work", "value": "alice@example.com"}]});
    let r = s.client.put(&path, &put).await.expect(200).json();
    assert_eq!(r["active"], false, "{r}");
    assert_eq!(s.rows(&status).await, vec![vec!["3", "Smith"]]);
}
