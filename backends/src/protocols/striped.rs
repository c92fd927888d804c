//! The writer half shared by `lockfree` and `spinlock`: writers of one key serialise on its
//! stripe lock and journal what they do in a registry record, so that a process killed at any
//! instruction is recovered from; the two differ only in how a reader gets a consistent copy
//! of a slot, which is their [`ReadDiscipline`].

use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;

use shmap::heap::Ref;
use shmap::{
    BackendKind, Error, KeyHash, MapParams, Meta, RawTable, Result, Segment, JOURNAL_WORDS,
};

use crate::generations::{Tables, Where};
use crate::journal::{Journal, Op};
use crate::protocol::Protocol;
use crate::recovery::{registry_len, Lease, Leases, Registry};
use crate::slot::SlotRead;

use super::stripes::{stripes_len, StripeGuard, Stripes};

/// How a reader gets a consistent copy of a slot, under stripe-locked writers.
pub trait ReadDiscipline: Send + Sync + Debug + 'static {
    /// Recorded in the segment header.
    const KIND: BackendKind;
    /// Whether readers take slots (and so need a record, to be recovered from).
    const LOCKS_SLOTS: bool;

    /// As [`Protocol::read_consistent`]; `lease` is `Some` when [`Self::LOCKS_SLOTS`].
    fn read_consistent<R: SlotRead>(
        lease: Option<&Lease<'_>>,
        i: usize,
        meta: &AtomicU64,
        m1: Meta,
        read: R,
    ) -> Option<R::Out>;
}

/// Stripe-locked, journalled writers with the read discipline `D`.
#[derive(Debug)]
pub struct Striped<D> {
    stripes: Stripes,
    leases: Leases,
    _reads: PhantomData<D>,
}

/// Stripes (`S`: one key's, or every one) held by one record, which journals the writes
/// made under them. Field order: the stripes are released before the record is returned, so
/// a record is never lent while its id still holds a stripe.
#[derive(Debug)]
pub struct Held<'a, S> {
    _stripes: S,
    lease: Lease<'a>,
}

/// A writer's stripe and record.
pub type StripedWrite<'a> = Held<'a, StripeGuard<'a>>;

/// Every stripe, held by one record.
pub type StripedAll<'a> = Held<'a, Vec<StripeGuard<'a>>>;

/// The record's journal: the references in its journal words, the operation in its state.
impl<S> Journal for Held<'_, S> {
    #[inline]
    fn owner(&self) -> u64 {
        self.lease.id()
    }

    #[inline]
    fn intend(
        &self,
        table: &RawTable,
        op: Op,
        i: usize,
        before: Meta,
        after: Meta,
        new: Option<Ref>,
        old: Option<Ref>,
    ) {
        table.write_image(self.lease.journal(), new, old);
        self.lease.intend(op, i, before, after);
    }

    #[inline]
    fn finish(&self, _: &RawTable, delta: i32) {
        self.lease.finish(delta);
    }

    #[inline]
    fn finish_remove(&self, table: &RawTable) {
        if !table.watches_emptying() {
            return self.lease.finish(-1);
        }
        let registry = self.lease.registry();
        table.watch_emptying(
            || self.lease.finish_counted(-1),
            registry.used_records(),
            || registry.live_entries(table),
        );
    }
}

impl<D: ReadDiscipline> Protocol for Striped<D> {
    const KIND: BackendKind = D::KIND;
    const READERS_TAKE_SLOTS: bool = D::LOCKS_SLOTS;
    type WriteGuard<'a> = StripedWrite<'a>;
    type ReadGuard<'a> = Option<Lease<'a>>;
    type AllGuard<'a> = StripedAll<'a>;

    fn area_len(params: &MapParams) -> usize {
        stripes_len(params).saturating_add(registry_len(params))
    }

    fn init(_: &Segment) -> Result<()> {
        Ok(()) // zero is a free stripe word and an unused record
    }

    fn open(segment: &Segment) -> Result<Self> {
        let registry = Registry::new(segment, stripes_len(&segment.layout().params));
        Ok(Self {
            stripes: Stripes::new(segment),
            leases: Leases::new(segment, registry, JOURNAL_WORDS)?,
            _reads: PhantomData,
        })
    }

    #[inline(always)]
    fn lock_key(&self, tables: &Tables, hash: &KeyHash) -> Result<StripedWrite<'_>> {
        let at = Where::Current(tables);
        let lease = self.leases.lease(at)?;
        let stripe = self.stripes.lock(hash, lease.id(), true, |holder| {
            self.leases.take_over_stripe(at, holder)
        })?;
        Ok(Held {
            _stripes: stripe,
            lease,
        })
    }

    #[inline(always)]
    fn try_lock_key(&self, tables: &Tables, hash: &KeyHash) -> Result<Option<StripedWrite<'_>>> {
        let at = Where::Current(tables);
        let lease = self.leases.lease(at)?;
        let locked = self.stripes.lock(hash, lease.id(), false, |holder| {
            self.leases.take_over_stripe(at, holder)
        });
        match locked {
            Ok(stripe) => Ok(Some(Held {
                _stripes: stripe,
                lease,
            })),
            Err(Error::Stalled { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn try_lock_all(&self, tables: &Tables) -> Result<Option<StripedAll<'_>>> {
        let at = Where::Current(tables);
        let lease = self.leases.lease(at)?;
        let stripes = self.stripes.try_lock_all(lease.id(), |holder| {
            self.leases.take_over_stripe(at, holder)
        })?;
        Ok(stripes.map(|stripes| Held {
            _stripes: stripes,
            lease,
        }))
    }

    #[inline]
    fn begin_read(&self, tables: &Tables) -> Result<Option<Lease<'_>>> {
        // Seqlock readers write nothing, so they need no record.
        D::LOCKS_SLOTS
            .then(|| self.leases.lease(Where::Current(tables)))
            .transpose()
    }

    #[inline(always)] // a get's copy runs in here: see `Seqlock::read_consistent`
    fn read_consistent<R: SlotRead>(
        &self,
        guard: &Option<Lease<'_>>,
        i: usize,
        meta: &AtomicU64,
        m1: Meta,
        read: R,
    ) -> Option<R::Out> {
        D::read_consistent(guard.as_ref(), i, meta, m1, read)
    }

    fn recover(&self, table: &RawTable, owner: u64) -> Result<bool> {
        self.leases.recover(Where::Table(table), owner)
    }

    fn recover_dead(&self, tables: &Tables) -> Result<usize> {
        self.leases.recover_dead(Where::Current(tables))
    }

    fn reset(&self, _: &RawTable, len: usize) {
        self.stripes.reset();
        self.leases.registry().reset(len);
    }

    fn len(&self, tables: &Tables) -> Result<usize> {
        // A dead writer's pending count would be off by one until repaired: repair first.
        // Errors (a corrupt record) leave the plain sum, which is still bounded.
        let _ = self.leases.recover_dead(Where::Current(tables));
        let (_, table) = tables.current()?;
        Ok(self.leases.registry().live_entries(table))
    }
}
