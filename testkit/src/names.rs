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

impl Drop for TestName {
    fn drop(&mut self) {
        let _ = shmap::unlink(&self.0); // NotFound is fine: the test may have unlinked it
    }
}
