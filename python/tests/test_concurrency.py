"""Threads, fork, spawn and process pools on one map: no torn value, no missing key, exact counts."""

import multiprocessing as mp
import os
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest

from shared_hashmap import SharedHashMap

import _workers

KEYS = 40


def test_threads_share_one_handle_with_exact_counts(Map, name):
    with Map(name, capacity=4096) as m:
        errors = []

        def work(t):
            try:
                for i in range(500):
                    m[f"shared-{i}"] = t
                    m[f"own-{t}-{i}"] = i
                    assert m[f"own-{t}-{i}"] == i
                    del m[f"own-{t}-{i}"]
            except Exception as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(m) == 500
        assert sorted(m.keys()) == sorted(f"shared-{i}" for i in range(500))
        m.unlink()


def _fork_child(handle, key):
    handle[key] = os.getpid()


def test_a_handle_works_in_a_forked_child(Map, name):
    ctx = mp.get_context("fork")
    with Map(name) as m:
        procs = [ctx.Process(target=_fork_child, args=(m, f"child-{i}")) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0
        assert {m[f"child-{i}"] for i in range(4)} == {p.pid for p in procs}
        m.unlink()


def test_a_handle_passes_to_spawn_processes_and_a_pool(Map, name):
    with Map(name) as m:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
            got = list(pool.map(_workers.add_from_child, [m] * 4, [f"k{i}" for i in range(4)], range(4)))
        assert got == [0, 1, 2, 3]
        assert [m[f"k{i}"] for i in range(4)] == [0, 1, 2, 3]
        m.unlink()


def test_concurrent_updates_never_tear_and_never_lose_a_key(Map, name):
    with Map(name, capacity=512, max_value_size=512) as m:
        for k in range(KEYS):
            m[f"filler-{k}"] = 0  # so that stable keys sit behind tombstones
            m[k] = _workers.make_value(k, 0)
        for k in range(KEYS):
            del m[f"filler-{k}"]
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=6, mp_context=ctx) as pool:
            writers = [pool.submit(_workers.writer, m, KEYS, w, 60) for w in (1, 2)]
            readers = [pool.submit(_workers.reader, m, KEYS, 1.5) for _ in range(2)]
            churners = [pool.submit(_workers.churn, m, f"c{c}", 30, 40) for c in range(2)]
            assert sum(f.result() for f in writers) == 2 * 60 * KEYS
            assert sum(f.result() for f in readers) > 1000
            for f in churners:
                f.result()
        assert len(m) == KEYS
        for k in range(KEYS):
            _workers.check_value(k, m[k])
        m.unlink()


def test_values_of_every_type_changing_under_readers_never_tear(Map, name):
    """Gets build str, bytes, int and float objects straight from shared memory while the
    seqlock read is in flight: a value whose type, length and bytes change under a reader in
    another process must come back whole, as one of the values written."""
    keys = 2  # few keys: readers meet writers in the middle often
    with Map(name, capacity=64, max_value_size=128) as m:
        for k in range(keys):
            m[k] = _workers.typed_value(k)
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=4, mp_context=ctx) as pool:
            writers = [pool.submit(_workers.typed_rewriter, m, keys, 1.5) for _ in range(2)]
            readers = [pool.submit(_workers.typed_reader, m, keys, 1.5) for _ in range(2)]
            assert sum(f.result() for f in writers) > 1000
            assert sum(f.result() for f in readers) > 1000
        for k in range(keys):
            _workers.check_typed(m[k])
        m.unlink()


def test_many_processes_inserting_the_same_keys_store_each_once(Map, name):
    with Map(name, capacity=2048) as m:
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=4, mp_context=ctx) as pool:
            list(pool.map(_workers.insert_same, [m] * 4, [1000] * 4))
        assert len(m) == 1000
        keys = m.keys()
        assert len(keys) == len(set(keys)) == 1000
        m.unlink()


def test_four_processes_grow_the_map_100x_and_every_key_is_there_once(name):
    initial = 64
    per_process = 100 * initial // 4
    with SharedHashMap(name, capacity=initial) as m:
        for k in range(KEYS):
            m[k] = _workers.make_value(k, 0)
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=6, mp_context=ctx) as pool:
            fillers = [pool.submit(_workers.fill, name, f"p{p}", per_process) for p in range(4)]
            readers = [pool.submit(_workers.reader, name, KEYS, 1.0) for _ in range(2)]
            assert sum(f.result() for f in fillers) == 100 * initial
            assert all(f.result() > 0 for f in readers)  # keys present throughout never missed
        keys = list(m.keys())
        assert len(keys) == len(set(keys)) == len(m) == KEYS + 100 * initial
        assert set(keys) >= {f"p{p}-{k}" for p in range(4) for k in range(per_process)}
        assert m.capacity >= 100 * initial
        m.unlink()
