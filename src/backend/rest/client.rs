//! The REST store's HTTP client: the sidecar's own hyper stack (HTTP/1.1 connections over
//! TCP, or TLS through rustls with the ring provider), no second HTTP library.
//!
//! - **Connections**: idle ones are kept and reused. A connection's I/O is done by the request
//!   using it, polled next to the answer it waits for ([`crate::http_client`]), not by a task
//!   of its own: no hand-off between tasks per network event. At most `max_concurrency`
//!   requests are in flight (a semaphore), so a burst of SCIM requests cannot flood the
//!   application, and at most `max_concurrency` connections are open.
//! - **Affinity**: the server serves on shard threads, each a single-threaded runtime, and a
//!   connection's readiness events arrive on the thread that opened it. A request takes an
//!   idle connection opened on its own thread; with none, it opens one there while fewer than
//!   `max_concurrency` are open, and else takes another thread's. A connection used from
//!   another thread wakes the request across threads, a context switch each way (the
//!   PostgreSQL pool, `sql::pg_pool`, does the same for the same reason). A connection opened
//!   off the shards (by `check` at start-up, on the multi-threaded runtime) is closed once a
//!   shard has used it, rather than kept: it would otherwise serve shard requests across
//!   threads for as long as the process runs.
//! - **Time**: connecting is bounded by `connect_timeout`, each attempt (request sent to
//!   response body read) by `timeout`, on one timer per connection
//!   ([`crate::http_client::AnswerClock`]) rather than a new one per request.
//! - **Retries**: idempotent requests (GET, PUT, DELETE) are sent again, at most `retries`
//!   times with a doubling pause, when the connection fails or the app answers 502, 503 or
//!   504. A POST is sent once, except when a reused connection turns out closed before the
//!   request left (nothing reached the app).
//! - **Status mapping** ([`status_error`]): the one place where the app's answers become
//!   [`BackendError`]s.

use std::future::poll_fn;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::backend::BackendError;
use crate::http_client::{AnswerClock, Driver};

/// The largest response body read (a list page of a few hundred users fits many times).
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The most characters of the app's own error text passed on to the client.
const MAX_MESSAGE: usize = 300;

/// Where the app is and how to talk to it.
pub struct ClientConfig {
    /// `https`.
    pub https: bool,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path prefix of every request (`/api/v2`), without a trailing slash.
    pub prefix: String,
    /// TLS settings, for `https`.
    pub tls: Option<tokio_rustls::rustls::ClientConfig>,
    /// Headers sent with every request (API keys, `Authorization`), marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Connecting (TCP and TLS) may take this long.
    pub connect_timeout: Duration,
    /// One attempt may take this long.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Further attempts of an idempotent request.
    pub retries: u32,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Io for T {}

type Sender = http1::SendRequest<Full<Bytes>>;

/// An open connection: its request handle, its I/O, the thread whose runtime gets its
/// readiness events (`None` on a multi-threaded runtime), and its place in the count of open
/// connections.
struct Conn {
    sender: Sender,
    driver: Driver,
    /// The TCP socket under it (TLS or not), for [`crate::http_client::quick_ack`].
    fd: RawFd,
    home: Option<ThreadId>,
    /// The deadline on its answers, one timer for all of its requests.
    clock: AnswerClock,
    _open: Open,
}

/// One open connection in [`Client::open`], given back when the connection is dropped.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: &Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request to the app: method, path and query (encoded already), extra headers, body.
#[derive(Clone, Debug, Default)]
pub struct Req {
    /// Method.
    pub method: Method,
    /// Path and query, relative to the base URL's path.
    pub path: String,
    /// Headers of this request only.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A JSON body.
    pub body: Option<serde_json::Value>,
    /// A form body (`application/x-www-form-urlencoded`), for a token request.
    pub form: Option<String>,
}

/// OAuth 2.0 client credentials (RFC 6749 §4.4): a token from `token_url`, sent as
/// `Authorization: Bearer`, kept until shortly before it expires.
pub struct OAuth2 {
    /// A client for the token endpoint's host.
    pub client: Box<Client>,
    /// The token endpoint's path.
    pub path: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The scope asked for, if any.
    pub scope: Option<String>,
    /// The token and when it stops being used; the lock makes one refresh at a time.
    pub token: tokio::sync::Mutex<Option<(HeaderValue, std::time::Instant)>>,
}

/// A token is renewed this long before it expires (or at half its life when that is
/// shorter), so that a request never carries one that expires on the way.
const TOKEN_MARGIN: Duration = Duration::from_secs(30);

impl OAuth2 {
    /// The `Authorization` value, fetching a token when none is held or it is about to
    /// expire. Callers wait on the lock while another fetches.
    async fn bearer(&self) -> Result<HeaderValue, BackendError> {
        let mut held = self.token.lock().await;
        if let Some((v, until)) = &*held {
            if std::time::Instant::now() < *until {
                return Ok(v.clone());
            }
        }
        let form = {
            let mut f = form_urlencoded::Serializer::new(String::new());
            f.append_pair("grant_type", "client_credentials");
            if let Some(s) = &self.scope {
                f.append_pair("scope", s);
            }
            f.finish()
        };
        use base64::Engine;
        // RFC 6749 §2.3.1: id and secret form-encoded, then HTTP Basic.
        let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(&self.client_id),
            enc(&self.client_secret)
        ));
        let mut auth = HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|_| BackendError::Internal("the client credentials cannot be sent".into()))?;
        auth.set_sensitive(true);
        let reply = self
            .client
            .send_plain(&Req {
                method: Method::POST,
                path: self.path.clone(),
                headers: vec![(http::header::AUTHORIZATION, auth)],
                form: Some(form),
                ..Req::default()
            })
            .await?;
        if !reply.status.is_success() {
            tracing::error!(
                status = reply.status.as_u16(),
                "the OAuth token endpoint refused the sidecar's client credentials: check oauth2.client_id and client_secret"
            );
            return Err(BackendError::Unavailable(format!(
                "the OAuth token endpoint answered {}",
                reply.status
            )));
        }
        let doc = reply.json().unwrap_or(serde_json::Value::Null);
        let token = doc
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(|| {
                BackendError::Unavailable("the OAuth token answer has no access_token".into())
            })?;
        let life = Duration::from_secs(
            doc.get("expires_in")
                .and_then(|e| e.as_u64())
                .unwrap_or(300),
        );
        let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| BackendError::Unavailable("the OAuth token is not header text".into()))?;
        v.set_sensitive(true);
        let keep = life.saturating_sub(TOKEN_MARGIN.min(life / 2));
        *held = Some((v.clone(), std::time::Instant::now() + keep));
        Ok(v)
    }

    /// Forgets the token (the app refused it: it was revoked, or the app restarted).
    async fn forget(&self) {
        *self.token.lock().await = None;
    }
}

/// The app's answer.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON; `None` when empty or not JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        if self.body.is_empty() {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }
}

/// Why one attempt failed without an answer.
enum Failure {
    /// Nothing reached the app (connecting failed, or a reused connection was closed).
    NotSent(String),
    /// The request may have reached the app.
    Failed(String),
    /// No whole answer within `timeout`.
    Late,
}

/// A pooled client for one app.
pub struct Client {
    cfg: ClientConfig,
    oauth: Option<OAuth2>,
    authority: HeaderValue,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<Conn>>,
    /// Connections open (idle or in use).
    open: Arc<AtomicUsize>,
    permits: Semaphore,
}

impl Client {
    /// A client; `Err` when the host cannot be a TLS server name or a `Host` header.
    pub fn new(cfg: ClientConfig) -> Result<Client, String> {
        let default_port = if cfg.https { 443 } else { 80 };
        let authority = if cfg.port == default_port {
            cfg.host.clone()
        } else {
            format!("{}:{}", cfg.host, cfg.port)
        };
        let authority = HeaderValue::from_str(&authority)
            .map_err(|_| format!("'{authority}' is not a host name"))?;
        let tls = match (&cfg.tls, cfg.https) {
            (Some(t), true) => {
                let name = ServerName::try_from(cfg.host.trim_matches(['[', ']']).to_owned())
                    .map_err(|e| format!("'{}' is not a TLS server name: {e}", cfg.host))?;
                Some((TlsConnector::from(std::sync::Arc::new(t.clone())), name))
            }
            (None, true) => return Err("https needs tls = { ca = \"…\" }".into()),
            _ => None,
        };
        Ok(Client {
            oauth: None,
            permits: Semaphore::new(cfg.max_concurrency.max(1)),
            authority,
            tls,
            idle: Mutex::new(Vec::new()),
            open: Arc::new(AtomicUsize::new(0)),
            cfg,
        })
    }

    /// Authenticates every request with an OAuth 2.0 token.
    pub fn with_oauth(mut self, o: OAuth2) -> Client {
        self.oauth = Some(o);
        self
    }

    /// Sends `req`, with the retries the module doc describes. `Err` is
    /// [`BackendError::Unavailable`] when no answer came; any answer (of any status) is `Ok`.
    /// With OAuth, a 401 makes the token be fetched again and the request sent once more.
    pub async fn send(&self, req: &Req) -> Result<Reply, BackendError> {
        let Some(o) = &self.oauth else {
            return self.send_plain(req).await;
        };
        let mut r = req.clone();
        r.headers
            .push((http::header::AUTHORIZATION, o.bearer().await?));
        let reply = self.send_plain(&r).await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        o.forget().await;
        let mut r = req.clone();
        r.headers
            .push((http::header::AUTHORIZATION, o.bearer().await?));
        self.send_plain(&r).await
    }

    async fn send_plain(&self, req: &Req) -> Result<Reply, BackendError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| BackendError::Unavailable("the REST client is closed".into()))?;
        let idempotent = matches!(req.method, Method::GET | Method::PUT | Method::DELETE);
        let mut pause = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let last = !idempotent || attempt >= self.cfg.retries;
            let outcome = self.once(req).await;
            let retry_reason = match &outcome {
                Ok(r)
                    if matches!(
                        r.status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    ) =>
                {
                    format!("the app answered {}", r.status)
                }
                Ok(_) => String::new(),
                Err(Failure::NotSent(e)) | Err(Failure::Failed(e)) => e.clone(),
                Err(Failure::Late) => format!("no answer within {:?}", self.cfg.timeout),
            };
            let not_sent = matches!(outcome, Err(Failure::NotSent(_)));
            if retry_reason.is_empty() || (last && !(not_sent && attempt == 0)) {
                return match outcome {
                    Ok(r) => Ok(r),
                    _ => Err(BackendError::Unavailable(format!(
                        "{} {}: {retry_reason}",
                        req.method,
                        self.shown_path(&req.path)
                    ))),
                };
            }
            tracing::debug!(method = %req.method, path = %self.shown_path(&req.path), reason = %retry_reason, attempt, "REST request sent again");
            if !not_sent || attempt > 0 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            attempt += 1;
        }
    }

    /// A `Location` header's target as a path relative to the base URL (an absolute URL's
    /// scheme and authority dropped, and the base URL's own path).
    pub fn relative(&self, location: &str) -> String {
        let path = match location.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => location,
        };
        match path.strip_prefix(self.cfg.prefix.as_str()) {
            Some(p) if !self.cfg.prefix.is_empty() && p.starts_with('/') => p.to_owned(),
            _ => path.to_owned(),
        }
    }

    /// The path without its query (which may hold searched values), for messages.
    fn shown_path<'a>(&self, path: &'a str) -> &'a str {
        path.split('?').next().unwrap_or(path)
    }

    async fn once(&self, req: &Req) -> Result<Reply, Failure> {
        let (mut conn, reused) = self.checkout().await?;
        let mut b = Request::builder()
            .method(req.method.clone())
            .uri(format!("{}{}", self.cfg.prefix, req.path))
            .header(http::header::HOST, self.authority.clone())
            .header(http::header::ACCEPT, "application/json");
        for (k, v) in self.cfg.headers.iter().chain(&req.headers) {
            b = b.header(k, v);
        }
        let body = match (&req.body, &req.form) {
            (Some(j), _) => {
                b = b.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(j).map_err(|e| Failure::NotSent(e.to_string()))?)
            }
            (None, Some(f)) => {
                b = b.header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                );
                Bytes::from(f.clone())
            }
            (None, None) => Bytes::new(),
        };
        let request = b
            .body(Full::new(body))
            .map_err(|e| Failure::NotSent(format!("bad request: {e}")))?;
        let deadline = Instant::now() + self.cfg.timeout;
        let mut sent = pin!(conn.sender.try_send_request(request));
        let answer = poll_fn(|cx| {
            conn.driver.drive(cx);
            match sent.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending if conn.clock.expired(cx, deadline) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        let Some(answer) = answer else {
            return Err(Failure::Late);
        };
        let resp = match answer {
            Ok(r) => r,
            Err(mut e) => {
                let sent = e.take_message().is_none();
                let msg = e.into_error().to_string();
                // A reused connection the app closed while idle fails before sending.
                let _ = reused;
                return Err(if sent {
                    Failure::Failed(msg)
                } else {
                    Failure::NotSent(msg)
                });
            }
        };
        let (parts, body) = resp.into_parts();
        let mut collect = pin!(http_body_util::Limited::new(body, MAX_BODY).collect());
        let body = poll_fn(|cx| {
            // The body first: polling it tells the connection that more is wanted.
            if let Poll::Ready(r) = collect.as_mut().poll(cx) {
                return Poll::Ready(r.map_err(Some));
            }
            conn.driver.drive(cx);
            let r = collect.as_mut().poll(cx);
            if r.is_pending() {
                // The head came without all of the body: the app may be waiting for an
                // acknowledgement before it sends the rest.
                crate::http_client::quick_ack(conn.fd);
                if conn.clock.expired(cx, deadline) {
                    return Poll::Ready(Err(None));
                }
            }
            r.map_err(Some)
        })
        .await
        .map_err(|e| match e {
            Some(e) => Failure::Failed(format!("reading the answer: {e}")),
            None => Failure::Late,
        })?
        .to_bytes();
        // A connection opened off the shards is not kept once a shard has used it.
        let homeless = conn.home.is_none() && crate::backend::home_thread().is_some();
        if !conn.driver.ended() && !conn.sender.is_closed() && !homeless {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < self.cfg.max_concurrency {
                idle.push(conn);
            }
        }
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A ready idle connection (`true`), or a new one, in the order the module doc gives.
    async fn checkout(&self) -> Result<(Conn, bool), Failure> {
        let home = crate::backend::home_thread();
        loop {
            let next = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let mine = match home {
                    Some(h) => idle.iter().rposition(|c| c.home == Some(h)),
                    None => idle.len().checked_sub(1),
                };
                let full = self.open.load(Ordering::Relaxed) >= self.cfg.max_concurrency.max(1);
                mine.or_else(|| full.then(|| idle.len().checked_sub(1)).flatten())
                    .map(|i| idle.remove(i))
            };
            let Some(mut c) = next else { break };
            // Alive (what the app sent while it was idle, a close, is read now) and done
            // with its last request.
            let usable = poll_fn(|cx| {
                Poll::Ready(
                    c.driver.drive(cx) && matches!(c.sender.poll_ready(cx), Poll::Ready(Ok(()))),
                )
            })
            .await;
            if usable {
                return Ok((c, true));
            }
        }
        // Counted from now: requests checking out meanwhile see the pool as it will be.
        let open = Open::new(&self.open);
        let connect = async {
            let tcp = TcpStream::connect((self.cfg.host.trim_matches(['[', ']']), self.cfg.port))
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.cfg.host))?;
            let _ = tcp.set_nodelay(true);
            let fd = tcp.as_raw_fd();
            let io: Box<dyn Io> = match &self.tls {
                Some((c, name)) => Box::new(
                    c.connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("TLS with {}: {e}", self.cfg.host))?,
                ),
                None => Box::new(tcp),
            };
            let (sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(io))
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((sender, Driver::new(conn), fd))
        };
        match tokio::time::timeout(self.cfg.connect_timeout, connect).await {
            Ok(Ok((sender, driver, fd))) => Ok((
                Conn {
                    sender,
                    driver,
                    fd,
                    home,
                    clock: AnswerClock::default(),
                    _open: open,
                },
                false,
            )),
            Ok(Err(e)) => Err(Failure::NotSent(e)),
            Err(_) => Err(Failure::NotSent(format!(
                "connecting to {} timed out after {:?}",
                self.cfg.host, self.cfg.connect_timeout
            ))),
        }
    }
}

/// What a non-2xx answer means, for the one mapping in [`status_error`].
#[derive(Clone, Debug, Default)]
pub struct StatusRules {
    /// Text of a 409/422 answer that says a unique value is taken (`has already been taken`).
    pub duplicate: Vec<String>,
}

/// The app's own error text: its `errors` list joined, or `message`/`error`, or the raw
/// body; truncated.
pub fn app_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(j) => {
            let list = |v: &serde_json::Value| -> Option<String> {
                match v {
                    serde_json::Value::Array(a) => Some(
                        a.iter()
                            .map(|e| match e {
                                serde_json::Value::String(s) => s.clone(),
                                other => other
                                    .get("message")
                                    .and_then(|m| m.as_str())
                                    .map_or_else(|| other.to_string(), str::to_owned),
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Object(o) => Some(
                        o.iter()
                            .map(|(k, v)| match v {
                                serde_json::Value::Array(a) => format!(
                                    "{k} {}",
                                    a.iter()
                                        .map(|x| x
                                            .as_str()
                                            .map_or_else(|| x.to_string(), str::to_owned))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                                other => format!(
                                    "{k} {}",
                                    other
                                        .as_str()
                                        .map_or_else(|| other.to_string(), str::to_owned)
                                ),
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                    _ => None,
                }
            };
            ["errors", "message", "error", "detail"]
                .iter()
                .find_map(|k| j.get(*k).and_then(list))
                .unwrap_or_else(|| j.to_string())
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let mut t: String = text.chars().take(MAX_MESSAGE).collect();
    if text.chars().count() > MAX_MESSAGE {
        t.push('…');
    }
    t
}

/// A non-2xx answer as a [`BackendError`] (the module doc's status mapping):
///
/// | app | store error |
/// |---|---|
/// | 404, 410 | `NotFound` |
/// | 409, or 422 whose text holds a `duplicate` pattern | `Conflict` (409 uniqueness) |
/// | 412 (stale `If-Match`) | `Unavailable`: the identity provider retries, re-reading |
/// | other 400, 409, 422 | `Rejected` with the app's own message (400 invalidValue) |
/// | 401, 403 | `Unavailable`, and a log line naming the credentials |
/// | 429, 5xx | `Unavailable` |
/// | anything else | `Internal` |
pub fn status_error(what: &str, reply: &Reply, rules: &StatusRules) -> BackendError {
    let s = reply.status.as_u16();
    let message = app_message(&reply.body);
    match s {
        404 | 410 => BackendError::NotFound,
        409 | 422 if s == 409 || rules.duplicate.iter().any(|d| message.contains(d.as_str())) => {
            BackendError::Conflict {
                field: None,
                detail: message,
            }
        }
        412 => BackendError::Unavailable(format!(
            "{what}: the application changed the resource meanwhile (412); read it again"
        )),
        400 | 422 => BackendError::Rejected {
            field: None,
            detail: if message.is_empty() {
                format!("the application refused the {what} ({s})")
            } else {
                message
            },
        },
        401 | 403 => {
            tracing::error!(status = s, request = %what, "the application refused the sidecar's credentials: check the backend's headers, basic or oauth2 settings");
            BackendError::Unavailable(format!(
                "{what}: the application refused the sidecar's credentials ({s})"
            ))
        }
        429 | 500..=599 => {
            BackendError::Unavailable(format!("{what}: the application answered {s}"))
        }
        _ => BackendError::Internal(format!("{what}: unexpected answer {s}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).expect("status"),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
        }
    }

    /// Every status class maps to the store error the SCIM layer turns into the right answer.
    #[test]
    fn statuses_map_once() {
        let rules = StatusRules {
            duplicate: vec!["has already been taken".into()],
        };
        let e = |s: u16, b: &str| status_error("create", &reply(s, b), &rules);
        assert!(matches!(e(404, ""), BackendError::NotFound));
        assert!(matches!(
            e(422, r#"{"errors":["Login has already been taken"]}"#),
            BackendError::Conflict { .. }
        ));
        assert!(matches!(e(409, "{}"), BackendError::Conflict { .. }));
        match e(
            422,
            r#"{"errors":["Firstname cannot be blank","Email is invalid"]}"#,
        ) {
            BackendError::Rejected { detail, .. } => {
                assert_eq!(detail, "Firstname cannot be blank; Email is invalid")
            }
            other => panic!("{other:?}"),
        }
        match e(400, r#"{"message":"bad"}"#) {
            BackendError::Rejected { detail, .. } => assert_eq!(detail, "bad"),
            other => panic!("{other:?}"),
        }
        match e(400, "plain text") {
            BackendError::Rejected { detail, .. } => assert_eq!(detail, "plain text"),
            other => panic!("{other:?}"),
        }
        for s in [401, 403, 412, 429, 500, 502, 503, 504] {
            assert!(matches!(e(s, ""), BackendError::Unavailable(_)), "{s}");
        }
        assert!(matches!(e(302, ""), BackendError::Internal(_)));
    }

    /// A create's `Location` (absolute or a path, with or without the base URL's own path)
    /// becomes the path to read the new resource at.
    #[test]
    fn locations_are_made_relative_to_the_base_url() {
        let c = Client::new(ClientConfig {
            https: false,
            host: "app".into(),
            port: 8080,
            prefix: "/api".into(),
            tls: None,
            headers: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            max_concurrency: 1,
            retries: 0,
        })
        .expect("client");
        assert_eq!(
            c.relative("http://app:8080/api/users/7.json"),
            "/users/7.json"
        );
        assert_eq!(c.relative("/api/users/7.json"), "/users/7.json");
        assert_eq!(c.relative("/users/7.json"), "/users/7.json");
        assert_eq!(c.relative("/apiary/x"), "/apiary/x");
    }

    #[test]
    fn long_messages_are_truncated() {
        let long = format!(r#"{{"errors":["{}"]}}"#, "x".repeat(1000));
        let m = app_message(long.as_bytes());
        assert_eq!(m.chars().count(), MAX_MESSAGE + 1);
        assert_eq!(
            app_message(br#"{"errors":{"login":["is taken","is short"]}}"#),
            "login is taken, is short"
        );
    }
}
