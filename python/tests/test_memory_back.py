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
