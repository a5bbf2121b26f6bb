//! Shards: threads that each run a single-threaded runtime of their own. The accept loop
//! hands every connection to one of them, and the connection, its requests and its
//! connections to the app then live on that thread for good.
//!
//! Why: a small pass-through request is a handful of network events, and on tokio's
//! work-stealing runtime each event batch tends to wake the other worker (a futex call and a
//! context switch each time), which measured as a tenth of the sidecar's CPU per request
//! and most of its tail latency beside nginx, whose workers never share a connection. On a
//! shard the only cross-thread hand-off is the new connection itself.
//!
//! Used by the `run` command ([`super::start_sharded`]); the library's [`super::start`]
//! serves on the caller's runtime, as the tests do.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Work for a shard: runs on the shard's runtime, where it spawns the connection's task.
type Job = Box<dyn FnOnce() + Send>;

/// The shard threads, and the round-robin hand-off to them.
pub struct Shards {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Shards {
    /// Starts `n` shard threads. They end when the `Shards` is dropped (after the accept
    /// loop has waited for its connections), dropping what is still running on them.
    pub fn start(n: usize) -> std::io::Result<Shards> {
        let mut senders = Vec::new();
        for i in 0..n.max(1) {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("scim-sidecar-shard-{i}"))
                .spawn(move || {
                    rt.block_on(async move {
                        while let Some(job) = rx.recv().await {
                            job();
                        }
                    });
                })?;
            senders.push(tx);
        }
        crate::backend::set_shard_threads(senders.len());
        Ok(Shards {
            senders,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `task` on the next shard with `tcp` registered on that shard's runtime.
    pub fn spawn<F, Fut>(&self, tcp: TcpStream, task: F)
    where
        F: FnOnce(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Deregistered from this runtime; stays non-blocking for the next.
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "cannot hand a connection to a shard");
                return;
            }
        };
        let job: Job = Box::new(move || match TcpStream::from_std(std) {
            Ok(tcp) => {
                tokio::spawn(task(tcp));
            }
            Err(e) => tracing::debug!(error = %e, "a shard cannot take a connection"),
        });
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if let Some(tx) = self.senders.get(i) {
            let _ = tx.send(job);
        }
    }
}
