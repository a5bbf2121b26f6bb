//! The PostgreSQL store, against a real throwaway cluster and the `examples/postgres` helpdesk
//! app: users and groups in one `principals` table told apart by `kind`, e-mails in a child
//! table, an enum state column, externalId kept by the sidecar.

use serde_json::{Value, json};

use crate::support::Sidecar;

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The helpdesk example's sidecar, or a skip (with the reason printed) without PostgreSQL.
macro_rules! helpdesk {
    () => {
        match Sidecar::postgres("postgres", None).await {
            Some(s) => s,
            None => return,
        }
    };
}

fn barbara() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "userName": "BJensen@example.com",
        "externalId": "0b6f5c1e-entra-object-id",
        "displayName": "Barbara Jensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "title": "Tour Guide",
        "emails": [{"type": "work", "value": "bjensen@example.com", "primary": true}],
        "phoneNumbers": [{"type": "mobile", "value": "+1 555 555 8377"}],
        "active": true,
        ENT: {"department": "Tours", "employeeNumber": "701984"}
    })
}

/// A create lands in the app's own rows: the discriminator written, the e-mail in the child
/// table as the primary address, the NOT NULL password column set, externalId in the
/// sidecar's own table; it reads back exactly as sent.
#[tokio::test]
async fn create_writes_the_apps_rows() {
    let s = helpdesk!();
    let r = s
        .client
        .post("/scim/v2/Users", &barbara())
        .await
        .expect(201);
    let body = r.json();
    let id = body["id"].as_str().expect("id").to_owned();
    assert_eq!(body["userName"], "BJensen@example.com");
    assert_eq!(body["externalId"], "0b6f5c1e-entra-object-id");
    assert_eq!(
        body["emails"],
        json!([{"type": "work", "value": "bjensen@example.com"}])
    );
    assert_eq!(
        body["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1 555 555 8377"}])
    );
    assert_eq!(
        body[ENT],
        json!({"department": "Tours", "employeeNumber": "701984"})
    );
    assert_eq!(body["active"], true);
    let rows = s
        .rows(&format!(
            "SELECT kind, login, display_name, first_name, last_name, job_title, mobile, state::text, password_hash FROM principals WHERE id = {id}"
        ))
        .await;
    assert_eq!(
        rows,
        vec![vec![
            "U",
            "BJensen@example.com",
            "Barbara Jensen",
            "Barbara",
            "Jensen",
            "Tour Guide",
            "+1 555 555 8377",
            "active",
            "!"
        ]]
    );
    let emails = s
        .rows(&format!(
            "SELECT address, is_primary FROM user_emails WHERE user_id = {id}"
        ))
        .await;
    assert_eq!(emails, vec![vec!["bjensen@example.com", "true"]]);
    let got = s
        .client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200)
        .json();
    assert_eq!(got["externalId"], "0b6f5c1e-entra-object-id");
    assert_eq!(got["emails"], body["emails"]);
}
