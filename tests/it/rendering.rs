//! A resource reads the same whichever way the service writes it, on every store. A GET or
//! a list with the default projection writes resources straight from the store's rows, and
//! a create or a PATCH from the object it read back (`scim::shape`); with any
//! `attributes`/`excludedAttributes` they are rendered from an object and projected.
//! `excludedAttributes=id` changes nothing a client sees (`id` is returned always) but takes
//! the second path: both must give the same attributes in the same order, the same
//! `schemas`, the same `meta` and the same version (and ETag).

use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::idp::Target;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

per_target!(written_straight_as_rendered);

/// Compact JSON in the order received: equal texts are equal bytes on the wire.
fn text(v: &Value) -> String {
    serde_json::to_string(v).expect("json")
}

/// `path` with `id` added to its `excludedAttributes`.
fn rendered(path: &str) -> String {
    if path.contains("excludedAttributes=") {
        return path.replace("excludedAttributes=", "excludedAttributes=id,");
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}excludedAttributes=id")
}

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

/// The same text both ways; for a single resource, the same ETag as well.
async fn same_both_ways(s: &crate::support::Sidecar, t: Target, path: &str) -> Value {
    let straight = s.client.get(path).await.expect(200);
    let general = s.client.get(&rendered(path)).await.expect(200);
    assert_eq!(
        straight.header("etag"),
        general.header("etag"),
        "{t:?} {path}"
    );
    let (straight, general) = (straight.json(), general.json());
    assert_eq!(text(&straight), text(&general), "{t:?} {path}");
    straight
}

async fn written_straight_as_rendered(t: Target) {
    let s = start_target!(t);
    for (name, given) in [
        ("render-a@example.com", "Barbara"),
        ("render-b@example.com", "Zoë"),
    ] {
        // What a create and a PATCH answer is what a GET shows afterwards.
        let created = s.client.post("/scim/v2/Users", &body(name, given)).await;
        let created = created.expect(201);
        let id = created.json()["id"].as_str().expect("id").to_owned();
        let path = format!("/scim/v2/Users/{id}");
        let general = s.client.get(&rendered(&path)).await.expect(200);
        assert_eq!(created.header("etag"), general.header("etag"), "{t:?}");
        assert_eq!(text(&created.json()), text(&general.json()), "{t:?}");
        let ops = patch_body(json!([{"op": "replace", "path": "title", "value": "Guide"}]));
        let patched = s.client.patch(&path, &ops).await.expect(200);
        let general = s.client.get(&rendered(&path)).await.expect(200);
        assert_eq!(patched.header("etag"), general.header("etag"), "{t:?}");
        assert_eq!(text(&patched.json()), text(&general.json()), "{t:?}");
        let one = same_both_ways(&s, t, &path).await;
        let etag = s.client.get(&path).await.expect(200).header("etag");
        assert_eq!(one["meta"]["version"].as_str(), etag.as_deref(), "{t:?}");
        assert_eq!(one["userName"], name, "{t:?}");
        let path = format!("/scim/v2/Users?filter=userName+eq+%22{name}%22");
        let page = same_both_ways(&s, t, &path).await;
        assert_eq!(page["totalResults"], 1, "{t:?}: {page}");
        assert_eq!(text(&page["Resources"][0]), text(&one), "{t:?}");
    }
    // Every user on a page, the app's own included.
    let page = same_both_ways(&s, t, "/scim/v2/Users?count=20").await;
    let listed = page["Resources"].as_array().expect("Resources");
    assert!(listed.len() >= 2, "{t:?}: {page}");
    assert_eq!(page["itemsPerPage"], listed.len());

    // Groups as Entra reads them: without their members.
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                       "displayName": "Render Group"});
    let r = s.client.post("/scim/v2/Groups", &group).await.expect(201);
    let id = r.json()["id"].as_str().expect("id").to_owned();
    let path = format!("/scim/v2/Groups/{id}?excludedAttributes=members");
    let one = same_both_ways(&s, t, &path).await;
    assert!(one.get("members").is_none(), "{t:?}: {one}");
    let path =
        "/scim/v2/Groups?excludedAttributes=members&filter=displayName+eq+%22Render+Group%22";
    let page = same_both_ways(&s, t, path).await;
    assert_eq!(page["totalResults"], 1, "{t:?}: {page}");
    assert_eq!(text(&page["Resources"][0]), text(&one), "{t:?}");
}
