"""The map as a dict (issue 12): the MutableMapping API, dict key equality, and the atomic
operations a shared dict needs, checked across processes."""

import inspect
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
from collections.abc import MutableMapping
from concurrent.futures import ProcessPoolExecutor

import pytest

from shared_hashmap import SharedHashMap

import _workers


def test_it_is_a_mutable_mapping_with_all_of_dicts_methods(shm):
    assert isinstance(shm, MutableMapping)
    shm.update({"a": 1}, b=2)
    shm.update([("c", 3)])
    assert shm.copy() == {"a": 1, "b": 2, "c": 3}
    assert shm == {"a": 1, "b": 2, "c": 3} and shm != {"a": 1}
    assert shm.pop("a") == 1 and shm.pop("a", "gone") == "gone"
    with pytest.raises(KeyError):
        shm.pop("a")
    assert shm.setdefault("d", 4) == 4 and shm.setdefault("d", 5) == 4
    assert shm.setdefault("e") is None and "e" in shm
    merged = shm | {"z": 26}
    assert isinstance(merged, dict) and merged["z"] == 26 and "z" not in shm
    assert ({"y": 25} | shm)["y"] == 25
    shm |= {"x": 24}
    assert shm["x"] == 24
    items = []
    while len(shm):
        items.append(shm.popitem())
    assert sorted(k for k, _ in items) == ["b", "c", "d", "e", "x"]
    with pytest.raises(KeyError, match="popitem"):
        shm.popitem()
    shm.update(a=1, b=2)
    shm.clear()
    assert len(shm) == 0 and shm.copy() == {}


def test_the_hot_calls_take_their_arguments_as_the_specification_names_them(shm):
    """get, m[k], k in m, m[k] = v and del m[k] are entered without pyo3's wrappers
    (python/src/fast.rs): arguments, errors and help must be what they were."""
    shm["a"] = 1
    assert shm.get("a") == 1 and shm.get("b") is None and shm.get("b", 5) == 5
    assert shm.get("b", default=6) == 6 and shm.get(key="a") == 1
    assert shm.get(key="b", default=7) == 7
    for call, message in [
        (lambda: shm.get(), "missing required argument 'key'"),
        (lambda: shm.get(1, 2, 3), "at most 2 arguments"),
        (lambda: shm.get("a", key="a"), "multiple values for argument 'key'"),
        (lambda: shm.get("a", other=1), "unexpected keyword argument 'other'"),
        (lambda: shm.get([]), "unhashable"),
        (lambda: shm[[]], "unhashable"),
        (lambda: [] in shm, "unhashable"),
    ]:
        with pytest.raises(TypeError, match=message):
            call()
    with pytest.raises(TypeError, match="unhashable"):
        shm[[]] = 1
    with pytest.raises(KeyError):
        del shm["missing"]
    with pytest.raises(ValueError, match="exceeds maximum"):
        shm["big"] = "x" * (shm.max_value_size + 1)
    assert str(inspect.signature(shm.get)) == "(key, default=None)"
    assert "default" in shm.get.__doc__
    del shm["a"]
    assert "a" not in shm and shm.get("a", "gone") == "gone"


def test_keys_follow_dict_equality_and_hashability(shm):
    shm[1] = "one"
    assert shm[1.0] == shm[True] == "one" and len(shm) == 1
    shm[0.0] = "zero"
    assert shm[0] == shm[False] == shm[-0.0] == "zero"
    shm[(1, "a", (2.0, None))] = "tuple"
    assert shm[(1.0, "a", (2, None))] == "tuple"
    shm[frozenset({"x", "y", 3})] = "set"
    assert shm[frozenset([3, "y", "x"])] == "set"
    shm[2**70] = "big"
    assert shm[float(2**70)] == "big"
    shm[1.5] = "float"
    assert shm[1.5] == "float" and 1 in shm and 2 not in shm
    for bad in ([1], {"a": 1}, {1}, bytearray(b"x")):
        with pytest.raises(TypeError, match=f"unhashable type: '{type(bad).__name__}'"):
            shm[bad] = 1
    assert set(shm.keys()) == {1, 0, (1, "a", (2, None)), frozenset({"x", "y", 3}), 2**70, 1.5}
    assert len(shm.keys()) == 6


def test_values_keep_their_exact_type(shm):
    for v in [1, 1.0, True, "1", b"1", None, (1, 2), frozenset({1})]:
        shm["k"] = v
        assert type(shm["k"]) is type(v) and shm["k"] == v


def test_incr(shm):
    assert shm.incr("n") == 1 and shm.incr("n", 5) == 6
    assert shm.incr("f", 0.5, default=1) == 1.5 and isinstance(shm["f"], float)
    assert shm.incr("n", 0.5) == 6.5
    assert shm.incr("big", 1, default=2**63 - 1) == 2**63 and shm["big"] == 2**63
    shm["b"] = True
    assert shm.incr("b") == 2
    shm["s"] = "text"
    with pytest.raises(TypeError, match="not str"):
        shm.incr("s")
    assert shm["s"] == "text"
    with pytest.raises(TypeError):
        shm.incr("n", "1")
    with pytest.raises(OverflowError):
        shm.incr("n", 2**200)


def test_compare_and_set_is_type_exact(shm):
    shm["k"] = 1
    assert not shm.compare_and_set("k", 1.0, 2)  # 1.0 == 1, but not the same value stored
    assert not shm.compare_and_set("k", True, 2)
    assert shm.compare_and_set("k", 1, 2) and shm["k"] == 2
    assert not shm.compare_and_set("k", 1, 3) and shm["k"] == 2
    assert not shm.compare_and_set("absent", None, 1) and "absent" not in shm


def test_a_shared_counter_from_a_process_pool_is_exact(Map, name):
    with Map(name, capacity=64) as m:
        with ProcessPoolExecutor(4) as pool:
            done = sum(pool.map(_workers.incr_many, [m] * 4, ["counter"] * 4, [2000] * 4))
        assert done == 8000 and m["counter"] == 8000
        m.unlink()


def test_setdefault_races_return_one_value(Map, name):
    with Map(name, capacity=64) as m:
        for round in range(10):
            start = time.time() + 0.2
            with ProcessPoolExecutor(2) as pool:
                got = list(pool.map(_workers.setdefault_race, [m] * 2, [f"k{round}"] * 2,
                                    ["x", "y"], [start] * 2))
            assert got[0] == got[1] == m[f"k{round}"], got
        m.unlink()


TRACKED = """
import os, signal, sys
from shared_hashmap import SharedHashMap
m = SharedHashMap(sys.argv[1], capacity=8, track=sys.argv[2] == "track")
m["k"] = 1
print("created", flush=True)
if sys.argv[3] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_track_removes_the_map_when_its_creator_ends(name, how):
    out = subprocess.run([sys.executable, "-c", TRACKED, name, "track", how],
                         capture_output=True, text=True, timeout=60)
    assert "created" in out.stdout, out.stderr
    deadline = time.time() + 10
    while os.path.exists(f"/dev/shm/{name}") and time.time() < deadline:
        time.sleep(0.05)  # the tracker notices the death of its creator
    assert not os.path.exists(f"/dev/shm/{name}")


GROWN = """
import os, signal, sys
from shared_hashmap import SharedHashMap
m = SharedHashMap(sys.argv[1], capacity=8)
for i in range(200):
    m[i] = i  # grows 8 -> 256: the table now lives in name.t<g>
assert m.capacity > 8
if os.fork() == 0:
    sys.exit(0)  # a forked child that exits normally runs the atexit handlers too
os.wait()
assert m[199] == 199, "the child's exit removed its parent's table"
print("grown", flush=True)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_track_removes_the_tables_of_a_map_that_grew(name, how):
    """The tracker knows the map's own name; a map that grew keeps its table in `name.t<g>`,
    which its creator registers when its writes grow the map, and removes when it exits (a
    forked child's exit does not)."""
    out = subprocess.run([sys.executable, "-c", GROWN, name, how],
                         capture_output=True, text=True, timeout=60)
    assert "grown" in out.stdout, out.stderr
    if how == "exit":
        assert "resource_tracker: '/" not in out.stderr, out.stderr  # no name it could not find
    def left():
        return [f for f in os.listdir("/dev/shm") if f == name or f.startswith(f"{name}.t")]

    deadline = time.time() + 10
    while left() and time.time() < deadline:
        time.sleep(0.05)  # the tracker notices the death of its creator
    assert left() == []


@pytest.mark.parametrize("bad", ["a:b", "line\nbreak", "tab\tname", "trailing "])
def test_names_the_tracker_cannot_carry_are_refused(bad):
    """The resource tracker sends `cmd:name:type` lines and strips them: such a map would be
    tracked wrongly or not at all and outlive its creator. Refused, saying why, before
    anything is made."""
    before = set(os.listdir("/dev/shm"))
    for kwargs in [dict(), dict(exist_ok=True), dict(track=False), dict(create=False)]:
        with pytest.raises(ValueError, match="invalid segment name") as e:
            SharedHashMap(bad, capacity=8, **kwargs)
        assert "printable ASCII" in str(e.value) or "space" in str(e.value), e.value
    assert set(os.listdir("/dev/shm")) == before


def test_track_false_keeps_the_map_until_unlink(name):
    out = subprocess.run([sys.executable, "-c", TRACKED, name, "keep", "exit"],
                         capture_output=True, text=True, timeout=60)
    assert "created" in out.stdout, out.stderr
    with SharedHashMap(name, create=False) as m:
        assert m["k"] == 1
        m.unlink()


def test_help_and_signature_tell_the_truth():
    sig = inspect.signature(SharedHashMap)
    defaults = {p.name: p.default for p in sig.parameters.values()}
    assert defaults == {"name": None, "capacity": 1024, "max_key_size": 256,
                        "max_value_size": 1024, "create": True, "exist_ok": False,
                        "trust_foreign": False, "track": True, "path": None, "url": None,
                        "timeout": 5.0, "max_capacity": None, "username": None,
                        "password": None, "ssl_ca_certs": None, "ssl_certfile": None,
                        "ssl_keyfile": None, "ssl_cert_reqs": None, "replicas": 0,
                        "serializer": "pickle"}
    doc = SharedHashMap.__doc__
    for word in [*defaults, "FileExistsError", "FileNotFoundError", "PermissionError", "ENOSPC",
                 "ValueError", "TypeError", "RuntimeError", "TimeoutError", "ConnectionError", "redis://", "m.copy()"]:
        assert word in doc, word
    for method in ["incr", "compare_and_set", "setdefault", "pop", "popitem", "update", "copy"]:
        assert getattr(SharedHashMap, method).__doc__, method


def test_the_readme_snippet_runs_as_one_script():
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not os.path.exists("/dev/shm/my_hashmap")


def test_mypy_accepts_it_where_a_mutable_mapping_is_expected(tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the [test] extra")
    code = tmp_path / "uses_map.py"
    code.write_text(
        "from typing import Any, MutableMapping\n"
        "from shared_hashmap import SharedHashMap\n"
        "def total(m: MutableMapping[Any, Any]) -> int:\n"
        "    return len(m)\n"
        "m = SharedHashMap('x', capacity=8)\n"
        "total(m)\n"
        "n: int = m.incr('k')  # type: ignore[assignment]\n"
        "ok: bool = m.compare_and_set('k', 1, 2)\n"
    )
    out = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(code)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
