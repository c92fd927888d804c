//! The writer half shared by `lockfree` and `spinlock`: writers of one key serialise on its
//! stripe lock; the two differ only in how a reader gets a consistent copy of a slot, which
//! is their [`ReadDiscipline`].

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;

use shmap::{BackendKind, KeyHash, MapParams, Meta, Result, Segment};

use crate::protocol::Protocol;
use crate::stripes::{stripes_len, StripeGuard, Stripes};

/// How a reader gets a consistent copy of a slot, under stripe-locked writers.
pub trait ReadDiscipline: Send + Sync + Debug + 'static {
    /// Recorded in the segment header.
    const KIND: BackendKind;

    /// As [`Protocol::read_consistent`].
    fn read_consistent<R>(meta: &AtomicU64, m1: Meta, read: impl FnMut() -> R) -> Option<R>;
}

/// Stripe-locked writers with the read discipline `D`.
#[derive(Debug)]
pub struct Striped<D> {
    stripes: Stripes,
    _reads: PhantomData<D>,
}

impl<D: ReadDiscipline> Protocol for Striped<D> {
    const KIND: BackendKind = D::KIND;
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
            _reads: PhantomData,
        })
    }

    fn lock_key(&self, hash: &KeyHash) -> Result<StripeGuard<'_>> {
        self.stripes.lock(hash)
    }

    fn begin_read(&self) -> Result<()> {
        Ok(()) // readers take no lock beyond what their discipline does per slot
    }

    fn read_consistent<R>(&self, meta: &AtomicU64, m1: Meta, read: impl FnMut() -> R) -> Option<R> {
        D::read_consistent(meta, m1, read)
    }
}
