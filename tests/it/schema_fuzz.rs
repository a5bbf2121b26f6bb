//! Every attribute the service publishes, tried in every position a client can put it:
//! `sortBy` (both orders), each filter operator with a value of the attribute's type (and a
//! value full of pattern and quoting characters), and each PATCH operation. Whatever the
//! store's column types (enums, integers, booleans, child tables, kept values), the answer is
//! a success or a 4xx naming the problem — never a 500. Run on the quickstart (SQLite), the
//! helpdesk example and WordPress (PostgreSQL). See: issue #14 (a sort on an enum column was
//! a 500).

use serde_json::{Value, json};

use crate::support::client::patch_body;
use crate::support::{Sidecar, Store};

/// Attribute paths of a schema document, with their SCIM types: `attr`, `attr.sub`, and the
/// URN-qualified form for extensions.
fn paths(schema: &Value, core: bool) -> Vec<(String, String)> {
    let urn = schema["id"].as_str().unwrap_or_default();
    let prefix = if core {
        String::new()
    } else {
        format!("{urn}:")
    };
    let mut out = Vec::new();
    for a in schema["attributes"].as_array().into_iter().flatten() {
        let name = a["name"].as_str().unwrap_or_default();
        let ty = a["type"].as_str().unwrap_or("string");
        if ty == "complex" {
            for sub in a["subAttributes"].as_array().into_iter().flatten() {
                out.push((
                    format!(
                        "{prefix}{name}.{}",
                        sub["name"].as_str().unwrap_or_default()
                    ),
                    sub["type"].as_str().unwrap_or("string").to_owned(),
                ));
            }
        } else {
            out.push((format!("{prefix}{name}"), ty.to_owned()));
        }
    }
    out
}

/// A filter literal of type `ty`, and an odd one.
fn literals(ty: &str) -> Vec<String> {
    let typed = match ty {
        "boolean" => "true".to_owned(),
        "integer" | "decimal" => "42".to_owned(),
        "dateTime" => "\"2024-05-01T10:00:00Z\"".to_owned(),
        _ => "\"x\"".to_owned(),
    };
    vec![typed, r#""%_*[\"\\'; --""#.to_owned()]
}

/// A PATCH value of type `ty`.
fn value(ty: &str) -> Value {
    match ty {
        "boolean" => json!(false),
        "integer" | "decimal" => json!(7),
        "dateTime" => json!("2024-05-01T10:00:00Z"),
        _ => json!("fuzz value"),
    }
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn no_500_over_the_published_schema(s: &Sidecar) {
    let c = &s.client;
    let mut failures = Vec::new();
    let types = c.get("/scim/v2/ResourceTypes").await.expect(200).json();
    let schemas = c.get("/scim/v2/Schemas").await.expect(200).json();
    let schema = |urn: &str| {
        schemas["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["id"] == urn)
            .cloned()
    };
    for rt in types["Resources"].as_array().into_iter().flatten() {
        let endpoint = format!("/scim/v2{}", rt["endpoint"].as_str().unwrap_or_default());
        let core = rt["schema"].as_str().unwrap_or_default().to_owned();
        let mut all = vec![
            ("id".to_owned(), "string".to_owned()),
            ("externalId".to_owned(), "string".to_owned()),
            ("meta.created".to_owned(), "dateTime".to_owned()),
            ("meta.lastModified".to_owned(), "dateTime".to_owned()),
        ];
        all.extend(schema(&core).map(|s| paths(&s, true)).unwrap_or_default());
        for ext in rt["schemaExtensions"].as_array().into_iter().flatten() {
            let urn = ext["schema"].as_str().unwrap_or_default();
            all.extend(schema(urn).map(|s| paths(&s, false)).unwrap_or_default());
        }
        // A resource to PATCH.
        let name = format!("fuzz-{}", rt["name"].as_str().unwrap_or_default());
        let body = if core.ends_with(":Group") {
            json!({"schemas": [core], "displayName": name})
        } else {
            json!({"schemas": [core], "userName": name, "displayName": name})
        };
        let created = c.post(&endpoint, &body).await;
        let id = (created.status.as_u16() == 201)
            .then(|| created.json()["id"].as_str().unwrap_or_default().to_owned());

        for (path, ty) in &all {
            let mut tries = Vec::new();
            for order in ["ascending", "descending"] {
                tries.push(format!("{endpoint}?sortBy={}&sortOrder={order}", enc(path)));
            }
            for op in ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"] {
                for lit in literals(ty) {
                    tries.push(format!(
                        "{endpoint}?filter={}",
                        enc(&format!("{path} {op} {lit}"))
                    ));
                }
            }
            tries.push(format!("{endpoint}?filter={}", enc(&format!("{path} pr"))));
            tries.push(format!(
                "{endpoint}?filter={}",
                enc(&format!("not ({path} pr)"))
            ));
            for url in tries {
                let r = c.get(&url).await;
                if r.status.is_server_error() {
                    failures.push(format!("GET {url}: {} {}", r.status, r.text()));
                }
            }
            if let Some(id) = &id {
                for op in ["add", "replace", "remove"] {
                    let mut o = json!({"op": op, "path": path});
                    if op != "remove" {
                        o["value"] = value(ty);
                    }
                    let r = c
                        .patch(&format!("{endpoint}/{id}"), &patch_body(json!([o])))
                        .await;
                    if r.status.is_server_error() {
                        failures.push(format!("PATCH {op} {path}: {} {}", r.status, r.text()));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The quickstart (SQLite): integer keys, text and integer value maps, a join table.
#[tokio::test]
async fn quickstart_never_answers_500() {
    no_500_over_the_published_schema(&Sidecar::quickstart().await).await;
}

/// The helpdesk example (PostgreSQL): an enum state column, a child table, kept values.
#[tokio::test]
async fn helpdesk_never_answers_500() {
    if let Some(s) = Sidecar::example("postgres", Store::Postgres, None).await {
        no_500_over_the_published_schema(&s).await;
    }
}

/// WordPress (PostgreSQL): entity-attribute-value rows and templates.
#[tokio::test]
async fn wordpress_never_answers_500() {
    if let Some(s) = Sidecar::example("wordpress", Store::Postgres, None).await {
        no_500_over_the_published_schema(&s).await;
    }
}
