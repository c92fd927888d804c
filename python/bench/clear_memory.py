"""What clear() gives back, and how long writers wait for it: a map of N entries (14-character
str keys, 64-character str values, default parameters), the pages the kernel holds for its
files before and after clear(), and the clear's time.

    python3 python/bench/clear_memory.py 1000000
"""
import os
import sys
import time

from shared_hashmap import SharedHashMap


def held(name):
    return sum(os.stat(f"/dev/shm/{f}").st_blocks * 512 for f in os.listdir("/dev/shm")
               if f == name or f.startswith(name + "."))


n = int(sys.argv[1])
name = f"clearmem{os.getpid()}"
m = SharedHashMap(name)
for i in range(n):
    m[f"key-{i}"] = "v" * 64
full = held(name)
t = time.perf_counter()
m.clear()
took = time.perf_counter() - t
print(f"{n} entries: {full / 2**20:.1f} MiB; after clear() {held(name) / 2**20:.2f} MiB; "
      f"clear took {took * 1e3:.0f} ms; capacity {m.capacity}")
m.unlink()
