//! One named POSIX shared-memory segment holding one map: create, attach, unlink.
//!
//! Names follow Python's `multiprocessing.shared_memory`: the map `foo` is `shm_open("/foo")`,
//! the file `/dev/shm/foo`. Creation is `O_CREAT | O_EXCL` with mode 0600. The header is
//! written first and its magic number is published last with a Release store; an attacher
//! waits for the magic with Acquire loads, then checks every header field against the layout it
//! computes itself and against the segment's real length. Nothing read from shared memory is
//! trusted to stay in bounds. Unlinking is explicit, never on drop.
//!
//! Hardening at the edges:
//! - the mode is set with `fchmod` (the umask applies to `shm_open`'s mode), and the memory is
//!   reserved with `posix_fallocate` after checking the room left in `/dev/shm`, so a full
//!   tmpfs is [`Error::NoSpace`] at create instead of SIGBUS at the first write to a page;
//! - a creator holds an OFD lock on [`CREATING_BYTE`] from `shm_open` until it publishes the
//!   header: an attacher that finds no magic and can take that lock knows the creator died
//!   ([`Error::Abandoned`]), and [`remove_abandoned`] can remove such a segment safely;
//! - an attacher refuses ([`Error::Untrusted`]) a segment owned by another user or writable by
//!   group or others unless told to trust it: whoever can write the segment chooses what this
//!   process reads (and a Python user unpickles).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memmap2::MmapRaw;

use crate::error::{Error, Result};
use crate::layout::{Layout, HEADER_LEN};
use crate::params::{AttachOptions, BackendKind, MapParams};
use crate::shm_file::{
    check_map_name, check_trusted, creator_lock, file_len, first_word, io_err, map, name_is,
    open_session, reopen, reserve, share_session, Location, ATTACH_WAIT, CREATE_WAIT, SEED_OFFSET,
};

/// "SHMAP\0v1" as a little-endian word: marks a fully initialised segment of ours.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMAPv1\0");
/// Bumped whenever the layout or a slot protocol changes incompatibly (5: the checksum word
/// moved to the end of the slot; 6: the pass counts between control words and slots, see
/// `layout.rs`).
pub const LAYOUT_VERSION: u64 = 7;

/// The first [`HEADER_LEN`] bytes of a segment. Every field is atomic because another process
/// may write any of them at any time; only `len` changes after initialisation.
#[repr(C)]
#[derive(Debug)]
pub struct Header {
    /// [`MAGIC`] once initialised, 0 before.
    magic: AtomicU64,
    version: AtomicU64,
    kind: AtomicU64,
    capacity: AtomicU64,
    max_key_size: AtomicU64,
    max_value_size: AtomicU64,
    hash_seed: AtomicU64,
    total_len: AtomicU64,
    backend_offset: AtomicU64,
    backend_len: AtomicU64,
    meta_offset: AtomicU64,
    slots_offset: AtomicU64,
    slot_stride: AtomicU64,
    /// Slots ever claimed from EMPTY, less those a reclaim returned to EMPTY (see
    /// [`crate::RawTable::note_empty_claim`]).
    used: AtomicU64,
    /// `used` after the last reclaim of tombstones.
    reclaim_mark: AtomicU64,
    /// Reclaims of tombstones so far (a statistic, and what tests count).
    reclaims: AtomicU64,
    /// Number of live entries for backends that count in the header (the mutex baseline), on
    /// a cache line of its own (offset 128). The striped backends count per registry record.
    len: AtomicU64,
    /// The largest capacity the table may grow to (see [`MapParams::max_capacity`]).
    max_capacity: AtomicU64,
    /// The slot from which the next reclaim of tombstones looks for an EMPTY slot to start
    /// at: each hold moves it past the runs it covered, so reclaims cut short between holds
    /// cover the table in turn (from slot 0 each time, eight processes' reclaims went over
    /// the same first runs only). A hint: any EMPTY slot is a correct start.
    reclaim_cursor: AtomicU64,
    /// Slots from `reclaim_cursor` on that the reclaim pass under way has yet to cover: the
    /// writers after the one that began it go on with it (`lifecycle/reclaim.rs`). 0: none
    /// (a new table, an older build's). A hint, like the cursor.
    reclaim_left: AtomicU64,
    _pad: [AtomicU64; 4],
    /// Root segments only: `e << TABLE_NUMBER_BITS | g`, where `g` numbers the current table
    /// (0: the table in this segment; `g > 0`: the segment `name.t<g>`) and `e` counts the
    /// times a table was emptied in place ([`crate::table_number`]), on a cache line nothing
    /// else writes in steady state (offset 192). Written only by a resizer or an emptier
    /// that holds every writer lock, with Release once the table is whole (or empty); every
    /// operation loads it with Acquire, and a reader that finds it changed at its end reads
    /// again: so it never trusts a table released, or emptied, under it.
    ///
    /// | value | meaning | transitions |
    /// |---|---|---|
    /// | `e, g` | table `g` is current, emptied `e` times | `e, g+1` by the resizer of `g`; `e+1, g` by a `clear` of `g`, once every entry is a tombstone and before its pages are punched |
    ///
    /// Maps made before `e` existed hold `0, g`: the same word.
    generation: AtomicU64,
    /// Entries moved within this table by a compaction (see `backends/src/lifecycle/compact.rs`), bumped
    /// before each moved entry's old slot is retired: a lookup that missed its key checks it
    /// did not change meanwhile. On the generation word's line, which nothing writes in steady
    /// state.
    moves: AtomicU64,
    /// 1 while the table was at least half live when last counted (a reclaim, a resize):
    /// removes then shift entries back into the hole they leave (`compact.rs`). A hint.
    dense: AtomicU64,
    /// Whether removes watch for the map becoming empty, so that its pages go back to the
    /// kernel (`raw_table/emptying.rs`, whose state table it carries). A hint, written only
    /// when its state changes: zero (watch every remove) in a new table and an older build's.
    emptying: AtomicU64,
    _tail: [AtomicU64; 4],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_LEN);
const _: () = assert!(std::mem::offset_of!(Header, generation) == 192);
const _: () = assert!(std::mem::offset_of!(Header, hash_seed) as u64 == SEED_OFFSET);

mod counters;

/// A mapped segment. The mapping lives until drop; the name lives until it is unlinked
/// ([`Segment::unlink_name`], [`crate::unlink`]).
#[derive(Debug)]
pub struct Segment {
    /// Where it lives; `name` is how errors call it.
    location: Location,
    name: String,
    /// The shared mapping (`MAP_SHARED`, read-write), unmapped when dropped.
    map: MmapRaw,
    layout: Layout,
    hash_seed: u64,
    /// Whether this handle holds a file-backed map's session lock exclusively: it is the only
    /// one open, and must validate the file before [`Segment::share`] lets others in.
    exclusive: AtomicBool,
    _fd: OwnedFd,
}

/// What a segment holds: a whole map (header, backend area, the first table), or one later
/// generation of its table, which hashes with the root's seed.
#[derive(Debug, Clone, Copy)]
enum Role {
    Root,
    Table(u64),
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process and perturbed per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl Segment {
    /// Creates the segment at `location` for `layout`, runs `init` on the zeroed segment
    /// (backend words that zero does not initialise, e.g. a pthread mutex), then publishes the
    /// header. On any failure the name is unlinked again and nothing remains.
    pub fn create(
        location: &Location,
        kind: BackendKind,
        layout: Layout,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Self> {
        Self::create_as(location, kind, layout, Role::Root, init)
    }

    /// Creates the table segment of one generation of a map (header and table, no backend
    /// area: `layout.backend_len` is 0) at `location`, hashing with the root's `seed`.
    pub fn create_table(
        location: &Location,
        kind: BackendKind,
        layout: Layout,
        seed: u64,
    ) -> Result<Self> {
        Self::create_as(location, kind, layout, Role::Table(seed), |_| Ok(()))
    }

    fn create_as(
        location: &Location,
        kind: BackendKind,
        layout: Layout,
        role: Role,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Self> {
        if let Location::Shm(name) = location {
            check_map_name(name)?; // a bad name is InvalidName, before anything is tried
        }
        let name = &location.label();
        let mut attempts = 0;
        let fd = loop {
            let fd = location.open(libc::O_CREAT | libc::O_EXCL | libc::O_RDWR)?;
            match Self::claim(location, &fd) {
                Ok(true) => break fd,
                // A remover of abandoned segments took the name in the instant before our
                // lock (see `remove_abandoned`): the name is free again, or someone else's.
                Ok(false) if attempts < 8 => attempts += 1,
                Ok(false) => return Err(Error::AlreadyExists(name.to_owned())),
                Err(e) => {
                    let _ = location.unlink_one(); // we created this name above: undo that
                    return Err(e);
                }
            }
        };
        let built = Self::initialise(location, fd, kind, layout, role, init);
        if built.is_err() {
            let _ = location.unlink_one();
        }
        built
    }

    /// Right after `shm_open`: the exact mode (the umask applied to `shm_open`'s) and the
    /// creator's lock. `false` if the name no longer refers to our file once we hold the lock.
    fn claim(location: &Location, fd: &OwnedFd) -> Result<bool> {
        let name = &location.label();
        // SAFETY: fd is a valid open descriptor.
        if unsafe { libc::fchmod(fd.as_raw_fd(), 0o600) } != 0 {
            return Err(io_err("fchmod", name));
        }
        let locked = creator_lock(fd.as_raw_fd(), name, libc::F_WRLCK, false)?;
        Ok(locked && name_is(fd.as_raw_fd(), location)?)
    }

    fn initialise(
        location: &Location,
        fd: OwnedFd,
        kind: BackendKind,
        layout: Layout,
        role: Role,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Self> {
        let name = &location.label();
        reserve(fd.as_raw_fd(), layout.total_len, location)?;
        let map = map(&fd, layout.total_len, name)?;
        let seg = Segment {
            location: location.clone(),
            name: name.to_owned(),
            map,
            layout,
            hash_seed: match role {
                Role::Root => random_seed(),
                Role::Table(seed) => seed,
            },
            exclusive: AtomicBool::new(false),
            _fd: fd,
        };
        if let (Location::File(_), Role::Root) = (location, role) {
            // In the session before anyone can attach: a new file needs no validation.
            share_session(seg._fd.as_raw_fd(), name)?;
        }
        let h = seg.header();
        let p = layout.params;
        // Relaxed: nobody reads these before the Release store of `magic` below.
        for (field, value) in [
            (&h.version, LAYOUT_VERSION),
            (&h.kind, kind as u64),
            (&h.capacity, p.capacity as u64),
            (&h.max_key_size, p.max_key_size as u64),
            (&h.max_value_size, p.max_value_size as u64),
            (&h.hash_seed, seg.hash_seed),
            (&h.total_len, layout.total_len as u64),
            (&h.backend_offset, layout.backend_offset as u64),
            (&h.backend_len, layout.backend_len as u64),
            (&h.meta_offset, layout.meta_offset as u64),
            (&h.slots_offset, layout.slots_offset as u64),
            (&h.slot_stride, layout.slot_stride as u64),
            (&h.max_capacity, p.max_capacity as u64),
        ] {
            field.store(value, Ordering::Relaxed);
        }
        init(&seg)?;
        // Release: an attacher that sees MAGIC (Acquire) sees every field and backend word above.
        h.magic.store(MAGIC, Ordering::Release);
        // Published: attachers no longer look at the creator's lock.
        creator_lock(seg._fd.as_raw_fd(), name, libc::F_UNLCK, false)?;
        Ok(seg)
    }

    /// Attaches to the existing segment `name`, made by `kind`. `backend_len` gives the backend
    /// area a segment of the stored parameters must have; every header field is checked
    /// against the layout recomputed from those parameters and against the file's length.
    pub fn attach(
        location: &Location,
        kind: BackendKind,
        backend_len: impl Fn(&MapParams) -> usize,
        opts: AttachOptions,
    ) -> Result<Self> {
        Self::attach_as(location, kind, backend_len, opts, Role::Root)
    }

    /// Attaches to the table segment of one generation, which must hash with the root's
    /// `seed` and have the root's key and value sizes (`shape`): anything else is
    /// [`Error::Corrupt`].
    pub fn attach_table(
        location: &Location,
        kind: BackendKind,
        shape: &MapParams,
        seed: u64,
        opts: AttachOptions,
    ) -> Result<Self> {
        let seg = Self::attach_as(location, kind, |_| 0, opts, Role::Table(seed))?;
        let p = seg.layout.params;
        if seg.hash_seed != seed
            || (p.max_key_size, p.max_value_size) != (shape.max_key_size, shape.max_value_size)
        {
            return Err(Error::Corrupt {
                name: seg.name.clone(),
                reason: "a table of another map (seed or sizes differ from the root's)".into(),
            });
        }
        Ok(seg)
    }

    fn attach_as(
        location: &Location,
        kind: BackendKind,
        backend_len: impl Fn(&MapParams) -> usize,
        opts: AttachOptions,
        role: Role,
    ) -> Result<Self> {
        if let Location::Shm(name) = location {
            check_map_name(name)?; // a bad name is InvalidName, not NotFound
        }
        let name = &location.label();
        let fd = location.open(libc::O_RDWR)?;
        if !opts.trust_foreign {
            check_trusted(fd.as_raw_fd(), name)?;
        }
        let not_ours = |reason: String| Error::NotOurs {
            name: name.to_owned(),
            reason,
        };
        let creator_alive =
            || creator_lock(fd.as_raw_fd(), name, libc::F_WRLCK, true).map(|free| !free);

        // Wait (bounded) for a creator that is between shm_open and publishing the magic:
        // up to CREATE_WAIT while it holds its lock, ATTACH_WAIT once it does not.
        let start = Instant::now();
        let map = loop {
            let len = file_len(&fd, name)?;
            if len >= HEADER_LEN {
                let map = map(&fd, len, name)?;
                // SAFETY: the mapping is at least HEADER_LEN bytes, page-aligned, and only
                // accessed atomically through Header.
                let magic = unsafe { &*map.as_mut_ptr().cast::<Header>() }
                    .magic
                    .load(Ordering::Acquire);
                if magic == MAGIC {
                    break map;
                }
                drop(map); // unmapped: wait and look again
                if magic != 0 {
                    return Err(not_ours(format!("unknown magic number {magic:#018x}")));
                }
            }
            if let Role::Table(_) = role {
                // The root names only tables their resizer finished: one without a header was
                // cut short or replaced since, and waiting would not mend it.
                return Err(Error::Corrupt {
                    name: name.to_owned(),
                    reason: format!("the table has no header ({len} bytes)"),
                });
            }
            let waited = start.elapsed();
            if waited >= ATTACH_WAIT && !creator_alive()? {
                // Zeros where the magic goes: what a creator leaves between shm_open and
                // publishing. Anything else there is somebody else's file.
                return Err(if first_word(fd.as_raw_fd(), name)? == 0 {
                    Error::Abandoned {
                        name: name.to_owned(),
                    }
                } else {
                    not_ours(format!("no header ({len} bytes) and no creator at work"))
                });
            }
            if waited >= CREATE_WAIT {
                return Err(not_ours(format!(
                    "no initialised header after {} s ({len} bytes)",
                    CREATE_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let mut seg = Segment {
            location: location.clone(),
            name: name.to_owned(),
            map,
            layout: Layout::new(MapParams::default(), 0)?, // replaced once validated
            hash_seed: 0,
            exclusive: AtomicBool::new(false),
            _fd: fd,
        };
        seg.layout = seg.validate_header(kind, backend_len)?;
        seg.hash_seed = seg.header().hash_seed.load(Ordering::Relaxed);
        if let (Location::File(_), Role::Root) = (location, role) {
            let first = open_session(seg._fd.as_raw_fd(), name)?;
            *seg.exclusive.get_mut() = first;
        }
        Ok(seg)
    }

    fn validate_header(
        &self,
        kind: BackendKind,
        backend_len: impl Fn(&MapParams) -> usize,
    ) -> Result<Layout> {
        let h = self.header();
        // Relaxed: the Acquire load of MAGIC in `attach` already ordered these after init.
        let get = |f: &AtomicU64| f.load(Ordering::Relaxed);
        let corrupt = |reason: String| Error::Corrupt {
            name: self.name.clone(),
            reason,
        };
        let version = get(&h.version);
        if version != LAYOUT_VERSION {
            return Err(Error::IncompatibleVersion {
                name: self.name.clone(),
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let code = get(&h.kind);
        let found = BackendKind::from_code(code)
            .ok_or_else(|| corrupt(format!("unknown backend code {code}")))?;
        if found != kind {
            return Err(Error::WrongBackend {
                name: self.name.clone(),
                found: found.name().to_owned(),
                expected: kind.name(),
            });
        }
        let as_usize = |f: &AtomicU64| usize::try_from(get(f)).unwrap_or(usize::MAX);
        let params = MapParams {
            capacity: as_usize(&h.capacity),
            max_key_size: as_usize(&h.max_key_size),
            max_value_size: as_usize(&h.max_value_size),
            max_capacity: as_usize(&h.max_capacity),
        };
        let layout = Layout::new(params, backend_len(&params))
            .map_err(|e| corrupt(format!("header parameters are invalid: {e}")))?;
        for (what, stored, expected) in [
            ("total_len", as_usize(&h.total_len), layout.total_len),
            (
                "backend_offset",
                as_usize(&h.backend_offset),
                layout.backend_offset,
            ),
            ("backend_len", as_usize(&h.backend_len), layout.backend_len),
            ("meta_offset", as_usize(&h.meta_offset), layout.meta_offset),
            (
                "slots_offset",
                as_usize(&h.slots_offset),
                layout.slots_offset,
            ),
            ("slot_stride", as_usize(&h.slot_stride), layout.slot_stride),
        ] {
            if stored != expected {
                return Err(corrupt(format!(
                    "header says {what} = {stored}, the layout needs {expected}"
                )));
            }
        }
        if self.map.len() < layout.total_len {
            return Err(corrupt(format!(
                "segment is {} bytes, its header needs {}",
                self.map.len(),
                layout.total_len
            )));
        }
        Ok(layout)
    }

    /// Removes the shared-memory name `name`; mappings stay valid until their handles are
    /// dropped.
    pub fn unlink_name(name: &str) -> Result<()> {
        Location::Shm(name.to_owned()).unlink()
    }

    /// Whether the segment's name (or path) still refers to this very segment: `false` once
    /// it was unlinked, or names another map's since.
    pub fn is_named(&self) -> Result<bool> {
        name_is(self._fd.as_raw_fd(), &self.location)
    }

    /// Where the segment lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Writes the segment's pages out to its file (`msync`): for a file-backed map, what a
    /// restart of the machine keeps. Nothing to do for shared memory, which is not kept.
    pub fn flush(&self) -> Result<()> {
        self.map.flush().map_err(|source| Error::Io {
            op: "msync",
            name: self.name.clone(),
            source,
        })
    }

    /// Whether this handle is the only one open on a file-backed map (see [`SESSION_BYTE`]):
    /// the caller validates the file, then calls [`Segment::share`].
    ///
    /// [`SESSION_BYTE`]: crate::SESSION_BYTE
    pub fn is_exclusive(&self) -> bool {
        // Relaxed: process-local flag, set before the segment is shared between threads.
        self.exclusive.load(Ordering::Relaxed)
    }

    /// Lets other processes open the map (after validation): the exclusive session lock
    /// becomes a shared one.
    pub fn share(&self) -> Result<()> {
        if self.is_exclusive() {
            share_session(self._fd.as_raw_fd(), &self.name)?;
            // Relaxed: as in `is_exclusive`.
            self.exclusive.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The segment's name, without the leading slash.
    /// A new open file description of this segment's file (not a `dup`: locks taken on it
    /// are its own). Reopens through `/proc/self/fd`, so it works after the name was unlinked;
    /// falls back to the name where `/proc` is not mounted.
    pub fn reopen(&self) -> Result<OwnedFd> {
        reopen(self._fd.as_raw_fd(), &self.location)
    }

    /// The descriptor this segment was opened with (for [`Segment::reopen`]).
    pub fn raw_fd(&self) -> RawFd {
        self._fd.as_raw_fd()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The validated layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The per-map hash seed, random at creation.
    pub fn hash_seed(&self) -> u64 {
        self.hash_seed
    }

    /// The header.
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_LEN bytes (checked on create and attach),
        // page-aligned, and Header consists of atomics only.
        unsafe { &*self.map.as_mut_ptr().cast::<Header>() }
    }

    /// Pointer to byte `offset` of the segment.
    ///
    /// # Safety
    /// `offset` must be within the validated layout's `total_len`.
    pub unsafe fn ptr_at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.layout.total_len);
        // SAFETY: the caller keeps offset within the mapping.
        unsafe { self.map.as_mut_ptr().add(offset) }
    }

    /// Maps the table's pages in for writing in one call (`MADV_POPULATE_WRITE`): a resize's
    /// copy would otherwise fault on every page while writers wait. Best effort (Linux 5.14).
    pub fn populate_table(&self) {
        let (start, end) = (self.layout.meta_offset / 4096 * 4096, self.layout.total_len);
        // SAFETY: [start, end) is inside the mapping (its layout was validated); madvise
        // only asks the kernel to fault those pages in.
        let p = unsafe { self.ptr_at(start) };
        // SAFETY: as above.
        unsafe { libc::madvise(p.cast(), end - start, libc::MADV_POPULATE_WRITE) };
    }

    /// Gives the table's memory (buckets, then pass counts) back to the system while the
    /// segment stays mapped: `fallocate(PUNCH_HOLE)`, after which its pages read as zeros,
    /// EMPTY slots. For a table that a resize replaced: readers that still look at it see
    /// the generation word moved before they can see a hole (see `docs/growth.md`). Best
    /// effort: where the file system cannot punch holes, the memory goes when the last
    /// process unmaps it.
    pub fn release_table(&self) {
        let _ = self.punch_table();
    }

    /// Punches the table's whole pages out (as [`Segment::release_table`]) and returns the
    /// offset from which the table now reads as zeros: the first page boundary after the
    /// buckets start (the root's header and backend area share the page before it), or
    /// `total_len` where the file system could not punch.
    pub fn punch_table(&self) -> usize {
        let l = &self.layout;
        let page = 4096;
        let meta = l.meta_offset.div_ceil(page) * page;
        match crate::shm_file::punch_hole(self._fd.as_raw_fd(), meta as u64, l.total_len as u64) {
            true => meta.min(l.total_len),
            false => l.total_len,
        }
    }
}
