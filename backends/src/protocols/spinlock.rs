//! The per-bucket spinlock protocol: a reader locks each bucket whose data it reads, by CAS of
//! the bucket's control word to busy, and unlocks it by storing the word back unchanged;
//! writers hold the key's stripe lock and take buckets the same way as the lock-free map.
//!
//! The price, and the reason it exists as a comparison: every get writes to shared memory (the
//! lock word's cache line moves to the reader's core and back), so readers of hot keys contend
//! with each other; and a lock holder that is preempted stalls everyone who needs that bucket,
//! which is what happens when processes outnumber cores. Waiters spin with exponential backoff,
//! then yield, then sleep ([`shmap::Backoff`]), so oversubscription degrades rather than
//! collapses outright.

use std::sync::atomic::{AtomicU64, Ordering};

use shmap::{BackendKind, Meta};

use crate::journal::Op;
use crate::recovery::Lease;
use crate::slot::SlotRead;

use super::striped::ReadDiscipline;

/// Bucket-locked reads: CAS the control word to busy, copy, store it back unchanged.
#[derive(Debug)]
pub struct SlotLocks;

impl ReadDiscipline for SlotLocks {
    const KIND: BackendKind = BackendKind::SpinLock;
    const LOCKS_SLOTS: bool = true;

    fn read_consistent<R: SlotRead>(
        lease: Option<&Lease<'_>>,
        i: usize,
        meta: &AtomicU64,
        m1: Meta,
        mut read: R,
    ) -> Option<R::Out> {
        let lease = lease.expect("slot-locking readers hold a lease");
        // Journalled like a write, so a reader killed while holding the slot is undone.
        lease.intend(Op::Read, i, m1, m1);
        // Acquire: the previous holder's writes happen-before our reads.
        let taken = meta
            .compare_exchange(
                m1.0,
                m1.busy(lease.id()).0,
                Ordering::Acquire,
                Ordering::Relaxed,
            )
            .is_ok();
        if !taken {
            lease.finish(0);
            return None;
        }
        let copied = read.read();
        // Release: our reads happen-before the next holder's writes. Restoring m1 exactly
        // (no version bump) because a read changes nothing.
        meta.store(m1.0, Ordering::Release);
        lease.finish(0);
        Some(copied)
    }
}
