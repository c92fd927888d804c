"""unlink() of a map that grew (issue 33, item 1): every open handle keeps working, as with
an unlinked POSIX segment, and the tables (`name.t<g>`, `path.t<g>`) go with the last handle."""

import os
import subprocess
import sys

import pytest

import shared_hashmap
from shared_hashmap import SharedHashMap


@pytest.fixture(params=["shm", "file"])
def where(request, name, tmp_path):
    """How to open the map, and a function listing what it has on disk."""
    if request.param == "shm":
        def left():
            return sorted(f for f in os.listdir("/dev/shm")
                          if f in (name, f"{name}.heap") or f.startswith(f"{name}.t"))
        yield dict(name=name), left
        for f in left():  # whatever a failing test left
            os.unlink(f"/dev/shm/{f}")
    else:
        path = tmp_path / "grown.map"
        def left():
            return sorted(f for f in os.listdir(tmp_path) if f.startswith("grown.map"))
        yield dict(path=str(path)), left


def test_unlink_of_a_grown_map_keeps_every_handle_working_and_leaves_nothing(where):
    kw, left = where
    m = SharedHashMap(**kw, capacity=8)
    for i in range(20):
        m[i] = i
    assert m.capacity > 8 and len(left()) == 3  # the map, its heap and its current table
    fresh = SharedHashMap(**kw, create=False)  # has made no call yet
    used = SharedHashMap(**kw, create=False)
    assert used[3] == 3
    m.unlink()
    # The map's own name is gone; its heap's and tables' stay for the open handles.
    assert all(".t" in f or f.endswith(".heap") for f in left())
    assert len(fresh) == 20 and fresh[7] == 7
    for i in range(20, 500):
        fresh[i] = i  # grows after the unlink
    assert fresh.capacity > m.capacity or m.capacity >= 512
    for h in (m, fresh, used):
        assert len(h) == 500 and h[499] == 499 and h[0] == 0
    used.close()
    m.close()
    assert fresh[250] == 250  # the last handle still finds the table it has not mapped yet
    fresh.close()
    assert left() == []  # the last handle took the heap's and tables' names with it


GROWN_AFTER_UNLINK = """
import sys
from shared_hashmap import SharedHashMap
m = SharedHashMap(sys.argv[1], capacity=8)      # tracked
for i in range(20):
    m[i] = i
other = SharedHashMap(sys.argv[1], create=False)
m.unlink()
for i in range(20, 500):
    other[i] = i                                # a table made after the unlink
assert len(m) == 500
print("grown", flush=True)
"""


def test_a_table_made_after_unlink_does_not_outlive_the_processes(name):
    out = subprocess.run([sys.executable, "-c", GROWN_AFTER_UNLINK, name],
                         capture_output=True, text=True, timeout=60)
    assert "grown" in out.stdout, out.stderr
    left = [f for f in os.listdir("/dev/shm") if f.startswith(f"{name}.t") or f == f"{name}.heap"]
    for f in left:
        os.unlink(f"/dev/shm/{f}")
    assert left == []


def test_unlink_by_name_removes_leftover_tables_quietly(name):
    m = SharedHashMap(name, capacity=8, track=False)
    for i in range(20):
        m[i] = i
    m.close()
    # What a process killed after it unlinked the map's own name leaves: its tables.
    os.unlink(f"/dev/shm/{name}")
    assert [f for f in os.listdir("/dev/shm") if f.startswith(f"{name}.t")] != []
    shared_hashmap.unlink(name)
    assert [f for f in os.listdir("/dev/shm") if f.startswith(name)] == []
    with pytest.raises(FileNotFoundError):
        shared_hashmap.unlink(name)  # nothing at all: still an error
