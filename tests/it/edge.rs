//! What the sidecar believes about a client at the edge: the `Host` it used and the
//! `X-Forwarded-*` headers it (or a proxy) sent. Absolute URLs never come from an unchecked
//! `Host`, and forwarded headers count only from configured proxies. See: issue #14
//! (item 8).

use serde_json::Value;

use crate::support::client::user;
use crate::support::{Options, Sidecar};

/// Creates a user with `headers` and returns the `Location` header and `meta.location`.
async fn locations(s: &Sidecar, name: &str, headers: &[(&str, &str)]) -> (String, String) {
    let r = s
        .client
        .send(
            http::Method::POST,
            "/scim/v2/Users",
            headers,
            Some(user(name).to_string().into()),
        )
        .await
        .expect(201);
    let body: Value = r.json();
    (
        r.header("location").expect("Location"),
        body["meta"]["location"]
            .as_str()
            .expect("meta.location")
            .to_owned(),
    )
}

/// Without `public_url`, a `Host` that is not in `allowed_hosts` and an `X-Forwarded-Proto`
/// from a peer that is no trusted proxy are ignored: `Location` and `meta.location` use the
/// address the client reached, over plain HTTP. Before, both were reflected
/// (`https://evil.example/phish?/scim/v2/Users/3`). See: issue #14.
#[tokio::test]
async fn r14_unchecked_host_is_never_reflected() {
    let s = Sidecar::quickstart().await;
    let (location, meta) = locations(
        &s,
        "host@example.com",
        &[
            ("host", "evil.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ],
    )
    .await;
    let prefix = format!("http://{}/scim/v2/Users/", s.addr);
    assert!(location.starts_with(&prefix), "{location}");
    assert_eq!(location, meta);
}

/// A `Host` listed in `[scim].allowed_hosts` (any port when listed without one; any case)
/// is used; others still fall back to the listen address. `X-Forwarded-Proto: https` from
/// a peer in `[listen].trusted_proxies` makes the URLs `https://`.
#[tokio::test]
async fn r14_allowed_hosts_and_trusted_proxies_shape_urls() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| {
            c.scim.allowed_hosts = vec!["app.example.test".into()];
            c.listen.trusted_proxies = vec!["127.0.0.1".parse().expect("cidr")];
        })),
        ..Options::default()
    })
    .await;
    let (location, _) = locations(&s, "a@example.com", &[("host", "APP.example.test:8443")]).await;
    assert!(
        location.starts_with("http://app.example.test:8443/scim/v2/Users/"),
        "{location}"
    );
    let (location, _) = locations(
        &s,
        "b@example.com",
        &[("host", "app.example.test"), ("x-forwarded-proto", "https")],
    )
    .await;
    assert!(
        location.starts_with("https://app.example.test/scim/v2/Users/"),
        "{location}"
    );
    let (location, _) = locations(&s, "c@example.com", &[("host", "other.example")]).await;
    assert!(
        location.starts_with(&format!("http://{}/scim/v2/Users/", s.addr)),
        "{location}"
    );
}

/// With `public_url` set every URL uses it, whatever `Host` says.
#[tokio::test]
async fn r14_public_url_wins() {
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(|c| {
            c.scim.public_url = Some("https://scim.example.com/scim/v2".into());
        })),
        ..Options::default()
    })
    .await;
    let (location, meta) = locations(&s, "p@example.com", &[("host", "evil.example")]).await;
    assert!(
        location.starts_with("https://scim.example.com/scim/v2/Users/"),
        "{location}"
    );
    assert_eq!(location, meta);
}
