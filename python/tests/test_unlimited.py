"""max_key_size=None and max_value_size=None: no size limit (issue 32, item 2). Limits cost
no memory, so lifting them costs nothing either; a value past 1 GiB round-trips."""

import os
import pickle

import pytest

from shared_hashmap import SharedHashMap

BIG = (1 << 30) + 4096 + 3  # past 1 GiB, no power of two


def _heap_bytes(path):
    return os.stat(path).st_blocks * 512


def test_none_lifts_the_limits_and_says_so(name):
    with SharedHashMap(name, max_key_size=None, max_value_size=None) as m:
        assert m.max_key_size is None and m.max_value_size is None
        assert "max_key_size=None, max_value_size=None" in repr(m)
        m["k" * 100_000] = "v" * 5_000_000  # over the defaults' 256 and 1024 bytes
        assert m["k" * 100_000] == "v" * 5_000_000
        with SharedHashMap(name, create=False) as other:  # read back from the segment
            assert other.max_key_size is None and other.max_value_size is None
            assert other["k" * 100_000] == "v" * 5_000_000
        # exist_ok with the same sizes attaches; with a limit it names both.
        with SharedHashMap(name, max_value_size=None, exist_ok=True) as same:
            assert len(same) == 1
        with pytest.raises(ValueError, match=r"max_value_size=None \(asked for 1024\)"):
            SharedHashMap(name, max_value_size=1024, exist_ok=True)
        # A pickled handle attaches to the same map.
        assert pickle.loads(pickle.dumps(m)).max_value_size is None
        m.unlink()


def test_one_limit_lifted_keeps_the_other(name):
    with SharedHashMap(name, max_value_size=None) as m:
        assert m.max_key_size == 256 and m.max_value_size is None
        m["k"] = b"x" * 10_000_000
        with pytest.raises(ValueError, match="Serialized key size 300 exceeds maximum 256"):
            m[b"k" * 300] = 1
        m.unlink()


def test_bad_limits_name_none(name):
    with pytest.raises(TypeError, match="max_value_size must be an int or None"):
        SharedHashMap(name, max_value_size="big")
    with pytest.raises(ValueError, match="from 1 to 4294967294 or None"):
        SharedHashMap(name, max_key_size=2**32)
    with pytest.raises(TypeError, match="capacity must be an int, not NoneType"):
        SharedHashMap(name, capacity=None)
    assert not os.path.exists(f"/dev/shm/{name}")


@pytest.mark.parametrize("storage", ["shm", "file"])
def test_a_value_past_one_gib_round_trips(name, tmp_path, storage):
    if storage == "shm":
        kw, heap = {"name": name}, f"/dev/shm/{name}.heap"
    else:
        kw, heap = {"path": tmp_path / "big.map"}, str(tmp_path / "big.map.heap")
    value = bytes(range(251)) * (BIG // 251) + b"end"
    with SharedHashMap(**kw, max_value_size=None) as m:
        m["big"] = value
        m["small"] = 1
        got = m["big"]
        assert len(got) == len(value) and got == value
        del got
        assert _heap_bytes(heap) > len(value)
        # Replaced by a small value: the large record's pages go back to the kernel.
        m["big"] = "now small"
        assert _heap_bytes(heap) < 16 << 20
        assert m["big"] == "now small" and m["small"] == 1
        m.unlink()


def test_none_on_every_storage(Map, name):
    """A Redis map keeps the limits in its meta hash: None reads back as None there too."""
    with Map(name, max_key_size=None, max_value_size=None) as m:
        m["k"] = "v" * 3_000_000
        with Map(name, create=False) as other:
            assert other.max_key_size is None and other.max_value_size is None
            assert other["k"] == "v" * 3_000_000
        m.unlink()
