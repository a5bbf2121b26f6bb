//! The audit log and request ids, as an ops team reads them: one JSON line per write that
//! happened — who (which credential, never the token), which request, what resource, what
//! changed from what to what, memberships — and none for reads or refused writes.
//! `X-Request-Id` is kept when the client sends one, made otherwise, returned, and passed to
//! the app. See: issue #12.

use std::path::{Path, PathBuf};

use http::Method;
use serde_json::{Value, json};

use crate::support::client::{patch_body, user};
use crate::support::{Options, Sidecar, TOKEN};

/// The quickstart with `[audit] output` in a file.
async fn audited() -> (Sidecar, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("audit.log");
    let out = log.clone();
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(move |c| {
            c.audit = Some(scim_sidecar::audit::Output::File(out))
        })),
        ..Default::default()
    })
    .await;
    (s, log, dir)
}

fn lines(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

/// The credential as the audit log names it: the first 8 hex digits of its SHA-256.
fn token_name() -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, TOKEN.as_bytes());
    let hex: String = d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("token:{hex}")
}

/// A create, a PATCH, a membership change and a delete each write one line saying who, which
/// request and what changed; the token itself appears nowhere; reads and refused writes
/// write none.
#[tokio::test]
async fn r012_every_write_is_one_audit_line() {
    let (s, log, _dir) = audited().await;
    let r = s
        .client
        .send(
            Method::POST,
            "/scim/v2/Users",
            &[("x-request-id", "entra-7f3a")],
            Some(user("audrey").to_string().into()),
        )
        .await
        .expect(201);
    assert_eq!(r.header("x-request-id").as_deref(), Some("entra-7f3a"));
    let id = r.json()["id"].as_str().expect("id").to_owned();

    s.client
        .get(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(200);
    s.client
        .post(
            "/scim/v2/Users",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]}),
        )
        .await
        .expect(400);
    let path = format!("/scim/v2/Users/{id}");
    s.client
        .patch(
            &path,
            &patch_body(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await
        .expect(200);
    s.client
        .patch(
            "/scim/v2/Groups/1",
            &patch_body(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
        )
        .await
        .expect(204);
    s.client.delete(&path).await.expect(204);

    let l = lines(&log);
    let ops: Vec<&str> = l.iter().filter_map(|x| x["operation"].as_str()).collect();
    assert_eq!(ops, vec!["create", "patch", "patch", "delete"], "{l:#?}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(!text.contains(TOKEN), "the token is never written");
    for x in &l {
        assert_eq!(x["credential"], token_name().as_str(), "{x}");
        assert_eq!(x["client"], "127.0.0.1");
        assert!(x["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{x}");
    }

    let create = &l[0];
    assert_eq!(create["request_id"], "entra-7f3a");
    assert_eq!(
        (create["resource_type"].clone(), create["id"].clone()),
        (json!("User"), json!(id))
    );
    assert_eq!(
        create["changes"]["userName"],
        json!({"from": null, "to": "audrey"})
    );

    let disable = &l[1];
    assert_eq!(
        disable["changes"],
        json!({"active": {"from": true, "to": false}}),
        "only what changed, meta left out"
    );
    assert!(
        disable["request_id"]
            .as_str()
            .is_some_and(|r| r.len() == 24),
        "{disable}"
    );

    let member = &l[2];
    assert_eq!(member["resource_type"], "Group");
    assert_eq!(
        member["members"],
        json!({"added": {"count": 1, "ids": [id]}})
    );

    let delete = &l[3];
    assert_eq!(
        delete["changes"]["userName"],
        json!({"from": "audrey", "to": null})
    );
}

/// Without an `X-Request-Id` (or with one that is not a sensible id), SCIM and pass-through
/// answers carry one made by the sidecar, and the app receives the same one.
#[tokio::test]
async fn r012_request_ids_are_made_returned_and_passed_on() {
    let s = Sidecar::quickstart().await;
    let r = s.client.get("/scim/v2/Users").await.expect(200);
    let made = r.header("x-request-id").expect("a request id");
    assert_eq!(made.len(), 24, "{made}");
    let other = s.client.get("/scim/v2/Users").await.header("x-request-id");
    assert_ne!(other.as_deref(), Some(made.as_str()), "unique");

    let r = s.anonymous().get("/echo").await.expect(200);
    let seen = r.json()["headers"]["x-request-id"]
        .as_str()
        .expect("the app gets the id")
        .to_owned();
    assert_eq!(r.header("x-request-id").as_deref(), Some(seen.as_str()));

    let r = s
        .anonymous()
        .send(Method::GET, "/echo", &[("x-request-id", "lb-42")], None)
        .await
        .expect(200);
    assert_eq!(r.json()["headers"]["x-request-id"], "lb-42");
    assert_eq!(r.header("x-request-id").as_deref(), Some("lb-42"));

    let r = s
        .anonymous()
        .send(
            Method::GET,
            "/echo",
            &[("x-request-id", "has spaces in it")],
            None,
        )
        .await
        .expect(200);
    let replaced = r.header("x-request-id").expect("a request id");
    assert_ne!(replaced, "has spaces in it");
    assert_eq!(r.json()["headers"]["x-request-id"], replaced.as_str());
}
