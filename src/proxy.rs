//! Streaming reverse proxy to the upstream (legacy) application.
//!
//! Responsibility: take one inbound request that is *not* a SCIM request and
//! hand it to the upstream app over a pooled HTTP/1.1 connection, streaming
//! the bodies in both directions without buffering them. Hop-by-hop headers
//! are dropped, `X-Forwarded-*` headers are added, WebSocket upgrades are
//! tunnelled, and upstream failures become `502`/`504` responses.
//!
//! Caller: the router calls [`Proxy::forward`] for every request outside
//! `/scim/v2`. The server that feeds the router must serve connections with
//! `serve_connection_with_upgrades`, or WebSocket upgrades cannot complete.

use std::any::Any;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

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
    /// Maximum time to wait for the upstream's response headers (connect included).
    pub timeout: Duration,
    /// Keep the client's `Host` header instead of using the upstream authority.
    pub preserve_host: bool,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle_timeout: Duration,
    /// Maximum number of idle pooled connections to the upstream.
    pub pool_max_idle_per_host: usize,
}

/// Facts about the inbound client connection that the proxy reports upstream.
#[derive(Clone)]
pub struct ClientInfo {
    /// Remote address of the client's TCP connection.
    pub peer: SocketAddr,
    /// Whether the client connection was TLS-terminated by us.
    pub tls: bool,
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
            peer_ip,
            hold: None,
        }
    }

    /// The same, holding `hold` for as long as the connection or a tunnel from it lives.
    pub fn held_by(self, hold: Arc<dyn Any + Send + Sync>) -> Self {
        ClientInfo {
            hold: Some(hold),
            ..self
        }
    }
}

/// A cheap-to-clone handle on the pooled upstream client.
#[derive(Clone)]
pub struct Proxy {
    client: Client<HttpConnector, Body>,
    scheme: Option<Scheme>,
    authority: Option<Authority>,
    timeout: Duration,
    preserve_host: bool,
    /// `Host` for requests when the client's is not preserved.
    upstream_host: Option<HeaderValue>,
}

/// Headers that describe a single connection and are never forwarded. `HeaderName`s, not
/// strings: a lookup by name is a hash of a known header, not a parse.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

const MSG_UNAVAILABLE: &str = "upstream unavailable";
const MSG_TIMEOUT: &str = "upstream timed out";

impl Proxy {
    /// Builds the pooled upstream client. Never fails: a malformed `url` is
    /// reported (as `502`) on every [`Proxy::forward`] call instead.
    pub fn new(cfg: UpstreamConfig) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Proxy {
            client,
            scheme: cfg.url.scheme().cloned(),
            authority: cfg.url.authority().cloned(),
            timeout: cfg.timeout,
            preserve_host: cfg.preserve_host,
            upstream_host: cfg
                .url
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        }
    }

    /// Forwards one request to the upstream and returns its response with a
    /// streaming body. Never panics; always returns a response (`502` when the
    /// upstream cannot be reached, `504` when its headers do not arrive in time).
    pub async fn forward(&self, mut req: Request<Incoming>, client: &ClientInfo) -> Response<Body> {
        let method = req.method().clone();
        // Path only: the query may carry secrets and must not reach the logs.
        let path = req.uri().path().to_owned();

        let (Some(scheme), Some(authority)) = (self.scheme.clone(), self.authority.clone()) else {
            tracing::warn!(%method, %path, "upstream url has no scheme or authority; check the upstream configuration");
            return error_response(StatusCode::BAD_GATEWAY, MSG_UNAVAILABLE);
        };
        let path_and_query = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let uri = match Uri::builder()
            .scheme(scheme)
            .authority(authority.clone())
            .path_and_query(path_and_query)
            .build()
        {
            Ok(uri) => uri,
            Err(e) => {
                tracing::warn!(%method, %path, error = %e, "cannot build upstream uri");
                return error_response(StatusCode::BAD_REQUEST, "bad request uri");
            }
        };

        let websocket = is_websocket_upgrade(&req);
        // Must be taken before the request is consumed: it is how we later get
        // hold of the client's raw connection once we have answered 101.
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        let original_host = original_host(&parts.version, &parts.uri, &parts.headers);
        let upgrade_value = parts.headers.get(header::UPGRADE).cloned();

        strip_hop_by_hop(&mut parts.headers);
        if websocket {
            parts
                .headers
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Some(v) = upgrade_value {
                parts.headers.insert(header::UPGRADE, v);
            }
        }
        add_forwarded_headers(&mut parts.headers, client, original_host.as_ref());

        let host = match (self.preserve_host, original_host) {
            (true, Some(h)) => Some(h),
            _ => self.upstream_host.clone(),
        };
        if let Some(host) = host {
            parts.headers.insert(header::HOST, host);
        }

        parts.uri = uri;
        parts.version = Version::HTTP_11;
        parts.extensions = http::Extensions::new();

        let body: Body = body.map_err(|e| Box::new(e) as BoxError).boxed();
        let upstream_req = Request::from_parts(parts, body);

        let result = tokio::time::timeout(self.timeout, self.client.request(upstream_req)).await;
        let mut resp = match result {
            Err(_elapsed) => {
                tracing::warn!(%method, %path, timeout_ms = self.timeout.as_millis() as u64,
                    "upstream did not send response headers in time");
                return error_response(StatusCode::GATEWAY_TIMEOUT, MSG_TIMEOUT);
            }
            Ok(Err(e)) => {
                let what = if e.is_connect() {
                    "cannot connect to upstream"
                } else {
                    "upstream request failed"
                };
                tracing::warn!(%method, %path, error = %error_chain(&e), "{what}");
                return error_response(StatusCode::BAD_GATEWAY, MSG_UNAVAILABLE);
            }
            Ok(Ok(resp)) => resp,
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                tracing::warn!(%method, %path, "upstream answered 101 to a request that asked for no upgrade");
                return error_response(StatusCode::BAD_GATEWAY, MSG_UNAVAILABLE);
            };
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
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
                path,
                client.hold.clone(),
            ));
            let mut out = Response::new(empty());
            *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            *out.headers_mut() = headers;
            return out;
        }

        strip_hop_by_hop(resp.headers_mut());
        let (parts, body) = resp.into_parts();
        let mut out = Response::new(body.map_err(|e| Box::new(e) as BoxError).boxed());
        *out.status_mut() = parts.status;
        *out.headers_mut() = parts.headers;
        out
    }
}

/// Builds a [`Body`] holding `bytes` in full; for small fixed bodies.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> Body {
    full(Bytes::new())
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

/// Removes the fixed hop-by-hop headers and every header the `Connection`
/// header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
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
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

fn add_forwarded_headers(headers: &mut HeaderMap, client: &ClientInfo, host: Option<&HeaderValue>) {
    let xff = if headers.contains_key(&X_FORWARDED_FOR) {
        // Append to the chain the client sent (several headers fold into one).
        let mut chain: Vec<u8> = Vec::new();
        for v in headers.get_all(&X_FORWARDED_FOR) {
            chain.extend_from_slice(v.as_bytes());
            chain.extend_from_slice(b", ");
        }
        chain.extend_from_slice(client.peer_ip.as_bytes());
        // The inputs were valid header values, so this cannot fail; if it did, the peer alone
        // is forwarded rather than a bogus chain.
        HeaderValue::from_bytes(&chain).unwrap_or_else(|_| client.peer_ip.clone())
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
    fn error_chain_joins_sources() {
        let io = std::io::Error::other("inner");
        assert_eq!(error_chain(&io), "inner");
    }
}
