//! Connections: how many may be open, and how long each may take at every stage.
//!
//! Both listeners ([`super::serve`] and [`crate::admin::serve`]) accept through [`Gate::accept`]
//! and serve each connection through [`drive`]. Nothing here knows HTTP semantics; it knows
//! when a connection is waiting for its client and for how long it may.
//!
//! | stage | bounded by | on expiry |
//! |---|---|---|
//! | accept | `max_connections` open at once (a [`Gate`] per listener) | accept pauses until one closes |
//! | TLS handshake | `tls_handshake_timeout` | the socket is closed |
//! | first request (no byte yet, an HTTP/2 preface alone, slow headers) | `header_read_timeout` from accept (or from the end of the handshake) | closed |
//! | between requests (HTTP/1.1 keep-alive or a slow next request head, HTTP/2 with no open stream) | `idle_timeout` from the end of the last response | closed gracefully (HTTP/2: `GOAWAY`) |
//! | a dead HTTP/2 peer during a long response | `http2_keepalive_interval` pings | closed |
//!
//! A request head counts as arrived when hyper hands the request to the service, so a
//! head dribbled byte by byte is bounded like silence.
//!
//! Request bodies have their own idle timeout (`crate::proxy`, `super::router`): a connection
//! that is in the middle of a request is not idle here.
//!
//! The cap exists because file descriptors are finite: 21,000 idle sockets once exhausted
//! them and every listener, the admin probes included, stopped accepting. Each listener has
//! its own [`Gate`], so a flood on the main port never uses the admin port's budget, and
//! [`fit_to_fd_limit`] lowers a cap that the process's open-file limit could not honour.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::metrics::Metrics;

/// The deadlines of one listener's connections.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// From accept (or the end of the TLS handshake) to the first complete request head.
    pub first_request: Duration,
    /// From the end of a response to the next request head.
    pub idle: Duration,
    /// How long a connection asked to close (deadline or shutdown) may take to do so.
    pub close_grace: Duration,
}

/// Which listener a connection came from: the `listener` label of the connection metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// SCIM and pass-through.
    Main,
    /// `/healthz`, `/readyz`, `/metrics`.
    Admin,
}

impl Listener {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Main => "main",
            Listener::Admin => "admin",
        }
    }
}

/// Why a connection was closed by a deadline: the `stage` label of
/// `scim_sidecar_connection_timeouts_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The TLS handshake did not finish in time.
    TlsHandshake,
    /// No complete request head arrived after accept (nothing sent, an HTTP/2 preface
    /// alone, headers dribbled).
    FirstRequest,
    /// No next request arrived on a kept-alive connection.
    BetweenRequests,
    /// The client stopped sending a request body it had started.
    RequestBody,
}

impl Stage {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::TlsHandshake => "tls_handshake",
            Stage::FirstRequest => "first_request",
            Stage::BetweenRequests => "between_requests",
            Stage::RequestBody => "request_body",
        }
    }
}

/// The open connections of one listener, at most `cap` at once.
pub struct Gate {
    permits: Arc<Semaphore>,
    cap: usize,
    listener: Listener,
    metrics: Arc<Metrics>,
    /// When the last "cap reached" or "accept failed" line was logged: a flood must not
    /// become a flood of log lines.
    last_log: Mutex<Option<Instant>>,
}

/// Log at most one line per this period for accept pauses and accept errors.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// Back-off after a failed accept (EMFILE and friends): the pending connection stays in the
/// kernel's queue, and retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

impl Gate {
    /// A gate letting `cap` connections of `listener` be open at once.
    pub fn new(cap: usize, listener: Listener, metrics: Arc<Metrics>) -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(cap.max(1))),
            cap: cap.max(1),
            listener,
            metrics,
            last_log: Mutex::new(None),
        }
    }

    /// The cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.cap - self.permits.available_permits()
    }

    /// Waits until every connection has closed, or `within` has passed. `true` when all
    /// closed.
    pub async fn closed(&self, within: Duration) -> bool {
        let all = u32::try_from(self.cap).unwrap_or(u32::MAX);
        tokio::time::timeout(within, self.permits.acquire_many(all))
            .await
            .is_ok()
    }

    fn should_log(&self) -> bool {
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// The next connection, once there is room for it; `None` when `stop` says so. Never
    /// fails: accept errors are counted, logged (rate-limited) and retried after a pause.
    pub async fn accept(
        &self,
        listener: &TcpListener,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(TcpStream, SocketAddr, Arc<Activity>)> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: stop accepting (new clients wait in the kernel's queue) until a
                // connection closes; the deadlines below make sure one does.
                self.metrics.connection_limit_wait(self.listener.as_str());
                if self.should_log() {
                    tracing::warn!(
                        listener = self.listener.as_str(),
                        max_connections = self.cap,
                        "connection limit reached: accepting again when a connection closes"
                    );
                }
                tokio::select! {
                    p = self.permits.clone().acquire_owned() => p.ok()?,
                    _ = stop.changed() => return None,
                }
            }
        };
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        self.metrics.connection_opened(self.listener.as_str());
                        let activity = Arc::new(Activity::new(permit, self.listener, self.metrics.clone()));
                        return Some((tcp, peer, activity));
                    }
                    Err(e) => {
                        self.metrics.accept_error(self.listener.as_str());
                        if self.should_log() {
                            tracing::warn!(listener = self.listener.as_str(), error = %e, "accept failed; retrying");
                        }
                        tokio::select! {
                            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                            _ = stop.changed() => return None,
                        }
                    }
                },
                _ = stop.changed() => return None,
            }
        }
    }
}

/// One connection's requests as its deadlines see them: how many are in progress, and since
/// when it has been idle. Shared by the connection's task and each of its requests; holds
/// the connection's place under the cap until the last holder lets go (a WebSocket tunnel
/// keeps holding it after the HTTP connection ended).
pub struct Activity {
    inflight: AtomicU32,
    requests: AtomicU64,
    /// Nanoseconds after `start` when the last request finished.
    idle_since: AtomicU64,
    start: Instant,
    listener: Listener,
    metrics: Arc<Metrics>,
    _permit: OwnedSemaphorePermit,
}

impl Activity {
    fn new(permit: OwnedSemaphorePermit, listener: Listener, metrics: Arc<Metrics>) -> Activity {
        Activity {
            inflight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            start: Instant::now(),
            listener,
            metrics,
            _permit: permit,
        }
    }

    /// A request started; it ends when the returned guard is dropped (with its response body).
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Counts a connection closed by a deadline.
    pub fn timed_out(&self, stage: Stage) {
        self.metrics
            .connection_timeout(self.listener.as_str(), stage.as_str());
    }

    /// Counts a connection closed while waiting for a request head (hyper's own HTTP/1.1
    /// header timer): the first, or a later one.
    pub fn timed_out_waiting(&self) {
        self.timed_out(if self.requests.load(Ordering::Relaxed) == 0 {
            Stage::FirstRequest
        } else {
            Stage::BetweenRequests
        });
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// `Err(stage)` when the connection has waited for its client longer than allowed;
    /// `Ok(when)` is the next moment to look again.
    fn check(&self, now: Instant, d: &Deadlines, waiting_since: Instant) -> Result<Instant, Stage> {
        if self.inflight.load(Ordering::Relaxed) > 0 {
            // A request is in progress: its own timers (upstream timeout, body idle timeout)
            // bound it. Look again later.
            return Ok(now + d.idle);
        }
        let (since, limit, stage) = if self.requests.load(Ordering::Relaxed) == 0 {
            (waiting_since, d.first_request, Stage::FirstRequest)
        } else {
            let idle = self.start + Duration::from_nanos(self.idle_since.load(Ordering::Relaxed));
            (idle, d.idle, Stage::BetweenRequests)
        };
        let deadline = since + limit;
        if now >= deadline {
            Err(stage)
        } else {
            Ok(deadline)
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.metrics.connection_closed(self.listener.as_str());
    }
}

/// One request in progress on a connection (see [`Activity::begin`]).
pub struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    /// The connection, for holders that outlive the request (tunnels).
    pub fn activity(&self) -> &Arc<Activity> {
        &self.0
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.0;
        a.idle_since
            .store(a.nanos(Instant::now()), Ordering::Relaxed);
        a.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that ends its request (for the connection's deadlines) when it has been
/// sent or dropped.
pub struct Tracked<B> {
    inner: B,
    _guard: RequestGuard,
}

impl<B> Tracked<B> {
    /// `inner`, ending `guard`'s request when done.
    pub fn new(inner: B, guard: RequestGuard) -> Self {
        Tracked {
            inner,
            _guard: guard,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// What woke [`drive`] up.
enum Event<T> {
    /// The connection ended.
    Done(T),
    /// The deadline timer fired.
    Deadline,
    /// The stop signal changed (`true`: its sender is gone).
    Stop(bool),
}

/// Serves one connection until it ends, closing it when its client has kept it waiting too
/// long (see the module doc), and gracefully when `stop` changes (process shutdown).
///
/// `shutdown` starts a graceful close of `conn` (hyper's `graceful_shutdown`); after it, the
/// connection gets `close_grace` to finish, then it is dropped. `waiting_since` is when the
/// connection became able to send its first request (accept, or the end of the TLS
/// handshake).
pub async fn drive<C, T, E>(
    conn: C,
    shutdown: impl Fn(Pin<&mut C>),
    activity: &Activity,
    deadlines: &Deadlines,
    waiting_since: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Option<Result<T, E>>
where
    C: Future<Output = Result<T, E>>,
{
    let mut conn = pin!(conn);
    let first = waiting_since + deadlines.first_request;
    let mut timer = pin!(tokio::time::sleep_until(first.into()));
    let mut grace = deadlines.close_grace;
    // The deadline timer and the stop signal are polled when they may have fired, not on
    // every wake-up of the connection (several per request): once polled, each holds this
    // task's waker, and a cheap check (`is_elapsed`, `has_changed`) says when to look again.
    let mut watcher = stop.clone();
    'serving: loop {
        let mut changed = pin!(watcher.changed());
        let mut poll_stop = true;
        let mut poll_timer = true;
        loop {
            let event = std::future::poll_fn(|cx| {
                if let Poll::Ready(done) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(done));
                }
                if poll_timer || timer.is_elapsed() {
                    if timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::Deadline);
                    }
                    poll_timer = false;
                }
                if poll_stop || !matches!(stop.has_changed(), Ok(false)) {
                    if let Poll::Ready(r) = changed.as_mut().poll(cx) {
                        return Poll::Ready(Event::Stop(r.is_err()));
                    }
                    poll_stop = false;
                }
                Poll::Pending
            })
            .await;
            match event {
                Event::Done(done) => return Some(done),
                Event::Deadline => match activity.check(Instant::now(), deadlines, waiting_since) {
                    Ok(next) => {
                        timer.as_mut().reset(next.into());
                        poll_timer = true;
                    }
                    Err(stage) => {
                        activity.timed_out(stage);
                        tracing::debug!(
                            stage = stage.as_str(),
                            "closing a connection that kept the server waiting"
                        );
                        break 'serving;
                    }
                },
                Event::Stop(closed) => {
                    if closed || *stop.borrow_and_update() {
                        // Shutdown: in-flight requests may finish; the caller bounds the total.
                        grace = Duration::MAX;
                        break 'serving;
                    }
                    // A change that is no stop: wait for the next one.
                    continue 'serving;
                }
            }
        }
    }
    shutdown(conn.as_mut());
    if grace == Duration::MAX {
        return Some(conn.await);
    }
    tokio::time::timeout(grace, conn).await.ok()
}

/// Raises the soft limit on open files to the hard limit (as Go's runtime and most servers
/// do: the soft default of 1024 is a relic of `select()`), and returns the limit in effect.
/// `None` where it cannot be read.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit through a valid pointer to a local.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit reads one rlimit through a valid pointer to a local.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        Some(lim.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Descriptors kept out of the main listener's budget: listeners, stores, log output, JWKS
/// fetches, idle upstream connections beyond one per client.
const FD_RESERVE: u64 = 128;

/// The main listener's cap that the open-file limit `fd_limit` can honour when every
/// connection may hold `per_connection` descriptors (its socket, and its upstream
/// connection) and `reserved` are kept for the admin listener and the rest.
pub fn fit_to_fd_limit(wanted: usize, fd_limit: u64, per_connection: u64, reserved: u64) -> usize {
    let usable = fd_limit.saturating_sub(reserved + FD_RESERVE) / per_connection.max(1);
    let fit = usize::try_from(usable).unwrap_or(usize::MAX).max(1);
    wanted.min(fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity() -> Arc<Activity> {
        let sem = Arc::new(Semaphore::new(1));
        let permit = sem.try_acquire_owned().expect("permit");
        Arc::new(Activity::new(
            permit,
            Listener::Main,
            Arc::new(Metrics::new()),
        ))
    }

    /// Before any request the first-request deadline applies; while a request runs none
    /// does; after it, the idle deadline counts from its end.
    #[test]
    fn deadlines_by_stage() {
        let d = Deadlines {
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            close_grace: Duration::from_secs(1),
        };
        let a = activity();
        let t0 = a.start;
        assert_eq!(a.check(t0, &d, t0), Ok(t0 + d.first_request));
        assert_eq!(
            a.check(t0 + Duration::from_secs(10), &d, t0),
            Err(Stage::FirstRequest)
        );
        let guard = a.begin();
        let later = t0 + Duration::from_secs(100);
        assert_eq!(a.check(later, &d, t0), Ok(later + d.idle));
        drop(guard);
        let now = Instant::now();
        assert!(a.check(now, &d, t0).is_ok());
        assert_eq!(
            a.check(now + Duration::from_secs(31), &d, t0),
            Err(Stage::BetweenRequests)
        );
    }

    /// A cap the open-file limit cannot hold is lowered; one it can is kept.
    #[test]
    fn cap_fits_the_fd_limit() {
        assert_eq!(fit_to_fd_limit(10_000, 1024, 2, 64), (1024 - 64 - 128) / 2);
        assert_eq!(fit_to_fd_limit(100, 1_000_000, 2, 64), 100);
        assert_eq!(fit_to_fd_limit(100, 10, 2, 64), 1);
    }
}
