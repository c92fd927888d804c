"""Retries on a Redis map: processes that incr one counter, set, pop and delete while the
server kills their connections every millisecond or so see no error, and nothing is applied
twice (each write carries a request id: a retry of one whose reply was lost returns the first
run's reply)."""

import multiprocessing as mp
import threading

from shared_hashmap import SharedHashMap

PROCS = 3
ROUNDS = 200


def _worker(url, name, w):
    m = SharedHashMap(name, create=False, url=url, timeout=5)
    popped = []
    for i in range(ROUNDS):
        m.incr("n")
        key = f"w{w}-{i}"
        m[key] = i
        assert m.setdefault(f"d{w}-{i}", i) == i
        del m[f"d{w}-{i}"]  # a KeyError here: the delete ran twice
        popped.append(m.pop(key))  # the value, or a KeyError if it ran twice
    return popped


def _run(args):
    return _worker(*args)


def test_killed_connections_cost_no_error_and_apply_nothing_twice(name, redis_server):
    m = SharedHashMap(name, capacity=10_000, url=redis_server.url, timeout=5)
    m["n"] = 0
    killer = redis_server.client()
    done = threading.Event()
    kills = []

    def kill():
        while not done.is_set():
            kills.append(killer.execute_command("CLIENT", "KILL", "TYPE", "normal",
                                                "SKIPME", "yes"))
            done.wait(0.001)

    t = threading.Thread(target=kill)
    t.start()
    try:
        with mp.get_context("spawn").Pool(PROCS) as pool:
            results = pool.map(_run, [(redis_server.url, name, w) for w in range(PROCS)])
    finally:
        done.set()
        t.join()
    assert sum(kills) > 50, f"only {sum(kills)} connections killed: the test proves little"
    assert m["n"] == PROCS * ROUNDS
    assert all(r == list(range(ROUNDS)) for r in results)
    assert len(m) == 1
    m.unlink()
