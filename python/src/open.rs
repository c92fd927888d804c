//! How the Python class opens a map: create, attach, or (`exist_ok`) either, replacing a
//! segment whose creator died; and `track`, the cleanup Python's own `SharedMemory` does: a
//! map this process created is registered with `multiprocessing.resource_tracker` (the segment
//! names are the same kind), which unlinks it when the program ends, also when it is killed.
//!
//! A map that grew keeps its table in `name.t<g>` (`Location::table`), a name the tracker
//! does not know: any process may make it, at any time. So the creator also removes those
//! names when it exits normally (`at_exit`, run before the tracker removes the map's own
//! name). A creator that is killed still leaves the current table's segment behind;
//! `shared_hashmap.unlink(name)` removes it.

use std::collections::HashSet;
use std::sync::Mutex;

use pyo3::prelude::*;
use shmap::{AttachOptions, Error, Location, MapBackend, MapParams};
use shmap_backends::LockFreeMap;

/// Creates `name`, or with `exist_ok` attaches to it if it exists, replacing a segment whose
/// creator died before initialising it. `true` with the map if this call created it.
pub fn open_or_create(
    location: &Location,
    stored: MapParams,
    exist_ok: bool,
    opts: AttachOptions,
) -> shmap::Result<(LockFreeMap, bool)> {
    // A few rounds: another process may create, remove or replace the name between our steps.
    let mut last = None;
    for _ in 0..8 {
        match LockFreeMap::create_in(location, stored) {
            Err(Error::AlreadyExists(_)) if exist_ok => {}
            done => return done.map(|m| (m, true)),
        }
        match LockFreeMap::attach_in(location, opts) {
            Err(Error::NotFound(_)) => continue, // removed meanwhile: create again
            Err(e @ Error::Abandoned { .. }) => {
                shmap::remove_abandoned_at(location)?;
                last = Some(e);
            }
            done => return done.map(|m| (m, false)),
        }
    }
    Err(last.unwrap_or_else(|| Error::AlreadyExists(location.label())))
}

/// Names this process registered with the resource tracker (and must unregister before it
/// unlinks them, or the tracker complains of an unknown name when the program ends).
static TRACKED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

fn tracker(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    py.import("multiprocessing.resource_tracker")
        .map(Bound::into_any)
}

/// The process that registered `at_exit` (a child made by `os.fork` inherits the handler but
/// not the maps' ownership).
static AT_EXIT_PID: Mutex<Option<u32>> = Mutex::new(None);

/// Registers `name` for removal when this program ends.
pub fn track(py: Python<'_>, name: &str) -> PyResult<()> {
    let mut pid = AT_EXIT_PID.lock().unwrap_or_else(|e| e.into_inner());
    if *pid != Some(std::process::id()) {
        let at_exit = wrap_pyfunction!(at_exit, py)?;
        py.import("atexit")?.call_method1("register", (at_exit,))?;
        *pid = Some(std::process::id());
    }
    drop(pid);
    // The tracker's shared_memory cleanup calls shm_unlink with the leading slash.
    tracker(py)?.call_method1("register", (format!("/{name}"), "shared_memory"))?;
    TRACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashSet::new)
        .insert(name.to_owned());
    Ok(())
}

/// At the program's end: removes the table generations of the maps this process still
/// tracks (see the module comment); the tracker then removes their own names.
#[pyfunction]
fn at_exit() {
    if *AT_EXIT_PID.lock().unwrap_or_else(|e| e.into_inner()) != Some(std::process::id()) {
        return; // a forked child: the maps are its parent's
    }
    let tracked = TRACKED.lock().unwrap_or_else(|e| e.into_inner());
    for name in tracked.iter().flatten() {
        let map = Location::Shm(name.clone());
        for g in 1..=shmap::MAX_GENERATIONS {
            let _ = map.table(g).unlink_one(); // most never existed
        }
    }
}

/// Before unlinking `name`: no longer ours to clean up.
pub fn untrack(py: Python<'_>, name: &str) -> PyResult<()> {
    let was = TRACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .is_some_and(|set| set.remove(name));
    if was {
        tracker(py)?.call_method1("unregister", (format!("/{name}"), "shared_memory"))?;
    }
    Ok(())
}
