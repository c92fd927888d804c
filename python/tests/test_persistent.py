"""File-backed maps (issue 15, in part): SharedHashMap(path=...) is the same map in a file,
attached by path from any process, kept after every process is gone."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from shared_hashmap import SharedHashMap

WRITER = """
import sys
from shared_hashmap import SharedHashMap
m = SharedHashMap(path=sys.argv[1], create=False)
i = 0
while True:
    m[i % 50] = "v" * (i % 300) + str(i)
    i += 1
"""


def test_a_file_map_outlives_its_processes(tmp_path):
    path = tmp_path / "cache.map"
    with SharedHashMap(path=str(path), capacity=128) as m:
        m.update({i: f"value {i}" for i in range(100)})
        m["t"] = (1, 2.0, "x")
        m.flush()
        assert m.path == path and m.name == str(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    out = subprocess.run(
        [sys.executable, "-c",
         "import sys; from shared_hashmap import SharedHashMap as S; "
         "m = S(path=sys.argv[1], create=False); print(len(m), m[42], m['t'])", str(path)],
        capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[0] == "101 value 42 (1, 2.0, 'x')", out.stderr
    with pytest.raises(FileExistsError):
        SharedHashMap(path=str(path))
    with SharedHashMap(path=str(path), exist_ok=True) as again:
        assert again[7] == "value 7"
        again.unlink()
    assert not path.exists()


def test_a_killed_writer_of_a_file_map_is_repaired(tmp_path):
    path = tmp_path / "killed.map"
    m = SharedHashMap(path=str(path), capacity=128, max_value_size=400)
    for round in range(5):
        w = subprocess.Popen([sys.executable, "-c", WRITER, str(path)])
        time.sleep(0.3 + 0.05 * round)
        w.send_signal(signal.SIGKILL)
        w.wait()
        fresh = SharedHashMap(path=str(path), create=False)
        values = fresh.copy()
        assert len(values) == len(fresh) <= 50
        for k, v in values.items():
            n = int(v.lstrip("v"))
            assert n % 50 == k and v == "v" * (n % 300) + str(n), f"torn value at {k}"
        fresh[0] = "writable"
        fresh.close()
    m.unlink()


def test_name_or_path_not_both_nor_neither(tmp_path):
    with pytest.raises(TypeError, match="not both"):
        SharedHashMap("x", path=str(tmp_path / "m"))
    with pytest.raises(TypeError, match="needs a name"):
        SharedHashMap()
    with pytest.raises(FileNotFoundError):
        SharedHashMap(path=str(tmp_path / "missing"), create=False)


def test_a_file_map_handle_pickles_to_a_spawned_process(tmp_path):
    import multiprocessing as mp
    import _workers

    path = tmp_path / "pickled.map"
    with SharedHashMap(path=str(path), capacity=64) as m:
        with mp.get_context("spawn").Pool(1) as pool:
            assert pool.apply(_workers.add_from_child, (m, "k", 5)) == 5
        assert m["k"] == 5
        m.unlink()


def test_a_torn_entry_is_dropped_with_a_warning_not_returned(tmp_path):
    # What a crash of the machine leaves: an entry whose bytes come from two writes. Flip one
    # byte of one value in the closed map's heap file (where its records are), as a stale or
    # half-written page would.
    path = tmp_path / "torn.map"
    with SharedHashMap(path=str(path), capacity=64, max_value_size=64) as m:
        m.update({i: f"needle-{i:02}-" + "x" * 20 for i in range(20)})
        m.flush()
    heap = tmp_path / "torn.map.heap"
    raw = bytearray(heap.read_bytes())
    at = raw.find(b"needle-07-")
    assert at > 0 and raw.count(b"needle-07-") == 1
    raw[at + 12] ^= 0x01
    heap.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match=r"kept 19 entries and dropped 1 torn"):
        m = SharedHashMap(path=str(path), create=False)
    with m:
        assert 7 not in m and len(m) == 19
        assert all(m[i] == f"needle-{i:02}-" + "x" * 20 for i in range(20) if i != 7)
        m[7] = "whole again"
    with SharedHashMap(path=str(path), create=False) as m:  # validated again: now clean
        assert m[7] == "whole again" and len(m) == 20
