//! Microsoft Entra ID, replayed: every request `shared/reference/idp-behaviour.md` section 1
//! documents, in the order and JSON shape Entra's provisioning service sends it, with the
//! answers Entra expects. Each test runs against the quickstart (SQLite, `accounts`/`roles`),
//! the PostgreSQL helpdesk example (`principals` with a `kind` discriminator, a child e-mail
//! table, soft delete), Redmine and phpBB (their own schemas, `examples/redmine` and
//! `examples/phpbb`), the LDAP example (`examples/ldap` on slapd), the REST example and the
//! Active Directory example (`examples/active-directory` on a Samba DC), and checks the app's
//! own rows (entries) as well as the SCIM answer. What an app
//! has no place for (phpBB has no names or phone numbers) is checked to be ignored instead.

use http::Method;
use serde_json::{Value, json};

use crate::support::Sidecar;
use crate::support::client::{Resp, patch_body};
use crate::support::idp::{Target, group_name, members};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The extra schema URI the tutorial's group create still carries (§1.5).
const ADSCIM: &str = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";
/// A custom extension: Entra sends its attributes without listing its URI in `schemas`.
const CUSTOM: &str = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User";

per_target!(
    test_connection_probe,
    match_by_user_name_and_external_id,
    create_in_default_shape,
    get_by_id_and_missing,
    update_default_dialect,
    update_compliant_dialect,
    manager_as_bare_string,
    add_phone_the_user_lacks,
    validator_patch_shapes,
    older_job_sends_nulls,
    disable_and_enable,
    delete_user,
    group_create_and_probe,
    group_membership,
    group_rename_and_delete,
);

/// A random GUID, as Entra's Test Connection puts in its probe filter.
fn guid() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).expect("random");
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A filter in Entra's wire form: spaces as `+`, quotes as `%22` (§1.1, line 72).
fn plus(filter: &str) -> String {
    filter
        .replace('%', "%25")
        .replace('+', "%2B")
        .replace(' ', "+")
        .replace('"', "%22")
}

/// The user Entra creates with its default attribute mappings (§1.4 U2, line 194, plus the
/// mapped attributes of lines 142–164 and `preferredLanguage` of line 168).
fn entra_user(upn: &str, nickname: &str) -> Value {
    json!({
        "schemas": [USER, ENT],
        "externalId": nickname,
        "userName": upn,
        "active": true,
        "displayName": "Barbara Jensen",
        "title": "Tour Guide",
        "preferredLanguage": "en-US",
        "emails": [{"primary": true, "type": "work", "value": upn}],
        "phoneNumbers": [
            {"type": "work", "value": "+1 (555) 555-0100"},
            {"type": "mobile", "value": "55555555555"},
            {"type": "fax", "value": "+1 555 555 0199"}
        ],
        "addresses": [
            {"type": "work", "streetAddress": "1 Microsoft Way", "postalCode": "98052"},
            {"type": "other", "formatted": "Building 18/2111"}
        ],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Barbara Jensen", "familyName": "Jensen", "givenName": "Barbara"},
        "roles": [],
        ENT: {"department": "Tours", "employeeNumber": "701984"},
        CUSTOM: {"costCenter": "4130"}
    })
}

/// A minimal Entra create: the tutorial's "Create User" body (§1.4 U2, line 194) with
/// `displayName`, which the default mappings send (line 148) and the helpdesk app requires
/// (`display_name NOT NULL`).
fn minimal_user(upn: &str, nickname: &str) -> Value {
    json!({
        "schemas": [USER, ENT],
        "externalId": nickname,
        "userName": upn,
        "displayName": "Test User",
        "active": true,
        "emails": [{"primary": true, "type": "work", "value": upn}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Test User", "familyName": "User", "givenName": "Test"},
        "roles": []
    })
}

/// `active` of a user Entra created: it sends `active` true and, by default, no password
/// (§1.4 U2). True on every app but Active Directory, which creates an account without a
/// password disabled until one is set, and answers `active` false for it (README "Active
/// Directory"; `tests/it/ldap_ad.rs` created_disabled_until_a_password_is_set).
fn created_active(t: Target) -> bool {
    t != Target::ActiveDirectory
}

async fn create(s: &Sidecar, body: &Value) -> String {
    let r = s.client.post("/scim/v2/Users", body).await.expect(201);
    r.json()["id"].as_str().expect("id").to_owned()
}

async fn get_user(s: &Sidecar, id: &str) -> Value {
    s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json()
}

/// PATCH /Users/{id}: Entra's user PATCH answer is `200` with the user (§1.4 U6, line 253).
async fn patch_user(s: &Sidecar, id: &str, ops: Value) -> Value {
    s.client
        .patch(&format!("/scim/v2/Users/{id}"), &patch_body(ops))
        .await
        .expect(200)
        .json()
}

/// PATCH /Groups/{id}: `204`, or `200` (§1.5, lines 274–277).
async fn patch_group(s: &Sidecar, id: &str, ops: Value) -> Resp {
    let r = s
        .client
        .patch(&format!("/scim/v2/Groups/{id}"), &patch_body(ops))
        .await;
    assert!(
        matches!(r.status.as_u16(), 200 | 204),
        "group PATCH answered {}: {}",
        r.status,
        r.text()
    );
    r
}

/// GET a list with a filter in Entra's `+` wire form; asserts a ListResponse.
async fn query(s: &Sidecar, resource: &str, extra: &str, filter: &str) -> Value {
    let r = s
        .client
        .get(&format!(
            "/scim/v2/{resource}?{extra}filter={}",
            plus(filter)
        ))
        .await
        .expect(200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/scim+json"))
    );
    let j = r.json();
    assert_eq!(j["schemas"], json!([LIST]), "{j}");
    j
}

/// The columns of [`user_row`], named as [`Target::stores`] names attributes.
const ROW: [&str; 12] = [
    "userName",
    "name.givenName",
    "name.familyName",
    "displayName",
    "emails.work",
    "phoneNumbers.work",
    "phoneNumbers.mobile",
    "title",
    "department",
    "employeeNumber",
    "manager",
    "active",
];

/// The app's own row for a user, the same columns on every app: login, first name, last
/// name, display name, work e-mail, work phone, mobile, job title, department, employee
/// number, manager id, and whether the account is active; `NULL` where the app has no place
/// for it ([`ROW`]). Empty when there is no such user.
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
                    Some("mobile"),
                    Some("title"),
                    None,
                    Some("employeeNumber"),
                    None,
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
                    Some("mobile"),
                    Some("title"),
                    Some("department"),
                    Some("employeeNumber"),
                    None,
                    Some("active"),
                ],
            )
            .await;
        }
        Target::Rest => format!(
            "SELECT login, firstname, lastname, NULL, mail, NULL, NULL, NULL, NULL, NULL, NULL, \
             CASE status WHEN 1 THEN 'true' ELSE 'false' END FROM users WHERE id = {id}"
        ),
        Target::Quickstart => format!(
            "SELECT login, first_name, last_name, display_name, email, phone, mobile, job_title, \
             department, employee_no, manager_id, CASE status WHEN 'A' THEN 'true' ELSE 'false' END \
             FROM accounts WHERE id = {id}"
        ),
        Target::Helpdesk | Target::HelpdeskMariadb => format!(
            "SELECT login, first_name, last_name, display_name, \
             (SELECT address FROM user_emails e WHERE e.user_id = p.id AND e.is_primary), \
             phone, mobile, job_title, department, employee_no, manager_id, \
             CASE state WHEN 'active' THEN 'true' ELSE 'false' END \
             FROM principals p WHERE id = {id} AND kind = 'U'"
        ),
        // Custom field ids as examples/redmine/schema.sql creates them.
        Target::Redmine => {
            let cf = |n: u8| {
                format!(
                    "(SELECT value FROM custom_values c WHERE c.customized_type = 'Principal' \
                     AND c.customized_id = u.id AND c.custom_field_id = {n}) AS cf{n}"
                )
            };
            format!(
                "SELECT login, firstname, lastname, NULL AS display_name, \
                 (SELECT address FROM email_addresses e WHERE e.user_id = u.id AND e.is_default) AS email, \
                 {}, {}, {}, {}, {}, {}, CASE status WHEN 1 THEN 'true' ELSE 'false' END AS active \
                 FROM users u WHERE id = {id} AND type = 'User'",
                cf(2),
                cf(3),
                cf(1),
                cf(4),
                cf(5),
                cf(6)
            )
        }
        Target::Phpbb => format!(
            "SELECT username::text AS login, NULL AS c1, NULL AS c2, NULL AS c3, \
             NULLIF(user_email, '') AS email, NULL AS c5, NULL AS c6, NULL AS c7, NULL AS c8, \
             NULL AS c9, NULL AS c10, CASE user_type WHEN 0 THEN 'true' ELSE 'false' END AS active \
             FROM phpbb_users WHERE user_id = {id} AND group_id = 2"
        ),
    };
    s.rows(&q).await.into_iter().next().unwrap_or_default()
}

/// The `value` of the element of a multi-valued attribute with this `type`.
fn typed<'a>(user: &'a Value, attr: &str, ty: &str) -> &'a Value {
    user[attr]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["type"] == ty))
        .map_or(&Value::Null, |e| &e["value"])
}

/// Test Connection (idp-behaviour.md §1.2, lines 84–86; query encoding §1.1, line 72 and
/// §2.1, line 312): `GET /Users?filter=userName eq "<random GUID>"`, with spaces as `+` and as
/// `%20`, is `200` with the documented empty ListResponse (`totalResults` 0, `Resources` [],
/// `startIndex` 1), never 400 or 404 (gallery rule, line 88); the random-group probe likewise.
async fn test_connection_probe(t: Target) {
    let s = start_target!(t);
    let g = guid();
    let plus_form = format!("/scim/v2/Users?filter=userName+eq+%22{g}%22");
    let pct_form = format!("/scim/v2/Users?filter=userName%20eq%20%22{g}%22");
    for path in [plus_form, pct_form] {
        let r = s.client.get(&path).await.expect(200);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/scim+json")),
            "{path}"
        );
        let j = r.json();
        assert_eq!(j["schemas"], json!([LIST]), "{path}: {j}");
        assert_eq!(j["totalResults"], 0, "{path}: {j}");
        assert_eq!(j["Resources"], json!([]), "{path}: {j}");
        assert_eq!(j["startIndex"], 1, "{path}: {j}");
        assert!(j["itemsPerPage"].is_u64(), "{path}: {j}");
    }
    let j = query(
        &s,
        "Groups",
        "excludedAttributes=members&",
        &format!("displayName eq \"{}\"", guid()),
    )
    .await;
    assert_eq!(j["totalResults"], 0, "{j}");
    assert_eq!(j["Resources"], json!([]), "{j}");
}

/// Match queries (idp-behaviour.md §1.4 U1, lines 185–187; matching attributes §1.3,
/// line 111): before creating, Entra looks the user up by `userName` and by `externalId`; a
/// miss is `200` with `totalResults` 0, and after the create the same queries find exactly
/// the created user, with its `id`.
async fn match_by_user_name_and_external_id(t: Target) {
    let s = start_target!(t);
    let upn = "Test_User_00aa00aa@contoso.com";
    for f in [
        format!("userName eq \"{upn}\""),
        "externalId eq \"Test_User_00aa\"".to_string(),
    ] {
        let j = query(&s, "Users", "", &f).await;
        assert_eq!(j["totalResults"], 0, "{f}: {j}");
        assert_eq!(j["Resources"], json!([]), "{f}: {j}");
    }
    let id = create(&s, &minimal_user(upn, "Test_User_00aa")).await;
    for f in [
        format!("userName eq \"{upn}\""),
        "externalId eq \"Test_User_00aa\"".to_string(),
    ] {
        let j = query(&s, "Users", "", &f).await;
        assert_eq!(j["totalResults"], 1, "{f}: {j}");
        assert_eq!(j["startIndex"], 1, "{f}: {j}");
        assert_eq!(j["Resources"].as_array().map(Vec::len), Some(1), "{j}");
        assert_eq!(j["Resources"][0]["id"], id.as_str(), "{f}: {j}");
        assert_eq!(j["Resources"][0]["userName"], upn, "{f}: {j}");
        assert_eq!(
            j["Resources"][0]["externalId"], "Test_User_00aa",
            "{f}: {j}"
        );
    }
    // `and` of two matching attributes, the only other operator Entra uses (§1.3, line 116).
    let j = query(
        &s,
        "Users",
        "",
        &format!("userName eq \"{upn}\" and externalId eq \"Test_User_00aa\""),
    )
    .await;
    assert_eq!(j["totalResults"], 1, "{j}");
}

/// Create in Entra's default attribute shape (idp-behaviour.md §1.4 U2, lines 194–198; the
/// default mappings, lines 142–164): `meta.resourceType`, `name.formatted`, `roles: []`, the
/// enterprise extension, and a custom extension whose URI is not in `schemas` (line 196) are
/// all accepted; attributes the app has no column for (addresses, fax, preferredLanguage,
/// the custom extension) are ignored. The answer is `201` with `id`, `schemas`, `meta` and
/// every stored attribute exactly as sent (line 177: `55555555555` is not reformatted), the
/// app's row holds them, and the same POST again is `409 uniqueness` (line 198).
async fn create_in_default_shape(t: Target) {
    let s = start_target!(t);
    let body = entra_user("bjensen@contoso.com", "bjensen");
    let r = s.client.post("/scim/v2/Users", &body).await.expect(201);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/scim+json"))
    );
    let u = r.json();
    let id = u["id"].as_str().expect("id").to_owned();
    assert!(!id.is_empty());
    let schemas = u["schemas"].as_array().expect("schemas");
    assert!(schemas.contains(&json!(USER)), "{u}");
    assert_eq!(u["meta"]["resourceType"], "User", "{u}");
    assert!(
        u["meta"]["location"]
            .as_str()
            .is_some_and(|l| l.ends_with(&format!("/Users/{id}"))),
        "{u}"
    );
    assert_eq!(u["userName"], "bjensen@contoso.com");
    assert_eq!(u["externalId"], "bjensen");
    assert_eq!(u["active"], created_active(t));
    t.expect(&u, "displayName", "Barbara Jensen");
    t.expect(&u, "title", "Tour Guide");
    t.expect(&u, "name.givenName", "Barbara");
    t.expect(&u, "name.familyName", "Jensen");
    assert_eq!(typed(&u, "emails", "work"), "bjensen@contoso.com");
    t.expect(&u, "phoneNumbers.work", "+1 (555) 555-0100");
    t.expect(&u, "phoneNumbers.mobile", "55555555555");
    t.expect(&u, "department", "Tours");
    t.expect(&u, "employeeNumber", "701984");
    for unmapped in ["addresses", "preferredLanguage", CUSTOM] {
        assert!(u.get(unmapped).is_none(), "{unmapped} has no column: {u}");
    }
    assert_eq!(
        typed(&u, "phoneNumbers", "fax"),
        &Value::Null,
        "no fax column"
    );
    assert_eq!(
        get_user(&s, &id).await,
        u,
        "GET reads back what POST answered"
    );
    assert_eq!(
        user_row(&s, t, &id).await,
        t.row(
            &ROW,
            &[
                "bjensen@contoso.com",
                "Barbara",
                "Jensen",
                "Barbara Jensen",
                "bjensen@contoso.com",
                "+1 (555) 555-0100",
                "55555555555",
                "Tour Guide",
                "Tours",
                "701984",
                "NULL",
                &created_active(t).to_string()
            ]
        )
    );
    s.client
        .post("/scim/v2/Users", &body)
        .await
        .scim_error(409, Some("uniqueness"));
}

/// Get by id (idp-behaviour.md §1.4 U3, lines 204–206): `GET /Users/{id}` is `200` with the
/// user; an id that does not exist is `404` with the Error schema and `status` "404".
async fn get_by_id_and_missing(t: Target) {
    let s = start_target!(t);
    let id = create(&s, &minimal_user("get.me@contoso.com", "getme")).await;
    let u = get_user(&s, &id).await;
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["userName"], "get.me@contoso.com");
    assert_eq!(u["externalId"], "getme");
    assert_eq!(typed(&u, "emails", "work"), "get.me@contoso.com");
    for missing in ["987654".to_string(), guid()] {
        let r = s.client.get(&format!("/scim/v2/Users/{missing}")).await;
        assert_eq!(r.json()["schemas"], json!([ERROR]), "{missing}");
        r.scim_error(404, None);
    }
}

/// Update in Entra's default PATCH dialect (idp-behaviour.md §1.4 U4, lines 218–222):
/// capitalised ops, one op per attribute, each with a path — a filtered e-mail path, a dotted
/// sub-attribute, `externalId`, URN-qualified enterprise attributes (one of them an `Add` of a
/// value the user did not have, F-3), a rename of `userName`, and attributes the app has no
/// column for (`nickName`, `addresses[type eq "work"].formatted`, and `roles` as JSON strings
/// inside `value`, line 223), which are ignored. The answer is `200` with the user; every
/// stored value reads back exactly as sent.
async fn update_default_dialect(t: Target) {
    let s = start_target!(t);
    let id = create(&s, &minimal_user("upd@contoso.com", "upd")).await;
    let u = patch_user(
        &s,
        &id,
        json!([
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updated@contoso.com"},
            {"op": "Replace", "path": "name.familyName", "value": "Updated"},
            {"op": "Replace", "path": "name.givenName", "value": "Ursula"},
            {"op": "Replace", "path": "externalId", "value": "updated"},
            {"op": "Replace", "path": format!("{ENT}:employeeNumber"), "value": "000123"},
            {"op": "Add", "path": format!("{ENT}:department"), "value": "Retail"},
            {"op": "Add", "path": "title", "value": "Buyer"},
            {"op": "Replace", "path": "displayName", "value": "Ursula Updated"},
            {"op": "Add", "path": "nickName", "value": "Babs"},
            {"op": "Replace", "path": "addresses[type eq \"work\"].formatted", "value": "18/2111"},
            {"op": "Replace", "path": "userName", "value": "updated@contoso.com"},
            {"op": "Add", "path": "roles", "value": [
                {"value": "{\"id\":\"7c6e5b1a\",\"value\":\"25\",\"displayName\":\"Role1234\"}"}
            ]}
        ]),
    )
    .await;
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["userName"], "updated@contoso.com");
    assert_eq!(u["externalId"], "updated");
    t.expect(&u, "displayName", "Ursula Updated");
    t.expect(&u, "title", "Buyer");
    t.expect(&u, "name.familyName", "Updated");
    t.expect(&u, "name.givenName", "Ursula");
    assert_eq!(typed(&u, "emails", "work"), "updated@contoso.com");
    // Kept as text, not a number.
    t.expect(&u, "employeeNumber", "000123");
    t.expect(&u, "department", "Retail");
    for unmapped in ["nickName", "addresses", "roles"] {
        assert!(u.get(unmapped).is_none(), "{unmapped} has no column: {u}");
    }
    assert_eq!(get_user(&s, &id).await, u);
    assert_eq!(
        user_row(&s, t, &id).await,
        t.row(
            &ROW,
            &[
                "updated@contoso.com",
                "Ursula",
                "Updated",
                "Ursula Updated",
                "updated@contoso.com",
                "NULL",
                "NULL",
                "Buyer",
                "Retail",
                "000123",
                "NULL",
                &created_active(t).to_string()
            ]
        )
    );
    // The user is found under its new matching attributes, and not under the old ones.
    let j = query(&s, "Users", "", "externalId eq \"updated\"").await;
    assert_eq!(j["totalResults"], 1, "{j}");
    let j = query(&s, "Users", "", "userName eq \"upd@contoso.com\"").await;
    assert_eq!(j["totalResults"], 0, "{j}");
}

/// Update in the `aadOptscim062020` dialect (idp-behaviour.md §1.4 U4, lines 218–222):
/// lower-case ops; a filtered path keeps its own op, everything else comes in one path-less
/// `replace` whose value has dotted (`name.givenName`) and URN-qualified keys, which the
/// sidecar splits itself; `add` of a single-valued string; `AssertiveAppRoleAssignmentsComplex`
/// roles (line 223), ignored as the app has no column for them. Read back exactly as sent.
async fn update_compliant_dialect(t: Target) {
    let s = start_target!(t);
    let id = create(&s, &minimal_user("flag@contoso.com", "flag")).await;
    let u = patch_user(
        &s,
        &id,
        json!([
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "flagged@contoso.com"},
            {"op": "replace", "value": {
                "displayName": "Barbara Jensen",
                "name.givenName": "Barbara",
                "name.familyName": "Jensen",
                "title": "Tour Guide",
                format!("{ENT}:employeeNumber"): "701984",
                format!("{ENT}:department"): "Tours"
            }},
            {"op": "add", "path": "nickName", "value": "Babs"},
            {"op": "replace", "path": "roles", "value": [
                {"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": "User", "value": "User"}
            ]}
        ]),
    )
    .await;
    t.expect(&u, "displayName", "Barbara Jensen");
    t.expect(&u, "name.givenName", "Barbara");
    t.expect(&u, "name.familyName", "Jensen");
    t.expect(&u, "title", "Tour Guide");
    assert_eq!(typed(&u, "emails", "work"), "flagged@contoso.com");
    t.expect(&u, "employeeNumber", "701984");
    t.expect(&u, "department", "Tours");
    assert!(
        u.get("name.givenName").is_none(),
        "dotted keys are split: {u}"
    );
    assert!(
        u.get("nickName").is_none() && u.get("roles").is_none(),
        "{u}"
    );
    assert_eq!(get_user(&s, &id).await, u);
    assert_eq!(
        user_row(&s, t, &id).await,
        t.row(
            &ROW,
            &[
                "flag@contoso.com",
                "Barbara",
                "Jensen",
                "Barbara Jensen",
                "flagged@contoso.com",
                "NULL",
                "NULL",
                "Tour Guide",
                "Tours",
                "701984",
                "NULL",
                &created_active(t).to_string()
            ]
        )
    );
}

/// The manager, a reference attribute (idp-behaviour.md §1.4 U5, lines 231–241): after both
/// users exist, Entra PATCHes the manager as a **bare string** on the URN path (F-6, line 236)
/// in either op case; on POST it sends `"manager":"<id>"` inside the extension object (F-7,
/// line 237); the old documented shape is a `[{"$ref","value"}]` array on the path `manager`
/// (line 233). Every form is stored as the manager's id and reads back as `{"value": id}`;
/// the manager check (line 242) filters on `id` and the manager with `and`.
async fn manager_as_bare_string(t: Target) {
    let s = start_target!(t);
    let boss = create(&s, &minimal_user("boss@contoso.com", "boss")).await;
    let boss2 = create(&s, &minimal_user("boss2@contoso.com", "boss2")).await;
    let emp = create(&s, &minimal_user("emp@contoso.com", "emp")).await;
    if !t.stores("manager") {
        // An app with no place for a manager ignores it, as any attribute it does not store.
        let u = patch_user(
            &s,
            &emp,
            json!([{"op": "add", "path": format!("{ENT}:manager"), "value": boss}]),
        )
        .await;
        t.expect(&u, "manager", boss.as_str());
        t.expect(&get_user(&s, &emp).await, "manager", boss.as_str());
        return;
    }
    let u = patch_user(
        &s,
        &emp,
        json!([{"op": "add", "path": format!("{ENT}:manager"), "value": boss}]),
    )
    .await;
    assert_eq!(u[ENT]["manager"]["value"], boss.as_str(), "{u}");
    assert_eq!(
        get_user(&s, &emp).await[ENT]["manager"]["value"],
        boss.as_str()
    );
    assert_eq!(user_row(&s, t, &emp).await[10], boss);
    let u = patch_user(
        &s,
        &emp,
        json!([{"op": "Replace", "path": format!("{ENT}:manager"), "value": boss2}]),
    )
    .await;
    assert_eq!(u[ENT]["manager"]["value"], boss2.as_str(), "{u}");
    assert_eq!(user_row(&s, t, &emp).await[10], boss2);
    // Entra checks the manager before updating it: `id` and the manager, two `eq` (line 242).
    for (manager, hits) in [(&boss2, 1), (&boss, 0)] {
        let j = query(
            &s,
            "Users",
            "",
            &format!("id eq \"{emp}\" and {ENT}:manager.value eq \"{manager}\""),
        )
        .await;
        assert_eq!(j["totalResults"], hits, "{j}");
    }
    // The tutorial's example 5.
    let u = patch_user(
        &s,
        &emp,
        json!([{"op": "Add", "path": "manager", "value": [
            {"$ref": format!("http://{}/scim/v2/Users/{boss}", s.addr), "value": boss}
        ]}]),
    )
    .await;
    assert_eq!(u[ENT]["manager"]["value"], boss.as_str(), "{u}");
    assert_eq!(user_row(&s, t, &emp).await[10], boss);
    // On create, inside the extension object.
    let mut body = minimal_user("emp2@contoso.com", "emp2");
    body[ENT] = json!({"manager": boss2, "department": "Tours"});
    let r = s
        .client
        .post("/scim/v2/Users", &body)
        .await
        .expect(201)
        .json();
    let emp2 = r["id"].as_str().expect("id").to_owned();
    assert_eq!(r[ENT]["manager"]["value"], boss2.as_str(), "{r}");
    assert_eq!(user_row(&s, t, &emp2).await[10], boss2);
    // Removing it empties the column.
    let u = patch_user(
        &s,
        &emp2,
        json!([{"op": "Remove", "path": format!("{ENT}:manager")}]),
    )
    .await;
    assert!(u[ENT].get("manager").is_none(), "{u}");
    assert_eq!(user_row(&s, t, &emp2).await[10], "NULL");
}

/// A typed value the user does not have yet (idp-behaviour.md §1.4 U4, line 222; F-10 and
/// §4 item 2): `Add phoneNumbers[type eq "mobile"].value` and `Replace
/// phoneNumbers[type eq "work"].value` on a user with no phone create the typed element
/// (never 400 `noTarget`), stored exactly as sent (line 177); a later `Remove` of a typed
/// value the user lacks is a no-op success.
async fn add_phone_the_user_lacks(t: Target) {
    let s = start_target!(t);
    let id = create(&s, &minimal_user("nophone@contoso.com", "nophone")).await;
    assert!(get_user(&s, &id).await.get("phoneNumbers").is_none());
    let u = patch_user(
        &s,
        &id,
        json!([
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "55555555555"},
            {"op": "Replace", "path": "phoneNumbers[type eq \"work\"].value", "value": "+1 (555) 555-0100"}
        ]),
    )
    .await;
    t.expect(&u, "phoneNumbers.mobile", "55555555555");
    t.expect(&u, "phoneNumbers.work", "+1 (555) 555-0100");
    let row = user_row(&s, t, &id).await;
    assert_eq!(
        row[5..7],
        t.row(&ROW[5..7], &["+1 (555) 555-0100", "55555555555"])
    );
    let u = patch_user(
        &s,
        &id,
        json!([
            {"op": "Remove", "path": "phoneNumbers[type eq \"work\"].value"},
            {"op": "Remove", "path": "phoneNumbers[type eq \"fax\"].value"}
        ]),
    )
    .await;
    if t.stores("phoneNumbers.mobile") {
        assert_eq!(
            u["phoneNumbers"],
            json!([{"type": "mobile", "value": "55555555555"}]),
            "{u}"
        );
    } else {
        assert!(u.get("phoneNumbers").is_none(), "{u}");
    }
    let row = user_row(&s, t, &id).await;
    assert_eq!(row[5..7], t.row(&ROW[5..7], &["NULL", "55555555555"]));
}

/// The SCIM Validator's PATCH shapes (idp-behaviour.md §1.6, lines 289–293; F-5, F-8): on a
/// user created without an e-mail, a lower-case `add` of `emails[type eq "work"].value`
/// creates it (the Validator expects it afterwards); `add`/`replace` of `…].primary` with a
/// boolean and `replace` of `…].display` are accepted; a typed value the app has no column
/// for (`emails[type eq "home"].value`) is ignored. The work address reads back as sent.
async fn validator_patch_shapes(t: Target) {
    let s = start_target!(t);
    let body = json!({
        "schemas": [USER], "userName": "validator@contoso.com", "displayName": "Validator",
        "name": {"givenName": "Val", "familyName": "Idator"}, "active": true
    });
    let id = create(&s, &body).await;
    assert!(get_user(&s, &id).await.get("emails").is_none());
    let u = patch_user(
        &s,
        &id,
        json!([
            {"op": "add", "path": "emails[type eq \"work\"].value", "value": "Val.Idator@contoso.com"},
            {"op": "add", "path": "emails[type eq \"home\"].value", "value": "val@home.example"},
            {"op": "add", "path": "emails[type eq \"work\"].primary", "value": false}
        ]),
    )
    .await;
    assert_eq!(typed(&u, "emails", "work"), "Val.Idator@contoso.com", "{u}");
    assert_eq!(typed(&u, "emails", "home"), &Value::Null, "no column: {u}");
    assert_eq!(user_row(&s, t, &id).await[4], "Val.Idator@contoso.com");
    let u = patch_user(
        &s,
        &id,
        json!([
            {"op": "replace", "path": "emails[type eq \"work\"].display", "value": "Val"},
            {"op": "replace", "path": "emails[type eq \"work\"].primary", "value": true},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "val.idator@contoso.com"}
        ]),
    )
    .await;
    assert_eq!(typed(&u, "emails", "work"), "val.idator@contoso.com", "{u}");
    assert_eq!(user_row(&s, t, &id).await[4], "val.idator@contoso.com");
    let j = query(
        &s,
        "Users",
        "",
        "emails[type eq \"work\"].value eq \"val.idator@contoso.com\"",
    )
    .await;
    assert_eq!(
        j["totalResults"], 1,
        "a matching attribute Entra may use (line 115): {j}"
    );
}

/// An older job's create with explicit nulls (idp-behaviour.md §1.3, lines 131–134; ENTRA-TUT
/// example 2): `null` means "no value" (RFC 7643 §2.5), so the create is `201`, the null
/// attributes read back absent and their columns stay NULL.
async fn older_job_sends_nulls(t: Target) {
    let s = start_target!(t);
    let mut body = minimal_user("nulls@contoso.com", "nulls");
    body["title"] = Value::Null;
    body["preferredLanguage"] = Value::Null;
    body["phoneNumbers"] = Value::Null;
    body[ENT] = json!({"department": null, "employeeNumber": null, "manager": null});
    let r = s
        .client
        .post("/scim/v2/Users", &body)
        .await
        .expect(201)
        .json();
    let id = r["id"].as_str().expect("id").to_owned();
    for absent in ["title", "preferredLanguage", "phoneNumbers", ENT] {
        assert!(r.get(absent).is_none(), "{absent}: {r}");
    }
    assert_eq!(
        user_row(&s, t, &id).await,
        t.row(
            &ROW,
            &[
                "nulls@contoso.com",
                "Test",
                "User",
                "Test User",
                "nulls@contoso.com",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                "NULL",
                &created_active(t).to_string()
            ]
        )
    );
}

/// Disable and enable (idp-behaviour.md §1.4 U6, lines 249–255; deprovisioning §1.3,
/// line 104): the default dialect's `"False"`/`"True"` strings, the flag's lower-case op with
/// a boolean, and the tutorial's capitalised op with a boolean. Each answers `200` with a JSON
/// boolean `active`; the disabled user is still returned by GET and by filter (line 253).
/// On Active Directory the user starts disabled (created without a password), and the test
/// DC (Samba) enables it on request; a Windows domain whose policy wants a password refuses
/// that with a 400 naming `active` until one is set (README "Active Directory").
async fn disable_and_enable(t: Target) {
    let s = start_target!(t);
    let id = create(&s, &minimal_user("dis@contoso.com", "dis")).await;
    let steps = [
        (
            json!({"op": "Replace", "path": "active", "value": "False"}),
            false,
        ),
        (
            json!({"op": "Replace", "path": "active", "value": "True"}),
            true,
        ),
        (
            json!({"op": "replace", "path": "active", "value": false}),
            false,
        ),
        (
            json!({"op": "replace", "path": "active", "value": true}),
            true,
        ),
        (
            json!({"op": "Replace", "path": "active", "value": false}),
            false,
        ),
    ];
    for (op, active) in steps {
        let u = patch_user(&s, &id, json!([op.clone()])).await;
        assert_eq!(u["active"], active, "{op}: {u}");
        assert_eq!(get_user(&s, &id).await["active"], active, "{op}");
        assert_eq!(user_row(&s, t, &id).await[11], active.to_string(), "{op}");
        let j = query(&s, "Users", "", "userName eq \"dis@contoso.com\"").await;
        assert_eq!(j["totalResults"], 1, "{op}: {j}");
        assert_eq!(j["Resources"][0]["active"], active, "{op}: {j}");
    }
}

/// Delete (idp-behaviour.md §1.4 U7, lines 259–260; §1.3, line 107): `DELETE /Users/{id}` is
/// `204` with no body. On the quickstart (`on_delete = "hard"`) the row is gone and a later
/// GET is `404` and the match query finds nothing; the helpdesk's, Redmine's and phpBB's
/// configs say `on_delete = "soft"`, so there the row stays in the app, disabled (Redmine:
/// locked; phpBB: inactive), while for SCIM it is gone just the same (RFC 7644 §3.6; see:
/// issue #9).
async fn delete_user(t: Target) {
    let s = start_target!(t);
    let id = create(&s, &minimal_user("gone@contoso.com", "gone")).await;
    let r = s
        .client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    assert!(r.body.is_empty(), "{}", r.text());
    let j = query(&s, "Users", "", "userName eq \"gone@contoso.com\"").await;
    match t {
        Target::Quickstart | Target::Ldap | Target::Rest | Target::ActiveDirectory => {
            s.client
                .get(&format!("/scim/v2/Users/{id}"))
                .await
                .scim_error(404, None);
            assert_eq!(j["totalResults"], 0, "{j}");
            assert!(user_row(&s, t, &id).await.is_empty());
        }
        Target::Helpdesk | Target::HelpdeskMariadb | Target::Redmine | Target::Phpbb => {
            s.client
                .get(&format!("/scim/v2/Users/{id}"))
                .await
                .scim_error(404, None);
            assert_eq!(j["totalResults"], 0, "{j}");
            assert_eq!(user_row(&s, t, &id).await[11], "false");
        }
    }
}

/// Group create and the group probes (idp-behaviour.md §1.5, lines 271–273, and the random
/// group fetch of §1.2, line 86): the match query before the create finds nothing; the
/// tutorial's create, with the extra ADSCIM schema URI, `externalId` and `meta.resourceType`,
/// is `201` with `id`, `displayName` and `"members": []`; the match query and the GET with
/// `excludedAttributes=members` then find it without `members`.
async fn group_create_and_probe(t: Target) {
    let s = start_target!(t);
    let oid = guid();
    let j = query(
        &s,
        "Groups",
        "excludedAttributes=members&",
        "displayName eq \"Sales Team\"",
    )
    .await;
    assert_eq!(j["totalResults"], 0, "{j}");
    let r = s
        .client
        .post(
            "/scim/v2/Groups",
            &json!({
                "schemas": [GROUP, ADSCIM],
                "externalId": oid,
                "displayName": "Sales Team",
                "meta": {"resourceType": "Group"}
            }),
        )
        .await
        .expect(201)
        .json();
    let gid = r["id"].as_str().expect("id").to_owned();
    assert_eq!(r["displayName"], "Sales Team", "{r}");
    assert_eq!(r["externalId"], oid.as_str(), "{r}");
    assert_eq!(r["members"], json!([]), "{r}");
    assert_eq!(r["meta"]["resourceType"], "Group", "{r}");
    assert_eq!(group_name(&s, t, &gid).await.as_deref(), Some("Sales Team"));
    let j = query(
        &s,
        "Groups",
        "excludedAttributes=members&",
        "displayName eq \"Sales Team\"",
    )
    .await;
    assert_eq!(j["totalResults"], 1, "{j}");
    assert_eq!(j["Resources"][0]["id"], gid.as_str(), "{j}");
    assert_eq!(j["Resources"][0]["externalId"], oid.as_str(), "{j}");
    assert!(j["Resources"][0].get("members").is_none(), "{j}");
    let g = s
        .client
        .get(&format!("/scim/v2/Groups/{gid}?excludedAttributes=members"))
        .await
        .expect(200)
        .json();
    assert_eq!(g["displayName"], "Sales Team");
    assert!(g.get("members").is_none(), "{g}");
    // displayName is unique (line 264).
    s.client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP, ADSCIM], "externalId": guid(), "displayName": "Sales Team",
                    "meta": {"resourceType": "Group"}}),
        )
        .await
        .scim_error(409, Some("uniqueness"));
}

/// Group membership (idp-behaviour.md §1.5, lines 275–279; §4 item 4): many members added in
/// one PATCH with `"$ref": null` (line 275), added again as a no-op; removed by the default
/// value array with and without `$ref` (line 276) and by the flag's `members[value eq "…"]`
/// path with no value (line 277), removing an absent member being a no-op; each answers
/// `204` or `200`, and the app's join table follows. The membership check (line 279, `id eq`
/// `and members eq`) finds a member and not a removed one.
async fn group_membership(t: Target) {
    let s = start_target!(t);
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            create(
                &s,
                &minimal_user(&format!("m{i}@contoso.com"), &format!("m{i}")),
            )
            .await,
        );
    }
    // In the order the group reads them back.
    ids.sort_by_key(|v| (v.parse::<u64>().unwrap_or(u64::MAX), v.clone()));
    let r = s
        .client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP, ADSCIM], "externalId": guid(), "displayName": "Members",
                    "meta": {"resourceType": "Group"}}),
        )
        .await
        .expect(201);
    let gid = r.json()["id"].as_str().expect("id").to_owned();
    let add: Vec<Value> = ids
        .iter()
        .map(|id| json!({"$ref": null, "value": id}))
        .collect();
    let add = json!([{"op": "Add", "path": "members", "value": add}]);
    patch_group(&s, &gid, add.clone()).await;
    assert_eq!(members(&s, t, &gid).await, ids);
    patch_group(&s, &gid, add).await;
    assert_eq!(members(&s, t, &gid).await, ids, "adding again is a no-op");
    let g = s
        .client
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .expect(200)
        .json();
    let mut listed: Vec<&str> = g["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    // Numeric ids in number order, others (entryUUIDs) as text.
    listed.sort_by_key(|v| (v.parse::<u64>().unwrap_or(u64::MAX), *v));
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    // Default dialect: value array, with `$ref: null` (tutorial) and without (ENTRA-KI).
    patch_group(
        &s,
        &gid,
        json!([{"op": "Remove", "path": "members", "value": [
            {"$ref": null, "value": ids[0]}, {"value": ids[1]}
        ]}]),
    )
    .await;
    assert_eq!(members(&s, t, &gid).await, ids[2..].to_vec());
    // Flag: a filtered path and no value.
    patch_group(
        &s,
        &gid,
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[2])}]),
    )
    .await;
    assert_eq!(members(&s, t, &gid).await, ids[3..].to_vec());
    // Removing members that are not there succeeds and changes nothing.
    patch_group(
        &s,
        &gid,
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": ids[0]}]}]),
    )
    .await;
    patch_group(
        &s,
        &gid,
        json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", ids[1])}]),
    )
    .await;
    assert_eq!(members(&s, t, &gid).await, ids[3..].to_vec());
    // The membership check.
    let j = query(
        &s,
        "Groups",
        "attributes=id&",
        &format!("id eq \"{gid}\" and members eq \"{}\"", ids[3]),
    )
    .await;
    assert_eq!(j["totalResults"], 1, "{j}");
    let j = query(
        &s,
        "Groups",
        "attributes=id&",
        &format!("id eq \"{gid}\" and members eq \"{}\"", ids[0]),
    )
    .await;
    assert_eq!(j["totalResults"], 0, "{j}");
}

/// Group rename and delete (idp-behaviour.md §1.5, lines 274 and 278): `PATCH` with
/// `{"op":"Replace","path":"displayName"}` answers `204` or `200` and renames the app's row,
/// members untouched; the match query finds the new name only; `DELETE /Groups/{id}` is `204`,
/// then GET is `404` and the row and its memberships are gone, the member users unharmed.
async fn group_rename_and_delete(t: Target) {
    let s = start_target!(t);
    let uid = create(&s, &minimal_user("member@contoso.com", "member")).await;
    let r = s
        .client
        .post(
            "/scim/v2/Groups",
            &json!({"schemas": [GROUP, ADSCIM], "externalId": guid(), "displayName": "Old Name",
                    "meta": {"resourceType": "Group"}}),
        )
        .await
        .expect(201);
    let gid = r.json()["id"].as_str().expect("id").to_owned();
    patch_group(
        &s,
        &gid,
        json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": uid}]}]),
    )
    .await;
    patch_group(
        &s,
        &gid,
        json!([{"op": "Replace", "path": "displayName", "value": "New Name"}]),
    )
    .await;
    assert_eq!(group_name(&s, t, &gid).await.as_deref(), Some("New Name"));
    assert_eq!(members(&s, t, &gid).await, vec![uid.clone()]);
    let j = query(
        &s,
        "Groups",
        "excludedAttributes=members&",
        "displayName eq \"New Name\"",
    )
    .await;
    assert_eq!(j["totalResults"], 1, "{j}");
    assert_eq!(j["Resources"][0]["id"], gid.as_str(), "{j}");
    let j = query(
        &s,
        "Groups",
        "excludedAttributes=members&",
        "displayName eq \"Old Name\"",
    )
    .await;
    assert_eq!(j["totalResults"], 0, "{j}");
    let r = s
        .client
        .send(Method::DELETE, &format!("/scim/v2/Groups/{gid}"), &[], None)
        .await
        .expect(204);
    assert!(r.body.is_empty(), "{}", r.text());
    s.client
        .get(&format!("/scim/v2/Groups/{gid}"))
        .await
        .scim_error(404, None);
    assert_eq!(group_name(&s, t, &gid).await, None);
    assert!(members(&s, t, &gid).await.is_empty());
    assert_eq!(get_user(&s, &uid).await["active"], created_active(t));
}
