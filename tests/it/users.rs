//! Users end to end: create, read, list, replace, patch, delete, against the quickstart.

use serde_json::json;

use crate::support::client::{patch_body, user};
use crate::support::Sidecar;

/// A create answers 201 with Location, ETag and the resource as stored; the row lands in the
/// app's own table with the mapped columns and value map applied.
#[tokio::test]
async fn create_user_writes_the_apps_row() {
    let s = Sidecar::quickstart().await;
    let r = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "bjensen@example.com",
                "name": {"givenName": "Barbara", "familyName": "Jensen"},
                "emails": [{"type": "work", "value": "bjensen@example.com", "primary": true}],
                "active": false
            }),
        )
        .await
        .expect(201);
    let body = r.json();
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(r.header("location"), Some(format!("http://{}/scim/v2/Users/{id}", s.addr)));
    assert_eq!(r.header("etag").as_deref(), body["meta"]["version"].as_str());
    assert_eq!(body["userName"], "bjensen@example.com");
    assert_eq!(body["active"], false);
    assert_eq!(body["emails"], json!([{"type": "work", "value": "bjensen@example.com"}]));
    let rows = s.sql(&format!("SELECT login, first_name, last_name, email, status FROM accounts WHERE id = {id}"));
    assert_eq!(rows, vec![vec!["bjensen@example.com", "Barbara", "Jensen", "bjensen@example.com", "D"]]);
    let _ = user("x");
    let _ = patch_body(json!([]));
}
