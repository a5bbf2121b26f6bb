//! Authentication beside static tokens: JWTs from an issuer's JWK set (fetched from a
//! loopback server), the sidecar's own OAuth client-credentials endpoint, and read-only
//! credentials.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::Method;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use scim_sidecar::auth::jwt::Alg;
use scim_sidecar::config::{Config, JwtIssuer, KeySource, OAuth, OAuthClient, Secret, StaticToken};
use serde_json::{Value, json};

use crate::support::client::{patch_body, user};
use crate::support::jwks::JwksServer;
use crate::support::{Client, Options, Sidecar};

const ISS: &str = "https://login.example/tenant/";
const AUD: &str = "api://scim-sidecar";

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn ec_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("generate");
    EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .expect("key")
}

fn ec_jwk(k: &EcdsaKeyPair, kid: &str) -> Value {
    let p = k.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
           "x": b64(&p[1..33]), "y": b64(&p[33..65])})
}

/// The committed test RSA key (ring cannot generate RSA keys).
fn rsa_key() -> RsaKeyPair {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/auth/rsa-test-key.pem"
    );
    let der = PrivatePkcs8KeyDer::from_pem_file(path).expect("pem");
    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("rsa")
}

fn rsa_jwk(k: &RsaKeyPair, kid: &str) -> Value {
    let c: RsaPublicKeyComponents<Vec<u8>> = k.public().into();
    json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
}

fn input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn es256(k: &EcdsaKeyPair, kid: &str, claims: &Value) -> String {
    let i = input(&json!({"alg": "ES256", "kid": kid, "typ": "JWT"}), claims);
    let sig = k.sign(&SystemRandom::new(), i.as_bytes()).expect("sign");
    format!("{i}.{}", b64(sig.as_ref()))
}

fn rs256(k: &RsaKeyPair, kid: &str, claims: &Value) -> String {
    let i = input(&json!({"alg": "RS256", "kid": kid}), claims);
    let mut sig = vec![0; k.public().modulus_len()];
    k.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        i.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    format!("{i}.{}", b64(&sig))
}

/// Claims of a valid token, with `extra` merged in (`null` removes a claim).
fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": AUD, "sub": "entra", "iat": now(), "exp": now() + 600,
                       "roles": ["scim.write"]});
    let o = c.as_object_mut().expect("object");
    for (k, v) in extra.as_object().expect("object") {
        if v.is_null() {
            o.remove(k);
        } else {
            o.insert(k.clone(), v.clone());
        }
    }
    c
}

fn issuer(url: &str, refresh_min: Duration) -> JwtIssuer {
    JwtIssuer {
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        algorithms: vec![Alg::ES256, Alg::RS256],
        leeway: Duration::from_secs(60),
        keys: KeySource::Url {
            url: url.parse().expect("url"),
            ca: None,
        },
        refresh_min,
        write_scope: Some("scim.write".into()),
        read_only: false,
    }
}

async fn with_issuer(url: String, refresh_min: Duration) -> Sidecar {
    Sidecar::start(Options {
        tweak: Some(Box::new(move |c: &mut Config| {
            c.auth.jwt = vec![issuer(&url, refresh_min)]
        })),
        ..Default::default()
    })
    .await
}

fn bearer(s: &Sidecar, token: &str) -> Client {
    Client::new(s.addr, Some(token))
}

/// Asserts a 401 with an `invalid_token` challenge and a SCIM error body.
#[track_caller]
fn refused(r: crate::support::client::Resp) -> String {
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Bearer realm=\"scim-sidecar\", error=\"invalid_token\""),
        "{}",
        r.text()
    );
    r.scim_error(401, None)
}

/// JWTs signed by the issuer's keys (ES256 and RS256, fetched once from its JWKS URL) are
/// accepted and may write; every bad one — expired, not yet valid, wrong issuer or
/// audience, `alg: none`, HS256 keyed with the RSA public key, a forged payload, bad
/// base64 or JSON, over 8 KiB — is 401 with `error="invalid_token"`, a SCIM error body,
/// and its own reason in `scim_sidecar_auth_failures_total`. Static tokens keep working.
#[tokio::test]
async fn jwt_bearer_tokens() {
    let ec = ec_key();
    let rsa = rsa_key();
    let jwks = JwksServer::start(vec![ec_jwk(&ec, "e1"), rsa_jwk(&rsa, "r1")]).await;
    let s = with_issuer(jwks.url(), Duration::from_secs(60)).await;
    assert_eq!(jwks.hits(), 1, "keys are fetched at start-up");

    let good = es256(&ec, "e1", &claims(json!({})));
    bearer(&s, &good).get("/scim/v2/Users").await.expect(200);
    bearer(&s, &good)
        .post("/scim/v2/Users", &user("jwt-user"))
        .await
        .expect(201);
    let rs = rs256(&rsa, "r1", &claims(json!({"aud": ["other", AUD]})));
    bearer(&s, &rs).get("/scim/v2/Users").await.expect(200);
    s.client.get("/scim/v2/Users").await.expect(200);
    assert_eq!(jwks.hits(), 1, "known kids are served from the cache");

    let before = s.snapshot();
    let enc = |v: &Value| b64(v.to_string().as_bytes());
    let none = format!(
        "{}.{}.",
        enc(&json!({"alg": "none"})),
        enc(&claims(json!({})))
    );
    let confused = {
        let i = input(&json!({"alg": "HS256", "kid": "r1"}), &claims(json!({})));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, rsa.public().as_ref());
        format!("{i}.{}", b64(ring::hmac::sign(&key, i.as_bytes()).as_ref()))
    };
    let forged = {
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            enc(&claims(json!({"sub": "admin"}))),
            parts[2]
        )
    };
    let cases = [
        (
            es256(&ec, "e1", &claims(json!({"exp": now() - 120}))),
            "expired",
        ),
        (
            es256(&ec, "e1", &claims(json!({"nbf": now() + 600}))),
            "not valid yet",
        ),
        (
            es256(&ec, "e1", &claims(json!({"iss": "https://evil.example/"}))),
            "issuer",
        ),
        (
            es256(&ec, "e1", &claims(json!({"aud": "api://other"}))),
            "audience",
        ),
        (none, "algorithm"),
        (confused, "algorithm"),
        (forged, "signature"),
        (
            format!("{}.@@@.AA", enc(&json!({"alg": "ES256"}))),
            "well-formed",
        ),
        (
            format!("{}.{}.AA", b64(b"{not json"), enc(&claims(json!({})))),
            "well-formed",
        ),
        (
            es256(&ec, "e1", &claims(json!({"pad": "x".repeat(9000)}))),
            "too large",
        ),
    ];
    for (token, want) in &cases {
        let d = refused(
            bearer(&s, token)
                .post("/scim/v2/Users", &user("intruder"))
                .await,
        );
        assert!(d.contains(want), "{want}: {d}");
        assert!(!d.contains(token.as_str()));
    }
    assert_eq!(s.snapshot(), before);
    let metrics = s.admin_client().get("/metrics").await.expect(200).text();
    for (reason, n) in [
        ("expired", 1),
        ("not_yet_valid", 1),
        ("wrong_issuer", 1),
        ("wrong_audience", 1),
        ("unsupported_alg", 2),
        ("bad_signature", 1),
        ("malformed", 2),
        ("too_large", 1),
    ] {
        let line = format!("scim_sidecar_auth_failures_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}

/// Key rotation: a token with a `kid` the cache does not hold makes the sidecar refetch the
/// JWK set once (at most every `jwks_refresh_min`); a kid still unknown afterwards is 401
/// `unknown_kid`. Within `jwks_refresh_min` of the last fetch no refetch happens. An issuer
/// whose keys cannot be fetched at all answers 503 with `Retry-After`, not 401.
#[tokio::test]
async fn jwks_rotation_and_refetch_limit() {
    let old = ec_key();
    let new = ec_key();
    let jwks = JwksServer::start(vec![ec_jwk(&old, "k1")]).await;
    let s = with_issuer(jwks.url(), Duration::ZERO).await;
    assert_eq!(jwks.hits(), 1);
    jwks.set_keys(vec![ec_jwk(&old, "k1"), ec_jwk(&new, "k2")]);
    let t = es256(&new, "k2", &claims(json!({})));
    bearer(&s, &t).get("/scim/v2/Users").await.expect(200);
    assert_eq!(jwks.hits(), 2, "one refetch for the new kid");
    bearer(&s, &t).get("/scim/v2/Users").await.expect(200);
    assert_eq!(jwks.hits(), 2);
    let unknown = es256(&new, "k3", &claims(json!({})));
    let d = refused(bearer(&s, &unknown).get("/scim/v2/Users").await);
    assert!(d.contains("unknown key"), "{d}");
    assert_eq!(jwks.hits(), 3, "refetched once, then refused");

    // With the default one-minute limit, a burst of unknown kids costs the issuer nothing.
    let limited = with_issuer(jwks.url(), Duration::from_secs(60)).await;
    let hits = jwks.hits();
    for _ in 0..3 {
        refused(bearer(&limited, &unknown).get("/scim/v2/Users").await);
    }
    assert_eq!(jwks.hits(), hits);

    // Nothing listens on this port: keys are unavailable, the IdP should retry later.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let down = with_issuer(format!("http://{closed}/keys"), Duration::ZERO).await;
    let r = bearer(&down, &t).get("/scim/v2/Users").await;
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    r.scim_error(503, None);
}

fn oauth(burst: u32) -> OAuth {
    OAuth {
        path: "/scim/v2/oauth/token".into(),
        clients: vec![
            OAuthClient {
                client_id: "entra".into(),
                secret: Secret("entra-secret-0123456789".into()),
                read_only: false,
            },
            OAuthClient {
                client_id: "auditor".into(),
                secret: Secret("auditor-secret-0123456789".into()),
                read_only: true,
            },
        ],
        signing_key: None,
        token_lifetime: Duration::from_secs(3600),
        failed_attempts_burst: burst,
        failed_attempts_per_minute: 1,
        max_delay: Duration::from_millis(100),
    }
}

async fn with_oauth(burst: u32) -> Sidecar {
    Sidecar::start(Options {
        tweak: Some(Box::new(move |c: &mut Config| {
            c.auth.oauth = Some(oauth(burst))
        })),
        ..Default::default()
    })
    .await
}

async fn token_request(
    s: &Sidecar,
    form: &str,
    basic: Option<&str>,
) -> crate::support::client::Resp {
    let auth = basic.map(|b| format!("Basic {}", STANDARD.encode(b)));
    let mut headers = vec![("content-type", "application/x-www-form-urlencoded")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    s.anonymous()
        .send(
            Method::POST,
            "/scim/v2/oauth/token",
            &headers,
            Some(Bytes::from(form.to_owned())),
        )
        .await
}

/// The client-credentials endpoint end to end: a token for credentials in the body and one
/// for HTTP Basic, answered with `Cache-Control: no-store`, each then accepted on
/// `/scim/v2/Users` (read and write); a wrong secret is 401 `invalid_client` (with a Basic
/// challenge only when Basic was used); other grants and malformed requests get their
/// RFC 6749 §5.2 errors.
#[tokio::test]
async fn oauth_client_credentials() {
    let s = with_oauth(20).await;
    let r = token_request(
        &s,
        "grant_type=client_credentials&client_id=entra&client_secret=entra-secret-0123456789",
        None,
    )
    .await
    .expect(200);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    let j = r.json();
    assert_eq!(j["token_type"], "Bearer");
    assert_eq!(j["expires_in"], 3600);
    let token = j["access_token"].as_str().expect("token").to_owned();
    bearer(&s, &token).get("/scim/v2/Users").await.expect(200);
    bearer(&s, &token)
        .post("/scim/v2/Users", &user("oauth-user"))
        .await
        .expect(201);

    let j = token_request(
        &s,
        "grant_type=client_credentials",
        Some("entra:entra-secret-0123456789"),
    )
    .await
    .expect(200)
    .json();
    let basic_token = j["access_token"].as_str().expect("token");
    bearer(&s, basic_token)
        .get("/scim/v2/Users")
        .await
        .expect(200);

    let r = token_request(
        &s,
        "grant_type=client_credentials&client_id=entra&client_secret=wrong",
        None,
    )
    .await
    .expect(401);
    assert_eq!(r.json()["error"], "invalid_client");
    assert_eq!(r.header("www-authenticate"), None);
    let r = token_request(&s, "grant_type=client_credentials", Some("entra:wrong"))
        .await
        .expect(401);
    assert_eq!(r.json()["error"], "invalid_client");
    assert_eq!(
        r.header("www-authenticate").as_deref(),
        Some("Basic realm=\"scim-sidecar\"")
    );
    let r = token_request(&s, "grant_type=password&username=a&password=b", None)
        .await
        .expect(400);
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    let r = token_request(&s, "client_id=entra&client_secret=x", None)
        .await
        .expect(400);
    assert_eq!(r.json()["error"], "invalid_request");
    let r = token_request(
        &s,
        "grant_type=client_credentials&grant_type=client_credentials",
        None,
    )
    .await
    .expect(400);
    assert_eq!(r.json()["error"], "invalid_request");
    let r = s
        .anonymous()
        .send(
            Method::POST,
            "/scim/v2/oauth/token",
            &[("content-type", "application/json")],
            Some(Bytes::from_static(b"{}")),
        )
        .await
        .expect(400);
    assert_eq!(r.json()["error"], "invalid_request");
    s.anonymous().get("/scim/v2/oauth/token").await.expect(405);
    // A token of another process (another signing key) is not ours.
    let other = with_oauth(20).await;
    refused(bearer(&other, &token).get("/scim/v2/Users").await);
    let metrics = s.admin_client().get("/metrics").await.expect(200).text();
    assert!(
        metrics.contains("scim_sidecar_oauth_token_requests_total{outcome=\"issued\"} 2"),
        "{metrics}"
    );
}

/// Brute force against the token endpoint: after `failed_attempts_burst` failures from one
/// address, a wrong secret from it is 429 with `Retry-After` (after a delay), while the right
/// secret — from the same address and for the same client — still gets its token, only
/// late. Before, the right secret was refused too: one bad sender behind the identity
/// provider's NAT kept it from getting tokens. See: issue #14 (item 7).
#[tokio::test]
async fn r14_oauth_failures_delay_but_never_lock_out_the_right_secret() {
    let s = with_oauth(3).await;
    for i in 0..3 {
        token_request(
            &s,
            &format!("grant_type=client_credentials&client_id=entra&client_secret=guess{i}"),
            None,
        )
        .await
        .expect(401);
    }
    let r = token_request(
        &s,
        "grant_type=client_credentials&client_id=entra&client_secret=guess3",
        None,
    )
    .await
    .expect(429);
    let wait: u64 = r
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let r = token_request(
        &s,
        "grant_type=client_credentials&client_id=entra&client_secret=entra-secret-0123456789",
        None,
    )
    .await
    .expect(200);
    assert!(r.json()["access_token"].is_string());
    let metrics = s.admin_client().get("/metrics").await.expect(200).text();
    for (outcome, n) in [("rate_limited", 1), ("invalid_client", 3), ("issued", 1)] {
        assert!(
            metrics.contains(&format!(
                "scim_sidecar_oauth_token_requests_total{{outcome=\"{outcome}\"}} {n}"
            )),
            "{metrics}"
        );
    }
}

/// Failures are counted per client address: with `127.0.0.1` a trusted proxy, the
/// `X-Forwarded-For` client is the address, so one client's failures do not slow another's
/// request; without trusted proxies, `X-Forwarded-For` is ignored and every request counts
/// against the peer. A configured `client_id` has a bucket of its own across addresses (an
/// unknown one has none).
#[tokio::test]
async fn r14_oauth_counts_failures_by_the_trusted_client_address() {
    let form = "grant_type=client_credentials&client_id=nobody&client_secret=x";
    let from = |s: &Sidecar, ip: &'static str| {
        let s = s.anonymous();
        async move {
            s.send(
                Method::POST,
                "/scim/v2/oauth/token",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("x-forwarded-for", ip),
                ],
                Some(Bytes::from_static(form.as_bytes())),
            )
            .await
            .status
            .as_u16()
        }
    };
    let trusted = Sidecar::start(Options {
        tweak: Some(Box::new(|c: &mut Config| {
            c.auth.oauth = Some(oauth(2));
            c.listen.trusted_proxies = vec!["127.0.0.1".parse().expect("cidr")];
        })),
        ..Default::default()
    })
    .await;
    assert_eq!(from(&trusted, "203.0.113.1").await, 401);
    assert_eq!(from(&trusted, "203.0.113.1").await, 401);
    assert_eq!(from(&trusted, "203.0.113.1").await, 429);
    assert_eq!(from(&trusted, "203.0.113.2").await, 401);
    // A configured client_id has its own bucket: guesses at it from many addresses slow it
    // down everywhere, and still never refuse its right secret.
    let entra = |ip: &'static str, secret: &'static str| {
        let s = trusted.anonymous();
        async move {
            s.send(
                Method::POST,
                "/scim/v2/oauth/token",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("x-forwarded-for", ip),
                ],
                Some(Bytes::from(format!(
                    "grant_type=client_credentials&client_id=entra&client_secret={secret}"
                ))),
            )
            .await
            .status
            .as_u16()
        }
    };
    assert_eq!(entra("198.51.100.1", "guess").await, 401);
    assert_eq!(entra("198.51.100.2", "guess").await, 401);
    assert_eq!(entra("198.51.100.3", "guess").await, 429);
    assert_eq!(entra("198.51.100.4", "entra-secret-0123456789").await, 200);

    let untrusted = with_oauth(2).await;
    assert_eq!(from(&untrusted, "203.0.113.1").await, 401);
    assert_eq!(from(&untrusted, "203.0.113.2").await, 401);
    assert_eq!(from(&untrusted, "203.0.113.3").await, 429);
}

/// Read-only credentials — a static token marked `read_only`, an OAuth client marked
/// `read_only`, a JWT without the issuer's `write_scope` — may GET and `POST /.search`,
/// while POST, PUT, PATCH and DELETE are 403 (a SCIM error without scimType) and change
/// nothing. The same requests with a full credential go through.
#[tokio::test]
async fn read_only_credentials() {
    let ec = ec_key();
    let jwks = JwksServer::start(vec![ec_jwk(&ec, "e1")]).await;
    let url = jwks.url();
    let s = Sidecar::start(Options {
        tweak: Some(Box::new(move |c: &mut Config| {
            c.auth.tokens.push(StaticToken {
                secret: Secret("read-only-token-0123456789".into()),
                read_only: true,
            });
            c.auth.jwt = vec![issuer(&url, Duration::from_secs(60))];
            c.auth.oauth = Some(oauth(20));
        })),
        ..Default::default()
    })
    .await;
    let oauth_ro = token_request(
        &s,
        "grant_type=client_credentials&client_id=auditor&client_secret=auditor-secret-0123456789",
        None,
    )
    .await
    .expect(200)
    .json()["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let jwt_ro = es256(&ec, "e1", &claims(json!({"roles": ["scim.read"]})));
    let id = s
        .client
        .post("/scim/v2/Users", &user("target"))
        .await
        .expect(201)
        .json()["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let before = s.snapshot();
    for token in [
        "read-only-token-0123456789",
        oauth_ro.as_str(),
        jwt_ro.as_str(),
    ] {
        let c = bearer(&s, token);
        c.get("/scim/v2/Users").await.expect(200);
        c.get(&format!("/scim/v2/Users/{id}")).await.expect(200);
        c.post(
            "/scim/v2/Users/.search",
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": "userName eq \"target\""}),
        )
        .await
        .expect(200);
        let d = c
            .post("/scim/v2/Users", &user("nope"))
            .await
            .scim_error(403, None);
        assert!(d.contains("read-only"), "{d}");
        c.put(&format!("/scim/v2/Users/{id}"), &user("renamed"))
            .await
            .scim_error(403, None);
        c.patch(
            &format!("/scim/v2/Users/{id}"),
            &patch_body(json!([{"op": "replace", "path": "active", "value": false}])),
        )
        .await
        .scim_error(403, None);
        c.delete(&format!("/scim/v2/Users/{id}"))
            .await
            .scim_error(403, None);
        c.post("/scim/v2/Groups", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"}))
            .await
            .scim_error(403, None);
    }
    assert_eq!(s.snapshot(), before);
    let metrics = s.admin_client().get("/metrics").await.expect(200).text();
    assert!(
        metrics.contains("scim_sidecar_auth_failures_total{reason=\"read_only\"} 15"),
        "{metrics}"
    );
    // A writing JWT of the same issuer may change the user.
    let jwt_rw = es256(&ec, "e1", &claims(json!({})));
    bearer(&s, &jwt_rw)
        .delete(&format!("/scim/v2/Users/{id}"))
        .await
        .expect(204);
}
