//! The sidecar's own OAuth 2.0 token endpoint (RFC 6749 §4.4, client credentials), which
//! Entra ID's gallery onboarding asks for, and the verifier of the tokens it issues.
//!
//! The router sends `POST [auth.oauth].path` to [`TokenEndpoint::handle`] before SCIM routing.
//! A client authenticates with `client_id`/`client_secret` in the form body or with HTTP Basic
//! (RFC 6749 §2.3.1) and receives a short-lived HS256 JWT, which [`super::Authenticator`]
//! then accepts on SCIM requests through [`Signer::verify`].
//!
//! Secrets are compared in constant time over SHA-256 digests.
//!
//! # Failed attempts
//!
//! Failures are counted in token buckets ([`Limiter`]): one per client address (the peer, or
//! the `X-Forwarded-For` client when the peer is a trusted proxy, see
//! [`crate::server::forwarded`]) and one per configured `client_id`. While either bucket of a
//! request is empty, the request is *delayed*, not refused: it is answered only once that
//! bucket would have regained an attempt (at most `max_delay`), and then checked as usual.
//! The right secret gets its token; a wrong one gets 429 with `Retry-After`.
//!
//! Why delay and not deny: behind an ingress or a NAT the identity provider shares its
//! address with everyone else, and `client_id`s are not secret, so a refusal keyed on either
//! lets any stranger lock the identity provider out (ten bad attempts did, before). A delay
//! keyed on both still slows a guesser — every guess waits, from every address, for that
//! client — while the real client, whose secret is right, is at worst late. What a delay
//! cannot do is cap the guess rate of an attacker who holds many requests open at once;
//! the connection cap bounds that, and the client secret, a long random value (shorter than
//! 16 characters is a start-up warning), does the rest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use ring::hmac;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::jwt::{self, Parsed};
use super::{AuthError, Principal, Via, digest};
use crate::config::OAuth;
use crate::metrics::Metrics;
use crate::proxy::{Body, full};

/// The `iss` and `aud` of the sidecar's own tokens.
pub const OWN_ISSUER: &str = "urn:scim-sidecar";
/// The scope that allows writes.
pub const WRITE_SCOPE: &str = "scim.write";
/// The scope every token carries.
pub const READ_SCOPE: &str = "scim.read";
/// Largest token request body.
const MAX_FORM_BYTES: usize = 8 * 1024;
/// Buckets kept before full ones are dropped.
const MAX_BUCKETS: usize = 10_000;

/// Signs and verifies the sidecar's own access tokens (HS256).
pub struct Signer {
    key: hmac::Key,
    lifetime: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Signer {
    /// A signer with `key`, or with a random key when `None` (tokens then do not survive a
    /// restart and are not shared between replicas).
    pub fn new(key: Option<&[u8]>, lifetime: Duration) -> Result<Signer, String> {
        let key = match key {
            Some(k) => hmac::Key::new(hmac::HMAC_SHA256, k),
            None => hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                .map_err(|_| "cannot generate a random signing key".to_string())?,
        };
        Ok(Signer { key, lifetime })
    }

    /// An access token for `client_id`.
    pub fn issue(&self, client_id: &str, read_only: bool, now: u64) -> String {
        let scope = if read_only {
            READ_SCOPE.to_owned()
        } else {
            format!("{READ_SCOPE} {WRITE_SCOPE}")
        };
        let header = json!({"alg": "HS256", "typ": "at+jwt"});
        let claims = json!({
            "iss": OWN_ISSUER, "aud": OWN_ISSUER, "sub": client_id, "client_id": client_id,
            "iat": now, "nbf": now, "exp": now + self.lifetime.as_secs(), "scope": scope,
        });
        let input = format!(
            "{}.{}",
            jwt::encode(header.to_string().as_bytes()),
            jwt::encode(claims.to_string().as_bytes())
        );
        let tag = hmac::sign(&self.key, input.as_bytes());
        format!("{input}.{}", jwt::encode(tag.as_ref()))
    }

    /// Verifies one of our tokens (`iss` already matched [`OWN_ISSUER`]). The tag check is
    /// ring's constant-time HMAC verification.
    pub fn verify(&self, t: &Parsed<'_>) -> Result<Principal, AuthError> {
        if t.alg != "HS256" {
            return Err(AuthError::UnsupportedAlg);
        }
        hmac::verify(&self.key, t.signing_input, &t.signature)
            .map_err(|_| AuthError::BadSignature)?;
        jwt::check_claims(&t.claims, &[OWN_ISSUER.to_owned()], 0, now_secs())?;
        let write = jwt::scopes(&t.claims).contains(&WRITE_SCOPE);
        Ok(Principal {
            read_only: !write,
            via: Via::OAuth,
            who: format!("oauth:{}", super::subject(&t.claims)),
        })
    }
}

/// What a bucket of failed attempts is kept for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A client address.
    Addr(IpAddr),
    /// A configured `client_id` (unknown ones have no bucket of their own: they would let a
    /// guesser fill memory).
    Client(String),
}

/// Token buckets of failed attempts, one per [`Key`].
pub struct Limiter {
    burst: f64,
    per_second: f64,
    buckets: HashMap<Key, (f64, Instant)>,
}

impl Limiter {
    /// `burst` failures at once, refilled at `per_minute`.
    pub fn new(burst: u32, per_minute: u32) -> Limiter {
        Limiter {
            burst: f64::from(burst),
            per_second: f64::from(per_minute) / 60.0,
            buckets: HashMap::new(),
        }
    }

    fn level(&self, key: &Key, now: Instant) -> f64 {
        match self.buckets.get(key) {
            None => self.burst,
            Some((tokens, at)) => {
                (tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst)
            }
        }
    }

    /// `Some(wait)` while `key` has no attempt left: the time until it regains one.
    pub fn wait(&self, key: &Key, now: Instant) -> Option<Duration> {
        let level = self.level(key, now);
        if level >= 1.0 {
            return None;
        }
        let secs = if self.per_second > 0.0 {
            (1.0 - level) / self.per_second
        } else {
            3600.0
        };
        Some(Duration::from_secs_f64(secs))
    }

    /// Records a failed attempt for `key`.
    pub fn failed(&mut self, key: &Key, now: Instant) {
        let level = self.level(key, now);
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(key) {
            let (burst, rate) = (self.burst, self.per_second);
            self.buckets
                .retain(|_, (t, at)| *t + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        self.buckets
            .insert(key.clone(), ((level - 1.0).max(0.0), now));
    }
}

struct Client {
    id: String,
    secret: [u8; 32],
    read_only: bool,
}

/// `POST [auth.oauth].path`.
pub struct TokenEndpoint {
    /// The path it is served at.
    pub path: String,
    clients: Vec<Client>,
    signer: Arc<Signer>,
    lifetime: Duration,
    limiter: Mutex<Limiter>,
    max_delay: Duration,
}

/// An RFC 6749 §5.2 error, with the status it is sent with.
struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: &'static str,
}

fn oauth_error(status: StatusCode, code: &'static str, description: &'static str) -> OAuthError {
    OAuthError {
        status,
        code,
        description,
    }
}

fn invalid_request(description: &'static str) -> OAuthError {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// Client credentials as presented.
struct Presented {
    id: String,
    secret: String,
}

impl TokenEndpoint {
    /// The endpoint for `config`, issuing tokens with `signer`.
    pub fn new(config: &OAuth, signer: Arc<Signer>) -> TokenEndpoint {
        TokenEndpoint {
            path: config.path.clone(),
            clients: config
                .clients
                .iter()
                .map(|c| Client {
                    id: c.client_id.clone(),
                    secret: digest(c.secret.0.as_bytes()),
                    read_only: c.read_only,
                })
                .collect(),
            signer,
            lifetime: config.token_lifetime,
            limiter: Mutex::new(Limiter::new(
                config.failed_attempts_burst,
                config.failed_attempts_per_minute,
            )),
            max_delay: config.max_delay,
        }
    }

    /// Answers one token request from the client at `peer` (its address as far as the
    /// trusted proxies tell). Never logs the secret or the token.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: IpAddr,
        metrics: &Metrics,
    ) -> Response<Body> {
        let basic_used = req.headers().get(header::AUTHORIZATION).is_some_and(|h| {
            h.as_bytes().len() > 6 && h.as_bytes()[..6].eq_ignore_ascii_case(b"basic ")
        });
        let (outcome, resp) = match self.token(req, peer).await {
            Ok(body) => ("issued", json_response(StatusCode::OK, &body)),
            Err(ResponseError::Limited(wait)) => {
                let mut r = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    &json!({"error": "invalid_request", "error_description": "too many failed attempts; retry later"}),
                );
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from((wait.as_secs_f64().ceil() as u64).max(1)),
                );
                ("rate_limited", r)
            }
            Err(ResponseError::OAuth(e)) => {
                let mut r = json_response(
                    e.status,
                    &json!({"error": e.code, "error_description": e.description}),
                );
                if e.status == StatusCode::UNAUTHORIZED && basic_used {
                    // RFC 6749 §5.2: a client that used Basic gets a Basic challenge.
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"scim-sidecar\""),
                    );
                }
                (e.code, r)
            }
        };
        metrics.oauth_token_request(outcome);
        tracing::info!(status = resp.status().as_u16(), outcome, peer = %peer, "oauth token request");
        resp
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The buckets a request counts against: its address, and its `client_id` when that is
    /// one of ours.
    fn keys(&self, peer: IpAddr, client_id: Option<&str>) -> Vec<Key> {
        let mut keys = vec![Key::Addr(peer)];
        if let Some(id) = client_id.filter(|id| self.clients.iter().any(|c| c.id == *id)) {
            keys.push(Key::Client(id.to_owned()));
        }
        keys
    }

    async fn token(&self, req: Request<Incoming>, peer: IpAddr) -> Result<Value, ResponseError> {
        let presented = match self.parse(req).await {
            Ok(p) => p,
            Err(e) => {
                self.limiter().failed(&Key::Addr(peer), Instant::now());
                return Err(ResponseError::OAuth(e));
            }
        };
        let keys = self.keys(peer, Some(presented.id.as_str()));
        let wait = {
            let limiter = self.limiter();
            let now = Instant::now();
            keys.iter().filter_map(|k| limiter.wait(k, now)).max()
        };
        if let Some(wait) = wait {
            // Delay, not denial (module doc): the right secret is late, never refused.
            tokio::time::sleep(wait.min(self.max_delay)).await;
        }
        match self.authenticate(&presented) {
            Some(client) => Ok(self.issue(client)),
            None => {
                let mut limiter = self.limiter();
                let now = Instant::now();
                for k in &keys {
                    limiter.failed(k, now);
                }
                match wait {
                    Some(wait) => Err(ResponseError::Limited(wait)),
                    None => Err(ResponseError::OAuth(oauth_error(
                        StatusCode::UNAUTHORIZED,
                        "invalid_client",
                        "client authentication failed",
                    ))),
                }
            }
        }
    }

    /// The token response for an authenticated client.
    fn issue(&self, client: &Client) -> Value {
        let token = self.signer.issue(&client.id, client.read_only, now_secs());
        let scope = if client.read_only {
            READ_SCOPE.to_owned()
        } else {
            format!("{READ_SCOPE} {WRITE_SCOPE}")
        };
        json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.lifetime.as_secs(),
            "scope": scope,
        })
    }

    /// The client credentials of a well-formed client-credentials request.
    async fn parse(&self, req: Request<Incoming>) -> Result<Presented, OAuthError> {
        if req.method() != Method::POST {
            return Err(oauth_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "the token endpoint takes POST",
            ));
        }
        let (parts, body) = req.into_parts();
        let form_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(invalid_request(
                "send the parameters as application/x-www-form-urlencoded",
            ));
        }
        let body: Bytes = Limited::new(body, MAX_FORM_BYTES)
            .collect()
            .await
            .map_err(|_| invalid_request("the request body is too large or unreadable"))?
            .to_bytes();
        let mut params: HashMap<String, String> = HashMap::new();
        for (k, v) in form_urlencoded::parse(&body) {
            // RFC 6749 §3.2: parameters must not be repeated.
            if params.insert(k.into_owned(), v.into_owned()).is_some() {
                return Err(invalid_request("a parameter is repeated"));
            }
        }
        match params.get("grant_type").map(String::as_str) {
            None => return Err(invalid_request("grant_type is missing")),
            Some("client_credentials") => {}
            Some(_) => {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    "only grant_type=client_credentials is supported",
                ));
            }
        }
        presented(&parts.headers, &params)
    }

    /// The client whose id and secret match, compared in constant time over digests; an
    /// unknown id costs the same as a wrong secret.
    fn authenticate(&self, p: &Presented) -> Option<&Client> {
        let secret = digest(p.secret.as_bytes());
        let id = digest(p.id.as_bytes());
        let mut found = None;
        for c in &self.clients {
            let ok = digest(c.id.as_bytes()).ct_eq(&id) & c.secret.ct_eq(&secret);
            if bool::from(ok) {
                found = Some(c);
            }
        }
        found
    }
}

/// Why a token request failed: an RFC 6749 error, or the peer is rate limited.
enum ResponseError {
    OAuth(OAuthError),
    Limited(Duration),
}

/// Client credentials from HTTP Basic or the body, never both (RFC 6749 §2.3).
fn presented(
    headers: &http::HeaderMap,
    params: &HashMap<String, String>,
) -> Result<Presented, OAuthError> {
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");
    if params.contains_key("client_assertion") {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client assertions are not supported; use client_id and client_secret",
        ));
    }
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        let h = h.as_bytes();
        if h.len() < 6 || !h[..6].eq_ignore_ascii_case(b"basic ") {
            return Err(invalid_request(
                "only Basic client authentication is supported",
            ));
        }
        if body_secret.is_some() {
            return Err(invalid_request(
                "use one client authentication method: Basic or the body, not both",
            ));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(h[6..].trim_ascii())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or(invalid_request("the Basic credentials are not base64"))?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or(invalid_request("the Basic credentials have no ':'"))?;
        // RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
        let (id, secret) = (form_decode(id), form_decode(secret));
        if body_id.is_some_and(|b| *b != id) {
            return Err(invalid_request("client_id in the body differs from Basic"));
        }
        return Ok(Presented { id, secret });
    }
    match (body_id, body_secret) {
        (Some(id), Some(secret)) => Ok(Presented {
            id: id.clone(),
            secret: secret.clone(),
        }),
        _ => Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "send client_id and client_secret (in the body or with HTTP Basic)",
        )),
    }
}

/// Decodes one `application/x-www-form-urlencoded` value.
fn form_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // RFC 6749 §5.1: token responses must not be cached.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key gets `burst` failures, then has to wait; the wait is the time until the bucket
    /// regains one attempt at the configured rate; keys are independent.
    #[test]
    fn limiter() {
        let ip = Key::Addr([10, 0, 0, 1].into());
        let other = Key::Addr([10, 0, 0, 2].into());
        let client = Key::Client("entra".into());
        let mut l = Limiter::new(3, 60);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.wait(&ip, t0), None);
            l.failed(&ip, t0);
        }
        assert_eq!(l.wait(&ip, t0), Some(Duration::from_secs(1)));
        assert_eq!(l.wait(&other, t0), None);
        assert_eq!(l.wait(&client, t0), None);
        assert_eq!(l.wait(&ip, t0 + Duration::from_secs(1)), None);
        let mut never = Limiter::new(1, 0);
        never.failed(&ip, t0);
        assert!(never.wait(&ip, t0 + Duration::from_secs(600)).is_some());
    }

    /// Basic credentials are form-decoded (RFC 6749 §2.3.1); Basic plus a body secret, or
    /// a body `client_id` that differs from Basic's, is a bad request.
    #[test]
    fn client_credentials() {
        let basic = |s: &str| {
            let mut h = http::HeaderMap::new();
            let v = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            );
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&v).expect("hv"),
            );
            h
        };
        let none = HashMap::new();
        let p = presented(&basic("my%20app:s%3Acret+x"), &none)
            .ok()
            .expect("ok");
        assert_eq!((p.id.as_str(), p.secret.as_str()), ("my app", "s:cret x"));
        let body: HashMap<String, String> = [("client_secret".into(), "x".into())].into();
        assert!(presented(&basic("a:b"), &body).is_err());
        let body: HashMap<String, String> = [("client_id".into(), "z".into())].into();
        assert!(presented(&basic("a:b"), &body).is_err());
        let e = presented(&http::HeaderMap::new(), &none)
            .err()
            .expect("err");
        assert_eq!(
            (e.status, e.code),
            (StatusCode::UNAUTHORIZED, "invalid_client")
        );
        assert!(presented(&basic("no-colon"), &none).is_err());
        assert_eq!(form_decode("a%2"), "a%2");
        assert_eq!(form_decode("%41%zz"), "A%zz");
    }
}
