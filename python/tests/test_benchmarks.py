"""pytest-benchmark timings of single-process operations, as the specification has them.

    pytest python/tests/test_benchmarks.py --benchmark-only

Under `make test` they run once each as plain tests (--benchmark-disable): timings on these
noisy 2-core machines are measured with the command above, never asserted.
"""

import pytest

from shared_hashmap import SharedHashMap

pytest.importorskip("pytest_benchmark")

VALUE = "v" * 64


@pytest.fixture
def filled(name):
    with SharedHashMap(name, capacity=4096) as m:
        for i in range(1000):
            m[f"key-{i:06d}"] = VALUE
            m[i] = i
        yield m
        m.unlink()


def test_string_get(benchmark, filled):
    assert benchmark(filled.get, "key-000500") == VALUE


def test_string_set(benchmark, filled):
    benchmark(filled.__setitem__, "key-000500", VALUE)
    assert filled["key-000500"] == VALUE


def test_int_get(benchmark, filled):
    assert benchmark(filled.__getitem__, 500) == 500


def test_int_set(benchmark, filled):
    benchmark(filled.__setitem__, 500, 501)


def test_contains_miss(benchmark, filled):
    assert benchmark(filled.__contains__, "absent") is False


def test_dict_get_reference(benchmark):
    d = {f"key-{i:06d}": VALUE for i in range(1000)}
    assert benchmark(d.get, "key-000500") == VALUE
