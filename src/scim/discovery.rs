//! Discovery endpoints (RFC 7644 §4): `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`,
//! generated from the resource types the mapping serves, so they publish only what is stored.

use serde_json::{Value, json};

use super::resource::BaseUrl;
use super::schema::{ResourceType, Schema};

/// The ServiceProviderConfig schema URN.
pub const SPC_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// The ResourceType schema URN.
pub const RESOURCE_TYPE_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// The Schema schema URN.
pub const SCHEMA_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// What the service provider supports, for `/ServiceProviderConfig`.
#[derive(Clone, Debug)]
pub struct Features {
    /// `filter.maxResults`: the page size cap.
    pub max_results: u64,
    /// `bulk.maxPayloadSize` is not served, but the body limit is worth publishing.
    pub max_payload_bytes: u64,
    /// A documentation URL for administrators, if configured.
    pub documentation_uri: Option<String>,
}

/// The `/ServiceProviderConfig` document (RFC 7643 §5).
pub fn service_provider_config(f: &Features, base: &BaseUrl) -> Value {
    let mut doc = json!({
        "schemas": [SPC_URN],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": f.max_payload_bytes},
        "filter": {"supported": true, "maxResults": f.max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with a bearer token in the Authorization header (RFC 6750)",
            "specUri": "https://www.rfc-editor.org/info/rfc6750",
            "primary": true
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{}/ServiceProviderConfig", base.0)
        }
    });
    if let (Some(uri), Some(obj)) = (&f.documentation_uri, doc.as_object_mut()) {
        obj.insert("documentationUri".into(), Value::String(uri.clone()));
    }
    doc
}

/// One `/ResourceTypes/{name}` document (RFC 7643 §6).
pub fn resource_type(rt: &ResourceType, base: &BaseUrl) -> Value {
    let extensions: Vec<Value> = rt
        .extensions
        .iter()
        .map(|e| json!({"schema": e.schema.id, "required": e.required}))
        .collect();
    let mut doc = json!({
        "schemas": [RESOURCE_TYPE_URN],
        "id": rt.name,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.description,
        "schema": rt.schema.id,
        "meta": {
            "resourceType": "ResourceType",
            "location": base.location("/ResourceTypes", &rt.name)
        }
    });
    if !extensions.is_empty() {
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("schemaExtensions".into(), Value::Array(extensions));
        }
    }
    doc
}

/// One `/Schemas/{urn}` document (RFC 7643 §7).
pub fn schema(s: &Schema, base: &BaseUrl) -> Value {
    let mut doc = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("schemas".into(), json!([SCHEMA_URN]));
        obj.insert(
            "meta".into(),
            json!({"resourceType": "Schema", "location": base.location("/Schemas", &s.id)}),
        );
    }
    doc
}

/// Every schema served by these resource types, each once, in order of appearance.
pub fn schemas<'a>(types: impl Iterator<Item = &'a ResourceType>) -> Vec<&'a Schema> {
    let mut out: Vec<&Schema> = Vec::new();
    for rt in types {
        for s in std::iter::once(&rt.schema).chain(rt.extensions.iter().map(|e| &e.schema)) {
            if !out.iter().any(|o| o.id == s.id) {
                out.push(s);
            }
        }
    }
    out
}
