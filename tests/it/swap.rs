//! The composition root's seam for reload: everything derived from the config is one value
//! that can be replaced while the server runs. New requests are served from the new config;
//! a request in flight finishes on the config it started with.

use std::time::{Duration, Instant};

use crate::support::{self, Client, Sidecar, Upstream};

/// While a pass-through request is in flight to the first app, the sidecar's config is
/// replaced by one with another app and another token: the request in flight completes
/// through the first app, new requests go to the second app, and the SCIM endpoint takes
/// the new token and refuses the old one — nothing restarted, no connection dropped.
#[tokio::test]
async fn new_config_serves_new_requests_while_old_ones_finish() {
    let s = Sidecar::quickstart().await;
    let first = s.upstream.addr;
    let second = Upstream::start().await;

    // A slow request, held by the first app.
    let client = s.anonymous();
    let slow = tokio::spawn(async move { client.get("/slow?ms=1500").await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.upstream.connection_count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the app"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The same file, another app and another token.
    let mut env = support::quickstart_env(&s.db, second.addr);
    env.insert("SCIM_TOKEN".into(), "second-token-0123456789".into());
    let config = support::load(&support::quickstart_config(), &env);
    s.running()
        .replace(&config)
        .await
        .expect("the new config builds");

    // New requests: the second app, the new token.
    let before = second.connection_count();
    s.anonymous().get("/echo/after").await.expect(200);
    assert!(
        second.connection_count() > before,
        "new requests go to the second app"
    );
    s.client.get("/scim/v2/Users").await.scim_error(401, None);
    Client::new(s.addr, Some("second-token-0123456789"))
        .get("/scim/v2/Users")
        .await
        .expect(200);

    // The request in flight finished on the first app.
    let r = slow.await.expect("slow request");
    assert_eq!(r.expect(200).text(), "slow done");
    assert_ne!(first, second.addr);
}

/// A config that does not build (its store's table is missing) is refused with every
/// problem, and the current config keeps serving.
#[tokio::test]
async fn a_broken_config_keeps_the_current_one() {
    let s = Sidecar::quickstart().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(support::quickstart_config())
        .expect("config")
        .replace("table = \"accounts\"", "table = \"no_such_table\"");
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, text).expect("write");
    std::fs::copy(
        support::quickstart_config().with_file_name("schema.sql"),
        dir.path().join("schema.sql"),
    )
    .expect("schema");
    let env = support::quickstart_env(&s.db, s.upstream.addr);
    let config = support::load(&path, &env);
    let problems = s
        .running()
        .replace(&config)
        .await
        .expect_err("a missing table is refused");
    assert!(
        problems
            .iter()
            .any(|p| p.message.contains("no_such_table") && !p.warning),
        "{problems:?}"
    );
    s.client.get("/scim/v2/Users").await.expect(200);
}
