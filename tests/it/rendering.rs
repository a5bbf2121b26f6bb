//! A list page shows each resource exactly as a GET of it does, on every store. A list with
//! the default projection writes its resources straight from the store's rows
//! (`scim::shape`); a GET renders them from an object. Both must give the same attributes in
//! the same order, the same `schemas`, the same `meta` and the same version (the GET's ETag).

use serde_json::{Value, json};

use crate::support::idp::Target;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

per_target!(list_shows_what_get_shows);

/// A user with every attribute the example apps have a place for; each app keeps its own.
fn body(name: &str, given: &str) -> Value {
    json!({
        "schemas": [USER, ENT],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "active": true,
        "displayName": format!("{given} \"Q\" Jensen"),
        "title": "Tour Guide",
        "name": {"givenName": given, "familyName": "Jensen"},
        "emails": [{"type": "work", "value": name, "primary": true}],
        "phoneNumbers": [
            {"type": "work", "value": "+1 555 0100"},
            {"type": "mobile", "value": "555 0199"}
        ],
        ENT: {"department": "Tours", "employeeNumber": "701984"}
    })
}

/// Compact JSON in the order received: equal texts are equal bytes on the wire.
fn text(v: &Value) -> String {
    serde_json::to_string(v).expect("json")
}

async fn list_shows_what_get_shows(t: Target) {
    let s = start_target!(t);
    let mut users = Vec::new();
    for (name, given) in [
        ("render-a@example.com", "Barbara"),
        ("render-b@example.com", "Zoë"),
    ] {
        let r = s.client.post("/scim/v2/Users", &body(name, given)).await;
        let id = r.expect(201).json()["id"].as_str().expect("id").to_owned();
        users.push((name, id));
    }
    for (name, id) in &users {
        let one = s
            .client
            .get(&format!("/scim/v2/Users/{id}"))
            .await
            .expect(200);
        let etag = one.header("etag");
        let one = one.json();
        let path = format!("/scim/v2/Users?filter=userName+eq+%22{name}%22");
        let page = s.client.get(&path).await.expect(200).json();
        assert_eq!(page["totalResults"], 1, "{t:?}: {page}");
        let listed = &page["Resources"][0];
        assert_eq!(text(listed), text(&one), "{t:?}");
        assert_eq!(listed["meta"]["version"].as_str(), etag.as_deref(), "{t:?}");
        assert_eq!(listed["userName"], *name, "{t:?}");
    }

    // Every user on a page, the app's own included.
    let page = s
        .client
        .get("/scim/v2/Users?count=20")
        .await
        .expect(200)
        .json();
    let listed = page["Resources"].as_array().expect("Resources");
    assert!(listed.len() >= 2, "{t:?}: {page}");
    assert_eq!(page["itemsPerPage"], listed.len());
    for r in listed {
        let id = r["id"].as_str().expect("id");
        let one = s.client.get(&format!("/scim/v2/Users/{id}")).await;
        assert_eq!(text(r), text(&one.expect(200).json()), "{t:?}");
    }

    // Groups as Entra reads them: without their members.
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                       "displayName": "Render Group"});
    let r = s.client.post("/scim/v2/Groups", &group).await.expect(201);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let path = format!("/scim/v2/Groups/{id}?excludedAttributes=members");
    let one = s.client.get(&path).await.expect(200).json();
    let path =
        "/scim/v2/Groups?excludedAttributes=members&filter=displayName+eq+%22Render+Group%22";
    let page = s.client.get(path).await.expect(200).json();
    assert_eq!(page["totalResults"], 1, "{t:?}: {page}");
    assert_eq!(text(&page["Resources"][0]), text(&one), "{t:?}");
    assert!(one.get("members").is_none(), "{t:?}: {one}");
}
