"""The four examples of the specification: basic operations, producer-consumer, a distributed
computation, and a short stress test. Runs to completion in a few seconds:

    pip install .
    python examples/basic_usage.py
"""

import multiprocessing as mp
import os
import time

from shared_hashmap import SharedHashMap


def basic_operations():
    name = f"example_basic_{os.getpid()}"
    with SharedHashMap(name=name, capacity=1024, create=True) as shm:
        shm["key1"] = "value1"
        shm["key2"] = 42
        shm[b"raw"] = b"\x00\x01"
        shm[("a", "tuple")] = {"any": "picklable value"}
        print("get:", shm["key1"], shm.get("key2"), shm.get("missing", "default"))
        print("key1 in shm:", "key1" in shm)
        del shm["key1"]
        print("size after delete:", shm.size(), "| items:", sorted(map(repr, shm.items())))
        shm.unlink()


def producer(name, producer_id, num_items):
    shm = SharedHashMap(name=name, create=False)
    for i in range(num_items):
        shm[f"item_{producer_id}_{i}"] = f"data from producer {producer_id}"
    shm["done"] = True
    shm.close()


def consumer(name, producer_id, num_items, out):
    shm = SharedHashMap(name=name, create=False)
    while not shm.get("done", False):
        time.sleep(0.001)
    out.put([shm.get(f"item_{producer_id}_{i}") for i in range(num_items)])
    shm.close()


def producer_consumer():
    name = f"example_pc_{os.getpid()}"
    with SharedHashMap(name=name, capacity=256, create=True) as shm:
        out = mp.Queue()
        p1 = mp.Process(target=producer, args=(name, 0, 10))
        p2 = mp.Process(target=consumer, args=(name, 0, 10, out))
        p2.start()
        p1.start()
        consumed = out.get(timeout=30)
        p1.join()
        p2.join()
        print(f"consumed {len(consumed)} items, first: {consumed[0]!r}")
        shm.unlink()


def square_range(shm, start, stop):
    """A worker of the distributed computation: writes its results into the shared map."""
    for n in range(start, stop):
        shm[n] = n * n
    return stop - start


def distributed_computation():
    name = f"example_dist_{os.getpid()}"
    with SharedHashMap(name=name, capacity=4096, create=True) as shm:
        chunks = [(i, i + 250) for i in range(0, 2000, 250)]
        with mp.Pool(4) as pool:  # the handle pickles as "attach to this name"
            done = sum(pool.starmap(square_range, [(shm, a, b) for a, b in chunks]))
        total = sum(shm[n] for n in range(2000))
        assert total == sum(n * n for n in range(2000))
        print(f"{done} squares computed by 4 processes, sum {total}")
        shm.unlink()


def stress_worker(name, wid, seconds):
    shm = SharedHashMap(name=name, create=False)
    ops, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for k in range(100):
            shm[f"k{k}"] = f"{wid}:{k}"
            value = shm[f"k{k}"]
            assert value.endswith(f":{k}"), value  # never another key's, never torn
            ops += 2
    shm.close()
    return ops


def stress_test():
    name = f"example_stress_{os.getpid()}"
    with SharedHashMap(name=name, capacity=1024, create=True) as shm:
        start = time.monotonic()
        with mp.Pool(4) as pool:
            ops = sum(pool.starmap(stress_worker, [(name, w, 1.0) for w in range(4)]))
        elapsed = time.monotonic() - start
        assert len(shm) == 100
        print(f"stress: {ops} operations by 4 processes in {elapsed:.1f} s, {len(shm)} keys, all values intact")
        shm.unlink()


if __name__ == "__main__":
    for example in (basic_operations, producer_consumer, distributed_computation, stress_test):
        print(f"--- {example.__name__}")
        example()
