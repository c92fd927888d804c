"""One map, two languages: Python and Rust (`shmap-typed`, driven by its `xlang` example)
read what the other wrote, bytes included, and count together exactly; on shared memory, on a
file and on Redis."""

import math
import multiprocessing
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shared_hashmap import SharedHashMap

ROOT = Path(__file__).resolve().parents[2]

# The entries both sides write and check (typed/examples/xlang.rs has the same list).
JOB = {"id": 7, "args": ["--fast", "-v"], "nested": {"x": [1.0, 2.5, None], "ok": True}}
ENTRIES = {
    "str": "héllo wörld ✓",
    b"bytes\0": b"\0\xff\x10",
    "int": -5,
    "i64min": -(2**63),
    "big": 2**100,
    "negbig": -(2**120),
    "u128max": 2**128 - 1,
    "float": 2.5,
    "negzero": -0.0,
    "bool": True,
    "none": None,
    "some": 3,
    ("tuple", 1): ("a", 1, 1.5, False, None, b"b"),
    1: "one",
    2.5: "two and a half",
    "json": JOB,
}


@pytest.fixture(scope="session")
def xlang():
    """The Rust side, built once (in release, as `make test` built the workspace)."""
    cargo = shutil.which("cargo")
    assert cargo, "cargo is needed to build the Rust side (as it is to pip install this package)"
    subprocess.run(
        [cargo, "build", "--release", "-q", "-p", "shmap-typed", "--example", "xlang"],
        cwd=ROOT,
        check=True,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "release" / "examples" / "xlang"


@pytest.fixture(params=["shm", "file", "redis"])
def place(request, name, tmp_path):
    """(how Python opens the map, how xlang names it)."""
    if request.param == "shm":
        yield {"name": name}, f"shm:{name}"
    elif request.param == "file":
        path = tmp_path / "shared.map"
        yield {"path": str(path)}, f"file:{path}"
    else:
        url = request.getfixturevalue("redis_server").url
        yield {"name": name, "url": url}, f"redis:{url}#{name}"


def run(xlang, *args):
    done = subprocess.run([str(xlang), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def same(a, b):
    """Equal and of the same types all the way down (True is not 1, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def test_rust_reads_every_type_python_wrote(xlang, place):
    kwargs, where = place
    with SharedHashMap(**kwargs, serializer="json") as m:
        for k, v in ENTRIES.items():
            m[k] = v
    # A set, which only pickle stores: from a handle with the default serializer.
    with SharedHashMap(**kwargs, create=False) as m:
        m["pickled"] = {1, 2}
        done = run(xlang, "check", where)
        assert "pickled Python object" in done.stderr  # the error Rust gave, as it should
        assert "expected i64" not in done.stderr
        m.unlink()


def test_python_reads_every_type_rust_wrote(xlang, place):
    kwargs, where = place
    with SharedHashMap(**kwargs) as m:
        run(xlang, "write", where)
        assert len(m) == len(ENTRIES)
        for k, v in ENTRIES.items():
            assert same(m[k], v), (k, m[k], v)
            if k != "json":  # JSON's layout is each library's own; its content is checked above
                # Equal bytes: a compare-and-set of the value with itself succeeds.
                assert m.compare_and_set(k, v, v), k
        # One key for 1, 1.0 and True, as in a dict.
        assert m[1.0] == m[True] == "one"
        m.unlink()


def _python_incr(kwargs, n):
    with SharedHashMap(**kwargs, create=False) as m:
        for _ in range(n):
            m.incr("counter")


def test_python_and_rust_count_together_exactly(xlang, place):
    kwargs, where = place
    n = 300 if "url" in kwargs else 3000
    with SharedHashMap(**kwargs) as m:
        rust = [subprocess.Popen([str(xlang), "incr", where, str(n)]) for _ in range(2)]
        ctx = multiprocessing.get_context("spawn")
        python = [ctx.Process(target=_python_incr, args=(kwargs, n)) for _ in range(2)]
        for p in python:
            p.start()
        for p in python:
            p.join(120)
            assert p.exitcode == 0
        for r in rust:
            assert r.wait(120) == 0
        assert m["counter"] == 4 * n
        assert type(m["counter"]) is int
        m.unlink()


def test_json_serializer_refuses_what_json_cannot_hold(name):
    with SharedHashMap(name, serializer="json") as m:
        for bad in [{1, 2}, [("a", 1)], {1: "x"}, [object()], {"k": b"bytes"}]:
            with pytest.raises(TypeError):
                m["k"] = bad
        for bad in [[float("nan")], {"x": float("inf")}]:
            with pytest.raises(ValueError):
                m["k"] = bad
        deep = []
        for _ in range(600):
            deep = [deep]
        with pytest.raises(ValueError):
            m["k"] = deep
        loop = []
        loop.append(loop)
        with pytest.raises(ValueError):
            m["k"] = loop
        assert "k" not in m
        m["k"] = {"a": [1, 2.5, None, True, "s"], "b": {}}
        assert m["k"] == {"a": [1, 2.5, None, True, "s"], "b": {}}
        # Tuples of built-in values have an encoding of their own under either serializer.
        m["t"] = (1, "x", None)
        assert m["t"] == (1, "x", None)
        with pytest.raises(ValueError):
            SharedHashMap(name, create=False, serializer="yaml")
        m.unlink()


def test_tuples_that_were_pickled_before_still_fit_and_come_back(name):
    """Tuples of built-in values have an encoding of their own, which Rust reads; where it
    would not fit the map's limit, or nests deep, or holds a lone surrogate, they are pickled
    as before, so every tuple that fit a map still does."""
    with SharedHashMap(name) as m:  # the default 1,024-byte values
        big = tuple(range(100))  # 1,301 bytes encoded element by element, ~300 pickled
        m["big"] = big
        assert m["big"] == big
        deep = ()
        for _ in range(200):
            deep = (deep,)
        m["deep"] = deep
        assert m["deep"] == deep
        m["surrogate"] = ("\ud800", 1)
        assert m["surrogate"] == ("\ud800", 1)
        shared = ()
        for _ in range(40):  # small pickled (each level once), 2**40 elements spelt out
            shared = (shared, shared)
        m["shared"] = shared  # pickled, at once
        got = m["shared"]
        assert got[0] is got[1] and len(got) == 2
        assert m.compare_and_set("big", big, (1,))
        m.unlink()


def test_json_handles_compare_with_values_json_cannot_hold(name):
    with SharedHashMap(name, serializer="json") as j, SharedHashMap(name, create=False) as p:
        p["s"] = {1, 2}  # pickled by the default handle
        assert j.compare_and_set("s", {1, 2}, [1, 2])
        assert j["s"] == [1, 2]
        assert not j.compare_and_set("s", {3}, [0])
        j.unlink()


def test_a_pickle_handle_reads_json_and_the_other_way_round(name):
    with SharedHashMap(name, serializer="json") as j, SharedHashMap(name, create=False) as p:
        j["doc"] = {"x": [1, 2]}
        p["obj"] = {1, 2}
        assert p["doc"] == {"x": [1, 2]}
        assert j["obj"] == {1, 2}
        j.unlink()


def test_serializer_survives_pickling_the_handle(name):
    import pickle

    with SharedHashMap(name, serializer="json") as m:
        child = pickle.loads(pickle.dumps(m))
        with pytest.raises(TypeError):
            child["s"] = {1, 2}
        child.close()
        m.unlink()
