//! The start barrier and abort flag that the harness and its workers share: a one-page POSIX
//! shared-memory segment of its own (`<map name>-ctl`), or plain memory for in-process threads.
//!
//! | word    | written by                 | meaning                                       |
//! |---------|----------------------------|-----------------------------------------------|
//! | `ready` | each worker, +1 (AcqRel)   | workers attached and waiting at the barrier    |
//! | `go`    | the harness, 0 -> 1 (Release) | start: every worker begins its warm-up       |
//! | `abort` | the harness, 0 -> 1 (Release) | stop now (a worker failed, or Ctrl-C)        |
//! | `ops`   | workers under `--kill-every`, + per batch | measured operations, kept when a worker is killed |
//! | `violations` | workers under `--kill-every`, +1 | torn or misplaced values read          |

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shared_memory::{Shmem, ShmemConf};

/// How long a worker waits at the start barrier: far past the harness's own wait for every
/// worker to arrive (30 s).
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(90);

/// The shared words.
#[derive(Debug, Default)]
#[repr(C)]
pub struct ControlWords {
    ready: AtomicU64,
    go: AtomicU64,
    abort: AtomicU64,
    ops: AtomicU64,
    violations: AtomicU64,
}

impl ControlWords {
    /// Called by a worker once it is attached: counts itself in and waits for `go`. A worker
    /// still waiting after [`BARRIER_TIMEOUT`] exits: its harness is gone or stuck (workers
    /// also die with the harness, see `workers`), and nobody would ever release it.
    pub fn arrive_and_wait(&self) {
        // AcqRel: the harness's Acquire load of `ready` sees our attachment done.
        self.ready.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        let deadline = std::time::Instant::now() + BARRIER_TIMEOUT;
        // Acquire: pairs with the harness's Release store of `go` / `abort`.
        while self.go.load(Ordering::Acquire) == 0 && !self.aborted() {
            spins += 1;
            if spins < 1000 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(100)); // bounds the start skew to ~0.1 ms
                if spins % 1024 == 0 && std::time::Instant::now() > deadline {
                    eprintln!("worker: not released within {BARRIER_TIMEOUT:?}; exiting");
                    std::process::exit(3);
                }
            }
        }
    }

    /// Workers waiting at the barrier.
    pub fn ready(&self) -> u64 {
        self.ready.load(Ordering::Acquire)
    }

    /// Lets every waiting worker start.
    pub fn release(&self) {
        self.go.store(1, Ordering::Release);
    }

    /// Tells every worker to stop at its next batch.
    pub fn abort(&self) {
        self.abort.store(1, Ordering::Release);
    }

    /// Counts `n` more measured operations.
    pub fn add_ops(&self, n: u64) {
        // Relaxed: a counter read after every worker is gone (reaping orders it).
        self.ops.fetch_add(n, Ordering::Relaxed);
    }

    /// Measured operations of every worker, killed ones included.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Counts one invariant violation seen by a worker.
    pub fn violation(&self) {
        self.violations.fetch_add(1, Ordering::Relaxed);
    }

    /// Violations seen by every worker, killed ones included.
    pub fn violations(&self) -> u64 {
        self.violations.load(Ordering::Relaxed)
    }

    /// Whether the run was aborted.
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire) != 0
    }
}

const CONTROL_LEN: usize = 4096;

/// A mapped control segment, through the `shared_memory` crate: it creates exclusively with
/// mode 0600, and its creator (the harness) unlinks the segment when the handle is dropped,
/// which is what a run's private segment needs. (User maps do not use it: they must outlive
/// their creator until an explicit unlink, and `Shmem` is not `Send`.)
pub struct ControlSegment {
    shmem: Shmem,
}

impl std::fmt::Debug for ControlSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ControlSegment({})", self.shmem.get_os_id())
    }
}

impl ControlSegment {
    /// Creates the control segment `name` (exclusive, mode 0600); unlinked on drop.
    pub fn create(name: &str) -> Result<Self, String> {
        let shmem = ShmemConf::new()
            .os_id(format!("/{name}"))
            .size(CONTROL_LEN)
            .create()
            .map_err(|e| format!("create control segment {name}: {e}"))?;
        Ok(Self { shmem })
    }

    /// Attaches to the control segment `name`.
    pub fn attach(name: &str) -> Result<Self, String> {
        let shmem = ShmemConf::new()
            .os_id(format!("/{name}"))
            .open()
            .map_err(|e| format!("attach control segment {name}: {e}"))?;
        if shmem.len() < std::mem::size_of::<ControlWords>() {
            return Err(format!("control segment {name} is {} bytes", shmem.len()));
        }
        Ok(Self { shmem })
    }

    /// The shared words.
    pub fn words(&self) -> &ControlWords {
        // SAFETY: the mapping is at least CONTROL_LEN bytes (checked on attach), page-aligned,
        // zero-initialised when created (a valid ControlWords), alive as long as self, and
        // accessed only atomically.
        unsafe { &*self.shmem.as_ptr().cast::<ControlWords>() }
    }
}
