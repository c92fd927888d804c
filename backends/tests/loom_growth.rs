//! Model check of the resize protocol (`grow.rs`, `generations.rs`) with loom: every
//! interleaving (up to a preemption bound) of a writer, a resizer and a reader of one key
//! present throughout. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p shmap-backends --test loom_growth --release`.
//!
//! The model keeps what the protocol's correctness rests on:
//! - the writer takes the key's lock, then loads the generation (Acquire) and writes the
//!   table it names, then releases the lock (Release);
//! - the resizer takes every lock, loads the generation, copies the table into the next one
//!   (plain stores: nobody sees it yet), publishes the generation (Release), then releases the
//!   old table's memory, modelled as a Release store of zeros (an absent key): the kernel's
//!   page-table change and TLB shootdown are the barrier that store stands for;
//! - the reader loads the generation (Acquire), reads the table (Relaxed, then a fence as the
//!   seqlock recipe has it), loads the generation again and starts over if it moved.
//!
//! Checked: the reader never reports the key missing (a released table reads as zeros) and
//! sees the old value or the new one; the write is never lost (it lands in the table that
//! is current at the end); the copy never misses a write.
#![cfg(loom)]

use loom::sync::atomic::{fence, AtomicU64};
use loom::sync::Arc;
use loom::thread;
use std::sync::atomic::Ordering;

/// Two generations of a one-key table, the generation word and the (single) writer lock.
struct Model {
    lock: AtomicU64,
    generation: AtomicU64,
    tables: [AtomicU64; 2],
}

impl Model {
    fn lock(&self, owner: u64) {
        while self
            .lock
            .compare_exchange(0, owner, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            thread::yield_now();
        }
    }

    fn unlock(&self) {
        self.lock.store(0, Ordering::Release);
    }

    fn write(&self, value: u64) {
        self.lock(1);
        let g = self.generation.load(Ordering::Acquire) as usize;
        self.tables[g].store(value, Ordering::Release);
        self.unlock();
    }

    fn resize(&self) {
        self.lock(2); // every lock: one here
        let g = self.generation.load(Ordering::Acquire) as usize;
        let v = self.tables[g].load(Ordering::Relaxed);
        self.tables[g + 1].store(v, Ordering::Relaxed);
        self.generation.store(g as u64 + 1, Ordering::Release);
        self.tables[g].store(0, Ordering::Release); // the old table's pages, punched out
        self.unlock();
    }

    /// A bounded number of attempts; returns what a completed one read.
    fn read(&self) -> Option<u64> {
        for _ in 0..3 {
            let g = self.generation.load(Ordering::Acquire) as usize;
            let v = self.tables[g].load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.generation.load(Ordering::Relaxed) as usize == g {
                return Some(v);
            }
            thread::yield_now();
        }
        None
    }
}

#[test]
fn a_reader_a_writer_and_a_resizer() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(|| {
        let m = Arc::new(Model {
            lock: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            tables: [AtomicU64::new(1), AtomicU64::new(0)],
        });
        let writer = {
            let m = m.clone();
            thread::spawn(move || m.write(2))
        };
        let resizer = {
            let m = m.clone();
            thread::spawn(move || m.resize())
        };
        if let Some(v) = m.read() {
            assert!(v == 1 || v == 2, "the key read as {v} (0: missing)");
        }
        writer.join().unwrap();
        resizer.join().unwrap();
        let g = m.generation.load(Ordering::Acquire) as usize;
        assert_eq!(g, 1);
        assert_eq!(m.tables[g].load(Ordering::Relaxed), 2, "the write was lost");
        assert_eq!(m.read(), Some(2));
    });
}
