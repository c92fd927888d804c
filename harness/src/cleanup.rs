//! Everything a run creates is registered here and removed when the run ends, fails, or is
//! interrupted by Ctrl-C: no segment, directory, worker process, private redis-server or map
//! on a Redis server outlives the harness.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Clone, PartialEq)]
enum Resource {
    Segment(String),
    File(PathBuf),
    Dir(PathBuf),
    /// A worker not yet reaped (so its pid cannot have been reused).
    Process(u32),
    /// A map on a Redis server: `(url, name)`.
    Redis(String, String),
}

static LIVE: Mutex<Vec<Resource>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<Resource>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn release(r: &Resource) {
    match r {
        // A map's name, then its heap's and tables' names: `unlink` leaves those to the last
        // handle, and the run that made them is over (on an interrupt, this process still
        // has the map open and exits without closing it).
        Resource::Segment(name) => {
            let at = shmap::Location::Shm(name.clone());
            drop(at.unlink());
            at.unlink_tables();
        }
        // A map's file with its heap and tables beside it; any other file the plain way.
        Resource::File(path) => {
            let at = shmap::Location::File(path.clone());
            if at.unlink().is_err() {
                drop(std::fs::remove_file(path));
            }
            at.unlink_tables();
        }
        Resource::Dir(dir) => drop(std::fs::remove_dir_all(dir)),
        // SAFETY: kill has no memory-safety preconditions; the pid is an unreaped child's.
        Resource::Process(pid) => drop(unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) }),
        Resource::Redis(url, name) => {
            use shmap_backends::{RedisMap, RedisOptions};
            let opts = RedisOptions {
                timeout: std::time::Duration::from_secs(1), // an interrupt must not hang
                ..RedisOptions::default()
            };
            drop(RedisMap::attach(url, name, opts).and_then(|m| m.unlink()));
        }
    }
}

/// Installs the Ctrl-C (and SIGTERM, SIGHUP) handler: kill workers, remove what runs created,
/// exit 130.
pub fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        eprintln!("\ninterrupted: stopping workers and removing segments");
        let live = live();
        // Processes first, so nothing is still using what is removed next.
        live.iter()
            .filter(|r| matches!(r, Resource::Process(_)))
            .for_each(release);
        live.iter()
            .filter(|r| !matches!(r, Resource::Process(_)))
            .for_each(release);
        std::process::exit(130);
    });
}

/// Spawns `cmd` and registers the child for the interrupt handler until [`reaped`] is called.
/// The registry's lock is held across the spawn, so a signal that arrives meanwhile is handled
/// (its handler takes the same lock) only once the child is registered and will be killed.
pub fn spawn_registered(cmd: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let mut live = live();
    let child = cmd.spawn()?;
    live.push(Resource::Process(child.id()));
    Ok(child)
}

/// A private redis-server the harness started: killed, and its directory removed, if the
/// harness is interrupted; [`forget_server`] once it was stopped the normal way.
pub fn track_server(pid: u32, dir: PathBuf) {
    let mut live = live();
    live.push(Resource::Process(pid));
    live.push(Resource::Dir(dir));
}

/// The server of [`track_server`] has been stopped and reaped.
pub fn forget_server(pid: u32, dir: &std::path::Path) {
    live().retain(|r| *r != Resource::Process(pid) && *r != Resource::Dir(dir.to_owned()));
}

/// The worker has been waited for: its pid may be reused from now on.
pub fn reaped(pid: u32) {
    live().retain(|r| *r != Resource::Process(pid));
}

/// The segments and directories of one run; removed on drop, whatever path the run took.
#[derive(Debug, Default)]
pub struct Resources {
    mine: Vec<Resource>,
}

impl Resources {
    fn add(&mut self, r: Resource) {
        live().push(r.clone());
        self.mine.push(r);
    }

    pub fn segment(&mut self, name: &str) {
        self.add(Resource::Segment(name.to_owned()));
    }

    pub fn file(&mut self, path: PathBuf) {
        self.add(Resource::File(path));
    }

    pub fn dir(&mut self, dir: PathBuf) {
        self.add(Resource::Dir(dir));
    }

    pub fn redis(&mut self, url: &str, name: &str) {
        self.add(Resource::Redis(url.to_owned(), name.to_owned()));
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        let mut live = live();
        for r in &self.mine {
            release(r);
            live.retain(|l| l != r);
        }
    }
}
