//! The steps of the slot protocol, generic over the atomic word they run on, so the same code
//! runs on shared memory (`std` atomics) and under the `loom` model checker (`tests/loom.rs`),
//! as crossbeam keeps its algorithms behind a `loom` shim.
//!
//! Every ordering is chosen here, once; `table`, `lockfree`, `spinlock` and `recovery` only
//! sequence these steps.

use std::sync::atomic::Ordering;

pub use shmap::Word;
use shmap::{Meta, SlotState};

use crate::journal::Op;

/// Takes a slot from the stable word `m` for `owner`; `false` if `m` is no longer current.
#[inline]
pub fn try_take<W: Word>(meta: &W, m: Meta, owner: u64) -> bool {
    // Acquire: our writes to the slot come after the publication we replace.
    let taken = meta
        .compare_exchange(m.0, m.busy(owner).0, Ordering::Acquire, Ordering::Relaxed)
        .is_ok();
    if taken {
        // Release fence: a reader that copies any word we write next and then fences sees
        // the busy word (the writer half of the seqlock recipe).
        W::fence(Ordering::Release);
    }
    taken
}

/// [`try_take`] for a writer no other process can race on this word: it holds the key's lock,
/// only holders of that lock (or of every lock) change a slot holding the key, and readers
/// never take slots (the lock-free protocol). A plain store then does what the CAS did, without
/// a locked instruction, which waits for every store still in flight (perf, a one-process
/// update: the CAS and the lease's were the write path's two hottest spots). `false`, with
/// nothing written, if the word is not `m`: someone broke the protocol.
#[inline]
pub fn take_exclusive<W: Word>(meta: &W, m: Meta, owner: u64) -> bool {
    // Relaxed: only we write this word now; the key lock's Acquire ordered the last
    // publication (by a previous holder) before us, so we see it.
    if meta.load(Ordering::Relaxed) != m.0 {
        return false;
    }
    meta.store(m.busy(owner).0, Ordering::Relaxed);
    // Release fence, as in `try_take`: a reader that copies any word we write next and then
    // fences sees the busy word.
    W::fence(Ordering::Release);
    true
}

/// Publishes `word` (a stable word with the next version) over a slot we hold.
#[inline]
pub fn publish<W: Word>(meta: &W, word: Meta) {
    // Release: the slot's words written before happen-before any reader that sees the word.
    meta.store(word.0, Ordering::Release);
}

/// Finishes a slot a dead owner held (see [`judge`]): runs `rewrite` (the journal copy of a
/// redo, or nothing) and publishes `word`.
#[inline]
pub fn complete<W: Word>(meta: &W, word: Meta, rewrite: impl FnOnce()) {
    // Release fence, as in `try_take`: we write data words of a slot we did not take
    // ourselves, so a reader that copies one of them and then fences must still see the busy
    // word the dead owner stored (it happens-before us: we saw it). Without it a reader could
    // accept a copy torn between the dead owner's words and ours (found by tests/loom.rs).
    W::fence(Ordering::Release);
    rewrite();
    publish(meta, word);
}

/// A read of one slot's words, run by a protocol's consistent read (once per attempt). A
/// trait, not just a closure, so that a lookup's read is always inlined: as a closure the
/// compiler turned it into a call per probed slot once the lookup code grew (perf, Python
/// `k in m`: 13% of the samples in `FnOnce::call_once`, 7% slower). Closures implement it.
pub trait SlotRead {
    type Out;
    fn read(&mut self) -> Self::Out;
}

impl<R, F: FnMut() -> R> SlotRead for F {
    type Out = R;
    #[inline(always)]
    fn read(&mut self) -> R {
        self()
    }
}

/// A seqlock read of a slot seen stable as `m1`: copy with Relaxed loads, then validate.
/// `None` if the slot changed meanwhile (the copy may be torn and is discarded).
#[inline(always)] // every get's copy runs in here
pub fn read_validated<W: Word, R: SlotRead>(meta: &W, m1: Meta, mut read: R) -> Option<R::Out> {
    let copied = read.read();
    // Acquire fence: if any word copied above came from a later write, the load below sees
    // that write's busy word or a later version.
    W::fence(Ordering::Acquire);
    (meta.load(Ordering::Relaxed) == m1.0).then_some(copied)
}

/// What a recoverer finds on the slot of a dead owner's journalled operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The dead owner still holds the slot: (if `redo`, copy the journal in, then) publish
    /// `word`, and count `delta`.
    Holding { word: Meta, redo: bool, delta: i32 },
    /// Someone alive (or another dead owner) holds the slot for a moment: wait, look again.
    Busy(Meta),
    /// The slot is stable: the operation published (count `delta`) or never took it (0).
    Settled { delta: i32, published: bool },
}

/// Judges the dead owner's slot: `op` took it from `before` (its busy word is `mine`), to
/// publish `after`; `holds_key` says whether the slot holds the journal's key (claims).
/// `None` when the word moved during the judgement: look again.
pub fn judge<W: Word>(
    meta: &W,
    op: Op,
    before: Meta,
    after: Meta,
    mine: Meta,
    holds_key: impl FnOnce() -> bool,
) -> Option<Verdict> {
    // Acquire: whatever we compare below is at least as new as the word.
    let w = Meta(meta.load(Ordering::Acquire));
    if w == mine {
        let (word, redo, delta) = match op {
            // A move spans two slots: `recovery::repair` judges it itself, never here.
            Op::Read | Op::Idle | Op::Move => (before, false, 0),
            Op::Update => (after, true, 0),
            // Never back to EMPTY: other keys may have been placed beyond it meanwhile.
            Op::Claim => (before.next(SlotState::Tombstone, 0), false, 0),
            Op::Remove => (after, false, -1),
        };
        return Some(Verdict::Holding { word, redo, delta });
    }
    if w.is_busy() && w.state() == Some(SlotState::Full) {
        return Some(Verdict::Busy(w));
    }
    let published = match op {
        // Only the dead remover could move the slot off `before` (it held the key's lock;
        // a reader restores `before` exactly), and once it published the tombstone anyone may
        // claim the slot: anything but `before` means the remove was made.
        Op::Remove => w != before,
        // A claimed slot, once free again, may hold another key's entry by now.
        Op::Claim => w == after && holds_key(),
        _ => w == after,
    };
    // Validate the key comparison as a seqlock read: the word must not have moved.
    W::fence(Ordering::Acquire);
    if meta.load(Ordering::Relaxed) != w.0 {
        return None;
    }
    let delta = match (published, op) {
        (true, Op::Claim) => 1,
        (true, Op::Remove) => -1,
        _ => 0,
    };
    Some(Verdict::Settled { delta, published })
}
