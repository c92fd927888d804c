"""A handle keeps the str, bytes, int and float objects its gets made, by the slot publication
they were read from, and returns them again while the entry is unchanged (`value_cache.rs`).
These tests check that a kept object is never returned for an entry changed since: by another
handle, another process, a remove, a resize or a compaction. A kept entry also holds the key
object of its last get, which later gets and `in` of that very object find by identity and
the slot's control word alone: never another key's entry, never a changed one."""

import multiprocessing as mp
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from shared_hashmap import SharedHashMap

import _workers


def test_an_unchanged_entry_returns_the_same_object(name):
    with SharedHashMap(name, capacity=64) as m:
        for k, v in [("s", "text"), ("b", b"raw"), ("i", 12345678901), ("f", 2.5)]:
            m[k] = v
            once, twice = m[k], m[k]  # kept from the second get of a publication on
            assert once == twice == v and once is not twice
            assert m[k] is twice and m.get(k) is twice
        assert m._cached_values() == 4
        m.unlink()


def test_mutable_and_large_values_are_decoded_afresh(name):
    with SharedHashMap(name, capacity=64, max_value_size=4096) as m:
        m["l"] = [1, 2]
        got = m["l"]
        got.append(3)
        assert m["l"] == [1, 2] and m["l"] is not m["l"]
        m["big"] = "x" * 2000  # over the cache's per-value bound
        assert m["big"] == "x" * 2000 and m["big"] is not m["big"]
        m["u"] = "é" * 10  # not ASCII: decoded after the read, never kept
        assert m["u"] == "é" * 10 and m["u"] is not m["u"]
        assert m._cached_values() == 0
        m.unlink()


def test_a_change_through_another_handle_is_seen(name):
    with SharedHashMap(name, capacity=64) as m, SharedHashMap(name, create=False) as other:
        m["k"] = "one"
        assert m["k"] == "one"
        for v in ["two", b"three", 4, 5.0, "two"]:
            other["k"] = v
            assert m["k"] == v and type(m["k"]) is type(v)
        del other["k"]
        assert m.get("k") is None and "k" not in m
        with pytest.raises(KeyError):
            m["k"]
        other["k"] = "back"
        assert m["k"] == "back"
        m.unlink()


def test_a_resize_and_churn_never_return_an_old_object(name):
    """Other handles remove keys (tombstones, compaction moves), re-add them with new values in
    reused slots, and grow the table 16x; every get through the first handle is current."""
    with SharedHashMap(name, capacity=64) as m, SharedHashMap(name, create=False) as other:
        keys = [f"k{i}" for i in range(40)]
        for k in keys:
            m[k] = f"{k}:0"
        for rounds in range(1, 30):
            for k in keys:
                assert m[k] == m[k] == f"{k}:{rounds - 1}"  # kept for the next round
            for k in keys[::2]:
                del other[k]
            for k in keys:
                other[k] = f"{k}:{rounds}"
        for i in range(1000):
            other[f"grow{i}"] = i
        assert m.capacity > 64
        for k in keys:
            assert m[k] == f"{k}:29"
        for i in range(0, 1000, 7):
            assert m[f"grow{i}"] == i and m[f"grow{i}"] is m[f"grow{i}"]
        m.unlink()


def test_close_lets_go_of_the_kept_objects(name):
    m = SharedHashMap(name, capacity=64)
    m["a"] = "x" * 10
    assert m["a"] and m["a"] and m._cached_values() == 1
    m.close()
    assert m._cached_values() == 0
    SharedHashMap(name, create=False).unlink()


def test_readers_in_other_processes_see_every_rewrite(name):
    """A writer process rewrites one key for half a second while reader processes get it: the
    stamps they see never go back, and once the writer is done they see its last value."""
    with SharedHashMap(name, capacity=64) as m:
        m["key"] = "0:"
        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=3, mp_context=ctx) as pool:
            readers = [pool.submit(_workers.stamp_reader, m, "key") for _ in range(2)]
            writer = pool.submit(_workers.stamp_writer, m, "key", 2, 0.5)
            assert writer.result() > 1000
            assert all(r.result() > 10 for r in readers)
        m.unlink()


def test_a_kept_object_is_not_taken_for_the_same_slot_of_a_new_table(name):
    """After a resize a key may sit in a slot of the same index as before, with the same
    control word (the copy starts versions over) but another value: the cache must tell the
    tables apart, whether a get finds the entry by the key object (the same one) or by its
    bytes (an equal one). Which key keeps its slot index depends on each map's hash seed, and
    the first get that misses starts the cache over: many small maps of one kept key each,
    so that in some the key keeps its index."""
    for trial in range(300):
        with SharedHashMap(f"{name}-{trial}", capacity=8) as m:
            other = SharedHashMap(f"{name}-{trial}", create=False)
            key = "".join(["k", "ey"])  # one object, made at run time
            m[key] = "a"
            m[key] = "b"
            assert m[key] == "b" and m[key] == "b"  # kept at the second publication
            grow = 0
            while m.capacity == 8:
                other[f"grow{grow}"] = grow
                grow += 1
            other[key] = "c"  # the second publication in the new table
            probe = key if trial % 2 else "".join(["k", "ey"])
            assert m[probe] == "c"
            other.close()
            m.unlink()


def test_a_key_object_is_never_taken_for_another_keys_entry(name):
    """Lookups of absent keys pass many kept entries of other keys, some with the same 16-bit
    hash tag (about 7 slots per miss at this load): a kept entry counts only for its own key
    object."""
    with SharedHashMap(name, capacity=4096) as m:
        keys = [f"k{i}" for i in range(3000)]
        for k in keys:
            m[k] = k
        for k in keys:
            assert m[k] == k and m[k] is m[k] and k in m  # kept, with the key object
        assert m._cached_values() == 3000
        for i in range(50_000):
            absent = f"absent{i}"
            assert absent not in m and m.get(absent) is None
        m.unlink()


def test_a_known_key_object_sees_removes_and_reused_slots(name):
    """The key objects of kept entries after another handle removed every key and filled the
    slots with other keys, then put the first keys back."""
    with SharedHashMap(name, capacity=256) as m, SharedHashMap(name, create=False) as other:
        old = [f"old{i}" for i in range(150)]
        for k in old:
            m[k] = k
        for k in old:
            assert m[k] == k and m.get(k) is m.get(k) and k in m
        for k in old:
            del other[k]
        for i in range(150):
            other[f"new{i}"] = "new"
        for k in old:
            assert k not in m and m.get(k) is None
            with pytest.raises(KeyError):
                m[k]
        for k in old:
            other[k] = k + "!"
        for k in old:
            assert m[k] == k + "!" and k in m
        m.unlink()


def test_key_objects_are_held_only_while_their_entry_is_kept(name):
    """The cache holds one reference to the key object of a kept entry: given up when the
    entry changes, passed to an equal key object that finds the entry by its bytes (a get or
    `in`), and given up by `close()`."""
    m = SharedHashMap(name, capacity=64)
    key = "".join(["some", "key"])  # built at run time: only our references
    m[key] = "v"
    base = sys.getrefcount(key)
    assert m[key] == "v" and sys.getrefcount(key) == base  # read once: nothing kept
    assert m[key] == "v" and sys.getrefcount(key) == base + 1
    assert m[key] == "v" and sys.getrefcount(key) == base + 1  # found by identity
    m[key] = "w"
    assert m[key] == "w" and sys.getrefcount(key) == base  # a new publication
    assert m[key] == "w" and sys.getrefcount(key) == base + 1
    equal = "".join(["some", "key"])
    assert equal is not key and m[equal] == "w"
    assert sys.getrefcount(key) == base and sys.getrefcount(equal) == base + 1
    assert key in m and sys.getrefcount(key) == base + 1 and sys.getrefcount(equal) == base
    m.close()
    assert sys.getrefcount(key) == base
    SharedHashMap(name, create=False).unlink()
