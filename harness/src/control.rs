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

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    /// also die with the harness, see `run`), and nobody would ever release it.
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

/// A mapped control segment; the creator unlinks it on drop.
#[derive(Debug)]
pub struct ControlSegment {
    name: CString,
    base: NonNull<ControlWords>,
    owner: bool,
    _fd: OwnedFd,
}

impl ControlSegment {
    /// Creates the control segment `name` (exclusive, mode 0600).
    pub fn create(name: &str) -> Result<Self, String> {
        Self::open(name, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, true)
    }

    /// Attaches to the control segment `name`.
    pub fn attach(name: &str) -> Result<Self, String> {
        Self::open(name, libc::O_RDWR, false)
    }

    fn open(name: &str, flags: libc::c_int, owner: bool) -> Result<Self, String> {
        let c_name =
            CString::new(format!("/{name}")).map_err(|_| format!("bad control name {name:?}"))?;
        let fail = |op: &str| format!("{op} {name}: {}", std::io::Error::last_os_error());
        // SAFETY: c_name is a valid C string.
        let raw = unsafe { libc::shm_open(c_name.as_ptr(), flags, 0o600) };
        if raw < 0 {
            return Err(fail("shm_open"));
        }
        // SAFETY: a fresh fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let unlink_on_error = |e: String| {
            if owner {
                // SAFETY: c_name is valid; undoes our own creation.
                unsafe { libc::shm_unlink(c_name.as_ptr()) };
            }
            e
        };
        // SAFETY: fd is valid. Attachers re-set the same size, which changes nothing.
        if owner && unsafe { libc::ftruncate(fd.as_raw_fd(), CONTROL_LEN as libc::off_t) } != 0 {
            return Err(unlink_on_error(fail("ftruncate")));
        }
        // SAFETY: a fresh shared mapping of our fd.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CONTROL_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(unlink_on_error(fail("mmap")));
        }
        let base =
            NonNull::new(ptr.cast()).ok_or_else(|| unlink_on_error("mmap returned null".into()))?;
        Ok(Self {
            name: c_name,
            base,
            owner,
            _fd: fd,
        })
    }

    /// The shared words.
    pub fn words(&self) -> &ControlWords {
        // SAFETY: the mapping is CONTROL_LEN bytes, page-aligned, zero-initialised by
        // ftruncate (a valid ControlWords), alive as long as self, and accessed only atomically.
        unsafe { self.base.as_ref() }
    }
}

impl Drop for ControlSegment {
    fn drop(&mut self) {
        // SAFETY: base is our mapping of CONTROL_LEN bytes; no reference outlives self.
        unsafe { libc::munmap(self.base.as_ptr().cast(), CONTROL_LEN) };
        if self.owner {
            // SAFETY: name is a valid C string we created.
            unsafe { libc::shm_unlink(self.name.as_ptr()) };
        }
    }
}
