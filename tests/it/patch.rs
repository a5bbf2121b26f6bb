//! PATCH against the quickstart in the shapes Entra ID and Okta send
//! (`shared/reference/idp-behaviour.md` §1.4, §2.3), and its all-or-nothing rule.

use serde_json::{Value, json};

use crate::support::Sidecar;
use crate::support::client::{patch_body, user};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

async fn new_user(s: &Sidecar, name: &str) -> String {
    s.client
        .post("/scim/v2/Users", &user(name))
        .await
        .expect(201)
        .json()["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

async fn patch(s: &Sidecar, id: &str, ops: Value) -> Value {
    s.client
        .patch(&format!("/scim/v2/Users/{id}"), &patch_body(ops))
        .await
        .expect(200)
        .json()
}

/// Entra's default dialect: capitalised ops, `"False"` as a string, typed values that do not
/// exist yet (created, not `noTarget`), extension attributes by URN path, the manager as a
/// bare id, and unstored attributes ignored.
#[tokio::test]
async fn entra_default_dialect() {
    let s = Sidecar::quickstart().await;
    let id = new_user(&s, "entra@contoso.com").await;
    let r = patch(
        &s,
        &id,
        json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "entra@contoso.com"},
            {"op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "55555555555"},
            {"op": "Replace", "path": "name.familyName", "value": "Doe"},
            {"op": "Replace", "path": "externalId", "value": "entra"},
            {"op": "Add", "path": format!("{ENT}:department"), "value": "Retail"},
            {"op": "Add", "path": format!("{ENT}:manager"), "value": "1"},
            {"op": "Replace", "path": "addresses[type eq \"work\"].formatted", "value": "18/2111"},
            {"op": "Add", "path": "nickName", "value": "Babs"}
        ]),
    )
    .await;
    assert_eq!(r["active"], false);
    assert_eq!(
        r["emails"],
        json!([{"type": "work", "value": "entra@contoso.com", "primary": true}])
    );
    assert_eq!(
        r["phoneNumbers"],
        json!([{"type": "mobile", "value": "55555555555"}]),
        "stored exactly as sent"
    );
    assert_eq!(r["name"]["familyName"], "Doe");
    assert_eq!(r["externalId"], "entra");
    assert_eq!(
        r[ENT],
        json!({"department": "Retail", "manager": {"value": "1"}})
    );
    assert!(r.get("addresses").is_none() && r.get("nickName").is_none());
    assert_eq!(
        s.sql(&format!("SELECT status, email, mobile, last_name, department, manager_id FROM accounts WHERE id = {id}")),
        vec![vec!["D", "entra@contoso.com", "55555555555", "Doe", "Retail", "1"]]
    );
    let r = patch(
        &s,
        &id,
        json!([{"op": "Replace", "path": "active", "value": "True"}]),
    )
    .await;
    assert_eq!(r["active"], true);
}

/// Entra's `aadOptscim062020` dialect: one path-less replace whose value has dotted and
/// URN-qualified keys.
#[tokio::test]
async fn entra_compliant_dialect() {
    let s = Sidecar::quickstart().await;
    let id = new_user(&s, "flag@contoso.com").await;
    let r = patch(
        &s,
        &id,
        json!([{"op": "replace", "value": {
            "displayName": "Barbara Jensen", "name.givenName": "Barbara", "name.familyName": "Jensen",
            format!("{ENT}:employeeNumber"): "701984", "active": false
        }}]),
    )
    .await;
    assert_eq!(r["displayName"], "Barbara Jensen");
    assert_eq!(
        r["name"],
        json!({"givenName": "Barbara", "familyName": "Jensen"})
    );
    assert_eq!(r[ENT]["employeeNumber"], "701984");
    assert_eq!(r["active"], false);
}

/// Okta: deactivate by a path-less PATCH, and read back; removing attributes.
#[tokio::test]
async fn okta_and_removals() {
    let s = Sidecar::quickstart().await;
    let id = new_user(&s, "okta@example.com").await;
    let r = patch(
        &s,
        &id,
        json!([{"op": "replace", "value": {"active": false}}]),
    )
    .await;
    assert_eq!(r["active"], false);
    patch(&s, &id, json!([{"op": "add", "value": {"title": "T", "emails": [{"type": "work", "value": "o@x"}]}}])).await;
    let r = patch(&s, &id, json!([{"op": "remove", "path": "title"}, {"op": "remove", "path": "emails[type eq \"work\"]"}])).await;
    assert!(r.get("title").is_none() && r.get("emails").is_none());
    assert_eq!(
        s.sql(&format!(
            "SELECT job_title, email FROM accounts WHERE id = {id}"
        )),
        vec![vec!["NULL", "NULL"]]
    );
    // Removing what is not there succeeds.
    patch(
        &s,
        &id,
        json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]),
    )
    .await;
}

/// A PATCH whose second operation fails keeps nothing of the first: the store is exactly as
/// before, whether the failure is a type error, a value too long for its column, a unique
/// clash or a manager that does not exist.
#[tokio::test]
async fn all_or_nothing() {
    let s = Sidecar::quickstart().await;
    let id = new_user(&s, "atomic").await;
    new_user(&s, "taken").await;
    let before = s.snapshot();
    let cases = [
        (
            json!({"op": "replace", "path": "active", "value": "perhaps"}),
            400,
            "invalidValue",
            "active",
        ),
        (
            json!({"op": "replace", "path": "userName", "value": "x".repeat(65)}),
            400,
            "invalidValue",
            "64",
        ),
        (
            json!({"op": "replace", "path": "userName", "value": "TAKEN"}),
            409,
            "uniqueness",
            "userName",
        ),
        (
            json!({"op": "add", "path": format!("{ENT}:manager"), "value": "4040"}),
            400,
            "invalidValue",
            "",
        ),
        (
            json!({"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"}),
            400,
            "mutability",
            "meta",
        ),
        (
            json!({"op": "remove", "path": "userName"}),
            400,
            "invalidValue",
            "userName",
        ),
        (
            json!({"op": "move", "path": "title"}),
            400,
            "invalidSyntax",
            "move",
        ),
        (
            json!({"op": "add", "path": "emails[type eq", "value": "x"}),
            400,
            "invalidPath",
            "emails",
        ),
    ];
    for (second, status, scim_type, needle) in cases {
        let body = patch_body(
            json!([{"op": "replace", "path": "title", "value": "SHOULD NOT STAY"}, second]),
        );
        let d = s
            .client
            .patch(&format!("/scim/v2/Users/{id}"), &body)
            .await
            .scim_error(status, Some(scim_type));
        assert!(d.contains(needle), "{second}: {d}");
        assert_eq!(s.snapshot(), before, "{second} left a change behind");
    }
}

/// A path naming the enterprise extension itself (`"path": "urn:…:enterprise:2.0:User"`)
/// targets the whole extension as one complex value (RFC 7644 §3.5.2.1, §3.5.2.3): `add` and
/// `replace` merge the object's attributes with what is stored, a non-object value is
/// `400 invalidSyntax`, and `remove` clears every extension attribute. It used to resolve as an
/// unknown attribute `User` and be ignored, answering 200 with nothing written.
// Found by: scim2-tester 0.5.2, check_add_attribute and check_replace_attribute (scripts/conformance.sh).
#[tokio::test]
async fn extension_urn_as_path() {
    let s = Sidecar::quickstart().await;
    let id = new_user(&s, "ext@example.com").await;
    let row = |s: &Sidecar| {
        s.sql(&format!(
            "SELECT employee_no, department, manager_id FROM accounts WHERE id = {id}"
        ))
    };
    let r = patch(
        &s,
        &id,
        json!([{"op": "add", "path": ENT, "value": {"employeeNumber": "42", "department": "Ops", "manager": {"value": "1"}}}]),
    )
    .await;
    assert_eq!(
        r[ENT],
        json!({"employeeNumber": "42", "department": "Ops", "manager": {"value": "1"}})
    );
    assert_eq!(row(&s), vec![vec!["42", "Ops", "1"]]);
    // The URN is case-insensitive, and replace leaves unnamed attributes alone.
    let r = patch(
        &s,
        &id,
        json!([{"op": "replace", "path": ENT.to_uppercase(), "value": {"department": "Sales"}}]),
    )
    .await;
    assert_eq!(r[ENT]["department"], "Sales");
    assert_eq!(row(&s), vec![vec!["42", "Sales", "1"]]);
    let before = s.snapshot();
    s.client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "add", "path": ENT, "value": "Ops"}])),
        )
        .await
        .scim_error(400, Some("invalidSyntax"));
    assert_eq!(s.snapshot(), before);
    let r = patch(&s, &id, json!([{"op": "remove", "path": ENT}])).await;
    assert!(r.get(ENT).is_none(), "{r}");
    assert_eq!(row(&s), vec![vec!["NULL", "NULL", "NULL"]]);
}

/// A PATCH (or POST) body key whose fourth byte falls inside a multi-byte character
/// (`"urnƜetf:…"`) is an unknown attribute, answered like any other. Before, slicing the key
/// panicked and the connection was dropped without an answer. See: issue #14 (found by the
/// `patch` fuzz target; its input is fuzz/seeds/patch/r14-multibyte-key).
#[tokio::test]
async fn r14_multibyte_key_is_answered() {
    let s = crate::support::Sidecar::quickstart().await;
    let created = s
        .client
        .post(
            "/scim/v2/Users",
            &crate::support::client::user("mb@example.com"),
        )
        .await
        .expect(201)
        .json();
    let id = created["id"].as_str().expect("id");
    let body = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/patch/r14-multibyte-key"),
    )
    .expect("the fuzz input");
    let r = s
        .client
        .send(
            http::Method::PATCH,
            &format!("/scim/v2/Users/{id}"),
            &[],
            Some(body.into()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s
        .client
        .post(
            "/scim/v2/Users",
            &serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "mb2@example.com",
                "urn\u{19c}etf:x": "y"
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}
