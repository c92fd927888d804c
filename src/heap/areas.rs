//! Magazine areas: where each handle's magazines lie in the heap, and how whoever outlives a
//! killed handle gives its blocks back (`docs/variable-size-entries.md`, 7.2 steps 1-2).
//!
//! Header word `W_AREAS + i` names area `i`: the offset of a block of [`area_class`] holding
//! a handle's magazines (`magazine.rs` gives its words), or 0. Area `i` belongs to whoever
//! holds the OFD lock on byte `AREA_BYTE0 + i` of the heap file, through a description of its
//! own that a fork child closes ([`LockFile`]): the kernel drops the lock when its holder
//! dies, so a lock taken on a byte whose word names an area proves that area's owner gone.
//!
//! | word `W_AREAS + i` | lock byte `i` | meaning |
//! |---|---|---|
//! | 0 | free | unused |
//! | `at` | held | the holder's area: only the holder writes it |
//! | `at` | free | a dead handle's: the next to lock the byte drains it (its blocks to the shared free lists) |
//! | 0 | held | being claimed (or the area could not be made: that handle goes without) |
//!
//! Who drains: a handle claiming an area (its process's first magazine use) drains every dead
//! one below the high-water mark `W_AREA_HIGH` on its way, and keeps the first it locks; a
//! trim ([`Heap::recover_magazines`]) drains them all. A drainer killed half way leaves the
//! area named, its counts lowered block by block before each block is freed, so the next
//! drainer goes on and nothing is freed twice (a block may leak, as in a killed free).
//! An area's word is cleared before its block is freed, so no drainer reads a freed area.
//!
//! A first open of a file map rebuilds the heap and clears every area (every handle is gone).

use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError, TryLockError};

use super::classes::{Class, CLASSES};
use super::magazine::{layout, Inside, Slots};
use super::store::{Heap, W_AREAS, W_AREA_HIGH};
use crate::error::Result;
use crate::liveness::LockFile;
use crate::owner::current_owner;

/// Areas in a heap: handles (processes, and handles within one) with magazines at once.
/// Further handles go without (the shared free lists only).
pub(super) const AREAS: usize = 256;
/// Area `i`'s lock byte of the heap file (byte 0 is the heap lock).
const AREA_BYTE0: usize = 1;

/// The class of an area's block.
pub(super) fn area_class() -> Class {
    Class::of(layout().words() * 8).expect("an area is a small block")
}

/// A handle's claim on an area, process-local.
#[derive(Debug, Default)]
pub(super) struct Mine {
    /// The process the fields below belong to (0: none yet; a fork child starts afresh).
    pid: u32,
    /// Our description of the heap file for the area locks.
    lock: Option<LockFile>,
    /// The area we hold, and where it lies.
    held: Option<(usize, u64)>,
}

impl Heap {
    /// Runs `f` on this handle's magazine of class `c`; `None` if another thread of the
    /// handle is inside it, or the handle has no area.
    #[inline]
    pub(super) fn with_magazine<R>(&self, c: Class, f: impl FnOnce(&Slots<'_>) -> R) -> Option<R> {
        let inside = self.gates[c.index()].enter()?;
        self.in_magazine(c, &inside).map(|s| f(&s))
    }

    /// The slots of our magazine of class `c`, for a thread inside its gate.
    #[inline]
    pub(super) fn in_magazine<'a>(&'a self, c: Class, _inside: &Inside<'_>) -> Option<Slots<'a>> {
        // Acquire: pairs with the Release store in `claim_area`, after `area` was written.
        let area = match self.area_pid.load(Ordering::Acquire) == current_owner() {
            // Relaxed: ordered by the Acquire above.
            true => self.area.load(Ordering::Relaxed),
            false => self.claim_area(),
        };
        if area == 0 {
            return None;
        }
        let (first, words) = layout().span(c);
        // SAFETY: `claim_area` keeps an area only if `Heap::words` found all of it backed,
        // 8-aligned, and `area` is this handle's own copy, which shared memory cannot change.
        // (No bounds check on every take and give: the checked path, `magazine_at`, is for
        // other handles' areas.)
        Some(Slots::new(unsafe {
            self.words_unchecked(area + first as u64 * 8, words)
        }))
    }

    /// Class `c`'s magazine in the area at `at` (bounds-checked: a damaged word may name an
    /// area anywhere).
    #[inline]
    pub(super) fn magazine_at(&self, at: u64, c: Class) -> Option<Slots<'_>> {
        let (first, words) = layout().span(c);
        self.words(at + first as u64 * 8, words).map(Slots::new)
    }

    /// Gives every block of class `c` that `slots` holds to the shared free list, each one
    /// taken out (the count lowered) before it is freed: a kill in between leaks that block,
    /// never frees it twice. A block a damaged slot names is refused by the bitmap.
    fn give_back(&self, c: Class, slots: &Slots<'_>) {
        while let Some(b) = slots.pop() {
            let _ = self.free_shared(c, b);
        }
    }

    fn mine(&self) -> MutexGuard<'_, Mine> {
        // A panic under this lock leaves `Mine` consistent (each field is written whole).
        self.mine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `mine` unless another thread holds it: that thread is claiming or draining, or it
    /// held it at a fork and this is the child, where nobody will ever unlock it (so nothing
    /// that a child may call waits for it).
    fn try_mine(&self) -> Option<MutexGuard<'_, Mine>> {
        match self.mine.try_lock() {
            Ok(mine) => Some(mine),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Claims an area for this process (its first magazine use, or a fork child's): drains
    /// the dead ones met on the way. 0 if none could be had, or another thread holds the
    /// claim's lock (this write goes to the shared lists; the next one asks again).
    #[cold]
    fn claim_area(&self) -> u64 {
        let Some(mut mine) = self.try_mine() else {
            return 0;
        };
        let me = current_owner();
        // Relaxed: under `mine`, which whoever stored it held.
        if self.area_pid.load(Ordering::Relaxed) == me {
            return self.area.load(Ordering::Relaxed);
        }
        // A fork child: the parent's area is the parent's, and so are its locks.
        if mine.pid != me {
            mine.held = None;
        }
        let area = self
            .visit_areas(&mut mine, true)
            .map_or(0, |(_, held)| held);
        // Whole inside the heap, once: `in_magazine` relies on it.
        let area = self.words(area, layout().words()).map_or(0, |_| area);
        // Relaxed, then Release: see `in_magazine`.
        self.area.store(area, Ordering::Relaxed);
        self.area_pid.store(me, Ordering::Release);
        area
    }

    /// Drains the areas of handles that are gone (their blocks to the shared free lists) and
    /// returns how many. A trim and a sweep call it; so does every process's first magazine
    /// use. 0 at once if another thread of this handle is claiming or draining.
    pub fn recover_magazines(&self) -> Result<usize> {
        let lock = self.lock()?;
        let drained = self.recover_magazines_locked();
        drop(lock);
        drained
    }

    /// [`Heap::recover_magazines`] for a caller holding the heap lock. Drains outside a
    /// writer's operation hold it, so that a sweep, which holds it and every writer lock,
    /// finds no block between a magazine and a free list (`sweep.rs`).
    pub(super) fn recover_magazines_locked(&self) -> Result<usize> {
        let Some(mut mine) = self.try_mine() else {
            return Ok(0);
        };
        if mine.pid != current_owner() {
            mine.held = None; // a fork child's copy of the parent's claim
        }
        self.visit_areas(&mut mine, false)
            .map(|(drained, _)| drained)
    }

    /// Locks every area byte below the high-water mark but ours, drains the areas of the dead
    /// and frees them, keeping the first one locked if `claim` (and going past the mark
    /// until one is). Returns how many were drained, and the area held (0 for none).
    fn visit_areas(&self, mine: &mut Mine, claim: bool) -> Result<(usize, u64)> {
        let me = current_owner();
        if mine.pid != me || mine.lock.is_none() {
            let lock = LockFile::open_fd(self.raw_fd(), &self.location, &self.location.label())?;
            mine.lock = Some(lock); // a fork child's inherited one was closed at the fork
            mine.pid = me;
        }
        let lock = mine.lock.as_ref().expect("opened above");
        let mut drained = 0;
        // Acquire: the areas below it were named before it was raised.
        let high = (self.header(W_AREA_HIGH).load(Ordering::Acquire) as usize).min(AREAS);
        for i in 0..AREAS {
            if i >= high && (!claim || mine.held.is_some()) {
                break;
            }
            if mine.held.is_some_and(|(h, _)| h == i) || !lock.try_lock(AREA_BYTE0 + i)? {
                continue;
            }
            let word = self.header(W_AREAS + i);
            // Acquire: the dead owner's stores to its area happened before it died, and
            // before our lock; the Acquire pairs with the Release naming the area.
            let at = word.load(Ordering::Acquire);
            let valid = at != 0 && self.is_area(at);
            if valid {
                // No sweep for this: a process leaks only by dying under a writer lock or
                // the heap lock, and those ask for one (`sweep.rs`).
                self.drain_area(at);
                drained += 1;
            }
            if claim && mine.held.is_none() {
                if let Some(at) = self.take_area(i, valid.then_some(at)) {
                    mine.held = Some((i, at));
                    continue;
                }
            } else if at != 0 {
                // Release: nobody who reads the word from now on reads the area.
                word.store(0, Ordering::Release);
                if valid {
                    let _ = self.free_shared(area_class(), at);
                }
            }
            lock.unlock(AREA_BYTE0 + i)?;
        }
        Ok((drained, mine.held.map_or(0, |(_, at)| at)))
    }

    /// Makes area `i` ours (its byte locked): `dead`'s drained block, or a new one. `None`
    /// if no block could be had (the heap is full): the handle goes without magazines.
    fn take_area(&self, i: usize, dead: Option<u64>) -> Option<u64> {
        let word = self.header(W_AREAS + i);
        let at = match dead {
            Some(at) => at, // drained: every count is 0
            None => {
                // Relaxed: the byte lock makes us its only writer.
                word.store(0, Ordering::Relaxed);
                let at = self.alloc_small(area_class()).ok()?;
                for c in (0..CLASSES).filter_map(Class::from_index) {
                    self.magazine_at(at, c)?.forget();
                }
                at
            }
        };
        // Release: the zeroed counts happen-before whoever reads the area through the word.
        word.store(at, Ordering::Release);
        self.header(W_AREA_HIGH)
            .fetch_max(i as u64 + 1, Ordering::AcqRel);
        Some(at)
    }

    /// Whether `at` can be an area: an allocated block of the area class (a damaged word
    /// names anything; it is then cleared, nothing read through it).
    pub(super) fn is_area(&self, at: u64) -> bool {
        self.is_block_shape(area_class(), at)
            && self
                .bit_of(area_class(), at)
                .is_ok_and(|(word, bit)| word.load(Ordering::Relaxed) & bit != 0)
    }

    /// Gives every block the area at `at` holds to the shared free lists.
    fn drain_area(&self, at: u64) {
        for c in (0..CLASSES).filter_map(Class::from_index) {
            if let Some(slots) = self.magazine_at(at, c) {
                self.give_back(c, &slots);
            }
        }
    }

    /// Gives this handle's magazines back to the shared free lists (a trim, or a drop); the
    /// caller holds the heap lock (see `recover_magazines_locked`).
    pub(super) fn return_magazines(&self) {
        self.each_magazine(|c, slots| self.give_back(c, slots));
    }

    /// Runs `f` on each of this handle's magazines, waiting out other threads inside them;
    /// nothing if this process holds no area (a fork child's copy names its parent's).
    fn each_magazine(&self, f: impl Fn(Class, &Slots<'_>)) {
        // Acquire: as in `in_magazine`.
        if self.area_pid.load(Ordering::Acquire) != current_owner() {
            return;
        }
        for c in (0..CLASSES).filter_map(Class::from_index) {
            let Some(inside) = self.gates[c.index()].enter_patiently() else {
                continue;
            };
            if let Some(slots) = self.in_magazine(c, &inside) {
                f(c, &slots);
            }
        }
    }

    /// Gives up this handle's area (as it drops): its blocks, then the area itself. Without
    /// the `mine` lock: nobody else holds the handle (a fork child's copy of a held lock would
    /// never be unlocked, and its fields name the parent's claim, which the child leaves
    /// alone). Under the heap lock (see `recover_magazines_locked`); if that cannot be had,
    /// the area is left as a dead handle's, for the next claim or trim to drain.
    pub(super) fn release_area(&mut self) {
        let mine = self.mine.get_mut().unwrap_or_else(PoisonError::into_inner);
        let ours = mine.pid == current_owner();
        // Taken out before the heap lock, which borrows the heap (the magazines are found
        // through `area_pid`, not through these).
        let (held, lock) = match ours {
            true => (mine.held.take(), mine.lock.take()),
            false => (None, None),
        };
        let Ok(_heap_lock) = self.lock() else {
            return; // our byte lock, if any, goes with its description
        };
        self.return_magazines();
        if !ours {
            return;
        }
        if let Some((i, at)) = held {
            // Release: as in `visit_areas`; cleared before the block is freed.
            self.header(W_AREAS + i).store(0, Ordering::Release);
            let _ = self.free_shared(area_class(), at);
            if let Some(lock) = &lock {
                let _ = lock.unlock(AREA_BYTE0 + i);
            }
        }
        self.area_pid.store(0, Ordering::Release);
    }

    /// Every block the areas named now hold, as (offset, bytes): the areas themselves and
    /// the blocks in their magazines, for a sweep to keep (`sweep.rs`). A damaged word or
    /// slot names anything: the caller keeps only what is a block of its class.
    pub(super) fn area_blocks(&self) -> Vec<(u64, usize)> {
        let mut held = Vec::new();
        // Acquire: the areas below it were named before it was raised.
        let high = (self.header(W_AREA_HIGH).load(Ordering::Acquire) as usize).min(AREAS);
        for i in 0..high {
            // Acquire: pairs with the Release naming the area (its zeroed counts).
            let at = self.header(W_AREAS + i).load(Ordering::Acquire);
            if at == 0 || !self.is_area(at) {
                continue;
            }
            held.push((at, area_class().block()));
            for c in (0..CLASSES).filter_map(Class::from_index) {
                if let Some(slots) = self.magazine_at(at, c) {
                    held.extend(slots.held().map(|b| (b, c.block())));
                }
            }
        }
        held
    }

    /// For a rebuild, which frees every block no record names (areas and what they hold
    /// included): this handle forgets its area and every area is cleared. Only with no
    /// other handle open, nor another thread in this one (it waits for the claim's lock).
    pub(super) fn forget_areas(&self) {
        self.each_magazine(|_, slots| slots.forget());
        let mut mine = self.mine();
        if let (Some((i, _)), Some(lock)) = (mine.held.take(), &mine.lock) {
            let _ = lock.unlock(AREA_BYTE0 + i);
        }
        self.area_pid.store(0, Ordering::Release);
        // Relaxed: the rebuild's caller excludes every other user.
        for i in 0..AREAS {
            self.header(W_AREAS + i).store(0, Ordering::Relaxed);
        }
        self.header(W_AREA_HIGH).store(0, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::heap::DEFAULT_RESERVE;
    use crate::Location;

    /// A fork child inherits `mine` as it was: locked, if another thread of the parent was
    /// claiming, draining or releasing an area at the fork, and never unlocked in the child.
    /// The child must still write (without magazines), trim and drop its handle.
    #[test]
    fn a_fork_child_of_a_thread_inside_the_area_lock_does_not_hang() {
        struct Unlink(Location);
        impl Drop for Unlink {
            fn drop(&mut self) {
                let _ = self.0.unlink_one();
            }
        }
        let at = Unlink(Location::Shm(format!(
            "shmap-unit-areas-fork-{}",
            std::process::id()
        )));
        let _ = at.0.unlink_one();
        let heap = Heap::create(&at.0, DEFAULT_RESERVE).unwrap();
        // What a thread in the middle of a claim holds at the fork.
        let held = heap.mine.lock().unwrap();
        // SAFETY: the child uses only its copy of the heap handle, then `_exit`s (no
        // destructors or atexit handlers of the test harness).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            std::mem::forget(held); // the child's copy stays locked, as a thread's would
            let wrote = (|| {
                let b = heap.alloc(40)?;
                heap.free(b, 40)?;
                heap.trim()
            })();
            drop(heap);
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(i32::from(wrote.is_err())) };
        }
        drop(held);
        let started = Instant::now();
        let mut status = 0;
        // SAFETY: polls our own child.
        while unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
            if started.elapsed() > Duration::from_secs(10) {
                // SAFETY: our own child, not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the fork child hung on the area lock it inherited");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child's write failed: {status}"
        );
    }
}
