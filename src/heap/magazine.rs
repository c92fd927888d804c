//! A handle's magazines: per class, a few blocks it freed, kept for its own next allocations
//! of the class (see [`super::Heap`] for why).
//!
//! The blocks are listed in the heap itself, in an area of the handle's own (`areas.rs`), not
//! in process memory: so whoever outlives a killed process finds the blocks its magazines
//! held and gives them back, where they were leaked before (up to 16 KiB per class and kill).
//! Only the owning process writes its area, so no shared line bounces between processes.
//!
//! Within the process, a magazine is taken with a try-lock ([`Gate`]): a thread that finds
//! it held (another thread of the handle in the middle of a take or a give) goes to the
//! shared free list instead of waiting, so the lock never spins. Taking it is one swap;
//! giving it back is a plain Release store (a `Mutex`'s unlock is a second read-modify-write,
//! which perf put at a sixth of the heap's share of a Python set).
//!
//! An area's words, per class `c` in class order: a count, then [`capacity`]`(c)` slots, the
//! first `count` of which name the blocks held. A block is in the magazine exactly while it
//! lies below the count, so the count's store is the step that moves a block in or out:
//!
//! | step | first | then | killed between |
//! |---|---|---|---|
//! | give (a free) | slot `n` = block | count = `n + 1` | the block leaks (never twice) |
//! | take (an alloc) | count = `n - 1` | use slot `n - 1` | the block leaks (never twice) |
//!
//! A block in a magazine stays marked allocated in its run's bitmap.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use super::classes::{Class, CLASSES};

/// Blocks a magazine holds at most.
pub(super) const MAGAZINE: usize = 32;
/// Bytes of blocks a magazine holds at most: 32 blocks of 16 KiB kept per class and handle
/// were megabytes no other process could use (the harness measured 2x the payload under
/// churn of values up to 16 KiB). An update needs one block in hand to skip the shared list.
pub(super) const MAGAZINE_BYTES: usize = 16 * 1024;

/// How many blocks of `block` bytes a magazine holds: [`MAGAZINE`], fewer for blocks over
/// 512 bytes, at least one.
#[inline]
pub(super) fn capacity(block: usize) -> usize {
    // No division on the path of small records (every free asks).
    if block <= MAGAZINE_BYTES / MAGAZINE {
        return MAGAZINE;
    }
    (MAGAZINE_BYTES / block).max(1)
}

/// Where each class's magazine lies in an area, in words.
#[derive(Debug)]
pub(super) struct AreaLayout {
    /// The count word of class `c` is word `base[c]`, its slots follow up to `base[c + 1]`;
    /// `base[CLASSES]` is the area's length.
    base: [usize; CLASSES + 1],
}

impl AreaLayout {
    /// Class `c`'s magazine: its first word (the count) and its words (count and slots).
    #[inline]
    pub(super) fn span(&self, c: Class) -> (usize, usize) {
        let first = self.base[c.index()];
        (first, self.base[c.index() + 1] - first)
    }

    /// Words of an area.
    pub(super) fn words(&self) -> usize {
        self.base[CLASSES]
    }
}

/// The one layout of every area.
pub(super) fn layout() -> &'static AreaLayout {
    static LAYOUT: OnceLock<AreaLayout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let mut base = [0; CLASSES + 1];
        for c in (0..CLASSES).filter_map(Class::from_index) {
            base[c.index() + 1] = base[c.index()] + 1 + capacity(c.block());
        }
        AreaLayout { base }
    })
}

/// One class's magazine as it lies in an area: its count word and its slots.
pub(super) struct Slots<'a> {
    count: &'a AtomicU64,
    slots: &'a [AtomicU64],
}

impl<'a> Slots<'a> {
    /// `words` are the count and the slots of one class's magazine.
    pub(super) fn new(words: &'a [AtomicU64]) -> Self {
        Self {
            count: &words[0],
            slots: &words[1..],
        }
    }

    /// Blocks held (a count past the slots, which only damage writes, reads as full).
    #[inline]
    pub(super) fn len(&self) -> usize {
        // Relaxed: only the owner's thread inside the gate writes it (or a recoverer, once
        // the owner is dead and its lock byte taken).
        (self.count.load(Ordering::Relaxed) as usize).min(self.slots.len())
    }

    /// The blocks held (for a sweep, which keeps them).
    pub(super) fn held(&self) -> impl Iterator<Item = u64> + '_ {
        // Relaxed: as `len`; a sweep reads them with every writer excluded.
        self.slots[..self.len()]
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
    }

    /// Whether `block` is held.
    #[inline]
    pub(super) fn contains(&self, block: u64) -> bool {
        // Relaxed: as `len`.
        self.slots[..self.len()]
            .iter()
            .any(|s| s.load(Ordering::Relaxed) == block)
    }

    /// Keeps `block` unless the magazine is full (`false`).
    #[inline]
    pub(super) fn push(&self, block: u64) -> bool {
        let n = self.len();
        let Some(slot) = self.slots.get(n) else {
            return false;
        };
        // Relaxed: the slot first, then the count (see the module's table); a recoverer
        // reads them after the owner's death, which orders every store of the owner.
        slot.store(block, Ordering::Relaxed);
        self.count.store(n as u64 + 1, Ordering::Relaxed);
        true
    }

    /// Takes the block kept last out.
    #[inline]
    pub(super) fn pop(&self) -> Option<u64> {
        let n = self.len().checked_sub(1)?;
        // Relaxed: the count first, then the use (see the module's table and `push`).
        self.count.store(n as u64, Ordering::Relaxed);
        Some(self.slots[n].load(Ordering::Relaxed))
    }

    /// Holds nothing from now on (for a rebuild, which derives every free block anew).
    pub(super) fn forget(&self) {
        self.count.store(0, Ordering::Relaxed);
    }
}

/// The process-local try-lock of one class's magazine.
#[derive(Debug, Default)]
pub(super) struct Gate {
    /// `false` free, `true` held by the one thread inside [`Gate::enter`]'s guard.
    ///
    /// | from  | to    | by                                                    |
    /// |-------|-------|-------------------------------------------------------|
    /// | false | true  | `enter`: swap (Acquire), only if it read `false`       |
    /// | true  | false | the guard's drop (Release)                             |
    held: AtomicBool,
}

/// Proof that this thread is the one inside a magazine; opens the gate when dropped (even
/// when the code inside panics).
pub(super) struct Inside<'a>(&'a AtomicBool);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        // Release: our accesses to the magazine happen-before the next holder's.
        self.0.store(false, Ordering::Release);
    }
}

impl Gate {
    /// Enters, unless another thread is inside (`None`: it does not wait).
    #[inline]
    pub(super) fn enter(&self) -> Option<Inside<'_>> {
        // Acquire: the previous holder's accesses happen-before ours. (`then`, not
        // `then_some`: a guard made eagerly would be dropped, opening another's gate.)
        (!self.held.swap(true, Ordering::Acquire)).then(|| Inside(&self.held))
    }

    /// [`Gate::enter`], waiting out a holder for a moment (for a handle that drops, a trim or
    /// a rebuild); `None` if it stays held (a fork's copy of a gate held at the fork).
    pub(super) fn enter_patiently(&self) -> Option<Inside<'_>> {
        for _ in 0..10_000 {
            if let Some(inside) = self.enter() {
                return Some(inside);
            }
            std::hint::spin_loop();
        }
        None
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_magazine_holds_at_most_sixteen_kib() {
        assert_eq!(capacity(8), MAGAZINE);
        assert_eq!(capacity(512), MAGAZINE);
        assert_eq!(capacity(1024), 16);
        assert_eq!(capacity(32 * 1024), 1);
        for block in (8..=32 * 1024).step_by(8) {
            assert!(capacity(block) * block <= MAGAZINE_BYTES.max(block));
        }
        // An area is a little under 12 KiB: one block of the 12 KiB class.
        assert!(layout().words() * 8 <= 12 * 1024, "{}", layout().words());
    }

    #[test]
    fn one_thread_at_a_time_and_never_a_block_twice() {
        let words: Vec<AtomicU64> = (0..=MAGAZINE).map(|_| AtomicU64::new(0)).collect();
        let gate = Gate::default();
        let taken = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (gate, words, taken) = (&gate, &words, &taken);
                s.spawn(move || {
                    for i in 0..10_000u64 {
                        if let Some(_inside) = gate.enter() {
                            Slots::new(words).push(t << 32 | i);
                        }
                        if let Some(b) = gate.enter().and_then(|_inside| Slots::new(words).pop()) {
                            taken.lock().unwrap().push(b);
                        }
                    }
                });
            }
        });
        let mut all = taken.into_inner().unwrap();
        let slots = Slots::new(&words);
        all.extend(std::iter::from_fn(|| slots.pop()));
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a block handed out twice");
        assert_eq!(slots.len(), 0);
    }
}
