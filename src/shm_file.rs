//! The segment's file, below the mapping: where it is ([`Location`]: a shared-memory name or a
//! file path), opening it, the liveness and creator locks on its bytes (OFD locks), checking
//! who owns it, reserving its memory, and removing it, also when its creator died before
//! initialising it. `segment.rs` builds the map on these; after the mapping, a map in
//! `/dev/shm` and a map in a file are the same bytes and the same code.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};

/// How long `attach` waits for a segment without a header whose creator is gone before it
/// calls it abandoned (the creator takes its lock right after `shm_open`: this covers that
/// window with a wide margin).
pub const ATTACH_WAIT: Duration = Duration::from_secs(1);
/// How long `attach` waits for a creator that is alive and still initialising (reserving a
/// large segment takes a while).
pub const CREATE_WAIT: Duration = Duration::from_secs(30);
/// The byte of the segment file a creator holds an OFD write lock on until it has published
/// the header. Far beyond any segment's end, so it never meets a registry record's byte.
pub const CREATING_BYTE: u64 = 1 << 62;
/// The byte of a file-backed map's file that every open handle holds a shared OFD lock on
/// (a forked child shares its parent's description, and so its lock). Whoever can take it
/// exclusively is the only process with the map open: the first opener after everyone left,
/// or after the machine restarted, which validates the file before anyone uses it.
pub const SESSION_BYTE: u64 = CREATING_BYTE + 1;

/// The byte of a map's root file that every handle holds a shared OFD lock on, on a
/// description of its own that a fork child does not keep (a `LockFile`), from open to drop.
/// Whoever can take it exclusively knows no other handle has the map open: [`Location::unlink`]
/// then removes the tables' names with the map's; otherwise the last handle to drop does.
pub const HANDLES_BYTE: u64 = SESSION_BYTE + 1;

/// The byte of a map's root file that a resizer holds an exclusive lock on (a
/// [`crate::ByteLock`]) from before it makes the next table until it has released the old one:
/// so the next table can be made and its pages mapped in before the writers are stopped,
/// by the one process that may touch that table's name (see `shmap-backends`' `grow.rs`).
pub const RESIZE_BYTE: u64 = HANDLES_BYTE + 1;

/// Where a map's bytes live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Location {
    /// A POSIX shared-memory object: `name` is `/dev/shm/name`, gone at reboot.
    Shm(String),
    /// A file (on any file system that supports `mmap` and OFD locks): it outlives the
    /// processes and, once flushed, the machine's restarts.
    File(PathBuf),
}

impl Location {
    /// How errors name the map: the shared-memory name, or the path.
    pub fn label(&self) -> String {
        match self {
            Location::Shm(name) => name.clone(),
            Location::File(path) => path.display().to_string(),
        }
    }

    /// The path of the map's file in the file system.
    pub fn path(&self) -> PathBuf {
        match self {
            Location::Shm(name) => Path::new("/dev/shm").join(name),
            Location::File(path) => path.clone(),
        }
    }

    /// Opens the map's file with `flags` (mode 0600 when it creates): an existing one is
    /// [`Error::AlreadyExists`], a missing one [`Error::NotFound`].
    pub(crate) fn open(&self, flags: libc::c_int) -> Result<OwnedFd> {
        let label = self.label();
        let raw = match self {
            Location::Shm(name) => {
                let c_name = os_name(name)?;
                // SAFETY: c_name is a valid NUL-terminated string.
                unsafe { libc::shm_open(c_name.as_ptr(), flags, 0o600) }
            }
            Location::File(path) => {
                let c_path =
                    CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::InvalidName {
                        name: label.clone(),
                        reason: "the path contains a NUL byte",
                    })?;
                // SAFETY: c_path is a valid NUL-terminated string; O_CLOEXEC so exec'd
                // children do not inherit it (shm_open sets it too).
                unsafe {
                    libc::open(
                        c_path.as_ptr(),
                        flags | libc::O_CLOEXEC,
                        0o600 as libc::c_uint,
                    )
                }
            }
        };
        if raw < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::EEXIST) => Error::AlreadyExists(label),
                Some(libc::ENOENT) => Error::NotFound(label),
                _ => Error::Io {
                    op: "open",
                    name: label,
                    source: err,
                },
            });
        }
        // SAFETY: a new descriptor nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    /// Where generation `g` of this map's table lives (`g > 0`; generation 0 is in the map's
    /// own segment): `name.t<g>` beside the map.
    pub fn table(&self, g: u64) -> Location {
        match self {
            Location::Shm(name) => Location::Shm(format!("{name}.t{g}")),
            Location::File(path) => {
                let mut p = path.clone().into_os_string();
                p.push(format!(".t{g}"));
                Location::File(p.into())
            }
        }
    }

    /// Where the map's heap lives (its entries' records, `docs/variable-size-entries.md`):
    /// `name.heap` beside the map.
    pub fn heap(&self) -> Location {
        match self {
            Location::Shm(name) => Location::Shm(format!("{name}.heap")),
            Location::File(path) => {
                let mut p = path.clone().into_os_string();
                p.push(".heap");
                Location::File(p.into())
            }
        }
    }

    /// Removes the map's name (its shared-memory name or its file). The names of its table
    /// generations (see [`Location::table`]) go too if no handle has the map open; otherwise
    /// the last handle to drop takes them (see [`HANDLES_BYTE`]), so
    /// that every open handle keeps finding the current table, as it keeps its mapping of an
    /// unlinked segment. With no map of this name, removes what a process killed after
    /// unlinking one left: the tables' names. `NotFound` if there was nothing to remove.
    pub fn unlink(&self) -> Result<()> {
        // Opened before its name goes: to learn whether anyone still has it open.
        // (Read-write: a write lock needs it.)
        let fd = match self.open(libc::O_RDWR) {
            Err(Error::NotFound(label)) => {
                return match self.unlink_tables() {
                    0 => Err(Error::NotFound(label)),
                    _ => Ok(()),
                };
            }
            Err(_) => {
                // Cannot look inside (not ours to read): remove it and its tables blindly.
                let root = self.unlink_one();
                self.unlink_tables();
                return root;
            }
            Ok(fd) => fd,
        };
        self.unlink_one()?;
        // Whoever takes the handles' byte exclusively knows nobody has the map open, and
        // nobody can open it by name any more. (An error: do as if someone had; the last
        // handle cleans up.)
        if ofd_lock(fd.as_raw_fd(), HANDLES_BYTE, libc::F_WRLCK, false).unwrap_or(false) {
            // Every `name.t<g>`, without asking whose: a table whose header was damaged must
            // go with its map too. (Only an unlinked map of the same name that is still open
            // could own one; its handles keep their mappings.)
            self.unlink_tables();
        }
        // Released before the description closes (a child another thread forks meanwhile
        // would keep it until its exec, and attachers would wait for it).
        let _ = ofd_lock(fd.as_raw_fd(), HANDLES_BYTE, libc::F_UNLCK, false);
        Ok(())
    }

    /// Removes the names of the map's table generations and of its heap, not the map's own
    /// (see [`Location::table`], [`Location::heap`]), whichever map made them; returns how
    /// many tables there were. (The heap is not counted: every map has one, and an unlinked
    /// map that is still open keeps its heap's name until its last handle drops, so a second
    /// `unlink` of its name would otherwise report a map where there is none.)
    pub fn unlink_tables(&self) -> usize {
        let _ = self.heap().unlink_one();
        (1..=crate::params::MAX_GENERATIONS)
            .filter(|&g| self.table(g).unlink_one().is_ok()) // most never existed
            .count()
    }

    /// Removes the names of this map's table generations that belong to the map whose hash
    /// seed is `seed` (every table records its root's): a name a later map of the same name
    /// has since made is left alone. Returns how many it removed.
    pub fn unlink_tables_of(&self, seed: u64) -> usize {
        (1..=crate::params::MAX_GENERATIONS)
            .map(|g| self.table(g))
            .chain([self.heap()]) // which records its map's seed at the same offset
            .filter(|table| {
                let Ok(fd) = table.open(libc::O_RDONLY) else {
                    return false; // most never existed
                };
                table_seed(&fd) == Some(seed)
                    && name_is(fd.as_raw_fd(), table).unwrap_or(false)
                    && table.unlink_one().is_ok()
            })
            .count()
    }

    /// Removes this one name (a map's, or one table generation's): `NotFound` if there is none.
    pub fn unlink_one(&self) -> Result<()> {
        let result = match self {
            Location::Shm(name) => {
                let c_name = os_name(name)?;
                // SAFETY: c_name is a valid NUL-terminated string.
                if unsafe { libc::shm_unlink(c_name.as_ptr()) } == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            }
            Location::File(path) => std::fs::remove_file(path),
        };
        result.map_err(|err| match err.raw_os_error() {
            Some(libc::ENOENT) => Error::NotFound(self.label()),
            _ => Error::Io {
                op: "unlink",
                name: self.label(),
                source: err,
            },
        })
    }
}

/// Checks `name` as the name of a new or attached shared-memory map: [`os_name`]'s rules, and
/// the characters Python's `multiprocessing.resource_tracker` can carry. The tracker sends
/// each name as one ASCII line `cmd:name:type` and strips it when it reads it back, so a name
/// with a `:`, a control character (a newline), a non-ASCII character or a trailing space
/// would be registered wrongly or not at all, and the map left behind (or another one
/// removed). The rule is the same for every user of the crate, so a map one program makes
/// is a map the Python package can track. Removing a name ([`Location::unlink`]) keeps only
/// [`os_name`]'s rules, so leftovers of older builds can still be removed.
pub(crate) fn check_map_name(name: &str) -> Result<()> {
    os_name(name)?;
    let reason = if name.contains(':') {
        Some(
            "the name contains ':'; a map name may hold printable ASCII characters but '/' and ':'",
        )
    } else if name.chars().any(|c| !(' '..='~').contains(&c)) {
        Some(
            "the name contains a control or non-ASCII character (a newline, a tab, ...); a map \
             name may hold printable ASCII characters but '/' and ':'",
        )
    } else if name.ends_with(' ') {
        Some("the name ends with a space, which the resource tracker would strip")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Where a segment's header keeps the hash seed (checked against `Header` in `segment.rs`).
pub(crate) const SEED_OFFSET: u64 = 48;

/// The hash seed in the header of the segment open as `fd`, read with `pread` (never mapped:
/// the file may be short or foreign); `None` without a header (the first word is zero).
fn table_seed(fd: &OwnedFd) -> Option<u64> {
    let word = |offset: u64| {
        let mut word = [0u8; 8];
        // SAFETY: fd is open; `word` is 8 writable bytes.
        let n = unsafe { libc::pread(fd.as_raw_fd(), word.as_mut_ptr().cast(), 8, offset as _) };
        (n == 8).then(|| u64::from_le_bytes(word))
    };
    word(0).filter(|&magic| magic != 0)?;
    word(SEED_OFFSET)
}

pub(crate) fn os_name(name: &str) -> Result<CString> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name.len() > 250 {
        return bad("the name is longer than 250 bytes");
    }
    if name.contains('/') {
        return bad("the name contains '/'");
    }
    if name == "." || name == ".." {
        return bad("the name is a directory");
    }
    CString::new(format!("/{name}")).or_else(|_| bad("the name contains a NUL byte"))
}

pub(crate) fn io_err(op: &'static str, name: &str) -> Error {
    Error::Io {
        op,
        name: name.to_owned(),
        source: io::Error::last_os_error(),
    }
}

/// A new open file description of the segment open as `fd` (named `name`): see
/// [`Segment::reopen`].
pub(crate) fn reopen(fd: RawFd, location: &Location) -> Result<OwnedFd> {
    let path = CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a formatted path");
    // SAFETY: path is a valid C string; O_CLOEXEC so exec'd children do not inherit it.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        // No /proc: by name (no O_CREAT, so nothing is created).
        return location.open(libc::O_RDWR);
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Maps `len` bytes of `fd` shared and writable (memmap2's `MmapRaw`: `MAP_SHARED`, and a raw
/// pointer, since other processes write the bytes: no `&[u8]` into them may exist).
pub(crate) fn map(fd: &OwnedFd, len: usize, name: &str) -> Result<MmapRaw> {
    MmapOptions::new()
        .len(len)
        .map_raw(fd.as_raw_fd())
        .map_err(|source| Error::Io {
            op: "mmap",
            name: name.to_owned(),
            source,
        })
}

pub(crate) fn file_len(fd: &OwnedFd, name: &str) -> Result<usize> {
    Ok(fstat(fd.as_raw_fd(), name)?.st_size.max(0) as usize)
}

/// `F_OFD_SETLK` (or `F_OFD_GETLK` with `test`) of type `kind` on `byte` of `fd`: whether the
/// lock was taken (or, testing, could be).
pub(crate) fn ofd_lock(fd: RawFd, byte: u64, kind: libc::c_int, test: bool) -> io::Result<bool> {
    // SAFETY: a zeroed flock is a valid value (l_pid 0, as OFD locks require); every other
    // field fcntl reads is set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    let cmd = if test {
        libc::F_OFD_GETLK
    } else {
        libc::F_OFD_SETLK
    };
    // SAFETY: fl is a valid, writable flock; an fd that is not open (e.g. -1) is rejected by
    // fcntl with EBADF, touching no memory.
    if unsafe { libc::fcntl(fd, cmd, &mut fl) } != 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN | libc::EACCES) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(!test || fl.l_type == libc::F_UNLCK as libc::c_short)
}

/// `F_OFD_SETLKW` of type `kind` on `byte` of `fd`: waits until the lock is granted.
pub(crate) fn ofd_lock_wait(fd: RawFd, byte: u64, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: as in `ofd_lock`.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    loop {
        // SAFETY: as in `ofd_lock`.
        if unsafe { libc::fcntl(fd, libc::F_OFD_SETLKW, &mut fl) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Joins the session of a file-backed map ([`SESSION_BYTE`]): `true` if the lock was taken
/// exclusively (nobody else has the map open: validate it, then [`share_session`]); `false`
/// once it is held shared, which waits while a first opener validates.
pub(crate) fn open_session(fd: RawFd, name: &str) -> Result<bool> {
    let err = |op| {
        move |source| Error::Io {
            op,
            name: name.to_owned(),
            source,
        }
    };
    if ofd_lock(fd, SESSION_BYTE, libc::F_WRLCK, false).map_err(err("fcntl(F_OFD_SETLK)"))? {
        return Ok(true);
    }
    ofd_lock_wait(fd, SESSION_BYTE, libc::F_RDLCK).map_err(err("fcntl(F_OFD_SETLKW)"))?;
    Ok(false)
}

/// Turns an exclusive session lock into a shared one (atomically: nobody can slip in between),
/// or takes it shared (a creator, before it publishes the header).
pub(crate) fn share_session(fd: RawFd, name: &str) -> Result<()> {
    ofd_lock_wait(fd, SESSION_BYTE, libc::F_RDLCK).map_err(|source| Error::Io {
        op: "fcntl(F_OFD_SETLKW)",
        name: name.to_owned(),
        source,
    })
}

/// The creator's lock ([`CREATING_BYTE`]) on `fd`: taken (`F_WRLCK`), released (`F_UNLCK`),
/// or with `test`, whether it could be taken. `true` when done (or, testing, free).
pub(crate) fn creator_lock(fd: RawFd, name: &str, kind: libc::c_int, test: bool) -> Result<bool> {
    ofd_lock(fd, CREATING_BYTE, kind, test).map_err(|source| Error::Io {
        op: if test {
            "fcntl(F_OFD_GETLK)"
        } else {
            "fcntl(F_OFD_SETLK)"
        },
        name: name.to_owned(),
        source,
    })
}

pub(crate) fn fstat(fd: RawFd, name: &str) -> Result<libc::stat> {
    // SAFETY: zeroed `stat` is a valid out-parameter for fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the duration of the call and `st` is writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io_err("fstat", name));
    }
    Ok(st)
}

/// Whether `location` still names the file open as `fd`.
pub(crate) fn name_is(fd: RawFd, location: &Location) -> Result<bool> {
    let mine = fstat(fd, &location.label())?;
    match std::fs::metadata(location.path()) {
        Ok(m) => {
            use std::os::unix::fs::MetadataExt;
            Ok(m.ino() == mine.st_ino && m.dev() == mine.st_dev)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Io {
            op: "stat",
            name: location.label(),
            source,
        }),
    }
}

/// The segment's first word (where the magic goes), read with `pread`: zero-filled past the
/// end of a short file.
pub(crate) fn first_word(fd: RawFd, name: &str) -> Result<u64> {
    let mut word = [0u8; 8];
    // SAFETY: fd is open; `word` is 8 writable bytes.
    if unsafe { libc::pread(fd, word.as_mut_ptr().cast(), 8, 0) } < 0 {
        return Err(io_err("pread", name));
    }
    Ok(u64::from_le_bytes(word))
}

/// Refuses a segment another user owns or group or others may write.
pub(crate) fn check_trusted(fd: RawFd, name: &str) -> Result<()> {
    let st = fstat(fd, name)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let untrusted = |reason: String| {
        Err(Error::Untrusted {
            name: name.to_owned(),
            reason,
        })
    };
    if st.st_uid != me {
        return untrusted(format!(
            "it is owned by uid {}, not by you (uid {me})",
            st.st_uid
        ));
    }
    if st.st_mode & 0o022 != 0 {
        return untrusted(format!(
            "group or others may write it (mode {:o})",
            st.st_mode & 0o777
        ));
    }
    Ok(())
}

/// Checks that the file system can hold `len` more bytes, then sizes `fd` to `len` and
/// reserves its pages, so that no later write can meet a full tmpfs (SIGBUS).
pub(crate) fn reserve(fd: RawFd, len: usize, location: &Location) -> Result<()> {
    let name = &location.label();
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; vfs is writable.
    let available = if unsafe { libc::fstatvfs(fd, &mut vfs) } == 0 {
        (vfs.f_bavail as u64).saturating_mul(vfs.f_frsize as u64)
    } else {
        u64::MAX // unknown: let fallocate decide
    };
    let no_space = || Error::NoSpace {
        fs: location
            .path()
            .parent()
            .map_or_else(|| "/".to_owned(), |p| p.display().to_string()),
        name: name.to_owned(),
        needed: len as u64,
        available,
    };
    if len as u64 > available {
        return Err(no_space());
    }
    // SAFETY: fd is a valid open shm fd.
    if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
        return Err(io_err("ftruncate", name));
    }
    allocate_range(fd, 0, len as u64, location).map_err(|e| match e {
        Error::NoSpace { .. } => no_space(),
        e => e,
    })
}

/// Reserves the pages of `[from, from + len)` of `fd` (`posix_fallocate`), so that no write
/// there can meet a full file system (SIGBUS on tmpfs); pages reserved already stay. A full
/// file system is [`Error::NoSpace`]; one that cannot reserve ahead is left to its luck.
pub(crate) fn allocate_range(fd: RawFd, from: u64, len: u64, location: &Location) -> Result<()> {
    // SAFETY: fd is open; posix_fallocate only sizes the file's backing store.
    match unsafe { libc::posix_fallocate(fd, from as libc::off_t, len as libc::off_t) } {
        0 | libc::EOPNOTSUPP | libc::EINVAL => Ok(()), // reserved, or not supported here
        libc::ENOSPC | libc::EFBIG => Err(Error::NoSpace {
            fs: location
                .path()
                .parent()
                .map_or_else(|| "/".to_owned(), |p| p.display().to_string()),
            name: location.label(),
            needed: len,
            available: 0,
        }),
        code => Err(Error::Io {
            op: "posix_fallocate",
            name: location.label(),
            source: io::Error::from_raw_os_error(code),
        }),
    }
}

/// Gives the pages of `[from, to)` of `fd` back to the kernel (`fallocate(PUNCH_HOLE)`,
/// keeping the size); they read as zeros. Best effort: where the file system cannot punch
/// holes, the pages stay until the file goes, and `false` says the range kept its bytes.
pub(crate) fn punch_hole(fd: RawFd, from: u64, to: u64) -> bool {
    if to <= from {
        return true;
    }
    // SAFETY: fallocate on an open descriptor; it never fails in a way that affects memory
    // safety (the range reads as zeros, or keeps its bytes).
    let done = unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            from as libc::off_t,
            (to - from) as libc::off_t,
        )
    };
    done == 0
}

/// Removes the segment `name` if its creator died before initialising it (see
/// [`Error::Abandoned`]); `false` if there is no such segment, it is initialised (or not
/// ours), or a creator is still at work on it. Safe against concurrent removers and creators:
/// it holds the creator's lock while it checks and unlinks, and unlinks only the very file it
/// checked.
pub fn remove_abandoned(name: &str) -> Result<bool> {
    remove_abandoned_at(&Location::Shm(name.to_owned()))
}

/// [`remove_abandoned`] for a map at any [`Location`].
pub fn remove_abandoned_at(location: &Location) -> Result<bool> {
    let name = &location.label();
    // Closing `fd` on return drops our lock.
    let fd = match location.open(libc::O_RDWR) {
        Err(Error::NotFound(_)) => return Ok(false),
        other => other?,
    };
    if !creator_lock(fd.as_raw_fd(), name, libc::F_WRLCK, false)? {
        return Ok(false); // its creator (or another remover) is alive
    }
    let magic = first_word(fd.as_raw_fd(), name)?;
    // A file changed within ATTACH_WAIT may be a creator's between its open and its lock.
    let st = fstat(fd.as_raw_fd(), name)?;
    let changed =
        std::time::UNIX_EPOCH + Duration::new(st.st_ctime as u64, st.st_ctime_nsec as u32);
    let recent = std::time::SystemTime::now()
        .duration_since(changed)
        .map_or(true, |age| age < ATTACH_WAIT);
    if recent || magic != 0 || !name_is(fd.as_raw_fd(), location)? {
        return Ok(false);
    }
    location.unlink_one().map(|()| true)
}
