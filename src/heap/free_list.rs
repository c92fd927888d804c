//! A free list of heap blocks shared by processes: a Treiber stack whose head word carries an
//! ABA tag, generic over the loom shim ([`Word`]) so the model checker runs these very steps
//! (`backends/tests/loom_heap.rs`).
//!
//! Head word:
//!
//! | bits  | meaning                                                          |
//! |-------|------------------------------------------------------------------|
//! | 0-39  | the first free block's heap offset in 8-byte units; 0: the list is empty (offset 0 is the heap's header, never a block) |
//! | 40-63 | a tag, +1 (wrapping) at every push and pop                       |
//!
//! | from                | to                          | by                                   |
//! |---------------------|-----------------------------|--------------------------------------|
//! | `(first, t)`        | `(block, t + 1)`            | a push (CAS, Release): `block`'s link word holds `first` |
//! | `(first, t)`        | `(next of first, t + 1)`    | a pop (CAS, Acquire)                 |
//!
//! A free block's link word holds the next block's offset as a byte offset (a multiple of 8),
//! its low bits free for a flag ([`PUNCHED`]): the block's first word, or, in a run larger
//! than 64 KiB, the block's slot in its run's header page (`classes::RunShape::links`), so
//! that such a free block can give all its pages back. A popper reads
//! it from a block that another popper may have taken and a writer may be rewriting: an atomic
//! load inside the mapping, so a wrong value is harmless, and the tag makes the CAS fail (a
//! tag repeats only after 2^24 pushes and pops within one pop's window).
//!
//! **The reuse rule** (`docs/variable-size-entries.md`, 2.3): a block is pushed only after
//! the word that published its replacement, and every write into a freed block comes after a
//! `fence(Release)`: [`push`] fences before it stores the link, [`pop`] ends with one before
//! the new owner writes. So a reader that copies such a word and then fences Acquire sees
//! the publication and throws its copy away.

use std::sync::atomic::Ordering;

use crate::Word;

const OFFSET_BITS: u32 = 40;
const OFFSET_MASK: u64 = (1 << OFFSET_BITS) - 1;

/// Largest heap offset a free list (and a bucket's reference) can name: 8 TiB.
pub const MAX_OFFSET: u64 = OFFSET_MASK << 3;

fn first(head: u64) -> u64 {
    (head & OFFSET_MASK) << 3
}

fn head_word(offset: u64, previous: u64) -> u64 {
    let tag = (previous >> OFFSET_BITS).wrapping_add(1) << OFFSET_BITS;
    tag | offset >> 3
}

/// A free block's link word with this bit set: the block's pages past the one holding the
/// link are holes (punched while it was free), to be reserved again before it is written.
pub const PUNCHED: u64 = 1;

/// Pushes the free block at heap offset `block` (a nonzero multiple of 8, at most
/// [`MAX_OFFSET`]), whose link word is `link`, onto the list whose head is `head`.
pub fn push<W: Word>(head: &W, block: u64, link: &W) {
    push_marked(head, block, link, 0);
}

/// [`push`], leaving `flags` ([`PUNCHED`] or 0) in the link word's low bits, which offsets
/// (multiples of 8) never use and [`pop`] ignores.
pub fn push_marked<W: Word>(head: &W, block: u64, link: &W, flags: u64) {
    debug_assert!(block != 0 && block % 8 == 0 && block <= MAX_OFFSET);
    // Release fence: the link stored below may overwrite the block's first word, which a reader
    // of the record it held may still copy; that reader, fencing Acquire after the copy, must
    // then see the publication that preceded this free (the reuse rule applies to the freer's
    // own write too; loom found a copy torn by the link without it: `tests/loom_heap.rs`).
    W::fence(Ordering::Release);
    // Relaxed: the CAS below revalidates it.
    let mut h = head.load(Ordering::Relaxed);
    loop {
        // Relaxed: published by the CAS's Release, which a popper's Acquire load pairs with.
        link.store(first(h) | flags, Ordering::Relaxed);
        // Release: the link above, and everything before this free (the publication of the
        // block's replacement), happen-before the popper that takes the block.
        match head.compare_exchange(h, head_word(block, h), Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => h = now,
        }
    }
}

/// Pops a block from the list whose head is `head`; `link_of(offset)` is the link word of the
/// block at `offset`, or `None` where no block can be (outside the heap, misaligned).
/// `Ok(None)` when the list is empty; `Err(offset)` when the list names a place no block can
/// be (a corrupt heap). The caller owns the block it gets, and may write it at once (see the
/// reuse rule in the module docs).
pub fn pop<'a, W: Word + 'a>(
    head: &W,
    link_of: impl Fn(u64) -> Option<&'a W>,
) -> Result<Option<u64>, u64> {
    // Acquire: the block's link, written before the push's Release, is visible below.
    let mut h = head.load(Ordering::Acquire);
    loop {
        let block = first(h);
        if block == 0 {
            return Ok(None);
        }
        let link = link_of(block).ok_or(block)?;
        // Relaxed: may be stale if another popper took the block first; then the tag has
        // moved and the CAS fails.
        let next = link.load(Ordering::Relaxed) & (OFFSET_MASK << 3);
        // Acquire: pairs with the Release of the push that made `block` the head (and so
        // with the free behind it).
        match head.compare_exchange(h, head_word(next, h), Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                // Release fence: a reader that copies a word we write into the block from
                // here on, then fences Acquire, sees every publication that preceded its
                // free (the reuse rule).
                W::fence(Ordering::Release);
                return Ok(Some(block));
            }
            Err(now) => h = now,
        }
    }
}

/// Empties the list whose head is `head`, leaving its blocks to the caller: for a list whose
/// links loop (a corrupt heap), which popping never empties.
pub fn clear<W: Word>(head: &W) {
    // Relaxed: the CAS below revalidates it.
    let mut h = head.load(Ordering::Relaxed);
    // Relaxed: nothing is handed over (the caller already owns every block it popped).
    while let Err(now) =
        head.compare_exchange(h, head_word(0, h), Ordering::Relaxed, Ordering::Relaxed)
    {
        h = now;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    /// A heap of `n` words: block offsets are word indices times 8.
    fn heap(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    fn link_of<'a>(heap: &'a [AtomicU64]) -> impl Fn(u64) -> Option<&'a AtomicU64> + 'a {
        move |off| (off % 8 == 0).then(|| heap.get(off as usize / 8)).flatten()
    }

    #[test]
    fn pops_what_was_pushed_last_first_then_reports_empty() {
        let words = heap(16);
        let head = AtomicU64::new(0);
        assert_eq!(pop(&head, link_of(&words)), Ok(None));
        for b in [8u64, 40, 96] {
            push(&head, b, &words[b as usize / 8]);
        }
        for b in [96u64, 40, 8] {
            assert_eq!(pop(&head, link_of(&words)), Ok(Some(b)));
        }
        assert_eq!(pop(&head, link_of(&words)), Ok(None));
    }

    #[test]
    fn a_head_outside_the_heap_is_reported_not_followed() {
        let words = heap(4);
        let head = AtomicU64::new(head_word(800, 0));
        assert_eq!(pop(&head, link_of(&words)), Err(800));
        // A link that points outside: the pop succeeds, the next one reports it.
        let head = AtomicU64::new(head_word(8, 0));
        words[1].store(8000, Ordering::Relaxed);
        assert_eq!(pop(&head, link_of(&words)), Ok(Some(8)));
        assert_eq!(pop(&head, link_of(&words)), Err(8000));
    }

    #[test]
    fn threads_popping_and_pushing_never_share_a_block() {
        const BLOCKS: usize = 64;
        let words = heap(BLOCKS + 1);
        let head = AtomicU64::new(0);
        for b in 1..=BLOCKS as u64 {
            push(&head, b * 8, &words[b as usize]);
        }
        let held: Vec<AtomicU64> = (0..=BLOCKS).map(|_| AtomicU64::new(0)).collect();
        std::thread::scope(|s| {
            for t in 1..=4u64 {
                let (words, head, held) = (&words, &head, &held);
                s.spawn(move || {
                    for _ in 0..20_000 {
                        let Some(b) = pop(head, link_of(words)).unwrap() else {
                            continue;
                        };
                        let i = b as usize / 8;
                        assert_eq!(held[i].swap(t, Ordering::Relaxed), 0, "block {b} twice");
                        words[i].store(t, Ordering::Relaxed); // the owner writes its block
                        held[i].store(0, Ordering::Relaxed);
                        push(head, b, &words[i]);
                    }
                });
            }
        });
        let mut left = 0;
        while pop(&head, link_of(&words)).unwrap().is_some() {
            left += 1;
        }
        assert_eq!(left, BLOCKS, "every block back on the list exactly once");
    }
}
