//! The heap's space and its lock: taking space at the top, growing the file, reserving and
//! punching pages, and the heap lock that every change of space is made under
//! (`store.rs` has the layout and the rules they keep).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use super::classes::{Class, PAGE};
use super::free_list::{push_marked, PUNCHED};
use super::store::{Heap, W_HEADS, W_LEN, W_LOCK_HOLDER, W_TOP};
use crate::byte_lock::{lock_byte, ByteLock};
use crate::error::{Error, Result};
use crate::owner::current_owner;
use crate::shm_file::{allocate_range, file_len, io_err, punch_hole};

/// The byte of the heap file its lock is taken on.
const LOCK_BYTE: u64 = 0;

/// The heap lock, held until dropped: closing its description releases it.
///
/// Its holder is stamped in header word `W_LOCK_HOLDER` for as long as it holds it, so that
/// the next taker knows when a holder died inside (the kernel released the lock, and nothing
/// else tells): it may have left blocks no list names (a trim with a class's list popped, a
/// drain half done), and a sweep is asked for. A death of a process that held no lock leaves
/// nothing for a sweep (`sweep.rs`), so this and the repair of a dead writer are the only
/// requests.
///
/// | word | meaning |
/// |---|---|
/// | 0 | nobody holds the lock, or a taker has it and has not yet stamped it |
/// | owner | `owner` holds the lock (or died holding it, when found by a taker) |
pub(super) struct HeapLock<'a> {
    holder: &'a AtomicU64,
    _lock: ByteLock,
}

impl Drop for HeapLock<'_> {
    fn drop(&mut self) {
        // Relaxed: under the lock, which the field dropped next releases (the OFD lock's
        // release and the next taking order the two).
        self.holder.store(0, Ordering::Relaxed);
    }
}

impl Heap {
    /// `bytes` at the end of the heap, aligned to `align` (a power of two, at least a page),
    /// growing the file when needed; the caller holds the heap lock.
    pub(super) fn take_space(&self, bytes: u64, align: u64) -> Result<u64> {
        // Relaxed: only the holder of the heap lock writes `top`.
        let top = self.header(W_TOP).load(Ordering::Relaxed);
        // Runs end below `top`, and `top` within the file: a hostile one past it would place
        // a run in no man's land (or, wrapping, over the header).
        let len = self.checked_len()?;
        if top < PAGE as u64 || top % PAGE as u64 != 0 || top > len {
            return Err(self.corrupt(format!("the heap's top {top:#x} is not in its {len} bytes")));
        }
        let start = top.next_multiple_of(align);
        let end = start
            .checked_add(bytes)
            .filter(|&e| e <= self.reserve as u64)
            .ok_or_else(|| self.full(bytes))?;
        self.grow_file(end)?;
        // Release: a sweep that walks runs up to `top` sees their headers.
        self.header(W_TOP).store(end, Ordering::Release);
        Ok(start)
    }

    pub(super) fn full(&self, bytes: u64) -> Error {
        Error::NoSpace {
            fs: format!("the heap's reservation of {} bytes", self.reserve),
            name: self.location.label(),
            needed: bytes,
            available: 0,
        }
    }

    /// Makes the file at least `needed` bytes long (doubling, at most 1 GiB at a time, within
    /// the reservation), then raises `heap_len`; the caller holds the heap lock or creates.
    pub(super) fn grow_file(&self, needed: u64) -> Result<()> {
        // Relaxed: only the holder of the heap lock (or the creator) writes it.
        let len = self.header(W_LEN).load(Ordering::Relaxed);
        if needed <= len {
            return Ok(());
        }
        let step = len.clamp(PAGE as u64, 1 << 30);
        let new = needed.max(len + step).next_multiple_of(PAGE as u64);
        let new = new.min(self.reserve as u64);
        // Never cut the file: `heap_len` below its length (a header damaged) would fault every
        // handle that checked the longer length.
        let file = file_len(&self.fd, &self.location.label())? as u64;
        // SAFETY: ftruncate on our own descriptor, only ever lengthening: adds zero pages.
        if new > file && unsafe { libc::ftruncate(self.fd.as_raw_fd(), new as libc::off_t) } != 0 {
            return Err(io_err("ftruncate", &self.location.label()));
        }
        // Release: whoever loads the new length (Acquire) finds the file that long.
        self.header(W_LEN).store(new, Ordering::Release);
        Ok(())
    }

    /// Reserves the pages of `[from, from + bytes)` before anyone writes them, so a full file
    /// system is `NoSpace`, not a SIGBUS (idempotent: pages reserved already stay).
    pub(super) fn reserve_pages(&self, from: u64, bytes: u64) -> Result<()> {
        let start = from / PAGE as u64 * PAGE as u64;
        let end = (from + bytes).next_multiple_of(PAGE as u64);
        allocate_range(self.raw_fd(), start, end - start, &self.location)
    }

    /// Gives the pages of `[from, to)` (page-aligned) back to the kernel; they read as zeros.
    pub(super) fn punch(&self, from: u64, to: u64) {
        let _ = punch_hole(self.raw_fd(), from, to);
    }

    /// For a free block `b` of class `c` about to go on its list, whose link word reads
    /// `link` (0 if unknown): the flags to push it with. A block of a run larger than
    /// `MIN_RUN` (blocks of about 2 KiB and more, whose carvers reserve pages block by
    /// block, and whose links lie in the run's header page) has its whole pages punched,
    /// unless the link says they are already, so a free block holds no page while it waits
    /// but for those it shares with a neighbour (after churn, the free blocks of runs that
    /// still hold a record were a third of a map's pages); its next allocator reserves them
    /// again (`alloc_small`).
    pub(super) fn punch_free(&self, c: Class, b: u64, link: u64) -> u64 {
        if c.run().links == 0 {
            return 0;
        }
        if link & PUNCHED == 0 {
            let from = b.next_multiple_of(PAGE as u64);
            let to = (b + c.block() as u64) / PAGE as u64 * PAGE as u64;
            if to > from {
                self.punch(from, to);
            }
        }
        PUNCHED
    }

    /// Reserves the pages of block `b` of class `c`, just popped, if they were punched while
    /// it was free (see `punch_free`); `NoSpace` with the block back on its list if the file
    /// system is full.
    #[cold]
    pub(super) fn refill(&self, c: Class, b: u64) -> Result<()> {
        let link = self.link_or_corrupt(c, b)?;
        // Relaxed: the block is ours since the pop, whose Acquire ordered its push's store.
        if link.load(Ordering::Relaxed) & PUNCHED == 0 {
            return Ok(());
        }
        if let Err(e) = self.reserve_pages(b, c.block() as u64) {
            self.mark(c, b, false)?;
            push_marked(self.header(W_HEADS + c.index()), b, link, PUNCHED);
            return Err(e);
        }
        Ok(())
    }

    /// Takes the heap lock: an OFD lock on byte 0 through a new description of the file, so
    /// it excludes other threads of this process as well as other processes, and goes when
    /// its holder dies.
    pub(super) fn lock(&self) -> Result<HeapLock<'_>> {
        self.lock_within(true)
            .map(|l| l.expect("a patient lock waits"))
    }

    /// The heap lock if nobody holds it; `None` at once if someone does.
    pub(super) fn try_lock(&self) -> Result<Option<HeapLock<'_>>> {
        self.lock_within(false)
    }

    fn lock_within(&self, wait: bool) -> Result<Option<HeapLock<'_>>> {
        let Some(lock) = lock_byte(
            self.fd.as_raw_fd(),
            &self.location,
            LOCK_BYTE,
            wait,
            "the heap lock",
        )?
        else {
            return Ok(None);
        };
        let holder = self.header(W_LOCK_HOLDER);
        // Relaxed: under the lock; its last holder's stores are ordered before our taking it.
        if holder.swap(u64::from(current_owner()), Ordering::Relaxed) != 0 {
            self.request_sweep();
        }
        Ok(Some(HeapLock {
            holder,
            _lock: lock,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::super::store::{Heap, W_LOCK_HOLDER};
    use crate::shm_file::Location;

    /// A heap lock taken and released asks for nothing; one whose holder's stamp is still
    /// there when it is taken (the holder died inside: the kernel released the lock) asks
    /// for a sweep, and the taker's release clears the stamp.
    #[test]
    fn a_heap_lock_left_by_a_dead_holder_asks_for_a_sweep() {
        let location = Location::Shm(format!("shmap-unit-heaplock-{}", std::process::id()));
        let heap = Heap::create(&location, 1 << 30).unwrap();
        drop(heap.lock().unwrap());
        drop(heap.try_lock().unwrap().expect("nobody holds it"));
        assert!(!heap.sweep_due());
        // What a holder killed inside leaves: its stamp, with the lock released.
        heap.header(W_LOCK_HOLDER).store(12345, Ordering::Relaxed);
        let lock = heap.lock().unwrap();
        assert!(heap.sweep_due());
        drop(lock);
        assert_eq!(heap.header(W_LOCK_HOLDER).load(Ordering::Relaxed), 0);
        heap.sweep_answered();
        drop(heap.lock().unwrap());
        assert!(!heap.sweep_due());
        drop(heap);
        let _ = location.unlink_one();
    }
}
