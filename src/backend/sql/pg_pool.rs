//! PostgreSQL connections, pooled on the threads that opened them.
//!
//! Caller: [`super::postgres`], for every request that reaches the database. A tokio-postgres
//! connection does its I/O in a task of its own, spawned on the runtime that opens it, and a
//! request waits on that task for every answer. The server serves its connections on shard
//! threads, each a single-threaded runtime (`server::shard`): a connection opened on one shard
//! and used by a request on another hands each statement and each answer from thread to
//! thread, a wake-up and a context switch each way. A group delete with hooks is two dozen
//! statements; through a pool shared without regard to threads (deadpool), those hand-offs
//! were most of the sidecar's CPU per request and half its latency at one client
//! (`benches/hooks.rs`).
//!
//! So [`PgPool::get`] gives, in this order:
//!
//! 1. the most recently used idle connection opened on the caller's thread;
//! 2. a new connection, opened on the caller's thread, while the pool has room (`pool_size`);
//! 3. an idle connection of another thread: slower, but no request waits while one is idle;
//! 4. a connection as it comes back, or room freed by one that closed, until the wait timeout
//!    ([`PoolError::Timeout`]). A connection coming back goes to the longest waiting request
//!    of its own thread; to the longest waiting request of any thread when there is none, or
//!    when that one has waited [`PATIENCE`] already (so that a thread whose connections are
//!    all busy, or that has none, still gets one). With every connection in use (32 clients
//!    on 8 connections), handing them across threads was a wake-up each way for every
//!    statement of half the requests.
//!
//! A statement that runs alone, outside a transaction (a read, a one-statement create), asks
//! with [`PgPool::shared`] instead. It takes a connection the same way while such statements
//! hold fewer than half the pool's connections ([`alone_limit`]) and one is idle or the pool
//! has room. Beyond that (half the pool lent to them, or every connection in use) it joins a
//! connection already lent to such statements that has fewer than [`SHARED_DEPTH`] of them,
//! the least busy of its own thread first; when none has room, it waits for a place on one,
//! and a place freed goes to the longest waiting of them. tokio-postgres pipelines the
//! statements sharing a connection: they go out in one write, and their answers come back in
//! one read. Each keeps its own `Sync`, so one that fails leaves the others untouched.
//!
//! - **Half the pool stays for transactions.** However many reads and creates arrive, they
//!   take or open no connection beyond half the pool while those they have keep answering
//!   (a connection coming back still goes to the longest waiting request, which may be one
//!   of them), so a PATCH, a delete or a member change, which holds its connection across
//!   round trips, finds the rest. While a request waits for a connection of its own, no
//!   statement joins: the lent connections drain and come back to it rather than stay busy
//!   for as long as reads keep arriving.
//! - **Not behind a slow statement.** A lent connection on which nothing has finished for
//!   [`STUCK`] is running a slow statement (a scan): it is not joined, and does not count
//!   towards the half, so the next read takes a connection of its own.
//! - **What it buys** (`cargo bench --bench postgres`, 32 clients, 2 cores): on 8
//!   connections, sharing took creates from 9,000–9,600 to 11,200–12,900 per second, with
//!   PostgreSQL's CPU per create at 100–112 µs instead of 131–142. On the default 16, reads
//!   spread over all of them cost PostgreSQL more per statement and had a p99 of 22–32 ms;
//!   held to half, they run as on a pool of 8, and PATCHes and member adds get the other
//!   half (the README's "Performance" has the figures, and the price in tail latency).
//!
//! On a multi-threaded runtime (`server::start` on the caller's runtime, the admin port)
//! tasks move between threads anyway: connections opened there have no home, and step 1
//! takes any of them. A caller there (`/readyz`) takes any idle connection before it opens
//! one, and once shard threads use the pool a connection without a home is closed when it
//! comes back rather than kept: opened by the first `/readyz` before any traffic, it would
//! otherwise serve shard requests across threads for as long as the process runs. A
//! connection the server closed is dropped when it is next taken, with no query to check it
//! (deadpool's "fast" recycling, as before).

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use deadpool_postgres::ClientWrapper;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Why [`PgPool::get`] has no connection to give.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Every connection the pool may open stayed in use for the whole wait.
    #[error("all {size} connections stayed in use for {wait:?}")]
    Timeout {
        /// The pool's size.
        size: usize,
        /// How long the request waited.
        wait: Duration,
    },
    /// Opening a connection failed (refused, authentication, TLS).
    #[error("cannot open a connection")]
    Connect(#[source] tokio_postgres::Error),
    /// Opening a connection took longer than the connect timeout.
    #[error("opening a connection took longer than {0:?}")]
    ConnectTimeout(Duration),
}

/// A pool of at most `size` connections to one database (cheap to clone: one pool).
#[derive(Clone)]
pub struct PgPool {
    inner: Arc<Inner>,
}

struct Inner {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    size: usize,
    /// Idle connections and the requests waiting for one.
    state: Mutex<State>,
    /// One permit per connection open or being opened.
    room: Arc<Semaphore>,
    /// How long [`PgPool::get`] waits for a connection to come free.
    wait: Duration,
    /// How long opening a connection may take.
    connect: Duration,
    /// A caller on a shard thread (a connection home) has used the pool.
    homed: AtomicBool,
    /// At most this many connections are lent to statements that run alone while they keep
    /// answering ([`alone_limit`]).
    alone: usize,
}

/// How many connections statements that run alone may spread over before they share them:
/// half the pool, at least one (the module documentation says why).
pub fn alone_limit(size: usize) -> usize {
    (size / 2).max(1)
}

/// A connection lent to statements that run alone on which none has finished for this long
/// is running a slow one: no statement joins it, and it does not count towards
/// [`alone_limit`]. At 10 ms, busy moments at 32 clients on 2 cores (PostgreSQL's backends
/// waiting for a core) passed for slow statements and spread reads over more connections:
/// the p99 of searches was 25 ms instead of 15–19 at 50.
pub const STUCK: Duration = Duration::from_millis(50);

/// How long a request waiting for a connection lets connections coming back go to later
/// requests of their own thread before it takes one from any thread.
pub const PATIENCE: Duration = Duration::from_millis(2);

struct State {
    /// Idle connections, the most recently used last.
    idle: Vec<Idle>,
    /// Requests waiting for a connection to come back, the longest waiting first.
    waiters: VecDeque<Waiter>,
    /// Connections lent to statements that run alone ([`PgPool::shared`]), which more such
    /// statements may join. An entry is stale once no one holds it.
    shared: Vec<Lending>,
    /// [`STUCK`], unless [`PgPool::stuck_after`] says otherwise.
    stuck: Duration,
}

/// A connection lent to statements that run alone.
struct Lending {
    /// Its home, as [`Idle::home`].
    home: Option<ThreadId>,
    client: Weak<PgClient>,
    /// When it was lent, or a statement on it last finished.
    progress: Instant,
}

impl Lending {
    /// Answering its statements: one finished within `stuck` ([`STUCK`]).
    fn answering(&self, now: Instant, stuck: Duration) -> bool {
        now.duration_since(self.progress) < stuck
    }
}

/// A request waiting for a connection to come back.
struct Waiter {
    /// The caller's thread, as [`Idle::home`].
    home: Option<ThreadId>,
    /// It is for statements that run alone ([`PgPool::shared`]), not a transaction.
    alone: bool,
    since: Instant,
    tx: oneshot::Sender<Handed>,
}

/// What a waiting request is given: a connection of its own, or one lent to statements that
/// run alone, joined (only a request for such statements is given that).
enum Handed {
    Own(Idle),
    Joined(Arc<PgClient>),
}

/// What [`PgPool::shared`] does next.
enum Next {
    /// Joins this lent connection.
    Join(Arc<PgClient>),
    /// Takes a connection as [`PgPool::checkout`] gives one.
    Take,
    /// Waits in the queue for a place on a lent connection.
    Wait(oneshot::Receiver<Handed>),
}

/// What [`PgPool::checkout`] gives, as [`Handed`].
enum Lent {
    Own(PgClient),
    Joined(Arc<PgClient>),
}

/// At most this many statements that run alone use one connection at once ([`PgPool::shared`]).
/// At 4 rather than 2 (`cargo bench --bench postgres`, 32 clients, the pool of 16, alternating
/// runs), PostgreSQL spent 71–76 µs of CPU per create instead of 73–99, and creates reached
/// 0.88–1.01× pgbench instead of 0.74–0.86×; the price is the create's p99, 12–16 ms instead
/// of 8–13. On the VM these benches ran on before, with the pool of 8, 4 was no cheaper than 2
/// and doubled that tail.
pub const SHARED_DEPTH: usize = 4;

/// An open connection, with its place in the pool.
struct Idle {
    client: ClientWrapper,
    /// The thread whose runtime runs the connection's I/O task, when that runtime is
    /// single-threaded (a shard); `None` on a multi-threaded runtime.
    home: Option<ThreadId>,
    _room: OwnedSemaphorePermit,
}

impl PgPool {
    /// A pool of at most `size` connections made from `config`; [`PgPool::get`] waits up to
    /// `wait` for one to come free and gives opening one `connect`. Opens nothing yet.
    pub fn new(
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        size: usize,
        wait: Duration,
        connect: Duration,
    ) -> PgPool {
        let size = size.max(1);
        PgPool {
            inner: Arc::new(Inner {
                config,
                tls,
                size,
                state: Mutex::new(State {
                    idle: Vec::new(),
                    waiters: VecDeque::new(),
                    shared: Vec::new(),
                    stuck: STUCK,
                }),
                room: Arc::new(Semaphore::new(size)),
                wait,
                connect,
                homed: AtomicBool::new(false),
                alone: alone_limit(size),
            }),
        }
    }

    /// The pool, with lent connections counted as running a slow statement after `stuck`
    /// instead of [`STUCK`] (for tests).
    pub fn stuck_after(self, stuck: Duration) -> PgPool {
        self.inner.lock().stuck = stuck;
        self
    }

    /// A connection for the caller's work, in the order the module documentation gives.
    /// It goes back to the pool when the [`PgClient`] is dropped (closed by then: it is not
    /// kept).
    pub async fn get(&self) -> Result<PgClient, PoolError> {
        let deadline = tokio::time::Instant::now() + self.inner.wait;
        loop {
            match self
                .checkout(false, crate::backend::home_thread(), deadline)
                .await?
            {
                Lent::Own(c) => return Ok(c),
                // Not given to a request for a connection of its own; asked again if it were.
                Lent::Joined(_) => {}
            }
        }
    }

    /// A connection for statements that each run alone, outside a transaction, which other
    /// such statements may use at the same time (the module documentation says when). It
    /// goes back to the pool when the last [`SharedClient`] holding it is dropped.
    pub async fn shared(&self) -> Result<SharedClient, PoolError> {
        let home = crate::backend::home_thread();
        let deadline = tokio::time::Instant::now() + self.inner.wait;
        let next = {
            let mut state = self.inner.lock();
            let now = Instant::now();
            if state.answering(now) >= self.inner.alone {
                match state.join(home, true, now) {
                    Some(c) => Next::Join(c),
                    None => Next::Wait(state.enqueue(home, true)),
                }
            } else if state.has_idle(home.map(Some)) || self.inner.room.available_permits() > 0 {
                Next::Take
            } else {
                let any_thread = !state.has_idle(None);
                state
                    .join(home, any_thread, now)
                    .map_or(Next::Take, Next::Join)
            }
        };
        match next {
            Next::Join(c) if !c.is_closed() => return Ok(SharedClient(c)),
            // Dropped here, outside the lock: it may be the last hold on the connection.
            Next::Join(c) => drop(c),
            Next::Take => {}
            Next::Wait(rx) => match self.wait_for_place(rx, deadline).await? {
                Some(Handed::Joined(c)) => return Ok(SharedClient(c)),
                Some(Handed::Own(c)) => return Ok(self.share(self.lend(c))),
                // The lent connections stopped answering (slow statements): not behind
                // them.
                None => {}
            },
        }
        match self.checkout(true, home, deadline).await? {
            Lent::Joined(c) => Ok(SharedClient(c)),
            Lent::Own(c) => Ok(self.share(c)),
        }
    }

    /// Lends `c` to statements that run alone, and to those waiting for a place on one.
    fn share(&self, c: PgClient) -> SharedClient {
        let c = Arc::new(c);
        let mut state = self.inner.lock();
        state.prune();
        state.shared.push(Lending {
            home: c.conn.home,
            client: Arc::downgrade(&c),
            progress: Instant::now(),
        });
        state.hand_out(&c, 0);
        drop(state);
        SharedClient(c)
    }

    /// Waits in the queue (`rx`) for a place on a connection lent to statements that run
    /// alone, for as long as [`alone_limit`] of them keep answering. `None` once fewer do
    /// (their statements are slow): the caller then takes a connection as
    /// [`PgPool::checkout`] gives one.
    async fn wait_for_place(
        &self,
        mut rx: oneshot::Receiver<Handed>,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Handed>, PoolError> {
        let stuck = self.inner.lock().stuck;
        loop {
            let check = (tokio::time::Instant::now() + stuck).min(deadline);
            tokio::select! {
                c = &mut rx => return Ok(c.ok()),
                () = tokio::time::sleep_until(check) => {}
            }
            let capped = self.inner.lock().answering(Instant::now()) >= self.inner.alone;
            let late = tokio::time::Instant::now() >= deadline;
            if capped && !late {
                continue;
            }
            // A place handed over meanwhile is used rather than lost with `rx`.
            rx.close();
            return match rx.try_recv() {
                Ok(c) => Ok(Some(c)),
                Err(_) if late => Err(PoolError::Timeout {
                    size: self.inner.size,
                    wait: self.inner.wait,
                }),
                Err(_) => Ok(None),
            };
        }
    }

    /// [`PgPool::get`], for statements that run `alone` or not, from the caller's thread
    /// (`home`, as [`crate::backend::home_thread`] gives it), waiting until `deadline`.
    async fn checkout(
        &self,
        alone: bool,
        home: Option<ThreadId>,
        deadline: tokio::time::Instant,
    ) -> Result<Lent, PoolError> {
        if home.is_some() && !self.inner.homed.load(Ordering::Relaxed) {
            self.inner.homed.store(true, Ordering::Relaxed);
        }
        loop {
            {
                let mut state = self.inner.lock();
                let c = match state.take(Some(home)) {
                    // Without a home of its own the caller borrows any idle connection
                    // rather than open one that shard requests would then use.
                    None if home.is_none() => state.take(None),
                    c => c,
                };
                if let Some(c) = c {
                    return Ok(Lent::Own(self.lend(c)));
                }
            }
            if let Ok(room) = self.inner.room.clone().try_acquire_owned() {
                return self.open(room, home).await.map(Lent::Own);
            }
            let mut rx = {
                let mut state = self.inner.lock();
                if let Some(c) = state.take(None) {
                    return Ok(Lent::Own(self.lend(c)));
                }
                state.enqueue(home, alone)
            };
            let room = tokio::select! {
                c = &mut rx => match c {
                    Ok(c) => return Ok(self.handed(c)),
                    Err(_) => continue,
                },
                room = self.inner.room.clone().acquire_owned() => room.ok(),
                () = tokio::time::sleep_until(deadline) => None,
            };
            // A connection handed over meanwhile is used rather than lost with `rx`.
            rx.close();
            if let Ok(c) = rx.try_recv() {
                return Ok(self.handed(c));
            }
            match room {
                Some(room) => return self.open(room, home).await.map(Lent::Own),
                None if tokio::time::Instant::now() >= deadline => {
                    return Err(PoolError::Timeout {
                        size: self.inner.size,
                        wait: self.inner.wait,
                    });
                }
                None => {}
            }
        }
    }

    /// Opens a connection on the caller's runtime, where its I/O task then runs.
    async fn open(
        &self,
        room: OwnedSemaphorePermit,
        home: Option<ThreadId>,
    ) -> Result<PgClient, PoolError> {
        let connect = self.inner.config.connect(self.inner.tls.clone());
        let (client, connection) = tokio::time::timeout(self.inner.connect, connect)
            .await
            .map_err(|_| PoolError::ConnectTimeout(self.inner.connect))?
            .map_err(PoolError::Connect)?;
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "database connection ended with an error");
            }
        });
        Ok(self.lend(Idle {
            client: ClientWrapper::new(client, task),
            home,
            _room: room,
        }))
    }

    fn handed(&self, c: Handed) -> Lent {
        match c {
            Handed::Own(c) => Lent::Own(self.lend(c)),
            Handed::Joined(c) => Lent::Joined(c),
        }
    }

    fn lend(&self, c: Idle) -> PgClient {
        PgClient {
            conn: ManuallyDrop::new(c),
            pool: self.inner.clone(),
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes back a connection: to the request that [`State::next_waiter`] picks, else into
    /// `idle`. A closed one is dropped (its room freed), and so is one without a home once
    /// shard threads use the pool (the module documentation says why): a request waiting
    /// for room then opens one on its own thread.
    fn put(&self, mut c: Idle) {
        if c.client.is_closed() || (c.home.is_none() && self.homed.load(Ordering::Relaxed)) {
            return;
        }
        let mut state = self.lock();
        let now = Instant::now();
        while let Some(waiter) = state.next_waiter(c.home, now) {
            match waiter.tx.send(Handed::Own(c)) {
                Ok(()) => return,
                // That request stopped waiting.
                Err(Handed::Own(back)) => c = back,
                // Not what was sent.
                Err(Handed::Joined(_)) => return,
            }
        }
        state.idle.push(c);
    }
}

impl State {
    /// The request a connection of `home` coming back at `now` goes to: the longest waiting
    /// one of the same thread, unless the longest waiting of all has waited [`PATIENCE`]
    /// (or there is none of that thread); then that one.
    fn next_waiter(&mut self, home: Option<ThreadId>, now: Instant) -> Option<Waiter> {
        let first = self.waiters.front()?;
        let i = if first.home == home || now.duration_since(first.since) >= PATIENCE {
            0
        } else {
            self.waiters
                .iter()
                .position(|w| w.home == home)
                .unwrap_or(0)
        };
        self.waiters.remove(i)
    }

    /// Queues a request of `home`'s for a connection, for statements that run `alone` or
    /// not; it is handed one on the channel.
    fn enqueue(&mut self, home: Option<ThreadId>, alone: bool) -> oneshot::Receiver<Handed> {
        let (tx, rx) = oneshot::channel();
        self.waiters.retain(|w| !w.tx.is_closed());
        self.waiters.push_back(Waiter {
            home,
            alone,
            since: Instant::now(),
            tx,
        });
        rx
    }

    /// Forgets the lent connections no one holds any more.
    fn prune(&mut self) {
        self.shared.retain(|l| l.client.strong_count() > 0);
    }

    /// How many connections lent to statements that run alone are answering them.
    fn answering(&mut self, now: Instant) -> usize {
        self.prune();
        let stuck = self.stuck;
        self.shared
            .iter()
            .filter(|l| l.answering(now, stuck))
            .count()
    }

    /// Whether an open idle connection has home `home` (`None`: any home).
    fn has_idle(&self, home: Option<Option<ThreadId>>) -> bool {
        self.idle
            .iter()
            .any(|c| home.is_none_or(|h| c.home == h) && !c.client.is_closed())
    }

    /// The least busy connection lent to statements that run alone and answering them at
    /// `now` (one finished within [`State::stuck`]), of the caller's thread (`home`) or, with
    /// `any_thread`, of any thread, the caller's first. None while a request waits for a
    /// connection of its own: lent connections are left to drain for it.
    fn join(
        &mut self,
        home: Option<ThreadId>,
        any_thread: bool,
        now: Instant,
    ) -> Option<Arc<PgClient>> {
        if self.waiters.iter().any(|w| !w.alone && !w.tx.is_closed()) {
            return None;
        }
        self.prune();
        let stuck = self.stuck;
        let l = self
            .shared
            .iter()
            .filter(|l| (any_thread || l.home == home) && l.answering(now, stuck))
            .filter(|l| l.client.strong_count() < SHARED_DEPTH)
            .min_by_key(|l| (l.home != home, l.client.strong_count()))?;
        l.client.upgrade()
    }

    /// A statement on `c`, a connection lent to statements that run alone, has finished.
    fn finished(&mut self, c: &Arc<PgClient>, now: Instant) {
        if let Some(l) = self
            .shared
            .iter_mut()
            .find(|l| std::ptr::eq(l.client.as_ptr(), Arc::as_ptr(c)))
        {
            l.progress = now;
        }
    }

    /// Lends `c`, a connection lent to statements that run alone, to the requests for such
    /// statements at the head of the queue while it has room for them ([`SHARED_DEPTH`]),
    /// counting `leaving` holders of `c` as gone already. A request for a connection of its
    /// own at the head stops it: `c` is left to drain for that one.
    fn hand_out(&mut self, c: &Arc<PgClient>, leaving: usize) {
        while Arc::strong_count(c).saturating_sub(leaving) < SHARED_DEPTH {
            match self.waiters.front() {
                Some(w) if w.tx.is_closed() => {}
                Some(w) if w.alone => {}
                _ => return,
            }
            if let Some(w) = self.waiters.pop_front() {
                // A request that stopped waiting drops its clone, never the last hold: the
                // caller holds `c`.
                let _ = w.tx.send(Handed::Joined(c.clone()));
            }
        }
    }

    /// The most recently used idle connection whose home is `home` (`None`: any), dropping
    /// closed ones on the way.
    fn take(&mut self, home: Option<Option<ThreadId>>) -> Option<Idle> {
        self.idle.retain(|c| !c.client.is_closed());
        let i = match home {
            Some(h) => self.idle.iter().rposition(|c| c.home == h)?,
            None => self.idle.len().checked_sub(1)?,
        };
        Some(self.idle.remove(i))
    }
}

/// A connection taken from a [`PgPool`] (derefs to deadpool-postgres's client, with its
/// statement cache); back in the pool when dropped.
pub struct PgClient {
    /// Moved back into the pool (or dropped) by `drop`, and only there.
    conn: ManuallyDrop<Idle>,
    pool: Arc<Inner>,
}

impl Deref for PgClient {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.conn.client
    }
}

impl DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut ClientWrapper {
        &mut self.conn.client
    }
}

/// A connection taken from a [`PgPool`] by [`PgPool::shared`]: other statements that run
/// alone may use it at the same time. Back in the pool when the last one is dropped.
pub struct SharedClient(Arc<PgClient>);

impl Deref for SharedClient {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        &self.0
    }
}

impl Drop for SharedClient {
    fn drop(&mut self) {
        // Its place on the connection goes to a request waiting for one. (The last holder
        // gives the connection back instead, through `PgClient`'s drop.)
        if Arc::strong_count(&self.0) > 1 {
            let mut state = self.0.pool.lock();
            state.finished(&self.0, Instant::now());
            state.hand_out(&self.0, 1);
        }
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        // SAFETY: `conn` is taken once, here, and `self` is not used after `drop`.
        let c = unsafe { ManuallyDrop::take(&mut self.conn) };
        self.pool.put(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_id() -> ThreadId {
        std::thread::spawn(|| std::thread::current().id())
            .join()
            .expect("thread")
    }

    /// Waiters of `homes`, the longest waiting first, each `ago` before `now`; the receivers
    /// keep the senders open.
    fn waiting(
        homes: &[(Option<ThreadId>, Duration)],
        now: Instant,
    ) -> (State, Vec<oneshot::Receiver<Handed>>) {
        let mut rxs = Vec::new();
        let waiters = homes
            .iter()
            .map(|&(home, ago)| {
                let (tx, rx) = oneshot::channel();
                rxs.push(rx);
                Waiter {
                    home,
                    alone: false,
                    since: now - ago,
                    tx,
                }
            })
            .collect();
        let state = State {
            idle: Vec::new(),
            waiters,
            shared: Vec::new(),
            stuck: STUCK,
        };
        (state, rxs)
    }

    #[test]
    fn a_connection_goes_to_its_own_thread_until_another_has_waited_too_long() {
        let (a, b) = (Some(thread_id()), Some(thread_id()));
        let now = Instant::now();
        let fresh = Duration::ZERO;
        let long = PATIENCE * 2;

        // The oldest request is of thread A, but B's connection goes to B's request.
        let (mut s, _rx) = waiting(&[(a, fresh), (b, fresh), (b, fresh)], now);
        let w = s.next_waiter(b, now).expect("a waiter");
        assert_eq!(w.home, b);
        assert_eq!(s.waiters.len(), 2);
        assert_eq!(s.waiters[0].home, a, "A's request keeps its place");

        // A's request has waited its patience out: it takes B's connection.
        let (mut s, _rx) = waiting(&[(a, long), (b, fresh)], now);
        assert_eq!(s.next_waiter(b, now).expect("a waiter").home, a);

        // No request of B's thread: the longest waiting one, whatever its thread.
        let (mut s, _rx) = waiting(&[(a, fresh), (None, fresh)], now);
        assert_eq!(s.next_waiter(b, now).expect("a waiter").home, a);

        // A connection without a home goes to the longest waiting request of any thread.
        let (mut s, _rx) = waiting(&[(a, fresh), (b, fresh)], now);
        assert_eq!(s.next_waiter(None, now).expect("a waiter").home, a);

        let (mut s, _rx) = waiting(&[], now);
        assert!(s.next_waiter(a, now).is_none());
    }
}
