//! The conformance suite, once per backend.
mod common;

conformance_suite!(lockfree, shmap_backends::LockFreeMap);
conformance_suite!(spinlock, shmap_backends::SpinLockMap);
conformance_suite!(mutex, shmap_backends::MutexMap);
