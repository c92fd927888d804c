//! The identity written into every lock word and busy slot: which process holds it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

// Relaxed everywhere: the value is only ever this process's own pid, written before use on
// this thread (Once) or by the fork child handler before any other thread exists in the child.
static PID: AtomicU32 = AtomicU32::new(0);
static INIT: Once = Once::new();

extern "C" fn refresh_after_fork() {
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    PID.store(unsafe { libc::getpid() } as u32, Ordering::Relaxed);
}

/// The pid of this process, cached, and refreshed in the child after `fork`.
///
/// A pid is never 0, so 0 can mean "nobody" in lock words.
#[inline]
pub fn current_owner() -> u32 {
    INIT.call_once(|| {
        refresh_after_fork();
        // SAFETY: the handler is an `extern "C" fn()` that only calls getpid and stores an
        // atomic, which is allowed in a child after fork.
        unsafe { libc::pthread_atfork(None, None, Some(refresh_after_fork)) };
    });
    PID.load(Ordering::Relaxed)
}
