//! Test support: a tiny real HTTP server ("the legacy app") and a generic
//! loopback server harness, both built on hyper-util's auto builder with
//! `serve_connection_with_upgrades` and graceful shutdown on drop.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use scim_sidecar::proxy::{Body, BoxError, full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Size of each chunk produced by [`ByteStream`].
pub const CHUNK: usize = 64 * 1024;

/// A loopback HTTP server that stops (gracefully) when dropped.
pub struct Server {
    /// Where it listens (127.0.0.1, ephemeral port).
    pub addr: SocketAddr,
    /// Number of TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Server {
    /// Binds 127.0.0.1:0 *before* spawning the accept loop, so the server is
    /// ready as soon as this returns. `handler` gets each request and the peer.
    pub async fn start<H, F>(handler: H) -> Server
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local_addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = oneshot::channel::<()>();
        let counter = connections.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let graceful = GracefulShutdown::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        counter.fetch_add(1, Ordering::SeqCst);
                        let handler = handler.clone();
                        let service = service_fn(move |req| {
                            let fut = handler(req, peer);
                            async move { Ok::<_, Infallible>(fut.await) }
                        });
                        let conn = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    _ = &mut rx => break,
                }
            }
            drop(listener);
            let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
        });
        Server {
            addr,
            connections,
            shutdown: Some(tx),
        }
    }

    /// `http://127.0.0.1:port` as a URI.
    pub fn uri(&self) -> http::Uri {
        format!("http://{}", self.addr).parse().expect("uri")
    }

    /// Accepted connection count.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The legacy app: see [`handle`] for its routes.
pub struct Upstream {
    server: Server,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Upstream {
    /// Starts the legacy app on 127.0.0.1:0.
    pub async fn start() -> Upstream {
        let server = Server::start(|req, _peer| handle(req)).await;
        Upstream {
            addr: server.addr,
            server,
        }
    }

    /// `http://127.0.0.1:port`.
    pub fn uri(&self) -> http::Uri {
        self.server.uri()
    }

    /// TCP connections the app has accepted so far.
    pub fn connection_count(&self) -> usize {
        self.server.connection_count()
    }
}

/// Routes of the legacy app.
pub async fn handle(req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    match (method.as_str(), segments.as_slice()) {
        // `/SCIM/...` (a near miss of the sidecar's `/scim/v2`) echoes too, so tests can see
        // what such a request carries.
        ("GET", ["echo" | "SCIM", ..]) => echo(&req, None),
        (_, ["echo", ..]) => {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return status(StatusCode::BAD_REQUEST, "body error"),
            };
            echo(&Request::from_parts(parts, ()), Some(&body))
        }
        ("POST", ["stall"]) => {
            // Takes the headers, never reads the body, answers late.
            tokio::time::sleep(Duration::from_secs(60)).await;
            status(StatusCode::OK, "stalled")
        }
        ("GET", ["gzip-te"]) => {
            // A transfer coding besides chunked (RFC 9112 §7): hyper keeps a user-set
            // `Transfer-Encoding` that ends in chunked and frames the body with it.
            let mut resp = status(StatusCode::OK, "gzip-coded bytes");
            resp.headers_mut().insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("gzip, chunked"),
            );
            resp
        }
        ("GET", ["bytes", n]) => match n.parse::<u64>() {
            Ok(n) => {
                let mut resp = Response::new(ByteStream::new(n).boxed());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                resp
            }
            Err(_) => status(StatusCode::BAD_REQUEST, "bad n"),
        },
        ("GET", ["stream", n]) => match n.parse::<u64>() {
            Ok(n) => Response::new(ByteStream::untold(n).boxed()),
            Err(_) => status(StatusCode::BAD_REQUEST, "bad n"),
        },
        ("POST", ["upload"]) => {
            let mut body = req.into_body();
            let mut total: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => {
                        if let Some(d) = f.data_ref() {
                            total += d.len() as u64;
                        }
                    }
                    Err(_) => return status(StatusCode::BAD_REQUEST, "body error"),
                }
            }
            status(StatusCode::OK, total.to_string())
        }
        ("GET", ["slow"]) => {
            let ms = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            status(StatusCode::OK, "slow done")
        }
        ("GET", ["ws"]) => websocket(req),
        ("GET", ["status", code]) => match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(code) => {
                let mut resp = status(code, format!("status {}", code.as_u16()));
                let h = resp.headers_mut();
                h.insert("x-custom", HeaderValue::from_static("abc"));
                h.append("set-cookie", HeaderValue::from_static("a=1; Path=/"));
                h.append("set-cookie", HeaderValue::from_static("b=2; Path=/"));
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                // Hop-by-hop response headers the proxy must drop.
                h.insert(header::CONNECTION, HeaderValue::from_static("x-drop"));
                h.insert("x-drop", HeaderValue::from_static("1"));
                h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
                resp
            }
            None => status(StatusCode::BAD_REQUEST, "bad code"),
        },
        _ => status(StatusCode::NOT_FOUND, "not found"),
    }
}

fn status(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn echo<B>(req: &Request<B>, body_bytes: Option<&Bytes>) -> Response<Body> {
    let mut headers = serde_json::Map::new();
    for name in req.headers().keys() {
        let values: Vec<String> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(
            name.as_str().to_owned(),
            serde_json::Value::String(values.join(", ")),
        );
    }
    let mut body = serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    if let Some(b) = body_bytes {
        body["body"] = serde_json::Value::String(String::from_utf8_lossy(b).into_owned());
    }
    let mut resp = status(StatusCode::OK, body.to_string());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return status(StatusCode::BAD_REQUEST, "missing sec-websocket-key");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&websocket_accept(key.as_bytes())).expect("base64 is a valid header"),
    );
    resp
}

/// `base64(SHA-1(key + GUID))` as RFC 6455 section 4.2.2 defines it.
pub fn websocket_accept(key: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64(ctx.finish().as_ref())
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(ALPHABET[(n >> 18) as usize & 63] as char);
        out.push(ALPHABET[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            ALPHABET[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            ALPHABET[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// A body of `n` bytes produced in [`CHUNK`]-sized slices of one shared buffer,
/// so it never allocates `n`.
pub struct ByteStream {
    remaining: u64,
    chunk: Bytes,
    /// Whether its length is told (as `Content-Length`), or left to the framing (`chunked`).
    told: bool,
}

impl ByteStream {
    /// A stream of `n` bytes (value `b'x'`).
    pub fn new(n: u64) -> ByteStream {
        ByteStream {
            remaining: n,
            chunk: Bytes::from(vec![b'x'; CHUNK]),
            told: true,
        }
    }

    /// The same, of a length it does not tell: sent `chunked`.
    pub fn untold(n: u64) -> ByteStream {
        ByteStream {
            told: false,
            ..ByteStream::new(n)
        }
    }

    /// As a boxed [`Body`].
    pub fn boxed(self) -> Body {
        http_body_util::BodyExt::boxed(self)
    }
}

impl hyper::body::Body for ByteStream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(CHUNK as u64) as usize;
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..len)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.told {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}
