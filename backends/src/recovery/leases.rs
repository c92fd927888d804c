//! This handle's side of the registry: the records it owns, lent out one per operation in
//! flight, and the liveness checks it makes for waiters.
//!
//! A handle may be used by many threads at once, and each operation in flight needs a record
//! of its own (one slot, one journal). The handle keeps up to 64 records, registered lazily,
//! and lends them out: a CAS on a lease's own word to take it (before the operation writes
//! anything, so it is cheap) and a plain store to return it. Each thread starts looking at a
//! lease of its own, so a single-threaded process always finds its lease free at once.
//! (Returning it with an atomic RMW instead, e.g. on a shared bit mask, made a write 40 ns
//! slower: the RMW waits for the slot stores still in flight.)

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;
use shmap::{current_owner, Backoff, Error, LockFile, Meta, Result, Segment};

use crate::generations::Where;
use crate::journal::Op;

use super::registry::{
    generation_of, next_generation, owner_id, record_of, Record, Registry, RECORDS,
};
use super::repair::{repair, Recoverer};

const LEASES: usize = 64;

/// This thread's number: unique among the process's live threads, never 0 (its pthread_t).
/// A thread's own id suffices for lease 0: a number reused after a thread ended names a
/// thread that holds no lease (a lease never outlives its operation), and glibc reuses a
/// pthread_t only after the thread's end synchronised with the new thread's creation (its
/// stack cache is locked), so the new owner sees the old one's last store. Not a thread-local: in
/// the Python extension each thread-local access is a `__tls_get_addr` call (perf: 2.7% of
/// a set), while `pthread_self` reads one word.
#[inline]
fn thread_number() -> u64 {
    // SAFETY: pthread_self has no preconditions and always succeeds.
    let me = unsafe { libc::pthread_self() } as u64;
    me.max(1)
}

/// The records one handle owns.
#[derive(Debug)]
pub struct Leases {
    registry: Registry,
    slot_words: usize,
    /// Our open description of the segment: its byte locks prove our records' owners alive.
    /// Also serialises registration and recovery within this handle (they take byte locks
    /// through this one description, and a description may take a byte it already holds).
    lock: Mutex<LockFile>,
    /// The process the registrations below belong to; a fork child starts afresh.
    pid: AtomicU32,
    /// Lease `b` is lent while `taken[b]` is 1.
    ///
    /// | lease | taken by | how |
    /// |---|---|---|
    /// | 0 | only the thread numbered `first_thread` | plain load and store: no other thread touches it |
    /// | 1..64 | any other thread, or that one's nested operations | CAS 0 -> 1 |
    ///
    /// Returned by a plain store of 0 (Release). The thread that writes through a handle
    /// first (in most programs the only one) so takes its lease without a locked instruction:
    /// one waits for every store still in flight, and the previous write's slot stores were
    /// (perf, a one-process update: the lease's CAS was the write path's hottest spot).
    taken: [AtomicU64; LEASES],
    /// The number ([`thread_number`]) of the thread lease 0 belongs to; 0 until one writes.
    first_thread: AtomicU64,
    /// Lease `b`'s owner id, 0 until registered.
    ids: [AtomicU64; LEASES],
}

impl Leases {
    pub fn new(segment: &Segment, registry: Registry, slot_words: usize) -> Result<Self> {
        Ok(Self {
            registry,
            slot_words,
            lock: Mutex::new(LockFile::open(segment)?),
            pid: AtomicU32::new(current_owner()),
            taken: std::array::from_fn(|_| AtomicU64::new(0)),
            first_thread: AtomicU64::new(0),
            ids: std::array::from_fn(|_| AtomicU64::new(0)),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Lends a record for one operation, registering one on first use.
    #[inline(always)]
    pub fn lease(&self, at: Where<'_>) -> Result<Lease<'_>> {
        // Relaxed: our own pid, written by this process only.
        if self.pid.load(Ordering::Relaxed) != current_owner() {
            self.after_fork()?;
        }
        let me = thread_number();
        // Relaxed: `first_thread` is set once; a thread compares it with its own number, which
        // only it can have stored.
        let first = self.first_thread.load(Ordering::Relaxed);
        let mine = first == me
            || (first == 0
                && self
                    .first_thread
                    .compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok());
        // Relaxed: lease 0 is only ever taken and returned by this thread (see `taken`), so
        // program order orders its uses; taken already means an operation of ours is nested.
        if mine && self.taken[0].load(Ordering::Relaxed) == 0 {
            self.taken[0].store(1, Ordering::Relaxed);
            return self.lend(0, at);
        }
        self.lease_shared(me, at)
    }

    /// [`Leases::lease`] for every thread but the first, and for nested operations: takes
    /// any free lease from 1 by CAS.
    #[inline(never)]
    fn lease_shared(&self, me: u64, at: Where<'_>) -> Result<Lease<'_>> {
        let mut backoff = Backoff::new();
        // Spread threads over the shared leases (pthread_t is an address: drop its low bits).
        let home = 1 + ((me >> 12) as usize) % (LEASES - 1);
        let bit = 'found: loop {
            for b in (home..LEASES).chain(1..home) {
                // Acquire: the previous borrower's record writes happen-before ours.
                if self.taken[b]
                    .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    break 'found b;
                }
            }
            if !backoff.snooze() {
                return Err(Error::Stalled {
                    what: "a free record (64 threads are writing through this handle)",
                    owner: 0,
                    waited_ms: backoff.waited_ms(),
                });
            }
        };
        self.lend(bit, at)
    }

    /// Lends lease `bit`, which the caller has just taken, registering its record on first use.
    #[inline(always)]
    fn lend(&self, bit: usize, at: Where<'_>) -> Result<Lease<'_>> {
        // Relaxed: only the borrower of `bit` writes ids[bit].
        let id = self.ids[bit].load(Ordering::Relaxed);
        if id != 0 {
            return Ok(self.lease_of(bit, id));
        }
        self.lend_new(bit, at)
    }

    #[inline(always)]
    fn lease_of(&self, bit: usize, id: u64) -> Lease<'_> {
        Lease {
            leases: self,
            bit,
            id,
            record: self.registry.record(record_of(id)),
        }
    }

    /// [`Leases::lend`] of a lease whose record is not registered yet: out of line, so the
    /// common path returns its lease in registers rather than as a `Result` through the stack
    /// (perf, a one-process update: the load of that `Result`'s tag, stored in pieces and read
    /// whole, was the write path's hottest instruction).
    #[cold]
    #[inline(never)]
    fn lend_new(&self, bit: usize, at: Where<'_>) -> Result<Lease<'_>> {
        match self.register(&self.lock.lock(), at) {
            Ok(id) => {
                self.ids[bit].store(id, Ordering::Relaxed);
                Ok(self.lease_of(bit, id))
            }
            Err(e) => {
                self.taken[bit].store(0, Ordering::Release);
                Err(e)
            }
        }
    }

    /// In a fork child: the parent's records are the parent's. Take a new description (the
    /// fork handler closed the inherited one) and register afresh when needed.
    fn after_fork(&self) -> Result<()> {
        let mut lock = self.lock.lock();
        let me = current_owner();
        if self.pid.load(Ordering::Relaxed) == me {
            return Ok(()); // another thread of the child did it
        }
        lock.renew()?;
        for id in &self.ids {
            id.store(0, Ordering::Relaxed);
        }
        for t in &self.taken {
            t.store(0, Ordering::Relaxed);
        }
        self.pid.store(me, Ordering::Relaxed);
        Ok(())
    }

    fn owns(&self, id: u64) -> bool {
        // Relaxed: ids of this handle, written before the lease that uses them is handed out.
        self.ids.iter().any(|x| x.load(Ordering::Relaxed) == id)
    }

    fn owns_record(&self, r: usize) -> bool {
        self.ids.iter().any(|x| {
            let id = x.load(Ordering::Relaxed);
            id != 0 && record_of(id) == r
        })
    }

    /// Takes the first record nobody alive holds, repairs what its last owner left, and
    /// starts a new generation of it.
    fn register(&self, lock: &LockFile, at: Where<'_>) -> Result<u64> {
        for r in 0..RECORDS {
            if self.owns_record(r) || !lock.try_lock(r)? {
                continue;
            }
            let rec = self.registry.record(r);
            let writing = was_writing(rec.state().load(Ordering::Relaxed));
            let taken = at
                .table()
                .and_then(|table| {
                    repair(self, lock, table, r, 0)?;
                    if writing {
                        table.heap().request_sweep(); // see `was_writing`
                    }
                    Ok(())
                })
                .map(|()| {
                    // Relaxed: the byte lock makes us the only writer of this record.
                    let g = next_generation(rec.generation().load(Ordering::Relaxed));
                    rec.pid()
                        .store(u64::from(current_owner()), Ordering::Relaxed);
                    // Release: the repair above happens-before anyone who sees the new generation.
                    rec.generation().store(g, Ordering::Release);
                    self.registry
                        .used()
                        .fetch_max(r as u64 + 1, Ordering::Release);
                    owner_id(r, g)
                });
            if taken.is_err() {
                let _ = lock.unlock(r);
            }
            return taken;
        }
        Err(Error::TooManyHandles {
            name: at.name().to_owned(),
            records: RECORDS,
        })
    }

    /// For a waiter whose wait is due for a check: whether the owner `id` of a busy word is
    /// gone, in which case what it left has been repaired (by us now, or by someone before).
    pub fn recover(&self, at: Where<'_>, id: u64) -> Result<bool> {
        // A reader can be the first user of a handle inherited over fork: the fork handler
        // closed our lock description in the child, so renew it before checking anyone.
        // Relaxed: our own pid, written by this process only.
        if self.pid.load(Ordering::Relaxed) != current_owner() {
            self.after_fork()?;
        }
        self.recover_locked(&self.lock.lock(), at, id, 0)
    }

    /// For a stripe's waiter: whether the stripe's `holder` is gone, what it left repaired
    /// ([`Leases::recover`]). A holder that died with a stripe may have died with a block in
    /// hand that nothing names (its record idle: before its journal named the block, or after
    /// it closed it and before the free), so the next writer sweeps the heap
    /// (`shmap::heap::Heap::sweep`); a process that died holding no stripe had nothing in
    /// hand but its magazines, which the drain of its area gives back.
    pub fn take_over_stripe(&self, at: Where<'_>, holder: u64) -> Result<bool> {
        let gone = self.recover(at, holder)?;
        if gone {
            at.table()?.heap().request_sweep();
        }
        Ok(gone)
    }

    /// Repairs every record whose owner died with an operation in flight (`len` calls it so a
    /// quiescent map counts exactly). Returns how many were repaired.
    /// Repairs every record a dead process left mid-operation; a record that cannot be
    /// repaired (corrupt) does not stop the others, and its error is returned at the end.
    pub fn recover_dead(&self, at: Where<'_>) -> Result<usize> {
        let (mut repaired, mut failed) = (0, None);
        for r in 0..self.registry.used_records() {
            let rec = self.registry.record(r);
            // Relaxed: a hint; `recover` revalidates under the byte lock.
            let state = rec.state().load(Ordering::Relaxed);
            if Record::op(state) == Some(Op::Idle) {
                continue;
            }
            let id = owner_id(r, rec.generation().load(Ordering::Acquire));
            match self.recover(at, id) {
                Ok(true) => repaired += 1,
                Ok(false) => {}
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        failed.map_or(Ok(repaired), Err)
    }
}

impl Recoverer for Leases {
    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn slot_words(&self) -> usize {
        self.slot_words
    }

    fn recover_locked(&self, lock: &LockFile, at: Where<'_>, id: u64, depth: u32) -> Result<bool> {
        if self.owns(id) {
            return Ok(false); // another thread of ours: alive
        }
        let r = record_of(id);
        if r >= self.registry.used_records() {
            // Never registered, as far as we can see (the owner's stamp does not order its
            // registration for us). Its byte lock decides: a registrar at work holds it, and
            // taking it over a dead one orders everything that one did before us.
            if self.owns_record(r) || !lock.try_lock(r)? {
                return Ok(false);
            }
            let unused = r >= self.registry.used_records();
            lock.unlock(r)?;
            if !unused {
                return self.recover_locked(lock, at, id, depth);
            }
            // No process ever registered this record, so no process can have stamped a word
            // with it: the word was written by something that does not follow the protocol.
            return Err(Error::Corrupt {
                name: at.name().to_owned(),
                reason: format!(
                    "a busy word names owner {id:#x}, of registry record {r}, which was never used"
                ),
            });
        }
        let rec = self.registry.record(r);
        // Acquire: pairs with the Release store of a new generation after a repair.
        if rec.generation().load(Ordering::Acquire) != generation_of(id) {
            return Ok(true);
        }
        if self.owns_record(r) || !lock.try_lock(r)? {
            return Ok(false); // alive, or being taken over by someone else right now
        }
        let repaired = (|| {
            // Relaxed: we hold the byte lock; only lock holders write the generation.
            if rec.generation().load(Ordering::Relaxed) == generation_of(id) {
                let table = at.table()?;
                let writing = was_writing(rec.state().load(Ordering::Relaxed));
                repair(self, lock, table, r, depth)?;
                if writing {
                    table.heap().request_sweep(); // see `was_writing`
                }
                let g = next_generation(generation_of(id));
                // Release: as in `register`.
                rec.generation().store(g, Ordering::Release);
            }
            Ok(true)
        })();
        lock.unlock(r)?;
        repaired
    }
}

/// Whether a record's state (loaded under its byte lock, before its repair) is a write's: its
/// dead owner held a stripe and may have had a block in hand that nothing names, so the heap
/// is to be swept. A read holds no block, and an idle record's owner is asked about only
/// through a stripe it held (`take_over_stripe` asks then).
fn was_writing(state: u64) -> bool {
    !matches!(Record::op(state), Some(Op::Idle | Op::Read) | None)
}

/// One record lent to one operation. Dropping it ends any operation left open (one that never
/// took its slot) and returns the record.
#[derive(Debug)]
pub struct Lease<'a> {
    leases: &'a Leases,
    bit: usize,
    id: u64,
    record: Record<'a>,
}

impl Lease<'_> {
    /// The owner id to stamp into words this operation takes.
    #[inline]
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The private journal for a slot image.
    #[inline]
    pub fn journal(&self) -> &[std::sync::atomic::AtomicU64] {
        self.record.journal(self.leases.slot_words)
    }

    /// Records `op` on slot `i`, to be taken from `before` and published as `after`. Must
    /// come before the slot is taken; the journal, if the op uses it, is written before too.
    #[inline]
    pub fn intend(&self, op: Op, i: usize, before: Meta, after: Meta) {
        let r = &self.record;
        // Relaxed: published by the Release store of the state word below.
        r.slot().store(i as u64, Ordering::Relaxed);
        r.before().store(before.0, Ordering::Relaxed);
        r.after().store(after.0, Ordering::Relaxed);
        // Relaxed load: only we write our state. Release store: a recoverer that sees the op
        // sees slot, before, after and journal (it also synchronises through the byte lock).
        let state = r.state().load(Ordering::Relaxed);
        r.state()
            .store(Record::op_state(state, op), Ordering::Release);
    }

    /// Ends the operation, adding `delta` to the count, in one store.
    #[inline]
    pub fn finish(&self, delta: i32) {
        self.finish_counted(delta);
    }

    /// [`Lease::finish`], returning the record's count after it (for a remover that watches
    /// for the map emptying: `shmap::RawTable::watch_emptying`).
    #[inline]
    pub fn finish_counted(&self, delta: i32) -> u32 {
        let state = self.record.state().load(Ordering::Relaxed);
        let idle = Record::idle_state(state, delta);
        // Release: everything the operation did happens-before a recoverer seeing IDLE.
        self.record.state().store(idle, Ordering::Release);
        (idle >> 32) as u32
    }

    /// The registry the counts are in.
    pub fn registry(&self) -> &Registry {
        self.leases.registry()
    }
}

impl Drop for Lease<'_> {
    #[inline]
    fn drop(&mut self) {
        let state = self.record.state().load(Ordering::Relaxed);
        if Record::op(state) != Some(Op::Idle) {
            self.finish(0);
        }
        // Release: our record writes happen-before the next borrower's Acquire.
        self.leases.taken[self.bit].store(0, Ordering::Release);
    }
}
