//! Operation deadlines on timers a connection keeps and reuses (patch 11, `PATCHED.md`).
//!
//! `tokio::time::timeout` registers a new timer for each operation, and tokio wakes its
//! driver for any new timer earlier than the next one it knows about: an `eventfd` write
//! and one more `epoll_wait`. With one operation at a time, as identity providers mostly
//! send, that is every operation and every search reply. Here the handles of one connection
//! share its timers, one per operation in flight. An operation takes one, and gives it back
//! when it ends. A timer is moved only when it fires before the deadline of the operation
//! that holds it. Deadlines only move later, so that happens at most once per timeout.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::runtime::{Handle, Id};
use tokio::time::error::Elapsed;
use tokio::time::{Instant, Sleep};

/// The idle timers of one connection, each with the runtime whose timer driver it is
/// registered with: a timer is only reused on that runtime.
#[derive(Clone, Default)]
pub(crate) struct Clocks(Arc<Mutex<Vec<(Id, Pin<Box<Sleep>>)>>>);

impl std::fmt::Debug for Clocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clocks")
    }
}

impl Clocks {
    /// A timer for one operation: an idle one of the current runtime's, or a new one made
    /// when first needed.
    pub(crate) fn take(&self) -> Clock {
        let runtime = Handle::try_current().ok().map(|h| h.id());
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let sleep = runtime.and_then(|id| {
            let i = idle.iter().rposition(|(r, _)| *r == id)?;
            Some(idle.swap_remove(i))
        });
        Clock {
            runtime,
            sleep: sleep.map(|(_, s)| s),
            home: self.clone(),
        }
    }
}

/// A timer taken from a connection's [`Clocks`], given back when dropped.
pub(crate) struct Clock {
    runtime: Option<Id>,
    sleep: Option<Pin<Box<Sleep>>>,
    home: Clocks,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl Drop for Clock {
    fn drop(&mut self) {
        if let (Some(id), Some(sleep)) = (self.runtime, self.sleep.take()) {
            let mut idle = self.home.0.lock().unwrap_or_else(|p| p.into_inner());
            idle.push((id, sleep));
        }
    }
}

impl Clock {
    /// Whether `deadline` has passed; otherwise the task is woken when the timer fires.
    fn expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        while sleep.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return true;
            }
            sleep.as_mut().reset(deadline);
        }
        false
    }

    /// What `fut` gives, or `Elapsed` when `timeout` passes first: `tokio::time::timeout`,
    /// on this timer.
    pub(crate) async fn within<F: Future>(
        &mut self,
        timeout: Duration,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        let deadline = Instant::now() + timeout;
        let mut fut = pin!(fut);
        let done = std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            if self.expired(cx, deadline) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        match done {
            Some(out) => Ok(out),
            None => Err(elapsed().await),
        }
    }
}

/// tokio's `Elapsed`, which only tokio makes: from a timeout that has passed already (no
/// wait, and only on this rare path).
async fn elapsed() -> Elapsed {
    match tokio::time::timeout(
        Duration::ZERO,
        std::future::pending::<std::convert::Infallible>(),
    )
    .await
    {
        Ok(never) => match never {},
        Err(e) => e,
    }
}
