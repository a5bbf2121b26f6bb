//! Bad input gets a precise SCIM error (RFC 7644 §3.12) and leaves the store as it was.

use std::time::Duration;

use http::Method;
use serde_json::json;

use crate::support::client::{patch_body, user};
use crate::support::{Options, Sidecar};

/// Malformed bodies: not JSON, not an object, no core schema URN, wrong types, unknown
/// resource type, required attribute missing; each its own 400 and no change.
#[tokio::test]
async fn malformed_bodies() {
    let s = Sidecar::quickstart().await;
    let before = s.snapshot();
    let d = s
        .client
        .raw(Method::POST, "/scim/v2/Users", "{\"userName\": ")
        .await
        .scim_error(400, Some("invalidSyntax"));
    assert!(d.contains("not valid JSON"), "{d}");
    s.client
        .raw(Method::POST, "/scim/v2/Users", "[1, 2]")
        .await
        .scim_error(400, Some("invalidSyntax"));
    s.client
        .raw(Method::POST, "/scim/v2/Users", "")
        .await
        .scim_error(400, Some("invalidSyntax"));
    let d = s
        .client
        .post("/scim/v2/Users", &json!({"userName": "x"}))
        .await
        .scim_error(400, Some("invalidSyntax"));
    assert!(
        d.contains("urn:ietf:params:scim:schemas:core:2.0:User"),
        "{d}"
    );
    let d = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "x"}),
        )
        .await
        .scim_error(400, Some("invalidSyntax"));
    assert!(d.contains("schemas"), "{d}");
    let d = s
        .client
        .post("/scim/v2/Users", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x", "active": 1}))
        .await
        .scim_error(400, Some("invalidValue"));
    assert_eq!(d, "attribute 'active' must be a boolean, got a number");
    let d = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": ["x"]}),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("'userName' must be a string"), "{d}");
    let d = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "title": "x"}),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert_eq!(d, "attribute 'userName' is required");
    let d = s
        .client
        .post("/scim/v2/Users", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x".repeat(65)}))
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("userName") && d.contains("at most 64"), "{d}");
    s.client
        .patch(
            "/scim/v2/Users/1",
            &json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]}),
        )
        .await
        .scim_error(400, Some("invalidSyntax"));
    assert_eq!(s.snapshot(), before);
}

/// `id` and `meta` in a body are ignored (RFC 7644 §3.5.1): the server assigns them.
#[tokio::test]
async fn read_only_attributes_in_bodies_are_ignored() {
    let s = Sidecar::quickstart().await;
    let r = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ro", "id": "1",
                    "meta": {"resourceType": "Group", "created": "2000-01-01T00:00:00Z"}, "groups": [{"value": "1"}]}),
        )
        .await
        .expect(201)
        .json();
    assert_ne!(r["id"], "1");
    assert_eq!(r["meta"]["resourceType"], "User");
    assert_ne!(r["meta"]["created"], "2000-01-01T00:00:00Z");
}

/// Bodies over `max_body_bytes` are 413, whether declared by Content-Length or streamed
/// without one, and nothing is written.
#[tokio::test]
async fn oversized_bodies() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| c.scim.max_body_bytes = 4096)),
        ..Default::default()
    })
    .await;
    let before = s.snapshot();
    let big = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "big", "title": "x".repeat(5000)});
    let d = s
        .client
        .post("/scim/v2/Users", &big)
        .await
        .scim_error(413, None);
    assert!(d.contains("4096"), "{d}");
    // Chunked, so no Content-Length: the limit applies while reading.
    let mut tcp = tokio::net::TcpStream::connect(s.addr)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chunk = "x".repeat(3000);
    let req = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\nContent-Type: application/scim+json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        crate::support::TOKEN,
        chunk.len(),
        chunk.len()
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(s.snapshot(), before);
}

/// Authentication: no token, a wrong token, another scheme: 401 with `WWW-Authenticate:
/// Bearer`, before anything else is looked at (even on unknown paths).
#[tokio::test]
async fn authentication() {
    let s = Sidecar::quickstart().await;
    let r = s.anonymous().get("/scim/v2/Users").await;
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"scim-sidecar\"")
    );
    r.scim_error(401, None);
    let wrong = crate::support::Client::new(s.addr, Some("not-the-token-0123456789"));
    let r = wrong.post("/scim/v2/Users", &user("x")).await;
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.contains("invalid_token"))
    );
    r.scim_error(401, None);
    let basic = s
        .anonymous()
        .send(
            Method::GET,
            "/scim/v2/Nope",
            &[("authorization", "Basic dXNlcjpwYXNz")],
            None,
        )
        .await;
    basic.scim_error(401, None);
    assert_eq!(s.sql("SELECT count(*) FROM accounts"), vec![vec!["1"]]);
}

/// Unknown paths under the base path are SCIM 404s (not passed to the app); unsupported
/// methods are 405 with `Allow`; bulk and cross-type search are 501; non-JSON bodies 415.
#[tokio::test]
async fn protocol_errors() {
    let s = Sidecar::quickstart().await;
    let d = s.client.get("/scim/v2/Widgets").await.scim_error(404, None);
    assert!(d.contains("/Users") && d.contains("/Groups"), "{d}");
    s.client
        .get("/scim/v2/Users/1/extra")
        .await
        .scim_error(404, None);
    s.client.get("/scim/v2").await.scim_error(404, None);
    let r = s
        .client
        .send(Method::PUT, "/scim/v2/Users", &[], None)
        .await;
    assert_eq!(r.header("allow").as_deref(), Some("GET, POST"));
    r.scim_error(405, None);
    let r = s
        .client
        .post("/scim/v2/ServiceProviderConfig", &json!({}))
        .await;
    assert_eq!(r.header("allow").as_deref(), Some("GET"));
    r.scim_error(405, None);
    s.client
        .delete("/scim/v2/Schemas")
        .await
        .scim_error(405, None);
    s.client
        .post("/scim/v2/Bulk", &json!({}))
        .await
        .scim_error(501, None);
    s.client
        .post("/scim/v2/.search", &json!({}))
        .await
        .scim_error(501, None);
    let r = s
        .client
        .send(
            Method::POST,
            "/scim/v2/Users",
            &[("content-type", "text/plain")],
            Some("userName=x".into()),
        )
        .await;
    r.scim_error(415, None);
    // application/json is accepted as well as application/scim+json (RFC 7644 §3.1).
    s.client
        .send(
            Method::POST,
            "/scim/v2/Users",
            &[("content-type", "application/json; charset=utf-8")],
            Some(user("js").to_string().into()),
        )
        .await
        .expect(201);
    assert_eq!(
        s.upstream.connection_count(),
        0,
        "no SCIM request reached the app"
    );
}

/// The store unavailable (here: locked by another process longer than `busy_timeout`) is 503
/// with `Retry-After`, never a 500 or a half-written user; once it is free the same request
/// succeeds.
#[tokio::test]
async fn store_unavailable_is_503() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| {
            crate::support::with_sqlite(c, |s| s.busy_timeout = Duration::from_millis(100));
        })),
        ..Default::default()
    })
    .await;
    let lock = rusqlite::Connection::open(&s.db).expect("db");
    lock.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let r = s.client.post("/scim/v2/Users", &user("waiting")).await;
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    let d = r.scim_error(503, None);
    assert!(d.contains("unavailable"), "{d}");
    lock.execute_batch("ROLLBACK").expect("unlock");
    assert_eq!(
        s.sql("SELECT count(*) FROM accounts WHERE login = 'waiting'"),
        vec![vec!["0"]]
    );
    s.client
        .post("/scim/v2/Users", &user("waiting"))
        .await
        .expect(201);
}

/// Values a client sends are bound parameters: SQL in every attribute is stored as text.
#[tokio::test]
async fn injection_in_values() {
    let s = Sidecar::quickstart().await;
    let evil = "x'); DROP TABLE accounts; --";
    let r = s
        .client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": evil, "title": "\" OR 1=1 --",
                    "name": {"givenName": "Robert'); DROP TABLE roles;--"}, "externalId": "%_*?["}),
        )
        .await
        .expect(201)
        .json();
    assert_eq!(r["userName"], evil);
    assert_eq!(s.sql("SELECT count(*) FROM roles"), vec![vec!["1"]]);
    let got = s.sql(&format!(
        "SELECT login, job_title, first_name, external_ref FROM accounts WHERE id = {}",
        r["id"].as_str().expect("id")
    ));
    assert_eq!(
        got,
        vec![vec![
            evil,
            "\" OR 1=1 --",
            "Robert'); DROP TABLE roles;--",
            "%_*?["
        ]]
    );
}

/// JSON nested far deeper than any SCIM body (an attacker's, not an identity provider's) is
/// 400 invalidSyntax, for a resource and for a PATCH, without exhausting the stack; nothing
/// changes.
#[tokio::test]
async fn deeply_nested_json() {
    let s = Sidecar::quickstart().await;
    let before = s.snapshot();
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let body = format!(
        r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"deep","title":{deep}}}"#
    );
    let d = s
        .client
        .raw(Method::POST, "/scim/v2/Users", &body)
        .await
        .scim_error(400, Some("invalidSyntax"));
    assert!(d.contains("not valid JSON"), "{d}");
    let patch = format!(
        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{{"op":"add","path":"title","value":{deep}}}]}}"#
    );
    s.client
        .raw(Method::PATCH, "/scim/v2/Users/1", &patch)
        .await
        .scim_error(400, Some("invalidSyntax"));
    let objects = format!("{}{}", r#"{"a":"#.repeat(50_000), "}".repeat(50_000));
    s.client
        .raw(Method::POST, "/scim/v2/Groups", &objects)
        .await
        .scim_error(400, Some("invalidSyntax"));
    assert_eq!(s.snapshot(), before);
}

/// A value the app's own database refuses (here: clearing `active`, whose NOT NULL status
/// column has a CHECK constraint) is 400 `invalidValue` naming the attribute in the product's
/// words; the database's message, which quotes the app's schema, stays in the log. The row is
/// unchanged. See: issue #14.
#[tokio::test]
async fn r014_store_refusals_name_the_attribute_not_the_schema() {
    let s = Sidecar::quickstart().await;
    let id = s
        .client
        .post("/scim/v2/Users", &user("checked"))
        .await
        .expect(201)
        .json()["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let before = s.snapshot();
    let d = s
        .client
        .patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "remove", "path": "active"}])),
        )
        .await
        .scim_error(400, Some("invalidValue"));
    assert!(d.contains("'active'"), "{d}");
    assert!(d.contains("CHECK"), "{d}");
    for leaked in ["status", "IN (", "constraint failed"] {
        assert!(
            !d.contains(leaked),
            "the store's text reached the client: {d}"
        );
    }
    assert_eq!(s.snapshot(), before);
}
