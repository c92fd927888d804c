"""What emptying a map gives back, and how long it takes: a map of N entries (14-character
str keys, 64-character str values, default parameters), the pages the kernel holds for its
files before and after it is emptied, by clear() or by `del` of every key in a shuffled
order, and the time: clear()'s, or the removes' in all, the longest one and the last one
(which gives the table back).

    python3 python/bench/clear_memory.py 1000000          # clear()
    python3 python/bench/clear_memory.py 1000000 del      # one key at a time
"""
import os
import random
import sys
import time

from shared_hashmap import SharedHashMap


def held(name):
    return sum(os.stat(f"/dev/shm/{f}").st_blocks * 512 for f in os.listdir("/dev/shm")
               if f == name or f.startswith(name + "."))


n = int(sys.argv[1])
how = sys.argv[2] if len(sys.argv) > 2 else "clear"
name = f"clearmem{os.getpid()}"
m = SharedHashMap(name)
for i in range(n):
    m[f"key-{i}"] = "v" * 64
full = held(name)
if how == "clear":
    t = time.perf_counter()
    m.clear()
    took = f"clear took {(time.perf_counter() - t) * 1e3:.0f} ms"
else:
    keys = [f"key-{i}" for i in range(n)]
    random.Random(1).shuffle(keys)
    longest = 0.0
    t = time.perf_counter()
    for k in keys:
        t1 = time.perf_counter()
        del m[k]
        last = time.perf_counter() - t1
        longest = max(longest, last)
    took = (f"{n} dels took {(time.perf_counter() - t):.2f} s, the longest "
            f"{longest * 1e3:.1f} ms, the last {last * 1e3:.1f} ms")
print(f"{n} entries: {full / 2**20:.1f} MiB; emptied by {how}: {held(name) / 2**20:.2f} MiB; "
      f"{took}; capacity {m.capacity}")
m.unlink()
