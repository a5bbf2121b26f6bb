//! The fast path for pass-through: plain HTTP/1.1 requests for the app, relayed without
//! hyper. Called by `server::serve` for every plain-TCP connection of the main listener.
//!
//! A request that is plainly HTTP/1.1, outside the SCIM base path and the token endpoint,
//! with a `Content-Length` body or none, is read with httparse and relayed on a raw pooled
//! connection to the app (`crate::proxy::RawConn`), rewritten as [`crate::proxy`] rewrites
//! it: hop-by-hop headers dropped (RFC 9110 §7.6.1), `X-Forwarded-For` (appended to the
//! client's chain), `-Proto` and `-Host` set, this proxy appended to `Via`, the request's
//! `X-Request-Id` sent to the app and returned to the client, and an `Authorization` that
//! carries one of the sidecar's own SCIM credentials removed. The app's response is relayed
//! as it arrives (`Content-Length`, `chunked` — checked chunk by chunk — or up to the close),
//! with its hop-by-hop headers dropped and a `Date` added where it has none.
//!
//! The first request the fast path does not relay itself goes to hyper, with the bytes
//! already read, and hyper serves the connection from there on: SCIM, the token endpoint,
//! anything HTTP/2, chunked or `Expect`ed request bodies, upgrades, several `Host`,
//! `Content-Length`, `Authorization` or `X-Request-Id` headers, a `Connection` header naming
//! other headers, a `Via` that names this proxy (a loop, answered 508 there), heads over 16
//! KiB or with more than 64 headers, and anything httparse refuses (hyper answers 400).
//! Deadlines, the connection cap and graceful shutdown are [`super::conn::drive`]'s, as for
//! hyper's connections.
//!
//! # Phases of one request
//!
//! 1. **Head.** Read until complete; which path serves it is decided here.
//! 2. **Connection.** An idle raw connection or a new one (502 when connecting fails, 503
//!    with `Retry-After` when every allowed connection stays busy for `timeout`).
//! 3. **Request body.** Sent with the head when it has arrived with it, else streamed; a
//!    client that pauses longer than `body_idle_timeout` gets 408, one that garbles or
//!    abandons it 400, and the connection closes. The app's clock does not run meanwhile.
//! 4. **Response head.** The app has `timeout` to answer (504 otherwise; 502 when the
//!    connection fails). A reused connection that the app had closed before the request
//!    reached it is retried on a new one: always when the write failed, and for idempotent
//!    methods when the connection ended without a byte of answer.
//! 5. **Response body.** Relayed; the connection goes back to the pool when the response
//!    has been read to its end and neither side asked to close.
//!
//! Why: for a small request hyper's server and client (header maps, body channels, the
//! client's dispatch task hand-off) cost more CPU than the kernel's part of the relay. On
//! the 2-core VM of issue 14's benchmark the sidecar's pass-through cost 11 µs of CPU per
//! request against nginx's 9; relayed this way it is about 7.

use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::conn::{self, Activity, Deadlines, Stage};
use super::router::{below_base_path, fresh_request_id, is_request_id};
use crate::app::{App, Current};
use crate::http_client::AnswerClock;
use crate::proxy::{self, Checkout, ClientInfo, Proxy, RawConn};

/// A request head larger than this goes to hyper (which allows more).
const MAX_HEAD: usize = 16 * 1024;
/// Request headers the fast path reads; more go to hyper.
const MAX_HEADERS: usize = 64;
/// The app's response head may be this large (as hyper's client allows about as much).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Response headers read from the app (hyper's client default).
const MAX_RESPONSE_HEADERS: usize = 100;
/// Room made for reading from the client (hyper's first buffer is as large) and from the
/// app, when what is left is under 1 KiB.
const CLIENT_READ: usize = 8 * 1024;
const APP_READ: usize = 16 * 1024;
/// Attempts at one request when reused connections turn out closed by the app.
const ATTEMPTS: usize = 3;

/// A connection handed to hyper: the socket, and the bytes already read from it.
pub struct Prefixed {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serves `tcp` for as long as its requests are the fast path's; `Some` when a request
/// needs hyper, which then serves the rest of the connection.
pub async fn serve(
    tcp: TcpStream,
    current: &Current,
    client: &ClientInfo,
    activity: &Arc<Activity>,
    deadlines: &Deadlines,
    stop: &mut watch::Receiver<bool>,
) -> Option<Prefixed> {
    let stopping = AtomicBool::new(false);
    let relaying = relay(tcp, current, client, activity, &stopping);
    let ended = conn::drive(
        relaying,
        |_| stopping.store(true, Ordering::Relaxed),
        activity,
        deadlines,
        Instant::now(),
        stop,
    )
    .await;
    match ended {
        Some(Ok(handoff)) => handoff,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "connection ended with an error");
            None
        }
        None => None,
    }
}

/// The connection's requests, one after the other, until one needs hyper (`Ok(Some)`), the
/// connection ends or closes, or `stopping` (a deadline, or shutdown) is set while it waits
/// for a request.
async fn relay(
    mut tcp: TcpStream,
    current: &Current,
    client: &ClientInfo,
    activity: &Arc<Activity>,
    stopping: &AtomicBool,
) -> io::Result<Option<Prefixed>> {
    // Allocated when first needed: a connection that sends nothing holds no buffer.
    let mut bufs = Buffers {
        out: Vec::new(),
        rbuf: BytesMut::new(),
        back: Vec::new(),
        clock: AnswerClock::default(),
    };
    let mut buf = BytesMut::new();
    loop {
        // 1. Head.
        let (app, head) = loop {
            if !buf.is_empty() {
                let app = current.load();
                match plan(&buf, &app, client, &mut bufs.out) {
                    Plan::Relay(head) => break (app, head),
                    Plan::Incomplete if buf.len() < MAX_HEAD => {}
                    Plan::Incomplete | Plan::Hyper => {
                        return Ok(Some(Prefixed {
                            prefix: buf.freeze(),
                            io: tcp,
                        }));
                    }
                }
            }
            if !read_more(&mut tcp, &mut buf, Some(stopping)).await? {
                return Ok(None);
            }
        };
        let _request = activity.begin();
        let Some(proxy) = app.proxy.as_ref() else {
            return Ok(None);
        };
        buf.advance(head.len);
        let keep = exchange(&mut tcp, &mut buf, &mut bufs, &app, proxy, &head, stopping).await?;
        if !keep || head.close || stopping.load(Ordering::Relaxed) {
            let _ = tcp.shutdown().await;
            return Ok(None);
        }
    }
}

/// Reads more of the client's bytes into `buf`; `false` at its end, or when `stopping` is
/// set (checked whenever the read would wait).
async fn read_more(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    stopping: Option<&AtomicBool>,
) -> io::Result<bool> {
    if buf.capacity() == 0 {
        // Nothing allocated until the client sends something.
        let mut ready = pin!(tcp.readable());
        let woke = poll_fn(|cx| {
            if stopping.is_some_and(|s| s.load(Ordering::Relaxed)) {
                return Poll::Ready(Ok(false));
            }
            ready.as_mut().poll(cx).map_ok(|()| true)
        })
        .await?;
        if !woke {
            return Ok(false);
        }
    }
    Ok(read_into(tcp, buf, CLIENT_READ, stopping).await? > 0)
}

/// Reads what has arrived into `buf`: 0 at the connection's end, or when `stopping` is set
/// while it waits. Through `AsyncRead` rather than `try_read`: tokio then knows that a
/// short read emptied the socket and waits for the next event instead of asking the kernel
/// again (one `recv` fewer per read).
async fn read_into(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    size: usize,
    stopping: Option<&AtomicBool>,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(size);
    }
    let mut read = pin!(tcp.read_buf(buf));
    poll_fn(|cx| {
        if stopping.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Poll::Ready(Ok(0));
        }
        read.as_mut().poll(cx)
    })
    .await
}

/// [`read_into`] on the app's connection when part of its answer has come and the rest is
/// due: if nothing more is there yet, what came is acknowledged first
/// ([`crate::http_client::quick_ack`]).
async fn read_rest(tcp: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let fd = tcp.as_raw_fd();
    let mut read = pin!(read_into(tcp, buf, APP_READ, None));
    let mut acked = false;
    poll_fn(|cx| {
        let r = read.as_mut().poll(cx);
        if r.is_pending() && !acked {
            acked = true;
            crate::http_client::quick_ack(fd);
        }
        r
    })
    .await
}

// === phase 1: the request head ===

/// What a connection keeps from one request to the next, so as not to allocate it again.
struct Buffers {
    /// The request as sent to the app (kept for a retry).
    out: Vec<u8>,
    /// The app's bytes.
    rbuf: BytesMut,
    /// The response head as sent to the client.
    back: Vec<u8>,
    clock: AnswerClock,
}

/// What to do with the bytes read so far.
enum Plan {
    /// Relay the request whose head is in `out`.
    Relay(Head),
    /// The head has not fully arrived.
    Incomplete,
    /// hyper serves it (module doc).
    Hyper,
}

/// A request head the fast path relays.
struct Head {
    /// Its length in the client's bytes.
    len: usize,
    /// `Content-Length`.
    body: u64,
    /// The client asked to close after it.
    close: bool,
    /// `HEAD`: the response has no body.
    head: bool,
    /// An idempotent method (RFC 9110 §9.2.2): it may be sent again.
    idempotent: bool,
    /// Where the request's id is in `out`.
    id: std::ops::Range<usize>,
}

/// Reads the request head at the start of `buf` and, when the fast path relays it, writes
/// the head the app gets into `out`.
fn plan(buf: &[u8], app: &App, client: &ClientInfo, out: &mut Vec<u8>) -> Plan {
    let Some(proxy) = app.proxy.as_ref().filter(|p| p.usable()) else {
        return Plan::Hyper;
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Plan::Incomplete,
        Err(_) => return Plan::Hyper,
    };
    let (Some(method), Some(target), Some(1)) = (req.method, req.path, req.version) else {
        return Plan::Hyper;
    };
    // Origin-form only (RFC 9112 §3.2.1); the rest (and SCIM, and the token endpoint) is
    // hyper's.
    if !target.starts_with('/') {
        return Plan::Hyper;
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let scim = below_base_path(app, path).is_some();
    if scim || app.oauth.as_ref().is_some_and(|o| o.path == path) {
        return Plan::Hyper;
    }

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    let mut close = false;
    let mut authorization = false;
    let mut id: Option<&[u8]> = None;
    let (via_name, via_ours) = proxy.via();
    // Indices of the headers whose values are extended.
    let mut xff = [0usize; 8];
    let mut xffs = 0;
    let mut vias = [0usize; 8];
    let mut viass = 0;
    for (i, h) in req.headers.iter().enumerate() {
        let (name, value) = (h.name, h.value);
        match classify(name) {
            Class::Host => {
                if host.replace(value).is_some() {
                    return Plan::Hyper;
                }
            }
            Class::ContentLength => {
                if length.is_some() {
                    return Plan::Hyper;
                }
                match parse_length(value) {
                    Some(n) => length = Some(n),
                    None => return Plan::Hyper,
                }
            }
            Class::Hyper => return Plan::Hyper,
            Class::Connection => {
                for token in value.split(|b| *b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                        // Names a header to drop: hyper's path does that.
                        return Plan::Hyper;
                    }
                }
            }
            Class::HopByHop | Class::Forwarded => {}
            Class::ForwardedFor => {
                if xffs == xff.len() {
                    return Plan::Hyper;
                }
                xff[xffs] = i;
                xffs += 1;
            }
            Class::Via => {
                if proxy::names(value, via_name) || viass == vias.len() {
                    return Plan::Hyper;
                }
                vias[viass] = i;
                viass += 1;
            }
            Class::Authorization => {
                if authorization {
                    return Plan::Hyper;
                }
                authorization = true;
                if !app.auth.is_scim_credential(value) {
                    push_header(out, name.as_bytes(), value);
                }
            }
            Class::RequestId => {
                if id.is_some() {
                    return Plan::Hyper;
                }
                id = Some(value);
            }
            Class::Other => push_header(out, name.as_bytes(), value),
        }
    }
    let Some(original) = host else {
        return Plan::Hyper;
    };
    push_header(out, b"host", proxy.host_for(original));
    out.extend_from_slice(b"x-forwarded-for: ");
    for &i in &xff[..xffs] {
        out.extend_from_slice(req.headers[i].value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client.peer_ip.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
    push_header(out, b"x-forwarded-host", original);
    out.extend_from_slice(b"via: ");
    for &i in &vias[..viass] {
        out.extend_from_slice(req.headers[i].value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(via_ours);
    out.extend_from_slice(b"\r\nx-request-id: ");
    let at = out.len();
    match id.filter(|v| is_request_id(v)) {
        Some(v) => out.extend_from_slice(v),
        None => {
            let (fresh, n) = fresh_request_id();
            out.extend_from_slice(&fresh[..n]);
        }
    }
    let id = at..out.len();
    out.extend_from_slice(b"\r\n");
    if let Some(n) = length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Plan::Relay(Head {
        len,
        body: length.unwrap_or(0),
        close,
        head: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        ),
        id,
    })
}

/// What a request header is to the fast path.
enum Class {
    Host,
    ContentLength,
    Connection,
    /// Dropped (RFC 9110 §7.6.1).
    HopByHop,
    /// `X-Forwarded-Proto` and `-Host`: replaced by the sidecar's.
    Forwarded,
    ForwardedFor,
    Via,
    Authorization,
    RequestId,
    /// A request hyper serves.
    Hyper,
    Other,
}

fn classify(name: &str) -> Class {
    let is = |n: &str| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 if is("te") => Class::HopByHop,
        3 if is("via") => Class::Via,
        4 if is("host") => Class::Host,
        6 if is("expect") => Class::Hyper,
        7 if is("upgrade") => Class::Hyper,
        7 if is("trailer") => Class::HopByHop,
        10 if is("connection") => Class::Connection,
        10 if is("keep-alive") => Class::HopByHop,
        12 if is("x-request-id") => Class::RequestId,
        13 if is("authorization") => Class::Authorization,
        14 if is("content-length") => Class::ContentLength,
        14 if is("http2-settings") => Class::Hyper,
        15 if is("x-forwarded-for") => Class::ForwardedFor,
        16 if is("proxy-connection") => Class::HopByHop,
        16 if is("x-forwarded-host") => Class::Forwarded,
        17 if is("transfer-encoding") => Class::Hyper,
        17 if is("x-forwarded-proto") => Class::Forwarded,
        18 if is("proxy-authenticate") => Class::HopByHop,
        19 if is("proxy-authorization") => Class::HopByHop,
        _ => Class::Other,
    }
}

/// A `Content-Length` value: decimal digits only (RFC 9110 §8.6), at most 19.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

// === phases 2 to 5: the exchange with the app ===

/// Why an attempt at a request produced no response head.
enum Failure {
    /// The connection failed before the app answered a byte; `written`: whether the whole
    /// request had been written.
    Closed { written: bool },
    /// The client's body stopped arriving, or was cut off.
    Client(ClientFault),
    /// The app took longer than `timeout`.
    Timeout,
    /// The app's answer is no HTTP/1.1 response the fast path can relay.
    Bad(&'static str),
    /// The connection failed after the app had started answering, or while a streamed body
    /// was being sent.
    Broken(io::Error),
}

#[derive(Clone, Copy)]
enum ClientFault {
    BodyTimeout,
    BadBody,
}

/// Relays one request and its response. `Ok(false)` when the client connection must close
/// afterwards; `Err` when it failed in a way only closing it can answer.
async fn exchange(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    bufs: &mut Buffers,
    app: &App,
    proxy: &Proxy,
    head: &Head,
    stopping: &AtomicBool,
) -> io::Result<bool> {
    let Buffers {
        out,
        rbuf,
        back,
        clock,
    } = bufs;
    let started = Instant::now();
    // 3 (first part). The body bytes that came with the head go with it.
    let with_head = usize::try_from(head.body)
        .unwrap_or(usize::MAX)
        .min(buf.len());
    out.extend_from_slice(&buf[..with_head]);
    buf.advance(with_head);
    let streamed = head.body - with_head as u64;
    let out: &[u8] = out;
    let reply = Reply {
        head,
        out,
        now: started,
        stopping,
    };
    let req = Req {
        app,
        started,
        head,
        out,
    };
    let mut attempt = 0;
    let (mut up, parsed) = loop {
        attempt += 1;
        // 2. Connection.
        let mut up = match proxy.checkout_raw(started, started + proxy.timeout()).await {
            Ok(c) => c,
            Err(Checkout::Busy) => {
                tracing::warn!(target: "scim_sidecar::proxy", method = method(out), path = path(out), "every connection to the upstream is in use");
                return answer(tcp, &req, 503, proxy::MSG_BUSY, false).await;
            }
            Err(Checkout::Connect(e)) => {
                tracing::warn!(target: "scim_sidecar::proxy", method = method(out), path = path(out), error = %e, "cannot connect to upstream");
                return answer(tcp, &req, 502, proxy::MSG_UNAVAILABLE, false).await;
            }
        };
        rbuf.clear();
        match send(
            tcp, buf, &mut up, &reply, streamed, proxy, rbuf, clock, back,
        )
        .await
        {
            Ok(parsed) => break (up, parsed),
            Err(Failure::Closed { written })
                if up.reused
                    && streamed == 0
                    && attempt < ATTEMPTS
                    && (!written || head.idempotent) =>
            {
                // The app had closed this idle connection (module doc, phase 4).
            }
            Err(Failure::Client(fault)) => return client_fault(tcp, &req, fault).await,
            Err(Failure::Timeout) => {
                tracing::warn!(target: "scim_sidecar::proxy", method = method(out), path = path(out), timeout_ms = proxy.timeout().as_millis() as u64,
                    "upstream did not send response headers in time");
                return answer(tcp, &req, 504, proxy::MSG_TIMEOUT, false).await;
            }
            Err(Failure::Closed { .. }) => {
                tracing::warn!(target: "scim_sidecar::proxy", method = method(out), path = path(out), "upstream closed the connection before answering");
                return answer(tcp, &req, 502, proxy::MSG_UNAVAILABLE, false).await;
            }
            Err(Failure::Broken(e)) => {
                tracing::warn!(target: "scim_sidecar::proxy", method = method(out), path = path(out), error = %e, "upstream request failed");
                return answer(tcp, &req, 502, proxy::MSG_UNAVAILABLE, false).await;
            }
            Err(Failure::Bad(why)) => {
                tracing::warn!(target: "scim_sidecar::proxy", method = method(out), path = path(out), why, "upstream sent a response that cannot be relayed");
                return answer(tcp, &req, 502, proxy::MSG_UNAVAILABLE, false).await;
            }
        }
    };

    // 5. The response: head (with the body bytes that came with it), then the rest.
    let Response {
        len,
        status,
        framing,
        reusable,
        close,
    } = parsed;
    rbuf.advance(len);
    app.metrics.proxied(status, started.elapsed());
    let mut body = Relay::new(framing);
    let (taken, mut done) = body.feed(rbuf).map_err(io::Error::other)?;
    back.extend_from_slice(&rbuf[..taken]);
    let mut clean = taken == rbuf.len();
    tcp.write_all(back).await?;
    while !done {
        rbuf.clear();
        let n = read_rest(&mut up.tcp, rbuf).await?;
        if n == 0 {
            if matches!(framing, Framing::UntilClose) {
                break;
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the app closed the connection in the middle of a response",
            ));
        }
        let (taken, end) = body.feed(rbuf).map_err(io::Error::other)?;
        clean = taken == rbuf.len();
        done = end;
        tcp.write_all(&rbuf[..taken]).await?;
    }
    if reusable && clean && !matches!(framing, Framing::UntilClose) {
        proxy.put_raw(up, started);
    }
    Ok(!close)
}

/// Phases 3 and 4 on one connection: writes the request (streaming the rest of its body
/// from the client), reads the response head into `rbuf` and writes the client's into
/// `back`.
#[allow(clippy::too_many_arguments)] // the connection's buffers and clock, passed down
async fn send(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    up: &mut RawConn,
    reply: &Reply<'_>,
    mut streamed: u64,
    proxy: &Proxy,
    rbuf: &mut BytesMut,
    timer: &mut AnswerClock,
    back: &mut Vec<u8>,
) -> Result<Response, Failure> {
    let (out, started) = (reply.out, reply.now);
    let timeout = proxy.timeout();
    match write_timed(&mut up.tcp, out, timeout).await {
        Some(Ok(())) => {}
        Some(Err(_)) => return Err(Failure::Closed { written: false }),
        None => return Err(Failure::Timeout),
    }
    while streamed > 0 {
        if buf.is_empty() {
            match tokio::time::timeout(proxy.body_idle(), read_more(tcp, buf, None)).await {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) | Ok(Err(_)) => return Err(Failure::Client(ClientFault::BadBody)),
                Err(_) => return Err(Failure::Client(ClientFault::BodyTimeout)),
            }
        }
        let n = usize::try_from(streamed)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match write_timed(&mut up.tcp, &buf[..n], timeout).await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Failure::Broken(e)),
            None => return Err(Failure::Timeout),
        }
        buf.advance(n);
        streamed -= n as u64;
    }
    let head = async {
        loop {
            if !rbuf.is_empty() {
                match parse_response(rbuf, reply, back)? {
                    Parsed::Final(r) => return Ok(r),
                    Parsed::Informational(n) => {
                        // 1xx before the answer (RFC 9110 §15.2): not relayed, as hyper's
                        // client does not relay them either.
                        rbuf.advance(n);
                        continue;
                    }
                    Parsed::Partial if rbuf.len() < MAX_RESPONSE_HEAD => {}
                    Parsed::Partial => return Err(Failure::Bad("response head too large")),
                }
            }
            let read = if rbuf.is_empty() {
                read_into(&mut up.tcp, rbuf, APP_READ, None).await
            } else {
                read_rest(&mut up.tcp, rbuf).await
            };
            match read {
                Ok(0) if rbuf.is_empty() => return Err(Failure::Closed { written: true }),
                Ok(0) => {
                    return Err(Failure::Bad(
                        "the connection ended inside the response head",
                    ));
                }
                Ok(_) => {}
                Err(_) if rbuf.is_empty() => return Err(Failure::Closed { written: true }),
                Err(e) => return Err(Failure::Broken(e)),
            }
        }
    };
    let mut head = pin!(head);
    let deadline = started + timeout;
    poll_fn(|cx| {
        if let Poll::Ready(r) = head.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if timer.expired(cx, deadline) {
            return Poll::Ready(Err(Failure::Timeout));
        }
        Poll::Pending
    })
    .await
}

/// Writes all of `data`; `None` when the socket stays full for `timeout`. Nearly every
/// write completes at once, and then no timer is set.
async fn write_timed(
    tcp: &mut TcpStream,
    data: &[u8],
    timeout: Duration,
) -> Option<io::Result<()>> {
    let mut write = pin!(tcp.write_all(data));
    if let Poll::Ready(r) = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        return Some(r);
    }
    tokio::time::timeout(timeout, write).await.ok()
}

/// How the app's response body ends (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// No body: a response to `HEAD`, a 204 or a 304.
    None,
    Length(u64),
    Chunked,
    /// Everything until the app closes the connection.
    UntilClose,
}

/// The app's response head, read.
struct Response {
    /// Its length.
    len: usize,
    status: u16,
    /// How its body ends (none for a response to `HEAD`).
    framing: Framing,
    /// HTTP/1.1 without `Connection: close`: the connection may carry another request.
    reusable: bool,
    /// The client connection closes after it.
    close: bool,
}

enum Parsed {
    Final(Response),
    /// A 1xx response of this many bytes.
    Informational(usize),
    Partial,
}

/// What the client's response head takes from the request.
struct Reply<'a> {
    head: &'a Head,
    /// The request as sent to the app (its id).
    out: &'a [u8],
    /// When the request started (the `Date` added).
    now: Instant,
    /// Set when shutdown or a deadline asked the connection to close.
    stopping: &'a AtomicBool,
}

/// Reads the app's response head at the start of `rbuf` and, when it is the final one,
/// writes the client's into `back`: the app's, without its hop-by-hop headers, with the
/// request's id and a `Date` when it has none, and `Connection: close` when the client
/// connection closes after it.
fn parse_response(rbuf: &[u8], reply: &Reply<'_>, back: &mut Vec<u8>) -> Result<Parsed, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut headers);
    let len = match res.parse(rbuf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(_) => return Err(Failure::Bad("malformed response head")),
    };
    let status = res.code.unwrap_or(0);
    if status == 101 {
        return Err(Failure::Bad("101 to a request that asked for no upgrade"));
    }
    if (100..200).contains(&status) {
        return Ok(Parsed::Informational(len));
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut upstream_close = res.version != Some(1);
    for h in res.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(h.value).ok_or(Failure::Bad("invalid Content-Length"))?;
            if length.is_some_and(|m| m != n) {
                return Err(Failure::Bad("conflicting Content-Length"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides (RFC 9112 §6.3): `chunked` frames the body.
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            upstream_close |= h
                .value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    // RFC 9112 §6.3: a response to HEAD, a 204 and a 304 have no body, whatever their
    // headers say.
    let framing = if reply.head.head || status == 204 || status == 304 {
        Framing::None
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::UntilClose,
        }
    };
    // Shutdown, or a deadline, asked the connection to close: say so (as hyper's graceful
    // shutdown does).
    let close = reply.head.close
        || framing == Framing::UntilClose
        || reply.stopping.load(Ordering::Relaxed);

    back.clear();
    back.extend_from_slice(b"HTTP/1.1 ");
    back.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    back.push(b' ');
    back.extend_from_slice(res.reason.unwrap_or("").as_bytes());
    back.extend_from_slice(b"\r\n");
    let (mut id, mut date) = (false, false);
    let connection = res
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("connection"));
    for h in res.headers.iter() {
        let name = h.name;
        // Kept: the body is relayed with its transfer coding.
        let coding = name.eq_ignore_ascii_case("transfer-encoding");
        let hop = (proxy::is_hop_by_hop(name) && !coding)
            // Headers the app's `Connection` names are hop-by-hop too.
            || connection && res.headers.iter().any(|c| {
                c.name.eq_ignore_ascii_case("connection")
                    && c.value
                        .split(|b| *b == b',')
                        .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
            })
            // A message with a transfer coding has no Content-Length (RFC 9112 §6.2).
            || (chunked.is_some() && name.eq_ignore_ascii_case("content-length"));
        if hop {
            continue;
        }
        id |= name.eq_ignore_ascii_case("x-request-id");
        date |= name.eq_ignore_ascii_case("date");
        push_header(back, name.as_bytes(), h.value);
    }
    if !id {
        push_header(back, b"x-request-id", &reply.out[reply.head.id.clone()]);
    }
    if !date {
        back.extend_from_slice(b"date: ");
        push_date(back, reply.now);
        back.extend_from_slice(b"\r\n");
    }
    if close {
        back.extend_from_slice(b"connection: close\r\n");
    }
    back.extend_from_slice(b"\r\n");
    Ok(Parsed::Final(Response {
        len,
        status,
        framing,
        reusable: !upstream_close,
        close,
    }))
}

/// The request being relayed, for the sidecar's own answers.
struct Req<'a> {
    app: &'a App,
    started: Instant,
    head: &'a Head,
    /// The request as sent to the app.
    out: &'a [u8],
}

/// An answer of the sidecar's own (an error), with the request's id; `Ok(false)`: the
/// connection closes after it.
async fn answer(
    tcp: &mut TcpStream,
    req: &Req<'_>,
    status: u16,
    msg: &str,
    close: bool,
) -> io::Result<bool> {
    req.app.metrics.proxied(status, req.started.elapsed());
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut a = Vec::with_capacity(256);
    a.extend_from_slice(b"HTTP/1.1 ");
    a.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    a.push(b' ');
    a.extend_from_slice(reason.as_bytes());
    a.extend_from_slice(b"\r\ncontent-type: text/plain\r\ncontent-length: ");
    a.extend_from_slice(itoa::Buffer::new().format(msg.len()).as_bytes());
    a.extend_from_slice(b"\r\n");
    if status == 503 {
        a.extend_from_slice(b"retry-after: 1\r\n");
    }
    push_header(&mut a, b"x-request-id", &req.out[req.head.id.clone()]);
    a.extend_from_slice(b"date: ");
    push_date(&mut a, req.started);
    a.extend_from_slice(b"\r\n");
    let close = close || req.head.close;
    if close {
        a.extend_from_slice(b"connection: close\r\n");
    }
    a.extend_from_slice(b"\r\n");
    if !req.head.head {
        a.extend_from_slice(msg.as_bytes());
    }
    tcp.write_all(&a).await?;
    Ok(!close)
}

/// The answer to a request whose client failed to send its body (module doc, phase 3):
/// what is left of it cannot be told from a next request, so the connection closes.
async fn client_fault(tcp: &mut TcpStream, req: &Req<'_>, fault: ClientFault) -> io::Result<bool> {
    let out = req.out;
    let (status, msg) = match fault {
        ClientFault::BodyTimeout => {
            tracing::info!(target: "scim_sidecar::proxy", method = method(out), path = path(out), "client stopped sending its request body; request aborted");
            req.app
                .metrics
                .connection_timeout("main", Stage::RequestBody.as_str());
            (408, proxy::MSG_BODY_TIMEOUT)
        }
        ClientFault::BadBody => {
            tracing::info!(target: "scim_sidecar::proxy", method = method(out), path = path(out), "request body could not be read; request aborted");
            (400, proxy::MSG_BAD_BODY)
        }
    };
    answer(tcp, req, status, msg, true).await?;
    Ok(false)
}

/// The method of the request in `out`, for log lines.
fn method(out: &[u8]) -> &str {
    let end = out.iter().position(|b| *b == b' ').unwrap_or(0);
    std::str::from_utf8(&out[..end]).unwrap_or("-")
}

/// The path of the request in `out` (without the query, which may carry secrets).
fn path(out: &[u8]) -> &str {
    let start = out.iter().position(|b| *b == b' ').map_or(0, |i| i + 1);
    let rest = &out[start..];
    let end = rest
        .iter()
        .position(|b| matches!(b, b' ' | b'?' | b'#'))
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).unwrap_or("-")
}

// === the response body ===

/// Finds the end of a response body in the bytes relayed, checking a chunked body's framing
/// as it goes (the bytes are relayed as they are).
struct Relay {
    framing: Framing,
    /// Bytes left of a `Content-Length` body, or of the current chunk's data.
    left: u64,
    chunk: Chunk,
    /// Bytes of chunk extensions or trailers read, bounded.
    extra: usize,
}

/// Where in a chunked body the relay is (RFC 9112 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// At the start of a chunk-size line.
    Size {
        digits: u8,
    },
    /// In the chunk extensions, until CR.
    Extension,
    /// After the chunk-size line's CR.
    SizeLf,
    /// In the chunk's data.
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// In a trailer line.
    Trailer,
    TrailerLf,
    EndLf,
    Done,
}

/// Chunk extensions and trailers may take this many bytes in all.
const MAX_CHUNK_EXTRA: usize = 16 * 1024;

impl Relay {
    fn new(framing: Framing) -> Relay {
        Relay {
            framing,
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunk: Chunk::Size { digits: 0 },
            extra: 0,
        }
    }

    /// Takes what of `data` belongs to the body: how many bytes, and whether the body has
    /// ended. `Err` when a chunked body's framing is broken.
    fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), &'static str> {
        match self.framing {
            Framing::None => Ok((0, true)),
            Framing::UntilClose => Ok((data.len(), false)),
            Framing::Length(_) => {
                let n = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                self.left -= n as u64;
                Ok((n, self.left == 0))
            }
            Framing::Chunked => self.feed_chunked(data),
        }
    }

    fn feed_chunked(&mut self, data: &[u8]) -> Result<(usize, bool), &'static str> {
        const BAD: &str = "malformed chunked body from the app";
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.chunk = match self.chunk {
                Chunk::Size { digits } => match (b as char).to_digit(16) {
                    Some(d) if digits < 16 => {
                        self.left = self.left * 16 + u64::from(d);
                        Chunk::Size { digits: digits + 1 }
                    }
                    Some(_) => return Err(BAD),
                    None if digits == 0 => return Err(BAD),
                    None => match b {
                        b'\r' => Chunk::SizeLf,
                        b';' | b' ' | b'\t' => Chunk::Extension,
                        _ => return Err(BAD),
                    },
                },
                Chunk::Extension => match b {
                    b'\r' => Chunk::SizeLf,
                    b'\n' => return Err(BAD),
                    _ => {
                        self.extra += 1;
                        if self.extra > MAX_CHUNK_EXTRA {
                            return Err(BAD);
                        }
                        Chunk::Extension
                    }
                },
                Chunk::SizeLf if b == b'\n' => {
                    if self.left == 0 {
                        Chunk::TrailerStart
                    } else {
                        Chunk::Data
                    }
                }
                Chunk::Data => {
                    let n = usize::try_from(self.left)
                        .unwrap_or(usize::MAX)
                        .min(data.len() - i);
                    self.left -= n as u64;
                    i += n;
                    if self.left == 0 {
                        self.chunk = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                Chunk::DataLf if b == b'\n' => Chunk::Size { digits: 0 },
                Chunk::TrailerStart if b == b'\r' => Chunk::EndLf,
                Chunk::TrailerStart | Chunk::Trailer if b != b'\r' && b != b'\n' => {
                    self.extra += 1;
                    if self.extra > MAX_CHUNK_EXTRA {
                        return Err(BAD);
                    }
                    Chunk::Trailer
                }
                Chunk::Trailer if b == b'\r' => Chunk::TrailerLf,
                Chunk::TrailerLf if b == b'\n' => Chunk::TrailerStart,
                Chunk::EndLf if b == b'\n' => {
                    self.chunk = Chunk::Done;
                    return Ok((i + 1, true));
                }
                _ => return Err(BAD),
            };
            i += 1;
        }
        Ok((i, self.chunk == Chunk::Done))
    }
}

// === Date ===

/// Appends the time as an HTTP date (RFC 9110 §5.6.7): the wall clock's second at `now`
/// (a moment just read from the monotonic clock), read and formatted once a second.
fn push_date(out: &mut Vec<u8>, now: Instant) {
    use std::cell::RefCell;
    /// The formatted date, and the moment its second ends.
    struct Cached {
        until: Option<Instant>,
        text: [u8; 29],
    }
    thread_local! {
        static CACHE: RefCell<Cached> = const { RefCell::new(Cached { until: None, text: [0; 29] }) };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.until.is_none_or(|u| now >= u) {
            let wall = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            let left = Duration::from_secs(1)
                .saturating_sub(Duration::from_nanos(u64::from(wall.subsec_nanos())));
            *c = Cached {
                until: Some(Instant::now() + left),
                text: http_date(wall.as_secs()),
            };
        }
        out.extend_from_slice(&c.text);
    });
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for `secs` after the epoch.
fn http_date(secs: u64) -> [u8; 29] {
    let mut b = [b' '; 29];
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(0)) else {
        return b;
    };
    const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let two = |b: &mut [u8], v: u8| {
        b[0] = b'0' + v / 10;
        b[1] = b'0' + v % 10;
    };
    b[..3].copy_from_slice(DAYS[usize::from(t.weekday().number_days_from_monday())]);
    b[3] = b',';
    two(&mut b[5..7], t.day());
    b[8..11].copy_from_slice(MONTHS[usize::from(u8::from(t.month()) - 1)]);
    let year = u16::try_from(t.year()).unwrap_or(0);
    two(&mut b[12..14], (year / 100) as u8);
    two(&mut b[14..16], (year % 100) as u8);
    two(&mut b[17..19], t.hour());
    b[19] = b':';
    two(&mut b[20..22], t.minute());
    b[22] = b':';
    two(&mut b[23..25], t.second());
    b[26..29].copy_from_slice(b"GMT");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay_all(framing: Framing, parts: &[&[u8]]) -> Result<(usize, bool), &'static str> {
        let mut r = Relay::new(framing);
        let mut total = 0;
        for p in parts {
            let (n, done) = r.feed(p)?;
            total += n;
            if done {
                return Ok((total, true));
            }
        }
        Ok((total, false))
    }

    /// A chunked body's end is found however its bytes are split, extensions and trailers
    /// included, and the bytes after it are not taken.
    #[test]
    fn chunked_end_is_found_across_reads() {
        let body: &[u8] =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(
                relay_all(Framing::Chunked, &[a, b]),
                Ok((end, true)),
                "split at {split}"
            );
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(relay_all(Framing::Chunked, &bytes), Ok((end, true)));
    }

    /// Broken chunked framing is an error, not a guess: no digits, bare LF, a missing CRLF
    /// after the data, a size of more than 16 hex digits.
    #[test]
    fn broken_chunked_framing_is_refused() {
        for bad in [
            &b"\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"11111111111111111\r\n",
            b"zz\r\n",
            b"0\r\n\n",
        ] {
            assert!(relay_all(Framing::Chunked, &[bad]).is_err(), "{bad:?}");
        }
    }

    /// A Content-Length body takes exactly its length; no body takes nothing.
    #[test]
    fn length_and_no_body() {
        assert_eq!(
            relay_all(Framing::Length(3), &[b"ab", b"cdef"]),
            Ok((3, true))
        );
        assert_eq!(relay_all(Framing::None, &[b"abc"]), Ok((0, true)));
        assert_eq!(relay_all(Framing::UntilClose, &[b"abc"]), Ok((3, false)));
    }

    /// Dates as RFC 9110 writes them.
    #[test]
    fn http_dates() {
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(1_796_083_200), b"Tue, 01 Dec 2026 00:00:00 GMT");
    }

    fn head(is_head: bool, close: bool) -> Head {
        Head {
            len: 0,
            body: 0,
            close,
            head: is_head,
            idempotent: true,
            id: 0..3,
        }
    }

    /// Reads `raw` as the app's answer to a request (`HEAD` or not) and returns the framing,
    /// whether the app's connection may be reused, and the client's head.
    fn respond(raw: &[u8], is_head: bool) -> Option<(Framing, bool, String)> {
        let (h, stopping, mut back) = (head(is_head, false), AtomicBool::new(false), Vec::new());
        let reply = Reply {
            head: &h,
            out: b"id1",
            now: Instant::now(),
            stopping: &stopping,
        };
        match parse_response(raw, &reply, &mut back) {
            Ok(Parsed::Final(r)) => Some((
                r.framing,
                r.reusable,
                String::from_utf8_lossy(&back).into_owned(),
            )),
            _ => None,
        }
    }

    /// Response heads: framing by RFC 9112 §6.3 (no body for HEAD, 204 and 304), 1xx
    /// skipped, 101 and conflicting lengths refused.
    #[test]
    fn response_framing() {
        let framing = |raw: &[u8]| respond(raw, false).map(|(f, reusable, _)| (f, reusable));
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Some((Framing::Length(5), true))
        );
        assert_eq!(
            framing(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n"
            ),
            Some((Framing::Chunked, true))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Some((Framing::UntilClose, true))
        );
        assert_eq!(
            framing(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"),
            Some((Framing::UntilClose, false))
        );
        assert_eq!(
            framing(b"HTTP/1.0 204 No Content\r\n\r\n"),
            Some((Framing::None, false))
        );
        assert_eq!(
            respond(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true).map(|r| r.0),
            Some(Framing::None)
        );
        let (h, stopping) = (head(false, false), AtomicBool::new(false));
        let reply = Reply {
            head: &h,
            out: b"id1",
            now: Instant::now(),
            stopping: &stopping,
        };
        let parse = |raw: &[u8]| parse_response(raw, &reply, &mut Vec::new());
        assert!(matches!(
            parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"),
            Ok(Parsed::Informational(25))
        ));
        assert!(parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err());
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err()
        );
    }

    /// The client's head: the app's hop-by-hop headers (fixed ones and those its
    /// `Connection` names) dropped, `Transfer-Encoding` kept without `Content-Length`, the
    /// request's id and a `Date` added when the app sent none, and the app's own kept.
    #[test]
    fn response_head_for_the_client() {
        let (_, _, back) = respond(
            b"HTTP/1.1 201 Made\r\nConnection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\nSet-Cookie: a=1\r\n\r\n",
            false,
        )
        .expect("a final response");
        assert!(back.starts_with("HTTP/1.1 201 Made\r\n"), "{back}");
        assert!(back.ends_with("\r\n\r\n"), "{back}");
        let names: Vec<String> = back
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
            .collect();
        assert_eq!(
            names,
            ["transfer-encoding", "set-cookie", "x-request-id", "date"],
            "{back}"
        );
        assert!(back.contains("\r\nx-request-id: id1\r\n"), "{back}");
        let (_, _, back) = respond(
            b"HTTP/1.1 200 OK\r\nX-Request-Id: app\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .expect("a final response");
        assert!(
            back.contains("X-Request-Id: app\r\n") && !back.contains("id1"),
            "{back}"
        );
        assert_eq!(back.matches("ate: ").count(), 1, "{back}");
    }
}
