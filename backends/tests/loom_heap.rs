//! Model checks of publishing, freeing and reusing a record out of line
//! (`docs/variable-size-entries.md`, 2.3), with loom: every interleaving (up to a preemption
//! bound) of the real steps, `shmap::heap::free_list::{push, pop}` and
//! `shmap_backends::slot::{publish, read_validated}`, on loom's atomics. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmap-backends --test loom_heap --release`.
//!
//! One bucket (a control word and a reference) names record A. An updater writes the new value
//! into a fresh record B, publishes the reference and the next version, and frees A; a reuser
//! pops A as soon as it is on the free list and overwrites it; a reader copies the bucket's
//! record as a get does. The reader must never accept a copy that is not
//! the whole of A's value or the whole of B's.
//!
//! Two mutations show the model is sharp enough to catch what the design rests on: a reuser
//! that writes without `pop`'s Release fence, and an updater that frees A before it publishes
//! the next version. Each makes the reader accept a torn copy, which the model finds.
#![cfg(loom)]

use std::sync::atomic::Ordering;

use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;
use shmap::heap::free_list::{pop, push};
use shmap::{Meta, SlotState};
use shmap_backends::slot::{publish, read_validated};

const TAG: u16 = 5;
/// Records A, B and C: two words each, at heap offsets 8, 24 and 40 (word 0 of the model is
/// the heap's header, never a block). A record's first word is also its free-list link.
const A: u64 = 8;
const B: u64 = 24;
const C: u64 = 40;
const OLD: u64 = 10;
const NEW: u64 = 20;
const GARBAGE: u64 = 99;

struct Model {
    meta: AtomicU64,
    reference: AtomicU64,
    heap: [AtomicU64; 7],
    free: AtomicU64,
}

impl Model {
    /// The bucket FULL at version 1 naming A, which holds OLD; the free list empty.
    fn new() -> Arc<Self> {
        let m = Arc::new(Self {
            meta: AtomicU64::new(Meta::stable(SlotState::Full, TAG, 1).0),
            reference: AtomicU64::new(A),
            heap: std::array::from_fn(|_| AtomicU64::new(0)),
            free: AtomicU64::new(0),
        });
        m.word(A).store(OLD, Ordering::Relaxed);
        m.word(A + 8).store(OLD, Ordering::Relaxed);
        m
    }

    fn word(&self, offset: u64) -> &AtomicU64 {
        &self.heap[offset as usize / 8]
    }

    fn link_of<'a>(&'a self) -> impl Fn(u64) -> Option<&'a AtomicU64> + 'a {
        move |offset| self.heap.get(offset as usize / 8)
    }

    fn write_record(&self, at: u64, value: u64) {
        // Relaxed: the record is ours until a Release store publishes it.
        self.word(at).store(value, Ordering::Relaxed);
        self.word(at + 8).store(value, Ordering::Relaxed);
    }

    /// An update of the bucket's key (its writer lock held): a new record, then the
    /// reference, then the version; `free_first` is the mutation that frees A too early.
    fn update(&self, free_first: bool) {
        let b = B; // a fresh block, carved from a run (not from the list the reuser pops)
        self.write_record(b, NEW);
        if free_first {
            push(&self.free, A, self.word(A));
        }
        // Release: the record's words happen-before a reader that loads the reference.
        self.reference.store(b, Ordering::Release);
        let m = Meta(self.meta.load(Ordering::Relaxed));
        publish(&self.meta, m.next(SlotState::Full, TAG));
        if !free_first {
            push(&self.free, A, self.word(A)); // after the publication: the reuse rule
        }
    }

    /// Takes the next freed block as soon as there is one and overwrites it; `fenced: false`
    /// is the mutation that leaves out `pop`'s Release fence.
    fn reuse(&self, fenced: bool) {
        let block = loop {
            let got = if fenced {
                pop(&self.free, self.link_of()).unwrap()
            } else {
                unfenced_pop(&self.free, self.link_of())
            };
            if let Some(block) = got {
                break block;
            }
            thread::yield_now();
        };
        self.write_record(block, GARBAGE);
    }

    /// A get's copy of the bucket's record: the whole of OLD or of NEW, or a retry.
    fn read(&self) {
        for _ in 0..2 {
            // Acquire: as in `SharedMap::lookup`.
            let m1 = Meta(self.meta.load(Ordering::Acquire));
            let copied = read_validated(&self.meta, m1, || {
                // Acquire: pairs with the reference's Release store (the record is whole).
                let r = self.reference.load(Ordering::Acquire);
                let words = (
                    self.word(r).load(Ordering::Relaxed),
                    self.word(r + 8).load(Ordering::Relaxed),
                );
                (r, words)
            });
            if let Some((r, (w0, w1))) = copied {
                let whole =
                    (r == A && (w0, w1) == (OLD, OLD)) || (r == B && (w0, w1) == (NEW, NEW));
                assert!(whole, "torn copy accepted: record {r} read ({w0}, {w1})");
                return;
            }
            thread::yield_now();
        }
    }
}

/// `pop` without its closing Release fence: the mutation the model must catch.
fn unfenced_pop<'a>(
    head: &AtomicU64,
    link_of: impl Fn(u64) -> Option<&'a AtomicU64>,
) -> Option<u64> {
    let h = head.load(Ordering::Acquire);
    let block = (h & ((1 << 40) - 1)) << 3;
    if block == 0 {
        return None;
    }
    let next = link_of(block)?.load(Ordering::Relaxed);
    let new = ((h >> 40).wrapping_add(1) << 40) | next >> 3;
    head.compare_exchange(h, new, Ordering::Acquire, Ordering::Acquire)
        .ok()
        .map(|_| block)
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b
}

fn model(fenced: bool, free_first: bool) {
    builder().check(move || {
        let m = Model::new();
        let updater = {
            let m = m.clone();
            thread::spawn(move || m.update(free_first))
        };
        let reuser = {
            let m = m.clone();
            thread::spawn(move || m.reuse(fenced))
        };
        m.read();
        updater.join().unwrap();
        reuser.join().unwrap();
        // The bucket names B, with the new value, and nothing is left on the free list.
        assert_eq!(m.reference.load(Ordering::Relaxed), B);
        assert_eq!(m.word(B).load(Ordering::Relaxed), NEW);
        assert_eq!(pop(&m.free, m.link_of()), Ok(None));
    });
}

#[test]
fn a_reader_never_accepts_a_record_freed_and_reused_under_it() {
    model(true, false);
}

#[test]
#[should_panic(expected = "torn copy accepted")]
fn mutation_a_reuser_without_the_release_fence_is_caught() {
    model(false, false);
}

#[test]
#[should_panic(expected = "torn copy accepted")]
fn mutation_freeing_before_the_publication_is_caught() {
    model(true, true);
}

/// Two poppers and a pusher on one list: no block is handed out twice, none is lost.
#[test]
fn poppers_and_a_pusher_share_no_block() {
    builder().check(|| {
        let m = Model::new();
        push(&m.free, A, m.word(A));
        push(&m.free, B, m.word(B));
        let pusher = {
            let m = m.clone();
            thread::spawn(move || push(&m.free, C, m.word(C)))
        };
        let poppers: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                thread::spawn(move || pop(&m.free, m.link_of()).unwrap())
            })
            .collect();
        let mut blocks: Vec<u64> = poppers
            .into_iter()
            .filter_map(|p| p.join().unwrap())
            .collect();
        pusher.join().unwrap();
        while let Some(b) = pop(&m.free, m.link_of()).unwrap() {
            blocks.push(b);
        }
        blocks.sort_unstable();
        assert_eq!(
            blocks,
            vec![A, B, C],
            "each block once, on the list or popped"
        );
    });
}
