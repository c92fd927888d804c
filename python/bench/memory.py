"""Memory per entry, SharedHashMap beside dict, Redis and LMDB, on the same data in one run
(issue 32, item 1): the pages the kernel holds for the map's segments, what tracemalloc
counts for a dict and its objects, Redis's `used_memory` growth for one hash (a private
redis-server this script starts and stops), and LMDB's pages in use.

    python3 python/bench/memory.py                 # both distributions, 100k and 1M entries
    python3 python/bench/memory.py --keys 100000 --dist fixed

Data: 15-byte str keys; values of 64 str characters (`fixed`), or of sizes log-uniform
between 8 and 16,384 bytes (`loguniform`, one seeded draw shared by every target). The
payload column is the keys' and values' bytes (ASCII); each target's figure is also given as
a multiple of it. Needs the `redis` and `lmdb` packages (`pip install
'.[compare]'`) and `redis-server` on the PATH; a missing one is skipped with a note.
"""
import argparse
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc

from shared_hashmap import SharedHashMap


def data(n, dist):
    keys = [f"key-{i:011}" for i in range(n)]  # 15 characters
    if dist == "fixed":
        return keys, ["v" * 64] * n
    rng = random.Random(32)
    lo, hi = math.log(8), math.log(16384)
    sizes = [int(math.exp(rng.uniform(lo, hi))) for _ in range(n)]
    return keys, ["x" * s for s in sizes]


def payload(keys, values):
    return sum(len(k) + len(v) for k, v in zip(keys, values))


def ours(keys, values):
    name = f"memory-bench-{os.getpid()}"
    largest = max(len(v) for v in values) + 1
    m = SharedHashMap(name, capacity=1024, max_value_size=max(1024, largest))
    for k, v in zip(keys, values):
        m[k] = v
    held = sum(os.stat(f"/dev/shm/{f}").st_blocks * 512
               for f in os.listdir("/dev/shm") if f == name or f.startswith(name + "."))
    m.unlink()
    m.close()
    return held


def a_dict(keys, values):
    tracemalloc.start()
    d = {}
    for k, v in zip(keys, values):
        d["".join(k)] = "".join(v)  # objects of its own, as a dict of fresh data holds
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del d
    return held


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def a_redis(keys, values):
    try:
        import redis
    except ImportError:
        return None, "no redis package"
    server = shutil.which("redis-server")
    if not server:
        return None, "no redis-server"
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        before = r.info("memory")["used_memory"]
        pipe = r.pipeline(transaction=False)
        for i, (k, v) in enumerate(zip(keys, values)):
            pipe.hset("map", k, v)
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        return r.info("memory")["used_memory"] - before, ""
    finally:
        proc.kill()
        proc.wait()


def a_lmdb(keys, values):
    try:
        import lmdb
    except ImportError:
        return None, "no lmdb package"
    with tempfile.TemporaryDirectory() as d:
        env = lmdb.open(d, map_size=1 << 36)
        with env.begin(write=True) as txn:
            for k, v in zip(keys, values):
                txn.put(k.encode(), v.encode())
        info, stat = env.info(), env.stat()
        held = (info["last_pgno"] + 1) * stat["psize"]
        env.close()
        return held, ""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, action="append", help="entries (repeatable)")
    ap.add_argument("--dist", choices=["fixed", "loguniform"], action="append")
    args = ap.parse_args()
    cells = [(n, d) for d in (args.dist or ["fixed", "loguniform"])
             for n in (args.keys or ([100_000, 1_000_000] if d == "fixed" else [100_000]))]
    print("| entries | values | payload B/entry | SharedHashMap | dict | Redis | LMDB |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for n, dist in cells:
        keys, values = data(n, dist)
        pay = payload(keys, values) / n
        cols = []
        for f in (ours, a_dict, a_redis, a_lmdb):
            got = f(keys, values)
            held, why = got if isinstance(got, tuple) else (got, "")
            cols.append(f"skipped ({why})" if held is None
                        else f"{held / n:,.0f} B ({held / n / pay:.2f}x)")
        print(f"| {n:,} | {dist} | {pay:,.0f} | " + " | ".join(cols) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
