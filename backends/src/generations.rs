//! The table generations of one map, as this handle sees them: how an operation finds the
//! current table, and how a process follows a resize without re-attaching.
//!
//! Generation 0 is the table inside the map's own segment (the root); generation `g > 0` is
//! the segment `name.t<g>` (`path.t<g>` for a file map), made by the resize from `g - 1`
//! (`grow.rs`). The root header's generation word names the current one in its low bits
//! ([`shmap::table_number`]), and counts above them the times it was emptied in place
//! (`clear.rs`); its state table is on `shmap::Header::generation`. "Generation" below is
//! the whole word: it changes whenever what a reader read may no longer hold. Every
//! operation loads it once with Acquire, maps the table the first time it meets a
//! generation, and keeps that mapping until the handle drops:
//! a handle maps at most [`MAX_GENERATIONS`] tables, and those a resize replaced hold no
//! memory (their pages were punched out, see `Segment::release_table`).
//!
//! Why an operation may use what it loaded:
//! - a writer loads the word only once it holds its key's lock (a stripe, or the table mutex),
//!   and a resize needs every one of those locks: the generation cannot change under it;
//! - a reader may load a generation a resize then replaces. The old table is frozen from the
//!   moment the resizer holds every writer lock, so what the reader finds there was true at
//!   its load (it is ordered before any write to the new table); it loads the word again at
//!   the end and starts over in the new table if it moved, so it never trusts a table whose
//!   memory was released under it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use shmap::heap::Heap;
use shmap::HANDLES_BYTE;
use shmap::{table_number, MAX_GENERATIONS};
use shmap::{AttachOptions, BackendKind, Error, LockFile, MapParams, RawTable, Result, Segment};

/// The tables of one map that this handle has mapped, by generation.
#[derive(Debug)]
pub struct Tables {
    /// Generation 0: the table in the root segment, which also holds the generation word and
    /// the backend area.
    root: RawTable,
    /// The root header's generation word (inside `root`'s mapping).
    word: *const AtomicU64,
    /// `tables[g]` once this handle met generation `g > 0` (`tables[0]` stays empty).
    tables: Box<[OnceLock<RawTable>]>,
    /// Serialises this handle's mapping of new generations (a slow path).
    opening: parking_lot::Mutex<()>,
    kind: BackendKind,
    opts: AttachOptions,
    /// This handle's shared lock on the root's [`HANDLES_BYTE`]: the map is open here. Not
    /// kept by a fork child (a `LockFile`), which takes its own when it drops.
    handles: LockFile,
}

/// Which table a repair of a dead process's operation looks at.
#[derive(Debug, Clone, Copy)]
pub enum Where<'a> {
    /// The table the caller saw the dead owner's busy word in: its operation is there.
    Table(&'a RawTable),
    /// The current table, loaded when the repair starts: right for the holders of writer
    /// locks (no resize can pass a held stripe, dead or alive).
    Current(&'a Tables),
}

impl<'a> Where<'a> {
    /// The table to repair in.
    pub fn table(self) -> Result<&'a RawTable> {
        match self {
            Where::Table(t) => Ok(t),
            Where::Current(tables) => tables.current().map(|(_, t)| t),
        }
    }

    /// The map's name, for errors.
    pub fn name(self) -> &'a str {
        match self {
            Where::Table(t) => t.segment().name(),
            Where::Current(tables) => tables.root().segment().name(),
        }
    }
}

// SAFETY: `word` points into the mapping `root` owns, which lives as long as `self`, and is
// only accessed atomically.
unsafe impl Send for Tables {}
// SAFETY: as above.
unsafe impl Sync for Tables {}

impl Tables {
    /// The tables of the map whose root segment is `root` (validated by the caller) and
    /// whose records are in `heap`.
    pub fn new(
        root: Segment,
        heap: Arc<Heap>,
        kind: BackendKind,
        opts: AttachOptions,
    ) -> Result<Self> {
        let tables: Box<[OnceLock<RawTable>]> =
            (0..MAX_GENERATIONS).map(|_| OnceLock::new()).collect();
        let word: *const AtomicU64 = root.header().generation();
        let handles = LockFile::open(&root)?;
        handles.lock_shared(HANDLES_BYTE as usize)?;
        Ok(Self {
            root: RawTable::new(root, heap),
            word,
            tables,
            opening: parking_lot::Mutex::new(()),
            kind,
            opts,
            handles,
        })
    }

    /// The root's table (generation 0), whose segment is the map's.
    #[inline]
    pub fn root(&self) -> &RawTable {
        &self.root
    }

    /// The root segment's generation word.
    #[inline]
    fn word(&self) -> &AtomicU64 {
        // SAFETY: points into the root mapping, alive as long as `self` (see the Send impl).
        unsafe { &*self.word }
    }

    /// The current generation word (table number and times emptied).
    #[inline]
    pub fn generation(&self) -> u64 {
        // Acquire: pairs with the resizer's (or a clearer's) Release store, so the new table
        // is whole (or the cleared one all tombstones) for us.
        self.word().load(Ordering::Acquire)
    }

    /// The current generation and its table, mapping it first if this handle has not yet.
    #[inline]
    pub fn current(&self) -> Result<(u64, &RawTable)> {
        loop {
            let g = self.generation();
            if table_number(g) == 0 {
                return Ok((g, &self.root));
            }
            if let Some(t) = self
                .tables
                .get(table_number(g) as usize)
                .and_then(OnceLock::get)
            {
                return Ok((g, t));
            }
            match self.open(g) {
                Ok(t) => return Ok((g, t)),
                // Replaced (and unlinked) between our load and our open: follow the next one.
                Err(Error::NotFound(_)) if self.generation() != g => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Keeps `table` as generation `g` (for the resizer that made it, before publishing).
    pub(crate) fn adopt(&self, g: u64, table: RawTable) -> &RawTable {
        let slot = &self.tables[table_number(g) as usize];
        // Set first by another thread of ours that mapped it: the same table, mapped twice.
        let _ = slot.set(table);
        slot.get().expect("set just above")
    }

    /// The backend kind every table of the map records.
    pub fn kind(&self) -> BackendKind {
        self.kind
    }

    /// The root's resize lock ([`shmap::RESIZE_BYTE`]): held by whoever replaces or empties
    /// the current table (`grow.rs`, `clear.rs`), one at a time; `None` at once if someone
    /// holds it and not `wait`.
    pub(crate) fn resize_lock(&self, wait: bool) -> Result<Option<shmap::ByteLock>> {
        let root = self.root.segment();
        shmap::lock_byte(
            root.raw_fd(),
            root.location(),
            shmap::RESIZE_BYTE,
            wait,
            "the resize lock",
        )
    }

    /// Where the table of generation `g` lives (`g > 0`; the root's table lives in the root).
    pub fn location(&self, g: u64) -> shmap::Location {
        self.root().segment().location().table(table_number(g))
    }

    /// The shape of every generation's table but its capacity.
    pub fn params(&self) -> MapParams {
        self.root().segment().layout().params
    }

    /// Attaches to the segment of table generation `g` (mapped or not by this handle): it
    /// must hash with the root's seed and have its key and value sizes.
    pub(crate) fn attach(&self, g: u64, opts: AttachOptions) -> Result<Segment> {
        let root = self.root.segment();
        Segment::attach_table(
            &self.location(g),
            self.kind,
            &root.layout().params,
            root.hash_seed(),
            opts,
        )
    }

    #[cold]
    fn open(&self, g: u64) -> Result<&RawTable> {
        let slot = self
            .tables
            .get(table_number(g) as usize)
            .ok_or_else(|| Error::Corrupt {
                name: self.root.segment().name().to_owned(),
                reason: format!(
                    "table generation {} is past the limit of {MAX_GENERATIONS}",
                    table_number(g)
                ),
            })?;
        let _opening = self.opening.lock();
        if let Some(t) = slot.get() {
            return Ok(t);
        }
        let segment = self.attach(g, self.opts).map_err(|e| match e {
            // The word still names a generation whose table is gone: not a map we can read.
            Error::NotFound(what) if self.generation() == g => Error::Corrupt {
                name: self.root.segment().name().to_owned(),
                reason: format!("the current table {what} is missing"),
            },
            e => e,
        })?;
        Ok(self.adopt(g, RawTable::new(segment, self.root.heap().clone())))
    }
}

impl Drop for Tables {
    /// The last handle of a map whose name is gone (unlinked, or another map's now) removes
    /// its tables' names, which `Location::unlink` left for the handles still open. Nobody
    /// can open the map by name any more, so the handles only get fewer: one that takes
    /// [`HANDLES_BYTE`] exclusively is the last. Best effort: what stays, `unlink(name)`
    /// removes.
    fn drop(&mut self) {
        let byte = HANDLES_BYTE as usize;
        self.unlink_tables_if_last(byte);
        // Released before the description closes: a child another thread forks meanwhile
        // would keep it (and the lock with it) until its exec.
        let _ = self.handles.unlock(byte);
    }
}

impl Tables {
    fn unlink_tables_if_last(&mut self, byte: usize) {
        let root = self.root.segment();
        if !matches!(root.is_named(), Ok(false)) {
            return;
        }
        let last = match self.handles.try_lock(byte) {
            Ok(last) => Ok(last),
            // A fork child, whose description the fork closed: a new one answers for it.
            Err(_) => self
                .handles
                .renew()
                .and_then(|()| self.handles.try_lock(byte)),
        };
        if matches!(last, Ok(true)) {
            root.location().unlink_tables_of(root.hash_seed());
        }
    }
}

/// Removes what a resizer killed half way left: the table it was making (`next`, never
/// published) and the name of the table before `g` (published over, not yet released).
/// Only the holder of the resize lock calls this, so no other resizer is at work.
pub(crate) fn discard_leftovers(tables: &Tables, g: u64, next: &shmap::Location) {
    let _ = next.unlink_one();
    if table_number(g) >= 1 {
        if let Ok(seg) = tables.attach(g - 1, shmap::AttachOptions::trusting()) {
            seg.release_table();
        }
        let _ = tables.location(g - 1).unlink_one();
    }
}
