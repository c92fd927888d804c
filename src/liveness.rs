//! Knowing whether another process is alive, without being fooled by zombies or pid reuse:
//! open-file-description byte locks (`F_OFD_SETLK`) on the segment file, as LMDB checks its
//! readers.
//!
//! A process proves it is alive by holding a write lock on one byte per registry record it
//! uses, through its own open file description of the segment. The kernel drops the lock when
//! the last descriptor of that description is closed, which happens when the process exits,
//! before it becomes a zombie. A pid is never consulted, so pid reuse cannot fool the check.
//! Anyone who can take the byte's lock knows its last holder is gone.
//!
//! Fork: a child inherits the parent's descriptors and so would keep the parent's locks alive
//! after the parent dies. A `pthread_atfork` child handler closes every lock descriptor in the
//! child, so locks always belong to the process that took them. The child takes new ones when
//! it next writes (see `shmap-backends`' registry).

use std::io;
use std::os::fd::{IntoRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};
use std::sync::Once;

use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::shm_file::{ofd_lock, ofd_lock_wait, reopen, Location};

/// One lock descriptor's cell in a process-wide list the fork handler can walk without
/// allocating or locking (it runs in a child where only async-signal-safe calls are allowed).
/// Nodes are leaked and reused: a process has as many as it ever had lock files open at once.
struct Node {
    fd: AtomicI32,
    in_use: AtomicBool,
    next: *mut Node,
}

static NODES: AtomicPtr<Node> = AtomicPtr::new(ptr::null_mut());
static HANDLER: Once = Once::new();

extern "C" fn close_inherited_locks() {
    // Acquire: every node pushed before the fork is fully initialised for us.
    let mut node = NODES.load(Ordering::Acquire);
    while !node.is_null() {
        // SAFETY: nodes are leaked, never freed, so every pointer in the list stays valid.
        let n = unsafe { &*node };
        // Relaxed: the child has one thread; the swap only keeps Drop from closing it again.
        let fd = n.fd.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: close is async-signal-safe; fd is a descriptor this list owns.
            unsafe { libc::close(fd) };
        }
        node = n.next;
    }
}

fn node_for(fd: RawFd) -> &'static Node {
    HANDLER.call_once(|| {
        // SAFETY: the handler only walks the leaked list and calls close, both allowed in a
        // child after fork.
        unsafe { libc::pthread_atfork(None, None, Some(close_inherited_locks)) };
    });
    // Reuse a free node first. Acquire pairs with the Release push below.
    let mut p = NODES.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: leaked nodes are valid for ever.
        let n = unsafe { &*p };
        // Acquire: the previous user's close happened before we reuse the cell.
        if n.in_use
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            n.fd.store(fd, Ordering::Release);
            return n;
        }
        p = n.next;
    }
    let node = Box::leak(Box::new(Node {
        fd: AtomicI32::new(fd),
        in_use: AtomicBool::new(true),
        next: ptr::null_mut(),
    }));
    let mut head = NODES.load(Ordering::Relaxed);
    loop {
        node.next = head;
        // Release: the node's fields are visible to whoever loads it from the list.
        match NODES.compare_exchange_weak(head, node, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return node,
            Err(h) => head = h,
        }
    }
}

/// This process's own open file description of a segment, on which it takes its liveness
/// locks. Closed on drop, and in a fork child at once.
#[derive(Debug)]
pub struct LockFile {
    node: &'static Node,
    segment_fd: RawFd,
    location: Location,
    name: String,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fd {}", self.fd.load(Ordering::Relaxed))
    }
}

// SAFETY: `Node` holds atomics and a pointer that is only written before the node is published.
unsafe impl Sync for Node {}
// SAFETY: as above.
unsafe impl Send for Node {}

impl LockFile {
    /// Opens a new description of `segment`'s file (not a `dup`, which would share locks).
    pub fn open(segment: &Segment) -> Result<Self> {
        Self::open_fd(segment.raw_fd(), segment.location(), segment.name())
    }

    /// [`LockFile::open`] for any file of ours: `fd` is a descriptor of it we keep open (a
    /// fork child renews through it), `location` and `name` where it is and what errors call it.
    pub fn open_fd(fd: RawFd, location: &Location, name: &str) -> Result<Self> {
        let own = reopen(fd, location)?;
        Ok(Self {
            node: node_for(own.into_raw_fd()),
            segment_fd: fd,
            location: location.clone(),
            name: name.to_owned(),
        })
    }

    /// After a fork closed this file in the child: a new description, holding no locks. The
    /// segment's own descriptor was inherited, so this works even if the name is gone.
    pub fn renew(&mut self) -> Result<()> {
        let fd = reopen(self.segment_fd, &self.location)?;
        let old = self.node.fd.swap(fd.into_raw_fd(), Ordering::Relaxed);
        if old >= 0 {
            // SAFETY: the description we owned; replaced above, so nobody else closes it.
            unsafe { libc::close(old) };
        }
        Ok(())
    }

    fn fcntl(&self, byte: usize, kind: libc::c_int) -> io::Result<bool> {
        // Relaxed: a process-local cell; -1 after a fork, which fcntl rejects with EBADF.
        ofd_lock(
            self.node.fd.load(Ordering::Relaxed),
            byte as u64,
            kind,
            false,
        )
    }

    fn io(&self, op: &'static str, source: io::Error) -> Error {
        Error::Io {
            op,
            name: self.name.clone(),
            source,
        }
    }

    /// Takes the lock on `byte` unless another description holds it. Taking a byte this
    /// description already holds succeeds: callers must not ask about their own bytes.
    pub fn try_lock(&self, byte: usize) -> Result<bool> {
        self.fcntl(byte, libc::F_WRLCK)
            .map_err(|e| self.io("fcntl(F_OFD_SETLK)", e))
    }

    /// Takes a shared lock on `byte`, waiting while another description holds it exclusively.
    pub fn lock_shared(&self, byte: usize) -> Result<()> {
        // Relaxed: as in `fcntl`.
        ofd_lock_wait(
            self.node.fd.load(Ordering::Relaxed),
            byte as u64,
            libc::F_RDLCK,
        )
        .map_err(|e| self.io("fcntl(F_OFD_SETLKW)", e))
    }

    /// Releases `byte`.
    pub fn unlock(&self, byte: usize) -> Result<()> {
        self.fcntl(byte, libc::F_UNLCK)
            .map(drop)
            .map_err(|e| self.io("fcntl(F_OFD_SETLK, F_UNLCK)", e))
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Relaxed: process-local cell; `in_use` Release below orders it for the next user.
        let fd = self.node.fd.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            // SAFETY: we own fd; closing drops every lock this description holds.
            unsafe { libc::close(fd) };
        }
        self.node.in_use.store(false, Ordering::Release);
    }
}
