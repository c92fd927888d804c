# The project's two commands: `make run` (the main job) and `make test` (every test).
CARGO ?= cargo
HARNESS = target/release/harness

.PHONY: run sweep quick test test-rust lint bench harness

harness:
	$(CARGO) build --release -p shmap-harness

## The main job: a quick sweep of every backend (about a minute), CSV + plots + recommendation
## into results/latest/.
run: harness
	$(HARNESS) sweep --quick --out results/latest

## The full sweep committed in results/ (about ten minutes on 2 cores).
sweep: harness
	$(HARNESS) sweep --out results/latest

## Every test: the Rust workspace (unit, conformance, property, multi-process, harness).
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
