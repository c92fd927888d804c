"""Memory comes back (issue 32, item 3): clear() gives the heap's pages back to the kernel,
and the map goes on working in the space it gave back."""

import os


def _held(path):
    return os.stat(path).st_blocks * 512


def test_clear_gives_the_heaps_pages_back(name):
    from shared_hashmap import SharedHashMap

    with SharedHashMap(name, max_value_size=None) as m:
        for i in range(20_000):
            m[f"key-{i}"] = "v" * (i % 3000)  # many size classes
        heap = f"/dev/shm/{name}.heap"
        full = _held(heap)
        assert full > 20 << 20
        m.clear()
        assert len(m) == 0
        assert _held(heap) < 1 << 20, f"{_held(heap)} of {full} bytes kept after clear()"
        for i in range(20_000):
            m[f"again-{i}"] = "w" * (i % 3000)
        assert all(m[f"again-{i}"] == "w" * (i % 3000) for i in range(0, 20_000, 7))
        assert _held(heap) < full * 1.2
        m.unlink()


def _held_by(name, table_only=False):
    """Bytes the kernel holds for the map's files: its root and tables (and its heap)."""
    return sum(
        _held(f"/dev/shm/{f}")
        for f in os.listdir("/dev/shm")
        if f == name or (f.startswith(name + ".") and not (table_only and f.endswith(".heap")))
    )


def test_clear_gives_the_tables_pages_back_too(name):
    from shared_hashmap import SharedHashMap

    with SharedHashMap(name + "-empty") as empty:
        empty_tables = _held_by(name + "-empty", table_only=True)
        empty.unlink()
    with SharedHashMap(name) as m:
        for i in range(200_000):
            m[i] = i
        capacity, full = m.capacity, _held_by(name, table_only=True)
        assert full > 4 << 20
        m.clear()
        assert (len(m), m.get(7), m.capacity) == (0, None, capacity)
        after = _held_by(name, table_only=True)
        assert after <= empty_tables + (64 << 10), (after, empty_tables, full)
        m.update((i, -i) for i in range(1000))
        assert all(m[i] == -i for i in range(1000))
        m.unlink()


def test_a_clear_by_another_handle_is_seen_at_once(name):
    """After a clear the same slot can hold the same control word again (versions start
    again from 0): a handle that read the key before must not serve what it saw then."""
    from shared_hashmap import SharedHashMap

    with SharedHashMap(name) as a, SharedHashMap(name, create=False) as b:
        a["k"] = "before"
        assert a["k"] == "before" and a["k"] == "before"
        b.clear()
        assert "k" not in a and a.get("k") is None
        b["k"] = "after"
        assert a["k"] == "after"
        a.unlink()


def test_removing_every_entry_gives_the_pages_back(name):
    """Not only clear(): a map emptied by `del`, `pop` and `delete` from two handles gives
    its table's pages back with its last entry, and keeps them while one entry is left."""
    from shared_hashmap import SharedHashMap

    with SharedHashMap(name + "-empty") as empty:
        empty_tables = _held_by(name + "-empty", table_only=True)
        empty.unlink()
    with SharedHashMap(name) as a, SharedHashMap(name, create=False) as b:
        for i in range(200_000):
            a[i] = str(i)
        capacity, full = a.capacity, _held_by(name, table_only=True)
        assert full > 4 << 20
        for i in range(1, 200_000):
            if i % 3 == 0:
                del a[i]
            elif i % 3 == 1:
                assert b.pop(i) == str(i)
            else:
                assert b.delete(i)
        assert _held_by(name, table_only=True) > full // 2, "given back with an entry left"
        assert (len(b), b[0]) == (1, "0")
        del b[0]
        after = _held_by(name, table_only=True)
        assert after <= empty_tables + (64 << 10), (after, empty_tables, full)
        assert (len(a), a.get(0), a.capacity) == (0, None, capacity)
        a.update((i, -i) for i in range(1000))
        assert all(b[i] == -i for i in range(1000))
        a.unlink()
