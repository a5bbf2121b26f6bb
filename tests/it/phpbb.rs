//! phpBB, through `examples/phpbb`: the sidecar in front of phpBB 3.3's own `phpbb_users`,
//! `phpbb_groups` and `phpbb_user_group`, as an integrator would map them. What phpBB's PHP
//! does around a write (user_add(), group_user_add(), group_delete()) is done by the
//! mapping's `set` values and hooks: a new user is a confirmed member of REGISTERED and the
//! board's newest member; a membership change empties the user's permission cache; a
//! deleted group takes its permissions and team-page entry along. The anonymous user, the
//! founder, the bots and the seven built-in groups are never seen or touched. Every test runs
//! on SQLite and PostgreSQL and reads the tables the way phpBB itself reads them. See: issue
//! #9.

use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::{Sidecar, Store};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

both!(
    a_created_user_is_what_user_add_writes,
    built_ins_stay_hidden_and_untouched,
    membership_changes_empty_the_permission_cache,
    deleting_a_group_leaves_no_orphans,
    deleting_a_user_deactivates_it_and_a_create_revives_it,
    one_account_per_address,
    username_clean_keeps_usernames_unique,
);

/// phpBB's REGISTERED group (schema_data.sql: the second group).
const REGISTERED: &str = "2";

async fn user(s: &Sidecar, name: &str) -> String {
    s.created(
        "/scim/v2/Users",
        &json!({"schemas": [USER], "userName": name,
                "emails": [{"type": "work", "value": format!("{}@example.com", name.to_lowercase())}]}),
    )
    .await
}

/// A user's groups as phpBB's memberlist reads them: (group id, pending), in order.
async fn groups_of(s: &Sidecar, user: &str) -> Vec<Vec<String>> {
    s.rows(&format!(
        "SELECT group_id, user_pending FROM phpbb_user_group WHERE user_id = {user} ORDER BY 1"
    ))
    .await
}

/// What phpBB has cached of a user's permissions (`user_permissions`, emptied by
/// auth::acl_clear_prefetch()), and where they were copied from.
async fn permissions(s: &Sidecar, user: &str) -> Vec<Vec<String>> {
    s.rows(&format!(
        "SELECT user_permissions, user_perm_from FROM phpbb_users WHERE user_id = {user}"
    ))
    .await
}

/// What phpBB fills in after a page view: the user's permission cache.
async fn cache_permissions(s: &Sidecar, user: &str) {
    s.exec(&format!(
        "UPDATE phpbb_users SET user_permissions = 'zik0zjzik0zjzik0zg', user_perm_from = 2 WHERE user_id = {user}"
    ))
    .await;
}

/// A board statistic from phpbb_config, as the index page shows it.
async fn config(s: &Sidecar, name: &str) -> String {
    s.one(&format!(
        "SELECT config_value FROM phpbb_config WHERE config_name = '{name}'"
    ))
    .await
}

/// Every row of phpBB's built-in accounts and groups, as the install left them: the
/// anonymous user, the founder, the bots, the seven special groups, their memberships,
/// permissions and team-page entries.
async fn built_in(s: &Sidecar) -> Vec<Vec<String>> {
    let mut rows = s
        .rows(
            "SELECT user_id, user_type, group_id, CAST(username AS TEXT), CAST(username_clean AS TEXT), user_email,
                    user_permissions, user_perm_from, user_inactive_reason
             FROM phpbb_users WHERE group_id <> 2 ORDER BY user_id",
        )
        .await;
    for q in [
        "SELECT group_id, group_type, CAST(group_name AS TEXT), group_colour, group_legend FROM phpbb_groups WHERE group_type = 3 ORDER BY group_id",
        "SELECT group_id, user_id, group_leader, user_pending FROM phpbb_user_group WHERE group_id IN (SELECT group_id FROM phpbb_groups WHERE group_type = 3) AND user_id IN (SELECT user_id FROM phpbb_users WHERE group_id <> 2) ORDER BY 1, 2",
        "SELECT group_id, forum_id, auth_role_id FROM phpbb_acl_groups ORDER BY 1, 2, 3",
        "SELECT group_id, teampage_position FROM phpbb_teampage ORDER BY 1",
        "SELECT bot_id, bot_name, user_id FROM phpbb_bots ORDER BY 1",
    ] {
        rows.extend(s.rows(q).await);
    }
    rows
}

/// A create writes what phpBB's user_add() writes: a normal user (user_type 0) whose default
/// group is REGISTERED, the login key username_clean, the board's language, time zone, date
/// format and style, registration and password-change dates (Unix time), an empty permission
/// cache and no password (an auth provider or "I forgot my password" sets one); a confirmed
/// REGISTERED membership; and the board index's newest member and member count. phpBB's
/// login lookup (by username_clean) finds the user.
async fn a_created_user_is_what_user_add_writes(store: Store) {
    let s = example!("phpbb", store);
    assert_eq!(config(&s, "num_users").await, "1");
    let created = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "BJensen", "externalId": "entra-0b6f",
                    "name": {"givenName": "Barbara", "familyName": "Jensen"},
                    "emails": [{"type": "work", "value": "bjensen@example.com", "primary": true}],
                    "active": true}),
        )
        .await
        .expect(201)
        .json();
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["userName"], "BJensen");
    assert_eq!(created["externalId"], "entra-0b6f");
    assert_eq!(created["emails"][0]["value"], "bjensen@example.com");
    assert!(
        created.get("name").is_none(),
        "phpBB has no names: {created}"
    );
    assert_eq!(
        s.rows(&format!(
            "SELECT user_type, group_id, CAST(username AS TEXT), CAST(username_clean AS TEXT), user_email,
                    user_lang, user_timezone, user_dateformat, user_style, user_new,
                    user_password, user_permissions, user_inactive_reason,
                    CASE WHEN user_regdate > 1700000000 AND user_passchg = user_regdate THEN 'dated' ELSE 'undated' END
             FROM phpbb_users WHERE user_id = {id}"
        ))
        .await,
        vec![vec![
            "0",
            REGISTERED,
            "BJensen",
            "bjensen",
            "bjensen@example.com",
            "en",
            "UTC",
            "D M d, Y g:i a",
            "1",
            "0",
            "",
            "",
            "0",
            "dated"
        ]]
    );
    assert_eq!(groups_of(&s, &id).await, vec![vec![REGISTERED, "0"]]);
    assert_eq!(config(&s, "newest_user_id").await, id);
    assert_eq!(config(&s, "newest_username").await, "BJensen");
    assert_eq!(config(&s, "num_users").await, "2", "the founder and her");
    // login_db(): SELECT … WHERE username_clean = utf8_clean_string($username).
    assert_eq!(
        s.rows("SELECT user_id FROM phpbb_users WHERE username_clean = 'bjensen' AND user_type IN (0, 3)")
            .await,
        vec![vec![id.clone()]]
    );
    let found = s
        .client
        .get("/scim/v2/Users?filter=userName%20eq%20%22bjensen%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 1, "{found}");
    assert_eq!(found["Resources"][0]["id"], id.as_str());
    // username_clean is unique: another case of the same name is taken.
    s.client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "bjensen"}),
        )
        .await
        .scim_error(409, Some("uniqueness"));
    // A rename keeps the login key in step.
    s.client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "userName", "value": "Barbara.J"}])),
        )
        .await
        .expect(200);
    assert_eq!(
        s.rows(&format!(
            "SELECT CAST(username AS TEXT), CAST(username_clean AS TEXT) FROM phpbb_users WHERE user_id = {id}"
        ))
        .await,
        vec![vec!["Barbara.J", "barbara.j"]]
    );
}

/// phpBB's anonymous user, founder, bots and built-in groups are never listed, found,
/// changed or deleted through SCIM: their ids answer 404 to every operation, a built-in
/// account cannot be made a member, and after a round of creates, membership changes and
/// deletes their rows are exactly as the install left them.
async fn built_ins_stay_hidden_and_untouched(store: Store) {
    let s = example!("phpbb", store);
    let before = built_in(&s).await;
    let users = s.client.get("/scim/v2/Users").await.expect(200).json();
    assert_eq!(users["totalResults"], 0, "{users}");
    let groups = s.client.get("/scim/v2/Groups").await.expect(200).json();
    assert_eq!(groups["totalResults"], 0, "{groups}");
    for name in ["Anonymous", "Admin", "Google%20%5BBot%5D"] {
        let r = s
            .client
            .get(&format!(
                "/scim/v2/Users?filter=userName%20eq%20%22{name}%22"
            ))
            .await
            .expect(200)
            .json();
        assert_eq!(r["totalResults"], 0, "{name}: {r}");
    }
    let r = s
        .client
        .get("/scim/v2/Groups?filter=displayName%20eq%20%22ADMINISTRATORS%22")
        .await
        .expect(200)
        .json();
    assert_eq!(r["totalResults"], 0, "{r}");

    let alice = user(&s, "alice").await;
    let team = s.group("Team").await;
    s.patch_members(&team, "add", &alice).await;
    // The anonymous user (1), the founder (2), a bot (3).
    for u in ["1", "2", "3"] {
        let path = format!("/scim/v2/Users/{u}");
        s.client.get(&path).await.scim_error(404, None);
        s.client
            .patch(
                &path,
                &patch_body(json!([{"op": "replace", "path": "active", "value": false}])),
            )
            .await
            .scim_error(404, None);
        s.client.delete(&path).await.scim_error(404, None);
        let r = s
            .client
            .patch(
                &format!("/scim/v2/Groups/{team}"),
                &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": u}]}])),
            )
            .await;
        assert_eq!(r.status.as_u16(), 400, "{u}: {}", r.text());
    }
    // GUESTS … NEWLY_REGISTERED.
    for g in 1..=7 {
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
    s.client
        .delete(&format!("/scim/v2/Groups/{team}"))
        .await
        .expect(204);
    s.client
        .delete(&format!("/scim/v2/Users/{alice}"))
        .await
        .expect(204);
    assert_eq!(built_in(&s).await, before);
}

/// group_user_add() and group_user_del(), in SQL: a member added through SCIM is a confirmed
/// member (user_pending 0, where the table's default would leave it pending), and every
/// membership change empties the member's permission cache, so phpBB recomputes what the
/// group grants on the next page. Other users' caches and the REGISTERED membership stay.
async fn membership_changes_empty_the_permission_cache(store: Store) {
    let s = example!("phpbb", store);
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    let team = s.group("Team").await;
    let cached = vec![vec!["zik0zjzik0zjzik0zg".to_owned(), "2".to_owned()]];
    let empty = vec![vec![String::new(), "0".to_owned()]];
    cache_permissions(&s, &alice).await;
    cache_permissions(&s, &bob).await;

    s.patch_members(&team, "add", &alice).await;
    assert_eq!(
        groups_of(&s, &alice).await,
        vec![
            vec![REGISTERED.to_owned(), "0".to_owned()],
            vec![team.clone(), "0".to_owned()]
        ]
    );
    assert_eq!(permissions(&s, &alice).await, empty);
    assert_eq!(
        permissions(&s, &bob).await,
        cached,
        "bob's groups did not change"
    );

    cache_permissions(&s, &alice).await;
    s.patch_members(&team, "remove", &alice).await;
    assert_eq!(
        groups_of(&s, &alice).await,
        vec![vec![REGISTERED.to_owned(), "0".to_owned()]]
    );
    assert_eq!(permissions(&s, &alice).await, empty);

    // Okta's push: the member list becomes exactly bob.
    cache_permissions(&s, &alice).await;
    s.client
        .patch(
            &format!("/scim/v2/Groups/{team}"),
            &patch_body(json!([{"op": "replace", "path": "members", "value": [{"value": bob}]}])),
        )
        .await
        .expect(204);
    assert_eq!(permissions(&s, &bob).await, empty);
    assert_eq!(permissions(&s, &alice).await, cached, "alice was not in it");
    let g: Value = s
        .client
        .get(&format!("/scim/v2/Groups/{team}"))
        .await
        .expect(200)
        .json();
    assert_eq!(g["members"][0]["value"], bob.as_str(), "{g}");
}

/// group_delete(), in SQL: deleting a group removes the row, its memberships, its
/// permissions (phpbb_acl_groups) and its team-page entry, and empties its members' permission
/// caches. Nothing in phpBB points at it afterwards; its members keep REGISTERED.
async fn deleting_a_group_leaves_no_orphans(store: Store) {
    let s = example!("phpbb", store);
    let alice = user(&s, "alice").await;
    let team = s.group("Team").await;
    s.patch_members(&team, "add", &alice).await;
    // What the ACP adds: forum permissions for the group (role 14, "Full access") and a
    // team-page entry.
    s.exec(&format!(
        "INSERT INTO phpbb_acl_groups (group_id, forum_id, auth_option_id, auth_role_id, auth_setting) VALUES ({team}, 2, 0, 14, 0);
         INSERT INTO phpbb_teampage (group_id, teampage_name, teampage_position, teampage_parent) VALUES ({team}, '', 3, 0);"
    ))
    .await;
    cache_permissions(&s, &alice).await;

    s.client
        .delete(&format!("/scim/v2/Groups/{team}"))
        .await
        .expect(204);
    s.client
        .get(&format!("/scim/v2/Groups/{team}"))
        .await
        .scim_error(404, None);
    for table in [
        "phpbb_groups",
        "phpbb_user_group",
        "phpbb_acl_groups",
        "phpbb_teampage",
    ] {
        assert_eq!(
            s.one(&format!(
                "SELECT count(*) FROM {table} WHERE group_id = {team}"
            ))
            .await,
            "0",
            "{table}"
        );
    }
    assert_eq!(
        permissions(&s, &alice).await,
        vec![vec![String::new(), "0".to_owned()]]
    );
    assert_eq!(
        groups_of(&s, &alice).await,
        vec![vec![REGISTERED.to_owned(), "0".to_owned()]]
    );
    assert_eq!(
        s.one("SELECT count(*) FROM phpbb_user_group ug WHERE NOT EXISTS (SELECT 1 FROM phpbb_groups g WHERE g.group_id = ug.group_id)"
        )
        .await,
        "0"
    );
}

/// Deleting a user deactivates it, as the ACP's "Deactivate account" does: user_type 1,
/// inactive reason "by administrator" and its time; the row, its REGISTERED membership and
/// its posts' author stay; it leaves its SCIM groups (its permission cache emptied); the
/// member count drops. For SCIM it is gone: 404, absent from lists and filters. A later
/// create with its username activates the same row under the same id, REGISTERED once.
async fn deleting_a_user_deactivates_it_and_a_create_revives_it(store: Store) {
    let s = example!("phpbb", store);
    let alice = user(&s, "alice").await;
    let team = s.group("Team").await;
    s.patch_members(&team, "add", &alice).await;
    cache_permissions(&s, &alice).await;
    assert_eq!(config(&s, "num_users").await, "2");

    s.client
        .delete(&format!("/scim/v2/Users/{alice}"))
        .await
        .expect(204);
    assert_eq!(
        s.rows(&format!(
            "SELECT CAST(username AS TEXT), user_type, user_inactive_reason,
                    CASE WHEN user_inactive_time > 1700000000 THEN 'since then' ELSE 'never' END
             FROM phpbb_users WHERE user_id = {alice}"
        ))
        .await,
        vec![vec!["alice", "1", "3", "since then"]]
    );
    assert_eq!(
        groups_of(&s, &alice).await,
        vec![vec![REGISTERED.to_owned(), "0".to_owned()]]
    );
    assert_eq!(
        permissions(&s, &alice).await,
        vec![vec![String::new(), "0".to_owned()]]
    );
    assert_eq!(config(&s, "num_users").await, "1");
    let path = format!("/scim/v2/Users/{alice}");
    s.client.get(&path).await.scim_error(404, None);
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "active", "value": true}])),
        )
        .await
        .scim_error(404, None);
    let found = s
        .client
        .get("/scim/v2/Users?filter=userName%20eq%20%22alice%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 0, "{found}");

    let again = user(&s, "Alice").await;
    assert_eq!(again, alice);
    assert_eq!(
        s.rows(&format!(
            "SELECT CAST(username AS TEXT), CAST(username_clean AS TEXT), user_type, user_inactive_reason, user_inactive_time
             FROM phpbb_users WHERE user_id = {alice}"
        ))
        .await,
        vec![vec!["Alice", "alice", "0", "0", "0"]]
    );
    assert_eq!(
        groups_of(&s, &alice).await,
        vec![vec![REGISTERED.to_owned(), "0".to_owned()]]
    );
    assert_eq!(config(&s, "num_users").await, "2");
}

/// phpBB's allow_emailreuse = 0, which phpBB checks in PHP only: a second account with an
/// address already taken (in other case) is 409 uniqueness and nothing is written; accounts
/// whose address was removed (phpBB stores '') do not share one.
async fn one_account_per_address(store: Store) {
    let s = example!("phpbb", store);
    let alice = user(&s, "alice").await;
    let bob = user(&s, "bob").await;
    let before = s.one("SELECT count(*) FROM phpbb_users").await;
    let d = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "mallory",
                    "emails": [{"type": "work", "value": "ALICE@example.com"}]}),
        )
        .await
        .scim_error(409, Some("uniqueness"));
    assert!(d.contains("emails"), "{d}");
    assert_eq!(s.one("SELECT count(*) FROM phpbb_users").await, before);
    for id in [&alice, &bob] {
        s.client
            .patch(
                &format!("/scim/v2/Users/{id}"),
                &patch_body(json!([{"op": "remove", "path": "emails"}])),
            )
            .await
            .expect(200);
    }
    assert_eq!(
        s.rows(&format!(
            "SELECT user_email FROM phpbb_users WHERE user_id IN ({alice}, {bob})"
        ))
        .await,
        vec![vec![""], vec![""]]
    );
}

/// phpBB keeps usernames unique through `username_clean`, which the mapping fills with
/// `{userName|lower}` and which has a unique index: `check` has no unique index to advise for
/// userName, and a second account whose name differs only in case is 409 uniqueness, naming
/// userName. userName stays required although `username` has a default (`''`): a create
/// without it is 400, not an account without a name.
async fn username_clean_keeps_usernames_unique(store: Store) {
    let s = example!("phpbb", store);
    let config = s.example_config("phpbb");
    let (_, warnings) = scim_sidecar::app::build(
        &config,
        std::sync::Arc::new(scim_sidecar::metrics::Metrics::new()),
    )
    .await
    .unwrap_or_else(|p| panic!("{}", scim_sidecar::config::report(&p)));
    assert!(
        !warnings
            .iter()
            .any(|w| w.message.contains("no unique index") && w.message.contains("username")),
        "{warnings:?}"
    );
    user(&s, "alice").await;
    let d = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "ALICE",
                    "emails": [{"type": "work", "value": "other@example.com"}]}),
        )
        .await
        .scim_error(409, Some("uniqueness"));
    assert!(d.contains("userName"), "{d}");
    let d = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "emails": [{"type": "work", "value": "nameless@example.com"}]}),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("userName"), "{d}");
}
