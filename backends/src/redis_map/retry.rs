//! Which failed calls may be sent again, and the request ids that make every write safe to
//! send again.
//!
//! A call that failed falls in one of three cases:
//!
//! | case                                                          | the server ran it | sent again |
//! |---------------------------------------------------------------|-------------------|------------|
//! | no connection could be made (refused, reset, timed out)       | no                | yes        |
//! | a reply that says it did not run: `LOADING`, `TRYAGAIN`, `MOVED`, `ASK`, `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `BUSY` | no | yes |
//! | the connection broke or timed out after the command was sent  | maybe             | if [`Retry::Always`] |
//!
//! Reads are [`Retry::Always`]: running one twice changes nothing. So is every write of the
//! map, because each is a script run once per request id ([`super::scripts::once`]): its
//! first run stores its reply in `shmap:{NAME}:req`, field ID, for [`record_ttl`], and a second
//! run with the same id returns that reply without doing anything. So an `incr`, a
//! compare-and-swap or a pop whose reply was lost is never applied twice, and a retried
//! `remove` still says it removed the key. Scripts of a caller's own
//! ([`super::RedisMap::script`]) are [`Retry::IfNotRun`].
//!
//! Retries go on, with a backoff from 5 to 250 ms, until `timeout` has passed since the first
//! try; the last error is then the caller's. Refusals (a wrong password, a missing right) and
//! TLS handshake failures are never retried: they do not pass by themselves.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{ErrorKind, RedisError, ServerErrorKind};

/// Whether a call may be sent again after its connection broke once it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Running it twice has the effect and the reply of running it once: reads, and the map's
    /// writes (each carries a request id).
    Always,
    /// Only when the server surely did not run it.
    IfNotRun,
}

/// The first and the longest wait between two tries.
const BACKOFF_FIRST: Duration = Duration::from_millis(5);
/// See [`BACKOFF_FIRST`].
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// The waits between tries, from [`BACKOFF_FIRST`] doubling to [`BACKOFF_MAX`], until
/// `timeout` has passed since the first try.
#[derive(Debug)]
pub struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    /// Starts the clock at the first try.
    pub fn new(timeout: Duration) -> Self {
        Self {
            deadline: Instant::now() + timeout,
            pause: BACKOFF_FIRST,
        }
    }

    /// Waits before the next try and returns `true`; `false` (without waiting) when the next
    /// try would start past the deadline.
    pub fn wait(&mut self) -> bool {
        if Instant::now() + self.pause >= self.deadline {
            return false;
        }
        std::thread::sleep(self.pause);
        self.pause = (self.pause * 2).min(BACKOFF_MAX);
        true
    }
}

/// How long a write's reply stays on the server for a retry of it: retries stop `timeout`
/// after the first try, and one sent just before that may arrive a little later.
pub fn record_ttl(timeout: Duration) -> Duration {
    timeout + Duration::from_secs(1)
}

/// Whether a reply error says the server did not run the command (it was loading its data,
/// was a replica or lost its primary, a cluster slot was moving, a script held it).
pub fn not_run_reply(e: &RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(kind) => matches!(
            kind,
            ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ReadOnly
        ),
        _ => matches!(
            e.code(),
            Some("BUSY" | "LOADING" | "READONLY" | "MASTERDOWN")
        ),
    }
}

/// A 128-bit id no other call, in this process or any other, will take: a random prefix per
/// process (drawn again in a forked child) and a counter.
pub fn request_id() -> String {
    static PREFIX: Mutex<(u32, u128)> = Mutex::new((0, 0));
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let prefix = {
        let mut p = PREFIX.lock();
        if p.0 != pid {
            // `RandomState` keys come from the OS's random source, once per thread, and
            // change with every `new` after that: two hashes make 128 random bits.
            let draw = |salt: u64| RandomState::new().hash_one((pid, salt, &p as *const _));
            *p = (pid, u128::from(draw(1)) << 64 | u128::from(draw(2)));
        }
        p.1
    };
    // Relaxed: only uniqueness matters, which the atomic increment gives.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:032x}{n:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| request_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| id.len() > 32));
    }

    #[test]
    fn replies_that_say_not_run() {
        let reply = |code: &str| redis::make_extension_error(code.to_owned(), None);
        assert!(not_run_reply(&reply("BUSY")));
        assert!(!not_run_reply(&reply("SHMAP_FULL")));
        let server = |kind| RedisError::from((ErrorKind::Server(kind), "test"));
        assert!(not_run_reply(&server(ServerErrorKind::BusyLoading)));
        assert!(not_run_reply(&server(ServerErrorKind::ReadOnly)));
        assert!(!not_run_reply(&server(ServerErrorKind::ResponseError)));
        assert!(!not_run_reply(&server(ServerErrorKind::NoPerm)));
    }
}
