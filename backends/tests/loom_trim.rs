//! Model check of a trim giving a run back while a writer allocates and frees in it
//! (`src/heap/trim.rs`, steps 1-3), with loom: every interleaving (up to a preemption bound)
//! of the real free list, `shmap::heap::free_list::{pop, push}`, and of the carve and bitmap
//! steps of `Heap::alloc_small` and `Heap::free`, on loom's atomics. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmap-backends --test loom_trim --release`.
//!
//! One run of two blocks: block 0 carved and free on the class's list, block 1 not carved
//! yet. A writer twice allocates a block (pops the list, or carves the next block with a CAS
//! of the carve word), marks it in the bitmap, writes it, reads it back, clears its bit and
//! pushes it. The trim pops the whole list and gives the run back (writing `PUNCHED` over
//! every block, as a punched page reads zeros) only if it popped every block carved, the
//! bitmap is clear, and its CAS of the carve word to 0 succeeds. Checked: no block is given
//! back while the writer holds it; otherwise the run is whole, every carved block on the
//! list once.
//!
//! Two mutations show the model is sharp enough: a trim that stores 0 into the carve word
//! instead of its CAS (a writer that carved since the trim read the word keeps a block of a
//! run given back), and a trim that does not compare what it popped with what was carved
//! (a writer between its pop and its mark holds a block whose bit is still clear). The model
//! sees each either as the writer's block overwritten or as a run given back that the writer
//! then frees into.
#![cfg(loom)]

use std::sync::atomic::Ordering;

use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;
use shmap::heap::free_list::{pop, push};

/// The run's blocks, one word each (its data and, while free, its link), at heap offsets 8
/// and 16 (word 0 of the model is the heap's header, never a block).
const BLOCKS: [u64; 2] = [8, 16];
/// The carve word's run field (`page << 24` in the heap): nonzero, so the word names a run.
const RUN: u64 = 1 << 24;
/// What the writer stores in the block it holds.
const VALUE: u64 = 0x5EED;
/// What a given-back block reads as.
const PUNCHED: u64 = 0;

/// How the trim decides a run is empty: as built, or one of the mutations.
#[derive(Clone, Copy, PartialEq)]
enum Trim {
    AsBuilt,
    StoresTheCarveWord,
    DoesNotCount,
}

struct Model {
    heap: [AtomicU64; 3],
    /// The class's free list head.
    free: AtomicU64,
    /// The class's carve word: `RUN | blocks carved`, or 0 once the run is given back.
    carve: AtomicU64,
    /// The run's bitmap: bit i set while block i is handed out.
    bits: AtomicU64,
}

impl Model {
    fn new() -> Arc<Self> {
        let m = Arc::new(Self {
            heap: std::array::from_fn(|_| AtomicU64::new(0)),
            free: AtomicU64::new(0),
            carve: AtomicU64::new(RUN | 1),
            bits: AtomicU64::new(0),
        });
        push(&m.free, BLOCKS[0], m.word(BLOCKS[0]));
        m
    }

    fn word(&self, offset: u64) -> &AtomicU64 {
        &self.heap[offset as usize / 8]
    }

    fn link_of<'a>(&'a self) -> impl Fn(u64) -> Option<&'a AtomicU64> + 'a {
        move |offset| self.heap.get(offset as usize / 8).filter(|_| offset != 0)
    }

    fn bit(b: u64) -> u64 {
        1 << (b / 8 - 1)
    }

    /// `alloc_small`: a block from the list, else the next one carved; `None` where the
    /// writer would make a new run (the run was given back, or is carved out).
    fn alloc(&self) -> Option<u64> {
        loop {
            if let Some(b) = pop(&self.free, self.link_of()).unwrap() {
                self.mark(b, true);
                return Some(b);
            }
            // Acquire: as `alloc_small` (the run's header was written before the word).
            let cw = self.carve.load(Ordering::Acquire);
            let next = (cw & 0xFF_FFFF) as usize;
            if cw == 0 || next == BLOCKS.len() {
                return None;
            }
            // Relaxed: as `alloc_small`.
            if self
                .carve
                .compare_exchange(cw, cw + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                let b = BLOCKS[next];
                self.mark(b, true);
                loom::sync::atomic::fence(Ordering::Release);
                return Some(b);
            }
        }
    }

    /// `Heap::mark`: the bitmap's AcqRel read-modify-write.
    fn mark(&self, b: u64, allocated: bool) {
        let before = match allocated {
            true => self.bits.fetch_or(Self::bit(b), Ordering::AcqRel),
            false => self.bits.fetch_and(!Self::bit(b), Ordering::AcqRel),
        };
        assert_eq!(
            before & Self::bit(b) != 0,
            !allocated,
            "block {b} marked twice"
        );
    }

    /// The writer: twice, a block allocated, written, read back and freed.
    fn write(&self) {
        for _ in 0..2 {
            let Some(b) = self.alloc() else { return };
            // Relaxed: the block is ours (the reuse rule orders it after its last free).
            self.word(b).store(VALUE, Ordering::Relaxed);
            thread::yield_now();
            let read = self.word(b).load(Ordering::Relaxed);
            assert_eq!(read, VALUE, "block {b} given back while its writer held it");
            self.mark(b, false);
            push(&self.free, b, self.word(b));
        }
    }

    /// The trim of the class (`trim_class`): whether it gave the run back.
    fn trim(&self, how: Trim) -> bool {
        let mut popped = Vec::new();
        while let Some(b) = pop(&self.free, self.link_of()).unwrap() {
            popped.push(b);
        }
        // Acquire: as `trim_class`.
        let cw = self.carve.load(Ordering::Acquire);
        let carved = (cw & 0xFF_FFFF) as usize;
        // Relaxed: as `run_is_clear` (the popped blocks' bits were cleared before their push).
        let empty = cw != 0
            && (how == Trim::DoesNotCount || popped.len() == carved)
            && self.bits.load(Ordering::Relaxed) == 0
            && match how {
                Trim::StoresTheCarveWord => {
                    self.carve.store(0, Ordering::Relaxed);
                    true
                }
                // Relaxed: the heap lock orders the next run's making after us.
                _ => self
                    .carve
                    .compare_exchange(cw, 0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok(),
            };
        if empty {
            for b in BLOCKS {
                // Relaxed: a punched page reads zeros, whoever reads it.
                self.word(b).store(PUNCHED, Ordering::Relaxed);
            }
        } else {
            for b in popped {
                push(&self.free, b, self.word(b));
            }
        }
        empty
    }
}

fn model(how: Trim) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let m = Model::new();
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || m.write())
            })
            .collect();
        let gave_back = m.trim(how);
        for w in writers {
            w.join().unwrap();
        }
        let mut listed = Vec::new();
        while let Some(b) = pop(&m.free, m.link_of()).unwrap() {
            listed.push(b);
        }
        listed.sort_unstable();
        assert_eq!(m.bits.load(Ordering::Relaxed), 0, "a block left marked");
        let carved = (m.carve.load(Ordering::Relaxed) & 0xFF_FFFF) as usize;
        match gave_back {
            // Given back: nothing of it may be on the list, and no writer carves from it.
            true => assert_eq!(
                (listed.len(), carved),
                (0, 0),
                "a run given back while in use"
            ),
            // Kept: every block carved is on the list, once.
            false => assert_eq!(listed, BLOCKS[..carved].to_vec(), "a kept run lost a block"),
        }
    });
}

#[test]
fn a_trim_never_gives_back_a_block_a_writer_holds() {
    model(Trim::AsBuilt);
}

#[test]
#[should_panic(expected = "given back while")]
fn mutation_a_trim_that_stores_the_carve_word_is_caught() {
    model(Trim::StoresTheCarveWord);
}

#[test]
#[should_panic(expected = "given back while")]
fn mutation_a_trim_that_does_not_count_what_it_popped_is_caught() {
    model(Trim::DoesNotCount);
}
