"""Every API point of the specification, and every error it names."""

import enum
import math
import pickle
import threading

import pytest

from shared_hashmap import SharedHashMap


def test_quick_start_from_the_specification(Map, name):
    with Map(name=name, capacity=1024, create=True) as shm:
        shm["key1"] = "value1"
        shm["key2"] = 42
        assert shm["key1"] == "value1"
        assert shm.get("key2") == 42
        assert "key1" in shm
        del shm["key1"]
        assert "key1" not in shm
        assert shm.size() == 1
        shm.unlink()


def test_set_get_delete_and_defaults(shm):
    shm.set("a", 1)
    assert shm.get("a") == 1
    assert shm.get("missing") is None
    assert shm.get("missing", "dflt") == "dflt"
    assert shm.delete("a") is True
    assert shm.delete("a") is False
    with pytest.raises(KeyError):
        shm["a"]
    with pytest.raises(KeyError):
        del shm["a"]


@pytest.mark.parametrize(
    "value",
    ["", "héllo ✓", b"", b"\x00\xff", 0, -1, 2**63 - 1, -(2**63), 2**64, -(10**40), True, False, None,
     1.5, -0.0, math.inf, [1, "two", (3,)], {"a": {1, 2}}, ("t", None), frozenset({1})],
)
def test_every_value_type_round_trips_as_its_own_type(shm, value):
    shm["k"] = value
    got = shm["k"]
    assert type(got) is type(value)
    assert got == value or (isinstance(value, float) and math.copysign(1, got) == math.copysign(1, value))


def test_nan_round_trips(shm):
    shm["nan"] = math.nan
    assert math.isnan(shm["nan"])


def test_keys_follow_dict_equality(shm):
    d = {}
    for key in ["1", 1, b"1", True, 1.0, None, (1,)]:
        shm[key] = repr(key)
        d[key] = repr(key)
    assert len(shm) == len(d) == 5  # 1, True and 1.0 are one key, as in a dict
    assert shm["1"] == "'1'" and shm[b"1"] == "b'1'" and shm[None] == "None" and shm[(1,)] == "(1,)"
    assert shm[1] == shm[True] == shm[1.0] == d[1] == "1.0"


def test_a_stored_none_is_present(shm):
    shm["n"] = None
    assert "n" in shm
    assert shm["n"] is None
    assert shm.get("n", "dflt") is None
    assert len(shm) == 1


class Color(enum.IntEnum):
    RED = 1


def test_subclasses_come_back_as_themselves(shm):
    shm["c"] = Color.RED
    assert shm["c"] is Color.RED


def test_attributes_and_attach_reads_them_back(Map, name):
    with Map(name, capacity=100, max_key_size=40, max_value_size=300) as a:
        assert (a.name, a.capacity, a.max_key_size, a.max_value_size) == (name, 100, 40, 300)
        a["x"] = "y"
        with Map(name, create=False) as b:
            assert (b.capacity, b.max_key_size, b.max_value_size) == (100, 40, 300)
            assert b["x"] == "y"
        a.unlink()


def test_sizes_limit_the_serialized_payload_exactly(Map, name):
    with Map(name, capacity=8, max_key_size=10, max_value_size=20) as m:
        m["k" * 10] = "v" * 20
        assert m["k" * 10] == "v" * 20
        with pytest.raises(ValueError, match="Serialized key size 11 exceeds maximum 10"):
            m["k" * 11] = 1
        with pytest.raises(ValueError, match="Serialized value size 21 exceeds maximum 20"):
            m["k"] = "v" * 21
        with pytest.raises(ValueError, match="Serialized key size"):
            m.get("k" * 11)
        assert len(m) == 1 and "k" not in m
        m.unlink()


def test_full_table_raises_runtime_error_and_changes_nothing(Map, name):
    with Map(name, capacity=4, max_capacity=4) as m:
        for i in range(4):
            m[i] = i
        with pytest.raises(RuntimeError, match="full"):
            m["extra"] = 1
        assert len(m) == 4 and "extra" not in m
        m[2] = "replaced"  # replacing still works
        del m[0]
        m["extra"] = 1
        assert sorted(map(str, m.keys())) == ["1", "2", "3", "extra"]
        assert (m.capacity, m.max_capacity) == (4, 4)
        m.unlink()


def test_the_table_grows_from_capacity_to_max_capacity(Map, name):
    with Map(name, capacity=4, max_capacity=64) as m:
        for i in range(64):
            m[i] = str(i)
        assert len(m) == 64 and all(m[i] == str(i) for i in range(64))
        assert m.max_capacity == 64
        with pytest.raises(RuntimeError, match="full"):
            m["extra"] = 1
        assert len(m) == 64 and "extra" not in m
        with pytest.raises(ValueError, match="max_capacity"):
            Map(name + "-bad", capacity=8, max_capacity=4)
        m.unlink()


def test_capacity_is_where_it_starts_and_grows_for_every_handle(name):
    with SharedHashMap(name, capacity=8) as m, SharedHashMap(name, create=False) as other:
        assert m.capacity == other.capacity == 8
        for i in range(1000):
            m[f"k{i}"] = i
        assert other.capacity == m.capacity >= 1000
        assert all(other[f"k{i}"] == i for i in range(1000))
        assert "capacity=8" not in repr(other)
        # exist_ok compares the capacity the map was made with, not the one it grew to.
        with SharedHashMap(name, capacity=8, exist_ok=True) as again:
            assert again[f"k{999}"] == 999
        m.unlink()


def test_missing_and_existing_names(Map, name):
    with pytest.raises(FileNotFoundError):
        Map(name, create=False)
    with Map(name) as m:
        m["k"] = "v"
        with pytest.raises(FileExistsError):
            Map(name, create=True)
        assert m["k"] == "v"
        m.unlink()
        with pytest.raises(FileNotFoundError):
            m.unlink()


@pytest.mark.parametrize(
    "kwargs",
    [dict(capacity=0), dict(capacity=-1), dict(max_key_size=0), dict(max_value_size=-5),
     dict(capacity=2**62), dict(capacity=10**30)],
)
def test_bad_parameters_are_value_errors(Map, name, kwargs):
    with pytest.raises(ValueError):
        Map(name, **kwargs)
    with pytest.raises(FileNotFoundError):
        Map(name, create=False)


def test_bad_names_and_types(name):
    for bad in ["", "a/b", "x" * 300]:
        with pytest.raises(ValueError):
            SharedHashMap(bad)
    with pytest.raises(TypeError):
        SharedHashMap(name, capacity="10")


def test_a_foreign_segment_is_refused(name):
    with open(f"/dev/shm/{name}", "wb") as f:
        f.write(b"\x7f" * 4096)
    with pytest.raises(ValueError, match="not a shared map"):
        SharedHashMap(name, create=False)


def test_unpicklable_value_raises_and_changes_nothing(shm):
    with pytest.raises((TypeError, pickle.PicklingError)):
        shm["lock"] = threading.Lock()
    assert "lock" not in shm and len(shm) == 0


def test_iteration_keys_values_items_len_repr(shm):
    expected = {f"k{i}": i for i in range(50)}
    for k, v in expected.items():
        shm[k] = v
    assert len(shm) == 50
    assert sorted(shm) == sorted(expected)
    assert sorted(shm.keys()) == sorted(expected)
    assert sorted(shm.values()) == sorted(expected.values())
    assert dict(shm.items()) == expected
    assert "size=50" in repr(shm) and "capacity=256" in repr(shm)


def test_closed_handle_raises_but_unlink_by_name_works(Map, name):
    m = Map(name)
    m["k"] = 1
    m.close()
    m.close()  # idempotent
    assert m.closed
    with pytest.raises(ValueError, match="closed"):
        m["k"]
    assert "closed" in repr(m)
    with Map(name, create=False) as again:
        assert again["k"] == 1, "close keeps the segment for other handles"
    m.unlink()


def test_pickles_as_attach_to_this_name(shm):
    shm["k"] = "v"
    clone = pickle.loads(pickle.dumps(shm))
    assert clone.name == shm.name and clone["k"] == "v"
    clone["k2"] = "from clone"
    assert shm["k2"] == "from clone"
    clone.close()
