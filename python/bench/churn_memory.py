"""Memory after churn and after clear() (issue 32, item 3): a map that took 20x its live set
in writes (inserts of new keys, removes, updates that change an entry's size) against a
fresh map holding the same entries, and a map after clear() against an empty one. Memory is
the pages the kernel holds for the map's segments (root, tables and heap), as memory.py
counts it.

    python3 python/bench/churn_memory.py                     # 100k entries, both value sizes
    python3 python/bench/churn_memory.py --keys 20000 --procs 4 --dist loguniform

Churn runs in `--procs` processes at once (each with its own handle, so their magazines
and frees interleave as in use), each on its own share of the keys. Values: 64 characters
(`fixed`) or log-uniform from 8 B to 16 KiB (`loguniform`); an update draws a new size.
"""
import argparse
import math
import multiprocessing as mp
import os
import random

from shared_hashmap import SharedHashMap

LO, HI = math.log(8), math.log(16384)


def value(rng, dist):
    if dist == "fixed":
        return "v" * 64
    return "x" * int(math.exp(rng.uniform(LO, HI)))


def held(name):
    return sum(os.stat(f"/dev/shm/{f}").st_blocks * 512
               for f in os.listdir("/dev/shm") if f == name or f.startswith(name + "."))


def churn(name, proc, procs, live, writes, dist):
    """Keeps `live` keys of this process's share present while making `writes` writes."""
    rng = random.Random(1000 + proc)
    m = SharedHashMap(name, create=False)
    present = [f"k{proc}-{i}" for i in range(proc, live * procs, procs)]
    next_key = len(present)
    for _ in range(writes):
        r = rng.random()
        if r < 0.4:  # a new key in, a present one out: the live set stays
            k = f"k{proc}-n{next_key}"
            next_key += 1
            m[k] = value(rng, dist)
            i = rng.randrange(len(present))
            del m[present[i]]
            present[i] = k
        else:  # an update that changes the entry's size
            m[present[rng.randrange(len(present))]] = value(rng, dist)
    m.close()


def measure(keys, procs, dist):
    name = f"churn-bench-{os.getpid()}"
    rng = random.Random(7)
    m = SharedHashMap(name, max_value_size=None)
    for i in range(keys):
        m[f"k{i % procs}-{i}"] = value(rng, dist)
    per_proc = keys // procs
    writes = 20 * keys // procs // 2  # each pass of the loop makes about two writes
    ps = [mp.Process(target=churn, args=(name, p, procs, per_proc, writes, dist))
          for p in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join()
        assert p.exitcode == 0, p.exitcode
    churned = held(name)
    entries = m.copy()
    fresh_name = name + "-fresh"
    fresh = SharedHashMap(fresh_name, max_value_size=None)
    for k, v in entries.items():
        fresh[k] = v
    fresh_bytes = held(fresh_name)
    empty_name = name + "-empty"
    empty = SharedHashMap(empty_name)
    empty_bytes = held(empty_name)
    m.clear()
    cleared = held(name)
    for x in (m, fresh, empty):
        x.unlink()
        x.close()
    return len(entries), churned, fresh_bytes, cleared, empty_bytes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--dist", choices=["fixed", "loguniform", "both"], default="both")
    a = ap.parse_args()
    print("| values | entries | after churn | fresh map, same entries | ratio | after clear() "
          "| empty map |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for dist in (["fixed", "loguniform"] if a.dist == "both" else [a.dist]):
        n, churned, fresh, cleared, empty = measure(a.keys, a.procs, dist)
        mib = lambda b: f"{b / 2**20:.1f} MiB"
        print(f"| {dist} | {n:,} | {mib(churned)} | {mib(fresh)} | {churned / fresh:.2f}x "
              f"| {mib(cleared)} | {mib(empty)} |")


if __name__ == "__main__":
    main()
