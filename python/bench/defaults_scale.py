"""One build of the package at the parameters users get (the defaults: max_key_size=256,
max_value_size=1024, capacity=1024 growing): the time to insert N str keys with 64-character
values, a get's time in random order (best of 3 passes), and the bytes per entry the map's
segments hold in /dev/shm (the pages the kernel holds: root, heap, current table).

    python3 python/bench/defaults_scale.py 100000 1000000

Run it with each build's interpreter in turn to compare builds (issue 32's figures)."""
import os
import random
import sys
import time

from shared_hashmap import SharedHashMap


def measure(n):
    name = f"defaults-scale-{os.getpid()}"
    m = SharedHashMap(name, capacity=1024)
    keys = [f"key-{i:010}" for i in range(n)]
    started = time.perf_counter()
    for k in keys:
        m[k] = "v" * 64
    insert_s = time.perf_counter() - started
    order = keys[:]
    random.Random(1).shuffle(order)
    passes = []
    for _ in range(3):
        started = time.perf_counter()
        for k in order:
            m.get(k)
        passes.append((time.perf_counter() - started) / n * 1e9)
    held = sum(os.stat(f"/dev/shm/{f}").st_blocks * 512
               for f in os.listdir("/dev/shm") if f == name or f.startswith(name + "."))
    m.unlink()
    print(f"keys={n} insert_s={insert_s:.2f} get_ns={min(passes):.0f} bytes_per_entry={held / n:.0f}",
          flush=True)


if __name__ == "__main__":
    for n in sys.argv[1:] or ["100000"]:
        measure(int(n))
