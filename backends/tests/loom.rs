//! Model checks of the slot protocol with loom: every interleaving (up to a preemption bound)
//! of the real protocol steps in `shmap_backends::slot`, on loom's atomics, with loom's model
//! of relaxed loads and fences. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmap-backends --test loom --release`.
//!
//! - two writers of one key (serialised by a stripe word) and a seqlock reader: the reader
//!   never accepts a torn copy, and the last write wins with the right version;
//! - two read-modify-writers of one key (`MapBackend::update`: read the value under the
//!   stripe word with plain atomic loads, then write value + 1) and a reader: no increment is
//!   lost, and the reader only ever accepts whole values;
//! - a writer abandoned at every point of an update or a claim, a reader running throughout,
//!   and a recoverer that starts once the writer is dead (joining its thread stands for the
//!   kernel handing over the dead owner's byte lock): the reader never accepts a torn copy,
//!   and the recovered slot holds exactly the old or the new entry, counted exactly.
#![cfg(loom)]

use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;
use shmap::{Meta, SlotState};
use shmap_backends::slot::{
    complete, judge, publish, read_validated, take_exclusive, try_take, Verdict, Word,
};
use shmap_backends::Op;
use std::sync::atomic::Ordering;

const TAG: u16 = 7;

/// One slot of two data words, a stripe word, and one journal record.
struct Model {
    stripe: AtomicU64,
    meta: AtomicU64,
    words: [AtomicU64; 2],
    state: AtomicU64,
    journal: [AtomicU64; 2],
}

impl Model {
    fn new(initial: Meta, value: u64) -> Arc<Self> {
        Arc::new(Self {
            stripe: AtomicU64::new(0),
            meta: AtomicU64::new(initial.0),
            words: [AtomicU64::new(value), AtomicU64::new(value)],
            state: AtomicU64::new(0),
            journal: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// Takes the stripe word for `owner` (the key's writer exclusion).
    fn lock_stripe(&self, owner: u64) {
        while self
            .stripe
            .compare_exchange(0, owner, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            thread::yield_now();
        }
    }

    fn write_words(&self, v: u64) {
        for w in &self.words {
            w.store(v, Ordering::Relaxed);
        }
    }

    /// A bounded number of seqlock read attempts; every accepted copy must be whole and one
    /// of `allowed`.
    fn read(&self, allowed: &[u64]) {
        for _ in 0..3 {
            let m1 = Meta(Word::load(&self.meta, Ordering::Acquire));
            if m1.is_busy() || m1.state() != Some(SlotState::Full) {
                thread::yield_now();
                continue;
            }
            let copy = read_validated(&self.meta, m1, || {
                (
                    self.words[0].load(Ordering::Relaxed),
                    self.words[1].load(Ordering::Relaxed),
                )
            });
            if let Some((a, b)) = copy {
                assert_eq!(a, b, "torn read accepted");
                assert!(allowed.contains(&a), "read {a}, allowed {allowed:?}");
                return;
            }
            thread::yield_now();
        }
    }
}

fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b
}

/// A key's lock holder taking its slot: by CAS (where readers may lock slots) or, in the
/// lock-free protocol, by a plain store (`take_exclusive`).
fn take(meta: &AtomicU64, cur: Meta, owner: u64, exclusive: bool) -> bool {
    if exclusive {
        take_exclusive(meta, cur, owner)
    } else {
        try_take(meta, cur, owner)
    }
}

#[test]
fn two_writers_of_one_key_and_a_reader() {
    two_writers_of_one_key_and_a_reader_taking(false);
}

#[test]
fn two_writers_of_one_key_taking_by_store_and_a_reader() {
    two_writers_of_one_key_and_a_reader_taking(true);
}

fn two_writers_of_one_key_and_a_reader_taking(exclusive: bool) {
    builder().check(move || {
        let start = Meta::stable(SlotState::Full, TAG, 0);
        let m = Model::new(start, 0);
        let writers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|v| {
                let m = m.clone();
                thread::spawn(move || {
                    m.lock_stripe(v);
                    let cur = Meta(Word::load(&m.meta, Ordering::Acquire));
                    assert!(!cur.is_busy(), "the stripe holder finds its key stable");
                    assert!(take(&m.meta, cur, v, exclusive));
                    m.write_words(v);
                    publish(&m.meta, cur.next(SlotState::Full, TAG));
                    m.stripe.store(0, Ordering::Release);
                })
            })
            .collect();
        let reader = {
            let m = m.clone();
            thread::spawn(move || m.read(&[0, 1, 2]))
        };
        for t in writers {
            t.join().unwrap();
        }
        reader.join().unwrap();
        let end = Meta(Word::load(&m.meta, Ordering::Acquire));
        assert_eq!(end.version(), 2, "two publications");
        let v = m.words[0].load(Ordering::Relaxed);
        assert!(v == 1 || v == 2);
        assert_eq!(v, m.words[1].load(Ordering::Relaxed));
    });
}

#[test]
fn two_incrementers_of_one_key_and_a_reader() {
    two_incrementers_of_one_key_and_a_reader_taking(false);
}

#[test]
fn two_incrementers_of_one_key_taking_by_store_and_a_reader() {
    two_incrementers_of_one_key_and_a_reader_taking(true);
}

fn two_incrementers_of_one_key_and_a_reader_taking(exclusive: bool) {
    builder().check(move || {
        let m = Model::new(Meta::stable(SlotState::Full, TAG, 0), 0);
        let writers: Vec<_> = [1u64, 2]
            .into_iter()
            .map(|owner| {
                let m = m.clone();
                thread::spawn(move || {
                    m.lock_stripe(owner);
                    // As `update` does: the key's value is read under its stripe word alone
                    // (only stripe holders write the slot), then rewritten through the slot.
                    let cur = Meta(Word::load(&m.meta, Ordering::Acquire));
                    let v = m.words[0].load(Ordering::Relaxed);
                    assert_eq!(
                        v,
                        m.words[1].load(Ordering::Relaxed),
                        "torn read under the stripe"
                    );
                    assert!(take(&m.meta, cur, owner, exclusive));
                    m.write_words(v + 1);
                    publish(&m.meta, cur.next(SlotState::Full, TAG));
                    m.stripe.store(0, Ordering::Release);
                })
            })
            .collect();
        let reader = {
            let m = m.clone();
            thread::spawn(move || m.read(&[0, 1, 2]))
        };
        for t in writers {
            t.join().unwrap();
        }
        reader.join().unwrap();
        assert_eq!(
            m.words[0].load(Ordering::Relaxed),
            2,
            "an increment was lost"
        );
        assert_eq!(m.words[1].load(Ordering::Relaxed), 2);
    });
}

/// A writer of `op` that stops for ever after its first `steps` steps: journal, take, the
/// two data words, publish, finish (0 to 6 steps).
fn abandoned_writer(op: Op, steps: usize) {
    const OLD: u64 = 10;
    const NEW: u64 = 20;
    const DEAD: u64 = 99;
    let before = match op {
        Op::Claim => Meta::stable(SlotState::Tombstone, 0, 3),
        _ => Meta::stable(SlotState::Full, TAG, 3),
    };
    let after = before.next(SlotState::Full, TAG);
    builder().check(move || {
        let m = Model::new(before, OLD);
        let writer = {
            let m = m.clone();
            thread::spawn(move || {
                for step in 0..steps {
                    match step {
                        0 => {
                            for w in &m.journal {
                                w.store(NEW, Ordering::Relaxed);
                            }
                            m.state.store(op as u64, Ordering::Release);
                        }
                        // As the lock-free map does: an update by store, a claim by CAS.
                        1 => assert!(take(&m.meta, before, DEAD, op == Op::Update)),
                        2 | 3 => m.words[step - 2].store(NEW, Ordering::Relaxed),
                        4 => publish(&m.meta, after),
                        _ => m.state.store(0, Ordering::Release),
                    }
                }
            })
        };
        let reader = {
            let m = m.clone();
            // A claim's entry is only ever read once published: a whole NEW.
            let allowed: &'static [u64] = if op == Op::Claim { &[NEW] } else { &[OLD, NEW] };
            thread::spawn(move || m.read(allowed))
        };
        writer.join().unwrap(); // dead: the recoverer now holds its byte lock
        let op_left = m.state.load(Ordering::Acquire) != 0;
        let mut delta = 0;
        if op_left {
            let mine = before.busy(DEAD);
            // The claim's key is the journal's exactly when the slot holds the new entry.
            let holds_key = || m.words[0].load(Ordering::Relaxed) == NEW;
            delta = loop {
                match judge(&m.meta, op, before, after, mine, holds_key) {
                    None => continue,
                    Some(Verdict::Settled { delta, .. }) => break delta,
                    Some(Verdict::Holding { word, redo, delta }) => {
                        complete(&m.meta, word, || {
                            if redo {
                                for (w, j) in m.words.iter().zip(&m.journal) {
                                    w.store(j.load(Ordering::Relaxed), Ordering::Relaxed);
                                }
                            }
                        });
                        break delta;
                    }
                    Some(Verdict::Busy(_)) => unreachable!("no spinlock readers in this model"),
                }
            };
            m.state.store(0, Ordering::Release);
        }
        reader.join().unwrap();
        let end = Meta(Word::load(&m.meta, Ordering::Acquire));
        assert!(!end.is_busy(), "recovery leaves the slot stable");
        let (a, b) = (
            m.words[0].load(Ordering::Relaxed),
            m.words[1].load(Ordering::Relaxed),
        );
        match (op, steps) {
            (_, 0..=1) => assert_eq!((end, a, delta), (before, OLD, 0), "nothing happened"),
            (Op::Update, _) => {
                assert_eq!((end, a, b), (after, NEW, NEW), "update rolled forward");
            }
            (Op::Claim, 2..=4) => {
                assert_eq!(end, before.next(SlotState::Tombstone, 0), "claim undone");
                assert_eq!(delta, 0);
            }
            (Op::Claim, 5) => assert_eq!((end, a, delta), (after, NEW, 1), "count completed"),
            (Op::Claim, _) => assert_eq!((end, a, delta), (after, NEW, 0), "already counted"),
            _ => unreachable!(),
        }
    });
}

#[test]
fn an_update_abandoned_at_any_step_is_rolled_forward() {
    for steps in 0..=6 {
        abandoned_writer(Op::Update, steps);
    }
}

#[test]
fn a_claim_abandoned_at_any_step_is_undone_or_counted() {
    for steps in 0..=6 {
        abandoned_writer(Op::Claim, steps);
    }
}

/// A remover that stops after its first `steps` steps (journal, take, publish the tombstone,
/// finish), then a writer of another key that claims the slot if it is a free tombstone,
/// before the recoverer comes: the remove is counted exactly when it was made, whoever holds
/// the slot by then (found by the dense kill test: the count stayed one too high when a
/// claim had reused the tombstone).
fn abandoned_remove_with_a_claimer(steps: usize) {
    const DEAD: u64 = 99;
    const OTHER: u64 = 7;
    let before = Meta::stable(SlotState::Full, TAG, 3);
    let after = before.next(SlotState::Tombstone, 0);
    builder().check(move || {
        let m = Model::new(before, 10);
        let remover = {
            let m = m.clone();
            thread::spawn(move || {
                for step in 0..steps {
                    match step {
                        0 => m.state.store(Op::Remove as u64, Ordering::Release),
                        1 => assert!(take_exclusive(&m.meta, before, DEAD)),
                        2 => publish(&m.meta, after),
                        _ => m.state.store(0, Ordering::Release),
                    }
                }
            })
        };
        remover.join().unwrap(); // dead: the recoverer now holds its byte lock
                                 // Another key's writer claims the tombstone first (its stripe is not the dead's).
        let claimer = {
            let m = m.clone();
            thread::spawn(move || {
                let w = Meta(Word::load(&m.meta, Ordering::Acquire));
                if w.is_stable_tombstone() && try_take(&m.meta, w, OTHER) {
                    m.write_words(30);
                    publish(&m.meta, w.next(SlotState::Full, TAG + 1));
                }
            })
        };
        claimer.join().unwrap();
        let mut delta = 0;
        if m.state.load(Ordering::Acquire) != 0 {
            let mine = before.busy(DEAD);
            delta = loop {
                match judge(&m.meta, Op::Remove, before, after, mine, || false) {
                    None => continue,
                    Some(Verdict::Settled { delta, .. }) => break delta,
                    Some(Verdict::Holding { word, delta, .. }) => {
                        complete(&m.meta, word, || {});
                        break delta;
                    }
                    Some(Verdict::Busy(_)) => thread::yield_now(),
                }
            };
        }
        // Steps: 1 journalled, 2 taken (rolled forward), 3 published, 4 finished.
        let expected = if (2..=3).contains(&steps) { -1 } else { 0 };
        assert_eq!(delta, expected, "steps {steps}: the remove counted {delta}");
    });
}

#[test]
fn a_remove_abandoned_at_any_step_is_counted_even_if_its_slot_was_claimed() {
    for steps in 0..=4 {
        abandoned_remove_with_a_claimer(steps);
    }
}
