//! How the Python class cleans up the maps it opens (opening itself, create or attach, is
//! `shmap_typed::open_or_create`, which Rust's typed map uses too): `track`, the cleanup
//! Python's own `SharedMemory` does: a map this process created is registered with
//! `multiprocessing.resource_tracker` (the segment names are the same kind), which unlinks it
//! when the program ends, also when it is killed.
//!
//! A map keeps its records in `name.heap` (`Location::heap`), made with it: the creator
//! registers that name with the tracker too, so a creator killed leaves neither behind.
//!
//! A map that grew keeps its table in `name.t<g>` (`Location::table`), a name any process may
//! make at any time. The creator registers the current table's name with the tracker too,
//! whenever one of its writes finds a new generation (`track_table`: where this process
//! grows the map, or sees that another did), and unregisters the one before. When it exits
//! normally it also removes every `name.t<g>` (`at_exit`, before the tracker removes the
//! rest). A creator killed after another process grew the map, before its own next write,
//! leaves that table behind: `shared_hashmap.unlink(name)` removes it.

use std::collections::HashMap;
use std::sync::Mutex;

use pyo3::prelude::*;
use shmap::Location;

/// Names this process registered with the resource tracker (and must unregister before it
/// unlinks them, or the tracker complains of an unknown name when the program ends), each
/// with the generation whose table name it registered too (0: none).
static TRACKED: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);

/// The tracker's name for a shared-memory segment: it calls shm_unlink with the leading slash.
fn tracker_name(name: &str) -> String {
    format!("/{name}")
}

/// The shared-memory name of a place beside the map `name` (its heap, a table).
fn beside(at: Location) -> String {
    match at {
        Location::Shm(n) => n,
        Location::File(_) => unreachable!("a shared-memory map's places are shared memory"),
    }
}

fn heap_name(name: &str) -> String {
    beside(Location::Shm(name.to_owned()).heap())
}

fn table_name(name: &str, g: u64) -> String {
    beside(Location::Shm(name.to_owned()).table(g))
}

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
    let tracker = tracker(py)?;
    tracker.call_method1("register", (tracker_name(name), "shared_memory"))?;
    tracker.call_method1(
        "register",
        (tracker_name(&heap_name(name)), "shared_memory"),
    )?;
    TRACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(name.to_owned(), 0);
    Ok(())
}

/// Registers the table of generation `g` of `name` (if this process tracks `name`) in place
/// of the one registered before, which a resize has removed.
pub fn track_table(py: Python<'_>, name: &str, g: u64) -> PyResult<()> {
    let old = {
        let mut tracked = TRACKED.lock().unwrap_or_else(|e| e.into_inner());
        match tracked.as_mut().and_then(|t| t.get_mut(name)) {
            Some(registered) if *registered != g => std::mem::replace(registered, g),
            _ => return Ok(()),
        }
    };
    let tracker = tracker(py)?;
    if g > 0 {
        tracker.call_method1(
            "register",
            (tracker_name(&table_name(name, g)), "shared_memory"),
        )?;
    }
    if old > 0 {
        let old = tracker_name(&table_name(name, old));
        tracker.call_method1("unregister", (old, "shared_memory"))?;
    }
    Ok(())
}

/// At the program's end: removes the table generations of the maps this process still
/// tracks (see the module comment); the tracker then removes their own names.
#[pyfunction]
fn at_exit(py: Python<'_>) -> PyResult<()> {
    if *AT_EXIT_PID.lock().unwrap_or_else(|e| e.into_inner()) != Some(std::process::id()) {
        return Ok(()); // a forked child: the maps are its parent's
    }
    let names: Vec<String> = TRACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .flatten()
        .map(|(name, _)| name.clone())
        .collect();
    for name in names {
        // No longer the tracker's to remove (it would warn that it found nothing).
        track_table(py, &name, 0)?;
        tracker(py)?.call_method1(
            "unregister",
            (tracker_name(&heap_name(&name)), "shared_memory"),
        )?;
        Location::Shm(name).unlink_tables(); // and the heap
    }
    Ok(())
}

/// Before unlinking `name`: no longer ours to clean up.
pub fn untrack(py: Python<'_>, name: &str) -> PyResult<()> {
    track_table(py, name, 0)?;
    let was = TRACKED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|t| t.remove(name))
        .is_some();
    if was {
        let tracker = tracker(py)?;
        tracker.call_method1("unregister", (tracker_name(name), "shared_memory"))?;
        tracker.call_method1(
            "unregister",
            (tracker_name(&heap_name(name)), "shared_memory"),
        )?;
    }
    Ok(())
}
