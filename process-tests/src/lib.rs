//! No library: this package holds the worker binaries (`src/bin/`) and the tests that start
//! them (`tests/`): multi-process races, SIGKILLs at random points, growth and compaction under
//! many writers, file-backed maps reopened by other processes. Its tests run in `make test`
//! with the rest of the workspace.
