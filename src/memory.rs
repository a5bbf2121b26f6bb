//! Giving memory back. A response with a large member list is built and freed in a few
//! milliseconds, but the C allocator (glibc) keeps freed memory in its arenas, so one burst of
//! large responses left the sidecar's RSS at several times its idle size for good. In a pod
//! that shares a memory limit with the app, that is memory taken from the app.
//!
//! - [`tune`] (at start-up) makes allocations of 256 KiB and more (response bodies) come from
//!   and return to the kernel directly, instead of glibc's default threshold, which grows up to
//!   32 MiB after the first large free and then keeps such buffers in the heap.
//! - [`note_large`] is called when a large response was built; a background task
//!   ([`spawn_trimmer`]) then asks glibc to return its free pages (`malloc_trim`) once a
//!   second for the next few seconds (its body is freed once sent), and not otherwise.
//!
//! Elsewhere than glibc (musl in a static image) these do nothing.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Trims still to do: a large response's body is freed when it has been sent, which may be
/// after the next tick, so a few ticks follow each one.
static PENDING: AtomicU8 = AtomicU8::new(0);

/// Ticks that trim after a large response.
const TRIMS: u8 = 3;

/// Responses at least this large ask for a trim.
pub const LARGE_BYTES: usize = 1 << 20;

/// Sets the allocator's thresholds; call once, before serving.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's tunables; called once at start-up.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Records that a large response was built (and will be freed soon).
pub fn note_large() {
    PENDING.store(TRIMS, Ordering::Relaxed);
}

/// Returns freed memory to the kernel once a second after large responses, until the
/// runtime stops.
pub fn spawn_trimmer() {
    tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let pending = PENDING.load(Ordering::Relaxed);
            if pending > 0 {
                let _ = PENDING.compare_exchange(
                    pending,
                    pending - 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                trim();
            }
        }
    });
}

fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
