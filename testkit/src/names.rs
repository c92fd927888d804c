//! Segment names for tests: unique across tests, test binaries and runs, and unlinked when
//! the test ends, so a test leaves nothing in `/dev/shm` even when it fails.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A segment name no other test (or test run) uses; unlinked when dropped.
#[derive(Debug)]
pub struct TestName(pub String);

impl TestName {
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Self(format!(
            "shmap-test-{}-{n}-{nanos}-{tag}",
            std::process::id()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The bytes the kernel holds for the files of map `name` in `/dev/shm` (its root, its
/// tables `name.t<g>` and its heap `name.heap`): the map's memory, as issue 32 counts it.
pub fn shm_bytes_held(name: &str) -> u64 {
    let dotted = format!("{name}.");
    shm_files(|f| f == name || f.starts_with(&dotted)).sum()
}

/// Bytes the kernel holds for map `name`'s current table in `/dev/shm`: the largest of its
/// table segments (`name.t<g>`; the old ones were punched out), 0 before its first resize.
pub fn shm_table_bytes(name: &str) -> u64 {
    let prefix = format!("{name}.t");
    shm_files(|f| f.starts_with(&prefix)).max().unwrap_or(0)
}

/// The bytes the kernel holds for each file of `/dev/shm` whose name `pick` accepts.
fn shm_files(pick: impl Fn(&str) -> bool) -> impl Iterator<Item = u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .filter_map(|e| e.ok())
        .filter(move |e| pick(&e.file_name().to_string_lossy()))
        .map(|e| e.metadata().map_or(0, |m| m.blocks() * 512))
}

impl Drop for TestName {
    fn drop(&mut self) {
        let _ = shmap::unlink(&self.0); // NotFound is fine: the test may have unlinked it
    }
}
