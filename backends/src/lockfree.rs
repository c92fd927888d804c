//! The production protocol: seqlocked slots. Gets are lock-free and write nothing to shared
//! memory, so readers scale with cores; writers of one key serialise on its stripe lock and
//! claim slots by CAS.
//!
//! Read, after Boehm (2012) as crossbeam's `seq_lock.rs` does it: `m1 = meta.load(Acquire)`
//! (by the caller); copy the words with Relaxed atomic loads; `fence(Acquire)`;
//! `m2 = meta.load(Relaxed)`; the copy counts only if `m1 == m2`. Every publication bumps the
//! version in the control word, so any overlapping write makes `m2` differ.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use shmap::{BackendKind, KeyHash, MapParams, Meta, Result, Segment};

use crate::protocol::Protocol;
use crate::stripes::{stripes_len, StripeGuard, Stripes};
use crate::table::SharedMap;

/// The lock-free map: see the module docs of this file and of `table`.
pub type LockFreeMap = SharedMap<Seqlock>;

/// Seqlock reads, stripe-locked writes.
#[derive(Debug)]
pub struct Seqlock {
    stripes: Stripes,
}

impl Protocol for Seqlock {
    const KIND: BackendKind = BackendKind::LockFree;
    type WriteGuard<'a> = StripeGuard<'a>;
    type ReadGuard<'a> = ();

    fn area_len(params: &MapParams) -> usize {
        stripes_len(params.capacity)
    }

    fn init(_: &Segment) -> Result<()> {
        Ok(()) // zero is a free stripe word
    }

    fn open(segment: &Segment) -> Result<Self> {
        Ok(Self {
            stripes: Stripes::new(segment),
        })
    }

    fn lock_key(&self, hash: &KeyHash) -> Result<StripeGuard<'_>> {
        self.stripes.lock(hash)
    }

    fn begin_read(&self) -> Result<()> {
        Ok(())
    }

    fn read_consistent<R>(
        &self,
        meta: &AtomicU64,
        m1: Meta,
        mut read: impl FnMut() -> R,
    ) -> Option<R> {
        let copied = read();
        // Acquire fence: if any word copied above came from a later write, the load below sees
        // that write's busy word or a later version.
        fence(Ordering::Acquire);
        (meta.load(Ordering::Relaxed) == m1.0).then_some(copied)
    }
}
