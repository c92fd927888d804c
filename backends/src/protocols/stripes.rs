//! Stripe locks: one lock word per group of keys, chosen by hash, that serialises the writes
//! of each key (libcuckoo's discipline applied to linear probing). While a writer holds the
//! stripe of key `k`, no other process inserts or removes `k`, so `k` can never be claimed in
//! two slots at once; other stripes still compete for free slots by CAS.
//!
//! Lock word state table:
//!
//! | value | meaning                        | transitions                                  |
//! |-------|--------------------------------|----------------------------------------------|
//! | 0     | free                           | CAS 0 -> id (Acquire) by a writer            |
//! | id    | held by owner `id` (registry record + generation) | store 0 (Release) by the holder; CAS id -> 0 by a waiter once `id` is gone and its record repaired |
//!
//! Each word has a cache line of its own so that writers of different stripes do not bounce
//! one line between cores.

use std::sync::atomic::{AtomicU64, Ordering};

use shmap::{Backoff, Error, KeyHash, MapParams, Result, Segment};

/// Bytes per stripe word: a cache line.
const STRIPE_BYTES: usize = 64;
/// At most this many stripes: 32 KiB of lock words, more than enough to make two writers of
/// different keys rarely share one.
const MAX_STRIPES: usize = 512;

/// Number of stripes for a map of `params`: a power of two, for the largest table it may
/// grow to (the stripes stay the same in every generation of the table).
pub fn stripe_count(params: &MapParams) -> usize {
    params
        .max_capacity
        .max(params.capacity)
        .clamp(1, MAX_STRIPES)
        .next_power_of_two()
}

/// Bytes of backend area the stripes of a map of `params` need.
pub fn stripes_len(params: &MapParams) -> usize {
    stripe_count(params) * STRIPE_BYTES
}

/// The stripe words at the start of a segment's backend area.
#[derive(Debug)]
pub struct Stripes {
    base: *const u8,
    mask: usize,
}

// SAFETY: `base` points into a shared mapping that outlives `Stripes` (both are owned by the
// same backend struct) and is only accessed through atomics.
unsafe impl Send for Stripes {}
// SAFETY: as above.
unsafe impl Sync for Stripes {}

impl Stripes {
    /// The stripes of `segment`, whose layout was validated with [`stripes_len`].
    pub fn new(segment: &Segment) -> Self {
        let l = segment.layout();
        let count = stripe_count(&l.params);
        assert!(
            l.backend_len >= count * STRIPE_BYTES,
            "backend area too small for stripes"
        );
        // SAFETY: backend_offset is inside the mapping (validated layout).
        let base = unsafe { segment.ptr_at(l.backend_offset) } as *const u8;
        Self {
            base,
            mask: count - 1,
        }
    }

    /// Frees every stripe. Only for a caller that excludes every other process (the first
    /// opener of a file-backed map): a stripe word a crash left behind may name anyone.
    pub fn reset(&self) {
        for i in 0..=self.mask {
            // Relaxed: nobody else has the map open; the session lock hands it over.
            self.word_at(i).store(0, Ordering::Relaxed);
        }
    }

    fn word(&self, hash: &KeyHash) -> &AtomicU64 {
        // Low hash bits: the home bucket uses the high ones, so stripes and buckets are independent.
        self.word_at(hash.hash as usize & self.mask)
    }

    /// Stripe `i`'s word; `i` must be at most `mask`.
    #[inline]
    fn word_at(&self, i: usize) -> &AtomicU64 {
        assert!(i <= self.mask);
        // SAFETY: i <= mask < count and the area holds `count` 64-byte-aligned stripe words.
        unsafe { &*(self.base.add(i * STRIPE_BYTES) as *const AtomicU64) }
    }

    /// Takes the stripe of `hash` for owner `me`, waiting with backoff. While waiting, asks
    /// `gone(holder)` now and then whether the holder died (and its record was repaired), and
    /// then frees the stripe for it. [`Error::Stalled`] if a live holder keeps it past the
    /// stall timeout.
    /// With `patient == false`, [`Error::Stalled`] as soon as spinning is over.
    #[inline]
    pub fn lock(
        &self,
        hash: &KeyHash,
        me: u64,
        patient: bool,
        mut gone: impl FnMut(u64) -> Result<bool>,
    ) -> Result<StripeGuard<'_>> {
        self.lock_word(self.word(hash), me, Patience::from(patient), &mut gone)
    }

    /// Takes every stripe for owner `me`, in order, freeing those of dead holders as
    /// [`Stripes::lock`] does; `None` (holding none) if a live holder keeps one past a short
    /// spin: a writer stopped with its stripe must not hold up the writers of every other
    /// stripe behind the ones taken so far.
    pub fn try_lock_all(
        &self,
        me: u64,
        mut gone: impl FnMut(u64) -> Result<bool>,
    ) -> Result<Option<Vec<StripeGuard<'_>>>> {
        let mut held = Vec::with_capacity(self.mask + 1);
        for i in 0..=self.mask {
            match self.lock_word(self.word_at(i), me, Patience::AskOnce, &mut gone) {
                Ok(stripe) => held.push(stripe),
                // `held` drops: every stripe taken is released.
                Err(Error::Stalled { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(Some(held))
    }

    #[inline]
    fn lock_word<'a>(
        &'a self,
        word: &'a AtomicU64,
        me: u64,
        patience: Patience,
        gone: &mut impl FnMut(u64) -> Result<bool>,
    ) -> Result<StripeGuard<'a>> {
        let patient = patience == Patience::Wait;
        let mut backoff = Backoff::with_patience(patient);
        // An impatient caller gives up before a patient one's first owner check. Taking every
        // stripe (a resize, a reclaim) asks once as it gives up, so a dead holder is taken
        // over there too; a key's writer holding Python's GIL does not (the check may wait
        // for the registry's lock), it waits without the GIL instead.
        let mut asked = patience != Patience::AskOnce;
        loop {
            // Acquire on success: the previous holder's slot writes happen-before ours.
            match word.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Ok(StripeGuard { word }),
                Err(0) => {} // spurious failure
                Err(holder) => {
                    let giving_up = !asked && backoff.spun_out_impatient();
                    asked |= giving_up;
                    if (backoff.owner_check_due() || giving_up) && gone(holder)? {
                        // Acquire on success: the repair happens-before our writes.
                        let _ =
                            word.compare_exchange(holder, 0, Ordering::Acquire, Ordering::Relaxed);
                        continue;
                    }
                    if !backoff.snooze() {
                        return Err(Error::Stalled {
                            what: "a stripe lock",
                            owner: holder,
                            waited_ms: backoff.waited_ms(),
                        });
                    }
                }
            }
        }
    }
}

/// How long [`Stripes::lock_word`] waits for a held stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Patience {
    /// Until the holder releases it, dies (taken over) or stalls past the timeout.
    Wait,
    /// A short spin.
    Spin,
    /// A short spin, then one check whether the holder died.
    AskOnce,
}

impl From<bool> for Patience {
    fn from(patient: bool) -> Self {
        if patient {
            Self::Wait
        } else {
            Self::Spin
        }
    }
}

/// A held stripe; released on drop.
#[derive(Debug)]
pub struct StripeGuard<'a> {
    word: &'a AtomicU64,
}

impl Drop for StripeGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // Release: our slot writes happen-before the next holder's Acquire.
        self.word.store(0, Ordering::Release);
    }
}
