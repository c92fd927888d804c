//! Model check of a compaction move (`compact.rs`) against a reader, with loom: the mover
//! publishes key K in its new slot `t`, bumps the table's move count and retires K's old slot
//! `j`; a reader of K probes `t` then `j` and, when it finds neither, looks again if the move
//! count changed. Checked: the reader never reports K missing, in every interleaving (up to
//! a preemption bound). It fails if the mover bumps the count after retiring `j`, or not at
//! all. The pass count of `t` (`raw_table/passes.rs`: K's probe passes `t` until the move)
//! is modelled too: the mover lowers it after retiring `j` (Release), and a reader that
//! finds `t` not K's and its count 0 stops there; it fails if the -1 comes before the bump.
//! Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmap-backends --test loom_compact --release`.
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, AtomicU8};
use loom::sync::Arc;
use loom::thread;
use shmap::{Meta, SlotState};
use shmap_backends::slot::{publish, try_take, Word};
use std::sync::atomic::Ordering;

const TAG: u16 = 7;

struct Model {
    t: AtomicU64,
    j: AtomicU64,
    moves: AtomicU64,
    /// How many probes pass `t`: K's, until it moves there.
    passes_t: AtomicU8,
}

impl Model {
    /// The mover (every writer excluded): K from `j` to `t`.
    fn move_k(&self) {
        let t0 = Meta(Word::load(&self.t, Ordering::Relaxed));
        assert!(try_take(&self.t, t0, 1));
        publish(&self.t, t0.next(SlotState::Full, TAG));
        self.moves.fetch_add(1, Ordering::AcqRel);
        let j0 = Meta(Word::load(&self.j, Ordering::Relaxed));
        assert!(try_take(&self.j, j0, 1));
        publish(&self.j, j0.next(SlotState::Tombstone, 0));
        self.passes_t.fetch_sub(1, Ordering::Release);
    }

    /// A lookup of K: probe `t`, then `j`; on a miss, look again if the move count moved.
    fn lookup(&self) -> bool {
        for _ in 0..3 {
            let moves = self.moves.load(Ordering::Acquire);
            for (slot, passed) in [(&self.t, Some(&self.passes_t)), (&self.j, None)] {
                let m = Meta(Word::load(slot, Ordering::Acquire));
                if m.is_full_with_tag(TAG) {
                    return true; // one value in either slot: a hit is always right
                }
                if passed.is_some_and(|p| p.load(Ordering::Acquire) == 0) {
                    break; // no probe passes `t`: the key is not after it
                }
            }
            if self.moves.load(Ordering::Acquire) == moves {
                return false;
            }
            thread::yield_now();
        }
        panic!("the move count changed on three looks: the model makes one move")
    }
}

#[test]
fn a_reader_never_misses_a_key_being_moved() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let m = Arc::new(Model {
            t: AtomicU64::new(Meta::stable(SlotState::Tombstone, 0, 1).0),
            j: AtomicU64::new(Meta::stable(SlotState::Full, TAG, 1).0),
            moves: AtomicU64::new(0),
            passes_t: AtomicU8::new(1),
        });
        let mover = {
            let m = m.clone();
            thread::spawn(move || m.move_k())
        };
        assert!(m.lookup(), "the key was reported missing while it moved");
        mover.join().unwrap();
        assert!(m.lookup());
    });
}
