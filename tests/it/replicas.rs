//! Two sidecar replicas in front of one PostgreSQL behave as one service: concurrent
//! creates of one userName spread over both give exactly one 201; a token from one
//! replica's OAuth endpoint is accepted by the other (a shared signing key); kept attributes
//! and soft deletes made through one are seen through the other. See: issue #12.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use scim_sidecar::config::{Config, OAuth, OAuthClient, Secret};
use serde_json::{Value, json};

use crate::support::{Sidecar, pg_database};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

fn shared_oauth(c: &mut Config) {
    c.auth.oauth = Some(OAuth {
        path: "/scim/v2/oauth/token".into(),
        clients: vec![OAuthClient {
            client_id: "entra".into(),
            secret: Secret("entra-secret-0123456789".into()),
            read_only: false,
        }],
        // What `check` asks for when replicas share a database: one key for all of them.
        signing_key: Some(Secret("a-signing-key-shared-by-every-replica-0123".into())),
        token_lifetime: Duration::from_secs(3600),
        failed_attempts_burst: 10,
        failed_attempts_per_minute: 10,
        max_delay: Duration::from_millis(100),
    });
}

/// Two replicas of `example` on one fresh database, or `None` without PostgreSQL.
async fn replicas(example: &str) -> Option<(Sidecar, Sidecar)> {
    let db = pg_database(example).await?;
    let a = Sidecar::example_on(example, Some(db.clone()), Some(Box::new(shared_oauth))).await;
    let b = Sidecar::example_on(example, Some(db), Some(Box::new(shared_oauth))).await;
    Some((a, b))
}

/// WordPress has no unique index on user_login: the replicas' own check (an advisory lock
/// in the database, not in either process) still lets exactly one of 20 concurrent creates
/// of one name through, and the table holds one such row.
#[tokio::test]
async fn r012_concurrent_creates_across_replicas_give_one_user() {
    let Some((a, b)) = replicas("wordpress").await else {
        return;
    };
    let body = json!({"schemas": [USER], "userName": "twice", "name": {"givenName": "T", "familyName": "W"},
                      "emails": [{"type": "work", "value": "twice@example.com"}]});
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = if i % 2 == 0 {
            a.client.clone()
        } else {
            b.client.clone()
        };
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            client.post("/scim/v2/Users", &body).await.status.as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("request"));
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(
        a.rows("SELECT count(*) FROM wp_users WHERE lower(user_login) = 'twice'")
            .await,
        vec![vec!["1"]]
    );
}

/// A token one replica issued is accepted by the other; externalId (kept by the sidecar)
/// and a soft delete made through one are what the other sees.
#[tokio::test]
async fn r012_tokens_kept_values_and_deletes_are_shared() {
    let Some((a, b)) = replicas("postgres").await else {
        return;
    };
    let r = a
        .anonymous()
        .send(
            Method::POST,
            "/scim/v2/oauth/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            Some(Bytes::from(
                "grant_type=client_credentials&client_id=entra&client_secret=entra-secret-0123456789",
            )),
        )
        .await
        .expect(200);
    let token = r.json()["access_token"].as_str().expect("token").to_owned();
    let on_b = crate::support::Client::new(b.addr, Some(&token));

    let created = on_b
        .post(
            "/scim/v2/Users",
            &json!({"schemas": [USER], "userName": "shared@example.com", "externalId": "ext-42",
                    "displayName": "Shared", "name": {"givenName": "S", "familyName": "H"},
                    "emails": [{"type": "work", "value": "shared@example.com"}]}),
        )
        .await
        .expect(201)
        .json();
    let id = created["id"].as_str().expect("id").to_owned();
    let found: Value = a
        .client
        .get("/scim/v2/Users?filter=externalId%20eq%20%22ext-42%22")
        .await
        .expect(200)
        .json();
    assert_eq!(found["totalResults"], 1, "{found}");
    assert_eq!(found["Resources"][0]["id"], id.as_str());

    a.client
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
    on_b.get(&format!("/scim/v2/Users/{id}")).await.expect(404);
}
