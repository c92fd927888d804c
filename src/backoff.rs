//! Bounded waiting for a word another process holds: spin, then yield, then sleep, then give up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The default of [`stall_timeout`]: far beyond any live holder's critical section
/// (microseconds, or one scheduler slice when preempted), short enough that a dead holder is
/// noticed.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5);

// Relaxed: a setting read at the start of each wait; no other memory depends on it.
static STALL_TIMEOUT_MS: AtomicU64 = AtomicU64::new(STALL_TIMEOUT.as_millis() as u64);

/// How long an operation waits for one lock or slot, in this process, before it reports
/// [`crate::Error::Stalled`].
pub fn stall_timeout() -> Duration {
    Duration::from_millis(STALL_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// Sets [`stall_timeout`] for this process (tests use a short one; at least 1 ms).
pub fn set_stall_timeout(timeout: Duration) {
    STALL_TIMEOUT_MS.store(
        timeout.as_millis().clamp(1, u64::MAX as u128) as u64,
        Ordering::Relaxed,
    );
}

const SPIN_LIMIT: u32 = 6; // up to 2^6 pause instructions per step
const YIELD_LIMIT: u32 = 64; // steps of sched_yield before sleeping

/// Exponential backoff with a deadline, one per wait.
///
/// Spinning first keeps the uncontended and briefly-contended cases fast; yielding lets a
/// preempted holder run when processes outnumber cores; sleeping stops a long wait from burning
/// a core the holder may need.
#[derive(Debug, Default)]
pub struct Backoff {
    step: u32,
    started: Option<Instant>,
    checked: Option<Instant>,
    /// Gives up once spinning is over (see [`Backoff::impatient`]).
    impatient: bool,
}

/// How often a long wait asks whether the holder is still alive: a syscall, so not on every
/// step, but often enough that a dead holder is taken over within milliseconds.
pub const OWNER_CHECK_EVERY: Duration = Duration::from_millis(1);

impl Backoff {
    /// A fresh backoff; the clock starts at the first `snooze`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backoff that gives up (`snooze` returns `false`) once spinning is over: for a caller
    /// that holds something others need (Python's GIL) and would rather release it and then
    /// wait patiently than yield or sleep while holding it.
    pub fn impatient() -> Self {
        Self {
            impatient: true,
            ..Self::default()
        }
    }

    /// A patient backoff, or with `patient == false` an [`Backoff::impatient`] one.
    #[inline]
    pub fn with_patience(patient: bool) -> Self {
        Self {
            impatient: !patient,
            ..Self::default()
        }
    }

    /// Waits a little longer than last time. Returns `false` once [`stall_timeout`] has passed
    /// (an impatient backoff: once spinning is over).
    pub fn snooze(&mut self) -> bool {
        if self.impatient && self.step >= SPIN_LIMIT {
            return false;
        }
        if self.step <= SPIN_LIMIT {
            for _ in 0..1u32 << self.step {
                std::hint::spin_loop();
            }
        } else if self.step <= SPIN_LIMIT + YIELD_LIMIT {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
        self.step = self.step.saturating_add(1);
        if self.step <= SPIN_LIMIT {
            return true; // no clock read while spinning: it would cost more than the spin
        }
        self.started.get_or_insert_with(Instant::now).elapsed() < stall_timeout()
    }

    /// Whether the waiter should now check that the holder is alive: once spinning is over,
    /// then every [`OWNER_CHECK_EVERY`]. Never while spinning, when a live holder is the rule.
    pub fn owner_check_due(&mut self) -> bool {
        if self.step <= SPIN_LIMIT {
            return false;
        }
        let now = Instant::now();
        match self.checked {
            Some(last) if now.duration_since(last) < OWNER_CHECK_EVERY => false,
            _ => {
                self.checked = Some(now);
                true
            }
        }
    }

    /// Whether the spinning phase is over: from here on a wait yields or sleeps, which a
    /// caller holding something others need (Python's GIL) should not do while holding it.
    pub fn spun_out(&self) -> bool {
        self.step > SPIN_LIMIT
    }

    /// Whether the next [`Backoff::snooze`] of an impatient backoff gives up.
    pub fn spun_out_impatient(&self) -> bool {
        self.step >= SPIN_LIMIT
    }

    /// Milliseconds since the first yield, for error reports.
    pub fn waited_ms(&self) -> u64 {
        self.started.map_or(0, |s| s.elapsed().as_millis() as u64)
    }
}
