//! Model check of the watch for a map that removes emptied (`shmap::RawTable::watch_emptying`,
//! the settle in `lifecycle/clear.rs`) with loom: two removers, each under its own stripe
//! with its own record, take out the map's last two entries, and then run their upkeep.
//! Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmap-backends --test loom_emptying --release`.
//!
//! The model keeps, per remover: take its stripe (Acquire), load the watch word (Relaxed),
//! store its record's count (Release), and then in `NEAR` a `SeqCst` fence and a count of
//! both records (Relaxed), `DUE` on 0; in `FAR`, when its count landed on a sampled value, a
//! count that asks for a settle (`DUE`) since at most `near` are left; let the stripe go
//! (Release). Its upkeep, on `DUE`: the settle stores `NEAR`, takes both stripes, counts, and
//! gives the table back on 0.
//!
//! Checked: whatever the interleaving, the map, empty at the end, was given back. Two
//! mutations are caught: the `NEAR` remover without its fence (two last removers each miss
//! the other's store), and a settle that counts without taking the stripes (a remover that
//! loaded `FAR` before the flip, and counted nothing, is missed).
#![cfg(loom)]

use loom::sync::atomic::{fence, AtomicBool, AtomicU64};
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::Ordering;

const NEAR: u64 = 0;
const FAR: u64 = 1;
const DUE: u64 = 2;

#[derive(Clone, Copy)]
struct Mutations {
    no_fence: bool,
    settle_without_stripes: bool,
}

struct Model {
    stripes: [AtomicU64; 2],
    counts: [AtomicU64; 2],
    word: AtomicU64,
    given_back: AtomicBool,
    mutations: Mutations,
}

impl Model {
    fn lock(&self, s: usize) {
        while self.stripes[s]
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            thread::yield_now();
        }
    }

    fn unlock(&self, s: usize) {
        self.stripes[s].store(0, Ordering::Release);
    }

    fn count(&self) -> u64 {
        self.counts[0].load(Ordering::Relaxed) + self.counts[1].load(Ordering::Relaxed)
    }

    /// Remover `r` takes out its record's one entry; `landed`: its count lands on a sample.
    fn remove(&self, r: usize, landed: bool) {
        self.lock(r);
        let state = self.word.load(Ordering::Relaxed);
        self.counts[r].store(0, Ordering::Release);
        if state == NEAR {
            if !self.mutations.no_fence {
                fence(Ordering::SeqCst);
            }
            if self.count() == 0 {
                let _ = self
                    .word
                    .compare_exchange(NEAR, DUE, Ordering::Relaxed, Ordering::Relaxed);
            }
        } else if state == FAR && landed {
            // At most `near` left (there are at most two): a settle is due.
            let _ = self
                .word
                .compare_exchange(FAR, DUE, Ordering::Relaxed, Ordering::Relaxed);
        }
        self.unlock(r);
        self.upkeep();
    }

    fn upkeep(&self) {
        if self.word.load(Ordering::Relaxed) != DUE {
            return;
        }
        if self
            .word
            .compare_exchange(DUE, NEAR, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let locks = !self.mutations.settle_without_stripes;
        if locks {
            self.lock(0);
            self.lock(1);
        }
        if self.count() == 0 {
            self.given_back.store(true, Ordering::Relaxed);
        }
        if locks {
            self.unlock(1);
            self.unlock(0);
        }
    }
}

fn check(start: u64, landed: [bool; 2], mutations: Mutations) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(move || {
        let m = Arc::new(Model {
            stripes: [AtomicU64::new(0), AtomicU64::new(0)],
            counts: [AtomicU64::new(1), AtomicU64::new(1)],
            word: AtomicU64::new(start),
            given_back: AtomicBool::new(false),
            mutations,
        });
        let other = {
            let m = m.clone();
            thread::spawn(move || m.remove(1, landed[1]))
        };
        m.remove(0, landed[0]);
        other.join().unwrap();
        assert!(
            m.given_back.load(Ordering::Relaxed),
            "the map emptied and was not given back"
        );
    });
}

const CORRECT: Mutations = Mutations {
    no_fence: false,
    settle_without_stripes: false,
};

#[test]
fn two_last_removers_near_empty() {
    check(NEAR, [false, false], CORRECT);
}

#[test]
fn a_sampled_remover_and_one_that_loaded_far() {
    check(FAR, [true, false], CORRECT);
    check(FAR, [false, true], CORRECT);
}

#[test]
#[should_panic(expected = "was not given back")]
fn mutation_near_removers_without_the_fence_are_caught() {
    let mutations = Mutations {
        no_fence: true,
        ..CORRECT
    };
    check(NEAR, [false, false], mutations);
}

#[test]
#[should_panic(expected = "was not given back")]
fn mutation_a_settle_that_takes_no_stripe_is_caught() {
    let mutations = Mutations {
        settle_without_stripes: true,
        ..CORRECT
    };
    check(FAR, [true, false], mutations);
}
