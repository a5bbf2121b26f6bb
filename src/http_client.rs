//! The I/O half of an HTTP/1.1 client connection to the app, driven by the requests that use
//! it instead of by a task of its own.
//!
//! hyper splits a client connection into a handle that sends requests and a future that does
//! the connection's I/O. Spawned as a task, that future hands every request and every answer
//! to the waiting request through a channel: a task wake-up per network event in each
//! direction. Polled by the request's own future while it sends and reads, it costs none, and
//! a connection opened on a server shard keeps all of its events on that shard's thread.
//! Callers: the pass-through's pool ([`crate::proxy`]) and the REST store's client
//! (`backend::rest::client`), which poll [`Driver::drive`] next to the response they wait for
//! and before they reuse an idle connection.
//!
//! Also here: [`quick_ack`], for the app's answers that arrive in pieces, and [`AnswerClock`],
//! the deadline on them.

use std::future::Future;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Acknowledges at once what the app has sent on socket `fd`. Called when an answer is known
/// to be incomplete and nothing more has arrived.
///
/// An app that writes a response's head and its body separately without `TCP_NODELAY`
/// (Python's `http.server`, Ruby's WEBrick, which serves Debian's Redmine) holds the body back
/// until the head is acknowledged (Nagle's algorithm), and Linux delays that acknowledgement by
/// 40 ms on a connection whose traffic looks interactive, as a kept-alive one to the app does:
/// such an answer took 40 ms more than the app needed. `TCP_QUICKACK` sends the pending
/// acknowledgement now. An answer that arrives whole never gets here, so it costs nothing.
pub fn quick_ack(fd: RawFd) {
    #[cfg(target_os = "linux")]
    {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt only reads the `c_int` it is pointed at, of the size given; an
        // fd that is no longer a TCP socket makes it fail, which changes nothing.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// The connection future, boxed. `Sync` so that a response body holding it can be one too.
pub type ConnFuture = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send + Sync>>;

/// A connection's I/O future until it ends.
pub struct Driver(Option<ConnFuture>);

impl Driver {
    /// Drives `io` (hyper's `Connection`, or its `with_upgrades()`).
    pub fn new(io: impl Future<Output = hyper::Result<()>> + Send + Sync + 'static) -> Driver {
        Driver(Some(Box::pin(io)))
    }

    /// Lets the connection do its I/O: write what is queued, read what has arrived. `false`
    /// once it has ended (the app closed it, or it failed: logged at debug).
    pub fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(io) = &mut self.0 else {
            return false;
        };
        match io.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(r) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "a connection to the app ended with an error");
                }
                self.0 = None;
                false
            }
        }
    }

    /// Whether the connection has ended.
    pub fn ended(&self) -> bool {
        self.0.is_none()
    }

    /// The future itself, for a caller that must drive it elsewhere (an upgrade completes
    /// only when the connection hands its socket over).
    pub fn take(&mut self) -> Option<ConnFuture> {
        self.0.take()
    }
}

/// The clock on the app's answers, one timer per connection to the app: the relay's
/// (`server::fast`) and the REST store's. A tokio timer set and cleared for every request
/// costs two updates of the timer wheel each, and, on a runtime with no other timer armed
/// (one request at a time), a wake-up of its own driver: tokio unparks the driver for a
/// timer earlier than its next wake-up, an `eventfd` write and one more `epoll_wait` per
/// request. This one is set once and moved only when it fires before the current request's
/// deadline (deadlines only move later, so that happens once per `timeout` at most).
/// `default()` has no timer yet: it is made on the first [`AnswerClock::expired`].
#[derive(Default)]
pub struct AnswerClock {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AnswerClock {
    /// Whether `deadline` has passed; otherwise the task is woken when the timer fires.
    pub fn expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let deadline = tokio::time::Instant::from_std(deadline);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        while sleep.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return true;
            }
            sleep.as_mut().reset(deadline);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_once_and_stays_ended() {
        let mut d = Driver::new(std::future::ready(Ok(())));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(!d.ended());
        assert!(!d.drive(&mut cx));
        assert!(d.ended());
        assert!(!d.drive(&mut cx));
        assert!(d.take().is_none());
    }

    #[test]
    fn pending_io_keeps_the_connection() {
        let mut d = Driver::new(std::future::pending());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(d.drive(&mut cx));
        assert!(!d.ended());
        assert!(d.take().is_some());
        assert!(d.ended());
    }
}
