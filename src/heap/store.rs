//! The heap file: its header, its runs, and allocating and freeing records in it
//! (`docs/variable-size-entries.md`, 2.2).
//!
//! ```text
//! 0          PAGE                                     top        heap_len      reserve
//! | header    | runs, each aligned to its own size     | (unused)  | (no file)    |
//! ```
//!
//! Header words: `0` magic (stored last, Release, at create), `1` version, `2` `heap_len`
//! (the file's length: raised only after `ftruncate` made it so), `3` `top` (the end of the
//! last run), `4` the first free large run, then one free-list head per class
//! ([`super::free_list`]), then one carve word per class, then the magazine areas'
//! high-water mark and, from word `W_AREAS`, one word per area (`areas.rs`).
//!
//! A run of small blocks is `RunShape::bytes` long (a power of two) and starts at a multiple
//! of it, so the run of a block is its offset rounded down: freeing needs no index. Its first
//! word is `class + 1 | pages << 8`, then the allocation bitmap, then the blocks. A large run
//! (a record over `MAX_SMALL`) is whole pages: its head word is `pages << 8` (class byte 0),
//! with bit 63 set while it is free and the next free large run in its second word; its record
//! starts [`LARGE_HEAD`] bytes in.
//!
//! Carve word of a class: `run / PAGE << 24 | next block`, 0 when the class has no run yet.
//! Blocks are carved by CAS, free lists popped by CAS; creating a run, growing the file and the
//! large runs take the heap lock (an OFD lock on the file's byte 0, through a description of
//! the caller's own: the kernel drops it if its holder dies, and it excludes threads of one
//! process as it does processes). Every step under the lock leaves the heap readable if its
//! holder dies half way: a run's header is written before `top` passes it, and a run is
//! installed in its carve word after, so a dead creator leaves at most an empty run.
//!
//! Every page is reserved (`posix_fallocate`) before its first write, so a full `/dev/shm`
//! is an `Error::NoSpace`, never a SIGBUS: a 64 KiB run whole when it is made, a larger run's
//! blocks one by one as they are carved. Pages nobody reserved or wrote cost nothing (the
//! file is sparse), which is what lets runs be aligned to their size for free.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use memmap2::MmapRaw;

use super::areas::{Mine, AREAS};
use super::classes::{Class, RunShape, CLASSES, MAX_SMALL, MIN_RUN, PAGE};
use super::free_list::{self, MAX_OFFSET};
use super::magazine::Gate;
use crate::error::{Error, Result};
use crate::shm_file::{file_len, io_err, map, Location};

/// "shmheap1".
pub const HEAP_MAGIC: u64 = u64::from_le_bytes(*b"shmheap1");
/// The heap layout this code reads. 2: the magazine areas' words in the header (a heap of
/// version 1 leaked a killed handle's magazines, and its code would not clear the areas).
/// 3: a run over 64 KiB keeps its blocks' free-list links in a header page of its own, its
/// blocks page-aligned after it (`classes::RunShape::links`).
pub const HEAP_VERSION: u64 = 3;
/// Address space each handle maps the heap into: its largest possible size. 64 GiB: a
/// process can hold about 2,000 maps open in the 128 TiB of a 47-bit address space.
pub const DEFAULT_RESERVE: usize = 1 << 36;
/// Where a large run's record starts: past its head words, on a cache line.
pub const LARGE_HEAD: u64 = 64;

const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
pub(super) const W_LEN: usize = 2;
pub(super) const W_TOP: usize = 3;
pub(super) const W_LARGE: usize = 4;
/// Blocks freed to the shared lists since the last trim (`trim.rs`; 0 in a new heap).
pub(super) const W_FREED: usize = 5;
/// The hash seed of the map the heap belongs to, at the byte offset a table segment keeps
/// its root's (`shm_file::SEED_OFFSET`), so one check finds both leftovers of a map.
const W_SEED: usize = 6;
/// How many of those make the next trim due (0: `trim::TRIM_MIN`).
pub(super) const W_TRIM_AT: usize = 7;
pub(super) const W_HEADS: usize = 8;
pub(super) const W_CARVE: usize = W_HEADS + CLASSES;
/// One past the highest magazine area ever claimed (`areas.rs`).
pub(super) const W_AREA_HIGH: usize = W_CARVE + CLASSES;
/// Requests for a sweep since the last one: nonzero asks for one (`sweep.rs`).
pub(super) const W_SWEEP_DUE: usize = W_AREA_HIGH + 1;
/// Sweeps made, ever (a statistic).
pub(super) const W_SWEEPS: usize = W_AREA_HIGH + 2;
/// Nonzero: a trim or a sweep found that a compaction would give back a tenth of the heap's
/// pages, and asks for one (`compact.rs`).
pub(super) const W_COMPACT_DUE: usize = W_AREA_HIGH + 3;
/// Compactions planned, ever (a statistic).
pub(super) const W_COMPACTIONS: usize = W_AREA_HIGH + 4;
/// The heap lock's holder while it holds it, 0 otherwise (`space.rs`): found nonzero by the
/// next taker, the holder died inside (0 in heaps made before it: a former pad word).
pub(super) const W_LOCK_HOLDER: usize = W_AREA_HIGH + 5;
/// The magazine areas' words (`areas.rs`).
pub(super) const W_AREAS: usize = W_AREA_HIGH + 8;
pub(super) const FREE_BIT: u64 = 1 << 63;

/// One handle's view of a map's heap file.
///
/// Each handle keeps a few blocks per small class that it freed (its magazines) for its own
/// next allocations of that class, as jemalloc's thread caches and the design's "magazine"
/// (`docs/variable-size-entries.md`, 2.4) do: an update then takes and gives back a block
/// without touching the class's shared free-list head or the run's bitmap, lines every writer
/// would otherwise bounce between cores (measured: writes of two processes at 0.24x the
/// slot layout's without them). A block in a magazine stays marked allocated in its run's
/// bitmap and is named by no bucket. The magazines lie in an area of the heap that the
/// handle holds by a lock the kernel drops when its process dies (`areas.rs`), so a handle
/// that drops gives them back, and those of a process killed are given back by the next
/// process to claim an area, or a trim.
#[derive(Debug)]
pub struct Heap {
    pub(super) fd: OwnedFd,
    pub(super) map: MmapRaw,
    pub(super) reserve: usize,
    pub(super) location: Location,
    /// The largest `heap_len` this handle has checked against the file's size.
    checked_len: AtomicU64,
    /// Per class, the try-lock of this handle's magazine (`magazine.rs`).
    pub(super) gates: Box<[Gate]>,
    /// Our magazine area's offset (0: none), valid while `area_pid` is our pid: a fork child
    /// finds its parent's there, and claims one of its own (`areas.rs`).
    pub(super) area: AtomicU64,
    pub(super) area_pid: AtomicU32,
    /// Our claim on an area, and its lock, taken on the first magazine use.
    pub(super) mine: Mutex<Mine>,
    /// Blocks this handle freed to the shared lists, counted into the header's `W_FREED` in
    /// batches (a shared counter bumped on every such free would be one more line bouncing).
    freed_here: AtomicU64,
}

/// Frees a handle counts before adding them to the heap's count (see `trim.rs`).
const FREED_BATCH: u64 = 256;

// SAFETY: the mapping is shared memory accessed only through atomics; the descriptor and the
// mapping live as long as the handle.
unsafe impl Send for Heap {}
// SAFETY: as above.
unsafe impl Sync for Heap {}

/// The index of `b` among the blocks of its run, were that a run of class `c`: `None` if `b`
/// does not lie where such a block would (arithmetic only: nothing is read).
#[inline]
pub(super) fn block_index(c: Class, b: u64) -> Option<u64> {
    let shape = c.run();
    if b < shape.bytes as u64 {
        return None; // the header page's span: runs are aligned to their size, none at 0
    }
    let within = (b & (shape.bytes as u64 - 1)).checked_sub(shape.header as u64)?;
    shape.index_of(within)
}

impl Drop for Heap {
    fn drop(&mut self) {
        self.release_area();
    }
}

impl Heap {
    /// Creates the heap file at `location` (an error if it exists), mapping `reserve` bytes
    /// of address space for it.
    pub fn create(location: &Location, reserve: usize) -> Result<Self> {
        Self::create_for(location, reserve, 0)
    }

    /// [`Heap::create`] for the map whose hash seed is `seed`, recorded in the header so that
    /// [`Heap::attach_for`] knows the heap is that map's (a map removed and made again under
    /// the same name has another).
    pub fn create_for(location: &Location, reserve: usize, seed: u64) -> Result<Self> {
        let fd = location.open(libc::O_RDWR | libc::O_CREAT | libc::O_EXCL)?;
        // The exact mode, as the map's own segment has (the umask applies to the open's).
        // SAFETY: fchmod on our own descriptor.
        let moded = match unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) } {
            0 => Ok(fd),
            _ => Err(io_err("fchmod", &location.label())),
        };
        let heap = moded
            .and_then(|fd| Self::map_file(fd, location, reserve))
            .and_then(|heap| {
                // The header page exists before anything touches it (the new file is empty).
                // SAFETY: ftruncate on our own descriptor.
                if unsafe { libc::ftruncate(heap.fd.as_raw_fd(), PAGE as libc::off_t) } != 0 {
                    return Err(io_err("ftruncate", &location.label()));
                }
                heap.reserve_pages(0, PAGE as u64)?;
                let h = |w| heap.header(w);
                // Relaxed: published by the magic's Release store below.
                h(W_LEN).store(PAGE as u64, Ordering::Relaxed);
                h(W_VERSION).store(HEAP_VERSION, Ordering::Relaxed);
                h(W_TOP).store(PAGE as u64, Ordering::Relaxed);
                h(W_SEED).store(seed, Ordering::Relaxed);
                h(W_MAGIC).store(HEAP_MAGIC, Ordering::Release);
                Ok(heap)
            });
        heap.inspect_err(|_| {
            let _ = location.unlink_one();
        })
    }

    /// Attaches to the heap file at `location` of the map whose hash seed is `seed`: a heap
    /// another map made is [`Error::NotFound`] (its map was removed and made again while we
    /// opened it: the caller opens the map again). Unless `trust_foreign`, a heap another
    /// user owns or others may write is [`Error::Untrusted`], as the map's own segment is.
    pub fn attach_for(
        location: &Location,
        reserve: usize,
        seed: u64,
        trust_foreign: bool,
    ) -> Result<Self> {
        let heap = Self::attach(location, reserve)?;
        if !trust_foreign {
            crate::shm_file::check_trusted(heap.fd.as_raw_fd(), &location.label())?;
        }
        if heap.header(W_SEED).load(Ordering::Relaxed) != seed {
            return Err(Error::NotFound(location.label()));
        }
        Ok(heap)
    }

    /// Attaches to the heap file at `location`.
    pub fn attach(location: &Location, reserve: usize) -> Result<Self> {
        let fd = location.open(libc::O_RDWR)?;
        let name = location.label();
        if file_len(&fd, &name)? < PAGE {
            return Err(Error::NotOurs {
                name,
                reason: "the heap file is shorter than its header".into(),
            });
        }
        let heap = Self::map_file(fd, location, reserve)?;
        // Acquire: pairs with the creator's Release store of the magic.
        if heap.header(W_MAGIC).load(Ordering::Acquire) != HEAP_MAGIC {
            return Err(Error::NotOurs {
                name,
                reason: "no heap magic number".into(),
            });
        }
        let version = heap.header(W_VERSION).load(Ordering::Relaxed);
        if version != HEAP_VERSION {
            return Err(Error::IncompatibleVersion {
                name,
                found: version,
                expected: HEAP_VERSION,
            });
        }
        heap.checked_len()?;
        Ok(heap)
    }

    fn map_file(fd: OwnedFd, location: &Location, reserve: usize) -> Result<Self> {
        let reserve = reserve.clamp(PAGE, MAX_OFFSET as usize + 8);
        let map = map(&fd, reserve, &location.label())?;
        Ok(Self {
            fd,
            map,
            reserve,
            location: location.clone(),
            checked_len: AtomicU64::new(0),
            gates: (0..CLASSES).map(|_| Gate::default()).collect(),
            area: AtomicU64::new(0),
            area_pid: AtomicU32::new(0),
            mine: Mutex::default(),
            freed_here: AtomicU64::new(0),
        })
    }

    /// Where the heap lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }

    pub(super) fn header(&self, w: usize) -> &AtomicU64 {
        debug_assert!(w < PAGE / 8);
        // SAFETY: the header page lies inside the mapping (reserve >= PAGE) and inside the
        // file (create sized it; attach checked it); it is 8-aligned and only ever accessed
        // atomically.
        unsafe { &*self.map.as_mut_ptr().cast::<AtomicU64>().add(w) }
    }

    pub(crate) fn corrupt(&self, reason: String) -> Error {
        Error::Corrupt {
            name: self.location.label(),
            reason,
        }
    }

    /// `heap_len` as far as the file backs it: a value past the file's end or the
    /// reservation is [`Error::Corrupt`], so no access can fault.
    pub(super) fn checked_len(&self) -> Result<u64> {
        // Acquire: pairs with the Release store that raised it after the ftruncate.
        let len = self.header(W_LEN).load(Ordering::Acquire);
        // Relaxed: a per-handle cache of a fact that never becomes false (files only grow).
        if len <= self.checked_len.load(Ordering::Relaxed) {
            return Ok(len);
        }
        let file = file_len(&self.fd, &self.location.label())? as u64;
        if len > file || len > self.reserve as u64 || len % PAGE as u64 != 0 {
            return Err(self.corrupt(format!(
                "the heap claims {len} bytes; its file has {file}, the reservation {}",
                self.reserve
            )));
        }
        self.checked_len.fetch_max(len, Ordering::Relaxed);
        Ok(len)
    }

    /// Whether the file backs the heap up to byte `end`: against the length this handle
    /// checked last (a per-handle word, so a reader's bounds check touches no shared line),
    /// and only past it against the header's (and the file's).
    #[inline(always)]
    fn backs(&self, end: u64) -> bool {
        // Relaxed: a per-handle cache of a fact that never becomes false (files only grow).
        end <= self.checked_len.load(Ordering::Relaxed)
            || self.checked_len().is_ok_and(|len| end <= len)
    }

    /// The heap's word at byte `offset`, if the file backs it; `None` outside or misaligned.
    /// The way in for every offset read from shared memory.
    #[inline]
    pub fn word(&self, offset: u64) -> Option<&AtomicU64> {
        if offset % 8 != 0 || !self.backs(offset.checked_add(8)?) {
            return None;
        }
        // SAFETY: offset + 8 <= the checked length, which the file and the mapping cover; the
        // word is 8-aligned and only ever accessed atomically.
        Some(unsafe {
            &*self
                .map
                .as_mut_ptr()
                .add(offset as usize)
                .cast::<AtomicU64>()
        })
    }

    /// The `n` words from byte `offset`, if the file backs all of them: one bounds check for
    /// a whole record (what a get copies), `None` outside or misaligned.
    #[inline]
    pub fn words(&self, offset: u64, n: usize) -> Option<&[AtomicU64]> {
        let end = offset.checked_add((n as u64).checked_mul(8)?)?;
        if offset % 8 != 0 || !self.backs(end) {
            return None;
        }
        // SAFETY: [offset, end) lies below the checked length, and is 8-aligned.
        Some(unsafe { self.words_unchecked(offset, n) })
    }

    /// The `n` words from byte `offset`, unchecked.
    ///
    /// # Safety
    ///
    /// `[offset, offset + 8n)` must be 8-aligned and lie below a length of the file that
    /// [`Heap::words`] once checked (the file never shrinks, and the mapping reserves its
    /// largest size); the words are only ever accessed atomically.
    #[inline]
    pub(super) unsafe fn words_unchecked(&self, offset: u64, n: usize) -> &[AtomicU64] {
        // SAFETY: the caller's promise: the file and the mapping cover these aligned words.
        unsafe {
            std::slice::from_raw_parts(
                self.map
                    .as_mut_ptr()
                    .add(offset as usize)
                    .cast::<AtomicU64>(),
                n,
            )
        }
    }

    pub(super) fn word_or_corrupt(&self, offset: u64, what: &str) -> Result<&AtomicU64> {
        self.word(offset)
            .ok_or_else(|| self.corrupt(format!("{what} at {offset:#x} lies outside the heap")))
    }

    /// Writes the heap's pages out to its file (`msync`): for a file-backed map, what a
    /// restart of the machine keeps.
    pub fn flush(&self) -> Result<()> {
        let len = self.checked_len()? as usize;
        self.map.flush_range(0, len).map_err(|source| Error::Io {
            op: "msync",
            name: self.location.label(),
            source,
        })
    }

    /// Pages of the heap file the kernel holds: the map's memory, as issue 32 measures it.
    pub fn resident_bytes(&self) -> Result<u64> {
        let st = crate::shm_file::fstat(self.fd.as_raw_fd(), &self.location.label())?;
        Ok(st.st_blocks as u64 * 512)
    }

    /// Allocates a block for a record of `bytes` and returns its offset. The caller owns it
    /// and may write it at once (the reuse rule: this ends with a Release fence).
    #[inline]
    pub fn alloc(&self, bytes: usize) -> Result<u64> {
        self.alloc_staged(bytes, bytes)
    }

    /// As [`Heap::alloc`], but of a large block only the pages of its first `eager` bytes are
    /// reserved: the rest must be reserved with [`Heap::reserve_rest`] before it is written.
    /// (A small block's run is reserved whole.)
    #[inline]
    pub fn alloc_staged(&self, bytes: usize, eager: usize) -> Result<u64> {
        match Class::of(bytes) {
            Some(c) => {
                if let Some(Some(b)) = self.with_magazine(c, |m| m.pop()) {
                    // Only a block of the class's shape (a damaged area names anything).
                    if !self.is_block_shape(c, b) {
                        return Err(self.corrupt(format!("a magazine names {b:#x}")));
                    }
                    // Release fence: the reuse rule, as for a block from the free list.
                    std::sync::atomic::fence(Ordering::Release);
                    return Ok(b);
                }
                self.alloc_small(c)
            }
            None => self.alloc_large(bytes, eager),
        }
    }

    /// Reserves the pages of a block [`Heap::alloc_staged`] made (of `bytes`) that were not
    /// reserved yet; `NoSpace` when the file system is full (nothing for a small block).
    /// Inline, so that a small block's `Ok` costs its caller nothing.
    #[inline]
    pub fn reserve_rest(&self, offset: u64, bytes: usize) -> Result<()> {
        match Class::of(bytes) {
            Some(_) => Ok(()),
            None => self.reserve_pages(offset, bytes as u64),
        }
    }

    /// Frees the block at `offset`, allocated for a record of `bytes`. Only after the word
    /// that published the block's replacement (the reuse rule), and only once: freeing a
    /// free block is [`Error::Corrupt`].
    #[inline]
    pub fn free(&self, offset: u64, bytes: usize) -> Result<()> {
        match Class::of(bytes) {
            Some(c) => {
                // Only a block of this class's shape goes in (an offset a corrupt reference
                // names may not: the bitmap then judges it); the bitmap is not read, which
                // would cost a set a line that other processes' frees write.
                if !self.is_block_shape(c, offset) {
                    return self.free_shared(c, offset);
                }
                let kept = self.with_magazine(c, |m| {
                    if m.contains(offset) {
                        return Err(self.corrupt(format!("block {offset:#x} freed twice")));
                    }
                    Ok(m.push(offset))
                });
                match kept {
                    Some(Ok(true)) => Ok(()),
                    Some(Err(e)) => Err(e),
                    _ => {
                        self.free_shared(c, offset)?;
                        // Relaxed: a per-handle count.
                        if self.freed_here.fetch_add(1, Ordering::Relaxed) % FREED_BATCH == 0 {
                            self.trim_if_due(FREED_BATCH);
                        }
                        Ok(())
                    }
                }
            }
            None => self.free_large(offset, bytes),
        }
    }

    /// Frees a small block to its class's shared free list.
    pub(super) fn free_shared(&self, c: Class, offset: u64) -> Result<()> {
        self.mark(c, offset, false)?;
        let link = self.link_or_corrupt(c, offset)?;
        free_list::push(self.header(W_HEADS + c.index()), offset, link);
        Ok(())
    }

    pub(super) fn alloc_small(&self, c: Class) -> Result<u64> {
        let shape = c.run();
        let head = self.header(W_HEADS + c.index());
        let carve = self.header(W_CARVE + c.index());
        loop {
            let popped = free_list::pop(head, |o| self.link_word(c, o))
                .map_err(|o| self.corrupt(format!("a free list names {o:#x}")))?;
            if let Some(b) = popped {
                self.mark(c, b, true)?;
                if shape.bytes > MIN_RUN {
                    self.refill(c, b)?; // its pages, if a trim or sweep punched them
                }
                return Ok(b);
            }
            // Acquire: the run it names has its header written.
            let cw = carve.load(Ordering::Acquire);
            let (run, next) = ((cw >> 24) * PAGE as u64, (cw & 0xFF_FFFF) as usize);
            if cw != 0 && next < shape.blocks {
                // Relaxed on success: the run's header was acquired above; the block is ours.
                if carve
                    .compare_exchange(cw, cw + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    let b = run + shape.block_offset(next) as u64;
                    // Every writer of a page reserves it first. A run of the smallest size
                    // was reserved whole when it was made; in a larger one (blocks over
                    // 4 KiB), each block's carver reserves its pages, once: blocks reused from
                    // a free list lie in pages reserved before.
                    if shape.bytes > MIN_RUN {
                        // Not past the heap (a hostile carve word): reserving would lengthen
                        // the file there.
                        if !self.is_block_shape(c, b) {
                            return Err(self.corrupt(format!("a carve word names {b:#x}")));
                        }
                        self.reserve_pages(b, shape.block as u64)?;
                    }
                    self.mark(c, b, true)?;
                    // Release fence: the reuse rule (a carved block may lie in a punched run).
                    std::sync::atomic::fence(Ordering::Release);
                    return Ok(b);
                }
                continue;
            }
            self.new_run(c, &shape, cw)?;
        }
    }

    /// Whether `b` lies where a block of class `c` would in a run of `c` (arithmetic only:
    /// nothing is read).
    #[inline]
    pub(super) fn is_block_shape(&self, c: Class, b: u64) -> bool {
        block_index(c, b).is_some()
            && b.checked_add(c.block() as u64)
                .is_some_and(|end| self.backs(end))
    }

    /// The word that links free block `b` of class `c` into its free list: the block's first
    /// word, or its slot in the run's header page (see `RunShape::links`); `None` where no
    /// block of `c` can be (a corrupt list names it).
    pub(super) fn link_word(&self, c: Class, b: u64) -> Option<&AtomicU64> {
        let shape = c.run();
        if shape.links == 0 {
            return self.word(b);
        }
        let i = block_index(c, b)?;
        let run = b & !(shape.bytes as u64 - 1);
        self.word(run + shape.links as u64 + 8 * i)
    }

    /// [`Heap::link_word`], or `Corrupt`.
    pub(super) fn link_or_corrupt(&self, c: Class, b: u64) -> Result<&AtomicU64> {
        self.link_word(c, b)
            .ok_or_else(|| self.corrupt(format!("{b:#x} is not a block of class {}", c.index())))
    }

    /// The bitmap word and bit of block `b` of class `c`; `Corrupt` if `b` is no block of a
    /// run of `c`.
    pub(super) fn bit_of(&self, c: Class, b: u64) -> Result<(&AtomicU64, u64)> {
        let run = b & !(c.run().bytes as u64 - 1);
        let head = self
            .word_or_corrupt(run, "a run header")?
            .load(Ordering::Relaxed);
        let index = block_index(c, b).filter(|_| head & 0xFF == c.index() as u64 + 1);
        let Some(i) = index else {
            return Err(self.corrupt(format!("{b:#x} is not a block of class {}", c.index())));
        };
        let word = self.word_or_corrupt(run + 8 + i / 64 * 8, "a bitmap word")?;
        Ok((word, 1u64 << (i % 64)))
    }

    /// Sets (`allocated`) or clears the bitmap bit of block `b` of class `c`; a bit already
    /// in that state, or a block that is not one of a run of `c`, is [`Error::Corrupt`].
    pub(super) fn mark(&self, c: Class, b: u64, allocated: bool) -> Result<()> {
        let (word, bit) = self.bit_of(c, b)?;
        // AcqRel: a bitmap word is shared by neighbouring blocks' owners; the RMW orders
        // nothing else (the free list's CAS carries the hand-over of the block).
        let before = if allocated {
            word.fetch_or(bit, Ordering::AcqRel)
        } else {
            word.fetch_and(!bit, Ordering::AcqRel)
        };
        if (before & bit != 0) == allocated {
            let what = if allocated {
                "handed out twice"
            } else {
                "freed twice"
            };
            return Err(self.corrupt(format!("block {b:#x} {what}")));
        }
        Ok(())
    }

    /// Makes a new run of class `c` the class's carve run, unless another thread did since
    /// the carve word read `seen`.
    fn new_run(&self, c: Class, shape: &RunShape, seen: u64) -> Result<()> {
        let _lock = self.lock()?;
        let carve = self.header(W_CARVE + c.index());
        // Relaxed: the lock orders us after whoever changed it.
        if carve.load(Ordering::Relaxed) != seen {
            return Ok(());
        }
        let run = match self.take_free(shape.bytes as u64, shape.bytes as u64)? {
            Some(run) => run,
            None => self.take_space(shape.bytes as u64, shape.bytes as u64)?,
        };
        // Whole, for the runs of blocks up to 4 KiB (64 KiB: carving then needs no system
        // call); the header alone for larger runs, whose carvers reserve block by block.
        let reserved = if shape.bytes <= MIN_RUN {
            shape.bytes
        } else {
            shape.header
        };
        self.reserve_pages(run, reserved as u64)?;
        let head = (c.index() as u64 + 1) | ((shape.bytes / PAGE) as u64) << 8;
        // Relaxed: published by the carve word's Release store (and `top`'s, for a sweep).
        self.word_or_corrupt(run, "a new run")?
            .store(head, Ordering::Relaxed);
        // Release: whoever loads the carve word (Acquire) sees the run's header.
        carve.store((run / PAGE as u64) << 24, Ordering::Release);
        Ok(())
    }
}

const _: () = assert!(W_AREAS + AREAS <= PAGE / 8);
const _: () = assert!(MAX_SMALL < 1 << 24);
