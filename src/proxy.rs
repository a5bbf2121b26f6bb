//! Streaming reverse proxy to the upstream (legacy) application.
//!
//! Responsibility: take one inbound request that is *not* a SCIM request and hand it to the
//! upstream app over a pooled HTTP/1.1 connection, streaming the bodies in both directions
//! without buffering them. Caller: the router calls [`Proxy::forward`] for every request
//! outside `/scim/v2` that hyper serves. The server that feeds the router must serve
//! connections with `serve_connection_with_upgrades`, or WebSocket upgrades cannot complete.
//!
//! Most plain-TCP HTTP/1.1 traffic never reaches [`Proxy::forward`]: `crate::server::fast`
//! relays it without hyper, on raw connections from this module's pool (`RawConn`, under
//! the same cap), with the rewriting described here. What it hands to hyper (TLS, HTTP/2,
//! chunked uploads, upgrades, and the other cases its module doc lists) comes here.
//!
//! # How a request is forwarded
//!
//! 1. **Headers.** Hop-by-hop headers are dropped (RFC 9110 §7.6.1), `X-Forwarded-For`,
//!    `-Proto` and `-Host` added, `Host` kept or set to the app's, and this proxy appended to
//!    `Via` (RFC 9110 §7.6.3) under a name of its own: a request that arrives already naming
//!    it has come round a loop (an upstream that leads back to the sidecar) and is answered
//!    508 instead of being sent round again. A transfer coding other
//!    than `chunked` (`Transfer-Encoding: gzip, chunked`) is part of the message and is kept
//!    (RFC 9112 §6.1); `chunked` itself is re-applied per hop.
//! 2. **Connection.** An idle pooled connection to the app, or a new one (within
//!    `connect_timeout`; 502 when it fails). At most [`Proxy::limit_connections`] are open:
//!    beyond, a request waits for one to come free (503 after `timeout`).
//! 3. **Request body.** Streamed from the client as it arrives. While the client is still
//!    sending, the app is not on the clock: `timeout` does not run. A client that pauses
//!    longer than `body_idle_timeout` is answered 408 and the app's request is aborted; a body
//!    the client garbles (bad chunked framing) is answered 400, not 502. An app that stops
//!    reading the body for `timeout` is answered 504.
//! 4. **Response head.** Once the body is forwarded, the app has `timeout` to answer with its
//!    headers (504 otherwise; 502 when the connection fails).
//! 5. **Response body.** Streamed back; when it has been read to its end the connection goes
//!    back to the pool. A `101 Switching Protocols` turns both connections into a tunnel.
//!
//! The app's connection is driven inside the client connection's task — polled by the
//! request future and then by the response body — instead of by a task of its own. A small
//! request then costs one task wake-up per network event instead of three or four, which was
//! most of what made the sidecar slower than nginx in front of the same app.

use std::any::Any;
use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::http_client::Driver;

/// Boxed error type carried by [`Body`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Response and request body type used by the proxy: a boxed, streaming body.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Where and how to reach the upstream app.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Upstream base URL: scheme `http`, authority `host:port`, no path.
    pub url: Uri,
    /// Maximum time to establish the TCP connection.
    pub connect_timeout: Duration,
    /// Maximum time the app may take to answer with its response headers, counted from when
    /// the request body has been forwarded (never while the client is still sending it).
    pub timeout: Duration,
    /// Keep the client's `Host` header instead of using the upstream authority.
    pub preserve_host: bool,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle_timeout: Duration,
    /// Maximum number of idle pooled connections to the upstream.
    pub pool_max_idle_per_host: usize,
    /// How long a client may pause in the middle of a request body (`[listen]`).
    pub body_idle_timeout: Duration,
}

/// Facts about the inbound client connection that the proxy reports upstream.
#[derive(Clone)]
pub struct ClientInfo {
    /// Remote address of the client's TCP connection.
    pub peer: SocketAddr,
    /// Whether the client connection was TLS-terminated by us.
    pub tls: bool,
    /// Our end of the connection, the address the client reached, as a URL's host and port
    /// (`localhost` when unknown): SCIM responses name it in their URLs unless the `Host` is
    /// allowed. Formatted once per connection.
    pub local_host: String,
    /// The peer's IP as a header value, formatted once per connection (IPv4-mapped IPv6
    /// addresses shown as IPv4), for `X-Forwarded-For`.
    pub peer_ip: HeaderValue,
    /// The connection's place under the server's connection cap: a tunnel opened from this
    /// connection holds it, so an upgraded connection still counts.
    pub hold: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for ClientInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInfo")
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ClientInfo {
    /// Describes a client connection.
    pub fn new(peer: SocketAddr, tls: bool) -> Self {
        let ip = peer.ip().to_canonical().to_string();
        let peer_ip = HeaderValue::from_str(&ip).unwrap_or(HeaderValue::from_static("unknown"));
        ClientInfo {
            peer,
            tls,
            local_host: "localhost".to_owned(),
            peer_ip,
            hold: None,
        }
    }

    /// The same, reached at `local`.
    pub fn at(self, local: Option<SocketAddr>) -> Self {
        let local_host = local.map_or_else(|| "localhost".to_owned(), |a| a.to_string());
        ClientInfo { local_host, ..self }
    }

    /// The same, holding `hold` for as long as the connection or a tunnel from it lives.
    pub fn held_by(self, hold: Arc<dyn Any + Send + Sync>) -> Self {
        ClientInfo {
            hold: Some(hold),
            ..self
        }
    }
}

/// What the client did wrong, when a forwarded request failed because of it. Set as an
/// extension on the response so the caller can count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFault {
    /// The client stopped sending its request body for `body_idle_timeout` (408).
    BodyTimeout,
    /// The request body could not be read: bad chunked framing, or the client went away (400).
    BadBody,
}

/// A cheap-to-clone handle on the pooled upstream client.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Arc<Pool>,
    /// The app's time to answer, once the request body has been forwarded.
    timeout: Duration,
    body_idle: Duration,
    preserve_host: bool,
    /// `Host` for requests when the client's is not preserved.
    upstream_host: Option<HeaderValue>,
    /// This proxy's name in `Via`: `scim-sidecar-` and 16 random hex digits.
    via_name: String,
    /// Its `Via` entry for a request received over HTTP/1.0, 1.1 and 2, made once.
    via: [HeaderValue; 3],
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub(crate) const MSG_UNAVAILABLE: &str = "upstream unavailable";
pub(crate) const MSG_TIMEOUT: &str = "upstream timed out";
pub(crate) const MSG_BUSY: &str = "upstream busy: every connection to it is in use";
pub(crate) const MSG_BODY_TIMEOUT: &str = "the request body stopped arriving";
pub(crate) const MSG_BAD_BODY: &str = "the request body could not be read";
const MSG_LOOP: &str =
    "the request came back to the sidecar: upstream.url leads to the sidecar itself";

/// Attempts at sending one request: a pooled connection the app closed while it sat idle
/// fails before anything is sent, and the request then goes out on another.
const SEND_ATTEMPTS: usize = 3;

impl Proxy {
    /// Builds the upstream pool. Never fails: a malformed `url` is reported (as `502`) on
    /// every [`Proxy::forward`] call instead.
    pub fn new(cfg: UpstreamConfig) -> Proxy {
        let name = via_name();
        let authority = match cfg.url.scheme_str() {
            Some("http") => cfg.url.authority().cloned(),
            _ => None,
        };
        Proxy {
            inner: Arc::new(Inner {
                pool: Arc::new(Pool {
                    authority,
                    connect_timeout: cfg.connect_timeout,
                    idle_timeout: cfg.pool_idle_timeout,
                    max_idle: cfg.pool_max_idle_per_host,
                    idle: Mutex::new(Vec::new()),
                    raw: Mutex::new(Vec::new()),
                    slots: OnceLock::new(),
                    returned: Notify::new(),
                    reaper: AtomicBool::new(false),
                }),
                timeout: cfg.timeout,
                body_idle: cfg.body_idle_timeout,
                preserve_host: cfg.preserve_host,
                upstream_host: cfg
                    .url
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
                via: ["1.0", "1.1", "2"].map(|p| {
                    HeaderValue::from_str(&format!("{p} {name}"))
                        .unwrap_or_else(|_| HeaderValue::from_static("1.1 scim-sidecar"))
                }),
                via_name: name,
            }),
        }
    }

    /// Allows at most `n` connections to the app at once (set once, at start-up, to the
    /// listener's connection cap: an HTTP/2 client can multiplex hundreds of requests over
    /// one connection, and each would otherwise open its own connection to the app).
    pub fn limit_connections(&self, n: usize) {
        let _ = self
            .inner
            .pool
            .slots
            .set(Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))));
    }

    // === for the HTTP/1.1 fast path (crate::server::fast) ===

    /// Whether the upstream URL is usable (an `http` URL with an authority).
    pub(crate) fn usable(&self) -> bool {
        self.inner.pool.authority.is_some()
    }

    /// The app's time to answer, once the request body has been forwarded.
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// How long a client may pause in the middle of a request body.
    pub(crate) fn body_idle(&self) -> Duration {
        self.inner.body_idle
    }

    /// The `Host` to send the app for a request that came with `original`.
    pub(crate) fn host_for<'a>(&'a self, original: &'a [u8]) -> &'a [u8] {
        match (&self.inner.preserve_host, &self.inner.upstream_host) {
            (false, Some(h)) => h.as_bytes(),
            _ => original,
        }
    }

    /// This proxy's name in `Via`, and its `Via` entry for an HTTP/1.1 request.
    pub(crate) fn via(&self) -> (&str, &[u8]) {
        (&self.inner.via_name, self.inner.via[1].as_bytes())
    }

    /// A raw connection to the app for a request that started at `now`: an idle one, or a
    /// new one when there is room, waiting for room until `deadline`.
    pub(crate) async fn checkout_raw(
        &self,
        now: Instant,
        deadline: Instant,
    ) -> Result<RawConn, Checkout> {
        self.inner.pool.checkout_raw(now, deadline).await
    }

    /// Takes back a raw connection whose last response, to a request that started at
    /// `started`, has been read to its end. Its idle time counts from then (a clock read
    /// fewer per request; a long request only makes it count as idle sooner).
    pub(crate) fn put_raw(&self, c: RawConn, started: Instant) {
        self.inner.pool.put_raw(c, started);
    }

    /// Forwards one request to the upstream and returns its response with a streaming body.
    /// Never panics; always returns a response (see the module doc for each status).
    pub async fn forward(&self, mut req: Request<Incoming>, client: &ClientInfo) -> Response<Body> {
        let inner = &*self.inner;
        let method = req.method().clone();
        // Kept for log lines (the path only: the query may carry secrets). A clone of a `Uri`
        // is reference counts, not copies.
        let uri = req.uri().clone();
        let path = || uri.path();
        if inner.pool.authority.is_none() {
            tracing::warn!(%method, path = path(), "upstream url has no scheme or authority; check the upstream configuration");
            return error_response(StatusCode::BAD_GATEWAY, MSG_UNAVAILABLE);
        }

        let websocket = is_websocket_upgrade(&req);
        // Must be taken before the request is consumed: it is how we later get hold of the
        // client's raw connection once we have answered 101.
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        let client_version = parts.version;
        let original_host = original_host(&parts.version, &parts.uri, &parts.headers);
        let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
        let codings = parts.headers.get(header::TRANSFER_ENCODING).cloned();

        strip_hop_by_hop(&mut parts.headers);
        if let Some(te) = codings {
            // hyper has decoded `chunked` (and refused a request whose last coding is not
            // chunked); the rest of the list belongs to the body the app receives, and
            // hyper's encoder re-applies `chunked` to a list that ends with it.
            parts.headers.insert(header::TRANSFER_ENCODING, te);
        }
        if websocket {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(v) = upgrade_value {
                parts.headers.insert(header::UPGRADE, v);
            }
        }
        add_forwarded_headers(&mut parts.headers, client, original_host.as_ref());
        let ours = &inner.via[match client_version {
            Version::HTTP_10 => 0,
            Version::HTTP_2 => 2,
            _ => 1,
        }];
        if add_via(&mut parts.headers, ours, &inner.via_name).is_err() {
            tracing::warn!(%method, path = path(), "a request came back to the sidecar: upstream.url leads to the sidecar itself (directly or through another proxy); answered 508");
            return error_response(StatusCode::LOOP_DETECTED, MSG_LOOP);
        }
        let host = match (inner.preserve_host, original_host) {
            (true, Some(h)) => Some(h),
            _ => inner.upstream_host.clone(),
        };
        if let Some(host) = host {
            parts.headers.insert(header::HOST, host);
        }
        // Origin-form for the app (RFC 9112 §3.2.1), whatever form the client used.
        parts.uri = Uri::from(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();

        let (body, watch): (Body, Option<Arc<Watch>>) = if body.is_end_stream() {
            (empty(), None)
        } else {
            let watch = Arc::new(Watch::default());
            let body = ClientBody {
                inner: body,
                idle: inner.body_idle,
                timer: None,
                armed: false,
                watch: watch.clone(),
            };
            (body.boxed(), Some(watch))
        };
        let mut upstream_req = Request::from_parts(parts, body);

        let deadline = Instant::now() + inner.timeout;
        let mut attempts = 0;
        let (resp, mut conn) = loop {
            attempts += 1;
            let mut conn = match inner.pool.checkout(deadline).await {
                Ok(c) => c,
                Err(Checkout::Busy) => {
                    tracing::warn!(%method, path = path(), "every connection to the upstream is in use");
                    let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, MSG_BUSY);
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    return r;
                }
                Err(Checkout::Connect(e)) => {
                    tracing::warn!(%method, path = path(), error = %e, "cannot connect to upstream");
                    return error_response(StatusCode::BAD_GATEWAY, MSG_UNAVAILABLE);
                }
            };
            match exchange(&mut conn, upstream_req, watch.as_deref(), inner.timeout).await {
                Ok(resp) => break (resp, conn),
                Err(Failure::NotSent(req)) if conn.reused && attempts < SEND_ATTEMPTS => {
                    // The app closed this idle connection; the request never left.
                    upstream_req = *req;
                }
                Err(Failure::NotSent(_)) | Err(Failure::Failed(_))
                    if watch.as_deref().is_some_and(Watch::client_at_fault) =>
                {
                    return client_fault(watch.as_deref(), &method, path());
                }
                Err(Failure::Timeout) => {
                    tracing::warn!(%method, path = path(), timeout_ms = inner.timeout.as_millis() as u64,
                        "upstream did not send response headers in time");
                    return error_response(StatusCode::GATEWAY_TIMEOUT, MSG_TIMEOUT);
                }
                Err(Failure::NotSent(e)) => {
                    tracing::warn!(%method, path = path(), "upstream connection failed before the request was sent");
                    drop(e);
                    return error_response(StatusCode::BAD_GATEWAY, MSG_UNAVAILABLE);
                }
                Err(Failure::Failed(e)) => {
                    tracing::warn!(%method, path = path(), error = %error_chain(&e), "upstream request failed");
                    return error_response(StatusCode::BAD_GATEWAY, MSG_UNAVAILABLE);
                }
            }
        };
        let mut resp = resp;

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                tracing::warn!(%method, path = path(), "upstream answered 101 to a request that asked for no upgrade");
                return error_response(StatusCode::BAD_GATEWAY, MSG_UNAVAILABLE);
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            // The upgrade completes when the connection hands its socket over: drive it to
            // that point in a task of its own; it never returns to the pool.
            let driver = conn.driver.take();
            tokio::spawn(async move {
                if let Some(d) = driver {
                    let _ = d.await;
                }
            });
            let (parts, _body) = resp.into_parts();
            let mut headers = parts.headers;
            let upgrade_value = headers.get(header::UPGRADE).cloned();
            strip_hop_by_hop(&mut headers);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(v) = upgrade_value {
                headers.insert(header::UPGRADE, v);
            }
            tokio::spawn(tunnel(
                client_upgrade,
                upstream_upgrade,
                path().to_owned(),
                client.hold.clone(),
            ));
            let mut out = Response::new(empty());
            *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *out.headers_mut() = headers;
            return out;
        }

        let (parts, body) = resp.into_parts();
        let mut headers = parts.headers;
        let codings = headers
            .get(header::TRANSFER_ENCODING)
            .filter(|te| !is_only_chunked(te))
            .cloned();
        strip_hop_by_hop(&mut headers);
        if let Some(te) = codings {
            if client_version == Version::HTTP_2 {
                // RFC 9113 §8.2.2: HTTP/2 has no transfer codings; a gzip-coded body cannot
                // be relayed without its label.
                tracing::warn!(%method, path = path(), "upstream answered with a transfer coding other than chunked, which HTTP/2 cannot carry");
                return error_response(StatusCode::BAD_GATEWAY, MSG_UNAVAILABLE);
            }
            headers.insert(header::TRANSFER_ENCODING, te);
        }
        let body = UpstreamBody {
            body,
            conn: Some(conn),
            pool: inner.pool.clone(),
        };
        let mut out = Response::new(body.boxed());
        *out.status_mut() = parts.status;
        *out.headers_mut() = headers;
        out
    }
}

/// Whether a `Transfer-Encoding` value is just `chunked`.
fn is_only_chunked(te: &HeaderValue) -> bool {
    te.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// The answer to a request that failed because of its client (see [`ClientFault`]).
fn client_fault(watch: Option<&Watch>, method: &http::Method, path: &str) -> Response<Body> {
    let fault = match watch.map(Watch::state) {
        Some(STALLED) => ClientFault::BodyTimeout,
        _ => ClientFault::BadBody,
    };
    let mut r = match fault {
        ClientFault::BodyTimeout => {
            tracing::info!(%method, %path, "client stopped sending its request body; request aborted");
            // RFC 9110 §15.5.9: the server would not wait longer for the request.
            error_response(StatusCode::REQUEST_TIMEOUT, MSG_BODY_TIMEOUT)
        }
        ClientFault::BadBody => {
            tracing::info!(%method, %path, "request body could not be read; request aborted");
            error_response(StatusCode::BAD_REQUEST, MSG_BAD_BODY)
        }
    };
    // The rest of the body cannot be told apart from a next request: close.
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r.extensions_mut().insert(fault);
    r
}

// === the exchange with the app ===

/// Why an exchange with the app produced no response.
enum Failure {
    /// The request never left: the connection had failed first. It can go out on another.
    NotSent(Box<Request<Body>>),
    /// The app kept the request waiting longer than `timeout`.
    Timeout,
    /// The connection failed after the request was (partly) sent.
    Failed(hyper::Error),
}

/// Sends `req` on `conn` and waits for the response head, driving the connection's I/O from
/// this task. The app's clock (`timeout`) runs only while the request body is not waiting
/// for the client (module doc, step 3).
async fn exchange(
    conn: &mut Conn,
    req: Request<Body>,
    watch: Option<&Watch>,
    timeout: Duration,
) -> Result<Response<Incoming>, Failure> {
    let sent = conn.sender.try_send_request(req);
    let mut sent = pin!(sent);
    let mut answer = pin!(poll_fn(|cx| {
        conn.drive(cx);
        sent.as_mut().poll(cx)
    }));
    let done = |r: Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<Body>>>| {
        r.map_err(|mut e| match e.take_message() {
            Some(req) => Failure::NotSent(Box::new(req)),
            None => Failure::Failed(e.into_error()),
        })
    };
    if let Some(w) = watch {
        // The body is still on its way: bounded by the client's idle timeout (in
        // `ClientBody`), and by `timeout` only when the app stops taking it.
        let mut seen = w.frames();
        while !w.is_finished() {
            tokio::select! {
                biased;
                r = answer.as_mut() => return done(r),
                () = w.finished.notified() => {}
                () = tokio::time::sleep(timeout) => {
                    let now = w.frames();
                    if now == seen && !w.waiting_on_client() {
                        return Err(Failure::Timeout);
                    }
                    seen = now;
                }
            }
        }
    }
    match tokio::time::timeout(timeout, answer).await {
        Ok(r) => done(r),
        Err(_) => Err(Failure::Timeout),
    }
}

// === the client's request body ===

const SENDING: u8 = 0;
const SENT: u8 = 1;
const STALLED: u8 = 2;
const BROKEN: u8 = 3;

/// How the client's request body is getting on, shared between [`ClientBody`] (driven by
/// the app's connection) and [`exchange`] (which decides when the app is on the clock).
#[derive(Default)]
struct Watch {
    state: AtomicU8,
    frames: AtomicU64,
    waiting: AtomicBool,
    finished: Notify,
}

impl Watch {
    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }
    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
    fn waiting_on_client(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }
    fn is_finished(&self) -> bool {
        self.state() != SENDING
    }
    fn client_at_fault(&self) -> bool {
        matches!(self.state(), STALLED | BROKEN)
    }
    fn end(&self, state: u8) {
        if self
            .state
            .compare_exchange(SENDING, state, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.finished.notify_one();
        }
    }
}

/// The client's request body on its way to the app, with an idle timer that runs while the
/// app is ready for more and the client sends nothing.
struct ClientBody {
    inner: Incoming,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
    watch: Arc<Watch>,
}

impl hyper::body::Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                this.watch.waiting.store(false, Ordering::Relaxed);
                this.watch.frames.fetch_add(1, Ordering::Relaxed);
                if this.inner.is_end_stream() {
                    // hyper does not poll a body again once it says it has ended.
                    this.watch.end(SENT);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.watch.end(BROKEN);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                this.watch.end(SENT);
                Poll::Ready(None)
            }
            Poll::Pending => {
                this.watch.waiting.store(true, Ordering::Relaxed);
                let deadline = tokio::time::Instant::now() + this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                if timer.as_mut().poll(cx).is_ready() {
                    this.watch.end(STALLED);
                    return Poll::Ready(Some(Err(MSG_BODY_TIMEOUT.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// === the pool of connections to the app ===

/// Idle connections to the app, and the cap on open ones.
struct Pool {
    /// `host:port` of the app; `None` when the configured URL is unusable.
    authority: Option<Authority>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<Conn>>,
    /// Idle raw connections (the fast path's), the most recently used last.
    raw: Mutex<Vec<RawConn>>,
    /// Open connections allowed, once [`Proxy::limit_connections`] has been called.
    slots: OnceLock<Arc<Semaphore>>,
    /// Signalled when a connection goes back to the pool (for requests waiting at the cap).
    returned: Notify,
    reaper: AtomicBool,
}

/// What [`Pool::room`] found.
enum Room {
    /// Room for a new connection, holding its place under the cap (if any).
    Slot(Option<OwnedSemaphorePermit>),
    /// A connection came back to the pool: look there again.
    Returned,
}

/// Whether a single-threaded runtime (a server shard) runs this task: connections are then
/// best used on the thread that opened them, where their readiness events arrive.
fn on_shard() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// The most recently used of `idle` connections; on a shard, the most recent one this
/// thread opened (`home`), or none.
fn take_for_this_thread<T>(
    idle: &mut Vec<T>,
    home: impl Fn(&T) -> std::thread::ThreadId,
) -> Option<T> {
    if !on_shard() {
        return idle.pop();
    }
    let me = std::thread::current().id();
    let i = idle.iter().rposition(|c| home(c) == me)?;
    Some(idle.remove(i))
}

/// Whether an idle connection is still open: nothing to read (an idle connection has no
/// answer pending; bytes or an end mean it is unusable). Costs no system call unless the
/// reactor has seen the socket become readable: the fast path reads through `AsyncRead`,
/// whose short reads leave the socket marked as drained.
fn raw_open(tcp: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(tcp.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Why no connection could be had.
pub(crate) enum Checkout {
    /// Every allowed connection stayed in use until the deadline.
    Busy,
    /// Connecting failed.
    Connect(String),
}

/// A plain TCP connection to the app for the HTTP/1.1 fast path (`crate::server::fast`),
/// which reads and writes the messages itself.
pub(crate) struct RawConn {
    /// The socket.
    pub(crate) tcp: TcpStream,
    /// Taken from the pool rather than just opened.
    pub(crate) reused: bool,
    home: std::thread::ThreadId,
    idle_since: Instant,
    _slot: Option<OwnedSemaphorePermit>,
}

/// A connection to the app: the handle to send on, and the future that does its I/O.
struct Conn {
    sender: http1::SendRequest<Body>,
    driver: Driver,
    /// The socket, for [`crate::http_client::quick_ack`].
    fd: std::os::fd::RawFd,
    /// Taken from the pool rather than just opened.
    reused: bool,
    /// The thread that opened it: on a single-threaded runtime (a server shard) its
    /// readiness events arrive on that thread, so it is best used there.
    home: std::thread::ThreadId,
    idle_since: Instant,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Conn {
    /// Lets the connection do its I/O (write what is queued, read what has arrived). `false`
    /// once it has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        self.driver.drive(cx)
    }

    /// Whether an idle connection can take a request: alive, and done with the last one.
    fn usable(&mut self, cx: &mut Context<'_>) -> bool {
        self.drive(cx) && matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }
}

impl Pool {
    /// An idle connection, or a new one when there is room, waiting for room until
    /// `deadline`.
    async fn checkout(self: &Arc<Self>, deadline: Instant) -> Result<Conn, Checkout> {
        loop {
            while let Some(mut c) = self.pop() {
                if c.idle_since.elapsed() >= self.idle_timeout {
                    continue;
                }
                if poll_fn(|cx| Poll::Ready(c.usable(cx))).await {
                    c.reused = true;
                    return Ok(c);
                }
            }
            match self.room(deadline).await? {
                Room::Returned => continue,
                // Boxed: connecting is the cold path, and its future would otherwise swell
                // every request's future, which hyper moves on each request.
                Room::Slot(slot) => return Box::pin(self.connect(slot)).await,
            }
        }
    }

    /// Room for one more open connection: a place under the cap (when there is one), or
    /// word that a connection came back to the pool meanwhile; `Busy` at `deadline`.
    async fn room(&self, deadline: Instant) -> Result<Room, Checkout> {
        let Some(slots) = self.slots.get() else {
            return Ok(Room::Slot(None));
        };
        if let Ok(p) = slots.clone().try_acquire_owned() {
            return Ok(Room::Slot(Some(p)));
        }
        tokio::select! {
            p = slots.clone().acquire_owned() => Ok(Room::Slot(p.ok())),
            () = self.returned.notified() => Ok(Room::Returned),
            () = tokio::time::sleep_until(deadline.into()) => Err(Checkout::Busy),
        }
    }

    /// An idle raw connection (see [`RawConn`]), or a new one when there is room, waiting
    /// for room until `deadline`.
    async fn checkout_raw(
        self: &Arc<Self>,
        now: Instant,
        deadline: Instant,
    ) -> Result<RawConn, Checkout> {
        loop {
            while let Some(mut c) = self.pop_raw() {
                // The app may have closed it meanwhile (a close that races the request is
                // answered by the fast path's retry, crate::server::fast).
                let idle = now.saturating_duration_since(c.idle_since);
                if idle >= self.idle_timeout || !raw_open(&c.tcp) {
                    continue;
                }
                c.reused = true;
                return Ok(c);
            }
            match self.room(deadline).await? {
                Room::Returned => continue,
                Room::Slot(slot) => return Box::pin(self.connect_raw(slot)).await,
            }
        }
    }

    async fn connect_raw(
        self: &Arc<Self>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<RawConn, Checkout> {
        let tcp = self.open().await?;
        self.start_reaper();
        Ok(RawConn {
            tcp,
            reused: false,
            home: std::thread::current().id(),
            idle_since: Instant::now(),
            _slot: slot,
        })
    }

    /// As [`Pool::pop`], for raw connections.
    fn pop_raw(&self) -> Option<RawConn> {
        let mut idle = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        take_for_this_thread(&mut idle, |c| c.home)
    }

    /// Takes back a raw connection whose last response has been read to its end.
    fn put_raw(&self, mut c: RawConn, since: Instant) {
        c.idle_since = since;
        let mut idle = self.raw.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(c);
            drop(idle);
            self.returned.notify_one();
        }
    }

    /// The most recently used idle connection; on a single-threaded runtime (a server
    /// shard) only one this thread opened, so that the connection's events and the request
    /// that waits for them stay on one thread.
    fn pop(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        take_for_this_thread(&mut idle, |c| c.home)
    }

    async fn connect(
        self: &Arc<Self>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Conn, Checkout> {
        let tcp = self.open().await?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        let (sender, conn) = http1::Builder::new()
            .handshake::<_, Body>(TokioIo::new(tcp))
            .await
            .map_err(|e| Checkout::Connect(e.to_string()))?;
        self.start_reaper();
        Ok(Conn {
            sender,
            driver: Driver::new(conn.with_upgrades()),
            fd,
            reused: false,
            home: std::thread::current().id(),
            idle_since: Instant::now(),
            _slot: slot,
        })
    }

    /// A new TCP connection to the app, within `connect_timeout`.
    async fn open(&self) -> Result<TcpStream, Checkout> {
        let Some(authority) = &self.authority else {
            return Err(Checkout::Connect("no upstream address".into()));
        };
        let open = async {
            let mut last = None;
            for addr in tokio::net::lookup_host(authority.as_str()).await? {
                match TcpStream::connect(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::other("the name resolves to no address")))
        };
        let tcp = match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(Checkout::Connect(e.to_string())),
            Err(_) => return Err(Checkout::Connect("connect timed out".into())),
        };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// Takes back a connection whose last response has been read to its end.
    fn put(&self, mut c: Conn) {
        if c.driver.ended() {
            return;
        }
        c.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.max_idle {
            idle.push(c);
            drop(idle);
            self.returned.notify_one();
        }
    }

    /// Closes idle connections past `idle_timeout` and those the app has closed, every
    /// `idle_timeout`, for as long as the pool exists.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(self);
        let every = self.idle_timeout.max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(pool) = pool.upgrade() else { return };
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut idle = pool.idle.lock().unwrap_or_else(|p| p.into_inner());
                let limit = pool.idle_timeout;
                idle.retain_mut(|c| c.idle_since.elapsed() < limit && c.drive(&mut cx));
                drop(idle);
                let mut raw = pool.raw.lock().unwrap_or_else(|p| p.into_inner());
                raw.retain(|c| c.idle_since.elapsed() < limit && raw_open(&c.tcp));
            }
        });
    }
}

/// The app's response body on its way to the client. It drives the app's connection while
/// it is read, and gives the connection back to the pool once read to its end.
struct UpstreamBody {
    body: Incoming,
    conn: Option<Conn>,
    pool: Arc<Pool>,
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let mut drove = false;
        loop {
            // The body first: polling it tells the connection that more is wanted.
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(None) => {
                    if let Some(c) = this.conn.take() {
                        this.pool.put(c);
                    }
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(Ok(frame))),
                Poll::Pending => {}
            }
            match &mut this.conn {
                Some(c) if !drove => {
                    drove = true;
                    c.drive(cx);
                }
                Some(c) => {
                    // The rest is not there: the app may be holding it back until what it
                    // sent is acknowledged.
                    crate::http_client::quick_ack(c.fd);
                    return Poll::Pending;
                }
                None => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            // hyper stops reading a body that says it has ended without polling it again;
            // one dropped before its end leaves the connection mid-response: closed.
            if self.body.is_end_stream() {
                self.pool.put(c);
            }
        }
    }
}

/// Builds a [`Body`] holding `bytes` in full; for small fixed bodies.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

fn error_response(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(msg));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// Copies bytes both ways between the upgraded client and upstream connections.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    path: String,
    // Keeps the client connection's place under the connection cap while the tunnel lives.
    _hold: Option<Arc<dyn Any + Send + Sync>>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(%path, error = %error_chain(&e), "websocket upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%path, error = %e, "websocket tunnel closed with error");
    }
}

/// True for an HTTP/1.1 `Connection: upgrade` + `Upgrade: websocket` request.
fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && header_has_token(req.headers(), &header::CONNECTION, "upgrade")
        && header_has_token(req.headers(), &header::UPGRADE, "websocket")
}

fn header_has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The host the client asked for: `Host`, or for HTTP/2 the `:authority`.
fn original_host(version: &Version, uri: &Uri, headers: &HeaderMap) -> Option<HeaderValue> {
    let from_uri = || {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    };
    if *version == Version::HTTP_2 {
        from_uri().or_else(|| headers.get(header::HOST).cloned())
    } else {
        headers.get(header::HOST).cloned().or_else(from_uri)
    }
}

/// Whether a header (named in any case) describes a single connection: one never
/// forwarded (RFC 9110 §7.6.1), besides those `Connection` names.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .any(|h| h.eq_ignore_ascii_case(name))
}

/// Removes the fixed hop-by-hop headers and every header the `Connection`
/// header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them, or only `Connection`: the names present are looked
    // at once, and only those found are removed (a removal hashes its name).
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_hop_by_hop(k.as_str()))
        .cloned()
        .collect();
    if present.contains(&header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in present {
        headers.remove(name);
    }
}

fn add_forwarded_headers(headers: &mut HeaderMap, client: &ClientInfo, host: Option<&HeaderValue>) {
    let xff = if headers.contains_key(&X_FORWARDED_FOR) {
        // Append to the chain the client sent. If that failed, the peer alone is forwarded
        // rather than a bogus chain.
        appended(headers.get_all(&X_FORWARDED_FOR), &client.peer_ip)
            .unwrap_or_else(|| client.peer_ip.clone())
    } else {
        client.peer_ip.clone()
    };
    headers.insert(X_FORWARDED_FOR, xff);

    let proto = if client.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));

    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST, h.clone());
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

/// A list header's values (several headers of one name fold into one, RFC 9110 §5.3) with
/// `last` appended, as one value. The inputs are valid header values, so this cannot fail in
/// practice; `None` if it did.
fn appended<'a>(
    values: impl IntoIterator<Item = &'a HeaderValue>,
    last: &HeaderValue,
) -> Option<HeaderValue> {
    let mut chain: Vec<u8> = Vec::new();
    for v in values {
        chain.extend_from_slice(v.as_bytes());
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(last.as_bytes());
    HeaderValue::from_bytes(&chain).ok()
}

/// A name for this proxy in `Via`, different in every process (and every loaded config):
/// a loop through two sidecars is found as surely as one through itself.
fn via_name() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    format!("scim-sidecar-{:016x}", u64::from_le_bytes(b))
}

/// Whether a `Via` value names this proxy (`name`): the request has been forwarded by it.
pub(crate) fn names(via: &[u8], name: &str) -> bool {
    via.split(|b| *b == b',').any(|entry| {
        entry
            .split(|b| b.is_ascii_whitespace())
            .any(|w| w == name.as_bytes())
    })
}

/// Appends this proxy's entry (`ours`: the protocol the request was received with, and the
/// proxy's name; RFC 9110 §7.6.3) to `Via`, after the entries the client sent. `Err` when
/// those already name this proxy (`name`): the request has come round a loop.
fn add_via(headers: &mut HeaderMap, ours: &HeaderValue, name: &str) -> Result<(), ()> {
    match headers.entry(header::VIA) {
        header::Entry::Vacant(e) => {
            e.insert(ours.clone());
        }
        header::Entry::Occupied(mut e) => {
            if e.iter().any(|v| names(v.as_bytes(), name)) {
                return Err(());
            }
            if let Some(v) = appended(e.iter(), ours) {
                e.insert(v);
            }
        }
    }
    Ok(())
}

/// `outer: cause: root cause` for log lines.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every hop-by-hop name is known as one, in the form `HeaderName` gives it.
    #[test]
    fn hop_by_hop_names() {
        for h in [
            header::CONNECTION,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
            header::PROXY_AUTHENTICATE,
            header::PROXY_AUTHORIZATION,
            header::TE,
            header::TRAILER,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
        ] {
            assert!(is_hop_by_hop(h.as_str()), "{h}");
        }
        for other in [
            "host",
            "content-length",
            "authorization",
            "cookie",
            "tes",
            "x-te",
        ] {
            assert!(!is_hop_by_hop(other), "{other}");
        }
    }

    #[test]
    fn strips_fixed_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("x-foo, Keep-Alive"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn via_names_this_proxy_or_not() {
        let name = "scim-sidecar-00112233445566aa";
        let ours = HeaderValue::from_static("2 scim-sidecar-00112233445566aa");
        let via = |vals: &[&str]| {
            let mut m = HeaderMap::new();
            for v in vals {
                m.append(header::VIA, v.parse().expect("value"));
            }
            add_via(&mut m, &ours, name).map(|()| {
                assert_eq!(m.get_all(header::VIA).iter().count(), 1);
                m[header::VIA].to_str().expect("text").to_owned()
            })
        };
        assert_eq!(via(&[]), Ok("2 scim-sidecar-00112233445566aa".into()));
        assert_eq!(
            via(&["1.0 a", "1.1 b, 1.1 scim-sidecar-00112233445566ab"]),
            Ok(
                "1.0 a, 1.1 b, 1.1 scim-sidecar-00112233445566ab, 2 scim-sidecar-00112233445566aa"
                    .into()
            )
        );
        assert!(via(&["1.1 xscim-sidecar-00112233445566aa"]).is_ok());
        assert_eq!(
            via(&["1.1 edge, 1.1 scim-sidecar-00112233445566aa"]),
            Err(())
        );
        assert_eq!(
            via(&["1.0 edge", "2 scim-sidecar-00112233445566aa (sidecar)"]),
            Err(())
        );
    }

    #[test]
    fn error_chain_joins_sources() {
        let io = std::io::Error::other("inner");
        assert_eq!(error_chain(&io), "inner");
    }
}
