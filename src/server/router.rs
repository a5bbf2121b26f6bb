//! The request flow, top-down. Every request on the main listener comes through [`handle`].
//!
//! 1. **Route.** `CONNECT` is answered 405 here: the sidecar is no forward proxy, and a
//!    forwarded `CONNECT` would turn the app's connection into a tunnel. The path of
//!    `[auth.oauth]`, when configured, is the OAuth token endpoint
//!    ([`crate::auth::oauth::TokenEndpoint::handle`]: RFC 6749 errors, never SCIM ones). A
//!    path equal to `[scim].base_path` or below it is SCIM; anything else is passed through
//!    to the app ([`pass_through`]), without an `Authorization` header that carries one of
//!    the sidecar's own SCIM credentials. A SCIM failure never touches pass-through traffic.
//! 2. **Authenticate** (SCIM only). No or a wrong credential (static token, JWT, or one of
//!    the sidecar's own access tokens): 401 with `WWW-Authenticate: Bearer`, before the body
//!    is read (503 with `Retry-After` when a JWT issuer's keys cannot be fetched). A read-only
//!    credential asking for anything but a read or a `POST …/.search`: 403, before the body
//!    is read, so nothing changes.
//! 3. **Read the body** (SCIM only). A declared or actual size over `max_body_bytes`: 413;
//!    a content type that is not JSON: 415; not all there within `[scim].body_timeout`: 408.
//!    Nothing reaches the store.
//! 4. **Serve.** [`crate::scim::Service::handle`] parses, validates and calls the mapping,
//!    which runs one store transaction. Every error becomes an RFC 7644 §3.12 body.
//! 5. **Record.** Metrics and one access-log line (method, path, status, time; never the
//!    `Authorization` header or the body), and for a write that succeeded, one audit line
//!    ([`crate::audit`]) when `[audit]` is configured.
//!
//! Every request has an id: the client's `X-Request-Id` when it sent a sensible one, else
//! one made here. It is in the log and audit lines, in the response, and in the request
//! passed to the app.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::App;
use super::conn::Stage;
use crate::proxy::{Body, ClientFault, ClientInfo, full};
use crate::scim::resource::push_hex;
use crate::scim::{self, BaseUrl, ScimError};

const SCIM_JSON: HeaderValue = HeaderValue::from_static("application/scim+json");

const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// The request's id: the client's `X-Request-Id` when it is 1 to 128 visible ASCII
/// characters, else a new one, unique in this process (a random start, then a counter).
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&REQUEST_ID) {
        if is_request_id(v.as_bytes()) {
            return v.clone();
        }
    }
    let (buf, len) = fresh_request_id();
    HeaderValue::from_bytes(&buf[..len]).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// Whether a client's `X-Request-Id` is kept: 1 to 128 visible ASCII characters.
pub(crate) fn is_request_id(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

/// A new request id, unique in this process: hex digits, the first `len` bytes of the array.
pub(crate) fn fresh_request_id() -> ([u8; 32], usize) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 8];
        let _ = ring::rand::SystemRandom::new().fill(&mut b);
        u64::from_le_bytes(b)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // `{start:016x}{n:08x}`, written by hand: the formatting machinery cost more than the
    // rest of a pass-through request's own work.
    let mut buf = [0u8; 32];
    let len = push_hex(&mut buf, 0, start, 16);
    let len = push_hex(&mut buf, len, n, 8);
    (buf, len)
}

/// The part of `path` below the SCIM base path, when it is there (the base path itself or
/// a segment under it, not `/scim/v2x`): a SCIM request.
pub(crate) fn below_base_path<'a>(app: &App, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(app.base_path.as_str())
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What the router knows of the listener a request came in on (from `[listen]` and
/// `[scim]`): deadlines, and whom to believe about the client.
#[derive(Clone, Debug)]
pub struct Limits {
    /// How long a client may take to send a whole SCIM request body.
    pub scim_body_timeout: Duration,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<super::forwarded::Cidr>,
    /// `Host` values absolute URLs may be built from (lower case).
    pub allowed_hosts: Vec<String>,
}

/// Handles one request. Never fails: every outcome is a response.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    client: Arc<ClientInfo>,
) -> Result<Response<Body>, Infallible> {
    let limits = &app.limits;
    if req.method() == http::Method::CONNECT {
        return Ok(connect_refused(&app));
    }
    if let Some(oauth) = &app.oauth {
        if req.uri().path() == oauth.path {
            // The client's address, as far as trusted proxies tell: what failed attempts
            // are counted by.
            let peer = super::forwarded::client_ip(
                client.peer.ip(),
                req.headers(),
                &limits.trusted_proxies,
            );
            return Ok(Box::pin(oauth.handle(req, peer, &app.metrics)).await);
        }
    }
    let id = request_id(req.headers());
    let below = below_base_path(&app, req.uri().path());
    let mut resp = match below {
        Some(rest) => {
            let rest = rest.to_owned();
            let started = Instant::now();
            // Boxed: the SCIM future is ~3 KiB, and hyper moves the service future per
            // request; pass-through requests should not pay for copying it.
            let serving = Box::pin(scim(&app, req, &rest, &client, limits, &id));
            match CatchPanic(serving).await {
                Some(resp) => resp,
                None => panicked(&app, &id, started),
            }
        }
        None => pass_through(&app, req, &client, &id).await,
    };
    resp.headers_mut().entry(REQUEST_ID).or_insert(id);
    Ok(resp)
}

/// Polls a boxed future, and ends with `None` if polling it panics. The future is dropped
/// then, unpolled, as the task around it would have been: a transaction it held rolls back.
struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchPanic<F> {
    type Output = Option<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let polled =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.as_mut().poll(cx)));
        match polled {
            Ok(poll) => poll.map(Some),
            Err(_) => std::task::Poll::Ready(None),
        }
    }
}

/// The 500 for a SCIM request whose handling panicked: a bug, or a library's assumption about
/// what a store sends broken by a store. Without it the panic ended the task serving the
/// request (on HTTP/1.1 the connection's), and the client got no answer at all.
/// The panic itself is in the log (the `run` command's panic hook), before this line.
fn panicked(app: &App, id: &HeaderValue, started: Instant) -> Response<Body> {
    let request_id = id.to_str().unwrap_or("-");
    tracing::error!(
        request_id,
        status = 500,
        "scim request failed: the sidecar panicked while serving it"
    );
    app.metrics
        .scim_request("-", "panicked", 500, started.elapsed());
    error_response(&ScimError::internal(format!(
        "the sidecar failed while serving this request (request id {request_id}); its log \
         says where"
    )))
}

/// `CONNECT` (RFC 9110 §9.3.6) asks for a tunnel to another host: 405, with the methods the
/// sidecar does forward.
fn connect_refused(app: &App) -> Response<Body> {
    app.metrics.proxied(405, Duration::ZERO);
    let mut r = Response::new(full(
        "CONNECT is not supported: this server is no forward proxy\n",
    ));
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE"),
    );
    r
}

/// Removes the `Authorization` values that carry one of the sidecar's own SCIM credentials
/// (see [`crate::auth::Authenticator::is_scim_credential`]); the app's own credentials stay.
fn strip_scim_credentials(app: &App, headers: &mut http::HeaderMap) {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(first), None) = (values.next(), values.next()) else {
        // Several values: keep those that are not ours, in order.
        let kept: Vec<HeaderValue> = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter(|v| !app.auth.is_scim_credential(v.as_bytes()))
            .cloned()
            .collect();
        headers.remove(header::AUTHORIZATION);
        for v in kept {
            headers.append(header::AUTHORIZATION, v);
        }
        return;
    };
    if app.auth.is_scim_credential(first.as_bytes()) {
        headers.remove(header::AUTHORIZATION);
    }
}

/// Non-SCIM traffic: to the app, untouched but for the SCIM credentials.
async fn pass_through(
    app: &App,
    mut req: Request<Incoming>,
    client: &ClientInfo,
    id: &HeaderValue,
) -> Response<Body> {
    let Some(proxy) = &app.proxy else {
        let mut r = Response::new(full(
            "no upstream app is configured; SCIM is served under the base path\n",
        ));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return r;
    };
    if req.headers().contains_key(header::AUTHORIZATION) {
        strip_scim_credentials(app, req.headers_mut());
    }
    // The app sees the request's id: the client's, or the one made for it (also in place
    // of one that was not a sensible id).
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let started = Instant::now();
    let resp = proxy.forward(req, client).await;
    if resp.extensions().get::<ClientFault>() == Some(&ClientFault::BodyTimeout) {
        app.metrics
            .connection_timeout("main", Stage::RequestBody.as_str());
    }
    app.metrics
        .proxied(resp.status().as_u16(), started.elapsed());
    resp
}

/// A SCIM request: steps 2 to 5 of the module doc.
async fn scim(
    app: &App,
    req: Request<Incoming>,
    rest: &str,
    client: &ClientInfo,
    limits: &Limits,
    id: &HeaderValue,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let request_id = id.to_str().unwrap_or("-");

    // 2. Authenticate, then authorise writes.
    let principal = match app
        .auth
        .check(req.headers().get(header::AUTHORIZATION))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            app.metrics.auth_failure(e.reason());
            let status = e.status();
            let err = ScimError::new(status, e.detail());
            let mut r = error_response(&err);
            if status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(e.challenge()),
                );
            } else {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(app.retry_after));
            }
            app.metrics
                .scim_request("-", "unauthenticated", status.as_u16(), started.elapsed());
            tracing::info!(request_id, %method, %path, status = status.as_u16(), reason = e.reason(), "scim request refused");
            return r;
        }
    };
    if principal.read_only && is_write(&method, rest) {
        app.metrics.auth_failure("read_only");
        // RFC 7644 §3.12: 403 "operation is not permitted based on the supplied
        // authorization"; no scimType fits.
        let err = ScimError::new(
            StatusCode::FORBIDDEN,
            "this credential is read-only: it may read and search, not change resources",
        );
        app.metrics
            .scim_request("-", "forbidden", 403, started.elapsed());
        tracing::info!(request_id, %method, %path, status = 403, credential = %principal.who, "scim write refused for a read-only credential");
        return error_response(&err);
    }

    // 3. Read the body, bounded.
    let (parts, body) = req.into_parts();
    let read = read_body(&parts, body, app.max_body_bytes);
    let body = match tokio::time::timeout(limits.scim_body_timeout, read)
        .await
        .unwrap_or_else(|_| Err(body_timeout(&app.metrics, limits.scim_body_timeout)))
    {
        Ok(b) => b,
        Err(e) => {
            app.metrics
                .scim_request("-", "invalid", e.status.as_u16(), started.elapsed());
            tracing::info!(request_id, %method, %path, status = e.status.as_u16(), detail = %e.detail, "scim request refused");
            let mut r = error_response(&e);
            if e.status == StatusCode::REQUEST_TIMEOUT {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            return r;
        }
    };

    // 4. Serve.
    let base = BaseUrl(base_url(app, &parts, client, limits));
    let header = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let request = scim::Request {
        method: &parts.method,
        path: rest,
        query: parts.uri.query(),
        if_match: header(header::IF_MATCH),
        if_none_match: header(header::IF_NONE_MATCH),
        body,
        base,
        audit: app.audit.is_some(),
    };
    let mut answer = app.scim.handle(request).await;

    // 5. Record.
    let took = started.elapsed();
    let status = answer.status.as_u16();
    app.metrics.scim_request(
        &answer.resource_type,
        answer.operation.as_str(),
        status,
        took,
    );
    match (&answer.error, status >= 500) {
        (Some(detail), true) => {
            tracing::warn!(request_id, %method, %path, status, resource_type = %answer.resource_type, operation = answer.operation.as_str(), elapsed_ms = took.as_secs_f64() * 1e3, detail = %detail, "scim request failed")
        }
        (Some(detail), false) => {
            tracing::info!(request_id, %method, %path, status, resource_type = %answer.resource_type, operation = answer.operation.as_str(), elapsed_ms = took.as_secs_f64() * 1e3, detail = %detail, "scim request")
        }
        (None, _) => {
            tracing::info!(request_id, %method, %path, status, resource_type = %answer.resource_type, operation = answer.operation.as_str(), elapsed_ms = took.as_secs_f64() * 1e3, "scim request")
        }
    }
    if let (Some(audit), Some(change)) = (&app.audit, answer.change.take()) {
        audit.record(
            &crate::audit::Context {
                request_id,
                credential: &principal.who,
                client: client.peer.ip(),
                method: method.as_str(),
                path: &path,
                status,
                resource_type: &answer.resource_type,
                operation: answer.operation.as_str(),
            },
            &change,
        );
    }
    to_http(answer)
}

/// The 408 for a SCIM body that did not arrive in time (RFC 9110 §15.5.9); the connection
/// is closed after it (the rest of the body cannot be told apart from a next request).
fn body_timeout(metrics: &crate::metrics::Metrics, limit: Duration) -> ScimError {
    metrics.connection_timeout("main", Stage::RequestBody.as_str());
    ScimError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request body did not arrive within {} s",
            limit.as_secs_f64()
        ),
    )
}

/// Whether a SCIM request may change something: anything but GET/HEAD and a `POST` to a
/// `/.search` endpoint (RFC 7644 §3.4.3, a query sent in a body).
fn is_write(method: &http::Method, rest: &str) -> bool {
    let search = *method == http::Method::POST && rest.trim_end_matches('/').ends_with("/.search");
    !(search || *method == http::Method::GET || *method == http::Method::HEAD)
}

/// Reads a SCIM request body, refusing oversized and non-JSON ones.
async fn read_body(
    parts: &http::request::Parts,
    body: Incoming,
    limit: u64,
) -> Result<Bytes, ScimError> {
    let too_large = || {
        ScimError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than the {limit}-byte limit"),
        )
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        // RFC 7644 §3.1: application/scim+json, and application/json is accepted too.
        let media = ct
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let json = media == "application/json" || media.ends_with("+json") || media.is_empty();
        if !json && declared != Some(0) {
            return Err(ScimError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type \"{media}\" is not JSON; send application/scim+json"),
            ));
        }
    }
    match Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ScimError::invalid_syntax(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

/// The public base URL for `Location` and `meta.location`: `[scim].public_url`; else the
/// `Host` the client used when `[scim].allowed_hosts` lists it; else the address the client
/// reached. Never an unchecked `Host`: a client (or anything that can make a victim's
/// client send a chosen `Host`) would otherwise choose the URLs the identity provider is
/// told to use (`https://evil.example/phish?/scim/v2/Users/3`). The scheme is `https` when
/// TLS is terminated here or a trusted proxy says so in `X-Forwarded-Proto`.
fn base_url(
    app: &App,
    parts: &http::request::Parts,
    client: &ClientInfo,
    limits: &Limits,
) -> String {
    if let Some(u) = &app.public_url {
        return u.clone();
    }
    let https = super::forwarded::is_https(
        client.tls,
        client.peer.ip(),
        &parts.headers,
        &limits.trusted_proxies,
    );
    let scheme = if https { "https" } else { "http" };
    let asked = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    let allowed = asked.filter(|h| host_allowed(h, &limits.allowed_hosts));
    let host_len = allowed.map_or(client.local_host.len(), str::len);
    let mut url = String::with_capacity(scheme.len() + 3 + host_len + app.base_path.len());
    url.push_str(scheme);
    url.push_str("://");
    match allowed {
        // Host names are case-insensitive: one spelling in every URL.
        Some(h) => url.extend(h.chars().map(|c| c.to_ascii_lowercase())),
        None => url.push_str(&client.local_host),
    }
    url.push_str(&app.base_path);
    url
}

/// A body that keeps something alive until it is dropped.
struct Holding {
    body: http_body_util::Full<Bytes>,
    _hold: tokio::sync::OwnedSemaphorePermit,
}

impl hyper::body::Body for Holding {
    type Data = Bytes;
    type Error = crate::proxy::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body)
            .poll_frame(cx)
            .map_err(|never| match never {})
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether a `Host` value is one of `allowed` (an entry without a port allows any port).
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(name))
}

fn error_response(e: &ScimError) -> Response<Body> {
    to_http(scim::Response::error(e))
}

/// The HTTP response for a SCIM answer. A share of the members budget it holds is given
/// back when hyper drops the body, i.e. once it has been sent (or the client went away).
fn to_http(a: scim::Response) -> Response<Body> {
    if a.body
        .as_ref()
        .is_some_and(|b| b.len() >= crate::memory::LARGE_BYTES)
    {
        crate::memory::note_large();
    }
    let body = a.body.map(Bytes::from).unwrap_or_default();
    let mut r = Response::new(match a.hold {
        Some(hold) => Holding {
            body: http_body_util::Full::new(body),
            _hold: hold,
        }
        .boxed(),
        None => full(body),
    });
    *r.status_mut() = a.status;
    let h = r.headers_mut();
    if a.status != StatusCode::NO_CONTENT && a.status != StatusCode::NOT_MODIFIED {
        h.insert(header::CONTENT_TYPE, SCIM_JSON);
    }
    let mut set = |name: header::HeaderName, v: Option<String>| {
        if let Some(v) = v.and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(name, v);
        }
    };
    set(header::LOCATION, a.location);
    set(header::ETAG, a.etag);
    set(header::ALLOW, a.allow.map(str::to_owned));
    set(header::RETRY_AFTER, a.retry_after.map(|s| s.to_string()));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written hex is `format!`'s `{:016x}{:08x}`, for every width of the counter.
    #[test]
    fn request_ids_are_hex() {
        for (start, n) in [
            (0u64, 0u64),
            (0x0123_4567_89ab_cdef, 1),
            (u64::MAX, 0xffff_ffff),
            (7, 0x1_0000_0000),
            (u64::MAX, u64::MAX),
        ] {
            let mut buf = [0u8; 32];
            let len = push_hex(&mut buf, 0, start, 16);
            let len = push_hex(&mut buf, len, n, 8);
            assert_eq!(
                std::str::from_utf8(&buf[..len]).unwrap(),
                format!("{start:016x}{n:08x}")
            );
        }
        let id = request_id(&http::HeaderMap::new());
        assert_eq!(id.len(), 24);
        assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }
}
