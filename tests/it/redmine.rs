//! Redmine, through `examples/redmine`: the sidecar in front of Redmine's own tables, as an
//! integrator would map them. Users and groups share `users` (by `type`) with Redmine's
//! built-in principals; a user's default e-mail is an `email_addresses` row with NOT NULL
//! timestamps; group membership (`groups_users`) is mirrored by Redmine's code into project
//! memberships (`members`, `member_roles` with `inherited_from`), which the mapping's hooks
//! keep in step. Every test runs on SQLite and PostgreSQL and reads the tables the way
//! Redmine itself reads them. See: issue #9.

use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::{Sidecar, Store};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

both!(
    a_created_user_can_sign_in_and_is_listed,
    built_in_principals_stay_hidden_and_untouched,
    group_membership_grants_and_revokes_inherited_roles,
    deleting_a_group_leaves_no_orphans,
    deleting_a_user_locks_it_and_a_create_revives_it,
    what_redmine_validates_is_validated_first,
    a_hard_delete_leaves_other_records_custom_values,
    check_advises_what_redmine_needs_once,
);

/// Roles of a fresh install (examples/redmine/schema.sql): Manager 3, Developer 4, Reporter 5.
const MANAGER: &str = "3";
const DEVELOPER: &str = "4";
const REPORTER: &str = "5";

fn barbara() -> Value {
    json!({
        "schemas": [USER, ENT],
        "userName": "bjensen",
        "externalId": "0b6f5c1e-entra-object-id",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"type": "work", "value": "bjensen@example.com", "primary": true}],
        "title": "Tour Guide",
        ENT: {"department": "Tours"},
        "active": true
    })
}

async fn user(s: &Sidecar, login: &str) -> String {
    s.created(
        "/scim/v2/Users",
        &json!({"schemas": [USER], "userName": login,
                "name": {"givenName": login, "familyName": "Tester"},
                "emails": [{"type": "work", "value": format!("{login}@example.com")}]}),
    )
    .await
}

/// Two projects, as an administrator creates them in Redmine's UI; their ids.
async fn projects(s: &Sidecar) -> (String, String) {
    s.exec(
        "INSERT INTO projects (name, identifier, is_public, status, lft, rgt, created_on, updated_on) VALUES
            ('Apollo', 'apollo', false, 1, 1, 2, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP),
            ('Gemini', 'gemini', false, 1, 3, 4, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    )
    .await;
    (
        s.one("SELECT id FROM projects WHERE identifier = 'apollo'")
            .await,
        s.one("SELECT id FROM projects WHERE identifier = 'gemini'")
            .await,
    )
}

/// Makes `principal` a member of `project` with `role`, as Redmine's "Members" settings tab
/// does (a `members` row and a `member_roles` row).
async fn grant(s: &Sidecar, principal: &str, project: &str, role: &str) {
    s.exec(&format!(
        "INSERT INTO members (user_id, project_id, created_on, mail_notification)
             VALUES ({principal}, {project}, CURRENT_TIMESTAMP, false);
         INSERT INTO member_roles (member_id, role_id)
             SELECT id, {role} FROM members WHERE user_id = {principal} AND project_id = {project};"
    ))
    .await;
}

/// What Redmine shows on a project's member list for a user: (project, role, where the role
/// comes from: `direct`, or the name of the group it is inherited from), in order.
async fn roles(s: &Sidecar, user: &str) -> Vec<Vec<String>> {
    s.rows(&format!(
        "SELECT m.project_id, mr.role_id, COALESCE(g.lastname, 'direct')
         FROM members m JOIN member_roles mr ON mr.member_id = m.id
         LEFT JOIN member_roles gr ON gr.id = mr.inherited_from
         LEFT JOIN members gm ON gm.id = gr.member_id
         LEFT JOIN users g ON g.id = gm.user_id
         WHERE m.user_id = {user} ORDER BY 1, 2, 3"
    ))
    .await
}

/// Rows nothing in Redmine points at any more: member_roles of no member, inherited roles
/// whose source is gone, memberships of no principal, group memberships of no group or user,
/// watchers and custom values of no principal.
async fn orphans(s: &Sidecar) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (what, q) in [
        (
            "member_roles of no member",
            "SELECT count(*) FROM member_roles mr WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.id = mr.member_id)",
        ),
        (
            "roles inherited from nothing",
            "SELECT count(*) FROM member_roles mr WHERE mr.inherited_from IS NOT NULL AND NOT EXISTS (SELECT 1 FROM member_roles g WHERE g.id = mr.inherited_from)",
        ),
        (
            "members without a role",
            "SELECT count(*) FROM members m WHERE NOT EXISTS (SELECT 1 FROM member_roles mr WHERE mr.member_id = m.id)",
        ),
        (
            "members of no principal",
            "SELECT count(*) FROM members m WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = m.user_id)",
        ),
        (
            "groups_users of no group",
            "SELECT count(*) FROM groups_users gu WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = gu.group_id AND u.type = 'Group')",
        ),
        (
            "groups_users of no user",
            "SELECT count(*) FROM groups_users gu WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = gu.user_id AND u.type = 'User')",
        ),
        (
            "watchers of no principal",
            "SELECT count(*) FROM watchers w WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = w.user_id)",
        ),
        (
            "custom values of no principal",
            "SELECT count(*) FROM custom_values c WHERE c.customized_type = 'Principal' AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = c.customized_id)",
        ),
    ] {
        out.push((what.to_owned(), s.one(q).await));
    }
    out
}

fn none(what: &[&str]) -> Vec<(String, String)> {
    what.iter()
        .map(|w| (w.to_string(), "0".to_owned()))
        .collect()
}

const ORPHANS: [&str; 8] = [
    "member_roles of no member",
    "roles inherited from nothing",
    "members without a role",
    "members of no principal",
    "groups_users of no group",
    "groups_users of no user",
    "watchers of no principal",
    "custom values of no principal",
];

/// Redmine's own principals and roles, as a fresh install has them: the administrator,
/// the anonymous user, the two built-in groups, the five roles.
async fn built_in(s: &Sidecar) -> Vec<Vec<String>> {
    let mut rows = s
        .rows(
            "SELECT id, type, login, firstname, lastname, status, mail_notification
             FROM users WHERE type <> 'User' OR login = 'admin' ORDER BY id",
        )
        .await;
    rows.extend(
        s.rows("SELECT id, user_id, address FROM email_addresses WHERE user_id = 1")
            .await,
    );
    rows.extend(
        s.rows("SELECT id, name, builtin, position FROM roles ORDER BY id")
            .await,
    );
    rows
}

/// A create writes what Redmine needs to list the user and let it sign in: a `users` row of
/// type User, active, with both names, Redmine's default notification setting and an empty
/// password (LDAP/SSO or "Lost password" set one); the address as the default
/// `email_addresses` row, timestamps filled, notifications on; title and department as user
/// custom field values. Redmine's login lookup (`User.find_by_login`, case-insensitive)
/// finds it, and so does SCIM's userName filter, case-insensitively too.
async fn a_created_user_can_sign_in_and_is_listed(store: Store) {
    let s = example!("redmine", store);
    let created = s
        .client
        .post("/scim/v2/Users", &barbara())
        .await
        .expect(201)
        .json();
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(
        s.rows(&format!(
            "SELECT type, login, firstname, lastname, status, mail_notification, hashed_password,
                    CASE WHEN admin THEN 'admin' ELSE 'not admin' END AS admin,
                    CASE WHEN created_on IS NOT NULL AND updated_on IS NOT NULL THEN 'dated' ELSE 'undated' END AS dated
             FROM users WHERE id = {id}"
        ))
        .await,
        vec![vec![
            "User",
            "bjensen",
            "Barbara",
            "Jensen",
            "1",
            "only_my_events",
            "",
            "not admin",
            "dated"
        ]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT address, CASE WHEN is_default THEN 'default' ELSE 'other' END AS is_default,
                    CASE WHEN notify THEN 'notify' ELSE 'silent' END AS notify,
                    CASE WHEN created_on IS NOT NULL AND updated_on IS NOT NULL THEN 'dated' ELSE 'undated' END AS dated
             FROM email_addresses WHERE user_id = {id}"
        ))
        .await,
        vec![vec!["bjensen@example.com", "default", "notify", "dated"]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT f.name, v.value FROM custom_values v JOIN custom_fields f ON f.id = v.custom_field_id
             WHERE v.customized_type = 'Principal' AND v.customized_id = {id} ORDER BY f.position"
        ))
        .await,
        vec![vec!["Job title", "Tour Guide"], vec!["Department", "Tours"]]
    );
    // User.active.find_by_login (app/models/user.rb): type User, status 1, login compared
    // case-insensitively.
    assert_eq!(
        s.rows("SELECT id FROM users WHERE type = 'User' AND status = 1 AND LOWER(login) = LOWER('BJensen')")
            .await,
        vec![vec![id.clone()]]
    );
    let found = s
        .client
        .get("/scim/v2/Users?filter=userName%20eq%20%22BJENSEN%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 1, "{found}");
    let got = &found["Resources"][0];
    for attr in [
        "userName",
        "externalId",
        "name",
        "emails",
        "title",
        ENT,
        "active",
    ] {
        let want = &barbara()[attr];
        if attr == "emails" {
            assert_eq!(got[attr][0]["value"], want[0]["value"], "{got}");
        } else {
            assert_eq!(&got[attr], want, "{attr}: {got}");
        }
    }
    // Redmine's login is unique, case-insensitively.
    s.client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "BJENSEN", "name": {"givenName": "B", "familyName": "J"}}),
        )
        .await
        .scim_error(409, Some("uniqueness"));
}

/// Redmine's anonymous user, its "Anonymous users" and "Non member users" groups and its
/// roles are never listed, found, changed or deleted through SCIM: their ids answer 404 to
/// every operation, and after a round of creates, changes and deletes their rows are exactly
/// as the install left them.
async fn built_in_principals_stay_hidden_and_untouched(store: Store) {
    let s = example!("redmine", store);
    let before = built_in(&s).await;
    let anonymous = s
        .one("SELECT id FROM users WHERE type = 'AnonymousUser'")
        .await;
    let builtin_groups: Vec<String> = s
        .rows("SELECT id FROM users WHERE type IN ('GroupAnonymous', 'GroupNonMember') ORDER BY id")
        .await
        .into_iter()
        .map(|mut r| r.remove(0))
        .collect();
    assert_eq!(builtin_groups.len(), 2);

    let users = s.client.get("/scim/v2/Users").await.expect(200).json();
    let logins: Vec<&str> = users["Resources"]
        .as_array()
        .expect("Resources")
        .iter()
        .filter_map(|u| u["userName"].as_str())
        .collect();
    assert_eq!(logins, vec!["admin"], "{users}");
    let groups = s.client.get("/scim/v2/Groups").await.expect(200).json();
    assert_eq!(groups["totalResults"], 0, "{groups}");
    let by_name = s
        .client
        .get("/scim/v2/Groups?filter=displayName%20eq%20%22Non%20member%20users%22")
        .await
        .expect(200)
        .json();
    assert_eq!(by_name["totalResults"], 0, "{by_name}");

    let alice = user(&s, "alice").await;
    s.client
        .get(&format!("/scim/v2/Users/{anonymous}"))
        .await
        .scim_error(404, None);
    s.client
        .patch(
            &format!("/scim/v2/Users/{anonymous}"),
            &patch_body(json!([{"op": "replace", "path": "active", "value": true}])),
        )
        .await
        .scim_error(404, None);
    s.client
        .delete(&format!("/scim/v2/Users/{anonymous}"))
        .await
        .scim_error(404, None);
    for g in &builtin_groups {
        let path = format!("/scim/v2/Groups/{g}");
        s.client.get(&path).await.scim_error(404, None);
        s.client
            .patch(
                &path,
                &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": alice}]}])),
            )
            .await
            .scim_error(404, None);
        s.client.delete(&path).await.scim_error(404, None);
    }
    // A built-in group is no member either.
    let devs = s.group("Developers").await;
    let r = s
        .client
        .patch(
            &format!("/scim/v2/Groups/{devs}"),
            &patch_body(
                json!([{"op": "add", "path": "members", "value": [{"value": builtin_groups[0]}]}]),
            ),
        )
        .await;
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    s.client
        .delete(&format!("/scim/v2/Users/{alice}"))
        .await
        .expect(204);
    s.client
        .delete(&format!("/scim/v2/Groups/{devs}"))
        .await
        .expect(204);
    assert_eq!(
        s.one(&format!(
            "SELECT count(*) FROM groups_users WHERE user_id IN ({anonymous}, {}, {})",
            builtin_groups[0], builtin_groups[1]
        ))
        .await,
        "0"
    );
    assert_eq!(built_in(&s).await, before);
}

/// Group#user_added, in SQL: a user added to a group becomes a member of each of the
/// group's projects with the group's roles, each marked inherited from the group; where it
/// already was a member in its own right, the inherited role joins its own. Removing it
/// takes exactly the inherited roles away, and the project memberships left without a role;
/// its own roles stay. Okta's full replacement of the member list grants and revokes by the
/// difference.
async fn group_membership_grants_and_revokes_inherited_roles(store: Store) {
    let s = example!("redmine", store);
    let (apollo, gemini) = projects(&s).await;
    let devs = s.group("Developers").await;
    grant(&s, &devs, &apollo, DEVELOPER).await;
    grant(&s, &devs, &gemini, REPORTER).await;
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    // Bob manages Gemini in his own right.
    grant(&s, &bob, &gemini, MANAGER).await;

    s.patch_members(&devs, "add", &alice).await;
    let inherited = |p: &str, r: &str| vec![p.to_owned(), r.to_owned(), "Developers".to_owned()];
    assert_eq!(
        roles(&s, &alice).await,
        vec![inherited(&apollo, DEVELOPER), inherited(&gemini, REPORTER)]
    );
    // Adding again grants nothing twice.
    s.patch_members(&devs, "add", &alice).await;
    assert_eq!(roles(&s, &alice).await.len(), 2);

    s.patch_members(&devs, "add", &bob).await;
    let direct = |p: &str, r: &str| vec![p.to_owned(), r.to_owned(), "direct".to_owned()];
    assert_eq!(
        roles(&s, &bob).await,
        vec![
            inherited(&apollo, DEVELOPER),
            direct(&gemini, MANAGER),
            inherited(&gemini, REPORTER)
        ]
    );
    assert_eq!(
        s.one(&format!(
            "SELECT count(*) FROM members WHERE user_id = {bob}"
        ))
        .await,
        "2",
        "one membership per project"
    );

    s.patch_members(&devs, "remove", &bob).await;
    assert_eq!(roles(&s, &bob).await, vec![direct(&gemini, MANAGER)]);
    assert_eq!(roles(&s, &alice).await.len(), 2, "alice keeps hers");

    // Okta's push: the member list becomes exactly bob.
    s.client
        .patch(
            &format!("/scim/v2/Groups/{devs}"),
            &patch_body(json!([{"op": "replace", "path": "members", "value": [{"value": bob}]}])),
        )
        .await
        .expect(204);
    assert!(roles(&s, &alice).await.is_empty());
    assert_eq!(
        s.one(&format!(
            "SELECT count(*) FROM members WHERE user_id = {alice}"
        ))
        .await,
        "0"
    );
    assert_eq!(
        roles(&s, &bob).await,
        vec![
            inherited(&apollo, DEVELOPER),
            direct(&gemini, MANAGER),
            inherited(&gemini, REPORTER)
        ]
    );
    assert_eq!(orphans(&s).await, none(&ORPHANS));
}

/// Group#destroy, in SQL: deleting a group removes the row and its memberships, revokes
/// what its members inherited from it (their project memberships left without a role go
/// too), and removes its own project memberships, watcher rows and custom values. Nothing
/// in Redmine points at it afterwards; its members are unharmed.
async fn deleting_a_group_leaves_no_orphans(store: Store) {
    let s = example!("redmine", store);
    let (apollo, _) = projects(&s).await;
    let devs = s.group("Developers").await;
    let ops = s.group("Operations").await;
    grant(&s, &devs, &apollo, DEVELOPER).await;
    grant(&s, &ops, &apollo, REPORTER).await;
    let alice = user(&s, "alice").await;
    s.patch_members(&devs, "add", &alice).await;
    s.patch_members(&ops, "add", &alice).await;
    s.exec(&format!(
        "INSERT INTO watchers (watchable_type, watchable_id, user_id) VALUES ('Issue', 1, {devs});
         INSERT INTO custom_values (customized_type, customized_id, custom_field_id, value)
             VALUES ('Principal', {devs}, 1, 'Team');"
    ))
    .await;

    s.client
        .delete(&format!("/scim/v2/Groups/{devs}"))
        .await
        .expect(204);
    s.client
        .get(&format!("/scim/v2/Groups/{devs}"))
        .await
        .scim_error(404, None);
    assert_eq!(
        s.one(&format!("SELECT count(*) FROM users WHERE id = {devs}"))
            .await,
        "0"
    );
    assert_eq!(
        roles(&s, &alice).await,
        vec![vec![
            apollo.clone(),
            REPORTER.to_owned(),
            "Operations".to_owned()
        ]],
        "what Operations gave stays"
    );
    assert_eq!(orphans(&s).await, none(&ORPHANS));

    s.client
        .delete(&format!("/scim/v2/Groups/{ops}"))
        .await
        .expect(204);
    assert!(roles(&s, &alice).await.is_empty());
    assert_eq!(
        s.one(&format!(
            "SELECT count(*) FROM members WHERE user_id = {alice}"
        ))
        .await,
        "0"
    );
    assert_eq!(orphans(&s).await, none(&ORPHANS));
    let a = s
        .client
        .get(&format!("/scim/v2/Users/{alice}"))
        .await
        .expect(200)
        .json();
    assert_eq!(a["active"], true);
}

/// Deleting a user locks it (status 3), as Redmine's "Lock" button does: the row, its
/// e-mail and its own project roles stay; its sessions and password-recovery tokens go
/// (User#destroy_tokens), its API key stays; it leaves its groups, and with them the roles
/// it inherited. For SCIM it is gone: 404 to GET, PATCH and DELETE, absent from lists and
/// filters. A later create with its login (any case) unlocks the same row under the same id.
async fn deleting_a_user_locks_it_and_a_create_revives_it(store: Store) {
    let s = example!("redmine", store);
    let (apollo, gemini) = projects(&s).await;
    let devs = s.group("Developers").await;
    grant(&s, &devs, &apollo, DEVELOPER).await;
    let alice = user(&s, "alice").await;
    grant(&s, &alice, &gemini, MANAGER).await;
    s.patch_members(&devs, "add", &alice).await;
    s.exec(&format!(
        "INSERT INTO tokens (user_id, action, value, created_on) VALUES
             ({alice}, 'autologin', 'a0000000000000000000000000000000000000a1', CURRENT_TIMESTAMP),
             ({alice}, 'session', 'a0000000000000000000000000000000000000a2', CURRENT_TIMESTAMP),
             ({alice}, 'api', 'a0000000000000000000000000000000000000a3', CURRENT_TIMESTAMP);
         INSERT INTO watchers (watchable_type, watchable_id, user_id) VALUES ('Issue', 1, {alice});"
    ))
    .await;

    s.client
        .delete(&format!("/scim/v2/Users/{alice}"))
        .await
        .expect(204);
    assert_eq!(
        s.rows(&format!(
            "SELECT type, login, status FROM users WHERE id = {alice}"
        ))
        .await,
        vec![vec!["User", "alice", "3"]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT address FROM email_addresses WHERE user_id = {alice}"
        ))
        .await,
        vec![vec!["alice@example.com"]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT action FROM tokens WHERE user_id = {alice} ORDER BY action"
        ))
        .await,
        vec![vec!["api"]]
    );
    assert_eq!(
        roles(&s, &alice).await,
        vec![vec![
            gemini.clone(),
            MANAGER.to_owned(),
            "direct".to_owned()
        ]]
    );
    assert_eq!(
        s.one(&format!(
            "SELECT count(*) FROM groups_users WHERE user_id = {alice}"
        ))
        .await,
        "0"
    );
    let path = format!("/scim/v2/Users/{alice}");
    s.client.get(&path).await.scim_error(404, None);
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "active", "value": true}])),
        )
        .await
        .scim_error(404, None);
    s.client.delete(&path).await.scim_error(404, None);
    let found = s
        .client
        .get("/scim/v2/Users?filter=userName%20eq%20%22alice%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 0, "{found}");
    assert_eq!(
        s.one(&format!("SELECT status FROM users WHERE id = {alice}"))
            .await,
        "3",
        "the refused PATCH changed nothing"
    );

    let again = s
        .created(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "Alice",
                    "name": {"givenName": "Alice", "familyName": "Back"},
                    "emails": [{"type": "work", "value": "alice@corp.example"}]}),
        )
        .await;
    assert_eq!(again, alice);
    assert_eq!(
        s.rows(&format!(
            "SELECT login, firstname, lastname, status FROM users WHERE id = {alice}"
        ))
        .await,
        vec![vec!["Alice", "Alice", "Back", "1"]]
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT address FROM email_addresses WHERE user_id = {alice}"
        ))
        .await,
        vec![vec!["alice@corp.example"]]
    );
    assert_eq!(
        s.one("SELECT count(*) FROM users WHERE type = 'User' AND LOWER(login) = 'alice'")
            .await,
        "1"
    );
}

/// What Redmine's own validations require, answered before Redmine would fail on it: a user
/// without a given name gets its login there (cut to Redmine's 30 characters), one without a
/// family name is refused naming it, a second user with a taken address is 409, and an
/// account awaiting activation (status 2, written by Redmine's self-registration) reads as
/// inactive, not as an account without `active`.
async fn what_redmine_validates_is_validated_first(store: Store) {
    let s = example!("redmine", store);
    let login = "a.very.long.login.name@example.com";
    let r = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": login, "name": {"familyName": "Long"},
                    "emails": [{"type": "work", "value": "long@example.com"}]}),
        )
        .await
        .expect(201)
        .json();
    let id = r["id"].as_str().expect("id").to_owned();
    assert_eq!(
        s.one(&format!("SELECT firstname FROM users WHERE id = {id}"))
            .await,
        &login[..30]
    );
    let before = s.one("SELECT count(*) FROM users").await;
    let d = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "nofamily", "name": {"givenName": "No"},
                    "emails": [{"type": "work", "value": "nofamily@example.com"}]}),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("name.familyName"), "{d}");
    let d = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "copycat", "name": {"familyName": "Cat"},
                    "emails": [{"type": "work", "value": "LONG@example.com"}]}),
        )
        .await
        .scim_error(409, Some("uniqueness"));
    assert!(d.contains("emails"), "{d}");
    assert_eq!(s.one("SELECT count(*) FROM users").await, before);

    s.exec(&format!("UPDATE users SET status = 2 WHERE id = {id}"))
        .await;
    let u = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(u["active"], false, "{u}");
}

/// With users deleted for good (`on_delete = "hard"`), the user's custom values go, and the
/// values of the issue and the project that happen to share its id stay: custom_values
/// holds every kind of record's, told apart by `customized_type`.
async fn a_hard_delete_leaves_other_records_custom_values(store: Store) {
    let tweak: crate::support::Tweak = Box::new(|c| {
        for r in &mut c.resources {
            if r.name == "User" {
                r.on_delete = scim_sidecar::mapping::OnDelete::Hard;
            }
        }
    });
    let Some(s) = Sidecar::example("redmine", store, Some(tweak)).await else {
        return;
    };
    let id = s.created("/scim/v2/Users", &barbara()).await;
    s.exec(&format!(
        "INSERT INTO custom_values (customized_type, customized_id, custom_field_id, value) VALUES
            ('Issue', {id}, 7, 'an issue value'), ('Project', {id}, 8, 'a project value');"
    ))
    .await;
    s.client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    assert_eq!(
        s.rows(&format!(
            "SELECT customized_type, value FROM custom_values WHERE customized_id = {id} ORDER BY 1"
        ))
        .await,
        vec![
            vec!["Issue", "an issue value"],
            vec!["Project", "a project value"]
        ]
    );
    assert_eq!(
        s.one(&format!("SELECT count(*) FROM users WHERE id = {id}"))
            .await,
        "0"
    );
}

/// What `check` says of Redmine's schema: no index is missing (custom_values' index on
/// (customized_type, customized_id, custom_field_id) serves every custom-field lookup), and
/// the unique indexes Redmine lacks are advised as partial indexes on `type`, which run on
/// Redmine's data as printed (its built-in rows all have an empty login).
async fn check_advises_what_redmine_needs_once(store: Store) {
    let s = example!("redmine", store);
    let config = s.example_config("redmine");
    let (_, warnings) = scim_sidecar::app::build(
        &config,
        std::sync::Arc::new(scim_sidecar::metrics::Metrics::new()),
    )
    .await
    .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    assert!(
        !warnings.iter().any(|w| w.message.contains("no index on")),
        "{warnings:?}"
    );
    let fixes: Vec<String> = warnings
        .iter()
        .filter(|w| w.message.contains("no unique index"))
        .filter_map(|w| w.fix.clone())
        .collect();
    // MariaDB has no partial index: a generated column holding the value for one type.
    let partial = |column: &str, ty: &str| match store {
        Store::Mariadb => format!("CASE WHEN type = '{ty}' THEN {column} END"),
        _ => format!("({column}"),
    };
    assert!(
        fixes
            .iter()
            .any(|f| f.contains(&partial("login", "User")) && f.contains("type = 'User'")),
        "{fixes:?}"
    );
    assert!(
        fixes
            .iter()
            .any(|f| f.contains(&partial("lastname", "Group")) && f.contains("type = 'Group'")),
        "{fixes:?}"
    );
    for fix in &fixes {
        s.exec(fix).await;
    }
}
