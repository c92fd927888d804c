"""What is particular to url= (a map on a Redis server): incr computed by the server exactly as
in shared memory, a Redis Cluster, one round trip for update, HSCAN chunks for copy and every
view, a server that is not there, dies or stops answering, and handles in forked and spawned
processes. The rest of the API runs on both storages through the `Map` fixture."""

import math
import multiprocessing as mp
import os
import signal
import time

import pytest

from shared_hashmap import SharedHashMap

from conftest import RedisServer

BIG = 2**127 - 1

# Stored values and deltas at the edges of incr's arithmetic: i64 and i128 bounds, bools,
# floats (signed zero, inf, nan, a big int as float), and values incr refuses.
STORED = [0, 1, -1, True, False, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64, 10**30, -10**30,
          BIG, -BIG - 1, BIG + 1, 10**40, 0.5, -0.0, 1e308, math.inf, -math.inf, math.nan,
          1.5e-300, "text", b"bytes", None, (1, 2), frozenset({1}), [1],
          # the server's fast path (ints within +-2^53 added as doubles) and its edges
          2**53 - 1, 2**53, 2**53 + 1, -2**53, -2**53 - 1, 2**52 + 1]
DELTAS = [1, -1, 0, 2**63, -2**63, 2**64 + 7, -(2**100), BIG, -BIG - 1, 0.25, -1e308, math.inf,
          True, 3.0, 2**52, -2**52, 2**53 - 1]


def _outcome(m, key, delta):
    try:
        return ("ok", m.incr(key, delta))
    except (TypeError, OverflowError) as e:
        return (type(e).__name__,)


def _same(a, b):
    if a[0] != "ok" or b[0] != "ok":
        return a == b
    x, y = a[1], b[1]
    if type(x) is not type(y):
        return False
    if isinstance(x, float):
        return (math.isnan(x) and math.isnan(y)) or (x == y and math.copysign(1, x) == math.copysign(1, y))
    return x == y


def test_incr_on_the_server_matches_shared_memory_bit_for_bit(name, redis_server):
    with SharedHashMap(name, capacity=4096) as local, \
            SharedHashMap(name, capacity=4096, url=redis_server.url) as remote:
        checked = 0
        for i, stored in enumerate(STORED):
            for j, delta in enumerate(DELTAS):
                key = f"k{i}-{j}"
                local[key] = stored
                remote[key] = stored
                a, b = _outcome(local, key, delta), _outcome(remote, key, delta)
                assert _same(a, b), (stored, delta, a, b)
                # And the stored result is the same value and type, in the canonical encoding
                # (compare_and_set compares bytes: an int stored as a decimal where it fits
                # 8 bytes would not match).
                assert _same(("ok", local[key]), ("ok", remote[key])), (stored, delta)
                if a[0] == "ok":
                    assert remote.compare_and_set(key, b[1], b[1]), (stored, delta, b)
                checked += 1
        # incr of an absent key starts from the default, on both.
        for default in [0, 5, -2**70, 1.5]:
            key = f"absent-{default}"
            assert _same(("ok", local.incr(key, 2, default)), ("ok", remote.incr(key, 2, default)))
        assert checked == len(STORED) * len(DELTAS)
        local.unlink()
        remote.unlink()


def test_incr_on_a_full_map_is_a_runtime_error(name, redis_server):
    with SharedHashMap(name, capacity=1, url=redis_server.url) as m:
        m["a"] = 1
        with pytest.raises(RuntimeError, match="full"):
            m.incr("b")
        assert m.incr("a") == 2 and len(m) == 1
        m.unlink()


def _calls(url):
    """Calls per command so far (commands a script makes count as their own)."""
    import redis

    stats = redis.Redis.from_url(url).info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}


def _delta(before, after):
    """What was called between two _calls, without the calls _calls itself makes."""
    ours = {"info", "hello", "client"}
    return {k: n - before.get(k, 0) for k, n in after.items()
            if n != before.get(k, 0) and k not in ours}


def test_update_of_a_thousand_entries_takes_one_round_trip_and_copy_scans(name, redis_server):
    with SharedHashMap(name, capacity=2000, url=redis_server.url) as m:
        m.update({"warm": 0})  # loads the script once (EVALSHA then EVAL)
        before = _calls(redis_server.url)
        m.update({f"k{i}": i for i in range(1000)})
        sent = _delta(before, _calls(redis_server.url))
        # One EVALSHA from us (and the INFO that counts); the rest ran inside the script.
        assert sent.pop("evalsha") == 1, sent
        # Only the hash commands: update's script keeps no request record.
        assert set(sent) <= {"hget", "hexists", "hlen", "hset"}, sent
        before = _calls(redis_server.url)
        got = m.copy()
        # HSCAN in chunks of about 1,000, never one HGETALL that holds the server.
        assert set(_delta(before, _calls(redis_server.url))) == {"hscan"}
        assert len(got) == 1001 and got["k999"] == 999
        m.unlink()


def test_a_big_map_is_scanned_in_chunks_by_every_view(name, redis_server):
    n = 5000
    with SharedHashMap(name, capacity=2 * n, url=redis_server.url) as m:
        want = {f"k{i}": i for i in range(n)}
        m.update(want)
        for view in (m.copy, m.keys, m.values, m.items, lambda: list(m)):
            before = _calls(redis_server.url)
            got = view()
            sent = _delta(before, _calls(redis_server.url))
            assert "hgetall" not in sent and sent["hscan"] >= n // 1000, sent
            assert len(got) == n
        assert m.copy() == want and sorted(m.keys()) == sorted(want)
        assert sorted(m.items()) == sorted(want.items()) and set(m) == set(want)
        m.unlink()


def test_update_is_all_or_nothing(name, redis_server):
    with SharedHashMap(name, capacity=5, max_value_size=8, url=redis_server.url) as m:
        m.update(a=1, b=2)
        with pytest.raises(RuntimeError, match="full"):
            m.update({"c": 3, "d": 4, "e": 5, "f": 6})
        with pytest.raises(ValueError, match="Serialized value size"):
            m.update({"c": 3, "d": "x" * 20})
        assert m.copy() == {"a": 1, "b": 2}
        m.update([("a", 10), ("c", 3)], d=4)
        assert m.copy() == {"a": 10, "b": 2, "c": 3, "d": 4}
        m.clear()
        assert len(m) == 0
        m.unlink()


def test_the_api_on_a_redis_cluster(name, redis_cluster):
    maps = [SharedHashMap(f"{name}-{i}", capacity=64, url=redis_cluster) for i in range(12)]
    for i, m in enumerate(maps):  # names spread over the three nodes' slots
        m["k"] = i
        m.update({"a": 1, "b": 2})
        assert m.incr("a", 2) == 3
        assert m.setdefault("s", "x") == "x" and m.pop("b") == 2
        assert m.compare_and_set("k", i, "swapped")
        assert m.copy() == {"k": "swapped", "a": 3, "s": "x"}
        key, _ = m.popitem()
        assert key not in m and len(m) == 2
        with SharedHashMap(f"{name}-{i}", create=False, url=redis_cluster) as again:
            assert again.copy() == m.copy()
        m.unlink()
        m.close()


def test_url_errors(name, redis_server):
    with pytest.raises(ValueError, match="url"):
        SharedHashMap(name, url="http://localhost:1")
    with pytest.raises(TypeError, match="needs a name"):
        SharedHashMap(url=redis_server.url)
    with pytest.raises(TypeError, match="not both"):
        SharedHashMap(name, url=redis_server.url, path="/tmp/x")
    with pytest.raises(ValueError, match="timeout"):
        SharedHashMap(name, url=redis_server.url, timeout=0)
    with pytest.raises(ValueError):
        SharedHashMap("brace{", url=redis_server.url)
    with pytest.raises(FileNotFoundError):
        SharedHashMap(name, create=False, url=redis_server.url)


def test_a_server_that_is_not_there_is_a_connection_error_at_once(name):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        SharedHashMap(name, url=f"redis://127.0.0.1:{port}/0", timeout=1)
    assert time.monotonic() - started < 2


def test_a_server_that_dies_or_stops_is_a_connection_error_not_a_hang(name):
    server = RedisServer()
    try:
        m = SharedHashMap(name, url=server.url, timeout=0.5)
        m["k"] = "v"
        os.kill(server.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(ConnectionError, match="no answer"):
            m["k"]
        assert time.monotonic() - started < 2
        os.kill(server.proc.pid, signal.SIGCONT)
        assert m["k"] == "v", "a new connection after the timeout, not the late reply"
        server.proc.kill()
        server.proc.wait()
        for op in (lambda: m["k"], lambda: m.__setitem__("k", 1), lambda: m.incr("n"), len):
            started = time.monotonic()
            with pytest.raises(ConnectionError):
                op() if op is not len else len(m)
            assert time.monotonic() - started < 2
        assert "size=?" in repr(m), "repr does not raise"
    finally:
        server.stop()


def _read_all(m, n):
    for _ in range(200):
        for i in range(n):
            assert m[i] == f"value-{i}", "a reply meant for another process"
    return True


def test_a_forked_child_never_shares_its_parents_connections(name, redis_server):
    """Parent and child read through one handle at once: with a shared socket, replies would
    cross."""
    with SharedHashMap(name, capacity=64, url=redis_server.url) as m:
        for i in range(20):
            m[i] = f"value-{i}"
        ctx = mp.get_context("fork")
        child = ctx.Process(target=_read_all, args=(m, 20))
        child.start()
        _read_all(m, 20)
        child.join()
        assert child.exitcode == 0
        m.unlink()


def test_pickled_handles_reconnect_in_spawned_children(name, redis_server):
    import pickle

    with SharedHashMap(name, capacity=64, url=redis_server.url, timeout=2.5) as m:
        clone = pickle.loads(pickle.dumps(m))
        assert clone.url == m.url == redis_server.url and clone.name == name
        clone["from clone"] = 1
        assert m["from clone"] == 1
        assert m.path is None and "url=" in repr(m)
        m.unlink()
