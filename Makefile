# The project's two commands: `make run` (the main job) and `make test` (every test).
CARGO ?= cargo
PYTHON ?= python3
VENV = .venv
HARNESS = target/release/harness

.PHONY: run sweep test test-rust test-loom test-python python lint bench harness compare redis-server

harness:
	$(CARGO) build --release -p shmap-harness

## The main job: a quick sweep of every backend (about a minute), CSV + plots + recommendation
## into results/latest/.
run: harness
	$(HARNESS) sweep --quick --force --out results/latest

## The full sweep committed in results/ (about 15 minutes on 2 cores, with redis-server installed).
sweep: harness
	$(HARNESS) sweep --force --out results/latest

## Every test: the Rust workspace (unit, conformance, property, multi-process, kill,
## harness, the Redis map against real servers), the loom model of the slot protocol, then
## the Python package (pytest on both storages, and the examples run to completion).
test: test-rust test-loom test-python

## The Redis tests need redis-server, and the TLS ones the openssl command (to make their
## certificates): installed from the system's packages when missing (as root, with apt-get);
## where that is impossible they print why and skip. The tests start and stop their own
## servers on free loopback ports.
redis-server:
	@if command -v redis-server >/dev/null || command -v valkey-server >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing redis-server for the Redis tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null) \
			|| echo "SKIPPING the Redis tests: apt-get could not install redis-server"; \
	else echo "SKIPPING the Redis tests: redis-server is missing and cannot be installed here (not root, or no apt-get)"; fi
	@if command -v openssl >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing openssl for the Redis TLS tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null) \
			|| echo "SKIPPING the Redis TLS tests: apt-get could not install openssl"; \
	else echo "SKIPPING the Redis TLS tests: openssl is missing and cannot be installed here (not root, or no apt-get)"; fi

# Once redis-server is there, a Redis test that cannot find it fails instead of skipping.
REQUIRE_REDIS = $$(command -v redis-server >/dev/null || command -v valkey-server >/dev/null && echo 1)
# And once openssl is there, a TLS test that cannot find it fails too.
REQUIRE_OPENSSL = $$(command -v openssl >/dev/null && echo 1)

test-rust: redis-server
	SHMAP_REQUIRE_REDIS=$(REQUIRE_REDIS) SHMAP_REQUIRE_OPENSSL=$(REQUIRE_OPENSSL) $(CARGO) test --workspace --release

## The slot protocol under the loom model checker (its own target dir: a --cfg loom build).
test-loom:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test --release -p shmap-backends --test loom --test loom_growth --test loom_compact --test loom_heap --test loom_trim --test loom_clear --test loom_emptying

## The Python package, installed with `pip install .` into a local virtualenv.
python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q ".[test]"

test-python: python redis-server
	SHMAP_REQUIRE_REDIS=$(REQUIRE_REDIS) SHMAP_REQUIRE_OPENSSL=$(REQUIRE_OPENSSL) $(VENV)/bin/python -m pytest -q python/tests --benchmark-disable
	$(VENV)/bin/python examples/basic_usage.py
	$(VENV)/bin/python examples/python_and_rust.py

## SharedHashMap against the Python alternatives (results/python/), the original pure-Python
## package among them: it has our import name, so it gets a virtualenv of its own. The Redis
## rows (url= beside redis-py by hand) run on a private redis-server when one is installed.
compare: python
	$(VENV)/bin/pip install -q ".[compare]"
	$(PYTHON) -m venv .venv-original
	.venv-original/bin/pip install -q "shared-hashmap==0.2.0" atomics
	$(VENV)/bin/python python/bench/compare.py --out results/python --original-python .venv-original/bin/python
	$(VENV)/bin/python python/bench/counters.py --out results/python
	$(VENV)/bin/python python/bench/redis_batches.py --out results/python

## Formatting, clippy, rustdoc (broken doc links), the house's rules (no import circle,
## imports run down, files of about 600 lines at most: docs/architecture.md), and the crates
## meant for users (shmap-core, shmap-backends, shmap-typed) each building from its package,
## as CI checks them.
lint:
	$(PYTHON) .ci/layers.py
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace --quiet
	@# cargo keeps what each dry run unpacked and built of our crates by version (registry
	@# crates never change), and would verify against stale copies after a change (0.1.0 each
	@# time): a target directory of its own, and the unpacked copies, removed first.
	rm -rf target/publish-check $${CARGO_HOME:-$$HOME/.cargo}/registry/src/-*/shmap-core-* \
		$${CARGO_HOME:-$$HOME/.cargo}/registry/src/-*/shmap-backends-* \
		$${CARGO_HOME:-$$HOME/.cargo}/registry/src/-*/shmap-typed-*
	CARGO_TARGET_DIR=target/publish-check $(CARGO) publish --dry-run --workspace --allow-dirty --quiet

## Criterion benchmarks (not run by CI: these machines are too noisy for timings in tests).
bench:
	$(CARGO) bench -p shmap-benches
