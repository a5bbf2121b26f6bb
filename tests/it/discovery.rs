//! Discovery (RFC 7644 §4): generated from the mapping, publishing only what is stored.

use serde_json::{Value, json};

use crate::support::Sidecar;

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn names(attrs: &Value) -> Vec<String> {
    attrs
        .as_array()
        .expect("attributes")
        .iter()
        .map(|a| a["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn attr<'a>(schema: &'a Value, name: &str) -> &'a Value {
    schema["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .unwrap_or(&Value::Null)
}

/// `/ServiceProviderConfig` says what works: PATCH, filter with the page cap, sort, ETags;
/// no bulk, no password change; bearer tokens.
#[tokio::test]
async fn service_provider_config() {
    let s = Sidecar::quickstart().await;
    let c = s
        .client
        .get("/scim/v2/ServiceProviderConfig")
        .await
        .expect(200)
        .json();
    assert_eq!(
        c["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    assert_eq!(c["patch"]["supported"], true);
    assert_eq!(c["bulk"]["supported"], false);
    assert_eq!(c["filter"], json!({"supported": true, "maxResults": 1000}));
    assert_eq!(c["sort"]["supported"], true);
    assert_eq!(c["etag"]["supported"], true);
    assert_eq!(c["changePassword"]["supported"], false);
    assert_eq!(c["authenticationSchemes"][0]["type"], "oauthbearertoken");
    assert_eq!(
        c["meta"]["location"],
        format!("http://{}/scim/v2/ServiceProviderConfig", s.addr)
    );
}

/// `/ResourceTypes` lists User (with the enterprise extension, because it is mapped) and
/// Group; one can be fetched by name; an unknown one is 404.
#[tokio::test]
async fn resource_types() {
    let s = Sidecar::quickstart().await;
    let l = s
        .client
        .get("/scim/v2/ResourceTypes")
        .await
        .expect(200)
        .json();
    assert_eq!(l["totalResults"], 2);
    let user = &l["Resources"][0];
    assert_eq!(user["id"], "User");
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(user["schema"], "urn:ietf:params:scim:schemas:core:2.0:User");
    assert_eq!(
        user["schemaExtensions"],
        json!([{"schema": ENT, "required": false}])
    );
    assert_eq!(l["Resources"][1]["endpoint"], "/Groups");
    let g = s
        .client
        .get("/scim/v2/ResourceTypes/Group")
        .await
        .expect(200)
        .json();
    assert_eq!(g["schema"], "urn:ietf:params:scim:schemas:core:2.0:Group");
    assert!(g.get("schemaExtensions").is_none());
    s.client
        .get("/scim/v2/ResourceTypes/Widget")
        .await
        .scim_error(404, None);
}

/// `/Schemas` publishes only stored attributes and sub-attributes, with characteristics
/// from the mapping and the store: `userName` required and unique, typed emails and phones
/// with the mapped types as canonical values, enterprise attributes that are mapped, group
/// members. Nothing the app cannot keep (addresses, password, nickName, name.formatted).
#[tokio::test]
async fn schemas_publish_what_is_stored() {
    let s = Sidecar::quickstart().await;
    let l = s.client.get("/scim/v2/Schemas").await.expect(200).json();
    let ids: Vec<&str> = l["Resources"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![
            "urn:ietf:params:scim:schemas:core:2.0:User",
            ENT,
            "urn:ietf:params:scim:schemas:core:2.0:Group"
        ]
    );
    let user = s
        .client
        .get("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
        .await
        .expect(200)
        .json();
    assert_eq!(
        user["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"])
    );
    assert_eq!(
        names(&user["attributes"]),
        vec![
            "userName",
            "name",
            "displayName",
            "title",
            "active",
            "emails",
            "phoneNumbers"
        ]
    );
    let un = attr(&user, "userName");
    assert_eq!(
        (
            un["required"].clone(),
            un["uniqueness"].clone(),
            un["caseExact"].clone()
        ),
        (json!(true), json!("server"), json!(false))
    );
    assert_eq!(
        names(&attr(&user, "name")["subAttributes"]),
        vec!["familyName", "givenName"]
    );
    let phones = attr(&user, "phoneNumbers");
    assert_eq!(names(&phones["subAttributes"]), vec!["value", "type"]);
    assert_eq!(
        phones["subAttributes"][1]["canonicalValues"],
        json!(["work", "mobile"])
    );
    assert_eq!(
        attr(&user, "emails")["subAttributes"][1]["canonicalValues"],
        json!(["work"])
    );
    let ent = s
        .client
        .get(&format!("/scim/v2/Schemas/{ENT}"))
        .await
        .expect(200)
        .json();
    assert_eq!(
        names(&ent["attributes"]),
        vec!["employeeNumber", "department", "manager"]
    );
    assert_eq!(
        names(&attr(&ent, "manager")["subAttributes"]),
        vec!["value"]
    );
    let group = s
        .client
        .get("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group")
        .await
        .expect(200)
        .json();
    assert_eq!(names(&group["attributes"]), vec!["displayName", "members"]);
    assert_eq!(
        attr(&group, "displayName")["uniqueness"],
        "server",
        "the roles table has a unique index on name"
    );
    let text = user.to_string() + &ent.to_string();
    assert!(!text.contains("null"), "Entra wants no nulls in /Schemas");
    s.client
        .get("/scim/v2/Schemas/urn:nope")
        .await
        .scim_error(404, None);
    s.client
        .get("/scim/v2/Schemas?filter=id+pr")
        .await
        .scim_error(403, None);
}
