//! Exclusive byte locks that threads exclude each other with too: the heap lock and the
//! resize lock.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};
use crate::shm_file::{ofd_lock, reopen, Location};

/// An exclusive OFD lock on one byte of a file, held until dropped. Each holding has a
/// description of its own (so threads of one process exclude each other too), and closing
/// it releases the lock, as the kernel does when the holder dies.
#[derive(Debug)]
pub struct ByteLock {
    _description: OwnedFd,
}

/// Takes the lock on `byte` of the file `fd` is open on (at `location`): `None` at once if
/// someone holds it and not `wait`; otherwise waits with the stall backoff, then reports
/// [`Error::Stalled`] naming `what`.
pub fn lock_byte(
    fd: RawFd,
    location: &Location,
    byte: u64,
    wait: bool,
    what: &'static str,
) -> Result<Option<ByteLock>> {
    let description = reopen(fd, location)?;
    let mut backoff = crate::Backoff::new();
    loop {
        match ofd_lock(description.as_raw_fd(), byte, libc::F_WRLCK, false) {
            Ok(true) => {
                return Ok(Some(ByteLock {
                    _description: description,
                }))
            }
            Ok(false) if !wait => return Ok(None),
            Ok(false) if backoff.snooze() => {}
            Ok(false) => {
                return Err(Error::Stalled {
                    what,
                    owner: 0,
                    waited_ms: backoff.waited_ms(),
                })
            }
            Err(source) => {
                return Err(Error::Io {
                    op: "fcntl(F_OFD_SETLK)",
                    name: location.label(),
                    source,
                })
            }
        }
    }
}
