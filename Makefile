# The project's two commands: `make run` (the main job) and `make test` (every test).
CARGO ?= cargo

.PHONY: test test-rust lint bench

## Every test: the Rust workspace (unit, conformance, property and multi-process tests).
test: test-rust

test-rust:
	$(CARGO) test --workspace --release

## Formatting and clippy, as CI checks them.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Criterion benchmarks (not run by CI: these machines are too noisy for timings in tests).
bench:
	$(CARGO) bench -p shmap-benches
