//! PATCH bodies (RFC 7644 §3.5.2, with the Entra and Okta dialects) parsed and applied to a
//! User and to a Group: never a panic, only `Ok` or a SCIM error; an applied PATCH leaves
//! attributes the normaliser accepts again.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use scim_sidecar::scim::UnknownPolicy;
use scim_sidecar::scim::patch;
use scim_sidecar::scim::resource::{Normalizer, Object};
use scim_sidecar::scim::schema::{
    self, ENTERPRISE_USER_URN, Extension, GROUP_URN, ResourceType, USER_URN,
};
use serde_json::{Value, json};

/// A resource type serving every attribute of its schemas.
fn resource_type(
    name: &str,
    urn: &str,
    ext: Option<&str>,
    membership: Option<&str>,
) -> ResourceType {
    let core = schema::builtin(urn)
        .cloned()
        .unwrap_or_else(|| panic!("schema {urn}"));
    let extensions: Vec<Extension> = ext
        .and_then(schema::builtin)
        .map(|s| Extension {
            schema: s.clone(),
            required: false,
        })
        .into_iter()
        .collect();
    let mut known = vec![core.clone()];
    known.extend(extensions.iter().map(|e| e.schema.clone()));
    ResourceType {
        name: name.into(),
        endpoint: format!("/{name}s"),
        description: String::new(),
        schema: core,
        extensions,
        common: schema::common_attributes(true),
        membership: membership.map(str::to_owned),
        known,
    }
}

static USER: LazyLock<ResourceType> =
    LazyLock::new(|| resource_type("User", USER_URN, Some(ENTERPRISE_USER_URN), None));
static GROUP: LazyLock<ResourceType> =
    LazyLock::new(|| resource_type("Group", GROUP_URN, None, Some("members")));

fn start(rt: &ResourceType) -> Object {
    let v = if rt.name == "User" {
        json!({
            "userName": "bjensen", "externalId": "e-1", "active": true,
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"type": "work", "value": "b@example.com", "primary": true},
                       {"type": "home", "value": "bj@example.org"}],
            ENTERPRISE_USER_URN: {"department": "Tour", "manager": {"value": "7"}}
        })
    } else {
        json!({"displayName": "Admins", "externalId": "g-1"})
    };
    match v {
        Value::Object(o) => o,
        _ => Object::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(ops) = patch::parse(body) else {
        return;
    };
    for rt in [&*USER, &*GROUP] {
        for policy in [UnknownPolicy::Ignore, UnknownPolicy::Reject] {
            let mut attrs = start(rt);
            if patch::apply(rt, &mut attrs, &ops, policy).is_ok() {
                // What a PATCH leaves behind is a body the normaliser accepts again.
                let mut body = attrs.clone();
                body.insert("schemas".into(), json!([rt.schema.id]));
                let mut n = Normalizer::new(rt, UnknownPolicy::Ignore);
                let _ = n.resource(Value::Object(body));
            }
        }
    }
});
